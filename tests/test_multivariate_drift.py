"""Multivariate (PCA reconstruction) drift through the backtest and the stream.

The issue's cases: a correlation flip between two features with unchanged marginals
raises ``multivariate_drift`` within one window and no univariate ``data_drift``; no
drift over 100 windows raises no critical ``multivariate_drift``; the stream equals the
backtest.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from backtest_streams import START, Stream, backtest, iso_at, json_lines, simulate

HOUR = 3600.0
MULTIVARIATE = "drift: {multivariate: {method: pca, variance: 0.65}}\n"


def correlated(stream: Stream, seed: int, flip_from: int | None, size: float = HOUR) -> Stream:
    """``x3`` follows ``x2`` (correlation 0.9); from window ``flip_from`` on it follows
    ``-x2``: its marginal (standard normal) never changes."""
    rng = np.random.default_rng(seed)
    window = np.floor((stream.timestamps - stream.timestamps.min()) / size)
    sign = np.ones(stream.rows) if flip_from is None else np.where(window >= flip_from, -1.0, 1.0)
    noise = np.sqrt(1 - 0.81) * rng.normal(size=stream.rows)
    stream.features["x3"][:] = np.round(sign * 0.9 * stream.features["x2"] + noise, 4)
    return stream


def _run(tmp_path: Path, reference: Stream, events: Stream, **yaml: str) -> Path:
    return backtest(tmp_path, reference, events, extra=MULTIVARIATE, batch_size=500, **yaml).out


def test_a_correlation_flip_raises_multivariate_drift_in_its_window_and_no_data_drift(
    tmp_path: Path,
) -> None:
    reference = correlated(
        simulate(n_windows=6, per_window=2_000, n_numeric=4, seed=1, id_prefix="r",
                 start=START - 6 * HOUR),
        seed=11, flip_from=None,
    )  # fmt: skip
    events = correlated(
        simulate(n_windows=6, per_window=2_000, n_numeric=4, seed=2), seed=12, flip_from=3
    )
    out = _run(tmp_path, reference, events)
    alerts = json_lines(out / "alerts.jsonl")
    assert [(a["kind"], a["severity"], a["window_start"]) for a in alerts] == [
        ("multivariate_drift", "critical", iso_at(3))
    ]
    rows = [r for r in json_lines(out / "metrics.jsonl") if r["kind"] == "multivariate_drift"]
    assert [r["status"] for r in rows] == ["ok"] * 3 + ["critical"] * 3
    assert all(r["metric"] == "pca_reconstruction_error" and r["feature"] is None for r in rows)
    assert min(r["value"] for r in rows[3:]) > 2 * max(r["value"] for r in rows[:3])


def test_no_drift_over_100_windows_raises_no_critical_multivariate_drift(
    tmp_path: Path,
) -> None:
    reference = correlated(
        simulate(n_windows=12, per_window=1_000, n_numeric=6, seed=3, id_prefix="r",
                 start=START - 12 * HOUR),
        seed=13, flip_from=None,
    )  # fmt: skip
    events = correlated(
        simulate(n_windows=100, per_window=500, n_numeric=6, seed=4), seed=14, flip_from=None
    )
    out = _run(tmp_path, reference, events)
    rows = [r for r in json_lines(out / "metrics.jsonl") if r["kind"] == "multivariate_drift"]
    assert len(rows) == 100 and all(r["status"] != "insufficient" for r in rows)
    assert [r for r in rows if r["status"] == "critical"] == []
    alerts = json_lines(out / "alerts.jsonl")
    assert [
        a for a in alerts if a["kind"] == "multivariate_drift" and a["severity"] == "critical"
    ] == []


def test_the_stream_gives_the_backtest_multivariate_rows_per_segment(tmp_path: Path) -> None:
    from test_monitor import assert_same_metrics, streamed

    mix = {"de": 0.6, "fr": 0.4}
    reference = correlated(
        simulate(n_windows=3, per_window=2_000, n_numeric=4, seed=5, id_prefix="r",
                 window_seconds=60.0, start=START - 3600, segments=mix,
                 categorical={"channel": {"web": 0.7, "app": 0.3}}),
        seed=15, flip_from=None, size=60.0,
    )  # fmt: skip
    events = correlated(
        simulate(n_windows=5, per_window=2_000, n_numeric=4, seed=6, window_seconds=60.0,
                 segments=mix, categorical={"channel": {"web": 0.7, "app": 0.3}}),
        seed=16, flip_from=3, size=60.0,
    )  # fmt: skip
    run = backtest(
        tmp_path,
        reference,
        events,
        extra=MULTIVARIATE + "segments: {keys: [country]}\n",
        batch_size=500,
        window="1m",
        allowed_lateness="10s",
    )
    monitor, ref_path, events_path, out = run.monitor, run.reference, run.events, run.out
    want = run.alerts()
    assert {(a["kind"], json.dumps(a["segment"])) for a in want} >= {
        ("multivariate_drift", "null"),
        ("multivariate_drift", '{"country": "de"}'),
    }
    lines = events_path.read_bytes().splitlines()
    clock = float(events.timestamps.max()) + 60 + 10 + 60
    with streamed(tmp_path, monitor, ref_path, lines, clock) as h:
        got = h.metrics()
        # the whole model, de and fr in each of 5 windows (_other holds no rows)
        assert sum(r["kind"] == "multivariate_drift" for r in got) == 5 * 3
        assert_same_metrics(got, out)
        assert [a["alert_id"] for a in h.sent["alerts"]] == [a["alert_id"] for a in want]
