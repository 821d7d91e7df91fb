"""Benchmark of the monitoring core.

Run: ``.venv/bin/python bench/detectors.py [--rows N] [--features K] [--repeat R]``

Prints (best of ``--repeat`` runs, one process, one thread):

* the time to profile a reference of N rows x K numeric features;
* the time to aggregate a window of N rows x K features over the frozen bins, and to
  score it (drift statistics with Benjamini-Hochberg, quality, the report);
* the per-update cost of each online concept-drift detector.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np
from driftline.detectors import (
    DETECTORS,
    RIVER_VERSION,
    aggregate_window,
    build_profile,
    evaluate_window,
    get_detector,
)
from driftline.schemas.monitor import MonitorConfig

T = TypeVar("T")


def _best(fn: Callable[[], T], repeat: int) -> tuple[float, T]:
    """Best wall time of ``repeat`` calls, and the last result."""
    best = float("inf")
    out = fn()
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def bench_window(rows: int, features: int, repeat: int) -> None:
    rng = np.random.default_rng(0)
    names = [f"f{i:02d}" for i in range(features)]
    reference = {n: rng.normal(size=rows) for n in names}
    window = {n: rng.normal(0.75 if n == "f00" else 0.0, 1.0, rows) for n in names}
    config = MonitorConfig(model_id="bench", features=dict.fromkeys(names, "numeric"))

    t_profile, profile = _best(
        lambda: build_profile("bench", "v1", features=reference, kinds=config.features), repeat
    )
    t_agg, data = _best(lambda: aggregate_window(profile, features=window), repeat)
    t_eval, report = _best(
        lambda: evaluate_window(profile, config, data, window_start=0.0, window_end=3600.0),
        repeat,
    )
    bad = sorted({r.feature or "" for r in report.bad_rows()})
    print(f"window: {rows:,} rows x {features} numeric features (drifted: f00 by 0.75 sigma)")
    print(f"  profile reference          {t_profile * 1e3:9.1f} ms")
    print(f"  aggregate window (bins)    {t_agg * 1e3:9.1f} ms")
    print(f"  score window (evaluate)    {t_eval * 1e3:9.1f} ms")
    print(f"  score = aggregate+evaluate {(t_agg + t_eval) * 1e3:9.1f} ms   (target <= 1000 ms)")
    print(f"  profile + score            {(t_profile + t_agg + t_eval) * 1e3:9.1f} ms")
    print(f"  flagged features: {bad}")


def bench_online(updates: int, repeat: int) -> None:
    rng = np.random.default_rng(1)
    errors = (rng.random(updates) < 0.2).astype(np.float64)
    print(f"online detectors (river {RIVER_VERSION}), 0/1 error stream:")
    for name in sorted(DETECTORS):
        n = updates if name != "kswin" else max(updates // 20, 1000)
        stream = errors[:n]
        t, _ = _best(lambda: get_detector(name).update_many(stream), repeat)  # noqa: B023
        print(f"  {name:<13} {t / n * 1e6:9.2f} us/update   ({n:,} updates)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--updates", type=int, default=200_000)
    args = parser.parse_args()
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}")
    bench_window(args.rows, args.features, args.repeat)
    bench_online(args.updates, args.repeat)


if __name__ == "__main__":
    main()
