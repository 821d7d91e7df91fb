"""End to end: the SDK loggers against the real embedded tansu broker."""

from __future__ import annotations

import time
import uuid
from typing import Any, TypedDict

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from driftline.schemas.events import FeedbackBatchEvent, PredictionBatchEvent, event_adapter

from driftline.broker import EmbeddedBroker
from driftline.sdk import FeedbackLogger, PredictionLogger

pytestmark = pytest.mark.e2e

PARTITIONS = 3
T0 = 1_767_225_600.0


class Row(TypedDict):
    features: dict[str, float | str | None]
    prediction: float
    score: float
    timestamp: float


def create_topic(broker: EmbeddedBroker, name: str) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
    for future in admin.create_topics([NewTopic(name, PARTITIONS, 1)]).values():
        future.result(timeout=15)


def consume(broker: EmbeddedBroker, topic: str, rows: int, timeout: float = 30.0) -> list[Any]:
    """Read ``topic`` from the beginning until ``rows`` rows arrived; return the messages."""
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap_servers,
            "group.id": f"test-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    # assign() rather than subscribe(): no group join, which tansu makes slow.
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    messages: list[Any] = []
    seen = 0
    deadline = time.monotonic() + timeout
    try:
        while seen < rows:
            if time.monotonic() >= deadline:
                raise AssertionError(f"{seen} of {rows} rows arrived on {topic} in {timeout} s")
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error():
                raise KafkaException(message.error())
            messages.append(message)
            body = orjson.loads(message.value() or b"{}")
            seen += len(body.get("event_ids", [None]))
        # Nothing more than what was logged.
        extra = consumer.poll(0.5)
        assert extra is None or extra.error(), "more messages than logged rows"
    finally:
        consumer.close()
    return messages


def test_predictions_round_trip_through_tansu(broker: EmbeddedBroker) -> None:
    topic = f"sdk-e2e-{uuid.uuid4().hex[:8]}.predictions"
    create_topic(broker, topic)
    n = 1234
    expected: dict[str, Row] = {
        f"p{i}": {
            "features": {"income": float(i) / 7, "region": ["eu", "us", None][i % 3]},
            "prediction": float(i % 2),
            "score": (i % 100) / 100,
            "timestamp": T0 + i / 10,
        }
        for i in range(n)
    }
    with PredictionLogger(
        "credit",
        "v7",
        bootstrap_servers=broker.bootstrap_servers,
        topic=topic,
        batch_rows=100,
        linger_seconds=0.05,
    ) as logger:
        for event_id, row in expected.items():
            assert logger.log(
                event_id,
                row["features"],
                row["prediction"],
                score=row["score"],
                timestamp=row["timestamp"],
                latency_ms=1.5,
            )
        assert logger.flush(30.0) == 0
        stats = logger.stats
    assert stats.rows_delivered == stats.rows_logged == n
    assert stats.rows_failed == stats.rows_dropped == 0 and stats.last_error is None

    messages = consume(broker, topic, n)
    assert 1 < len(messages) < n  # batched
    assert stats.messages_delivered == len(messages)
    # Keyed by model id: one partition, so the model's events keep their order.
    assert {m.key() for m in messages} == {b"credit"}
    assert len({m.partition() for m in messages}) == 1
    arrived: list[str] = []
    for message in sorted(messages, key=lambda m: m.offset()):
        batch = event_adapter.validate_python(orjson.loads(message.value() or b"{}"))
        assert isinstance(batch, PredictionBatchEvent)
        assert (batch.model_id, batch.model_version) == ("credit", "v7")
        assert batch.rows <= 100
        assert batch.latency_ms == [1.5] * batch.rows
        for j, event_id in enumerate(batch.event_ids):
            row = expected[event_id]
            assert {name: column[j] for name, column in batch.features.items()} == row["features"]
            assert batch.predictions[j] == row["prediction"]
            assert batch.scores is not None and batch.scores[j] == row["score"]
            assert batch.timestamps[j].timestamp() == pytest.approx(row["timestamp"], abs=1e-6)
        arrived.extend(batch.event_ids)
    assert arrived == list(expected)  # exactly these ids, once each, in order


def test_feedback_round_trip_through_tansu(broker: EmbeddedBroker) -> None:
    topic = f"sdk-e2e-{uuid.uuid4().hex[:8]}.feedback"
    create_topic(broker, topic)
    n = 777
    labels = {f"p{i}": ("fraud" if i % 5 == 0 else float(i % 2)) for i in range(n)}
    with FeedbackLogger(
        "credit", bootstrap_servers=broker.bootstrap_servers, topic=topic, batch_rows=250
    ) as logger:
        for i, (event_id, label) in enumerate(labels.items()):
            assert logger.log(event_id, label, timestamp=T0 + i)
    assert logger.stats.rows_delivered == n and logger.stats.rows_failed == 0

    messages = consume(broker, topic, n)
    assert len(messages) == 4  # 250 + 250 + 250 + 27
    arrived: dict[str, float | str] = {}
    for message in sorted(messages, key=lambda m: m.offset()):
        assert message.key() == b"credit"
        batch = event_adapter.validate_python(orjson.loads(message.value() or b"{}"))
        assert isinstance(batch, FeedbackBatchEvent) and batch.model_id == "credit"
        for event_id, label in zip(batch.event_ids, batch.labels, strict=True):
            assert event_id not in arrived
            arrived[event_id] = label
    assert arrived == labels
