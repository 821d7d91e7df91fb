"""Event models: round trips through the wire codec, times, bounds and doctests."""

from __future__ import annotations

import doctest
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from driftline.schemas import events
from driftline.schemas.codec import decode, encode
from driftline.schemas.events import (
    EARLIEST_EPOCH,
    LATEST_EPOCH,
    MAX_BATCH_ROWS,
    MAX_FEATURES,
    MAX_ID_LENGTH,
    MAX_VALUE_LENGTH,
    FeedbackBatchEvent,
    FeedbackEvent,
    PredictionBatchEvent,
    PredictionEvent,
    event_adapter,
    to_epoch_seconds,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ----------------------------------------------------------------------------- strategies

#: Identifiers: short unicode ones, and ones exactly at the length limit.
identifiers = st.text(min_size=1, max_size=8) | st.text(
    min_size=MAX_ID_LENGTH, max_size=MAX_ID_LENGTH
)
#: Categorical values and class names: empty, short, and at the limit.
texts = st.text(max_size=8) | st.text(min_size=MAX_VALUE_LENGTH, max_size=MAX_VALUE_LENGTH)
finite = st.floats(allow_nan=False, allow_infinity=False)
numbers = finite | st.integers(-(2**63), 2**64 - 1) | st.booleans()
probabilities = st.floats(min_value=0.0, max_value=1.0) | st.sampled_from([0, 1])
latencies = st.floats(min_value=0.0, allow_infinity=False) | st.integers(0, 10**6)

offsets = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
moments = st.datetimes(
    min_value=datetime(2000, 1, 2), max_value=datetime(2199, 12, 30), timezones=offsets
)


@st.composite
def rfc3339(draw: st.DrawFn) -> str:
    """An RFC 3339 string with an offset (or ``Z``), ``T``/``t``/space, with or without µs."""
    moment = draw(moments)
    text = moment.isoformat(
        sep=draw(st.sampled_from("Tt ")), timespec=draw(st.sampled_from(["seconds", "auto"]))
    )
    if moment.utcoffset() == timedelta(0) and draw(st.booleans()):
        text = text[:-6] + draw(st.sampled_from("Zz"))
    return text


epoch_seconds = st.floats(
    min_value=EARLIEST_EPOCH, max_value=LATEST_EPOCH, exclude_max=True
) | st.integers(int(EARLIEST_EPOCH), int(LATEST_EPOCH) - 1)
#: Anything a producer may send as a time.
times = rfc3339() | epoch_seconds | st.sampled_from([EARLIEST_EPOCH, LATEST_EPOCH - 1e-3])


def small_dicts(values: st.SearchStrategy[Any], max_size: int = 4) -> st.SearchStrategy[Any]:
    return st.dictionaries(identifiers, values, max_size=max_size)


segments = small_dicts(texts) | st.none()


def _optional(draw: st.DrawFn, body: dict[str, Any], name: str, values: Any) -> None:
    """Set an optional field to a value, to null, or leave it out."""
    choice = draw(st.sampled_from(["value", "null", "absent"]))
    if choice == "value":
        body[name] = draw(values)
    elif choice == "null":
        body[name] = None


@st.composite
def prediction_bodies(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "prediction",
        "event_id": draw(identifiers),
        "model_id": draw(identifiers),
        "model_version": draw(identifiers),
        "timestamp": draw(times),
        "features": draw(small_dicts(numbers | texts | st.none(), 6)),
        "prediction": draw(numbers | texts),
    }
    _optional(draw, body, "score", probabilities)
    _optional(draw, body, "scores", small_dicts(probabilities))
    _optional(draw, body, "latency_ms", latencies)
    _optional(draw, body, "segment", segments)
    if draw(st.booleans()):  # optional, never null
        body["shadow"] = draw(st.booleans())
    return body


def kind_column(draw: st.DrawFn, rows: int, nullable: bool) -> list[Any]:
    """A column of one kind: numbers or strings, with nulls when ``nullable``."""
    values = draw(st.sampled_from([numbers, texts]))
    if nullable:
        values = values | st.none()
    return draw(st.lists(values, min_size=rows, max_size=rows))


@st.composite
def prediction_batch_bodies(draw: st.DrawFn, max_rows: int = 6) -> dict[str, Any]:
    rows = draw(st.integers(1, max_rows))

    def column(values: st.SearchStrategy[Any]) -> list[Any]:
        return draw(st.lists(values, min_size=rows, max_size=rows))

    names = draw(st.lists(identifiers, max_size=5, unique=True))
    body: dict[str, Any] = {
        "type": "prediction_batch",
        "model_id": draw(identifiers),
        "model_version": draw(identifiers),
        "event_ids": column(identifiers),
        "timestamps": column(times),
        "features": {name: kind_column(draw, rows, nullable=True) for name in names},
        "predictions": kind_column(draw, rows, nullable=False),
    }
    _optional(draw, body, "scores", st.lists(probabilities, min_size=rows, max_size=rows))
    _optional(draw, body, "latency_ms", st.lists(latencies, min_size=rows, max_size=rows))
    _optional(draw, body, "segment", segments)
    if draw(st.booleans()):  # optional, never null
        body["shadow"] = draw(st.booleans())
    return body


@st.composite
def feedback_bodies(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "type": "feedback",
        "event_id": draw(identifiers),
        "model_id": draw(identifiers),
        "timestamp": draw(times),
        "label": draw(numbers | texts),
    }


@st.composite
def feedback_batch_bodies(draw: st.DrawFn) -> dict[str, Any]:
    rows = draw(st.integers(1, 6))
    return {
        "type": "feedback_batch",
        "model_id": draw(identifiers),
        "event_ids": draw(st.lists(identifiers, min_size=rows, max_size=rows)),
        "timestamps": draw(st.lists(times, min_size=rows, max_size=rows)),
        "labels": kind_column(draw, rows, nullable=False),
    }


@st.composite
def alert_bodies(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "type": "alert",
        "alert_id": draw(identifiers),
        "model_id": draw(identifiers),
        "model_version": draw(identifiers),
        "kind": draw(
            st.sampled_from(
                ["data_drift", "prediction_drift", "performance", "data_quality", "concept_drift"]
            )
        ),
        "feature": draw(identifiers | st.none()),
        "window_start": draw(times),
        "window_end": draw(times),
        "statistic": draw(identifiers),
        "value": draw(numbers),
        "threshold": draw(numbers),
        "p_value": draw(probabilities | st.none()),
        "severity": draw(st.sampled_from(["warning", "critical"])),
        "opened_at": draw(times),
    }


@st.composite
def retrain_request_bodies(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "type": "retrain_request",
        "request_id": draw(identifiers),
        "model_id": draw(identifiers),
        "model_version": draw(identifiers),
        "reason": draw(st.lists(identifiers, max_size=4)),
        "data_from": draw(times),
        "data_to": draw(times),
        "requested_at": draw(times),
    }


@st.composite
def model_version_bodies(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "type": "model_version",
        "model_id": draw(identifiers),
        "version": draw(identifiers),
        "parent_version": draw(identifiers | st.none()),
        "artifact_uri": draw(st.text(min_size=1, max_size=40)),
        "metrics": draw(small_dicts(numbers)),
        "status": draw(st.sampled_from(["candidate", "champion", "rejected", "rolled_back"])),
        "request_id": draw(identifiers | st.none()),
        "data_from": draw(times | st.none()),
        "data_to": draw(times | st.none()),
        "created_at": draw(times),
    }


#: A valid JSON object of every event type.
event_bodies = st.one_of(
    prediction_bodies(),
    prediction_batch_bodies(),
    feedback_bodies(),
    feedback_batch_bodies(),
    alert_bodies(),
    retrain_request_bodies(),
    model_version_bodies(),
)

# ----------------------------------------------------------------------------- round trips


@FAST
@given(event_bodies)
def test_every_event_survives_encode_and_decode(body: dict[str, Any]) -> None:
    event = event_adapter.validate_python(body)
    assert event.type == body["type"]
    assert type(event).model_fields["type"].default == body["type"]
    wire = encode(event)
    again = decode(wire)
    assert again == event
    assert type(again) is type(event)
    assert encode(again) == wire  # the encoding is canonical


@FAST
@given(moments)
def test_rfc3339_with_offset_means_the_same_instant(moment: datetime) -> None:
    event = FeedbackEvent(event_id="e", model_id="m", timestamp=moment.isoformat(), label=1)
    assert event.timestamp == moment
    assert event.timestamp.tzinfo == UTC
    assert to_epoch_seconds(event.timestamp) == pytest.approx(moment.timestamp(), abs=1e-6)


@FAST
@given(epoch_seconds)
def test_epoch_seconds_are_kept_to_the_microsecond(seconds: float) -> None:
    event = FeedbackEvent(event_id="e", model_id="m", timestamp=seconds, label=1)
    assert event.timestamp.tzinfo == UTC
    assert abs(to_epoch_seconds(event.timestamp) - seconds) <= 1e-6


def test_z_and_offsets_and_epoch_agree() -> None:
    expected = datetime(2026, 1, 1, tzinfo=UTC)
    for given_time in (
        "2026-01-01T00:00:00Z",
        "2026-01-01t00:00:00z",
        "2026-01-01 00:00:00+00:00",
        "2026-01-01T05:30:00+05:30",
        "2025-12-31T19:00:00.000000-05:00",
        1767225600,
        1767225600.0,
    ):
        event = FeedbackEvent(event_id="e", model_id="m", timestamp=given_time, label=0)
        assert event.timestamp == expected, given_time


@pytest.mark.parametrize(
    "bad",
    [
        "2026-01-01T00:00:00",  # no offset
        "2026-01-01",
        "20260101T000000Z",  # ISO 8601 basic, not RFC 3339
        "2026-W01-1T00:00:00Z",
        "2026-01-01T00+00:00",
        "2026-01-01T00:00:00+00:00:30",
        "2026-01-01T00:00:00,5Z",
        "٢٠٢٦-01-01T00:00:00Z",  # non-ASCII digits
        "2026-02-30T00:00:00Z",
        "2026-01-01T24:00:00Z",
        "2026-01-01T00:00:00ZZ",
        "",
        "x" * 65,
        True,
        None,
        [1767225600],
    ],
)
def test_bad_times_are_refused(bad: Any) -> None:
    with pytest.raises(ValidationError):
        FeedbackEvent(event_id="e", model_id="m", timestamp=bad, label=0)


@pytest.mark.parametrize(
    "outside",
    [
        EARLIEST_EPOCH - 1e-3,
        LATEST_EPOCH,
        -1,
        0,
        2**64,
        10**400,  # a Python int too large for a float
        "1999-12-31T23:59:59Z",
        "2200-01-01T00:00:00Z",
        "2000-01-01T00:30:00+01:00",  # 1999 in UTC
        "0001-01-01T00:00:00+01:00",  # overflows the calendar when shifted to UTC
        "9999-12-31T23:59:59-01:00",
        datetime(1999, 1, 1, tzinfo=UTC),
    ],
)
def test_times_outside_2000_to_2199_are_out_of_range(outside: Any) -> None:
    with pytest.raises(ValidationError, match="out of range"):
        FeedbackEvent(event_id="e", model_id="m", timestamp=outside, label=0)


def test_time_range_edges() -> None:
    def at(value: Any) -> datetime:
        return FeedbackEvent(event_id="e", model_id="m", timestamp=value, label=0).timestamp

    assert at(EARLIEST_EPOCH) == datetime(2000, 1, 1, tzinfo=UTC)
    assert at("2000-01-01T00:00:00Z") == datetime(2000, 1, 1, tzinfo=UTC)
    assert at("2199-12-31T23:59:59.999999Z").year == 2199
    assert at(LATEST_EPOCH - 0.001).year == 2199
    with pytest.raises(ValidationError, match="no time zone offset"):
        at(datetime(2026, 1, 1))


# ----------------------------------------------------------------------------- bounds


def _prediction(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": "e",
        "model_id": "m",
        "model_version": "v",
        "timestamp": 1767225600,
        "features": {"x": 1.0},
        "prediction": 1,
    }
    body.update(changes)
    return body


def _batch(rows: int = 2, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model_id": "m",
        "model_version": "v",
        "event_ids": [f"e{i}" for i in range(rows)],
        "timestamps": [1767225600] * rows,
        "features": {"x": [1.0] * rows},
        "predictions": [0] * rows,
    }
    body.update(changes)
    return body


@pytest.mark.parametrize(
    ("field", "limit"),
    [
        ("event_id", MAX_ID_LENGTH),
        ("model_id", MAX_ID_LENGTH),
        ("model_version", MAX_ID_LENGTH),
        ("prediction", MAX_VALUE_LENGTH),
    ],
)
def test_string_limits(field: str, limit: int) -> None:
    assert getattr(PredictionEvent(**_prediction(**{field: "é" * limit})), field) == "é" * limit
    with pytest.raises(ValidationError, match="at most"):
        PredictionEvent(**_prediction(**{field: "é" * (limit + 1)}))


def test_identifier_must_not_be_empty_but_values_may() -> None:
    with pytest.raises(ValidationError):
        PredictionEvent(**_prediction(event_id=""))
    with pytest.raises(ValidationError):
        PredictionEvent(**_prediction(features={"": 1.0}))
    assert PredictionEvent(**_prediction(features={"c": ""}, prediction="")).prediction == ""


def test_feature_name_and_value_limits() -> None:
    PredictionEvent(**_prediction(features={"n" * MAX_ID_LENGTH: "v" * MAX_VALUE_LENGTH}))
    with pytest.raises(ValidationError):
        PredictionEvent(**_prediction(features={"n" * (MAX_ID_LENGTH + 1): 1.0}))
    with pytest.raises(ValidationError):
        PredictionEvent(**_prediction(features={"n": "v" * (MAX_VALUE_LENGTH + 1)}))


def test_feature_count_limit() -> None:
    many = {f"f{i}": float(i) for i in range(MAX_FEATURES)}
    assert len(PredictionEvent(**_prediction(features=many)).features) == MAX_FEATURES
    with pytest.raises(ValidationError):
        PredictionEvent(**_prediction(features={**many, "one_more": 0.0}))
    columns = {f"f{i}": [1.0] for i in range(MAX_FEATURES)}
    assert len(PredictionBatchEvent(**_batch(1, features=columns)).features) == MAX_FEATURES
    with pytest.raises(ValidationError):
        PredictionBatchEvent(**_batch(1, features={**columns, "one_more": [0.0]}))


def test_batch_row_limit() -> None:
    rows = MAX_BATCH_ROWS
    batch = PredictionBatchEvent(**_batch(rows, features={}))
    assert batch.rows == rows
    with pytest.raises(ValidationError, match="at most 100000"):
        PredictionBatchEvent(**_batch(rows + 1, features={}))


def test_batch_columns_must_have_equal_lengths() -> None:
    with pytest.raises(ValidationError, match=r"unequal lengths.*features\.x has 1"):
        PredictionBatchEvent(**_batch(2, features={"x": [1.0]}))
    with pytest.raises(ValidationError, match="scores has 3"):
        PredictionBatchEvent(**_batch(2, scores=[0.1, 0.2, 0.3]))
    with pytest.raises(ValidationError, match="labels has 1"):
        FeedbackBatchEvent(
            model_id="m", event_ids=["a", "b"], timestamps=[1767225600] * 2, labels=[1]
        )
    with pytest.raises(ValidationError, match="empty batch"):
        PredictionBatchEvent(**_batch(0))


def test_batch_columns_hold_one_kind() -> None:
    ok = PredictionBatchEvent(**_batch(3, features={"x": [1, None, True], "c": ["a", None, ""]}))
    assert ok.features == {"x": [1.0, None, 1.0], "c": ["a", None, ""]}
    with pytest.raises(ValidationError, match=r"features\.x mixes numbers and strings"):
        PredictionBatchEvent(**_batch(2, features={"x": [1.0, "a"]}))
    with pytest.raises(ValidationError, match="predictions mixes"):
        PredictionBatchEvent(**_batch(2, predictions=[1, "yes"]))
    with pytest.raises(ValidationError, match="labels mixes"):
        FeedbackBatchEvent(
            model_id="m", event_ids=["a", "b"], timestamps=[1767225600] * 2, labels=[True, "no"]
        )


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_numbers_are_refused_everywhere(bad: float) -> None:
    for body in (
        _prediction(features={"x": bad}),
        _prediction(prediction=bad),
        _prediction(score=bad),
        _prediction(latency_ms=bad),
    ):
        with pytest.raises(ValidationError):
            PredictionEvent(**body)
    with pytest.raises(ValidationError):
        FeedbackEvent(event_id="e", model_id="m", timestamp=1767225600, label=bad)


def test_numbers_booleans_and_strings() -> None:
    event = PredictionEvent(**_prediction(features={"b": True, "s": "1", "n": None}))
    assert event.features == {"b": 1.0, "s": "1", "n": None}  # "1" stays a category
    with pytest.raises(ValidationError):
        PredictionEvent(**_prediction(score=True))  # a probability is no boolean
    with pytest.raises(ValidationError):
        PredictionEvent(**_prediction(latency_ms=-0.5))
    with pytest.raises(ValidationError):
        PredictionEvent(**_prediction(score=1.5))
    with pytest.raises(ValidationError):
        PredictionEvent(**_prediction(scores={"a": -0.1}))


@pytest.mark.parametrize(
    ("model", "body"), [(PredictionEvent, _prediction), (PredictionBatchEvent, _batch)]
)
def test_shadow_is_an_optional_strict_boolean(model: Any, body: Any) -> None:
    assert model(**body()).shadow is False  # served traffic unless said otherwise
    assert model(**body(shadow=True)).shadow is True
    assert model(**body(shadow=False)).shadow is False
    kind = model.model_fields["type"].default
    assert event_adapter.validate_python({"type": kind, **body(shadow=True)}).shadow is True
    for bad in ("yes", "true", 1, 0, 1.0, None, [True]):
        with pytest.raises(ValidationError) as caught:
            model(**body(shadow=bad))
        assert [error["loc"] for error in caught.value.errors()] == [("shadow",)], bad


def test_models_are_frozen_and_closed() -> None:
    event = PredictionEvent(**_prediction())
    with pytest.raises(ValidationError):
        event.model_id = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="Extra inputs"):
        PredictionEvent(**_prediction(surprise=1))


def test_doctests_of_events_pass() -> None:
    result = doctest.testmod(events, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
