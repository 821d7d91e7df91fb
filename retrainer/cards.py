"""What a model card says of a training run (:mod:`driftline.cards`): the run itself and
the balance of the labels it learned from."""

from __future__ import annotations

from typing import Any

import numpy as np
from driftline.schemas.monitor import MonitorConfig

from driftline.cards import TrainingRun

from .dataset import LabelledDataset

__all__ = ["label_balance", "training_run"]


def training_run(monitor: MonitorConfig, options: Any, report: Any, seconds: float) -> TrainingRun:
    """How a version was trained, for its model card: the trainer, its resolved options
    and seed, the driftline version, device, duration and epochs."""
    from importlib.metadata import PackageNotFoundError, version

    from .training import resolve_options

    resolved = resolve_options(options, monitor)
    try:
        release = version("driftline")
    except PackageNotFoundError:
        release = "unknown"
    return TrainingRun(
        trainer=monitor.training.function or "built-in MLP",
        options=resolved.model_dump(mode="json"),
        seed=getattr(resolved, "seed", None),
        driftline_version=release,
        device=str(report.device),
        seconds=round(seconds, 3),
        epochs_run=report.epochs_run if monitor.training.function is None else None,
    )


def label_balance(dataset: LabelledDataset, monitor: MonitorConfig) -> dict[str, float]:
    """Rows per class (classification), or the labels' mean, std, min and max.

    Examples
    --------
    >>> ds = LabelledDataset(features={"x": np.zeros(3)}, labels=np.array(["1", "0", "1"]),
    ...     timestamps=np.zeros(3), event_ids=np.array(["a", "b", "c"]))
    >>> label_balance(ds, MonitorConfig(model_id="m", features={"x": "numeric"}))
    {'0': 1.0, '1': 2.0}
    """
    if monitor.task == "regression":
        values = dataset.labels.astype(float)
        if values.size == 0:
            return {}
        return {
            "mean": float(values.mean()),
            "std": float(values.std()),
            "min": float(values.min()),
            "max": float(values.max()),
        }
    classes, counts = np.unique(dataset.labels.astype(str), return_counts=True)
    return {str(c): float(n) for c, n in zip(classes, counts, strict=True)}
