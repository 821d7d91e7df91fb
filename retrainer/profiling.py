"""A version's reference profile: its training data, its own predictions, and the
performance of its holdout."""

from __future__ import annotations

from typing import Any

import numpy as np
from driftline.detectors.profiles import ModelProfile
from driftline.detectors.reference import monitor_profile
from driftline.schemas.monitor import MonitorConfig

from .dataset import LabelledDataset

__all__ = ["training_profile"]


def training_profile(
    model: Any,
    train: LabelledDataset,
    monitor: MonitorConfig,
    version: str,
    holdout: LabelledDataset | None = None,
) -> ModelProfile:
    """The reference profile of a version from its training data and its own predictions.

    The monitors compare the traffic of ``version`` against this profile. Its reference
    performance (and the window-to-window spread the learned thresholds use) comes
    from the ``holdout`` when there is one: the model's accuracy on the rows it was
    fitted to is optimistic, and judged against it an honest model would alert on its
    first windows. The calibration of label-free estimation comes from the holdout too:
    fitted to the model's own training rows it would learn the model's confidence on
    rows it memorised.
    """
    profile = _profile_of(model, train, monitor, version)
    if holdout is None or len(holdout) == 0:
        return profile
    slices = {key: tuple(values) for key, values in profile.segments.items()}
    out_of_sample = _profile_of(model, holdout, monitor, version, slices)
    calibration = {"calibration": out_of_sample.calibration}  # the model's, out of sample
    segments = {
        key: {
            value: part.model_copy(
                update={**_performance(out_of_sample.segments[key][value]), **calibration}
            )
            if out_of_sample.segments[key][value].reference_performance is not None
            else part.model_copy(update=calibration)
            for value, part in values.items()
        }
        for key, values in profile.segments.items()
    }  # the holdout is sliced as the training rows; an empty slice keeps theirs
    return profile.model_copy(
        update={**_performance(out_of_sample), **calibration, "segments": segments}
    )


def _performance(profile: ModelProfile) -> dict[str, Any]:
    return {
        "reference_performance": profile.reference_performance,
        "performance_spread": profile.performance_spread,
    }


def _profile_of(
    model: Any,
    rows: LabelledDataset,
    monitor: MonitorConfig,
    version: str,
    slices: dict[str, tuple[str, ...]] | None = None,
) -> ModelProfile:
    predictions = model.predict(rows.features)
    scores = confidences = None
    if monitor.task == "binary_classification":
        scores = predictions.class_scores(monitor.performance.positive_label)
    elif monitor.task == "multiclass" and predictions.scores is not None:
        # each prediction's own class's probability (multiclass estimation)
        column = {label: i for i, label in enumerate(predictions.classes)}
        at = np.array([column.get(str(label), -1) for label in predictions.labels])
        found = at >= 0
        confidences = np.full(len(predictions), np.nan)
        confidences[found] = predictions.scores[np.flatnonzero(found), at[found]]
    return monitor_profile(
        monitor,
        version,
        features=rows.features,
        timestamps=rows.timestamps,
        predictions=predictions.labels,
        scores=scores,
        labels=rows.labels,
        segments=rows.segments,
        segment_values=slices,
        confidences=confidences,
    )
