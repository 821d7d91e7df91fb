"""Backfills of any span, store refusals and the watermark (issue 11, findings 1 and 3).

Through the real chDB store (and a ClickHouse server when DRIFTLINE_CLICKHOUSE_URL
is set): a batch whose rows span more days than ClickHouse's default
``max_partitions_per_insert_block`` is stored; a message the store refuses for good
goes to the DLQ (``store_rejected``) while the rest of its group is stored, and a
store that is down still stops the worker; the stored watermark never goes back,
merged or not.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import driftline.streams.ingest as ingest
import orjson
import pyarrow as pa
import pytest
from confluent_kafka import Producer
from driftline.streams.ingest import (
    DeadLetter,
    Ingestor,
    RawMessage,
    dead_letter_headers,
    route_messages,
    watermark_table,
)
from driftline.streams.monitor import Monitor
from e2e_support import wait_for

from driftline.store import EmbeddedStore, Store, StoreError, migrate
from driftline.store import migrations as migrations_module
from driftline.store.backend import is_deterministic
from driftline.store.migrations import MIGRATIONS, applied_versions
from driftline.store.rows import KafkaPosition

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
DAY = 86_400
TOPIC = "driftline.predictions"


@pytest.fixture(params=["chdb", pytest.param("server", marks=pytest.mark.clickhouse_server)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A migrated store: chDB, and a ClickHouse server when DRIFTLINE_CLICKHOUSE_URL is set."""
    if request.param == "chdb":
        opened: Store = EmbeddedStore(tmp_path / "chdb", "driftline")
    else:
        url = os.environ.get("DRIFTLINE_CLICKHOUSE_URL", "")
        if not url:
            pytest.skip("DRIFTLINE_CLICKHOUSE_URL is not set")
        from driftline.store.server import ServerStore

        opened = ServerStore(url, f"driftline_test_{uuid.uuid4().hex[:8]}")
    migrate(opened)
    yield opened
    if request.param == "server":
        opened.command(f"DROP DATABASE IF EXISTS {opened.database}")
    opened.close()


def prediction_batch(prefix: str, rows: int, start: int = T0, step: int = DAY) -> dict[str, Any]:
    """``rows`` predictions, one every ``step`` seconds from ``start``."""
    return {
        "type": "prediction_batch",
        "model_id": "credit",
        "model_version": "v1",
        "event_ids": [f"{prefix}-{i}" for i in range(rows)],
        "timestamps": [start + i * step for i in range(rows)],
        "features": {"income": [float(i) for i in range(rows)], "region": ["eu"] * rows},
        "predictions": [i % 2 for i in range(rows)],
        "scores": [0.5] * rows,
    }


def feedback_batch(prefix: str, rows: int, start: int = T0, step: int = DAY) -> dict[str, Any]:
    """Labels of :func:`prediction_batch`'s rows, one every ``step`` seconds."""
    return {
        "type": "feedback_batch",
        "model_id": "credit",
        "event_ids": [f"{prefix}-{i}" for i in range(rows)],
        "timestamps": [start + i * step for i in range(rows)],
        "labels": [i % 2 for i in range(rows)],
    }


def prediction(event_id: str, timestamp: float) -> dict[str, Any]:
    return {
        "type": "prediction",
        "event_id": event_id,
        "model_id": "credit",
        "model_version": "v1",
        "timestamp": timestamp,
        "features": {"income": 1.0, "region": "us"},
        "prediction": 1,
    }


def messages(events: list[Any], partition: int = 0, first_offset: int = 0) -> list[RawMessage]:
    return [
        RawMessage(
            event if isinstance(event, bytes) else orjson.dumps(event),
            KafkaPosition(TOPIC, partition, first_offset + index),
        )
        for index, event in enumerate(events)
    ]


class Letters:
    """A dead-letter sender that keeps what it was given (delivered at once)."""

    def __init__(self) -> None:
        self.sent: list[DeadLetter] = []

    async def __call__(self, letter: DeadLetter) -> asyncio.Future[None]:
        self.sent.append(letter)
        delivered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        delivered.set_result(None)
        return delivered

    def reasons(self) -> list[str]:
        return [letter.error.reason for letter in self.sent]


def store_group(ingestor: Ingestor, group: list[RawMessage]) -> ingest.IngestOutcome:
    outcome = ingestor.route(group)
    asyncio.run(ingestor.persist(outcome, len(group)))
    return outcome


def count(store: Store, sql: str) -> int:
    return int(next(iter(store.query(sql)[0].values())))


# --------------------------------------------------------------------------- finding 1


def test_backfill_batches_spanning_150_days_are_stored(store: Store) -> None:
    letters = Letters()
    ingestor = Ingestor(store, letters, 1 << 24)
    predictions = prediction_batch("b", 150, start=T0 - 149 * DAY)
    labels = feedback_batch("b", 150, start=T0 - 149 * DAY)
    store_group(ingestor, messages([predictions, labels]))

    assert letters.sent == []
    assert count(store, "SELECT count() FROM predictions FINAL") == 150
    assert count(store, "SELECT count() FROM feedback FINAL") == 150
    assert count(store, "SELECT uniqExact(toDate(timestamp)) FROM predictions") == 150
    assert count(store, "SELECT uniqExact(toDate(timestamp)) FROM feedback") == 150
    assert (ingestor.stats.prediction_rows, ingestor.stats.feedback_rows) == (150, 150)


def test_a_backfill_of_three_years_in_one_batch_is_stored(store: Store) -> None:
    letters = Letters()
    ingestor = Ingestor(store, letters, 1 << 24)
    store_group(ingestor, messages([prediction_batch("y", 1100, start=T0 - 1099 * DAY)]))
    assert letters.sent == []
    assert count(store, "SELECT count() FROM predictions FINAL") == 1100
    assert count(store, "SELECT uniqExact(toDate(timestamp)) FROM predictions") == 1100


@pytest.mark.e2e
def test_a_backfill_batch_does_not_stop_ingest_and_what_follows_is_stored(
    worker_factory: Any, producer: Producer
) -> None:
    worker = worker_factory()
    topics = worker.settings.topics

    def send(topic: str, events: list[dict[str, Any]]) -> None:
        for event in events:
            producer.produce(topic, orjson.dumps(event), key=b"credit")
        assert producer.flush(15) == 0

    start = T0 - 149 * DAY
    # before, the backfill itself, and normal traffic behind it on the same partition
    send(topics.predictions, [prediction("before", T0)])
    send(topics.predictions, [prediction_batch("back", 150, start=start)])
    send(topics.predictions, [prediction(f"after-{i}", T0 + i) for i in range(20)])
    send(topics.predictions, [prediction_batch("recent", 50, start=T0, step=1)])
    send(topics.feedback, [feedback_batch("back", 150, start=start)])
    send(topics.feedback, [feedback_batch("recent", 50, start=T0 + 60, step=1)])

    def counts() -> tuple[int, int]:
        return (
            int(worker.scalar("SELECT count() FROM predictions FINAL")),
            int(worker.scalar("SELECT count() FROM feedback FINAL")),
        )

    expected = (1 + 150 + 20 + 50, 150 + 50)
    wait_for(counts, lambda got: got == expected, 90, "every row, backfill and after")
    assert worker.scalar("SELECT uniqExact(toDate(timestamp)) FROM predictions") == 150
    health = worker.health()
    assert health["dead_letters"] == {}
    assert worker.process is not None and worker.process.poll() is None  # still running


# --------------------------------------------------------------------------- refusals


def real_partition_refusal(store: Store) -> StoreError:
    """The store's own refusal of a block over ``max_partitions_per_insert_block``."""
    with pytest.raises(StoreError) as caught:
        store.command(
            "INSERT INTO predictions (model_id, model_version, event_id, timestamp) "
            "SELECT 'credit', 'v1', toString(number), "
            "toDateTime64('2026-01-01 00:00:00', 6, 'UTC') + toIntervalDay(number) "
            "FROM numbers(101) SETTINGS max_partitions_per_insert_block = 100"
        )
    return caught.value


class RefusingStore:
    """The real store, but a block holding an event id that starts with ``poison`` is
    refused with ``error``; once ``transient`` is set, every insert after the first
    fails with it."""

    def __init__(self, store: Store, poison: str, error: StoreError) -> None:
        self.store = store
        self.database = store.database
        self.poison = poison
        self.error = error
        self.transient: StoreError | None = None
        self.inserts = 0

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        self.store.command(sql, parameters)

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return self.store.query(sql, parameters)

    def insert_arrow(self, table: str, data: pa.Table) -> None:
        self.inserts += 1
        if self.transient is not None and self.inserts > 1:
            raise self.transient
        event_ids = data.column("event_id").to_pylist() if "event_id" in data.column_names else []
        if any(str(event_id).startswith(self.poison) for event_id in event_ids):
            raise self.error
        self.store.insert_arrow(table, data)

    def close(self) -> None:
        self.store.close()


def test_real_store_errors_are_classified(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "chdb", "driftline")
    migrate(store)
    partitions = real_partition_refusal(store)
    assert "TOO_MANY_PARTS" in str(partitions)
    assert is_deterministic(partitions)
    with pytest.raises(StoreError) as unparsable:
        store.query("SELECT toDateTime('not a time')")
    assert is_deterministic(unparsable.value)
    with pytest.raises(StoreError) as missing:  # a schema problem: stop, don't DLQ
        store.insert_arrow("no_such_table", pa.table({"x": [1]}))
    assert not is_deterministic(missing.value)
    store.close()
    with pytest.raises(StoreError) as closed:
        store.query("SELECT 1")
    assert not is_deterministic(closed.value)


@pytest.mark.parametrize(
    ("message", "deterministic"),
    [
        (
            "HTTPDriver for http://ch:8123 received ClickHouse error code 53\n"
            " Code: 53. DB::Exception: Type mismatch in IN or VALUES section. (TYPE_MISMATCH)",
            True,
        ),
        (
            "Code: 252. DB::Exception: Too many parts (3001 with average size of 10.00 KiB)"
            " in partition 20260101. Merges are processing significantly slower than"
            " inserts. (TOO_MANY_PARTS)",
            False,
        ),
        ("Code: 241. DB::Exception: Memory limit (total) exceeded. (MEMORY_LIMIT_EXCEEDED)", False),
        ("Code: 159. DB::Exception: Timeout exceeded: elapsed 30 s. (TIMEOUT_EXCEEDED)", False),
        ("Code: 47. DB::Exception: Unknown identifier 'x'. (UNKNOWN_IDENTIFIER)", False),
        (
            "Error HTTPConnectionPool(host='ch', port=8123): Max retries exceeded"
            " (Caused by NewConnectionError: [Errno 111] Connection refused)",
            False,
        ),
        ("the owning worker at http://127.0.0.1:6066/store did not answer: timed out", False),
    ],
)
def test_store_errors_are_deterministic_only_when_the_data_is_refused(
    message: str, deterministic: bool
) -> None:
    assert is_deterministic(StoreError(message)) is deterministic


def test_a_refused_message_goes_to_the_dlq_and_the_rest_of_its_group_is_stored(
    store: Store,
) -> None:
    refusal = real_partition_refusal(store)
    refusing = RefusingStore(store, "poison", refusal)
    letters = Letters()
    ingestor = Ingestor(refusing, letters, 1 << 24)
    events: list[Any] = [prediction(f"s-{i}", T0 + i) for i in range(5)]
    events.insert(2, b'{"type": "prediction", ')  # undecodable: its own dead letter
    # refused, and the latest event time of the group: it must not move the watermark
    events.insert(4, prediction_batch("poison", 3, start=T0 + 10_000, step=1))
    events += [prediction_batch("b", 10, start=T0 + 100, step=1), feedback_batch("s", 5)]
    events.append(prediction("poison-single", T0 + 20_000))
    group = messages(events, first_offset=40)
    outcome = store_group(ingestor, group)

    assert letters.reasons() == ["invalid_json", "store_rejected", "store_rejected"]
    assert [letter.message for letter in letters.sent[1:]] == [group[4], group[-1]]
    rejected = letters.sent[1]
    assert rejected.message is group[4]  # the original bytes and position
    assert rejected.error.message == str(refusal)
    headers = dict(dead_letter_headers(rejected))
    assert headers["driftline.error.class"] == b"store_rejected"
    assert b"TOO_MANY_PARTS" in headers["driftline.error.message"]
    assert headers["driftline.source.offset"] == b"44"

    assert count(store, "SELECT count() FROM predictions FINAL") == 15
    assert count(store, "SELECT countIf(event_id LIKE 'poison%') FROM predictions") == 0
    assert count(store, "SELECT count() FROM feedback FINAL") == 5
    marks = store.query(
        "SELECT toUnixTimestamp64Micro(max(event_time)) AS e FROM watermarks "
        "WHERE topic = {topic:String}",
        {"topic": TOPIC},
    )
    assert int(marks[0]["e"]) == (T0 + 109) * 1_000_000
    # the outcome now tells what was stored and dead-lettered (the worker's metrics)
    assert (outcome.prediction_rows, outcome.feedback_rows) == (15, 5)
    assert outcome.watermarks == {(TOPIC, 0): T0 + 109}
    assert [letter.error.reason for letter in outcome.dead_letters] == letters.reasons()
    assert (ingestor.stats.prediction_rows, ingestor.stats.feedback_rows) == (15, 5)
    assert ingestor.stats.dead_letters == {"invalid_json": 1, "store_rejected": 2}


def test_a_refused_shadow_prediction_is_isolated_and_the_other_shadows_are_stored(
    store: Store,
) -> None:
    refusing = RefusingStore(store, "poison", real_partition_refusal(store))
    letters = Letters()
    ingestor = Ingestor(refusing, letters, 1 << 24)
    served = [prediction(f"s-{i}", T0 + i) for i in range(4)]
    # Scored later by v2 in shadow: later event times that must not move the watermark.
    shadows = [{**p, "model_version": "v2", "shadow": True, "timestamp": T0 + 500} for p in served]
    poison = {**prediction("poison-shadow", T0 + 900), "model_version": "v2", "shadow": True}
    group = messages([*served, *shadows[:2], poison, *shadows[2:]])
    outcome = store_group(ingestor, group)

    assert letters.reasons() == ["store_rejected"]
    assert letters.sent[0].message is group[6]
    assert count(store, "SELECT count() FROM predictions FINAL") == 4
    assert count(store, "SELECT count() FROM shadow_predictions FINAL") == 4
    assert count(store, "SELECT countIf(event_id LIKE 'poison%') FROM shadow_predictions") == 0
    assert count(store, "SELECT countIf(model_version != 'v2') FROM shadow_predictions") == 0
    assert outcome.shadow_predictions is not None and outcome.shadow_predictions.num_rows == 4
    assert outcome.prediction_rows == 4
    assert outcome.watermarks == {(TOPIC, 0): T0 + 3}  # the served copies only
    assert final_marks(store) == [(0, (T0 + 3) * 1_000_000)]


@pytest.mark.parametrize(
    "message",
    [
        "Code: 241. DB::Exception: Memory limit (total) exceeded. (MEMORY_LIMIT_EXCEEDED)",
        "Code: 209. DB::NetException: Timeout exceeded while reading from socket. (SOCKET_TIMEOUT)",
    ],
)
def test_a_transient_store_error_still_raises_and_dead_letters_nothing(
    store: Store, message: str
) -> None:
    refusing = RefusingStore(store, "s-1", StoreError(message))
    letters = Letters()
    ingestor = Ingestor(refusing, letters, 1 << 24)
    outcome = ingestor.route(messages([prediction(f"s-{i}", T0 + i) for i in range(4)]))
    with pytest.raises(StoreError, match="Code: 2"):
        asyncio.run(ingestor.persist(outcome, 4))
    assert letters.sent == [] and outcome.dead_letters == []
    assert outcome.prediction_rows == 4  # unchanged: the worker retries the same group


def test_a_transient_error_while_isolating_a_refusal_raises(store: Store) -> None:
    refusing = RefusingStore(store, "s-1", real_partition_refusal(store))
    refusing.transient = StoreError(f"the store of {store.database} is closed")
    letters = Letters()
    ingestor = Ingestor(refusing, letters, 1 << 24)
    outcome = ingestor.route(messages([prediction(f"s-{i}", T0 + i) for i in range(4)]))
    with pytest.raises(StoreError, match="is closed"):
        asyncio.run(ingestor.persist(outcome, 4))
    assert letters.sent == []


def test_a_closed_store_raises_and_dead_letters_nothing(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "chdb", "driftline")
    migrate(store)
    letters = Letters()
    ingestor = Ingestor(store, letters, 1 << 24)
    store.close()
    outcome = ingestor.route(messages([prediction("a", T0), prediction_batch("b", 150)]))
    with pytest.raises(StoreError, match="is closed"):
        asyncio.run(ingestor.persist(outcome, 2))
    assert letters.sent == []


def test_a_stored_group_is_routed_once(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    ingestor = Ingestor(store, Letters(), 1 << 24)
    outcome = ingestor.route(messages([prediction(f"s-{i}", T0 + i) for i in range(3)]))

    def routed_again(*args: Any) -> Any:
        raise AssertionError("a stored group was routed again")

    monkeypatch.setattr(ingest, "route_messages", routed_again)
    asyncio.run(ingestor.persist(outcome, 3))
    assert count(store, "SELECT count() FROM predictions FINAL") == 3


# --------------------------------------------------------------------------- finding 3


def monitor_watermark(store: Store) -> float:
    """The global watermark as the monitor reads it (one partition, never idle)."""

    async def ignore(key: str, value: bytes) -> None:
        return None

    monitor = Monitor(
        store,
        threading.Lock(),
        {},
        predictions_topic=TOPIC,
        idle_seconds=1e9,
        horizon_seconds=1e9,
        send_alert=ignore,
        send_request=ignore,
    )
    return monitor._watermark()


def final_marks(store: Store) -> list[tuple[int, int]]:
    """``(partition, event time in µs)`` as the dashboards read them (``FINAL``)."""
    rows = store.query(
        "SELECT partition, toUnixTimestamp64Micro(event_time) AS e FROM watermarks FINAL "
        "ORDER BY partition"
    )
    return [(int(row["partition"]), int(row["e"])) for row in rows]


def test_late_data_never_moves_the_stored_watermark_back_even_after_a_merge(
    store: Store,
) -> None:
    ingestor = Ingestor(store, Letters(), 1 << 24)
    store_group(ingestor, messages([prediction("new", T0 + 1000)], first_offset=0))
    store_group(ingestor, messages([prediction("late", T0 + 10)], first_offset=1))
    store_group(ingestor, messages([prediction("p1", T0 + 5)], partition=1))
    store_group(ingestor, messages([prediction("p1-late", T0 + 1)], partition=1, first_offset=1))
    assert monitor_watermark(store) == T0 + 5  # the slowest partition's largest event time

    store.command("OPTIMIZE TABLE watermarks FINAL")
    assert monitor_watermark(store) == T0 + 5
    assert final_marks(store) == [(0, (T0 + 1000) * 1_000_000), (1, (T0 + 5) * 1_000_000)]
    assert count(store, "SELECT count() FROM watermarks") == 2  # merged: one row each
    # the last progress (the idle rule) is the latest write, also after the merge
    updated = store.query(
        "SELECT partition, max(updated_at) = (SELECT max(updated_at) FROM watermarks) AS last "
        "FROM watermarks GROUP BY partition ORDER BY partition"
    )
    assert [bool(row["last"]) for row in updated] == [False, True]


def test_the_migration_carries_existing_watermarks_over_as_their_maximum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = EmbeddedStore(tmp_path / "chdb", "driftline")
    before = tuple(m for m in MIGRATIONS if m.version <= 3)
    monkeypatch.setattr(migrations_module, "MIGRATIONS", before)
    assert migrate(store) == [1, 2, 3]
    # written by the old table's writers: the largest first, then late data
    store.insert_arrow("watermarks", watermark_table({(TOPIC, 0): T0 + 1000.0}))
    store.insert_arrow("watermarks", watermark_table({(TOPIC, 0): T0 + 10.0, (TOPIC, 1): T0}))
    monkeypatch.undo()

    assert migrate(store) == [m.version for m in MIGRATIONS if m.version > 3]
    assert applied_versions(store) == {m.version for m in MIGRATIONS}
    engines = store.query(
        "SELECT name, engine FROM system.tables WHERE database = currentDatabase() "
        "AND name LIKE 'watermarks%' ORDER BY name"
    )
    assert engines == [{"name": "watermarks", "engine": "AggregatingMergeTree"}]
    store.insert_arrow("watermarks", watermark_table({(TOPIC, 0): T0 + 20.0}))  # late again
    store.command("OPTIMIZE TABLE watermarks FINAL")
    assert final_marks(store) == [(0, (T0 + 1000) * 1_000_000), (1, T0 * 1_000_000)]
    assert monitor_watermark(store) == T0

    # the step is safe to repeat, also when cut short after the exchange
    migrations_module.watermarks_keep_the_max(store)
    store.command(migrations_module._WATERMARKS_MAX.format(name="watermarks_swap"))
    store.insert_arrow("watermarks_swap", watermark_table({(TOPIC, 1): T0 + 7.0}))
    migrations_module.watermarks_keep_the_max(store)
    assert final_marks(store) == [(0, (T0 + 1000) * 1_000_000), (1, (T0 + 7) * 1_000_000)]
    assert [row["name"] for row in store.query("SHOW TABLES LIKE 'watermarks%'")] == ["watermarks"]
    store.close()


def test_route_keeps_the_group_for_isolation_without_copying() -> None:
    group = messages([prediction("a", T0)])
    assert route_messages(group, 1 << 20).messages is group


class Snapshots:
    """A store that counts the stored labels and shadow predictions each time predictions
    (which move the model's watermark) are about to be inserted."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.database = store.database
        self.before_predictions: list[tuple[int, int]] = []

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        self.store.command(sql, parameters)

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return self.store.query(sql, parameters)

    def insert_arrow(self, table: str, data: pa.Table) -> None:
        if table == "predictions":
            labels = count(self.store, "SELECT count() FROM feedback")
            shadows = count(self.store, "SELECT count() FROM shadow_predictions")
            self.before_predictions.append((labels, shadows))
        self.store.insert_arrow(table, data)

    def close(self) -> None:
        self.store.close()


def test_the_labels_of_a_group_are_stored_before_its_predictions_move_the_watermark(
    store: Store,
) -> None:
    """A window judged once (a rollout's) is judged when the model's watermark, read from
    the stored predictions, passes its close: the labels and shadow predictions sent
    before those predictions must be stored by then, also within one group."""
    group: list[dict[str, Any]] = []
    for i in range(4):
        group += [
            prediction(f"w-{i}", T0 + i),
            {**prediction(f"w-{i}", T0 + i), "model_version": "v2", "shadow": True},
            {
                "type": "feedback",
                "event_id": f"w-{i}",
                "model_id": "credit",
                "timestamp": T0 + i + 1,
                "label": 1,
            },
        ]
    group.append(prediction("closes", T0 + 3600))  # past every window's close
    snapshots = Snapshots(store)
    store_group(Ingestor(snapshots, Letters(), 1 << 24), messages(group))
    assert snapshots.before_predictions == [(4, 4)]
    assert count(store, "SELECT count() FROM predictions") == 5
