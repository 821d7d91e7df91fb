"""Retrain budgets: requests beyond ``max_per_day`` or ``max_training_seconds_per_day``
are skipped with reason ``budget`` and raise a warning ``retrain_budget`` alert, in the
backtest and in the stream alike."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from backtest_streams import START, monitor_yaml, simulate, write_jsonl
from driftline.retrainer.registry import ModelRegistry, VersionRecord
from driftline.schemas.monitor import MonitorConfig, MonitorConfigError
from test_monitor import Harness, clock_event

from driftline.backtest import reference_profile, run_backtest
from driftline.store.profiles import save_profile

HOUR = 3600.0
# Drift in a new feature every 2 hours: each opens an alert that asks for a retrain.
SHIFTS = {f"x{i}": (2 * i + 1, 1.5) for i in range(5)}
RETRAIN = "retrain: {min_labelled_rows: 100, cooldown: 0s, max_per_day: 3}\n"


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _files(tmp_path: Path, extra: str) -> tuple[Path, Path, Path]:
    reference = simulate(n_windows=2, per_window=1000, seed=1, id_prefix="r", n_numeric=5)
    events = simulate(n_windows=12, per_window=1000, seed=2, mean_shift=SHIFTS, n_numeric=5)
    monitors = tmp_path / "monitors"
    monitors.mkdir()
    monitor = monitors / "credit.yaml"
    monitor.write_text(monitor_yaml(events, extra=extra))
    ref = write_jsonl(reference, tmp_path / "ref.jsonl")
    return monitor, ref, write_jsonl(events, tmp_path / "events.jsonl")


def test_requests_beyond_max_per_day_are_skipped_and_alerted(tmp_path: Path) -> None:
    monitor, ref, events = _files(tmp_path, RETRAIN)
    summary = run_backtest(monitor, ref, events, tmp_path / "out")
    requests = _lines(tmp_path / "out" / "retrain_requests.jsonl")
    alerts = _lines(tmp_path / "out" / "alerts.jsonl")
    drift = [a for a in alerts if a["kind"] == "data_drift"]
    budget = [a for a in alerts if a["kind"] == "retrain_budget"]
    assert len(drift) == 5
    assert [r["reason"] for r in requests] == [[a["alert_id"]] for a in drift[:3]]
    assert summary.retrain.requests == 3 and summary.retrain.budget == 2
    # the fourth and fifth drift alerts asked beyond the budget: a warning each
    assert [(b["window_start"], b["severity"]) for b in budget] == [
        (drift[3]["window_start"], "warning"),
        (drift[4]["window_start"], "warning"),
    ]
    assert {(b["statistic"], b["value"], b["threshold"]) for b in budget} == {
        ("retrains_per_day", 3.0, 3.0)
    }
    # without the budget all five ask
    plain = tmp_path / "plain"
    plain.mkdir()
    monitor, ref, events = _files(plain, RETRAIN.replace(", max_per_day: 3", ""))
    assert run_backtest(monitor, ref, events, plain / "out").retrain.requests == 5


def _version(seconds: float, created_at: float, name: str) -> VersionRecord:
    return VersionRecord(
        model_id="credit",
        version=name,
        artifact_uri=f"file:///artifacts/credit/{name}",
        status="rejected",
        training_seconds=seconds,
        created_at=created_at,
        updated_at=created_at,
    )


def test_the_stream_skips_beyond_the_training_seconds_budget(tmp_path: Path) -> None:
    """The registry says 50 minutes of training today and 2 hours yesterday: with a
    one-hour budget the stream asks once more (the yesterday's do not count), and then
    skips and alerts."""
    import time

    extra = RETRAIN.replace("max_per_day: 3", "max_training_seconds_per_day: 3600")
    monitor, ref, events = _files(tmp_path, extra)
    h = Harness(tmp_path, monitor)
    try:
        save_profile(h.store, reference_profile(monitor, ref)[1])
        now = time.time()
        registry = ModelRegistry(h.store)
        registry.record(_version(7200.0, now - 2 * 86_400, "old"), _version(3000.0, now, "new"))
        assert registry.training_seconds_since("credit", now - 86_400) == 3000.0
        h.ingest(events.read_bytes().splitlines()[:8])  # windows 0-3: the first drift
        h.ingest([clock_event(START + 4 * HOUR + 60)])
        h.tick()
        assert len(h.sent["requests"]) == 1 and not _budget(h.sent["alerts"])
        registry.record(_version(700.0, now, "newer"))  # 3,700 s today: over the budget
        h.ingest(events.read_bytes().splitlines()[8:])
        h.ingest([clock_event(START + 12 * HOUR + 700)])
        h.tick()
        assert len(h.sent["requests"]) == 1
        budget = _budget(h.sent["alerts"])
        assert len(budget) == 4 and {a["severity"] for a in budget} == {"warning"}
        assert budget[0]["statistic"] == "training_seconds_per_day"
        assert (budget[0]["value"], budget[0]["threshold"]) == (3700.0, 3600.0)
        stored = h.store.query(
            "SELECT count() AS n FROM alerts FINAL WHERE kind = 'retrain_budget'"
        )
        assert stored[0]["n"] == 4
    finally:
        h.store.close()


def _budget(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for a in alerts if a["kind"] == "retrain_budget"]


def test_a_budget_alert_cannot_ask_for_a_retrain() -> None:
    base = "model_id: m\nfeatures: {x: numeric}\n"
    with pytest.raises(MonitorConfigError, match="retrain_budget alert cannot ask"):
        MonitorConfig.from_yaml(base + "retrain: {on: [performance, retrain_budget]}\n")


@pytest.mark.e2e
def test_a_real_worker_skips_and_alerts_like_the_backtest(
    tmp_path: Path, worker_factory: Any, producer: Any
) -> None:
    """Tansu, a worker process and chDB: the requests and the budget alerts on Kafka and in
    ClickHouse are the backtest's."""
    from e2e_support import consume_all, wait_for
    from test_monitor_e2e import send

    monitor, ref, events = _files(tmp_path, RETRAIN)
    run_backtest(monitor, ref, events, tmp_path / "out")
    want_alerts = _lines(tmp_path / "out" / "alerts.jsonl")
    want_requests = _lines(tmp_path / "out" / "retrain_requests.jsonl")
    assert len(want_requests) == 3 and len(_budget(want_alerts)) == 2
    worker = worker_factory(monitors_dir=str(monitor.parent), monitor_interval_seconds="0.5")
    worker.reader.save_profile(reference_profile(monitor, ref)[1].to_json())
    topics = worker.settings.topics
    send(producer, topics.predictions, events.read_bytes().splitlines())
    send(producer, topics.predictions, [clock_event(START + 13 * HOUR + 700)])
    wait_for(
        lambda: worker.scalar("SELECT uniqExact(window_start) FROM window_metrics"),
        lambda n: int(n) == 12,
        60,
        "12 closed windows",
    )
    got = [
        json.loads(m.value())
        for m in consume_all(worker.bootstrap_servers, topics.alerts, len(want_alerts))
    ]
    assert [a["alert_id"] for a in got] == [a["alert_id"] for a in want_alerts]
    assert [(a["kind"], a["severity"]) for a in _budget(got)] == [("retrain_budget", "warning")] * 2
    requests = [
        json.loads(m.value())
        for m in consume_all(worker.bootstrap_servers, topics.retrain_requests, 3)
    ]
    assert requests == want_requests
    stored = worker.query("SELECT alert_id FROM alerts FINAL WHERE kind = 'retrain_budget'")
    assert {r["alert_id"] for r in stored} == {a["alert_id"] for a in _budget(want_alerts)}
