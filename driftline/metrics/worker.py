"""The worker's Prometheus metrics (``GET /metrics`` on its web port): ingest, DLQ,
consumer lag, watermark delay, windows, alerts, drift and performance values with their
thresholds (see :mod:`driftline.metrics` for the contract)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter as Tally
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from driftline.detectors.estimation import ESTIMATED_METRICS
from driftline.detectors.evaluate import MetricRow, WindowReport
from driftline.detectors.multivariate import MULTIVARIATE_METRIC
from driftline.detectors.performance import HIGHER_IS_BETTER
from driftline.detectors.promotion import RolloutState
from driftline.detectors.rollout import DifferenceSequence
from driftline.schemas.codec import REASONS
from driftline.schemas.events import AlertEvent
from driftline.schemas.monitor import ALERT_KINDS, DEFAULT_THRESHOLDS, TASK_METRICS, MonitorConfig

from .common import (
    MULTIVARIATE_FEATURE,
    OTHER,
    PREDICTION_FEATURE,
    SCORE_FEATURE,
    LabelGuard,
    VectorHistogram,
    _codes,
)

__all__ = [
    "CLOSE_BUCKETS",
    "LATENCY_BUCKETS",
    "ROLLOUT_DECISIONS",
    "OffsetSource",
    "WatermarkDelay",
    "WorkerMetrics",
    "consumer_lags",
    "critical_level",
]


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


_SEVERITIES = ("warning", "critical")
#: Decisions of a rollout (``driftline_rollout_decisions_total``).
ROLLOUT_DECISIONS = ("promote", "step", "reject", "rollback")
_PHASES = ("shadow", "canary", "watch")


_STATISTICS = frozenset({*DEFAULT_THRESHOLDS, MULTIVARIATE_METRIC})


_PERFORMANCE_METRICS = frozenset(m for metrics in TASK_METRICS.values() for m in metrics)
#: Label-free estimates share the performance gauge as ``estimated_<metric>``.
_ESTIMATED_METRICS = frozenset(f"estimated_{m}" for m in ESTIMATED_METRICS)


_COLUMN_FEATURES = {"prediction": PREDICTION_FEATURE, "score": SCORE_FEATURE}


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
        self.estimation_error = Gauge(
            "driftline_estimation_error",
            "Estimated minus realized value of the primary metric in the newest window that "
            "has both (label-free estimation; often a revision of an older window).",
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
        self.rollout_decisions = Counter(
            "driftline_rollout_decisions",
            "Rollout decisions taken by the monitor (promote, step, reject, rollback).",
            ["model_id", "decision"],
            registry=registry,
        )
        self.rollout_traffic = Gauge(
            "driftline_rollout_traffic",
            "Served share of the running rollout's challenger (0 in shadow, 1 while a "
            "promoted one is watched); no series without a rollout.",
            ["model_id", "phase"],
            registry=registry,
        )
        self.rollout_difference = Gauge(
            "driftline_rollout_difference",
            "Challenger minus champion on the rollout metric: the estimate and the "
            "anytime-valid confidence sequence's bounds over the phase's evidence.",
            ["model_id", "bound"],
            registry=registry,
        )
        self.rollout_labels = Gauge(
            "driftline_rollout_labels",
            "Labelled pairs (shadow, watch) or labels of the smaller arm (canary) behind "
            "driftline_rollout_difference.",
            ["model_id"],
            registry=registry,
        )
        self._newest: dict[str, float] = {}
        #: Per model, the newest window the estimation-error gauge was set from.
        self._newest_estimated: dict[str, float] = {}
        # Series that exist from the start, so that rate() and increase() see the first event.
        for reason in REASONS:
            self.dead_letters.labels(reason)
        for model in sorted(self.guard.models):
            self.windows_closed.labels(model)
            self.beyond_horizon.labels(model)
            self.retrain_requests.labels(model)
            for decision in ROLLOUT_DECISIONS:
                self.rollout_decisions.labels(model, decision)
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

    def rollout_judged(
        self,
        model_id: str,
        state: RolloutState | None,
        sequence: DifferenceSequence | None,
        decisions: Sequence[str],
    ) -> None:
        """Record a rollout pass: its decisions, and the running rollout's share and
        evidence (their series go when no rollout runs).

        Examples
        --------
        >>> registry = CollectorRegistry()
        >>> config = MonitorConfig(model_id="credit", features={"income": "numeric"})
        >>> metrics = WorkerMetrics(registry, {"credit": config})
        >>> metrics.rollout_judged("credit", None, None, ["reject"])
        >>> registry.get_sample_value("driftline_rollout_decisions_total",
        ...                           {"model_id": "credit", "decision": "reject"})
        1.0
        """
        model = self.guard.model(model_id)
        for decision in decisions:
            self.rollout_decisions.labels(model, decision).inc()
        for phase in _PHASES:
            if state is not None and state.phase == phase:
                self.rollout_traffic.labels(model, phase).set(state.traffic)
            else:
                self._drop(self.rollout_traffic, model, phase)
        for bound in ("estimate", "lower", "upper"):
            if sequence is None:
                self._drop(self.rollout_difference, model, bound)
            else:
                self.rollout_difference.labels(model, bound).set(getattr(sequence, bound))
        if sequence is None:
            self._drop(self.rollout_labels, model)
        else:
            self.rollout_labels.labels(model).set(sequence.n)

    @staticmethod
    def _drop(gauge: Gauge, *labels: str) -> None:
        with contextlib.suppress(KeyError):
            gauge.remove(*labels)

    def _estimation_error(self, model: str, report: WindowReport) -> None:
        """Set the estimation error from the newest window holding both an estimate and
        a realized value: labels come late, so that is often a revision of an older
        window."""
        found = _estimate_and_realized(report)
        if found is None or report.window_start < self._newest_estimated.get(model, -math.inf):
            return
        self._newest_estimated[model] = report.window_start
        name, estimate, realized = found
        metric = name if name in _PERFORMANCE_METRICS else OTHER
        self.estimation_error.labels(model, metric).set(estimate - realized)

    def window_evaluated(
        self,
        report: WindowReport,
        alerts: Sequence[AlertEvent],
        retrain_requested: bool,
        seconds: float,
    ) -> None:
        """Record one evaluated window: counters, its duration, and when it is the model's
        newest window, the drift and performance gauges (of the whole model: segment
        slices would multiply the series by the slices; their alerts are counted)."""
        model = self.guard.model(report.model_id)
        if report.revision == 0:
            self.windows_closed.labels(model).inc()
        self.close_duration.labels(model).observe(seconds)
        for alert in alerts:
            kind = alert.kind if alert.kind in ALERT_KINDS else OTHER
            self.alerts_opened.labels(self.guard.model(alert.model_id), kind, alert.severity).inc()
        if retrain_requested:
            self.retrain_requests.labels(model).inc()
        self._estimation_error(model, report)
        if report.window_start < self._newest.get(report.model_id, -math.inf):
            return  # a revision of an older window: the gauges show the newest one
        self._newest[report.model_id] = report.window_start
        whole = [row for row in report.rows if row.segment is None]  # slices: no gauges
        for row in whole:
            if row.value is None or not row.primary:
                continue
            if row.kind == "multivariate_drift" or (
                row.kind in ("data_drift", "prediction_drift") and row.feature is not None
            ):
                name = row.feature or MULTIVARIATE_FEATURE
                if row.kind == "prediction_drift":
                    name = _COLUMN_FEATURES.get(name, name)
                statistic = row.metric if row.metric in _STATISTICS else OTHER
                feature = self.guard.feature(report.model_id, name)
                self.drift.labels(model, feature, statistic).set(row.value)
                self.drift_threshold.labels(model, feature, statistic).set(row.critical)
        for row in whole:
            if row.kind == "estimated_performance" and row.value is not None:
                estimated = row.metric if row.metric in _ESTIMATED_METRICS else OTHER
                self.performance.labels(model, estimated).set(row.value)
        for row in whole:
            if row.kind == "performance" and row.value is not None:
                metric = row.metric if row.metric in _PERFORMANCE_METRICS else OTHER
                self.performance.labels(model, metric).set(row.value)
                level = critical_level(row)
                if level is not None:
                    self.performance_level.labels(model, metric).set(level)


def _estimate_and_realized(report: WindowReport) -> tuple[str, float, float] | None:
    """The primary metric's name, estimate and realized value of a window's whole-model
    rows, when the window has both (the realized one judged on enough labels)."""
    rows = [r for r in report.rows if r.segment is None and r.value is not None]
    for known in rows:
        if known.kind != "performance" or not known.primary or known.status == "insufficient":
            continue
        for row in rows:
            if row.kind == "estimated_performance" and row.metric == f"estimated_{known.metric}":
                assert row.value is not None and known.value is not None
                return known.metric, row.value, known.value
    return None


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
