"""Benchmark of the rollout statistics (driftline.detectors.rollout).

Run: ``.venv/bin/python bench/rollout.py [--seeds 200] [--window 100] [--margin 0.01]``

Shadow (paired) comparisons with a base accuracy of about 0.90, checked after every
window of ``--window`` labelled pairs, ``alpha = 0.05``:

1. labelled pairs until a challenger 3 accuracy points better is promoted, and until one
   3 points worse is rejected (median and 90th percentile over seeds), next to the pairs
   a fixed-horizon one-sided paired z-test needs for the same power (the share of seeds
   the anytime test decided correctly within the simulated stream);
2. equal versions checked after every window: how often the interval ever excludes the
   true difference (0), for the anytime sequence and for a naive 95% Wald interval, and
   how often each rejects a challenger that is as good as the champion;
3. the per-window cost of the comparison on a 1,000,000-event window: counting the
   disagreements of both versions' predictions with the labels (numpy) and the
   confidence sequence from the counts;
4. the same window's whole evidence as the two shells compute it: the backtest's
   ``window_evidence`` (event-id join of served and shadow rows, labels, latencies, in
   numpy) and the stream's ``window_evidence_sql`` pushed down to chDB (``--events``
   served predictions, as many shadow ones and labels, stored first).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from driftline.detectors.rollout import PairedCounts, bernoulli_sequence, paired_sequence
from scipy.stats import norm

ALPHA = 0.05
#: P(only the challenger is right), P(only the champion is right) for each case.
CASES = {"better (+3 points)": (0.07, 0.04), "worse (-3 points)": (0.04, 0.07)}


def _streams(p10: float, p01: float, seeds: int, windows: int, size: int, seed: int) -> tuple:
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(size, [p10, p01, 1 - p10 - p01], size=(seeds, windows))
    n = np.cumsum(np.full((seeds, windows), size), axis=1)
    return n, np.cumsum(draws[..., 0], axis=1), np.cumsum(draws[..., 1], axis=1)


def _bounds(n: np.ndarray, s10: np.ndarray, s01: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = bernoulli_sequence(
        np.concatenate([s10.ravel(), s01.ravel()]),
        np.concatenate([n.ravel(), n.ravel()]),
        ALPHA / 2,
    )
    k = n.size
    return (lo[:k] - hi[k:]).reshape(n.shape), (hi[:k] - lo[k:]).reshape(n.shape)


def _first(hit: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Pairs at the first window where ``hit`` holds (NaN when never)."""
    index = np.argmax(hit, axis=1)
    found = hit.any(axis=1)
    return np.where(found, n[np.arange(n.shape[0]), index], np.nan)


def _fixed_horizon(p10: float, p01: float, margin: float, power: float) -> float:
    """Pairs a one-sided paired z-test at level alpha needs for ``power``."""
    d = p10 - p01
    sigma = np.sqrt(p10 + p01 - d**2)
    effect = abs(d + margin)
    return float(((norm.ppf(1 - ALPHA) + norm.ppf(power)) * sigma / effect) ** 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--window", type=int, default=100, help="labelled pairs per window")
    parser.add_argument("--windows", type=int, default=400, help="windows per stream")
    parser.add_argument("--margin", type=float, default=0.01)
    parser.add_argument("--events", type=int, default=1_000_000, help="events of part 4")
    args = parser.parse_args()
    m = args.margin
    print(
        f"shadow rollout, alpha {ALPHA}, margin {m}, {args.window} pairs per window, "
        f"{args.seeds} seeds, up to {args.windows * args.window:,} pairs"
    )
    for case, (p10, p01) in CASES.items():
        n, s10, s01 = _streams(p10, p01, args.seeds, args.windows, args.window, seed=7)
        lower, upper = _bounds(n, s10, s01)
        good = lower > -m if p10 > p01 else upper < -m
        needed = _first(good, n)
        power = float(np.mean(np.isfinite(needed)))
        fixed = _fixed_horizon(p10, p01, m, min(max(power, 0.5), 0.99))
        print(
            f"  {case}: pairs to decide, median {np.nanmedian(needed):,.0f}, "
            f"p90 {np.nanpercentile(needed, 90):,.0f} (decided in {power:.1%} of seeds); "
            f"fixed-horizon z-test of the same power: {fixed:,.0f} pairs, "
            f"ratio {np.nanmedian(needed) / fixed:.2f}"
        )
    n, s10, s01 = _streams(0.06, 0.06, args.seeds * 10, 40, args.window, seed=8)
    lower, upper = _bounds(n, s10, s01)
    anytime = float(np.mean(np.any(upper < -m, axis=1)))
    anytime_miss = float(np.mean(np.any((lower > 0) | (upper < 0), axis=1)))
    d = (s10 - s01) / n
    half = norm.ppf(1 - ALPHA / 2) * np.sqrt(((s10 + s01) / n - d**2) / n)
    naive_reject = float(np.mean(np.any(d + half < -m, axis=1)))
    naive_miss = float(np.mean(np.any(np.abs(d) > half, axis=1)))
    print(
        f"  equal versions, checked after each of 40 windows: the interval ever excludes "
        f"the true difference in {anytime_miss:.3f} of streams (naive 95% Wald: "
        f"{naive_miss:.3f}); wrong rejections at margin {m}: {anytime:.3f} (naive: "
        f"{naive_reject:.3f}); alpha {ALPHA}"
    )
    rng = np.random.default_rng(9)
    size = 1_000_000
    labels = rng.integers(0, 2, size)
    champion = np.where(rng.random(size) < 0.9, labels, 1 - labels)
    challenger = np.where(rng.random(size) < 0.92, labels, 1 - labels)
    times = []
    for _ in range(5):
        started = time.perf_counter()
        ch_right, cp_right = challenger == labels, champion == labels
        counts = PairedCounts(
            n=size,
            challenger_only=int(np.count_nonzero(ch_right & ~cp_right)),
            champion_only=int(np.count_nonzero(cp_right & ~ch_right)),
        )
        paired_sequence(counts)
        times.append(time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(100):
        paired_sequence(counts)
    cs_ms = (time.perf_counter() - started) * 10
    print(
        f"  per-window cost on {size:,} events: {np.median(times) * 1000:.1f} ms "
        f"(counting in numpy; the sequence from the counts: {cs_ms:.2f} ms)"
    )
    _evidence_costs(args.events)


def _evidence_costs(size: int) -> None:
    """Part 4: one shadow window's evidence in numpy and in chDB."""
    import tempfile
    from pathlib import Path

    from driftline.detectors.comparison import VersionScores, WindowLabels, window_evidence
    from driftline.schemas.codec import FeedbackColumns, PredictionColumns

    from driftline.store import EmbeddedStore, migrate
    from driftline.store.rollouts import window_evidence_sql
    from driftline.store.rows import FeedbackRows, KafkaPosition, PredictionRows

    rng = np.random.default_rng(10)
    start = 1_767_225_600.0
    ids = np.array([f"e{i:09d}" for i in range(size)], dtype=object)
    times = start + np.sort(rng.uniform(0, 3000, size))
    labels = rng.integers(0, 2, size)
    said = {
        v: np.where(rng.random(size) < acc, labels, 1 - labels).astype(np.float64)
        for v, acc in (("v1", 0.90), ("v2", 0.92))
    }
    latency = {v: rng.lognormal(2.3, 0.2, size) for v in ("v1", "v2")}
    strings = ids.astype(str)
    champion = VersionScores(
        strings, said["v1"].astype(int).astype(str), np.ones(size, bool), latency["v1"]
    )
    challenger = VersionScores(
        strings, said["v2"].astype(int).astype(str), np.zeros(size, bool), latency["v2"]
    )
    window_labels = WindowLabels(strings, labels.astype(str), times + 60)
    numpy_times = []
    for _ in range(3):
        started = time.perf_counter()
        window_evidence(champion, challenger, window_labels, label_deadline=start + 4200)
        numpy_times.append(time.perf_counter() - started)
    with tempfile.TemporaryDirectory() as folder:
        store = EmbeddedStore(Path(folder) / "chdb", "driftline")
        migrate(store)
        started = time.perf_counter()
        for version, shadow in (("v1", False), ("v2", True)):
            rows = PredictionRows()
            rows.add(
                PredictionColumns(
                    model_id="m",
                    model_version=version,
                    event_ids=ids,
                    timestamps=times,
                    numeric={},
                    categorical={},
                    prediction_value=said[version],
                    prediction_class=None,
                    latency_ms=latency[version],
                    shadow=shadow,
                ),
                KafkaPosition("p", 0, int(shadow)),
            )
            table = rows.build_shadow() if shadow else rows.build()
            store.insert_arrow("shadow_predictions" if shadow else "predictions", table)
        feedback = FeedbackRows()
        feedback.add(
            FeedbackColumns(
                model_id="m",
                event_ids=ids,
                timestamps=times + 60,
                label_value=labels.astype(np.float64),
                label_class=None,
            ),
            KafkaPosition("f", 0, 0),
        )
        store.insert_arrow("feedback", feedback.build())
        load = time.perf_counter() - started
        sql_times = []
        for _ in range(3):
            started = time.perf_counter()
            window_evidence_sql(
                store,
                model_id="m",
                champion="v1",
                challenger="v2",
                window_start=start,
                window_end=start + 3600,
                label_deadline=start + 4200,
            )
            sql_times.append(time.perf_counter() - started)
        store.close()
    print(
        f"  whole evidence of a shadow window of {size:,} events (served + shadow + labels):"
        f" numpy (backtest) {np.median(numpy_times) * 1000:,.0f} ms, chDB (stream)"
        f" {np.median(sql_times) * 1000:,.0f} ms (median of 3; storing the rows took"
        f" {load:.1f} s)"
    )


if __name__ == "__main__":
    main()
