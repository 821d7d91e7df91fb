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
   confidence sequence from the counts.
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


if __name__ == "__main__":
    main()
