"""Retrain turnaround on the embedded stack: request produced -> model_version received.

Setup (not timed): the tansu broker, a ``driftline worker`` process owning chDB,
``--rows`` labelled predictions of a binary model with 20 numeric features (the
label concept changes half-way), an initial champion registered from the first
half, and a ``driftline retrainer`` process waiting for requests.

Timed: from producing a ``retrain_request`` over all rows to receiving its
``model_version`` event on ``<prefix>.model-versions``: reading the labelled rows
from ClickHouse (through the worker), training on CPU (or CUDA when present),
scoring candidate and champion on the holdout, saving the artifact, the registry
row, the reference profile and the event.

Run: ``.venv/bin/python bench/retrain.py [--rows 100000] [--target 60]``
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from confluent_kafka import Consumer, Producer, TopicPartition
from driftline.retrainer.artifact import ArtifactStore
from driftline.retrainer.dataset import LabelledDataset
from driftline.retrainer.registry import version_for_request
from driftline.retrainer.training import TrainingOptions, train_model
from driftline.retrainer.worker import STATUS_FILE, KafkaPublisher, Retrainer
from driftline.schemas.events import ModelVersionEvent, RetrainRequestEvent
from driftline.schemas.monitor import MonitorConfig

from driftline.broker import EmbeddedBroker, free_port
from driftline.kafka import create_topics
from driftline.sdk import ModelSubscriber
from driftline.settings import Settings
from driftline.store.remote import SharedStore, worker_health

T0 = 1_767_225_600.0
FEATURES = [f"f{j:02d}" for j in range(20)]
BATCH = 1_000


def _columns(rows: int, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(len(FEATURES), rows))
    half = rows // 2
    weights = rng.normal(size=len(FEATURES))
    later = weights.copy()
    later[:5] = -later[:5]  # the concept changes for the second half
    logits = np.concatenate([weights @ values[:, :half], later @ values[:, half:]])
    return {
        "values": values,
        "labels": (logits > 0).astype(int),
        "times": T0 + np.arange(rows, dtype=float) * 0.01,
        "ids": np.array([f"e{i:07d}" for i in range(rows)]),
    }


def _produce(bootstrap: str, settings: Settings, data: dict[str, Any]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    rows = data["ids"].size
    for start in range(0, rows, BATCH):
        part = slice(start, start + BATCH)
        ids, times = data["ids"][part].tolist(), data["times"][part].tolist()
        producer.produce(
            settings.topics.predictions,
            orjson.dumps(
                {
                    "type": "prediction_batch",
                    "model_id": "bench",
                    "model_version": "v1",
                    "event_ids": ids,
                    "timestamps": times,
                    "features": {
                        n: data["values"][j, part].tolist() for j, n in enumerate(FEATURES)
                    },
                    "predictions": data["labels"][part].tolist(),
                }
            ),
        )
        producer.produce(
            settings.topics.feedback,
            orjson.dumps(
                {
                    "type": "feedback_batch",
                    "model_id": "bench",
                    "event_ids": ids,
                    "timestamps": times,
                    "labels": data["labels"][part].tolist(),
                }
            ),
        )
        producer.poll(0)
    producer.flush(60)


def _wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def _warm_up(bootstrap: str, settings: Settings) -> None:
    """Have the retrainer commit a request of a model it does not know (it skips it), so
    that its consumer group has joined before the timed request."""
    topic = settings.topics.retrain_requests
    request = RetrainRequestEvent(
        request_id="warm-up",
        model_id="nobody",
        model_version="v0",
        reason=(),
        data_from=T0,
        data_to=T0 + 1,
        requested_at=T0 + 1,
    )
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, request.model_dump_json().encode(), key=b"nobody")
    producer.flush(10)
    probe = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"{settings.topic_prefix}-retrainer"}
    )
    partitions = [TopicPartition(topic, p) for p in range(settings.partitions)]
    try:
        _wait(
            lambda: sum(max(tp.offset, 0) for tp in probe.committed(partitions, timeout=10)) >= 1,
            120,
            "the retrainer to handle a warm-up request",
        )
    finally:
        probe.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--target", type=float, default=60.0, help="seconds")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="driftline-bench-retrain-"))
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap_servers
        port = free_port()
        settings = Settings(
            kafka_bootstrap_servers=bootstrap,
            topic_prefix="bench-retrain",
            partitions=2,
            data_dir=folder / "data",
            worker_web_port=port,
        )
        create_topics(settings, bootstrap)
        monitors = folder / "monitors"
        monitors.mkdir()
        yaml = (
            "model_id: bench\ntask: binary_classification\n"
            "features: {" + ", ".join(f"{n}: numeric" for n in FEATURES) + "}\n"
            "training: {min_rows: 1000}\n"
        )
        (monitors / "bench.yaml").write_text(yaml)
        env = {
            **os.environ,
            "DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "DRIFTLINE_TOPIC_PREFIX": settings.topic_prefix,
            "DRIFTLINE_PARTITIONS": "2",
            "DRIFTLINE_DATA_DIR": str(settings.data_dir),
            "DRIFTLINE_WORKER_WEB_PORT": str(port),
            "DRIFTLINE_LOG_LEVEL": "WARNING",
        }
        env.pop("DRIFTLINE_CLICKHOUSE_URL", None)
        log = open(folder / "worker.log", "ab")  # noqa: SIM115
        worker = subprocess.Popen(
            [sys.executable, "-m", "driftline.cli", "worker"], env=env, stdout=log, stderr=log
        )
        retrainer = None
        try:
            _wait(lambda: worker_health(port) is not None, 60, "the worker")
            data = _columns(args.rows)
            _produce(bootstrap, settings, data)

            def stored() -> bool:
                health = worker_health(port) or {}
                return min(health.get("prediction_rows", 0), health.get("feedback_rows", 0)) >= (
                    args.rows
                )

            _wait(stored, 300, f"{args.rows} labelled rows to be stored")

            monitor = MonitorConfig.from_yaml(monitors / "bench.yaml")
            owner = json.loads((settings.data_dir / "worker.json").read_text())
            store = SharedStore(port, owner["store_token"], settings.clickhouse_database)
            first = min(20_000, args.rows // 2)
            initial = LabelledDataset(
                features={n: data["values"][j, :first] for j, n in enumerate(FEATURES)},
                labels=data["labels"][:first].astype(str),
                timestamps=data["times"][:first],
                event_ids=data["ids"][:first],
            )
            model, _ = train_model(initial, monitor, TrainingOptions(max_epochs=3))
            Retrainer(
                store,
                {"bench": monitor},
                ArtifactStore(settings.artifacts_dir),
                KafkaPublisher(settings, bootstrap),
            ).register_initial(model, monitor, "v1", initial)

            retrainer = subprocess.Popen(
                [sys.executable, "-m", "driftline.cli", "retrainer", "--monitors", str(monitors)],
                env={**env, "DRIFTLINE_LOG_LEVEL": "INFO"},
                stdout=open(folder / "retrainer.log", "ab"),  # noqa: SIM115
                stderr=subprocess.STDOUT,
            )
            status = settings.data_dir / STATUS_FILE

            def idle() -> bool:
                try:
                    state = json.loads(status.read_text())
                except (FileNotFoundError, ValueError):
                    return False
                return bool(state.get("pid") == retrainer.pid and state.get("state") == "idle")

            _wait(idle, 60, "the retrainer")
            received = threading.Event()
            version = version_for_request("bench-1")

            def arrived(event: ModelVersionEvent, model: Any) -> None:
                if event.version == version:
                    received.set()

            with ModelSubscriber(
                "bench",
                bootstrap,
                topic_prefix=settings.topic_prefix,
                loader=lambda event: event,  # time the event, not the artifact load
                on_version=arrived,
            ) as subscriber:
                subscriber.wait_for_version("v1", 30)
                _warm_up(bootstrap, settings)
                request = RetrainRequestEvent(
                    request_id="bench-1",
                    model_id="bench",
                    model_version="v1",
                    reason=("bench",),
                    data_from=T0,
                    data_to=float(data["times"][-1]) + 1,
                    requested_at=float(data["times"][-1]) + 1,
                )
                producer = Producer({"bootstrap.servers": bootstrap})
                started = time.perf_counter()
                producer.produce(
                    settings.topics.retrain_requests,
                    request.model_dump_json().encode(),
                    key=b"bench",
                )
                producer.flush(10)
                if not received.wait(600):
                    raise SystemExit("no model_version event within 600 s")
                seconds = time.perf_counter() - started
                event = subscriber.event
            assert event is not None
            print(f"rows: {args.rows} labelled x {len(FEATURES)} features")
            print(f"retrain turnaround (request -> model_version event): {seconds:.1f} s")
            print(f"status {event.status}; metrics {event.metrics}")
            verdict = "met" if seconds <= args.target else "MISSED"
            print(f"target: <= {args.target:.0f} s ({verdict})")
        finally:
            for process in (retrainer, worker):
                if process is not None and process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    process.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
