"""The embedded backend: chDB, the ClickHouse engine in this process."""

from __future__ import annotations

import fcntl
import itertools
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.ipc as ipc

from .backend import StoreError

__all__ = ["EmbeddedStore", "StoreLockedError", "parameter_text"]


_ESCAPES = str.maketrans(
    {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0", "\b": "\\b", "\f": "\\f"}
)


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(_literal(item) for item in value) + "]"
    text = str(value).translate(_ESCAPES).replace("'", "\\'")
    return f"'{text}'"


def parameter_text(value: Any) -> str:
    """A query parameter as ClickHouse reads it: strings escaped, arrays as literals.

    chDB hands parameters over as text in ClickHouse's escaped format, where a
    backslash starts an escape and a raw tab or newline is refused; this makes
    any Python string, number, ``None`` or list arrive unchanged.

    Examples
    --------
    >>> parameter_text("a\\tb")
    'a\\\\tb'
    >>> parameter_text(["x'y", 1.5])
    "['x\\\\'y',1.5]"
    """
    if isinstance(value, str):
        return value.translate(_ESCAPES)
    if value is None:
        return "\\N"
    if isinstance(value, list | tuple):
        return _literal(list(value))
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


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

    def __init__(self, path: Path, database: str, *, _owner: EmbeddedStore | None = None) -> None:
        from chdb import session

        self.path = Path(path)
        self.database = database
        self._owner = _owner
        self._siblings: list[EmbeddedStore] = []
        if _owner is None:
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
        else:
            self._lock = _owner._lock
        self._session = session.Session(str(self.path))
        # Insert spool: tmpfs when there is one, else beside the data; private to us.
        shm = Path("/dev/shm")
        spool_root = shm if shm.is_dir() and os.access(shm, os.W_OK) else self.path
        self._spool = Path(tempfile.mkdtemp(prefix="driftline-spool-", dir=spool_root))
        self._spool_numbers = itertools.count()
        self._run(f"CREATE DATABASE IF NOT EXISTS {database}")
        self._run(f"USE {database}")

    def sibling(self) -> EmbeddedStore:
        """Another connection to the same engine and directory, for another thread.

        chDB (4.x) runs queries of different connections in parallel, so a thread with
        its own connection (the monitor's window queries) never waits for one busy on
        another (the ingest's inserts). The directory lock stays with this store,
        and closing it closes its siblings first.
        """
        if self._owner is not None:
            return self._owner.sibling()
        sibling = EmbeddedStore(self.path, self.database, _owner=self)
        self._siblings.append(sibling)
        return sibling

    def sandboxed(self, settings: dict[str, Any]) -> EmbeddedStore:
        """A sibling connection whose session has ``settings`` (in order).

        ``SET`` applies to one chDB connection only, so ``readonly = 1`` given last
        locks the settings before it for that connection alone: its statements cannot
        lift them, and the other connections (ingest, monitor) are unaffected.
        """
        sibling = self.sibling()
        for name, value in settings.items():
            if not re.fullmatch(r"[a-z_]+", name):
                raise StoreError(f"not a setting name: {name!r}")
            sibling.command(f"SET {name} = {_literal(value)}")
        return sibling

    def _run(self, sql: str, parameters: dict[str, Any] | None = None, fmt: str = "CSV") -> bytes:
        if self._session is None:
            raise StoreError(f"the store of {self.path} is closed")
        params = {name: parameter_text(value) for name, value in (parameters or {}).items()}
        try:
            result = self._session.query(sql, fmt, params=params or None)
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

        The table goes to ClickHouse as an Arrow IPC stream in a private spool
        file read by ``file()``: ClickHouse parses it natively without the GIL,
        whereas chDB's ``Python()`` table function holds the GIL for most of an
        insert and stalls the event loop that decodes the next batch. Timestamp
        columns travel as int64 microseconds (converted by ClickHouse).
        ``optimize_on_insert`` is off: deduplicating each inserted block as a merge
        would (ReplacingMergeTree) more than doubles the insert time, and readers
        deduplicate with ``FINAL`` anyway.

        ``max_partitions_per_insert_block`` is 0 (no limit): the raw tables are
        partitioned by day, and a valid backfill batch may span any number of days
        (one event a day for 150 days broke the default limit of 100 and, being
        refused again on every retry, stopped ingest for good). ClickHouse writes one
        part per day the block touches either way; the limit guards against a
        partition key finer than intended, which the fixed day key is not. The
        alternatives were rejected: splitting the insert by partition writes the same
        parts in more statements (and in more round trips on a server); a coarser key
        (month) means rewriting the raw tables and still caps a backfill (at 100
        months). The server backend sets the same (:class:`~.server.ServerStore`).
        """
        if self._session is None:  # its spool is gone too: say so, as every call does
            raise StoreError(f"the store of {self.path} is closed")
        targets, sources = [], []
        for index, column in enumerate(data.schema):
            targets.append(f"`{column.name}`")
            if pa.types.is_timestamp(column.type):
                micros = data.column(index).cast(pa.timestamp("us")).cast(pa.int64())
                data = data.set_column(index, column.name, micros)
                sources.append(f"fromUnixTimestamp64Micro(`{column.name}`, 'UTC')")
            else:
                sources.append(f"`{column.name}`")
        spool = self._spool / f"{table}-{next(self._spool_numbers)}.arrows"
        try:
            with pa.OSFile(str(spool), "wb") as sink, ipc.new_stream(sink, data.schema) as writer:
                writer.write_table(data)
            self._run(
                f"INSERT INTO {table} ({', '.join(targets)}) "
                f"SELECT {', '.join(sources)} FROM file({{spool:String}}, 'ArrowStream') "
                "SETTINGS optimize_on_insert = 0, max_partitions_per_insert_block = 0",
                {"spool": str(spool)},
            )
        finally:
            spool.unlink(missing_ok=True)

    def close(self) -> None:
        """Close the chDB session and release the directory."""
        for sibling in self._siblings:
            sibling.close()
        self._siblings.clear()
        if self._session is not None:
            self._session.close()
            self._session = None  # type: ignore[assignment]
            shutil.rmtree(self._spool, ignore_errors=True)
        if self._owner is None and not self._lock.closed:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
