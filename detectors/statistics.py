"""Drift statistics between a reference and a current sample.

Every statistic is a frozen pydantic model holding its thresholds, with

* :meth:`DriftStatistic.compare` on two histograms over the same (frozen) bins, the
  form the window evaluator uses, so that raw arrays and counts aggregated in SQL give
  the same numbers;
* :meth:`DriftStatistic.compare_samples` on raw samples (bins from the reference's
  quantiles where a histogram is needed; exact for KS and Wasserstein).

Each returns a :class:`DriftResult`. ``value`` is an effect size that does not grow
with the sample size; ``p_value`` comes from a test:

============== ================================================= ==========================
name           value                                             p-value
============== ================================================= ==========================
psi            sum (c - r) ln(c / r), smoothed shares            chi-square homogeneity
jensen_shannon JS *distance*, base 2 (in [0, 1]); equals          chi-square homogeneity
               ``scipy.spatial.distance.jensenshannon(r, c, base=2)``
hellinger      sqrt(1/2 sum (sqrt r - sqrt c)^2), in [0, 1]      chi-square homogeneity
wasserstein    W1 / reference std (one threshold fits every      chi-square homogeneity
               numeric feature; std 0 -> 1)                      (none on raw samples)
ks             max |F_r - F_c|                                   Kolmogorov distribution
chi2           Cohen's w = sqrt(sum (c - r)^2 / r), smoothed     chi-square homogeneity
============== ================================================= ==========================

Here ``r`` and ``c`` are the reference and current shares of each bin.

Smoothing
    Only PSI and chi2's effect size need it (a log or a division by a zero share):
    each share becomes ``(p + eps) / (1 + k * eps)`` with ``eps = 1e-4`` (``k`` bins).
    JS, Hellinger, KS and Wasserstein are finite on empty bins and use raw shares.
Chi-square homogeneity test
    Pearson's test on the 2 x k table (reference counts, current counts), columns empty
    on both sides dropped, no continuity correction: equal to
    ``scipy.stats.chi2_contingency(table, correction=False)``.
KS on histograms
    ``D_hist = max |F_r - F_c|`` over the bin edges; it bounds the exact statistic as
    ``D_hist <= D <= D_hist + max_bin max(r_bin, c_bin)`` (the CDFs can part at most by a
    bin's mass inside it). The p-value is ``scipy.stats.kstwo.sf(D, round(n m / (n + m)))``,
    the asymptotic form ``ks_2samp`` uses. On raw samples :class:`KolmogorovSmirnov` is
    ``scipy.stats.ks_2samp`` (method ``auto``).
Degenerate input
    An empty side gives verdict ``insufficient``, value 0 and no p-value; no statistic
    returns NaN or infinity.

Defaults (warning, critical) sit near the small-shift equivalents of PSI 0.1 / 0.25
(for small shifts JS^2 ln 2 ~ H^2 ~ PSI / 8, w^2 ~ PSI, and a normal mean shift of d sigma
gives PSI ~ d^2, W ~ d, KS ~ 0.4 d); see :data:`driftline.schemas.monitor.DEFAULT_THRESHOLDS`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar, Final, Literal

import numpy as np
import numpy.typing as npt
from driftline.schemas.monitor import DEFAULT_THRESHOLDS
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import special
from scipy import stats as sps

from .coerce import as_float_array
from .profiles import profile_categorical, profile_numeric
from .verdict import Verdict, grade

__all__ = [
    "STATISTICS",
    "ChiSquare",
    "DriftResult",
    "DriftStatistic",
    "Hellinger",
    "JensenShannon",
    "KolmogorovSmirnov",
    "PopulationStabilityIndex",
    "Wasserstein",
    "chi2_homogeneity",
    "get_statistic",
    "smoothed_shares",
]

#: Default additive smoothing of shares for PSI and chi2's effect size.
EPSILON: Final[float] = 1e-4

Test = Literal["chi2_homogeneity", "ks_asymptotic", "ks_2samp"]


class DriftResult(BaseModel):
    """Outcome of one drift statistic on one column.

    Examples
    --------
    >>> r = PopulationStabilityIndex().compare([50, 30, 20], [30, 30, 40])
    >>> r.statistic, round(r.value, 4), r.verdict, r.test
    ('psi', 0.2406, 'warning', 'chi2_homogeneity')
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    statistic: str
    value: float = Field(allow_inf_nan=False)
    p_value: float | None = None
    test: Test | None = None
    test_statistic: float | None = None
    warning: float
    critical: float
    verdict: Verdict
    n_reference: int = Field(ge=0)
    n_current: int = Field(ge=0)


def smoothed_shares(counts: npt.ArrayLike, epsilon: float = EPSILON) -> npt.NDArray[np.float64]:
    """Shares with additive smoothing ``(p + eps) / (1 + k eps)``.

    Examples
    --------
    >>> smoothed_shares([1, 0], epsilon=0.5).tolist()
    [0.75, 0.25]
    """
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum()
    p = c / total if total > 0 else np.full(c.shape, 1.0 / max(c.size, 1))
    return (p + epsilon) / (1.0 + c.size * epsilon)


def chi2_homogeneity(reference: npt.ArrayLike, current: npt.ArrayLike) -> tuple[float, float, int]:
    """Pearson chi-square test that two histograms share one distribution.

    Returns
    -------
    tuple
        ``(statistic, p_value, dof)``; columns empty on both sides are dropped, and
        fewer than two columns give ``(0.0, 1.0, 0)``.

    Examples
    --------
    >>> stat, p, dof = chi2_homogeneity([10, 20, 30], [30, 20, 10])
    >>> round(stat, 3), round(p, 6), dof
    (20.0, 4.5e-05, 2)
    """
    r = np.asarray(reference, dtype=np.float64)
    c = np.asarray(current, dtype=np.float64)
    keep = (r + c) > 0
    r, c = r[keep], c[keep]
    n_r, n_c = r.sum(), c.sum()
    if r.size < 2 or n_r <= 0 or n_c <= 0:
        return 0.0, 1.0, 0
    col = r + c
    n = n_r + n_c
    e_r = col * (n_r / n)
    e_c = col * (n_c / n)
    stat = float((np.square(r - e_r) / e_r).sum() + (np.square(c - e_c) / e_c).sum())
    dof = int(r.size - 1)
    return stat, float(special.chdtrc(dof, stat)), dof


class DriftStatistic(BaseModel):
    """Base of the drift statistics: thresholds plus the histogram and sample forms.

    Subclasses set ``name``, whether they need ordered values, and ``_value``.

    Examples
    --------
    >>> s = get_statistic("hellinger", warning=0.05, critical=0.1)
    >>> s.clone() == s, DriftStatistic.from_state(s.to_state()) == s
    (True, True)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: ClassVar[str] = ""
    #: Needs ordered values (numeric columns only).
    ordered_only: ClassVar[bool] = False

    warning: float = Field(ge=0, allow_inf_nan=False)
    critical: float = Field(ge=0, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and cls.name in DEFAULT_THRESHOLDS:
            warning, critical = DEFAULT_THRESHOLDS[cls.name]
            data = {"warning": warning, "critical": critical, **data}
        return data

    @model_validator(mode="after")
    def _ordered(self) -> DriftStatistic:
        if self.warning > self.critical:
            raise ValueError("warning must not exceed critical")
        return self

    # -- protocol shared with the online detectors ---------------------------------
    def clone(self) -> DriftStatistic:
        """A statistic with the same parameters."""
        return self.model_copy()

    def reset(self) -> None:
        """No-op: statistics hold no state between calls."""

    def to_state(self) -> dict[str, Any]:
        """JSON-serialisable parameters."""
        return {"statistic": self.name, "params": self.model_dump(mode="json")}

    @staticmethod
    def from_state(state: Mapping[str, Any]) -> DriftStatistic:
        """Rebuild a statistic from :meth:`to_state`."""
        return STATISTICS[str(state["statistic"])].model_validate(state["params"])

    # -- computation ------------------------------------------------------------------
    def _value(
        self,
        ref: npt.NDArray[np.float64],
        cur: npt.NDArray[np.float64],
        ref_points: npt.NDArray[np.float64] | None,
        cur_points: npt.NDArray[np.float64] | None,
        scale: float,
    ) -> float:
        raise NotImplementedError

    def _test(
        self, ref: npt.NDArray[np.float64], cur: npt.NDArray[np.float64]
    ) -> tuple[float | None, Test | None, float | None]:
        stat, p, _ = chi2_homogeneity(ref, cur)
        return p, "chi2_homogeneity", stat

    def _result(
        self,
        value: float,
        n_ref: int,
        n_cur: int,
        p: float | None = None,
        test: Test | None = None,
        stat: float | None = None,
    ) -> DriftResult:
        value = float(value) if math.isfinite(value) else 0.0
        return DriftResult(
            statistic=self.name,
            value=max(value, 0.0),
            p_value=None if p is None else float(min(max(p, 0.0), 1.0)),
            test=test,
            test_statistic=stat,
            warning=self.warning,
            critical=self.critical,
            verdict=grade(value, self.warning, self.critical),
            n_reference=n_ref,
            n_current=n_cur,
        )

    def insufficient(self, n_reference: int = 0, n_current: int = 0) -> DriftResult:
        """The result for a comparison that cannot be made."""
        return DriftResult(
            statistic=self.name,
            value=0.0,
            warning=self.warning,
            critical=self.critical,
            verdict="insufficient",
            n_reference=n_reference,
            n_current=n_current,
        )

    def compare(
        self,
        reference: npt.ArrayLike,
        current: npt.ArrayLike,
        *,
        ordered: bool = True,
        reference_points: npt.ArrayLike | None = None,
        current_points: npt.ArrayLike | None = None,
        scale: float | None = None,
    ) -> DriftResult:
        """Compare two histograms over the same bins.

        Parameters
        ----------
        reference, current
            Non-negative counts per bin.
        ordered
            Whether the bins are ordered (numeric); statistics with ``ordered_only``
            refuse unordered (categorical) bins.
        reference_points, current_points
            Representative value of each bin (Wasserstein); ``current_points`` defaults
            to ``reference_points``, which defaults to the bin index.
        scale
            Reference scale dividing the Wasserstein distance (default: the weighted
            std of the reference histogram over its points, 1 when that is 0).
        """
        ref = np.asarray(reference, dtype=np.float64).reshape(-1)
        cur = np.asarray(current, dtype=np.float64).reshape(-1)
        if ref.shape != cur.shape:
            raise ValueError("histograms must have the same bins")
        if not (np.isfinite(ref).all() and np.isfinite(cur).all()):
            raise ValueError("counts must be finite")
        if (ref < 0).any() or (cur < 0).any():
            raise ValueError("counts must be non-negative")
        if self.ordered_only and not ordered:
            raise ValueError(f"{self.name} needs ordered (numeric) bins")
        n_ref, n_cur = round(float(ref.sum())), round(float(cur.sum()))
        if ref.sum() <= 0 or cur.sum() <= 0:
            return self.insufficient(n_ref, n_cur)
        r_pts = None if reference_points is None else as_float_array(reference_points)
        c_pts = None if current_points is None else as_float_array(current_points)
        value = self._value(ref, cur, r_pts, c_pts, scale if scale and scale > 0 else 0.0)
        p, test, stat = self._test(ref, cur)
        return self._result(value, n_ref, n_cur, p, test, stat)

    def compare_samples(
        self, reference: npt.ArrayLike, current: npt.ArrayLike, *, bins: int = 10
    ) -> DriftResult:
        """Compare raw samples: numeric arrays are binned on the reference's quantiles
        (see :mod:`driftline.detectors.profiles`); other dtypes are categories.
        """
        ref_arr = np.asarray(reference)
        cur_arr = np.asarray(current)
        if _is_numeric(ref_arr) and _is_numeric(cur_arr):
            prof = profile_numeric(ref_arr, bins=bins)
            hist = prof.histogram(cur_arr)
            return self.compare(
                prof.reference_counts,
                hist.counts,
                reference_points=prof.bin_means,
                current_points=_bin_points(hist.counts, hist.sums, prof.bin_means),
                scale=prof.scale,
            )
        cprof = profile_categorical(ref_arr)
        ccounts = cprof.histogram(cur_arr)
        return self.compare(cprof.reference_counts, cprof.vector(ccounts), ordered=False)


def _is_numeric(arr: npt.NDArray[Any]) -> bool:
    if arr.dtype.kind in "iuf":
        return True
    if arr.dtype == object and arr.size:
        sample = arr[: min(arr.size, 64)]
        return all(v is None or isinstance(v, int | float) for v in sample)
    return arr.dtype == object


def _bin_points(
    counts: tuple[int, ...], sums: tuple[float, ...] | None, fallback: tuple[float, ...]
) -> npt.NDArray[np.float64]:
    """Mean of each bin where it has values, else the fallback point."""
    fb = np.asarray(fallback, dtype=np.float64)
    if sums is None:
        return fb
    c = np.asarray(counts, dtype=np.float64)
    s = np.asarray(sums, dtype=np.float64)
    return np.where(c > 0, s / np.maximum(c, 1.0), fb)


class PopulationStabilityIndex(DriftStatistic):
    """Population stability index over smoothed shares.

    Examples
    --------
    >>> r = PopulationStabilityIndex().compare([500, 300, 200], [300, 300, 400])
    >>> round(r.value, 4), r.verdict, r.p_value < 1e-10
    (0.2406, 'warning', True)
    """

    name: ClassVar[str] = "psi"
    epsilon: float = Field(default=EPSILON, gt=0, le=0.1)

    def _value(
        self,
        ref: npt.NDArray[np.float64],
        cur: npt.NDArray[np.float64],
        ref_points: npt.NDArray[np.float64] | None,
        cur_points: npt.NDArray[np.float64] | None,
        scale: float,
    ) -> float:
        r = smoothed_shares(ref, self.epsilon)
        c = smoothed_shares(cur, self.epsilon)
        return float(((c - r) * np.log(c / r)).sum())


class JensenShannon(DriftStatistic):
    """Jensen-Shannon distance with base-2 logarithms (so it lies in [0, 1]).

    Examples
    --------
    >>> round(JensenShannon().compare([1, 0], [0, 1]).value, 6)
    1.0
    """

    name: ClassVar[str] = "jensen_shannon"

    def _value(
        self,
        ref: npt.NDArray[np.float64],
        cur: npt.NDArray[np.float64],
        ref_points: npt.NDArray[np.float64] | None,
        cur_points: npt.NDArray[np.float64] | None,
        scale: float,
    ) -> float:
        p = ref / ref.sum()
        q = cur / cur.sum()
        m = (p + q) / 2.0
        js = (special.rel_entr(p, m).sum() + special.rel_entr(q, m).sum()) / 2.0
        return float(math.sqrt(max(float(js), 0.0) / math.log(2.0)))


class Hellinger(DriftStatistic):
    """Hellinger distance ``sqrt(1/2 sum (sqrt p - sqrt q)^2)``, in [0, 1].

    Examples
    --------
    >>> Hellinger().compare([1, 0], [0, 1]).value
    1.0
    """

    name: ClassVar[str] = "hellinger"

    def _value(
        self,
        ref: npt.NDArray[np.float64],
        cur: npt.NDArray[np.float64],
        ref_points: npt.NDArray[np.float64] | None,
        cur_points: npt.NDArray[np.float64] | None,
        scale: float,
    ) -> float:
        diff = np.sqrt(ref / ref.sum()) - np.sqrt(cur / cur.sum())
        return float(min(math.sqrt(0.5 * float(np.square(diff).sum())), 1.0))


def _w1(
    u_pts: npt.NDArray[np.float64],
    u_w: npt.NDArray[np.float64],
    v_pts: npt.NDArray[np.float64],
    v_w: npt.NDArray[np.float64],
) -> float:
    """1-Wasserstein distance of two weighted point sets (as scipy's)."""
    pts = np.concatenate([u_pts, v_pts])
    order = np.argsort(pts, kind="mergesort")
    pts = pts[order]
    wu = np.concatenate([u_w / u_w.sum(), np.zeros(v_w.size)])[order]
    wv = np.concatenate([np.zeros(u_w.size), v_w / v_w.sum()])[order]
    gaps = np.diff(pts)
    return float((np.abs(np.cumsum(wu)[:-1] - np.cumsum(wv)[:-1]) * gaps).sum())


class Wasserstein(DriftStatistic):
    """1-Wasserstein (earth mover's) distance divided by the reference std.

    On histograms each bin's mass sits at its representative point (the bin mean);
    on raw samples it is ``scipy.stats.wasserstein_distance(ref, cur) / std(ref)``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> r = Wasserstein().compare_samples(rng.normal(0, 2, 5000), rng.normal(1, 2, 5000))
    >>> round(r.value, 2), r.verdict
    (0.52, 'critical')
    """

    name: ClassVar[str] = "wasserstein"
    ordered_only: ClassVar[bool] = True

    def _value(
        self,
        ref: npt.NDArray[np.float64],
        cur: npt.NDArray[np.float64],
        ref_points: npt.NDArray[np.float64] | None,
        cur_points: npt.NDArray[np.float64] | None,
        scale: float,
    ) -> float:
        r_pts = np.arange(ref.size, dtype=np.float64) if ref_points is None else ref_points
        c_pts = r_pts if cur_points is None else cur_points
        if r_pts.size != ref.size or c_pts.size != cur.size:
            raise ValueError("one point per bin is needed")
        if scale <= 0:
            w = ref / ref.sum()
            mean = float((w * r_pts).sum())
            std = math.sqrt(max(float((w * np.square(r_pts - mean)).sum()), 0.0))
            scale = std if std > 0 else 1.0
        return _w1(r_pts, ref, c_pts, cur) / scale

    def compare_samples(
        self, reference: npt.ArrayLike, current: npt.ArrayLike, *, bins: int = 10
    ) -> DriftResult:
        """Exact distance on raw numeric samples (no p-value)."""
        if not (_is_numeric(np.asarray(reference)) and _is_numeric(np.asarray(current))):
            raise ValueError(f"{self.name} needs ordered (numeric) values")
        r = as_float_array(reference)
        c = as_float_array(current)
        r, c = r[np.isfinite(r)], c[np.isfinite(c)]
        if r.size == 0 or c.size == 0:
            return self.insufficient(r.size, c.size)
        std = float(r.std())
        value = float(sps.wasserstein_distance(r, c)) / (std if std > 0 else 1.0)
        return self._result(value, r.size, c.size)


class KolmogorovSmirnov(DriftStatistic):
    """Two-sample Kolmogorov-Smirnov statistic (exact ``ks_2samp`` on raw samples).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> r = KolmogorovSmirnov().compare_samples(rng.normal(size=2000), rng.normal(0.5, 1, 2000))
    >>> round(r.value, 3), r.verdict, r.test
    (0.199, 'warning', 'ks_2samp')
    """

    name: ClassVar[str] = "ks"
    ordered_only: ClassVar[bool] = True

    def _value(
        self,
        ref: npt.NDArray[np.float64],
        cur: npt.NDArray[np.float64],
        ref_points: npt.NDArray[np.float64] | None,
        cur_points: npt.NDArray[np.float64] | None,
        scale: float,
    ) -> float:
        cdf_r = np.cumsum(ref)[:-1] / ref.sum()
        cdf_c = np.cumsum(cur)[:-1] / cur.sum()
        return float(np.abs(cdf_r - cdf_c).max()) if cdf_r.size else 0.0

    def _test(
        self, ref: npt.NDArray[np.float64], cur: npt.NDArray[np.float64]
    ) -> tuple[float | None, Test | None, float | None]:
        d = self._value(ref, cur, None, None, 0.0)
        n, m = ref.sum(), cur.sum()
        en = max(1, round(n * m / (n + m)))
        return float(sps.kstwo.sf(d, en)), "ks_asymptotic", d

    def compare_samples(
        self, reference: npt.ArrayLike, current: npt.ArrayLike, *, bins: int = 10
    ) -> DriftResult:
        """Exact ``scipy.stats.ks_2samp`` on raw numeric samples."""
        if not (_is_numeric(np.asarray(reference)) and _is_numeric(np.asarray(current))):
            raise ValueError(f"{self.name} needs ordered (numeric) values")
        r = as_float_array(reference)
        c = as_float_array(current)
        r, c = r[np.isfinite(r)], c[np.isfinite(c)]
        if r.size == 0 or c.size == 0:
            return self.insufficient(r.size, c.size)
        res = sps.ks_2samp(r, c)
        d = float(res.statistic)
        return self._result(d, r.size, c.size, float(res.pvalue), "ks_2samp", d)


class ChiSquare(DriftStatistic):
    """Chi-square test of homogeneity; ``value`` is Cohen's w on smoothed shares.

    ``test_statistic`` is Pearson's chi-square and ``p_value`` its p-value.

    Examples
    --------
    >>> r = ChiSquare().compare([500, 300, 200], [200, 300, 500])
    >>> round(r.value, 3), r.verdict, r.p_value < 1e-10
    (0.793, 'critical', True)
    """

    name: ClassVar[str] = "chi2"
    epsilon: float = Field(default=EPSILON, gt=0, le=0.1)

    def _value(
        self,
        ref: npt.NDArray[np.float64],
        cur: npt.NDArray[np.float64],
        ref_points: npt.NDArray[np.float64] | None,
        cur_points: npt.NDArray[np.float64] | None,
        scale: float,
    ) -> float:
        r = smoothed_shares(ref, self.epsilon)
        c = smoothed_shares(cur, self.epsilon)
        return float(math.sqrt(float((np.square(c - r) / r).sum())))


#: Statistic class by config name.
STATISTICS: Final[Mapping[str, type[DriftStatistic]]] = {
    cls.name: cls
    for cls in (
        PopulationStabilityIndex,
        JensenShannon,
        Hellinger,
        Wasserstein,
        KolmogorovSmirnov,
        ChiSquare,
    )
}


def get_statistic(
    method: str, *, warning: float | None = None, critical: float | None = None
) -> DriftStatistic:
    """The statistic named ``method`` with the given (or default) thresholds.

    Examples
    --------
    >>> get_statistic("psi").critical, get_statistic("ks", warning=0.05).warning
    (0.25, 0.05)
    """
    try:
        cls = STATISTICS[method]
    except KeyError:
        raise ValueError(
            f"unknown drift method {method!r}; choose from {sorted(STATISTICS)}"
        ) from None
    params: dict[str, float] = {}
    if warning is not None:
        params["warning"] = warning
    if critical is not None:
        params["critical"] = critical
    return cls.model_validate(params)
