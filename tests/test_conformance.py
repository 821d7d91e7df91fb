"""Labels and features checked against the model's monitor (issue 11, finding 5).

Unit tests of the pure module (each wrong label or feature type for each task, the
valid ones, batches), the routing (``route_messages`` and the ``Ingestor``), the
metrics' reasons, and one end-to-end test through tansu, a worker and chDB.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any, cast

import numpy as np
import orjson
import pytest
from driftline.schemas.codec import REASONS, DecodeError, decode_ingest
from driftline.schemas.conformance import (
    Conformance,
    bad_labels,
    check_features,
    check_labels,
    check_rows,
    label_rule,
)
from driftline.schemas.monitor import MonitorConfig
from driftline.streams.ingest import Ingestor, RawMessage, route_messages
from e2e_support import consume_all, wait_for
from prometheus_client import CollectorRegistry, generate_latest

from driftline.metrics import WorkerMetrics
from driftline.store.rows import KafkaPosition

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
NOW = T0 + 86_400.0  # the routing's clock: every event time here is in its past


def monitor(task: str = "binary_classification", positive: Any = None) -> MonitorConfig:
    config: dict[str, Any] = {
        "model_id": "credit",
        "task": task,
        "features": {"income": "numeric", "age": "numeric", "region": "categorical"},
    }
    if positive is not None:
        config["performance"] = {"positive_label": positive}
    return MonitorConfig.from_mapping(config)


def feedback(label: Any, event_id: str = "e1", model_id: str = "credit") -> bytes:
    return orjson.dumps(
        {
            "type": "feedback",
            "event_id": event_id,
            "model_id": model_id,
            "timestamp": T0,
            "label": label,
        }
    )


def feedback_batch(labels: list[Any], model_id: str = "credit", prefix: str = "f") -> bytes:
    return orjson.dumps(
        {
            "type": "feedback_batch",
            "model_id": model_id,
            "event_ids": [f"{prefix}{i}" for i in range(len(labels))],
            "timestamps": [T0] * len(labels),
            "labels": labels,
        }
    )


def prediction(features: dict[str, Any], event_id: str = "p1", model_id: str = "credit") -> bytes:
    return orjson.dumps(
        {
            "type": "prediction",
            "event_id": event_id,
            "model_id": model_id,
            "model_version": "v1",
            "timestamp": T0,
            "features": features,
            "prediction": 1,
            "score": 0.7,
        }
    )


def prediction_batch(
    features: dict[str, list[Any]], model_id: str = "credit", prefix: str = "p"
) -> bytes:
    rows = len(next(iter(features.values())))
    return orjson.dumps(
        {
            "type": "prediction_batch",
            "model_id": model_id,
            "model_version": "v1",
            "event_ids": [f"{prefix}{i}" for i in range(rows)],
            "timestamps": [T0 + i for i in range(rows)],
            "features": features,
            "predictions": [i % 2 for i in range(rows)],
        }
    )


def refusal(data: bytes, config: MonitorConfig) -> DecodeError | None:
    """The error checking ``data`` against ``config`` raises, or None."""
    try:
        check_rows(decode_ingest(data), {config.model_id: config})
    except DecodeError as error:
        return error
    return None


# ----------------------------------------------------------------------------- labels

#: (task, positive_label or None for the default, label, accepted)
LABELS: list[tuple[str, Any, Any, bool]] = [
    ("binary_classification", None, 0, True),
    ("binary_classification", None, 1, True),
    ("binary_classification", None, 1.0, True),
    ("binary_classification", None, True, True),
    ("binary_classification", None, False, True),
    ("binary_classification", None, "0", True),
    ("binary_classification", None, "1", True),
    ("binary_classification", None, "yes", False),
    ("binary_classification", None, 7, False),
    ("binary_classification", None, 0.5, False),
    ("binary_classification", None, -1, False),
    ("binary_classification", None, "true", False),
    ("binary_classification", None, "1.0", False),
    ("binary_classification", 0, 1, True),
    ("binary_classification", 0, 2, False),
    ("binary_classification", 2, 2, True),
    ("binary_classification", 2, "2", True),
    ("binary_classification", 2, 0, True),
    ("binary_classification", 2, 3, False),
    ("binary_classification", "churn", "churn", True),
    ("binary_classification", "churn", "stay", True),
    ("binary_classification", "churn", 1, False),
    ("binary_classification", "churn", 0, False),
    ("binary_classification", "churn", True, False),
    ("multiclass", None, "cat", True),
    ("multiclass", None, 2, True),
    ("multiclass", None, 0, True),
    ("multiclass", None, 2.0, True),
    ("multiclass", None, 0.5, False),
    ("multiclass", None, -2.25, False),
    ("regression", None, 3.5, True),
    ("regression", None, -2, True),
    ("regression", None, 0, True),
    ("regression", None, "3.5", False),
    ("regression", None, "high", False),
]


@pytest.mark.parametrize(("task", "positive", "label", "accepted"), LABELS)
def test_a_single_label_is_checked_against_the_task(
    task: str, positive: Any, label: Any, accepted: bool
) -> None:
    error = refusal(feedback(label), monitor(task, positive))
    if accepted:
        assert error is None, error
    else:
        assert error is not None
        assert error.reason == "label_type"
        assert error.message.startswith("event 'e1': label ")
        assert task in error.message and "'credit'" in error.message
        assert "expected " in error.message


@pytest.mark.parametrize(("task", "positive", "label", "accepted"), LABELS)
def test_a_label_in_a_batch_is_checked_as_a_single_one(
    task: str, positive: Any, label: Any, accepted: bool
) -> None:
    error = refusal(feedback_batch([label, label]), monitor(task, positive))
    if accepted:
        assert error is None, error
    else:
        assert error is not None and error.reason == "label_type"
        assert "event 'f0' (row 0 of 2)" in error.message
        assert "2 of 2 rows are wrong" in error.message


def test_the_error_names_the_event_the_row_the_label_and_what_was_expected() -> None:
    labels = [0, 1, 1, 0, 7, 1, 0, 0, 7, 1]
    error = refusal(feedback_batch(labels), monitor())
    assert error is not None
    assert str(error) == (
        "label_type: event 'f4' (row 4 of 10): label 7 is not a binary_classification label "
        'of model \'credit\': expected 0 or 1 (a number, true/false or the string "0"/"1"); '
        "2 of 10 rows are wrong, the whole message is refused"
    )
    strings = refusal(feedback_batch(["a", "b", "3.5"]), monitor("regression"))
    assert strings is not None
    assert strings.message.startswith("event 'f0' (row 0 of 3): label 'a' is not a regression")
    assert "expected a finite number" in strings.message
    churn = refusal(feedback(1, event_id="x9"), monitor(positive="churn"))
    assert churn is not None
    assert "the positive class is 'churn'" in churn.message and "'x9'" in churn.message


def test_vectorised_labels_agree_with_the_scalar_rule() -> None:
    numbers = np.array([0.0, 1.0, 2.0, 7.0, 0.5, -1.0, -2.25, 1e300, 3.0])
    strings = np.array(["0", "1", "2", "yes", "true", "1.0", "churn", ""], dtype=object)
    binary = label_rule("binary_classification", "1")
    assert bad_labels(binary, numbers, None).tolist() == [False, False] + [True] * 7
    assert bad_labels(binary, None, strings).tolist() == [False, False] + [True] * 6
    for task in ("binary_classification", "multiclass", "regression"):
        for positive in ("1", "0", "2", "churn", "true"):
            rule = label_rule(task, positive)
            assert bad_labels(rule, numbers, None).tolist() == [
                not rule.accepts(float(x)) for x in numbers
            ]
            assert bad_labels(rule, None, strings).tolist() == [
                not rule.accepts(str(x)) for x in strings
            ]


def test_a_batch_of_100k_good_labels_passes_and_one_bad_row_refuses_it() -> None:
    rows = 100_000
    labels = [i % 2 for i in range(rows)]
    assert refusal(feedback_batch(labels), monitor()) is None
    labels[65_432] = 2
    error = refusal(feedback_batch(labels), monitor())
    assert error is not None and error.reason == "label_type"
    assert "event 'f65432' (row 65432 of 100000): label 2 " in error.message
    assert "1 of 100000 rows are wrong" in error.message


def test_check_labels_and_check_features_take_one_monitor() -> None:
    config = monitor("regression")
    with pytest.raises(DecodeError, match="label_type"):
        check_labels(cast(Any, decode_ingest(feedback("high"))), config)
    check_labels(cast(Any, decode_ingest(feedback(2.5))), config)
    with pytest.raises(DecodeError, match="feature_type"):
        check_features(cast(Any, decode_ingest(prediction({"income": "1000"}))), config)


# ----------------------------------------------------------------------------- features

#: (features of one event, accepted)
FEATURES: list[tuple[dict[str, Any], bool]] = [
    ({"income": 1000.5, "age": 41, "region": "eu"}, True),
    ({"income": None, "age": None, "region": None}, True),
    ({"income": True, "age": 3}, True),  # booleans are read as 1/0
    ({"region": 7}, True),  # a number is a category: "7"
    ({"region": 7.0, "other": "anything", "more": 1}, True),  # undeclared: not checked
    ({}, True),  # declared features missing: nulls
    ({"income": "1000"}, False),  # a numeric string
    ({"income": "n/a", "region": "eu"}, False),
    ({"income": 1.0, "age": "41"}, False),
]


@pytest.mark.parametrize(("features", "accepted"), FEATURES)
def test_a_single_prediction_has_its_declared_numeric_features_as_numbers(
    features: dict[str, Any], accepted: bool
) -> None:
    error = refusal(prediction(features), monitor())
    if accepted:
        assert error is None, error
    else:
        assert error is not None and error.reason == "feature_type"
        assert error.message.startswith("event 'p1': feature ")
        assert "declares it numeric: expected a number or null" in error.message


@pytest.mark.parametrize(("features", "accepted"), FEATURES)
def test_a_batch_column_is_checked_as_a_single_value(
    features: dict[str, Any], accepted: bool
) -> None:
    columns = {name: [value, value, value] for name, value in features.items()}
    data = prediction_batch(columns or {"undeclared": [1, 2, 3]})
    error = refusal(data, monitor())
    if accepted:
        assert error is None, error
    else:
        assert error is not None and error.reason == "feature_type"
        assert "event 'p0' (row 0 of 3): feature " in error.message
        assert "3 of 3 rows are wrong" in error.message


@pytest.mark.parametrize("task", ["binary_classification", "multiclass", "regression"])
def test_the_feature_error_names_the_row_the_field_the_value_and_the_expected_kind(
    task: str,
) -> None:
    data = prediction_batch(
        {
            "income": [None, None, "1000", None, "x"],
            "age": ["41", None, None, None, None],
            "region": ["eu", "us", None, "eu", "us"],
        }
    )
    error = refusal(data, monitor(task))
    assert error is not None
    assert str(error) == (
        "feature_type: event 'p2' (row 2 of 5): feature 'income' is '1000', a string, but "
        "the monitor of model 'credit' declares it numeric: expected a number or null "
        "(also wrong: 'age'); 2 of 5 rows are wrong, the whole message is refused"
    )
    single = refusal(prediction({"income": "1000", "age": "41"}), monitor(task))
    assert single is not None
    assert str(single) == (
        "feature_type: event 'p1': feature 'income' is '1000', a string, but the monitor of "
        "model 'credit' declares it numeric: expected a number or null (also wrong: 'age')"
    )


def test_a_model_without_a_monitor_is_not_checked() -> None:
    monitors = {"credit": monitor()}
    for model_id, checked in (("fraud", False), ("credit", True)):
        for data in (
            feedback("yes", model_id=model_id),
            feedback_batch([7, 0.5], model_id=model_id),
            prediction({"income": "1000"}, model_id=model_id),
            prediction_batch({"income": ["1000"]}, model_id=model_id),
        ):
            rows = decode_ingest(data)
            check_rows(rows, {})
            if checked:
                with pytest.raises(DecodeError):
                    check_rows(rows, monitors)
                with pytest.raises(DecodeError):
                    Conformance(monitors).check(rows)
            else:
                check_rows(rows, monitors)
                Conformance(monitors).check(rows)


def test_the_new_reasons_are_codec_reasons_and_metric_labels() -> None:
    assert {"label_type", "feature_type"} <= set(REASONS)
    metrics = WorkerMetrics(CollectorRegistry(), {})
    text = generate_latest(metrics.registry).decode()
    assert 'driftline_dlq_messages_total{reason="label_type"} 0.0' in text
    assert 'driftline_dlq_messages_total{reason="feature_type"} 0.0' in text


# ----------------------------------------------------------------------------- routing


def raw(values: list[bytes]) -> list[RawMessage]:
    return [RawMessage(value, KafkaPosition("t", 0, i)) for i, value in enumerate(values)]


GROUP = [
    prediction_batch({"income": [1.0, 2.0], "region": [7, None]}, prefix="good"),
    prediction_batch({"income": [None, "2"], "region": ["eu", "us"]}, prefix="badf"),
    prediction({"income": "2"}, event_id="bad-single"),
    feedback_batch([0, 1], prefix="good"),
    feedback_batch(["0", "yes"], prefix="badl"),
    feedback(0.5, event_id="bad-label"),
    feedback("yes", event_id="x", model_id="fraud"),  # no monitor: stored as today
]


def test_route_messages_sends_rows_that_do_not_fit_the_monitor_to_the_dlq() -> None:
    outcome = route_messages(raw(GROUP), 1 << 20, now=NOW, monitors={"credit": monitor()})
    assert [
        (letter.message.position.offset, letter.error.reason) for letter in outcome.dead_letters
    ] == [
        (1, "feature_type"),
        (2, "feature_type"),
        (4, "label_type"),
        (5, "label_type"),
    ]
    assert outcome.predictions is not None and outcome.feedback is not None
    assert outcome.predictions.column("event_id").to_pylist() == ["good0", "good1"]
    assert outcome.feedback.column("event_id").to_pylist() == ["good0", "good1", "x"]
    # without monitors (the default) every message is stored, as before
    unchecked = route_messages(raw(GROUP), 1 << 20, now=NOW)
    assert unchecked.dead_letters == []
    assert (unchecked.prediction_rows, unchecked.feedback_rows) == (5, 6)


def test_the_ingestor_routes_with_its_monitors() -> None:
    async def send(letter: Any) -> Any:  # pragma: no cover - route() sends nothing
        raise AssertionError

    store = cast(Any, None)  # route() only decodes
    checked = Ingestor(store, send, 1 << 20, monitors={"credit": monitor()})
    reasons = [letter.error.reason for letter in checked.route(raw(GROUP)).dead_letters]
    assert reasons == ["feature_type", "feature_type", "label_type", "label_type"]
    assert Ingestor(store, send, 1 << 20).route(raw(GROUP)).dead_letters == []


# ----------------------------------------------------------------------------- end to end

MONITOR_YAML = """\
model_id: credit
task: binary_classification
features: {income: numeric, region: categorical}
window: 1m
allowed_lateness: 10s
"""


@pytest.mark.e2e
def test_wrong_labels_and_features_reach_the_dlq_through_a_real_worker(
    worker_factory, producer, broker, tmp_path: Path
) -> None:
    monitors = tmp_path / "monitors"
    monitors.mkdir()
    (monitors / "credit.yaml").write_text(MONITOR_YAML)
    worker = worker_factory(monitors_dir=str(monitors))
    assert worker.health()["monitors"] == ["credit"]
    topics = worker.settings.topics
    good = prediction({"income": 1000.0, "region": "eu"}, event_id="good")
    bad_feature = prediction({"income": "1000", "region": "eu"}, event_id="bad-feature")
    good_label = feedback(1, event_id="good")
    bad_label = feedback("yes", event_id="bad-feature")
    for topic, value in (
        (topics.predictions, good),
        (topics.predictions, bad_feature),
        (topics.feedback, good_label),
        (topics.feedback, bad_label),
    ):
        producer.produce(topic, value, key=b"credit")
    assert producer.flush(15) == 0

    letters = consume_all(broker.bootstrap_servers, topics.dlq, 2, timeout=60)
    found = {message.value(): dict(message.headers()) for message in letters}  # original bytes kept
    assert set(found) == {bad_feature, bad_label}
    assert found[bad_feature]["driftline.error.class"] == b"feature_type"
    assert b"feature 'income'" in found[bad_feature]["driftline.error.message"]
    assert found[bad_label]["driftline.error.class"] == b"label_type"
    assert b"label 'yes'" in found[bad_label]["driftline.error.message"]
    wait_for(
        lambda: (
            worker.scalar("SELECT count() FROM predictions FINAL"),
            worker.scalar("SELECT count() FROM feedback FINAL"),
        ),
        lambda got: got == (1, 1),
        30,
        "the good prediction and label",
    )
    assert worker.scalar("SELECT any(event_id) FROM predictions FINAL") == "good"
    assert worker.scalar("SELECT any(label_value) FROM feedback FINAL") == 1.0
    assert worker.health()["dead_letters"] == {"feature_type": 1, "label_type": 1}
    url = f"http://127.0.0.1:{worker.settings.worker_web_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        exposition = response.read().decode()
    assert 'driftline_dlq_messages_total{reason="label_type"} 1.0' in exposition
    assert 'driftline_dlq_messages_total{reason="feature_type"} 1.0' in exposition
