"""``driftline demo``: the embedded stack end to end with synthetic traffic.

What it runs, all on this machine: the tansu broker, a ``driftline worker``
process that owns the chDB store under the data directory, and a synthetic
credit-scoring service that logs predictions and labels through the SDK
(``PredictionLogger``, ``FeedbackLogger``), with a covariate shift and a
concept change injected part-way, plus a few malformed messages that must
land in the DLQ. Event time runs faster than wall time: every window of the
monitor is one minute of event time.

At the end the stored events are read back window by window (aggregated in
ClickHouse where it can) and scored by the monitoring core against the first
windows as the reference, and a summary is printed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from .broker import EmbeddedBroker, free_port
from .kafka import client_config, create_topics
from .settings import Settings
from .store.remote import WorkerReader, worker_health

__all__ = ["DemoPlan", "run_demo", "synthetic_window"]

MODEL_ID = "credit"
FEATURES = {"income": "numeric", "age": "numeric", "debt_ratio": "numeric", "region": "categorical"}
REGIONS = np.array(["north", "south", "east", "west"])
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z, event time of the first window
WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class DemoPlan:
    """How much synthetic traffic the demo sends and where the drift starts.

    Examples
    --------
    >>> plan = DemoPlan(windows=20, events_per_window=1500)
    >>> plan.reference_windows, plan.covariate_shift_from, plan.concept_change_from
    (4, 10, 14)
    """

    windows: int = 20
    events_per_window: int = 1500

    @property
    def reference_windows(self) -> int:
        """Windows that make up the reference period."""
        return max(2, self.windows // 5)

    @property
    def covariate_shift_from(self) -> int:
        """First window where ``income`` is shifted by 0.75 standard deviations."""
        return self.windows // 2

    @property
    def concept_change_from(self) -> int:
        """First window where the true labels no longer follow the model's rule."""
        return (self.windows * 7) // 10


def synthetic_window(plan: DemoPlan, window: int, seed: int = 7) -> dict[str, Any]:
    """Features, predictions, scores and labels of one window (seeded, columnar).

    Examples
    --------
    >>> data = synthetic_window(DemoPlan(windows=10, events_per_window=100), 0)
    >>> len(data["event_ids"]), sorted(data["features"])
    (100, ['age', 'debt_ratio', 'income', 'region'])
    """
    rng = np.random.default_rng([seed, window])
    n = plan.events_per_window
    shift = 0.75 if window >= plan.covariate_shift_from else 0.0
    income = rng.normal(50.0 + 15.0 * shift, 15.0, n)
    age = rng.normal(40.0, 10.0, n)
    debt_ratio = rng.beta(2.0, 5.0, n)
    region = REGIONS[rng.integers(0, len(REGIONS), n)]
    logit = 0.08 * (income - 50.0) - 6.0 * (debt_ratio - 0.28)
    score = 1.0 / (1.0 + np.exp(-logit))
    prediction = (score >= 0.5).astype(int)
    truth_logit = logit if window < plan.concept_change_from else -logit
    labels = (rng.random(n) < 1.0 / (1.0 + np.exp(-2.0 * truth_logit))).astype(int)
    times = START + window * WINDOW_SECONDS + np.sort(rng.random(n)) * WINDOW_SECONDS
    return {
        "event_ids": [f"w{window}-{i}" for i in range(n)],
        "timestamps": times,
        "features": {
            "income": income,
            "age": age,
            "debt_ratio": debt_ratio,
            "region": region,
        },
        "predictions": prediction,
        "scores": score,
        "labels": labels,
    }


# --------------------------------------------------------------------------- processes


def _start_worker(settings: Settings, bootstrap: str, port: int, log_path: Path) -> Any:
    env = {
        **os.environ,
        "DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DRIFTLINE_TOPIC_PREFIX": settings.topic_prefix,
        "DRIFTLINE_DATA_DIR": str(settings.data_dir),
        "DRIFTLINE_WORKER_WEB_PORT": str(port),
        "DRIFTLINE_LOG_LEVEL": "WARNING",
    }
    env.pop("DRIFTLINE_CLICKHOUSE_URL", None)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "driftline.cli", "worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.2)


# --------------------------------------------------------------------------- scoring


def _window_arrays(reader: WorkerReader, start: float, end: float) -> dict[str, Any]:
    """Raw columns of one window, read back from the store (labels joined by event_id)."""
    sql = (
        "SELECT p.features_num['income'] AS income, p.features_num['age'] AS age, "
        "p.features_num['debt_ratio'] AS debt_ratio, p.features_cat['region'] AS region, "
        "p.prediction_value AS prediction, p.score AS score, f.label_value AS label "
        "FROM (SELECT * FROM predictions FINAL WHERE model_id = 'credit' "
        f"AND timestamp >= toDateTime64({start:.6f}, 6, 'UTC') "
        f"AND timestamp < toDateTime64({end:.6f}, 6, 'UTC')) AS p "
        "LEFT JOIN (SELECT event_id, label_value FROM feedback FINAL "
        "WHERE model_id = 'credit') AS f USING (event_id) "
        "SETTINGS join_use_nulls = 1"
    )
    rows = reader.query(sql)
    columns: dict[str, Any] = {
        name: [row[name] for row in rows]
        for name in ("income", "age", "debt_ratio", "region", "prediction", "score", "label")
    }
    out = {
        name: np.array(values, dtype=float)
        for name, values in columns.items()
        if name not in ("region", "prediction", "label")
    }
    out["region"] = np.array(columns["region"], dtype=object)
    out["prediction"] = np.array([str(int(v)) for v in columns["prediction"]], dtype=object)
    out["label"] = np.array(
        [None if v is None else str(int(v)) for v in columns["label"]], dtype=object
    )
    return out


def _score_windows(reader: WorkerReader, plan: DemoPlan) -> list[tuple[int, dict[str, str]]]:
    from .detectors import aggregate_window, build_profile, evaluate_window
    from .schemas.monitor import MonitorConfig

    config = MonitorConfig.from_mapping(
        {
            "model_id": MODEL_ID,
            "task": "binary_classification",
            "features": FEATURES,
            "window": "1m",
            "allowed_lateness": "0s",
            "drift": {"min_samples": 200},
            "performance": {"metric": "accuracy", "min_labels": 200},
        }
    )
    reference_end = START + plan.reference_windows * WINDOW_SECONDS
    reference = _window_arrays(reader, START, reference_end)
    profile = build_profile(
        MODEL_ID,
        "v1",
        features={name: reference[name] for name in FEATURES},
        kinds=FEATURES,
        predictions=reference["prediction"],
        scores=reference["score"],
        labels=reference["label"],
    )
    verdicts = []
    for window in range(plan.reference_windows, plan.windows):
        start = START + window * WINDOW_SECONDS
        arrays = _window_arrays(reader, start, start + WINDOW_SECONDS)
        data = aggregate_window(
            profile,
            features={name: arrays[name] for name in FEATURES},
            predictions=arrays["prediction"],
            scores=arrays["score"],
            labels=arrays["label"],
        )
        report = evaluate_window(
            profile, config, data, window_start=start, window_end=start + WINDOW_SECONDS
        )
        bad = {
            (row.feature or row.metric): row.status
            for row in report.rows
            if row.primary and row.status in ("warning", "critical")
        }
        verdicts.append((window, bad))
    return verdicts


# --------------------------------------------------------------------------- main


def _produce_traffic(
    bootstrap: str,
    settings: Settings,
    plan: DemoPlan,
    duration: float,
    progress: Callable[[int], None],
) -> int:
    from .sdk import FeedbackLogger, PredictionLogger

    predictions = PredictionLogger(MODEL_ID, "v1", bootstrap_servers=bootstrap, settings=settings)
    feedback = FeedbackLogger(MODEL_ID, bootstrap_servers=bootstrap, settings=settings)
    pace = duration / plan.windows
    started = time.monotonic()
    sent = 0
    with predictions, feedback:
        for window in range(plan.windows):
            data = synthetic_window(plan, window)
            features = data["features"]
            for i, event_id in enumerate(data["event_ids"]):
                predictions.log(
                    event_id,
                    {
                        "income": float(features["income"][i]),
                        "age": float(features["age"][i]),
                        "debt_ratio": float(features["debt_ratio"][i]),
                        "region": str(features["region"][i]),
                    },
                    int(data["predictions"][i]),
                    timestamp=float(data["timestamps"][i]),
                    score=float(data["scores"][i]),
                )
                feedback.log(
                    event_id, int(data["labels"][i]), timestamp=float(data["timestamps"][i]) + 30.0
                )
            sent += len(data["event_ids"])
            progress(window + 1)
            time.sleep(max(0.0, started + (window + 1) * pace - time.monotonic()))
        predictions.flush(30)
        feedback.flush(30)
    return sent


def _send_bad_messages(bootstrap: str, settings: Settings) -> int:
    from confluent_kafka import Producer

    producer = Producer(client_config(settings, bootstrap))
    bad = [
        b'{"type": "prediction", "event_id": ',
        orjson.dumps({"type": "prediction", "event_id": "x", "model_id": MODEL_ID}),
        b'{"type": "feedback", "event_id": "y", "model_id": "credit",'
        b' "timestamp": 1767225600, "label": NaN}',
    ]
    for value in bad:
        producer.produce(settings.topics.predictions, value)
    producer.flush(10)
    return len(bad)


def run_demo(settings: Settings, duration: float = 30.0, windows: int = 20) -> int:
    """Run the demo; return the process exit code."""
    plan = DemoPlan(windows=windows)
    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    print(f"driftline demo: data directory {data_dir}")
    broker = None
    bootstrap = settings.kafka_bootstrap_servers
    if settings.embedded_broker:
        broker = EmbeddedBroker(log_file=data_dir / "broker.log").start()
        bootstrap = broker.bootstrap_servers
    print(f"  broker      {bootstrap}" + (" (embedded tansu)" if broker else ""))
    create_topics(settings, bootstrap)
    port = free_port()
    worker = _start_worker(settings, bootstrap, port, data_dir / "worker.log")
    try:
        _wait(lambda: worker_health(port) is not None, 90, "the worker")
        print(f"  worker      pid {worker.pid}, store {data_dir / 'chdb'} (chDB)")
        print(
            f"  traffic     {plan.windows} one-minute windows x {plan.events_per_window} events;"
            f" income shifted from window {plan.covariate_shift_from},"
            f" labels flipped from window {plan.concept_change_from}"
        )

        def progress(done: int) -> None:
            state = worker_health(port) or {}
            print(
                f"  sent {done:>3}/{plan.windows} windows | stored "
                f"{state.get('prediction_rows', 0):>7} predictions "
                f"{state.get('feedback_rows', 0):>7} labels | DLQ "
                f"{sum(state.get('dead_letters', {}).values())}",
                flush=True,
            )

        bad = _send_bad_messages(bootstrap, settings)
        sent = _produce_traffic(bootstrap, settings, plan, duration, progress)
        _wait(
            lambda: (
                (worker_health(port) or {}).get("prediction_rows", 0) >= sent
                and (worker_health(port) or {}).get("feedback_rows", 0) >= sent
            ),
            120,
            "every event to be stored",
        )
        state = worker_health(port) or {}
        reader = WorkerReader(port)
        stored = reader.query("SELECT count() AS n FROM predictions FINAL")[0]["n"]
        print(
            f"  stored      {stored} predictions (sent {sent}), "
            f"{state.get('feedback_rows')} labels; DLQ {state.get('dead_letters')} "
            f"(sent {bad} malformed)"
        )
        print(f"  windows scored against the first {plan.reference_windows} (reference):")
        for window, bad_rows in _score_windows(reader, plan):
            flags = ", ".join(f"{name} {status}" for name, status in sorted(bad_rows.items()))
            print(f"    window {window:>3}: {flags or 'ok'}")
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
        if broker is not None:
            broker.stop()
    print("driftline demo: done")
    return 0
