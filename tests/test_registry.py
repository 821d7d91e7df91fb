"""The model registry on a real chDB store: versions, champion, promote, rollback, and the
retrainer's handling of requests against it (idempotency, crash leftovers, bad input)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition
from driftline.detectors.profiles import build_profile
from driftline.retrainer.artifact import ArtifactStore
from driftline.retrainer.dataset import LabelledDataset
from driftline.retrainer.registry import (
    ModelRegistry,
    RegistryError,
    VersionRecord,
    version_for_request,
)
from driftline.retrainer.training import TrainedModel, TrainingOptions, train_model
from driftline.retrainer.worker import PROFILE_FILE, Retrainer, publish_version_profile
from driftline.schemas.codec import decode_ingest
from driftline.schemas.events import ModelVersionEvent, RetrainRequestEvent
from driftline.schemas.monitor import MonitorConfig
from test_retrainer_training import MajorityPredictor

from driftline.broker import EmbeddedBroker
from driftline.cli import main
from driftline.kafka import create_topics
from driftline.settings import Settings
from driftline.store import EmbeddedStore, migrate
from driftline.store.profiles import load_profile
from driftline.store.rollouts import save_rollout_windows
from driftline.store.rows import FeedbackRows, KafkaPosition, PredictionRows


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
        }
        | extra
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
        cpu_seconds=2.5,
        gpu_seconds=0.0,
        bytes_read=123_456,
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
    # v2 was rejected: its reference profile is in its artifact only
    profile = build_profile("credit", "v2", features={"x": [1.0, 2.0, 3.0]}, kinds={"x": "numeric"})
    v2_uri = ArtifactStore(tmp_path / "artifacts").save(
        MajorityPredictor("1", ("0", "1")),
        "credit",
        "v2",
        {},
        files={PROFILE_FILE: profile.to_json()},
    )
    ModelRegistry(store).record(
        _version("v1", "champion", at=100.0),
        _version("v2", "rejected", at=200.0, parent_version="v1", artifact_uri=v2_uri),
    )
    assert load_profile(store, "credit", "v2") is None
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
    store = EmbeddedStore(data / "chdb", "driftline")
    promoted_profile = load_profile(store, "credit", "v2")
    store.close()
    assert promoted_profile is not None and promoted_profile.model_version == "v2"
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


# --- the retrainer's request handling on a real chDB store (publishing to a list) --------

START = 1_767_225_600.0
FAST_OPTIONS = TrainingOptions(
    hidden_layers=(16,), batch_size=64, max_epochs=15, patience=3, learning_rate=0.01, device="cpu"
)


def _credit_monitor(**training: object) -> MonitorConfig:
    return MonitorConfig.from_mapping(
        {
            "model_id": "credit",
            "features": {"x0": "numeric", "x1": "numeric", "region": "categorical"},
            "training": {"min_rows": 100, "holdout_fraction": 0.25, **training},
        }
    )


def _period(store: EmbeddedStore, offset: int, rows: int, drifted: bool) -> LabelledDataset:
    """Store ``rows`` labelled predictions from ``START + offset``; return them as a dataset."""
    rng = np.random.default_rng(offset)
    x0, x1 = rng.normal(size=(2, rows))
    labels = ((x0 - x1 > 0) if drifted else (x0 + x1 > 0)).astype(int)
    ids = [f"e{offset + i:06d}" for i in range(rows)]
    times = (START + offset + np.arange(rows, dtype=float)).tolist()
    regions = rng.choice(["north", "south"], rows).tolist()
    predictions, feedback = PredictionRows(), FeedbackRows()
    predictions.add(
        decode_ingest(
            orjson.dumps(
                {
                    "type": "prediction_batch",
                    "model_id": "credit",
                    "model_version": "v1",
                    "event_ids": ids,
                    "timestamps": times,
                    "features": {"x0": x0.tolist(), "x1": x1.tolist(), "region": regions},
                    "predictions": [0] * rows,
                }
            )
        ),
        KafkaPosition("predictions", 0, offset),
    )
    feedback.add(
        decode_ingest(
            orjson.dumps(
                {
                    "type": "feedback_batch",
                    "model_id": "credit",
                    "event_ids": ids,
                    "timestamps": [t + 5 for t in times],
                    "labels": labels.tolist(),
                }
            )
        ),
        KafkaPosition("feedback", 0, offset),
    )
    store.insert_arrow("predictions", predictions.build())
    store.insert_arrow("feedback", feedback.build())
    return LabelledDataset(
        features={"x0": x0, "x1": x1, "region": np.asarray(regions, dtype=object)},
        labels=labels.astype(str),
        timestamps=np.asarray(times),
        event_ids=np.asarray(ids),
    )


def _request(request_id: str, offset: float, rows: int) -> RetrainRequestEvent:
    return RetrainRequestEvent(
        request_id=request_id,
        model_id="credit",
        model_version="v1",
        reason=["alert-1"],
        data_from=START + offset,
        data_to=START + offset + rows,
        requested_at=START + offset + rows,
    )


@dataclass
class Loop:
    """A retrainer over a chDB store with a decayed champion ``v1`` and drifted rows."""

    store: EmbeddedStore
    retrainer: Retrainer
    published: list[ModelVersionEvent]
    artifacts: ArtifactStore


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Loop]:
    store = EmbeddedStore(tmp_path / "chdb", "retrain_loop")
    migrate(store)
    monitor = _credit_monitor()
    before = _period(store, 0, 600, drifted=False)
    _period(store, 600, 600, drifted=True)
    published: list[ModelVersionEvent] = []
    artifacts = ArtifactStore(tmp_path / "artifacts")
    retrainer = Retrainer(
        store, {"credit": monitor}, artifacts, published.append, options=FAST_OPTIONS
    )
    first, _ = train_model(before, monitor, FAST_OPTIONS)
    retrainer.register_initial(first, monitor, "v1", before)
    published.clear()
    yield Loop(store, retrainer, published, artifacts)
    store.close()


def test_a_request_trains_once_and_its_duplicate_only_publishes_again(loop: Loop) -> None:
    request = _request("req-1", 600, 600)
    outcome = loop.retrainer.handle(request)
    assert outcome.status == "registered" and outcome.record is not None
    record = outcome.record
    assert record.version == version_for_request("req-1") and record.status == "champion"
    assert record.metrics["candidate.accuracy"] > record.metrics["champion.accuracy"] + 0.2
    assert (record.train_rows, record.holdout_rows) == (450, 150)
    # what it cost: CPU time of the run, GPU time only on a GPU, the bytes of the rows read
    on_gpu = record.device.startswith("cuda")
    assert record.cpu_seconds > 0
    assert record.gpu_seconds == (record.training_seconds if on_gpu else 0.0)
    assert 600 * 8 * 3 < record.bytes_read < 600 * 200
    stored = loop.retrainer.registry.require("credit", record.version)
    cost = ("cpu_seconds", "gpu_seconds", "bytes_read", "training_seconds", "device")
    assert [getattr(stored, name) for name in cost] == [getattr(record, name) for name in cost]
    assert load_profile(loop.store, "credit", record.version).model_version == record.version
    assert (loop.artifacts.path_of(record.artifact_uri) / PROFILE_FILE).is_file()

    again = loop.retrainer.handle(request)
    assert again.status == "duplicate" and again.record is not None
    assert (again.record.version, again.record.artifact_uri) == (
        record.version,
        record.artifact_uri,
    )
    assert [(e.version, e.status) for e in loop.published] == [(record.version, "champion")] * 2
    registry = ModelRegistry(loop.store)
    assert [(r.version, r.status) for r in registry.versions("credit")] == [
        ("v1", "candidate"),
        (record.version, "champion"),
    ]


def test_a_restart_after_a_crash_before_the_row_replaces_the_leftover_artifact(
    loop: Loop,
) -> None:
    version = version_for_request("req-crash")
    leftover = MajorityPredictor("1", ("0", "1"))
    loop.artifacts.save(leftover, "credit", version, {"attempt": "crashed"})

    outcome = loop.retrainer.handle(_request("req-crash", 600, 600))
    assert outcome.registered and outcome.record is not None
    stored = loop.artifacts.metadata(outcome.record.artifact_uri)
    assert "attempt" not in stored["metadata"]
    assert stored["metadata"]["decision"] == outcome.record.decision
    model = loop.artifacts.load_predictor(outcome.record.artifact_uri)
    assert isinstance(model, TrainedModel)  # the retrained weights, not the leftover
    [row] = ModelRegistry(loop.store).by_request("credit", "req-crash")
    assert row.artifact_uri == outcome.record.artifact_uri
    assert not [
        p
        for p in loop.artifacts.directory_for("credit", version).parent.iterdir()
        if p.name.startswith(".")
    ]  # no staging or discarded copy left behind


def test_a_rejected_version_gets_its_profile_when_promoted_later(loop: Loop) -> None:
    loop.retrainer.monitors["credit"] = _credit_monitor(promotion_margin=0.99)
    outcome = loop.retrainer.handle(_request("req-rejected", 600, 600))
    assert outcome.record is not None and outcome.record.status == "rejected"
    assert outcome.record.decision.startswith("reject:")
    version = outcome.record.version
    assert load_profile(loop.store, "credit", version).model_version == "v1"  # not its own yet

    promoted = ModelRegistry(loop.store).promote("credit", version)
    assert publish_version_profile(loop.store, promoted)
    assert load_profile(loop.store, "credit", version).model_version == version
    assert not publish_version_profile(loop.store, promoted)  # once


def fail_training(train: LabelledDataset, monitor: MonitorConfig, options: Any) -> Any:
    """A user's training function with a bug."""
    raise KeyError("no column named 'income'")


class BrokenPredictor(MajorityPredictor):
    """A user's model whose predict fails."""

    def predict(self, features: Any) -> Any:
        raise IndexError("predict exploded")


def train_broken(train: LabelledDataset, monitor: MonitorConfig, options: Any) -> Any:
    """A user's training function whose model cannot predict."""
    return BrokenPredictor("1", ("0", "1"))


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("fail_training", "raised KeyError: \"no column named 'income'\""),
        ("train_broken", "failed while scoring the holdout: IndexError: predict exploded"),
    ],
)
def test_a_failing_user_function_skips_the_request_naming_it(
    loop: Loop, function: str, message: str
) -> None:
    path = f"{__name__}:{function}"
    loop.retrainer.monitors["credit"] = _credit_monitor(function=path)
    outcome = loop.retrainer.handle(_request("req-user", 600, 600))
    assert outcome.status == "skipped" and outcome.record is None
    assert f"training.function {path!r}" in outcome.reason and message in outcome.reason
    assert ModelRegistry(loop.store).by_request("credit", "req-user") == []
    assert loop.published == []


def test_too_few_labelled_rows_skip_the_request_naming_the_minimum(loop: Loop) -> None:
    outcome = loop.retrainer.handle(_request("req-small", 600, 50))
    assert outcome.status == "skipped"
    assert "50 labelled rows of model 'credit'" in outcome.reason
    assert "training.min_rows = 100" in outcome.reason
    assert loop.published == []


# --- rollouts: the challenger in shadow or canary ---------------------------------------


def test_a_rollout_has_one_challenger_with_its_mode_and_share(registry: ModelRegistry) -> None:
    registry.record(
        _version("v1", "champion", at=100.0),
        _version("v2", "candidate", at=200.0, parent_version="v1"),
        _version("v3", "rejected", at=300.0, parent_version="v1"),
    )
    assert registry.challenger("credit") is None
    (started,) = registry.start_rollout("credit", "v2", "canary", 0.25)
    assert (started.status, started.traffic) == ("canary", 0.25)
    assert registry.challenger("credit") == started
    assert registry.get("credit", "v2") == started  # the share is stored
    event = started.to_event()
    assert (event.status, event.traffic) == ("canary", 0.25)
    assert registry.champion("credit").version == "v1"  # the champion keeps serving

    # A new rollout supersedes the running one.
    superseded, shadow = registry.start_rollout("credit", "v3", "shadow")
    assert (superseded.version, superseded.status) == ("v2", "rejected")
    assert superseded.decision == "superseded by v3" and superseded.traffic is None
    assert (shadow.version, shadow.status, shadow.traffic) == ("v3", "shadow", 0.0)
    assert registry.challenger("credit").version == "v3"

    aborted = registry.abort_rollout("credit", "aborted by hand")
    assert (aborted.version, aborted.status, aborted.decision) == (
        "v3",
        "rejected",
        "aborted by hand",
    )
    assert registry.challenger("credit") is None
    states = {record.version: record.status for record in registry.versions("credit")}
    assert states == {"v1": "champion", "v2": "rejected", "v3": "rejected"}


def test_bad_rollouts_are_refused_naming_why(registry: ModelRegistry) -> None:
    registry.record(_version("v1", "champion"), _version("v2", "candidate", at=200.0))
    with pytest.raises(RegistryError, match="is the champion already"):
        registry.start_rollout("credit", "v1", "shadow")
    with pytest.raises(RegistryError, match="has no version 'v9'"):
        registry.start_rollout("credit", "v9", "shadow")
    with pytest.raises(RegistryError, match="shadow or canary mode, not 'direct'"):
        registry.start_rollout("credit", "v2", "direct")
    with pytest.raises(RegistryError, match="has no rollout running"):
        registry.abort_rollout("credit")
    with pytest.raises(RegistryError, match="unknown model 'ghost'"):
        registry.abort_rollout("ghost")


@pytest.mark.parametrize(("mode", "traffic"), [("shadow", 0.0), ("canary", 0.05)])
def test_with_a_rollout_section_a_winning_candidate_becomes_the_challenger(
    loop: Loop, mode: str, traffic: float
) -> None:
    loop.retrainer.monitors["credit"] = MonitorConfig.from_mapping(
        _credit_monitor().model_dump(exclude_none=True) | {"rollout": {"mode": mode}}
    )
    first = loop.retrainer.handle(_request("req-1", 600, 600)).record
    assert first is not None
    assert (first.status, first.traffic) == (mode, traffic)
    assert first.decision.endswith(f"challenger in {mode}")
    registry = ModelRegistry(loop.store)
    assert registry.champion("credit").version == "v1"  # nothing served changes yet
    challenger = registry.challenger("credit")
    assert challenger is not None
    assert (challenger.version, challenger.status, challenger.traffic) == (
        first.version,
        mode,
        traffic,
    )
    # A later winner supersedes it; both changes are published.
    second = loop.retrainer.handle(_request("req-2", 600, 600)).record
    assert second is not None and registry.challenger("credit").version == second.version
    assert [(e.version, e.status) for e in loop.published] == [
        (first.version, mode),
        (first.version, "rejected"),
        (second.version, mode),
    ]


def test_the_rollout_commands_start_show_and_abort_a_rollout(
    broker: EmbeddedBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    prefix = f"rollout{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap_servers)
    monkeypatch.setenv("DRIFTLINE_TOPIC_PREFIX", prefix)
    monkeypatch.delenv("DRIFTLINE_CLICKHOUSE_URL", raising=False)
    data = tmp_path / "data"
    create_topics(Settings(topic_prefix=prefix, partitions=1), broker.bootstrap_servers)
    store = EmbeddedStore(data / "chdb", "driftline")
    migrate(store)
    ModelRegistry(store).record(
        _version("v1", "champion", at=100.0),
        _version("v2", "candidate", at=200.0, parent_version="v1"),
    )
    store.close()

    def run(*argv: str) -> tuple[int, str, str]:
        code = main([*argv, "--data-dir", str(data)])
        out, err = capsys.readouterr()
        return code, out, err

    def status() -> dict[str, Any]:
        code, out, _ = run("rollout", "status", "--json", "--model-id", "credit")
        assert code == 0
        (line,) = out.splitlines()
        return json.loads(line)

    assert status()["challenger"] is None
    code, out, _ = run(
        "rollout",
        "start",
        "--model-id",
        "credit",
        "--version",
        "v2",
        "--mode",
        "canary",
        "--traffic",
        "0.25",
    )
    assert code == 0 and "credit v2 is canary" in out
    shown = status()
    assert (shown["champion"], shown["challenger"], shown["mode"], shown["traffic"]) == (
        "v1",
        "v2",
        "canary",
        0.25,
    )
    assert "estimate" not in shown  # no window judged yet
    code, out, _ = run("rollout", "status", "--model-id", "credit")
    assert "challenger=v2\tcanary\ttraffic=0.25\tno window judged yet" in out
    store = EmbeddedStore(data / "chdb", "driftline")
    window = {
        "model_id": "credit",
        "champion": "v1",
        "challenger": "v2",
        "phase": "canary",
        "traffic": 0.25,
        "window_start": 1_767_225_600.0,
        "estimate": 0.02,
        "lower": -0.005,
        "upper": 0.045,
        "n": 1800,
        "margin": 0.01,
        "decision": "",
        "reason": "",
    }
    save_rollout_windows(store, [window])
    store.close()
    shown = status()
    assert (shown["estimate"], shown["lower"], shown["upper"], shown["n"]) == (
        0.02,
        -0.005,
        0.045,
        1800,
    )
    assert shown["window_start"] == "2026-01-01T00:00:00Z"
    code, _, err = run(
        "rollout", "start", "--model-id", "credit", "--version", "v1", "--mode", "shadow"
    )
    assert code == 2 and "is the champion already" in err
    with pytest.raises(SystemExit):
        run(
            "rollout",
            "start",
            "--model-id",
            "credit",
            "--version",
            "v2",
            "--mode",
            "canary",
            "--traffic",
            "1.5",
        )
    assert "a canary share lies in (0, 1)" in capsys.readouterr().err
    assert run("rollout", "abort", "--model-id", "credit")[0] == 0
    assert status()["challenger"] is None
    code, _, err = run("rollout", "abort", "--model-id", "credit")
    assert code == 2 and "has no rollout running" in err

    events = _published(broker.bootstrap_servers, f"{prefix}.model-versions")
    assert [(e.version, e.status, e.traffic) for e in events] == [
        ("v2", "canary", 0.25),
        ("v2", "rejected", None),
    ]
