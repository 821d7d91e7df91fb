"""The SQL sandbox on the real engine: chDB here, a ClickHouse server when
``DRIFTLINE_CLICKHOUSE_URL`` is set. Nothing outside the driftline database is read."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driftline.store import EmbeddedStore, ReadOnlyQueryError, StoreError
from driftline.store.sandbox import QueryBoundError, QueryBounds, SqlSandbox, ast_refusals

SECRET = f"canary-{uuid.uuid4().hex}"
ENV_SECRET = f"envcanary-{uuid.uuid4().hex}"
TABLE_FUNCTIONS = [
    "file('{path}', 'LineAsString')",
    "url('http://127.0.0.1:9/x', 'CSV', 'a String')",
    "s3('http://127.0.0.1:9/b/x.csv', 'CSV', 'a String')",
    "remote('127.0.0.1:9', 'system', 'one')",
    "remoteSecure('127.0.0.1:9', 'system', 'one')",
    "mysql('127.0.0.1:9', 'db', 't', 'u', 'p')",
    "postgresql('127.0.0.1:9', 'db', 't', 'u', 'p')",
    "hdfs('hdfs://127.0.0.1:9/x', 'CSV', 'a String')",
    "executable('cat {path}', 'LineAsString', 'a String')",
    "input('a String')",
    "merge('other', '.*')",
    "Python(secret)",
    "sqlite('{path}', 't')",
    "jdbc('x', 'y', 'z')",
    "cluster('default', 'other', 'secrets')",
    "view(SELECT * FROM other.secrets)",
    "dictionary('d')",
    "loop(other.secrets)",
]
OUTSIDE_TABLES = [
    "other.secrets",
    "`other`.`secrets`",
    "system.processes",
    "system.disks",
    "system.settings",
    "system.users",
    "system.query_log",
    "INFORMATION_SCHEMA.tables",
    "information_schema.columns",
]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The driftline database with one table, beside another database holding a secret."""
    url = os.environ.get("DRIFTLINE_CLICKHOUSE_URL")
    if url:  # the server path: the same sandbox through clickhouse-connect
        from driftline.store.server import ServerStore

        opened: Any = ServerStore(url, "driftline_sandbox_test")
    else:
        opened = EmbeddedStore(tmp_path_factory.mktemp("sandbox") / "chdb", "driftline")
    opened.command("CREATE TABLE IF NOT EXISTS notes (x String) ENGINE = MergeTree ORDER BY x")
    opened.command("TRUNCATE TABLE notes")
    opened.command("INSERT INTO notes VALUES ('visible')")
    opened.command("CREATE DATABASE IF NOT EXISTS other")
    opened.command("CREATE TABLE IF NOT EXISTS other.secrets (s String) ENGINE = Memory")
    opened.command("INSERT INTO other.secrets VALUES ({s:String})", {"s": SECRET})
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("secret") / "secret.txt"
    path.write_text(SECRET + "\n")
    os.environ["DRIFTLINE_TEST_CANARY"] = ENV_SECRET  # readable via /proc/self/environ
    return path


@pytest.fixture(scope="module")
def sandbox(store: Any) -> Iterator[SqlSandbox]:
    bounds = QueryBounds(
        max_seconds=2, max_result_rows=10_000, max_result_bytes=4_000_000, max_memory_bytes=2**28
    )
    opened = SqlSandbox(store, bounds)
    yield opened
    opened.close()


def test_reads_of_the_driftline_database_work(sandbox: SqlSandbox) -> None:
    assert sandbox.query("SELECT x FROM notes") == [{"x": "visible"}]
    assert sandbox.query("SELECT x FROM driftline.notes WHERE x IN (SELECT x FROM notes)") == [
        {"x": "visible"}
    ]
    assert sandbox.query("WITH n AS (SELECT count() AS c FROM notes) SELECT c FROM n") == [{"c": 1}]
    assert sandbox.query("SELECT sum(number) AS s FROM numbers(10)") == [{"s": 45}]
    assert sandbox.query("SHOW TABLES LIKE 'no%'") == [{"name": "notes"}]
    assert [row["name"] for row in sandbox.query("DESCRIBE TABLE notes")] == ["x"]


@pytest.mark.parametrize("function", TABLE_FUNCTIONS)
def test_every_table_function_that_reaches_outside_is_refused(
    sandbox: SqlSandbox, secret_file: Path, function: str
) -> None:
    sql = f"SELECT * FROM {function.format(path=secret_file)}"
    name = function.split("(")[0]
    with pytest.raises(ReadOnlyQueryError, match=rf"table function {name}\(\) is not allowed"):
        sandbox.query(sql)


@pytest.mark.parametrize("table", OUTSIDE_TABLES)
def test_other_databases_are_refused(sandbox: SqlSandbox, table: str) -> None:
    with pytest.raises(ReadOnlyQueryError, match="outside the driftline database"):
        sandbox.query(f"SELECT * FROM {table}")
    with pytest.raises(ReadOnlyQueryError, match="outside the driftline database"):
        sandbox.query(f"SELECT 1 FROM notes WHERE x IN {table}")


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT file('{path}') AS f",
        "SELECT FILE('/proc/self/environ') AS f",
        "SELECT arrayMap(p -> file(p), ['{path}']) AS f",
        "SELECT dictGet('other.d', 's', 1)",
        "SELECT joinGet('other.secrets', 's', 1)",
        "SELECT hasColumnInTable('other', 'secrets', 's')",
        "SELECT hostName()",
    ],
)
def test_functions_that_read_outside_are_refused(
    sandbox: SqlSandbox, secret_file: Path, sql: str
) -> None:
    with pytest.raises(ReadOnlyQueryError, match=r"function \w+\(\) is not allowed"):
        sandbox.query(sql.format(path=secret_file))


def test_output_clauses_and_settings_are_refused(sandbox: SqlSandbox, tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    with pytest.raises(ReadOnlyQueryError):
        sandbox.query(f"SELECT x FROM notes INTO OUTFILE '{target}'")
    assert not target.exists()
    with pytest.raises(ReadOnlyQueryError, match="FORMAT"):
        sandbox.query("SELECT x FROM notes FORMAT TSV")
    with pytest.raises(ReadOnlyQueryError, match="max_execution_time"):
        sandbox.query("SELECT count() FROM system.numbers SETTINGS max_execution_time = 0")


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO notes VALUES ('x')",
        "DROP TABLE notes",
        "ALTER TABLE notes DELETE WHERE 1",
        "SELECT 1; DROP TABLE notes",
        "SET readonly = 0",
        "SHOW TABLES FROM system",
        "SHOW TABLES IN other LIKE 's%'",
        "SHOW DATABASES",
        "DESCRIBE TABLE system.processes",
        "DESC file('/etc/passwd')",
        "DESCRIBE other.secrets",
        "SHOW TABLES INTO OUTFILE 'x'",
    ],
)
def test_statements_other_than_select_are_refused(
    sandbox: SqlSandbox, store: Any, sql: str
) -> None:
    with pytest.raises(ReadOnlyQueryError):
        sandbox.query(sql)
    assert store.query("SELECT x FROM notes") == [{"x": "visible"}]


@pytest.mark.parametrize(
    ("sql", "bound"),
    [
        ("SELECT number FROM system.numbers LIMIT 100000000000", "DRIFTLINE_QUERY_MAX_RESULT_ROWS"),
        ("SELECT repeat(toString(number), 200) AS s FROM numbers(9000)", "RESULT_BYTES"),
        ("SELECT groupArray(number) AS a FROM numbers(200000000)", "MAX_MEMORY_BYTES"),
        ("SELECT count() FROM system.numbers", "DRIFTLINE_QUERY_MAX_SECONDS"),
    ],
)
def test_each_bound_ends_the_query_with_an_error_that_names_it(
    sandbox: SqlSandbox, sql: str, bound: str
) -> None:
    started = time.monotonic()
    with pytest.raises(QueryBoundError, match=bound):
        sandbox.query(sql)
    assert time.monotonic() - started < 10
    assert sandbox.query("SELECT x FROM notes") == [{"x": "visible"}]  # still usable


def test_the_sandbox_leaves_the_other_connections_writable(sandbox: SqlSandbox, store: Any) -> None:
    store.command("INSERT INTO notes VALUES ('written')")
    try:
        assert {row["x"] for row in sandbox.query("SELECT x FROM notes")} == {"visible", "written"}
    finally:
        store.command("ALTER TABLE notes DELETE WHERE x = 'written' SETTINGS mutations_sync = 1")


def test_a_running_query_is_cancelled_on_request(store: Any) -> None:
    import threading

    sandbox = SqlSandbox(store, QueryBounds(max_seconds=60))
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            sandbox.query("SELECT count() FROM system.numbers")
            outcome.append(None)
        except StoreError as error:
            outcome.append(error)

    thread = threading.Thread(target=run)
    started = time.monotonic()
    thread.start()
    deadline = time.monotonic() + 10
    while thread.is_alive() and time.monotonic() < deadline:
        sandbox.cancel_running()
        thread.join(0.2)
    sandbox.close()
    assert not thread.is_alive()
    assert time.monotonic() - started < 10
    assert outcome and "cancel" in str(outcome[0]).lower()


def test_ast_refusals_need_a_select_root() -> None:
    assert ast_refusals("InsertQuery (children 1)", "driftline", ["system"]) == [
        "only SELECT, SHOW TABLES and DESCRIBE statements are allowed"
    ]
    assert ast_refusals("", "driftline", []) == ["the statement could not be parsed"]


# A grammar of queries that mixes the driftline table with every way out we know of,
# in random case, quoting and nesting: whatever the sandbox lets run must not return
# a secret that lives outside the driftline database.
_SOURCES = st.sampled_from(
    [
        "notes",
        "driftline.notes",
        "`driftline`.`notes`",
        "other.secrets",
        "`other`.secrets",
        "OTHER.secrets",
        "system.one",
        "system.numbers",
        "system.processes",
        "information_schema.tables",
        "numbers(3)",
        "merge('other', '.*')",
        "file('{path}', 'LineAsString')",
        "file('/proc/self/environ', 'RawBLOB')",
        "url('http://127.0.0.1:9/', 'CSV', 'a String')",
        "executable('cat {path}', 'LineAsString', 'a String')",
        "view(SELECT * FROM other.secrets)",
        "(SELECT * FROM other.secrets)",
        "(SELECT file('{path}') AS f)",
    ]
)
_EXPRESSIONS = st.sampled_from(
    [
        "*",
        "1 AS one",
        "file('{path}') AS f",
        "fIlE('/proc/self/environ') AS f",
        "(SELECT any(s) FROM other.secrets) AS s",
        "joinGet('other.secrets', 's', 1) AS j",
        "arrayJoin([file('{path}')]) AS a",
        "toString(now()) AS t",
        "'{secret}' IN other.secrets AS leak",
        "'{secret}' IN (other.secrets) AS leak",
    ]
)


def _case(text: str, flips: list[bool]) -> str:
    out = []
    for index, char in enumerate(text):
        upper = flips[index % len(flips)] if flips else False
        out.append(char.upper() if upper and char.isalpha() and "'" not in text[:index] else char)
    return "".join(out)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    expression=_EXPRESSIONS,
    source=_SOURCES,
    joined=st.one_of(st.none(), _SOURCES),
    in_source=st.one_of(st.none(), _SOURCES),
    wrap_cte=st.booleans(),
    flips=st.lists(st.booleans(), min_size=0, max_size=4),
    comment=st.sampled_from(["", "/* x */ ", "-- c\n"]),
)
def test_fuzz_nothing_outside_the_driftline_database_is_ever_read(
    sandbox: SqlSandbox,
    secret_file: Path,
    expression: str,
    source: str,
    joined: str | None,
    in_source: str | None,
    wrap_cte: bool,
    flips: list[bool],
    comment: str,
) -> None:
    sql = f"SELECT {expression} FROM {source}"
    if joined is not None:
        sql += f" AS a CROSS JOIN {joined} AS b"
    if in_source is not None:
        sql += f" WHERE 1 IN (SELECT 1 FROM {in_source})"
    if wrap_cte:
        sql = f"WITH q AS ({sql}) {comment}SELECT * FROM q"
    sql = _case(sql, flips) if "'" not in sql else sql
    sql = sql.format(path=secret_file, secret=SECRET)
    try:
        rows = sandbox.query(sql)
    except StoreError:
        return  # refused, or failed in the engine: nothing came back
    text = repr(rows)
    assert all(row.get("leak") != 1 for row in rows), sql  # a membership test read it
    assert SECRET not in text, sql
    assert ENV_SECRET not in text, sql


def test_a_configured_query_token_must_be_strong_and_empty_means_random() -> None:
    from pydantic import ValidationError

    from driftline.settings import Settings

    assert Settings(query_token="").query_token is None  # an unset compose variable
    with pytest.raises(ValidationError, match="at least 16 characters"):
        Settings(query_token="short")
    token = Settings(query_token="t" * 24).query_token
    assert token is not None and "t" * 24 not in repr(Settings(query_token="t" * 24))


def test_cancelling_one_sandbox_leaves_another_sandboxs_query_alone(store: Any) -> None:
    import threading

    mine = SqlSandbox(store, QueryBounds(max_seconds=60))
    other = SqlSandbox(store, QueryBounds(max_seconds=3))
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            other.query("SELECT count() FROM system.numbers")
        except StoreError as error:
            outcome.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    for _ in range(10):
        mine.cancel_running()
        thread.join(0.2)
    thread.join(10)
    mine.close()
    other.close()
    assert outcome and isinstance(outcome[0], QueryBoundError), outcome
