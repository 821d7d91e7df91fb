"""Drift levels learned from the reference's own window-to-window spread
(``drift: {numeric: {method: psi, threshold: auto}}``).

Some features drift on the reference itself: few distinct values whose mix moves from
hour to hour, heavy tails that one window samples and the next does not. Their PSI
(or any drift statistic) sits above a fixed 0.1 in windows where nothing changed, and
the significance test does not help (a real, if harmless, difference is significant in
a large window). With ``threshold: auto`` each feature's levels come from how far its
reference windows drift from the rest of the reference:

The rule
    The reference is split into windows of the monitored window's size; for each
    window with at least ``min_samples`` values, the statistic of the window against
    the reference *without* it (leave one window out, over the profile's frozen bins)
    is ``s_j``. A gamma distribution with their mean and variance (the statistics are
    positive and skewed to the right, as a scaled chi-square is) gives the learned
    levels: its quantiles at tail probabilities 0.135% (warning) and 0.003%
    (critical), those of 3 and 4 normal standard deviations. A feature's levels are
    the larger of those and the configured ones, so ``auto`` only ever raises a level,
    for the features that need it. Fewer than
    :data:`~driftline.detectors.thresholds.MIN_WINDOWS` such windows: the configured
    levels. Applies to features (the prediction and the score keep theirs).
Guarantee
    If an unchanged window's statistic follows the reference windows' gamma, it
    passes the warning level with probability 0.135% (critical: 0.003%); alerts also
    need the window's significance test (Benjamini-Hochberg across features), so the
    rate is at most that. The fit from ``k`` reference windows is itself uncertain:
    with 48 windows the realised rate of the warning level ranges over about 0.02% to
    1.6% (a simulation of Dirichlet-moving mixes), so give the reference many windows.
    ``tests/detectors/test_drift_spread.py`` measures it on a feature whose mix moves
    from window to window.

Examples
--------
>>> import numpy as np
>>> from driftline.detectors.profiles import profile_feature
>>> rng = np.random.default_rng(0)
>>> values = rng.normal(size=20_000)
>>> starts = np.repeat(np.arange(10) * 60.0, 2_000)
>>> spreads = learn_drift_spreads(profile_feature(values, "numeric", bins=10), values, starts)
>>> from driftline.detectors.thresholds import drift_levels
>>> spreads["psi"].windows, 0.001 < drift_levels(spreads["psi"], 0.0, 0.0)[0] < 0.02
(10, True)
"""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from driftline.schemas.monitor import CATEGORICAL_METHODS, DRIFT_METHODS

from .evaluate import drift_result
from .profiles import ModelProfile, NumericProfile
from .statistics import get_statistic
from .thresholds import MIN_WINDOWS, DriftSpread

__all__ = [
    "drift_methods",
    "learn_drift_spreads",
    "with_drift_spreads",
]

#: Reference windows used at most (evenly spaced), to bound the profile's cost.
_MAX_WINDOWS: Final = 200


def learn_drift_spreads(
    profile: Any,
    values: npt.ArrayLike,
    window_starts: npt.ArrayLike,
    *,
    min_samples: int = 200,
    methods: tuple[str, ...] | None = None,
) -> dict[str, DriftSpread]:
    """The spread over the reference windows of one feature of each statistic in
    ``methods`` (default: every one that applies to its kind; module docstring); empty
    with fewer than ``MIN_WINDOWS`` usable windows."""
    starts = np.asarray(window_starts, dtype=np.float64).reshape(-1)
    column = np.asarray(values, dtype=object if profile.kind != "numeric" else np.float64)
    column = column.reshape(-1)
    if starts.size != column.size:
        raise ValueError("window_starts and the column differ in length")
    order = np.argsort(starts, kind="stable")
    bounds = np.flatnonzero(np.diff(starts[order])) + 1
    windows = [profile.histogram(column[rows]) for rows in np.split(order, bounds)]
    windows = [w for w in windows if w.n >= max(min_samples, 1)]
    if len(windows) > _MAX_WINDOWS:
        pick = np.linspace(0, len(windows) - 1, _MAX_WINDOWS).round().astype(int)
        windows = [windows[i] for i in pick]
    if len(windows) < MIN_WINDOWS:
        return {}
    methods = tuple(
        m
        for m in (methods or DRIFT_METHODS)
        if profile.kind == "numeric" or m in CATEGORICAL_METHODS
    )
    stats: dict[str, list[float]] = {m: [] for m in methods}
    for window in windows:
        rest = _without(profile, window)
        if rest is None:
            continue
        for method in methods:
            value = drift_result(get_statistic(method), rest, window).value
            if value is not None and math.isfinite(value):
                stats[method].append(value)
    out = {}
    for method, found in stats.items():
        if len(found) < MIN_WINDOWS:
            continue
        values = np.asarray(found)
        out[method] = DriftSpread(
            method=method,
            mean=float(values.mean()),
            sd=float(values.std(ddof=1)),
            windows=len(found),
        )
    return out


def _without(profile: Any, window: Any) -> Any:
    """The profile of the reference without one window's values (same bins)."""
    if isinstance(profile, NumericProfile):
        counts = np.asarray(profile.reference_counts) - np.asarray(window.counts)
    else:
        counts = np.asarray(profile.reference_counts) - profile.vector(window).astype(np.int64)
    if (counts < 0).any() or counts.sum() == 0:
        return None
    return profile.model_copy(
        update={"reference_counts": tuple(counts.tolist()), "count": int(counts.sum())}
    )


def with_drift_spreads(
    profile: ModelProfile,
    features: Any,
    window_starts: npt.ArrayLike,
    *,
    methods: Any,
    min_samples: int = 200,
) -> ModelProfile:
    """``profile`` with each feature's drift spread (``ModelProfile.drift_spread``) for the
    method its kind is monitored with (``methods``: kind to method name).

    Examples
    --------
    >>> from driftline.detectors.profiles import build_profile
    >>> rng = np.random.default_rng(1)
    >>> x = rng.normal(size=8_000)
    >>> starts = np.repeat(np.arange(4) * 60.0, 2_000)
    >>> profile = build_profile("m", "v1", features={"x": x}, kinds={"x": "numeric"})
    >>> spread = with_drift_spreads(profile, {"x": x}, starts, methods={"numeric": "psi"})
    >>> sorted(spread.drift_spread["x"])
    ['psi']
    """
    spreads = {}
    for name, feature in profile.features.items():
        if name not in features:
            continue
        method = methods.get(feature.kind)
        found = learn_drift_spreads(
            feature,
            features[name],
            window_starts,
            min_samples=min_samples,
            methods=(method,) if method else None,
        )
        if found:
            spreads[name] = found
    return profile.model_copy(update={"drift_spread": spreads})


def drift_methods(config: Any) -> dict[str, str]:
    """The drift method of each feature kind of a monitor config.

    Examples
    --------
    >>> from driftline.schemas.monitor import MonitorConfig
    >>> drift_methods(MonitorConfig(model_id="m", features={"x": "numeric"}))
    {'numeric': 'psi', 'categorical': 'psi'}
    """
    return {"numeric": config.drift.numeric.method, "categorical": config.drift.categorical.method}
