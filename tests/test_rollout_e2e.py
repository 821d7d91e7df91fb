"""A live rollout through the real parts: tansu, a worker process (Faust) owning chDB,
the registry written through the worker, a SIGKILL mid-rollout and a restart."""

from __future__ import annotations

import json
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, Producer
from driftline.retrainer.registry import ModelRegistry, VersionRecord
from driftline.schemas.events import ModelVersionEvent
from e2e_support import WorkerProcess, wait_for
from rollout_streams import START, WINDOW, Step, monitor_yaml, reference_events, rollout_events
from test_monitor import clock_event

from driftline.backtest import reference_profile, run_backtest
from driftline.store import writing_store

pytestmark = pytest.mark.e2e

FAST = "{mode: shadow, min_labels: 200, canary_steps: [0.5, 1.0], watch_after_promotion: 2h}"


def _jsonl(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path


def _send(producer: Producer, topic: str, lines: list[bytes]) -> None:
    for line in lines:
        producer.produce(topic, line, key=b"m")
    assert producer.flush(15) == 0


def _judged(worker: WorkerProcess) -> list[tuple[str, str]]:
    rows = worker.query(
        "SELECT phase, decision FROM rollout_windows FINAL WHERE model_id = 'm' "
        "ORDER BY window_start"
    )
    return [(r["phase"], r["decision"]) for r in rows]


def _version_events(worker: WorkerProcess) -> list[tuple[str, str]]:
    consumer = Consumer(
        {
            "bootstrap.servers": worker.bootstrap_servers,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([worker.settings.topics.model_versions])
    seen: list[tuple[str, str]] = []
    idle, deadline = 0, time.monotonic() + 30
    while (len(seen) < 3 or idle < 4) and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None or message.error():
            idle += 1
            continue
        idle = 0
        event = ModelVersionEvent.model_validate_json(message.value())
        seen.append((event.version, event.status))
    consumer.close()
    return seen


def test_a_worker_killed_mid_rollout_resumes_and_promotes_like_the_backtest(
    worker_factory: Any, producer: Producer, tmp_path: Path
) -> None:
    events = rollout_events(
        [Step("shadow"), Step("canary", 0.5), Step("watch"), Step("watch")],
        accuracy={"v1": 0.80, "v2": 0.92},
        per_window=2000,
    )
    monitors = tmp_path / "monitors"
    monitors.mkdir()
    monitor = monitors / "m.yaml"
    monitor.write_text(monitor_yaml(FAST))
    ref = _jsonl(tmp_path / "reference.jsonl", reference_events())
    run_backtest(monitor, ref, _jsonl(tmp_path / "events.jsonl", events), tmp_path / "out")
    want = [json.loads(x) for x in (tmp_path / "out" / "rollouts.jsonl").read_text().splitlines()]
    assert [w["decision"] for w in want] == ["step", "promote"]

    worker = worker_factory(monitors_dir=str(monitors), monitor_interval_seconds="0.5")
    worker.reader.save_profile(reference_profile(monitor, ref)[1].to_json())
    store = writing_store(worker.settings)  # through the worker that owns chDB
    try:
        at = START - 2 * WINDOW
        ModelRegistry(store).record(
            VersionRecord(
                model_id="m",
                version="v1",
                artifact_uri="file:///a/v1",
                status="champion",
                created_at=at,
                updated_at=at,
            ),
            VersionRecord(
                model_id="m",
                version="v2",
                parent_version="v1",
                artifact_uri="file:///a/v2",
                status="shadow",
                traffic=0.0,
                created_at=at,
                updated_at=at,
            ),
        )
    finally:
        store.close()
    lines = [orjson.dumps(e) for e in events]
    topic = worker.settings.topics.predictions
    _send(producer, topic, lines[: len(lines) // 2])
    wait_for(lambda: _judged(worker), lambda j: len(j) >= 1, 60, "the first judged window")
    worker.stop(signal.SIGKILL)

    _send(producer, topic, [*lines[len(lines) // 2 - 50 :], clock_event(START + 6 * WINDOW, "m")])
    worker = worker_factory(monitors_dir=str(monitors), monitor_interval_seconds="0.5")
    wait_for(lambda: _judged(worker), lambda j: len(j) == 4, 90, "every window judged")
    assert _judged(worker) == [
        ("shadow", "step"),
        ("canary", "promote"),
        ("watch", ""),
        ("watch", ""),
    ]
    decisions = {
        r["version"]: r
        for r in worker.query("SELECT version, status, decision FROM model_versions FINAL")
    }
    assert decisions["v2"]["status"] == "champion" and decisions["v1"]["status"] == "candidate"
    assert want[-1]["decision_id"] in decisions["v2"]["decision"]
    # Published at least once each, in order (a redo after the kill may repeat one).
    published = _version_events(worker)
    distinct = [e for i, e in enumerate(published) if i == 0 or published[i - 1] != e]
    assert distinct == [("v2", "canary"), ("v2", "champion"), ("v1", "candidate")], published
