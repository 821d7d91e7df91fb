"""Label-free performance estimation (CBPE) through the backtest and the stream.

The issue's cases: under covariate shift toward the decision boundary the estimate
follows the realized drop (mean absolute error over windows within 0.03 at 2,000 events
per window) and raises ``estimated_performance`` within one window, before any label
exists; with labels the realized metric takes over and the estimate stays recorded;
the stream equals the backtest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from backtest_streams import (
    START,
    Stream,
    backtest,
    iso_at,
    json_lines,
    monitor_yaml,
    simulate,
    write_jsonl,
)

from driftline.backtest import reference_profile, run_backtest

HOUR = 3600.0
ESTIMATION = "performance: {estimation: {max_label_coverage: 0.5}}\n"


def calibrated(
    stream: Stream,
    seed: int,
    shift_from: int | None = None,
    size: float = HOUR,
    sharpness: float = 1.0,
) -> Stream:
    """A calibrated model of ``x0``: score ``sigmoid(2 x0)``, labels drawn from it,
    predictions at 0.5. From window ``shift_from`` on, ``x0`` moves toward the decision
    boundary, by 0.9 and then 0.1 more per window (covariate shift: ``P(y | x)`` is
    unchanged)."""
    rng = np.random.default_rng(seed)
    window = np.floor((stream.timestamps - stream.timestamps.min()) / size)
    shift = np.zeros(stream.rows)
    if shift_from is not None:
        shift = np.where(window >= shift_from, 0.8 + 0.1 * (window - shift_from + 1), 0.0)
    x = rng.normal(1.2, 1.0, stream.rows) - np.minimum(shift, 1.2)
    stream.features["x0"][:] = np.round(x, 4)
    p = 1.0 / (1.0 + np.exp(-2.0 * stream.features["x0"]))
    # sharpness > 1: over-confident scores, which the reference's calibration corrects
    stream.scores[:] = np.round(1.0 / (1.0 + np.exp(-2.0 * sharpness * stream.features["x0"])), 6)
    stream.predictions[:] = (stream.scores >= 0.5).astype(int)
    stream.labels[:] = (rng.random(stream.rows) < p).astype(int)
    return stream


def test_under_covariate_shift_the_estimate_follows_the_drop_and_alerts_before_labels(
    tmp_path: Path,
) -> None:
    reference = calibrated(
        simulate(n_windows=6, per_window=2_000, n_numeric=3, seed=1, id_prefix="r",
                 start=START - 6 * HOUR),
        seed=11,
    )  # fmt: skip
    events = calibrated(
        simulate(n_windows=8, per_window=2_000, n_numeric=3, seed=2), seed=12, shift_from=4
    )
    monitor = tmp_path / "monitor.yaml"
    monitor.write_text(monitor_yaml(events, extra=ESTIMATION))
    ref = write_jsonl(reference, tmp_path / "reference.jsonl")
    unlabelled = events.__class__(**{**events.__dict__, "labelled": np.zeros(events.rows, bool)})
    run_backtest(monitor, ref, write_jsonl(unlabelled, tmp_path / "none.jsonl"), tmp_path / "a")
    rows = json_lines(tmp_path / "a" / "metrics.jsonl")
    estimated = [r for r in rows if r["metric"] == "estimated_accuracy"]
    assert len(estimated) == 8 and all(r["primary"] and r["label_coverage"] == 0 for r in estimated)
    assert all(r["lower"] < r["value"] < r["upper"] for r in estimated)
    # no label anywhere, yet the estimated accuracy alerts in the first shifted window
    alerts = json_lines(tmp_path / "a" / "alerts.jsonl")
    first = min(a["window_start"] for a in alerts if a["kind"] == "estimated_performance")
    assert first == iso_at(4)
    assert all(r["status"] == "ok" for r in estimated[:4])
    assert not [r for r in rows if r["kind"] == "performance" and r["value"] is not None]

    # the same events with every label: the estimate tracks the realized accuracy
    run_backtest(monitor, ref, write_jsonl(events, tmp_path / "all.jsonl"), tmp_path / "b")
    rows = json_lines(tmp_path / "b" / "metrics.jsonl")
    realized = {r["window_start"]: r["value"] for r in rows if r["metric"] == "accuracy"}
    estimate = {r["window_start"]: r for r in rows if r["metric"] == "estimated_accuracy"}
    errors = [abs(estimate[w]["value"] - realized[w]) for w in realized]
    assert float(np.mean(errors)) <= 0.03
    assert realized[iso_at(0)] - realized[iso_at(7)] > 0.05  # the shift costs accuracy
    # labelled windows: the estimate is recorded but hands over to the realized metric
    assert all(r["label_coverage"] == 1.0 and r["status"] == "ok" for r in estimate.values())
    assert {r["status"] for r in rows if r["metric"] == "accuracy"} >= {"critical"}
    kinds = {a["kind"] for a in json_lines(tmp_path / "b" / "alerts.jsonl")}
    assert "estimated_performance" not in kinds


def test_the_stream_gives_the_backtest_estimates_per_segment(tmp_path: Path) -> None:
    from test_monitor import assert_same_metrics, streamed

    mix = {"de": 0.6, "fr": 0.4}
    reference = calibrated(
        simulate(n_windows=3, per_window=3_000, n_numeric=3, seed=5, id_prefix="r",
                 window_seconds=60.0, start=START - 3600, segments=mix),
        seed=15, size=60.0, sharpness=2.0,
    )  # fmt: skip
    events = calibrated(
        simulate(n_windows=5, per_window=2_000, n_numeric=3, seed=6, window_seconds=60.0,
                 segments=mix, label_fraction=0.2),
        seed=16, shift_from=2, size=60.0, sharpness=2.0,
    )  # fmt: skip
    run = backtest(
        tmp_path,
        reference,
        events,
        extra=ESTIMATION + "segments: {keys: [country]}\n",
        batch_size=500,
        window="1m",
        allowed_lateness="10s",
    )
    monitor, ref_path, events_path, out = run.monitor, run.reference, run.events, run.out
    want = run.alerts()
    assert any(a["kind"] == "estimated_performance" for a in want)
    lines = events_path.read_bytes().splitlines()
    clock = float(events.timestamps.max()) + 60 + 10 + 60
    with streamed(tmp_path, monitor, ref_path, lines, clock) as h:
        got = h.metrics()
        estimated = [r for r in got if r["metric"] == "estimated_accuracy"]
        assert len(estimated) == 5 * 3  # whole, de, fr per window
        assert all(r["lower"] is not None and r["upper"] is not None for r in estimated)
        profile = reference_profile(monitor, ref_path)[1]
        assert profile.calibration is not None and profile.calibration.kept
        for part in profile.segments["country"].values():  # slices use the model's
            assert part.calibration == profile.calibration
        assert_same_metrics(got, out)
        assert [a["alert_id"] for a in h.sent["alerts"]] == [a["alert_id"] for a in want]


def test_estimation_is_refused_for_tasks_it_cannot_estimate() -> None:
    from driftline.schemas.monitor import MonitorConfig, MonitorConfigError

    with pytest.raises(MonitorConfigError, match="needs a classifier"):
        MonitorConfig.from_mapping(
            {
                "model_id": "m",
                "task": "regression",
                "features": {"x": "numeric"},
                "performance": {"estimation": {}},
            }
        )


@pytest.mark.e2e
def test_a_real_worker_gives_the_backtests_estimates_and_multivariate_drift(
    worker_factory: Any, producer: Any, tmp_path: Path
) -> None:
    """tansu, a worker process and chDB: both label-free metrics, in ClickHouse and as
    alerts on Kafka, equal the backtest's."""
    from test_monitor import assert_same_metrics
    from test_monitor_e2e import metrics, replayed
    from test_multivariate_drift import correlated

    reference = correlated(
        calibrated(
            simulate(n_windows=3, per_window=3_000, n_numeric=4, seed=7, id_prefix="r",
                     window_seconds=60.0, start=START - 3600),
            seed=17, size=60.0,
        ),
        seed=18, flip_from=None, size=60.0,
    )  # fmt: skip
    events = correlated(
        calibrated(
            simulate(n_windows=5, per_window=2_000, n_numeric=4, seed=8, window_seconds=60.0,
                     label_fraction=0.0),
            seed=19, shift_from=3, size=60.0,
        ),
        seed=20, flip_from=2, size=60.0,
    )  # fmt: skip
    run = backtest(
        tmp_path,
        reference,
        events,
        extra=ESTIMATION + "drift: {multivariate: {variance: 0.65}}\n",
        batch_size=500,
        window="1m",
        allowed_lateness="10s",
    )
    monitor, ref_path, events_path, out = run.monitor, run.reference, run.events, run.out
    want = run.alerts()
    assert {a["kind"] for a in want} >= {"estimated_performance", "multivariate_drift"}

    clock = float(events.timestamps.max()) + 60 + 10 + 60
    worker, got = replayed(
        worker_factory, producer, monitor, ref_path, events_path, clock, 5, len(want)
    )
    assert [a["alert_id"] for a in got] == [a["alert_id"] for a in want]
    assert_same_metrics(metrics(worker), out)


def multiclass_lines(
    seed: int,
    windows: int,
    per_window: int,
    start: float,
    prefix: str,
    shift_from: int | None,
    label_fraction: float,
    numeric_classes: bool = False,
) -> tuple[list[bytes], np.ndarray]:
    """A calibrated 3-class model of ``x`` (softmax of ``2x``, ``0``, ``-2x``): singles
    and batches with ``scores`` per class, labels drawn from them; from window
    ``shift_from`` on ``|x|`` shrinks (covariate shift toward the boundaries)."""
    import orjson

    rng = np.random.default_rng(seed)
    n = windows * per_window
    window = np.repeat(np.arange(windows), per_window)
    times = start + window * 60.0 + np.tile(np.arange(per_window), windows) * (60.0 / per_window)
    x = rng.normal(0.0, 1.5, n)
    if shift_from is not None:
        x = np.where(window >= shift_from, x * 0.35, x)
    logits = np.stack([2 * x, np.zeros(n), -2 * x], axis=1)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    classes = np.array([1, 2, 3]) if numeric_classes else np.array(["hi", "mid", "lo"])
    predicted = classes[probs.argmax(axis=1)]
    labels = classes[(rng.random(n)[:, None] > np.cumsum(probs, axis=1)).sum(axis=1)]
    names = [str(c) for c in classes]
    lines = []
    for lo in range(0, n, 250):
        rows = range(lo, min(n, lo + 250))
        if (lo // 250) % 2:  # a batch
            lines.append(orjson.dumps({
                "type": "prediction_batch", "model_id": "credit", "model_version": "v1",
                "event_ids": [f"{prefix}{i}" for i in rows],
                "timestamps": times[list(rows)].tolist(),
                "features": {"x0": np.round(x[list(rows)], 4).tolist()},
                "predictions": predicted[list(rows)].tolist(),
                # a multiclass batch's scores: each prediction's own class's
                "scores": np.round(probs[list(rows)].max(axis=1), 6).tolist(),
            }))  # fmt: skip
        else:
            for i in rows:
                lines.append(orjson.dumps({
                    "type": "prediction", "event_id": f"{prefix}{i}", "model_id": "credit",
                    "model_version": "v1", "timestamp": float(times[i]),
                    "features": {"x0": round(float(x[i]), 4)},
                    "prediction": predicted[i].item(),
                    "scores": dict(zip(names, np.round(probs[i], 6).tolist(), strict=True)),
                }))  # fmt: skip
    labelled = np.flatnonzero(rng.random(n) < label_fraction)
    for lo in range(0, labelled.size, 500):
        at = labelled[lo : lo + 500]
        lines.append(orjson.dumps({
            "type": "feedback_batch", "model_id": "credit",
            "event_ids": [f"{prefix}{i}" for i in at.tolist()],
            "timestamps": (times[at] + 1.0).tolist(), "labels": labels[at].tolist(),
        }))  # fmt: skip
    realized = np.array(
        [np.mean(predicted[window == w] == labels[window == w]) for w in range(windows)]
    )
    return lines, realized


@pytest.mark.parametrize("numeric_classes", [False, True])
def test_a_multiclass_models_accuracy_is_estimated_alike_in_the_stream_and_the_backtest(
    tmp_path: Path, numeric_classes: bool
) -> None:
    """The predicted class's own score, calibrated on the reference against being
    right: the estimate follows the realized accuracy, alerts under covariate shift
    with few labels, and the store's pushed-down blocks give the backtest's rows."""
    from test_monitor import assert_same_metrics, streamed

    ref_lines, _ = multiclass_lines(1, 4, 2_000, START - 3600, "r", None, 1.0, numeric_classes)
    lines, realized = multiclass_lines(2, 5, 2_000, START, "e", 3, 0.1, numeric_classes)
    monitors = tmp_path / "monitors"
    monitors.mkdir()
    monitor = monitors / "credit.yaml"
    monitor.write_text(
        "model_id: credit\ntask: multiclass\nfeatures: {x0: numeric}\nwindow: 1m\n"
        "allowed_lateness: 10s\nperformance: {estimation: {}, min_labels: 100}\n"
    )
    ref_path, events_path = tmp_path / "ref.jsonl", tmp_path / "events.jsonl"
    ref_path.write_bytes(b"\n".join(ref_lines) + b"\n")
    events_path.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out"
    run_backtest(monitor, ref_path, events_path, out)
    rows = json_lines(out / "metrics.jsonl")
    estimated = [r for r in rows if r["metric"] == "estimated_accuracy"]
    assert len(estimated) == 5 and not [r for r in rows if r["metric"] == "estimated_f1"]
    errors = np.abs(np.array([r["value"] for r in estimated]) - realized)
    assert float(errors.mean()) <= 0.03, errors
    alerts = json_lines(out / "alerts.jsonl")
    assert {a["window_start"] for a in alerts if a["kind"] == "estimated_performance"} == {
        iso_at(3, 60.0)
    }
    with streamed(tmp_path, monitor, ref_path, lines, START + 5 * 60.0 + 60 + 10 + 60) as h:
        assert_same_metrics(h.metrics(), out)
        assert [a["alert_id"] for a in h.sent["alerts"]] == [a["alert_id"] for a in alerts]


def test_an_estimated_alert_resolves_once_labels_cover_the_window(tmp_path: Path) -> None:
    """Shifted windows without labels open ``estimated_performance``; when later windows
    are labelled the realized metric takes over and the estimated alert resolves (the
    realized ``performance`` alert carries on)."""
    reference = calibrated(
        simulate(n_windows=6, per_window=2_000, n_numeric=3, seed=1, id_prefix="r",
                 start=START - 6 * HOUR),
        seed=11,
    )  # fmt: skip
    events = calibrated(
        simulate(n_windows=8, per_window=2_000, n_numeric=3, seed=2), seed=12, shift_from=2
    )
    window = np.floor((events.timestamps - START) / HOUR)
    events.labelled[:] = window >= 5  # labels reach only the last three windows
    out = backtest(tmp_path, reference, events, extra=ESTIMATION).out
    alerts = json_lines(out / "alerts.jsonl")
    estimated = [a for a in alerts if a["kind"] == "estimated_performance"]
    assert estimated and min(a["window_start"] for a in estimated) == iso_at(2)
    assert any(a["kind"] == "performance" for a in alerts)
    rows = json_lines(out / "metrics.jsonl")
    statuses = [r["status"] for r in rows if r["metric"] == "estimated_accuracy"]
    assert statuses[5:] == ["ok"] * 3 and "critical" in statuses[2:5]
    summary = json.loads((out / "summary.json").read_text())
    # the estimated alert is the one that resolved; the drift and performance ones stay
    assert summary["alerts"]["by_kind"]["estimated_performance"] == 1
    assert summary["alerts"]["resolved"] == 1
    assert summary["alerts"]["open_at_end"] == summary["alerts"]["total"] - 1
