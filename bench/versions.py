"""Benchmark of the monitor with many versions of one model.

Run: ``.venv/bin/python bench/versions.py [--versions 1 100 1000] [--windows W]
[--rows-per-version R] [--idle-versions I]``

No Kafka: a :class:`~driftline.streams.monitor.Monitor` is driven directly on a real
chDB store (as ``tests/test_monitor.py`` does). One model, one reference profile
(which every version uses, as versions without their own profile do), 1-minute windows,
2 numeric features. For each version count ``V`` the stream is replayed window by window:
the ``R`` rows of each of the ``V`` versions in window ``k`` are stored, then one event
moves the model's watermark past window ``k``'s end plus the allowed lateness and the
monitor ticks once, closing window ``k`` of every version. ``--idle-versions`` adds
versions that send rows in the first window only (they must cost nothing afterwards).

Prints per version count: windows closed, monitor seconds (ticks only, not the inserts),
windows closed per second, store calls per tick, and the ratio of windows/s to the
1-version case of the same run (1.0 = the cost of a window does not depend on how many
versions there are).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from driftline.streams.ingest import RawMessage, route_messages
from driftline.streams.monitor import Monitor, load_monitors

from driftline.backtest import reference_profile
from driftline.store import EmbeddedStore, migrate
from driftline.store.profiles import save_profile
from driftline.store.rows import KafkaPosition

TOPIC = "b.predictions"
WINDOW = 60.0
LATENESS = 10.0
T0 = 1_767_225_600.0
MONITOR = (
    "model_id: m\ntask: binary_classification\nfeatures: {x1: numeric, x2: numeric}\n"
    "window: 1m\nallowed_lateness: 10s\n"
)


class CountingStore:
    """A store that counts the calls made through it (and forwards them)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.calls = 0

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        self.calls += 1
        return self.store.query(sql, parameters)  # type: ignore[no-any-return]

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        self.calls += 1
        self.store.command(sql, parameters)

    def insert_arrow(self, table: str, data: pa.Table) -> None:
        self.calls += 1
        self.store.insert_arrow(table, data)

    def close(self) -> None:
        self.store.close()


def _batch(version: str, start: float, rows: int, rng: np.random.Generator, tag: str) -> bytes:
    times = (start + rng.uniform(0, WINDOW - 1, rows)).round(3).tolist()
    return orjson.dumps(
        {
            "type": "prediction_batch",
            "model_id": "m",
            "model_version": version,
            "event_ids": [f"{version}-{tag}-{i}" for i in range(rows)],
            "timestamps": times,
            "features": {
                "x1": rng.normal(0, 1, rows).round(4).tolist(),
                "x2": rng.normal(0, 1, rows).round(4).tolist(),
            },
            "predictions": rng.integers(0, 2, rows).tolist(),
            "scores": rng.uniform(0, 1, rows).round(4).tolist(),
        }
    )


def _reference(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    path = folder / "ref.jsonl"
    path.write_bytes(_batch("ref", T0 - 3600, 2000, rng, "r") + b"\n")
    return path


def run(versions: int, windows: int, rows: int, idle: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        monitors = folder / "monitors"
        monitors.mkdir()
        (monitors / "m.yaml").write_text(MONITOR)
        raw = EmbeddedStore(folder / "db", "driftline")
        migrate(raw)
        _, profile = reference_profile(monitors / "m.yaml", _reference(folder))
        save_profile(raw, profile)
        store = CountingStore(raw)

        async def sink(key: str, value: bytes) -> None:
            return None

        monitor = Monitor(
            store,  # type: ignore[arg-type]
            threading.Lock(),
            load_monitors(monitors),
            predictions_topic=TOPIC,
            idle_seconds=1e9,
            horizon_seconds=3600.0,
            send_alert=sink,
            send_request=sink,
            late_check_seconds=1e9,  # boundary passes only after the first
            settle_seconds=0.0,
        )
        rng = np.random.default_rng(1)
        offset = 0

        def ingest(lines: list[bytes]) -> None:
            nonlocal offset
            messages = []
            for line in lines:
                messages.append(RawMessage(line, KafkaPosition(TOPIC, 0, offset)))
                offset += 1
            outcome = route_messages(messages, 1 << 30)
            if outcome.predictions is not None:
                raw.insert_arrow("predictions", outcome.predictions)

        names = [f"v{i:05d}" for i in range(versions)]
        idle_names = [f"idle{i:05d}" for i in range(idle)]
        seconds, calls = 0.0, 0
        for k in range(windows):
            start = T0 + k * WINDOW
            lines = [_batch(v, start, rows, rng, str(k)) for v in names]
            if k == 0:
                lines += [_batch(v, start, rows, rng, "0") for v in idle_names]
            # moves the watermark past window k's end + lateness (lies in window k + 1)
            clock = orjson.dumps(
                {
                    "type": "prediction",
                    "event_id": f"clock-{k}",
                    "model_id": "m",
                    "model_version": names[0],
                    "timestamp": start + WINDOW + LATENESS,
                    "features": {},
                    "prediction": 0,
                }
            )
            ingest([*lines, clock])
            before = store.calls
            began = time.perf_counter()
            asyncio.run(monitor.tick())
            seconds += time.perf_counter() - began
            calls += store.calls - before
        closed = monitor.windows_closed
        expected = versions * windows + idle
        raw.close()
        if closed != expected:
            raise SystemExit(f"closed {closed} windows, expected {expected}")
        return {
            "closed": closed,
            "seconds": seconds,
            "per_second": closed / seconds,
            "calls_per_tick": calls / windows,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--rows-per-version", type=int, default=3)
    parser.add_argument("--idle-versions", type=int, default=0)
    args = parser.parse_args()
    counts = sorted(set(args.versions) | {1})
    base = None
    print(
        f"windows={args.windows} rows/version/window={args.rows_per_version} "
        f"idle versions={args.idle_versions}"
    )
    print(
        f"{'versions':>9} {'closed':>7} {'seconds':>8} {'windows/s':>10} "
        f"{'calls/tick':>10} {'ratio':>6}"
    )
    for n in counts:
        got = run(n, args.windows, args.rows_per_version, args.idle_versions)
        if base is None:
            base = got["per_second"]
        print(
            f"{n:>9} {int(got['closed']):>7} {got['seconds']:>8.2f} {got['per_second']:>10.1f} "
            f"{got['calls_per_tick']:>10.1f} {got['per_second'] / base:>6.2f}"
        )


if __name__ == "__main__":
    main()
