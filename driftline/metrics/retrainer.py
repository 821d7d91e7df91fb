"""The retrainer's Prometheus metrics (``DRIFTLINE_RETRAINER_METRICS_PORT``): processed
and refused requests, training duration, published versions."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram

from driftline.schemas.monitor import MonitorConfig

from .common import OTHER, LabelGuard

__all__ = [
    "OUTCOMES",
    "STATUSES",
    "TRAINING_BUCKETS",
    "HandledRequest",
    "RetrainerMetrics",
    "VersionRecordLike",
]

#: Outcomes of a processed retrain request.
OUTCOMES = ("champion", "rejected", "skipped", "duplicate", "failed")


#: Status of a published model version (``model_version`` events).
STATUSES = ("candidate", "champion", "rejected", "rolled_back", "shadow", "canary")


#: Upper bounds (seconds) of the training-duration histogram.
TRAINING_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, math.inf)


_DEVICES = frozenset({"cpu", "cuda", "mps", "xpu"})


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
        self.cost = {
            "cpu_seconds": Counter(
                "driftline_training_cpu_seconds_total",
                "CPU seconds of training runs (all threads of the retrainer).",
                ["model_id"],
                registry=registry,
            ),
            "gpu_seconds": Counter(
                "driftline_training_gpu_seconds_total",
                "Seconds training runs held a GPU.",
                ["model_id"],
                registry=registry,
            ),
            "rows": Counter(
                "driftline_training_rows_total",
                "Labelled rows training runs read (training and holdout).",
                ["model_id"],
                registry=registry,
            ),
            "bytes_read": Counter(
                "driftline_training_read_bytes_total",
                "Bytes of labelled rows training runs read.",
                ["model_id"],
                registry=registry,
            ),
        }
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
            for counter in self.cost.values():
                counter.labels(model)

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
            model = self.guard.model(model_id)
            self.cost["cpu_seconds"].labels(model).inc(max(record.cpu_seconds, 0.0))
            self.cost["gpu_seconds"].labels(model).inc(max(record.gpu_seconds, 0.0))
            self.cost["rows"].labels(model).inc(record.train_rows + record.holdout_rows)
            self.cost["bytes_read"].labels(model).inc(record.bytes_read)
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

    @property
    def cpu_seconds(self) -> float:
        """CPU seconds of its training run."""
        ...

    @property
    def gpu_seconds(self) -> float:
        """Seconds its training run held a GPU."""
        ...

    @property
    def train_rows(self) -> int:
        """Rows it trained on."""
        ...

    @property
    def holdout_rows(self) -> int:
        """Rows it was scored on."""
        ...

    @property
    def bytes_read(self) -> int:
        """Bytes of the labelled rows read for it."""
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
