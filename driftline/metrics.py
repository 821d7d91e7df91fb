"""Prometheus metrics of the worker and the retrainer (the metric contract of issue 6).

Every metric is registered on the :class:`~prometheus_client.CollectorRegistry`
passed in, never on the global one. Label values come only from the configured
monitors (model ids and their feature names) and from closed vocabularies (DLQ
reason codes, alert kinds, severities, drift statistics, performance metrics);
anything else is collapsed to ``"_other"`` by a :class:`LabelGuard`, so a flood
of unknown model ids cannot explode cardinality.

The ingest path is hot: :meth:`WorkerMetrics.observe_group` is called once per
stored group of messages, counts with one ``inc(n)`` per label set and feeds
latencies to a :class:`VectorHistogram` (``numpy.searchsorted`` + ``bincount``),
so no Python work is done per row.

Worker metrics (``GET /metrics`` on the worker's web port)
    ``driftline_ingested_messages_total{topic}``,
    ``driftline_ingested_rows_total{topic,model_id}``,
    ``driftline_dlq_messages_total{reason}``,
    ``driftline_consumer_lag_messages{topic,partition}``,
    ``driftline_watermark_delay_seconds{topic,partition}``,
    ``driftline_windows_closed_total{model_id}``,
    ``driftline_window_close_duration_seconds{model_id}``,
    ``driftline_alerts_opened_total{model_id,kind,severity}``,
    ``driftline_retrain_requests_total{model_id}``,
    ``driftline_prediction_latency_seconds{model_id}``,
    ``driftline_drift_value{model_id,feature,statistic}``,
    ``driftline_drift_critical_threshold{model_id,feature,statistic}`` (the monitor's
    own critical threshold of that value),
    ``driftline_performance_value{model_id,metric}`` and
    ``driftline_performance_critical_level{model_id,metric}`` (the value past which
    the window is critical: the reference minus the critical drop for scores, the
    reference raised by the relative critical drop for errors).

The alert rules (``prometheus/rules.yml``) compare each value with its own
threshold series, so they follow every model's monitor config instead of a copy
of the defaults.
Retrainer metrics (``DRIFTLINE_RETRAINER_METRICS_PORT``)
    ``driftline_retrain_requests_processed_total{model_id,outcome}``,
    ``driftline_training_duration_seconds{model_id,device}``,
    ``driftline_model_versions_published_total{model_id,status}`` and
    ``driftline_retrain_requests_refused_total{reason}``.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from driftline.detectors.evaluate import MetricRow, WindowReport
from driftline.detectors.performance import HIGHER_IS_BETTER
from driftline.schemas.codec import REASONS
from driftline.schemas.events import AlertEvent
from driftline.schemas.monitor import ALERT_KINDS, DEFAULT_THRESHOLDS, TASK_METRICS, MonitorConfig

__all__ = [
    "CLOSE_BUCKETS",
    "LATENCY_BUCKETS",
    "OTHER",
    "OUTCOMES",
    "PREDICTION_FEATURE",
    "SCORE_FEATURE",
    "STATUSES",
    "TRAINING_BUCKETS",
    "HandledRequest",
    "LabelGuard",
    "OffsetSource",
    "RetrainerMetrics",
    "VectorHistogram",
    "VersionRecordLike",
    "WatermarkDelay",
    "WorkerMetrics",
    "consumer_lags",
    "critical_level",
    "start_metrics_server",
]

#: The label value that stands for every value outside the configured set.
OTHER = "_other"
#: ``feature`` label of the prediction column's drift.
PREDICTION_FEATURE = "__prediction__"
#: ``feature`` label of the score column's drift (binary classifiers with a score).
SCORE_FEATURE = "__score__"
#: Outcomes of a processed retrain request.
OUTCOMES = ("champion", "rejected", "skipped", "duplicate", "failed")
#: Status of a published model version (``model_version`` events).
STATUSES = ("candidate", "champion", "rejected", "rolled_back")
#: Upper bounds (seconds) of the prediction-latency histogram.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    math.inf,
)
#: Upper bounds (seconds) of the window-close-duration histogram.
CLOSE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, math.inf)
#: Upper bounds (seconds) of the training-duration histogram.
TRAINING_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, math.inf)

_SEVERITIES = ("warning", "critical")
_DEVICES = frozenset({"cpu", "cuda", "mps", "xpu"})
_STATISTICS = frozenset(DEFAULT_THRESHOLDS)
_PERFORMANCE_METRICS = frozenset(m for metrics in TASK_METRICS.values() for m in metrics)
_COLUMN_FEATURES = {"prediction": PREDICTION_FEATURE, "score": SCORE_FEATURE}


class LabelGuard:
    """Maps label values outside the configured models and features to ``"_other"``.

    Parameters
    ----------
    features : mapping
        Feature names per configured model id.

    Examples
    --------
    >>> guard = LabelGuard({"credit": ["income", "age"]})
    >>> guard.model("credit"), guard.model("spam-9000")
    ('credit', '_other')
    >>> guard.feature("credit", "age"), guard.feature("credit", "zip")
    ('age', '_other')
    >>> guard.feature("credit", "__prediction__"), guard.feature("spam", "age")
    ('__prediction__', '_other')
    """

    def __init__(self, features: Mapping[str, Iterable[str]]) -> None:
        self.models = frozenset(features)
        self._features = {model: frozenset(names) for model, names in features.items()}

    @classmethod
    def from_monitors(cls, monitors: Mapping[str, MonitorConfig]) -> LabelGuard:
        """The guard of a worker's monitor configs (model id to config)."""
        return cls({config.model_id: list(config.features) for config in monitors.values()})

    def model(self, model_id: str) -> str:
        """``model_id`` when it is configured, else ``"_other"``."""
        return model_id if model_id in self.models else OTHER

    def feature(self, model_id: str, feature: str) -> str:
        """``feature`` when it is configured for ``model_id`` (or names the prediction or
        score column), else ``"_other"``."""
        names = self._features.get(model_id)
        if names is None:
            return OTHER
        if feature in names or feature in (PREDICTION_FEATURE, SCORE_FEATURE):
            return feature
        return OTHER


class VectorHistogram(Collector):
    """A labelled histogram fed whole arrays at once (no Python work per value).

    Values go to the first bucket whose upper bound is at least the value, as
    prometheus-client's :class:`~prometheus_client.Histogram` does; NaN values are
    ignored. The registry exposes it like any histogram (``_bucket``, ``_count``,
    ``_sum``).

    Parameters
    ----------
    name, documentation : str
        The metric name (base unit, e.g. ``..._seconds``) and help text.
    labelnames : sequence of str
        Label names; :meth:`observe` takes one value per name.
    buckets : sequence of float
        Increasing upper bounds; ``+Inf`` is added when missing.
    registry : CollectorRegistry
        Where to register.

    Examples
    --------
    >>> from prometheus_client import generate_latest
    >>> registry = CollectorRegistry()
    >>> latency = VectorHistogram("demo_latency_seconds", "Latency.", ["model_id"],
    ...                           [0.1, 1.0], registry)
    >>> latency.observe(("m",), np.array([0.05, 0.1, 0.5, 7.0]))
    >>> print(generate_latest(registry).decode().strip())
    # HELP demo_latency_seconds Latency.
    # TYPE demo_latency_seconds histogram
    demo_latency_seconds_bucket{le="0.1",model_id="m"} 2.0
    demo_latency_seconds_bucket{le="1.0",model_id="m"} 3.0
    demo_latency_seconds_bucket{le="+Inf",model_id="m"} 4.0
    demo_latency_seconds_count{model_id="m"} 4.0
    demo_latency_seconds_sum{model_id="m"} 7.65
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        bounds = [float(b) for b in buckets]
        if not bounds or bounds[-1] != math.inf:
            bounds.append(math.inf)
        if any(b >= c for b, c in itertools.pairwise(bounds)):
            raise ValueError(f"{name}: bucket bounds must increase, got {list(buckets)}")
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.bounds = np.array(bounds)
        self._le = [floatToGoString(b) for b in bounds]
        self._series: dict[tuple[str, ...], tuple[np.ndarray, float]] = {}
        self._lock = threading.Lock()
        registry.register(self)

    def observe(self, labels: tuple[str, ...], values: np.ndarray) -> None:
        """Add every (non-NaN) value of ``values`` to the series of ``labels``."""
        self.observe_groups([labels], np.zeros(len(values), np.intp), values)

    def observe_groups(
        self, labels: Sequence[tuple[str, ...]], groups: np.ndarray, values: np.ndarray
    ) -> None:
        """Add ``values[i]`` to the series ``labels[groups[i]]`` for every ``i`` at once."""
        for given in labels:
            if len(given) != len(self.labelnames):
                raise ValueError(f"{self.name}: labels {given!r} do not match {self.labelnames}")
        values = np.asarray(values, dtype=np.float64)
        groups = np.asarray(groups, dtype=np.intp)
        keep = ~np.isnan(values)
        if not keep.all():
            values, groups = values[keep], groups[keep]
        if values.size == 0:
            return
        width = len(self.bounds)
        if len(labels) == 1:
            # one series (the usual group): a comparison per bound beats a binary search
            at_most = [np.count_nonzero(values <= bound) for bound in self.bounds[:-1]]
            counts = np.diff(np.array([0, *at_most, values.size]))[np.newaxis, :]
            sums = np.array([values.sum()])
        else:
            slots = np.searchsorted(self.bounds, values, side="left")
            counts = np.bincount(groups * width + slots, minlength=len(labels) * width)
            counts = counts.reshape(len(labels), width)
            sums = np.bincount(groups, weights=values, minlength=len(labels))
        with self._lock:
            for index, given in enumerate(labels):
                if not counts[index].any():
                    continue
                old, total = self._series.get(given, (np.zeros(width, np.int64), 0.0))
                self._series[given] = (old + counts[index], total + float(sums[index]))

    def describe(self) -> Iterable[Metric]:
        """The family without samples (names for the registry's duplicate check)."""
        return [HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterable[Metric]:
        """One histogram family with a series per label set observed."""
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            series = sorted(self._series.items())
        for labels, (counts, total) in series:
            cumulative = np.cumsum(counts).astype(np.float64).tolist()
            family.add_metric(
                list(labels),
                buckets=list(zip(self._le, cumulative, strict=True)),
                sum_value=total,
            )
        return [family]


class WatermarkDelay(Collector):
    """``driftline_watermark_delay_seconds{topic,partition}``: now minus each partition's
    event-time watermark, computed at scrape time (a stalled watermark grows).

    Only the partitions of the current assignment are exposed once one is known.

    Examples
    --------
    >>> registry = CollectorRegistry()
    >>> delay = WatermarkDelay(registry, clock=lambda: 1000.0)
    >>> delay.advance({("t.predictions", 0): 940.0})
    >>> delay.advance({("t.predictions", 0): 900.0})  # a watermark never moves back
    >>> registry.get_sample_value("driftline_watermark_delay_seconds",
    ...                           {"topic": "t.predictions", "partition": "0"})
    60.0
    """

    name = "driftline_watermark_delay_seconds"

    def __init__(self, registry: CollectorRegistry, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._marks: dict[tuple[str, int], float] = {}
        self._assigned: frozenset[tuple[str, int]] | None = None
        registry.register(self)

    def advance(self, watermarks: Mapping[tuple[str, int], float]) -> None:
        """Raise partition watermarks (epoch seconds) to the given event times."""
        for where, event_time in watermarks.items():
            if event_time > self._marks.get(where, -math.inf):
                self._marks[where] = event_time

    def assign(self, partitions: Collection[tuple[str, int]] | None) -> None:
        """Expose only these ``(topic, partition)`` pairs (``None``: every one seen)."""
        self._assigned = None if partitions is None else frozenset(partitions)

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            self.name,
            "Now minus the partition's event-time watermark (latest prediction event time).",
            labels=["topic", "partition"],
        )

    def describe(self) -> Iterable[Metric]:
        """The family without samples."""
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        """The delay of every (assigned) partition with a watermark."""
        family = self._family()
        now = self._clock()
        for (topic, partition), event_time in sorted(self._marks.items()):
            if self._assigned is None or (topic, partition) in self._assigned:
                family.add_metric([topic, str(partition)], now - event_time)
        return [family]


class WorkerMetrics:
    """The worker's metrics, on ``registry``, with labels limited to ``monitors``.

    Parameters
    ----------
    registry : CollectorRegistry
        Where every metric is registered.
    monitors : mapping
        The worker's monitor configs by model id (their model ids and features are
        the only label values used; others become ``"_other"``).

    Examples
    --------
    >>> registry = CollectorRegistry()
    >>> config = MonitorConfig(model_id="credit", features={"income": "numeric"})
    >>> metrics = WorkerMetrics(registry, {"credit": config})
    >>> rows = pa.table({"model_id": ["credit", "credit", "spam"],
    ...                  "kafka_topic": ["p", "p", "p"], "latency_ms": [12.0, None, 3.0]})
    >>> metrics.observe_group("p", 2, rows, None, ["invalid_json"], {("p", 0): 1.0})
    >>> value = registry.get_sample_value
    >>> value("driftline_ingested_rows_total", {"topic": "p", "model_id": "credit"})
    2.0
    >>> value("driftline_ingested_rows_total", {"topic": "p", "model_id": "_other"})
    1.0
    >>> value("driftline_prediction_latency_seconds_count", {"model_id": "credit"})
    1.0
    >>> value("driftline_dlq_messages_total", {"reason": "invalid_json"})
    1.0
    """

    def __init__(self, registry: CollectorRegistry, monitors: Mapping[str, MonitorConfig]) -> None:
        self.registry = registry
        self.guard = LabelGuard.from_monitors(monitors)
        self.messages = Counter(
            "driftline_ingested_messages_total",
            "Kafka messages handled (stored or dead-lettered) per ingest topic.",
            ["topic"],
            registry=registry,
        )
        self.rows = Counter(
            "driftline_ingested_rows_total",
            "Prediction and feedback rows stored.",
            ["topic", "model_id"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "driftline_dlq_messages_total",
            "Messages sent to the DLQ, by the codec's reason code.",
            ["reason"],
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "driftline_consumer_lag_messages",
            "High watermark minus the consumer's position, per assigned partition.",
            ["topic", "partition"],
            registry=registry,
        )
        self.watermark_delay = WatermarkDelay(registry)
        self.windows_closed = Counter(
            "driftline_windows_closed_total",
            "Event-time windows closed (evaluated as revision 0).",
            ["model_id"],
            registry=registry,
        )
        self.beyond_horizon = Counter(
            "driftline_predictions_beyond_horizon_total",
            "Predictions stored for windows that ended more than the late-data horizon "
            "before the model's watermark: kept, never evaluated.",
            ["model_id"],
            registry=registry,
        )
        self.close_duration = Histogram(
            "driftline_window_close_duration_seconds",
            "Time to aggregate, evaluate, store and publish one window.",
            ["model_id"],
            buckets=CLOSE_BUCKETS,
            registry=registry,
        )
        self.alerts_opened = Counter(
            "driftline_alerts_opened_total",
            "Alert events published (new alerts and escalations).",
            ["model_id", "kind", "severity"],
            registry=registry,
        )
        self.retrain_requests = Counter(
            "driftline_retrain_requests_total",
            "Retrain requests published.",
            ["model_id"],
            registry=registry,
        )
        self.prediction_latency = VectorHistogram(
            "driftline_prediction_latency_seconds",
            "Serving latency reported by prediction events (latency_ms).",
            ["model_id"],
            LATENCY_BUCKETS,
            registry,
        )
        self.drift = Gauge(
            "driftline_drift_value",
            "Primary drift statistic per feature in the latest closed window.",
            ["model_id", "feature", "statistic"],
            registry=registry,
        )
        self.drift_threshold = Gauge(
            "driftline_drift_critical_threshold",
            "The monitor's critical threshold of driftline_drift_value (same labels).",
            ["model_id", "feature", "statistic"],
            registry=registry,
        )
        self.performance = Gauge(
            "driftline_performance_value",
            "Performance metrics of the latest window (latest revision).",
            ["model_id", "metric"],
            registry=registry,
        )
        self.performance_level = Gauge(
            "driftline_performance_critical_level",
            "Value of driftline_performance_value past which the window is critical "
            "(below it for scores, above it for errors), from the reference and the "
            "monitor's critical drop.",
            ["model_id", "metric"],
            registry=registry,
        )
        self._newest: dict[str, float] = {}
        # Series that exist from the start, so that rate() and increase() see the first event.
        for reason in REASONS:
            self.dead_letters.labels(reason)
        for model in sorted(self.guard.models):
            self.windows_closed.labels(model)
            self.beyond_horizon.labels(model)
            self.retrain_requests.labels(model)
            for kind in ALERT_KINDS:
                for severity in _SEVERITIES:
                    self.alerts_opened.labels(model, kind, severity)

    # ingest (once per stored group)

    def observe_group(
        self,
        topic: str,
        messages: int,
        predictions: pa.Table | None,
        feedback: pa.Table | None,
        dead_letter_reasons: Iterable[str],
        watermarks: Mapping[tuple[str, int], float],
    ) -> None:
        """Count one stored group: its messages, rows, dead letters, latencies and
        partition watermarks (vectorised; no work per row in Python)."""
        self.messages.labels(topic).inc(messages)
        for table in (predictions, feedback):
            if table is not None and table.num_rows:
                self._count_rows(table)
        if predictions is not None and "latency_ms" in predictions.column_names:
            self._observe_latency(predictions)
        for reason, count in Tally(dead_letter_reasons).items():
            self.dead_letters.labels(reason if reason in REASONS else OTHER).inc(count)
        if watermarks:
            self.watermark_delay.advance(watermarks)

    def _model_groups(self, table: pa.Table) -> tuple[np.ndarray, list[str]]:
        """Per row, the index of its guarded model id, and those ids."""
        codes, names = _codes(table.column("model_id"))
        guarded = [self.guard.model(name) for name in names]
        if len(set(guarded)) == len(guarded):
            return codes, guarded  # no two ids collapse: the codes serve as they are
        labels = sorted(set(guarded))
        position = {label: index for index, label in enumerate(labels)}
        remap = np.array([position[label] for label in guarded], dtype=np.intp)
        return remap[codes], labels

    def _count_rows(self, table: pa.Table) -> None:
        model_codes, model_names = _codes(table.column("model_id"))
        topic_codes, topic_names = _codes(table.column("kafka_topic"))
        if len(model_names) == 1 and len(topic_names) == 1:  # the usual group
            self.rows.labels(topic_names[0], self.guard.model(model_names[0])).inc(table.num_rows)
            return
        width = max(len(model_names), 1)
        counts = np.bincount(
            topic_codes * width + model_codes, minlength=len(topic_names) * width
        ).reshape(-1, width)
        tally: Tally[tuple[str, str]] = Tally()
        for t, m in zip(*np.nonzero(counts), strict=True):
            tally[topic_names[t], self.guard.model(model_names[m])] += int(counts[t, m])
        for (topic, model), count in tally.items():
            self.rows.labels(topic, model).inc(count)

    def _observe_latency(self, predictions: pa.Table) -> None:
        column = predictions.column("latency_ms")
        if column.null_count == len(column):
            return
        groups, labels = self._model_groups(predictions)
        seconds = column.to_numpy(zero_copy_only=False).astype(np.float64, copy=False) / 1000.0
        self.prediction_latency.observe_groups([(label,) for label in labels], groups, seconds)

    # partitions (at scrape time)

    def set_partitions(
        self,
        lags: Mapping[tuple[str, int], int],
        assigned: Collection[tuple[str, int]] | None,
    ) -> None:
        """Replace the consumer-lag series and the partitions whose watermark delay shows."""
        self.consumer_lag.clear()
        for (topic, partition), lag in lags.items():
            self.consumer_lag.labels(topic, str(partition)).set(lag)
        self.watermark_delay.assign(assigned)

    # the monitor

    def predictions_beyond_horizon(self, model_id: str, rows: int) -> None:
        """Count predictions the monitor found stored beyond the late-data horizon.

        Examples
        --------
        >>> registry = CollectorRegistry()
        >>> config = MonitorConfig(model_id="credit", features={"income": "numeric"})
        >>> metrics = WorkerMetrics(registry, {"credit": config})
        >>> metrics.predictions_beyond_horizon("credit", 3)
        >>> registry.get_sample_value("driftline_predictions_beyond_horizon_total",
        ...                           {"model_id": "credit"})
        3.0
        """
        if rows > 0:
            self.beyond_horizon.labels(self.guard.model(model_id)).inc(rows)

    def window_evaluated(
        self,
        report: WindowReport,
        alerts: Sequence[AlertEvent],
        retrain_requested: bool,
        seconds: float,
    ) -> None:
        """Record one evaluated window: counters, its duration, and when it is the model's
        newest window, the drift and performance gauges."""
        model = self.guard.model(report.model_id)
        if report.revision == 0:
            self.windows_closed.labels(model).inc()
        self.close_duration.labels(model).observe(seconds)
        for alert in alerts:
            kind = alert.kind if alert.kind in ALERT_KINDS else OTHER
            self.alerts_opened.labels(self.guard.model(alert.model_id), kind, alert.severity).inc()
        if retrain_requested:
            self.retrain_requests.labels(model).inc()
        if report.window_start < self._newest.get(report.model_id, -math.inf):
            return  # a revision of an older window: the gauges show the newest one
        self._newest[report.model_id] = report.window_start
        for row in report.rows:
            if row.value is None or not row.primary:
                continue
            if row.kind in ("data_drift", "prediction_drift") and row.feature is not None:
                name = row.feature
                if row.kind == "prediction_drift":
                    name = _COLUMN_FEATURES.get(row.feature, row.feature)
                statistic = row.metric if row.metric in _STATISTICS else OTHER
                feature = self.guard.feature(report.model_id, name)
                self.drift.labels(model, feature, statistic).set(row.value)
                self.drift_threshold.labels(model, feature, statistic).set(row.critical)
        for row in report.rows:
            if row.kind == "performance" and row.value is not None:
                metric = row.metric if row.metric in _PERFORMANCE_METRICS else OTHER
                self.performance.labels(model, metric).set(row.value)
                level = critical_level(row)
                if level is not None:
                    self.performance_level.labels(model, metric).set(level)


def critical_level(row: MetricRow) -> float | None:
    """The value of a performance row past which its window is critical, or ``None``
    without a reference value.

    ``reference - critical`` for scores (higher is better); for errors the drop is
    relative, so ``reference * (1 + critical)``, or ``reference + critical`` when the
    reference is not positive (as :mod:`driftline.detectors.performance` judges it).
    """
    if row.reference is None or not math.isfinite(row.reference):
        return None
    if HIGHER_IS_BETTER.get(row.metric, True):
        return row.reference - row.critical
    if row.reference <= 0:
        return row.reference + row.critical
    return row.reference * (1.0 + row.critical)


class RetrainerMetrics:
    """The retrainer's metrics, on ``registry``, with model ids limited to ``monitors``.

    Parameters
    ----------
    registry : CollectorRegistry
        Where every metric is registered.
    monitors : mapping
        Monitor configs by model id (other model ids become ``"_other"``).

    Examples
    --------
    >>> registry = CollectorRegistry()
    >>> config = MonitorConfig(model_id="credit", features={"income": "numeric"})
    >>> metrics = RetrainerMetrics(registry, {"credit": config})
    >>> metrics.request_processed("credit", "champion")
    >>> metrics.training_finished("credit", "cuda:0", 42.0)
    >>> metrics.version_published("nobody", "candidate")
    >>> value = registry.get_sample_value
    >>> value("driftline_retrain_requests_processed_total",
    ...       {"model_id": "credit", "outcome": "champion"})
    1.0
    >>> value("driftline_training_duration_seconds_sum", {"model_id": "credit", "device": "cuda"})
    42.0
    >>> value("driftline_model_versions_published_total",
    ...       {"model_id": "_other", "status": "candidate"})
    1.0
    >>> metrics.request_refused("data_range_too_long")
    >>> value("driftline_retrain_requests_refused_total", {"reason": "data_range_too_long"})
    1.0
    """

    #: ``reason`` of ``driftline_retrain_requests_refused_total``: why a request was
    #: refused before any training. The message is not JSON, not a JSON object, not a
    #: ``retrain_request``, lacks a field, has an unknown field, a value of the wrong
    #: type or an invalid value (the first problem counts), or its data range is empty
    #: or longer than ``DRIFTLINE_RETRAIN_MAX_DATA_SECONDS``.
    REFUSALS = (
        "invalid_json",
        "not_an_object",
        "unknown_type",
        "missing_field",
        "unknown_field",
        "wrong_type",
        "invalid_value",
        "empty_data_range",
        "data_range_too_long",
    )

    def __init__(self, registry: CollectorRegistry, monitors: Mapping[str, MonitorConfig]) -> None:
        self.registry = registry
        self.guard = LabelGuard.from_monitors(monitors)
        self.processed = Counter(
            "driftline_retrain_requests_processed_total",
            "Retrain requests handled, by outcome.",
            ["model_id", "outcome"],
            registry=registry,
        )
        self.training = Histogram(
            "driftline_training_duration_seconds",
            "Wall time of one training run.",
            ["model_id", "device"],
            buckets=TRAINING_BUCKETS,
            registry=registry,
        )
        self.published = Counter(
            "driftline_model_versions_published_total",
            "Model versions published, by status.",
            ["model_id", "status"],
            registry=registry,
        )
        self.refused = Counter(
            "driftline_retrain_requests_refused_total",
            "Retrain requests refused before training (malformed, or a data range that is "
            "empty or too long), by reason.",
            ["reason"],
            registry=registry,
        )
        for reason in self.REFUSALS:
            self.refused.labels(reason)
        for model in sorted(self.guard.models):
            for outcome in OUTCOMES:
                self.processed.labels(model, outcome)
            for status in STATUSES:
                self.published.labels(model, status)

    def request_processed(self, model_id: str, outcome: str) -> None:
        """Count one handled retrain request (``outcome`` is one of :data:`OUTCOMES`)."""
        if outcome not in OUTCOMES:
            raise ValueError(f"retrain outcome {outcome!r} is not one of {OUTCOMES}")
        self.processed.labels(self.guard.model(model_id), outcome).inc()

    def training_finished(self, model_id: str, device: str, seconds: float) -> None:
        """Observe one training run on ``device`` (a torch device string; the index is
        dropped: ``cuda:1`` counts as ``cuda``)."""
        kind = device.split(":", 1)[0]
        device_label = kind if kind in _DEVICES else OTHER
        self.training.labels(self.guard.model(model_id), device_label).observe(seconds)

    def request_handled(self, model_id: str, handled: HandledRequest) -> None:
        """Record what handling one request gave (the retrainer's ``RetrainOutcome``): a
        registered version counts as ``champion`` or ``rejected`` with its training run;
        a version (new or re-published) counts as published. Never raises on an unknown
        status (it is counted as ``"_other"``): metrics must not stop the retrainer."""
        record = handled.record
        outcome = handled.status
        if outcome == "registered" and record is not None:
            outcome = record.status
            self.training_finished(model_id, record.device or OTHER, record.training_seconds)
        self.processed.labels(
            self.guard.model(model_id), outcome if outcome in OUTCOMES else OTHER
        ).inc()
        if record is not None:
            status = record.status if record.status in STATUSES else OTHER
            self.published.labels(self.guard.model(model_id), status).inc()

    def version_published(self, model_id: str, status: str) -> None:
        """Count one published model version (``status`` of its ``model_version`` event)."""
        if status not in STATUSES:
            raise ValueError(f"model version status {status!r} is not one of {STATUSES}")
        self.published.labels(self.guard.model(model_id), status).inc()

    def request_refused(self, reason: str) -> None:
        """Count one refused retrain request (``reason`` is one of :attr:`REFUSALS`; any
        other value counts as ``"_other"``: metrics must not stop the retrainer)."""
        self.refused.labels(reason if reason in self.REFUSALS else OTHER).inc()


class VersionRecordLike(Protocol):
    """The parts of a registered model version that :class:`RetrainerMetrics` reads."""

    @property
    def status(self) -> str:
        """``candidate``, ``champion``, ``rejected`` or ``rolled_back``."""
        ...

    @property
    def training_seconds(self) -> float:
        """Wall time of its training run."""
        ...

    @property
    def device(self) -> str:
        """The torch device it trained on."""
        ...


class HandledRequest(Protocol):
    """What handling one retrain request gave (``driftline.retrainer.worker.RetrainOutcome``)."""

    @property
    def status(self) -> str:
        """``registered``, ``duplicate`` or ``skipped``."""
        ...

    @property
    def record(self) -> VersionRecordLike | None:
        """The version registered (or found), if any."""
        ...


def start_metrics_server(registry: CollectorRegistry, port: int, address: str = "127.0.0.1") -> Any:
    """Serve ``registry`` on ``http://address:port/metrics`` from a daemon thread (the
    retrainer's endpoint; loopback only unless ``address`` says otherwise, e.g.
    ``DRIFTLINE_RETRAINER_METRICS_HOST=0.0.0.0`` in a container); returns the HTTP
    server (``shutdown()`` stops it and ``server_close()`` frees the port)."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=address, registry=registry)
    return server


class OffsetSource(Protocol):
    """What :func:`consumer_lags` needs of a consumer (Faust's ``app.consumer`` has it)."""

    def assignment(self) -> Collection[Any]:
        """The assigned partitions (``(topic, partition)`` tuples)."""
        ...

    def highwater(self, tp: Any) -> int | None:
        """The partition's high watermark (the offset after its last message)."""
        ...

    async def position(self, tp: Any) -> int | None:
        """The consumer's next offset in the partition."""
        ...


async def consumer_lags(
    consumer: OffsetSource, topics: Collection[str], timeout: float = 2.0
) -> tuple[dict[tuple[str, int], int], set[tuple[str, int]]]:
    """Lag (high watermark minus position) of every assigned partition of ``topics`` whose
    offsets are known, and the assigned partitions of ``topics``."""
    lags: dict[tuple[str, int], int] = {}
    assigned: set[tuple[str, int]] = set()
    for tp in consumer.assignment():
        topic, partition = str(tp[0]), int(tp[1])
        if topic not in topics:
            continue
        assigned.add((topic, partition))
        highwater = consumer.highwater(tp)
        position = await asyncio.wait_for(consumer.position(tp), timeout)
        if highwater is not None and position is not None:
            lags[topic, partition] = max(int(highwater) - int(position), 0)
    return lags, assigned


def _codes(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, list[str]]:
    """Integer codes per row and the distinct values of a string column."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not pa.types.is_dictionary(column.type):
        column = column.dictionary_encode()
    indices = column.indices.to_numpy(zero_copy_only=False).astype(np.intp, copy=False)
    return indices, [str(value) for value in column.dictionary.to_pylist()]
