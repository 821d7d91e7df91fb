"""Event time that a bad clock cannot wreck: a bound against processing time."""

from __future__ import annotations

from typing import Any

import orjson
from driftline.streams.ingest import RawMessage, route_messages

from driftline.store.rows import KafkaPosition

NOW = 1_767_225_600.0  # the worker's clock in these tests: 2026-01-01T00:00:00Z


def message(event: dict[str, Any], offset: int = 0) -> RawMessage:
    return RawMessage(orjson.dumps(event), KafkaPosition("p", 0, offset))


def prediction(event_id: str, timestamp: float) -> dict[str, Any]:
    return {
        "type": "prediction",
        "event_id": event_id,
        "model_id": "credit",
        "model_version": "v1",
        "timestamp": timestamp,
        "features": {"income": 1.0},
        "prediction": 1,
    }


def test_an_event_from_the_future_goes_to_the_dlq_and_holds_no_watermark() -> None:
    future = NOW + 30 * 86_400
    outcome = route_messages(
        [message(prediction("ok", NOW - 10), 0), message(prediction("bad", future), 1)],
        1 << 20,
        max_future_seconds=300,
        now=NOW,
    )
    assert outcome.prediction_rows == 1
    [letter] = outcome.dead_letters
    assert letter.error.reason == "timestamp_in_future"
    assert "DRIFTLINE_MAX_FUTURE_SECONDS" in str(letter.error)
    assert "2026-01-31" in str(letter.error)
    assert outcome.watermarks == {("p", 0): NOW - 10}


def test_a_batch_with_one_future_row_is_refused_whole_and_feedback_too() -> None:
    batch = {
        "type": "prediction_batch",
        "model_id": "credit",
        "model_version": "v1",
        "event_ids": ["a", "b"],
        "timestamps": [NOW, NOW + 3_600],
        "features": {"income": [1.0, 2.0]},
        "predictions": [0, 1],
    }
    label = {
        "type": "feedback",
        "event_id": "a",
        "model_id": "credit",
        "timestamp": NOW + 3_600,
        "label": 1,
    }
    outcome = route_messages(
        [message(batch, 0), message(label, 1)], 1 << 20, max_future_seconds=300, now=NOW
    )
    assert outcome.predictions is None and outcome.feedback is None
    assert [d.error.reason for d in outcome.dead_letters] == ["timestamp_in_future"] * 2


def test_event_time_within_the_bound_is_accepted() -> None:
    outcome = route_messages(
        [message(prediction("soon", NOW + 299))], 1 << 20, max_future_seconds=300, now=NOW
    )
    assert outcome.prediction_rows == 1 and not outcome.dead_letters


def test_shadow_predictions_are_routed_apart_and_hold_no_watermark() -> None:
    served = prediction("e1", NOW - 10)
    shadow = {**prediction("e1", NOW - 5), "model_version": "v2", "shadow": True}
    batch = {
        "type": "prediction_batch",
        "model_id": "credit",
        "model_version": "v2",
        "event_ids": ["e2", "e3"],
        "timestamps": [NOW - 2, NOW - 1],
        "features": {"income": [1.0, 2.0]},
        "predictions": [0, 1],
        "shadow": True,
    }
    bad = {**shadow, "event_id": "e4", "shadow": "yes"}
    outcome = route_messages(
        [
            message(served, 0),
            message(shadow, 1),
            message(bad, 2),
            RawMessage(orjson.dumps(batch), KafkaPosition("p", 1, 0)),
        ],
        1 << 20,
        now=NOW,
    )
    assert outcome.predictions is not None and outcome.shadow_predictions is not None
    assert outcome.predictions.column("event_id").to_pylist() == ["e1"]
    assert sorted(outcome.shadow_predictions.column("event_id").to_pylist()) == ["e1", "e2", "e3"]
    assert set(outcome.shadow_predictions.column("model_version").to_pylist()) == {"v2"}
    # The served copy moves its partition's watermark; shadow copies move none.
    assert outcome.watermarks == {("p", 0): NOW - 10}
    [letter] = outcome.dead_letters
    assert (letter.error.reason, letter.message.position.offset) == ("wrong_type", 2)
    assert "shadow" in letter.error.message
