"""How a process reaches the store: the one place that picks the backend.

chDB allows one process per data directory, so on the embedded stack the running worker
owns the store and everyone else goes through it; with ``DRIFTLINE_CLICKHOUSE_URL`` every
process opens its own connection to the server. Three ways in:

:func:`open_store`
    The process owns the store (the worker, ``db migrate``): chDB or the server.
:func:`reading_store`
    Reads: the owner worker's read-only ``/query`` page (query token from
    ``DRIFTLINE_QUERY_TOKEN`` or the 0600 ``worker.json``) when a worker owns the
    embedded directory, else the store itself.
:func:`writing_store`
    Writes (the retrainer, ``models promote|rollback``, the demo's first model): the
    owner worker's ``/store`` pages when one runs (store token from ``worker.json``),
    else the store itself; migrated before use.
:func:`sandboxed_reader`
    Ad-hoc SQL (``db query``): the owner worker's page, which runs it in its sandbox, or
    a :class:`~driftline.store.sandbox.SqlSandbox` over the store itself.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..settings import Settings
from .backend import Store
from .migrations import migrate

__all__ = ["open_store", "reading_store", "sandboxed_reader", "writing_store"]

log = logging.getLogger(__name__)


def open_store(settings: Settings) -> Store:
    """The backend the settings name: a ClickHouse server when a URL is set, else chDB
    in the data directory (which this process then owns).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     store = open_store(Settings(data_dir=pathlib.Path(folder)))
    ...     kind = type(store).__name__
    ...     store.close()
    >>> kind
    'EmbeddedStore'
    """
    if settings.embedded_store:
        from .embedded import EmbeddedStore

        return EmbeddedStore(settings.data_dir / "chdb", settings.clickhouse_database)
    from .server import ServerStore

    return ServerStore(
        settings.clickhouse_url,
        settings.clickhouse_database,
        settings.clickhouse_user,
        settings.clickhouse_password.get_secret_value(),
    )


@contextmanager
def reading_store(settings: Settings) -> Iterator[Any]:
    """A store to read from (``query(sql, parameters)``), closed on exit."""
    from .remote import worker_reader

    reader: Any = worker_reader(settings)
    if reader is None:
        reader = open_store(settings)
    try:
        yield reader
    finally:
        reader.close()


def writing_store(settings: Settings) -> Any:
    """A store to write to, migrated: through the worker that owns the embedded
    directory, or the process's own; the caller closes it."""
    from .remote import SharedStore, running_worker

    owner = running_worker(settings.data_dir) if settings.embedded_store else None
    if owner is not None and owner.get("store_token"):
        log.info("using the store of worker pid %s", owner["pid"])
        store: Any = SharedStore(
            int(owner["web_port"]), str(owner["store_token"]), settings.clickhouse_database
        )
    else:
        store = open_store(settings)
    migrate(store, settings.raw_ttl_days)
    return store


@contextmanager
def sandboxed_reader(settings: Settings) -> Iterator[Any]:
    """A reader of ad-hoc SQL (``query(sql)``) that can read the driftline database only,
    within the query bounds of ``settings``; closed on exit."""
    from .remote import worker_reader
    from .sandbox import SqlSandbox

    reader = worker_reader(settings)
    if reader is not None:  # the worker's page runs it in its sandbox
        try:
            yield reader
        finally:
            reader.close()
        return
    store = open_store(settings)
    try:
        sandbox = SqlSandbox(store, settings.query_bounds)
        try:
            yield sandbox
        finally:
            sandbox.close()
    finally:
        store.close()
