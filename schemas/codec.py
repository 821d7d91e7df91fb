"""Wire codec: bytes from Kafka or a JSONL line to typed events or columns.

Two ways in:

* :func:`decode` validates any event fully into its pydantic model.
* :func:`decode_rows` is the ingest fast path. It turns a ``prediction_batch``
  into :class:`PredictionColumns` (numpy arrays, one per column) without
  building a Python object per row, and single events into the same columns
  of length one. It accepts exactly what :func:`decode` accepts.

Every failure is a :class:`DecodeError` whose ``reason`` is a short stable code
(for the DLQ headers and metrics) and whose message names what is wrong.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

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
    "decode_rows",
    "encode",
    "read_jsonl",
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
    >>> columns = decode_rows(b'{"type": "prediction", "event_id": "e1", "model_id": "m",'
    ...     b' "model_version": "v1", "timestamp": 1767225600, "features": {"x": 2.5},'
    ...     b' "prediction": 1}')
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

    @property
    def rows(self) -> int:
        """Number of predictions."""
        return int(self.event_ids.shape[0])


@dataclass(frozen=True, slots=True, eq=False)
class FeedbackColumns:
    """Labels of one model as columns of equal length.

    Examples
    --------
    >>> columns = decode_rows(b'{"type": "feedback_batch", "model_id": "m",'
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


def _load(data: bytes | str, max_bytes: int) -> Any:
    if len(data) > max_bytes:
        raise DecodeError("oversized", f"message of {len(data)} bytes exceeds {max_bytes} bytes")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as error:
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

_VALUE_REASONS = (
    ("NaN and infinite", "non_finite"),
    ("out of range", "timestamp_out_of_range"),
    ("unequal lengths", "unequal_columns"),
    ("empty batch", "empty_batch"),
)


def _reason_of(error: ValidationError) -> DecodeError:
    first = error.errors(include_url=False)[0]
    kind = first["type"]
    where = _field_path(first["loc"])
    message = first["msg"]
    if kind in ("union_tag_invalid",):
        tag = first.get("input", {}).get("type") if isinstance(first.get("input"), dict) else None
        return DecodeError("unknown_type", f"unknown event type {tag!r}")
    if kind == "union_tag_not_found":
        return DecodeError("missing_field", "missing field 'type'")
    if kind == "missing":
        return DecodeError("missing_field", f"missing field {where!r}")
    if kind == "extra_forbidden":
        return DecodeError("unknown_field", f"unknown field {where!r}")
    if kind in ("too_long",) and where.split(".")[-1] in _BATCH_COLUMNS:
        return DecodeError("too_many_rows", f"{where}: {message}")
    if kind == "finite_number":
        return DecodeError("non_finite", f"{where}: NaN and infinite numbers are not allowed")
    if kind == "value_error":
        for fragment, reason in _VALUE_REASONS:
            if fragment in message:
                return DecodeError(reason, f"{where}: {message.removeprefix('Value error, ')}")
        return DecodeError("invalid_value", f"{where}: {message.removeprefix('Value error, ')}")
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return DecodeError("wrong_type", f"{where}: {message}")
    return DecodeError("invalid_value", f"{where}: {message}")


_BATCH_COLUMNS = frozenset(
    {"event_ids", "timestamps", "predictions", "scores", "latency_ms", "labels"}
)


_TAGS = frozenset(
    {
        "prediction",
        "prediction_batch",
        "feedback",
        "feedback_batch",
        "alert",
        "retrain_request",
        "model_version",
    }
)


def _field_path(location: tuple[int | str, ...]) -> str:
    """``features.income.3`` from pydantic's location, without union and validator noise."""
    parts = [str(part) for part in location]
    if parts and parts[0] in _TAGS:
        parts = parts[1:]
    parts = [part for part in parts if "[" not in part]
    return ".".join(parts) or "event"


def validate(obj: Any) -> Event:
    """Validate a decoded JSON object into its event model, or raise :class:`DecodeError`."""
    if isinstance(obj, dict) and "type" in obj and not isinstance(obj["type"], str):
        raise DecodeError("wrong_type", "field 'type' must be a string")
    try:
        return event_adapter.validate_python(obj)
    except ValidationError as error:
        raise _reason_of(error) from None


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

_BATCH_REQUIRED = frozenset(
    {"type", "model_id", "model_version", "event_ids", "timestamps", "features", "predictions"}
)
_BATCH_ALLOWED = _BATCH_REQUIRED | {"scores", "latency_ms", "segment"}
_NUMBER_TYPES = (int, float, bool)


def _identifier(obj: Mapping[str, Any], name: str) -> str:
    value = obj[name]
    if not isinstance(value, str):
        raise DecodeError("wrong_type", f"{name} must be a string")
    if not 1 <= len(value) <= MAX_ID_LENGTH:
        raise DecodeError("invalid_value", f"{name} must have 1 to {MAX_ID_LENGTH} characters")
    return value


def _as_list(value: Any, name: str, rows: int | None) -> list[Any]:
    if not isinstance(value, list):
        raise DecodeError("wrong_type", f"{name} must be a list")
    if len(value) > MAX_BATCH_ROWS:
        raise DecodeError(
            "too_many_rows", f"{name} has {len(value)} rows, at most {MAX_BATCH_ROWS}"
        )
    return value


def _string_array(values: list[Any], name: str, max_length: int, min_length: int) -> np.ndarray:
    array = np.array(values) if values else np.array([], dtype=str)
    if array.ndim != 1 or (array.dtype.kind != "U" and len(values)):
        bad = next((i for i, value in enumerate(values) if not isinstance(value, str)), 0)
        raise DecodeError("wrong_type", f"{name}[{bad}] must be a string")
    if len(values):
        lengths = np.char.str_len(array)
        if lengths.min() < min_length or lengths.max() > max_length:
            bad = int(np.flatnonzero((lengths < min_length) | (lengths > max_length))[0])
            raise DecodeError(
                "invalid_value",
                f"{name}[{bad}] must have {min_length} to {max_length} characters",
            )
    return array.astype(object)


def _number_array(values: list[Any], name: str) -> np.ndarray:
    """Numbers (booleans as 0/1) to float64, or :class:`DecodeError`."""
    array = np.array(values)
    if array.ndim != 1 or array.dtype.kind not in "biuf":
        for i, value in enumerate(values):
            if not isinstance(value, _NUMBER_TYPES):
                raise DecodeError("wrong_type", f"{name}[{i}] must be a number")
        array = np.array([float(value) for value in values])
    result = array.astype(np.float64)
    if not np.isfinite(result).all():
        bad = int(np.flatnonzero(~np.isfinite(result))[0])
        raise DecodeError("non_finite", f"{name}[{bad}]: NaN and infinite numbers are not allowed")
    return result


def _time_array(values: list[Any], name: str) -> np.ndarray:
    array = np.array(values)
    if array.ndim == 1 and array.dtype.kind in "iuf":
        seconds = array.astype(np.float64)
    else:
        seconds = np.empty(len(values), dtype=np.float64)
        for i, value in enumerate(values):
            try:
                seconds[i] = _parse_time(value).timestamp()
            except ValueError as error:
                reason = "timestamp_out_of_range" if "out of range" in str(error) else "wrong_type"
                raise DecodeError(reason, f"{name}[{i}]: {error}") from None
        return seconds
    outside = ~((seconds >= EARLIEST_EPOCH) & (seconds < LATEST_EPOCH))
    if outside.any():
        bad = int(np.flatnonzero(outside)[0])
        raise DecodeError(
            "timestamp_out_of_range",
            f"{name}[{bad}]: timestamp {values[bad]!r} out of range (years 2000 to 2199)",
        )
    return seconds


def _feature_column(values: list[Any], name: str) -> tuple[np.ndarray, bool]:
    """A feature column as (array, is_numeric); nulls become NaN or None."""
    array = np.array(values) if values else np.array([], dtype=np.float64)
    if array.ndim == 1 and array.dtype.kind in "biuf":
        return _number_array(values, name), True
    if array.ndim == 1 and array.dtype.kind == "U":
        return _string_array(values, name, MAX_VALUE_LENGTH, 0), False
    kinds = {type(value) for value in values}
    kinds.discard(type(None))
    if kinds <= {int, float, bool}:
        numbers = np.array(
            [math.nan if value is None else float(value) for value in values], dtype=np.float64
        )
        present = np.array([value is not None for value in values])
        if not np.isfinite(numbers[present]).all():
            raise DecodeError("non_finite", f"{name}: NaN and infinite numbers are not allowed")
        return numbers, True
    if kinds <= {str}:
        too_long = [i for i, v in enumerate(values) if v is not None and len(v) > MAX_VALUE_LENGTH]
        if too_long:
            raise DecodeError(
                "invalid_value", f"{name}[{too_long[0]}] longer than {MAX_VALUE_LENGTH} characters"
            )
        return np.array(values, dtype=object), False
    odd = [
        i for i, v in enumerate(values) if v is not None and not isinstance(v, str | float | int)
    ]
    if odd:
        raise DecodeError("wrong_type", f"{name}[{odd[0]}] must be a number, a string or null")
    raise DecodeError("wrong_type", f"{name} mixes numbers and strings; use one kind per feature")


def _prediction_batch(obj: dict[str, Any]) -> PredictionColumns:
    keys = obj.keys()
    unknown = sorted(keys - _BATCH_ALLOWED)
    if unknown:
        raise DecodeError("unknown_field", f"unknown field {unknown[0]!r}")
    missing = sorted(_BATCH_REQUIRED - keys)
    if missing:
        raise DecodeError("missing_field", f"missing field {missing[0]!r}")
    model_id = _identifier(obj, "model_id")
    model_version = _identifier(obj, "model_version")
    raw_ids = _as_list(obj["event_ids"], "event_ids", None)
    rows = len(raw_ids)
    if rows == 0:
        raise DecodeError("empty_batch", "empty batch: event_ids has no rows")
    columns: dict[str, list[Any]] = {
        "timestamps": _as_list(obj["timestamps"], "timestamps", rows),
        "predictions": _as_list(obj["predictions"], "predictions", rows),
    }
    features = obj["features"]
    if not isinstance(features, dict):
        raise DecodeError("wrong_type", "features must be an object of name to column")
    if len(features) > MAX_FEATURES:
        raise DecodeError(
            "invalid_value", f"features has {len(features)} names, at most {MAX_FEATURES}"
        )
    for name, column in features.items():
        if not 1 <= len(name) <= MAX_ID_LENGTH:
            raise DecodeError("invalid_value", f"feature name {name[:40]!r} has a bad length")
        columns[f"features.{name}"] = _as_list(column, f"features.{name}", rows)
    for optional in ("scores", "latency_ms"):
        if obj.get(optional) is not None:
            columns[optional] = _as_list(obj[optional], optional, rows)
    odd = sorted(name for name, column in columns.items() if len(column) != rows)
    if odd:
        detail = ", ".join(f"{name} has {len(columns[name])}" for name in odd)
        raise DecodeError(
            "unequal_columns",
            f"batch columns have unequal lengths: event_ids has {rows}, {detail}",
        )
    event_ids = _string_array(raw_ids, "event_ids", MAX_ID_LENGTH, 1)
    timestamps = _time_array(columns["timestamps"], "timestamps")
    numeric: dict[str, np.ndarray] = {}
    categorical: dict[str, np.ndarray] = {}
    for name, column in features.items():
        values, is_numeric = _feature_column(column, f"features.{name}")
        (numeric if is_numeric else categorical)[name] = values
    predictions = columns["predictions"]
    prediction_value = prediction_class = None
    sample = np.array(predictions)
    if sample.ndim == 1 and sample.dtype.kind == "U":
        prediction_class = _string_array(predictions, "predictions", MAX_VALUE_LENGTH, 0)
    else:
        prediction_value = _number_array(predictions, "predictions")
    score = latency = None
    if "scores" in columns:
        score = _plain_number_array(columns["scores"], "scores")
        outside = (score < 0) | (score > 1)
        if outside.any():
            bad = int(np.flatnonzero(outside)[0])
            raise DecodeError("invalid_value", f"scores[{bad}] must be between 0 and 1")
    if "latency_ms" in columns:
        latency = _plain_number_array(columns["latency_ms"], "latency_ms")
        if (latency < 0).any():
            bad = int(np.flatnonzero(latency < 0)[0])
            raise DecodeError("invalid_value", f"latency_ms[{bad}] must be at least 0")
    segment = _segment(obj.get("segment"))
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
        segment=segment,
    )


def _plain_number_array(values: list[Any], name: str) -> np.ndarray:
    """Numbers without booleans (scores, latencies) to float64."""
    if any(isinstance(value, bool) for value in values):
        bad = next(i for i, value in enumerate(values) if isinstance(value, bool))
        raise DecodeError("wrong_type", f"{name}[{bad}] must be a number, not a boolean")
    return _number_array(values, name)


def _segment(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > 64:
        raise DecodeError("wrong_type", "segment must be an object of at most 64 strings")
    for key, item in value.items():
        if not isinstance(item, str):
            raise DecodeError("wrong_type", f"segment.{key} must be a string")
        if not 1 <= len(key) <= MAX_ID_LENGTH or len(item) > MAX_VALUE_LENGTH:
            raise DecodeError("invalid_value", f"segment.{key[:40]} has a bad length")
    return value


def _single_prediction(event: PredictionEvent) -> PredictionColumns:
    numeric: dict[str, np.ndarray] = {}
    categorical: dict[str, np.ndarray] = {}
    for name, value in event.features.items():
        if isinstance(value, str):
            categorical[name] = np.array([value], dtype=object)
        else:
            numeric[name] = np.array([math.nan if value is None else value], dtype=np.float64)
    is_class = isinstance(event.prediction, str)
    return PredictionColumns(
        model_id=event.model_id,
        model_version=event.model_version,
        event_ids=np.array([event.event_id], dtype=object),
        timestamps=np.array([event.timestamp.timestamp()], dtype=np.float64),
        numeric=numeric,
        categorical=categorical,
        prediction_value=None if is_class else np.array([event.prediction], dtype=np.float64),
        prediction_class=np.array([event.prediction], dtype=object) if is_class else None,
        score=None if event.score is None else np.array([event.score], dtype=np.float64),
        class_scores=None if event.scores is None else (dict(event.scores),),
        latency_ms=None
        if event.latency_ms is None
        else np.array([event.latency_ms], dtype=np.float64),
        segment=dict(event.segment or {}),
    )


def _feedback(event: FeedbackEvent | FeedbackBatchEvent) -> FeedbackColumns:
    if isinstance(event, FeedbackEvent):
        ids, times, labels = [event.event_id], [event.timestamp], [event.label]
    else:
        ids, times, labels = event.event_ids, event.timestamps, event.labels
    is_class = any(isinstance(label, str) for label in labels)
    if is_class and not all(isinstance(label, str) for label in labels):
        raise DecodeError("wrong_type", "labels mixes numbers and strings; use one kind")
    return FeedbackColumns(
        model_id=event.model_id,
        event_ids=np.array(ids, dtype=object),
        timestamps=np.array([moment.timestamp() for moment in times], dtype=np.float64),
        label_value=None if is_class else np.array(labels, dtype=np.float64),
        label_class=np.array(labels, dtype=object) if is_class else None,
    )


def rows_of(event: Event) -> PredictionColumns | FeedbackColumns:
    """Columns of a validated prediction or feedback event (single or batch)."""
    if isinstance(event, PredictionEvent):
        return _single_prediction(event)
    if isinstance(event, PredictionBatchEvent):
        return _prediction_batch(event.model_dump(mode="json"))
    if isinstance(event, FeedbackEvent | FeedbackBatchEvent):
        return _feedback(event)
    raise DecodeError("unknown_type", f"{event.type} events carry no prediction or feedback rows")


def decode_rows(
    data: bytes | str, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> PredictionColumns | FeedbackColumns:
    """Decode an ingest message into columns; the fast path for ``prediction_batch``.

    Raises
    ------
    DecodeError
        When the message is not a valid prediction or feedback event.
    """
    obj = _object(data, max_bytes)
    if obj.get("type") == "prediction_batch":
        return _prediction_batch(obj)
    return rows_of(validate(obj))


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
        return _prediction_batch(obj)
    event = validate(obj)
    if isinstance(event, PredictionEvent | FeedbackEvent):
        return event
    if isinstance(event, FeedbackBatchEvent):
        return _feedback(event)
    raise DecodeError("unknown_type", f"{kind} events do not belong on an ingest topic")


def read_jsonl(
    path: Path, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> Iterator[tuple[int, Event]]:
    """Yield ``(line_number, event)`` for each non-blank line of a JSONL file.

    Raises
    ------
    DecodeError
        On the first bad line; its message starts with ``path:line``.
    """
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, decode(line, max_bytes)
            except DecodeError as error:
                raise DecodeError(error.reason, f"{path}:{number}: {error.message}") from None
