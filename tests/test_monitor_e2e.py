"""The streaming monitor end to end: tansu, a worker process (Faust), chDB.

Streams have 1-minute event-time windows and 10 s allowed lateness; a prediction of the
same model far ahead in event time (in a window of its own, which never closes) closes
the last windows: each model has its own clock. The stored count is therefore the
stream's rows plus that one.
"""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from backtest_streams import monitor_yaml, simulate, write_jsonl
from confluent_kafka import Consumer, Producer
from e2e_support import WorkerProcess, consume_all, wait_for
from test_monitor import EXTRA, assert_same_metrics, clock_event

from driftline.backtest import reference_profile, run_backtest

pytestmark = pytest.mark.e2e

WINDOW = 60.0
SHIFT_WINDOW = 4


@pytest.fixture
def case(tmp_path: Path) -> dict[str, Any]:
    ref = simulate(
        n_windows=2,
        per_window=1000,
        n_numeric=4,
        seed=1,
        window_seconds=WINDOW,
        id_prefix="r",
        start=1_767_225_600.0 - 3600,
    )
    stream = simulate(
        n_windows=8,
        per_window=500,
        n_numeric=4,
        seed=2,
        window_seconds=WINDOW,
        mean_shift={"x2": (SHIFT_WINDOW, 0.75)},
    )
    monitors = tmp_path / "monitors"
    monitors.mkdir()
    monitor = monitors / "credit.yaml"
    monitor.write_text(monitor_yaml(stream, window="1m", allowed_lateness="10s", extra=EXTRA))
    ref_path = write_jsonl(ref, tmp_path / "ref.jsonl")
    events = write_jsonl(stream, tmp_path / "events.jsonl", batch_size=250)
    out = tmp_path / "backtest"
    run_backtest(monitor, ref_path, events, out)
    return {
        "monitors": monitors,
        "monitor": monitor,
        "ref": ref_path,
        "events": events,
        "stream": stream,
        "out": out,
        "alerts": [orjson.loads(x) for x in (out / "alerts.jsonl").read_bytes().splitlines()],
        "requests": [
            orjson.loads(x) for x in (out / "retrain_requests.jsonl").read_bytes().splitlines()
        ],
        "clock": clock_event(float(stream.timestamps.max()) + WINDOW + 10 + WINDOW),
    }


def start(worker_factory: Any, case: dict[str, Any]) -> WorkerProcess:
    worker = worker_factory(monitors_dir=str(case["monitors"]), monitor_interval_seconds="0.5")
    profile = reference_profile(case["monitor"], case["ref"])[1]
    worker.reader.save_profile(profile.to_json())
    return worker


def send(producer: Producer, topic: str, lines: list[bytes]) -> None:
    for line in lines:
        producer.produce(topic, line, key=b"credit")
    assert producer.flush(15) == 0


def alert_ids(worker: WorkerProcess, topic: str, want: set[str], timeout: float = 30) -> set[str]:
    """Alert ids read from ``topic`` until every id of ``want`` was seen (or the timeout)."""
    consumer = Consumer(
        {
            "bootstrap.servers": worker.bootstrap_servers,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    try:
        while not want <= seen and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                seen.add(orjson.loads(message.value())["alert_id"])
    finally:
        consumer.close()
    return seen


def metrics(worker: WorkerProcess) -> list[dict[str, Any]]:
    return worker.query(
        "SELECT toUnixTimestamp64Micro(window_start) AS ws, metric, feature, kind, value, "
        "p_value, q_value, reference, threshold, status, n, label_coverage, primary, revision, "
        "warning, critical, segment, lower, upper FROM window_metrics FINAL "
        "ORDER BY ws, metric, feature, segment"
    )


def replayed(
    worker_factory: Any,
    producer: Producer,
    monitor: Path,
    reference: Path,
    events: Path,
    clock: float,
    n_windows: int,
    n_alerts: int,
) -> tuple[WorkerProcess, list[dict[str, Any]]]:
    """A worker over ``monitor``'s folder with the reference file's profile, fed the
    events file and a clock event at ``clock``: once ``n_windows`` windows closed, the
    worker and the first ``n_alerts`` alerts it published."""
    worker = worker_factory(monitors_dir=str(monitor.parent), monitor_interval_seconds="0.5")
    worker.reader.save_profile(reference_profile(monitor, reference)[1].to_json())
    topics = worker.settings.topics
    send(producer, topics.predictions, [*events.read_bytes().splitlines(), clock_event(clock)])
    wait_for(lambda: windows(worker), lambda n: n == n_windows, 60, f"{n_windows} windows")
    alerts = consume_all(worker.bootstrap_servers, topics.alerts, n_alerts)
    return worker, [orjson.loads(m.value()) for m in alerts]


def windows(worker: WorkerProcess) -> int:
    return int(worker.scalar("SELECT uniqExact(window_start) FROM window_metrics"))


def test_drift_alert_retrain_request_and_backtest_equality(
    worker_factory: Any, producer: Producer, case: dict[str, Any]
) -> None:
    worker = start(worker_factory, case)
    topics = worker.settings.topics
    send(producer, topics.predictions, case["events"].read_bytes().splitlines())
    send(producer, topics.predictions, [case["clock"]])
    wait_for(lambda: windows(worker), lambda n: n == 8, 45, "8 closed windows")

    # the drift alert on Kafka, for x2 from the shift window on, nothing before
    expected = case["alerts"]
    got = [
        orjson.loads(m.value())
        for m in consume_all(worker.bootstrap_servers, topics.alerts, len(expected))
    ]
    assert [a["alert_id"] for a in got] == [a["alert_id"] for a in expected]
    shift_start = case["stream"].timestamps.min() + SHIFT_WINDOW * WINDOW
    drift = [a for a in got if a["kind"] == "data_drift"]
    assert drift and drift[0]["feature"] == "x2" and drift[0]["severity"] == "critical"
    from datetime import datetime

    first = min(datetime.fromisoformat(a["window_start"]).timestamp() for a in got)
    assert first == pytest.approx(shift_start)
    assert datetime.fromisoformat(drift[0]["window_start"]).timestamp() == pytest.approx(
        shift_start
    )
    rows = worker.query("SELECT alert_id, kind, feature, severity FROM alerts FINAL")
    assert {r["alert_id"] for r in rows} == {a["alert_id"] for a in expected}
    requests = [
        orjson.loads(m.value())
        for m in consume_all(
            worker.bootstrap_servers, topics.retrain_requests, len(case["requests"])
        )
    ]
    assert requests and requests == case["requests"]
    assert drift[0]["alert_id"] in requests[0]["reason"]

    # the same metric values, statuses and alerts as the backtest
    assert_same_metrics(metrics(worker), case["out"])


POISON = [
    b'{"type": "prediction", ',
    b"[1, 2]",
    b'{"type": "feedback", "event_id": "p", "model_id": "credit", "timestamp": 1767225600,'
    b' "label": NaN}',
    orjson.dumps(
        {
            "type": "prediction_batch",
            "model_id": "credit",
            "model_version": "v1",
            "event_ids": ["p1", "p2"],
            "timestamps": [1767225600],
            "features": {},
            "predictions": [1, 0],
        }
    ),
]


def test_sigkill_mid_stream_then_restart_gives_the_same_results(
    worker_factory: Any, producer: Producer, case: dict[str, Any]
) -> None:
    """Poison messages mixed in go to the DLQ; a SIGKILL and a restart change nothing."""
    worker = start(worker_factory, case)
    topics = worker.settings.topics
    lines = case["events"].read_bytes().splitlines()
    step = len(lines) // (len(POISON) + 1)
    for i, poison in enumerate(POISON):  # spread through the stream
        lines.insert((i + 1) * step + i, poison)
    half = len(lines) // 2
    send(producer, topics.predictions, lines[:half])
    wait_for(lambda: windows(worker), lambda n: n >= 2, 45, "some closed windows")
    worker.stop(signal.SIGKILL)
    # resend a part again (duplicates), then the rest
    send(producer, topics.predictions, lines[half - 10 :])
    send(producer, topics.predictions, [case["clock"]])
    worker = worker_factory(monitors_dir=str(case["monitors"]), monitor_interval_seconds="0.5")
    wait_for(lambda: windows(worker), lambda n: n == 8, 45, "8 closed windows after restart")
    assert_same_metrics(metrics(worker), case["out"])
    assert int(
        worker.scalar("SELECT count() FROM predictions FINAL WHERE model_id = 'credit'")
    ) == (case["stream"].rows + 1)
    expected = {a["alert_id"] for a in case["alerts"]}
    assert alert_ids(worker, topics.alerts, expected) == expected
    rows = worker.query("SELECT alert_id FROM alerts FINAL")
    assert {r["alert_id"] for r in rows} == expected
    # the DLQ is at-least-once: a message re-read after the SIGKILL may be there twice
    letters: set[bytes] = set()
    consumer = Consumer(
        {
            "bootstrap.servers": worker.bootstrap_servers,
            "group.id": "dlq-check",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topics.dlq])
    deadline = time.monotonic() + 30
    while letters != set(POISON) and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and not message.error():
            letters.add(message.value())
            assert message.value() in POISON, message.value()
    consumer.close()
    assert letters == set(POISON)


def test_labels_three_windows_late_make_new_revisions_and_a_performance_alert(
    worker_factory: Any, producer: Producer, tmp_path: Path
) -> None:
    ref = simulate(
        n_windows=2,
        per_window=1000,
        n_numeric=4,
        seed=1,
        window_seconds=WINDOW,
        id_prefix="r",
        start=1_767_225_600.0 - 3600,
    )
    stream = simulate(
        n_windows=8,
        per_window=500,
        n_numeric=4,
        seed=3,
        window_seconds=WINDOW,
        accuracy_change=(6, 0.6),
    )
    monitors = tmp_path / "monitors"
    monitors.mkdir()
    monitor = monitors / "credit.yaml"
    monitor.write_text(monitor_yaml(stream, window="1m", allowed_lateness="10s", extra=EXTRA))
    ref_path = write_jsonl(ref, tmp_path / "ref.jsonl")
    events = write_jsonl(stream, tmp_path / "events.jsonl", batch_size=500)
    out = tmp_path / "backtest"
    run_backtest(monitor, ref_path, events, out)
    lines = events.read_bytes().splitlines()
    preds = [x for x in lines if b'"prediction_batch"' in x]  # one per window
    labels = [x for x in lines if b'"feedback_batch"' in x]
    assert len(preds) == len(labels) == 8
    case = {"monitors": monitors, "monitor": monitor, "ref": ref_path}
    worker = start(worker_factory, case)
    topics = worker.settings.topics
    first: dict[int, dict[str, Any]] = {}

    def accuracy(window: int) -> dict[str, Any]:
        ws = round((stream.timestamps.min() + window * WINDOW) * 1_000_000)
        return worker.query(
            "SELECT revision, label_coverage, value FROM window_metrics FINAL "
            f"WHERE metric = 'accuracy' AND toUnixTimestamp64Micro(window_start) = {ws}"
        )[0]

    for w in range(8):
        send(producer, topics.predictions, [preds[w]])
        if w >= 1:  # window w - 1 closes once window w's events are in
            wait_for(lambda: windows(worker), lambda n, w=w: n >= w, 30, f"window {w - 1} closed")
            first[w - 1] = accuracy(w - 1)  # its labels are not sent yet
        if w >= 3:  # labels of window w - 3 arrive three windows late
            send(producer, topics.feedback, [labels[w - 3]])
    send(producer, topics.predictions, [clock_event(float(stream.timestamps.max()) + 130)])
    wait_for(lambda: windows(worker), lambda n: n == 8, 30, "8 closed windows")
    first[7] = accuracy(7)
    send(producer, topics.feedback, labels[5:])
    wait_for(
        lambda: worker.query(
            "SELECT uniqExact(window_start) AS n FROM window_metrics FINAL "
            "WHERE metric = 'accuracy' AND revision > 0"
        )[0]["n"],
        lambda n: n == 8,
        30,
        "a new revision of every window",
    )
    for w, before in first.items():
        assert before["revision"] == 0 and before["value"] is None  # no label at close
        after = accuracy(w)
        assert after["revision"] >= 1 and after["value"] is not None
        assert after["label_coverage"] > (before["label_coverage"] or 0)
    assert_same_metrics(metrics(worker), out)
    perf = [
        a
        for a in (orjson.loads(x) for x in (out / "alerts.jsonl").read_bytes().splitlines())
        if a["kind"] == "performance"
    ]
    assert perf, "the stream should raise a performance alert"
    stored = worker.query("SELECT alert_id, kind FROM alerts FINAL")
    assert {r["alert_id"] for r in stored if r["kind"] == "performance"} == {
        a["alert_id"] for a in perf
    }
    want = {a["alert_id"] for a in perf}
    assert want <= alert_ids(worker, topics.alerts, {r["alert_id"] for r in stored})


def test_two_workers_share_the_partitions_and_one_stopped_mid_stream_changes_nothing(
    worker_factory: Any, producer: Producer, case: dict[str, Any]
) -> None:
    """A second worker on the same data directory joins the group and uses the first
    one's store; SIGKILLed mid-stream, its partitions move to the first worker."""
    owner = start(worker_factory, case)
    helper = worker_factory(monitors_dir=str(case["monitors"]), monitor_interval_seconds="0.5")
    topics = owner.settings.topics

    def predictions_partitions(worker: WorkerProcess) -> list[str]:
        return [p for p in worker.health()["assigned"] if p.startswith(topics.predictions)]

    for worker in (owner, helper):  # the group has rebalanced: each has one partition
        wait_for(
            lambda w=worker: predictions_partitions(w),
            lambda p: len(p) == 1,
            60,
            "one predictions partition each",
        )
    lines = case["events"].read_bytes().splitlines()
    # spread the stream over every partition so that both workers get some of it
    for i, line in enumerate(lines):
        producer.produce(topics.predictions, line, partition=i % 2)
    assert producer.flush(15) == 0
    # Kill the helper once it has stored part of the stream, or once the owner has
    # everything (a later rebalance can hand the owner both partitions): either way the
    # helper leaves the group while the stream is being processed.
    total = case["stream"].rows

    def progress() -> tuple[int, int]:
        return helper.health()["prediction_rows"], owner.health()["prediction_rows"]

    wait_for(progress, lambda rows: rows[0] > 0 or rows[1] >= total, 60, "rows stored")
    assert helper.stop(signal.SIGKILL) == -signal.SIGKILL
    send(producer, topics.predictions, [case["clock"]])
    for partition in (0, 1):  # the watermark needs every partition past the last window
        producer.produce(topics.predictions, case["clock"], partition=partition)
    assert producer.flush(15) == 0
    wait_for(lambda: windows(owner), lambda n: n == 8, 90, "8 closed windows")
    wait_for(  # what the helper had not acknowledged is read again by the owner
        lambda: int(
            owner.scalar("SELECT count() FROM predictions FINAL WHERE model_id = 'credit'")
        ),
        lambda n: n == case["stream"].rows + 1,
        60,
        "every prediction stored once",
    )

    # labels re-read after the helper died can reach a window after it closed: they make
    # a new revision, so wait until every window reached its final one
    def settled() -> bool:
        try:
            assert_same_metrics(metrics(owner), case["out"])
        except AssertionError:
            return False
        return True

    wait_for(settled, bool, 60, "metrics equal to the backtest")
    expected = {a["alert_id"] for a in case["alerts"]}
    assert alert_ids(owner, topics.alerts, expected) == expected
