"""The store on real chDB: migrations, deduplication, parameters, read-only checks, locking."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from driftline.schemas.codec import decode_ingest

from driftline.settings import Settings
from driftline.store import (
    MIGRATIONS,
    EmbeddedStore,
    ReadOnlyQueryError,
    Store,
    StoreError,
    StoreLockedError,
    check_read_only,
    migrate,
    migrations,
    open_store,
)
from driftline.store.migrations import applied_versions
from driftline.store.rows import FeedbackRows, KafkaPosition, PredictionRows

T0 = 1_767_225_600


@pytest.fixture(params=["chdb", pytest.param("server", marks=pytest.mark.clickhouse_server)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The same tests on chDB and, when DRIFTLINE_CLICKHOUSE_URL is set, on a server."""
    if request.param == "chdb":
        opened: Store = EmbeddedStore(tmp_path / "chdb", "driftline")
    else:
        url = os.environ.get("DRIFTLINE_CLICKHOUSE_URL", "")
        if not url:
            pytest.skip("DRIFTLINE_CLICKHOUSE_URL is not set")
        from driftline.store.server import ServerStore

        database = f"driftline_test_{uuid.uuid4().hex[:8]}"
        opened = ServerStore(url, database)
    migrate(opened)
    yield opened
    if request.param == "server":
        opened.command(f"DROP DATABASE IF EXISTS {opened.database}")
    opened.close()


def batch(prefix: str, rows: int) -> bytes:
    return orjson.dumps(
        {
            "type": "prediction_batch",
            "model_id": "credit",
            "model_version": "v1",
            "event_ids": [f"{prefix}{i}" for i in range(rows)],
            "timestamps": [T0 + i for i in range(rows)],
            "features": {"x": [float(i) for i in range(rows)], "c": ["a"] * rows},
            "predictions": [1] * rows,
        }
    )


def insert_predictions(store: Store, message: bytes, offset: int) -> None:
    rows = PredictionRows()
    rows.add(decode_ingest(message), KafkaPosition("p", 0, offset))  # type: ignore[arg-type]
    store.insert_arrow("predictions", rows.build())


def test_migrations_apply_once_and_are_recorded(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "db", "driftline")
    try:
        assert migrate(store) == [m.version for m in MIGRATIONS]
        assert migrate(store) == []
        assert applied_versions(store) == {m.version for m in MIGRATIONS}
        tables = {row["name"] for row in store.query("SHOW TABLES")}
        assert {
            "predictions",
            "shadow_predictions",
            "feedback",
            "window_metrics",
            "alerts",
            "model_versions",
            "reference_profiles",
            "watermarks",
        } <= tables
    finally:
        store.close()
    reopened = EmbeddedStore(tmp_path / "db", "driftline")  # persisted on disk
    try:
        assert migrate(reopened) == []
    finally:
        reopened.close()


def test_raw_ttl_is_applied_when_configured(store: Store) -> None:
    migrate(store, raw_ttl_days=30)
    for table in ("predictions", "shadow_predictions", "feedback"):
        create = store.query(f"SHOW CREATE TABLE {table}")[0]
        assert "TTL" in str(create) and "30" in str(create), table


def columns_of(store: Store, table: str) -> list[tuple[str, str]]:
    rows = store.query(
        "SELECT name, type FROM system.columns WHERE database = currentDatabase() "
        "AND table = {table:String} ORDER BY position",
        {"table": table},
    )
    return [(row["name"], row["type"]) for row in rows]


def test_shadow_predictions_are_created_by_migration_6_with_the_predictions_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = EmbeddedStore(tmp_path / "db", "driftline")
    try:
        # A store of the release before: up to migration 5, no shadow table.
        monkeypatch.setattr(migrations, "MIGRATIONS", tuple(m for m in MIGRATIONS if m.version < 6))
        assert migrate(store) == [1, 2, 3, 4, 5]
        assert columns_of(store, "shadow_predictions") == []
        monkeypatch.undo()
        assert migrate(store) == [m.version for m in MIGRATIONS if m.version >= 6]
        assert migrate(store) == []  # a second run is a no-op
        assert columns_of(store, "shadow_predictions") == columns_of(store, "predictions")
        [table] = store.query(
            "SELECT engine, sorting_key FROM system.tables "
            "WHERE database = currentDatabase() AND name = 'shadow_predictions'"
        )
        assert table == {
            "engine": "ReplacingMergeTree",
            "sorting_key": "model_id, model_version, event_id",
        }
    finally:
        store.close()


def test_shadow_predictions_are_one_row_per_model_version_and_event(store: Store) -> None:
    def shadow_batch(version: str, offset: int) -> None:
        body = {**orjson.loads(batch("e", 3)), "model_version": version, "shadow": True}
        rows = PredictionRows()
        rows.add(decode_ingest(orjson.dumps(body)), KafkaPosition("p", 0, offset))  # type: ignore[arg-type]
        assert rows.build().num_rows == 0  # nothing of it is served traffic
        shadow = rows.build_shadow()
        assert shadow is not None
        store.insert_arrow("shadow_predictions", shadow)

    insert_predictions(store, batch("e", 3), 0)  # the served copies, by v1
    shadow_batch("v2", 1)
    shadow_batch("v3", 2)
    shadow_batch("v2", 3)  # re-sent
    counts = store.query(
        "SELECT model_version AS v, count() AS n FROM shadow_predictions FINAL "
        "GROUP BY v ORDER BY v"
    )
    assert counts == [{"v": "v2", "n": 3}, {"v": "v3", "n": 3}]
    assert store.query(
        "SELECT model_version AS v, count() AS n FROM predictions FINAL GROUP BY v"
    ) == [{"v": "v1", "n": 3}]


def test_raw_rows_are_deduplicated_by_event_id(store: Store) -> None:
    insert_predictions(store, batch("e", 100), 0)
    insert_predictions(store, batch("e", 100), 1)  # redelivered after a crash
    insert_predictions(store, batch("f", 10), 2)
    assert store.query("SELECT count() AS n FROM predictions FINAL") == [{"n": 110}]
    feedback = FeedbackRows()
    message = orjson.dumps(
        {
            "type": "feedback_batch",
            "model_id": "credit",
            "event_ids": ["e1", "e1", "e2"],
            "timestamps": [T0] * 3,
            "labels": [1, 1, 0],
        }
    )
    feedback.add(decode_ingest(message), KafkaPosition("f", 0, 0))  # type: ignore[arg-type]
    store.insert_arrow("feedback", feedback.build())
    assert store.query("SELECT count() AS n FROM feedback FINAL") == [{"n": 2}]


def test_parameters_carry_values_never_sql(store: Store) -> None:
    insert_predictions(store, batch("e", 5), 0)
    hostile = "e1' OR '1'='1"
    rows = store.query(
        "SELECT count() AS n FROM predictions FINAL WHERE event_id = {id:String}", {"id": hostile}
    )
    assert rows == [{"n": 0}]
    rows = store.query(
        "SELECT count() AS n FROM predictions FINAL WHERE event_id = {id:String}", {"id": "e1"}
    )
    assert rows == [{"n": 1}]


@pytest.mark.parametrize(
    "sql",
    [
        "DROP TABLE predictions",
        "INSERT INTO predictions SELECT * FROM predictions",
        "SELECT 1; DROP TABLE predictions",
        "SELECT 1 INTO OUTFILE 'x'",
        "ALTER TABLE predictions DELETE WHERE 1",
        "  optimize table predictions",
        # statements that read the machine's state rather than the driftline database
        "SHOW DATABASES",
        "SHOW PROCESSLIST",
        "EXPLAIN SELECT 1",
        "EXISTS TABLE system.users",
    ],
)
def test_read_only_check_refuses_writes(sql: str) -> None:
    with pytest.raises(ReadOnlyQueryError):
        check_read_only(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "with x as (select 1) select * from x",
        "  select count() from alerts",
        "SHOW TABLES",
        "DESCRIBE alerts",
    ],
)
def test_read_only_check_accepts_reads(sql: str) -> None:
    assert check_read_only(sql + ";") == sql.strip()


def test_a_second_owner_of_the_directory_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    first = EmbeddedStore(tmp_path / "chdb", "driftline")
    try:
        with pytest.raises(StoreLockedError, match="in use by another process"):
            EmbeddedStore(tmp_path / "chdb", "driftline")
    finally:
        first.close()


def test_sql_errors_name_the_problem(store: Store) -> None:
    with pytest.raises(StoreError, match="no_such_column"):
        store.query("SELECT no_such_column FROM predictions")


def test_open_store_picks_chdb_without_a_url(tmp_path: Path) -> None:
    store = open_store(Settings(data_dir=tmp_path))
    try:
        assert isinstance(store, EmbeddedStore)
        assert (tmp_path / "chdb").is_dir()
    finally:
        store.close()


def test_open_store_reports_an_unreachable_server() -> None:
    settings = Settings(clickhouse_url="http://127.0.0.1:9")
    with pytest.raises(StoreError, match="cannot reach ClickHouse"):
        open_store(settings)


HOSTILE = ["a\\b", "tab\there", "nl\nx", "q'uote", "x' OR 1=1 --", "nul\x00x", "é€", ""]


@pytest.mark.parametrize("value", HOSTILE)
def test_any_string_parameter_arrives_unchanged(store: Store, value: str) -> None:
    assert store.query("SELECT {v:String} AS v", {"v": value}) == [{"v": value}]


def test_array_parameters_arrive_unchanged(store: Store) -> None:
    rows = store.query(
        "SELECT {names:Array(String)} AS names, {edges:Array(Float64)} AS edges",
        {"names": HOSTILE, "edges": [-1.5, 0.0, 2.25]},
    )
    assert rows == [{"names": HOSTILE, "edges": [-1.5, 0.0, 2.25]}]


def test_a_sibling_connection_sees_the_same_data_and_runs_beside_the_owner(
    tmp_path: Path,
) -> None:
    owner = EmbeddedStore(tmp_path / "db", "driftline")
    owner.command("CREATE TABLE t (n UInt64) ENGINE = MergeTree ORDER BY n")
    sibling = owner.sibling()
    owner.command("INSERT INTO t SELECT number FROM numbers(1000)")
    assert sibling.query("SELECT count() AS n FROM t") == [{"n": 1000}]
    sibling.command("INSERT INTO t VALUES (5000)")
    assert owner.query("SELECT max(n) AS n FROM t") == [{"n": 5000}]

    results: dict[int, int] = {}

    def count_many(store: EmbeddedStore, base: int) -> None:
        for i in range(50):  # parameters of one connection never leak into the other's
            rows = store.query("SELECT {v:UInt64} AS v", {"v": base + i})
            results[base + i] = rows[0]["v"]

    threads = [
        threading.Thread(target=count_many, args=(owner, 0)),
        threading.Thread(target=count_many, args=(sibling, 1000)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {v: v for v in [*range(50), *range(1000, 1050)]}
    with pytest.raises(StoreLockedError):  # the directory stays owned while siblings live
        EmbeddedStore(tmp_path / "db", "driftline")
    owner.close()  # closes the sibling too, then releases the directory
    with pytest.raises(StoreError, match="is closed"):
        sibling.query("SELECT 1 AS x")
    EmbeddedStore(tmp_path / "db", "driftline").close()
