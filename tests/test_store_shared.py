"""A second worker's view of the embedded store: the owner's /store pages."""

from __future__ import annotations

import json
import stat
from typing import Any

import pyarrow as pa
import pytest

from driftline.store import StoreError
from driftline.store.remote import SharedStore

pytestmark = pytest.mark.e2e


def test_the_owner_serves_its_store_only_with_the_token(worker_factory: Any) -> None:
    worker = worker_factory()
    marker = worker.settings.data_dir / "worker.json"
    assert stat.S_IMODE(marker.stat().st_mode) == 0o600  # the token is a secret
    info = json.loads(marker.read_text())
    shared = SharedStore(int(info["web_port"]), info["store_token"], "driftline")
    assert shared.query("SELECT {n:UInt8} + 1 AS n", {"n": 41}) == [{"n": 42}]
    shared.command("CREATE TABLE IF NOT EXISTS scratch (x Float64) ENGINE = MergeTree ORDER BY x")
    shared.insert_arrow("scratch", pa.table({"x": pa.array([1.5, 2.5])}))
    assert worker.scalar("SELECT sum(x) FROM scratch") == 4.0

    with pytest.raises(StoreError, match="bad store token"):
        SharedStore(int(info["web_port"]), "guess", "driftline").query("SELECT 1")
    with pytest.raises(StoreError, match="not a table name"):
        shared.insert_arrow("scratch; DROP TABLE predictions", pa.table({"x": pa.array([1.0])}))
    assert worker.scalar("SELECT count() FROM predictions") == 0  # still there
