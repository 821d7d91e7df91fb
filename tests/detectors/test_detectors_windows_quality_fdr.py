"""Windows, data quality and Benjamini-Hochberg."""

from __future__ import annotations

import math

import numpy as np
import pytest
from driftline.detectors import (
    NumericCounts,
    assess_quality,
    assign_windows,
    benjamini_hochberg,
    bh_reject,
    closes,
    profile_categorical,
    profile_numeric,
)
from driftline.detectors.windows import to_microseconds
from driftline.schemas.monitor import QualityConfig
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import false_discovery_control

# ------------------------------------------------------------------------------ windows


def test_windows_align_to_the_epoch() -> None:
    t = np.array([1_700_000_000.0, 1_700_003_599.9, 1_700_003_600.0])
    starts = assign_windows(t, 3600)
    assert starts.tolist() == [1_699_999_200.0, 1_700_002_800.0, 1_700_002_800.0]
    assert (starts % 3600 == 0).all()


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(0, 4e9, allow_nan=False), min_size=1, max_size=50),
    st.sampled_from([1.0, 30.0, 60.0, 3600.0, 86400.0]),
)
def test_property_each_timestamp_falls_in_its_window(ts: list[float], size: float) -> None:
    t = to_microseconds(ts)  # windows hold times to the microsecond
    starts = assign_windows(t, size)
    assert (starts <= t).all()
    assert (t < starts + size).all()


def test_watermark_closes_window_after_lateness() -> None:
    starts = np.array([0.0, 60.0, 120.0])
    assert closes(starts, 60, 30, 149.0).tolist() == [True, False, False]
    assert closes(starts, 60, 30, 150.0).tolist() == [True, True, False]


def test_windows_count_in_whole_microseconds() -> None:
    """A time a fraction of a microsecond before a boundary is rounded onto it, as the
    event models and ClickHouse's DateTime64(6) keep it; closing compares microseconds."""
    assert assign_windows([59.9999996, 59.9999994], 60).tolist() == [60.0, 0.0]
    assert closes([0.0], 60, 0.1, 60.0999996).tolist() == [True]
    assert closes([0.0], 60, 0.1, 60.0999994).tolist() == [False]
    assert closes([0.0], 60, 0, math.inf).tolist() == [True]


# ------------------------------------------------------------------------------ quality


def test_numeric_quality_rates() -> None:
    prof = profile_numeric(np.r_[np.linspace(0, 1, 900), [np.nan] * 100])  # 10 % null
    window = np.r_[np.linspace(-1, 2, 300), [np.nan] * 100]
    res = {r.metric: r for r in assess_quality(prof, prof.histogram(window), QualityConfig())}
    assert res["null_rate"].value == pytest.approx(0.25)
    assert res["null_rate"].reference == pytest.approx(0.1)
    assert res["null_rate"].verdict == "warning"  # 0.15 above the reference
    out = ((window < 0) | (window > 1)).sum()
    assert res["out_of_range_rate"].value == pytest.approx(out / 300)
    assert res["out_of_range_rate"].verdict == "critical"


def test_categorical_unseen_rate_and_min_samples() -> None:
    prof = profile_categorical(["a", "b"] * 100)
    window = prof.histogram(["a"] * 90 + ["new"] * 10)
    res = {r.metric: r for r in assess_quality(prof, window, QualityConfig())}
    assert res["unseen_rate"].value == pytest.approx(0.1)
    assert res["unseen_rate"].verdict == "warning"
    res = {r.metric: r for r in assess_quality(prof, window, QualityConfig(), min_samples=500)}
    assert res["unseen_rate"].verdict == "insufficient"


def test_quality_on_an_empty_window_is_insufficient() -> None:
    prof = profile_numeric([1.0, 2.0])
    res = assess_quality(prof, NumericCounts(counts=(0, 0, 0, 0)), QualityConfig())
    assert [r.verdict for r in res] == ["insufficient", "insufficient"]
    assert all(r.value == 0.0 for r in res)


# ---------------------------------------------------------------------------------- fdr


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=40))
def test_property_bh_matches_scipy(p: list[float]) -> None:
    assert np.allclose(benjamini_hochberg(p), false_discovery_control(p, method="bh"))


def test_bh_ignores_missing_tests() -> None:
    q = benjamini_hochberg([0.01, np.nan, 0.04])
    assert np.isnan(q[1])
    assert q[[0, 2]].tolist() == pytest.approx([0.02, 0.04])
    assert bh_reject([0.01, np.nan, 0.04], 0.05).tolist() == [True, False, True]
    assert bh_reject([], 0.05).size == 0
