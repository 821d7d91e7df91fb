"""The rollout's confidence sequences (driftline.detectors.rollout): their coverage holds
under continuous monitoring, simulated over many streams checked after every window, where
a fixed-sample test checked the same way does not; decisions keep their error level and
find a 3-point difference."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from driftline.detectors.rollout import (
    ArmCounts,
    DifferenceSequence,
    PairedCounts,
    bernoulli_sequence,
    decide,
    paired_sequence,
    two_arm_sequence,
)
from scipy.stats import norm

ALPHA = 0.05
STREAMS = 2000
WINDOWS = 40
PER_WINDOW = 100


def _tolerance(rate: float, runs: int) -> float:
    """Three simulation standard errors above ``rate``."""
    return rate + 3 * np.sqrt(rate * (1 - rate) / runs)


def _paired_streams(
    p10: float, p01: float, seed: int, windows: int = WINDOWS, per_window: int = PER_WINDOW
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative (n, challenger-only, champion-only) per stream and window."""
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(per_window, [p10, p01, 1 - p10 - p01], size=(STREAMS, windows))
    n = np.cumsum(np.full((STREAMS, windows), per_window), axis=1)
    return n, np.cumsum(draws[..., 0], axis=1), np.cumsum(draws[..., 1], axis=1)


def _paired_bounds(n: np.ndarray, s10: np.ndarray, s01: np.ndarray) -> tuple[np.ndarray, ...]:
    lo, hi = bernoulli_sequence(
        np.concatenate([s10.ravel(), s01.ravel()]),
        np.concatenate([n.ravel(), n.ravel()]),
        ALPHA / 2,
    )
    size = n.size
    lower = (lo[:size] - hi[size:]).reshape(n.shape)
    upper = (hi[:size] - lo[size:]).reshape(n.shape)
    return lower, upper


def test_paired_sequence_covers_the_difference_at_every_window_at_once() -> None:
    """Equal versions (d = 0), checked after each of 40 windows: the share of streams in
    which the sequence ever excludes 0 stays within alpha; a fixed-sample 95% interval
    checked the same way excludes it far more often."""
    n, s10, s01 = _paired_streams(0.06, 0.06, seed=1)
    lower, upper = _paired_bounds(n, s10, s01)
    ever_missed = np.any((lower > 0) | (upper < 0), axis=1).mean()
    assert ever_missed <= _tolerance(ALPHA, STREAMS), ever_missed
    # the naive test: a Wald interval on the paired differences, looked at every window
    d = (s10 - s01) / n
    variance = (s10 + s01) / n - d**2
    half = norm.ppf(1 - ALPHA / 2) * np.sqrt(variance / n)
    naive_missed = np.any(np.abs(d) > half, axis=1).mean()
    assert naive_missed > 2 * ALPHA, naive_missed
    # each single look of the naive test is fine: the problem is looking again
    assert abs(np.mean(np.abs(d[:, -1]) > half[:, -1]) - ALPHA) < 0.02


def test_two_arm_sequence_covers_the_difference_at_every_window_at_once() -> None:
    rng = np.random.default_rng(2)
    correct = rng.binomial(PER_WINDOW, [0.9, 0.9], size=(STREAMS, WINDOWS, 2))
    scores = np.cumsum(correct, axis=1)
    n = np.cumsum(np.full((STREAMS, WINDOWS), PER_WINDOW), axis=1)
    lo, hi = bernoulli_sequence(
        np.concatenate([scores[..., 0].ravel(), scores[..., 1].ravel()]),
        np.concatenate([n.ravel(), n.ravel()]),
        ALPHA / 2,
    )
    size = n.size
    lower, upper = lo[:size] - hi[size:], hi[:size] - lo[size:]
    missed = np.any(((lower > 0) | (upper < 0)).reshape(n.shape), axis=1).mean()
    assert missed <= _tolerance(ALPHA, STREAMS), missed


@pytest.mark.parametrize("mean", [0.02, 0.5, 0.93])
def test_the_mixture_bound_holds_for_any_bounded_observations(mean: float) -> None:
    """Not only 0/1 events: scores in [0, 1] (Beta distributed) with the same mean."""
    rng = np.random.default_rng(int(mean * 100))
    concentration = 4.0
    x = rng.beta(mean * concentration, (1 - mean) * concentration, size=(STREAMS, WINDOWS * 10))
    sums = np.cumsum(x, axis=1)[:, 9::10]
    trials = np.broadcast_to(np.arange(10, WINDOWS * 10 + 1, 10), sums.shape)
    lo, hi = bernoulli_sequence(sums.ravel(), trials.ravel(), ALPHA)
    missed = np.any(((lo > mean) | (hi < mean)).reshape(sums.shape), axis=1).mean()
    assert missed <= _tolerance(ALPHA, STREAMS), missed


@pytest.mark.parametrize("loss", ["mae", "rmse", "mape", "log_loss"])
def test_paired_loss_scores_cover_the_difference_at_every_window_at_once(loss: str) -> None:
    """Versions with the same loss distribution (d = 0; regression errors, or for log
    loss calibrated probabilities of the same sharpness), their per-event scores as the
    rollout computes them (``event_scores``), checked after each of 40 windows: the
    paired sequence ever excludes 0 in at most alpha of the streams."""
    from driftline.detectors.comparison import SCORE_UNITS, event_scores

    rng = np.random.default_rng({"mae": 3, "rmse": 4, "mape": 5, "log_loss": 6}[loss])
    streams, size = STREAMS // 4, (STREAMS // 4) * WINDOWS * PER_WINDOW
    labelled = np.ones(size, dtype=bool)
    if loss == "log_loss":
        chance = rng.beta(0.7, 0.7, size)  # each event's true probability of class 1
        truth = np.where(rng.random(size) < chance, "1", "0")

        def said() -> np.ndarray:  # a calibrated model that sees the chance with noise
            return 1 / (1 + np.exp(-(np.log(chance / (1 - chance)) + rng.normal(0, 0.5, size))))

        champion = event_scores(said(), truth, labelled, 3.0, loss)
        challenger = event_scores(said(), truth, labelled, 3.0, loss)
    else:
        truth = rng.normal(2.0, 1.0, size)
        champion = event_scores(truth + rng.normal(0, 0.8, size), truth, labelled, 2.0, loss)
        challenger = event_scores(truth + rng.normal(0, 0.8, size), truth, labelled, 2.0, loss)
    gain = (challenger - champion).reshape(streams, WINDOWS, PER_WINDOW)
    s10 = np.cumsum(np.clip(gain, 0, None).sum(axis=2), axis=1) / SCORE_UNITS
    s01 = np.cumsum(np.clip(-gain, 0, None).sum(axis=2), axis=1) / SCORE_UNITS
    n = np.cumsum(np.full((streams, WINDOWS), PER_WINDOW), axis=1)
    assert s10[:, -1].mean() > 0 and abs(s10[:, -1].mean() - s01[:, -1].mean()) < 5
    lower, upper = _paired_bounds(n, s10, s01)
    missed = np.any((lower > 0) | (upper < 0), axis=1).mean()
    assert missed <= _tolerance(ALPHA, streams), missed


def _decisions(n: np.ndarray, s10: np.ndarray, s01: np.ndarray, margin: float) -> np.ndarray:
    """The first decision of each stream: 1 promote, -1 reject, 0 none by the end."""
    lower, upper = _paired_bounds(n, s10, s01)
    promote, reject = lower > -margin, upper < -margin
    first = np.full(n.shape[0], 0)
    decided = promote | reject
    index = np.argmax(decided, axis=1)
    any_decided = decided.any(axis=1)
    rows = np.arange(n.shape[0])
    first[any_decided] = np.where(promote[rows, index], 1, -1)[any_decided]
    return first


def test_decisions_keep_their_error_level_and_find_three_points() -> None:
    margin = 0.01
    # equal versions: rejecting one (d = 0 >= -margin) is the wrong decision
    equal = _decisions(*_paired_streams(0.06, 0.06, seed=3), margin)
    assert np.mean(equal == -1) <= _tolerance(ALPHA, STREAMS)
    # 3 points worse: promoting it is wrong; rejecting it is found
    worse = _decisions(*_paired_streams(0.04, 0.07, seed=4, windows=200), margin)
    assert np.mean(worse == 1) <= _tolerance(ALPHA, STREAMS)
    assert np.mean(worse == -1) >= 0.9
    # 3 points better: promoted
    better = _decisions(*_paired_streams(0.07, 0.04, seed=5), margin)
    assert np.mean(better == 1) >= 0.9
    assert np.mean(better == -1) <= _tolerance(ALPHA, STREAMS)


def test_windows_merge_by_addition_and_give_one_sequence() -> None:
    windows = [PairedCounts(n=500, challenger_only=31, champion_only=20) for _ in range(6)]
    total = sum(windows, PairedCounts())
    assert total == PairedCounts(n=3000, challenger_only=186, champion_only=120)
    assert paired_sequence(total) == paired_sequence(
        PairedCounts(n=3000, challenger_only=186, champion_only=120)
    )
    arms = sum([ArmCounts(n=10, score=9)] * 3, ArmCounts())
    assert arms == ArmCounts(n=30, score=27)


def test_more_evidence_narrows_the_sequence_and_no_evidence_decides_nothing() -> None:
    small = paired_sequence(PairedCounts(n=500, challenger_only=35, champion_only=20))
    large = paired_sequence(PairedCounts(n=5000, challenger_only=350, champion_only=200))
    assert large.upper - large.lower < (small.upper - small.lower) / 2
    assert small.lower < small.estimate < small.upper
    empty = paired_sequence(PairedCounts())
    assert (empty.lower, empty.upper) == (-1.0, 1.0)
    assert decide(empty, margin=0.01, min_labels=0) == "continue"
    assert two_arm_sequence(ArmCounts(), ArmCounts(n=5, score=5)).n == 0


def test_bad_input_is_refused_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match="alpha"):
        bernoulli_sequence([1], [2], alpha=1.5)
    with pytest.raises(ValueError, match="successes"):
        bernoulli_sequence([3], [2], alpha=0.05)
    with pytest.raises(ValueError, match="margin"):
        decide(
            DifferenceSequence(estimate=0, lower=0, upper=0, n=1, alpha=0.05),
            margin=-1,
            min_labels=0,
        )


# --------------------------------------------------------------------------- the YAML section

BASE = "model_id: m\nfeatures: {x: numeric}\n"


def test_the_rollout_section_has_the_documented_defaults() -> None:
    from driftline.schemas.monitor import MonitorConfig, MonitorConfigError

    assert MonitorConfig.from_yaml(BASE).rollout is None  # no section: promote at once
    config = MonitorConfig.from_yaml(BASE + "rollout: {}\n")
    rollout = config.rollout
    assert rollout is not None
    assert (rollout.mode, rollout.margin, rollout.alpha, rollout.min_labels) == (
        "shadow",
        0.01,
        0.05,
        200,
    )
    assert rollout.canary_steps == (0.05, 0.25, 0.5, 1.0)
    assert (rollout.max_duration, rollout.watch_after_promotion) == (172_800.0, 86_400.0)
    assert (rollout.guardrails.latency_p95_ratio, rollout.guardrails.disagreement_rate) == (
        1.2,
        0.5,
    )
    assert config.rollout_metric == "accuracy"
    regression = "model_id: r\ntask: regression\nfeatures: {x: numeric}\n"
    canary = "rollout: {mode: canary, metric: mae, canary_steps: [0.1, 1.0], max_duration: 6h}\n"
    # A loss is compared per event once bounded: mae needs loss_bound.
    with pytest.raises(MonitorConfigError, match=r"rollout\.loss_bound: required with metric mae"):
        MonitorConfig.from_yaml(regression + canary)
    bounded = MonitorConfig.from_yaml(regression + canary.replace("6h}", "6h, loss_bound: 5}"))
    assert bounded.rollout is not None and bounded.rollout.loss_bound == 5.0
    assert bounded.rollout.max_duration == 21_600.0 and bounded.rollout_metric == "mae"
    rmse = canary.replace("metric: mae", "metric: rmse")
    with pytest.raises(MonitorConfigError, match=r"rollout\.loss_bound: required with metric rmse"):
        MonitorConfig.from_yaml(regression + rmse)
    # F1 (or ROC AUC) is no sum over events: no live comparison of it, only mode direct.
    binary = "model_id: b\nfeatures: {x: numeric}\n"
    f1 = "rollout: {mode: shadow, metric: f1}\n"
    with pytest.raises(MonitorConfigError, match=r"rollout\.metric: .* not 'f1'"):
        MonitorConfig.from_yaml(binary + f1)
    # Log loss is a mean over events, bounded in nats.
    log_loss = "rollout: {mode: shadow, metric: log_loss}\n"
    with pytest.raises(MonitorConfigError, match=r"loss_bound: required with metric log_loss"):
        MonitorConfig.from_yaml(binary + log_loss)
    bounded_log = MonitorConfig.from_yaml(binary + log_loss.replace("}", ", loss_bound: 5}"))
    assert (bounded_log.rollout_metric, bounded_log.rollout_loss_bound) == ("log_loss", 5.0)
    assert MonitorConfig.from_yaml(binary + "rollout: {loss_bound: 5}\n").rollout_loss_bound is None
    direct = MonitorConfig.from_yaml(binary + f1.replace("shadow,", "direct,"))
    assert direct.rollout_metric == "f1"


@pytest.mark.parametrize(
    ("section", "named"),
    [
        ("{mode: blue}", "rollout.mode"),
        ("{speed: 2}", "rollout.speed: unknown key"),
        ("{metric: mae}", "rollout.metric: 'mae' is not a binary_classification metric"),
        ("{canary_steps: [0.5, 0.2, 1.0]}", "shares must increase"),
        ("{canary_steps: [0.1, 0.5]}", "the last share is 1.0"),
        ("{canary_steps: [0, 1.0]}", "every share lies in (0, 1]"),
        ("{alpha: 0.7}", "rollout.alpha"),
        ("{margin: -0.01}", "rollout.margin"),
        ("{guardrails: {latency_p95_ratio: 0.9}}", "rollout.guardrails.latency_p95_ratio"),
        ("{guardrails: {disagreement: 0.2}}", "rollout.guardrails.disagreement: unknown key"),
        ("{max_duration: 0s}", "max_duration"),
    ],
)
def test_a_bad_rollout_section_names_the_key(section: str, named: str) -> None:
    from driftline.schemas.monitor import MonitorConfig, MonitorConfigError

    with pytest.raises(MonitorConfigError) as error:
        MonitorConfig.from_yaml(BASE + f"rollout: {section}\n")
    assert named in error.value.summary, error.value.summary


# --------------------------------------------------------------------------- the policy

HOUR = 3600.0


def _run(
    config: Any, evidence_per_window: list[Any], mode_start: float = 0.0
) -> tuple[Any, list[Any]]:
    from driftline.detectors.promotion import rollout_step, start_rollout

    state = start_rollout(config, model_id="m", champion="v1", challenger="v2", now=mode_start)
    records = []
    for i, evidence in enumerate(evidence_per_window):
        if state is None:
            break
        arms = state.phase == "canary"
        state, record = rollout_step(
            config,
            "accuracy",
            state,
            evidence(arms) if callable(evidence) else evidence,
            window_start=i * HOUR,
            window_end=(i + 1) * HOUR,
        )
        if record is not None:
            records.append(record)
    return state, records


def _live(p_challenger: float, p_champion: float, n: int, seed: int) -> Any:
    """Windows of evidence from versions with these accuracies (paired in shadow and
    watch, two arms in canary), drawn independently per window."""
    from driftline.detectors.promotion import RolloutEvidence

    rng = np.random.default_rng(seed)

    def window(arms: bool) -> RolloutEvidence:
        ch = rng.random(n) < p_challenger
        cp = rng.random(n) < p_champion
        if arms:
            return RolloutEvidence(
                challenger=ArmCounts(n=n // 2, score=int(ch[: n // 2].sum())),
                champion=ArmCounts(n=n // 2, score=int(cp[n // 2 :].sum())),
            )
        return RolloutEvidence(
            paired=PairedCounts(
                n=n,
                challenger_only=int(np.count_nonzero(ch & ~cp)),
                champion_only=int(np.count_nonzero(cp & ~ch)),
            ),
            pairs=n,
            disagreements=int(np.count_nonzero(ch != cp)),
        )

    return window


def test_a_better_challenger_goes_from_shadow_through_the_canary_steps_to_champion() -> None:
    from driftline.schemas.monitor import RolloutConfig

    config = RolloutConfig(mode="shadow", watch_after_promotion=2 * HOUR, max_duration=1e9)
    state, records = _run(config, [_live(0.95, 0.90, 4000, seed=1)] * 200)
    decisions = [(r.decision, r.traffic, r.mode) for r in records]
    assert decisions == [
        ("step", 0.05, "shadow"),
        ("step", 0.25, "canary"),
        ("step", 0.5, "canary"),
        ("promote", 1.0, "canary"),
    ], decisions
    assert state is None  # watched for two windows after the promotion, then over
    assert all(r.lower > -config.margin for r in records)
    assert len({r.decision_id for r in records}) == 4


def test_a_worse_challenger_is_rejected_in_shadow_and_never_served() -> None:
    from driftline.schemas.monitor import RolloutConfig

    state, records = _run(RolloutConfig(), [_live(0.86, 0.90, 2000, seed=2)] * 100)
    assert state is None
    assert [(r.decision, r.traffic, r.mode, r.reason) for r in records] == [
        ("reject", 0.0, "shadow", "worse")
    ]
    assert records[0].upper < -0.01


def test_a_promoted_champion_worse_live_is_rolled_back() -> None:
    from driftline.detectors.promotion import RolloutState, rollout_step
    from driftline.schemas.monitor import RolloutConfig

    config = RolloutConfig()
    watching = RolloutState(
        model_id="m",
        champion="v1",
        challenger="v2",
        phase="watch",
        traffic=1.0,
        started_at=0.0,
        phase_started_at=0.0,
    )
    window = _live(0.85, 0.90, 3000, seed=3)
    records = []
    state: RolloutState | None = watching
    for i in range(20):
        assert state is not None
        state, record = rollout_step(
            config,
            "accuracy",
            state,
            window(False),
            window_start=i * HOUR,
            window_end=(i + 1) * HOUR,
        )
        if record is not None:
            records.append(record)
            break
    assert [(r.decision, r.traffic, r.reason) for r in records] == [("rollback", 0.0, "worse")]
    assert state is None


def test_guardrails_inconclusive_rollouts_and_min_labels() -> None:
    from driftline.detectors.promotion import RolloutEvidence
    from driftline.schemas.monitor import RolloutConfig

    config = RolloutConfig(max_duration=3 * HOUR, min_labels=200)
    _, records = _run(config, [RolloutEvidence(pairs=100, disagreements=60)])
    assert [(r.decision, r.reason) for r in records] == [("reject", "guardrail:disagreement_rate")]
    _, records = _run(config, [RolloutEvidence(latency_p95_ratio=1.5)])
    assert [r.reason for r in records] == ["guardrail:latency_p95_ratio"]
    equal = RolloutEvidence(paired=PairedCounts(n=150, challenger_only=9, champion_only=9))
    state, records = _run(config, [equal] * 2)
    assert state is not None and not records  # 300 labels, no verdict yet
    _, records = _run(config, [equal] * 5)
    assert [(r.decision, r.reason, r.window_start) for r in records] == [
        ("reject", "inconclusive", 2 * HOUR)
    ]
    few = RolloutEvidence(paired=PairedCounts(n=150, challenger_only=100, champion_only=0))
    state, records = _run(config, [few])
    assert not records  # a clear lead on 150 labels waits for min_labels


def test_decisions_replay_with_the_same_ids() -> None:
    from driftline.schemas.monitor import RolloutConfig

    config = RolloutConfig(watch_after_promotion=0.0, max_duration=1e9)
    first = _run(config, [_live(0.95, 0.90, 4000, seed=4)] * 100)[1]
    again = _run(config, [_live(0.95, 0.90, 4000, seed=4)] * 100)[1]
    assert first == again and first[-1].decision == "promote"
