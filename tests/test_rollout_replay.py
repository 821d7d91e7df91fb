"""Rollout decisions replayed from events: the window's evidence (numpy and ClickHouse)
and ``rollouts.jsonl`` of ``driftline backtest``."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from driftline.detectors.comparison import (
    VersionScores,
    WindowLabels,
    latency_p95,
    window_evidence,
)
from rollout_streams import (
    WINDOW,
    Step,
    monitor_yaml,
    reference_events,
    rollback_events,
    rollout_events,
)

from driftline.backtest import run_backtest

FAST = "{mode: shadow, min_labels: 200, canary_steps: [0.5, 1.0], watch_after_promotion: 2h"


def _write(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path


def _backtest(tmp_path: Path, events: list[dict[str, Any]], rollout: str) -> list[dict[str, Any]]:
    monitor = tmp_path / "monitor.yaml"
    monitor.write_text(monitor_yaml(rollout))
    out = tmp_path / "out"
    run_backtest(
        monitor,
        _write(tmp_path / "reference.jsonl", reference_events()),
        _write(tmp_path / "events.jsonl", events),
        out,
    )
    lines = (out / "rollouts.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _brief(lines: list[dict[str, Any]]) -> list[tuple[str, str, float, str, str]]:
    return [
        (line["decision"], line["mode"], line["traffic"], line["window_start"], line["reason"])
        for line in lines
    ]


def _at(window: int) -> str:
    return f"2026-01-01T{window:02d}:00:00Z"


# -- the window's evidence


def _brute_force(
    champion: VersionScores, challenger: VersionScores, labels: WindowLabels, deadline: float
) -> tuple[int, int, int, int, int, tuple[int, int], tuple[int, int]]:
    """The evidence by a loop over events, as the module docstring says it in words."""
    label = {
        i: v
        for i, v, t in zip(labels.event_ids, labels.labels, labels.times, strict=True)
        if t < deadline
    }
    a = dict(
        zip(
            champion.event_ids, zip(champion.predictions, champion.served, strict=True), strict=True
        )
    )
    b = dict(
        zip(
            challenger.event_ids,
            zip(challenger.predictions, challenger.served, strict=True),
            strict=True,
        )
    )
    pairs = disagree = n = only_b = only_a = 0
    for event, (pa, sa) in a.items():
        if event not in b or sa == b[event][1]:
            continue
        pb = b[event][0]
        pairs += 1
        disagree += pa != pb
        if event in label:
            n += 1
            only_b += pb == label[event] and pa != label[event]
            only_a += pa == label[event] and pb != label[event]

    def arm(scores: dict[str, tuple[str, bool]]) -> tuple[int, int]:
        labelled = [(p, label[e]) for e, (p, s) in scores.items() if s and e in label]
        return len(labelled), sum(p == y for p, y in labelled)

    return pairs, disagree, n, only_b, only_a, arm(b), arm(a)


@pytest.mark.parametrize("seed", range(20))
def test_window_evidence_counts_what_the_rules_say(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ids = np.array([f"e{i:04d}" for i in range(400)])

    def version(keep: float, served_share: float) -> VersionScores:
        at = np.sort(rng.choice(ids.size, int(keep * ids.size), replace=False))
        return VersionScores(
            event_ids=ids[at],
            predictions=rng.choice(["a", "b", "c"], at.size),
            served=rng.random(at.size) < served_share,
            latency_ms=np.where(rng.random(at.size) < 0.8, rng.exponential(10, at.size), np.nan),
        )

    champion, challenger = version(0.8, 0.7), version(0.6, 0.3)
    labelled = rng.permutation(ids.size)[:300]
    labels = WindowLabels(
        event_ids=ids[labelled],
        labels=rng.choice(["a", "b", "c"], labelled.size),
        times=rng.uniform(0, 100, labelled.size),
    )
    evidence = window_evidence(champion, challenger, labels, label_deadline=70.0)
    pairs, disagree, n, only_b, only_a, arm_b, arm_a = _brute_force(
        champion, challenger, labels, 70.0
    )
    assert (evidence.pairs, evidence.disagreements) == (pairs, disagree)
    assert (evidence.paired.n, evidence.paired.challenger_only, evidence.paired.champion_only) == (
        n,
        only_b,
        only_a,
    )
    assert (evidence.challenger.n, evidence.challenger.score) == arm_b
    assert (evidence.champion.n, evidence.champion.score) == arm_a
    p95 = np.nanpercentile
    assert evidence.latency_p95_ratio == pytest.approx(
        p95(challenger.latency_ms, 95, method="inverted_cdf")
        / p95(champion.latency_ms, 95, method="inverted_cdf"),
        rel=0.2,
    )


def test_latency_p95_is_clickhouse_quantile_exact() -> None:
    chdb = pytest.importorskip("chdb")
    rng = np.random.default_rng(5)
    for n in (1, 2, 19, 20, 21, 100, 999, 1000):
        values = rng.exponential(10, n).round(6)
        listed = ",".join(map(repr, values.tolist()))
        sql = f"SELECT quantileExact(0.95)(v) FROM (SELECT arrayJoin([{listed}]) AS v)"
        assert latency_p95(values) == float(chdb.query(sql, "CSV").data().strip())


# -- rollouts.jsonl


def test_a_better_challenger_steps_from_shadow_to_canary_and_is_promoted(tmp_path: Path) -> None:
    events = rollout_events(
        [Step("shadow"), Step("canary", 0.5), Step("watch"), Step("watch")],
        accuracy={"v1": 0.80, "v2": 0.92},
        per_window=2000,
    )
    lines = _backtest(tmp_path, events, FAST + "}")
    assert _brief(lines) == [
        ("step", "shadow", 0.5, _at(0), "not_worse"),
        ("promote", "canary", 1.0, _at(1), "not_worse"),
    ]
    step, promote = lines
    assert (step["champion"], step["challenger"], step["metric"]) == ("v1", "v2", "accuracy")
    assert step["lower"] > -0.01 and step["n"] == 2000
    assert 0.05 < step["estimate"] < 0.2
    assert promote["n"] >= 200 and promote["lower"] > -0.01
    assert len({line["decision_id"] for line in lines}) == 2


def test_a_worse_challenger_is_rejected_in_shadow(tmp_path: Path) -> None:
    events = rollout_events([Step("shadow")] * 3, accuracy={"v1": 0.85, "v2": 0.72})
    lines = _backtest(tmp_path, events, FAST + "}")
    assert _brief(lines) == [("reject", "shadow", 0.0, _at(0), "worse")]
    assert lines[0]["upper"] < -0.01


def test_a_promoted_champion_worse_live_is_rolled_back(tmp_path: Path) -> None:
    events = rollback_events()
    lines = _backtest(tmp_path, events, FAST + "}")
    assert _brief(lines) == [
        ("step", "shadow", 0.5, _at(0), "not_worse"),
        ("promote", "canary", 1.0, _at(1), "not_worse"),
        ("rollback", "watch", 0.0, _at(2), "worse"),
    ]
    rollback = lines[-1]
    assert (rollback["champion"], rollback["challenger"]) == ("v1", "v2")


@pytest.mark.parametrize(
    ("accuracy", "latency", "reason"),
    [
        ({"v1": 0.95, "v2": 0.05}, None, "guardrail:disagreement_rate"),
        ({"v1": 0.85, "v2": 0.85}, {"v1": 10.0, "v2": 20.0}, "guardrail:latency_p95_ratio"),
    ],
)
def test_a_guardrail_breach_rejects_at_once(
    tmp_path: Path, accuracy: dict[str, float], latency: dict[str, float] | None, reason: str
) -> None:
    events = rollout_events([Step("shadow")] * 2, accuracy=accuracy, latency_ms=latency)
    lines = _backtest(tmp_path, events, FAST + "}")
    assert _brief(lines) == [("reject", "shadow", 0.0, _at(0), reason)]


def test_labels_after_the_close_do_not_count_and_no_verdict_is_inconclusive(
    tmp_path: Path,
) -> None:
    events = rollout_events(
        [Step("shadow")] * 3, accuracy={"v1": 0.80, "v2": 0.92}, label_delay=3 * WINDOW
    )
    lines = _backtest(tmp_path, events, FAST + ", max_duration: 2h}")
    assert _brief(lines) == [("reject", "shadow", 0.0, _at(1), "inconclusive")]
    assert lines[0]["n"] == 0


def test_a_challenger_that_serves_from_the_start_is_a_canary(tmp_path: Path) -> None:
    events = rollout_events([Step("canary", 0.5)] * 2, accuracy={"v1": 0.80, "v2": 0.92})
    lines = _backtest(tmp_path, events, FAST.replace("shadow", "canary") + "}")
    assert _brief(lines) == [("promote", "canary", 1.0, _at(0), "not_worse")]


def test_without_a_rollout_section_no_rollouts_file_is_written(tmp_path: Path) -> None:
    events = rollout_events([Step("shadow")], accuracy={"v1": 0.80, "v2": 0.92})
    monitor = tmp_path / "monitor.yaml"
    monitor.write_text(monitor_yaml("{mode: direct}"))
    summary = run_backtest(
        monitor,
        _write(tmp_path / "reference.jsonl", reference_events()),
        _write(tmp_path / "events.jsonl", events),
        tmp_path / "out",
    )
    assert not (tmp_path / "out" / "rollouts.jsonl").exists()
    assert summary.rollout_decisions is None
    # Shadow predictions take no part in the window metrics: only the served ones count.
    assert summary.events.predictions == 1000
    assert summary.events.model_versions == {"v1": 1000}


def _batches(events: list[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    """The predictions as batches of one version and shadow flag each; feedback kept."""
    out: list[dict[str, Any]] = []
    groups: dict[tuple[str, bool], list[dict[str, Any]]] = {}
    for event in events:
        if event["type"] == "feedback":
            out.append(event)
            continue
        group = groups.setdefault((event["model_version"], event.get("shadow", False)), [])
        group.append(event)
    for (version, shadow), rows in sorted(groups.items()):
        for i in range(0, len(rows), size):
            chunk = rows[i : i + size]
            out.append(
                {
                    "type": "prediction_batch",
                    "model_id": chunk[0]["model_id"],
                    "model_version": version,
                    "shadow": shadow,
                    "event_ids": [e["event_id"] for e in chunk],
                    "timestamps": [e["timestamp"] for e in chunk],
                    "features": {"x": [e["features"]["x"] for e in chunk]},
                    "predictions": [e["prediction"] for e in chunk],
                    "latency_ms": [e["latency_ms"] for e in chunk],
                }
            )
    return out


def test_the_same_events_as_batches_or_shuffled_give_the_same_rollouts(tmp_path: Path) -> None:
    events = rollout_events(
        [Step("shadow"), Step("canary", 0.5), Step("watch")], accuracy={"v1": 0.8, "v2": 0.9}
    )
    resent = [e for e in events if e.get("shadow")][:50]  # re-sends deduplicate
    shuffled = events + resent
    random.Random(3).shuffle(shuffled)
    outputs = []
    for name, variant in (
        ("singles", events),
        ("shuffled", shuffled),
        ("batches", _batches(events, 300)),
    ):
        (tmp_path / name).mkdir()
        _backtest(tmp_path / name, variant, FAST + "}")
        outputs.append((tmp_path / name / "out" / "rollouts.jsonl").read_bytes())
    assert outputs[0] and outputs[0] == outputs[1] == outputs[2]


# -- regression: the paired differences of bounded absolute errors

MAE = (
    "{mode: shadow, metric: mae, loss_bound: 3, min_labels: 200, canary_steps: [0.5, 1.0],"
    " watch_after_promotion: 0s}"
)


def _regression_backtest(tmp_path: Path, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    monitor = tmp_path / "monitor.yaml"
    monitor.write_text(monitor_yaml(MAE, task="regression"))
    out = tmp_path / "out"
    run_backtest(
        monitor,
        _write(tmp_path / "reference.jsonl", reference_events(regression=True)),
        _write(tmp_path / "events.jsonl", events),
        out,
    )
    return [json.loads(line) for line in (out / "rollouts.jsonl").read_text().splitlines()]


def test_a_regression_challenger_with_smaller_errors_is_promoted(tmp_path: Path) -> None:
    events = rollout_events(
        [Step("shadow"), Step("canary", 0.5)],
        accuracy={"v1": 1.0, "v2": 0.5},  # error standard deviations
        regression=True,
    )
    lines = _regression_backtest(tmp_path, events)
    assert _brief(lines) == [
        ("step", "shadow", 0.5, _at(0), "not_worse"),
        ("promote", "canary", 1.0, _at(1), "not_worse"),
    ]
    # challenger - champion on the score 1 - min(|error|, 3) / 3: the MAE difference / 3
    # (about (0.80 - 0.40) / 3 = 0.13), estimated within its bounds
    step = lines[0]
    assert step["metric"] == "mae" and step["lower"] < 0.4 / 3 < step["upper"]
    assert 0.08 < step["estimate"] < 0.18


def test_a_regression_challenger_with_larger_errors_is_rejected(tmp_path: Path) -> None:
    events = rollout_events([Step("shadow")] * 2, accuracy={"v1": 0.5, "v2": 1.5}, regression=True)
    lines = _regression_backtest(tmp_path, events)
    assert _brief(lines) == [("reject", "shadow", 0.0, _at(0), "worse")]


def test_log_loss_rejects_a_challenger_whose_probabilities_are_worse(tmp_path: Path) -> None:
    """Classes with probabilities compared by log loss: the challenger's classes are as
    often right as the champion's, but it is 99% sure of each, wrong ones included;
    accuracy sees no difference, log loss rejects it."""
    events = rollout_events(
        [Step("shadow")] * 2, accuracy={"v1": 0.8, "v2": 0.8}, scores=True, seed=11
    )
    for event in events:
        if event["type"] == "prediction" and event["model_version"] == "v2":
            event["score"] = 0.99 if event["prediction"] == 1 else 0.01
    lines = _backtest(tmp_path, events, "{mode: shadow, metric: log_loss, loss_bound: 5}")
    assert _brief(lines) == [("reject", "shadow", 0.0, _at(1), "worse")]
    # mean log loss about 0.58 against 0.93: a score difference near -0.35 / 5
    assert lines[0]["metric"] == "log_loss" and lines[0]["lower"] < -0.07 < lines[0]["upper"]
    (tmp_path / "accuracy").mkdir()
    accuracy = _backtest(tmp_path / "accuracy", events, "{mode: shadow}")
    assert all(line["reason"] != "worse" for line in accuracy)


def test_log_loss_does_not_judge_a_challenger_on_probabilities_it_never_gave(
    tmp_path: Path,
) -> None:
    """A shadow version logged without probabilities: its events are not evidence (a
    missing probability would otherwise score as the worst loss and reject it)."""
    events = rollout_events(
        [Step("shadow")] * 2, accuracy={"v1": 0.8, "v2": 0.8}, scores=True, seed=12
    )
    for event in events:
        if event["type"] == "prediction" and event["model_version"] == "v2":
            del event["score"]
    assert _backtest(tmp_path, events, "{mode: shadow, metric: log_loss, loss_bound: 5}") == []
