"""Event contracts, the wire codec and the monitor config of driftline."""

from __future__ import annotations

from .events import (
    AlertEvent,
    Event,
    FeedbackBatchEvent,
    FeedbackEvent,
    ModelVersionEvent,
    PredictionBatchEvent,
    PredictionEvent,
    RetrainRequestEvent,
    event_adapter,
)

__all__ = [
    "AlertEvent",
    "Event",
    "FeedbackBatchEvent",
    "FeedbackEvent",
    "ModelVersionEvent",
    "PredictionBatchEvent",
    "PredictionEvent",
    "RetrainRequestEvent",
    "event_adapter",
]
