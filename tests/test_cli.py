"""The ``driftline`` command line, run as a user runs it: a subprocess per command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient
from e2e_support import wait_for

from driftline.broker import EmbeddedBroker, free_port


def driftline(*args: str, env: dict[str, str] | None = None, timeout: float = 120):
    return subprocess.run(
        [sys.executable, "-m", "driftline.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_db_migrate_is_idempotent_and_query_prints_json_lines(tmp_path: Path) -> None:
    first = driftline("db", "migrate", "--data-dir", str(tmp_path))
    assert first.returncode == 0, first.stderr
    assert "applied migrations: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]" in first.stdout
    again = driftline("db", "migrate", "--data-dir", str(tmp_path))
    assert again.returncode == 0 and "up to date" in again.stdout
    query = driftline(
        "db",
        "query",
        "--data-dir",
        str(tmp_path),
        "SHOW TABLES LIKE 'pred%'",
    )
    assert query.returncode == 0, query.stderr
    assert [json.loads(line) for line in query.stdout.splitlines()] == [{"name": "predictions"}]


def test_db_query_refuses_writes_with_exit_2(tmp_path: Path) -> None:
    result = driftline("db", "query", "--data-dir", str(tmp_path), "DROP TABLE predictions")
    assert result.returncode == 2
    assert "refused" in result.stderr and "SELECT" in result.stderr


def test_bad_configuration_names_the_variable(tmp_path: Path) -> None:
    result = driftline(
        "db", "migrate", "--data-dir", str(tmp_path), env={"DRIFTLINE_PARTITIONS": "many"}
    )
    assert result.returncode == 2
    assert "DRIFTLINE_PARTITIONS" in result.stderr


def test_topics_create_creates_then_reports_existing(broker: EmbeddedBroker) -> None:
    prefix = f"cli{uuid.uuid4().hex[:8]}"
    env = {
        "DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "DRIFTLINE_TOPIC_PREFIX": prefix,
        "DRIFTLINE_PARTITIONS": "3",
    }
    created = driftline("topics", "create", env=env)
    assert created.returncode == 0, created.stderr
    lines = dict(line.split("\t") for line in created.stdout.splitlines())
    assert lines == {
        f"{prefix}.{name}": "created"
        for name in [
            "predictions",
            "feedback",
            "alerts",
            "retrain-requests",
            "model-versions",
            "dlq",
        ]
    }
    metadata = AdminClient({"bootstrap.servers": broker.bootstrap_servers}).list_topics(timeout=10)
    assert len(metadata.topics[f"{prefix}.predictions"].partitions) == 3
    again = driftline("topics", "create", env=env)
    assert set(dict(line.split("\t") for line in again.stdout.splitlines()).values()) == {"exists"}


def test_broker_command_serves_kafka_and_stops_on_sigterm() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "driftline.cli", "broker", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert f"127.0.0.1:{port}" in line
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
        assert admin.list_topics(timeout=10).brokers
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
    with pytest.raises(OSError):  # nothing listens any more
        import socket

        socket.create_connection(("127.0.0.1", port), timeout=1).close()


@pytest.mark.e2e
def test_worker_answers_db_query_while_it_owns_the_store_and_stops_cleanly(
    worker_factory,
) -> None:
    worker = worker_factory()
    data_dir = worker.settings.data_dir
    assert (data_dir / "worker.json").exists()
    result = driftline(
        "db", "query", "--data-dir", str(data_dir), "SELECT count() AS n FROM predictions"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"n": 0}
    started = time.monotonic()
    assert worker.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 20
    assert not (data_dir / "worker.json").exists()
    after = driftline("db", "query", "--data-dir", str(data_dir), "SELECT 1 AS one")
    assert after.returncode == 0, after.stderr  # the store is free again: opened directly
    wait_for(lambda: json.loads(after.stdout), lambda v: v == {"one": 1}, 1, "direct query")
