"""Anytime-valid comparison of a challenger version with the champion (safe rollout).

A rollout compares a challenger with the champion after every closed window and
decides, at any window, to promote it, to reject it or to go on. Checking a fixed-sample
test after every window inflates its error far beyond its level (each look is another
chance for noise to cross the line); a **confidence sequence** (CS) instead holds at all
times at once: ``P(there is a window t at which d is outside CS_t) <= alpha``, so every
decision taken from it, at whatever window, keeps the error level ``alpha``.

Mixture bound for bounded means
    For observations ``X_i`` in ``[0, 1]`` with conditional mean ``p`` given the past,
    and any ``q``, ``E[(q / p)^X ((1 - q) / (1 - p))^(1 - X)] <= 1`` (the function is
    convex in ``X``, so its mean is at most that of a Bernoulli(p) variable, which is 1).
    Mixing ``q`` over a Beta(a, b) prior gives a nonnegative supermartingale that depends
    on the observations only through ``S_t = sum X_i`` and ``t``::

        M_t(p) = B(a + S_t, b + t - S_t) / B(a, b) / (p^S_t (1 - p)^(t - S_t))

    By Ville's inequality ``P(exists t: M_t(p) >= 1 / alpha) <= alpha``, so
    ``{p : M_t(p) < 1 / alpha}`` is a ``(1 - alpha)`` confidence sequence for ``p``
    (Robbins 1970; the beta-binomial mixture of Howard, Ramdas, McAuliffe and Sekhon,
    "Time-uniform, nonparametric, nonasymptotic confidence sequences", Ann. Statist.
    49(2), 2021, section 3). Its width follows ``sqrt(p (1 - p) / t)``, so rare events
    are measured tightly. Because it needs only sums, a window's evidence merges with
    the previous windows' by addition and the result does not depend on the order of
    the events (the stream and the backtest agree). The prior is Beta(1/2, 1/2)
    (Jeffreys).
Paired comparison (shadow: both versions scored the same events)
    Per labelled event, ``Z = 1`` when only the challenger is right, ``-1`` when only the
    champion is, 0 when both agree (McNemar: only the disagreements carry information).
    ``d = accuracy(challenger) - accuracy(champion) = p10 - p01`` with ``p10 = P(Z = 1)``
    and ``p01 = P(Z = -1)``; a CS at ``alpha / 2`` for each (a union bound, valid
    whatever their dependence) gives ``d`` in ``[lo10 - hi01, hi10 - lo01]``.
Two arms (canary: each event served by one version)
    A CS at ``alpha / 2`` for each arm's accuracy gives ``d`` in ``[lo_ch - hi_cp,
    hi_ch - lo_cp]``.
Losses (regression, log loss)
    A per-event loss clipped to ``[0, bound]`` is scaled to ``[0, 1]`` (paired: the loss
    difference, scaled from ``[-bound, bound]``); ``d`` is then the champion's mean
    clipped loss minus the challenger's, so that a positive ``d`` means better for every
    metric.
Decision (:func:`decide`)
    With a non-inferiority margin ``m``: **promote** when the lower bound exceeds
    ``-m`` (the challenger is not worse by more than the margin), **reject** when the
    upper bound is below ``-m``, otherwise **continue**; nothing is decided before
    ``min_labels``. If in truth ``d <= -m``, a promotion needs the CS to miss ``d``; if
    ``d >= -m``, a rejection does: each wrong decision has probability at most
    ``alpha``, however many windows are checked (``tests/test_rollout.py`` simulates it).
Assumptions
    The pairs (or each arm's events) have a constant conditional mean over the rollout:
    a change in traffic during it (drift) breaks the guarantee, as it breaks any test.

Examples
--------
>>> cs = paired_sequence(PairedCounts(n=4000, challenger_only=260, champion_only=140))
>>> round(cs.estimate, 3), cs.lower > -0.01, decide(cs, margin=0.01, min_labels=200)
(0.03, True, 'promote')
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field
from scipy.special import betaln

__all__ = [
    "ArmCounts",
    "DifferenceSequence",
    "PairedCounts",
    "RolloutDecision",
    "bernoulli_sequence",
    "decide",
    "paired_sequence",
    "two_arm_sequence",
]

RolloutDecision = Literal["promote", "reject", "continue"]

#: Beta prior of the mixture (Jeffreys).
_PRIOR = (0.5, 0.5)
#: Bisection steps: the bounds are found to 2^-60 of the unit interval.
_STEPS = 60


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PairedCounts(_Frozen):
    """Labelled events scored by both versions: how many, and on how many only one was
    right (classification) or the sum of the scaled loss differences (losses).

    Counts of windows add up: ``a + b`` is the evidence of both.

    Examples
    --------
    >>> PairedCounts(n=10, challenger_only=3, champion_only=1) + PairedCounts(n=5)
    PairedCounts(n=15, challenger_only=3.0, champion_only=1.0)
    """

    n: int = Field(default=0, ge=0)
    #: Events only the challenger got right (or, for losses, the sum of the positive
    #: parts of ``(champion loss - challenger loss) / bound``).
    challenger_only: float = Field(default=0, ge=0)
    #: Events only the champion got right (losses: the negative parts, as positive sums).
    champion_only: float = Field(default=0, ge=0)

    def __add__(self, other: PairedCounts) -> PairedCounts:
        return PairedCounts(
            n=self.n + other.n,
            challenger_only=self.challenger_only + other.challenger_only,
            champion_only=self.champion_only + other.champion_only,
        )


class ArmCounts(_Frozen):
    """One arm's labelled events and the sum of its per-event scores in ``[0, 1]``
    (correct predictions, or ``1 - clipped loss / bound``).

    Examples
    --------
    >>> ArmCounts(n=100, score=91) + ArmCounts(n=50, score=44)
    ArmCounts(n=150, score=135.0)
    """

    n: int = Field(default=0, ge=0)
    score: float = Field(default=0, ge=0)

    def __add__(self, other: ArmCounts) -> ArmCounts:
        return ArmCounts(n=self.n + other.n, score=float(self.score + other.score))


class DifferenceSequence(_Frozen):
    """The confidence sequence on ``d = metric(challenger) - metric(champion)`` (positive:
    the challenger is better) after the evidence so far.

    Examples
    --------
    >>> DifferenceSequence(estimate=0.02, lower=-0.01, upper=0.05, n=900, alpha=0.05).n
    900
    """

    estimate: float
    lower: float
    upper: float
    n: int
    alpha: float


def bernoulli_sequence(
    successes: npt.ArrayLike, trials: npt.ArrayLike, alpha: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The ``(1 - alpha)`` confidence sequence for the mean of ``[0, 1]`` observations
    from their sum and count (see the module docstring), vectorised: lower and upper
    bounds for every pair of ``successes`` and ``trials``.

    Examples
    --------
    >>> lo, hi = bernoulli_sequence([50, 0], [100, 100], alpha=0.05)
    >>> lo.round(3).tolist(), hi.round(3).tolist()  # a fixed-sample 95% CI: 0.40-0.60
    ([0.338, 0.0], [0.662, 0.057])
    """
    if not 0 < alpha < 1:
        raise ValueError("alpha must lie in (0, 1)")
    s = np.asarray(successes, dtype=np.float64)
    t = np.asarray(trials, dtype=np.float64)
    s, t = np.broadcast_arrays(s, t)
    if np.any(t < 0) or np.any(s < 0) or np.any(s > t):
        raise ValueError("successes must lie in [0, trials]")
    a, b = _PRIOR
    threshold = math.log(1 / alpha)
    log_mixture = betaln(a + s, b + t - s) - betaln(a, b)

    def excess(p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """``log M_t(p) - log(1 / alpha)``: negative inside the sequence."""
        with np.errstate(divide="ignore", invalid="ignore"):
            log_likelihood = np.where(s > 0, s * np.log(p), 0.0) + np.where(
                t - s > 0, (t - s) * np.log1p(-p), 0.0
            )
        return np.asarray(log_mixture - log_likelihood - threshold)

    center = np.where(t > 0, s / np.maximum(t, 1), 0.5)
    lower = _bisect(excess, np.zeros_like(center), center, inside_high=True)
    upper = _bisect(excess, center, np.ones_like(center), inside_high=False)
    return lower, upper


_Curve = Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]]


def _bisect(
    excess: _Curve, low: npt.NDArray[np.float64], high: npt.NDArray[np.float64], inside_high: bool
) -> npt.NDArray[np.float64]:
    """The boundary of the sequence in ``[low, high]``: the bound nearest the outside end
    (``low`` when ``inside_high``), where ``excess`` changes sign; the end itself when the
    whole interval is inside."""
    lo, hi = low.copy(), high.copy()
    outside_end = lo if inside_high else hi
    inside_everywhere = excess(outside_end) < 0
    for _ in range(_STEPS):
        mid = (lo + hi) / 2
        mid_inside = excess(mid) < 0
        if inside_high:  # outside below the bound, inside above it
            hi = np.where(mid_inside, mid, hi)
            lo = np.where(mid_inside, lo, mid)
        else:  # inside below the bound, outside above it
            lo = np.where(mid_inside, mid, lo)
            hi = np.where(mid_inside, hi, mid)
    bound = lo if inside_high else hi
    return np.where(inside_everywhere, outside_end, bound)


def paired_sequence(counts: PairedCounts, alpha: float = 0.05) -> DifferenceSequence:
    """The confidence sequence on ``d = p10 - p01`` of paired (shadow) evidence.

    Examples
    --------
    >>> cs = paired_sequence(PairedCounts(n=1000, challenger_only=40, champion_only=70))
    >>> round(cs.estimate, 3), round(cs.lower, 3), round(cs.upper, 3)
    (-0.03, -0.085, 0.025)
    """
    if counts.n == 0:
        return DifferenceSequence(estimate=0.0, lower=-1.0, upper=1.0, n=0, alpha=alpha)
    (lo, hi) = bernoulli_sequence(
        [counts.challenger_only, counts.champion_only], [counts.n, counts.n], alpha / 2
    )
    estimate = (counts.challenger_only - counts.champion_only) / counts.n
    return DifferenceSequence(
        estimate=estimate,
        lower=float(lo[0] - hi[1]),
        upper=float(hi[0] - lo[1]),
        n=counts.n,
        alpha=alpha,
    )


def two_arm_sequence(
    challenger: ArmCounts, champion: ArmCounts, alpha: float = 0.05
) -> DifferenceSequence:
    """The confidence sequence on the difference of two independent arms' mean scores
    (canary).

    Examples
    --------
    >>> cs = two_arm_sequence(ArmCounts(n=3000, score=2790), ArmCounts(n=3000, score=2700))
    >>> round(cs.estimate, 3), round(cs.lower, 3), round(cs.upper, 3)
    (0.03, -0.01, 0.07)
    """
    if challenger.n == 0 or champion.n == 0:
        n = min(challenger.n, champion.n)
        return DifferenceSequence(estimate=0.0, lower=-1.0, upper=1.0, n=n, alpha=alpha)
    lo, hi = bernoulli_sequence(
        [challenger.score, champion.score], [challenger.n, champion.n], alpha / 2
    )
    estimate = challenger.score / challenger.n - champion.score / champion.n
    return DifferenceSequence(
        estimate=estimate,
        lower=float(lo[0] - hi[1]),
        upper=float(hi[0] - lo[1]),
        n=min(challenger.n, champion.n),
        alpha=alpha,
    )


def decide(sequence: DifferenceSequence, *, margin: float, min_labels: int) -> RolloutDecision:
    """Promote, reject or continue (see "Decision" in the module docstring).

    Examples
    --------
    >>> cs = DifferenceSequence(estimate=0.0, lower=-0.02, upper=0.02, n=5000, alpha=0.05)
    >>> decide(cs, margin=0.01, min_labels=200), decide(cs, margin=0.03, min_labels=200)
    ('continue', 'promote')
    >>> decide(cs, margin=0.03, min_labels=10_000)
    'continue'
    """
    if margin < 0:
        raise ValueError("the margin is a non-negative difference")
    if sequence.n < min_labels:
        return "continue"
    if sequence.lower > -margin:
        return "promote"
    if sequence.upper < -margin:
        return "reject"
    return "continue"
