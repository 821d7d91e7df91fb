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


_READ_ONLY_START = re.compile(r"^\s*(SELECT|WITH|SHOW|DESCRIBE|DESC|EXPLAIN|EXISTS)\b", re.I)
_FORBIDDEN = re.compile(r"\bINTO\s+OUTFILE\b|\bSETTINGS\b[^;]*\breadonly\b", re.I)


def check_read_only(sql: str) -> str:
    """Return ``sql`` if it is one read-only statement, else raise :class:`ReadOnlyQueryError`.

    Examples
    --------
    >>> check_read_only("SELECT count() FROM predictions")
    'SELECT count() FROM predictions'
    >>> check_read_only("DROP TABLE predictions")
    Traceback (most recent call last):
    ...
    driftline.store.backend.ReadOnlyQueryError: only SELECT, WITH, SHOW, DESCRIBE, EXPLAIN \
and EXISTS statements are allowed
    """
    statement = sql.strip().rstrip(";").strip()
    if not _READ_ONLY_START.match(statement):
        raise ReadOnlyQueryError(
            "only SELECT, WITH, SHOW, DESCRIBE, EXPLAIN and EXISTS statements are allowed"
        )
    if ";" in statement:
        raise ReadOnlyQueryError("one statement at a time")
    if _FORBIDDEN.search(statement):
        raise ReadOnlyQueryError("INTO OUTFILE and readonly settings are not allowed")
    return statement
