"""The SQL sandbox of the query page and ``driftline db query``: read the driftline
database only, within bounds.

Two layers, the engine's first:

1. **The engine's own controls.** Every statement runs on a connection whose settings
   were fixed before ``readonly = 1`` locked them: the bounds (:class:`QueryBounds`) and
   read-only mode, which refuses writes, DDL, ``SETTINGS`` clauses that would lift a
   bound, and the table functions that touch the outside (``file``, ``url``, ``s3``,
   ``remote``, ``executable``, ``mysql``, ``postgresql``, ``hdfs``, ``input``,
   chDB's ``Python``...). On chDB that is a connection of its own (``SET`` is per
   connection); on a ClickHouse server the same settings travel with every query, and
   a grant-limited user (``scripts/clickhouse-grants.sql``) adds the server's own wall.
2. **The engine's parser.** Read-only mode still lets a query read other databases
   (``system.processes``, ``information_schema``), the ``merge()`` table function, the
   scalar ``file()`` function (it returned ``/etc/passwd`` in read-only mode), and
   ``INTO OUTFILE`` / ``FORMAT`` clauses (``INTO OUTFILE`` wrote a file in read-only
   mode). So the statement is first parsed by the engine (``EXPLAIN AST``, which parses
   and runs nothing) and :func:`ast_refusals` walks the syntax tree: only ``SELECT``;
   no output clauses; tables of the driftline database or a few harmless
   ``system`` generators; table functions from an allow-list; no scalar function that
   reads outside the database. The tree is the one the engine executes, so quoting,
   comments and case cannot hide a table from it, as they could from a regular
   expression.

A statement that hits a bound ends with :class:`QueryBoundError`, whose message names
the bound and the setting that changes it.
"""

from __future__ import annotations

import contextlib
import queue
import re
import secrets
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

from .backend import ReadOnlyQueryError, StoreError, check_read_only

__all__ = [
    "ALLOWED_SYSTEM_TABLES",
    "ALLOWED_TABLE_FUNCTIONS",
    "QUERY_MARKER",
    "QueryBoundError",
    "QueryBounds",
    "SqlSandbox",
    "ast_refusals",
]

#: ``system`` tables that expose nothing of the machine: constant generators.
ALLOWED_SYSTEM_TABLES = frozenset({"one", "numbers", "numbers_mt", "zeros", "zeros_mt"})
#: Table functions that only generate values (every other one is refused).
ALLOWED_TABLE_FUNCTIONS = frozenset(
    {"numbers", "numbers_mt", "zeros", "zeros_mt", "values", "generate_series", "generateseries"}
)
#: Scalar functions that read outside the database or describe the machine
#: (lower case; ``dict*`` and ``joinget*`` are refused by prefix).
REFUSED_FUNCTIONS = frozenset(
    {
        "file",
        "hascolumnintable",
        "getserversetting",
        "getmergetreesetting",
        "filesystemavailable",
        "filesystemcapacity",
        "filesystemunreserved",
        "getmacro",
        "getclienthttpheader",
        "hostname",
        "fqdn",
        "getoskernelversion",
        "serveruuid",
        "tcpport",
        "buildid",
        "currentprofiles",
        "enabledprofiles",
        "defaultprofiles",
        "currentroles",
        "enabledroles",
        "defaultroles",
        "addresstoline",
        "addresstolinewithinlines",
        "addresstosymbol",
        "demangle",
        "catboostevaluate",
        "modelevaluate",
    }
)
_REFUSED_PREFIXES = ("dict", "joinget")
#: The start of the comment put before every sandboxed statement (followed by the
#: sandbox's own random id), by which shutdown finds and cancels its statements only.
QUERY_MARKER = "/* driftline:query-page "

_NODE = re.compile(r"^(?P<indent> *)(?P<kind>\w+)(?: (?P<name>.*?))?(?: \(children \d+\))?$")
_ALIAS = re.compile(r" \(alias .*\)$")
_ROOTS = ("SelectWithUnionQuery", "SelectIntersectExceptQuery", "DescribeQuery", "ShowTables")


class QueryBoundError(StoreError):
    """A query ran into one of its bounds (time, result rows or bytes, memory)."""


@dataclass(frozen=True)
class QueryBounds:
    """The limits of every sandboxed query, as ClickHouse settings.

    Parameters
    ----------
    max_seconds : float
        Execution time (``max_execution_time``).
    max_result_rows, max_result_bytes : int
        Size of the result (``max_result_rows``, ``max_result_bytes``; checked per
        block, so a result may overshoot by one block before it is refused).
    max_memory_bytes : int
        Memory of the query (``max_memory_usage``).

    Examples
    --------
    >>> QueryBounds(max_seconds=5).settings()["max_execution_time"]
    5.0
    """

    max_seconds: float = 20.0
    max_result_rows: int = 1_000_000
    max_result_bytes: int = 128 * 1024 * 1024
    max_memory_bytes: int = 1024 * 1024 * 1024

    def settings(self) -> dict[str, Any]:
        """The ClickHouse settings, ``readonly = 1`` last (it locks the others)."""
        return {
            "max_execution_time": float(self.max_seconds),
            "timeout_overflow_mode": "throw",
            "max_result_rows": int(self.max_result_rows),
            "max_result_bytes": int(self.max_result_bytes),
            "result_overflow_mode": "throw",
            "max_memory_usage": int(self.max_memory_bytes),
            "readonly": 1,
        }

    def explain(self, message: str) -> str:
        """Which bound a ClickHouse error message is about, and how to raise it; ``""``
        when it is about none."""
        text = message.lower()
        if "timeout exceeded" in text or "timeout_exceeded" in text:
            return f"the query ran longer than {self.max_seconds:g} s (DRIFTLINE_QUERY_MAX_SECONDS)"
        if "memory limit" in text or "memory_limit_exceeded" in text:
            return (
                f"the query needed more than {self.max_memory_bytes} bytes of memory "
                "(DRIFTLINE_QUERY_MAX_MEMORY_BYTES)"
            )
        if "limit for result exceeded" in text or "too_many_rows_or_bytes" in text:
            if "max bytes" in text:
                return (
                    f"the result is larger than {self.max_result_bytes} bytes "
                    "(DRIFTLINE_QUERY_MAX_RESULT_BYTES)"
                )
            return (
                f"the result has more than {self.max_result_rows} rows "
                "(DRIFTLINE_QUERY_MAX_RESULT_ROWS)"
            )
        return ""


def _name(raw: str | None) -> str:
    return _ALIAS.sub("", raw or "").strip()


def ast_refusals(ast: str, database: str, databases: Collection[str]) -> list[str]:
    """Why the statement whose ``EXPLAIN AST`` text is ``ast`` may not run: empty when
    it reads only ``database`` (and harmless generators).

    Parameters
    ----------
    ast : str
        The engine's ``EXPLAIN AST`` output of the statement.
    database : str
        The one database the statement may read.
    databases : collection of str
        Every database of the engine: a dotted name whose first part is one of them
        (other than ``database``) refers to another database.

    Examples
    --------
    >>> tree = '''SelectWithUnionQuery (children 1)
    ...  ExpressionList (children 1)
    ...   SelectQuery (children 2)
    ...    ExpressionList (children 1)
    ...     Asterisk
    ...    TablesInSelectQuery (children 1)
    ...     TablesInSelectQueryElement (children 1)
    ...      TableExpression (children 1)
    ...       TableIdentifier system.processes'''
    >>> ast_refusals(tree, "driftline", ["driftline", "system"])
    ['table system.processes is outside the driftline database']
    >>> ast_refusals(tree.replace("system.processes", "predictions"), "driftline", ["system"])
    []
    """
    others = {name.lower() for name in databases} - {database.lower()}
    reasons: list[str] = []
    lines = [line for line in ast.splitlines() if line.strip()]
    if not lines:
        return ["the statement could not be parsed"]
    root = _NODE.match(lines[0])
    if root is None or root.group("kind") not in _ROOTS or root.group("indent"):
        return ["only SELECT, SHOW TABLES and DESCRIBE statements are allowed"]
    if root.group("kind") == "ShowTables" and len(lines) > 1:
        return ["SHOW TABLES lists the driftline database only (no FROM)"]
    first_level = "TableExpression" if root.group("kind") == "DescribeQuery" else "ExpressionList"
    kinds: list[tuple[int, str]] = []  # (indent, kind) of the open ancestors
    for line in lines:
        node = _NODE.match(line)
        if node is None:
            continue
        indent, kind, name = (
            len(node.group("indent")),
            node.group("kind"),
            _name(node.group("name")),
        )
        while kinds and kinds[-1][0] >= indent:
            kinds.pop()
        parent = kinds[-1][1] if kinds else ""
        if indent == 1 and kind != first_level:
            reasons.append("FORMAT, INTO OUTFILE and SETTINGS clauses are not allowed")
        elif kind == "TableIdentifier":
            reasons.extend(_outside(name, "table", database, others))
        elif kind == "Identifier" and "." in name:
            reasons.extend(_outside(name, "name", database, others))
        elif kind == "Function" and parent == "TableExpression":
            if name.lower() not in ALLOWED_TABLE_FUNCTIONS:
                reasons.append(f"table function {name}() is not allowed")
        elif kind == "Function":
            lowered = name.lower()
            if lowered in REFUSED_FUNCTIONS or lowered.startswith(_REFUSED_PREFIXES):
                reasons.append(f"function {name}() is not allowed")
        kinds.append((indent, kind))
    return list(dict.fromkeys(reasons))


def _outside(name: str, what: str, database: str, others: set[str]) -> list[str]:
    """A refusal when dotted ``name`` starts with another database (bar harmless tables)."""
    parts = name.split(".")
    if len(parts) < 2 or parts[0].lower() not in others:
        return []
    if parts[0].lower() == "system" and parts[1].lower() in ALLOWED_SYSTEM_TABLES:
        return []
    return [f"{what} {name} is outside the {database} database"]


class SqlSandbox:
    """Runs people's SQL on a store: read-only, the driftline database only, bounded.

    Parameters
    ----------
    store : Store
        An :class:`~driftline.store.EmbeddedStore` (the sandbox opens a connection of
        its own and locks its settings) or a :class:`~driftline.store.server.ServerStore`
        (the settings travel with every query).
    bounds : QueryBounds
        The limits of every statement.
    connections : int
        Statements that may run at once, each on a connection of its own (a chDB
        connection runs one statement at a time); a further one waits up to
        ``bounds.max_seconds`` for a free connection, then is refused as busy.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from driftline.store import EmbeddedStore
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     store = EmbeddedStore(pathlib.Path(folder) / "db", "driftline")
    ...     sandbox = SqlSandbox(store, QueryBounds(max_seconds=5))
    ...     answer = sandbox.query("SELECT 40 + 2 AS answer")
    ...     try:
    ...         sandbox.query("SELECT * FROM file('/etc/passwd', 'LineAsString')")
    ...     except ReadOnlyQueryError as error:
    ...         refused = str(error)
    ...     store.close()
    >>> answer, refused
    ([{'answer': 42}], 'table function file() is not allowed')
    """

    def __init__(self, store: Any, bounds: QueryBounds, connections: int = 2) -> None:
        self.bounds = bounds
        self.database = store.database
        # Connections run the statements (their settings locked by readonly); another,
        # not read-only, cancels them at shutdown.
        self._opened = [store.sandboxed(bounds.settings()) for _ in range(max(1, connections))]
        self._free: queue.Queue[Any] = queue.Queue()
        for connection in self._opened:
            self._free.put(connection)
        self._control = store.sandboxed({})
        self._marker = f"{QUERY_MARKER}{secrets.token_hex(8)} */ "
        rows = self._opened[0].query("SELECT name FROM system.databases")
        self._databases = frozenset(str(row["name"]) for row in rows)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        try:
            connection = self._free.get(timeout=self.bounds.max_seconds)
        except queue.Empty:
            raise QueryBoundError(
                "query refused: every query connection stayed busy for "
                f"{self.bounds.max_seconds:g} s (DRIFTLINE_QUERY_MAX_SECONDS)"
            ) from None
        try:
            yield connection
        finally:
            self._free.put(connection)

    def check(self, sql: str) -> str:
        """``sql`` as it will run, or :class:`ReadOnlyQueryError` naming what is refused."""
        statement = check_read_only(sql)
        try:
            with self._connection() as connection:
                rows = connection.query("EXPLAIN AST " + statement)
        except StoreError as error:
            if "readonly" in str(error).lower():
                raise ReadOnlyQueryError(f"the engine refused it (read-only): {error}") from None
            raise ReadOnlyQueryError(f"the statement does not parse: {error}") from None
        ast = "\n".join(str(row.get("explain", "")) for row in rows)
        reasons = ast_refusals(ast, self.database, self._databases)
        if reasons:
            raise ReadOnlyQueryError("; ".join(reasons))
        return statement

    def query(self, sql: str) -> list[dict[str, Any]]:
        """Rows of one checked, bounded ``SELECT``.

        Raises
        ------
        ReadOnlyQueryError
            The statement is not one ``SELECT`` of the driftline database.
        QueryBoundError
            It ran into a bound; the message names it and its setting.
        StoreError
            The engine refused it for another reason.
        """
        statement = self.check(sql)
        try:
            with self._connection() as connection:
                return list(connection.query(self._marker + statement))
        except StoreError as error:
            bound = self.bounds.explain(str(error))
            if bound:
                raise QueryBoundError(f"query stopped: {bound}") from None
            if "readonly" in str(error).lower():
                raise ReadOnlyQueryError(f"refused by the engine: {error}") from None
            raise

    def cancel_running(self) -> None:
        """Cancel the sandboxed statements that are running now (at shutdown)."""
        self._control.command(
            "KILL QUERY WHERE startsWith(query, {marker:String}) ASYNC", {"marker": self._marker}
        )

    def close(self) -> None:
        """Release the sandbox's own connections (the store stays open)."""
        for connection in self._opened:
            connection.close()
        self._control.close()
