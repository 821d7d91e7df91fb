"""scripts/clickhouse-grants.sql: parsed by the real engine; grants only what driftline needs."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import pytest

from driftline.store import EmbeddedStore

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "clickhouse-grants.sql"


def statements() -> list[str]:
    text = "\n".join(line.split("--", 1)[0] for line in SCRIPT.read_text().splitlines())
    return [part.strip() for part in text.split(";") if part.strip()]


def test_every_statement_parses_in_the_engine(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "chdb", "driftline")
    try:
        for statement in statements():
            rows = store.query("EXPLAIN AST " + statement)
            assert rows, statement
    finally:
        store.close()


def test_grants_stay_inside_the_driftline_database() -> None:
    grants = [s for s in statements() if s.upper().startswith("GRANT")]
    assert len(grants) >= 3
    for grant in grants:
        assert re.search(r"\bON\s+driftline\.\*\s+TO\b", grant), grant
        for forbidden in ("FILE", "URL", "S3", "REMOTE", "SOURCES", "ALL", "ACCESS MANAGEMENT"):
            assert not re.search(rf"\b{forbidden}\b", grant.split(" ON ")[0]), grant
    revokes = [s for s in statements() if s.upper().startswith("REVOKE ALL ON *.*")]
    assert len(revokes) == 2


@pytest.mark.clickhouse_server
def test_the_worker_user_cannot_read_outside_on_a_server() -> None:
    url = os.environ.get("DRIFTLINE_CLICKHOUSE_URL")
    if not url:
        pytest.skip("DRIFTLINE_CLICKHOUSE_URL is not set")
    import clickhouse_connect

    admin = clickhouse_connect.get_client(dsn=url)
    password = uuid.uuid4().hex
    for statement in statements():
        admin.command(statement.replace("change-me-worker", password))
    worker = clickhouse_connect.get_client(
        dsn=url, username="driftline_worker", password=password, database="driftline"
    )
    for sql in (
        "SELECT * FROM file('/etc/passwd', 'LineAsString')",
        "SELECT * FROM url('http://127.0.0.1:9/', 'CSV', 'a String')",
        "SELECT * FROM system.users",
    ):
        with pytest.raises(Exception, match=r"(?i)not enough privileges|ACCESS_DENIED"):
            worker.query(sql)
