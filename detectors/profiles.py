"""Reference profiles: bins frozen on the reference, and window histograms over them.

Numeric profile
    Edges are ``[min, q_1/k, ..., q_(k-1)/k, nextafter(max, +inf)]`` of the finite
    reference values (``k = bins``; quantiles by numpy's ``lower`` method, so every cut
    is an observed value), with repeated edges removed (discrete data gets one bin per
    value). Bins are left-closed, so a value's bin is the
    number of edges ``<= value`` (``np.searchsorted(edges, x, side="right")``, or in SQL
    ``arrayCount(e -> e <= x, edges)``). Bin 0 is ``(-inf, min)`` and the last bin is
    ``(max, +inf)``: both open outer bins are empty in the reference and hold
    out-of-reference-range values of a window. With 10 quantile bins a profile has 12
    bins. Non-finite values (NaN, None, +/-inf) count as nulls.
Categorical profile
    Category counts of the reference, most frequent first, plus a final *unseen* bucket
    (0 in the reference) that collects categories the reference never showed. Values
    compare as canonical strings (``1.0`` and ``1`` are the category ``"1"``).

A window is a histogram over the frozen bins (:class:`NumericCounts`,
:class:`CategoricalCounts`); histograms merge with ``+``. Profiles serialise to JSON
and back exactly (``ModelProfile.model_validate_json(p.model_dump_json()) == p``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal, TypeAlias

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .coerce import as_category_strings, as_float_array, category_array
from .estimation import Calibration
from .multivariate import MultivariateModel
from .performance import MetricEstimate, ReferencePerformance, performance_counts
from .thresholds import DriftSpread, MetricSpread, RateSpread, learn_rate_spread, learn_spread

__all__ = [
    "QUANTILE_LEVELS",
    "CategoricalCounts",
    "CategoricalProfile",
    "FeatureCounts",
    "FeatureProfile",
    "ModelProfile",
    "NumericCounts",
    "NumericProfile",
    "build_profile",
    "profile_categorical",
    "profile_feature",
    "profile_numeric",
    "quality_windows",
    "sorted_quantiles",
]

#: Quantile levels kept in a numeric profile's summary.
QUANTILE_LEVELS: Final[tuple[float, ...]] = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _sorted_finite(values: npt.ArrayLike) -> tuple[npt.NDArray[np.float64], int]:
    """Sorted finite values and the number of non-finite ones (nulls)."""
    x = as_float_array(values)
    finite = np.isfinite(x)
    n_null = int(x.size - np.count_nonzero(finite))
    if n_null:
        x = x[finite]
    return np.sort(x), n_null


def sorted_quantiles(
    sorted_values: npt.NDArray[np.float64], levels: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Quantiles of sorted values by numpy's default ``linear`` method.

    Examples
    --------
    >>> x = np.sort(np.random.default_rng(0).normal(size=101))
    >>> bool(np.array_equal(sorted_quantiles(x, [0.1, 0.5, 0.93]),
    ...                     np.quantile(x, [0.1, 0.5, 0.93])))
    True
    """
    n = sorted_values.size
    h = np.asarray(levels, dtype=np.float64) * (n - 1)
    below = np.floor(h).astype(np.intp)
    above = np.minimum(below + 1, n - 1)
    t = h - below
    a = sorted_values[below]
    b = sorted_values[above]
    diff = b - a
    return np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)


def _binned_sorted(
    xs: npt.NDArray[np.float64], edges: npt.NDArray[np.float64], scale: float = 1.0
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Counts and sums per left-closed bin of sorted values (bin = #edges <= x).

    Sums are taken over ``xs / scale`` and multiplied back, so that a scale of the
    largest magnitude keeps them from overflowing.
    """
    n = xs.size
    bounds = np.concatenate([[0], np.searchsorted(xs, edges, side="left"), [n]])
    counts = np.diff(bounds).astype(np.int64)
    sums = np.zeros(counts.size, dtype=np.float64)
    filled = counts > 0
    if n:
        terms = xs if scale == 1.0 else xs / scale
        sums[filled] = np.add.reduceat(terms, bounds[:-1][filled]) * scale
    return counts, sums


class NumericCounts(_Frozen):
    """A window's histogram of one numeric column over a profile's frozen bins.

    ``sums`` (optional) holds the sum of the values in each bin; it lets the
    Wasserstein distance place each bin's mass at the window's own bin mean.

    Examples
    --------
    >>> a = NumericCounts(counts=(0, 2, 1, 0), null_count=1, sums=(0.0, 3.0, 5.0, 0.0))
    >>> (a + a).counts, (a + a).n, (a + a).total
    ((0, 4, 2, 0), 6, 8)
    """

    kind: Literal["numeric"] = "numeric"
    counts: tuple[int, ...]
    null_count: int = Field(default=0, ge=0)
    sums: tuple[float, ...] | None = None

    @model_validator(mode="after")
    def _check(self) -> NumericCounts:
        if any(c < 0 for c in self.counts):
            raise ValueError("counts must be non-negative")
        if self.sums is not None and len(self.sums) != len(self.counts):
            raise ValueError("sums must have one entry per bin")
        return self

    @property
    def n(self) -> int:
        """Non-null values."""
        return int(sum(self.counts))

    @property
    def total(self) -> int:
        """All values, nulls included."""
        return self.n + self.null_count

    def __add__(self, other: NumericCounts) -> NumericCounts:
        """Merge two histograms over the same bins."""
        if len(other.counts) != len(self.counts):
            raise ValueError("cannot merge histograms over different bins")
        sums = None
        if self.sums is not None and other.sums is not None:
            sums = tuple((np.asarray(self.sums) + np.asarray(other.sums)).tolist())
        return NumericCounts(
            counts=tuple((np.asarray(self.counts) + np.asarray(other.counts)).tolist()),
            null_count=self.null_count + other.null_count,
            sums=sums,
        )


class CategoricalCounts(_Frozen):
    """A window's category counts for one categorical column.

    Examples
    --------
    >>> a = CategoricalCounts(counts={"x": 2, "y": 1}, null_count=0)
    >>> (a + CategoricalCounts(counts={"y": 1, "z": 4})).counts
    {'x': 2, 'y': 2, 'z': 4}
    """

    kind: Literal["categorical"] = "categorical"
    counts: dict[str, int]
    null_count: int = Field(default=0, ge=0)

    @property
    def n(self) -> int:
        """Non-null values."""
        return int(sum(self.counts.values()))

    @property
    def total(self) -> int:
        """All values, nulls included."""
        return self.n + self.null_count

    def __add__(self, other: CategoricalCounts) -> CategoricalCounts:
        """Merge two windows' counts."""
        merged = dict(self.counts)
        for key, value in other.counts.items():
            merged[key] = merged.get(key, 0) + value
        return CategoricalCounts(
            counts=dict(sorted(merged.items())), null_count=self.null_count + other.null_count
        )


#: A window aggregate of one column, discriminated by ``kind``.
FeatureCounts: TypeAlias = Annotated[NumericCounts | CategoricalCounts, Field(discriminator="kind")]


class NumericProfile(_Frozen):
    """Reference profile of one numeric column (see the module docstring for the bins).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> p = profile_numeric(rng.normal(size=10_000), name="x")
    >>> p.n_bins, p.reference_counts[0], p.reference_counts[-1], p.count
    (12, 0, 0, 10000)
    >>> h = p.histogram(np.array([-10.0, 0.0, np.nan, 10.0]))
    >>> h.counts[0], h.counts[-1], h.null_count, h.n
    (1, 1, 1, 3)
    >>> NumericProfile.model_validate_json(p.model_dump_json()) == p
    True
    """

    kind: Literal["numeric"] = "numeric"
    name: str = ""
    edges: tuple[float, ...]
    reference_counts: tuple[int, ...]
    bin_means: tuple[float, ...]
    count: int = Field(ge=0)
    null_count: int = Field(ge=0)
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    quantile_levels: tuple[float, ...] = ()
    quantile_values: tuple[float, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> NumericProfile:
        k = len(self.edges) + 1
        if len(self.reference_counts) != k or len(self.bin_means) != k:
            raise ValueError("a profile with n edges needs n + 1 counts and bin means")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("edges must increase strictly")
        if len(self.quantile_levels) != len(self.quantile_values):
            raise ValueError("quantile levels and values must pair up")
        return self

    @property
    def n_bins(self) -> int:
        """Number of bins, the two open outer bins included."""
        return len(self.edges) + 1

    @property
    def has_range_bins(self) -> bool:
        """Whether the first and last bins are the out-of-reference-range bins."""
        return self.count > 0

    @property
    def frequencies(self) -> npt.NDArray[np.float64]:
        """Reference share of each bin."""
        counts = np.asarray(self.reference_counts, dtype=np.float64)
        return counts / counts.sum() if self.count else counts

    @property
    def scale(self) -> float:
        """Reference standard deviation, or 1.0 when it is 0 or unknown."""
        return self.std if self.std is not None and self.std > 0 else 1.0

    def bin_index(self, values: npt.ArrayLike) -> npt.NDArray[np.intp]:
        """Bin of each (finite) value."""
        edges = np.asarray(self.edges, dtype=np.float64)
        return np.searchsorted(edges, as_float_array(values), side="right")

    def histogram(self, values: npt.ArrayLike) -> NumericCounts:
        """Histogram (with per-bin sums) of a window's raw values over the frozen bins.

        Equivalent to ``np.bincount(np.searchsorted(edges, x, side="right"))``, computed
        by sorting the values once (faster for large windows).
        """
        xs, n_null = _sorted_finite(values)
        counts, sums = _binned_sorted(xs, np.asarray(self.edges, dtype=np.float64))
        finite = bool(np.isfinite(sums).all())  # huge values can overflow a bin's sum
        return NumericCounts(
            counts=tuple(counts.tolist()),
            null_count=n_null,
            sums=tuple(sums.tolist()) if finite else None,
        )

    def empty_counts(self) -> NumericCounts:
        """An empty histogram over these bins."""
        return NumericCounts(counts=(0,) * self.n_bins, sums=(0.0,) * self.n_bins)

    def out_of_range(self, counts: NumericCounts) -> int:
        """Values of a window below the reference minimum or above its maximum."""
        if not self.has_range_bins:
            return 0
        return int(counts.counts[0] + counts.counts[-1])


class CategoricalProfile(_Frozen):
    """Reference profile of one categorical column; the last bucket is *unseen*.

    Examples
    --------
    >>> p = profile_categorical(["a", "b", "a", None, "c", "a"], name="r")
    >>> p.categories, p.reference_counts, p.null_count
    (('a', 'b', 'c'), (3, 1, 1, 0), 1)
    >>> p.vector(p.histogram(["a", "z", "z", None])).tolist()
    [1.0, 0.0, 0.0, 2.0]
    """

    kind: Literal["categorical"] = "categorical"
    name: str = ""
    categories: tuple[str, ...]
    reference_counts: tuple[int, ...]
    count: int = Field(ge=0)
    null_count: int = Field(ge=0)

    @model_validator(mode="after")
    def _check(self) -> CategoricalProfile:
        if len(self.reference_counts) != len(self.categories) + 1:
            raise ValueError("a profile with n categories needs n + 1 counts (last: unseen)")
        if len(set(self.categories)) != len(self.categories):
            raise ValueError("categories must be unique")
        return self

    @property
    def n_bins(self) -> int:
        """Categories plus the unseen bucket."""
        return len(self.categories) + 1

    @property
    def frequencies(self) -> npt.NDArray[np.float64]:
        """Reference share of each category (and of the unseen bucket, 0)."""
        counts = np.asarray(self.reference_counts, dtype=np.float64)
        return counts / counts.sum() if self.count else counts

    def histogram(self, values: npt.ArrayLike) -> CategoricalCounts:
        """Category counts of a window's raw values."""
        strings, n_null = as_category_strings(values)
        cats, counts = np.unique(strings, return_counts=True)
        return CategoricalCounts(
            counts=dict(zip(cats.tolist(), counts.tolist(), strict=True)), null_count=n_null
        )

    def vector(self, counts: CategoricalCounts) -> npt.NDArray[np.float64]:
        """Window counts in profile order, unseen categories summed into the last bucket."""
        out = np.zeros(self.n_bins, dtype=np.float64)
        index = {c: i for i, c in enumerate(self.categories)}
        unseen = self.n_bins - 1
        for cat, value in counts.counts.items():
            out[index.get(cat, unseen)] += value
        return out

    def empty_counts(self) -> CategoricalCounts:
        """An empty window."""
        return CategoricalCounts(counts={})


#: A column profile, discriminated by ``kind``.
FeatureProfile: TypeAlias = Annotated[
    NumericProfile | CategoricalProfile, Field(discriminator="kind")
]


def profile_numeric(values: npt.ArrayLike, *, name: str = "", bins: int = 10) -> NumericProfile:
    """Profile a numeric reference column.

    Parameters
    ----------
    values
        Reference values; non-finite ones are nulls.
    name
        Column name.
    bins
        Quantile bins inside the reference range (two open outer bins are added).

    Examples
    --------
    >>> p = profile_numeric([0, 0, 0, 1, 1, np.nan], bins=4)
    >>> p.edges[:2], p.reference_counts, p.null_count
    ((0.0, 1.0), (0, 3, 2, 0), 1)
    """
    if bins < 1:
        raise ValueError("bins must be at least 1")
    x, n_null = _sorted_finite(values)
    if x.size == 0:
        return NumericProfile(
            name=name,
            edges=(),
            reference_counts=(0,),
            bin_means=(0.0,),
            count=0,
            null_count=n_null,
        )
    inner = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    lo, hi = float(x[0]), float(x[-1])
    # Edges are observed values (numpy's "lower" quantiles), so discrete data gets one
    # bin per value; the summary quantiles use numpy's default linear method.
    cuts = x[np.floor(inner * (x.size - 1)).astype(np.intp)]
    with np.errstate(over="ignore"):
        top = np.nextafter(hi, np.inf)
    if not np.isfinite(top):  # hi is the largest float: it goes to the open top bin
        top = hi
    edges = np.unique(np.concatenate([[lo], cuts, [top]]))
    # Sum values scaled by the largest magnitude so huge values cannot overflow.
    mag = max(abs(lo), abs(hi)) or 1.0
    counts, sums = _binned_sorted(x, edges, scale=mag)
    scaled = x / mag
    # Representative point of each bin: the reference bin mean, else a bin boundary.
    fallback = np.concatenate([[lo], edges[:-1] / 2 + np.minimum(edges[1:], hi) / 2, [hi]])
    means = np.where(counts > 0, sums / np.maximum(counts, 1), fallback)
    means = np.clip(means, lo, hi)
    mean = float(scaled.mean()) * mag
    std = float(scaled.std()) * mag
    return NumericProfile(
        name=name,
        edges=tuple(edges.tolist()),
        reference_counts=tuple(counts.tolist()),
        bin_means=tuple(means.tolist()),
        count=int(x.size),
        null_count=n_null,
        mean=mean,
        std=std,
        min=lo,
        max=hi,
        quantile_levels=QUANTILE_LEVELS,
        quantile_values=tuple(sorted_quantiles(x, QUANTILE_LEVELS).tolist()),
    )


def profile_categorical(values: npt.ArrayLike, *, name: str = "") -> CategoricalProfile:
    """Profile a categorical reference column (categories by falling count, then name).

    Examples
    --------
    >>> profile_categorical([1, 2, 2, 3.0]).categories
    ('2', '1', '3')
    """
    strings, n_null = as_category_strings(values)
    cats, counts = np.unique(strings, return_counts=True)
    order = np.lexsort((cats, -counts))
    return CategoricalProfile(
        name=name,
        categories=tuple(cats[order].tolist()),
        reference_counts=(*counts[order].tolist(), 0),
        count=int(strings.size),
        null_count=n_null,
    )


def profile_feature(
    values: npt.ArrayLike, kind: str, *, name: str = "", bins: int = 10
) -> NumericProfile | CategoricalProfile:
    """Profile a column of kind ``numeric`` or ``categorical``.

    Examples
    --------
    >>> profile_feature(["a"], "categorical").kind
    'categorical'
    """
    if kind == "numeric":
        return profile_numeric(values, name=name, bins=bins)
    if kind == "categorical":
        return profile_categorical(values, name=name)
    raise ValueError(f"unknown feature kind {kind!r}")


class ModelProfile(_Frozen):
    """Reference profile of a model version: features, predictions, scores, performance.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> prof = build_profile(
    ...     "credit", "v1",
    ...     features={"income": rng.normal(size=500), "region": rng.choice(["n", "s"], 500)},
    ...     kinds={"income": "numeric", "region": "categorical"},
    ...     predictions=rng.integers(0, 2, 500), task="binary_classification")
    >>> sorted(prof.features), prof.prediction.kind
    (['income', 'region'], 'categorical')
    >>> ModelProfile.model_validate_json(prof.model_dump_json()) == prof
    True
    """

    model_id: str
    model_version: str
    task: str = "binary_classification"
    n_rows: int = Field(ge=0)
    bins: int = Field(default=10, ge=1)
    features: dict[str, FeatureProfile]
    prediction: FeatureProfile | None = None
    score: NumericProfile | None = None
    reference_performance: ReferencePerformance | None = None
    #: Per performance metric, its window-to-window spread on the reference beyond
    #: sampling (:func:`~driftline.detectors.thresholds.learn_spread`).
    performance_spread: dict[str, MetricSpread] = Field(default_factory=dict)
    #: Per feature and data-quality rate, its base rate and window-to-window spread on
    #: the reference (:func:`~driftline.detectors.thresholds.learn_rate_spread`).
    quality_spread: dict[str, dict[str, RateSpread]] = Field(default_factory=dict)
    #: Per feature and drift statistic, its spread over the reference's windows
    #: (:func:`~driftline.detectors.drift_spread.with_drift_spreads`).
    drift_spread: dict[str, dict[str, DriftSpread]] = Field(default_factory=dict)
    #: Per segment key, per slice value (``_other`` last), the slice's own profile over
    #: this profile's bins (:mod:`~driftline.detectors.segments`; empty without a
    #: ``segments`` section).
    segments: dict[str, dict[str, ModelProfile]] = Field(default_factory=dict)
    #: The reference's encoding and principal components, and its reconstruction-error
    #: spread (with ``drift.multivariate``; :mod:`~driftline.detectors.multivariate`).
    multivariate: MultivariateModel | None = None
    #: Scores to probabilities for label-free estimation (with
    #: ``performance.estimation``; :mod:`~driftline.detectors.estimation`).
    calibration: Calibration | None = None

    def to_json(self) -> str:
        """Serialise to JSON (floats round-trip exactly)."""
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelProfile:
        """Load a profile written by :meth:`to_json`."""
        return cls.model_validate_json(text)


def build_profile(
    model_id: str,
    model_version: str,
    *,
    features: Mapping[str, npt.ArrayLike],
    kinds: Mapping[str, str],
    predictions: npt.ArrayLike | None = None,
    scores: npt.ArrayLike | None = None,
    labels: npt.ArrayLike | None = None,
    task: str = "binary_classification",
    bins: int = 10,
    positive_label: str = "1",
    window_starts: npt.ArrayLike | None = None,
    min_window_labels: int = 100,
    min_window_samples: int = 200,
) -> ModelProfile:
    """Profile a reference sample of a model.

    Parameters
    ----------
    features
        Column name to values, all of the same length.
    kinds
        Column name to ``numeric`` or ``categorical`` (every column of ``features``).
    predictions, scores, labels
        Optional aligned arrays; predictions are categorical for classification tasks,
        numeric for regression; ``scores`` is the positive-class probability; labels (null
        for unlabelled rows) give the reference performance.
    window_starts, min_window_labels, min_window_samples
        Each row's window (aligned with the columns): the reference performance of
        each window with at least ``min_window_labels`` labels gives every metric's
        window-to-window spread (:func:`~driftline.detectors.thresholds.learn_spread`),
        and each feature's data-quality rates of the windows with at least
        ``min_window_samples`` values theirs (:func:`quality_windows`).
    """
    lengths = {np.asarray(v).reshape(-1).size for v in features.values()}
    if len(lengths) > 1:
        raise ValueError("feature columns differ in length")
    missing = set(features) - set(kinds)
    if missing:
        raise ValueError(f"no kind given for features {sorted(missing)}")
    n_rows = lengths.pop() if lengths else 0
    profs: dict[str, Any] = {
        name: profile_feature(values, kinds[name], name=name, bins=bins)
        for name, values in features.items()
    }
    prediction = None
    score = None
    reference = None
    spread: dict[str, MetricSpread] = {}
    pred_kind = "numeric" if task == "regression" else "categorical"
    if predictions is not None:
        prediction = profile_feature(predictions, pred_kind, name="prediction", bins=bins)
        n_rows = max(n_rows, np.asarray(predictions).reshape(-1).size)
    if scores is not None:
        score = profile_numeric(scores, name="score", bins=bins)
    if predictions is not None and labels is not None:
        counts = performance_counts(task, predictions, labels, scores, positive_label)
        reference = ReferencePerformance.from_counts(task, counts)
        if window_starts is not None:
            spread = _spread(
                reference,
                _window_metrics(task, predictions, labels, scores, positive_label, window_starts),
                min_window_labels,
            )
    quality: dict[str, dict[str, RateSpread]] = {}
    if window_starts is not None and n_rows:
        for name, values in features.items():
            quality[name] = {
                metric: learn_rate_spread(metric, bad, n, min_samples=min_window_samples)
                for metric, (bad, n) in quality_windows(values, kinds[name], window_starts).items()
            }
    return ModelProfile(
        model_id=model_id,
        model_version=model_version,
        task=task,
        n_rows=n_rows,
        bins=bins,
        features=profs,
        prediction=prediction,
        score=score,
        reference_performance=reference,
        performance_spread=spread,
        quality_spread=quality,
    )


def quality_windows(
    values: npt.ArrayLike, kind: str, window_starts: npt.ArrayLike, min_others: int = 1
) -> dict[str, tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]]:
    """Per data-quality rate, each reference window's count of bad values and of values.

    ``null_rate``: nulls of all values. ``out_of_range_rate`` (numeric): values outside
    the range of the *other* windows, of the non-null values; ``unseen_rate``
    (categorical): values of categories no other window has. A window whose other
    windows hold fewer than ``min_others`` non-null values counts 0 of 0 for those two
    (they would make everything look new). With one window there is no other: only the
    null rate.

    Examples
    --------
    >>> out = quality_windows([1.0, 5.0, 2.0, np.nan, 3.0, 2.5], "numeric",
    ...                       [0.0, 0.0, 60.0, 60.0, 120.0, 120.0])
    >>> out["null_rate"][0].tolist(), out["out_of_range_rate"][0].tolist()
    ([0, 1, 0], [2, 0, 0])
    """
    starts = np.asarray(window_starts, dtype=np.float64).reshape(-1)
    _, window = np.unique(starts, return_inverse=True)
    k = int(window.max()) + 1 if window.size else 0
    if kind == "numeric":
        x = as_float_array(values).reshape(-1)
        null = ~np.isfinite(x)
    else:
        strings, null = category_array(values)
    if starts.size != null.size:
        raise ValueError("window_starts and the column differ in length")
    out = {
        "null_rate": (
            np.bincount(window[null], minlength=k),
            np.bincount(window, minlength=k),
        )
    }
    if k < 2:
        return out
    present = ~null
    n = np.bincount(window[present], minlength=k)
    judged = (n.sum() - n) >= max(min_others, 1)  # windows whose others hold enough
    if kind == "numeric":
        lows = np.full(k, np.inf)
        highs = np.full(k, -np.inf)
        np.minimum.at(lows, window[present], x[present])
        np.maximum.at(highs, window[present], x[present])
        low_else = _others(lows, np.minimum, np.inf)
        high_else = _others(highs, np.maximum, -np.inf)
        w = window[present]
        outside = (x[present] < low_else[w]) | (x[present] > high_else[w])
        bad = np.bincount(w[outside], minlength=k)
        out["out_of_range_rate"] = (np.where(judged, bad, 0), np.where(judged, n, 0))
    else:
        w = window[present]
        cats, code = np.unique(strings[present], return_inverse=True)
        pairs = np.unique(code * k + w)
        windows_of = np.bincount(pairs // k, minlength=cats.size)
        alone = windows_of[code] == 1
        bad = np.bincount(w[alone], minlength=k)
        out["unseen_rate"] = (np.where(judged, bad, 0), np.where(judged, n, 0))
    return out


def _others(values: npt.NDArray[np.float64], pick: Any, empty: float) -> npt.NDArray[np.float64]:
    """For each entry, ``pick`` (np.minimum or np.maximum) over all the others."""
    before = np.concatenate([[empty], pick.accumulate(values)[:-1]])
    after = np.concatenate([pick.accumulate(values[::-1])[::-1][1:], [empty]])
    return pick(before, after)


def _window_metrics(
    task: str,
    predictions: npt.ArrayLike,
    labels: npt.ArrayLike,
    scores: npt.ArrayLike | None,
    positive_label: str,
    window_starts: npt.ArrayLike,
) -> list[dict[str, MetricEstimate]]:
    """The performance metrics of each window of the reference."""
    starts = np.asarray(window_starts, dtype=np.float64).reshape(-1)
    pred = np.asarray(predictions).reshape(-1)
    lab = np.asarray(labels).reshape(-1)
    if not starts.size == pred.size == lab.size:
        raise ValueError("window_starts, predictions and labels differ in length")
    score = None if scores is None else np.asarray(scores).reshape(-1)
    order = np.argsort(starts, kind="stable")
    bounds = np.flatnonzero(np.diff(starts[order])) + 1
    out = []
    for rows in np.split(order, bounds):
        counts = performance_counts(
            task, pred[rows], lab[rows], None if score is None else score[rows], positive_label
        )
        out.append(counts.metrics())
    return out


def _spread(
    reference: ReferencePerformance,
    windows: list[dict[str, MetricEstimate]],
    min_labels: int,
) -> dict[str, MetricSpread]:
    """Each reference metric's spread over the windows."""
    return {
        name: learn_spread(estimate, [w[name] for w in windows if name in w], min_labels=min_labels)
        for name, estimate in reference.metrics.items()
        if estimate.value is not None
    }
