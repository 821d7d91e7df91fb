"""A monitor's reference profile: the profile of a reference sample, with the
window-to-window spreads that learned thresholds read, as the monitor config asks.

The backtest (from a reference file) and the retrainer (from a version's training
data) build every profile through :func:`monitor_profile`, so that the streaming
monitor, which reads the stored profile, judges windows against the same reference.

Examples
--------
>>> import numpy as np
>>> from driftline.schemas.monitor import MonitorConfig
>>> config = MonitorConfig(model_id="m", features={"x": "numeric"}, window="1m")
>>> rng = np.random.default_rng(0)
>>> profile = monitor_profile(config, "v1", features={"x": rng.normal(size=2_000)},
...     timestamps=np.repeat(np.arange(5) * 60.0, 400))
>>> profile.model_version, sorted(profile.drift_spread["x"])
('v1', ['psi'])
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy.typing as npt
from driftline.schemas.monitor import MonitorConfig

from .drift_spread import drift_methods, with_drift_spreads
from .profiles import ModelProfile, build_profile
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
) -> ModelProfile:
    """The reference profile of ``version`` for ``config``: :func:`build_profile` over
    the monitor's windows (``timestamps`` in epoch seconds), then each feature's drift
    spread for the method its kind is monitored with."""
    starts = assign_windows(timestamps, config.window_seconds)
    profile = build_profile(
        config.model_id,
        version,
        features=features,
        kinds=config.features,
        predictions=predictions,
        scores=scores,
        labels=labels,
        task=config.task,
        bins=config.bins,
        positive_label=config.performance.positive_label,
        window_starts=starts,
        min_window_labels=config.performance.min_labels,
        min_window_samples=config.drift.min_samples,
    )
    return with_drift_spreads(
        profile,
        features,
        starts,
        methods=drift_methods(config),
        min_samples=config.drift.min_samples,
    )
