"""Event contracts: the JSON objects that cross Kafka (DESIGN §3).

Every model is frozen, rejects unknown fields, refuses NaN and infinities,
bounds its strings and its batch sizes, and carries a ``type`` literal so that
:data:`Event` is a union discriminated by ``type``.

Times are accepted as RFC 3339 strings or epoch seconds and stored as
timezone-aware UTC datetimes; anything before 2000-01-01 or after 2200-01-01
is rejected as out of range.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    TypeAdapter,
    model_validator,
)
from pydantic_core import PydanticCustomError

from .vocabulary import AlertKind, Severity

__all__ = [
    "MAX_BATCH_ROWS",
    "MAX_FEATURES",
    "AlertEvent",
    "Event",
    "FeatureValue",
    "FeedbackBatchEvent",
    "FeedbackEvent",
    "ModelVersionEvent",
    "PredictionBatchEvent",
    "PredictionEvent",
    "RetrainRequestEvent",
    "Timestamp",
    "event_adapter",
    "to_epoch_seconds",
]

#: Most rows one batch event may carry.
MAX_BATCH_ROWS = 100_000
#: Most features one prediction may carry.
MAX_FEATURES = 1_000
#: Longest identifier (event id, model id, version, feature name, label).
MAX_ID_LENGTH = 256
#: Longest categorical value or prediction string.
MAX_VALUE_LENGTH = 1_024

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
EARLIEST_EPOCH = EARLIEST.timestamp()
LATEST_EPOCH = LATEST.timestamp()

#: RFC 3339 date-time (ASCII digits only); the offset is optional here so that a
#: missing one gets its own message.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})?"
)


def _out_of_range(value: Any) -> PydanticCustomError:
    # Errors with a reason code of the wire codec as their type (see codec.REASONS).
    return PydanticCustomError(
        "timestamp_out_of_range",
        "timestamp {value} out of range (years 2000 to 2199)",
        {"value": repr(value)},
    )


def _parse_time(value: Any) -> datetime:
    if isinstance(value, bool):
        raise ValueError("timestamp must be an RFC 3339 string or epoch seconds, not a boolean")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise PydanticCustomError("non_finite", "timestamp must be finite")
        if not EARLIEST_EPOCH <= value < LATEST_EPOCH:
            raise _out_of_range(value)
        return datetime.fromtimestamp(value, tz=UTC)
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        if len(value) > 64:
            raise ValueError("timestamp string longer than 64 characters")
        if _RFC3339.fullmatch(value) is None:
            raise ValueError(f"timestamp {value!r} is not RFC 3339")
        try:
            moment = datetime.fromisoformat(value[:-1] + "+00:00" if value[-1] in "Zz" else value)
        except ValueError:
            raise ValueError(f"timestamp {value!r} is not RFC 3339") from None
    else:
        raise ValueError("timestamp must be an RFC 3339 string or epoch seconds")
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no time zone offset (RFC 3339 requires one)")
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 shifted past the calendar
        raise _out_of_range(value) from None
    if not EARLIEST <= moment < LATEST:
        raise _out_of_range(value)
    return moment


def to_epoch_seconds(moment: datetime) -> float:
    """Seconds since the epoch of a timezone-aware datetime.

    >>> to_epoch_seconds(datetime(2026, 1, 1, tzinfo=UTC))
    1767225600.0
    """
    return moment.timestamp()


Timestamp = Annotated[datetime, BeforeValidator(_parse_time)]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH)]
Text = Annotated[str, StringConstraints(max_length=MAX_VALUE_LENGTH)]
#: A finite number (checked natively by pydantic-core); booleans count as 0 and 1. In
#: the unions below a numeric string stays a string: smart unions prefer the exact type.
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Probability = Annotated[float, Field(strict=True, ge=0.0, le=1.0)]
NonNegative = Annotated[float, Field(strict=True, ge=0.0)]
#: A feature value: a number, a string (categorical) or null (missing).
FeatureValue: TypeAlias = FiniteFloat | Text | None
PredictionValue: TypeAlias = FiniteFloat | Text
Label: TypeAlias = FiniteFloat | Text
Segment = Annotated[dict[Identifier, Text], Field(max_length=64)]

_STRICT = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, strict=False)


class _Event(BaseModel):
    model_config = _STRICT


class PredictionEvent(_Event):
    """One prediction of one model.

    Examples
    --------
    >>> event = PredictionEvent(event_id="e1", model_id="credit", model_version="v1",
    ...     timestamp="2026-01-01T00:00:00Z", features={"income": 3.5, "region": "eu"},
    ...     prediction=1, score=0.8)
    >>> event.timestamp.isoformat(), event.features["region"]
    ('2026-01-01T00:00:00+00:00', 'eu')
    """

    type: Literal["prediction"] = "prediction"
    event_id: Identifier
    model_id: Identifier
    model_version: Identifier
    timestamp: Timestamp
    features: Annotated[dict[Identifier, FeatureValue], Field(max_length=MAX_FEATURES)]
    prediction: PredictionValue
    score: Probability | None = None
    scores: Annotated[dict[Identifier, Probability], Field(max_length=MAX_FEATURES)] | None = None
    latency_ms: NonNegative | None = None
    segment: Segment | None = None
    #: Scored by a version that did not serve the request (same ``event_id`` as the
    #: served prediction); kept apart from the served traffic.
    shadow: StrictBool = False


def _one_kind(name: str, column: list[Any]) -> None:
    """Refuse a column that mixes numbers and strings (columns are stored as one kind)."""
    kinds = set(map(type, column))
    if str in kinds and float in kinds:
        message = "{name} mixes numbers and strings; use one kind per column"
        raise PydanticCustomError("wrong_type", message, {"name": name})


def _check_columns(lengths: dict[str, int]) -> int:
    """Return the common length of batch columns or raise naming the odd ones."""
    rows = lengths.get("event_ids", 0)
    if rows == 0:
        raise PydanticCustomError("empty_batch", "empty batch: event_ids has no rows")
    odd = sorted(name for name, length in lengths.items() if length != rows)
    if odd:
        detail = ", ".join(f"{name} has {lengths[name]}" for name in odd)
        raise PydanticCustomError(
            "unequal_columns",
            "batch columns have unequal lengths: event_ids has {rows}, {detail}",
            {"rows": rows, "detail": detail},
        )
    return rows


class PredictionBatchEvent(_Event):
    """Many predictions of one model version, as columns of equal length.

    A feature column holds numbers or strings, never both (nulls are allowed in
    either); so does ``predictions``.

    Examples
    --------
    >>> batch = PredictionBatchEvent(model_id="credit", model_version="v1",
    ...     event_ids=["a", "b"], timestamps=[1767225600, 1767225601],
    ...     features={"income": [1.0, None]}, predictions=[0, 1])
    >>> batch.rows
    2
    """

    type: Literal["prediction_batch"] = "prediction_batch"
    model_id: Identifier
    model_version: Identifier
    event_ids: Annotated[list[Identifier], Field(max_length=MAX_BATCH_ROWS)]
    timestamps: Annotated[list[Timestamp], Field(max_length=MAX_BATCH_ROWS)]
    features: Annotated[
        dict[Identifier, Annotated[list[FeatureValue], Field(max_length=MAX_BATCH_ROWS)]],
        Field(max_length=MAX_FEATURES),
    ]
    predictions: Annotated[list[PredictionValue], Field(max_length=MAX_BATCH_ROWS)]
    scores: Annotated[list[Probability], Field(max_length=MAX_BATCH_ROWS)] | None = None
    latency_ms: Annotated[list[NonNegative], Field(max_length=MAX_BATCH_ROWS)] | None = None
    segment: Segment | None = None
    #: Every row is a shadow prediction (see :class:`PredictionEvent`).
    shadow: StrictBool = False

    @model_validator(mode="after")
    def _equal_columns(self) -> PredictionBatchEvent:
        lengths = {
            "event_ids": len(self.event_ids),
            "timestamps": len(self.timestamps),
            "predictions": len(self.predictions),
        }
        lengths.update({f"features.{name}": len(col) for name, col in self.features.items()})
        if self.scores is not None:
            lengths["scores"] = len(self.scores)
        if self.latency_ms is not None:
            lengths["latency_ms"] = len(self.latency_ms)
        _check_columns(lengths)
        for name, column in self.features.items():
            _one_kind(f"features.{name}", column)
        _one_kind("predictions", self.predictions)
        return self

    @property
    def rows(self) -> int:
        """Number of predictions in the batch."""
        return len(self.event_ids)


class FeedbackEvent(_Event):
    """The ground-truth label of one earlier prediction.

    Examples
    --------
    >>> FeedbackEvent(event_id="e1", model_id="credit", timestamp=1767225600, label=1).label
    1.0
    """

    type: Literal["feedback"] = "feedback"
    event_id: Identifier
    model_id: Identifier
    timestamp: Timestamp
    label: Label


class FeedbackBatchEvent(_Event):
    """Labels of many predictions of one model, as columns of equal length.

    ``labels`` holds numbers or strings, never both.

    Examples
    --------
    >>> FeedbackBatchEvent(model_id="credit", event_ids=["a"], timestamps=[1767225600],
    ...     labels=["yes"]).rows
    1
    """

    type: Literal["feedback_batch"] = "feedback_batch"
    model_id: Identifier
    event_ids: Annotated[list[Identifier], Field(max_length=MAX_BATCH_ROWS)]
    timestamps: Annotated[list[Timestamp], Field(max_length=MAX_BATCH_ROWS)]
    labels: Annotated[list[Label], Field(max_length=MAX_BATCH_ROWS)]

    @model_validator(mode="after")
    def _equal_columns(self) -> FeedbackBatchEvent:
        _check_columns(
            {
                "event_ids": len(self.event_ids),
                "timestamps": len(self.timestamps),
                "labels": len(self.labels),
            }
        )
        _one_kind("labels", self.labels)
        return self

    @property
    def rows(self) -> int:
        """Number of labels in the batch."""
        return len(self.event_ids)


VersionStatus = Literal["candidate", "champion", "rejected", "rolled_back", "shadow", "canary"]


class AlertEvent(_Event):
    """An alert opened by the alert policy for one window.

    Examples
    --------
    >>> alert = AlertEvent(alert_id="a1", model_id="credit", model_version="v1",
    ...     kind="data_drift", feature="income", window_start=1767225600,
    ...     window_end=1767229200, statistic="psi", value=0.4, threshold=0.25,
    ...     p_value=None, severity="critical", opened_at=1767229800)
    >>> alert.severity
    'critical'
    """

    type: Literal["alert"] = "alert"
    alert_id: Identifier
    model_id: Identifier
    model_version: Identifier
    kind: AlertKind
    feature: Identifier | None
    window_start: Timestamp
    window_end: Timestamp
    statistic: Identifier
    value: FiniteFloat
    threshold: FiniteFloat
    p_value: Probability | None
    severity: Severity
    opened_at: Timestamp
    #: The segment slice the alert is about (``{"country": "de"}``); null for the whole
    #: model.
    segment: Segment | None = None


class RetrainRequestEvent(_Event):
    """A request to retrain a model, caused by alerts.

    Examples
    --------
    >>> RetrainRequestEvent(request_id="r1", model_id="credit", model_version="v1",
    ...     reason=["a1"], data_from=1767225600, data_to=1767229200,
    ...     requested_at=1767229800).reason
    ('a1',)
    """

    type: Literal["retrain_request"] = "retrain_request"
    request_id: Identifier
    model_id: Identifier
    model_version: Identifier
    reason: tuple[Identifier, ...]
    data_from: Timestamp
    data_to: Timestamp
    requested_at: Timestamp


class ModelVersionEvent(_Event):
    """A model version registered by the retrainer, or promoted or rolled back.

    Examples
    --------
    >>> ModelVersionEvent(model_id="credit", version="v2", parent_version="v1",
    ...     artifact_uri="file:///models/credit/v2", metrics={"candidate": 0.9},
    ...     status="champion", request_id="r1", data_from=1767225600,
    ...     data_to=1767229200, created_at=1767229800).status
    'champion'
    """

    type: Literal["model_version"] = "model_version"
    model_id: Identifier
    version: Identifier
    parent_version: Identifier | None
    artifact_uri: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    metrics: dict[Identifier, FiniteFloat]
    status: VersionStatus
    request_id: Identifier | None
    data_from: Timestamp | None
    data_to: Timestamp | None
    created_at: Timestamp
    #: A ``canary``'s served share of the model's traffic (``shadow``: 0; else null).
    traffic: Annotated[float, Field(ge=0.0, le=1.0)] | None = None


Event = Annotated[
    PredictionEvent
    | PredictionBatchEvent
    | FeedbackEvent
    | FeedbackBatchEvent
    | AlertEvent
    | RetrainRequestEvent
    | ModelVersionEvent,
    Field(discriminator="type"),
]

#: Validates any event object (a dict from JSON) into its model.
event_adapter: TypeAdapter[Event] = TypeAdapter(Event)
