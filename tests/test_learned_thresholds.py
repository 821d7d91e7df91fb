"""Performance thresholds learned from the reference, through the backtest and the core.

The issue's cases: accuracy 0.94 falling to 0.915 at 5,000 labels per window, and a
regression model whose MAE grows by 30%, alert in the first changed window with the
defaults; 200 unchanged windows at 500, 2,000 and 10,000 labels raise no performance
alert; explicit drops keep their meaning.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from backtest_streams import START, monitor_yaml, simulate, write_jsonl
from driftline.detectors.evaluate import WindowData, evaluate_window
from driftline.detectors.performance import BinaryCounts
from driftline.schemas.monitor import MonitorConfig, MonitorConfigError

from driftline.backtest import reference_profile, run_backtest

HOUR = 3600.0


def _at(window: int) -> str:
    from datetime import UTC, datetime

    stamp = datetime.fromtimestamp(START + window * HOUR, tz=UTC)
    return stamp.isoformat().replace("+00:00", "Z")


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _performance_alerts(out: Path) -> list[tuple[str, str, str]]:
    return [
        (a["window_start"], a["severity"], a["statistic"])
        for a in _lines(out / "alerts.jsonl")
        if a["kind"] == "performance"
    ]


def test_accuracy_falling_from_094_to_0915_alerts_in_the_first_changed_window(
    tmp_path: Path,
) -> None:
    reference = simulate(n_windows=8, per_window=5_000, accuracy=0.94, seed=21, id_prefix="r")
    events = simulate(
        n_windows=8, per_window=5_000, accuracy=0.94, accuracy_change=(4, 0.915), seed=22
    )
    ref = write_jsonl(reference, tmp_path / "reference.jsonl", batch_size=5_000)
    ev = write_jsonl(events, tmp_path / "events.jsonl", batch_size=5_000)
    outcomes = {}
    for name, extra in (("auto", ""), ("fixed", "performance: {threshold: fixed}\n")):
        monitor = tmp_path / f"{name}.yaml"
        monitor.write_text(monitor_yaml(events, extra=extra))
        run_backtest(monitor, ref, ev, tmp_path / name)
        outcomes[name] = _performance_alerts(tmp_path / name)
    # learned: the alert opens in the first changed window (and stays open), none before
    learned = outcomes["auto"]
    assert {at for at, _, _ in learned} == {_at(4)}
    assert (_at(4), "critical", "accuracy") in learned
    # the fixed 0.03 drop of before stays silent at a 0.025 fall
    assert outcomes["fixed"] == []
    # each window's row carries the drop it was judged by, smaller than the fixed one
    rows = [
        m
        for m in _lines(tmp_path / "auto" / "metrics.jsonl")
        if m["kind"] == "performance" and m["metric"] == "accuracy"
    ]
    assert all(0.01 < m["threshold"] < 0.03 for m in rows if m["status"] == "ok")
    assert all(m["status"] == "critical" for m in rows[4:])


def _regression_lines(
    rng: np.random.Generator, windows: int, per_window: int, scale: list[float], prefix: str
) -> list[bytes]:
    lines = []
    for w in range(windows):
        x = rng.normal(size=per_window)
        label = 2.0 * x + rng.normal(0, 0.1, per_window)
        prediction = label + rng.normal(0, scale[w], per_window)
        times = START + w * HOUR + np.sort(rng.uniform(0, HOUR - 1, per_window))
        ids = [f"{prefix}{w}-{i}" for i in range(per_window)]
        common = {"model_id": "r", "model_version": "v1"}
        lines.append(
            orjson.dumps(
                {
                    "type": "prediction_batch",
                    **common,
                    "event_ids": ids,
                    "timestamps": times.round(3).tolist(),
                    "features": {"x": x.round(6).tolist()},
                    "predictions": prediction.round(6).tolist(),
                }
            )
        )
        lines.append(
            orjson.dumps(
                {
                    "type": "feedback_batch",
                    "model_id": "r",
                    "event_ids": ids,
                    "timestamps": (times + 60).round(3).tolist(),
                    "labels": label.round(6).tolist(),
                }
            )
        )
    return lines


def test_mae_growing_by_30_percent_alerts_in_the_first_changed_window(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    ref = tmp_path / "reference.jsonl"
    ref.write_bytes(b"\n".join(_regression_lines(rng, 8, 5_000, [1.0] * 8, "r")) + b"\n")
    ev = tmp_path / "events.jsonl"
    ev.write_bytes(b"\n".join(_regression_lines(rng, 8, 5_000, [1.0] * 4 + [1.3] * 4, "e")))
    monitor = tmp_path / "monitor.yaml"
    monitor.write_text(
        "model_id: r\ntask: regression\nfeatures: {x: numeric}\nwindow: 1h\nallowed_lateness: 10m\n"
    )
    run_backtest(monitor, ref, ev, tmp_path / "out")
    alerts = _performance_alerts(tmp_path / "out")
    assert {at for at, _, _ in alerts} == {_at(4)}
    assert (_at(4), "critical", "mae") in alerts
    mae = [
        m
        for m in _lines(tmp_path / "out" / "metrics.jsonl")
        if m["kind"] == "performance" and m["metric"] == "mae"
    ]
    assert [m["status"] for m in mae] == ["ok"] * 4 + ["critical"] * 4


@pytest.mark.parametrize("labels", [500, 2_000, 10_000])
def test_200_unchanged_windows_raise_no_performance_alert(tmp_path: Path, labels: int) -> None:
    """The core step itself (as the stream and the backtest run it), 200 windows of
    ``labels`` labels drawn as the reference was."""
    reference = simulate(n_windows=20, per_window=5_000, accuracy=0.94, seed=31, n_numeric=1)
    ref = write_jsonl(reference, tmp_path / "reference.jsonl", batch_size=5_000)
    monitor = tmp_path / "monitor.yaml"
    monitor.write_text(monitor_yaml(reference))
    config, profile = reference_profile(monitor, ref)
    assert config.performance.threshold == "auto" and "accuracy" in profile.performance_spread
    rng = np.random.default_rng(labels)
    statuses = []
    for w in range(200):
        predictions = rng.integers(0, 2, labels)
        right = rng.random(labels) < 0.94
        data = WindowData(
            n_events=labels,
            performance=BinaryCounts.from_arrays(
                predictions, np.where(right, predictions, 1 - predictions)
            ),
        )
        report = evaluate_window(
            profile, config, data, window_start=START + w * HOUR, window_end=START + (w + 1) * HOUR
        )
        statuses += [r.status for r in report.rows if r.kind == "performance"]
    assert len(statuses) >= 200 * 4
    assert not [s for s in statuses if s in ("warning", "critical")]


def test_explicit_drops_keep_their_meaning_and_auto_refuses_them() -> None:
    base = "model_id: m\nfeatures: {x: numeric}\n"
    fixed = MonitorConfig.from_yaml(base + "performance: {warning_drop: 0.02}\n").performance
    assert (fixed.threshold, fixed.warning_drop, fixed.critical_drop) == ("fixed", 0.02, 0.05)
    assert MonitorConfig.from_yaml(base).performance.threshold == "auto"
    with pytest.raises(MonitorConfigError, match="threshold: auto learns the drops"):
        MonitorConfig.from_yaml(base + "performance: {threshold: auto, critical_drop: 0.1}\n")
    # a dumped config (threshold: auto next to the unused default drops) loads again
    auto = MonitorConfig.from_yaml(base)
    assert MonitorConfig.model_validate(auto.model_dump()) == auto
    with pytest.raises(MonitorConfigError, match=r"performance\.threshold"):
        MonitorConfig.from_yaml(base + "performance: {threshold: learned}\n")


def test_the_stream_learns_the_same_thresholds_and_alerts_as_the_backtest(
    tmp_path: Path,
) -> None:
    """A reference of six windows whose accuracy moves from window to window (so the
    spread is learned, not 0), a stream whose accuracy falls at window 5: the stream's
    rows carry the backtest's thresholds, and it raises the backtest's alerts."""
    from test_monitor import assert_same_metrics, streamed

    parts = [
        simulate(
            n_windows=1,
            per_window=1_500,
            n_numeric=2,
            seed=40 + w,
            window_seconds=60.0,
            accuracy=accuracy,
            id_prefix=f"r{w}-",
            start=START - 3600 + 60 * w,
        )
        for w, accuracy in enumerate([0.90, 0.86, 0.92, 0.88, 0.91, 0.87])
    ]
    ref = tmp_path / "ref.jsonl"
    ref.write_bytes(
        b"".join(
            write_jsonl(p, tmp_path / f"ref{i}.jsonl").read_bytes() for i, p in enumerate(parts)
        )
    )
    stream = simulate(
        n_windows=8,
        per_window=1_500,
        n_numeric=2,
        seed=2,
        window_seconds=60.0,
        accuracy=0.89,
        accuracy_change=(5, 0.75),
    )
    monitors = tmp_path / "monitors"
    monitors.mkdir()
    monitor = monitors / "credit.yaml"
    drift = "drift: {numeric: {method: psi, threshold: auto}}\n"  # learned drift levels too
    monitor.write_text(monitor_yaml(stream, window="1m", allowed_lateness="10s", extra=drift))
    events = write_jsonl(stream, tmp_path / "events.jsonl", batch_size=500)
    out = tmp_path / "out"
    run_backtest(monitor, ref, events, out)
    profile = reference_profile(monitor, ref)[1]
    spread = profile.performance_spread["accuracy"]
    assert spread.windows == 6 and spread.tau > 0.01
    assert profile.drift_spread["x0"]["psi"].windows == 6
    clock = float(stream.timestamps.max()) + 60 + 10 + 60
    with streamed(tmp_path, monitor, ref, events.read_bytes().splitlines(), clock) as h:
        assert_same_metrics(h.metrics(), out)
        want = [orjson.loads(x) for x in (out / "alerts.jsonl").read_bytes().splitlines()]
        assert [a["alert_id"] for a in h.sent["alerts"]] == [a["alert_id"] for a in want]
        performance = [a for a in want if a["kind"] == "performance"]
        assert performance and {a["window_start"] for a in performance} == {_at_minute(stream, 5)}


def _at_minute(stream: Any, window: int) -> str:
    from datetime import UTC, datetime

    first = float(stream.timestamps.min()) // 60 * 60
    return datetime.fromtimestamp(first + 60 * window, tz=UTC).isoformat().replace("+00:00", "Z")


def _null_lines(
    rng: np.random.Generator, windows: int, per_window: int, null_rate: list[float], prefix: str
) -> bytes:
    lines = []
    for w in range(windows):
        x = rng.normal(size=per_window).round(6).astype(object)
        x[rng.random(per_window) < null_rate[w]] = None
        times = START + w * HOUR + np.sort(rng.uniform(0, HOUR - 1, per_window))
        lines.append(
            orjson.dumps(
                {
                    "type": "prediction_batch",
                    "model_id": "q",
                    "model_version": "v1",
                    "event_ids": [f"{prefix}{w}-{i}" for i in range(per_window)],
                    "timestamps": times.round(3).tolist(),
                    "features": {"x": x.tolist()},
                    "predictions": rng.integers(0, 2, per_window).tolist(),
                }
            )
        )
    return b"\n".join(lines) + b"\n"


def test_learned_quality_levels_find_a_null_rate_tripling_the_fixed_ones_miss(
    tmp_path: Path,
) -> None:
    """x is null in 1% of the reference's values and 3% from window 3 on: the learned
    levels warn there (2,000 values: the fixed 5-point increase would need 6%)."""
    rng = np.random.default_rng(8)
    ref = tmp_path / "reference.jsonl"
    ref.write_bytes(_null_lines(rng, 10, 2_000, [0.01] * 10, "r"))
    ev = tmp_path / "events.jsonl"
    ev.write_bytes(_null_lines(rng, 8, 2_000, [0.01] * 3 + [0.03] * 5, "e"))
    base = "model_id: q\nfeatures: {x: numeric}\nwindow: 1h\nallowed_lateness: 10m\n"
    found = {}
    for name in ("auto", "fixed"):
        monitor = tmp_path / f"{name}.yaml"
        monitor.write_text(base + f"quality: {{threshold: {name}}}\n")
        run_backtest(monitor, ref, ev, tmp_path / name)
        found[name] = [
            (m["window_start"], m["status"])
            for m in _lines(tmp_path / name / "metrics.jsonl")
            if m["metric"] == "null_rate" and m["status"] != "ok"
        ]
        quality_alerts = [
            a for a in _lines(tmp_path / name / "alerts.jsonl") if a["kind"] == "data_quality"
        ]
        assert [a["window_start"] for a in quality_alerts] == ([_at(3)] if name == "auto" else [])
    assert found["fixed"] == []
    assert [at for at, _ in found["auto"]] == [_at(w) for w in range(3, 8)]
    # the learned levels: about 1% base, the warning a little under 2% at 2,000 values
    _, profile = reference_profile(tmp_path / "auto.yaml", ref)
    spread = profile.quality_spread["x"]["null_rate"]
    assert spread.windows == 10 and 0.008 < spread.base_rate < 0.012
