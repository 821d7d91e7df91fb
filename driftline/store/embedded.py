"""The embedded backend: chDB, the ClickHouse engine in this process."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from .backend import StoreError

__all__ = ["EmbeddedStore", "StoreLockedError"]


class StoreLockedError(StoreError):
    """Another process owns this chDB data directory."""


class EmbeddedStore:
    """A chDB database persisted under a directory; one process per directory.

    Parameters
    ----------
    path : pathlib.Path
        Directory of the chDB data (created if missing).
    database : str
        Database that unqualified table names refer to.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     store = EmbeddedStore(Path(folder) / "db", "demo")
    ...     rows = store.query("SELECT {x:UInt8} + 1 AS answer", {"x": 41})
    ...     store.close()
    >>> rows
    [{'answer': 42}]
    """

    def __init__(self, path: Path, database: str) -> None:
        from chdb import session

        self.path = Path(path)
        self.database = database
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.path / "driftline.lock", "a+")  # noqa: SIM115
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise StoreLockedError(
                f"the chDB directory {self.path} is in use by another process "
                "(a running worker); query it through that worker instead"
            ) from None
        self._lock.seek(0)
        self._lock.truncate()
        self._lock.write(str(os.getpid()))
        self._lock.flush()
        self._session = session.Session(str(self.path))
        self._run(f"CREATE DATABASE IF NOT EXISTS {database}")
        self._run(f"USE {database}")

    def _run(self, sql: str, parameters: dict[str, Any] | None = None, fmt: str = "CSV") -> bytes:
        try:
            result = self._session.query(sql, fmt, params=parameters or None)
        except Exception as error:
            raise StoreError(str(error).strip()) from None
        return bytes(result.bytes()) if result is not None else b""

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        """Run a statement that returns nothing."""
        self._run(sql, parameters)

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run a query; rows come back as dicts (JSONEachRow)."""
        raw = self._run(sql, parameters, "JSONEachRow")
        return [orjson.loads(line) for line in raw.splitlines() if line]

    def insert_arrow(self, table: str, data: pa.Table) -> None:
        """Insert an Arrow table by column name.

        Timestamp columns travel as int64 microseconds and are converted by
        ClickHouse: chDB's ``Python()`` reads Arrow timestamps several times slower.
        ``optimize_on_insert`` is off: deduplicating each inserted block as a merge
        would (ReplacingMergeTree) more than doubles the insert time, and readers
        deduplicate with ``FINAL`` anyway.
        """
        targets, sources = [], []
        for index, column in enumerate(data.schema):
            targets.append(f"`{column.name}`")
            if pa.types.is_timestamp(column.type):
                micros = data.column(index).cast(pa.timestamp("us")).cast(pa.int64())
                data = data.set_column(index, column.name, micros)
                sources.append(f"fromUnixTimestamp64Micro(`{column.name}`, 'UTC')")
            else:
                sources.append(f"`{column.name}`")
        arrow_rows = data  # noqa: F841 - chDB's Python() reads this local by name
        self._run(
            f"INSERT INTO {table} ({', '.join(targets)}) "
            f"SELECT {', '.join(sources)} FROM Python(arrow_rows) "
            "SETTINGS optimize_on_insert = 0"
        )

    def close(self) -> None:
        """Close the chDB session and release the directory."""
        if self._session is not None:
            self._session.close()
            self._session = None  # type: ignore[assignment]
        if not self._lock.closed:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
