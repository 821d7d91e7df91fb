"""Helpers for end-to-end tests: worker processes, polling, consuming, kcat."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from confluent_kafka import Consumer

from driftline.lifeline import die_with_parent
from driftline.settings import Settings
from driftline.store.remote import WorkerReader

T = TypeVar("T")


def wait_for(probe: Callable[[], T], done: Callable[[T], bool], timeout: float, what: str) -> T:
    """Poll ``probe`` until ``done(value)``; fail naming ``what`` and the last value."""
    deadline = time.monotonic() + timeout
    value = probe()
    while not done(value):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}; last value: {value!r}")
        time.sleep(0.1)
        value = probe()
    return value


@dataclass
class WorkerProcess:
    """A ``driftline worker`` running in its own process."""

    settings: Settings
    bootstrap_servers: str
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    reader: WorkerReader = field(init=False)

    def __post_init__(self) -> None:
        # the documented remote-use path: the worker takes its query token from the env
        token = self.env.setdefault("DRIFTLINE_QUERY_TOKEN", secrets.token_urlsafe(16))
        self.reader = WorkerReader(self.settings.worker_web_port, timeout=10, token=token)

    def start(self) -> WorkerProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "driftline.cli", "worker"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(),  # never outlives the test run
        )
        log.close()
        wait_for(self._health, lambda value: value is not None, 60, "the worker's /health page")
        return self

    def _health(self) -> dict[str, Any] | None:
        import json
        import urllib.request

        if self.process is not None and self.process.poll() is not None:
            pytest.fail(f"worker exited with {self.process.returncode}:\n{self.log_tail()}")
        try:
            url = f"http://127.0.0.1:{self.settings.worker_web_port}/health"
            with urllib.request.urlopen(url, timeout=2) as response:
                return dict(json.loads(response.read()))
        except OSError:
            return None

    def health(self) -> dict[str, Any]:
        value = self._health()
        assert value is not None, "worker did not answer /health"
        return value

    def query(self, sql: str) -> list[dict[str, Any]]:
        return self.reader.query(sql)

    def scalar(self, sql: str) -> Any:
        rows = self.query(sql)
        return next(iter(rows[0].values()))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        process, self.process = self.process, None
        if process is None:
            return 0
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        return int(process.returncode)

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def consume_all(
    bootstrap_servers: str, topic: str, expected: int, timeout: float = 30
) -> list[Any]:
    """Read ``expected`` messages of ``topic`` from the start (fails after ``timeout``)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    messages: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            messages.append(message)
    finally:
        consumer.close()
    return messages


def kcat_command() -> list[str] | None:
    """``kcat`` with an environment that uses a librdkafka able to talk to tansu, or None.

    Debian's kcat links librdkafka 2.0.2, which misreads the ApiVersions v3 answer
    of tansu 0.6; the librdkafka shipped in the confluent-kafka wheel (2.x, newer)
    reads it, so kcat is pointed at that library.
    """
    if shutil.which("kcat") is None:
        return None
    return ["kcat"]


def kcat_env(tmp_path: Path) -> dict[str, str]:
    """Environment for :func:`kcat_command` that loads the wheel's librdkafka."""
    import confluent_kafka

    libs = Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs"
    found = sorted(libs.glob("librdkafka*.so*"))
    env = dict(os.environ)
    if found:
        shim = tmp_path / "librdkafka"
        shim.mkdir(exist_ok=True)
        link = shim / "librdkafka.so.1"
        if not link.exists():
            link.symlink_to(found[0])
        env["LD_LIBRARY_PATH"] = f"{shim}:{env.get('LD_LIBRARY_PATH', '')}"
    return env
