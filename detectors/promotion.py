"""The rollout policy: from a challenger's live evidence to promote, step, reject, rollback.

Pure and deterministic, like the alert policy: the caller passes each closed window's
evidence (:class:`RolloutEvidence`) and the previous :class:`RolloutState`, and gets the
new state and at most one :class:`RolloutRecord` back. The statistics are those of
:mod:`driftline.detectors.rollout`; ``d`` is challenger minus champion on the rollout
metric, positive when the challenger is better.

Phases
    ``shadow``: the challenger scores the champion's requests and serves nothing; the
    evidence is paired. A "not worse" verdict (lower bound of ``d`` above ``-margin``)
    moves it to the first canary share (decision ``step``). ``canary``: it serves
    ``canary_steps[i]`` of the traffic; each arm's labelled events are its evidence. A
    "not worse" verdict moves it to the next share; reaching share 1.0 is ``promote``.
    Each phase and share starts its evidence afresh, so that every verdict is taken at
    the traffic it allows (and keeps level ``alpha`` on its own). Mode ``canary`` starts
    at the first share; mode ``direct`` promotes at once (the caller does not start a
    rollout then).
Rejection
    A "worse" verdict (upper bound below ``-margin``) in any phase is ``reject``
    (reason ``worse``); a window whose label-free guardrail is breached rejects at once
    (reason ``guardrail:disagreement_rate`` or ``guardrail:latency_p95_ratio``); no
    verdict within ``max_duration`` of the rollout's start rejects (``inconclusive``).
Watch after promotion
    A promoted challenger becomes the champion; its parent keeps scoring in shadow for
    ``watch_after_promotion``. A "worse" verdict of the new champion against its parent
    then is ``rollback`` (traffic back to the parent); at the end of the watch the
    rollout is over (the state becomes ``None``).
Identifiers
    ``decision_id`` is the first 32 hex digits of SHA-256 over model id, champion,
    challenger, decision and window start: a replayed window gives the same id, so a
    restarted worker publishes nothing twice.

Examples
--------
>>> from driftline.schemas.monitor import RolloutConfig
>>> config = RolloutConfig(mode="shadow", min_labels=100)
>>> state = start_rollout(config, model_id="m", champion="v1", challenger="v2", now=0.0)
>>> evidence = RolloutEvidence(paired=PairedCounts(n=5000, challenger_only=400,
...                                                champion_only=200))
>>> state, record = rollout_step(config, "accuracy", state, evidence,
...                              window_start=0.0, window_end=3600.0)
>>> record.decision, record.traffic, state.phase
('step', 0.05, 'canary')
"""

from __future__ import annotations

import hashlib
from typing import Literal

from driftline.schemas.monitor import RolloutConfig
from pydantic import BaseModel, ConfigDict, Field

from .rollout import (
    ArmCounts,
    DifferenceSequence,
    PairedCounts,
    decide,
    paired_sequence,
    two_arm_sequence,
)

__all__ = [
    "RolloutEvidence",
    "RolloutRecord",
    "RolloutState",
    "add_evidence",
    "decision_id",
    "rollout_sequence",
    "rollout_step",
    "start_rollout",
]

Phase = Literal["shadow", "canary", "watch"]
Decision = Literal["promote", "step", "reject", "rollback"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RolloutEvidence(_Frozen):
    """One closed window's evidence about the challenger.

    ``paired``: labelled events both versions scored (shadow, and the watch after a
    promotion); ``challenger``/``champion``: each arm's labelled events (canary);
    ``pairs``/``disagreements``: scored pairs and those whose predictions differ
    (label-free); ``latency_p95_ratio``: the challenger's p95 latency over the
    champion's, when both were measured.

    Examples
    --------
    >>> RolloutEvidence(pairs=1000, disagreements=40).disagreements
    40
    """

    paired: PairedCounts = PairedCounts()
    challenger: ArmCounts = ArmCounts()
    champion: ArmCounts = ArmCounts()
    pairs: int = Field(default=0, ge=0)
    disagreements: int = Field(default=0, ge=0)
    latency_p95_ratio: float | None = None


class RolloutState(_Frozen):
    """A running rollout: who is compared, the phase and share, and the evidence since
    the phase (or share) began.

    Examples
    --------
    >>> RolloutState(model_id="m", champion="v1", challenger="v2", phase="shadow",
    ...              traffic=0.0, started_at=0.0, phase_started_at=0.0).traffic
    0.0
    """

    model_id: str
    champion: str
    challenger: str
    phase: Phase
    #: The challenger's served share of the traffic.
    traffic: float = Field(ge=0.0, le=1.0)
    started_at: float
    phase_started_at: float
    paired: PairedCounts = PairedCounts()
    challenger_arm: ArmCounts = ArmCounts()
    champion_arm: ArmCounts = ArmCounts()


class RolloutRecord(_Frozen):
    """One decision, as ``rollouts.jsonl`` and the ``model_version`` events carry it.

    Examples
    --------
    >>> RolloutRecord(decision_id="x", model_id="m", champion="v1", challenger="v2",
    ...     mode="shadow", decision="reject", traffic=0.0, window_start=0.0,
    ...     metric="accuracy", estimate=-0.03, lower=-0.05, upper=-0.015, n=4000,
    ...     reason="worse").decision
    'reject'
    """

    decision_id: str
    model_id: str
    champion: str
    challenger: str
    mode: Phase
    decision: Decision
    #: The challenger's share after the decision.
    traffic: float
    window_start: float
    metric: str
    estimate: float
    lower: float
    upper: float
    n: int
    reason: str


def decision_id(
    model_id: str, champion: str, challenger: str, decision: str, window_start: float
) -> str:
    """The id of a decision (see "Identifiers").

    Examples
    --------
    >>> len(decision_id("m", "v1", "v2", "promote", 3600.0))
    32
    """
    text = "\x1f".join([model_id, champion, challenger, decision, repr(float(window_start))])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def start_rollout(
    config: RolloutConfig, *, model_id: str, champion: str, challenger: str, now: float
) -> RolloutState:
    """The state of a new rollout of ``challenger`` against ``champion`` (mode ``shadow``
    or ``canary``; ``direct`` needs no rollout)."""
    if config.mode == "direct":
        raise ValueError("rollout mode 'direct' promotes at once: there is nothing to run")
    canary = config.mode == "canary"
    return RolloutState(
        model_id=model_id,
        champion=champion,
        challenger=challenger,
        phase="canary" if canary else "shadow",
        traffic=config.canary_steps[0] if canary else 0.0,
        started_at=now,
        phase_started_at=now,
    )


def add_evidence(state: RolloutState, evidence: RolloutEvidence) -> RolloutState:
    """The state with one more window's evidence (what :func:`rollout_step` judges).

    Examples
    --------
    >>> state = RolloutState(model_id="m", champion="v1", challenger="v2", phase="shadow",
    ...     traffic=0.0, started_at=0.0, phase_started_at=0.0)
    >>> add_evidence(state, RolloutEvidence(paired=PairedCounts(n=10))).paired.n
    10
    """
    return state.model_copy(
        update={
            "paired": state.paired + evidence.paired,
            "challenger_arm": state.challenger_arm + evidence.challenger,
            "champion_arm": state.champion_arm + evidence.champion,
        }
    )


def rollout_sequence(state: RolloutState, alpha: float) -> DifferenceSequence:
    """The confidence sequence of the phase's evidence so far (paired in shadow and
    watch, two arms in canary).

    Examples
    --------
    >>> state = RolloutState(model_id="m", champion="v1", challenger="v2", phase="shadow",
    ...     traffic=0.0, started_at=0.0, phase_started_at=0.0,
    ...     paired=PairedCounts(n=4000, challenger_only=300, champion_only=200))
    >>> sequence = rollout_sequence(state, 0.05)
    >>> sequence.n, round(sequence.estimate, 3), sequence.lower < 0.025 < sequence.upper
    (4000, 0.025, True)
    """
    if state.phase == "canary":
        return two_arm_sequence(state.challenger_arm, state.champion_arm, alpha)
    return paired_sequence(state.paired, alpha)


def _guardrail(config: RolloutConfig, evidence: RolloutEvidence) -> str | None:
    limits = config.guardrails
    if evidence.pairs and evidence.disagreements / evidence.pairs > limits.disagreement_rate:
        return "guardrail:disagreement_rate"
    ratio = evidence.latency_p95_ratio
    if ratio is not None and ratio > limits.latency_p95_ratio:
        return "guardrail:latency_p95_ratio"
    return None


def rollout_step(
    config: RolloutConfig,
    metric: str,
    state: RolloutState,
    evidence: RolloutEvidence,
    *,
    window_start: float,
    window_end: float,
) -> tuple[RolloutState | None, RolloutRecord | None]:
    """Add one window's evidence and decide (see the module docstring).

    Returns the new state (``None`` once the rollout is over: rejected, rolled back, or
    promoted and watched) and the decision taken at this window, if any.
    """
    state = add_evidence(state, evidence)
    sequence = rollout_sequence(state, config.alpha)

    def record(decision: Decision, traffic: float, reason: str) -> RolloutRecord:
        return RolloutRecord(
            decision_id=decision_id(
                state.model_id, state.champion, state.challenger, decision, window_start
            ),
            model_id=state.model_id,
            champion=state.champion,
            challenger=state.challenger,
            mode=state.phase,
            decision=decision,
            traffic=traffic,
            window_start=window_start,
            metric=metric,
            estimate=sequence.estimate,
            lower=sequence.lower,
            upper=sequence.upper,
            n=sequence.n,
            reason=reason,
        )

    verdict = decide(sequence, margin=config.margin, min_labels=config.min_labels)
    if state.phase == "watch":
        if verdict == "reject":
            return None, record("rollback", 0.0, "worse")
        if window_end - state.phase_started_at >= config.watch_after_promotion:
            return None, None
        return state, None
    breached = _guardrail(config, evidence)
    if breached is not None:
        return None, record("reject", 0.0, breached)
    if verdict == "reject":
        return None, record("reject", 0.0, "worse")
    if verdict == "promote":
        steps = config.canary_steps
        following = [s for s in steps if s > state.traffic] if state.phase == "canary" else []
        share = steps[0] if state.phase == "shadow" else (following[0] if following else 1.0)
        fresh = {
            "paired": PairedCounts(),
            "challenger_arm": ArmCounts(),
            "champion_arm": ArmCounts(),
            "phase_started_at": window_end,
        }
        if share < 1.0:
            stepped = state.model_copy(update={**fresh, "phase": "canary", "traffic": share})
            return stepped, record("step", share, "not_worse")
        watched = state.model_copy(update={**fresh, "phase": "watch", "traffic": 1.0})
        done = record("promote", 1.0, "not_worse")
        return (watched if config.watch_after_promotion > 0 else None), done
    if window_end - state.started_at >= config.max_duration:
        return None, record("reject", 0.0, "inconclusive")
    return state, None
