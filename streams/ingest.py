"""Ingest: raw Kafka messages to stored rows, with bad input set aside for the DLQ.

:func:`route_messages` is the plain part (bytes in; Arrow tables and dead
letters out) and :class:`Ingestor` the shell that stores the tables and sends
the dead letters. Offsets are acknowledged by the Faust agent only after
:meth:`Ingestor.persist` returned, that is after the rows are stored and the
dead letters are delivered. Within a group, labels and shadow predictions are
stored before predictions: a model's watermark is read from its stored predictions,
so it never passes a window's close before the labels sent ahead of it *on the same
partition* are stored (what labels on other partitions or topics can count on:
:mod:`driftline.streams.rollouts`, "Judging").

A message can also be refused by the store although it decoded (a
deterministic error, :func:`~driftline.store.backend.is_deterministic`): then the
group's messages are inserted again in halves, down to the ones refused on their
own, which become dead letters with the reason ``store_rejected`` and the store's
message; the rest of the group is stored and the partition moves on. Any other
store error (the store is down, slow or out of memory) propagates: nothing is
acknowledged, and the worker retries, then stops.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

import pyarrow as pa
from driftline.schemas.codec import DecodeError, FeedbackColumns, IngestRows, decode_ingest
from driftline.schemas.conformance import Conformance
from driftline.schemas.events import FeedbackEvent, PredictionEvent
from driftline.schemas.monitor import MonitorConfig

from driftline.store.backend import Store, StoreError, is_deterministic
from driftline.store.rows import FeedbackRows, KafkaPosition, PredictionRows

__all__ = [
    "DeadLetter",
    "IngestOutcome",
    "IngestStats",
    "Ingestor",
    "RawMessage",
    "StoreRejectedError",
    "dead_letter_headers",
    "route_messages",
    "warm_up",
    "watermark_table",
]

log = logging.getLogger(__name__)

#: Default of ``DRIFTLINE_MAX_FUTURE_SECONDS``: how far event time may run ahead.
DEFAULT_MAX_FUTURE_SECONDS = 300.0

Headers = list[tuple[str, bytes]]


class RawMessage(NamedTuple):
    """One Kafka message as it was received (a named tuple: built once per message).

    Examples
    --------
    >>> RawMessage(b"{}", KafkaPosition("t", 0, 1)).key is None
    True
    """

    value: bytes | None
    position: KafkaPosition
    headers: Headers = []  # noqa: RUF012 - never mutated; a NamedTuple default
    key: bytes | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that could not be ingested, with why.

    Examples
    --------
    >>> raw = RawMessage(b"x", KafkaPosition("t", 2, 9))
    >>> letter = DeadLetter(raw, DecodeError("invalid_json", "bad"))
    >>> dict(dead_letter_headers(letter))["driftline.error.class"]
    b'invalid_json'
    """

    message: RawMessage
    error: DecodeError


class StoreRejectedError(DecodeError):
    """A message that decoded but that the store refuses, always (reason ``store_rejected``).

    Examples
    --------
    >>> StoreRejectedError("Code: 53. DB::Exception: ... (TYPE_MISMATCH)").reason
    'store_rejected'
    """

    def __init__(self, message: str) -> None:
        super().__init__("store_rejected", message)


def dead_letter_headers(letter: DeadLetter) -> Headers:
    """The original headers plus the error class, message and source position."""
    where = letter.message.position
    return [
        *letter.message.headers,
        ("driftline.error.class", letter.error.reason.encode()),
        ("driftline.error.message", letter.error.message.encode()[:4096]),
        ("driftline.source.topic", where.topic.encode()),
        ("driftline.source.partition", str(where.partition).encode()),
        ("driftline.source.offset", str(where.offset).encode()),
    ]


@dataclass
class IngestOutcome:
    """What one group of messages turned into.

    Examples
    --------
    >>> outcome = route_messages([RawMessage(b"nope", KafkaPosition("t", 0, 0))], 1024)
    >>> outcome.prediction_rows, [letter.error.reason for letter in outcome.dead_letters]
    (0, ['invalid_json'])
    """

    predictions: pa.Table | None
    feedback: pa.Table | None
    dead_letters: list[DeadLetter]
    #: Shadow predictions, bound for ``shadow_predictions``.
    shadow_predictions: pa.Table | None = None
    #: Latest prediction event time (epoch seconds) per (topic, partition) in the group.
    watermarks: dict[tuple[str, int], float] = field(default_factory=dict)
    #: The messages routed (kept to isolate one that the store refuses).
    messages: Sequence[RawMessage] = ()

    @property
    def prediction_rows(self) -> int:
        """Rows bound for the ``predictions`` table."""
        return 0 if self.predictions is None else self.predictions.num_rows

    @property
    def feedback_rows(self) -> int:
        """Rows bound for the ``feedback`` table."""
        return 0 if self.feedback is None else self.feedback.num_rows


def route_messages(
    messages: Sequence[RawMessage],
    max_bytes: int,
    max_future_seconds: float = DEFAULT_MAX_FUTURE_SECONDS,
    now: float | None = None,
    monitors: Mapping[str, MonitorConfig] | None = None,
) -> IngestOutcome:
    """Decode messages into prediction and feedback tables; collect the bad ones.

    Prediction and feedback events are accepted on either ingest topic; any
    other event type, and anything that is not a valid event, is a dead letter.
    So is a message with an event time more than ``max_future_seconds`` after
    ``now`` (the processing time, ``time.time()`` by default): one event from a
    wrong clock would otherwise move the watermark ahead and close every model's
    open windows early (reason ``timestamp_in_future``). The rows of a model with
    one of ``monitors`` (by model id) must fit it: labels of its task, numeric features
    as numbers (reasons ``label_type`` and ``feature_type``, a batch refused whole; see
    :mod:`driftline.schemas.conformance`).
    """
    predictions = PredictionRows()
    feedback = FeedbackRows()
    dead: list[DeadLetter] = []
    watermarks: dict[tuple[str, int], float] = {}
    clock = time.time() if now is None else now
    latest_allowed = clock + max_future_seconds
    conformance = Conformance(monitors) if monitors else None
    for message in messages:
        value = message.value
        try:
            if value is None:
                raise DecodeError("invalid_json", "empty message (no value)")
            rows = decode_ingest(value, max_bytes)
            latest = _latest_event_time(rows)
            if latest > latest_allowed:
                raise DecodeError(
                    "timestamp_in_future",
                    f"event time {_iso(latest)} is {latest - clock:.0f} s ahead of the "
                    f"worker's clock (at most {max_future_seconds:g} s: "
                    "DRIFTLINE_MAX_FUTURE_SECONDS)",
                )
            if conformance is not None:
                conformance.check(rows)
        except DecodeError as error:
            dead.append(DeadLetter(message, error))
            continue
        if isinstance(rows, FeedbackColumns | FeedbackEvent):
            feedback.add(rows, message.position)
            continue
        predictions.add(rows, message.position)
        if rows.shadow:  # the served copy of the event moves the watermark
            continue
        where = (message.position.topic, message.position.partition)
        if latest > watermarks.get(where, -math.inf):
            watermarks[where] = latest
    return IngestOutcome(
        predictions=_served(predictions),
        feedback=feedback.build() if feedback.pending else None,
        dead_letters=dead,
        shadow_predictions=predictions.build_shadow() if predictions.pending else None,
        watermarks=watermarks,
        messages=messages,
    )


def _served(predictions: PredictionRows) -> pa.Table | None:
    if not predictions.pending:
        return None
    table = predictions.build()
    return table if table.num_rows else None


def _latest_event_time(rows: IngestRows) -> float:
    """The latest event time (epoch seconds) of one decoded message."""
    if isinstance(rows, PredictionEvent | FeedbackEvent):
        return rows.timestamp.timestamp()
    return float(rows.timestamps.max())


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def watermark_table(watermarks: dict[tuple[str, int], float]) -> pa.Table:
    """Rows of the ``watermarks`` table: latest event time per topic partition, and now.

    Readers take ``max(event_time)`` and ``max(updated_at)`` per partition, so rows
    written by a worker that re-reads a partition after a rebalance never move a
    watermark back.

    Examples
    --------
    >>> watermark_table({("t", 0): 1767225600.5}).column("event_time").to_pylist()[0].isoformat()
    '2026-01-01T00:00:00.500000+00:00'
    """
    micros = pa.timestamp("us", tz="UTC")
    now = int(time.time() * 1_000_000)
    return pa.table(
        {
            "topic": pa.array([topic for topic, _ in watermarks], pa.string()),
            "partition": pa.array([partition for _, partition in watermarks], pa.int32()),
            "event_time": pa.array(
                [round(value * 1_000_000) for value in watermarks.values()], micros
            ),
            "updated_at": pa.array([now] * len(watermarks), micros),
        }
    )


def _merged(parts: Sequence[IngestOutcome], refused: list[DeadLetter]) -> IngestOutcome:
    """One outcome of the stored ``parts`` of a group, with ``refused`` as its dead letters."""

    def tables(name: str) -> pa.Table | None:
        found = [getattr(part, name) for part in parts if getattr(part, name) is not None]
        if not found:
            return None
        return pa.concat_tables(found, promote_options="permissive")

    watermarks: dict[tuple[str, int], float] = {}
    for part in parts:
        for where, latest in part.watermarks.items():
            watermarks[where] = max(latest, watermarks.get(where, -math.inf))
    return IngestOutcome(
        predictions=tables("predictions"),
        feedback=tables("feedback"),
        dead_letters=refused,
        watermarks=watermarks,
        shadow_predictions=tables("shadow_predictions"),
    )


_WARM_UP = (
    b'{"type": "prediction_batch", "model_id": "m", "model_version": "v",'
    b' "event_ids": ["a"], "timestamps": [1767225600], "features": {"x": [1.0], "c": ["u"]},'
    b' "predictions": [1], "scores": [0.5], "latency_ms": [1.0]}',
    b'{"type": "prediction", "event_id": "b", "model_id": "m", "model_version": "v",'
    b' "timestamp": 1767225600, "features": {"x": 1.0, "c": "u", "n": null},'
    b' "prediction": "y", "scores": {"y": 1.0}, "segment": {"s": "t"}}',
    b'{"type": "feedback", "event_id": "a", "model_id": "m", "timestamp": 1767225600, "label": 1}',
)


def warm_up() -> None:
    """Route a few valid messages once, so that lazy imports of Arrow (and what it
    pulls in) happen at start, not inside the first group of real traffic."""
    where = KafkaPosition("warm-up", 0, 0)
    route_messages([RawMessage(value, where) for value in _WARM_UP], 1 << 20)


@dataclass
class IngestStats:
    """Running totals of one ingest shell.

    Examples
    --------
    >>> IngestStats().prediction_rows
    0
    """

    messages: int = 0
    first_received: float | None = None
    last_stored: float | None = None
    prediction_rows: int = 0
    feedback_rows: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)


SendDeadLetter = Callable[[DeadLetter], Awaitable[object]]


class Ingestor:
    """Stores what :func:`route_messages` produced and hands dead letters to a sender.

    Parameters
    ----------
    store : Store
        Where rows go.
    send_dead_letter : callable
        Coroutine function that sends one dead letter and returns an awaitable
        that completes on delivery.
    max_bytes : int
        Largest accepted message.
    max_future_seconds : float
        How far event time may run ahead of the clock (``DRIFTLINE_MAX_FUTURE_SECONDS``).
    monitors : Mapping, optional
        Monitor configs by model id: rows of these models that do not fit their monitor
        are dead letters (see :func:`route_messages`). None: nothing is checked.

    Examples
    --------
    >>> Ingestor.__name__
    'Ingestor'
    """

    def __init__(
        self,
        store: Store,
        send_dead_letter: SendDeadLetter,
        max_bytes: int,
        max_future_seconds: float = DEFAULT_MAX_FUTURE_SECONDS,
        monitors: Mapping[str, MonitorConfig] | None = None,
    ) -> None:
        self.store = store
        self.send_dead_letter = send_dead_letter
        self.max_bytes = max_bytes
        self.max_future_seconds = max_future_seconds
        self.monitors: Mapping[str, MonitorConfig] = dict(monitors or {})
        self.stats = IngestStats()
        self._store_lock = threading.Lock()
        warm_up()

    def _insert_rows(self, outcome: IngestOutcome) -> None:
        # Predictions go last: a model's watermark is read from the stored predictions,
        # so when it passes a window's close, the labels and shadow predictions sent
        # before them (in this group too) are already stored. A window judged once (a
        # rollout's) never sees a watermark that ran ahead of its own labels.
        if outcome.feedback is not None:
            self.store.insert_arrow("feedback", outcome.feedback)
        if outcome.shadow_predictions is not None:
            self.store.insert_arrow("shadow_predictions", outcome.shadow_predictions)
        if outcome.predictions is not None:
            self.store.insert_arrow("predictions", outcome.predictions)
        if outcome.watermarks:
            # after the rows: a watermark never runs ahead of what is stored
            self.store.insert_arrow("watermarks", watermark_table(outcome.watermarks))

    def _insert(self, outcome: IngestOutcome) -> IngestOutcome | None:
        """Store the group; on a deterministic refusal, what was stored of it (with the
        refused messages as its dead letters), else None (all of it was stored)."""
        with self._store_lock:
            try:
                self._insert_rows(outcome)
            except StoreError as error:
                if not (outcome.messages and is_deterministic(error)):
                    raise
                log.warning(
                    "the store refused a group of %d messages (%s); isolating the refused ones",
                    len(outcome.messages),
                    error,
                )
                return self._isolate(outcome, error)
        return None

    def _isolate(self, outcome: IngestOutcome, error: StoreError) -> IngestOutcome:
        """Insert the group's decoded messages again in halves, down to single messages
        that the store refuses on their own (only after a deterministic refusal: the
        hot path never routes twice). Parts stored before a refusal may be inserted
        again; raw rows are deduplicated by ``event_id``."""
        undecodable = {letter.message.position for letter in outcome.dead_letters}
        messages = [m for m in outcome.messages if m.position not in undecodable]
        stored: list[IngestOutcome] = []
        refused: list[DeadLetter] = []

        def bisect(part: Sequence[RawMessage], failure: StoreError) -> None:
            if len(part) == 1:
                refused.append(DeadLetter(part[0], StoreRejectedError(str(failure))))
                return
            middle = len(part) // 2
            for half in (part[:middle], part[middle:]):
                routed = route_messages(
                    half, self.max_bytes, self.max_future_seconds, monitors=self.monitors
                )
                try:
                    self._insert_rows(routed)
                except StoreError as again:
                    if not is_deterministic(again):
                        raise
                    bisect(half, again)
                else:
                    stored.append(routed)

        bisect(messages, error)  # refused in the group's order: halves go left to right
        return _merged(stored, refused)

    def route(self, messages: Sequence[RawMessage]) -> IngestOutcome:
        """Decode one group (CPU work, on the caller's thread)."""
        if self.stats.first_received is None:
            self.stats.first_received = time.time()
        return route_messages(
            messages, self.max_bytes, self.max_future_seconds, monitors=self.monitors
        )

    async def persist(self, outcome: IngestOutcome, messages: int) -> None:
        """Make one decoded group durable: dead letters delivered, rows inserted.

        The insert runs on a worker thread (chDB and clickhouse-connect release
        the GIL), so the caller can decode the next group meanwhile. When the store
        refused some messages deterministically (see the module docstring), they are
        delivered as dead letters too, and ``outcome`` is updated in place to what was
        stored (its tables and watermarks) and dead-lettered, for the caller's metrics.
        A :class:`StoreError` that is not deterministic propagates, ``outcome``
        unchanged.
        """
        deliveries = [await self.send_dead_letter(letter) for letter in outcome.dead_letters]
        isolated = await asyncio.to_thread(self._insert, outcome)
        if isolated is not None:
            deliveries += [await self.send_dead_letter(letter) for letter in isolated.dead_letters]
        for delivery in deliveries:
            await delivery  # type: ignore[misc]
        if isolated is not None:
            outcome.predictions = isolated.predictions
            outcome.feedback = isolated.feedback
            outcome.shadow_predictions = isolated.shadow_predictions
            outcome.watermarks = isolated.watermarks
            outcome.dead_letters = [*outcome.dead_letters, *isolated.dead_letters]
        self.stats.last_stored = time.time()
        self.stats.messages += messages
        self.stats.prediction_rows += outcome.prediction_rows
        self.stats.feedback_rows += outcome.feedback_rows
        for letter in outcome.dead_letters:
            self.stats.dead_letters[letter.error.reason] += 1
            log.warning(
                "dead letter %s from %s[%d]@%d: %s",
                letter.error.reason,
                letter.message.position.topic,
                letter.message.position.partition,
                letter.message.position.offset,
                letter.error.message,
            )
