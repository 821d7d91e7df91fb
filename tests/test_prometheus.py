"""The alert rules under promtool, and a real Prometheus server scraping a real worker."""

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from backtest_streams import monitor_yaml, simulate, write_jsonl
from confluent_kafka import Producer
from e2e_support import WorkerProcess, wait_for
from prometheus_client.parser import text_string_to_metric_families
from test_monitor import clock_event

from driftline.backtest import reference_profile, run_backtest
from driftline.broker import free_port
from driftline.lifeline import die_with_parent

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "prometheus" / "rules.yml"
RULE_TESTS = ROOT / "prometheus" / "rules_test.yml"
COMPOSE_CONFIG = ROOT / "prometheus" / "prometheus.yml"

MONITOR = """\
model_id: credit
features:
  income: numeric
  region: categorical
"""


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (Debian package prometheus; scripts/setup.sh)")
    return found


def run(*command: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_promtool_accepts_the_rules_and_the_compose_config() -> None:
    promtool = tool("promtool")
    assert "SUCCESS" in run(promtool, "check", "rules", str(RULES))
    assert "SUCCESS" in run(promtool, "check", "config", str(COMPOSE_CONFIG))


def test_promtool_rule_unit_tests_pass() -> None:
    promtool = tool("promtool")
    assert "SUCCESS" in run(promtool, "test", "rules", str(RULE_TESTS))


def test_every_alert_has_severity_annotations_and_a_firing_unit_test() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    alerts = [rule for group in groups for rule in group["rules"] if "alert" in rule]
    names = {rule["alert"] for rule in alerts}
    assert {
        "DriftlineDataDrift",
        "DriftlinePerformanceDrop",
        "DriftlineDLQRate",
        "DriftlineConsumerLag",
        "DriftlineWatermarkStalled",
        "DriftlineNoWindowsClosed",
        "DriftlineWorkerDown",
        "DriftlineWorkerAbsent",
    } <= names
    for rule in alerts:
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    fired = {case["alertname"] for case in cases if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    assert fired == names, f"alerts never shown firing: {names - fired}"
    assert quiet == names, f"alerts never shown quiet: {names - quiet}"


def test_drift_and_performance_alerts_use_the_exported_thresholds() -> None:
    """No copy of the default thresholds in the rules: the worker exports each model's own
    thresholds, and the error metrics the rules treat as lower-is-better are exactly the
    detector's."""
    import re

    from driftline.detectors.performance import HIGHER_IS_BETTER

    groups = yaml.safe_load(RULES.read_text())["groups"]
    rules = {rule.get("alert"): rule["expr"] for group in groups for rule in group["rules"]}
    for name in ("DriftlineDataDrift", "DriftlinePredictionDrift"):
        assert "driftline_drift_critical_threshold" in rules[name], name
        assert not re.search(r"\bvector\(", rules[name]), name
    performance = rules["DriftlinePerformanceDrop"]
    assert "driftline_performance_critical_level" in performance
    lower = {metric for metric, higher in HIGHER_IS_BETTER.items() if not higher}
    for alternatives in re.findall(r'metric[!=]~"([^"]+)"', performance):
        assert set(alternatives.split("|")) == lower, alternatives


# --------------------------------------------------------------------------- a real server


class PrometheusServer:
    """Debian's ``prometheus`` on a free port, with a temporary config and data folder."""

    def __init__(self, folder: Path, worker_port: int) -> None:
        self.port = free_port()
        self.folder = folder
        # the rules as shipped, evaluated every second rather than every 30 s, so that a
        # recorded rate exists two scrapes after traffic and not after a 30 s group tick
        rules = yaml.safe_load(RULES.read_text())
        for group in rules["groups"]:
            group["interval"] = "1s"
        rules_file = folder / "rules.yml"
        rules_file.write_text(json.dumps(rules))
        config = folder / "prometheus.yml"
        config.write_text(
            json.dumps(  # JSON is YAML
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(rules_file)],
                    "scrape_configs": [
                        {
                            "job_name": "driftline-worker",
                            "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}],
                        }
                    ],
                }
            )
        )
        log = open(folder / "prometheus.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                tool("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(),  # never outlives the test run
        )
        log.close()

    def get(self, path: str, **params: str) -> Any:
        if self.process.poll() is not None:
            log = (self.folder / "prometheus.log").read_text(errors="replace")
            pytest.fail(f"prometheus exited with {self.process.returncode}:\n{log[-3000:]}")
        url = f"http://127.0.0.1:{self.port}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return json.loads(answer.read())
        except OSError:
            return None

    def query(self, promql: str) -> dict[str, float] | None:
        """``label=value,...`` (name left out) of each result series to its value (None: no
        answer)."""
        answer = self.get("/api/v1/query", query=promql)
        if answer is None or answer.get("status") != "success":
            return None
        return {
            ",".join(
                f"{k}={v}" for k, v in sorted(item["metric"].items()) if k != "__name__"
            ): float(item["value"][1])
            for item in answer["data"]["result"]
        }

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@pytest.fixture
def prometheus_for() -> Iterator[Callable[[Path, int], PrometheusServer]]:
    started: list[PrometheusServer] = []

    def start(folder: Path, worker_port: int) -> PrometheusServer:
        server = PrometheusServer(folder, worker_port)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def batch(prefix: str, rows: int, now: float) -> bytes:
    return orjson.dumps(
        {
            "type": "prediction_batch",
            "model_id": "credit",
            "model_version": "v1",
            "event_ids": [f"{prefix}-{i}" for i in range(rows)],
            "timestamps": [now - rows + i for i in range(rows)],
            "features": {
                "income": [float(i) for i in range(rows)],
                "region": [["eu", "us"][i % 2] for i in range(rows)],
            },
            "predictions": [i % 2 for i in range(rows)],
            "latency_ms": [float(1 + i % 50) for i in range(rows)],
        }
    )


def single(event_id: str, model_id: str, now: float) -> bytes:
    return orjson.dumps(
        {
            "type": "prediction",
            "event_id": event_id,
            "model_id": model_id,
            "model_version": "v1",
            "timestamp": now,
            "features": {"income": 1.0, "region": "eu"},
            "prediction": 1,
        }
    )


def labels(model_id: str, label: int, count: int) -> bytes:
    return orjson.dumps(
        {
            "type": "feedback_batch",
            "model_id": model_id,
            "event_ids": [f"b0-{i}" for i in range(count)],
            "timestamps": [time.time()] * count,
            "labels": [label] * count,
        }
    )


@pytest.mark.e2e
def test_a_real_prometheus_scrapes_a_running_worker(
    worker_factory: Callable[..., WorkerProcess],
    producer: Producer,
    prometheus_for: Callable[[Path, int], PrometheusServer],
    tmp_path: Path,
) -> None:
    tool("prometheus")
    monitors = tmp_path / "monitors"
    monitors.mkdir()
    (monitors / "credit.yaml").write_text(MONITOR)
    worker = worker_factory(monitors_dir=str(monitors), monitor_interval_seconds="0.5")
    topics = worker.settings.topics
    port = worker.settings.worker_web_port
    server = prometheus_for(tmp_path, port)

    now = time.time()
    good = [batch(f"b{k}", 250, now) for k in range(4)]
    good += [single(f"s{i}", f"unmonitored-{i}", now) for i in range(30)]
    bad = [b"{not json", b"[]", orjson.dumps({"type": "prediction", "model_id": "credit"})]
    for number, message in enumerate(good + bad):
        producer.produce(topics.predictions, message, key=str(number % 7).encode())
    producer.produce(topics.feedback, labels("credit", 1, 100), key=b"f")
    assert producer.flush(15) == 0
    predictions, feedback = 4 * 250 + 30, 100

    def scraped() -> dict[str, Any]:
        return {
            "up": server.query('up{job="driftline-worker"}'),
            "rows": server.query("sum by (topic, model_id) (driftline_ingested_rows_total)"),
            "messages": server.query("sum by (topic) (driftline_ingested_messages_total)"),
            "dlq": server.query("sum by (reason) (driftline_dlq_messages_total) > 0"),
        }

    want_rows = {
        f"model_id=_other,topic={topics.predictions}": 30.0,
        f"model_id=credit,topic={topics.predictions}": 4 * 250.0,
        f"model_id=credit,topic={topics.feedback}": 100.0,
    }
    want = {
        "up": {f"instance=127.0.0.1:{port},job=driftline-worker": 1.0},
        "rows": want_rows,
        "messages": {f"topic={topics.predictions}": 37.0, f"topic={topics.feedback}": 1.0},
        "dlq": {
            "reason=invalid_json": 1.0,
            "reason=not_an_object": 1.0,
            "reason=missing_field": 1.0,
        },
    }
    got = wait_for(scraped, lambda value: value == want, 90, "Prometheus to scrape the counts")
    assert sum(got["rows"].values()) == predictions + feedback
    assert worker.health()["prediction_rows"] == predictions

    # latency histogram: every batch row carried latency_ms (1..50 ms); singles did not
    latency = server.query('driftline_prediction_latency_seconds_count{model_id="credit"}')
    assert latency is not None and list(latency.values()) == [1000.0]
    under = server.query(
        'driftline_prediction_latency_seconds_bucket{model_id="credit",le="0.025"}'
    )
    assert under is not None and list(under.values()) == [4 * 125.0]  # 1..25 ms of each 50

    # per-partition gauges of the worker's assignment, and the rules are loaded and evaluated
    def partition_gauges() -> tuple[Any, ...]:
        return (
            server.query(f'driftline_consumer_lag_messages{{topic="{topics.predictions}"}}'),
            server.query(f'driftline_watermark_delay_seconds{{topic="{topics.predictions}"}}'),
            server.query("driftline:ingested_rows:rate5m"),
        )

    # the recording rule runs over the scraped series: each needs two scrapes for a rate
    recorded = {f"job=driftline-worker,{key}" for key in want_rows}
    lag, delay, _ = wait_for(
        partition_gauges,
        lambda v: all(v) and len(v[0]) == worker.settings.partitions and v[2].keys() == recorded,
        60,
        "lag, watermark delay and a recorded rate of every ingested series",
    )
    assert set(lag.values()) == {0.0}
    assert all(0 <= value < 600 for value in delay.values())

    # more traffic: the counter grows between scrapes, so the recorded rate rises
    producer.produce(topics.predictions, batch("late", 250, time.time()), key=b"0")
    assert producer.flush(15) == 0
    key = f"job=driftline-worker,model_id=credit,topic={topics.predictions}"
    wait_for(
        lambda: server.query("driftline:ingested_rows:rate5m") or {},
        lambda value: value.get(key, 0.0) > 0,
        60,
        "a positive recorded ingest rate",
    )
    groups = server.get("/api/v1/rules")["data"]["groups"]
    alerting = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert alerting["DriftlineWorkerDown"]["state"] == "inactive"
    assert alerting["DriftlineWorkerAbsent"]["health"] == "ok"


def worker_samples(worker: WorkerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the worker's ``/metrics`` page by name and sorted labels."""
    url = f"http://127.0.0.1:{worker.settings.worker_web_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = answer.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.mark.e2e
def test_worker_metrics_follow_the_monitor_like_the_backtest(
    worker_factory: Callable[..., WorkerProcess], producer: Producer, tmp_path: Path
) -> None:
    window = 60.0
    reference = simulate(
        n_windows=2,
        per_window=1000,
        n_numeric=4,
        seed=1,
        window_seconds=window,
        id_prefix="r",
        start=1_767_225_600.0 - 3600,
    )
    stream = simulate(
        n_windows=6,
        per_window=500,
        n_numeric=4,
        seed=2,
        window_seconds=window,
        mean_shift={"x2": (3, 0.75)},
    )
    monitors = tmp_path / "monitors"
    monitors.mkdir()
    monitor = monitors / "credit.yaml"
    extra = "retrain:\n  min_labelled_rows: 100\n"
    monitor.write_text(monitor_yaml(stream, window="1m", allowed_lateness="10s", extra=extra))
    ref_path = write_jsonl(reference, tmp_path / "ref.jsonl")
    events = write_jsonl(stream, tmp_path / "events.jsonl", batch_size=250)
    run_backtest(monitor, ref_path, events, tmp_path / "backtest")
    alerts = [
        orjson.loads(line)
        for line in (tmp_path / "backtest" / "alerts.jsonl").read_bytes().splitlines()
    ]
    requests = (tmp_path / "backtest" / "retrain_requests.jsonl").read_bytes().splitlines()
    rows = [
        orjson.loads(line)
        for line in (tmp_path / "backtest" / "metrics.jsonl").read_bytes().splitlines()
    ]
    newest = max(row["window_start"] for row in rows)
    latest = {}  # the newest window's rows, latest revision last
    for row in sorted(rows, key=lambda row: row["revision"]):
        if row["window_start"] == newest and row["primary"] and row["value"] is not None:
            # on a critical row, threshold is the monitor's critical threshold
            critical = row["threshold"] if row["status"] == "critical" else None
            latest[row["kind"], row["metric"], row["feature"]] = (row["value"], critical)
    assert alerts and requests

    worker = worker_factory(monitors_dir=str(monitors), monitor_interval_seconds="0.5")
    worker.reader.save_profile(reference_profile(monitor, ref_path)[1].to_json())
    for line in events.read_bytes().splitlines():
        producer.produce(worker.settings.topics.predictions, line, key=b"credit")
    clock = float(stream.timestamps.max()) + 2 * window + 10
    producer.produce(worker.settings.topics.predictions, clock_event(clock), key=b"credit")
    assert producer.flush(15) == 0

    credit = (("model_id", "credit"),)
    features = {"prediction": "__prediction__", "score": "__score__"}
    want: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {
        ("driftline_windows_closed_total", credit): 6.0,
        ("driftline_retrain_requests_total", credit): float(len(requests)),
    }
    for alert in alerts:
        key = (("kind", alert["kind"]), ("model_id", "credit"), ("severity", alert["severity"]))
        want["driftline_alerts_opened_total", key] = (
            want.get(("driftline_alerts_opened_total", key), 0.0) + 1
        )
    for (kind, metric, feature), (value, critical) in latest.items():
        if kind == "data_drift" or kind == "prediction_drift":
            name = features.get(feature, feature) if kind == "prediction_drift" else feature
            key = (("feature", name), ("model_id", "credit"), ("statistic", metric))
            want["driftline_drift_value", key] = value
            if critical is not None:
                want["driftline_drift_critical_threshold", key] = critical
        elif kind == "performance":
            want["driftline_performance_value", (("metric", metric), ("model_id", "credit"))] = (
                value
            )

    def observed() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        found = worker_samples(worker)
        return {key: found.get(key, math.nan) for key in want}

    got = wait_for(observed, lambda value: value == want, 60, "the monitor's metrics")
    assert any(name == "driftline_drift_value" for name, _ in got)
    assert any(name == "driftline_drift_critical_threshold" for name, _ in got), (
        "the drifting x2 should be critical in the newest window"
    )
    closes = worker_samples(worker)["driftline_window_close_duration_seconds_count", credit]
    assert closes >= 6
