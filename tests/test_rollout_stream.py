"""Live rollouts in the streaming monitor (in process, real chDB): the same decisions as
``driftline backtest`` on the same events, acted on in the registry and published."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from driftline.retrainer.registry import ModelRegistry, VersionRecord
from driftline.streams import rollouts as stream_rollouts
from prometheus_client import CollectorRegistry
from rollout_streams import (
    START,
    WINDOW,
    Step,
    monitor_yaml,
    reference_events,
    rollback_events,
    rollout_events,
)
from test_monitor import Harness, clock_event

from driftline.backtest import reference_profile, run_backtest
from driftline.metrics import WorkerMetrics
from driftline.report import render_report
from driftline.report_data import load_report_data
from driftline.store.profiles import save_profile

FAST = "{mode: shadow, min_labels: 200, canary_steps: [0.5, 1.0], watch_after_promotion: 2h}"


def _jsonl(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path


def _version(version: str, status: str, parent: str | None = None) -> VersionRecord:
    return VersionRecord(
        model_id="m",
        version=version,
        parent_version=parent,
        artifact_uri=f"file:///artifacts/m/{version}",
        status=status,  # type: ignore[arg-type]
        traffic=0.0 if status == "shadow" else None,
        created_at=START - 2 * WINDOW,
        updated_at=START - 2 * WINDOW,
    )


def _case(
    tmp_path: Path, events: list[dict[str, Any]], rollout: str = FAST, regression: bool = False
) -> tuple[Harness, list[dict[str, Any]]]:
    """The backtest's decisions, and a harness whose registry has v2 in shadow."""
    monitor = tmp_path / "monitors" / "m.yaml"
    monitor.parent.mkdir()
    task = "regression" if regression else "binary_classification"
    monitor.write_text(monitor_yaml(rollout, task=task))
    ref = _jsonl(tmp_path / "reference.jsonl", reference_events(regression=regression))
    events_path = _jsonl(tmp_path / "events.jsonl", events)
    run_backtest(monitor, ref, events_path, tmp_path / "out")
    want = [json.loads(x) for x in (tmp_path / "out" / "rollouts.jsonl").read_text().splitlines()]
    h = Harness(tmp_path, monitor)
    save_profile(h.store, reference_profile(monitor, ref)[1])
    ModelRegistry(h.store).record(_version("v1", "champion"), _version("v2", "shadow", "v1"))
    return h, want


def _lines(events: list[dict[str, Any]]) -> list[bytes]:
    return [orjson.dumps(e) for e in events]


def _closing(events: list[dict[str, Any]]) -> bytes:
    """A prediction of the model that closes every window of ``events``."""
    last = max(e["timestamp"] for e in events)
    return clock_event(last + WINDOW + 600 + 60, model_id="m", model_version="v1")


def _as_lines(h: Harness) -> list[dict[str, Any]]:
    return [
        record.model_dump(exclude={"window_start"}) | {"window_start": _iso(record.window_start)}
        for record in h.monitor.rollout_records
    ]


def _iso(seconds: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, tz=UTC).isoformat().replace("+00:00", "Z")


def test_the_stream_takes_the_backtests_decisions_and_acts_on_them(tmp_path: Path) -> None:
    events = rollout_events(
        [Step("shadow"), Step("canary", 0.5), Step("watch"), Step("watch")],
        accuracy={"v1": 0.80, "v2": 0.92},
        per_window=2000,
    )
    h, want = _case(tmp_path, events)
    registry_of_metrics = CollectorRegistry()
    h.monitor.metrics = WorkerMetrics(registry_of_metrics, h.monitor.monitors)

    def sample(name: str, **labels: str) -> float | None:
        return registry_of_metrics.get_sample_value(name, {"model_id": "m", **labels})

    try:
        lines = _lines(events)
        half = len(lines) // 2
        h.ingest(lines[:half])
        h.tick()  # what the first half closes
        # Windows 0 and 1 closed: stepped to a canary, then promoted; the new champion
        # is watched against its parent on the windows that follow.
        assert sample("driftline_rollout_decisions_total", decision="step") == 1.0
        assert sample("driftline_rollout_decisions_total", decision="promote") == 1.0
        assert sample("driftline_rollout_traffic", phase="watch") == 1.0
        assert sample("driftline_rollout_traffic", phase="canary") is None
        lower = sample("driftline_rollout_difference", bound="lower")
        upper = sample("driftline_rollout_difference", bound="upper")
        assert lower is not None and upper is not None and lower < upper
        h.ingest(lines[half:])
        h.ingest([_closing(events)])
        h.tick()
        h.tick()  # nothing more to do
        assert [line["decision"] for line in want] == ["step", "promote"]
        assert _as_lines(h) == want
        assert sample("driftline_rollout_decisions_total", decision="promote") == 1.0
        assert sample("driftline_rollout_decisions_total", decision="reject") == 0.0
        # Every judged window is kept with its sequence, and the report draws them.
        judged = h.store.query(
            "SELECT toUnixTimestamp64Micro(window_start) / 1e6 AS ws, phase, decision, lower"
            " FROM rollout_windows FINAL WHERE model_id = 'm' ORDER BY ws"
        )
        assert [(r["ws"], r["phase"], r["decision"]) for r in judged] == [
            (START, "shadow", "step"),
            (START + WINDOW, "canary", "promote"),
            (START + 2 * WINDOW, "watch", ""),
            (START + 3 * WINDOW, "watch", ""),
        ]
        assert [r["lower"] for r in judged[:2]] == [line["lower"] for line in want]
        page = render_report(load_report_data(h.store, "m"))
        assert page.count('data-plot="rollout"') == 1 and "promote at 2026-01-01 01:00" in page
        # The watch of the promoted champion against its parent ended with the stream.
        assert sample("driftline_rollout_traffic", phase="watch") is None
        assert sample("driftline_rollout_difference", bound="lower") is None
        registry = ModelRegistry(h.store)
        assert registry.champion("m").version == "v2"
        states = {r.version: r.status for r in registry.versions("m")}
        assert states == {"v1": "candidate", "v2": "champion"}
        assert (
            "rollout promote (canary -> 1) at 2026-01-01T01:00:00Z"
            in registry.get("m", "v2").decision
        )
        assert [(e["version"], e["status"], e["traffic"]) for e in h.sent["versions"]] == [
            ("v2", "canary", 0.5),
            ("v2", "champion", None),
            ("v1", "candidate", None),
        ]
    finally:
        h.store.close()


def test_a_worse_challenger_is_rejected_and_a_worse_champion_rolled_back(tmp_path: Path) -> None:
    events = rollback_events()
    h, want = _case(tmp_path, events)
    try:
        h.ingest([*_lines(events), _closing(events)])
        h.tick()
        assert [line["decision"] for line in want] == ["step", "promote", "rollback"]
        assert _as_lines(h) == want
        registry = ModelRegistry(h.store)
        assert registry.champion("m").version == "v1"  # the parent serves again
        assert registry.get("m", "v2").status == "rolled_back"
        assert [(e["version"], e["status"]) for e in h.sent["versions"]][-2:] == [
            ("v2", "rolled_back"),
            ("v1", "champion"),
        ]
    finally:
        h.store.close()


@pytest.mark.parametrize("killed_at", ["record_changes", "save_progress"])
def test_a_worker_killed_mid_decision_resumes_with_the_same_decisions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, killed_at: str
) -> None:
    events = rollout_events([Step("shadow")] * 2, accuracy={"v1": 0.85, "v2": 0.72})
    h, want = _case(tmp_path, events)
    try:
        h.ingest([*_lines(events), _closing(events)])
        real = getattr(stream_rollouts, killed_at)
        calls = 0

        def crash_once(*args: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError(f"killed in {killed_at}")
            return real(*args)

        monkeypatch.setattr(f"driftline.streams.rollouts.{killed_at}", crash_once)
        with pytest.raises(RuntimeError, match="killed"):
            h.tick()
        # The decision's event was published before the crash.
        assert [(e["version"], e["status"]) for e in h.sent["versions"]] == [("v2", "rejected")]
        h.monitor = h._monitor(tmp_path / "monitors" / "m.yaml")  # the restarted worker
        h.tick()
        h.tick()
        assert [line["decision"] for line in want] == ["reject"]
        if killed_at == "save_progress":
            # Killed before the commit: the same windows give the same decision (same
            # id), published again and written now.
            assert _as_lines(h) == want
            assert len(h.sent["versions"]) == 2
        else:
            # Committed, rows pending: the next pass writes them; nothing is redone.
            assert h.monitor.rollout_records == []
            assert len(h.sent["versions"]) == 1
        judged = h.store.query("SELECT decision FROM rollout_windows FINAL WHERE model_id = 'm'")
        assert [r["decision"] for r in judged] == ["reject"]
        registry = ModelRegistry(h.store)
        assert registry.get("m", "v2").status == "rejected"
        assert registry.champion("m").version == "v1"
        assert want[0]["decision_id"] in registry.get("m", "v2").decision
    finally:
        h.store.close()


def test_the_stream_judges_a_regression_challenger_like_the_backtest(tmp_path: Path) -> None:
    events = rollout_events(
        [Step("shadow"), Step("canary", 0.5), Step("watch")],
        accuracy={"v1": 1.0, "v2": 0.5},
        regression=True,
    )
    rollout = FAST.replace("{mode: shadow,", "{mode: shadow, metric: mae, loss_bound: 3,")
    h, want = _case(tmp_path, events, rollout, regression=True)
    try:
        h.ingest([*_lines(events), _closing(events)])
        h.tick()
        assert [line["decision"] for line in want] == ["step", "promote"]
        assert _as_lines(h) == want
        assert ModelRegistry(h.store).champion("m").version == "v2"
    finally:
        h.store.close()


def test_the_stream_judges_log_loss_like_the_backtest(tmp_path: Path) -> None:
    events = rollout_events(
        [Step("shadow"), Step("canary", 0.5), Step("watch")],
        accuracy={"v1": 0.70, "v2": 0.95},
        per_window=2000,
        scores=True,
    )
    rollout = FAST.replace("{mode: shadow,", "{mode: shadow, metric: log_loss, loss_bound: 2,")
    h, want = _case(tmp_path, events, rollout)
    try:
        h.ingest([*_lines(events), _closing(events)])
        h.tick()
        assert [line["decision"] for line in want] == ["step", "promote"]
        assert {line["metric"] for line in want} == {"log_loss"}
        assert _as_lines(h) == want
        assert ModelRegistry(h.store).champion("m").version == "v2"
    finally:
        h.store.close()
