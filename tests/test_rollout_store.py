"""A rollout window's evidence pushed down to ClickHouse equals the backtest's (numpy).

Events go through the ingest path (``route_messages`` into real chDB, served and
shadow predictions apart) and, as JSONL lines, through the backtest's reader.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from driftline.detectors.promotion import RolloutEvidence
from driftline.schemas.monitor import MonitorConfig
from driftline.streams.ingest import RawMessage, route_messages
from rollout_streams import START, WINDOW, Step, monitor_yaml, rollout_events

from driftline.backtest.reader import RowReader
from driftline.backtest.rollouts import FileWindows
from driftline.store import EmbeddedStore, migrate
from driftline.store.rollouts import window_evidence_sql
from driftline.store.rows import KafkaPosition


def _events() -> list[dict[str, Any]]:
    """Shadow, canary and watch windows, with what real traffic adds: a third version
    serving some requests, re-sent and orphan shadow predictions, labels re-sent after
    the window closed, latencies and probabilities missing, class scores in place of a
    score, string classes."""
    events = rollout_events(
        [Step("shadow"), Step("canary", 0.4), Step("watch")],
        accuracy={"v1": 0.8, "v2": 0.86},
        per_window=600,
        seed=4,
        scores=True,
    )
    rng = random.Random(7)
    extra: list[dict[str, Any]] = []
    for event in events:
        if event["type"] == "prediction":
            if rng.random() < 0.1:
                del event["latency_ms"]
            chance = rng.random()
            if chance < 0.04:
                del event["score"]  # no probability: the worst log loss
            elif chance < 0.08:  # the positive class's entry of class scores stands in
                event["scores"] = {"1": event["score"], "0": 1 - event.pop("score")}
            if rng.random() < 0.05 and not event.get("shadow"):
                event["model_version"] = "v3"  # served by another version
            if event.get("shadow") and rng.random() < 0.05:
                extra.append(event | {"prediction": 1 - event["prediction"]})  # re-sent
        elif rng.random() < 0.05:  # a corrected label, after the window closed
            extra.append(event | {"label": 1 - event["label"], "timestamp": START + 10 * WINDOW})
    orphans = rollout_events(
        [Step("shadow")], accuracy={"v1": 0.8, "v2": 0.8}, per_window=50, seed=5, prefix="o"
    )
    extra += [e for e in orphans if e.get("shadow")]
    for event in events + extra:
        if event["type"] == "prediction" and event["prediction"] == 1 and rng.random() < 0.5:
            event["prediction"] = "1"  # the same class, sent as a string
    return events + extra + _regression_events()


def _regression_events() -> list[dict[str, Any]]:
    """The same shapes for a regression model ``r``: errors of two sizes, some missing
    labels, a label that is not a number, a prediction far beyond the loss bound."""
    events = rollout_events(
        [Step("shadow"), Step("canary", 0.4), Step("watch")],
        accuracy={"v1": 1.0, "v2": 0.7},
        per_window=400,
        seed=6,
        model_id="r",
        prefix="q",
        regression=True,
    )
    for i, event in enumerate(events):
        if event["type"] == "feedback" and i % 17 == 0:
            event["label"] = "n/a" if i % 2 else 1e6  # wrong kind; an error beyond the bound
        elif event["type"] == "feedback" and i % 23 == 0:
            event["label"] = 0.0  # no relative error (mape)
    return events


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedStore, bytes]]:
    store = EmbeddedStore(Path(tmp_path_factory.mktemp("rollouts")) / "chdb", "driftline")
    migrate(store)
    lines = [orjson.dumps(event) for event in _events()]
    for first in range(0, len(lines), 700):  # groups in file order, offsets rising
        group = [
            RawMessage(line, KafkaPosition("t", 0, first + i))
            for i, line in enumerate(lines[first : first + 700])
        ]
        outcome = route_messages(group, 1 << 20, now=START + 100 * WINDOW)
        assert not outcome.dead_letters
        for table, data in (
            ("predictions", outcome.predictions),
            ("shadow_predictions", outcome.shadow_predictions),
            ("feedback", outcome.feedback),
        ):
            if data is not None:
                store.insert_arrow(table, data)
    yield store, b"\n".join(lines)
    store.close()


def _evidence_both_ways(
    loaded: tuple[EmbeddedStore, bytes], config: MonitorConfig, champion: str, challenger: str
) -> tuple[FileWindows, list[RolloutEvidence]]:
    """The backtest's evidence of every window, checked equal to the store's."""
    store, jsonl = loaded
    reader = RowReader(config)
    reader.read(jsonl.splitlines())
    windows = FileWindows(config, reader.rows("events"))
    seen = []
    for start in windows.starts.tolist():
        expected = windows.evidence(champion, challenger, start)
        got = window_evidence_sql(
            store,
            model_id=config.model_id,
            champion=champion,
            challenger=challenger,
            window_start=start,
            window_end=start + WINDOW,
            label_deadline=start + WINDOW + config.allowed_lateness_seconds,
            loss_bound=config.rollout_loss_bound,
            loss=config.rollout_metric,
            positive_label=config.performance.positive_label,
        )
        assert got == expected, start
        seen.append(expected)
    return windows, seen


@pytest.mark.parametrize(("champion", "challenger"), [("v1", "v2"), ("v2", "v1"), ("v1", "v3")])
def test_the_store_gives_the_backtests_evidence_in_every_window(
    loaded: tuple[EmbeddedStore, bytes], champion: str, challenger: str
) -> None:
    config = MonitorConfig.from_yaml(monitor_yaml("{mode: shadow}"))
    windows, seen = _evidence_both_ways(loaded, config, champion, challenger)
    assert windows.starts.tolist() == [START, START + WINDOW, START + 2 * WINDOW]
    if challenger != "v3":  # every kind of evidence is there to compare
        assert any(e.paired.n and e.disagreements for e in seen)
        assert any(e.challenger.n and e.champion.n for e in seen)
        assert all(e.latency_p95_ratio is not None for e in seen)


@pytest.mark.parametrize("loss", ["mae", "rmse", "mape"])
@pytest.mark.parametrize(("champion", "challenger"), [("v1", "v2"), ("v2", "v1")])
def test_the_store_gives_the_backtests_loss_evidence_in_every_window(
    loaded: tuple[EmbeddedStore, bytes], champion: str, challenger: str, loss: str
) -> None:
    rollout = f"{{mode: shadow, metric: {loss}, loss_bound: 2.5}}"
    config = MonitorConfig.from_yaml(monitor_yaml(rollout, model_id="r", task="regression"))
    windows, seen = _evidence_both_ways(loaded, config, champion, challenger)
    assert windows.loss_bound == 2.5 and len(windows.starts) == 3
    assert all(e.disagreements == 0 for e in seen)
    # the last (watch) window: v2 serves, v1 scores in shadow; both gains and losses count
    last = seen[-1]
    assert last.paired.n and last.paired.challenger_only and last.paired.champion_only


@pytest.mark.parametrize(("champion", "challenger"), [("v1", "v2"), ("v2", "v1")])
def test_the_store_gives_the_backtests_log_loss_evidence_in_every_window(
    loaded: tuple[EmbeddedStore, bytes], champion: str, challenger: str
) -> None:
    config = MonitorConfig.from_yaml(
        monitor_yaml("{mode: shadow, metric: log_loss, loss_bound: 3}")
    )
    windows, seen = _evidence_both_ways(loaded, config, champion, challenger)
    assert windows.loss_bound == 3.0 and len(windows.starts) == 3
    shadow, canary, watch = seen
    for paired in (shadow, watch):  # predicted classes still disagree; losses, not 0/1
        assert paired.disagreements and paired.paired.n
        assert paired.paired.challenger_only % 1 and paired.paired.champion_only % 1
    assert canary.challenger.n and canary.champion.n and canary.challenger.score % 1
