"""The ClickHouse store: one narrow interface, chDB and clickhouse-connect backends."""

from __future__ import annotations

from ..settings import Settings
from .backend import ReadOnlyQueryError, Store, StoreError, check_read_only
from .embedded import EmbeddedStore, StoreLockedError
from .migrations import MIGRATIONS, migrate

__all__ = [
    "MIGRATIONS",
    "EmbeddedStore",
    "ReadOnlyQueryError",
    "Store",
    "StoreError",
    "StoreLockedError",
    "check_read_only",
    "migrate",
    "open_store",
]


def open_store(settings: Settings) -> Store:
    """The backend the settings name: a ClickHouse server when a URL is set, else chDB.

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
        return EmbeddedStore(settings.data_dir / "chdb", settings.clickhouse_database)
    from .server import ServerStore

    return ServerStore(
        settings.clickhouse_url,
        settings.clickhouse_database,
        settings.clickhouse_user,
        settings.clickhouse_password.get_secret_value(),
    )
