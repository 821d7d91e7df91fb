"""Shared fixtures: the real embedded broker, worker processes, a producer."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from e2e_support import WorkerProcess
from hypothesis import settings

from driftline.broker import EmbeddedBroker, free_port
from driftline.kafka import create_topics
from driftline.settings import Settings

# CI runs the property tests with a fixed seed so that a red run can be reproduced;
# locally they explore new examples on every run.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """One real tansu broker for the whole test session."""
    with EmbeddedBroker() as running:
        yield running


@pytest.fixture
def worker_factory(
    broker: EmbeddedBroker, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start workers on a fresh topic prefix and data directory; stop them afterwards."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    started: list[WorkerProcess] = []

    def start(**overrides: str) -> WorkerProcess:
        env = {
            **os.environ,
            "DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "DRIFTLINE_TOPIC_PREFIX": prefix,
            "DRIFTLINE_PARTITIONS": "2",
            "DRIFTLINE_DATA_DIR": str(tmp_path / "data"),
            "DRIFTLINE_WORKER_WEB_PORT": str(free_port()),
            "DRIFTLINE_INGEST_FLUSH_SECONDS": "0.2",
            "DRIFTLINE_LOG_LEVEL": "WARNING",
            **{f"DRIFTLINE_{name.upper()}": value for name, value in overrides.items()},
        }
        env.pop("DRIFTLINE_CLICKHOUSE_URL", None)
        settings = Settings(
            kafka_bootstrap_servers=broker.bootstrap_servers,
            topic_prefix=prefix,
            partitions=2,
            data_dir=tmp_path / "data",
            worker_web_port=int(env["DRIFTLINE_WORKER_WEB_PORT"]),
        )
        create_topics(settings, broker.bootstrap_servers)
        process = WorkerProcess(
            settings, broker.bootstrap_servers, env, tmp_path / f"worker{len(started)}.log"
        )
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop(signal.SIGKILL)


@pytest.fixture
def producer(broker: EmbeddedBroker) -> Iterator[Producer]:
    """A plain confluent-kafka producer (what any service could use)."""
    client = Producer({"bootstrap.servers": broker.bootstrap_servers, "linger.ms": 5})
    yield client
    client.flush(10)
