"""A monitor's reference profile: the profile of a reference sample, with the
window-to-window spreads that learned thresholds read, as the monitor config asks.

The backtest (from a reference file) and the retrainer (from a version's training
data) build every profile through :func:`monitor_profile`, so that the streaming
monitor, which reads the stored profile, judges windows against the same reference.

Examples
--------
>>> import numpy as np
>>> from driftline.schemas.monitor import OTHER_SEGMENT, MonitorConfig
>>> config = MonitorConfig(model_id="m", features={"x": "numeric"}, window="1m")
>>> rng = np.random.default_rng(0)
>>> profile = monitor_profile(config, "v1", features={"x": rng.normal(size=2_000)},
...     timestamps=np.repeat(np.arange(5) * 60.0, 400))
>>> profile.model_version, sorted(profile.drift_spread["x"])
('v1', ['psi'])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from driftline.schemas.monitor import OTHER_SEGMENT, MonitorConfig

from .coerce import category_array
from .drift_spread import drift_methods, with_drift_spreads
from .estimation import Calibration, fit_calibration
from .multivariate import fit_multivariate
from .profiles import ModelProfile, build_profile
from .segments import slice_rows, top_values, with_whole_bins
from .windows import assign_windows

__all__ = ["monitor_profile"]


def monitor_profile(
    config: MonitorConfig,
    version: str,
    *,
    features: Mapping[str, npt.ArrayLike],
    timestamps: npt.ArrayLike,
    predictions: npt.ArrayLike | None = None,
    scores: npt.ArrayLike | None = None,
    labels: npt.ArrayLike | None = None,
    segments: Mapping[str, npt.ArrayLike] | None = None,
    segment_values: Mapping[str, tuple[str, ...]] | None = None,
    confidences: npt.ArrayLike | None = None,
) -> ModelProfile:
    """The reference profile of ``version`` for ``config``: :func:`build_profile` over
    the monitor's windows (``timestamps`` in epoch seconds), then each feature's drift
    spread for the method its kind is monitored with.

    With a ``segments`` section, each key's ``max_values`` most frequent values in
    ``segments`` (each row's value per key, ``""`` where it has none) and ``_other``
    get a profile of their own rows over the whole profile's bins, with their own
    spreads (:mod:`~driftline.detectors.segments`). ``segment_values`` fixes a key's
    slices instead (another profile's, so that both slice the same way).
    ``confidences`` (each row's score of its own predicted class) calibrate a
    multiclass model's label-free estimation.
    """
    starts = assign_windows(timestamps, config.window_seconds)
    own_scores = confidences if config.task == "multiclass" else scores
    whole = _profile(config, version, features, starts, predictions, own_scores, labels, None)
    if config.drift.multivariate is not None:
        whole = whole.model_copy(
            update={
                "multivariate": fit_multivariate(
                    features,
                    config.features,
                    variance=config.drift.multivariate.variance,
                    window_starts=starts,
                    min_samples=config.drift.min_samples,
                )
            }
        )
    if config.segments is None:
        return whole
    n = starts.size
    nested: dict[str, dict[str, ModelProfile]] = {}
    for key in config.segments.keys:
        given = (segments or {}).get(key)
        values = np.full(n, "") if given is None else np.asarray(given, dtype=str)
        if segment_values is not None and key in segment_values:
            top = tuple(v for v in segment_values[key] if v != OTHER_SEGMENT)
        else:
            top = top_values(values, config.segments.max_values)
        nested[key] = {}
        found = dict(slice_rows(values, top))
        for value in (*top, OTHER_SEGMENT):  # _other even when empty: new values go there
            rows = found.get(value, np.empty(0, dtype=np.intp))

            def part(column: npt.ArrayLike | None, rows: npt.NDArray[np.intp] = rows) -> Any:
                return None if column is None else np.asarray(column).reshape(-1)[rows]

            own = {name: part(column) for name, column in features.items()}
            nested[key][value] = _profile(
                config,
                version,
                own,
                starts[rows],
                part(predictions),
                part(own_scores),
                part(labels),
                whole,
            )
    return whole.model_copy(update={"segments": nested})


def _profile(
    config: MonitorConfig,
    version: str,
    features: Mapping[str, npt.ArrayLike],
    starts: npt.NDArray[np.float64],
    predictions: npt.ArrayLike | None,
    scores: npt.ArrayLike | None,
    labels: npt.ArrayLike | None,
    whole: ModelProfile | None,
) -> ModelProfile:
    """One profile with its spreads and calibration; a slice's (``whole`` given) over
    ``whole``'s bins."""
    multiclass = config.task == "multiclass"  # ``scores``: the predicted class's own
    profile = build_profile(
        config.model_id,
        version,
        features=features,
        kinds=config.features,
        predictions=predictions,
        scores=None if multiclass else scores,
        labels=labels,
        task=config.task,
        bins=config.bins,
        positive_label=config.performance.positive_label,
        window_starts=starts,
        min_window_labels=config.performance.min_labels,
        min_window_samples=config.drift.min_samples,
    )
    if whole is not None:
        profile = with_whole_bins(
            profile,
            whole,
            features=features,
            predictions=predictions,
            scores=None if multiclass else scores,
        )
        if whole.multivariate is not None:  # the model's components, the slice's errors
            own = whole.multivariate.with_reference(features, starts, config.drift.min_samples)
            profile = profile.model_copy(update={"multivariate": own})
    if whole is not None:  # a slice: the whole model's calibration, as its bins
        profile = profile.model_copy(update={"calibration": whole.calibration})
    elif config.performance.estimation is not None and scores is not None and labels is not None:
        if multiclass:  # P(the prediction is right | its own class score)
            calibration = _confidence_calibration(scores, predictions, labels)
        else:
            calibration = _calibration(scores, labels, config.performance.positive_label)
        profile = profile.model_copy(update={"calibration": calibration})
    return with_drift_spreads(
        profile,
        features,
        starts,
        methods=drift_methods(config),
        min_samples=config.drift.min_samples,
    )


def _confidence_calibration(
    confidences: npt.ArrayLike, predictions: npt.ArrayLike | None, labels: npt.ArrayLike
) -> Calibration:
    """The calibration of the labelled rows' own-class scores against being right."""
    strings, null = category_array(labels)
    predicted, _ = category_array(predictions if predictions is not None else labels)
    right = (strings == predicted).astype(np.float64)
    right[null] = np.nan  # unlabelled rows are left out
    return fit_calibration(np.asarray(confidences, dtype=np.float64).reshape(-1), right)


def _calibration(scores: npt.ArrayLike, labels: npt.ArrayLike, positive: str) -> Calibration:
    """The calibration of the labelled rows' scores (labels as class strings)."""
    strings, null = category_array(labels)
    keep = ~null
    y = (strings[keep] == positive).astype(np.float64)
    return fit_calibration(np.asarray(scores, dtype=np.float64).reshape(-1)[keep], y)
