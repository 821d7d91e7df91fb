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

from .common import (
    OTHER,
    PREDICTION_FEATURE,
    SCORE_FEATURE,
    LabelGuard,
    VectorHistogram,
    start_metrics_server,
)
from .retrainer import (
    OUTCOMES,
    STATUSES,
    TRAINING_BUCKETS,
    HandledRequest,
    RetrainerMetrics,
    VersionRecordLike,
)
from .worker import (
    CLOSE_BUCKETS,
    LATENCY_BUCKETS,
    OffsetSource,
    WatermarkDelay,
    WorkerMetrics,
    consumer_lags,
    critical_level,
)

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
