"""Performance before the labels arrive: confidence-based performance estimation (CBPE)
for classifiers with scores.

After Sec. 3 of NannyML's CBPE (and the expected confusion matrix of calibrated
probabilities): if ``p_i = P(y_i = 1 | score_i)`` is known for every prediction of a
window, the expected confusion matrix of its predictions is

    E[TP] = Σ_{ŷ=1} p_i,  E[FP] = Σ_{ŷ=1} (1 - p_i),
    E[FN] = Σ_{ŷ=0} p_i,  E[TN] = Σ_{ŷ=0} (1 - p_i),

and every metric of the confusion matrix follows. ``p`` comes from the scores through a
calibration learned on the reference.

Calibration (kept or skipped)
    Isotonic regression of the reference's labels on its scores, by pool-adjacent-
    violators (:func:`fit_isotonic`), gives a step function: blocks of scores with one
    probability each. It is **kept** when the reference has at least
    :data:`MIN_CALIBRATION_ROWS` labelled rows with a score and the isotonic fit,
    cross-fitted on the reference's two halves (even and odd rows), has a lower Brier
    score than the raw scores; otherwise it is **skipped** and the raw scores are taken
    as the probabilities (a model trained with log loss is often close to calibrated;
    a small reference would calibrate noise). Skipped, the blocks are
    :data:`RAW_BLOCKS` equal-width score bins and ``p_i`` is the score itself.
Aggregates
    A window needs, per predicted class and block, the number of predictions with a
    finite score and the sums of ``p`` and ``p²`` (:class:`ScoreBlocks`): exact,
    additive, and computed by the store in SQL as by the backtest in numpy.
Interval and its guarantee
    Given the scores, each prediction is right with probability ``q_i`` (``p_i`` or
    ``1 - p_i``), independently, so the realized accuracy has variance
    ``Σ q_i (1 - q_i) / n²``; precision likewise over the positive predictions, recall
    and F1 by the delta method over the independent sums ``TP`` and ``FN``. The
    interval ``estimate ± 1.96 sd`` covers the realized metric of the window's
    predictions about 95% of the time **if the calibration holds in the window**: the
    scores are calibrated on the reference, and ``P(y | score)`` has not changed since
    (no concept drift). Covariate shift (the inputs move, toward the decision boundary
    say) is what CBPE follows; a change of ``P(y | x)`` it cannot see, and the estimate
    then stays where the old concept puts it while the realized metric falls: the
    realized performance, once labels arrive, is the check. ROC AUC is estimated from
    the expected positives and negatives per block (ties within a block count one
    half), without an interval. Measured in ``tests/detectors/test_estimation.py``.
Multiclass
    ``p_i`` is the chance that prediction ``i`` is right, given its own class's score
    (``class_scores[prediction]``, or the row's ``score``), calibrated the same way
    against being right on the reference; all predictions are one side of
    :class:`ScoreBlocks`, and only accuracy (``Σ p_i / n``, the same interval) is
    estimated: the per-class confusion needs every class's probability.
Regression
    Not estimated: the expected error of a regression model needs a model of its
    residuals given the inputs, which a point prediction does not carry.

Examples
--------
>>> rng = np.random.default_rng(0)
>>> scores = rng.random(20_000)
>>> labels = (rng.random(20_000) < scores).astype(int)  # calibrated scores
>>> cal = fit_calibration(scores, labels)
>>> cal.kept, len(cal.probabilities) > 10
(False, True)
>>> window = rng.random(5_000)
>>> blocks = score_blocks(cal, window, window >= 0.5)
>>> est = estimate(blocks)["accuracy"]
>>> round(est.value, 2), est.lower < est.value < est.upper
(0.75, True)
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ESTIMATED_METRICS",
    "MIN_CALIBRATION_ROWS",
    "RAW_BLOCKS",
    "Calibration",
    "Estimate",
    "ScoreBlocks",
    "estimate",
    "fit_calibration",
    "fit_isotonic",
    "score_blocks",
]

#: Labelled reference rows with a score below which the calibration is skipped.
MIN_CALIBRATION_ROWS: Final = 1_000
#: Equal-width score bins when the raw scores stand as the probabilities.
RAW_BLOCKS: Final = 100
#: The metrics estimated for a binary classifier.
ESTIMATED_METRICS: Final = ("accuracy", "precision", "recall", "f1", "roc_auc")
_Z: Final = 1.959963984540054


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def fit_isotonic(
    x: npt.ArrayLike, y: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Pool-adjacent-violators: the non-decreasing step function of ``x`` closest to
    ``y`` in squared error. Returns each block's upper ``x`` and its value.

    Examples
    --------
    >>> upper, value = fit_isotonic([1, 2, 3, 4], [0, 1, 0, 1])
    >>> upper.tolist(), value.tolist()
    ([1.0, 3.0, 4.0], [0.0, 0.5, 1.0])
    """
    order = np.argsort(np.asarray(x, dtype=np.float64), kind="stable")
    xs = np.asarray(x, dtype=np.float64)[order]
    ys = np.asarray(y, dtype=np.float64)[order]
    # equal x are one point: pool them first
    distinct, start = np.unique(xs, return_index=True)
    sums = np.add.reduceat(ys, start) if xs.size else np.empty(0)
    counts = np.diff(np.append(start, xs.size)).astype(np.float64)
    values: list[float] = []
    weights: list[float] = []
    uppers: list[float] = []
    for s, c, u in zip(sums.tolist(), counts.tolist(), distinct.tolist(), strict=True):
        values.append(s / c)
        weights.append(c)
        uppers.append(u)
        while len(values) > 1 and values[-2] >= values[-1]:
            w = weights[-2] + weights[-1]
            v = (values[-2] * weights[-2] + values[-1] * weights[-1]) / w
            values[-2:] = [v]
            weights[-2:] = [w]
            uppers[-2:] = [uppers[-1]]
    return np.asarray(uppers), np.asarray(values)


class Calibration(_Frozen):
    """Scores to probabilities: blocks of scores (``edges``: the inner boundaries, a
    score ``s`` is in block ``#{e <= s}``), each with its probability; ``kept`` says
    whether the isotonic fit is used or the raw scores stand (see the module docstring).

    Examples
    --------
    >>> cal = Calibration(kept=True, edges=(0.5,), probabilities=(0.2, 0.9), n=1000)
    >>> cal.block([0.1, 0.5, 0.7]).tolist(), cal.probability([0.1, 0.7]).tolist()
    ([0, 1, 1], [0.2, 0.9])
    """

    kept: bool
    edges: tuple[float, ...]
    #: Each block's probability (kept), or its centre (skipped: the scores themselves
    #: are the probabilities and the blocks only order them).
    probabilities: tuple[float, ...]
    #: Labelled reference rows it was fitted on, and the cross-fitted Brier scores of
    #: the isotonic fit and of the raw scores.
    n: int = Field(ge=0)
    brier_isotonic: float | None = None
    brier_raw: float | None = None

    def block(self, scores: npt.ArrayLike) -> npt.NDArray[np.intp]:
        """Each score's block."""
        return np.searchsorted(
            np.asarray(self.edges), np.asarray(scores, dtype=np.float64), side="right"
        )

    def probability(self, scores: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """``P(y = 1 | score)`` of each score."""
        s = np.asarray(scores, dtype=np.float64)
        if not self.kept:
            return np.clip(s, 0.0, 1.0)
        return np.asarray(self.probabilities)[self.block(s)]


def _isotonic_calibration(
    scores: npt.NDArray[np.float64], labels: npt.NDArray[np.float64]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    upper, value = fit_isotonic(scores, labels)
    # block b holds scores in (upper[b-1], upper[b]]: inner edges just above each upper
    edges = np.nextafter(upper[:-1], np.inf)
    return tuple(edges.tolist()), tuple(value.tolist())


def fit_calibration(scores: npt.ArrayLike, labels: npt.ArrayLike) -> Calibration:
    """The calibration of a reference's scores (positive-class probabilities) against
    its 0/1 labels (non-finite scores are left out)."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    ok = np.isfinite(s) & np.isfinite(y)
    s, y = np.clip(s[ok], 0.0, 1.0), y[ok]
    raw_edges = tuple((np.arange(1, RAW_BLOCKS) / RAW_BLOCKS).tolist())
    raw_centres = tuple(((np.arange(RAW_BLOCKS) + 0.5) / RAW_BLOCKS).tolist())
    skipped = Calibration(kept=False, edges=raw_edges, probabilities=raw_centres, n=int(s.size))
    if s.size < MIN_CALIBRATION_ROWS:
        return skipped
    halves = (np.arange(s.size) % 2 == 0, np.arange(s.size) % 2 == 1)
    errors = []
    for fit, test in (halves, halves[::-1]):
        edges, probabilities = _isotonic_calibration(s[fit], y[fit])
        p = np.asarray(probabilities)[np.searchsorted(np.asarray(edges), s[test], side="right")]
        errors.append(((p - y[test]) ** 2).sum())
    isotonic = float(sum(errors)) / s.size
    raw = float(((s - y) ** 2).mean())
    if not isotonic < raw:
        return skipped.model_copy(update={"brier_isotonic": isotonic, "brier_raw": raw})
    edges, probabilities = _isotonic_calibration(s, y)
    return Calibration(
        kept=True,
        edges=edges,
        probabilities=probabilities,
        n=int(s.size),
        brier_isotonic=isotonic,
        brier_raw=raw,
    )


class ScoreBlocks(_Frozen):
    """A window's predictions with a finite score, per predicted class (negative,
    positive) and block: their count and the sums of ``p`` and ``p²``.

    Examples
    --------
    >>> a = ScoreBlocks(n=((1, 0), (0, 2)), p=((0.2, 0.0), (0.0, 1.5)),
    ...                 p2=((0.04, 0.0), (0.0, 1.13)))
    >>> (a + a).n
    ((2, 0), (0, 4))
    """

    n: tuple[tuple[int, ...], tuple[int, ...]]
    p: tuple[tuple[float, ...], tuple[float, ...]]
    p2: tuple[tuple[float, ...], tuple[float, ...]]

    def __add__(self, other: ScoreBlocks) -> ScoreBlocks:
        def add(
            a: tuple[tuple[float, ...], ...], b: tuple[tuple[float, ...], ...]
        ) -> tuple[tuple[float, ...], tuple[float, ...]]:
            out = (np.asarray(a) + np.asarray(b)).tolist()
            return (tuple(out[0]), tuple(out[1]))

        counts = (np.asarray(self.n) + np.asarray(other.n)).tolist()
        return ScoreBlocks(
            n=(tuple(counts[0]), tuple(counts[1])),
            p=add(self.p, other.p),
            p2=add(self.p2, other.p2),
        )

    @property
    def total(self) -> int:
        """Predictions counted."""
        return int(np.asarray(self.n).sum())


def score_blocks(
    calibration: Calibration, scores: npt.ArrayLike, predicted_positive: npt.ArrayLike
) -> ScoreBlocks:
    """The :class:`ScoreBlocks` of a window's predictions (non-finite scores left out)."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    positive = np.asarray(predicted_positive, dtype=bool).reshape(-1)
    ok = np.isfinite(s)
    s, positive = s[ok], positive[ok]
    blocks = calibration.block(s)
    p = calibration.probability(s)
    k = len(calibration.edges) + 1
    index = positive.astype(np.intp) * k + blocks
    n = np.bincount(index, minlength=2 * k).reshape(2, k)
    sums = np.bincount(index, weights=p, minlength=2 * k).reshape(2, k)
    squares = np.bincount(index, weights=p * p, minlength=2 * k).reshape(2, k)
    return ScoreBlocks(
        n=(tuple(n[0].tolist()), tuple(n[1].tolist())),
        p=(tuple(sums[0].tolist()), tuple(sums[1].tolist())),
        p2=(tuple(squares[0].tolist()), tuple(squares[1].tolist())),
    )


class Estimate(_Frozen):
    """An estimated metric and its 95% sampling interval (``None`` where not stated).

    Examples
    --------
    >>> Estimate(metric="accuracy", value=0.9, lower=0.88, upper=0.92, n=2000).upper
    0.92
    """

    metric: str
    value: float | None
    lower: float | None = None
    upper: float | None = None
    n: int = Field(ge=0)


def _interval(metric: str, value: float, variance: float, n: int) -> Estimate:
    sd = math.sqrt(max(variance, 0.0))
    return Estimate(
        metric=metric,
        value=value,
        lower=max(0.0, value - _Z * sd),
        upper=min(1.0, value + _Z * sd),
        n=n,
    )


def estimate(blocks: ScoreBlocks) -> dict[str, Estimate]:
    """The estimated metrics of a window (:data:`ESTIMATED_METRICS`; a metric whose
    denominator is expected to be 0 has no value)."""
    n = np.asarray(blocks.n, dtype=np.float64)
    p = np.asarray(blocks.p, dtype=np.float64)
    v = p - np.asarray(blocks.p2, dtype=np.float64)  # Σ p (1 - p) per class and block
    total = int(n.sum())
    n_neg, n_pos = float(n[0].sum()), float(n[1].sum())
    tp, fn = float(p[1].sum()), float(p[0].sum())
    tn = n_neg - fn
    var_tp, var_fn = float(v[1].sum()), float(v[0].sum())
    out: dict[str, Estimate] = {}
    if total:
        out["accuracy"] = _interval(
            "accuracy", (tp + tn) / total, (var_tp + var_fn) / total**2, total
        )
    else:
        out["accuracy"] = Estimate(metric="accuracy", value=None, n=0)
    out["precision"] = (
        _interval("precision", tp / n_pos, var_tp / n_pos**2, int(n_pos))
        if n_pos
        else Estimate(metric="precision", value=None, n=0)
    )
    positives = tp + fn
    if positives > 0:
        recall = tp / positives
        variance = (fn**2 * var_tp + tp**2 * var_fn) / positives**4
        out["recall"] = _interval("recall", recall, variance, round(positives))
    else:
        out["recall"] = Estimate(metric="recall", value=None, n=0)
    denominator = tp + n_pos + fn
    if denominator > 0:
        f1 = 2 * tp / denominator
        d_tp = 2 * (n_pos + fn) / denominator**2
        d_fn = -2 * tp / denominator**2
        out["f1"] = _interval("f1", f1, d_tp**2 * var_tp + d_fn**2 * var_fn, total)
    else:
        out["f1"] = Estimate(metric="f1", value=None, n=0)
    pos_b = p.sum(axis=0)
    neg_b = n.sum(axis=0) - pos_b
    if pos_b.sum() > 0 and neg_b.sum() > 0:
        above = np.cumsum(pos_b[::-1])[::-1] - pos_b  # expected positives in higher blocks
        auc = float((neg_b * (above + 0.5 * pos_b)).sum() / (pos_b.sum() * neg_b.sum()))
        out["roc_auc"] = Estimate(metric="roc_auc", value=auc, n=total)
    else:
        out["roc_auc"] = Estimate(metric="roc_auc", value=None, n=total)
    return out
