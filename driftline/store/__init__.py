"""The ClickHouse store: one narrow interface, chDB and clickhouse-connect backends."""

from __future__ import annotations

from .access import open_store, reading_store, sandboxed_reader, writing_store
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
    "reading_store",
    "sandboxed_reader",
    "writing_store",
]
