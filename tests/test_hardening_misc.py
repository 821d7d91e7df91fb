"""Issue 11, low-severity hardening.

1. A bad monitor YAML stops ``driftline worker`` with exit code 2 and one line naming
   the file and the key (or the line) before any broker, topic or Faust starts.
2. Malformed retrain requests are counted by a bounded ``reason`` in
   ``driftline_retrain_requests_refused_total``.
3. A retrain request whose data range is longer than
   ``DRIFTLINE_RETRAIN_MAX_DATA_SECONDS`` is refused (logged, counted, committed).
4. The retrainer's ``/metrics`` listens on ``DRIFTLINE_RETRAINER_METRICS_HOST``
   (loopback by default), not on every interface.

The command-line and retrainer tests run ``driftline`` as real processes against the
real embedded broker and chDB; ``/metrics`` is read over HTTP and the listening
socket's address is read from the kernel (``/proc/net/tcp*``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from driftline.retrainer import worker as retrainer_worker
from driftline.schemas.events import RetrainRequestEvent
from driftline.schemas.monitor import MonitorConfigError, load_monitors
from e2e_support import wait_for
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from driftline.broker import EmbeddedBroker, free_port
from driftline.kafka import create_topics
from driftline.lifeline import die_with_parent
from driftline.metrics import OTHER, RetrainerMetrics
from driftline.settings import Settings

GOOD = "model_id: credit\nfeatures: {x: numeric, region: categorical}\n"
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
DAY = 86_400.0

# --------------------------------------------------------------------------- 1. monitor configs

#: name -> (file contents, what the one-line error must say besides the file name)
BAD_MONITORS: dict[str, tuple[bytes, str]] = {
    "yaml_syntax": (
        b"model_id: credit\nfeatures: {x: numeric}\ndrift:\n  numeric: [psi\nwindow: 1h\n",
        "<yaml>: line 5, column 7: ",
    ),
    "unknown_key": (
        b"model_id: credit\nfeatures: {x: numeric}\ndrift: {numeric: {methd: psi}}\n",
        "drift.numeric.methd: unknown key",
    ),
    "wrong_type": (
        b"model_id: credit\nfeatures: {x: numeric}\nbins: many\n",
        "bins: Input should be a valid integer",
    ),
    "not_a_mapping": (b"- model_id\n- credit\n", "<root>: expected a mapping of keys"),
    "not_utf8": (b"model_id: cr\xe9dit\nfeatures: {x: numeric}\n", "<file>: cannot read it:"),
}


def _monitors(folder: Path, bad: bytes) -> Path:
    folder.mkdir()
    (folder / "a_good.yaml").write_text(GOOD)
    path = folder / "b_bad.yaml"
    path.write_bytes(bad)
    return path


@pytest.mark.parametrize("case", sorted(BAD_MONITORS))
def test_load_monitors_errors_name_the_file_and_the_key(case: str, tmp_path: Path) -> None:
    text, expected = BAD_MONITORS[case]
    path = _monitors(tmp_path / "monitors", text)
    with pytest.raises(MonitorConfigError) as info:
        load_monitors(tmp_path / "monitors")
    error = info.value
    assert error.source == str(path)
    assert error.summary.startswith(f"{path}: {expected}"), error.summary
    assert "\n" not in error.summary
    assert str(path) in str(error)  # the multi-line form names the file too
    assert "<unicode string>" not in error.summary  # PyYAML's name for a string source


def test_a_model_configured_twice_names_both_files(tmp_path: Path) -> None:
    path = _monitors(tmp_path / "monitors", GOOD.encode())
    with pytest.raises(MonitorConfigError, match="another monitor") as info:
        load_monitors(tmp_path / "monitors")
    assert info.value.source == str(path)
    assert str(tmp_path / "monitors" / "a_good.yaml") in info.value.summary
    assert info.value.summary.startswith(f"{path}: model_id: model 'credit'")


@contextlib.contextmanager
def _silent_listener() -> Iterator[tuple[socket.socket, int]]:
    """A TCP port that accepts connections and never answers (a 'Kafka' to spy on)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        server.setblocking(False)
        yield server, int(server.getsockname()[1])


def _connected(server: socket.socket) -> bool:
    try:
        client, _ = server.accept()
    except BlockingIOError:
        return False
    client.close()
    return True


@pytest.mark.parametrize("case", ["yaml_syntax", "unknown_key", "wrong_type"])
def test_worker_refuses_a_bad_monitor_in_one_line_before_kafka(case: str, tmp_path: Path) -> None:
    text, expected = BAD_MONITORS[case]
    path = _monitors(tmp_path / "monitors", text)
    env = {**os.environ, "DRIFTLINE_LOG_LEVEL": "INFO"}
    for name in ("DRIFTLINE_CLICKHOUSE_URL", "DRIFTLINE_MONITORS_DIR"):
        env.pop(name, None)
    with _silent_listener() as (server, port):
        env["DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{port}"
        started = time.monotonic()
        command = ["worker", "--monitors", str(tmp_path / "monitors")]
        try:
            result = subprocess.run(
                [sys.executable, "-m", "driftline.cli", *command, "--data-dir", str(tmp_path)],
                capture_output=True,
                text=True,
                timeout=60,
                env=env,
            )
        except subprocess.TimeoutExpired:
            pytest.fail("the worker did not exit on a bad monitor config")
        seconds = time.monotonic() - started
        kafka_contacted = _connected(server)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.endswith("\n") and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"driftline: bad monitor config: {path}: {expected}")
    assert not kafka_contacted, "the worker reached for Kafka before checking its monitors"
    assert not (tmp_path / "worker.json").exists()
    assert seconds < 45, seconds  # a cold start on a loaded machine; Kafka is never reached


# --------------------------------------------------------------------------- 2, 3. refusals


def _request(**changes: Any) -> dict[str, Any]:
    request = {
        "type": "retrain_request",
        "request_id": f"req-{uuid.uuid4().hex[:8]}",
        "model_id": "credit",
        "model_version": "v1",
        "reason": ["alert-1"],
        "data_from": START,
        "data_to": START + 3600,
        "requested_at": START + 3600,
    }
    request.update(changes)
    return request


#: reason code -> a message on the retrain-requests topic that is refused for it
MALFORMED: dict[str, bytes] = {
    "invalid_json": b"{not json",
    "not_an_object": b"[1, 2]",
    "unknown_type": orjson.dumps(_request(type="alert")),
    "missing_field": orjson.dumps({"type": "retrain_request", "request_id": "r"}),
    "unknown_field": orjson.dumps(_request(priority="high")),
    "wrong_type": orjson.dumps(_request(model_id=5)),
    "invalid_value": orjson.dumps(_request(data_from="yesterday")),
}


@pytest.mark.parametrize("reason", sorted(MALFORMED))
def test_malformed_requests_get_a_bounded_reason(reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        RetrainRequestEvent.model_validate_json(MALFORMED[reason])
    assert retrainer_worker.refusal_reason(info.value) == reason
    assert reason in RetrainerMetrics.REFUSALS


def test_refused_requests_are_counted_by_reason_with_bounded_labels() -> None:
    registry = CollectorRegistry()
    metrics = RetrainerMetrics(registry, {})
    name = "driftline_retrain_requests_refused_total"
    for reason in RetrainerMetrics.REFUSALS:  # every series exists from the start
        assert registry.get_sample_value(name, {"reason": reason}) == 0.0
    metrics.request_refused("invalid_json")
    metrics.request_refused("invalid_json")
    metrics.request_refused("data_range_too_long")
    metrics.request_refused(f"made-up-{uuid.uuid4().hex}")  # never a new label value
    assert registry.get_sample_value(name, {"reason": "invalid_json"}) == 2.0
    assert registry.get_sample_value(name, {"reason": "data_range_too_long"}) == 1.0
    assert registry.get_sample_value(name, {"reason": OTHER}) == 1.0
    reasons = {
        sample.labels["reason"]
        for family in registry.collect()
        if family.name == "driftline_retrain_requests_refused"
        for sample in family.samples
        if sample.name.endswith("_total")
    }
    assert reasons == {*RetrainerMetrics.REFUSALS, OTHER}


def test_the_data_range_is_bounded_by_the_setting() -> None:
    default_bound = retrainer_worker.DEFAULT_MAX_DATA_SECONDS
    assert default_bound == Settings.model_fields["retrain_max_data_seconds"].default == 30 * DAY

    def event(seconds: float) -> RetrainRequestEvent:
        return RetrainRequestEvent.model_validate(_request(data_to=START + seconds))

    default = retrainer_worker.Retrainer(None, {}, None, print)
    assert default.refusal(event(30 * DAY)) is None
    code, reason = default.refusal(event(30 * DAY + 1)) or ("", "")
    assert code == "data_range_too_long"
    assert "DRIFTLINE_RETRAIN_MAX_DATA_SECONDS" in reason and "30.0 days" in reason
    assert (default.refusal(event(0)) or ("",))[0] == "empty_data_range"
    short = retrainer_worker.Retrainer(None, {}, None, print, max_data_seconds=3600)
    assert short.refusal(event(3600)) is None
    assert (short.refusal(event(3601)) or ("",))[0] == "data_range_too_long"


# --------------------------------------------------------------------------- the retrainer process

MONITOR = "model_id: credit\nfeatures: {x: numeric}\ntraining: {min_rows: 10}\n"


class RetrainerRun:
    """``driftline retrainer`` as its own process on a fresh prefix and data directory."""

    def __init__(self, broker: EmbeddedBroker, tmp_path: Path, **env: str) -> None:
        self.prefix = f"h{uuid.uuid4().hex[:10]}"
        self.bootstrap = broker.bootstrap_servers
        self.port = free_port()
        settings = Settings(
            kafka_bootstrap_servers=self.bootstrap,
            topic_prefix=self.prefix,
            partitions=1,
            data_dir=tmp_path / "data",
        )
        create_topics(settings, self.bootstrap)
        monitors = tmp_path / "monitors"
        monitors.mkdir()
        (monitors / "credit.yaml").write_text(MONITOR)
        self.env = {
            **os.environ,
            "DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "DRIFTLINE_TOPIC_PREFIX": self.prefix,
            "DRIFTLINE_PARTITIONS": "1",
            "DRIFTLINE_DATA_DIR": str(tmp_path / "data"),
            "DRIFTLINE_RETRAINER_METRICS_PORT": str(self.port),
            "DRIFTLINE_LOG_LEVEL": "INFO",
            **{f"DRIFTLINE_{name.upper()}": value for name, value in env.items()},
        }
        for name in ("DRIFTLINE_CLICKHOUSE_URL", "DRIFTLINE_RETRAINER_METRICS_HOST"):
            if name.removeprefix("DRIFTLINE_").lower() not in env:
                self.env.pop(name, None)
        self.log_path = tmp_path / "retrainer.log"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "driftline.cli", "retrainer", "--monitors", str(monitors)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(),  # never outlives the test run
            )

    def metrics(self, host: str = "127.0.0.1") -> str | None:
        if self.process.poll() is not None:
            pytest.fail(f"retrainer exited with {self.process.returncode}:\n{self.log()}")
        try:
            url = f"http://{host}:{self.port}/metrics"
            with urllib.request.urlopen(url, timeout=2) as answer:
                return str(answer.read().decode())
        except OSError:
            return None

    def committed(self) -> int:
        """Requests the retrainer's consumer group has committed (one partition)."""
        group = f"{self.prefix}-retrainer"
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group})
        try:
            topic = TopicPartition(f"{self.prefix}.retrain-requests", 0)
            (offset,) = consumer.committed([topic], timeout=10)
        finally:
            consumer.close()
        return max(int(offset.offset), 0)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        return int(self.process.returncode)


@pytest.fixture
def retrainer_factory(broker: EmbeddedBroker, tmp_path: Path) -> Iterator[Any]:
    started: list[RetrainerRun] = []

    def start(**env: str) -> RetrainerRun:
        process = RetrainerRun(broker, tmp_path, **env)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.process.poll() is None:
            os.killpg(process.process.pid, signal.SIGKILL)
            process.process.wait(10)


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on TCP ``port`` (from the kernel)."""
    found: set[str] = set()
    for table, size in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                address, _, hex_port = fields[1].partition(":")
                if fields[3] != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                    continue
                raw = bytes.fromhex(address)
                # the kernel prints each 32-bit word in host (little-endian) order
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, size, 4))
                family = socket.AF_INET if size == 4 else socket.AF_INET6
                found.add(socket.inet_ntop(family, words))
    return found


def _outside_address() -> str | None:
    """This machine's address on a non-loopback interface, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.123", 9))  # TEST-NET-1: no packet is sent
            address = str(probe.getsockname()[0])
        except OSError:
            return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def _refuses(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        return True
    return False


@pytest.mark.e2e
def test_retrainer_counts_refusals_bounds_data_range_and_serves_metrics_on_loopback(
    retrainer_factory: Any,
) -> None:
    retrainer = retrainer_factory(retrain_max_data_seconds=str(DAY))
    wait_for(retrainer.metrics, lambda text: text is not None, 60, "the retrainer's /metrics")

    too_long = _request(data_to=START + 2 * DAY, request_id="req-too-long")
    messages = [
        *MALFORMED.values(),
        orjson.dumps(too_long),
        orjson.dumps(_request(data_to=START, request_id="req-empty")),
        orjson.dumps(_request(request_id="req-no-rows")),  # valid: skipped, not refused
    ]
    producer = Producer({"bootstrap.servers": retrainer.bootstrap})
    for value in messages:
        producer.produce(f"{retrainer.prefix}.retrain-requests", value, key=b"credit")
    assert producer.flush(10) == 0
    wait_for(retrainer.committed, lambda n: n == len(messages), 60, "every request committed")

    text = retrainer.metrics()
    assert text is not None
    families = {family.name: family for family in text_string_to_metric_families(text)}
    refused = {
        sample.labels["reason"]: sample.value
        for sample in families["driftline_retrain_requests_refused"].samples
        if sample.name.endswith("_total")
    }
    assert refused == {
        **{reason: 1.0 for reason in MALFORMED},
        "empty_data_range": 1.0,
        "data_range_too_long": 1.0,
    }
    processed = {
        sample.labels["outcome"]: sample.value
        for sample in families["driftline_retrain_requests_processed"].samples
        if sample.name.endswith("_total") and sample.labels["model_id"] == "credit"
    }
    assert processed["skipped"] == 3.0 and processed["champion"] == 0.0  # too long, empty, no rows
    log = retrainer.log()
    assert "refusing retrain request req-too-long (data_range_too_long)" in log
    assert "more than the 86400 s (1.0 days)" in log and "DRIFTLINE_RETRAIN_MAX_DATA_SECONDS" in log
    assert "(invalid_json): <message>: Invalid JSON" in log
    assert "{not json" not in log  # a malformed message's bytes are not logged

    # 4. /metrics listens on loopback only, by default
    assert _listening_addresses(retrainer.port) == {"127.0.0.1"}
    outside = _outside_address()
    if outside is not None:
        assert _refuses(outside, retrainer.port), f"/metrics answers on {outside}"
    assert retrainer.stop() == 0


@pytest.mark.e2e
def test_retrainer_metrics_host_setting_is_the_interface(retrainer_factory: Any) -> None:
    # another loopback address: only the setting can make it listen there
    retrainer = retrainer_factory(retrainer_metrics_host="127.0.0.2")
    wait_for(
        lambda: retrainer.metrics("127.0.0.2"),
        lambda text: text is not None,
        60,
        "the retrainer's /metrics on 127.0.0.2",
    )
    assert _listening_addresses(retrainer.port) == {"127.0.0.2"}
    assert _refuses("127.0.0.1", retrainer.port)
    assert retrainer.stop() == 0
