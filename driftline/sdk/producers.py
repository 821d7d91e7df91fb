"""The narrow producer interface the loggers use, its Kafka factory and an in-memory double.

A logger never imports a Kafka client directly: it calls a *producer factory*
with a librdkafka configuration dict and talks to what comes back through
:class:`ProducerLike` (four methods of :class:`confluent_kafka.Producer`).
:func:`kafka_producer_factory` is the real one; :class:`MemoryProducer` keeps
messages in memory, so that services can test their logging without a broker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

__all__ = [
    "DeliveryCallback",
    "MemoryProducer",
    "ProducedMessage",
    "ProducerFactory",
    "ProducerLike",
    "kafka_producer_factory",
]

#: ``on_delivery(error, message)``: error is ``None`` on success.
DeliveryCallback = Callable[[Any, Any], None]


class ProducerLike(Protocol):
    """What a logger needs of a producer (a subset of :class:`confluent_kafka.Producer`)."""

    def produce(
        self, topic: str, value: bytes, key: bytes, *, on_delivery: DeliveryCallback
    ) -> None:
        """Queue one message; raise :class:`BufferError` when the queue is full."""

    def poll(self, timeout: float) -> int:
        """Serve delivery callbacks, waiting up to ``timeout`` seconds for one."""

    def flush(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for every queued message; return those left."""

    def purge(self) -> None:
        """Drop queued messages; their callbacks report an error at the next poll."""


#: Builds a producer from a librdkafka configuration dict.
ProducerFactory = Callable[[dict[str, Any]], ProducerLike]


def kafka_producer_factory(config: dict[str, Any]) -> ProducerLike:
    """A :class:`confluent_kafka.Producer`; it connects in the background, not here."""
    from confluent_kafka import Producer

    producer: ProducerLike = Producer(config)
    return producer


@dataclass(frozen=True, slots=True)
class ProducedMessage:
    """A message given to :class:`MemoryProducer`.

    Examples
    --------
    >>> ProducedMessage("t", b"k", b'{"a": 1}').decode()
    {'a': 1}
    """

    topic: str
    key: bytes
    value: bytes

    def decode(self) -> Any:
        """The JSON value."""
        return orjson.loads(self.value)


@dataclass(slots=True)
class _Queued:
    message: ProducedMessage
    on_delivery: DeliveryCallback
    error: str | None = None


class MemoryProducer:
    """An in-memory producer: a test double for :class:`confluent_kafka.Producer`.

    An instance is its own factory: pass it as ``producer_factory`` and it
    records the configuration it was built with. Messages queue until
    :meth:`poll` or :meth:`flush` delivers them, as in librdkafka.

    Parameters
    ----------
    queue_limit : int, default 100_000
        Queued messages at which :meth:`produce` raises :class:`BufferError`.
    paused : bool, default False
        Start paused: nothing is delivered until :meth:`resume` (a broker that
        does not answer).
    fail : callable, optional
        ``fail(message)`` returns an error text for a message whose delivery
        should fail, or ``None``.

    Examples
    --------
    >>> producer = MemoryProducer()
    >>> producer({"bootstrap.servers": "127.0.0.1:1"}) is producer
    True
    >>> delivered = []
    >>> producer.produce("t", b'{"a": 1}', b"k", on_delivery=lambda e, m: delivered.append(e))
    >>> producer.queued, producer.flush(1.0), delivered, producer.messages[0].decode()
    (1, 0, [None], {'a': 1})
    """

    def __init__(
        self,
        *,
        queue_limit: int = 100_000,
        paused: bool = False,
        fail: Callable[[ProducedMessage], str | None] | None = None,
    ) -> None:
        self.queue_limit = queue_limit
        self.fail = fail
        self.configs: list[dict[str, Any]] = []
        self._paused = paused
        self._queue: list[_Queued] = []
        #: Messages taken from the queue whose callbacks have not returned yet.
        self._delivering = 0
        self._delivered: list[ProducedMessage] = []
        self._failed: list[ProducedMessage] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    def __call__(self, config: dict[str, Any]) -> MemoryProducer:
        """Act as a producer factory: record ``config`` and return this producer."""
        self.configs.append(dict(config))
        return self

    @property
    def messages(self) -> list[ProducedMessage]:
        """Messages delivered successfully, in order."""
        with self._lock:
            return list(self._delivered)

    @property
    def failed(self) -> list[ProducedMessage]:
        """Messages whose delivery failed."""
        with self._lock:
            return list(self._failed)

    @property
    def queued(self) -> int:
        """Messages produced and not yet delivered."""
        with self._lock:
            return len(self._queue)

    def pause(self) -> None:
        """Stop delivering."""
        with self._lock:
            self._paused = True

    def resume(self) -> None:
        """Deliver again."""
        with self._lock:
            self._paused = False
            self._changed.notify_all()

    def produce(
        self, topic: str, value: bytes, key: bytes, *, on_delivery: DeliveryCallback
    ) -> None:
        """Queue a message, or raise :class:`BufferError` when ``queue_limit`` is reached."""
        with self._lock:
            if len(self._queue) >= self.queue_limit:
                raise BufferError("Local: Queue full")
            self._queue.append(
                _Queued(ProducedMessage(topic, bytes(key), bytes(value)), on_delivery)
            )
            self._changed.notify_all()

    def _take(self, timeout: float) -> list[_Queued]:
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._lock:
            while True:
                if self._paused:
                    ready = [item for item in self._queue if item.error is not None]
                else:
                    ready = list(self._queue)
                if ready:
                    taken = {id(item) for item in ready}
                    self._queue = [item for item in self._queue if id(item) not in taken]
                    self._delivering += len(ready)
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._changed.wait(remaining)
            for item in ready:
                if item.error is None and self.fail is not None:
                    item.error = self.fail(item.message)
                (self._delivered if item.error is None else self._failed).append(item.message)
            return ready

    def poll(self, timeout: float = 0.0) -> int:
        """Deliver what is queued (unless paused), calling callbacks; wait up to ``timeout``."""
        ready = self._take(timeout)
        try:
            for item in ready:
                item.on_delivery(item.error, item.message)
        finally:
            if ready:
                with self._lock:
                    self._delivering -= len(ready)
                    self._changed.notify_all()
        return len(ready)

    def flush(self, timeout: float = -1) -> int:
        """Deliver everything deliverable within ``timeout`` seconds; return messages left.

        As with librdkafka, it returns 0 only once every delivery callback has run, also
        those another thread's :meth:`poll` is running.
        """
        deadline = time.monotonic() + (3600.0 if timeout < 0 else timeout)
        while True:
            self.poll(0.0)
            with self._lock:
                if not self._queue and not self._delivering:
                    return 0
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return len(self._queue) + self._delivering
                self._changed.wait(remaining)

    def purge(self) -> None:
        """Fail every queued message with ``"Local: Purged in queue"`` at the next poll."""
        with self._lock:
            for item in self._queue:
                item.error = "Local: Purged in queue"
            self._changed.notify_all()
