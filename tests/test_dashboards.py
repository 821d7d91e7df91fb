"""Grafana dashboards as code: regenerated JSON equals the checked-in files, every
ClickHouse query runs against tables filled by a real pipeline run and returns rows,
every PromQL expression uses only contract metric names, datasource uids match the
provisioning.

The pipeline (one per module): tansu + a ``driftline worker`` process owning chDB, a
monitor YAML whose x2 drifts from window 4 on (drift alerts and a retrain request)
and whose accuracy drops from window 6 on; the worker is then stopped and the store
is opened directly (chDB allows one process per data directory) and model versions are
registered through the retrainer's registry (a promotion, a rejection, a rollback).
"""

from __future__ import annotations

import os
import re
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from backtest_streams import monitor_yaml, simulate, write_jsonl
from confluent_kafka import Producer
from driftline.retrainer.registry import ModelRegistry, VersionRecord, version_for_request
from e2e_support import WorkerProcess, wait_for
from test_monitor import EXTRA, clock_event

from driftline.backtest import reference_profile
from driftline.broker import EmbeddedBroker, free_port
from driftline.dashboards import (
    CLICKHOUSE_UID,
    PROMETHEUS_UID,
    build_dashboards,
    render,
    write_dashboards,
)
from driftline.kafka import create_topics
from driftline.settings import Settings
from driftline.store import EmbeddedStore, Store

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = ROOT / "grafana" / "dashboards"
DATASOURCES = ROOT / "grafana" / "provisioning" / "datasources" / "datasources.yml"
WINDOW = 60.0
SHIFT_WINDOW = 4
MODEL = "credit"

#: The metric contract of issue 6 (used when driftline.metrics does not exist).
CONTRACT_METRICS = {
    "driftline_ingested_messages_total",
    "driftline_ingested_rows_total",
    "driftline_dlq_messages_total",
    "driftline_consumer_lag_messages",
    "driftline_watermark_delay_seconds",
    "driftline_windows_closed_total",
    "driftline_window_close_duration_seconds",
    "driftline_alerts_opened_total",
    "driftline_retrain_requests_total",
    "driftline_prediction_latency_seconds",
    "driftline_drift_value",
    "driftline_performance_value",
    "driftline_retrain_requests_processed_total",
    "driftline_training_duration_seconds",
    "driftline_model_versions_published_total",
}


def loaded_dashboards() -> dict[str, dict[str, Any]]:
    return {
        path.name: orjson.loads(path.read_bytes()) for path in sorted(DASHBOARDS.glob("*.json"))
    }


def targets(board: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(panel title, target) of every panel, rows' panels included."""
    for panel in board.get("panels", []):
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                yield inner["title"], target


def clickhouse_queries() -> list[tuple[str, str]]:
    """(dashboard/panel or variable, SQL) of every ClickHouse query of every dashboard."""
    found = []
    for name, board in loaded_dashboards().items():
        for title, target in targets(board):
            if target["datasource"]["uid"] == CLICKHOUSE_UID:
                found.append((f"{name}: {title}", target["rawSql"]))
        for variable in board.get("templating", {}).get("list", []):
            if variable.get("datasource", {}).get("uid") == CLICKHOUSE_UID:
                found.append((f"{name}: ${variable['name']}", variable["query"]))
    return found


# --------------------------------------------------------------------------- files


def test_regenerating_the_dashboards_changes_nothing(tmp_path: Path) -> None:
    written = write_dashboards(tmp_path)
    assert sorted(p.name for p in written) == sorted(p.name for p in DASHBOARDS.glob("*.json"))
    for path in written:
        assert path.read_bytes() == (DASHBOARDS / path.name).read_bytes(), (
            f"{path.name} is stale: run python -m driftline.dashboards --out grafana/dashboards"
        )
    # the output is deterministic within one process too
    assert [render(b) for b in build_dashboards().values()] == [
        render(b) for b in build_dashboards().values()
    ]


def test_the_four_dashboards_cover_the_issue() -> None:
    boards = loaded_dashboards()
    assert set(boards) == {
        "driftline-overview.json",
        "driftline-drift.json",
        "driftline-versions.json",
        "driftline-operations.json",
    }
    for name, board in boards.items():
        assert board["uid"] == name.removesuffix(".json")
        assert list(targets(board)), f"{name} has no queries"
    drift = boards["driftline-drift.json"]
    assert any(p["type"] == "heatmap" for p in drift["panels"])
    variables = {v["name"] for v in drift["templating"]["list"]}
    assert variables == {"model_id", "feature", "statistic", "segment"}
    ops = boards["driftline-operations.json"]
    assert {t["datasource"]["uid"] for _, t in targets(ops)} == {CLICKHOUSE_UID, PROMETHEUS_UID}


def test_datasource_uids_match_the_provisioning() -> None:
    provisioned = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    by_uid = {d["uid"]: d["type"] for d in provisioned}
    assert by_uid == {
        CLICKHOUSE_UID: "grafana-clickhouse-datasource",
        PROMETHEUS_UID: "prometheus",
    }
    for name, board in loaded_dashboards().items():
        refs = [t["datasource"] for _, t in targets(board)]
        refs += [p["datasource"] for p in board["panels"] if "datasource" in p]
        refs += [v["datasource"] for v in board.get("templating", {}).get("list", [])]
        for ref in refs:
            assert by_uid.get(ref["uid"]) == ref["type"], f"{name}: unknown datasource {ref}"


def contract_metric_names() -> set[str]:
    """Metric families defined in driftline/metrics.py, or the contract list."""
    try:
        from prometheus_client import CollectorRegistry

        import driftline.metrics as metrics
    except ImportError:
        return CONTRACT_METRICS
    names: set[str] = set()
    for factory in ("WorkerMetrics", "RetrainerMetrics"):
        cls = getattr(metrics, factory, None)
        if cls is None:
            return CONTRACT_METRICS
        registry = CollectorRegistry()
        cls(registry, {})
        for family in registry.collect():
            # prometheus_client strips _total from counter family names
            names.add(family.name + ("_total" if family.type == "counter" else ""))
    return names


PROMQL_NAME = re.compile(r"\b(driftline_[a-z0-9_]+)")


def test_promql_uses_only_contract_metric_names() -> None:
    contract = contract_metric_names()
    assert contract >= CONTRACT_METRICS
    seen: set[str] = set()
    for name, board in loaded_dashboards().items():
        for title, target in targets(board):
            if target["datasource"]["uid"] != PROMETHEUS_UID:
                continue
            expr = target["expr"]
            for metric in PROMQL_NAME.findall(expr):
                base = re.sub(r"_(bucket|sum|count)$", "", metric)
                assert metric in contract or base in contract, (
                    f"{name} / {title}: {metric} is not in the metric contract"
                )
                seen.add(metric if metric in contract else base)
    # the operations view charts lag, DLQ, watermark delay and throughput
    assert {
        "driftline_consumer_lag_messages",
        "driftline_dlq_messages_total",
        "driftline_watermark_delay_seconds",
        "driftline_ingested_messages_total",
    } <= seen


# --------------------------------------------------------------------------- SQL


@dataclass(frozen=True)
class TimeRange:
    start: float
    end: float
    interval_seconds: int = 60


def expand(sql: str, time_range: TimeRange, variables: dict[str, str]) -> str:
    """The SQL Grafana's ClickHouse plugin would run (macros as in its pkg/macros)."""

    def time_filter(match: re.Match[str]) -> str:
        column = match.group(1).strip()
        return (
            f"{column} >= toDateTime({int(time_range.start)}) AND "
            f"{column} <= toDateTime({int(time_range.end)})"
        )

    def time_interval(match: re.Match[str]) -> str:
        column = match.group(1).strip()
        return (
            f"toStartOfInterval(toDateTime({column}), "
            f"INTERVAL {max(time_range.interval_seconds, 1)} second)"
        )

    out = re.sub(r"\$__timeFilter\(([^)]*)\)", time_filter, sql)
    out = re.sub(r"\$__timeInterval\(([^)]*)\)", time_interval, out)
    out = out.replace("$__fromTime", f"toDateTime({int(time_range.start)})")
    out = out.replace("$__toTime", f"toDateTime({int(time_range.end)})")
    out = out.replace("$__interval_s", str(time_range.interval_seconds))
    for name, value in variables.items():
        out = out.replace("${" + name + "}", value)
        out = re.sub(r"\$" + name + r"\b", value, out)
    leftover = re.search(r"\$\{?\w+", out)
    assert leftover is None, f"unexpanded {leftover.group(0)} in:\n{out}"
    return out


def test_the_expander_follows_the_plugin_macros() -> None:
    sql = "SELECT $__timeInterval(t) AS time WHERE $__timeFilter(t) AND m = '${model_id}'"
    assert expand(sql, TimeRange(10, 20, 30), {"model_id": "m1"}) == (
        "SELECT toStartOfInterval(toDateTime(t), INTERVAL 30 second) AS time "
        "WHERE t >= toDateTime(10) AND t <= toDateTime(20) AND m = 'm1'"
    )
    with pytest.raises(AssertionError, match="unexpanded"):
        expand("SELECT '$feature'", TimeRange(0, 1), {})


@dataclass
class Pipeline:
    store: Store
    time_range: TimeRange
    request_id: str
    alert_ids: list[str]


def _send(producer: Producer, topic: str, lines: list[bytes]) -> None:
    for line in lines:
        producer.produce(topic, line, key=MODEL.encode())
    assert producer.flush(15) == 0


def _with_latency(line: bytes, seed: int) -> bytes:
    event = orjson.loads(line)
    if event["type"] == "prediction_batch":
        n = len(event["event_ids"])
        event["latency_ms"] = [round(5.0 + ((seed + i) * 7919 % 1000) / 40.0, 2) for i in range(n)]
    return orjson.dumps(event)


def _register_versions(store: Store, request_id: str, alert_ids: list[str]) -> None:
    """Versions through the retrainer's registry: an initial champion, a retrain that wins
    and is promoted, one that loses, then a rollback of the winner."""
    registry = ModelRegistry(store)
    now = time.time() - 120
    data = {"data_from": 1_767_225_600.0, "data_to": 1_767_225_600.0 + 8 * WINDOW}
    registry.record(
        VersionRecord(
            model_id=MODEL,
            version="v1",
            artifact_uri=f"file://artifacts/{MODEL}/v1",
            status="champion",
            created_at=now,
            updated_at=now,
            decision="initial model",
        )
    )
    common = {"model_id": MODEL, "parent_version": "v1", "device": "cpu", **data}
    winner = VersionRecord(
        **common,
        version=version_for_request(request_id),
        artifact_uri=f"file://artifacts/{MODEL}/{version_for_request(request_id)}",
        status="candidate",
        request_id=request_id,
        alert_ids=tuple(alert_ids),
        metrics={"candidate.accuracy": 0.91, "champion.accuracy": 0.62},
        decision="candidate accuracy 0.91 > champion accuracy 0.62 + margin 0.0: promote",
        train_rows=3200,
        holdout_rows=800,
        training_seconds=2.5,
        cpu_seconds=4.75,
        bytes_read=512_000,
        created_at=now + 10,
        updated_at=now + 10,
    )
    loser = winner.model_copy(
        update={
            "version": version_for_request("req-loser"),
            "artifact_uri": f"file://artifacts/{MODEL}/loser",
            "status": "rejected",
            "request_id": "req-loser",
            "alert_ids": tuple(alert_ids[:1]),
            "metrics": {"candidate.accuracy": 0.6, "champion.accuracy": 0.62},
            "decision": "candidate accuracy 0.60 <= champion accuracy 0.62 + margin 0.0",
            "created_at": now + 20,
            "updated_at": now + 20,
        }
    )
    registry.record(winner, loser)
    registry.promote(MODEL, winner.version)
    rollback = registry.rollback(MODEL)
    assert rollback.restored.version == "v1"
    # A rollout the monitor rejected live, and one running in shadow.
    for version in ("v-worse", "v-shadow"):
        registry.record(
            loser.model_copy(
                update={
                    "version": version,
                    "request_id": f"req-{version}",
                    "status": "candidate",
                    "created_at": now + 30,
                    "updated_at": now + 30,
                }
            )
        )
        registry.start_rollout(MODEL, version, "shadow")
    worse = registry.require(MODEL, "v-worse")
    registry.record(
        worse.with_status("rejected").model_copy(
            update={"decision": "rollout reject (shadow -> 0) at 2026-01-01T00:00:00Z: worse"}
        )
    )


@pytest.fixture(scope="module")
def pipeline(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    tmp = tmp_path_factory.mktemp("dashboards")
    ref = simulate(
        n_windows=2,
        per_window=1000,
        n_numeric=4,
        categorical={"region": {"north": 0.5, "south": 0.3, "east": 0.2}},
        seed=1,
        window_seconds=WINDOW,
        id_prefix="r",
        start=1_767_225_600.0 - 3600,
        segments={"de": 0.7, "fr": 0.3},
    )
    stream = simulate(
        n_windows=8,
        per_window=500,
        n_numeric=4,
        categorical={"region": {"north": 0.5, "south": 0.3, "east": 0.2}},
        seed=2,
        window_seconds=WINDOW,
        mean_shift={"x2": (SHIFT_WINDOW, 0.75)},
        accuracy_change=(6, 0.6),
        segments={"de": 0.7, "fr": 0.3},
    )
    monitors = tmp / "monitors"
    monitors.mkdir()
    monitor = monitors / f"{MODEL}.yaml"
    extra = EXTRA + "segments: {keys: [country], min_samples: 100}\n"
    extra += "drift: {multivariate: {variance: 0.65}}\n"
    extra += "performance: {estimation: {max_label_coverage: 0.5}}\n"
    monitor.write_text(monitor_yaml(stream, window="1m", allowed_lateness="10s", extra=extra))
    ref_path = write_jsonl(ref, tmp / "ref.jsonl")
    events = write_jsonl(stream, tmp / "events.jsonl", batch_size=250)
    prefix = f"dash{uuid.uuid4().hex[:8]}"
    data_dir = tmp / "data"
    port = free_port()
    settings = Settings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        topic_prefix=prefix,
        partitions=2,
        data_dir=data_dir,
        worker_web_port=port,
    )
    env = {
        **os.environ,
        "DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "DRIFTLINE_TOPIC_PREFIX": prefix,
        "DRIFTLINE_PARTITIONS": "2",
        "DRIFTLINE_DATA_DIR": str(data_dir),
        "DRIFTLINE_WORKER_WEB_PORT": str(port),
        "DRIFTLINE_INGEST_FLUSH_SECONDS": "0.2",
        "DRIFTLINE_LOG_LEVEL": "WARNING",
        "DRIFTLINE_MONITORS_DIR": str(monitors),
        "DRIFTLINE_MONITOR_INTERVAL_SECONDS": "0.5",
    }
    env.pop("DRIFTLINE_CLICKHOUSE_URL", None)
    create_topics(settings, broker.bootstrap_servers)
    worker = WorkerProcess(settings, broker.bootstrap_servers, env, tmp / "worker.log").start()
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers, "linger.ms": 5})
    try:
        worker.reader.save_profile(reference_profile(monitor, ref_path)[1].to_json())
        lines = [_with_latency(x, i) for i, x in enumerate(events.read_bytes().splitlines())]
        _send(producer, settings.topics.predictions, [x for x in lines if b"prediction" in x[:40]])
        _send(producer, settings.topics.feedback, [x for x in lines if b"feedback" in x[:40]])
        _send(
            producer,
            settings.topics.predictions,
            [clock_event(float(stream.timestamps.max()) + 2 * WINDOW + 10)],
        )

        def progress() -> tuple[int, int, int]:
            return (
                int(worker.scalar("SELECT uniqExact(window_start) FROM window_metrics")),
                int(worker.scalar("SELECT count() FROM alerts")),
                int(worker.scalar("SELECT count() FROM window_metrics WHERE label_coverage > 0")),
            )

        wait_for(progress, lambda p: p[0] >= 8 and p[1] > 0 and p[2] > 0, 90, "windows + alerts")
        drift = worker.query("SELECT 1 AS one FROM alerts WHERE kind = 'data_drift' LIMIT 1")
        assert drift, "the drift of x2 should raise a data_drift alert"
    finally:
        producer.flush(10)
        worker.stop(signal.SIGTERM)  # releases the chDB directory
    store = EmbeddedStore(data_dir / "chdb", settings.clickhouse_database)
    alert_ids = [r["alert_id"] for r in store.query("SELECT alert_id FROM alerts FINAL")]
    request_id = f"req-{uuid.uuid4().hex}"
    _register_versions(store, request_id, alert_ids)
    start = float(stream.timestamps.min()) - 86_400
    yield Pipeline(store, TimeRange(start, time.time() + 86_400), request_id, alert_ids)
    store.close()


def _variables(pipeline: Pipeline) -> dict[str, str]:
    """Dashboard variables chosen from what the variable queries return."""
    rng = pipeline.time_range
    boards = loaded_dashboards()
    templating = {v["name"]: v for v in boards["driftline-drift.json"]["templating"]["list"]}

    def options(name: str, chosen: dict[str, str]) -> list[str]:
        rows = pipeline.store.query(expand(templating[name]["query"], rng, chosen))
        return [next(iter(row.values())) for row in rows]

    models = options("model_id", {})
    assert MODEL in models
    chosen = {"model_id": MODEL}
    features = options("feature", chosen)
    assert "x2" in features and "region" in features
    statistics = options("statistic", chosen)
    assert statistics
    segments = options("segment", chosen)
    assert segments == ["(whole model)", "country=de", "country=fr"]  # _other: no rows
    return {
        "model_id": MODEL,
        "feature": "x2",
        "statistic": statistics[0],
        "segment": "(whole model)",
    }


@pytest.mark.e2e
def test_every_clickhouse_query_returns_rows_on_a_real_pipeline(pipeline: Pipeline) -> None:
    variables = _variables(pipeline)
    queries = clickhouse_queries()
    assert len(queries) >= 15
    empty = []
    for where, sql in queries:
        rows = pipeline.store.query(expand(sql, pipeline.time_range, variables))
        if not rows:
            empty.append(where)
    assert not empty, f"queries without rows: {empty}"


@pytest.mark.e2e
def test_panels_show_what_the_pipeline_did(pipeline: Pipeline) -> None:
    """A few panels checked for content, not just for rows."""
    variables = _variables(pipeline)
    by_title = {where.split(": ", 1)[1]: sql for where, sql in clickhouse_queries()}

    def run(title: str, **override: str) -> list[dict[str, Any]]:
        sql = expand(by_title[title], pipeline.time_range, {**variables, **override})
        return pipeline.store.query(sql)

    # the open alerts include the drift of x2, still critical in the last window
    alerts = run("Open alerts")
    assert any(a["feature"] == "x2" and a["latest_status"] == "critical" for a in alerts)
    # the histogram of x2: shares sum to 1 on both sides, over the profile's 12 bins
    hist = run("${feature}: reference vs current histogram")
    assert len(hist) == 12
    assert sum(r["reference"] for r in hist) == pytest.approx(1.0)
    assert sum(r["current"] for r in hist) == pytest.approx(1.0)
    categorical = run("${feature}: reference vs current histogram", feature="region")
    assert [r["bucket"] for r in categorical] == ["north", "south", "east", "(unseen)"]
    assert categorical[-1]["current"] == 0
    # the performance band brackets the value
    # the performance band brackets the value; the warning and critical lines (the
    # learned levels of each window) lie below the reference accuracy
    for row in run("Primary performance metric with 95% band"):
        assert row["lower"] <= row["value"] <= row["upper"]
        assert row["critical_line"] < row["warning_line"] < row["reference"]
    # the retrained versions' training cost, per day
    (cost,) = run("Training cost per day")
    assert cost["versions_trained"] >= 1 and cost["wall_seconds"] >= 2.5
    assert cost["cpu_seconds"] >= 4.75 and cost["bytes_read"] >= 512_000
    # every retrain reason names a stored alert
    reasons = run("Retrain reasons (alerts behind each version)")
    assert {r["alert_id"] for r in reasons} == set(pipeline.alert_ids)
    assert all(r["kind"] for r in reasons)
    # the promotion, the rejection and the rollback, with their decisions
    history = {r["version"]: r for r in run("Version history")}
    statuses = {r["status"] for r in history.values()}
    assert statuses == {"champion", "rejected", "rolled_back", "shadow"}
    assert history["v1"]["status"] == "champion"  # restored by the rollback
    rolled_back = [r for r in history.values() if r["status"] == "rolled_back"]
    assert rolled_back[0]["request_id"] == pipeline.request_id
    assert "promote" in rolled_back[0]["decision"]
    counts = {r["status"]: int(r["versions"]) for r in run("Versions by status")}
    assert counts == {"champion": 1, "rejected": 2, "rolled_back": 1, "shadow": 1}
    # the running challenger and the live rollout decision
    rollouts = {r["version"]: r for r in run("Rollouts (challengers and live decisions)")}
    assert set(rollouts) == {"v-shadow", "v-worse"}
    assert (rollouts["v-shadow"]["status"], rollouts["v-shadow"]["traffic"]) == ("shadow", 0.0)
    assert rollouts["v-worse"]["decision"].startswith("rollout reject")
    # the latency percentiles come from the events' latency_ms
    latency = run("Prediction latency (latency_ms)")
    assert all(5.0 <= r["p50"] <= r["p99"] <= 30.0 for r in latency)
