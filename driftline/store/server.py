"""The server backend: a ClickHouse server through clickhouse-connect (HTTP)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from .backend import StoreError

__all__ = ["ServerStore"]


class ServerStore:
    """A ClickHouse server reached with clickhouse-connect.

    Parameters
    ----------
    url : str
        ``http(s)://host:port`` of the server's HTTP interface.
    database : str
        Database that unqualified table names refer to (created if missing).
    user, password : str
        Credentials.

    Examples
    --------
    >>> ServerStore.__name__
    'ServerStore'
    """

    def __init__(
        self,
        url: str,
        database: str,
        user: str = "default",
        password: str = "",
        *,
        create_database: bool = True,
        settings: dict[str, Any] | None = None,
        session: bool = True,
    ) -> None:
        import clickhouse_connect

        self.database = database
        self._url, self._user, self._password = url, user, password
        self._settings = dict(settings or {})
        try:
            if create_database:
                bootstrap = clickhouse_connect.get_client(dsn=url, username=user, password=password)
                bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {database}")
                bootstrap.close()
            # Sandboxed clients have no session: queries of several threads never wait
            # on a session lock, and their settings travel with each query.
            self._client = clickhouse_connect.get_client(
                dsn=url,
                username=user,
                password=password,
                database=database,
                autogenerate_session_id=session,
            )
        except Exception as error:
            raise StoreError(f"cannot reach ClickHouse at {url}: {error}") from None

    def sandboxed(self, settings: dict[str, Any]) -> ServerStore:
        """A client of its own that sends ``settings`` with every statement.

        ``readonly = 1`` among them makes the server refuse writes, DDL and any
        ``SETTINGS`` clause that would change the others; a grant-limited user
        (``scripts/clickhouse-grants.sql``) is the server's own second wall.
        """
        return ServerStore(
            self._url,
            self.database,
            self._user,
            self._password,
            create_database=False,
            settings=settings,
            session=False,
        )

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        """Run a statement that returns nothing."""
        try:
            self._client.command(sql, parameters=parameters, settings=self._settings or None)
        except Exception as error:
            raise StoreError(str(error).strip()) from None

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run a query; rows come back as dicts."""
        try:
            result = self._client.query(sql, parameters=parameters, settings=self._settings or None)
        except Exception as error:
            raise StoreError(str(error).strip()) from None
        return list(result.named_results())

    def insert_arrow(self, table: str, data: pa.Table) -> None:
        """Insert an Arrow table by column name.

        ``max_partitions_per_insert_block`` is 0 (no limit), as on the embedded
        backend (see :meth:`~.embedded.EmbeddedStore.insert_arrow` for why): a valid
        backfill batch spanning more than 100 days of the day-partitioned raw tables
        must store, not be refused on every retry.
        """
        settings = {"optimize_on_insert": 0, "max_partitions_per_insert_block": 0}
        try:
            self._client.insert_arrow(table, data, settings=settings)
        except Exception as error:
            raise StoreError(str(error).strip()) from None

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()
