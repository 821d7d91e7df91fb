"""The narrow store interface that every ClickHouse backend implements."""

from __future__ import annotations

import re
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa

__all__ = ["ReadOnlyQueryError", "Store", "StoreError", "check_read_only"]


class StoreError(RuntimeError):
    """A store operation failed; the message carries the backend's reason."""


class ReadOnlyQueryError(StoreError):
    """A statement given as read-only could change data or settings."""


@runtime_checkable
class Store(Protocol):
    """What driftline needs from ClickHouse: run SQL, read rows, insert Arrow tables.

    SQL is the same on every backend. Values always travel as parameters
    (``{name:Type}`` placeholders) or as Arrow data, never inside the SQL text.
    """

    database: str

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        """Run a statement that returns nothing (DDL, ``OPTIMIZE``...)."""
        ...

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run a query and return its rows as dicts."""
        ...

    def insert_arrow(self, table: str, data: pa.Table) -> None:
        """Insert an Arrow table whose column names match the table's columns."""
        ...

    def close(self) -> None:
        """Release the backend's resources."""
        ...


_READ_ONLY_START = re.compile(r"^\s*(SELECT|WITH|SHOW\s+TABLES|DESCRIBE|DESC)\b", re.I)
_FORBIDDEN = re.compile(r"\bINTO\s+OUTFILE\b|\bSETTINGS\b[^;]*\breadonly\b", re.I)


def check_read_only(sql: str) -> str:
    """Return ``sql`` if it is one ``SELECT`` (or ``WITH ... SELECT``), ``SHOW TABLES`` or
    ``DESCRIBE`` statement, else raise :class:`ReadOnlyQueryError`.

    This is the cheap first look, no sandbox: :class:`~driftline.store.sandbox.SqlSandbox`
    then has the engine parse the statement and refuses what it reads outside the
    driftline database, and runs it read-only within bounds.

    Examples
    --------
    >>> check_read_only("SELECT count() FROM predictions")
    'SELECT count() FROM predictions'
    >>> check_read_only("DROP TABLE predictions")
    Traceback (most recent call last):
    ...
    driftline.store.backend.ReadOnlyQueryError: only SELECT (and WITH ... SELECT), SHOW \
TABLES and DESCRIBE statements are allowed
    """
    statement = sql.strip().rstrip(";").strip()
    if not _READ_ONLY_START.match(statement):
        raise ReadOnlyQueryError(
            "only SELECT (and WITH ... SELECT), SHOW TABLES and DESCRIBE statements are allowed"
        )
    if ";" in statement:
        raise ReadOnlyQueryError("one statement at a time")
    if _FORBIDDEN.search(statement):
        raise ReadOnlyQueryError("INTO OUTFILE and readonly settings are not allowed")
    return statement


def is_deterministic(error: BaseException) -> bool:
    """Whether a failed insert would fail again on the same data, whatever the store's state.

    The ingest shell dead-letters the messages behind a deterministic failure (the
    partition moves on) and stops without acknowledging on any other (nothing is lost;
    a restart retries). Only a wrong "deterministic" diverts good data, so anything
    not known to depend on the inserted data alone is transient.

    Deterministic: a ClickHouse error code (``Code: N`` or ``error code N`` in the
    message, as chDB, clickhouse-connect and the shared store's pages report it) that
    means the rows themselves are refused: unparsable or out-of-range values (``CANNOT_PARSE_*``,
    ``VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE``, ``ARGUMENT_OUT_OF_BOUND``,
    ``DECIMAL_OVERFLOW``, ``INCORRECT_DATA``), type errors (``TYPE_MISMATCH``,
    ``CANNOT_CONVERT_TYPE``, ``CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN``), oversized
    values (``TOO_LARGE_STRING_SIZE``, ``TOO_LARGE_ARRAY_SIZE``,
    ``SIZES_OF_ARRAYS_DONT_MATCH``), and ``TOO_MANY_PARTS`` *only* as "Too many
    partitions for single INSERT block" (a block spanning too many days).

    Transient: no error code (connection refused, timeouts, a closed store, an
    owning worker that did not answer); ``TOO_MANY_PARTS`` as "Too many parts ... in
    partition" (merges lag behind inserts: back-pressure); memory, time and
    concurrency limits (``MEMORY_LIMIT_EXCEEDED``, ``TIMEOUT_EXCEEDED``,
    ``TOO_MANY_SIMULTANEOUS_QUERIES``...); network and read-only errors; and schema
    errors (``UNKNOWN_TABLE``, ``NO_SUCH_COLUMN_IN_TABLE``...): those would refuse
    every message until an operator fixes the store, so they stop the worker rather
    than empty the stream into the DLQ. An error that names several codes is
    deterministic only when every code is.

    Examples
    --------
    >>> is_deterministic(StoreError("Code: 41. DB::Exception: Cannot parse DateTime"
    ...     " from String. (CANNOT_PARSE_DATETIME)"))
    True
    >>> is_deterministic(StoreError("Code: 252. DB::Exception: Too many partitions for"
    ...     " single INSERT block (more than 100). (TOO_MANY_PARTS)"))
    True
    >>> is_deterministic(StoreError("Code: 252. DB::Exception: Too many parts (3001) in"
    ...     " partition 20260101. Merges are processing significantly slower than inserts."
    ...     " (TOO_MANY_PARTS)"))
    False
    >>> is_deterministic(StoreError("Code: 241. DB::Exception: Memory limit (total)"
    ...     " exceeded. (MEMORY_LIMIT_EXCEEDED)"))
    False
    >>> is_deterministic(StoreError("cannot reach ClickHouse: Connection refused"))
    False
    """
    deterministic = {
        6,  # CANNOT_PARSE_TEXT
        25,  # CANNOT_PARSE_ESCAPE_SEQUENCE
        26,  # CANNOT_PARSE_QUOTED_STRING
        27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
        38,  # CANNOT_PARSE_DATE
        41,  # CANNOT_PARSE_DATETIME
        53,  # TYPE_MISMATCH
        69,  # ARGUMENT_OUT_OF_BOUND
        70,  # CANNOT_CONVERT_TYPE
        72,  # CANNOT_PARSE_NUMBER
        117,  # INCORRECT_DATA
        128,  # TOO_LARGE_ARRAY_SIZE
        130,  # CANNOT_READ_ARRAY_FROM_TEXT
        131,  # TOO_LARGE_STRING_SIZE
        190,  # SIZES_OF_ARRAYS_DONT_MATCH
        321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
        349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
        407,  # DECIMAL_OVERFLOW
        467,  # CANNOT_PARSE_BOOL
    }
    too_many_parts = 252
    message = str(error)
    codes = {int(code) for code in re.findall(r"\b(?:Code:|error code) (\d+)\b", message)}
    if not codes:
        return False
    if too_many_parts in codes:
        if "too many partitions for single insert block" not in message.lower():
            return False
        codes.discard(too_many_parts)
    return codes <= deterministic
