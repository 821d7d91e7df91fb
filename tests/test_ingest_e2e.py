"""End to end through the real parts: tansu, a worker process (Faust), chDB, kcat."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer
from e2e_support import WorkerProcess, consume_all, kcat_command, kcat_env, wait_for

pytestmark = pytest.mark.e2e

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


def prediction(event_id: str, i: int) -> dict[str, Any]:
    return {
        "type": "prediction",
        "event_id": event_id,
        "model_id": "credit",
        "model_version": "v1",
        "timestamp": T0 + i,
        "features": {"income": 1000.0 + i, "region": ["eu", "us"][i % 2], "age": None},
        "prediction": i % 2,
        "score": (i % 100) / 100,
    }


def prediction_batch(prefix: str, rows: int) -> dict[str, Any]:
    return {
        "type": "prediction_batch",
        "model_id": "credit",
        "model_version": "v1",
        "event_ids": [f"{prefix}-{i}" for i in range(rows)],
        "timestamps": [T0 + i for i in range(rows)],
        "features": {
            "income": [float(i) for i in range(rows)],
            "region": [["eu", "us", None][i % 3] for i in range(rows)],
        },
        "predictions": [i % 2 for i in range(rows)],
        "scores": [0.5] * rows,
    }


def feedback(event_id: str, label: int) -> dict[str, Any]:
    return {
        "type": "feedback",
        "event_id": event_id,
        "model_id": "credit",
        "timestamp": T0 + 3600,
        "label": label,
    }


def feedback_batch(prefix: str, rows: int) -> dict[str, Any]:
    return {
        "type": "feedback_batch",
        "model_id": "credit",
        "event_ids": [f"{prefix}-{i}" for i in range(rows)],
        "timestamps": [T0 + 3600] * rows,
        "labels": [i % 2 for i in range(rows)],
    }


def send(producer: Producer, topic: str, events: list[Any]) -> None:
    for event in events:
        value = event if isinstance(event, bytes) else orjson.dumps(event)
        producer.produce(topic, value, key=b"credit")
    assert producer.flush(15) == 0


def counts(worker: WorkerProcess) -> tuple[int, int]:
    predictions = worker.scalar("SELECT count() FROM predictions FINAL")
    labels = worker.scalar("SELECT count() FROM feedback FINAL")
    return int(predictions), int(labels)


def test_single_and_batched_events_are_stored_exactly_once(worker_factory, producer) -> None:
    worker = worker_factory()
    topics = worker.settings.topics
    singles = [prediction(f"s-{i}", i) for i in range(300)]
    batches = [prediction_batch(f"b{k}", 1000) for k in range(3)]
    labels = [feedback(f"s-{i}", i % 2) for i in range(300)]
    label_batches = [feedback_batch(f"b{k}", 1000) for k in range(3)]
    send(producer, topics.predictions, singles + batches)
    send(producer, topics.feedback, labels + label_batches)
    expected = (3300, 3300)
    wait_for(lambda: counts(worker), lambda got: got == expected, 60, "all rows stored")

    distinct = worker.scalar("SELECT uniqExact(event_id) FROM predictions")
    assert distinct == 3300
    row = worker.query(
        "SELECT features_num, features_cat, features_null, prediction_value, score, "
        "kafka_topic FROM predictions FINAL WHERE event_id = 's-7'"
    )[0]
    assert row["features_num"] == {"income": 1007.0}
    assert row["features_cat"] == {"region": "us"}
    assert row["features_null"] == ["age"]
    assert (row["prediction_value"], row["score"]) == (1.0, 0.07)
    assert row["kafka_topic"] == topics.predictions
    batch_row = worker.query(
        "SELECT features_null, batch_index FROM predictions FINAL WHERE event_id = 'b1-5'"
    )[0]
    assert batch_row == {"features_null": ["region"], "batch_index": 5}
    assert worker.scalar("SELECT sum(label_value) FROM feedback FINAL") == 150 + 3 * 500

    # Each prediction partition's watermark is the latest event time stored from it.
    watermarks = worker.query(
        "SELECT partition, max(event_time) AS t FROM watermarks GROUP BY partition "
        "ORDER BY partition"
    )
    latest = worker.query(
        "SELECT kafka_partition AS partition, max(timestamp) AS t FROM predictions "
        "GROUP BY partition ORDER BY partition"
    )
    assert watermarks == latest and watermarks

    # Resending everything changes nothing once the worker has read it again.
    before = worker.health()["messages"]
    send(producer, topics.predictions, singles + batches)
    send(producer, topics.feedback, labels + label_batches)
    resent = len(singles) + len(batches) + len(labels) + len(label_batches)
    wait_for(
        lambda: worker.health()["messages"],
        lambda n: n >= before + resent,
        60,
        "the resent messages to be read",
    )
    assert counts(worker) == expected
    assert worker.scalar("SELECT uniqExact(event_id) FROM predictions") == 3300


def test_shadow_predictions_are_stored_beside_the_served_ones_exactly_once(
    worker_factory, producer
) -> None:
    worker = worker_factory()
    topics = worker.settings.topics
    served = [prediction(f"sh-{i}", i) for i in range(50)]
    shadow = [
        {**prediction(f"sh-{i}", i), "model_version": "v2", "shadow": True, "prediction": 1}
        for i in range(50)
    ]
    batch = {**prediction_batch("sh", 20), "model_version": "v3", "shadow": True}
    send(producer, topics.predictions, [*served, *shadow, batch])
    send(producer, topics.feedback, [feedback(f"sh-{i}", 1) for i in range(50)])

    def stored() -> tuple[int, int, int]:
        return (
            int(worker.scalar("SELECT count() FROM predictions FINAL")),
            int(worker.scalar("SELECT count() FROM shadow_predictions FINAL")),
            int(worker.scalar("SELECT count() FROM feedback FINAL")),
        )

    wait_for(stored, lambda got: got == (50, 70, 50), 60, "served, shadow and labels stored")
    # The served copies keep their version and prediction: a shadow copy replaces nothing.
    assert worker.query(
        "SELECT model_version AS v, count() AS n, sum(prediction_value) AS p "
        "FROM predictions FINAL GROUP BY v"
    ) == [{"v": "v1", "n": 50, "p": 25.0}]
    assert worker.query(
        "SELECT model_version AS v, count() AS n FROM shadow_predictions FINAL "
        "GROUP BY v ORDER BY v"
    ) == [{"v": "v2", "n": 50}, {"v": "v3", "n": 20}]
    # One label labels the served and the shadow prediction of its event.
    labelled = worker.scalar(
        "SELECT count() FROM (SELECT event_id FROM shadow_predictions FINAL "
        "WHERE model_version = 'v2') AS s JOIN (SELECT event_id FROM feedback FINAL) AS f "
        "ON f.event_id = s.event_id"
    )
    assert labelled == 50
    # Re-sent shadow predictions deduplicate like served ones.
    before = worker.health()["messages"]
    send(producer, topics.predictions, shadow)
    wait_for(
        lambda: worker.health()["messages"],
        lambda n: n >= before + len(shadow),
        60,
        "the resent shadow predictions to be read",
    )
    assert stored() == (50, 70, 50)


BAD_SHADOW = orjson.dumps({**prediction("sh", 1), "shadow": "yes"})
BAD_MESSAGES: list[tuple[str, bytes]] = [
    ("invalid_json", b'{"type": "prediction", '),
    ("not_an_object", b"[1, 2, 3]"),
    ("wrong_type", orjson.dumps({**prediction("w", 1), "prediction": [1]})),
    (
        "missing_field",
        orjson.dumps({k: v for k, v in prediction("m", 1).items() if k != "model_id"}),
    ),
    (
        "non_finite",
        b'{"type": "feedback", "event_id": "n", "model_id": "credit", '
        b'"timestamp": 1767225600, "label": NaN}',
    ),
    ("unknown_type", b'{"type": "predictions", "event_id": "u"}'),
    ("unequal_columns", orjson.dumps({**prediction_batch("uneq", 3), "predictions": [1, 0]})),
    ("oversized", orjson.dumps(prediction_batch("big", 3000))),
    ("unknown_field", orjson.dumps({**prediction("x", 1), "extra": 1})),
    ("timestamp_out_of_range", orjson.dumps({**prediction("t", 1), "timestamp": 86400})),
    ("empty_batch", orjson.dumps(prediction_batch("empty", 0))),
    ("invalid_value", orjson.dumps({**prediction("p", 1), "score": 1.5})),
    ("wrong_type", BAD_SHADOW),
    (
        "unknown_type",
        orjson.dumps(
            {  # a valid event, but not one for an ingest topic
                "type": "alert",
                "alert_id": "a",
                "model_id": "credit",
                "model_version": "v1",
                "kind": "data_drift",
                "feature": "income",
                "window_start": T0,
                "window_end": T0 + 60,
                "statistic": "psi",
                "value": 0.4,
                "threshold": 0.25,
                "p_value": None,
                "severity": "critical",
                "opened_at": T0 + 120,
            }
        ),
    ),
]


def test_bad_messages_go_to_the_dlq_with_reason_and_good_ones_around_them_are_stored(
    worker_factory, producer, broker
) -> None:
    worker = worker_factory(max_message_bytes="65536")
    topics = worker.settings.topics
    stream: list[Any] = []
    for i, (_, bad) in enumerate(BAD_MESSAGES):
        stream.append(prediction(f"good-{i}", i))
        stream.append(bad)
    stream.append(prediction("good-last", 99))
    assert len(BAD_MESSAGES[7][1]) > 65536  # the oversized one really is
    send(producer, topics.predictions, stream)

    letters = consume_all(broker.bootstrap_servers, topics.dlq, len(BAD_MESSAGES), timeout=60)
    assert len(letters) == len(BAD_MESSAGES)
    by_value = {message.value(): dict(message.headers()) for message in letters}
    for reason, bad in BAD_MESSAGES:
        headers = by_value[bad]  # original bytes kept
        assert headers["driftline.error.class"].decode() == reason, headers
        assert headers["driftline.error.message"]
        assert headers["driftline.source.topic"].decode() == topics.predictions
        assert int(headers["driftline.source.offset"]) >= 0
    assert b"shadow" in by_value[BAD_SHADOW]["driftline.error.message"]  # names the field
    wait_for(
        lambda: worker.scalar("SELECT count() FROM predictions FINAL"),
        lambda n: n == len(BAD_MESSAGES) + 1,
        30,
        "the good messages",
    )
    assert worker.health()["dead_letters"] == {
        reason: sum(1 for r, _ in BAD_MESSAGES if r == reason) for reason, _ in BAD_MESSAGES
    }


def test_events_produced_with_kcat_from_a_jsonl_file_are_ingested(
    worker_factory, broker, tmp_path: Path
) -> None:
    command = kcat_command()
    if command is None:
        pytest.skip("kcat is not installed (scripts/setup.sh installs it)")
    worker = worker_factory()
    lines = [orjson.dumps(prediction(f"k-{i}", i)) for i in range(50)]
    lines.append(orjson.dumps(prediction_batch("kb", 200)))
    events_file = tmp_path / "events.jsonl"
    events_file.write_bytes(b"\n".join(lines) + b"\n")
    subprocess.run(
        [
            *command,
            "-P",
            "-b",
            broker.bootstrap_servers,
            "-t",
            worker.settings.topics.predictions,
            "-l",
            str(events_file),
        ],
        check=True,
        env=kcat_env(tmp_path),
        timeout=60,
        capture_output=True,
    )
    wait_for(
        lambda: worker.scalar("SELECT count() FROM predictions FINAL"),
        lambda n: n == 250,
        60,
        "kcat's events",
    )
    assert worker.scalar("SELECT countIf(event_id LIKE 'kb-%') FROM predictions FINAL") == 200


def test_a_worker_killed_mid_stream_and_restarted_stores_every_row_exactly_once(
    worker_factory, producer
) -> None:
    worker = worker_factory()
    topics = worker.settings.topics
    batches = [prediction_batch(f"k{k}", 1000) for k in range(150)]
    labels = [feedback_batch(f"k{k}", 1000) for k in range(150)]
    send(producer, topics.predictions, batches[:50])
    wait_for(lambda: counts(worker)[0], lambda n: n == 50_000, 60, "the first third")
    send(producer, topics.predictions, batches[50:])
    send(producer, topics.feedback, labels)
    # SIGKILL as soon as the worker is storing the rest: whatever it had read but not
    # yet acknowledged must be read again after the restart, and nothing twice.
    wait_for(lambda: worker.health()["prediction_rows"], lambda n: n > 50_000, 60, "more rows")
    assert worker.stop(signal.SIGKILL) == -signal.SIGKILL
    restarted = worker.start()
    expected = (150_000, 150_000)
    wait_for(lambda: counts(restarted), lambda got: got == expected, 120, "every row once")
    assert restarted.scalar("SELECT uniqExact(event_id) FROM predictions") == 150_000
    assert restarted.scalar("SELECT uniqExact(event_id) FROM feedback") == 150_000
