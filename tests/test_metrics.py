"""The Prometheus metrics (driftline.metrics) on fresh registries: cardinality guard,
the vectorised histogram against prometheus-client's own, naming conventions."""

from __future__ import annotations

import asyncio
import math
import time
import urllib.request
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from driftline.detectors.evaluate import MetricRow, WindowReport
from driftline.schemas.events import AlertEvent
from driftline.schemas.monitor import MonitorConfig
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from driftline.broker import free_port
from driftline.metrics import (
    LATENCY_BUCKETS,
    OTHER,
    RetrainerMetrics,
    VectorHistogram,
    WorkerMetrics,
    consumer_lags,
    critical_level,
    start_metrics_server,
)

T0 = 1_767_225_600
CREDIT = MonitorConfig(model_id="credit", features={"income": "numeric", "region": "categorical"})
MONITORS = {"credit": CREDIT}

#: The metric contract of issue 6: family name -> (type, label names).
WORKER_CONTRACT = {
    "driftline_ingested_messages": ("counter", {"topic"}),
    "driftline_ingested_rows": ("counter", {"topic", "model_id"}),
    "driftline_dlq_messages": ("counter", {"reason"}),
    "driftline_consumer_lag_messages": ("gauge", {"topic", "partition"}),
    "driftline_watermark_delay_seconds": ("gauge", {"topic", "partition"}),
    "driftline_windows_closed": ("counter", {"model_id"}),
    "driftline_predictions_beyond_horizon": ("counter", {"model_id"}),
    "driftline_window_close_duration_seconds": ("histogram", {"model_id"}),
    "driftline_alerts_opened": ("counter", {"model_id", "kind", "severity"}),
    "driftline_retrain_requests": ("counter", {"model_id"}),
    "driftline_prediction_latency_seconds": ("histogram", {"model_id"}),
    "driftline_drift_value": ("gauge", {"model_id", "feature", "statistic"}),
    "driftline_performance_value": ("gauge", {"model_id", "metric"}),
    "driftline_drift_critical_threshold": ("gauge", {"model_id", "feature", "statistic"}),
    "driftline_performance_critical_level": ("gauge", {"model_id", "metric"}),
    "driftline_estimation_error": ("gauge", {"model_id", "metric"}),
    "driftline_rollout_decisions": ("counter", {"model_id", "decision"}),
    "driftline_rollout_traffic": ("gauge", {"model_id", "phase"}),
    "driftline_rollout_difference": ("gauge", {"model_id", "bound"}),
    "driftline_rollout_labels": ("gauge", {"model_id"}),
}
RETRAINER_CONTRACT = {
    "driftline_retrain_requests_processed": ("counter", {"model_id", "outcome"}),
    "driftline_training_duration_seconds": ("histogram", {"model_id", "device"}),
    "driftline_model_versions_published": ("counter", {"model_id", "status"}),
    "driftline_retrain_requests_refused": ("counter", {"reason"}),
    "driftline_training_cpu_seconds": ("counter", {"model_id"}),
    "driftline_training_gpu_seconds": ("counter", {"model_id"}),
    "driftline_training_rows": ("counter", {"model_id"}),
    "driftline_training_read_bytes": ("counter", {"model_id"}),
}


def samples(registry: CollectorRegistry, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples called ``name`` in the registry's exposition, by sorted label pairs."""
    found = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def prediction_table(model_ids: list[str], latency_ms: list[float | None]) -> pa.Table:
    codes = {name: index for index, name in enumerate(dict.fromkeys(model_ids))}
    return pa.table(
        {
            "model_id": pa.DictionaryArray.from_arrays(
                pa.array([codes[m] for m in model_ids], pa.int32()), pa.array(list(codes))
            ),
            "kafka_topic": pa.array(["p.predictions"] * len(model_ids)).dictionary_encode(),
            "latency_ms": pa.array(latency_ms, pa.float64()),
        }
    )


def test_ten_thousand_unknown_model_ids_make_one_other_series() -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry, MONITORS)
    unknown = [f"intruder-{i}" for i in range(10_000)]
    table = prediction_table(["credit"] * 5 + unknown, [1.0] * 5 + [2.0] * 10_000)
    metrics.observe_group("p.predictions", 10, table, None, [], {})

    rows = samples(registry, "driftline_ingested_rows_total")
    assert rows == {
        (("model_id", "credit"), ("topic", "p.predictions")): 5.0,
        (("model_id", OTHER), ("topic", "p.predictions")): 10_000.0,
    }
    counts = samples(registry, "driftline_prediction_latency_seconds_count")
    assert counts == {(("model_id", "credit"),): 5.0, (("model_id", OTHER),): 10_000.0}
    exposition = generate_latest(registry).decode()
    assert "intruder" not in exposition
    assert len(exposition.splitlines()) < 300


def test_unknown_dead_letter_reasons_and_features_are_collapsed() -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry, MONITORS)
    metrics.observe_group("p", 3, None, None, ["invalid_json", "invalid_json", "made-up"], {})
    dlq = samples(registry, "driftline_dlq_messages_total")
    assert dlq[(("reason", "invalid_json"),)] == 2.0
    assert dlq[(("reason", OTHER),)] == 1.0
    assert dlq[(("reason", "oversized"),)] == 0.0  # every reason code exists from the start
    assert metrics.guard.feature("credit", "zipcode") == OTHER
    assert metrics.guard.feature("credit", "income") == "income"


@pytest.mark.parametrize("series", [1, 3])
def test_vectorised_histogram_equals_prometheus_client_histogram(series: int) -> None:
    rng = np.random.default_rng(7)
    values = np.concatenate(
        [
            rng.lognormal(mean=-4.0, sigma=2.0, size=5_000),
            np.array(LATENCY_BUCKETS[:-1]),  # exactly on the bounds: le is inclusive
            np.array([0.0, -1.0, 1e9, math.inf]),
        ]
    )
    groups = rng.integers(0, series, size=values.size)
    names = [("a",), ("b",), ("c",)][:series]

    ours_registry, theirs_registry = CollectorRegistry(), CollectorRegistry()
    ours = VectorHistogram("t_seconds", "T.", ["model_id"], LATENCY_BUCKETS, ours_registry)
    theirs = Histogram(
        "t_seconds", "T.", ["model_id"], buckets=LATENCY_BUCKETS, registry=theirs_registry
    )
    half = values.size // 2  # two calls: state accumulates
    ours.observe_groups(names, groups[:half], values[:half])
    ours.observe_groups(names, groups[half:], values[half:])
    for value, group in zip(values.tolist(), groups.tolist(), strict=True):
        theirs.labels(*names[group]).observe(value)

    for suffix in ("_bucket", "_count"):
        expected = samples(theirs_registry, "t_seconds" + suffix)
        assert samples(ours_registry, "t_seconds" + suffix) == expected
        assert len(expected) == (len(LATENCY_BUCKETS) if suffix == "_bucket" else 1) * series
    ours_sum = samples(ours_registry, "t_seconds_sum")
    theirs_sum = samples(theirs_registry, "t_seconds_sum")
    assert ours_sum.keys() == theirs_sum.keys()
    for key, total in theirs_sum.items():
        assert ours_sum[key] == pytest.approx(total, rel=1e-12)


def test_vectorised_histogram_ignores_nan_and_rejects_bad_input() -> None:
    registry = CollectorRegistry()
    histogram = VectorHistogram("n_seconds", "N.", ["m"], [1.0, 2.0], registry)
    histogram.observe(("x",), np.array([np.nan, 1.5, np.nan]))
    assert registry.get_sample_value("n_seconds_count", {"m": "x"}) == 1.0
    with pytest.raises(ValueError, match="bounds must increase"):
        VectorHistogram("bad_seconds", "B.", ["m"], [2.0, 1.0], CollectorRegistry())
    with pytest.raises(ValueError, match="do not match"):
        histogram.observe(("x", "y"), np.array([1.0]))


def test_names_follow_prometheus_conventions_and_the_contract() -> None:
    worker_registry, retrainer_registry = CollectorRegistry(), CollectorRegistry()
    worker = WorkerMetrics(worker_registry, MONITORS)
    RetrainerMetrics(retrainer_registry, MONITORS).training_finished("credit", "cpu", 3.0)
    worker.observe_group("p", 1, prediction_table(["credit"], [5.0]), None, [], {("p", 0): 1.0})
    worker.set_partitions({("p", 0): 3}, None)
    worker.window_evaluated(report(0.0), [], False, 0.5)

    for registry, contract in (
        (worker_registry, WORKER_CONTRACT),
        (retrainer_registry, RETRAINER_CONTRACT),
    ):
        # prometheus-client writes each counter's and histogram's creation time as a
        # separate ``<name>_created`` gauge in the text format; those are not ours to name.
        families = {
            family.name: family
            for family in text_string_to_metric_families(generate_latest(registry).decode())
            if not (
                family.name.endswith("_created") and family.name[: -len("_created")] in contract
            )
        }
        assert {name: family.type for name, family in families.items()} == {
            name: kind for name, (kind, _) in contract.items()
        }
        for name, family in families.items():
            assert family.documentation, f"{name} has no help text"
            kind, labels = contract[name]
            for sample in family.samples:
                assert set(sample.labels) - {"le"} == labels, sample
                if kind == "counter":
                    assert sample.name in (f"{name}_total", f"{name}_created"), sample.name
                if kind == "histogram":
                    assert name.endswith("_seconds"), name  # base unit
            assert not any(unit in name for unit in ("_ms", "millis", "_minutes")), name


def row(kind: Any, metric: str, feature: str | None, value: float, **extra: Any) -> MetricRow:
    thresholds = {"warning": 0.1, "critical": 0.25, "threshold": 0.25}
    return MetricRow(
        kind=kind,
        metric=metric,
        feature=feature,
        value=value,
        status="critical",
        n=100,
        **{**thresholds, **extra},
    )


def report(start: float, revision: int = 0, psi: float = 0.3, auc: float = 0.8) -> WindowReport:

    return WindowReport(
        model_id="credit",
        model_version="v1",
        window_start=start,
        window_end=start + 60,
        revision=revision,
        n_events=100,
        rows=(
            row("data_drift", "psi", "income", psi),
            row("data_drift", "psi", "surprise", 9.0),
            row("prediction_drift", "psi", "prediction", psi / 2),
            row("prediction_drift", "psi", "score", psi / 3),
            row("performance", "roc_auc", None, auc, reference=0.92, critical=0.05),
            row("performance", "accuracy", None, 0.7, primary=False),
        ),
    )


def alert(severity: str) -> AlertEvent:
    return AlertEvent.model_validate(
        {
            "alert_id": f"a-{severity}",
            "model_id": "credit",
            "model_version": "v1",
            "kind": "data_drift",
            "feature": "income",
            "window_start": T0,
            "window_end": T0 + 60,
            "statistic": "psi",
            "value": 0.3,
            "threshold": 0.25,
            "p_value": None,
            "severity": severity,
            "opened_at": T0 + 70,
        }
    )


def test_windows_alerts_and_the_latest_window_gauges() -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry, MONITORS)
    value = registry.get_sample_value
    assert value("driftline_windows_closed_total", {"model_id": "credit"}) == 0.0

    metrics.window_evaluated(report(60.0), [alert("warning"), alert("critical")], True, 0.2)
    metrics.window_evaluated(report(120.0, psi=0.5, auc=0.9), [], False, 0.1)
    # a late revision of the older window counts, but leaves the gauges on the newest
    metrics.window_evaluated(report(60.0, revision=1, psi=0.01, auc=0.1), [], False, 0.1)

    assert value("driftline_windows_closed_total", {"model_id": "credit"}) == 2.0
    assert value("driftline_window_close_duration_seconds_count", {"model_id": "credit"}) == 3.0
    assert value("driftline_retrain_requests_total", {"model_id": "credit"}) == 1.0
    for severity in ("warning", "critical"):
        labels = {"model_id": "credit", "kind": "data_drift", "severity": severity}
        assert value("driftline_alerts_opened_total", labels) == 1.0
    drift = samples(registry, "driftline_drift_value")
    assert drift == {
        (("feature", "income"), ("model_id", "credit"), ("statistic", "psi")): 0.5,
        (("feature", OTHER), ("model_id", "credit"), ("statistic", "psi")): 9.0,
        (("feature", "__prediction__"), ("model_id", "credit"), ("statistic", "psi")): 0.25,
        (("feature", "__score__"), ("model_id", "credit"), ("statistic", "psi")): 0.5 / 3,
    }
    performance = samples(registry, "driftline_performance_value")
    assert performance == {
        (("metric", "roc_auc"), ("model_id", "credit")): 0.9,
        (("metric", "accuracy"), ("model_id", "credit")): 0.7,
    }
    # the newest window's later revision does move them
    metrics.window_evaluated(report(120.0, revision=1, auc=0.95), [], False, 0.1)
    assert value("driftline_performance_value", {"model_id": "credit", "metric": "roc_auc"}) == 0.95


def test_predictions_beyond_the_horizon_are_counted_per_guarded_model() -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry, MONITORS)
    value = registry.get_sample_value
    name = "driftline_predictions_beyond_horizon_total"
    assert value(name, {"model_id": "credit"}) == 0.0  # exists before the first one
    metrics.predictions_beyond_horizon("credit", 4)
    metrics.predictions_beyond_horizon("credit", 0)
    metrics.predictions_beyond_horizon("someone-else", 2)
    assert value(name, {"model_id": "credit"}) == 4.0
    assert value(name, {"model_id": OTHER}) == 2.0


def test_watermark_delay_and_consumer_lag_follow_the_assignment() -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry, MONITORS)
    now = time.time()
    metrics.observe_group("p", 1, None, None, [], {("p", 0): now - 30, ("p", 1): now - 90})
    delays = samples(registry, "driftline_watermark_delay_seconds")
    assert set(delays) == {
        (("partition", "0"), ("topic", "p")),
        (("partition", "1"), ("topic", "p")),
    }
    # computed at scrape time: a little more than 30 s and 90 s by now
    assert 30 <= delays[(("partition", "0"), ("topic", "p"))] < 30 + 60

    metrics.set_partitions({("p", 1): 12}, {("p", 1)})  # partition 0 moved to another worker
    assert set(samples(registry, "driftline_watermark_delay_seconds")) == {
        (("partition", "1"), ("topic", "p"))
    }
    assert samples(registry, "driftline_consumer_lag_messages") == {
        (("partition", "1"), ("topic", "p")): 12.0
    }
    metrics.set_partitions({}, set())
    assert samples(registry, "driftline_consumer_lag_messages") == {}


class Offsets:
    """An in-memory offset source (the OffsetSource protocol of driftline.metrics)."""

    def __init__(self, offsets: dict[tuple[str, int], tuple[int | None, int | None]]) -> None:
        self.offsets = offsets

    def assignment(self) -> Collection[tuple[str, int]]:
        return set(self.offsets)

    def highwater(self, tp: tuple[str, int]) -> int | None:
        return self.offsets[tp][0]

    async def position(self, tp: tuple[str, int]) -> int | None:
        return self.offsets[tp][1]


def test_consumer_lags_of_the_ingest_topics() -> None:
    source = Offsets({("p", 0): (100, 40), ("p", 1): (None, 5), ("other", 0): (9, 0)})
    lags, assigned = asyncio.run(consumer_lags(source, {"p"}))
    assert lags == {("p", 0): 60}
    assert assigned == {("p", 0), ("p", 1)}


def test_retrainer_metrics_reject_unknown_outcomes_and_serve_over_http() -> None:
    registry = CollectorRegistry()
    metrics = RetrainerMetrics(registry, MONITORS)
    with pytest.raises(ValueError, match="'exploded'"):
        metrics.request_processed("credit", "exploded")
    with pytest.raises(ValueError, match="'shiny'"):
        metrics.version_published("credit", "shiny")
    metrics.request_processed("credit", "failed")
    metrics.training_finished("credit", "tpu:3", 2.0)
    metrics.version_published("credit", "champion")

    port = free_port()
    server = start_metrics_server(registry, port, "127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    processed = {
        (s.labels["model_id"], s.labels["outcome"]): s.value
        for s in families["driftline_retrain_requests_processed"].samples
        if s.name.endswith("_total")
    }
    assert processed[("credit", "failed")] == 1.0
    assert processed[("credit", "champion")] == 0.0
    devices = {s.labels["device"] for s in families["driftline_training_duration_seconds"].samples}
    assert devices == {OTHER}


@dataclass(frozen=True)
class Version:
    status: str
    training_seconds: float = 0.0
    device: str = ""
    cpu_seconds: float = 0.0
    gpu_seconds: float = 0.0
    train_rows: int = 0
    holdout_rows: int = 0
    bytes_read: int = 0


@dataclass(frozen=True)
class Handled:
    status: str
    record: Version | None


def test_retrainer_outcomes_count_training_and_published_versions() -> None:
    registry = CollectorRegistry()
    metrics = RetrainerMetrics(registry, MONITORS)
    gpu_run = Version("champion", 12.5, "cuda:0", 14.0, 12.5, 800, 200, 64_000)
    metrics.request_handled("credit", Handled("registered", gpu_run))
    cpu_run = Version("rejected", 3.0, "cpu", 5.5, 0.0, 400, 100, 32_000)
    metrics.request_handled("credit", Handled("registered", cpu_run))
    metrics.request_handled("credit", Handled("duplicate", Version("champion", 9.0, "cpu", 9.0)))
    metrics.request_handled("credit", Handled("skipped", None))
    metrics.request_handled("credit", Handled("brand-new-status", None))  # never raises
    metrics.request_processed("credit", "failed")

    processed = samples(registry, "driftline_retrain_requests_processed_total")
    by_outcome = {dict(key)["outcome"]: value for key, value in processed.items()}
    assert by_outcome == {
        "champion": 1.0,
        "rejected": 1.0,
        "duplicate": 1.0,
        "skipped": 1.0,
        "failed": 1.0,
        OTHER: 1.0,
    }
    published = samples(registry, "driftline_model_versions_published_total")
    by_status = {dict(key)["status"]: value for key, value in published.items()}
    assert by_status == {
        "champion": 2.0,
        "rejected": 1.0,
        "candidate": 0.0,
        "rolled_back": 0.0,
        "shadow": 0.0,
        "canary": 0.0,
    }
    training = samples(registry, "driftline_training_duration_seconds_sum")
    assert training == {
        (("device", "cuda"), ("model_id", "credit")): 12.5,
        (("device", "cpu"), ("model_id", "credit")): 3.0,
    }
    # the cost of the two runs (a duplicate trained nothing)
    for name, expected in (
        ("driftline_training_cpu_seconds_total", 19.5),
        ("driftline_training_gpu_seconds_total", 12.5),
        ("driftline_training_rows_total", 1500.0),
        ("driftline_training_read_bytes_total", 96_000.0),
    ):
        assert samples(registry, name) == {(("model_id", "credit"),): expected}, name


def test_thresholds_exported_beside_the_values_come_from_each_monitor() -> None:
    """The alert rules compare every value with its own series: a model whose monitor
    sets its own critical threshold must export that threshold, not the default."""
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry, MONITORS)
    strict = WindowReport(
        model_id="credit",
        model_version="v1",
        window_start=60.0,
        window_end=120.0,
        n_events=100,
        rows=(
            row("data_drift", "psi", "income", 0.4, warning=0.3, critical=0.5),
            row("data_drift", "wasserstein", "region", 0.1, warning=0.2, critical=0.6),
            row("performance", "roc_auc", None, 0.8, reference=0.9, critical=0.04),
            row("performance", "log_loss", None, 0.5, reference=0.4, critical=0.5),
            row("performance", "mae", None, 0.5),  # no reference: no level
        ),
    )
    metrics.window_evaluated(strict, [], False, 0.1)
    value = registry.get_sample_value
    psi = {"model_id": "credit", "feature": "income", "statistic": "psi"}
    assert value("driftline_drift_critical_threshold", psi) == 0.5
    assert value("driftline_drift_value", psi) == 0.4
    distance = {"model_id": "credit", "feature": "region", "statistic": "wasserstein"}
    assert value("driftline_drift_critical_threshold", distance) == 0.6
    levels = samples(registry, "driftline_performance_critical_level")
    assert levels == {
        (("metric", "roc_auc"), ("model_id", "credit")): pytest.approx(0.86),
        (("metric", "log_loss"), ("model_id", "credit")): pytest.approx(0.6),
    }


@pytest.mark.parametrize(
    ("metric", "reference", "critical", "level"),
    [
        ("accuracy", 0.9, 0.05, 0.85),  # scores: absolute drop
        ("rmse", 2.0, 0.25, 2.5),  # errors: relative rise
        ("mae", 0.0, 0.25, 0.25),  # error with a zero reference: absolute rise
        ("roc_auc", None, 0.05, None),  # no reference: no level
        ("roc_auc", math.nan, 0.05, None),
    ],
)
def test_critical_level_matches_how_the_detector_judges_a_drop(
    metric: str, reference: float | None, critical: float, level: float | None
) -> None:
    got = critical_level(
        row("performance", metric, None, 1.0, reference=reference, critical=critical)
    )
    assert got == (None if level is None else pytest.approx(level))


def test_estimation_error_and_multivariate_drift_gauges_follow_the_whole_models_rows() -> None:
    """The estimate minus the realized primary metric, and the PCA statistic under the
    ``__multivariate__`` feature; a segment slice's rows set no gauge."""
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry, MONITORS)
    base = report(0.0, auc=0.8)
    slice_row = row("performance", "roc_auc", None, 0.1, segment={"country": "de"})
    rows = (
        *base.rows,
        row("estimated_performance", "estimated_roc_auc", None, 0.85, primary=False),
        row("multivariate_drift", "pca_reconstruction_error", None, 2.5, critical=1.3),
        slice_row,
        row("estimated_performance", "estimated_roc_auc", None, 0.1, segment={"country": "de"}),
    )
    metrics.window_evaluated(base.model_copy(update={"rows": rows}), [], False, 0.1)
    error = samples(registry, "driftline_estimation_error")
    assert error == {(("metric", "roc_auc"), ("model_id", "credit")): pytest.approx(0.05)}
    drift = samples(registry, "driftline_drift_value")
    key = (("feature", "__multivariate__"), ("model_id", "credit"))
    assert drift[(*key, ("statistic", "pca_reconstruction_error"))] == 2.5
    performance = samples(registry, "driftline_performance_value")
    assert performance[(("metric", "roc_auc"), ("model_id", "credit"))] == pytest.approx(0.8)
    assert performance[(("metric", "estimated_roc_auc"), ("model_id", "credit"))] == 0.85
    assert len(performance) == 3  # accuracy, roc_auc, estimated_roc_auc: no slice's


def test_the_estimation_error_follows_late_labels_into_older_windows() -> None:
    """Labels come after the next window closed: the revision of the older window, with
    both an estimate and a realized value, still sets the estimation error."""
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry, MONITORS)

    def window(start: float, revision: int, realized: float | None) -> WindowReport:
        rows = [row("estimated_performance", "estimated_roc_auc", None, 0.85)]
        if realized is not None:
            rows.append(row("performance", "roc_auc", None, realized, reference=0.9))
        return report(start, revision).model_copy(update={"rows": tuple(rows)})

    metrics.window_evaluated(window(0.0, 0, None), [], False, 0.1)
    metrics.window_evaluated(window(60.0, 0, None), [], False, 0.1)  # the newest window
    assert samples(registry, "driftline_estimation_error") == {}
    metrics.window_evaluated(window(0.0, 1, 0.8), [], False, 0.1)  # its labels arrive
    key = (("metric", "roc_auc"), ("model_id", "credit"))
    assert samples(registry, "driftline_estimation_error")[key] == pytest.approx(0.05)
    metrics.window_evaluated(window(60.0, 1, 0.9), [], False, 0.1)
    assert samples(registry, "driftline_estimation_error")[key] == pytest.approx(-0.05)
    metrics.window_evaluated(window(0.0, 2, 0.5), [], False, 0.1)  # older: kept the newer
    assert samples(registry, "driftline_estimation_error")[key] == pytest.approx(-0.05)
