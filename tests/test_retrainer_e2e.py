"""The retraining loop on the embedded stack: tansu, a worker owning chDB, and
``driftline retrainer`` as its own process.

Labelled traffic of a binary model goes through the worker: first the concept the
initial champion learned (label = x0 + x1 > 0), then a covariate shift and a
concept change (label = x0 - x1 > 0). A retrain request over the post-drift data
must yield a version trained on CPU that beats the decayed champion on the
post-drift holdout, is published as champion and is picked up by a
:class:`~driftline.sdk.ModelSubscriber`. A duplicate request adds nothing; a
retrainer killed during training and restarted registers exactly one version.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from driftline.retrainer.artifact import ArtifactStore
from driftline.retrainer.dataset import LabelledDataset
from driftline.retrainer.registry import version_for_request
from driftline.retrainer.training import TrainingOptions, train_model
from driftline.retrainer.worker import STATUS_FILE, KafkaPublisher, Retrainer
from driftline.schemas.events import ModelVersionEvent, RetrainRequestEvent
from driftline.schemas.monitor import MonitorConfig
from e2e_support import WorkerProcess, wait_for

from driftline.lifeline import die_with_parent
from driftline.sdk import ModelSubscriber
from driftline.store.remote import SharedStore

pytestmark = pytest.mark.e2e

MODEL = "credit"
START = 1_767_225_600.0
ROWS = 1200  # per period
REGIONS = np.array(["north", "south", "east", "west"])
MONITOR_YAML = """
model_id: credit
task: binary_classification
features: {x0: numeric, x1: numeric, x2: numeric, region: categorical}
training:
  min_rows: 200
  holdout_fraction: 0.25
  max_epochs: %(epochs)d
  patience: %(patience)d
  batch_size: %(batch)d
  seed: 3
"""


def _period(drifted: bool, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    x0, x1, x2 = rng.normal(size=(3, ROWS))
    if drifted:
        x2 = x2 + 1.0  # covariate shift
    labels = (x0 - x1 > 0) if drifted else (x0 + x1 > 0)  # concept change
    offset = ROWS if drifted else 0
    return {
        "event_ids": [f"e{offset + i:06d}" for i in range(ROWS)],
        "timestamps": (START + offset + np.arange(ROWS, dtype=float)).tolist(),
        "features": {
            "x0": x0.round(6).tolist(),
            "x1": x1.round(6).tolist(),
            "x2": x2.round(6).tolist(),
            "region": rng.choice(REGIONS, ROWS).tolist(),
        },
        "predictions": (x0 + x1 > 0).astype(int).tolist(),  # what the first model says
        "labels": labels.astype(int).tolist(),
    }


def _send_traffic(producer: Producer, prefix: str, period: dict[str, Any]) -> None:
    for start in range(0, ROWS, 400):
        part = slice(start, start + 400)
        producer.produce(
            f"{prefix}.predictions",
            orjson.dumps(
                {
                    "type": "prediction_batch",
                    "model_id": MODEL,
                    "model_version": "v1",
                    "event_ids": period["event_ids"][part],
                    "timestamps": period["timestamps"][part],
                    "features": {k: v[part] for k, v in period["features"].items()},
                    "predictions": period["predictions"][part],
                }
            ),
        )
        producer.produce(
            f"{prefix}.feedback",
            orjson.dumps(
                {
                    "type": "feedback_batch",
                    "model_id": MODEL,
                    "event_ids": period["event_ids"][part],
                    "timestamps": [t + 5 for t in period["timestamps"][part]],
                    "labels": period["labels"][part],
                }
            ),
        )
    assert producer.flush(15) == 0


def _dataset(period: dict[str, Any]) -> LabelledDataset:
    features = {name: np.asarray(period["features"][name], dtype=float) for name in ("x0", "x1")}
    features["x2"] = np.asarray(period["features"]["x2"], dtype=float)
    features["region"] = np.asarray(period["features"]["region"], dtype=object)
    return LabelledDataset(
        features=features,
        labels=np.asarray([str(label) for label in period["labels"]]),
        timestamps=np.asarray(period["timestamps"], dtype=float),
        event_ids=np.asarray(period["event_ids"]),
    )


class RetrainerProcess:
    """``driftline retrainer`` in its own process, with its log and status file."""

    def __init__(self, worker: WorkerProcess, monitors: Path, log_path: Path) -> None:
        self.worker = worker
        self.monitors = monitors
        self.log_path = log_path
        self.status_path = worker.settings.data_dir / STATUS_FILE
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RetrainerProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "driftline.cli", "retrainer", "--monitors", self.monitors],
                env={**self.worker.env, "DRIFTLINE_LOG_LEVEL": "INFO"},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(),  # never outlives the test run
            )
        wait_for(self.status, lambda s: s.get("pid") == self._pid(), 60, "the retrainer to start")
        return self

    def _pid(self) -> int:
        assert self.process is not None
        if self.process.poll() is not None:
            pytest.fail(f"retrainer exited with {self.process.returncode}:\n{self.log_tail()}")
        return self.process.pid

    def status(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.status_path.read_text()))
        except (FileNotFoundError, ValueError):
            return {}

    def stop(self, sig: int = signal.SIGTERM) -> int:
        process, self.process = self.process, None
        if process is None:
            return 0
        if process.poll() is None:
            process.send_signal(sig)
            process.wait(30)
        return int(process.returncode)

    def log_tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])


def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    """Messages of ``topic`` the consumer group has committed (sum over partitions)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        offsets = consumer.committed(
            [TopicPartition(topic, p) for p in range(partitions)], timeout=10
        )
    finally:
        consumer.close()
    return sum(max(tp.offset, 0) for tp in offsets)


def _read_topic(bootstrap: str, topic: str) -> list[bytes]:
    """Every message of ``topic`` now (all partitions, up to their high watermarks)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused"})
    values: list[bytes] = []
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), 10)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, partition, low)])
            while True:
                message = consumer.poll(10)
                assert message is not None, f"{topic}[{partition}] ended early"
                if message.error():
                    continue
                values.append(message.value())
                if message.offset() >= high - 1:
                    break
    finally:
        consumer.close()
    return values


def _request(request_id: str, data_from: float, data_to: float) -> bytes:
    return (
        RetrainRequestEvent(
            request_id=request_id,
            model_id=MODEL,
            model_version="v1",
            reason=("alert-perf", "alert-drift"),
            data_from=data_from,
            data_to=data_to,
            requested_at=data_to,
        )
        .model_dump_json()
        .encode()
    )


def test_drift_retrain_publish_swap_dedupe_and_crash(
    worker_factory: Any, producer: Producer, tmp_path: Path
) -> None:
    worker = worker_factory()
    settings = worker.settings
    prefix, bootstrap = settings.topic_prefix, worker.bootstrap_servers
    before, after = _period(False, seed=1), _period(True, seed=2)
    _send_traffic(producer, prefix, before)
    _send_traffic(producer, prefix, after)
    wait_for(
        worker.health,
        lambda h: h["prediction_rows"] >= 2 * ROWS and h["feedback_rows"] >= 2 * ROWS,
        60,
        "the traffic to be stored",
    )

    fast, slow = tmp_path / "monitors", tmp_path / "slow-monitors"
    for folder, sizes in ((fast, (30, 5, 256)), (slow, (60, 60, 32))):
        folder.mkdir()
        values = dict(zip(("epochs", "patience", "batch"), sizes, strict=True))
        (folder / "credit.yaml").write_text(MONITOR_YAML % values)
    monitor = MonitorConfig.from_yaml(fast / "credit.yaml")

    # the initial champion learns the pre-drift concept and is registered from here
    owner = json.loads((settings.data_dir / "worker.json").read_text())
    store = SharedStore(int(owner["web_port"]), owner["store_token"], "driftline")
    first, _ = train_model(_dataset(before), monitor, TrainingOptions(device="cpu"))
    registrar = Retrainer(
        store,
        {MODEL: monitor},
        ArtifactStore(settings.artifacts_dir),
        KafkaPublisher(settings, bootstrap),
    )
    registrar.register_initial(first, monitor, "v1", _dataset(before))

    with ModelSubscriber(MODEL, bootstrap, topic_prefix=prefix) as subscriber:
        assert subscriber.wait_for_version("v1", timeout=30)
        retrainer = RetrainerProcess(worker, fast, tmp_path / "retrainer.log").start()
        post_from, post_to = START + ROWS, START + 2 * ROWS
        request = _request("req-post-drift", post_from, post_to)
        producer.produce(f"{prefix}.retrain-requests", request, key=MODEL.encode())
        assert producer.flush(10) == 0

        version = version_for_request("req-post-drift")
        if not subscriber.wait_for_version(version, timeout=90):
            pytest.fail(f"no swap to {version}:\n{retrainer.log_tail()}")
        event = subscriber.event
        assert event is not None and event.status == "champion" and event.parent_version == "v1"
        candidate, champion = (
            event.metrics["candidate.accuracy"],
            event.metrics["champion.accuracy"],
        )
        assert candidate > 0.85 and champion < 0.7 and candidate > champion + 0.2, event.metrics

        rows = worker.query(
            "SELECT version, status, metrics, alert_ids, decision, train_rows, holdout_rows, "
            "device, parent_version FROM model_versions FINAL ORDER BY created_at"
        )
        assert [(r["version"], r["status"]) for r in rows] == [
            ("v1", "candidate"),
            (version, "champion"),
        ]
        row = rows[1]
        assert row["metrics"] == pytest.approx(event.metrics)
        assert row["alert_ids"] == ["alert-perf", "alert-drift"]
        assert row["decision"].startswith("promote: candidate accuracy")
        assert int(row["train_rows"]) == 900 and int(row["holdout_rows"]) == 300
        assert row["device"] == "cpu"
        profiled = worker.query("SELECT model_version FROM reference_profiles FINAL ORDER BY 1")
        assert sorted(r["model_version"] for r in profiled) == sorted([version, "v1"])

        # the swapped model serves the new concept
        drifted = _dataset(after)
        served = subscriber.predict(drifted.features).labels
        assert np.mean(served == drifted.labels) > 0.85

        # the same request again: consumed, committed, and nothing new
        producer.produce(f"{prefix}.retrain-requests", request, key=MODEL.encode())
        assert producer.flush(10) == 0
        group, topic = f"{prefix}-retrainer", f"{prefix}.retrain-requests"
        wait_for(
            lambda: _committed(bootstrap, group, topic, settings.partitions),
            lambda n: n == 2,
            60,
            "the duplicate request to be committed",
        )
        same = worker.query(
            "SELECT count() AS n FROM model_versions FINAL WHERE request_id = 'req-post-drift'"
        )
        assert int(same[0]["n"]) == 1
        assert int(worker.scalar("SELECT count() FROM model_versions FINAL")) == 2
        command = ["models", "list", "--json", "--model-id", MODEL]
        listed = subprocess.run(
            [sys.executable, "-m", "driftline.cli", *command, "--data-dir", str(settings.data_dir)],
            capture_output=True,
            check=True,
        )  # read through the worker that owns the store
        lines = [json.loads(line) for line in listed.stdout.splitlines()]
        assert [(line["version"], line["status"]) for line in lines] == [
            ("v1", "candidate"),
            (version, "champion"),
        ]
        assert lines[1]["request_id"] == "req-post-drift" and lines[1]["train_rows"] == 900

        # killed while training: a restart registers exactly one version
        retrainer.stop()
        retrainer = RetrainerProcess(worker, slow, tmp_path / "retrainer2.log").start()
        crash = _request("req-crash", START, post_to)
        producer.produce(f"{prefix}.retrain-requests", crash, key=MODEL.encode())
        assert producer.flush(10) == 0
        wait_for(retrainer.status, lambda s: s.get("state") == "training", 60, "training")
        assert retrainer.stop(signal.SIGKILL) == -signal.SIGKILL
        crashed = "SELECT count() FROM model_versions FINAL WHERE request_id = 'req-crash'"
        assert int(worker.scalar(crashed)) == 0
        assert _committed(bootstrap, group, topic, settings.partitions) == 2

        retrainer = RetrainerProcess(worker, slow, tmp_path / "retrainer3.log").start()
        wait_for(
            lambda: _committed(bootstrap, group, topic, settings.partitions),
            lambda n: n == 3,
            120,
            "the request to be handled after the restart",
        )
        retrainer.stop()
        assert int(worker.scalar(crashed)) == 1
        assert int(worker.scalar("SELECT count() FROM model_versions FINAL")) == 3

    published = [
        ModelVersionEvent.model_validate_json(value)
        for value in _read_topic(bootstrap, f"{prefix}.model-versions")
    ]
    crash_events = [e for e in published if e.request_id == "req-crash"]
    assert [e.version for e in crash_events] == [version_for_request("req-crash")]
