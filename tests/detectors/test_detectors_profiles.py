"""Reference profiles: frozen bins, window histograms, merging, JSON round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest
from driftline.detectors import (
    CategoricalCounts,
    ModelProfile,
    NumericCounts,
    NumericProfile,
    build_profile,
    profile_categorical,
    profile_numeric,
)
from driftline.detectors.profiles import sorted_quantiles
from hypothesis import given, settings
from hypothesis import strategies as st


def test_numeric_bins_are_reference_quantiles_with_open_outer_bins() -> None:
    x = np.random.default_rng(0).normal(size=10_000)
    prof = profile_numeric(x, bins=10)
    edges = np.asarray(prof.edges)
    assert edges[0] == x.min()
    assert edges[-1] == np.nextafter(x.max(), np.inf)
    levels = np.linspace(0, 1, 11)[1:-1]
    assert np.array_equal(edges[1:-1], np.quantile(x, levels, method="lower"))
    assert prof.n_bins == 12
    assert prof.reference_counts[0] == prof.reference_counts[-1] == 0
    assert list(prof.reference_counts[1:-1]) == [999] + [1000] * 8 + [1001]
    assert prof.frequencies.sum() == pytest.approx(1.0)
    assert (prof.min, prof.max) == (x.min(), x.max())
    assert (prof.mean, prof.std) == (pytest.approx(x.mean()), pytest.approx(x.std()))
    assert dict(zip(prof.quantile_levels, prof.quantile_values, strict=True))[0.5] == np.median(x)


def test_discrete_reference_dedupes_edges() -> None:
    x = np.array([0.0] * 70 + [1.0] * 30)
    prof = profile_numeric(x)
    assert prof.edges == (0.0, 1.0, float(np.nextafter(1.0, 2.0)))
    assert prof.reference_counts == (0, 70, 30, 0)
    assert prof.histogram(np.array([0.0, 1.0, 1.0, 2.0, -1.0])).counts == (1, 1, 2, 1)


def test_constant_and_all_null_references() -> None:
    const = profile_numeric(np.full(10, 4.0))
    assert const.reference_counts == (0, 10, 0)
    assert const.histogram([3.9, 4.0, 4.1]).counts == (1, 1, 1)
    assert const.scale == 1.0  # std 0 falls back to 1
    empty = profile_numeric([np.nan, None, np.inf])
    assert (empty.count, empty.null_count, empty.n_bins, empty.mean) == (0, 3, 1, None)
    assert empty.histogram([1.0, np.nan]).counts == (1,)


def test_window_histogram_equals_searchsorted_binning() -> None:
    rng = np.random.default_rng(1)
    prof = profile_numeric(rng.normal(size=5000))
    window = np.r_[rng.normal(0.5, 2, 3000), [np.nan, -np.inf, np.inf]]
    hist = prof.histogram(window)
    finite = window[np.isfinite(window)]
    idx = np.searchsorted(np.asarray(prof.edges), finite, side="right")
    assert hist.counts == tuple(np.bincount(idx, minlength=prof.n_bins).tolist())
    assert np.allclose(hist.sums, np.bincount(idx, weights=finite, minlength=prof.n_bins))
    assert hist.null_count == 3
    assert prof.out_of_range(hist) == int((finite < prof.min).sum() + (finite > prof.max).sum())


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=200),
    st.lists(st.floats(-1e6, 1e6), min_size=0, max_size=200),
    st.integers(0, 200),
)
def test_property_histograms_merge_by_addition(
    ref: list[float], window: list[float], split: int
) -> None:
    prof = profile_numeric(np.asarray(ref), bins=5)
    w = np.asarray(window, dtype=float)
    whole = prof.histogram(w)
    merged = prof.histogram(w[:split]) + prof.histogram(w[split:])
    assert merged.counts == whole.counts
    assert merged.null_count == whole.null_count
    assert np.allclose(merged.sums, whole.sums)
    assert sum(whole.counts) == len(window)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=100))
def test_property_numeric_profile_json_round_trip_is_exact(values: list[float]) -> None:
    prof = profile_numeric(np.asarray(values, dtype=float), name="x", bins=7)
    assert NumericProfile.model_validate_json(prof.model_dump_json()) == prof


def test_sorted_quantiles_match_numpy() -> None:
    x = np.sort(np.random.default_rng(2).exponential(size=999))
    levels = np.linspace(0, 1, 37)
    assert np.array_equal(sorted_quantiles(x, levels), np.quantile(x, levels))


def test_categorical_profile_and_unseen_bucket() -> None:
    prof = profile_categorical(np.array(["b", "a", "a", None, "c", "a", "b"], dtype=object))
    assert prof.categories == ("a", "b", "c")
    assert prof.reference_counts == (3, 2, 1, 0)
    assert prof.null_count == 1
    window = prof.histogram(["a", "zz", "zz", None, None])
    assert window.counts == {"a": 1, "zz": 2}
    assert window.null_count == 2
    assert prof.vector(window).tolist() == [1.0, 0.0, 0.0, 2.0]
    merged = window + CategoricalCounts(counts={"c": 5})
    assert prof.vector(merged).tolist() == [1.0, 0.0, 5.0, 2.0]


def test_numbers_as_categories_are_canonical() -> None:
    prof = profile_categorical([1, 2, 2])
    assert prof.vector(prof.histogram(np.array([1.0, 2.0, np.nan]))).tolist() == [1, 1, 0]


def test_counts_validation() -> None:
    with pytest.raises(ValueError):
        NumericCounts(counts=(1, -1))
    with pytest.raises(ValueError):
        NumericCounts(counts=(1, 2), sums=(1.0,))
    with pytest.raises(ValueError):
        NumericCounts(counts=(1, 2)) + NumericCounts(counts=(1, 2, 3))
    with pytest.raises(ValueError):
        NumericProfile(
            edges=(1.0, 0.0),
            reference_counts=(0, 1, 0),
            bin_means=(0, 0, 0),
            count=1,
            null_count=0,
        )


def test_model_profile_round_trip_with_everything() -> None:
    rng = np.random.default_rng(3)
    n = 2000
    labels = rng.integers(0, 2, n)
    scores = np.clip(0.35 * labels + rng.uniform(0, 0.65, n), 0, 1)
    prof = build_profile(
        "credit",
        "v7",
        features={
            "income": rng.lognormal(10, 1, n),
            "age": rng.integers(18, 90, n).astype(float),
            "region": rng.choice(["north", "south", "east"], n),
        },
        kinds={"income": "numeric", "age": "numeric", "region": "categorical"},
        predictions=(scores > 0.5).astype(int),
        scores=scores,
        labels=labels,
    )
    assert prof.n_rows == n
    assert prof.prediction is not None and prof.prediction.kind == "categorical"
    assert prof.score is not None
    assert prof.reference_performance is not None
    assert set(prof.reference_performance.metrics) >= {"accuracy", "roc_auc", "log_loss"}
    text = prof.to_json()
    json.loads(text)
    again = ModelProfile.from_json(text)
    assert again == prof
    assert again.to_json() == text


def test_build_profile_rejects_ragged_or_unkinded_columns() -> None:
    with pytest.raises(ValueError, match="length"):
        build_profile(
            "m", "v", features={"a": [1.0], "b": [1.0, 2.0]}, kinds={"a": "numeric", "b": "numeric"}
        )
    with pytest.raises(ValueError, match="kind"):
        build_profile("m", "v", features={"a": [1.0]}, kinds={})
