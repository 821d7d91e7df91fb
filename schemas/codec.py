"""Wire codec: bytes from Kafka or a JSONL line to typed events or columns.

Three ways in:

* :func:`decode` validates any event fully into its pydantic model.
* :func:`decode_ingest` is the ingest fast path. It turns a ``prediction_batch`` or
  a ``feedback_batch`` into :class:`PredictionColumns` / :class:`FeedbackColumns`
  (numpy arrays, one per column) without building a Python object per row, and
  single events into their models. It accepts a prediction or feedback event
  exactly when :func:`decode` does, and a batch it refuses is validated again by the
  models, so that the error is the one :func:`decode` raises. Timestamps given as
  epoch seconds keep their full precision in the columns, where the models round
  them to microseconds.
* :class:`~driftline.schemas.jsonl.JsonlDecoder` reads the lines of a JSONL file of
  ingest events with the same rules: batches as :func:`decode_ingest` does, single
  events a run at a time, checked column-wise by :mod:`~driftline.schemas.singles`.

Every failure is a :class:`DecodeError` whose ``reason`` is a short stable code
(for the DLQ headers and metrics) and whose message names what is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import numpy as np
import orjson
from pydantic import ValidationError

from .events import (
    EARLIEST_EPOCH,
    LATEST_EPOCH,
    MAX_BATCH_ROWS,
    MAX_FEATURES,
    MAX_ID_LENGTH,
    MAX_VALUE_LENGTH,
    Event,
    FeedbackBatchEvent,
    FeedbackEvent,
    PredictionBatchEvent,
    PredictionEvent,
    _parse_time,
    event_adapter,
)

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "REASONS",
    "DecodeError",
    "FeedbackColumns",
    "IngestRows",
    "PredictionColumns",
    "decode",
    "decode_ingest",
    "encode",
    "feedback_batch_columns",
    "prediction_batch_columns",
]

#: Largest message accepted unless the caller says otherwise (8 MiB).
DEFAULT_MAX_MESSAGE_BYTES: Final = 8 * 1024 * 1024

#: Every reason code a :class:`DecodeError` may carry.
REASONS: Final = (
    "oversized",
    "invalid_json",
    "not_an_object",
    "unknown_type",
    "missing_field",
    "unknown_field",
    "wrong_type",
    "invalid_value",
    "non_finite",
    "unequal_columns",
    "empty_batch",
    "too_many_rows",
    "timestamp_out_of_range",
    "timestamp_in_future",
    "store_rejected",
    # rows that decoded but do not fit their model's monitor (schemas/conformance.py)
    "label_type",
    "feature_type",
)


class DecodeError(ValueError):
    """A message that is not a valid driftline event.

    Parameters
    ----------
    reason : str
        One of :data:`REASONS`.
    message : str
        What is wrong, naming the field.

    Examples
    --------
    >>> try:
    ...     decode(b'{"type": "prediction"')
    ... except DecodeError as error:
    ...     print(error.reason)
    invalid_json
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


@dataclass(frozen=True, slots=True, eq=False)
class PredictionColumns:
    """Predictions of one model version as columns of equal length.

    ``numeric`` holds float64 arrays with NaN for a missing value;
    ``categorical`` holds object arrays with ``None`` for a missing value.
    Exactly one of ``prediction_value`` (numbers) and ``prediction_class``
    (strings) is set.

    Examples
    --------
    >>> columns = decode_ingest(b'{"type": "prediction_batch", "model_id": "m",'
    ...     b' "model_version": "v1", "event_ids": ["e1"], "timestamps": [1767225600],'
    ...     b' "features": {"x": [2.5]}, "predictions": [1]}')
    >>> columns.rows, columns.numeric["x"].tolist(), columns.prediction_value.tolist()
    (1, [2.5], [1.0])
    """

    model_id: str
    model_version: str
    event_ids: np.ndarray
    timestamps: np.ndarray
    numeric: dict[str, np.ndarray]
    categorical: dict[str, np.ndarray]
    prediction_value: np.ndarray | None
    prediction_class: np.ndarray | None
    score: np.ndarray | None = None
    class_scores: tuple[dict[str, float], ...] | None = None
    latency_ms: np.ndarray | None = None
    segment: dict[str, str] = field(default_factory=dict)
    #: Shadow predictions: scored by a version that did not serve the requests.
    shadow: bool = False

    @property
    def rows(self) -> int:
        """Number of predictions."""
        return int(self.event_ids.shape[0])


@dataclass(frozen=True, slots=True, eq=False)
class FeedbackColumns:
    """Labels of one model as columns of equal length.

    Examples
    --------
    >>> columns = decode_ingest(b'{"type": "feedback_batch", "model_id": "m",'
    ...     b' "event_ids": ["a", "b"], "timestamps": [1767225600, 1767225601],'
    ...     b' "labels": ["yes", "no"]}')
    >>> columns.rows, columns.label_class.tolist()
    (2, ['yes', 'no'])
    """

    model_id: str
    event_ids: np.ndarray
    timestamps: np.ndarray
    label_value: np.ndarray | None
    label_class: np.ndarray | None

    @property
    def rows(self) -> int:
        """Number of labels."""
        return int(self.event_ids.shape[0])


# --------------------------------------------------------------------------- bytes


def _reject_constant(name: str) -> Any:
    raise DecodeError("non_finite", f"{name} is not allowed: numbers must be finite")


def _size(data: bytes | str, max_bytes: int) -> int:
    """Length in bytes (UTF-8 for text), encoding text only when it could matter."""
    if isinstance(data, str) and max_bytes < 4 * len(data) and len(data) <= max_bytes:
        return len(data.encode("utf-8", "surrogatepass"))
    return len(data)


def _load(data: bytes | str, max_bytes: int) -> Any:
    size = _size(data, max_bytes)
    if size > max_bytes:
        raise DecodeError("oversized", f"message of {size} bytes exceeds {max_bytes} bytes")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as error:
        if "infinity" in str(error):  # a literal such as 1e999
            raise DecodeError("non_finite", f"number too large, not finite: {error}") from None
        # orjson refuses NaN/Infinity silently as syntax; say so when that is the cause.
        try:
            json.loads(data, parse_constant=_reject_constant)
        except DecodeError:
            raise
        except (ValueError, UnicodeDecodeError, RecursionError):
            pass
        raise DecodeError("invalid_json", f"not valid JSON: {error}") from None


def _object(data: bytes | str, max_bytes: int) -> dict[str, Any]:
    obj = _load(data, max_bytes)
    if not isinstance(obj, dict):
        raise DecodeError("not_an_object", f"an event is a JSON object, got {type(obj).__name__}")
    return obj


# --------------------------------------------------------------------------- pydantic path

#: Error kinds that only say "not this type": a union reports one per member.
_TYPE_KINDS = ("_type", "_parsing", "none_required")


def _is_type_error(kind: str) -> bool:
    return kind.endswith(_TYPE_KINDS)


def _reason_of(error: ValidationError, obj: Any) -> DecodeError:
    errors = error.errors(include_url=False)
    first = errors[0]
    where = _field_path(first, obj)
    if _is_type_error(first["type"]):
        # The members of a union fail at the same place; the member that took the
        # input's type and failed on a constraint says what is really wrong.
        for other in errors[1:]:
            if not _is_type_error(other["type"]) and _field_path(other, obj) == where:
                first = other
                break
    kind = first["type"]
    message = first["msg"].removeprefix("Value error, ")
    at = "" if where == "event" else f"{where}: "  # checks of the whole event name their fields
    if kind == "union_tag_invalid":
        given = first.get("input")
        tag = given.get("type") if isinstance(given, dict) else None
        return DecodeError("unknown_type", f"unknown event type {tag!r}")
    if kind == "union_tag_not_found":
        return DecodeError("missing_field", "missing field 'type'")
    if kind == "missing":
        return DecodeError("missing_field", f"missing field {where!r}")
    if kind == "extra_forbidden":
        return DecodeError("unknown_field", f"unknown field {where!r}")
    if (
        kind == "too_long"
        and isinstance(first.get("input"), list)
        and first.get("ctx", {}).get("max_length") == MAX_BATCH_ROWS
    ):
        return DecodeError("too_many_rows", f"{at}{message}")
    if kind == "finite_number":
        return DecodeError("non_finite", f"{at}NaN and infinite numbers are not allowed")
    if kind in REASONS:  # raised by the models' own checks with a reason code as type
        return DecodeError(kind, f"{at}{message}")
    if _is_type_error(kind):
        return DecodeError("wrong_type", f"{at}{message}")
    return DecodeError("invalid_value", f"{at}{message}")


def _field_path(error: Mapping[str, Any], obj: Any) -> str:
    """``features.income.3``: pydantic's location without its union and key tags.

    The location is walked through the input itself, so a part is kept only
    when it is a key or an index of the input (or the field found missing);
    schema tags such as ``constrained-str`` or ``[key]`` are dropped.
    """
    location = error["loc"][1:]  # the first part is the event type (the union's tag)
    parts: list[str] = []
    node = obj
    for i, part in enumerate(location):
        is_key = isinstance(node, dict) and isinstance(part, str) and part in node
        is_index = (
            isinstance(node, list | tuple) and isinstance(part, int) and 0 <= part < len(node)
        )
        if is_key or is_index:
            node = node[part]
        elif not (i == len(location) - 1 and error["type"] in ("missing", "extra_forbidden")):
            continue
        parts.append(str(part))
    return ".".join(parts) or "event"


def validate(obj: Any) -> Event:
    """Validate a decoded JSON object into its event model, or raise :class:`DecodeError`."""
    if isinstance(obj, dict) and "type" in obj and not isinstance(obj["type"], str):
        raise DecodeError("wrong_type", "field 'type' must be a string")
    try:
        return event_adapter.validate_python(obj)
    except ValidationError as error:
        raise _reason_of(error, obj) from None


def decode(data: bytes | str, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Event:
    """Decode and fully validate one event.

    Examples
    --------
    >>> decode(b'{"type": "feedback", "event_id": "e1", "model_id": "m",'
    ...     b' "timestamp": "2026-01-01T00:00:00Z", "label": 0}').label
    0.0
    """
    return validate(_object(data, max_bytes))


def encode(event: Event) -> bytes:
    """Encode an event as JSON, times as RFC 3339 strings.

    Examples
    --------
    >>> event = decode(b'{"type": "feedback", "event_id": "e1", "model_id": "m",'
    ...     b' "timestamp": 1767225600, "label": 1}')
    >>> decode(encode(event)) == event
    True
    """
    return orjson.dumps(event.model_dump(mode="json"))


# --------------------------------------------------------------------------- fast path
#
# The fast path only decides whether a batch is valid and, if so, builds its
# columns with one C-level pass per column (type sets, numpy conversions).
# When it refuses a batch, the pydantic path validates it again: that gives the
# same error as decode(), and the same columns should the fast path ever refuse
# a batch that the models accept.

_BATCH_REQUIRED = frozenset(
    {"type", "model_id", "model_version", "event_ids", "timestamps", "features", "predictions"}
)
_BATCH_ALLOWED = _BATCH_REQUIRED | {"scores", "latency_ms", "segment", "shadow"}
_NUMBERS = frozenset({int, float, bool})
_PLAIN_NUMBERS = frozenset({int, float})
_STRINGS = frozenset({str})
_NONE = type(None)


class _RefusedError(Exception):
    """The fast path does not take this batch; the pydantic path decides and explains."""


def _identifier(value: Any) -> str:
    if type(value) is not str or not 1 <= len(value) <= MAX_ID_LENGTH:
        raise _RefusedError("identifier")
    return value


def _column(value: Any, rows: int) -> list[Any]:
    if type(value) is not list or len(value) != rows:
        raise _RefusedError("column")
    return value


def _objects(values: list[Any]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _strings(values: list[Any], min_length: int, max_length: int, kinds: set[type]) -> np.ndarray:
    """Strings (``kinds`` is their type set; ``None`` allowed if in it) as an object array."""
    present = filter(None, values) if _NONE in kinds else values
    lengths = np.fromiter(map(len, present), np.intp)
    if len(lengths) and (lengths.min() < min_length or lengths.max() > max_length):
        raise _RefusedError("string length")
    return _objects(values)


def _floats(values: list[Any]) -> np.ndarray:
    """Numbers (``None`` becomes NaN) as float64, refusing infinities."""
    array = np.array(values, dtype=np.float64)
    if np.isinf(array).any():
        raise _RefusedError("not finite")
    return array


def _finite_floats(array: np.ndarray) -> np.ndarray:
    """A number array as float64, refusing infinities."""
    result = array.astype(np.float64, copy=False)
    if np.isinf(result).any():
        raise _RefusedError("not finite")
    return result


def _times(values: list[Any]) -> np.ndarray:
    kinds = set(map(type, values))
    if kinds <= _PLAIN_NUMBERS:
        seconds = np.array(values, dtype=np.float64)
        if not ((seconds >= EARLIEST_EPOCH) & (seconds < LATEST_EPOCH)).all():
            raise _RefusedError("timestamp out of range")
        return seconds
    if bool in kinds:
        raise _RefusedError("boolean timestamp")
    try:  # RFC 3339 strings: parsed one by one, as the models do
        return np.array([_parse_time(value).timestamp() for value in values], dtype=np.float64)
    except ValueError:
        raise _RefusedError("timestamp") from None


def _segment(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if type(value) is not dict or len(value) > 64:
        raise _RefusedError("segment")
    for key, item in value.items():
        if not 1 <= len(key) <= MAX_ID_LENGTH or type(item) is not str:
            raise _RefusedError("segment")
        if len(item) > MAX_VALUE_LENGTH:
            raise _RefusedError("segment")
    return dict(value)


def _prediction_batch(obj: dict[str, Any]) -> PredictionColumns:
    """Columns of a ``prediction_batch`` object, or :class:`_RefusedError`."""
    keys = obj.keys()
    if not (_BATCH_REQUIRED <= keys <= _BATCH_ALLOWED):
        raise _RefusedError("fields")
    model_id = _identifier(obj["model_id"])
    model_version = _identifier(obj["model_version"])
    event_ids = _event_ids(obj["event_ids"])
    rows = len(event_ids)
    timestamps = _times(_column(obj["timestamps"], rows))
    features = obj["features"]
    if type(features) is not dict or len(features) > MAX_FEATURES:
        raise _RefusedError("features")
    numeric: dict[str, np.ndarray] = {}
    categorical: dict[str, np.ndarray] = {}
    for name, column in features.items():
        if not 1 <= len(name) <= MAX_ID_LENGTH:
            raise _RefusedError("feature name")
        values = _column(column, rows)
        # One pass for the common case: numpy infers a number dtype only when every
        # value is an int, float or bool (None, strings and others give another kind).
        inferred = np.array(values)
        if inferred.dtype.kind in "fiub" and inferred.ndim == 1:
            numeric[name] = _finite_floats(inferred)
            continue
        kinds = set(map(type, values))
        if kinds - {_NONE} <= _NUMBERS:
            numeric[name] = _floats(values)
        elif kinds - {_NONE} == _STRINGS:
            categorical[name] = _strings(values, 0, MAX_VALUE_LENGTH, kinds)
        else:
            raise _RefusedError("feature column")
    predictions = _column(obj["predictions"], rows)
    kinds = set(map(type, predictions))
    prediction_value = prediction_class = None
    if kinds <= _NUMBERS:
        prediction_value = _floats(predictions)
    elif kinds == _STRINGS:
        prediction_class = _strings(predictions, 0, MAX_VALUE_LENGTH, kinds)
    else:
        raise _RefusedError("predictions")
    score = latency = None
    if obj.get("scores") is not None:
        values = _column(obj["scores"], rows)
        if not set(map(type, values)) <= _PLAIN_NUMBERS:
            raise _RefusedError("scores")
        score = np.array(values, dtype=np.float64)
        if not ((score >= 0.0) & (score <= 1.0)).all():
            raise _RefusedError("scores")
    if obj.get("latency_ms") is not None:
        values = _column(obj["latency_ms"], rows)
        if not set(map(type, values)) <= _PLAIN_NUMBERS:
            raise _RefusedError("latency_ms")
        latency = _floats(values)
        if (latency < 0.0).any():
            raise _RefusedError("latency_ms")
    shadow = obj.get("shadow", False)
    if type(shadow) is not bool:
        raise _RefusedError("shadow")
    return PredictionColumns(
        model_id=model_id,
        model_version=model_version,
        event_ids=event_ids,
        timestamps=timestamps,
        numeric=numeric,
        categorical=categorical,
        prediction_value=prediction_value,
        prediction_class=prediction_class,
        score=score,
        latency_ms=latency,
        segment=_segment(obj.get("segment")),
        shadow=shadow,
    )


def prediction_batch_columns(obj: dict[str, Any]) -> PredictionColumns:
    """The columns of a parsed ``prediction_batch`` object: the column-wise fast path,
    falling back on the event models for the verdict and the error (:class:`DecodeError`)."""
    try:
        return _prediction_batch(obj)
    except (_RefusedError, ValueError, TypeError, OverflowError):
        return _batch_columns(_validated(obj, PredictionBatchEvent))


def _validated(obj: dict[str, Any], kind: type[_BatchT]) -> _BatchT:
    """The model of a batch the fast path refused: raises the error :func:`decode` raises."""
    event = validate(obj)
    if not isinstance(event, kind):  # pragma: no cover - the type was checked
        raise DecodeError("unknown_type", f"expected a {kind.__name__}, got {event.type}")
    return event


_BatchT = TypeVar("_BatchT", PredictionBatchEvent, FeedbackBatchEvent)
_FEEDBACK_BATCH_FIELDS = frozenset({"type", "model_id", "event_ids", "timestamps", "labels"})


def _event_ids(raw_ids: Any) -> np.ndarray:
    """The ``event_ids`` column of a batch: 1 to MAX_BATCH_ROWS identifiers."""
    if type(raw_ids) is not list or not 1 <= len(raw_ids) <= MAX_BATCH_ROWS:
        raise _RefusedError("event_ids")
    kinds = set(map(type, raw_ids))
    if kinds != _STRINGS:
        raise _RefusedError("event_ids")
    return _strings(raw_ids, 1, MAX_ID_LENGTH, kinds)


def _feedback_batch(obj: dict[str, Any]) -> FeedbackColumns:
    """Columns of a ``feedback_batch`` object, or :class:`_RefusedError`."""
    if obj.keys() != _FEEDBACK_BATCH_FIELDS:
        raise _RefusedError("fields")
    model_id = _identifier(obj["model_id"])
    event_ids = _event_ids(obj["event_ids"])
    rows = len(event_ids)
    timestamps = _times(_column(obj["timestamps"], rows))
    labels = _column(obj["labels"], rows)
    inferred = np.array(labels)
    if inferred.dtype.kind in "fiub" and inferred.ndim == 1:
        return FeedbackColumns(model_id, event_ids, timestamps, _finite_floats(inferred), None)
    kinds = set(map(type, labels))
    if kinds == _STRINGS:
        label_class = _strings(labels, 0, MAX_VALUE_LENGTH, kinds)
        return FeedbackColumns(model_id, event_ids, timestamps, None, label_class)
    raise _RefusedError("labels")


def feedback_batch_columns(obj: dict[str, Any]) -> FeedbackColumns:
    """The fast path for ``feedback_batch``, falling back on the models for the error."""
    try:
        return _feedback_batch(obj)
    except (_RefusedError, ValueError, TypeError, OverflowError):
        return _feedback(_validated(obj, FeedbackBatchEvent))


def _kind_column(values: list[Any]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(numbers, None) or (None, strings) for a validated column of one kind."""
    if any(isinstance(value, str) for value in values):
        return None, _objects(values)
    return np.array(values, dtype=np.float64), None


def _batch_columns(event: PredictionBatchEvent) -> PredictionColumns:
    """Columns of a validated batch model (a row at a time: not the fast path)."""
    numeric: dict[str, np.ndarray] = {}
    categorical: dict[str, np.ndarray] = {}
    for name, column in event.features.items():
        numbers, strings = _kind_column(column)
        if numbers is not None:
            numeric[name] = numbers
        elif strings is not None:
            categorical[name] = strings
    prediction_value, prediction_class = _kind_column(event.predictions)
    return PredictionColumns(
        model_id=event.model_id,
        model_version=event.model_version,
        event_ids=_objects(event.event_ids),
        timestamps=np.array([moment.timestamp() for moment in event.timestamps]),
        numeric=numeric,
        categorical=categorical,
        prediction_value=prediction_value,
        prediction_class=prediction_class,
        score=None if event.scores is None else np.array(event.scores, dtype=np.float64),
        latency_ms=None
        if event.latency_ms is None
        else np.array(event.latency_ms, dtype=np.float64),
        segment=dict(event.segment or {}),
        shadow=event.shadow,
    )


def _feedback(event: FeedbackBatchEvent) -> FeedbackColumns:
    """Columns of a validated feedback batch model (a row at a time: not the fast path)."""
    label_value, label_class = _kind_column(event.labels)  # one kind: the models check it
    return FeedbackColumns(
        model_id=event.model_id,
        event_ids=_objects(event.event_ids),
        timestamps=np.array([moment.timestamp() for moment in event.timestamps], dtype=np.float64),
        label_value=label_value,
        label_class=label_class,
    )


IngestRows = PredictionColumns | PredictionEvent | FeedbackColumns | FeedbackEvent


def decode_ingest(data: bytes | str, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> IngestRows:
    """Decode an ingest message: batches to columns, single events to their model.

    Single events stay pydantic models so that the caller can gather many of
    them without building numpy arrays per event.

    Examples
    --------
    >>> type(decode_ingest(b'{"type": "feedback", "event_id": "e", "model_id": "m",'
    ...     b' "timestamp": 1767225600, "label": 1}')).__name__
    'FeedbackEvent'
    """
    obj = _object(data, max_bytes)
    kind = obj.get("type")
    if kind == "prediction_batch":
        return prediction_batch_columns(obj)
    if kind == "feedback_batch":
        return feedback_batch_columns(obj)
    event = validate(obj)
    if isinstance(event, PredictionEvent | FeedbackEvent):
        return event
    raise DecodeError("unknown_type", f"{kind} events do not belong on an ingest topic")
