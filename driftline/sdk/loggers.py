"""Prediction and feedback loggers: validate, batch and produce events to Kafka.

A serving thread calls ``log()``; the row is validated with its event model
(an invalid row raises :class:`ValueError` and is never sent), then appended to
an open batch. A batch is sealed when it holds ``batch_rows`` rows or when
``linger_seconds`` have passed since its first row. One daemon thread per
logger encodes sealed batches (:mod:`driftline.sdk.batching`), produces them
with the model id as message key (one model's messages stay in order on one
partition) and serves delivery callbacks, which update the counters in
:class:`~driftline.sdk.stats.LoggerStats`.

``log()`` never waits longer than ``max_block_seconds``: when
``max_buffered_rows`` rows are already waiting (because the producer queue is
full, or the broker is slow), it waits for room at most that long, then drops
the row, counts it in ``rows_dropped`` and returns ``False``. With the default
of 0 it never waits.

The producer is built on the first ``log()``, not in the constructor, so a
logger can be made where no broker is reachable yet. Call ``close()`` (or use
the logger as a context manager) at shutdown: rows still buffered when the
process exits without it are lost.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Hashable, Mapping
from datetime import datetime
from functools import partial
from types import TracebackType
from typing import Any, ClassVar, Generic, Self, TypeVar

from pydantic import ValidationError

from driftline.schemas.events import MAX_BATCH_ROWS, FeedbackEvent, PredictionEvent
from driftline.sdk.batching import (
    EncodedMessage,
    encode_feedback,
    encode_predictions,
    feedback_batch_key,
    prediction_batch_key,
)
from driftline.sdk.producers import ProducerFactory, ProducerLike, kafka_producer_factory
from driftline.sdk.stats import LoggerStats
from driftline.settings import Settings

__all__ = ["FeedbackLogger", "PredictionLogger"]

RowT = TypeVar("RowT", PredictionEvent, FeedbackEvent)

#: How often the sender thread serves callbacks while messages are in flight.
_POLL_INTERVAL = 0.02
#: Longest sleep of an idle sender thread.
_IDLE_INTERVAL = 0.5
#: Room for Kafka record overhead above ``max_message_bytes`` in ``message.max.bytes``.
_RECORD_OVERHEAD = 64 * 1024
_MAX_REPORTED_PROBLEMS = 5


#: Depth of the field path at union-typed fields; pydantic appends the member's tag below it.
_UNION_DEPTH = {"features": 2, "prediction": 1, "label": 1}


def _invalid(kind: str, event_id: object, error: ValidationError) -> ValueError:
    """A short :class:`ValueError` naming every field that failed and why.

    At a union-typed field (a number or a string) every member reports; a
    member's type mismatch is left out when another member says more.
    """
    by_path: dict[str, list[tuple[str, str]]] = {}
    for detail in error.errors(include_url=False):
        loc = detail["loc"]
        depth = _UNION_DEPTH.get(str(loc[0])) if loc else None
        if depth is not None:
            loc = loc[:depth]
        path = ".".join(str(part) for part in loc) or "event"
        by_path.setdefault(path, []).append((detail["type"], detail["msg"]))
    problems: list[str] = []
    for path, found in by_path.items():
        telling = [msg for kind_, msg in found if not kind_.endswith(("_type", "_parsing"))]
        messages = telling or [msg for _, msg in found]
        problems.append(f"{path}: {' or '.join(dict.fromkeys(messages))}")
    shown = "; ".join(problems[:_MAX_REPORTED_PROBLEMS])
    if len(problems) > _MAX_REPORTED_PROBLEMS:
        shown += f"; and {len(problems) - _MAX_REPORTED_PROBLEMS} more"
    return ValueError(f"invalid {kind} {event_id!r}: {shown}")


class _Batch(Generic[RowT]):
    __slots__ = ("deadline", "rows")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.rows: list[RowT] = []


class _BatchingLogger(Generic[RowT]):
    """Buffers, the sender thread and the counters shared by both loggers."""

    _topic_attribute: ClassVar[str]

    def __init__(
        self,
        model_id: str,
        *,
        bootstrap_servers: str | None,
        settings: Settings | None,
        topic: str | None,
        batch_rows: int,
        linger_seconds: float,
        max_buffered_rows: int,
        max_block_seconds: float,
        producer_config: Mapping[str, Any] | None,
        producer_factory: ProducerFactory | None,
    ) -> None:
        settings = settings if settings is not None else Settings.model_validate({})
        servers = (
            settings.kafka_bootstrap_servers if bootstrap_servers is None else bootstrap_servers
        )
        if not servers.strip():
            raise ValueError(
                "no Kafka bootstrap servers: pass bootstrap_servers= or set "
                "DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS (the SDK does not start the embedded broker)"
            )
        if not 1 <= batch_rows <= MAX_BATCH_ROWS:
            raise ValueError(f"batch_rows must be between 1 and {MAX_BATCH_ROWS}, not {batch_rows}")
        if not (math.isfinite(linger_seconds) and linger_seconds >= 0):
            raise ValueError(f"linger_seconds must be finite and >= 0, not {linger_seconds}")
        if max_buffered_rows < batch_rows:
            raise ValueError(
                f"max_buffered_rows ({max_buffered_rows}) must be at least "
                f"batch_rows ({batch_rows})"
            )
        if not (math.isfinite(max_block_seconds) and max_block_seconds >= 0):
            raise ValueError(f"max_block_seconds must be finite and >= 0, not {max_block_seconds}")
        topic = topic if topic is not None else getattr(settings.topics, self._topic_attribute)
        if not topic:
            raise ValueError("topic must not be empty")

        self.model_id = model_id
        self.bootstrap_servers = servers
        self.settings = settings
        self.topic: str = topic
        self.batch_rows = batch_rows
        self.linger_seconds = linger_seconds
        self.max_buffered_rows = max_buffered_rows
        self.max_block_seconds = max_block_seconds
        self.producer_config = dict(producer_config or {})
        self.producer_factory = producer_factory or kafka_producer_factory

        self._max_payload = settings.max_message_bytes
        self._config: dict[str, Any] = {
            **settings.kafka_client_config(),
            "bootstrap.servers": servers,
            "enable.idempotence": True,
            "compression.type": "lz4",
            "linger.ms": 5,
            "message.max.bytes": settings.max_message_bytes + _RECORD_OVERHEAD,
            "queue.buffering.max.kbytes": max(64 * 1024, 2 * settings.max_message_bytes // 1024),
            **self.producer_config,
        }
        self._key = model_id.encode()

        # Guarded by _lock: buffers, counters, lifecycle flags.
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # the sender thread waits here
        self._room = threading.Condition(self._lock)  # log() waits here for buffer room
        self._open: dict[Hashable, _Batch[RowT]] = {}
        self._ready: deque[tuple[Hashable, list[RowT]]] = deque()
        self._buffered = 0
        self._in_flight = 0
        self._rows_logged = 0
        self._rows_dropped = 0
        self._rows_delivered = 0
        self._messages_delivered = 0
        self._rows_failed = 0
        self._messages_failed = 0
        self._last_error: str | None = None
        self._closed = False
        self._stopping = False
        self._finished = False
        self._producer: ProducerLike | None = None
        self._thread: threading.Thread | None = None
        # Guarded by _send_lock (taken before _lock, never after): encoded messages to produce.
        self._send_lock = threading.Lock()
        self._outbox: deque[EncodedMessage] = deque()
        self._backlog = False

    # -- hooks -----------------------------------------------------------------------------

    def _batch_key(self, row: RowT) -> Hashable:
        raise NotImplementedError

    def _encode(self, key: Hashable, rows: list[RowT]) -> list[EncodedMessage]:
        raise NotImplementedError

    # -- public ----------------------------------------------------------------------------

    @property
    def stats(self) -> LoggerStats:
        """A snapshot of the counters."""
        with self._lock:
            return LoggerStats(
                rows_logged=self._rows_logged,
                rows_delivered=self._rows_delivered,
                messages_delivered=self._messages_delivered,
                rows_dropped=self._rows_dropped,
                rows_failed=self._rows_failed,
                messages_failed=self._messages_failed,
                rows_buffered=self._buffered,
                rows_in_flight=self._in_flight,
                last_error=self._last_error,
            )

    def flush(self, timeout: float = 10.0) -> int:
        """Send every buffered row and wait up to ``timeout`` seconds for deliveries.

        Returns
        -------
        int
            Rows still undelivered (buffered or in flight) when it returns.
        """
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._lock:
            self._seal(None)
            producer = self._producer
        if producer is not None:
            self._send(producer, deadline)
            producer.flush(max(0.0, deadline - time.monotonic()))
        with self._lock:
            return self._buffered + self._in_flight

    def close(self, timeout: float = 10.0) -> int:
        """Flush for up to ``timeout`` seconds, then stop; later ``log()`` calls drop.

        Rows still undelivered at the end are counted in ``rows_failed``.

        Returns
        -------
        int
            Rows that were undelivered when the flush ended.
        """
        with self._lock:
            if self._closed:
                return 0
            self._closed = True
            self._room.notify_all()
        left = self.flush(timeout)
        with self._lock:
            self._stopping = True
            self._wake.notify_all()
            thread, producer = self._thread, self._producer
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)
        with self._send_lock:
            if producer is not None and left:
                producer.purge()
                producer.poll(0)
            with self._lock:
                unsent = sum(len(batch.rows) for batch in self._open.values())
                unsent += sum(len(rows) for _, rows in self._ready)
                unsent += sum(message.rows for message in self._outbox)
                lost = unsent + self._in_flight
                if lost:
                    self._rows_failed += lost
                    self._last_error = f"logger closed with {lost} rows undelivered"
                self._open.clear()
                self._ready.clear()
                self._outbox.clear()
                self._buffered = 0
                self._in_flight = 0
                self._finished = True
        return left

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model_id={self.model_id!r}, topic={self.topic!r})"

    # -- log path --------------------------------------------------------------------------

    def _accept(self, row: RowT) -> bool:
        key = self._batch_key(row)
        deadline: float | None = None
        with self._lock:
            while True:
                if self._closed:
                    self._rows_dropped += 1
                    return False
                if self._buffered < self.max_buffered_rows:
                    break
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.max_block_seconds
                if now >= deadline:
                    self._rows_dropped += 1
                    return False
                self._room.wait(deadline - now)
            if self._thread is None:
                self._start()
            batch = self._open.get(key)
            wake = batch is None
            if batch is None:
                batch = self._open[key] = _Batch(time.monotonic() + self.linger_seconds)
            batch.rows.append(row)
            self._buffered += 1
            self._rows_logged += 1
            if len(batch.rows) >= self.batch_rows:
                del self._open[key]
                self._ready.append((key, batch.rows))
                wake = True
            if wake:
                self._wake.notify()
        return True

    def _start(self) -> None:
        """Build the producer and start the sender thread (``_lock`` held)."""
        self._producer = self.producer_factory(dict(self._config))
        self._thread = threading.Thread(
            target=self._run, name=f"driftline-sdk:{self.topic}", daemon=True
        )
        self._thread.start()

    # -- sender ----------------------------------------------------------------------------

    def _seal(self, now: float | None) -> None:
        """Move open batches whose linger expired (all when ``now`` is None) to ready."""
        if not self._open:
            return
        keys = [k for k, b in self._open.items() if now is None or b.deadline <= now]
        for key in keys:
            self._ready.append((key, self._open.pop(key).rows))

    def _wait_seconds(self, now: float) -> float:
        wait = _POLL_INTERVAL if self._in_flight else _IDLE_INTERVAL
        if self._open:
            wait = min(wait, min(b.deadline for b in self._open.values()) - now)
        return max(wait, 0.0)

    def _run(self) -> None:
        producer = self._producer
        assert producer is not None
        while True:
            with self._lock:
                if self._stopping:
                    return
                now = time.monotonic()
                self._seal(now)
                if not self._ready and not self._backlog:
                    self._wake.wait(self._wait_seconds(now))
                    if self._stopping:
                        return
                    self._seal(time.monotonic())
            try:
                self._send(producer, None)
                producer.poll(0)
            except Exception as error:  # keep serving: a broken producer must not kill the thread
                with self._lock:
                    self._last_error = f"sender: {error!r}"
                time.sleep(_POLL_INTERVAL)

    def _give_up(self, rows: int, reason: str) -> None:
        with self._lock:
            self._buffered -= rows
            self._rows_failed += rows
            self._messages_failed += 1
            self._last_error = reason
            self._room.notify_all()

    def _send(self, producer: ProducerLike, deadline: float | None) -> bool:
        """Produce ready batches in order; on a full queue retry until ``deadline``.

        With ``deadline`` None (the sender thread) a full queue waits one poll
        interval and returns. Returns whether everything ready was produced.
        """
        with self._send_lock:
            while True:
                if not self._outbox:
                    with self._lock:
                        if not self._ready:
                            self._backlog = False
                            return True
                        key, rows = self._ready.popleft()
                    try:
                        self._outbox.extend(self._encode(key, rows))
                    except Exception as error:
                        self._give_up(len(rows), f"could not encode a batch: {error!r}")
                        continue
                message = self._outbox[0]
                if len(message.payload) > self._max_payload:
                    self._outbox.popleft()
                    self._give_up(
                        message.rows,
                        f"message of {len(message.payload)} bytes exceeds max_message_bytes "
                        f"({self._max_payload})",
                    )
                    continue
                with self._lock:
                    self._in_flight += message.rows
                try:
                    producer.produce(
                        self.topic,
                        message.payload,
                        self._key,
                        on_delivery=partial(self._delivered, message.rows),
                    )
                except BufferError:
                    with self._lock:
                        self._in_flight -= message.rows
                    self._backlog = True
                    remaining = _POLL_INTERVAL if deadline is None else deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    producer.poll(min(_POLL_INTERVAL, remaining))
                    if deadline is None:
                        return False
                    continue
                except Exception as error:
                    self._outbox.popleft()
                    with self._lock:
                        self._in_flight -= message.rows
                    self._give_up(message.rows, f"produce failed: {error!r}")
                    continue
                self._outbox.popleft()
                with self._lock:
                    self._buffered -= message.rows
                    self._room.notify_all()

    def _delivered(self, rows: int, error: Any, message: Any) -> None:
        """Delivery callback (runs inside ``poll``/``flush``)."""
        with self._lock:
            if self._finished:
                return
            self._in_flight -= rows
            if error is None:
                self._rows_delivered += rows
                self._messages_delivered += 1
            else:
                self._rows_failed += rows
                self._messages_failed += 1
                self._last_error = str(error)


class PredictionLogger(_BatchingLogger[PredictionEvent]):
    """Log one model version's predictions to Kafka in ``prediction_batch`` messages.

    Parameters
    ----------
    model_id, model_version : str
        The model every row belongs to; ``model_id`` is also the message key.
    bootstrap_servers : str, optional
        Kafka ``host:port`` list; ``settings.kafka_bootstrap_servers`` when omitted.
    settings : Settings, optional
        Topic prefix, security and message size; ``Settings()`` when omitted.
    topic : str, optional
        Default ``<prefix>.predictions``.
    batch_rows : int, default 1000
        Rows per message at most.
    linger_seconds : float, default 0.2
        Longest a row waits for its batch to fill.
    max_buffered_rows : int, default 100_000
        Rows that may wait to be produced; beyond that ``log()`` drops.
    max_block_seconds : float, default 0
        Longest ``log()`` waits for room before dropping; 0 never waits.
    producer_config : mapping, optional
        librdkafka settings merged over the defaults (idempotence, lz4,
        ``linger.ms`` 5) and ``settings.kafka_client_config()``.
    producer_factory : callable, optional
        Builds the producer from the config dict; default
        :func:`~driftline.sdk.producers.kafka_producer_factory`. Pass a
        :class:`~driftline.sdk.producers.MemoryProducer` in tests.

    Notes
    -----
    Rows share a batch when they share the segment and whether ``score`` and
    ``latency_ms`` are given (the segment belongs to the whole batch, and batch
    columns hold no nulls); other rows go to other batches. A row with a
    per-class ``scores`` mapping, which ``prediction_batch`` cannot carry, is
    sent as a single ``prediction`` event. A feature that some rows of a batch
    lack is null (missing) in those rows.

    Examples
    --------
    >>> from driftline.sdk import MemoryProducer
    >>> memory = MemoryProducer()
    >>> with PredictionLogger("credit", "v1", bootstrap_servers="127.0.0.1:1",
    ...                       producer_factory=memory) as logger:
    ...     for i in range(3):
    ...         accepted = logger.log(f"e{i}", {"income": 1.5 * i, "region": "eu"}, 1,
    ...                               timestamp=1767225600 + i, score=0.9)
    >>> logger.stats.rows_delivered, logger.stats.messages_delivered
    (3, 1)
    >>> batch = memory.messages[0].decode()
    >>> batch["type"], batch["event_ids"], batch["features"]["income"], batch["scores"]
    ('prediction_batch', ['e0', 'e1', 'e2'], [0.0, 1.5, 3.0], [0.9, 0.9, 0.9])
    >>> PredictionLogger("credit", "v1", bootstrap_servers="127.0.0.1:1").log(
    ...     "e9", {"income": float("nan")}, 1)
    Traceback (most recent call last):
    ...
    ValueError: invalid prediction 'e9': features.income: Input should be a finite number
    """

    _topic_attribute = "predictions"

    def __init__(
        self,
        model_id: str,
        model_version: str,
        *,
        bootstrap_servers: str | None = None,
        settings: Settings | None = None,
        topic: str | None = None,
        batch_rows: int = 1000,
        linger_seconds: float = 0.2,
        max_buffered_rows: int = 100_000,
        max_block_seconds: float = 0.0,
        producer_config: Mapping[str, Any] | None = None,
        producer_factory: ProducerFactory | None = None,
    ) -> None:
        try:
            PredictionEvent.model_validate(
                {
                    "event_id": "-",
                    "model_id": model_id,
                    "model_version": model_version,
                    "timestamp": time.time(),
                    "features": {},
                    "prediction": 0,
                }
            )
        except ValidationError as error:
            raise _invalid("PredictionLogger", model_id, error) from error
        super().__init__(
            model_id,
            bootstrap_servers=bootstrap_servers,
            settings=settings,
            topic=topic,
            batch_rows=batch_rows,
            linger_seconds=linger_seconds,
            max_buffered_rows=max_buffered_rows,
            max_block_seconds=max_block_seconds,
            producer_config=producer_config,
            producer_factory=producer_factory,
        )
        self.model_version = model_version

    def log(
        self,
        event_id: str,
        features: Mapping[str, float | str | None],
        prediction: float | str,
        *,
        timestamp: datetime | float | str | None = None,
        score: float | None = None,
        scores: Mapping[str, float] | None = None,
        latency_ms: float | None = None,
        segment: Mapping[str, str] | None = None,
        model_version: str | None = None,
        shadow: Mapping[str, float | str] | None = None,
        shadow_latency_ms: Mapping[str, float] | None = None,
        shadow_score: Mapping[str, float] | None = None,
    ) -> bool:
        """Validate one prediction (and its shadow predictions) and queue it; thread-safe.

        Parameters
        ----------
        event_id : str
            Unique id of the prediction; feedback refers to it.
        features : mapping
            Feature name to number, string (categorical) or None (missing).
        prediction : float or str
            The model's output.
        timestamp : datetime, float or str, optional
            Aware datetime, epoch seconds or RFC 3339; now (UTC) when omitted.
        score : float, optional
            Positive-class probability.
        scores : mapping, optional
            Class to probability; such a row is sent on its own.
        latency_ms : float, optional
            Time the prediction took.
        segment : mapping, optional
            Segment labels (str to str); rows of one batch share them.
        model_version : str, optional
            The version that served the request (a canary's, say); the logger's when
            omitted.
        shadow : mapping, optional
            Version to prediction of versions that scored the request in shadow
            (:attr:`driftline.sdk.Served.shadow_output`): each is logged as a
            ``shadow`` prediction with the same event id, features and time.
        shadow_latency_ms : mapping, optional
            Version to the time its shadow prediction took.
        shadow_score : mapping, optional
            Version to its positive-class probability (what a rollout compared by
            ``log_loss`` reads).

        Returns
        -------
        bool
            True if queued, False if dropped for lack of room (counted in
            ``stats.rows_dropped``; a shadow row dropped counts too).

        Raises
        ------
        ValueError
            The row is invalid; the message names the fields at fault.
        """
        try:
            row = PredictionEvent.model_validate(
                {
                    "event_id": event_id,
                    "model_id": self.model_id,
                    "timestamp": time.time() if timestamp is None else timestamp,
                    "features": features,
                    "prediction": prediction,
                    "score": score,
                    "scores": scores,
                    "latency_ms": latency_ms,
                    "segment": segment,
                    "model_version": model_version or self.model_version,
                }
            )
            shadows = [
                PredictionEvent.model_validate(
                    row.model_dump()
                    | {
                        "model_version": version,
                        "prediction": output,
                        "score": (shadow_score or {}).get(version),
                        "scores": None,
                        "latency_ms": (shadow_latency_ms or {}).get(version),
                        "shadow": True,
                    }
                )
                for version, output in (shadow or {}).items()
            ]
        except ValidationError as error:
            raise _invalid("prediction", event_id, error) from error
        accepted = self._accept(row)
        for extra in shadows:
            accepted = self._accept(extra) and accepted
        return accepted

    def _batch_key(self, row: PredictionEvent) -> Hashable:
        return prediction_batch_key(row)

    def _encode(self, key: Hashable, rows: list[PredictionEvent]) -> list[EncodedMessage]:
        return encode_predictions(rows, key, self._max_payload)


class FeedbackLogger(_BatchingLogger[FeedbackEvent]):
    """Log ground-truth labels of one model to Kafka in ``feedback_batch`` messages.

    Parameters
    ----------
    model_id : str
        The model the labels belong to; also the message key.
    bootstrap_servers, settings, batch_rows, linger_seconds, max_buffered_rows, \
max_block_seconds, producer_config, producer_factory
        As for :class:`PredictionLogger`.
    topic : str, optional
        Default ``<prefix>.feedback``.

    Examples
    --------
    >>> from driftline.sdk import MemoryProducer
    >>> memory = MemoryProducer()
    >>> logger = FeedbackLogger("credit", bootstrap_servers="127.0.0.1:1",
    ...                         producer_factory=memory, batch_rows=2)
    >>> [logger.log(f"e{i}", label, timestamp=1767225600) for i, label in enumerate([1, 0, 1])]
    [True, True, True]
    >>> logger.close()
    0
    >>> [m.decode()["labels"] for m in memory.messages]
    [[1.0, 0.0], [1.0]]
    >>> logger.topic, logger.log("e3", 1)
    ('driftline.feedback', False)
    """

    _topic_attribute = "feedback"

    def __init__(
        self,
        model_id: str,
        *,
        bootstrap_servers: str | None = None,
        settings: Settings | None = None,
        topic: str | None = None,
        batch_rows: int = 1000,
        linger_seconds: float = 0.2,
        max_buffered_rows: int = 100_000,
        max_block_seconds: float = 0.0,
        producer_config: Mapping[str, Any] | None = None,
        producer_factory: ProducerFactory | None = None,
    ) -> None:
        try:
            FeedbackEvent.model_validate(
                {"event_id": "-", "model_id": model_id, "timestamp": time.time(), "label": 0}
            )
        except ValidationError as error:
            raise _invalid("FeedbackLogger", model_id, error) from error
        super().__init__(
            model_id,
            bootstrap_servers=bootstrap_servers,
            settings=settings,
            topic=topic,
            batch_rows=batch_rows,
            linger_seconds=linger_seconds,
            max_buffered_rows=max_buffered_rows,
            max_block_seconds=max_block_seconds,
            producer_config=producer_config,
            producer_factory=producer_factory,
        )

    def log(
        self, event_id: str, label: float | str, *, timestamp: datetime | float | str | None = None
    ) -> bool:
        """Validate one label and queue it; thread-safe.

        Parameters
        ----------
        event_id : str
            The id of the prediction this label is for.
        label : float or str
            The true outcome.
        timestamp : datetime, float or str, optional
            When the label became known; now (UTC) when omitted.

        Returns
        -------
        bool
            True if queued, False if dropped (counted in ``stats.rows_dropped``).

        Raises
        ------
        ValueError
            The row is invalid; the message names the fields at fault.
        """
        try:
            row = FeedbackEvent.model_validate(
                {
                    "event_id": event_id,
                    "model_id": self.model_id,
                    "timestamp": time.time() if timestamp is None else timestamp,
                    "label": label,
                }
            )
        except ValidationError as error:
            raise _invalid("feedback", event_id, error) from error
        return self._accept(row)

    def _batch_key(self, row: FeedbackEvent) -> Hashable:
        return feedback_batch_key(row)

    def _encode(self, key: Hashable, rows: list[FeedbackEvent]) -> list[EncodedMessage]:
        return encode_feedback(rows, self._max_payload)
