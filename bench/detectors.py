"""Benchmark of the monitoring core.

Run: ``.venv/bin/python bench/detectors.py [--rows N] [--features K] [--repeat R]``

Prints (best of ``--repeat`` runs, one process, one thread):

* the time to profile a reference of N rows x K numeric features;
* the time to aggregate a window of N rows x K features over the frozen bins, and to
  score it (drift statistics with Benjamini-Hochberg, quality, the report);
* the cost of segments: the same window with 20 values of one segment key, each a
  slice of its own, next to the unsegmented window, in numpy (aggregate + evaluate) and
  pushed down to chDB (``windows_aggregates``: every slice in the same pass), with the
  ratios (aim: under 3x);
* the added cost of label-free estimation (CBPE) and of multivariate (PCA) drift on the
  same window, in numpy and pushed down to chDB, next to the window without them;
* the per-update cost of each online concept-drift detector.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import numpy as np
from driftline.detectors import (
    DETECTORS,
    RIVER_VERSION,
    aggregate_window,
    build_profile,
    evaluate_window,
    get_detector,
)
from driftline.detectors.reference import monitor_profile
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


#: The bench window's start (2026-01-01T00:00:00Z); its rows spread over one hour.
START = 1_767_225_600.0


def _store_rows(
    store: Any,
    at: np.ndarray,
    rows: int,
    window: dict[str, np.ndarray],
    predictions: np.ndarray,
    **extra: Any,
) -> None:
    """Insert rows ``at`` of a one-hour window of ``rows`` rows as one batch."""
    from driftline.schemas.codec import PredictionColumns

    from driftline.store.rows import KafkaPosition, PredictionRows

    batch = PredictionRows()
    batch.add(
        PredictionColumns(
            model_id="bench",
            model_version="v1",
            event_ids=np.array([f"e{j}" for j in at.tolist()], dtype=object),
            timestamps=START + at * (3600.0 / rows),
            numeric={n: values[at] for n, values in window.items()},
            categorical={},
            prediction_value=predictions[at].astype(float),
            prediction_class=None,
            **extra,
        ),
        KafkaPosition("bench", 0, int(at[0]) if at.size else 0),
    )
    store.insert_arrow("predictions", batch.build())


def bench_segments(rows: int, features: int, values: int, repeat: int) -> None:
    """Whole model alone, then the whole model and ``values`` slices of one key."""
    import tempfile
    from pathlib import Path

    from driftline.store import EmbeddedStore, migrate
    from driftline.store.aggregates import windows_aggregates

    rng = np.random.default_rng(2)
    names = [f"f{i:02d}" for i in range(features)]
    kinds = dict.fromkeys(names, "numeric")
    ref_rows = 200_000
    countries = np.array([f"c{i:02d}" for i in range(values)])
    ref_segments = countries[rng.integers(0, values, ref_rows)]
    plain = MonitorConfig(model_id="bench", features=kinds)
    sliced = plain.model_copy(
        update={"segments": plain.model_validate({"model_id": "b", "features": kinds,
            "segments": {"keys": ["country"], "max_values": values}}).segments}
    )  # fmt: skip
    reference = {n: rng.normal(size=ref_rows) for n in names}
    ref_predictions = rng.integers(0, 2, ref_rows)
    stamps = np.linspace(0.0, 3600.0 * 4, ref_rows, endpoint=False) + 1_767_225_600.0
    profiles = {
        config_name: monitor_profile(
            config, "v1", features=reference, timestamps=stamps, predictions=ref_predictions,
            labels=rng.integers(0, 2, ref_rows), segments={"country": ref_segments},
        )
        for config_name, config in (("plain", plain), ("sliced", sliced))
    }  # fmt: skip
    window = {n: rng.normal(size=rows) for n in names}
    segments = countries[rng.integers(0, values, rows)]
    predictions = rng.integers(0, 2, rows)
    labels = rng.integers(0, 2, rows).astype(float)
    times = {}
    for config_name, config in (("plain", plain), ("sliced", sliced)):
        profile = profiles[config_name]
        t_agg, data = _best(
            partial(aggregate_window, profile, features=window, predictions=predictions,
                    labels=labels, segments={"country": segments}),
            repeat,
        )  # fmt: skip
        t_eval, _ = _best(
            partial(evaluate_window, profile, config, data, window_start=0.0, window_end=3600.0),
            repeat,
        )
        times[config_name] = (t_agg, t_eval)
    with tempfile.TemporaryDirectory() as folder:
        store = EmbeddedStore(Path(folder) / "db", "bench")
        migrate(store)
        order = np.argsort(segments, kind="stable")
        bounds = np.searchsorted(segments[order], countries)
        bounds = np.append(bounds, rows)
        start = START
        for i, country in enumerate(countries.tolist()):
            at = order[bounds[i] : bounds[i + 1]]
            _store_rows(store, at, rows, window, predictions, segment={"country": country})
        pushed = {}
        for config_name in ("plain", "sliced"):
            profile = profiles[config_name]
            pushed[config_name], _ = _best(
                partial(windows_aggregates, store, profile, model_id="bench",
                        model_version="v1", starts=[start], size=3600.0),
                max(1, repeat - 1),
            )  # fmt: skip
        store.close()
    (pa, pe), (sa, se) = times["plain"], times["sliced"]
    print(f"segments: {rows:,} rows x {features} numeric features, 1 key x {values} values")
    pp, ps = pushed["plain"], pushed["sliced"]
    for label, whole, both in (
        ("numpy aggregate", pa, sa),
        ("evaluate", pe, se),
        ("numpy total", pa + pe, sa + se),
        ("chDB pushdown", pp, ps),
    ):
        print(
            f"  {label:<17} whole {whole * 1e3:8.1f} ms   + slices {both * 1e3:8.1f} ms"
            f"   x{both / whole:.2f}"
        )
    print("  (aim: under 3x the unsegmented cost)")


def bench_label_free(rows: int, features: int, repeat: int) -> None:
    """The window's aggregation with and without estimation and PCA drift."""
    import tempfile
    from pathlib import Path

    from driftline.store import EmbeddedStore, migrate
    from driftline.store.aggregates import windows_aggregates

    rng = np.random.default_rng(3)
    names = [f"f{i:02d}" for i in range(features)]
    kinds = dict.fromkeys(names, "numeric")
    ref_rows = 100_000
    base = rng.normal(size=ref_rows)
    reference = {n: base * 0.7 + rng.normal(size=ref_rows) for n in names}
    ref_scores = 1 / (1 + np.exp(-2 * reference[names[0]]))
    ref_labels = (rng.random(ref_rows) < ref_scores).astype(int)
    stamps = np.linspace(0.0, 3600.0 * 4, ref_rows, endpoint=False) + 1_767_225_600.0
    plain = MonitorConfig(model_id="bench", features=kinds)
    both = MonitorConfig.model_validate(
        {"model_id": "bench", "features": kinds, "drift": {"multivariate": {}},
         "performance": {"estimation": {}}}
    )  # fmt: skip
    profiles = {
        name: monitor_profile(
            config, "v1", features=reference, timestamps=stamps,
            predictions=(ref_scores >= 0.5).astype(int), scores=ref_scores, labels=ref_labels,
        )
        for name, config in (("plain", plain), ("both", both))
    }  # fmt: skip
    wbase = rng.normal(size=rows)
    window = {n: wbase * 0.7 + rng.normal(size=rows) for n in names}
    scores = 1 / (1 + np.exp(-2 * window[names[0]]))
    predictions = (scores >= 0.5).astype(int)
    numpy_times = {}
    for name, profile in profiles.items():
        numpy_times[name], _ = _best(
            partial(aggregate_window, profile, features=window, predictions=predictions,
                    scores=scores),
            repeat,
        )  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        store = EmbeddedStore(Path(folder) / "db", "bench")
        migrate(store)
        start = START
        step = 100_000
        for lo in range(0, rows, step):
            at = np.arange(lo, min(rows, lo + step))
            _store_rows(store, at, rows, window, predictions, score=scores[at])
        pushed = {}
        for name, profile in profiles.items():
            pushed[name], _ = _best(
                partial(windows_aggregates, store, profile, model_id="bench",
                        model_version="v1", starts=[start], size=3600.0),
                max(1, repeat - 1),
            )  # fmt: skip
        store.close()
    model = profiles["both"].multivariate
    kept = len(model.components) if model is not None else 0
    print(
        f"label-free: {rows:,} rows x {features} numeric features, CBPE + PCA drift"
        f" ({kept} of {features} components)"
    )
    for label, times in (("numpy aggregate", numpy_times), ("chDB pushdown", pushed)):
        added = times["both"] - times["plain"]
        print(
            f"  {label:<17} without {times['plain'] * 1e3:8.1f} ms   with"
            f" {times['both'] * 1e3:8.1f} ms   added {added * 1e3:8.1f} ms"
            f"   x{times['both'] / times['plain']:.2f}"
        )


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
    parser.add_argument("--segment-values", type=int, default=20)
    args = parser.parse_args()
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}")
    bench_window(args.rows, args.features, args.repeat)
    bench_segments(args.rows, args.features, args.segment_values, args.repeat)
    bench_label_free(args.rows, args.features, args.repeat)
    bench_online(args.updates, args.repeat)


if __name__ == "__main__":
    main()
