"""Many versions of one model: a pass costs the same few queries whatever their number
(issue 11, finding 6), on a real chDB store without Kafka."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
from driftline.streams.ingest import RawMessage, route_messages
from driftline.streams.monitor import Monitor, load_monitors

from driftline.backtest import reference_profile
from driftline.store import EmbeddedStore, migrate
from driftline.store.profiles import save_profile
from driftline.store.rows import KafkaPosition

TOPIC = "t.predictions"
T0 = 1_767_225_600.0
MONITOR = (
    "model_id: m\ntask: binary_classification\nfeatures: {x: numeric}\n"
    "window: 1m\nallowed_lateness: 10s\n"
)


class CountingStore:
    """The real store, counting every call made through it."""

    def __init__(self, store: EmbeddedStore) -> None:
        self.store = store
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        self.calls += 1
        return self.store.query(sql, parameters)

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        self.calls += 1
        self.store.command(sql, parameters)

    def insert_arrow(self, table: str, data: pa.Table) -> None:
        self.calls += 1
        self.store.insert_arrow(table, data)


def _batch(version: str, start: float, n: int, tag: str) -> bytes:
    return orjson.dumps(
        {
            "type": "prediction_batch",
            "model_id": "m",
            "model_version": version,
            "event_ids": [f"{version}-{tag}-{i}" for i in range(n)],
            "timestamps": [start + 1 + i for i in range(n)],
            "features": {"x": [float(i % 7) for i in range(n)]},
            "predictions": [i % 2 for i in range(n)],
        }
    )


class Setup:
    def __init__(self, folder: Path) -> None:
        monitors = folder / "monitors"
        monitors.mkdir(parents=True)
        (monitors / "m.yaml").write_text(MONITOR)
        (folder / "ref.jsonl").write_bytes(_batch("ref", T0 - 3600, 50, "r") + b"\n")
        self.raw = EmbeddedStore(folder / "db", "driftline")
        migrate(self.raw)
        save_profile(self.raw, reference_profile(monitors / "m.yaml", folder / "ref.jsonl")[1])
        self.store = CountingStore(self.raw)
        self.offset = 0

        async def sink(key: str, value: bytes) -> None:
            return None

        self.monitor = Monitor(
            self.store,  # type: ignore[arg-type]
            threading.Lock(),
            load_monitors(monitors),
            predictions_topic=TOPIC,
            idle_seconds=1e9,
            horizon_seconds=3600.0,
            send_alert=sink,
            send_request=sink,
            late_check_seconds=1e9,  # the first pass is timed, the others follow boundaries
            settle_seconds=0.0,
        )

    def ingest(self, lines: list[bytes]) -> None:
        messages = []
        for line in lines:
            messages.append(RawMessage(line, KafkaPosition(TOPIC, 0, self.offset)))
            self.offset += 1
        outcome = route_messages(messages, 1 << 24)
        assert outcome.predictions is not None
        self.raw.insert_arrow("predictions", outcome.predictions)

    def tick(self) -> int:
        """One tick; the store calls it made."""
        before = self.store.calls
        asyncio.run(self.monitor.tick())
        return self.store.calls - before


def _scenario(folder: Path, versions: int) -> tuple[Setup, list[int]]:
    """``versions`` versions with 3 rows each in window 0; then only ``v0000``..``v0002``
    send rows, one window at a time. The store calls of each tick."""
    s = Setup(folder)
    names = [f"v{i:04d}" for i in range(versions)]
    active = names[:3]
    calls = []
    for k in range(4):
        start = T0 + 60 * k
        lines = [_batch(v, start, 3, str(k)) for v in (names if k == 0 else active)]
        # the watermark passes window k's end plus the allowed lateness
        lines.append(_batch(active[0], start + 70, 1, f"clock{k}"))
        s.ingest(lines)
        calls.append(s.tick())
    return s, calls


def test_a_pass_over_idle_versions_costs_no_more_queries(tmp_path: Path) -> None:
    few, few_calls = _scenario(tmp_path / "few", 3)
    assert few.monitor.windows_closed == 3 + 3 * 3
    few.raw.close()  # chDB: one data directory per process at a time
    many, many_calls = _scenario(tmp_path / "many", 300)
    try:
        assert many.monitor.windows_closed == 300 + 3 * 3
        # Once the idle versions' only window closed, a pass costs what it costs with 3.
        for a, b in zip(few_calls[1:], many_calls[1:], strict=True):
            assert b <= a + 2, (few_calls, many_calls)
        # The first pass closes one window of each of the 300 versions: at most one
        # aggregation per version with windows, the rest grouped (was 7 per version).
        assert many_calls[0] <= few_calls[0] + 1.5 * (300 - 3), (few_calls, many_calls)
    finally:
        many.raw.close()


def test_every_window_of_every_version_closes_with_its_counts(tmp_path: Path) -> None:
    s, _ = _scenario(tmp_path, 40)
    try:
        rows = s.raw.query(
            "SELECT model_version AS v, toUnixTimestamp64Micro(window_start) AS ws, "
            "max(revision) AS r FROM window_metrics GROUP BY v, ws ORDER BY v, ws"
        )
        got = {(str(r["v"]), int(r["ws"])) for r in rows}
        names = [f"v{i:04d}" for i in range(40)]
        want = {(v, int(T0 * 1e6)) for v in names}
        want |= {(v, int((T0 + 60 * k) * 1e6)) for v in names[:3] for k in range(1, 4)}
        assert got == want
        assert all(int(r["r"]) == 0 for r in rows)
        states = s.raw.query(
            "SELECT model_version AS v, argMax(state, seq) AS st FROM monitor_state "
            "GROUP BY v ORDER BY v"
        )
        assert len(states) == 40
        for row in states:
            records = orjson.loads(row["st"])["windows"]
            # window 0 holds 3 rows of each version; the clock rows of v0000 lie in the
            # next window (closed with it: 3 + 1 rows) except the last, still open
            want_n = [3] if row["v"] not in names[:3] else [3, 3, 3, 3]
            if row["v"] == names[0]:
                want_n = [3, 4, 4, 4]
            assert [w["n"] for w in records] == want_n, row["v"]
    finally:
        s.raw.close()
