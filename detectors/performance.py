"""Model performance per window, from predictions joined with labels.

The core works on *counts* (sufficient statistics), so the same numbers come out
whether a window is aggregated from numpy arrays (``from_arrays``) or by SQL in the
store: :class:`BinaryCounts` (confusion counts, score histograms per class, log-loss
sums), :class:`MulticlassCounts` (confusion matrix) and :class:`RegressionCounts`
(error moment sums). Counts merge by addition.

Confidence intervals (95 % by default):

* accuracy, precision, recall: Wilson score interval;
* F1 and macro-F1: multinomial bootstrap over the confusion cells
  (1,000 / 500 resamples, fixed seed, so the interval is deterministic);
* ROC AUC: Hanley & McNeil (1982) standard error, normal approximation;
* log loss, MAE, MAPE: normal approximation from the per-row second moment;
  RMSE: delta method on the MSE's normal approximation.

ROC AUC comes from scores quantised on a grid of :data:`SCORE_BINS` bins over [0, 1]
(``bin = min(floor(score * SCORE_BINS), SCORE_BINS - 1)``), using the Mann-Whitney
statistic with ties counted one half. It is exact for scores with at most three
decimals; otherwise its error is at most half the share of positive-negative pairs
that fall in the same bin. :func:`roc_auc` gives the exact rank-based value on raw
scores.

Degradation (:func:`assess_degradation`) compares a window's metric with the
reference: the *drop* is ``reference - current`` for scores in [0, 1] and the relative
increase ``(current - reference) / reference`` for error metrics (log loss, MAE,
RMSE, MAPE). A drop past ``warning_drop``/``critical_drop`` counts only when it is
significant at ``significance`` (one-sided): a two-proportion z-test for accuracy,
precision and recall; otherwise a z-test on the difference with standard errors
taken from the two confidence intervals. Below ``min_labels`` labelled rows the
verdict is ``insufficient``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final, Literal, TypeAlias

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import special, stats

from .coerce import as_float_array, category_array
from .verdict import Verdict, grade

__all__ = [
    "HIGHER_IS_BETTER",
    "SCORE_BINS",
    "BinaryCounts",
    "MetricEstimate",
    "MulticlassCounts",
    "PerformanceCounts",
    "PerformanceResult",
    "ReferencePerformance",
    "RegressionCounts",
    "alert_level",
    "assess_degradation",
    "performance_counts",
    "roc_auc",
    "wilson_interval",
]

#: Grid of the score histograms used for ROC AUC.
SCORE_BINS: Final[int] = 1000
#: Whether a larger value is better, per metric.
HIGHER_IS_BETTER: Final[Mapping[str, bool]] = {
    "accuracy": True,
    "precision": True,
    "recall": True,
    "f1": True,
    "roc_auc": True,
    "macro_f1": True,
    "log_loss": False,
    "mae": False,
    "rmse": False,
    "mape": False,
}
_PROPORTIONS: Final[frozenset[str]] = frozenset({"accuracy", "precision", "recall"})
LOG_EPS: Final[float] = 1e-15
_BOOT_SEED: Final[int] = 20_240_601

CIMethod: TypeAlias = Literal["wilson", "bootstrap", "hanley_mcneil", "normal", "delta"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion.

    Examples
    --------
    >>> lo, hi = wilson_interval(80, 100)
    >>> round(lo, 4), round(hi, 4)
    (0.7112, 0.8666)
    """
    if n <= 0:
        return 0.0, 1.0
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if successes <= 0 else max(0.0, centre - half)
    hi = 1.0 if successes >= n else min(1.0, centre + half)
    return lo, hi


def roc_auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float | None:
    """Exact ROC AUC from raw scores (Mann-Whitney U over average ranks).

    Parameters
    ----------
    labels
        1 (or ``True``) for positives, 0 for negatives.
    scores
        Scores, larger meaning more likely positive.

    Returns
    -------
    float or None
        The AUC, or ``None`` when one class is missing.

    Examples
    --------
    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    y = np.asarray(labels).astype(bool).reshape(-1)
    s = as_float_array(scores)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = stats.rankdata(s)
    u = float(ranks[y].sum()) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


class MetricEstimate(_Frozen):
    """One performance metric of one window (or of the reference), with its interval.

    ``n`` is the metric's own denominator (rows for accuracy, predicted positives for
    precision, actual positives for recall, labelled rows otherwise); ``successes`` is
    its numerator for proportions.

    Examples
    --------
    >>> m = BinaryCounts.from_arrays([1, 0, 1, 1], [1, 0, 0, 1]).metrics()["accuracy"]
    >>> m.value, m.n, m.successes, m.ci_method
    (0.75, 4, 3, 'wilson')
    """

    metric: str
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    ci_method: CIMethod | None = None
    n: int = Field(ge=0)
    successes: int | None = None
    n_labelled: int = Field(ge=0)
    n_predicted: int = Field(ge=0)

    @property
    def label_coverage(self) -> float:
        """Labelled rows over predicted rows (0 when nothing was predicted)."""
        return self.n_labelled / self.n_predicted if self.n_predicted else 0.0

    @property
    def standard_error(self) -> float | None:
        """Standard error implied by the 95 % interval (half width / 1.96)."""
        if self.ci_low is None or self.ci_high is None:
            return None
        return (self.ci_high - self.ci_low) / (2 * 1.959963984540054)


def _proportion(metric: str, k: int, n: int, n_lab: int, n_pred: int) -> MetricEstimate:
    if n == 0:
        return MetricEstimate(
            metric=metric, value=None, n=0, successes=0, n_labelled=n_lab, n_predicted=n_pred
        )
    lo, hi = wilson_interval(k, n)
    return MetricEstimate(
        metric=metric,
        value=k / n,
        ci_low=lo,
        ci_high=hi,
        ci_method="wilson",
        n=n,
        successes=k,
        n_labelled=n_lab,
        n_predicted=n_pred,
    )


def _normal_mean(
    metric: str, total: float, total_sq: float, n: int, n_lab: int, n_pred: int
) -> MetricEstimate:
    if n == 0:
        return MetricEstimate(metric=metric, value=None, n=0, n_labelled=n_lab, n_predicted=n_pred)
    mean = total / n
    var = max(total_sq / n - mean * mean, 0.0) * (n / (n - 1) if n > 1 else 0.0)
    half = 1.959963984540054 * math.sqrt(var / n)
    return MetricEstimate(
        metric=metric,
        value=mean,
        ci_low=max(mean - half, 0.0),
        ci_high=mean + half,
        ci_method="normal",
        n=n,
        n_labelled=n_lab,
        n_predicted=n_pred,
    )


def _f1_from_cells(tp: npt.NDArray[Any], fp: npt.NDArray[Any], fn: npt.NDArray[Any]) -> Any:
    denom = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), np.nan)


class BinaryCounts(_Frozen):
    """Sufficient statistics of binary-classification performance for one window.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 500)
    >>> score = np.clip(0.3 * y + rng.uniform(0, 0.7, 500), 0, 1)
    >>> counts = BinaryCounts.from_arrays((score > 0.5).astype(int), y, score)
    >>> m = counts.metrics()
    >>> round(m["accuracy"].value, 3), round(m["roc_auc"].value, 3)
    (0.73, 0.858)
    >>> (counts + counts).tp == 2 * counts.tp
    True
    """

    kind: Literal["binary"] = "binary"
    positive_label: str = "1"
    n_predicted: int = Field(ge=0)
    tp: int = Field(ge=0)
    fp: int = Field(ge=0)
    tn: int = Field(ge=0)
    fn: int = Field(ge=0)
    n_scored: int = Field(default=0, ge=0)
    score_positive: tuple[int, ...] = ()
    score_negative: tuple[int, ...] = ()
    log_loss_sum: float = Field(default=0.0, ge=0)
    log_loss_sq_sum: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> BinaryCounts:
        for hist in (self.score_positive, self.score_negative):
            if hist and len(hist) != SCORE_BINS:
                raise ValueError(f"score histograms need {SCORE_BINS} bins")
        return self

    @property
    def n_labelled(self) -> int:
        """Labelled rows."""
        return self.tp + self.fp + self.tn + self.fn

    @classmethod
    def from_arrays(
        cls,
        predictions: npt.ArrayLike,
        labels: npt.ArrayLike,
        scores: npt.ArrayLike | None = None,
        positive_label: str = "1",
    ) -> BinaryCounts:
        """Aggregate aligned arrays; a null label marks an unlabelled row.

        ``scores`` is the positive-class probability; rows whose score is not finite
        count for the confusion matrix but not for AUC and log loss.
        """
        pred, _ = category_array(predictions)
        lab, unlabelled = category_array(labels)
        if pred.size != lab.size:
            raise ValueError("predictions and labels must have the same length")
        keep = ~unlabelled
        p_pos = pred[keep] == positive_label
        y_pos = lab[keep] == positive_label
        tp = int(np.count_nonzero(p_pos & y_pos))
        fp = int(np.count_nonzero(p_pos & ~y_pos))
        fn = int(np.count_nonzero(~p_pos & y_pos))
        tn = int(y_pos.size - tp - fp - fn)
        extra: dict[str, Any] = {}
        if scores is not None:
            s = as_float_array(scores)
            if s.size != pred.size:
                raise ValueError("scores and predictions must have the same length")
            s = s[keep]
            ok = np.isfinite(s)
            s = np.clip(s[ok], 0.0, 1.0)
            y = y_pos[ok]
            idx = np.minimum((s * SCORE_BINS).astype(np.int64), SCORE_BINS - 1)
            pos = np.bincount(idx[y], minlength=SCORE_BINS)
            neg = np.bincount(idx[~y], minlength=SCORE_BINS)
            pc = np.clip(s, LOG_EPS, 1 - LOG_EPS)
            losses = -np.where(y, np.log(pc), np.log1p(-pc))
            extra = {
                "n_scored": int(s.size),
                "score_positive": tuple(pos.tolist()),
                "score_negative": tuple(neg.tolist()),
                "log_loss_sum": float(losses.sum()),
                "log_loss_sq_sum": float(np.square(losses).sum()),
            }
        return cls(
            positive_label=positive_label,
            n_predicted=int(pred.size),
            tp=tp,
            fp=fp,
            tn=tn,
            fn=fn,
            **extra,
        )

    def __add__(self, other: BinaryCounts) -> BinaryCounts:
        """Merge two windows' counts."""
        if other.positive_label != self.positive_label:
            raise ValueError("cannot merge counts with different positive labels")

        def hist(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
            if not a:
                return b
            if not b:
                return a
            return tuple((np.asarray(a) + np.asarray(b)).tolist())

        return BinaryCounts(
            positive_label=self.positive_label,
            n_predicted=self.n_predicted + other.n_predicted,
            tp=self.tp + other.tp,
            fp=self.fp + other.fp,
            tn=self.tn + other.tn,
            fn=self.fn + other.fn,
            n_scored=self.n_scored + other.n_scored,
            score_positive=hist(self.score_positive, other.score_positive),
            score_negative=hist(self.score_negative, other.score_negative),
            log_loss_sum=self.log_loss_sum + other.log_loss_sum,
            log_loss_sq_sum=self.log_loss_sq_sum + other.log_loss_sq_sum,
        )

    def _auc(self) -> MetricEstimate:
        n_lab, n_pred = self.n_labelled, self.n_predicted
        pos = np.asarray(self.score_positive, dtype=np.float64)
        neg = np.asarray(self.score_negative, dtype=np.float64)
        n_pos, n_neg = float(pos.sum()), float(neg.sum())
        if n_pos == 0 or n_neg == 0:
            return MetricEstimate(
                metric="roc_auc", value=None, n=self.n_scored, n_labelled=n_lab, n_predicted=n_pred
            )
        neg_below = np.cumsum(neg) - neg
        auc = float((pos * (neg_below + 0.5 * neg)).sum() / (n_pos * n_neg))
        q1 = auc / (2 - auc)
        q2 = 2 * auc * auc / (1 + auc)
        var = (
            auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)
        ) / (n_pos * n_neg)
        half = 1.959963984540054 * math.sqrt(max(var, 0.0))
        return MetricEstimate(
            metric="roc_auc",
            value=auc,
            ci_low=max(0.0, auc - half),
            ci_high=min(1.0, auc + half),
            ci_method="hanley_mcneil",
            n=self.n_scored,
            n_labelled=n_lab,
            n_predicted=n_pred,
        )

    def _f1(self) -> MetricEstimate:
        n = self.n_labelled
        value = _f1_from_cells(np.asarray(self.tp), np.asarray(self.fp), np.asarray(self.fn))
        if n == 0 or not np.isfinite(value):
            return MetricEstimate(
                metric="f1", value=None, n=n, n_labelled=n, n_predicted=self.n_predicted
            )
        rng = np.random.default_rng(_BOOT_SEED)
        cells = np.array([self.tp, self.fp, self.fn, self.tn], dtype=np.float64)
        draws = rng.multinomial(n, cells / n, size=1000)
        boot = _f1_from_cells(draws[:, 0], draws[:, 1], draws[:, 2])
        lo, hi = np.nanpercentile(boot, [2.5, 97.5])
        return MetricEstimate(
            metric="f1",
            value=float(value),
            ci_low=float(lo),
            ci_high=float(hi),
            ci_method="bootstrap",
            n=n,
            n_labelled=n,
            n_predicted=self.n_predicted,
        )

    def metrics(self) -> dict[str, MetricEstimate]:
        """accuracy, precision, recall, f1, and (with scores) roc_auc and log_loss."""
        n, n_pred = self.n_labelled, self.n_predicted
        out = {
            "accuracy": _proportion("accuracy", self.tp + self.tn, n, n, n_pred),
            "precision": _proportion("precision", self.tp, self.tp + self.fp, n, n_pred),
            "recall": _proportion("recall", self.tp, self.tp + self.fn, n, n_pred),
            "f1": self._f1(),
        }
        if self.score_positive:
            out["roc_auc"] = self._auc()
            out["log_loss"] = _normal_mean(
                "log_loss", self.log_loss_sum, self.log_loss_sq_sum, self.n_scored, n, n_pred
            )
        return out


class MulticlassCounts(_Frozen):
    """Confusion matrix of a multiclass window (rows: true class, columns: predicted).

    Examples
    --------
    >>> c = MulticlassCounts.from_arrays(["a", "b", "c", "c"], ["a", "b", "b", "c"])
    >>> c.classes, c.metrics()["accuracy"].value, round(c.metrics()["macro_f1"].value, 4)
    (('a', 'b', 'c'), 0.75, 0.7778)
    """

    kind: Literal["multiclass"] = "multiclass"
    n_predicted: int = Field(ge=0)
    classes: tuple[str, ...] = ()
    matrix: tuple[tuple[int, ...], ...] = ()

    @model_validator(mode="after")
    def _check(self) -> MulticlassCounts:
        k = len(self.classes)
        if len(self.matrix) != k or any(len(row) != k for row in self.matrix):
            raise ValueError("matrix must be square over classes")
        if list(self.classes) != sorted(set(self.classes)):
            raise ValueError("classes must be sorted and unique")
        return self

    @property
    def n_labelled(self) -> int:
        """Labelled rows."""
        return int(np.asarray(self.matrix, dtype=np.int64).sum()) if self.classes else 0

    @classmethod
    def from_arrays(cls, predictions: npt.ArrayLike, labels: npt.ArrayLike) -> MulticlassCounts:
        """Aggregate aligned arrays; a null label marks an unlabelled row."""
        pred, _ = category_array(predictions)
        lab, unlabelled = category_array(labels)
        if pred.size != lab.size:
            raise ValueError("predictions and labels must have the same length")
        keep = ~unlabelled
        p, y = pred[keep], lab[keep]
        classes, inverse = np.unique(np.concatenate([y, p]), return_inverse=True)
        k = classes.size
        yi, pi = inverse[: y.size], inverse[y.size :]
        mat = np.bincount(yi * k + pi, minlength=k * k).reshape(k, k)
        return cls(
            n_predicted=int(pred.size),
            classes=tuple(classes.tolist()),
            matrix=tuple(tuple(row) for row in mat.tolist()),
        )

    def _dense(self, classes: tuple[str, ...]) -> npt.NDArray[np.int64]:
        index = {c: i for i, c in enumerate(classes)}
        pos = np.array([index[c] for c in self.classes], dtype=np.int64)
        out = np.zeros((len(classes), len(classes)), dtype=np.int64)
        if pos.size:
            out[np.ix_(pos, pos)] = np.asarray(self.matrix, dtype=np.int64)
        return out

    def __add__(self, other: MulticlassCounts) -> MulticlassCounts:
        """Merge two windows' counts (class lists are united)."""
        classes = tuple(sorted(set(self.classes) | set(other.classes)))
        mat = self._dense(classes) + other._dense(classes)
        return MulticlassCounts(
            n_predicted=self.n_predicted + other.n_predicted,
            classes=classes,
            matrix=tuple(tuple(row) for row in mat.tolist()),
        )

    def metrics(self) -> dict[str, MetricEstimate]:
        """accuracy and macro_f1 (mean F1 over classes that occur as label or prediction)."""
        k = len(self.classes)
        mat = np.asarray(self.matrix, dtype=np.int64).reshape(k, k)  # (0, 0) without labels
        n = int(mat.sum())
        acc = _proportion("accuracy", int(np.trace(mat)) if n else 0, n, n, self.n_predicted)
        if n == 0:
            f1 = MetricEstimate(
                metric="macro_f1", value=None, n=0, n_labelled=0, n_predicted=self.n_predicted
            )
            return {"accuracy": acc, "macro_f1": f1}
        value = float(_macro_f1(mat[None, :, :])[0])
        rng = np.random.default_rng(_BOOT_SEED)
        draws = rng.multinomial(n, mat.reshape(-1) / n, size=500).reshape(-1, k, k)
        lo, hi = np.nanpercentile(_macro_f1(draws), [2.5, 97.5])
        f1 = MetricEstimate(
            metric="macro_f1",
            value=value,
            ci_low=float(lo),
            ci_high=float(hi),
            ci_method="bootstrap",
            n=n,
            n_labelled=n,
            n_predicted=self.n_predicted,
        )
        return {"accuracy": acc, "macro_f1": f1}


def _macro_f1(mats: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """Macro F1 of a stack of confusion matrices ``(b, k, k)``."""
    tp = np.diagonal(mats, axis1=1, axis2=2).astype(np.float64)
    support = mats.sum(axis=2)
    predicted = mats.sum(axis=1)
    denom = support + predicted
    present = denom > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(present, 2 * tp / np.where(present, denom, 1), 0.0)
        out = f1.sum(axis=1) / present.sum(axis=1)
    return np.asarray(out, dtype=np.float64)


class RegressionCounts(_Frozen):
    """Error moment sums of a regression window.

    ``mape`` is a fraction (0.1 = 10 %) over rows whose label is not zero.

    Examples
    --------
    >>> c = RegressionCounts.from_arrays([1.0, 2.0, 4.0], [1.0, 3.0, 2.0])
    >>> m = c.metrics()
    >>> m["mae"].value, round(m["rmse"].value, 4), round(m["mape"].value, 4)
    (1.0, 1.291, 0.4444)
    """

    kind: Literal["regression"] = "regression"
    n_predicted: int = Field(ge=0)
    n: int = Field(ge=0)
    abs_sum: float = Field(default=0.0, ge=0)
    sq_sum: float = Field(default=0.0, ge=0)
    quad_sum: float = Field(default=0.0, ge=0)
    n_pct: int = Field(default=0, ge=0)
    pct_sum: float = Field(default=0.0, ge=0)
    pct_sq_sum: float = Field(default=0.0, ge=0)

    @property
    def n_labelled(self) -> int:
        """Labelled rows."""
        return self.n

    @classmethod
    def from_arrays(cls, predictions: npt.ArrayLike, labels: npt.ArrayLike) -> RegressionCounts:
        """Aggregate aligned arrays; a null (NaN/None) label marks an unlabelled row."""
        pred = as_float_array(predictions)
        lab = as_float_array(labels)
        if pred.size != lab.size:
            raise ValueError("predictions and labels must have the same length")
        keep = np.isfinite(lab) & np.isfinite(pred)
        err = pred[keep] - lab[keep]
        sq = np.square(err)
        y = lab[keep]
        nz = y != 0
        pct = np.abs(err[nz] / y[nz])
        return cls(
            n_predicted=int(pred.size),
            n=int(err.size),
            abs_sum=float(np.abs(err).sum()),
            sq_sum=float(sq.sum()),
            quad_sum=float(np.square(sq).sum()),
            n_pct=int(pct.size),
            pct_sum=float(pct.sum()),
            pct_sq_sum=float(np.square(pct).sum()),
        )

    def __add__(self, other: RegressionCounts) -> RegressionCounts:
        """Merge two windows' sums."""
        return RegressionCounts(
            n_predicted=self.n_predicted + other.n_predicted,
            n=self.n + other.n,
            abs_sum=self.abs_sum + other.abs_sum,
            sq_sum=self.sq_sum + other.sq_sum,
            quad_sum=self.quad_sum + other.quad_sum,
            n_pct=self.n_pct + other.n_pct,
            pct_sum=self.pct_sum + other.pct_sum,
            pct_sq_sum=self.pct_sq_sum + other.pct_sq_sum,
        )

    def metrics(self) -> dict[str, MetricEstimate]:
        """mae, rmse and mape."""
        n, n_pred = self.n, self.n_predicted
        mae = _normal_mean("mae", self.abs_sum, self.sq_sum, n, n, n_pred)
        mape = _normal_mean("mape", self.pct_sum, self.pct_sq_sum, self.n_pct, n, n_pred)
        mse = _normal_mean("mse", self.sq_sum, self.quad_sum, n, n, n_pred)
        if mse.value is None:
            rmse = MetricEstimate(metric="rmse", value=None, n=0, n_labelled=n, n_predicted=n_pred)
        else:
            value = math.sqrt(mse.value)
            se_mse = mse.standard_error or 0.0
            half = 1.959963984540054 * (se_mse / (2 * value) if value > 0 else 0.0)
            rmse = MetricEstimate(
                metric="rmse",
                value=value,
                ci_low=max(0.0, value - half),
                ci_high=value + half,
                ci_method="delta",
                n=n,
                n_labelled=n,
                n_predicted=n_pred,
            )
        return {"mae": mae, "rmse": rmse, "mape": mape}


#: Counts of any task, discriminated by ``kind``.
PerformanceCounts: TypeAlias = BinaryCounts | MulticlassCounts | RegressionCounts


def performance_counts(
    task: str,
    predictions: npt.ArrayLike,
    labels: npt.ArrayLike,
    scores: npt.ArrayLike | None = None,
    positive_label: str = "1",
) -> PerformanceCounts:
    """Counts for ``task`` (``binary_classification``, ``multiclass`` or ``regression``).

    Examples
    --------
    >>> performance_counts("regression", [1.0, 2.0], [1.5, None]).n
    1
    """
    if task == "binary_classification":
        return BinaryCounts.from_arrays(predictions, labels, scores, positive_label)
    if task == "multiclass":
        return MulticlassCounts.from_arrays(predictions, labels)
    if task == "regression":
        return RegressionCounts.from_arrays(predictions, labels)
    raise ValueError(f"unknown task {task!r}")


class ReferencePerformance(_Frozen):
    """Performance of the model on its reference data.

    Examples
    --------
    >>> ref = ReferencePerformance.from_counts(
    ...     "binary_classification", BinaryCounts.from_arrays([1, 0, 1], [1, 0, 0]))
    >>> round(ref.metrics["accuracy"].value, 4)
    0.6667
    """

    task: str
    metrics: dict[str, MetricEstimate]

    @classmethod
    def from_counts(cls, task: str, counts: PerformanceCounts) -> ReferencePerformance:
        """Reference performance from aggregated counts."""
        return cls(task=task, metrics=counts.metrics())


class PerformanceResult(_Frozen):
    """A window's metric judged against the reference.

    Examples
    --------
    >>> cur = BinaryCounts.from_arrays([1] * 800 + [0] * 200, [1] * 1000).metrics()
    >>> ref = BinaryCounts.from_arrays([1] * 900 + [0] * 100, [1] * 1000).metrics()
    >>> r = assess_degradation(cur["accuracy"], ref["accuracy"], warning_drop=0.03,
    ...                        critical_drop=0.05, min_labels=100)
    >>> r.verdict, round(r.drop, 3), r.p_value < 1e-6
    ('critical', 0.1, True)
    """

    metric: str
    value: float | None
    reference: float | None
    drop: float | None
    p_value: float | None
    test: Literal["two_proportion_z", "z"] | None
    ci_low: float | None
    ci_high: float | None
    warning: float
    critical: float
    verdict: Verdict
    n_labelled: int
    n_predicted: int
    label_coverage: float
    higher_is_better: bool


def assess_degradation(
    current: MetricEstimate,
    reference: MetricEstimate | None,
    *,
    warning_drop: float,
    critical_drop: float,
    min_labels: int,
    significance: float = 0.05,
) -> PerformanceResult:
    """Judge a window's metric against its reference value.

    Parameters
    ----------
    current, reference
        The window's and the reference's estimate of the same metric.
    warning_drop, critical_drop
        Thresholds on the drop (absolute for scores, relative for error metrics).
    min_labels
        Fewer labelled rows than this give ``insufficient``.
    significance
        One-sided level the degradation must be significant at.
    """
    metric = current.metric
    higher = HIGHER_IS_BETTER.get(metric, True)
    base: dict[str, Any] = {
        "metric": metric,
        "value": current.value,
        "reference": reference.value if reference is not None else None,
        "ci_low": current.ci_low,
        "ci_high": current.ci_high,
        "warning": warning_drop,
        "critical": critical_drop,
        "n_labelled": current.n_labelled,
        "n_predicted": current.n_predicted,
        "label_coverage": current.label_coverage,
        "higher_is_better": higher,
    }
    if (
        reference is None
        or reference.value is None
        or current.value is None
        or current.n_labelled < min_labels
    ):
        return PerformanceResult(drop=None, p_value=None, test=None, verdict="insufficient", **base)
    diff = reference.value - current.value if higher else current.value - reference.value
    drop = diff if higher or reference.value <= 0 else diff / reference.value
    p_value: float
    test: Literal["two_proportion_z", "z"]
    if (
        metric in _PROPORTIONS
        and current.successes is not None
        and reference.successes is not None
        and reference.n > 0
    ):
        test = "two_proportion_z"
        pooled = (current.successes + reference.successes) / (current.n + reference.n)
        se = math.sqrt(pooled * (1 - pooled) * (1 / current.n + 1 / reference.n))
        p_value = _one_sided(diff, se)
    else:
        test = "z"
        se_c = current.standard_error or 0.0
        se_r = reference.standard_error or 0.0
        p_value = _one_sided(diff, math.hypot(se_c, se_r))
    verdict = grade(drop, warning_drop, critical_drop)
    if p_value >= significance:
        verdict = "ok"
    return PerformanceResult(drop=drop, p_value=p_value, test=test, verdict=verdict, **base)


def alert_level(metric: str, reference: float, drop: float) -> float:
    """The metric value at which a window's drop from ``reference`` reaches ``drop``
    (absolute for scores, a relative increase for error metrics).

    Examples
    --------
    >>> round(alert_level("accuracy", 0.94, 0.02), 4), round(alert_level("mae", 2.0, 0.1), 4)
    (0.92, 2.2)
    """
    if HIGHER_IS_BETTER.get(metric, True):
        return reference - drop
    if reference > 0:
        return reference * (1.0 + drop)
    return reference + drop


def _one_sided(diff: float, se: float) -> float:
    """P(no degradation) given a worsening ``diff`` with standard error ``se``."""
    if se <= 0:
        return 0.0 if diff > 0 else 1.0
    return float(special.ndtr(-diff / se))
