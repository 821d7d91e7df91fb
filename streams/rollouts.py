"""Live rollouts: the streaming monitor's part of a shadow or canary rollout.

A thin shell around the rollout policy (:func:`~driftline.detectors.promotion.rollout_step`,
the step ``driftline backtest`` replays), run by the monitor after each pass over a
model whose monitor config has a ``rollout`` section of mode ``shadow`` or ``canary``.

Starting
    The registry names the challenger (:meth:`ModelRegistry.challenger`: a version in
    ``shadow`` or ``canary``, registered so by the retrainer or by ``driftline rollout
    start``) and the champion. The rollout starts at the first window where the
    challenger served a prediction or scored one in shadow
    (:func:`~driftline.store.rollouts.first_window`), in the registry's mode (a
    ``canary`` at the registry's share), as the backtest starts it at the challenger's
    first window.
Judging
    Each window holding served predictions of the model, oldest first, from the
    rollout's start on, once the model's watermark closed it (``end + allowed_lateness
    <= watermark``), gives its evidence, pushed down to ClickHouse
    (:func:`~driftline.store.rollouts.window_evidence_sql`: labels count when their
    feedback time is before the window's close, as in the backtest), to the policy. A
    window is judged once: the ingest stores a group's labels and shadow predictions
    before its predictions (which move the watermark), so the labels sent on a topic
    partition before the prediction that closes the window are there when it is judged.
    Labels sent on another partition or on the feedback topic are stored by another
    consumer, at its own pace: they count only if stored when the window is judged (the
    allowed lateness, in event time, is the margin a producer gives them).
Acting
    ``step``: the challenger becomes ``canary`` at the new share; ``promote``: it becomes
    the champion (the former one a ``candidate``), and the policy watches it against its
    parent for ``watch_after_promotion``; ``reject``: it is ``rejected``; ``rollback``: it
    is ``rolled_back`` and its parent is the champion again. Each change is a
    ``model_versions`` row whose ``decision`` holds the evidence (window, estimate,
    bounds, n, reason, decision id) and a ``model_version`` event. A challenger whose
    status a person changed (``rollout abort``, ``models promote``/``rollback``) ends
    the rollout; a newer challenger starts a new one once the running one ended.
Exactly once
    The events of a pass's decisions first (awaited); then the progress
    (:class:`RolloutProgress`: the policy state, the next window, and the pass's
    registry rows and judged windows as *pending*) in ``rollout_state``, the commit
    point; then those rows, and the progress again without them. A crash before the
    commit redoes the same windows from the previous progress: the same decisions, with
    the same decision ids, published again (consumers deduplicate by version and
    status). A crash after it leaves rows pending: the next pass writes them first.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from driftline.detectors.promotion import (
    RolloutEvidence,
    RolloutRecord,
    RolloutState,
    add_evidence,
    rollout_sequence,
    rollout_step,
    start_rollout,
)
from driftline.detectors.rollout import DifferenceSequence
from driftline.retrainer.registry import ModelRegistry, VersionRecord
from driftline.schemas.monitor import MonitorConfig, RolloutConfig
from pydantic import BaseModel, ConfigDict

from driftline.store import Store
from driftline.store.rollouts import (
    first_window,
    load_rollout_state,
    save_rollout_state,
    save_rollout_windows,
    served_windows,
    window_evidence_sql,
)

log = logging.getLogger(__name__)

__all__ = [
    "RolloutPass",
    "RolloutProgress",
    "commit_pass",
    "decision_text",
    "judge_rollout",
    "record_changes",
    "refresh_cards",
    "rollout_pass",
    "save_progress",
]

#: Registry statuses that end a running rollout when a person set them.
_ENDED = frozenset({"rejected", "rolled_back", "candidate"})


class RolloutProgress(BaseModel):
    """What the monitor saved of a model's rollout: the policy's state (``None``: no
    rollout runs), the start of the next window to judge, and a save counter.

    Examples
    --------
    >>> RolloutProgress().rollout is None
    True
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    rollout: RolloutState | None = None
    next_start: float | None = None
    seq: int = 0
    #: Registry rows and judged windows of the last pass, saved with it and written
    #: right after (see "Exactly once"); empty once written.
    pending_versions: tuple[VersionRecord, ...] = ()
    pending_windows: tuple[dict[str, Any], ...] = ()


@dataclass
class RolloutPass:
    """One pass's decisions, the registry rows they change, and the progress to save.

    Examples
    --------
    >>> RolloutPass(progress=RolloutProgress(), changed=False).records
    []
    """

    progress: RolloutProgress
    changed: bool
    records: list[RolloutRecord] = field(default_factory=list)
    versions: list[VersionRecord] = field(default_factory=list)
    #: The running rollout's evidence after the pass (``None``: no rollout runs).
    sequence: DifferenceSequence | None = None
    #: One ``rollout_windows`` row per window judged.
    windows: list[dict[str, Any]] = field(default_factory=list)


def decision_text(record: RolloutRecord) -> str:
    """The ``decision`` a rollout decision writes on its ``model_versions`` row.

    Examples
    --------
    >>> from driftline.detectors.promotion import RolloutRecord
    >>> text = decision_text(RolloutRecord(decision_id="ab", model_id="m", champion="v1",
    ...     challenger="v2", mode="shadow", decision="step", traffic=0.05,
    ...     window_start=0.0, metric="accuracy", estimate=0.031, lower=0.002,
    ...     upper=0.06, n=2400, reason="not_worse"))
    >>> text.split(": ")[0]
    'rollout step (shadow -> 0.05) at 1970-01-01T00:00:00Z'
    >>> text.split(": ")[1]
    'accuracy v2 - v1 = +0.0310 in [+0.0020, +0.0600], n=2400, not_worse, id ab'
    """
    at = datetime.fromtimestamp(record.window_start, tz=UTC).isoformat().replace("+00:00", "Z")
    return (
        f"rollout {record.decision} ({record.mode} -> {record.traffic:g}) at {at}: "
        f"{record.metric} {record.challenger} - {record.champion} = {record.estimate:+.4f} "
        f"in [{record.lower:+.4f}, {record.upper:+.4f}], n={record.n}, {record.reason}, "
        f"id {record.decision_id}"
    )


def _changes(registry: ModelRegistry, record: RolloutRecord, when: float) -> list[VersionRecord]:
    """The registry rows a decision writes, updated at ``when`` or later (read, not
    written: see "Exactly once")."""
    text = decision_text(record)
    model = record.model_id
    current = registry.require(model, record.challenger)
    if record.decision == "rollback":
        restored = registry.require(model, record.champion).with_status("champion", when)
        rolled_back = current.with_status("rolled_back", restored.updated_at)
        return [rolled_back.model_copy(update={"decision": text}), restored]
    if record.decision == "step":
        update = {"traffic": record.traffic, "decision": text}
        return [current.with_status("canary", when).model_copy(update=update)]
    if record.decision == "promote":
        promoted = current.with_status("champion", when).model_copy(update={"decision": text})
        others = [
            version.with_status("candidate", promoted.updated_at)
            for version in registry.versions(model)
            if version.status == "champion" and version.version != promoted.version
        ]
        return [promoted, *others]
    return [current.with_status("rejected", when).model_copy(update={"decision": text})]


def _load(store: Store, model_id: str) -> RolloutProgress:
    saved = load_rollout_state(store, model_id)
    return RolloutProgress() if saved is None else RolloutProgress.model_validate_json(saved)


def _start(
    store: Store, registry: ModelRegistry, config: MonitorConfig
) -> tuple[RolloutState, float] | None:
    """A new rollout of the registry's challenger, and its first window, if one waits."""
    rollout = config.rollout
    assert rollout is not None
    challenger = registry.challenger(config.model_id)
    champion = registry.champion(config.model_id)
    if challenger is None or champion is None:
        return None
    first = first_window(store, config.model_id, challenger.version, config.window_seconds)
    if first is None:
        return None  # it has scored nothing yet
    state = start_rollout(
        rollout.model_copy(update={"mode": challenger.status}),
        model_id=config.model_id,
        champion=champion.version,
        challenger=challenger.version,
        now=first,
    )
    if challenger.status == "canary" and challenger.traffic:
        state = state.model_copy(update={"traffic": challenger.traffic})
    return state, first


def rollout_pass(store: Store, config: MonitorConfig, watermark: float) -> RolloutPass | None:
    """Judge the model's closed windows of its running rollout (module docstring): the
    decisions and the registry rows they change (not written yet: publish their events,
    then :func:`record_changes`, then :func:`save_progress`). ``None`` when the config
    runs no rollouts."""
    rollout = config.rollout
    if rollout is None or rollout.mode == "direct":
        return None
    model = config.model_id
    size, lateness = config.window_seconds, config.allowed_lateness_seconds
    registry = ModelRegistry(store)
    saved = _load(store, model)
    if saved.pending_versions or saved.pending_windows:  # committed, not yet written
        record_changes(store, list(saved.pending_versions), list(saved.pending_windows))
        saved = save_progress(
            store, model, saved.model_copy(update={"pending_versions": (), "pending_windows": ()})
        )
    state, next_start = saved.rollout, saved.next_start
    if state is not None and state.phase != "watch":
        current = registry.get(model, state.challenger)
        if current is None or current.status in _ENDED:
            state, next_start = None, None  # a person ended it
    if state is None:
        started = _start(store, registry, config)
        if started is not None:
            state, next_start = started
    changed = (state, next_start) != (saved.rollout, saved.next_start)
    done = RolloutPass(progress=saved, changed=changed)
    if state is None or next_start is None:
        done.progress = saved.model_copy(update={"rollout": None, "next_start": None})
        return done
    last = watermark - lateness - size  # the latest start of a closed window
    for start in served_windows(store, model, low=next_start, high=last, size=size):
        before, evidence = state, _evidence(store, state, start, config)
        state, record = rollout_step(
            rollout,
            config.rollout_metric,
            state,
            evidence,
            window_start=start,
            window_end=start + size,
        )
        next_start = start + size
        done.changed = True
        judged = add_evidence(before, evidence) if state is None else state
        done.windows.append(_window_row(rollout, before, judged, record, start))
        if record is not None:
            done.records.append(record)
            # Each decision's rows are newer than the previous one's (rows of one pass
            # are written together: their order is their ``updated_at``).
            floor = max((v.updated_at for v in done.versions), default=0.0)
            done.versions += _changes(registry, record, max(time.time(), floor + 1e-3))
        if state is None:
            next_start = None
            break
    done.progress = RolloutProgress(rollout=state, next_start=next_start, seq=saved.seq)
    if state is not None:
        done.sequence = rollout_sequence(state, rollout.alpha)
    return done


def _window_row(
    rollout: RolloutConfig,
    before: RolloutState,
    after: RolloutState,
    record: RolloutRecord | None,
    start: float,
) -> dict[str, Any]:
    """The ``rollout_windows`` row of a judged window: the sequence the decision saw (or,
    without one, the sequence with the window's evidence)."""
    if record is not None:
        bounds = (record.estimate, record.lower, record.upper, record.n)
        traffic = record.traffic
    else:
        sequence = rollout_sequence(after, rollout.alpha)
        bounds = (sequence.estimate, sequence.lower, sequence.upper, sequence.n)
        traffic = after.traffic
    return {
        "model_id": before.model_id,
        "champion": before.champion,
        "challenger": before.challenger,
        "phase": before.phase,
        "traffic": traffic,
        "window_start": start,
        "estimate": bounds[0],
        "lower": bounds[1],
        "upper": bounds[2],
        "n": bounds[3],
        "margin": rollout.margin,
        "decision": "" if record is None else record.decision,
        "reason": "" if record is None else record.reason,
    }


def _evidence(
    store: Store, state: RolloutState, start: float, config: MonitorConfig
) -> RolloutEvidence:
    end = start + config.window_seconds
    return window_evidence_sql(
        store,
        model_id=config.model_id,
        champion=state.champion,
        challenger=state.challenger,
        window_start=start,
        window_end=end,
        label_deadline=end + config.allowed_lateness_seconds,
        loss_bound=config.rollout_loss_bound,
        loss=config.rollout_metric,
        positive_label=config.performance.positive_label,
    )


def commit_pass(store: Store, model_id: str, done: RolloutPass) -> None:
    """Save a pass (its decisions' events are published): the progress with the rows
    pending, the rows, the progress without them (see "Exactly once")."""
    for record in done.records:
        log.info("rollout %s: %s", record.model_id, decision_text(record))
    if not (done.versions or done.windows):
        if done.changed:
            save_progress(store, model_id, done.progress)
        return
    update = {"pending_versions": tuple(done.versions), "pending_windows": tuple(done.windows)}
    staged = save_progress(store, model_id, done.progress.model_copy(update=update))
    record_changes(store, done.versions, done.windows)
    save_progress(
        store, model_id, staged.model_copy(update={"pending_versions": (), "pending_windows": ()})
    )


def record_changes(
    store: Store, versions: list[VersionRecord], windows: list[dict[str, Any]] | None = None
) -> None:
    """Write a pass's registry rows (after their events were published) and its judged
    windows."""
    ModelRegistry(store).record(*versions)
    save_rollout_windows(store, windows or [])


def refresh_cards(
    store: Store, versions: list[VersionRecord], root: Path, config: MonitorConfig
) -> None:
    """Rewrite the model cards of the versions a pass changed (a card that cannot be
    written is logged: it never stops the monitor)."""
    from driftline.card_data import refresh_card

    for record in versions:
        try:
            refresh_card(store, record, root, monitor=config)
        except Exception:
            log.exception("cannot write the model card of %s %s", record.model_id, record.version)


def save_progress(store: Store, model_id: str, progress: RolloutProgress) -> RolloutProgress:
    """Save the progress as the next ``seq``; return what was saved."""
    saved = progress.model_copy(update={"seq": progress.seq + 1})
    save_rollout_state(store, model_id, saved.seq, saved.model_dump_json())
    return saved


async def judge_rollout(monitor: Any, config: MonitorConfig, watermark: float) -> None:
    """The monitor's rollout step after a pass (a :class:`~driftline.streams.monitor.Monitor`):
    :func:`rollout_pass`, the decisions' events published, :func:`commit_pass`, metrics."""
    done = await monitor._store(rollout_pass, monitor.store, config, watermark)
    if done is None:
        return
    send = monitor.send_version
    for record in done.versions if send is not None else ():
        await send(record.model_id, record.to_event().model_dump_json().encode())
    await monitor._store(commit_pass, monitor.store, config.model_id, done)
    monitor.rollout_records += done.records
    if monitor.cards_root is not None and done.versions:
        await monitor._store(
            refresh_cards, monitor.store, done.versions, monitor.cards_root, config
        )
    if monitor.metrics is not None:
        decisions = [record.decision for record in done.records]
        monitor.metrics.rollout_judged(
            config.model_id, done.progress.rollout, done.sequence, decisions
        )
