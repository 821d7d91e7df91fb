"""Access to the store of a running worker: read-only SQL on ``/query``, profiles on
``/reference``.

chDB allows one process per data directory, so while a worker owns the
embedded store every other process (the CLI, tests, the report) reads through
the worker.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa
import pyarrow.ipc as ipc

from .backend import ReadOnlyQueryError, StoreError
from .sandbox import QueryBoundError

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = [
    "SharedStore",
    "WorkerReader",
    "running_worker",
    "worker_health",
    "worker_reader",
]


def worker_health(
    port: int, host: str = "127.0.0.1", timeout: float = 2.0
) -> dict[str, Any] | None:
    """A worker's ``/health`` counters, or ``None`` while nothing answers on ``port``."""
    try:
        url = f"http://{host}:{port}/health"
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return dict(json.loads(response.read()))
    except OSError:
        return None


def running_worker(data_dir: Path) -> dict[str, Any] | None:
    """The ``worker.json`` of a live worker in ``data_dir``, or ``None``."""
    marker = Path(data_dir) / "worker.json"
    try:
        info = json.loads(marker.read_text())
        os.kill(int(info["pid"]), 0)
    except (FileNotFoundError, ValueError, KeyError, ProcessLookupError, PermissionError):
        return None
    return info


class WorkerReader:
    """Runs read-only SQL on a worker's store over HTTP, with the worker's query token.

    Parameters
    ----------
    port : int
        The worker's web port.
    host : str
        Its address.
    timeout : float
        Seconds to wait for an answer.
    token : str, optional
        The query token (``Authorization: Bearer``); see :meth:`for_worker`.

    Examples
    --------
    >>> WorkerReader(6066, token="t").url
    'http://127.0.0.1:6066/query'
    """

    def __init__(
        self, port: int, host: str = "127.0.0.1", timeout: float = 30.0, token: str | None = None
    ) -> None:
        self.url = f"http://{host}:{port}/query"
        self.timeout = timeout
        self._token = token

    @classmethod
    def for_worker(
        cls, worker: dict[str, Any], token: str | None = None, timeout: float = 30.0
    ) -> WorkerReader:
        """A reader of the worker that ``worker`` (its ``worker.json``) describes, with the
        token given (``DRIFTLINE_QUERY_TOKEN``) or else the one the worker wrote there."""
        given = token or worker.get("query_token")
        return cls(int(worker["web_port"]), timeout=timeout, token=given)

    def _post(self, url: str, body: bytes) -> bytes:
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        request = urllib.request.Request(url, data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as error:
            message = error.read().decode(errors="replace")
            if error.code == 403:
                raise ReadOnlyQueryError(message) from None
            if error.code == 422:
                raise QueryBoundError(message) from None
            if error.code == 401:
                raise StoreError(f"the worker refused the query token: {message}") from None
            raise StoreError(message) from None
        except OSError as error:
            raise StoreError(f"worker at {url} did not answer: {error}") from None

    def save_profile(self, profile_json: str) -> None:
        """Have the worker store a reference profile (JSON of a ``ModelProfile``)."""
        self._post(self.url.removesuffix("/query") + "/reference", profile_json.encode())

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Rows of a read-only query (parameters are not supported over this path)."""
        if parameters:
            raise StoreError("the worker query page takes no parameters")
        body = self._post(self.url, sql.encode())
        return [orjson.loads(line) for line in body.splitlines() if line]

    def close(self) -> None:
        """Nothing to release."""


def worker_reader(settings: Settings) -> WorkerReader | None:
    """A reader of the live worker that owns the embedded store of ``settings``, with
    ``DRIFTLINE_QUERY_TOKEN`` or the token in its ``worker.json``; ``None`` when no
    worker owns it (or the store is a ClickHouse server)."""
    worker = running_worker(settings.data_dir) if settings.embedded_store else None
    if worker is None:
        return None
    token = settings.query_token.get_secret_value() if settings.query_token else None
    return WorkerReader.for_worker(worker, token)


class SharedStore:
    """The store of the worker that owns a chDB directory, used by another worker.

    chDB allows one process per data directory; a second worker on the same
    directory (same consumer group, its share of the partitions) runs every
    statement and insert through the owner's ``/store/*`` pages on loopback,
    authenticated by the token the owner wrote to ``worker.json`` (mode 0600).

    Examples
    --------
    >>> SharedStore(6066, "secret", "driftline").database
    'driftline'
    """

    def __init__(
        self, port: int, token: str, database: str, host: str = "127.0.0.1", timeout: float = 60.0
    ) -> None:
        self.database = database
        self._base = f"http://{host}:{port}/store"
        self._token = token
        self.timeout = timeout

    def _post(self, path: str, body: bytes) -> bytes:
        request = urllib.request.Request(
            self._base + path, data=body, method="POST", headers={"X-Driftline-Token": self._token}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as error:
            raise StoreError(error.read().decode(errors="replace")) from None
        except OSError as error:
            raise StoreError(f"the owning worker at {self._base} did not answer: {error}") from None

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        """Run a statement on the owner's store."""
        self._post("/command", orjson.dumps({"sql": sql, "parameters": parameters or {}}))

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Rows of a query on the owner's store."""
        body = self._post("/query", orjson.dumps({"sql": sql, "parameters": parameters or {}}))
        return [orjson.loads(line) for line in body.splitlines() if line]

    def insert_arrow(self, table: str, data: pa.Table) -> None:
        """Send an Arrow IPC stream for the owner to insert."""
        sink = pa.BufferOutputStream()
        with ipc.new_stream(sink, data.schema) as writer:
            writer.write_table(data)
        self._post("/insert/" + urllib.parse.quote(table), sink.getvalue().to_pybytes())

    def close(self) -> None:
        """Nothing to release."""
