"""ModelSubscriber on a real broker: whole-model swaps under concurrent predictions."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Producer
from driftline.schemas.events import ModelVersionEvent
from e2e_support import wait_for

from driftline.broker import EmbeddedBroker
from driftline.kafka import create_topics
from driftline.sdk import ModelSubscriber
from driftline.settings import Settings

pytestmark = pytest.mark.e2e


class SlowModel:
    """A model built in two steps, slowly: a half-built one would answer inconsistently."""

    def __init__(self, version: str) -> None:
        self.first = version
        time.sleep(0.02)
        self.second = version

    def predict(self, features: Any) -> tuple[str, str]:
        first = self.first
        time.sleep(0.0005)
        return first, self.second


def _event(version: str, model_id: str = "credit", status: str = "champion") -> bytes:
    return (
        ModelVersionEvent(
            model_id=model_id,
            version=version,
            parent_version=None,
            artifact_uri=f"file:///nowhere/{model_id}/{version}",
            metrics={"candidate.accuracy": 0.9},
            status=status,  # type: ignore[arg-type]
            request_id=None,
            data_from=None,
            data_to=None,
            created_at=1767225600,
        )
        .model_dump_json()
        .encode()
    )


@pytest.fixture
def topic_prefix(broker: EmbeddedBroker) -> str:
    prefix = f"sub{uuid.uuid4().hex[:10]}"
    create_topics(Settings(topic_prefix=prefix, partitions=2), broker.bootstrap_servers)
    return prefix


@pytest.fixture
def send(broker: EmbeddedBroker, topic_prefix: str) -> Iterator[Any]:
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})

    def produce(value: bytes, key: str = "credit") -> None:
        producer.produce(f"{topic_prefix}.model-versions", key=key.encode(), value=value)
        assert producer.flush(10) == 0

    yield produce
    producer.flush(10)


def test_concurrent_predictions_always_see_a_whole_model(
    broker: EmbeddedBroker, topic_prefix: str, send: Any
) -> None:
    loaded: list[str] = []

    def loader(event: ModelVersionEvent) -> SlowModel:
        loaded.append(event.version)
        return SlowModel(event.version)

    subscriber = ModelSubscriber(
        "credit", broker.bootstrap_servers, topic_prefix=topic_prefix, loader=loader
    )
    with pytest.raises(RuntimeError, match="no champion of model 'credit'"):
        subscriber.predict({})
    answers: list[tuple[str, str]] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            if subscriber.current is not None:
                answers.append(subscriber.predict({"x": 1.0}))

    threads = [threading.Thread(target=serve) for _ in range(4)]
    with subscriber:
        for thread in threads:
            thread.start()
        try:
            for number in range(1, 9):
                send(_event(f"v{number}"))
                send(_event(f"o{number}", model_id="other"), key="other")
                assert subscriber.wait_for_version(f"v{number}", timeout=30), loaded
        finally:
            stop.set()
            for thread in threads:
                thread.join(10)
    assert subscriber.version == "v8"
    assert loaded == [f"v{n}" for n in range(1, 9)]  # never a model of another id
    assert subscriber.stats.swaps == 8
    assert len(answers) > 100
    torn = [answer for answer in answers if answer[0] != answer[1]]
    assert not torn, torn[:5]
    assert {first for first, _ in answers} <= {f"v{n}" for n in range(1, 9)}


def test_a_late_subscriber_finds_the_champion_and_skips_what_is_not_one(
    broker: EmbeddedBroker, topic_prefix: str, send: Any
) -> None:
    send(_event("v1"))
    send(_event("v9", model_id="other"), key="other")
    send(b"not json at all")
    send(_event("v2"))
    send(_event("v3", status="rejected"))
    send(b'{"type": "model_version", "model_id": "credit"}')
    swaps: list[tuple[str, str]] = []
    with ModelSubscriber(
        "credit",
        broker.bootstrap_servers,
        topic_prefix=topic_prefix,
        loader=lambda event: SlowModel(event.version),
        on_version=lambda event, model: swaps.append((event.version, model.first)),
    ) as subscriber:
        assert subscriber.wait_for_version("v2", timeout=30)
        wait_for(lambda: subscriber.stats.messages, lambda n: n >= 6, 30, "all six messages read")
        assert subscriber.stats.malformed == 2
        assert subscriber.version == "v2" and swaps[-1] == ("v2", "v2")
        assert subscriber.event is not None and subscriber.event.status == "champion"


def test_a_version_that_fails_to_load_keeps_the_current_model(
    broker: EmbeddedBroker, topic_prefix: str, send: Any
) -> None:
    def loader(event: ModelVersionEvent) -> SlowModel:
        if event.version == "broken":
            raise FileNotFoundError(event.artifact_uri)
        return SlowModel(event.version)

    with ModelSubscriber(
        "credit", broker.bootstrap_servers, topic_prefix=topic_prefix, loader=loader
    ) as subscriber:
        send(_event("v1"))
        assert subscriber.wait_for_version("v1", timeout=30)
        send(_event("broken"))
        wait_for(lambda: subscriber.stats.load_failures, lambda n: n >= 1, 30, "a load failure")
        assert subscriber.version == "v1"
        assert subscriber.predict({}) == ("v1", "v1")
        send(_event("v2"))  # a newer champion supersedes the one that failed
        assert subscriber.wait_for_version("v2", timeout=30)
        failures = subscriber.stats.load_failures
    assert subscriber.stats.load_failures == failures  # "broken" was not tried again


def test_a_champion_that_fails_to_load_is_retried_until_it_loads(
    broker: EmbeddedBroker, topic_prefix: str, send: Any
) -> None:
    attempts: list[str] = []

    def loader(event: ModelVersionEvent) -> SlowModel:
        attempts.append(event.version)
        if attempts.count(event.version) < 3:  # the artifact is not visible yet
            raise FileNotFoundError(event.artifact_uri)
        return SlowModel(event.version)

    with pytest.raises(ValueError, match="retry_seconds must be > 0, got 0"):
        ModelSubscriber("credit", broker.bootstrap_servers, retry_seconds=0)
    with ModelSubscriber(
        "credit",
        broker.bootstrap_servers,
        topic_prefix=topic_prefix,
        loader=loader,
        retry_seconds=0.05,
    ) as subscriber:
        send(_event("v1"))
        assert subscriber.wait_for_version("v1", timeout=30)  # without another event
        assert attempts == ["v1", "v1", "v1"]
        assert subscriber.stats.load_failures == 2 and subscriber.stats.swaps == 1


def _rollout_event(version: str, status: str, traffic: float | None = None) -> bytes:
    event = ModelVersionEvent.model_validate_json(_event(version, status=status))
    return event.model_copy(update={"traffic": traffic}).model_dump_json().encode()


def test_the_subscriber_follows_a_rollout_from_shadow_to_rollback_without_a_restart(
    broker: EmbeddedBroker, topic_prefix: str, send: Any
) -> None:
    send(_event("v1"))
    send(_rollout_event("v2", "shadow", 0.0))
    with ModelSubscriber(
        "credit",
        broker.bootstrap_servers,
        topic_prefix=topic_prefix,
        loader=lambda event: SlowModel(event.version),
    ) as subscriber:

        def challenger_is(version: str | None, status: str | None = None) -> bool:
            event = subscriber.challenger
            if version is None:
                return event is None
            return event is not None and (event.version, event.status) == (version, status)

        wait_for(lambda: challenger_is("v2", "shadow"), bool, 30, "the shadow challenger")
        # Shadow: the champion serves, the challenger's output comes back beside it.
        served = subscriber.serve({"x": 1}, key="anyone")
        assert (served.version, served.output) == ("v1", ("v1", "v1"))
        assert (served.shadow_version, served.shadow_output) == ("v2", ("v2", "v2"))

        send(_rollout_event("v2", "canary", 0.5))
        wait_for(lambda: challenger_is("v2", "canary"), bool, 30, "the canary")
        keys = [f"customer-{i}" for i in range(400)]
        routed = {key: subscriber.serve({}, key=key) for key in keys}
        to_challenger = {key for key, served in routed.items() if served.version == "v2"}
        assert 0.4 < len(to_challenger) / len(keys) < 0.6
        assert all(routed[key].shadow_version is None for key in keys)  # canary: no shadow
        assert {subscriber.serve({}, key=k).version for k in to_challenger} == {"v2"}  # sticky
        assert subscriber.serve({}).version == "v1"  # without a key the champion serves

        send(_rollout_event("v2", "rejected"))
        wait_for(lambda: challenger_is(None), bool, 30, "the rejected challenger dropped")
        assert {subscriber.serve({}, key=k).version for k in keys} == {"v1"}

        send(_rollout_event("v3", "shadow", 0.0))
        wait_for(lambda: challenger_is("v3", "shadow"), bool, 30, "a new challenger")
        send(_event("v3"))  # promoted
        send(_event("v1", status="candidate"))
        assert subscriber.wait_for_version("v3", timeout=30)
        wait_for(lambda: challenger_is(None), bool, 30, "no challenger after the promotion")
        assert subscriber.serve({}, key="x").output == ("v3", "v3")

        send(_event("v3", status="rolled_back"))  # worse live: back to the parent
        send(_event("v1"))
        assert subscriber.wait_for_version("v1", timeout=30)
        assert subscriber.serve({}, key="x").output == ("v1", "v1")
        assert subscriber.challenger is None
