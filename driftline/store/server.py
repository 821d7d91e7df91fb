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

    def __init__(self, url: str, database: str, user: str = "default", password: str = "") -> None:
        import clickhouse_connect

        self.database = database
        try:
            bootstrap = clickhouse_connect.get_client(dsn=url, username=user, password=password)
            bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {database}")
            bootstrap.close()
            self._client = clickhouse_connect.get_client(
                dsn=url, username=user, password=password, database=database
            )
        except Exception as error:
            raise StoreError(f"cannot reach ClickHouse at {url}: {error}") from None

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        """Run a statement that returns nothing."""
        try:
            self._client.command(sql, parameters=parameters)
        except Exception as error:
            raise StoreError(str(error).strip()) from None

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run a query; rows come back as dicts."""
        try:
            result = self._client.query(sql, parameters=parameters)
        except Exception as error:
            raise StoreError(str(error).strip()) from None
        return list(result.named_results())

    def insert_arrow(self, table: str, data: pa.Table) -> None:
        """Insert an Arrow table by column name."""
        try:
            self._client.insert_arrow(table, data, settings={"optimize_on_insert": 0})
        except Exception as error:
            raise StoreError(str(error).strip()) from None

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()
