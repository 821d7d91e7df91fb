"""Pure batching: validated rows in, Kafka message payloads out (DESIGN §3).

No Kafka here. The loggers in :mod:`driftline.sdk.loggers` group rows by
:func:`prediction_batch_key` and hand each group to :func:`encode_predictions`
or :func:`encode_feedback`, which return the payloads to produce.

Rules for predictions:

* A batch's rows share ``model_id``, ``model_version``, whether they are
  ``shadow`` predictions, the ``segment`` (it applies to the whole batch), and
  whether ``score`` and ``latency_ms`` are given (batch columns hold no nulls),
  so these make up the batch key.
* ``prediction_batch`` has a ``scores`` column of positive-class
  probabilities only; a row with a per-class ``scores`` mapping has no batch
  form and is sent as a single ``prediction`` event.
* Feature columns are the union of the rows' feature names; a feature that a
  row lacks is null (missing) in that row, as DESIGN §3 defines null.
* Timestamps are epoch seconds (floats).
* A group is cut where its feature union would pass ``MAX_FEATURES`` and
  halved until each payload fits ``max_bytes``; one row larger than that is
  returned as it is, for the caller to refuse.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from functools import partial
from typing import Any, NamedTuple, TypeVar

import orjson

from driftline.schemas.events import (
    MAX_FEATURES,
    FeedbackEvent,
    PredictionEvent,
    to_epoch_seconds,
)

__all__ = [
    "SINGLE",
    "EncodedMessage",
    "encode_feedback",
    "encode_predictions",
    "feedback_batch_key",
    "prediction_batch_key",
]

RowT = TypeVar("RowT", PredictionEvent, FeedbackEvent)

#: Batch key of prediction rows sent one event per message.
SINGLE: Hashable = ("single",)


class EncodedMessage(NamedTuple):
    """One Kafka message value and the number of rows it carries.

    Examples
    --------
    >>> EncodedMessage(b"{}", 0).rows
    0
    """

    payload: bytes
    rows: int


def prediction_batch_key(event: PredictionEvent) -> Hashable:
    """The key under which a prediction may share a batch with others.

    Examples
    --------
    >>> event = PredictionEvent(event_id="e1", model_id="m", model_version="v1",
    ...     timestamp=1767225600, features={"x": 1.0}, prediction=1, score=0.5,
    ...     segment={"region": "eu"})
    >>> prediction_batch_key(event)
    ('v1', False, (('region', 'eu'),), True, False, False)
    >>> prediction_batch_key(event.model_copy(update={"scores": {"a": 1.0}})) == SINGLE
    True
    """
    if event.scores is not None:
        return SINGLE
    segment = None if event.segment is None else tuple(sorted(event.segment.items()))
    # A batch column holds one kind, so numeric and string predictions never share one.
    kind = isinstance(event.prediction, str)
    return (
        event.model_version,
        event.shadow,
        segment,
        event.score is not None,
        event.latency_ms is not None,
        kind,
    )


def _single(event: PredictionEvent) -> bytes:
    body = event.model_dump(exclude_none=True)
    if not event.shadow:
        del body["shadow"]  # the default: left out, as before the field existed
    body["timestamp"] = to_epoch_seconds(event.timestamp)
    return orjson.dumps(body)


def _prediction_batch(rows: Sequence[PredictionEvent], names: list[str]) -> bytes:
    first = rows[0]
    body: dict[str, Any] = {
        "type": "prediction_batch",
        "model_id": first.model_id,
        "model_version": first.model_version,
        "event_ids": [row.event_id for row in rows],
        "timestamps": [to_epoch_seconds(row.timestamp) for row in rows],
        "features": {name: [row.features.get(name) for row in rows] for name in names},
        "predictions": [row.prediction for row in rows],
    }
    if first.score is not None:
        body["scores"] = [row.score for row in rows]
    if first.latency_ms is not None:
        body["latency_ms"] = [row.latency_ms for row in rows]
    if first.segment is not None:
        body["segment"] = first.segment
    if first.shadow:
        body["shadow"] = True
    return orjson.dumps(body)


def _feature_groups(
    rows: Sequence[PredictionEvent],
) -> list[tuple[Sequence[PredictionEvent], list[str]]]:
    """Cut ``rows`` where the union of feature names would pass ``MAX_FEATURES``."""
    groups: list[tuple[Sequence[PredictionEvent], list[str]]] = []
    start = 0
    names: dict[str, None] = {}
    previous: object = None
    for index, row in enumerate(rows):
        keys = row.features.keys()
        if keys == previous:
            continue
        previous = keys
        new = [name for name in keys if name not in names]
        if not new:
            continue
        if len(names) + len(new) > MAX_FEATURES and index > start:
            groups.append((rows[start:index], list(names)))
            start = index
            names = dict.fromkeys(keys)
        else:
            names.update(dict.fromkeys(new))
    groups.append((rows[start:], list(names)))
    return groups


def _fit(
    rows: Sequence[RowT],
    encode: Callable[[Sequence[RowT]], bytes],
    max_bytes: int,
    out: list[EncodedMessage],
) -> None:
    payload = encode(rows)
    if len(payload) <= max_bytes or len(rows) == 1:
        out.append(EncodedMessage(payload, len(rows)))
        return
    half = len(rows) // 2
    _fit(rows[:half], encode, max_bytes, out)
    _fit(rows[half:], encode, max_bytes, out)


def encode_predictions(
    rows: Sequence[PredictionEvent], key: Hashable, max_bytes: int
) -> list[EncodedMessage]:
    """Encode predictions that share ``key`` into message payloads.

    Parameters
    ----------
    rows : sequence of PredictionEvent
        Validated rows of one model version, all with batch key ``key``.
    key : hashable
        Their :func:`prediction_batch_key`.
    max_bytes : int
        Largest payload wanted; bigger batches are split.

    Returns
    -------
    list of EncodedMessage
        ``prediction_batch`` payloads, or one ``prediction`` payload per row
        when ``key`` is :data:`SINGLE`.

    Examples
    --------
    >>> rows = [PredictionEvent(event_id=f"e{i}", model_id="m", model_version="v1",
    ...     timestamp=1767225600 + i, features={"x": float(i)}, prediction=i)
    ...     for i in range(3)]
    >>> [message] = encode_predictions(rows, prediction_batch_key(rows[0]), 1 << 20)
    >>> message.rows, orjson.loads(message.payload)["features"]
    (3, {'x': [0.0, 1.0, 2.0]})
    """
    if not rows:
        return []
    if key == SINGLE:
        return [EncodedMessage(_single(row), 1) for row in rows]
    out: list[EncodedMessage] = []
    for same_kinds in _split_by_feature_kind(rows):
        for group, names in _feature_groups(same_kinds):
            _fit(group, partial(_prediction_batch, names=names), max_bytes, out)
    return out


def _split_by_feature_kind(rows: Sequence[PredictionEvent]) -> list[list[PredictionEvent]]:
    """Groups in which no feature is a number in one row and a string in another.

    A batch column holds one kind; a null fits either. Rows keep their order
    within a group.
    """
    groups: list[tuple[dict[str, bool], list[PredictionEvent]]] = []
    for row in rows:
        kinds = {name: isinstance(v, str) for name, v in row.features.items() if v is not None}
        for known, members in groups:
            if all(known.get(name, text) == text for name, text in kinds.items()):
                known.update(kinds)
                members.append(row)
                break
        else:
            groups.append((kinds, [row]))
    return [members for _, members in groups]


def _feedback_batch(rows: Sequence[FeedbackEvent]) -> bytes:
    return orjson.dumps(
        {
            "type": "feedback_batch",
            "model_id": rows[0].model_id,
            "event_ids": [row.event_id for row in rows],
            "timestamps": [to_epoch_seconds(row.timestamp) for row in rows],
            "labels": [row.label for row in rows],
        }
    )


def feedback_batch_key(event: FeedbackEvent) -> Hashable:
    """The key under which a label may share a batch: its kind (number or string).

    Examples
    --------
    >>> feedback_batch_key(FeedbackEvent(event_id="e", model_id="m", timestamp=1767225600,
    ...     label="yes"))
    True
    """
    return isinstance(event.label, str)


def encode_feedback(rows: Sequence[FeedbackEvent], max_bytes: int) -> list[EncodedMessage]:
    """Encode labels of one model into ``feedback_batch`` payloads.

    Examples
    --------
    >>> rows = [FeedbackEvent(event_id="e1", model_id="m", timestamp=1767225600, label="yes")]
    >>> orjson.loads(encode_feedback(rows, 1 << 20)[0].payload)["labels"]
    ['yes']
    """
    if not rows:
        return []
    out: list[EncodedMessage] = []
    _fit(rows, _feedback_batch, max_bytes, out)
    return out
