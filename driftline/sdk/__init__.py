"""The service-side SDK: log predictions and feedback to driftline through Kafka.

Examples
--------
>>> from driftline.sdk import MemoryProducer, PredictionLogger
>>> memory = MemoryProducer()
>>> with PredictionLogger("credit", "v1", bootstrap_servers="127.0.0.1:1",
...                       producer_factory=memory) as logger:
...     logger.log("e1", {"income": 3.5}, prediction=1, score=0.8)
True
>>> memory.messages[0].decode()["type"]
'prediction_batch'
"""

from __future__ import annotations

from driftline.sdk.loggers import FeedbackLogger, PredictionLogger
from driftline.sdk.producers import (
    MemoryProducer,
    ProducedMessage,
    ProducerFactory,
    ProducerLike,
    kafka_producer_factory,
)
from driftline.sdk.stats import LoggerStats
from driftline.sdk.subscriber import ModelSubscriber, Served, Serving, SubscriberStats, share_of

__all__ = [
    "FeedbackLogger",
    "LoggerStats",
    "MemoryProducer",
    "ModelSubscriber",
    "PredictionLogger",
    "ProducedMessage",
    "ProducerFactory",
    "ProducerLike",
    "Served",
    "Serving",
    "SubscriberStats",
    "kafka_producer_factory",
    "share_of",
]
