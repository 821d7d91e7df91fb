"""The model registry on a real chDB store: versions, champion, promote, rollback."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from driftline.retrainer.registry import (
    ModelRegistry,
    RegistryError,
    VersionRecord,
    version_for_request,
)
from driftline.schemas.events import ModelVersionEvent

from driftline.broker import EmbeddedBroker
from driftline.cli import main
from driftline.kafka import create_topics
from driftline.settings import Settings
from driftline.store import EmbeddedStore, migrate


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[ModelRegistry]:
    store = EmbeddedStore(tmp_path / "chdb", "registry_test")
    migrate(store)
    yield ModelRegistry(store)
    store.close()


def _version(
    version: str, status: str = "candidate", at: float = 100.0, **extra: object
) -> VersionRecord:
    return VersionRecord.model_validate(
        {
            "model_id": "credit",
            "version": version,
            "artifact_uri": f"file:///artifacts/credit/{version}",
            "status": status,
            "created_at": at,
            "updated_at": at,
            **extra,
        }
    )


def test_a_version_round_trips_with_its_provenance(registry: ModelRegistry) -> None:
    record = _version(
        "v2",
        "champion",
        parent_version="v1",
        metrics={"candidate.accuracy": 0.93, "champion.accuracy": 0.61},
        request_id="req-1",
        data_from=1767225600.0,
        data_to=1767229200.5,
        alert_ids=("a1", "a2"),
        decision="promote: better",
        train_rows=800,
        holdout_rows=200,
        training_seconds=1.25,
        device="cpu",
    )
    registry.record(record)
    assert registry.get("credit", "v2") == record
    assert registry.by_request("credit", "req-1") == [record]
    assert registry.by_request("credit", "req-2") == []
    assert registry.get("credit", "nope") is None


def test_the_newest_champion_is_current_and_promote_demotes_the_old_one(
    registry: ModelRegistry,
) -> None:
    registry.record(_version("v1", "champion", at=100.0), _version("v2", "rejected", at=200.0))
    assert registry.champion("credit").version == "v1"

    promoted = registry.promote("credit", "v2")
    assert promoted.status == "champion" and promoted.updated_at > 200.0
    states = {record.version: record.status for record in registry.versions("credit")}
    assert states == {"v1": "candidate", "v2": "champion"}
    assert registry.champion("credit").version == "v2"


def test_rollback_restores_the_parent_or_the_named_version(registry: ModelRegistry) -> None:
    registry.record(
        _version("v1", "candidate", at=100.0),
        _version("v2", "candidate", at=200.0, parent_version="v1"),
        _version("v3", "champion", at=300.0, parent_version="v2"),
    )
    done = registry.rollback("credit")
    assert (done.rolled_back.version, done.rolled_back.status) == ("v3", "rolled_back")
    assert (done.restored.version, done.restored.status) == ("v2", "champion")
    assert registry.champion("credit").version == "v2"

    done = registry.rollback("credit", to="v1")
    assert done.rolled_back.version == "v2"
    states = {record.version: record.status for record in registry.versions("credit")}
    assert states == {"v1": "champion", "v2": "rolled_back", "v3": "rolled_back"}
    assert done.restored.to_event().status == "champion"


def test_unknown_models_and_versions_are_named(registry: ModelRegistry) -> None:
    with pytest.raises(RegistryError, match="unknown model 'ghost'"):
        registry.promote("ghost", "v1")
    with pytest.raises(RegistryError, match="unknown model 'ghost'"):
        registry.rollback("ghost")
    registry.record(_version("v1", "champion"))
    with pytest.raises(RegistryError, match=r"has no version 'v9' \(known: v1\)"):
        registry.promote("credit", "v9")
    with pytest.raises(RegistryError, match="has no parent version"):
        registry.rollback("credit")
    with pytest.raises(RegistryError, match="is the champion already"):
        registry.rollback("credit", to="v1")


def test_rollback_without_a_champion_is_refused(registry: ModelRegistry) -> None:
    registry.record(_version("v1", "rejected"))
    with pytest.raises(RegistryError, match="has no champion to roll back"):
        registry.rollback("credit")


def test_version_names_are_a_function_of_the_request() -> None:
    assert version_for_request("req-1") == version_for_request("req-1")
    assert version_for_request("req-1") != version_for_request("req-2")
    assert version_for_request("x" * 500).startswith("r-") and len(version_for_request("x")) == 18


def _published(bootstrap: str, topic: str) -> list[ModelVersionEvent]:
    """Every event on ``topic`` now (all partitions, up to their high watermarks)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused"})
    events = []
    try:
        for partition in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), 10)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, partition, low)])
            while True:
                message = consumer.poll(10)
                assert message is not None, f"{topic}[{partition}] ended early"
                if message.error():
                    continue
                events.append(ModelVersionEvent.model_validate_json(message.value()))
                if message.offset() >= high - 1:
                    break
    finally:
        consumer.close()
    return events


@pytest.mark.e2e
def test_the_models_commands_list_promote_and_roll_back(
    broker: EmbeddedBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    prefix = f"models{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap_servers)
    monkeypatch.setenv("DRIFTLINE_TOPIC_PREFIX", prefix)
    monkeypatch.delenv("DRIFTLINE_CLICKHOUSE_URL", raising=False)
    data = tmp_path / "data"
    create_topics(Settings(topic_prefix=prefix, partitions=1), broker.bootstrap_servers)
    store = EmbeddedStore(data / "chdb", "driftline")
    migrate(store)
    ModelRegistry(store).record(
        _version("v1", "champion", at=100.0),
        _version("v2", "rejected", at=200.0, parent_version="v1"),
    )
    store.close()

    def run(*argv: str) -> tuple[int, str, str]:
        code = main([*argv, "--data-dir", str(data)])
        out, err = capsys.readouterr()
        return code, out, err

    def states() -> dict[str, str]:
        code, out, _ = run("models", "list", "--json", "--model-id", "credit")
        assert code == 0
        return {row["version"]: row["status"] for row in map(json.loads, out.splitlines())}

    assert states() == {"v1": "champion", "v2": "rejected"}
    assert run("models", "promote", "--model-id", "credit", "--version", "v2")[0] == 0
    assert states() == {"v1": "candidate", "v2": "champion"}
    code, _, err = run("models", "promote", "--model-id", "credit", "--version", "v9")
    assert code == 2 and "has no version 'v9'" in err
    code, _, err = run("models", "rollback", "--model-id", "ghost")
    assert code == 2 and "unknown model 'ghost'" in err
    assert run("models", "rollback", "--model-id", "credit")[0] == 0
    assert states() == {"v1": "champion", "v2": "rolled_back"}

    events = _published(broker.bootstrap_servers, f"{prefix}.model-versions")
    assert [(e.version, e.status) for e in events] == [
        ("v2", "champion"),
        ("v2", "rolled_back"),
        ("v1", "champion"),
    ]
