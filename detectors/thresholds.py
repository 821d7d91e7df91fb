"""Performance thresholds learned from the reference (``performance: {threshold: auto}``).

A fixed drop (``warning_drop: 0.03``) means very different things for a model at 0.60
accuracy and one at 0.95, and for windows of 500 and of 50,000 labels. The learned
rule asks instead how far a window's metric falls from the reference's when nothing
changed, given its label count and how much the metric moves from window to window
on the reference, and alerts on falls beyond that and beyond a minimum effect.

The rule, per metric and window
    Let ``n`` be the window's count behind the metric (labelled rows; predicted
    positives for precision, actual positives for recall), ``n_ref`` the reference's.
    On a scale where the metric's sampling variance is ``u**2 / n``:

    * proportions (accuracy, precision, recall) on the variance-stabilising arcsine
      scale ``a = asin(sqrt(p))``, where ``u = 1/2`` whatever ``p`` (Anscombe 1948;
      it also keeps the tail of a rare error count close to the normal one);
    * every other metric (F1, macro-F1, ROC AUC, log loss, MAE, RMSE, MAPE) on the log
      of its error ``e`` (``1 - metric`` for scores, the loss itself for losses), where
      ``u = se_ref * sqrt(n_ref) / e_ref`` (the delta method): a mean loss is skewed to
      the right, and its log much less, so that the tail the rule cuts is the normal
      one at 500 labels too.

    The standard deviation of (window - reference) under no change is then
    ``s(n) = sqrt(u**2 / n + u**2 / n_ref + tau**2)``, where ``tau`` is the
    between-window spread of the metric on the reference beyond sampling: the
    reference is split into windows of the monitored window's size, and ``tau**2`` is
    the DerSimonian-Laird moment estimate over those with at least ``min_labels``
    labels (DerSimonian & Laird 1986; 0 with fewer than :data:`MIN_WINDOWS` such
    windows: resampling a short reference would give back only the sampling part,
    which ``u**2 / n`` already is). A window is a *warning* when its metric is worse
    than the reference's by ``z_w * s(n)``, ``z_w`` the ``1 - warning_rate`` normal
    quantile (``critical``: ``critical_rate``), **and** by a minimum effect: the
    error (``1 - metric`` for scores, the loss itself for losses) grown by at least
    ``min_error_increase`` (twice that for critical). The thresholds are expressed as
    the drops :func:`~driftline.detectors.performance.assess_degradation` grades
    (absolute for scores, relative for losses), so each window's row carries the
    threshold it was judged by.

Guarantee
    An unchanged window (the metric's sampling distribution as on the reference, the
    window-to-window spread as on the reference) raises a warning with probability at
    most ``warning_rate`` and a critical alert with at most ``critical_rate``, up to
    the normal approximation of the metric's sampling distribution; the minimum
    effect only lowers them. ``tests/detectors/test_thresholds.py`` measures the rate
    over many seeds at 500, 2,000 and 10,000 labels per window, for accuracy (where
    the arcsine scale keeps a skewed binomial error count within it) and MAE. Losses
    with heavy tails exceed it: the RMSE of t-distributed errors (4 to 8 degrees of
    freedom) at 1,000 labels passes a 1e-3 level up to about three times as often, and
    the default minimum effect (10% growth of the error) is what keeps such a model
    quiet.

Examples
--------
>>> from driftline.detectors.performance import BinaryCounts
>>> ref = BinaryCounts.from_arrays([1] * 18_800 + [0] * 1_200, [1] * 20_000).metrics()
>>> rule = AutoThresholdRule()
>>> warning, critical = auto_drops(ref["accuracy"], None, 5_000, rule)
>>> round(warning, 4), round(critical, 4)  # accuracy 0.94: below 0.925 warns, 0.921 critical
(0.0147, 0.0191)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import special, stats

from .performance import HIGHER_IS_BETTER, MetricEstimate

__all__ = [
    "ARCSINE_METRICS",
    "DRIFT_TAILS",
    "MIN_WINDOWS",
    "AutoThresholdRule",
    "DriftSpread",
    "MetricSpread",
    "RateSpread",
    "auto_drops",
    "auto_rate_levels",
    "drift_levels",
    "learn_rate_spread",
    "learn_spread",
]

#: Metrics judged on the arcsine scale (proportions with a known count).
ARCSINE_METRICS: Final = frozenset({"accuracy", "precision", "recall"})
#: Fewer reference windows with enough labels than this: no between-window spread.
MIN_WINDOWS: Final = 4


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AutoThresholdRule(_Frozen):
    """The learned rule's levels (module docstring).

    Examples
    --------
    >>> AutoThresholdRule().warning_rate
    0.0001
    """

    #: Probability that an unchanged window raises a warning (one-sided, per window).
    warning_rate: float = Field(default=1e-4, gt=0, lt=0.5)
    #: Probability that an unchanged window raises a critical alert.
    critical_rate: float = Field(default=1e-6, gt=0, lt=0.5)
    #: Smallest relative growth of the error that warns (critical: twice it).
    min_error_increase: float = Field(default=0.1, ge=0, allow_inf_nan=False)


class DriftSpread(_Frozen):
    """One drift statistic's spread over a feature's reference windows: the mean and
    standard deviation of its values there.

    Examples
    --------
    >>> DriftSpread(method="psi", mean=0.06, sd=0.04, windows=12).windows
    12
    """

    method: str
    mean: float = Field(ge=0, allow_inf_nan=False)
    sd: float = Field(ge=0, allow_inf_nan=False)
    windows: int = Field(ge=0)


#: Tail probabilities of the learned drift levels (those of 3 and 4 normal standard
#: deviations): warning, critical (:mod:`driftline.detectors.drift_spread`).
DRIFT_TAILS: Final = (0.00135, 3.17e-5)


def drift_levels(spread: DriftSpread, warning: float, critical: float) -> tuple[float, float]:
    """The warning and critical levels of a feature under ``threshold: auto``: the
    quantiles at :data:`DRIFT_TAILS` of the gamma distribution with the reference
    windows' mean and variance, never below the configured ``warning`` and ``critical``.

    Examples
    --------
    >>> spread = DriftSpread(method="psi", mean=0.2, sd=0.1, windows=20)
    >>> [round(level, 3) for level in drift_levels(spread, 0.1, 0.25)]
    [0.634, 0.865]
    """
    if spread.sd <= 0 or spread.mean <= 0:
        learned = [spread.mean, spread.mean]
    else:
        shape = (spread.mean / spread.sd) ** 2
        scale = spread.sd**2 / spread.mean
        learned = [float(stats.gamma.isf(tail, shape, scale=scale)) for tail in DRIFT_TAILS]
    return max(warning, learned[0]), max(critical, learned[1])


class MetricSpread(_Frozen):
    """A metric's window-to-window spread on the reference, beyond sampling.

    ``tau`` is on the rule's scale (arcsine for :data:`ARCSINE_METRICS`, else the
    metric's own); ``windows`` counts the reference windows it was estimated from.

    Examples
    --------
    >>> MetricSpread(metric="accuracy", tau=0.0, windows=0).tau
    0.0
    """

    metric: str
    tau: float = Field(ge=0, allow_inf_nan=False)
    windows: int = Field(ge=0)
    #: The median count behind the metric in the reference's windows (0: none).
    median_n: int = Field(default=0, ge=0)


def _scale(metric: str) -> Literal["arcsine", "log_error"]:
    return "arcsine" if metric in ARCSINE_METRICS else "log_error"


def _arcsine(p: float) -> float:
    return math.asin(math.sqrt(min(max(p, 0.0), 1.0)))


def _error(metric: str, value: float, n: int) -> float:
    """The metric's error (``1 - value`` for scores, the value for losses), at least
    half a unit of ``n`` so that its log is finite."""
    error = 1.0 - value if HIGHER_IS_BETTER.get(metric, True) else value
    return max(error, 0.5 / max(n, 1))


def _on_scale(estimate: MetricEstimate) -> float:
    """The estimate's value on the rule's scale."""
    assert estimate.value is not None
    if _scale(estimate.metric) == "arcsine":
        return _arcsine(estimate.value)
    return math.log(_error(estimate.metric, estimate.value, estimate.n))


def _unit(reference: MetricEstimate) -> float | None:
    """Per-unit standard deviation on the rule's scale, ``None`` when unknown."""
    if _scale(reference.metric) == "arcsine":
        return 0.5
    se = reference.standard_error
    if se is None or se <= 0 or reference.n <= 0 or reference.value is None:
        return None  # no spread known (a perfect AUC, say): the fixed drops apply
    return se * math.sqrt(reference.n) / _error(reference.metric, reference.value, reference.n)


def _between_variance(y: np.ndarray, weights: np.ndarray) -> float:
    """The DerSimonian-Laird moment estimate of the variance of ``y`` beyond its
    sampling variances ``1 / weights`` (0 when the values vary no more than those)."""
    total = float(weights.sum())
    mean = float((weights * y).sum()) / total
    q = float((weights * (y - mean) ** 2).sum())
    denominator = total - float((weights * weights).sum()) / total
    return max(0.0, (q - (y.size - 1)) / denominator) if denominator > 0 else 0.0


def learn_spread(
    reference: MetricEstimate, windows: Sequence[MetricEstimate], *, min_labels: int = 100
) -> MetricSpread:
    """The DerSimonian-Laird between-window spread of ``reference.metric`` over the
    reference's ``windows`` (those with at least ``min_labels`` in the metric's count).

    Examples
    --------
    >>> from driftline.detectors.performance import BinaryCounts
    >>> rng = np.random.default_rng(0)
    >>> steady = [BinaryCounts.from_arrays(rng.random(2000) < 0.9, [True] * 2000)
    ...           .metrics()["accuracy"] for _ in range(20)]
    >>> whole = BinaryCounts.from_arrays(np.ones(40_000, bool), [True] * 40_000)
    >>> spread = learn_spread(whole.metrics()["accuracy"], steady)
    >>> spread.windows, spread.tau < 0.005
    (20, True)
    """
    unit = _unit(reference)
    counted = [w.n for w in windows if w.n > 0]
    median_n = int(np.median(counted)) if counted else 0
    usable = [w for w in windows if w.value is not None and w.n >= max(min_labels, 1)]
    if unit is None or len(usable) < MIN_WINDOWS:
        return MetricSpread(
            metric=reference.metric, tau=0.0, windows=len(usable), median_n=median_n
        )
    y = np.array([_on_scale(w) for w in usable])
    tau2 = _between_variance(y, np.array([w.n for w in usable], dtype=np.float64) / unit**2)
    return MetricSpread(
        metric=reference.metric, tau=math.sqrt(tau2), windows=len(usable), median_n=median_n
    )


def auto_drops(
    reference: MetricEstimate, spread: MetricSpread | None, n: int, rule: AutoThresholdRule
) -> tuple[float, float] | None:
    """The warning and critical drops for a window whose metric counts ``n``
    (the drops :func:`~driftline.detectors.performance.assess_degradation` grades),
    ``None`` when the reference gives no value or no spread of the metric.

    Examples
    --------
    >>> from driftline.detectors.performance import RegressionCounts
    >>> rng = np.random.default_rng(1)
    >>> ref = RegressionCounts.from_arrays(rng.normal(size=20_000), np.zeros(20_000))
    >>> warning, critical = auto_drops(ref.metrics()["mae"], None, 2_000, AutoThresholdRule())
    >>> round(warning, 3), round(critical, 3)  # relative growth of the MAE
    (0.1, 0.2)
    """
    value, unit = reference.value, _unit(reference)
    if value is None or unit is None or reference.n <= 0:
        return None
    n = max(n, 1)
    tau = spread.tau if spread is not None else 0.0
    s = math.sqrt(unit * unit * (1 / n + 1 / reference.n) + tau * tau)
    higher = HIGHER_IS_BETTER.get(reference.metric, True)
    error = _error(reference.metric, value, reference.n)
    drops = []
    for rate, effect in ((rule.warning_rate, 1.0), (rule.critical_rate, 2.0)):
        z = float(special.ndtri(1.0 - rate))
        if _scale(reference.metric) == "arcsine":
            low = max(_arcsine(value) - z * s, 0.0)
            drop = value - math.sin(low) ** 2
        else:  # the error grown by the factor exp(z s): absolute for scores
            growth = math.expm1(z * s)
            drop = growth * error if higher else growth
        least = effect * rule.min_error_increase * (error if higher else 1.0)
        drops.append(max(drop, least))
    return drops[0], drops[1]


class RateSpread(_Frozen):
    """A data-quality rate's base level and window-to-window spread on the reference.

    ``base_rate`` is the rate a new window shows when nothing changed: the reference's
    null rate; for the out-of-range and unseen-category rates (0 on the reference by
    construction) the share of each reference window's values outside the range, or of
    categories absent, in all *other* windows (leave one window out), pooled. ``tau``
    is the between-window spread on the arcsine scale beyond sampling; ``n`` the count
    behind ``base_rate``.

    Examples
    --------
    >>> learn_rate_spread("null_rate", np.array([0, 2, 1, 1]), np.array([500] * 4)).base_rate
    0.002
    """

    metric: str
    base_rate: float = Field(ge=0, le=1)
    n: int = Field(ge=0)
    tau: float = Field(ge=0, allow_inf_nan=False)
    windows: int = Field(ge=0)


def learn_rate_spread(
    metric: str, bad: np.ndarray, n: np.ndarray, *, min_samples: int = 100
) -> RateSpread:
    """The pooled rate and DerSimonian-Laird spread (arcsine scale) of per-window counts
    ``bad`` out of ``n`` (windows with fewer than ``min_samples`` values do not count
    toward the spread)."""
    bad, n = np.asarray(bad, dtype=np.float64), np.asarray(n, dtype=np.float64)
    total = float(n.sum())
    base = float(bad.sum()) / total if total else 0.0
    usable = n >= max(min_samples, 1)
    k = int(np.count_nonzero(usable))
    tau2 = 0.0
    if k >= MIN_WINDOWS:
        tau2 = _between_variance(np.arcsin(np.sqrt(bad[usable] / n[usable])), 4.0 * n[usable])
    return RateSpread(metric=metric, base_rate=base, n=int(total), tau=math.sqrt(tau2), windows=k)


def auto_rate_levels(spread: RateSpread, n: int, rule: AutoThresholdRule) -> tuple[float, float]:
    """The warning and critical levels of a data-quality rate in a window of ``n``
    values: the rate an unchanged window exceeds with probability ``warning_rate``
    (``critical_rate``) on the arcsine scale (the module's rule, higher is worse), and
    at least ``1 + min_error_increase`` (``1 + 2 min_error_increase``) times the base.

    Guarantee: an unchanged window (its rate binomial around ``base_rate``, moving from
    window to window as the reference did) passes the warning level with probability
    at most ``warning_rate``, up to the normal approximation of the arcsine-transformed
    rate (Anscombe 1948), which holds for small base rates too. The base rate and
    ``tau`` are estimated, so the realised rate scatters around it;
    ``tests/detectors/test_thresholds.py`` measures it over many seeds for bases of 0,
    1% and 20% at 500, 2,000 and 10,000 values, and for a heavy-tailed feature's
    out-of-range rate.

    Examples
    --------
    >>> spread = RateSpread(metric="null_rate", base_rate=0.01, n=50_000, tau=0.0, windows=10)
    >>> warning, critical = auto_rate_levels(spread, 2_000, AutoThresholdRule())
    >>> round(warning, 4), round(critical, 4)
    (0.0202, 0.0236)
    """
    n = max(n, 1)
    s = math.sqrt(1 / (4 * n) + 1 / (4 * max(spread.n, 1)) + spread.tau**2)
    levels = []
    for rate, effect in ((rule.warning_rate, 1.0), (rule.critical_rate, 2.0)):
        z = float(special.ndtri(1.0 - rate))
        high = min(_arcsine(spread.base_rate) + z * s, math.pi / 2)
        least = spread.base_rate * (1.0 + effect * rule.min_error_increase)
        levels.append(max(math.sin(high) ** 2, least))
    return levels[0], levels[1]
