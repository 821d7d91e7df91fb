"""Multivariate drift: how well the reference's principal components still describe a
window (PCA reconstruction error).

A change in how features move together (a correlation that flips, a new cluster) can
leave every marginal distribution unchanged, so univariate drift misses it. Following
NannyML's data reconstruction drift (after Jolliffe, *Principal Component Analysis*,
2nd ed., 2002, sec. 10.1), the reference is encoded and standardised, its principal
components are kept up to a share of the variance (``drift.multivariate.variance``,
0.65 by default), and each row's **squared reconstruction error** is

    e(z) = ||z||² - ||W z||²,

the part of the standardised row ``z`` that the kept components ``W`` (orthonormal
rows) do not explain. A window's statistic is the mean of ``e`` over its rows: rows
whose features stopped moving together leave more outside the components.

Encoding
    A numeric feature is standardised by the reference's mean and standard deviation;
    a categorical one is frequency-encoded (each category by its share of the
    reference; a category the reference never saw by 0) and then standardised. A
    missing value is imputed with the reference mean (``z = 0``): a burst of missing
    values in a feature that moves with others breaks their relation and raises the
    statistic (the data-quality rows name the cause).
Decomposable
    The sums ``n`` and ``Σ e`` of a window are exact and add up, so the store computes
    them per row in SQL (the same encoding, the same components) and the backtest in
    numpy: both give :class:`MultivariateSums`.
Levels and their guarantee
    On the reference, the rows' errors have mean ``μ`` and variance ``σ²``; its windows
    of the monitored size give the between-window spread ``τ²`` beyond sampling (a
    DerSimonian-Laird estimate, 0 with fewer than 4 windows of ``min_samples`` rows).
    A window of ``n`` rows from the reference's process has a mean error with mean
    ``μ`` and variance ``σ²/n + τ²``; the warning and critical levels are the
    ``1 - 0.00135`` and ``1 - 3.17e-5`` quantiles (the one-sided 3 and 4 sigma tails,
    :data:`~driftline.detectors.thresholds.DRIFT_TAILS`) of the gamma distribution
    with that mean and variance, where the variance also counts the reference's own
    sampling (``σ²/N`` for ``N`` reference rows). A mean of positive, right-skewed
    errors is closer to a gamma than to a normal, which would understate the upper
    tail; standardised values are clipped to ``±CLIP`` (4), so one extreme value of a
    heavy-tailed feature cannot carry a window. So an unchanged window warns with
    probability about 0.00135 and is critical with probability about 3.2e-5, up to the
    gamma approximation and the estimation of ``μ``, ``σ²`` and ``τ²``. Measured over
    30 references x 200 windows each (``tests/detectors/test_multivariate.py``): a
    warning rate of 0.0012-0.0023 for windows of 200-2,000 rows with normal data and
    0.0010-0.0015 with a Student-t (5) feature, and at most 1 critical window in 6,000.
Not covered
    A change inside the kept components (a shift along the main direction of
    variation) is left to the univariate statistics; with fewer than two features
    there is nothing to reconstruct and no model is fitted.

Examples
--------
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=4000)
>>> ref = {"a": x, "b": x + rng.normal(0, 0.3, 4000)}
>>> model = fit_multivariate(ref, {"a": "numeric", "b": "numeric"}, variance=0.65)
>>> len(model.components), model.explained > 0.9
(1, True)
>>> y = rng.normal(size=2000)
>>> same = multivariate_sums(model, {"a": y, "b": y + rng.normal(0, 0.3, 2000)})
>>> flipped = multivariate_sums(model, {"a": y, "b": -y + rng.normal(0, 0.3, 2000)})
>>> warning, critical = model.levels(2000)
>>> same.mean < warning, flipped.mean > critical
(True, True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from .coerce import as_category_strings, category_array
from .thresholds import DriftSpread, _between_variance, drift_levels

__all__ = [
    "CLIP",
    "MULTIVARIATE_METRIC",
    "MultivariateModel",
    "MultivariateSums",
    "fit_multivariate",
    "multivariate_sums",
]

#: The metric name of a window's mean squared reconstruction error.
MULTIVARIATE_METRIC = "pca_reconstruction_error"
#: Reference rows the components are fitted on (a deterministic sample beyond it).
_MAX_FIT_ROWS = 200_000
#: Standardised values are clipped to +-CLIP (see "Levels and their guarantee").
CLIP = 4.0
#: Fewer reference windows with enough rows than this: no between-window spread.
_MIN_WINDOWS = 4


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MultivariateSums(_Frozen):
    """A window's count of rows and sum of squared reconstruction errors.

    Examples
    --------
    >>> (MultivariateSums(n=2, error_sum=3.0) + MultivariateSums(n=1, error_sum=1.0)).mean
    1.3333333333333333
    """

    n: int = Field(ge=0)
    error_sum: float = Field(ge=0)

    def __add__(self, other: MultivariateSums) -> MultivariateSums:
        return MultivariateSums(n=self.n + other.n, error_sum=self.error_sum + other.error_sum)

    @property
    def mean(self) -> float | None:
        """The mean squared reconstruction error (``None`` without rows)."""
        return self.error_sum / self.n if self.n else None


class MultivariateModel(_Frozen):
    """The reference's encoding, kept components and reconstruction-error spread.

    ``columns`` are the features in encoding order; ``frequencies`` maps each
    categorical feature's categories to their reference share; ``components`` are the
    kept principal axes (orthonormal rows over the standardised columns).

    Examples
    --------
    >>> model = MultivariateModel(columns=("a", "b"), kinds=("numeric", "numeric"),
    ...     centers=(0.0, 0.0), scales=(1.0, 1.0), components=((0.6, 0.8),),
    ...     explained=0.9, error_mean=0.1, error_var=0.01, n=10_000)
    >>> model.errors({"a": np.array([0.6, 0.8]), "b": np.array([0.8, -0.6])}, 2).round(6)
    array([0., 1.])
    """

    method: Literal["pca"] = "pca"
    columns: tuple[str, ...]
    kinds: tuple[Literal["numeric", "categorical"], ...]
    centers: tuple[float, ...]
    scales: tuple[float, ...]
    frequencies: dict[str, dict[str, float]] = Field(default_factory=dict)
    components: tuple[tuple[float, ...], ...]
    #: Share of the reference's variance the kept components explain.
    explained: float
    #: Per-row squared reconstruction error on the reference: mean and variance.
    error_mean: float = Field(ge=0)
    error_var: float = Field(ge=0)
    #: Between-window standard deviation of the mean error beyond sampling, and the
    #: reference windows it was estimated from.
    tau: float = Field(default=0.0, ge=0)
    windows: int = Field(default=0, ge=0)
    #: Reference rows the error statistics come from.
    n: int = Field(default=0, ge=0)

    def encode(self, features: Mapping[str, npt.ArrayLike], n: int) -> npt.NDArray[np.float64]:
        """The standardised ``n x d`` matrix of a window's rows (missing: 0)."""
        z = np.full((n, len(self.columns)), np.nan)
        for j, (name, kind) in enumerate(zip(self.columns, self.kinds, strict=True)):
            given = features.get(name)
            if given is None:
                continue
            column = _encoded(given, kind, self.frequencies.get(name, {}))
            if column.size != n:
                raise ValueError(f"feature {name!r} has {column.size} values for {n} rows")
            z[:, j] = column
        missing = ~np.isfinite(z)
        with np.errstate(invalid="ignore"):  # in place: one n x d matrix
            np.subtract(z, np.asarray(self.centers), out=z)
            np.divide(z, np.asarray(self.scales), out=z)
        np.clip(z, -CLIP, CLIP, out=z)
        z[missing] = 0.0
        return z

    def errors(self, features: Mapping[str, npt.ArrayLike], n: int) -> npt.NDArray[np.float64]:
        """Each row's squared reconstruction error."""
        z = self.encode(features, n)
        projected = z @ np.asarray(self.components).T
        return np.maximum(
            np.einsum("ij,ij->i", z, z) - np.einsum("ij,ij->i", projected, projected), 0.0
        )

    def levels(self, n: int) -> tuple[float, float]:
        """The warning and critical levels of the mean error of a window of ``n`` rows."""
        sd = math.sqrt(self.error_var / max(n, 1) + self.error_var / max(self.n, 1) + self.tau**2)
        spread = DriftSpread(method=MULTIVARIATE_METRIC, mean=self.error_mean, sd=sd, windows=0)
        return drift_levels(spread, 0.0, 0.0)

    def with_reference(
        self, features: Mapping[str, npt.ArrayLike], window_starts: npt.ArrayLike, min_samples: int
    ) -> MultivariateModel:
        """The same encoding and components with the error spread of other reference
        rows (a segment slice's own)."""
        starts = np.asarray(window_starts, dtype=np.float64).reshape(-1)
        errors = self.errors(features, starts.size)
        mean, var, tau, windows = _error_spread(errors, starts, min_samples)
        return self.model_copy(
            update={
                "error_mean": mean,
                "error_var": var,
                "tau": tau,
                "windows": windows,
                "n": int(errors.size),
            }
        )


def _encoded(
    values: npt.ArrayLike, kind: str, frequencies: Mapping[str, float]
) -> npt.NDArray[np.float64]:
    """A column as numbers: numeric values (NaN where missing), or category shares
    (unseen: 0; missing: NaN)."""
    if kind == "numeric":
        column = np.asarray(values)
        if column.dtype.kind not in "fiub":
            out = np.full(column.size, np.nan)
            for i, value in enumerate(column.reshape(-1).tolist()):
                if isinstance(value, int | float) and not isinstance(value, bool):
                    out[i] = float(value)
            return out
        return column.astype(np.float64).reshape(-1)
    strings, null = category_array(values)
    out = np.full(strings.size, np.nan)
    present = np.flatnonzero(~null)
    if present.size:
        known, inverse = np.unique(strings[present], return_inverse=True)
        share = np.array([frequencies.get(k, 0.0) for k in known.tolist()], dtype=np.float64)
        out[present] = share[inverse]
    return out


def _error_spread(
    errors: npt.NDArray[np.float64], starts: npt.NDArray[np.float64], min_samples: int
) -> tuple[float, float, float, int]:
    """Mean and variance of the rows' errors, and the between-window sd of window means
    (windows with at least ``min_samples`` rows)."""
    if errors.size == 0:
        return 0.0, 0.0, 0.0, 0
    mean, var = float(errors.mean()), float(errors.var())
    windows, inverse, counts = np.unique(starts, return_inverse=True, return_counts=True)
    keep = counts >= max(min_samples, 2)
    if int(keep.sum()) < _MIN_WINDOWS or var <= 0:
        return mean, var, 0.0, int(keep.sum())
    sums = np.bincount(inverse, weights=errors, minlength=windows.size)
    means = (sums / counts)[keep]
    weights = counts[keep] / var
    return mean, var, math.sqrt(_between_variance(means, weights)), int(keep.sum())


def fit_multivariate(
    features: Mapping[str, npt.ArrayLike],
    kinds: Mapping[str, str],
    *,
    variance: float = 0.65,
    window_starts: npt.ArrayLike | None = None,
    min_samples: int = 200,
) -> MultivariateModel | None:
    """Fit the encoding and the components on the reference; ``None`` with fewer than
    two features or fewer than two rows.

    ``variance`` is the share of the reference's variance the kept components must
    explain (at least one component, never all: all would reconstruct every row).
    ``window_starts`` (each row's window) give the between-window spread.
    """
    columns = tuple(name for name in kinds if name in features)
    if len(columns) < 2:
        return None
    n = {np.asarray(features[name]).reshape(-1).size for name in columns}.pop()
    if n < 2:
        return None
    frequencies: dict[str, dict[str, float]] = {}
    raw = np.zeros((n, len(columns)))
    for j, name in enumerate(columns):
        if kinds[name] == "categorical":
            strings, _ = as_category_strings(features[name])
            found, counts = np.unique(strings, return_counts=True)
            frequencies[name] = dict(
                zip(found.tolist(), (counts / max(n, 1)).tolist(), strict=True)
            )
        raw[:, j] = _encoded(features[name], kinds[name], frequencies.get(name, {}))
    present = np.isfinite(raw)
    counted = np.maximum(present.sum(axis=0), 1)
    centers = np.where(present, raw, 0.0).sum(axis=0) / counted
    deviations = np.where(present, raw - centers, 0.0)
    scales = np.sqrt((deviations**2).sum(axis=0) / counted)
    scales = np.where(scales > 0, scales, 1.0)
    z = np.clip(deviations / scales, -CLIP, CLIP)
    sample = z if n <= _MAX_FIT_ROWS else z[np.linspace(0, n - 1, _MAX_FIT_ROWS).astype(int)]
    _, singular, axes = np.linalg.svd(sample - sample.mean(axis=0), full_matrices=False)
    shares = singular**2 / max(float((singular**2).sum()), 1e-300)
    k = int(np.searchsorted(np.cumsum(shares), variance) + 1)
    k = min(max(k, 1), len(columns) - 1)
    model = MultivariateModel(
        columns=columns,
        kinds=tuple(kinds[name] for name in columns),  # type: ignore[misc]
        centers=tuple(centers.tolist()),
        scales=tuple(scales.tolist()),
        frequencies=frequencies,
        components=tuple(tuple(row) for row in axes[:k].tolist()),
        explained=float(shares[:k].sum()),
        error_mean=0.0,
        error_var=0.0,
    )
    starts = np.zeros(n) if window_starts is None else np.asarray(window_starts, dtype=np.float64)
    return model.with_reference(features, starts, min_samples)


def multivariate_sums(
    model: MultivariateModel, features: Mapping[str, npt.ArrayLike]
) -> MultivariateSums:
    """A window's row count and sum of squared reconstruction errors."""
    sizes = [
        np.asarray(features[name]).reshape(-1).size for name in model.columns if name in features
    ]
    n = max(sizes) if sizes else 0
    return MultivariateSums(n=n, error_sum=float(model.errors(features, n).sum()) if n else 0.0)
