"""One contract suite over every drift statistic and every online detector."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from driftline.detectors import (
    DETECTORS,
    STATISTICS,
    DriftResult,
    DriftStatistic,
    OnlineDetector,
    get_detector,
    get_statistic,
)
from hypothesis import given, settings
from hypothesis import strategies as st

STAT_NAMES = sorted(STATISTICS)
DETECTOR_NAMES = sorted(DETECTORS)
ORDERED_ONLY = {name for name, cls in STATISTICS.items() if cls.ordered_only}
SYMMETRIC = {"psi", "jensen_shannon", "hellinger", "ks", "wasserstein"}


def _finite(result: DriftResult) -> bool:
    values = [result.value, result.p_value, result.test_statistic]
    return all(v is None or math.isfinite(v) for v in values)


# --------------------------------------------------------------------------- statistics


@pytest.mark.parametrize("name", STAT_NAMES)
class TestStatisticContract:
    def test_clone_reset_and_state_round_trip(self, name: str) -> None:
        stat = get_statistic(name, warning=0.05, critical=0.5)
        assert stat.clone() == stat
        assert stat.clone() is not stat
        state = json.loads(json.dumps(stat.to_state()))
        restored = DriftStatistic.from_state(state)
        assert type(restored) is type(stat)
        assert restored == stat
        before = stat.compare([10, 20, 30], [30, 20, 10])
        stat.reset()
        assert stat.compare([10, 20, 30], [30, 20, 10]) == before

    def test_default_thresholds_come_from_the_config_table(self, name: str) -> None:
        from driftline.schemas.monitor import DEFAULT_THRESHOLDS

        stat = get_statistic(name)
        assert (stat.warning, stat.critical) == DEFAULT_THRESHOLDS[name]

    @pytest.mark.parametrize(
        ("reference", "current"),
        [
            ([], []),
            ([np.nan] * 50, [np.nan] * 50),
            ([1.0] * 50, []),
            ([], [1.0] * 50),
        ],
        ids=["empty", "all-null", "empty-current", "empty-reference"],
    )
    def test_missing_data_is_insufficient(
        self, name: str, reference: list[float], current: list[float]
    ) -> None:
        res = get_statistic(name).compare_samples(np.asarray(reference), np.asarray(current))
        assert res.verdict == "insufficient"
        assert res.value == 0.0
        assert _finite(res)

    @pytest.mark.parametrize(
        ("reference", "current"),
        [
            ([3.0] * 100, [3.0] * 100),
            ([3.0] * 100, [7.0] * 100),
            ([3.0], [3.0]),
            ([3.0], [-1.0]),
            ([0.0, 0.0, 1.0], [5.0, 5.0, 5.0]),
        ],
        ids=["constant-same", "constant-moved", "single-same", "single-moved", "outside-range"],
    )
    def test_degenerate_samples_stay_finite(
        self, name: str, reference: list[float], current: list[float]
    ) -> None:
        res = get_statistic(name).compare_samples(np.asarray(reference), np.asarray(current))
        assert _finite(res)
        assert res.verdict in ("ok", "warning", "critical")
        if reference == current:
            assert res.value == pytest.approx(0.0, abs=1e-12)
            assert res.verdict == "ok"

    def test_empty_bins_stay_finite(self, name: str) -> None:
        res = get_statistic(name).compare([5, 0, 0, 0], [0, 0, 0, 5])
        assert _finite(res)
        assert res.verdict == "critical"

    def test_identical_data_is_not_drift(self, name: str) -> None:
        x = np.random.default_rng(1).normal(size=3000)
        res = get_statistic(name).compare_samples(x, x)
        assert res.value == pytest.approx(0.0, abs=1e-12)
        assert res.verdict == "ok"
        if res.p_value is not None:
            assert res.p_value == pytest.approx(1.0)

    def test_same_distribution_is_not_drift(self, name: str) -> None:
        rng = np.random.default_rng(2)
        res = get_statistic(name).compare_samples(rng.normal(size=20_000), rng.normal(size=5000))
        assert res.verdict == "ok"

    def test_known_shift_is_critical(self, name: str) -> None:
        rng = np.random.default_rng(3)
        res = get_statistic(name).compare_samples(
            rng.normal(size=20_000), rng.normal(1.0, 1.0, size=5000)
        )
        assert res.verdict == "critical"
        if res.p_value is not None:
            assert res.p_value < 1e-10

    def test_categorical_input(self, name: str) -> None:
        ref = np.array(["a"] * 500 + ["b"] * 300 + ["c"] * 200)
        same = np.array(["a"] * 50 + ["b"] * 30 + ["c"] * 20)
        moved = np.array(["a"] * 20 + ["b"] * 30 + ["c"] * 50)
        stat = get_statistic(name)
        if name in ORDERED_ONLY:
            with pytest.raises(ValueError, match="ordered"):
                stat.compare_samples(ref, same)
            return
        assert stat.compare_samples(ref, same).value == pytest.approx(0.0, abs=1e-12)
        assert stat.compare_samples(ref, moved).verdict == "critical"

    def test_rejects_bad_histograms(self, name: str) -> None:
        stat = get_statistic(name)
        with pytest.raises(ValueError):
            stat.compare([1, 2], [1, 2, 3])
        with pytest.raises(ValueError):
            stat.compare([1, -2], [1, 2])
        with pytest.raises(ValueError):
            stat.compare([1, np.inf], [1, 2])


_counts = st.lists(st.integers(0, 10_000), min_size=2, max_size=12)


@pytest.mark.parametrize("name", STAT_NAMES)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_property_finite_nonnegative_and_scale_free(name: str, data: st.DataObject) -> None:
    ref = data.draw(_counts)
    cur = data.draw(st.lists(st.integers(0, 10_000), min_size=len(ref), max_size=len(ref)))
    k = data.draw(st.integers(2, 50))
    stat = get_statistic(name)
    res = stat.compare(ref, cur)
    assert _finite(res)
    if sum(ref) == 0 or sum(cur) == 0:
        assert res.verdict == "insufficient"
        return
    assert res.value >= 0
    scaled = stat.compare(np.asarray(ref) * k, np.asarray(cur) * k)
    assert scaled.value == pytest.approx(res.value, rel=1e-9, abs=1e-12)
    assert stat.compare(ref, ref).value == pytest.approx(0.0, abs=1e-12)
    if name in SYMMETRIC:  # with a fixed scale for Wasserstein
        there = stat.compare(ref, cur, scale=1.0).value
        back = stat.compare(cur, ref, scale=1.0).value
        assert back == pytest.approx(there, rel=1e-9, abs=1e-12)


# ---------------------------------------------------------------------- online detectors

#: Parameters for the contract: DDM's default warm start (30) reacts to early noise.
DETECTOR_PARAMS: dict[str, dict[str, float]] = {"ddm": {"warm_start": 200}}


def _detector(name: str) -> OnlineDetector:
    return get_detector(name, **DETECTOR_PARAMS.get(name, {}))


def _shift_stream(seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.r_[rng.random(1000) < 0.1, rng.random(1000) < 0.6].astype(float)


@pytest.mark.parametrize("name", DETECTOR_NAMES)
class TestOnlineContract:
    def test_clone_is_fresh_with_same_params(self, name: str) -> None:
        det = _detector(name)
        det.update_many(_shift_stream())
        twin = det.clone()
        assert type(twin) is type(det)
        assert twin.params == det.params
        assert (twin.n_seen, twin.n_detections) == (0, 0)

    def test_reset_behaves_like_new(self, name: str) -> None:
        det = _detector(name)
        first = det.update_many(_shift_stream())
        det.reset()
        assert det.n_seen == 0
        assert np.array_equal(det.update_many(_shift_stream()), first)

    def test_state_round_trip_continues_identically(self, name: str) -> None:
        stream = _shift_stream()
        det = _detector(name)
        det.update_many(stream[:900])
        state = json.loads(json.dumps(det.to_state()))
        restored = OnlineDetector.from_state(state)
        assert restored.params == det.params
        assert restored.n_seen == det.n_seen
        assert np.array_equal(det.update_many(stream[900:]), restored.update_many(stream[900:]))
        assert det.to_state()["attrs"] == restored.to_state()["attrs"]

    def test_state_refuses_foreign_classes(self, name: str) -> None:
        import base64
        import pickle

        state = _detector(name).to_state()
        from fractions import Fraction

        state["attrs"] = base64.b64encode(pickle.dumps({"x": Fraction(1, 3)})).decode()
        with pytest.raises(pickle.UnpicklingError, match="fractions"):
            OnlineDetector.from_state(state)

    @pytest.mark.parametrize(
        "values",
        [[], [0.0] * 500, [1.0], [np.nan] * 100, [0.0, 0.0, 0.0, 0.0, 1.0] * 600],
        ids=["empty", "constant", "single", "all-null", "stationary"],
    )
    def test_no_drift_on_degenerate_or_stationary_input(
        self, name: str, values: list[float]
    ) -> None:
        det = _detector(name)
        hits = det.update_many(np.asarray(values, dtype=float))
        assert hits.dtype == np.int64
        assert hits.size == 0
        assert det.n_seen == int(np.isfinite(np.asarray(values, dtype=float)).sum())

    def test_known_shift_is_detected_soon_after_the_change(self, name: str) -> None:
        hits = _detector(name).update_many(_shift_stream())
        assert hits.size >= 1
        assert 1000 <= hits[0] < 1300

    def test_single_updates_match_update_many(self, name: str) -> None:
        stream = _shift_stream()[:1200]
        det = _detector(name)
        singles = [i for i, x in enumerate(stream) if det.update(float(x))]
        assert singles == _detector(name).update_many(stream).tolist()


@pytest.mark.parametrize("name", DETECTOR_NAMES)
@settings(max_examples=6, deadline=None)
@given(split=st.integers(0, 600))
def test_property_chunking_does_not_change_detections(name: str, split: int) -> None:
    stream = _shift_stream(5)[700:1300]  # the change sits at index 300
    whole = _detector(name).update_many(stream)
    det = _detector(name)
    parts = np.r_[det.update_many(stream[:split]), det.update_many(stream[split:]) + split]
    assert np.array_equal(whole, parts)


def test_ddm_rejects_non_binary_errors() -> None:
    with pytest.raises(ValueError, match="0/1"):
        get_detector("ddm").update_many(np.array([0.0, 0.5]))


def test_unknown_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown detector"):
        get_detector("cusum")
    with pytest.raises(ValueError, match="unknown drift method"):
        get_statistic("kl")
    with pytest.raises(TypeError):
        get_detector("adwin", thresold=3)
