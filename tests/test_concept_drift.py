"""Online concept-drift detectors: config, the pure step, backtest and streaming (chDB)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import test_monitor
from driftline.detectors.concept import (
    ConceptState,
    LabelRows,
    advance_concept,
    concept_drift_detectors,
    concept_drift_step,
    label_order,
)
from driftline.detectors.online import DETECTORS
from driftline.detectors.step import MonitorState
from driftline.schemas.monitor import ONLINE_DETECTORS, MonitorConfig, MonitorConfigError
from test_monitor import Harness, assert_same_metrics, backtest_case, clock_event

from driftline.backtest import reference_profile, run_backtest
from driftline.store.profiles import save_profile

BASE = "model_id: m\nfeatures: {x: numeric}\n"
SECTION = "concept_drift:\n  detectors: [adwin, page_hinkley, ddm]\n"


# --------------------------------------------------------------------------- config


def test_the_section_is_optional_and_checked() -> None:
    assert MonitorConfig.from_yaml(BASE).concept_drift is None
    cfg = MonitorConfig.from_yaml(BASE + "concept_drift: {detectors: [adwin], min_labels: 50}")
    assert cfg.concept_drift is not None
    assert cfg.concept_drift.detectors == ("adwin",) and cfg.concept_drift.min_labels == 50
    bad = {
        "concept_drift: {detectorz: [adwin]}": "concept_drift.detectorz: unknown key",
        "concept_drift: {detectors: [adwin], params: {adwin: {delt: 1}}}": "params.adwin.delt",
        "concept_drift: {detectors: [adwin], params: {ddm: {}}}": "'ddm' is not in detectors",
        "concept_drift: {detectors: [nope]}": "concept_drift.detectors.0",
        "concept_drift: {detectors: [adwin, adwin]}": "named twice",
    }
    for text, message in bad.items():
        with pytest.raises(MonitorConfigError, match=message.replace(".", r"\.")):
            MonitorConfig.from_yaml(BASE + text)
    with pytest.raises(MonitorConfigError, match="'ddm' takes 0/1 errors"):
        MonitorConfig.from_yaml(BASE + "task: regression\nconcept_drift: {detectors: [ddm]}")


def test_schema_parameter_names_match_the_detectors() -> None:
    assert set(ONLINE_DETECTORS) == set(DETECTORS)
    for name, cls in DETECTORS.items():
        assert ONLINE_DETECTORS[name] == frozenset(cls._defaults), name


# --------------------------------------------------------------------------- pure step


def _config(extra: str = SECTION) -> MonitorConfig:
    return MonitorConfig.from_yaml(BASE + extra)


def _rows(n: int, flip_at: int, size: float = 60.0, per_window: int = 200) -> LabelRows:
    rng = np.random.default_rng(0)
    wrong = np.where(np.arange(n) < flip_at, rng.random(n) < 0.1, rng.random(n) < 0.5)
    labels = np.where(wrong, "0", "1")
    return LabelRows(
        times=list(range(n)),
        event_ids=[f"e{i:05d}" for i in range(n)],
        predictions=np.full(n, "1"),
        labels=labels,
        starts=(np.arange(n) // per_window * size).tolist(),
    )


def _part(rows: LabelRows, lo: int, hi: int) -> LabelRows:
    return LabelRows(
        times=rows.times[lo:hi],
        event_ids=rows.event_ids[lo:hi],
        predictions=rows.predictions[lo:hi],
        labels=rows.labels[lo:hi],
        starts=rows.starts[lo:hi],
    )


def test_detections_land_in_the_window_of_the_change_and_not_before() -> None:
    rows = _rows(2000, flip_at=1200)
    state, changed = advance_concept(_config(), ConceptState(), rows)
    assert changed and state.cursor == (1999, "e01999")
    hits = state.by_start()
    assert hits, "no detection"
    assert min(hits) >= 6 * 60.0  # the change is in window 6 (rows 1200..1399)
    assert set().union(*hits.values()) <= {"adwin", "page_hinkley", "ddm"}


def test_split_feeding_with_a_json_round_trip_equals_one_pass() -> None:
    config = _config()
    rows = _rows(2000, flip_at=1200)
    whole, _ = advance_concept(config, ConceptState(), rows)
    state = MonitorState()
    for lo, hi in ((0, 700), (700, 1250), (1250, 2000)):
        concept, _ = advance_concept(config, state.concept, _part(rows, lo, hi))
        # the state goes through its JSON form, as the monitor_state table stores it
        text = state.model_copy(update={"concept": concept}).model_dump_json()
        state = MonitorState.model_validate_json(text)
    assert state.concept.by_start() == whole.by_start()
    assert state.concept.cursor == whole.cursor
    for name, saved in state.concept.detectors.items():
        assert saved["n_seen"] == 2000, name


def test_min_labels_and_changed_params_reset() -> None:
    config = _config("concept_drift: {detectors: [page_hinkley], min_labels: 100000}")
    state, _ = advance_concept(config, ConceptState(), _rows(2000, flip_at=1200))
    assert state.by_start() == {}  # warm-up swallowed the detection
    other = _config(
        "concept_drift: {detectors: [page_hinkley], params: {page_hinkley: {threshold: 5}}}"
    )
    restored = concept_drift_detectors(other, state.detectors)
    assert restored["page_hinkley"].n_seen == 0  # other parameters: a fresh detector
    same = concept_drift_detectors(config, state.detectors)
    assert same["page_hinkley"].n_seen == 2000


def test_label_order_and_regression_errors() -> None:
    assert label_order([2.0, 1.0, 2.0, 1.0], ["b", "b", "a", "a"]).tolist() == [3, 1, 2, 0]
    config = _config("task: regression\nconcept_drift: {detectors: [page_hinkley]}")
    dets = concept_drift_detectors(config)
    preds = np.zeros(600)
    labels = np.r_[np.full(300, 0.1), np.full(300, 3.0)]
    labels[5] = np.nan  # no error for it: skipped
    hits = concept_drift_step(
        config, dets, predictions=preds, labels=labels, window_starts=[0.0] * 300 + [60.0] * 300
    )
    assert list(hits) == [60.0]
    assert dets["page_hinkley"].n_seen == 599


# --------------------------------------------------------------------------- shells


@pytest.fixture
def case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path, Any, Path]:
    monkeypatch.setattr(test_monitor, "EXTRA", test_monitor.EXTRA + SECTION)
    monitor, ref_path, events, stream = backtest_case(tmp_path)
    out = tmp_path / "out"
    run_backtest(monitor, ref_path, events, out)
    return monitor, ref_path, events, stream, out


def _lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines()]


def test_backtest_flags_the_concept_change_in_its_window_only(case: Any) -> None:
    _, _, _, stream, out = case
    first = float(stream.timestamps.min())
    rows = [r for r in _lines(out / "metrics.jsonl") if r["kind"] == "concept_drift"]
    from datetime import datetime

    by_window: dict[int, float] = {}
    for r in rows:
        k = round((datetime.fromisoformat(r["window_start"]).timestamp() - first) // 60)
        by_window[k] = by_window.get(k, 0.0) + r["value"]
    assert len(rows) == 8 * 3  # one row per window and detector
    assert all(by_window[k] == 0 for k in range(6)), by_window  # nothing before the change
    assert by_window[6] > 0, by_window  # accuracy drops from window 6 on
    alerts = [a for a in _lines(out / "alerts.jsonl") if a["kind"] == "concept_drift"]
    assert alerts and all(
        datetime.fromisoformat(a["window_start"]).timestamp() >= first + 6 * 60 for a in alerts
    )


def test_streaming_with_a_restart_equals_the_backtest(tmp_path: Path, case: Any) -> None:
    monitor, ref_path, events, stream, out = case
    h = Harness(tmp_path, monitor)
    try:
        save_profile(h.store, reference_profile(monitor, ref_path)[1])
        lines = events.read_bytes().splitlines()
        third = len(lines) // 3
        h.ingest(lines[:third])
        h.tick()
        h.ingest(lines[third : 2 * third])
        h.tick()
        state = h.monitor._load_states("credit")["v1"]
        fed = state.concept.detectors["adwin"]["n_seen"]
        assert state.concept.cursor is not None and 0 < fed < stream.rows
        # restart: a new Monitor on the same store resumes from the stored state
        h.monitor = h._monitor(monitor)
        h.ingest(lines[2 * third :])
        h.ingest([clock_event(float(stream.timestamps.max()) + 60 + 10 + 120)])
        h.tick()
        h.tick()  # nothing more to do
        metrics = h.metrics()
        assert_same_metrics(metrics, out)
        concept = [r for r in metrics if r["kind"] == "concept_drift"]
        assert concept and any(r["value"] > 0 for r in concept)
        state = h.monitor._load_states("credit")["v1"]
        assert state.concept.detectors["adwin"]["n_seen"] == int(stream.labelled.sum())
        want = {a["alert_id"] for a in _lines(out / "alerts.jsonl")}
        assert {a["alert_id"] for a in h.sent["alerts"]} == want
        assert any(a["kind"] == "concept_drift" for a in h.sent["alerts"])
    finally:
        h.store.close()
