"""Wire codec: fuzzing, fast paths against the models, reason codes, JSONL and doctests."""

from __future__ import annotations

import copy
import doctest
import math
from pathlib import Path
from typing import Any

import hypothesis
import numpy as np
import orjson
import pytest
from driftline.schemas import codec
from driftline.schemas.codec import (
    DEFAULT_MAX_MESSAGE_BYTES,
    REASONS,
    DecodeError,
    FeedbackColumns,
    PredictionColumns,
    decode,
    decode_ingest,
    encode,
    validate,
)
from driftline.schemas.events import (
    EARLIEST_EPOCH,
    LATEST_EPOCH,
    MAX_BATCH_ROWS,
    MAX_FEATURES,
    MAX_ID_LENGTH,
    MAX_VALUE_LENGTH,
    AlertEvent,
    FeedbackBatchEvent,
    FeedbackEvent,
    PredictionBatchEvent,
    PredictionEvent,
)
from driftline.schemas.jsonl import JsonlDecoder, LineError
from driftline.schemas.singles import (
    FeedbackRun,
    PredictionRun,
    feedback_run,
    feedback_view,
    prediction_run,
    prediction_view,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from test_events import (
    event_bodies,
    feedback_batch_bodies,
    feedback_bodies,
    prediction_batch_bodies,
    prediction_bodies,
)

from driftline.store.rows import FeedbackRows, KafkaPosition, PredictionRows

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
T0 = 1767225600  # 2026-01-01T00:00:00Z

# ----------------------------------------------------------------------------- helpers


def outcome(function: Any, data: bytes | str) -> Any:
    """The result, or the ``DecodeError``; any other exception fails the test."""
    try:
        return function(data)
    except DecodeError as error:
        assert error.reason in REASONS, error.reason
        assert error.message and str(error) == f"{error.reason}: {error.message}"
        return error


def reject(function: Any, data: bytes | str, reason: str, *names: str) -> DecodeError:
    with pytest.raises(DecodeError) as caught:
        function(data)
    error = caught.value
    assert error.reason == reason, str(error)
    for name in names:
        assert name in error.message, (name, str(error))
    return error


def batch(rows: int = 2, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "prediction_batch",
        "model_id": "m",
        "model_version": "v1",
        "event_ids": [f"e{i}" for i in range(rows)],
        "timestamps": [T0 + i for i in range(rows)],
        "features": {"x": [float(i) for i in range(rows)], "c": ["eu"] * rows},
        "predictions": [i % 2 for i in range(rows)],
    }
    body.update(changes)
    return body


def prediction(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "prediction",
        "event_id": "e1",
        "model_id": "m",
        "model_version": "v1",
        "timestamp": T0,
        "features": {"x": 1.5, "c": "eu"},
        "prediction": 1,
    }
    body.update(changes)
    return body


def wire(body: Any) -> bytes:
    return orjson.dumps(body)


def _same_value(fast: Any, model: Any) -> bool:
    """The same string, null, or number (``1`` as given is the models' ``1.0``)."""
    if isinstance(fast, str) or fast is None:
        return bool(fast == model)
    return model is not None and not isinstance(model, str) and float(fast) == float(model)


def decode_line(data: bytes | str, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Any:
    """What :class:`JsonlDecoder` gives for a file of one line: its one item, or ``None``
    for a blank line; raises :class:`LineError` (a ``DecodeError``) for a bad one."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    items = list(JsonlDecoder(max_bytes).decode([raw]))
    assert len(items) == (1 if raw.strip() else 0)
    return items[0] if items else None


def expected_columns(event: PredictionBatchEvent) -> dict[str, Any]:
    """What the columns of a valid batch must hold, read from the model."""
    numeric, categorical = {}, {}
    for name, column in event.features.items():
        if any(isinstance(value, str) for value in column):
            categorical[name] = list(column)
        else:
            numeric[name] = [math.nan if value is None else value for value in column]
    is_class = any(isinstance(value, str) for value in event.predictions)
    return {
        "model_id": event.model_id,
        "model_version": event.model_version,
        "event_ids": list(event.event_ids),
        "timestamps": [moment.timestamp() for moment in event.timestamps],
        "numeric": numeric,
        "categorical": categorical,
        "prediction_value": None if is_class else list(event.predictions),
        "prediction_class": list(event.predictions) if is_class else None,
        "score": None if event.scores is None else list(event.scores),
        "latency_ms": None if event.latency_ms is None else list(event.latency_ms),
        "segment": dict(event.segment or {}),
        "shadow": event.shadow,
    }


def assert_columns_match(columns: PredictionColumns, event: PredictionBatchEvent) -> None:
    want = expected_columns(event)
    assert columns.rows == event.rows
    assert columns.model_id == want["model_id"]
    assert columns.model_version == want["model_version"]
    assert columns.event_ids.dtype == object
    assert columns.event_ids.tolist() == want["event_ids"]
    assert columns.timestamps.dtype == np.float64
    # Epoch seconds keep their precision in the columns; the models round to 1 µs.
    np.testing.assert_allclose(columns.timestamps, want["timestamps"], rtol=0, atol=1e-6)
    assert set(columns.numeric) == set(want["numeric"])
    for name, values in want["numeric"].items():
        assert columns.numeric[name].dtype == np.float64
        np.testing.assert_array_equal(columns.numeric[name], np.array(values, dtype=np.float64))
    assert set(columns.categorical) == set(want["categorical"])
    for name, values in want["categorical"].items():
        assert columns.categorical[name].dtype == object
        assert columns.categorical[name].tolist() == values
    for field in ("prediction_value", "score", "latency_ms"):
        got = getattr(columns, field)
        if want[field] is None:
            assert got is None, field
        else:
            assert got.dtype == np.float64
            np.testing.assert_array_equal(got, np.array(want[field], dtype=np.float64))
    if want["prediction_class"] is None:
        assert columns.prediction_class is None
    else:
        assert columns.prediction_class.dtype == object
        assert columns.prediction_class.tolist() == want["prediction_class"]
    assert columns.class_scores is None
    assert columns.segment == want["segment"]
    assert columns.shadow is want["shadow"]


# ----------------------------------------------------------------------------- fuzzing

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
    | st.sampled_from(["prediction", "prediction_batch", "feedback", "2026-01-01T00:00:00Z"])
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)
TYPES = [
    "prediction",
    "prediction_batch",
    "feedback",
    "feedback_batch",
    "alert",
    "retrain_request",
    "model_version",
]


@st.composite
def near_events(draw: st.DrawFn, bodies: st.SearchStrategy[Any] = event_bodies) -> dict[str, Any]:
    """A valid event with one field replaced, removed or added, at any depth."""
    body = copy.deepcopy(draw(bodies))
    target: Any = body
    path = draw(st.lists(st.integers(0, 10), max_size=3))
    for step in path:  # walk into nested objects and lists
        if isinstance(target, dict) and target:
            key = list(target)[step % len(target)]
            if isinstance(target[key], dict | list) and target[key]:
                target = target[key]
        elif isinstance(target, list) and target:
            item = target[step % len(target)]
            if isinstance(item, dict | list) and item:
                target = item
    action = draw(st.sampled_from(["replace", "remove", "add"]))
    if isinstance(target, dict):
        keys = list(target)
        if action == "add" or not keys:
            target[draw(st.text(max_size=12))] = draw(json_values)
        else:
            key = draw(st.sampled_from(keys))
            if action == "remove":
                del target[key]
            else:
                target[key] = draw(json_values)
    elif isinstance(target, list) and target:
        index = draw(st.integers(0, len(target) - 1))
        if action == "remove":
            del target[index]
        elif action == "add":
            target.append(draw(json_values))
        else:
            target[index] = draw(json_values)
    return body


def assert_never_crashes(data: bytes | str) -> None:
    for function in (decode, decode_line, decode_ingest):
        result = outcome(function, data)
        expected = DecodeError | PredictionColumns | FeedbackColumns
        if function is decode:
            assert isinstance(result, DecodeError) or result.type in TYPES
        elif function is decode_ingest:  # single events stay models on the ingest path
            assert isinstance(result, expected | PredictionEvent | FeedbackEvent)
        else:  # single events come as runs of columns; a blank line gives nothing
            assert result is None or isinstance(result, expected | PredictionRun | FeedbackRun)


@FAST
@given(st.binary(max_size=200) | st.text(max_size=200))
@example(b"")
@example(b"\xff\xfe{}")
@example(b"[" * 5000)
@example(b'{"a": NaN}')
@example(b'{"a": 1e999}')
@example(b'"\\ud800"')
@example(b"123456789012345678901234567890")
def test_arbitrary_bytes_never_crash(data: bytes | str) -> None:
    assert_never_crashes(data)


@FAST
@given(json_values)
def test_arbitrary_json_never_crashes(value: Any) -> None:
    assert_never_crashes(wire(value))


@FAST
@given(st.sampled_from(TYPES), st.dictionaries(st.text(max_size=14), json_values, max_size=12))
def test_arbitrary_objects_of_each_type_never_crash(kind: str, body: dict[str, Any]) -> None:
    assert_never_crashes(wire({**body, "type": kind}))


@FAST
@given(near_events())
def test_almost_valid_events_never_crash(body: dict[str, Any]) -> None:
    assert_never_crashes(wire(body))


# ----------------------------------------------------------------------------- fast path ≡ models

SENTINEL = 123456.789


def _number_paths(body: dict[str, Any]) -> list[tuple[Any, Any]]:
    """(container, key) of every number in a batch's numeric columns."""
    places: list[tuple[Any, Any]] = []
    columns = [body.get(name) for name in ("timestamps", "predictions", "scores", "latency_ms")]
    features = body.get("features")
    if isinstance(features, dict):
        columns += list(features.values())
    for column in columns:
        if isinstance(column, list):
            places += [
                (column, i)
                for i, value in enumerate(column)
                if isinstance(value, int | float) and not isinstance(value, bool)
            ]
    return places


COLUMNS = ["event_ids", "timestamps", "predictions", "scores", "latency_ms"]


@st.composite
def mutated_batches(draw: st.DrawFn) -> bytes:
    """A valid batch, or one broken in one of the ways producers break them."""
    body = copy.deepcopy(draw(prediction_batch_bodies()))
    rows = len(body["event_ids"])
    names = list(body["features"])
    kind = draw(
        st.sampled_from(
            [
                "valid",
                "wrong_type",
                "null",
                "bool",
                "mixed",
                "time",
                "unequal",
                "empty",
                "extra",
                "missing",
                "score",
                "latency",
                "too_long",
                "nan",
                "segment",
                "features",
                "shadow",
            ]
        )
    )
    some_column = st.sampled_from([*COLUMNS, *(f"features.{name}" for name in names)])

    def column_of(name: str) -> Any:
        if name.startswith("features."):
            return body["features"][name.removeprefix("features.")]
        if body.get(name) is None:
            body[name] = [0.5] * rows
        return body[name]

    def set_item(name: str, value: Any) -> None:
        column = column_of(name)
        column[draw(st.integers(0, len(column) - 1))] = value

    if kind == "wrong_type":
        field = draw(st.sampled_from([k for k in body if k != "type"] + ["features.*"]))
        if field == "features.*" and names:
            body["features"][draw(st.sampled_from(names))] = draw(json_values)
        else:
            body[field.removesuffix(".*")] = draw(json_values)
    elif kind == "null":
        set_item(draw(some_column), None)
    elif kind == "bool":
        set_item(draw(some_column), draw(st.booleans()))
    elif kind == "mixed":
        set_item(draw(some_column), draw(st.sampled_from([1, 2.5, "a", "1", "", [1], {}])))
    elif kind == "time":
        set_item(
            "timestamps",
            draw(
                st.sampled_from(
                    [
                        EARLIEST_EPOCH - 1,
                        LATEST_EPOCH,
                        -1,
                        0,
                        2**63,
                        "1999-12-31T23:59:59Z",
                        "2200-01-01T00:00:00+00:00",
                        "2026-01-01T00:00:00",
                        "2026-13-01T00:00:00Z",
                        "0001-01-01T00:00:00+01:00",
                        "now",
                        "",
                    ]
                )
            ),
        )
    elif kind == "unequal":
        column = column_of(draw(some_column))
        if draw(st.booleans()) and column:
            column.pop()
        else:
            column.append(column[0] if column else 0.5)
    elif kind == "empty":
        for name in ("event_ids", "timestamps", "predictions", "scores", "latency_ms"):
            if isinstance(body.get(name), list):
                body[name] = []
        body["features"] = {name: [] for name in names}
    elif kind == "extra":
        body[draw(st.sampled_from(["extra", "score", "label", "timestamp", "Type"]))] = 1
    elif kind == "missing":
        del body[draw(st.sampled_from(list(body)))]
    elif kind == "score":
        set_item("scores", draw(st.sampled_from([-0.001, 1.0001, 2, -1, True, "0.5"])))
    elif kind == "latency":
        set_item("latency_ms", draw(st.sampled_from([-0.001, -1, False, "1"])))
    elif kind == "too_long":
        where = draw(st.sampled_from(["id", "value", "prediction", "name", "model", "segment"]))
        if where == "id":
            body["event_ids"][0] = "i" * (MAX_ID_LENGTH + 1)
        elif where == "value":
            body["features"]["long"] = ["v" * (MAX_VALUE_LENGTH + 1)] + [None] * (rows - 1)
        elif where == "prediction":
            body["predictions"] = ["p" * (MAX_VALUE_LENGTH + 1)] * rows
        elif where == "name":
            body["features"]["n" * (MAX_ID_LENGTH + 1)] = [1.0] * rows
        elif where == "model":
            body[draw(st.sampled_from(["model_id", "model_version"]))] = draw(
                st.sampled_from(["", "m" * (MAX_ID_LENGTH + 1)])
            )
        else:
            body["segment"] = {"k": "s" * (MAX_VALUE_LENGTH + 1)}
    elif kind == "segment":
        body["segment"] = draw(
            st.sampled_from(
                [{"": "a"}, {"a": 1}, {"a": None}, ["a"], "eu", {str(i): "v" for i in range(65)}]
            )
        )
    elif kind == "shadow":
        body["shadow"] = draw(st.sampled_from([True, False, 1, 0, 1.0, None, "true", "", [True]]))
    elif kind == "features":
        body["features"] = draw(
            st.sampled_from([[], None, {f"f{i}": [1.0] * rows for i in range(MAX_FEATURES + 1)}])
        )
    data = wire(body)
    if kind == "nan":
        places = _number_paths(body)
        if places:
            container, key = draw(st.sampled_from(places))
            container[key] = SENTINEL
            literal = draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999"]))
            data = wire(body).replace(b"123456.789", literal, 1)
    return data


def check_agreement(data: bytes) -> None:
    reference = outcome(decode, data)
    fast = outcome(decode_line, data)
    ingest = outcome(decode_ingest, data)
    if currently_in_test_context():  # the share of each outcome, for --hypothesis-show-statistics
        hypothesis.event(reference.reason if isinstance(reference, DecodeError) else "valid")
    if isinstance(reference, DecodeError):
        assert isinstance(fast, DecodeError), f"fast path took what decode refused: {reference}"
        assert (fast.reason, fast.message) == (reference.reason, reference.message)
        assert isinstance(ingest, DecodeError)
        assert (ingest.reason, ingest.message) == (reference.reason, reference.message)
        return
    assert not isinstance(fast, DecodeError), f"fast path refused a valid batch: {fast}"
    assert isinstance(reference, PredictionBatchEvent)
    assert_columns_match(fast, reference)
    assert_columns_match(ingest, reference)
    # The fast path proper accepts it: the safety net (a second pass through the
    # models) was not needed.
    obj = orjson.loads(data)
    assert_columns_match(codec._prediction_batch(obj), reference)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_batches())
def test_fast_path_agrees_with_the_models(data: bytes) -> None:
    check_agreement(data)


@FAST
@given(near_events(prediction_batch_bodies()))
def test_fast_path_agrees_on_arbitrary_damage(body: dict[str, Any]) -> None:
    check_agreement(wire(body))


@pytest.mark.parametrize(
    "body",
    [
        batch(features={"x": [None, None]}),  # all null: numeric, all NaN
        batch(features={"c": ["a", None]}),
        batch(features={"b": [True, False], "i": [2**64 - 1, -(2**63)]}),
        batch(features={}),
        batch(event_ids=["a\x00", "b\x00\x00"]),  # trailing NULs are kept
        batch(event_ids=["é" * MAX_ID_LENGTH, "😀"]),
        batch(predictions=["yes", ""]),
        batch(predictions=[True, 0.25]),
        batch(scores=[0, 1], latency_ms=[0, -0.0]),
        batch(scores=None, latency_ms=None, segment=None),
        batch(segment={"region": "eu", "s" * MAX_ID_LENGTH: "v" * MAX_VALUE_LENGTH}),
        batch(timestamps=["2026-01-01T05:30:00+05:30", T0 + 0.5]),
        batch(timestamps=[EARLIEST_EPOCH, LATEST_EPOCH - 1e-3]),
        batch(timestamps=[T0 + 1e-7, T0 + 0.9999996]),  # finer than a microsecond
        batch(3, features={"c": ["a" * MAX_VALUE_LENGTH, None, "b"]}),
    ],
)
def test_fast_path_edge_batches(body: dict[str, Any]) -> None:
    data = wire(body)
    check_agreement(data)
    assert isinstance(decode_ingest(data), PredictionColumns)
    assert isinstance(decode_line(data), PredictionColumns)


def test_fast_path_at_the_row_limit() -> None:
    rows = MAX_BATCH_ROWS
    body = batch(rows, features={"x": [0.5] * rows}, predictions=[1] * rows)
    columns = decode_ingest(wire(body))
    assert isinstance(columns, PredictionColumns) and columns.rows == rows
    body = batch(rows + 1, features={}, predictions=[1] * (rows + 1))
    reject(decode_ingest, wire(body), "too_many_rows", "event_ids")


def test_mixed_columns_are_refused_by_both_paths() -> None:
    # numpy would read [1, "a"] as the strings ["1", "a"]: the columns must not
    # silently change kind.
    for body in (batch(features={"x": [1, "a"]}), batch(predictions=[1, "a"])):
        for function in (decode, decode_line, decode_ingest):
            reject(function, wire(body), "wrong_type", "mixes numbers and strings")
    reject(decode_ingest, wire(batch(event_ids=[1, "a"])), "wrong_type", "event_ids.0")


def test_single_events_and_feedback_give_the_models_values() -> None:
    # segment is left to the models: the run holds the model's view of the event
    data = wire(prediction(score=0.5, latency_ms=3, segment={"r": "eu"}))
    event = decode(data)
    run = decode_line(data)
    assert isinstance(event, PredictionEvent) and isinstance(run, PredictionRun)
    assert run.rows == 1
    assert run.features == {"c": ["eu"], "x": [1.5]}
    assert run.predictions == [1.0] and run.timestamps == [float(T0)]
    assert run.scores == [0.5] and run.latency_ms == [3.0]
    assert run.segments == [{"r": "eu"}] and run.class_scores is None
    # the column-wise checks take this one: the values as given
    run = decode_line(wire(prediction(score=0.5, latency_ms=3)))
    assert isinstance(run, PredictionRun)
    assert (run.event_ids, run.model_ids, run.model_versions) == (["e1"], ["m"], ["v1"])
    assert run.predictions == [1] and run.timestamps == [T0] and run.latency_ms == [3]
    assert run.segments is None and run.class_scores is None
    run = decode_line(wire(prediction(scores={"yes": 0.25})))
    assert isinstance(run, PredictionRun)
    assert run.scores == [None] and run.class_scores == [{"yes": 0.25}]
    assert decode_ingest(wire(prediction())) == decode(wire(prediction()))
    body = {
        "type": "feedback_batch",
        "model_id": "m",
        "event_ids": ["a", "b"],
        "timestamps": ["2026-01-01T00:00:00Z", T0 + 1],
        "labels": [1, True],
    }
    labels = decode_ingest(wire(body))
    assert isinstance(labels, FeedbackColumns)
    assert labels.label_value.tolist() == [1.0, 1.0] and labels.label_class is None
    assert labels.timestamps.tolist() == [T0, T0 + 1.0]
    reject(decode_ingest, wire({**body, "labels": [1, "a"]}), "wrong_type", "labels mixes")
    reject(decode_line, wire({**body, "labels": [1, "a"]}), "wrong_type", "labels mixes")


@FAST
@given(prediction_bodies() | feedback_bodies() | feedback_batch_bodies())
def test_other_ingest_events_agree_with_the_models(body: dict[str, Any]) -> None:
    data = wire(body)
    event = decode(data)
    columns = decode_line(data)
    ingest = decode_ingest(data)
    assert columns.rows == getattr(event, "rows", 1)
    if isinstance(event, PredictionEvent | FeedbackEvent):
        assert ingest == event
    else:
        assert isinstance(ingest, FeedbackColumns)
        assert ingest.event_ids.tolist() == list(event.event_ids)
    if isinstance(event, FeedbackBatchEvent):
        assert isinstance(columns, FeedbackColumns)
        got = columns.label_value if columns.label_class is None else columns.label_class
        assert got.tolist() == list(event.labels)
    elif isinstance(event, FeedbackEvent):
        assert isinstance(columns, FeedbackRun)
        assert columns.event_ids == [event.event_id]
        assert _same_value(columns.labels[0], event.label)
    else:
        assert isinstance(columns, PredictionRun)
        assert columns.event_ids == [event.event_id]
        assert _same_value(columns.predictions[0], event.prediction)


@FAST
@given(
    event_bodies.filter(lambda body: body["type"] in ("alert", "retrain_request", "model_version"))
)
def test_non_ingest_events_are_unknown_to_the_ingest_decoders(body: dict[str, Any]) -> None:
    # Intended difference: decode() takes every event type; the ingest decoders
    # take prediction and feedback events only.
    data = wire(body)
    decode(data)
    reject(decode_line, data, "unknown_type", body["type"])
    reject(decode_ingest, data, "unknown_type", body["type"])


@FAST
@given(prediction_batch_bodies(max_rows=20))
def test_columns_feed_the_store_rows(body: dict[str, Any]) -> None:
    data = wire(body)
    event = decode(data)
    assert isinstance(event, PredictionBatchEvent)
    rows = PredictionRows()
    rows.add(decode_ingest(data), KafkaPosition("t", 0, 1))  # type: ignore[arg-type]
    served, shadow = rows.build(), rows.build_shadow()
    # A shadow batch goes to ``shadow_predictions`` whole, a served one to ``predictions``.
    table = shadow if event.shadow else served
    assert table is not None and table.num_rows == event.rows
    assert (served.num_rows, shadow) == (0, table) if event.shadow else shadow is None
    assert table.column("event_id").to_pylist() == list(event.event_ids)
    nulls = table.column("features_null").to_pylist()
    for index in range(event.rows):
        missing = {name for name, column in event.features.items() if column[index] is None}
        assert set(nulls[index]) == missing


def test_single_shadow_predictions_are_built_apart_from_the_served_ones() -> None:
    rows = PredictionRows()
    for offset, (event_id, version, shadow) in enumerate(
        [("a", "v1", False), ("a", "v2", True), ("b", "v1", False), ("b", "v2", True)]
    ):
        event = {
            "type": "prediction",
            "event_id": event_id,
            "model_id": "m",
            "model_version": version,
            "timestamp": T0,
            "features": {"x": 1.0},
            "prediction": 1,
            "shadow": shadow,
        }
        rows.add(decode_ingest(wire(event)), KafkaPosition("t", 0, offset))  # type: ignore[arg-type]
    served, shadow_rows = rows.build(), rows.build_shadow()
    assert shadow_rows is not None
    assert served.column("model_version").to_pylist() == ["v1", "v1"]
    assert shadow_rows.column("model_version").to_pylist() == ["v2", "v2"]
    assert shadow_rows.column("event_id").to_pylist() == ["a", "b"]
    assert shadow_rows.column("kafka_offset").to_pylist() == [1, 3]
    assert served.schema == shadow_rows.schema


def test_feedback_columns_feed_the_store_rows() -> None:
    data = wire(
        {
            "type": "feedback_batch",
            "model_id": "m",
            "event_ids": ["a", "b"],
            "timestamps": [T0, T0 + 1],
            "labels": ["yes", "no"],
        }
    )
    rows = FeedbackRows()
    rows.add(decode_ingest(data), KafkaPosition("t", 0, 1))  # type: ignore[arg-type]
    assert rows.build().column("label_class").to_pylist() == ["yes", "no"]


# ----------------------------------------------------------------------------- reason codes

BATCH_ONLY = (decode, decode_line, decode_ingest)


@pytest.mark.parametrize(
    ("data", "reason", "names"),
    [
        pytest.param(b'{"type": "prediction"', "invalid_json", ["JSON"], id="invalid-json"),
        pytest.param(b"\xff\xfe", "invalid_json", ["JSON"], id="not-utf8"),
        pytest.param(b"", "invalid_json", ["JSON"], id="empty"),
        pytest.param(b"[1, 2]", "not_an_object", ["list"], id="not-an-object"),
        pytest.param(b'"prediction"', "not_an_object", ["str"], id="string"),
        pytest.param(wire(prediction(model_id=7)), "wrong_type", ["model_id"], id="wrong-type"),
        pytest.param(wire(prediction(features=[1])), "wrong_type", ["features"], id="features"),
        pytest.param(
            wire(prediction(features={"x": [1]})), "wrong_type", ["features.x"], id="feat-list"
        ),
        pytest.param(wire({**prediction(), "type": 3}), "wrong_type", ["type"], id="type-int"),
        pytest.param(
            wire({k: v for k, v in prediction().items() if k != "timestamp"}),
            "missing_field",
            ["timestamp"],
            id="missing",
        ),
        pytest.param(
            wire({k: v for k, v in prediction().items() if k != "type"}),
            "missing_field",
            ["type"],
            id="missing-type",
        ),
        pytest.param(
            b'{"type": "feedback", "event_id": "e", "model_id": "m", "timestamp": 1767225600,'
            b' "label": NaN}',
            "non_finite",
            ["NaN"],
            id="nan",
        ),
        pytest.param(
            wire(prediction(score=0.5)).replace(b"0.5", b"Infinity"),
            "non_finite",
            ["Infinity"],
            id="infinity",
        ),
        pytest.param(
            wire(prediction(score=0.5)).replace(b"0.5", b"-1e999"),
            "non_finite",
            ["infinity"],
            id="overflowing-number",
        ),
        pytest.param(
            wire({**prediction(), "type": "predictoin"}),
            "unknown_type",
            ["predictoin"],
            id="unknown-type",
        ),
        pytest.param(wire(prediction(extra=1)), "unknown_field", ["extra"], id="extra-field"),
        pytest.param(
            wire(prediction(timestamp=EARLIEST_EPOCH - 1)),
            "timestamp_out_of_range",
            ["timestamp", "out of range"],
            id="time-range",
        ),
        pytest.param(
            wire(prediction(timestamp="2200-01-01T00:00:00Z")),
            "timestamp_out_of_range",
            ["timestamp"],
            id="time-range-string",
        ),
        pytest.param(
            wire(prediction(timestamp="2026-01-01T00:00:00")),
            "invalid_value",
            ["timestamp", "offset"],
            id="time-no-offset",
        ),
        pytest.param(
            wire(prediction(timestamp="yesterday")),
            "invalid_value",
            ["timestamp", "RFC 3339"],
            id="time-not-rfc3339",
        ),
        pytest.param(wire(prediction(score=1.5)), "invalid_value", ["score"], id="score"),
        pytest.param(wire(prediction(shadow="yes")), "wrong_type", ["shadow"], id="shadow-str"),
        pytest.param(wire(prediction(shadow=1)), "wrong_type", ["shadow"], id="shadow-int"),
        pytest.param(wire(prediction(shadow=None)), "wrong_type", ["shadow"], id="shadow-null"),
        pytest.param(
            wire(prediction(prediction="p" * (MAX_VALUE_LENGTH + 1))),
            "invalid_value",
            ["prediction", "1024"],
            id="long-value",
        ),
        pytest.param(
            wire(prediction(features={"n" * (MAX_ID_LENGTH + 1): 1.0})),
            "invalid_value",
            ["features.nnnn", "256"],
            id="long-feature-name",
        ),
    ],
)
def test_reason_codes(data: bytes, reason: str, names: list[str]) -> None:
    reject(decode, data, reason, *names)
    if reason != "unknown_type" or b"prediction_batch" in data:
        reject(decode_ingest, data, reason, *names)
        if data.strip():  # a blank line of a file is skipped
            reject(decode_line, data, reason, *names)


@pytest.mark.parametrize(
    ("body", "reason", "names"),
    [
        pytest.param(batch(timestamps=[T0]), "unequal_columns", ["timestamps has 1"], id="unequal"),
        pytest.param(
            batch(features={"x": [1.0, 2.0, 3.0]}),
            "unequal_columns",
            ["features.x has 3"],
            id="unequal-feature",
        ),
        pytest.param(batch(0), "empty_batch", ["event_ids"], id="empty"),
        pytest.param(
            batch(event_ids=[], timestamps=[]), "empty_batch", ["event_ids"], id="empty-ids"
        ),
        pytest.param(
            batch(features={"n" * (MAX_ID_LENGTH + 1): [1.0, 2.0]}),
            "invalid_value",
            ["features.nnn", "256 characters"],
            id="long-feature-name",
        ),
        pytest.param(
            batch(features={f"f{i}": [1.0, 2.0] for i in range(MAX_FEATURES + 1)}),
            "invalid_value",
            ["features", "1000"],
            id="too-many-features",
        ),
        pytest.param(batch(extra=1), "unknown_field", ["extra"], id="extra-field"),
        pytest.param(
            {k: v for k, v in batch().items() if k != "predictions"},
            "missing_field",
            ["predictions"],
            id="missing",
        ),
        pytest.param(
            batch(features={"x": [1.0, None], "c": ["a", 2]}),
            "wrong_type",
            ["features.c"],
            id="mixed",
        ),
        pytest.param(
            batch(features={"c": ["a", "c" * (MAX_VALUE_LENGTH + 1)]}),
            "invalid_value",
            ["features.c.1", "1024"],
            id="long-category",
        ),
        pytest.param(batch(predictions=[0, None]), "wrong_type", ["predictions.1"], id="null"),
        pytest.param(batch(scores=[0.5, True]), "wrong_type", ["scores.1"], id="bool-score"),
        pytest.param(batch(scores=[0.5, 1.5]), "invalid_value", ["scores.1"], id="score"),
        pytest.param(batch(latency_ms=[1, -1]), "invalid_value", ["latency_ms.1"], id="latency"),
        pytest.param(batch(shadow="true"), "wrong_type", ["shadow"], id="shadow-str"),
        pytest.param(batch(shadow=0), "wrong_type", ["shadow"], id="shadow-int"),
        pytest.param(batch(shadow=[True]), "wrong_type", ["shadow"], id="shadow-list"),
        pytest.param(
            batch(timestamps=[T0, LATEST_EPOCH]),
            "timestamp_out_of_range",
            ["timestamps.1", "out of range"],
            id="time-range",
        ),
        pytest.param(
            batch(timestamps=[T0, "2026-01-01T00:00:00"]),
            "invalid_value",
            ["timestamps.1", "offset"],
            id="time-no-offset",
        ),
        pytest.param(
            batch(timestamps=[T0, False]), "invalid_value", ["timestamps.1", "boolean"], id="bool"
        ),
        pytest.param(
            batch(segment={"s": "v" * (MAX_VALUE_LENGTH + 1)}),
            "invalid_value",
            ["segment.s"],
            id="segment",
        ),
        pytest.param(batch(event_ids=["a", ""]), "invalid_value", ["event_ids.1"], id="empty-id"),
        # Names and values that look like other reasons' messages do not change the reason.
        pytest.param(
            batch(features={"out of range": [1, "a"]}),
            "wrong_type",
            ["features.out of range", "mixes"],
            id="name-like-a-reason",
        ),
        pytest.param(
            batch(timestamps=[T0, "NaN and infinite {x} out of range"]),
            "invalid_value",
            ["timestamps.1", "RFC 3339"],
            id="value-like-a-reason",
        ),
        pytest.param(
            batch(features={"{rows}": [1.0]}),
            "unequal_columns",
            ["features.{rows} has 1"],
            id="braces-in-name",
        ),
    ],
)
def test_batch_reason_codes(body: dict[str, Any], reason: str, names: list[str]) -> None:
    for function in BATCH_ONLY:
        reject(function, wire(body), reason, *names)


def test_too_many_rows() -> None:
    rows = MAX_BATCH_ROWS + 1
    body = batch(rows, features={}, predictions=[0] * rows)
    for function in BATCH_ONLY:
        reject(function, wire(body), "too_many_rows", "event_ids", "100000")
    body = batch(2, features={"x": [0.0] * rows})
    for function in BATCH_ONLY:
        reject(function, wire(body), "too_many_rows", "features.x")
    feedback = {
        "type": "feedback_batch",
        "model_id": "m",
        "event_ids": ["a"] * rows,
        "timestamps": [T0] * rows,
        "labels": [1] * rows,
    }
    for function in BATCH_ONLY:
        reject(function, wire(feedback), "too_many_rows", "event_ids")


def test_oversized_messages() -> None:
    data = wire(prediction())
    for function in (decode, decode_line, decode_ingest):
        assert not isinstance(function(data, max_bytes=len(data)), DecodeError)
        reject(
            lambda raw, f=function: f(raw, max_bytes=len(data) - 1),
            data,
            "oversized",
            str(len(data)),
        )
    text = (
        '{"type": "feedback", "event_id": "é", "model_id": "m", "timestamp": 1767225600,'
        ' "label": 1}'
    )
    size = len(text.encode())
    assert size > len(text)
    assert decode(text, max_bytes=size).event_id == "é"
    reject(lambda raw: decode(raw, max_bytes=size - 1), text, "oversized", str(size))


def test_reason_list_is_stable() -> None:
    assert set(REASONS) >= {
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
    }
    assert len(set(REASONS)) == len(REASONS)


# ----------------------------------------------------------------------------- JSONL


def feedback(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "feedback",
        "event_id": "e1",
        "model_id": "m",
        "timestamp": T0,
        "label": "yes",
    }
    body.update(changes)
    return body


def feedback_batch_body() -> dict[str, Any]:
    return {
        "type": "feedback_batch",
        "model_id": "m",
        "event_ids": ["e0", "e1"],
        "timestamps": [T0, T0 + 1],
        "labels": [0, 1],
    }


def test_jsonl_decoder_mixed_types_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    lines = [
        wire(prediction(event_id="p1")),  # 1
        b"",
        wire(feedback(event_id="p1")),  # 3
        b"   \t",
        wire(prediction(event_id="p2", segment={"r": "eu"})),  # 5: left to the models
        b"\r",
        wire(batch()),  # 7: the runs gathered so far come first
        wire(prediction(event_id="p3")),  # 8
        wire(feedback_batch_body()),  # 9
        wire(feedback(event_id="p3", label=2)),  # 10
    ]
    path.write_bytes(b"\n".join(lines) + b"\n\n")
    decoder = JsonlDecoder()
    with open(path, "rb") as handle:
        items = list(decoder.decode(handle))
    assert decoder.lines == 7
    assert [type(item).__name__ for item in items] == [
        "PredictionRun",
        "FeedbackRun",
        "PredictionColumns",
        "PredictionRun",
        "FeedbackColumns",
        "FeedbackRun",
    ]
    assert items[0].event_ids == ["p1", "p2"] and items[0].segments == [None, {"r": "eu"}]
    assert items[1].labels == ["yes"]
    assert items[2].event_ids.tolist() == ["e0", "e1"]
    assert items[3].event_ids == ["p3"]
    assert items[4].label_value.tolist() == [0.0, 1.0]
    assert items[5].labels == [2]


def test_jsonl_decoder_checks_runs_of_run_rows_events() -> None:
    lines = [wire(prediction(event_id=f"e{i}")) for i in range(5)]
    lines.insert(3, wire(feedback()))
    decoder = JsonlDecoder(run_rows=2)
    items = list(decoder.decode(lines))
    # a run is checked when either kind reaches run_rows, then both kinds gathered
    assert [item.event_ids for item in items] == [["e0", "e1"], ["e2", "e3"], ["e1"], ["e4"]]
    assert decoder.lines == 6


def test_jsonl_decoder_names_the_first_bad_line() -> None:
    good, bad = wire(prediction()), wire(prediction(extra=1))
    with pytest.raises(LineError) as caught:
        list(JsonlDecoder().decode([good, b"", bad, b"{oops"]))
    assert (caught.value.line, caught.value.reason) == (3, "unknown_field")
    assert "extra" in caught.value.message and str(caught.value).startswith("unknown_field: ")
    # a bad single event is reported before a bad batch after it, and after one before it
    with pytest.raises(LineError) as caught:
        list(JsonlDecoder().decode([good, bad, wire(batch(extra=1))]))
    assert (caught.value.line, caught.value.reason) == (2, "unknown_field")
    with pytest.raises(LineError) as caught:
        list(JsonlDecoder().decode([good, b"{oops", bad]))
    assert (caught.value.line, caught.value.reason) == (2, "invalid_json")
    # across the two runs: the first line in the file
    with pytest.raises(LineError) as caught:
        list(JsonlDecoder().decode([good, wire(feedback(label=None)), bad]))
    assert (caught.value.line, caught.value.reason) == (2, "wrong_type")
    alert = AlertEvent(
        alert_id="a1",
        model_id="m",
        model_version="v1",
        kind="data_drift",
        feature="x",
        window_start=T0,
        window_end=T0 + 3600,
        statistic="psi",
        value=0.4,
        threshold=0.25,
        p_value=None,
        severity="critical",
        opened_at=T0 + 3600,
    )
    with pytest.raises(LineError) as caught:
        list(JsonlDecoder().decode([good, encode(alert)]))
    assert (caught.value.line, caught.value.reason) == (2, "unknown_type")


def test_jsonl_decoder_applies_max_bytes() -> None:
    data = wire(prediction())
    assert isinstance(decode_line(data, max_bytes=len(data)), PredictionRun)
    with pytest.raises(LineError) as caught:
        list(JsonlDecoder(max_bytes=10).decode([b"", data]))
    assert (caught.value.line, caught.value.reason) == (2, "oversized")


# ----------------------------------------------------------------------------- single events
#
# Runs of single events skip the models when the column-wise checks of
# driftline.schemas.singles pass. They are stricter than the models: whatever they take,
# the models take, with the same values (timestamps up to the models' microsecond).


def _unbool(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value


@st.composite
def plain_singles(draw: st.DrawFn) -> dict[str, Any]:
    """Single events as producers mostly send them: the form the column-wise checks take."""
    body = dict(draw(prediction_bodies() | feedback_bodies()))
    body.pop("scores", None)
    body.pop("segment", None)
    body["timestamp"] = draw(
        st.floats(EARLIEST_EPOCH, LATEST_EPOCH, exclude_max=True)
        | st.integers(int(EARLIEST_EPOCH), int(LATEST_EPOCH) - 1)
    )
    for key in ("prediction", "label"):
        if key in body:
            body[key] = _unbool(body[key])
    if "features" in body:
        body["features"] = {name: _unbool(value) for name, value in body["features"].items()}
    return body


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plain_singles()
    | near_events(plain_singles())
    | near_events(prediction_bodies() | feedback_bodies())
)
def test_single_event_checks_agree_with_the_models(body: dict[str, Any]) -> None:
    data = wire(body)
    obj = orjson.loads(data)
    reference = outcome(validate, obj)
    line = outcome(decode_line, data)
    if isinstance(reference, DecodeError):
        assert isinstance(line, LineError) and str(line) == str(reference)
    prediction = obj.get("type") == "prediction"
    fast = (prediction_run if prediction else feedback_run)([obj])
    if obj.get("type") not in ("prediction", "feedback") or fast is None:
        return
    assert not isinstance(reference, DecodeError), f"the checks took what the models refuse: {obj}"
    if isinstance(reference, PredictionEvent):
        model = prediction_run([prediction_view(reference)], trusted=True)
        assert isinstance(fast, PredictionRun) and fast.features.keys() == model.features.keys()
        pairs = [
            *zip(fast.predictions, model.predictions, strict=True),
            *zip(fast.scores, model.scores, strict=True),
            *zip(fast.latency_ms, model.latency_ms, strict=True),
            *(
                pair
                for name, values in fast.features.items()
                for pair in zip(values, model.features[name], strict=True)
            ),
        ]
        assert (fast.model_versions, fast.class_scores, fast.segments, fast.shadows) == (
            model.model_versions,
            None,
            None,
            model.shadows,
        )
        assert fast.shadows == ([True] if reference.shadow else None)
    else:
        assert isinstance(reference, FeedbackEvent)
        model = feedback_run([feedback_view(reference)], trusted=True)
        assert isinstance(fast, FeedbackRun)
        pairs = list(zip(fast.labels, model.labels, strict=True))
    assert all(_same_value(a, b) for a, b in pairs), pairs
    assert (fast.event_ids, fast.model_ids) == (model.event_ids, model.model_ids)
    assert abs(fast.timestamps[0] - model.timestamps[0]) <= 1e-6
    assert line is not None and not isinstance(line, DecodeError)


def test_a_run_of_single_predictions_says_which_are_shadows() -> None:
    served, shadow = prediction(event_id="a"), prediction(event_id="a", model_version="v2")
    run = prediction_run([served, {**shadow, "shadow": True}, {**served, "shadow": False}])
    assert run is not None and run.shadows == [False, True, False]
    assert run.model_versions == ["v1", "v2", "v1"]
    plain = prediction_run([served, {**served, "shadow": False}])
    assert plain is not None and plain.shadows is None  # none of the run is a shadow
    # Anything but a boolean leaves the run to the models, which refuse it naming shadow.
    for bad in (1, 0, None, "true"):
        assert prediction_run([served, {**shadow, "shadow": bad}]) is None
        reject(decode_line, wire({**shadow, "shadow": bad}), "wrong_type", "shadow")


# ----------------------------------------------------------------------------- doctests


def test_doctests_of_codec_pass() -> None:
    result = doctest.testmod(codec, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


_label_values = st.one_of(
    st.integers(-3, 3),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.text(max_size=4),
    st.none(),
    st.just([1]),
)


@st.composite
def feedback_batches(draw: st.DrawFn) -> dict[str, Any]:
    """feedback_batch objects: mostly valid, sometimes broken in one way."""
    rows = draw(st.integers(0, 6))
    same_kind = draw(st.booleans())
    if same_kind:
        labels = draw(
            st.lists(st.integers(0, 1), min_size=rows, max_size=rows)
            | st.lists(st.text(max_size=3), min_size=rows, max_size=rows)
        )
    else:
        labels = draw(st.lists(_label_values, min_size=rows, max_size=rows))
    body: dict[str, Any] = {
        "type": "feedback_batch",
        "model_id": draw(st.sampled_from(["m", "", 7])),
        "event_ids": [f"e{i}" for i in range(rows)],
        "timestamps": draw(
            st.lists(
                st.sampled_from([1767225600, 1767225600.5, "2026-01-01T00:00:00Z", 5, True]),
                min_size=rows,
                max_size=rows,
            )
        ),
        "labels": labels,
    }
    if draw(st.integers(0, 9)) == 0:
        body["extra"] = 1
    if draw(st.integers(0, 9)) == 0:
        body["labels"] = labels[:-1]
    return body


@FAST
@given(feedback_batches())
def test_feedback_batch_fast_path_agrees_with_the_models(body: dict[str, Any]) -> None:
    data = orjson.dumps(body)
    fast, slow = outcome(decode_ingest, data), outcome(decode, data)
    line = outcome(decode_line, data)
    if isinstance(slow, DecodeError):
        assert isinstance(fast, DecodeError)
        assert (fast.reason, fast.message) == (slow.reason, slow.message)
        assert isinstance(line, LineError) and str(line) == str(fast)
        return
    assert isinstance(line, FeedbackColumns)
    assert line.event_ids.tolist() == fast.event_ids.tolist()
    assert isinstance(fast, FeedbackColumns)
    assert fast.event_ids.tolist() == list(slow.event_ids)
    assert fast.timestamps.tolist() == [moment.timestamp() for moment in slow.timestamps]
    if fast.label_class is not None:
        assert fast.label_class.tolist() == list(slow.labels)
    else:
        assert fast.label_value is not None
        assert fast.label_value.tolist() == [float(label) for label in slow.labels]
