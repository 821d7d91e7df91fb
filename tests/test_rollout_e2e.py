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
from rollout_streams import (
    START,
    WINDOW,
    Step,
    monitor_yaml,
    reference_events,
    rollback_events,
    rollout_events,
)
from test_monitor import clock_event

from driftline.backtest import reference_profile, run_backtest
from driftline.sdk import ModelSubscriber, Served
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


def _rollout_case(
    worker_factory: Any, tmp_path: Path, events: list[dict[str, Any]]
) -> tuple[WorkerProcess, list[dict[str, Any]], Path]:
    """The backtest's decisions on ``events``, and a worker whose registry (written through
    it) has champion v1 and v2 in shadow; also the monitors folder."""
    monitors = tmp_path / "monitors"
    monitors.mkdir()
    monitor = monitors / "m.yaml"
    monitor.write_text(monitor_yaml(FAST))
    ref = _jsonl(tmp_path / "reference.jsonl", reference_events())
    run_backtest(monitor, ref, _jsonl(tmp_path / "events.jsonl", events), tmp_path / "out")
    want = [json.loads(x) for x in (tmp_path / "out" / "rollouts.jsonl").read_text().splitlines()]
    worker = worker_factory(monitors_dir=str(monitors), monitor_interval_seconds="0.5")
    worker.reader.save_profile(reference_profile(monitor, ref)[1].to_json())
    store = writing_store(worker.settings)  # through the worker that owns chDB
    try:
        at = START - 2 * WINDOW
        common = {"model_id": "m", "created_at": at, "updated_at": at}
        ModelRegistry(store).record(
            VersionRecord(version="v1", artifact_uri="file:///a/v1", status="champion", **common),
            VersionRecord(
                version="v2",
                parent_version="v1",
                artifact_uri="file:///a/v2",
                status="shadow",
                traffic=0.0,
                **common,
            ),
        )
    finally:
        store.close()
    return worker, want, monitors


def test_a_worker_killed_mid_rollout_resumes_and_promotes_like_the_backtest(
    worker_factory: Any, producer: Producer, tmp_path: Path
) -> None:
    events = rollout_events(
        [Step("shadow"), Step("canary", 0.5), Step("watch"), Step("watch")],
        accuracy={"v1": 0.80, "v2": 0.92},
        per_window=2000,
    )
    worker, want, monitors = _rollout_case(worker_factory, tmp_path, events)
    assert [w["decision"] for w in want] == ["step", "promote"]
    lines = [orjson.dumps(e) for e in events]
    topic = worker.settings.topics.predictions
    # the first worker sees up to the middle of the canary window: it can judge the
    # shadow window, never the canary one, however late the kill comes
    half = next(i for i, e in enumerate(events) if e["timestamp"] >= START + 1.5 * WINDOW)
    _send(producer, topic, lines[:half])
    wait_for(lambda: _judged(worker), lambda j: len(j) >= 1, 60, "the first judged window")
    worker.stop(signal.SIGKILL)

    _send(producer, topic, [*lines[half - 50 :], clock_event(START + 6 * WINDOW, "m")])
    worker = worker_factory(monitors_dir=str(monitors), monitor_interval_seconds="0.5")
    wait_for(lambda: _judged(worker), lambda j: len(j) == 4, 90, "every window judged")
    judged = _judged(worker)
    # Known open race (see the closing note of stop 21): on a loaded machine a window can
    # be judged before all of its rows are visible, so a decision may come a window late.
    # The backtest's decisions must still come, in order, each once, and the watch follow.
    assert [decision for _, decision in judged if decision] == ["step", "promote"], judged
    assert judged[0] == ("shadow", "step") and judged[-1] == ("watch", ""), judged
    decisions = {
        r["version"]: r
        for r in worker.query("SELECT version, status, decision FROM model_versions FINAL")
    }
    assert decisions["v2"]["status"] == "champion" and decisions["v1"]["status"] == "candidate"
    assert "rollout promote (canary -> 1)" in decisions["v2"]["decision"]
    if judged[1] == ("canary", "promote"):  # judged on time: the backtest's very decision
        assert want[-1]["decision_id"] in decisions["v2"]["decision"]
    # Published at least once each, in order (a redo after the kill may repeat one).
    published = _version_events(worker)
    distinct = [e for i, e in enumerate(published) if i == 0 or published[i - 1] != e]
    assert distinct == [("v2", "canary"), ("v2", "champion"), ("v1", "candidate")], published


class _Named:
    """A stand-in model that answers with its version."""

    def __init__(self, version: str) -> None:
        self.version = version

    def predict(self, features: Any) -> str:
        return self.version


def test_a_champion_worse_live_is_rolled_back_and_serving_swaps_back(
    worker_factory: Any, producer: Producer, tmp_path: Path
) -> None:
    events = rollback_events()
    worker, want, _ = _rollout_case(worker_factory, tmp_path, events)
    assert [w["decision"] for w in want] == ["step", "promote", "rollback"]
    # The serving side: publish the registry's start so a subscriber has it to follow.
    publish = Producer({"bootstrap.servers": worker.bootstrap_servers})
    for version, status, traffic in (("v1", "champion", None), ("v2", "shadow", 0.0)):
        event = ModelVersionEvent(
            model_id="m",
            version=version,
            parent_version=None,
            artifact_uri=f"file:///a/{version}",
            metrics={},
            status=status,
            request_id=None,
            data_from=None,
            data_to=None,  # type: ignore[arg-type]
            created_at=START,
            traffic=traffic,
        )
        publish.produce(worker.settings.topics.model_versions, event.model_dump_json(), key=b"m")
    assert publish.flush(10) == 0
    subscriber = ModelSubscriber(
        "m",
        worker.bootstrap_servers,
        topic_prefix=worker.settings.topic_prefix,
        loader=lambda event: _Named(event.version),
    ).start()
    try:
        assert subscriber.wait_for_version("v1", timeout=30)
        wait_for(lambda: subscriber.challenger, bool, 30, "the shadow challenger")
        assert subscriber.serve({}, key="k").shadow_version == "v2"
        lines = [orjson.dumps(e) for e in events]
        _send(
            producer,
            worker.settings.topics.predictions,
            [*lines, clock_event(START + 6 * WINDOW, "m")],
        )
        wait_for(
            lambda: _judged(worker),
            lambda j: any(d == "rollback" for _, d in j),
            90,
            "the rollback",
        )
        # v2 was promoted, then rolled back: once the subscriber read every event it
        # serves v1 without a challenger (whether it served v2 in between depends on how
        # the events were batched).
        published = _version_events(worker)
        wait_for(lambda: subscriber.stats.messages, lambda n: n >= len(published), 30, "all read")
        assert subscriber.version == "v1" and subscriber.challenger is None
        assert subscriber.serve({}, key="k") == Served("v1", "v1")
    finally:
        subscriber.stop()
    versions = {
        r["version"]: r["status"]
        for r in worker.query("SELECT version, status FROM model_versions FINAL")
    }
    assert versions == {"v1": "champion", "v2": "rolled_back"}
    assert published[-2:] == [("v2", "rolled_back"), ("v1", "champion")], published
    assert ("v2", "champion") in published
    assert [d for _, d in _judged(worker) if d] == ["step", "promote", "rollback"]
