"""Unit tests of the service SDK against the in-memory producer double."""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from driftline.schemas.events import (
    MAX_BATCH_ROWS,
    MAX_FEATURES,
    FeedbackBatchEvent,
    PredictionBatchEvent,
    PredictionEvent,
    event_adapter,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import driftline.sdk
from driftline.sdk import (
    FeedbackLogger,
    LoggerStats,
    MemoryProducer,
    PredictionLogger,
    ProducedMessage,
)
from driftline.sdk.batching import SINGLE, encode_predictions, prediction_batch_key
from driftline.settings import Settings

SERVERS = "127.0.0.1:1"
T0 = 1_767_225_600.0


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` until it holds or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.005)


def assert_balanced(stats: LoggerStats) -> None:
    """Every accepted row is buffered, in flight, delivered or failed."""
    assert stats.rows_logged == (
        stats.rows_buffered + stats.rows_in_flight + stats.rows_delivered + stats.rows_failed
    )


def rows_of(messages: list[ProducedMessage]) -> list[str]:
    """Event ids of every row in ``messages``, validating each message."""
    ids: list[str] = []
    for message in messages:
        event = event_adapter.validate_python(message.decode())
        if isinstance(event, PredictionBatchEvent | FeedbackBatchEvent):
            ids.extend(event.event_ids)
        else:
            ids.append(event.event_id)
    return ids


@pytest.fixture
def memory() -> MemoryProducer:
    return MemoryProducer()


@pytest.fixture
def make_logger(memory: MemoryProducer) -> Iterator[Callable[..., PredictionLogger]]:
    made: list[PredictionLogger] = []

    def make(**options: Any) -> PredictionLogger:
        options.setdefault("bootstrap_servers", SERVERS)
        options.setdefault("producer_factory", memory)
        logger = PredictionLogger("credit", "v1", **options)
        made.append(logger)
        return logger

    yield make
    for logger in made:
        logger.close(timeout=1.0)


def log_rows(logger: PredictionLogger, count: int, prefix: str = "e", start: int = 0) -> None:
    for i in range(start, start + count):
        assert logger.log(f"{prefix}{i}", {"x": float(i), "c": "a"}, i % 2, timestamp=T0 + i)


# -- public surface -------------------------------------------------------------------------


def test_exported_members() -> None:
    exported = set(driftline.sdk.__all__)
    public = {name for name in vars(driftline.sdk) if not name.startswith("_")}
    modules = {"batching", "loggers", "producers", "stats", "subscriber", "annotations"}
    assert exported == public - modules
    for name in ("batching", "loggers", "producers", "stats", "subscriber"):
        module = importlib.import_module(f"driftline.sdk.{name}")
        for member in module.__all__:
            assert hasattr(module, member), (name, member)


def test_stats_are_frozen() -> None:
    stats = LoggerStats()
    with pytest.raises(AttributeError):
        stats.rows_logged = 1  # type: ignore[misc]


# -- construction and producer configuration ------------------------------------------------


def test_producer_config_and_lazy_start(memory: MemoryProducer) -> None:
    settings = Settings.model_validate(
        {
            "topic_prefix": "acme",
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": "PLAIN",
            "kafka_sasl_username": "svc",
            "kafka_sasl_password": "secret",
        }
    )
    logger = PredictionLogger(
        "credit",
        "v1",
        bootstrap_servers="kafka:9092",
        settings=settings,
        producer_config={"linger.ms": 2, "client.id": "svc-1"},
        producer_factory=memory,
    )
    assert logger.topic == "acme.predictions"
    assert memory.configs == []  # nothing built before the first log()
    logger.log("e1", {"x": 1.0}, 1)
    [config] = memory.configs
    assert config["bootstrap.servers"] == "kafka:9092"
    assert config["enable.idempotence"] is True
    assert config["compression.type"] == "lz4"
    assert config["linger.ms"] == 2  # extra config wins
    assert config["client.id"] == "svc-1"
    assert config["security.protocol"] == "sasl_ssl"
    assert config["sasl.password"] == "secret"
    assert config["message.max.bytes"] > settings.max_message_bytes
    logger.close()
    assert memory.messages[0].key == b"credit"
    assert memory.messages[0].topic == "acme.predictions"


def test_bootstrap_servers_from_settings(memory: MemoryProducer) -> None:
    settings = Settings.model_validate({"kafka_bootstrap_servers": "k1:9092,k2:9092"})
    with FeedbackLogger("credit", settings=settings, producer_factory=memory) as logger:
        logger.log("e1", 1)
    assert memory.configs[0]["bootstrap.servers"] == "k1:9092,k2:9092"
    assert logger.topic == "driftline.feedback"


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"batch_rows": 0}, "batch_rows"),
        ({"batch_rows": MAX_BATCH_ROWS + 1, "max_buffered_rows": 10**7}, "batch_rows"),
        ({"batch_rows": 10, "max_buffered_rows": 5}, "max_buffered_rows"),
        ({"linger_seconds": -1.0}, "linger_seconds"),
        ({"linger_seconds": float("nan")}, "linger_seconds"),
        ({"max_block_seconds": -0.1}, "max_block_seconds"),
        (
            {
                "settings": Settings.model_validate({"kafka_bootstrap_servers": ""}),
                "bootstrap_servers": None,
            },
            "bootstrap",
        ),
    ],
)
def test_constructor_rejects(options: dict[str, Any], problem: str) -> None:
    options.setdefault("bootstrap_servers", SERVERS)
    with pytest.raises(ValueError, match=problem):
        PredictionLogger("credit", "v1", **options)


def test_constructor_rejects_bad_model_id() -> None:
    with pytest.raises(ValueError, match="model_version"):
        PredictionLogger("credit", "", bootstrap_servers=SERVERS)
    with pytest.raises(ValueError, match="model_id"):
        FeedbackLogger("x" * 300, bootstrap_servers=SERVERS)


# -- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "problem"),
    [
        (("", {"x": 1.0}, 1), {}, "event_id"),
        (("e1", {"x": float("nan")}, 1), {}, "features.x"),
        (("e1", {"x": [1.0]}, 1), {}, "features.x"),
        (("e1", {"x": "v" * 2000}, 1), {}, "features.x: String should have at most"),
        (("e1", {"x": 1.0}, None), {}, "prediction"),
        (("e1", {"x": 1.0}, 1), {"score": 1.5}, "score"),
        (("e1", {"x": 1.0}, 1), {"scores": {"a": -0.1}}, "scores.a"),
        (("e1", {"x": 1.0}, 1), {"latency_ms": -1.0}, "latency_ms"),
        (("e1", {"x": 1.0}, 1), {"segment": {"region": 1}}, "segment.region"),
        (("e1", {"x": 1.0}, 1), {"timestamp": "2026-01-01T00:00:00"}, "time zone"),
        (("e1", {"x": 1.0}, 1), {"timestamp": 1.0}, "out of range"),
    ],
)
def test_invalid_prediction_raises_and_is_not_sent(
    make_logger: Callable[..., PredictionLogger],
    memory: MemoryProducer,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    problem: str,
) -> None:
    logger = make_logger()
    with pytest.raises(ValueError, match=problem) as caught:
        logger.log(*args, **kwargs)
    assert str(caught.value).startswith(f"invalid prediction {args[0]!r}: ")
    assert logger.flush(1.0) == 0
    assert logger.stats.rows_logged == 0
    assert memory.messages == [] and memory.configs == []


def test_invalid_feedback_raises(memory: MemoryProducer) -> None:
    with FeedbackLogger("credit", bootstrap_servers=SERVERS, producer_factory=memory) as logger:
        with pytest.raises(ValueError, match="label"):
            logger.log("e1", None)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="event_id"):
            logger.log("", 1)
    assert logger.stats.rows_logged == 0 and memory.messages == []


def test_timestamp_defaults_to_now(
    make_logger: Callable[..., PredictionLogger], memory: MemoryProducer
) -> None:
    logger = make_logger()
    before = time.time()
    logger.log("e1", {"x": 1.0}, 1)
    after = time.time()
    logger.flush(1.0)
    [stamp] = memory.messages[0].decode()["timestamps"]
    assert isinstance(stamp, float)
    assert before - 1e-6 <= stamp <= after + 1e-6


# -- batching -------------------------------------------------------------------------------


def test_batches_by_row_count(
    make_logger: Callable[..., PredictionLogger], memory: MemoryProducer
) -> None:
    logger = make_logger(batch_rows=10, linger_seconds=60.0)
    log_rows(logger, 25)
    # Two full batches go without waiting for linger; the last five stay buffered.
    wait_until(lambda: logger.stats.rows_delivered == 20)
    assert len(memory.messages) == 2
    stats = logger.stats
    assert stats.rows_buffered == 5 and stats.messages_delivered == 2
    assert_balanced(stats)
    assert logger.flush(1.0) == 0
    assert [m.decode()["event_ids"][0] for m in memory.messages] == ["e0", "e10", "e20"]
    assert rows_of(memory.messages) == [f"e{i}" for i in range(25)]  # in order
    first = memory.messages[0].decode()
    assert first["type"] == "prediction_batch"
    assert first["model_id"] == "credit" and first["model_version"] == "v1"
    assert first["timestamps"] == [T0 + i for i in range(10)]
    assert first["features"] == {"x": [float(i) for i in range(10)], "c": ["a"] * 10}
    assert first["predictions"] == [float(i % 2) for i in range(10)]
    assert "scores" not in first and "segment" not in first
    assert logger.stats == LoggerStats(rows_logged=25, rows_delivered=25, messages_delivered=3)


def test_batches_by_linger(
    make_logger: Callable[..., PredictionLogger], memory: MemoryProducer
) -> None:
    linger = 0.15
    logger = make_logger(batch_rows=1000, linger_seconds=linger)
    started = time.monotonic()
    log_rows(logger, 3)
    wait_until(lambda: len(memory.messages) == 1, timeout=5.0)
    waited = time.monotonic() - started
    assert waited >= linger
    assert memory.messages[0].decode()["event_ids"] == ["e0", "e1", "e2"]
    # A second batch lingers on its own clock.
    log_rows(logger, 2, start=3)
    wait_until(lambda: len(memory.messages) == 2, timeout=5.0)
    assert memory.messages[1].decode()["event_ids"] == ["e3", "e4"]
    wait_until(lambda: logger.stats.rows_delivered == 5)


def test_rows_are_grouped_by_segment_score_and_latency(
    make_logger: Callable[..., PredictionLogger], memory: MemoryProducer
) -> None:
    logger = make_logger(linger_seconds=60.0)
    eu, us = {"region": "eu"}, {"region": "us"}
    logger.log("a1", {"x": 1.0}, 1, timestamp=T0, segment=eu, score=0.1)
    logger.log("b1", {"x": 2.0}, 0, timestamp=T0, segment=us, score=0.2)
    logger.log("a2", {"x": 3.0}, 1, timestamp=T0, segment=dict(eu), score=0.3)
    logger.log("c1", {"x": 4.0}, 1, timestamp=T0, score=0.4, latency_ms=3.0)
    logger.log("d1", {"x": 5.0}, 1, timestamp=T0)
    logger.log("s1", {"x": 6.0}, "cat", timestamp=T0, scores={"cat": 0.7, "dog": 0.3})
    logger.log("s2", {"x": 7.0}, "dog", timestamp=T0, scores={"cat": 0.1, "dog": 0.9})
    assert logger.flush(1.0) == 0
    decoded = {
        tuple(m.decode().get("event_ids") or [m.decode()["event_id"]]): m.decode()
        for m in memory.messages
    }
    assert set(decoded) == {("a1", "a2"), ("b1",), ("c1",), ("d1",), ("s1",), ("s2",)}
    assert decoded["a1", "a2"]["segment"] == eu and decoded["a1", "a2"]["scores"] == [0.1, 0.3]
    assert decoded[("b1",)]["segment"] == us
    assert decoded[("c1",)]["latency_ms"] == [3.0] and decoded[("c1",)]["scores"] == [0.4]
    assert "scores" not in decoded[("d1",)] and "latency_ms" not in decoded[("d1",)]
    single = decoded[("s1",)]
    assert single["type"] == "prediction" and single["scores"] == {"cat": 0.7, "dog": 0.3}
    assert single["timestamp"] == T0
    for message in memory.messages:
        event_adapter.validate_python(message.decode())
    assert logger.stats.messages_delivered == 6 and logger.stats.rows_delivered == 7


def test_missing_features_are_null_in_the_batch(
    make_logger: Callable[..., PredictionLogger], memory: MemoryProducer
) -> None:
    logger = make_logger()
    logger.log("e1", {"x": 1.0}, 1, timestamp=T0)
    logger.log("e2", {"y": "b"}, 1, timestamp=T0)
    logger.log("e3", {"x": 3.0, "y": None}, 1, timestamp=T0)
    logger.flush(1.0)
    [message] = memory.messages
    assert message.decode()["features"] == {"x": [1.0, None, 3.0], "y": [None, "b", None]}


def test_a_feature_that_is_a_number_in_one_row_and_a_string_in_another_splits_the_batch(
    make_logger: Callable[..., PredictionLogger], memory: MemoryProducer
) -> None:
    logger = make_logger()
    logger.log("e1", {"y": 1.0}, 1, timestamp=T0)
    logger.log("e2", {"y": "b"}, 1, timestamp=T0)
    logger.log("e3", {"y": None}, 1, timestamp=T0)
    logger.flush(1.0)
    columns = sorted(str(m.decode()["features"]["y"]) for m in memory.messages)
    assert columns == sorted(["[1.0, None]", "['b']"])
    for message in memory.messages:
        event_adapter.validate_python(message.decode())


def test_large_batches_are_split_to_fit_max_message_bytes(
    make_logger: Callable[..., PredictionLogger], memory: MemoryProducer
) -> None:
    limit = 4096
    logger = make_logger(
        settings=Settings.model_validate({"max_message_bytes": limit}), batch_rows=100
    )
    for i in range(100):
        logger.log(f"e{i}", {"text": "x" * 100}, 1, timestamp=T0)
    # One row alone is bigger than the limit: it cannot be sent and counts as failed.
    logger.log("huge", {f"f{i}": "y" * 100 for i in range(50)}, 1, timestamp=T0)
    assert logger.flush(1.0) == 0
    assert len(memory.messages) > 1
    assert all(len(m.value) <= limit for m in memory.messages)
    assert rows_of(memory.messages) == [f"e{i}" for i in range(100)]
    stats = logger.stats
    assert stats.rows_delivered == 100 and stats.rows_failed == 1
    assert stats.last_error is not None and "exceeds max_message_bytes" in stats.last_error
    assert_balanced(stats)


def test_feature_union_is_cut_at_max_features() -> None:
    rows = [
        PredictionEvent(
            event_id=f"e{i}",
            model_id="m",
            model_version="v",
            timestamp=T0,
            features={f"r{i}_{j}": 1.0 for j in range(MAX_FEATURES // 2 + 1)},
            prediction=1,
        )
        for i in range(3)
    ]
    messages = encode_predictions(rows, prediction_batch_key(rows[0]), 1 << 30)
    assert [m.rows for m in messages] == [1, 1, 1]
    for message in messages:
        event_adapter.validate_python(orjson.loads(message.payload))


_values = st.one_of(
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=5),
)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.dictionaries(st.sampled_from(["a", "b", "c"]), _values, max_size=3),
            st.one_of(st.floats(-1e6, 1e6), st.sampled_from(["yes", "no"])),
            st.floats(0, 1),
        ),
        min_size=1,
        max_size=30,
    ),
    st.integers(min_value=200, max_value=5000),
)
def test_encoded_batches_round_trip(
    rows: list[tuple[dict[str, Any], float | str, float]], max_bytes: int
) -> None:
    events = [
        PredictionEvent(
            event_id=f"e{i}",
            model_id="m",
            model_version="v",
            timestamp=T0 + i,
            features=features,
            prediction=prediction,
            score=score,
        )
        for i, (features, prediction, score) in enumerate(rows)
    ]
    groups: dict[Any, list[PredictionEvent]] = {}
    for event in events:
        groups.setdefault(prediction_batch_key(event), []).append(event)
    assert SINGLE not in groups
    messages = [
        message
        for key, members in groups.items()
        for message in encode_predictions(members, key, max_bytes)
    ]
    decoded: list[PredictionEvent] = []
    for message in messages:
        batch = event_adapter.validate_python(orjson.loads(message.payload))
        assert isinstance(batch, PredictionBatchEvent) and batch.rows == message.rows
        for j in range(batch.rows):
            decoded.append(
                PredictionEvent(
                    event_id=batch.event_ids[j],
                    model_id=batch.model_id,
                    model_version=batch.model_version,
                    timestamp=batch.timestamps[j],
                    features={n: c[j] for n, c in batch.features.items() if c[j] is not None},
                    prediction=batch.predictions[j],
                    score=batch.scores[j] if batch.scores is not None else None,
                )
            )
    expected = [
        e.model_copy(update={"features": {k: v for k, v in e.features.items() if v is not None}})
        for e in events
    ]
    assert sorted(decoded, key=lambda e: e.event_id) == sorted(expected, key=lambda e: e.event_id)


# -- bounded wait and drops -----------------------------------------------------------------


def test_full_buffer_drops_after_bounded_wait() -> None:
    # The producer queue is full from the start (queue_limit=0): nothing leaves the buffer.
    memory = MemoryProducer(queue_limit=0)
    bound = 0.2
    logger = PredictionLogger(
        "credit",
        "v1",
        bootstrap_servers=SERVERS,
        producer_factory=memory,
        batch_rows=2,
        max_buffered_rows=4,
        linger_seconds=0.0,
        max_block_seconds=bound,
    )
    log_rows(logger, 4)
    started = time.monotonic()
    accepted = logger.log("late", {"x": 1.0}, 1)
    elapsed = time.monotonic() - started
    assert accepted is False
    assert bound <= elapsed < bound + 1.0  # bounded: the margin is a loaded machine's
    stats = logger.stats
    assert stats.rows_dropped == 1 and stats.rows_logged == 4 and stats.rows_buffered == 4
    # Room frees while a log() waits: it gets in before its bound.
    results: list[bool] = []
    waiter = threading.Thread(target=lambda: results.append(logger.log("w", {"x": 1.0}, 1)))
    started = time.monotonic()
    waiter.start()
    wait_until(lambda: time.monotonic() - started > 0.05)
    memory.queue_limit = 100
    waiter.join(timeout=5.0)
    assert results == [True]
    assert logger.flush(1.0) == 0
    assert rows_of(memory.messages) == ["e0", "e1", "e2", "e3", "w"]
    assert logger.stats.rows_delivered == 5 and logger.stats.rows_dropped == 1
    logger.close()


def test_full_buffer_never_blocks_by_default() -> None:
    memory = MemoryProducer(queue_limit=0)
    logger = PredictionLogger(
        "credit",
        "v1",
        bootstrap_servers=SERVERS,
        producer_factory=memory,
        batch_rows=2,
        max_buffered_rows=2,
    )
    log_rows(logger, 2)
    durations = []
    for i in range(20):
        started = time.monotonic()
        assert logger.log(f"d{i}", {"x": 1.0}, 1) is False
        durations.append(time.monotonic() - started)
    # no wait at all (a stall of a loaded machine can still take one call 0.1 s)
    assert sorted(durations)[len(durations) // 2] < 0.01 and max(durations) < 0.5
    assert logger.stats.rows_dropped == 20
    assert logger.close(timeout=0.1) == 2
    stats = logger.stats
    assert stats.rows_failed == 2 and stats.rows_buffered == 0
    assert stats.last_error == "logger closed with 2 rows undelivered"
    assert_balanced(stats)


def test_slow_broker_fills_producer_queue_then_drops() -> None:
    memory = MemoryProducer(queue_limit=2, paused=True)
    bound = 0.5
    logger = PredictionLogger(
        "credit",
        "v1",
        bootstrap_servers=SERVERS,
        producer_factory=memory,
        batch_rows=5,
        max_buffered_rows=10,
        linger_seconds=60.0,
        max_block_seconds=bound,
    )
    # Two messages fit in the producer queue (10 rows) and 10 more rows in the buffer.
    log_rows(logger, 20)
    wait_until(lambda: memory.queued == 2)
    started = time.monotonic()
    assert logger.log("dropped", {"x": 1.0}, 1) is False
    assert bound <= time.monotonic() - started < bound + 1.0
    stats = logger.stats
    assert stats.rows_dropped == 1
    assert stats.rows_in_flight == 10 and stats.rows_buffered == 10
    assert logger.flush(0.05) == 20  # the broker does not answer
    memory.resume()
    assert logger.flush(5.0) == 0
    assert logger.stats.rows_delivered == 20
    assert rows_of(memory.messages) == [f"e{i}" for i in range(20)]
    logger.close()


# -- delivery results -----------------------------------------------------------------------


def test_delivery_failures_are_counted(make_logger: Callable[..., PredictionLogger]) -> None:
    memory = MemoryProducer(
        fail=lambda m: "Broker: Not enough in-sync replicas" if b'"e10"' in m.value else None
    )
    logger = make_logger(batch_rows=10, producer_factory=memory)
    log_rows(logger, 30)  # batches e0-e9, e10-e19 (fails), e20-e29
    assert logger.flush(1.0) == 0
    stats = logger.stats
    assert stats.rows_failed == 10 and stats.messages_failed == 1
    assert stats.rows_delivered == 20 and stats.messages_delivered == 2
    assert stats.last_error == "Broker: Not enough in-sync replicas"
    assert_balanced(stats)


def test_produce_exception_is_counted(make_logger: Callable[..., PredictionLogger]) -> None:
    class Broken(MemoryProducer):
        def produce(self, topic: str, value: bytes, key: bytes, *, on_delivery: Any) -> None:
            raise RuntimeError("Broker: Unknown topic or partition")

    logger = make_logger(producer_factory=Broken())
    log_rows(logger, 3)
    assert logger.flush(1.0) == 0
    stats = logger.stats
    assert stats.rows_failed == 3 and stats.messages_failed == 1
    assert stats.last_error is not None and "Unknown topic" in stats.last_error
    assert_balanced(stats)


def test_close_fails_what_cannot_be_delivered() -> None:
    memory = MemoryProducer(paused=True)
    logger = PredictionLogger(
        "credit", "v1", bootstrap_servers=SERVERS, producer_factory=memory, batch_rows=5
    )
    log_rows(logger, 12)
    assert logger.close(timeout=0.1) == 12
    stats = logger.stats
    assert stats.rows_delivered == 0 and stats.rows_failed == 12
    assert stats.rows_in_flight == 0 and stats.rows_buffered == 0
    assert_balanced(stats)
    assert len(memory.failed) == 3  # purged
    assert logger.log("after", {"x": 1.0}, 1) is False
    assert logger.stats.rows_dropped == 1
    assert logger.close() == 0  # idempotent


def test_context_manager_flushes_and_closes(memory: MemoryProducer) -> None:
    with PredictionLogger(
        "credit", "v1", bootstrap_servers=SERVERS, producer_factory=memory, linger_seconds=60
    ) as logger:
        log_rows(logger, 7)
    assert rows_of(memory.messages) == [f"e{i}" for i in range(7)]
    assert logger.stats.rows_delivered == 7
    assert logger.log("x", {"x": 1.0}, 1) is False


def test_sender_thread_stops_on_close(memory: MemoryProducer) -> None:
    def sender_threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name.startswith("driftline-sdk:")]

    before = set(sender_threads())
    logger = PredictionLogger("credit", "v1", bootstrap_servers=SERVERS, producer_factory=memory)
    logger.log("e1", {"x": 1.0}, 1)
    mine = set(sender_threads()) - before
    assert len(mine) == 1 and all(t.daemon for t in mine)
    logger.close()
    assert not any(t.is_alive() for t in mine)


# -- threads --------------------------------------------------------------------------------


def test_concurrent_logging_loses_and_duplicates_nothing(
    make_logger: Callable[..., PredictionLogger], memory: MemoryProducer
) -> None:
    logger = make_logger(batch_rows=64, linger_seconds=0.01)
    threads, per_thread = 8, 500
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def serve(worker: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                assert logger.log(f"w{worker}-{i}", {"x": float(i), "w": str(worker)}, 1)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    workers = [threading.Thread(target=serve, args=(w,)) for w in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert errors == []
    assert logger.flush(5.0) == 0
    ids = rows_of(memory.messages)
    expected = {f"w{w}-{i}" for w in range(threads) for i in range(per_thread)}
    assert len(ids) == len(expected) and set(ids) == expected
    # Each thread's rows keep their order.
    for w in range(threads):
        mine = [i for i in ids if i.startswith(f"w{w}-")]
        assert mine == [f"w{w}-{i}" for i in range(per_thread)]
    stats = logger.stats
    assert stats.rows_logged == stats.rows_delivered == threads * per_thread
    assert stats.messages_delivered == len(memory.messages) < threads * per_thread
    assert stats.rows_dropped == 0 and stats.rows_failed == 0


def test_feedback_batches(memory: MemoryProducer) -> None:
    logger = FeedbackLogger(
        "credit", bootstrap_servers=SERVERS, producer_factory=memory, batch_rows=4
    )
    for i in range(10):
        logger.log(f"e{i}", i % 2, timestamp=T0 + i)
    logger.log("s0", "yes", timestamp=T0 + 20)  # a string label never shares a numeric column
    assert logger.flush(1.0) == 0
    batches = [event_adapter.validate_python(m.decode()) for m in memory.messages]
    assert all(isinstance(b, FeedbackBatchEvent) for b in batches)
    assert sorted(b.rows for b in batches) == [1, 2, 4, 4]
    first = memory.messages[0].decode()
    assert first == {
        "type": "feedback_batch",
        "model_id": "credit",
        "event_ids": ["e0", "e1", "e2", "e3"],
        "timestamps": [T0, T0 + 1, T0 + 2, T0 + 3],
        "labels": [0.0, 1.0, 0.0, 1.0],
    }
    assert [b.labels for b in batches if b.rows == 1] == [["yes"]]
    assert logger.stats.rows_delivered == 11
    logger.close()


def test_one_call_logs_the_served_prediction_and_the_shadow_ones(
    memory: MemoryProducer, make_logger: Callable[..., PredictionLogger]
) -> None:
    from driftline.schemas.codec import decode_ingest

    logger = make_logger()
    for i in range(3):
        assert logger.log(
            f"e{i}",
            {"x": float(i)},
            1,
            timestamp=T0 + i,
            latency_ms=5.0,
            model_version="v2",  # a canary served it
            score=0.75,
            shadow={"v3": 0},
            shadow_latency_ms={"v3": 7.5},
            shadow_score={"v3": 0.25},
        )
    assert logger.flush(5.0) == 0
    decoded = [decode_ingest(message.value) for message in memory.messages]
    by_kind = {(columns.model_version, columns.shadow): columns for columns in decoded}
    assert set(by_kind) == {("v2", False), ("v3", True)}
    served, shadow = by_kind[("v2", False)], by_kind[("v3", True)]
    assert served.event_ids.tolist() == shadow.event_ids.tolist() == ["e0", "e1", "e2"]
    assert served.prediction_value.tolist() == [1.0] * 3
    assert shadow.prediction_value.tolist() == [0.0] * 3
    assert shadow.latency_ms.tolist() == [7.5] * 3
    assert served.score.tolist() == [0.75] * 3 and shadow.score.tolist() == [0.25] * 3
    assert logger.stats.rows_delivered == 6
    with pytest.raises(ValueError, match="prediction 'e9'"):
        logger.log("e9", {"x": 1.0}, 1, shadow={"": 0})  # an empty version is invalid
