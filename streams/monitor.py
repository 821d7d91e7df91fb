"""The streaming monitor: a leader timer that closes event-time windows.

A thin shell around the pure core (DESIGN §2). Every tick the Faust leader:

1. reads the **watermark of every monitored model** (:func:`model_watermarks`) from the
   raw predictions (one small aggregation, see "Watermark rule");
2. for each monitored model (a ``*.yaml`` monitor config in ``monitors_dir``) whose
   pass is due (below), and each of its versions with predictions and a reference
   profile (the version's own, else the model's newest), decides which windows to
   evaluate: on the first pass, and on a timed pass when rows arrived, it counts
   predictions and labels per window in ClickHouse (:func:`plan_windows`); otherwise
   only windows newer than the newest closed one can be due, and it lists those that
   hold predictions (their counts come with their aggregates);
3. aggregates those windows in ClickHouse (:func:`driftline.store.aggregates.windows_aggregates`),
   and closes them with the core's one window step
   (:func:`~driftline.detectors.step.close_window`: evaluation, alert and retrain
   policies, the step the backtest runs), window by window, oldest first.

Passes
    A model's pass is due when its watermark crossed one of its closing boundaries
    (:func:`closing_boundary`) since its last pass, and at least every
    ``late_data_check_seconds``: those timed passes also look for late data, re-sent
    events and data beyond the horizon (below) and pick up new model versions and
    reference profiles. Other ticks read only the watermarks, so a short monitor interval
    costs little while the stream runs.

Watermark rule (one clock per model)
    Each model has its own watermark, computed from its own predictions only: a
    prediction of another model, however far ahead, never closes its windows. Per
    partition of the predictions topic, the model's mark is the largest event time of its
    predictions stored there (``max(timestamp)``, every stored copy counted) and its last
    progress is the newest ``ingested_at`` of those rows (processing time); both are read
    from the ``model_marks`` projection of ``predictions`` (migration 5), pre-aggregated
    per part, so a tick costs the number of parts, not of rows. The model's watermark is
    the minimum over its *active* marks: a mark whose last progress is more than
    ``idle_partition_seconds`` old is idle and ignored; a partition that never held a
    prediction of the model has no mark and is ignored. When every mark of the model is
    idle its watermark is its largest mark (the model is quiet; whatever it sent is
    stored) (:func:`global_watermark` is that rule over any set of marks). Predictions
    sent on the feedback topic are stored but move no watermark; an event time more than
    ``max_future_seconds`` ahead of the ingest worker's clock never reaches the store
    (DLQ, ``timestamp_in_future``). The per-partition ``watermarks`` table the ingest
    writes is no longer read by the monitor (dashboards and :meth:`Monitor._watermark`
    read it).
Closing
    A window ``[s, s + W)`` closes when ``s + W + allowed_lateness <=`` the model's
    watermark and it holds predictions; it is evaluated as revision 0 (see "Revisions").
    To close the last windows of a stream, send a prediction *of the same model* whose
    event time is past their end plus the allowed lateness.
Late data
    On a timed pass, a closed window whose end is within ``late_data_horizon_seconds``
    of the model's watermark is evaluated again, as the next revision, when its number of
    predictions or of labelled predictions changed since its last evaluation (they rise
    with late data, and fall when a merge removed the older copy of an event re-sent
    elsewhere, see "Re-sent events"); the policy then
    sees the new report (``now`` = the newest closed window's end + allowed lateness, so
    a replay gives the same ``opened_at``). A window that was never closed and holds
    predictions older than the newest closed window (late predictions) closes the same
    way.
Beyond the horizon
    A prediction stored in a window that ends more than ``late_data_horizon_seconds``
    before the model's watermark, when a newer window was already evaluated, is kept in
    ``predictions`` but never evaluated. Timed passes count the rows stored since the
    previous look that are in that case (``driftline_predictions_beyond_horizon_total``,
    :attr:`Monitor.beyond_horizon`) and log it once per model and hour.
Re-sent events (the latest copy wins)
    An event id is one event: its latest copy (largest ``ingested_at``, then Kafka offset
    and batch index) counts once, in the window and version of its own timestamp, with
    its own content, exactly as ``driftline backtest`` keeps the last occurrence of an id
    in its file. A window holding an older copy of an event whose latest copy moved to
    another window or version is evaluated again without it (as its next revision, even
    beyond the horizon) once a timed pass saw the new copy: each timed pass looks at the
    rows stored since the previous one (``settle_seconds`` ago at most, so that inserts
    still in flight are seen; found through the ``ingested`` minmax index, migration 5)
    and the copies of their event ids (:func:`~driftline.store.planning.fresh_rows`); the
    windows found wait in the state (``MonitorState.moved``) until evaluated. Copies in
    one day partition may be merged (``ReplacingMergeTree`` keeps the latest) before a
    pass looked: the window the event left then holds one prediction less, which the
    count pass of "Late data" sees within the horizon (beyond it, such a move goes
    unnoticed). A window that had been reported and lost every event is reported again,
    empty (``n = 0``); one never reported stays unreported. A copy re-sent into the same
    window with new content is what the window's next evaluation sees (a closed window is
    not re-evaluated for it alone).
Revisions
    Every evaluation of a ``(model, version, window)`` gets a revision strictly greater
    than any stored in ``window_metrics`` for it: the planned one (0 for a first close,
    the record's revision + 1 after), raised above the largest stored revision read back
    before the rows are written (:func:`~driftline.store.planning.stored_revisions`), so
    ``window_metrics FINAL`` (``ReplacingMergeTree(revision)``) always returns the latest
    evaluation, also for a window whose record left the state (beyond the horizon, or a
    model watermark that moved back when an idle partition woke up) and after a crash
    between the rows and the state (the redo writes the same content one revision up).
Concept drift (optional ``concept_drift`` section of the monitor config)
    On each pass, before planning, the labels of the model version not yet fed are read
    from ClickHouse (``feedback FINAL`` joined to ``predictions FINAL`` by
    ``event_id``): those whose feedback time ``t`` has ``t + allowed_lateness <=
    watermark`` and whose key ``(t, event_id)`` lies beyond the stored cursor, in key
    order (label order, as the backtest feeds them:
    :func:`~driftline.detectors.concept.label_order`). Their errors go through the online
    detectors (:func:`~driftline.detectors.concept.concept_drift_step`); detections count in
    the window of the labelled prediction's event time. A window whose detection count
    changed is evaluated again like one whose label count rose (within the horizon),
    its ``WindowData.concept_drift`` holding the counts, so detections surface as
    ``concept_drift`` metric rows and alerts through the usual path. Detector states,
    the cursor and the counts live in the monitor state. A label whose key is behind
    the cursor when it arrives (later than the allowed lateness), or whose prediction
    is not stored yet when a later label is fed (also a label already behind the
    frontier that comes in the same ingest group as its late prediction: a group's
    labels are stored before its predictions), is never fed; a label re-sent with the
    same timestamp is not fed twice. With every label in time, the last revision of
    each window equals the backtest's.
Exactly once
    Per model, for the due windows of its versions together (up to 64 per version at a
    time): metric rows, then alert rows, then the Kafka events (awaited until delivered),
    then the versions' monitor states (policy state, per-window revisions and counts) in
    ``monitor_state``, one insert. A crash anywhere before the states are written redoes
    those windows from the previous states:
    the same content one revision up (see "Revisions") and the same event ids
    (consumers deduplicate by id).
Rollouts
    After each pass, the model's rollout judges the closed windows (:mod:`.rollouts`).
Many versions
    A model's versions are planned and closed together, so that a pass costs a few
    queries whatever their number: one query lists the versions, one reads the reference
    profiles (each version takes its own, else the model's newest), one loads every
    version's state; the windows to close are found by one grouped query per pass
    (:func:`~driftline.store.planning.versions_window_starts`, or
    :func:`~driftline.store.planning.versions_window_counts` on a counting pass: one for
    versions counted from the start, one for those within the horizon), each version
    from its own low; a timed pass looks once whether the model stored any row since the
    oldest cursor before it looks at one version's fresh rows. A version without rows in
    the windows to close costs no query. Versions with windows are evaluated in rounds of
    up to ``CLOSE_CHUNK`` windows each: their stored revisions in one query, their
    aggregates in one query per version (two with categorical features), then the
    metric rows of all in one insert, the alerts, the events, and every state in one
    insert (see "Exactly once"). Only the concept-drift labels are still read per version
    (models with a ``concept_drift`` section).
Counts
    A window's record keeps the counts it was evaluated with: from the count pass when
    there was one, else those of its aggregates (predictions ``FINAL`` keeps, and those
    with a label). The two differ only for an event re-sent into another window or
    version; a timed pass then re-evaluates the window once, after which its counts are
    the count pass's. A window left without events by such re-sends before it was ever
    reported is recorded but not reported.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from driftline.detectors import WindowReport
from driftline.detectors.concept import LabelRows, advance_concept
from driftline.detectors.profiles import ModelProfile
from driftline.detectors.promotion import RolloutRecord
from driftline.detectors.step import (
    FRESH,
    MonitorState,
    Policies,
    WindowStep,
    WindowWork,
    advance_state,
    close_window,
)
from driftline.detectors.windows import (
    MICROS,
    closing_boundary,
    global_watermark,
    micros,
    model_watermarks,
    plan_windows,
    window_closes,
    with_moved,
)
from driftline.retrainer.registry import ModelRegistry
from driftline.schemas.events import AlertEvent
from driftline.schemas.monitor import MonitorConfig, load_monitors

from driftline.metrics import WorkerMetrics
from driftline.store.aggregates import WindowAggregate, windows_aggregates
from driftline.store.backend import Store
from driftline.store.monitoring import (
    load_states,
    model_versions,
    new_labels,
    partition_marks,
    raw_row_counts,
    save_states,
    write_window_rows,
)
from driftline.store.planning import (
    FreshRows,
    fresh_rows,
    model_marks,
    newest_ingested,
    stored_revisions,
    versions_stored_revisions,
    versions_window_counts,
    versions_window_starts,
)
from driftline.store.profiles import version_profiles

from .rollouts import judge_rollout

__all__ = ["Monitor", "VersionPlan", "load_monitors"]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- pure parts


@dataclass(frozen=True)
class VersionPlan:
    """One model version's part of a pass: its profile, state and windows to evaluate, and
    whether its state changed even without windows (cursors, detectors, moved windows).

    Examples
    --------
    >>> from driftline.detectors import build_profile
    >>> profile = build_profile("m", "v1", features={"x": [0.0, 1.0]}, kinds={"x": "numeric"})
    >>> plan = VersionPlan("v1", profile, MonitorState(), [WindowWork(60.0, 0, FRESH, FRESH)],
    ...                    changed=False)
    >>> [w.start for w in plan.work]
    [60.0]
    """

    version: str
    profile: ModelProfile
    state: MonitorState
    work: Sequence[WindowWork]
    changed: bool


# --------------------------------------------------------------------------- the shell


#: Sends (key, JSON value) to a topic and returns when Kafka acknowledged it.
Send = Callable[[str, bytes], Awaitable[None]]


class Monitor:
    """Closes the windows of the monitored models (see the module docstring).

    ``lock`` guards the store (the ingest agents share it); every store call runs on a
    thread while holding it. ``late_check_seconds`` is the longest time between two
    passes of a model (see "Passes"), measured on ``clock`` (seconds, monotonic), which
    also spaces the hourly log of data beyond the horizon. ``settle_seconds`` is how long
    a timed pass waits before it looks at stored rows (for re-sent events and data beyond
    the horizon, see "Re-sent events"): inserts still in flight then have ended.

    Examples
    --------
    >>> Monitor.tick.__doc__.splitlines()[0]
    'Read the watermarks; pass over every model that may have windows to evaluate.'
    """

    def __init__(
        self,
        store: Store,
        lock: threading.Lock,
        monitors: Mapping[str, MonitorConfig],
        *,
        predictions_topic: str,
        idle_seconds: float,
        horizon_seconds: float,
        send_alert: Send,
        send_request: Send,
        late_check_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        settle_seconds: float = 30.0,
        send_version: Send | None = None,
    ) -> None:
        self.store = store
        self.lock = lock
        self.monitors = dict(monitors)
        self.predictions_topic = predictions_topic
        self.idle_seconds = idle_seconds
        self.horizon_seconds = horizon_seconds
        self.send_alert = send_alert
        self.send_request = send_request
        self.late_check_seconds = late_check_seconds
        self.clock = clock
        self.settle_seconds = settle_seconds
        #: Publishes ``model_version`` events of rollout decisions (None: not published).
        self.send_version = send_version
        #: Rollout decisions taken, in order (see "Rollouts").
        self.rollout_records: list[RolloutRecord] = []
        self.cards_root: Path | None = None  # artifact root: rollouts rewrite model cards
        #: Per model: monotonic time of the last pass that looked for late data.
        self._late_checked: dict[str, float] = {}
        #: Per model: the closing boundary (see :func:`closing_boundary`) of its last pass.
        self._boundaries: dict[str, int] = {}
        self._rows_seen: dict[str, tuple[int, int]] = {}
        self.windows_closed = 0
        self.revisions = 0
        self.alerts_sent = 0
        self.requests_sent = 0
        #: Per monitored model with predictions: its watermark at the last tick.
        self.watermarks: dict[str, float] = {}
        #: The largest of :attr:`watermarks` (``-inf`` before the first prediction).
        self.watermark = -math.inf
        #: Per model: predictions stored beyond the late-data horizon, never evaluated.
        self.beyond_horizon: dict[str, int] = {}
        self._beyond_logged: dict[str, float] = {}
        self._beyond_unlogged: dict[str, int] = {}
        #: Per (model, version): ``ingested_at`` (µs) up to which rows were looked at,
        #: ahead of the saved state's cursor while nothing was found (see _look_at_fresh).
        self._fresh_cursors: dict[tuple[str, str], int] = {}
        #: Prometheus metrics fed once per evaluated window (set by the worker).
        self.metrics: WorkerMetrics | None = None

    async def _store(self, fn: Callable[..., Any], *args: Any) -> Any:
        def locked() -> Any:
            with self.lock:
                return fn(*args)

        return await asyncio.to_thread(locked)

    async def tick(self) -> None:
        """Read the watermarks; pass over every model that may have windows to evaluate.

        Each model is driven by its own watermark (see "Watermark rule"). A model's pass
        (its versions, their counts, due windows and concept-drift labels) runs when its
        watermark crossed a closing boundary of its windows since its last pass, and at
        least every ``late_check_seconds``; that one also re-counts closed windows for late
        data and looks at the rows stored since the previous one. Between boundaries no
        window can become due but by late data, so the other ticks cost one small query.
        When a watermark crossed another boundary while windows were being evaluated, the
        tick goes on with those windows (up to :attr:`MAX_ROUNDS` rounds) instead of
        waiting for the next tick.
        """
        if not self.monitors:
            return
        for _ in range(self.MAX_ROUNDS):
            watermarks = await self._store(self._model_watermarks)
            self.watermarks = watermarks
            self.watermark = max(watermarks.values(), default=-math.inf)
            moved = False
            for config in self.monitors.values():
                watermark = watermarks.get(config.model_id, -math.inf)
                if watermark == -math.inf:
                    continue  # no prediction of the model yet
                moved |= await self._pass(config, watermark)
            if not moved:
                return

    #: Most rounds of passes in one tick (see :meth:`tick`).
    MAX_ROUNDS = 8

    async def _pass(self, config: MonitorConfig, watermark: float) -> bool:
        """One model's pass when it is due; whether it ran because the watermark crossed
        a boundary (only such a pass makes the tick look again)."""
        model = config.model_id
        boundary = closing_boundary(config, watermark)
        now = self.clock()
        late = now - self._late_checked.get(model, -math.inf) >= self.late_check_seconds
        moved = self._boundaries.get(model) != boundary
        if not (late or moved):
            return False
        started = time.perf_counter()  # the windows' close time includes the plan
        plans = await self._store(self._plan_model, config, watermark, late)
        await self._close(config, plans, watermark, started)
        await judge_rollout(self, config, watermark)
        # only after the pass succeeded: a failed one is retried on the next tick
        self._boundaries[model] = boundary
        if late:
            self._late_checked[model] = now
        return moved

    # store reads (called under the lock, on a thread)

    def _model_watermarks(self) -> dict[str, float]:
        """Each monitored model's watermark (see "Watermark rule")."""
        marks = model_marks(
            self.store, topic=self.predictions_topic, model_ids=sorted(self.monitors)
        )
        return model_watermarks(marks, time.time(), self.idle_seconds)

    def _watermark(self) -> float:
        """The watermark of all models together over the ``watermarks`` table's partition
        marks (what the dashboards show); the monitor closes windows by
        :meth:`_model_watermarks` instead."""
        marks = partition_marks(self.store, self.predictions_topic)
        return global_watermark(marks, time.time(), self.idle_seconds)

    def _versions(self, model_id: str) -> list[str]:
        return model_versions(self.store, model_id)

    def _rows_changed(self, model_id: str) -> bool:
        """Whether raw rows of the model arrived since the last look (cheap: no dedup).

        One look per model and timed pass, made before any of its versions is counted.
        A re-sent duplicate counts as a change too; the exact re-count that follows
        then finds that no window changed.
        """
        seen = raw_row_counts(self.store, model_id)
        changed = self._rows_seen.get(model_id) != seen
        self._rows_seen[model_id] = seen
        return changed

    def _load_states(self, model_id: str) -> dict[str, MonitorState]:
        """The saved state of every version of the model, in one query."""
        return load_states(self.store, model_id)

    def _save_states(self, model_id: str, states: Mapping[str, MonitorState]) -> None:
        """Save the states of many versions of the model in one insert."""
        save_states(self.store, model_id, states)

    def _new_labels(
        self, config: MonitorConfig, version: str, state: MonitorState, watermark: float
    ) -> LabelRows | None:
        """Labels of the version beyond the cursor, fed once ``t + lateness <= watermark``."""
        if config.concept_drift is None:
            return None
        frontier = watermark - config.allowed_lateness_seconds
        return new_labels(self.store, config, version, state.concept.cursor, frontier)

    def _plan_model(self, config: MonitorConfig, watermark: float, late: bool) -> list[VersionPlan]:
        """Plan every version of the model together (see "Many versions"): its versions,
        their profiles, states and due windows in a few queries whatever their number."""
        model = config.model_id
        versions = self._versions(model)
        profiles = version_profiles(self.store, model, versions)
        if not profiles:
            return []
        unasked: dict[str, Any] = {}  # a profile's slices and components, used when asked
        if config.segments is None:
            unasked["segments"] = {}
        if config.drift.multivariate is None:
            unasked["multivariate"] = None
        if config.performance.estimation is None:
            unasked["calibration"] = None
        if unasked:
            profiles = {v: p.model_copy(update=unasked) for v, p in profiles.items()}
        states = self._load_states(model)
        size, lateness = config.window_seconds, config.allowed_lateness_seconds
        high = watermark - lateness  # windows ending by then close
        until = micros(time.time() - self.settle_seconds)
        newest = self._newest_stored(model, versions, states, until) if late else None
        rows_changed: bool | None = None
        pending: list[tuple[str, MonitorState, bool, dict[float, int]]] = []
        fresh_lows: dict[str, float] = {}
        count_lows: dict[str, float] = {}
        for version in versions:
            state = states.get(version, MonitorState())
            # Online detectors first: their detections can make windows due. Detector
            # updates are pure CPU; they run here under the lock to keep the tick one step.
            rows = self._new_labels(config, version, state, watermark)
            changed = False
            if rows is not None:
                concept, changed = advance_concept(config, state.concept, rows)
                state = state.model_copy(update={"concept": concept})
            if late:  # re-sent events and data beyond the horizon (see the module docstring)
                state, found = self._look_at_fresh(config, version, state, watermark, until, newest)
                changed |= found
            drift = self._drift_totals(config, state)
            if state.last_closed is not None and late and rows_changed is None:
                rows_changed = self._rows_changed(model)  # once, before any count
            if state.last_closed is not None and not (late and rows_changed):
                # Only windows never evaluated: which hold predictions is enough to know;
                # their counts come with their aggregates (see _close).
                fresh_lows[version] = state.last_closed + size
            elif state.last_closed is None:  # everything (a backlog) on the first pass
                count_lows[version] = 0.0
            else:  # a timed pass with new rows: closed windows within the horizon too
                count_lows[version] = min(
                    watermark - self.horizon_seconds - size, state.last_closed + size
                )
            pending.append((version, state, changed, drift))
        starts = self._starts(config, fresh_lows, high)
        counts = self._counts(config, count_lows, high)
        plans = []
        for version, state, changed, drift in pending:
            if version in fresh_lows:
                work = [
                    WindowWork(start, 0, FRESH, FRESH, int(drift.get(start, 0)))
                    for start in starts.get(version, [])
                    if window_closes(start, size, lateness, watermark)
                ]
                work = with_moved(state, work, drift=drift)
            else:
                counted = counts.get(version, {})
                work = plan_windows(
                    state,
                    counted,
                    size=size,
                    lateness=lateness,
                    watermark=watermark,
                    horizon=self.horizon_seconds,
                    drift=drift,
                )
                work = with_moved(state, work, counted, drift)
            if work or changed:
                plans.append(VersionPlan(version, profiles[version], state, work, changed))
        return plans

    def _starts(
        self, config: MonitorConfig, lows: Mapping[str, float], high: float
    ) -> dict[str, list[float]]:
        """Windows holding predictions per version from its low to ``high``: one query."""
        lows = {v: low for v, low in lows.items() if high > low}
        if not lows:
            return {}
        return versions_window_starts(
            self.store, model_id=config.model_id, lows=lows, end=high, size=config.window_seconds
        )

    def _counts(
        self, config: MonitorConfig, lows: Mapping[str, float], high: float
    ) -> dict[str, dict[float, tuple[int, int]]]:
        """Counts per version and window from its low to ``high``: one query for the
        versions counted from the start (a backlog), one for those within the horizon."""
        found: dict[str, dict[float, tuple[int, int]]] = {}
        first = {v: low for v, low in lows.items() if low == 0.0 and high > low}
        recent = {v: low for v, low in lows.items() if low != 0.0 and high > low}
        for group in (first, recent):
            if group:
                found.update(
                    versions_window_counts(
                        self.store,
                        model_id=config.model_id,
                        lows=group,
                        end=high,
                        size=config.window_seconds,
                    )
                )
        return found

    def _newest_stored(
        self, model_id: str, versions: Sequence[str], states: Mapping[str, MonitorState], until: int
    ) -> int | None:
        """The newest ``ingested_at`` (µs) of the model's rows stored from the oldest cursor
        of its versions up to ``until``: a version whose cursor is past it has nothing to
        look at (see :meth:`_look_at_fresh`); ``None`` when no row is stored there."""
        known = [
            c
            for v in versions
            for c in (
                states.get(v, MonitorState()).fresh_cursor,
                self._fresh_cursors.get((model_id, v)),
            )
            if c is not None
        ]
        if not known or until <= min(known):
            return None
        return newest_ingested(self.store, model_id=model_id, since=min(known), until=until)

    #: A cursor of rows looked at is saved with the state at least this often (seconds of
    #: ``ingested_at``) when nothing else makes the state change.
    CURSOR_SAVE_SECONDS = 300.0

    def _look_at_fresh(
        self,
        config: MonitorConfig,
        version: str,
        state: MonitorState,
        watermark: float,
        until: int,
        newest: int | None,
    ) -> tuple[MonitorState, bool]:
        """Look at the version's rows stored since the cursor (see "Re-sent events" and
        "Beyond the horizon"); the state with the cursor moved and the windows that lost an
        event added to ``moved``, and whether it must be saved even without windows to
        evaluate (windows were found, or the saved cursor is old)."""
        key = (config.model_id, version)
        saved = state.fresh_cursor
        known = [c for c in (saved, self._fresh_cursors.get(key)) if c is not None]
        if not known or state.last_closed is None:
            # Nothing evaluated yet (or a state from before the cursor): what is stored is
            # evaluated with the latest copies anyway; rows stored from now on need a look.
            self._fresh_cursors[key] = until
            cursor = state.model_copy(update={"fresh_cursor": until})
            return cursor, state.last_closed is not None
        since = max(known)
        if until <= since:
            return state, False
        size = config.window_seconds
        if newest is None or newest < since:  # no row of the model stored since the cursor
            found = FreshRows(0, 0, ())
        else:
            found = fresh_rows(
                self.store,
                model_id=config.model_id,
                model_version=version,
                since=since,
                until=until,
                size=size,
                beyond_last=self._beyond_last(state, size, watermark),
            )
        if found.beyond:
            self._count_beyond(config.model_id, found.beyond)
        # Windows newer than the newest evaluated one close as a whole later on.
        left = [s for s in found.left if s <= state.last_closed and s not in state.moved]
        if left:
            stored = stored_revisions(
                self.store, model_id=config.model_id, model_version=version, starts=left
            )
            left = [s for s in left if s in stored or state.record(s) is not None]
        self._fresh_cursors[key] = until
        state = state.model_copy(
            update={"fresh_cursor": until, "moved": tuple(sorted({*state.moved, *left}))}
        )
        keep = bool(left) or saved is None or until - saved >= micros(self.CURSOR_SAVE_SECONDS)
        return state, keep

    def _beyond_last(self, state: MonitorState, size: float, watermark: float) -> float | None:
        """Start of the newest window that is never evaluated again: it ends more than the
        horizon before ``watermark`` and a window as new was evaluated (``None``: none)."""
        if state.last_closed is None or not math.isfinite(watermark):
            return None
        size_us = micros(size)
        frontier = micros(watermark - self.horizon_seconds)
        newest = ((frontier - 1) // size_us - 1) * size_us  # ends before the frontier
        return min(newest, micros(state.last_closed)) / MICROS

    #: Data beyond the horizon is logged at most once per model in this many seconds.
    BEYOND_LOG_SECONDS = 3600.0

    def _count_beyond(self, model: str, rows: int) -> None:
        """Count predictions stored beyond the horizon; log them once per model and hour."""
        self.beyond_horizon[model] = self.beyond_horizon.get(model, 0) + rows
        if self.metrics is not None:
            self.metrics.predictions_beyond_horizon(model, rows)
        pending = self._beyond_unlogged.get(model, 0) + rows
        now = self.clock()
        last = self._beyond_logged.get(model)
        if last is not None and now - last < self.BEYOND_LOG_SECONDS:
            self._beyond_unlogged[model] = pending
            return
        log.warning(
            "model %s: %d predictions stored for windows that ended more than the late-data "
            "horizon (%g s) before its watermark; they are kept but never evaluated "
            "(driftline_predictions_beyond_horizon_total; logged once an hour)",
            model,
            pending,
            self.horizon_seconds,
        )
        self._beyond_logged[model] = now
        self._beyond_unlogged[model] = 0

    @staticmethod
    def _drift_totals(config: MonitorConfig, state: MonitorState) -> dict[float, int]:
        if config.concept_drift is None:
            return {}
        return state.concept.totals(config.concept_drift.detectors)

    def _write_rows(self, reports: Sequence[WindowReport], alerts: Sequence[AlertEvent]) -> None:
        write_window_rows(self.store, reports, alerts)

    # the versions of one model, together

    async def _close(
        self, config: MonitorConfig, plans: Sequence[VersionPlan], watermark: float, started: float
    ) -> None:
        """Evaluate the planned windows of all versions together, in rounds of up to
        :attr:`CLOSE_CHUNK` windows per version; save the states that changed without
        windows to evaluate."""
        idle = {p.version: p.state for p in plans if not p.work and p.changed}
        if idle:  # only cursors, detector states or moved windows changed
            idle = {v: st.model_copy(update={"seq": st.seq + 1}) for v, st in idle.items()}
            await self._store(self._save_states, config.model_id, idle)
        busy = [p for p in plans if p.work]
        states = {p.version: p.state for p in busy}
        for first in range(0, max((len(p.work) for p in busy), default=0), self.CLOSE_CHUNK):
            chunks = [
                VersionPlan(p.version, p.profile, states[p.version], chunk, p.changed)
                for p in busy
                if (chunk := p.work[first : first + self.CLOSE_CHUNK])
            ]
            new, closed = await self._close_chunk(config, chunks, watermark)
            states.update(new)
            elapsed, started = time.perf_counter() - started, time.perf_counter()
            if self.metrics is not None and closed:
                share = elapsed / len(closed)
                for step in closed:
                    self.metrics.window_evaluated(
                        step.report, step.alert_events, step.request is not None, share
                    )

    #: Most windows of one version evaluated, written and recorded together (see "Exactly
    #: once").
    CLOSE_CHUNK = 64

    def _aggregate(
        self, config: MonitorConfig, chunks: Sequence[VersionPlan]
    ) -> tuple[dict[str, dict[float, WindowAggregate]], dict[str, dict[float, int]]]:
        """Per version, its windows' aggregates; and the largest revision stored for each
        window (one query for all versions, see "Revisions")."""
        stored = versions_stored_revisions(
            self.store,
            model_id=config.model_id,
            starts={c.version: [w.start for w in c.work] for c in chunks},
        )
        found = {
            c.version: windows_aggregates(
                self.store,
                c.profile,
                model_id=config.model_id,
                model_version=c.version,
                starts=[w.start for w in c.work],
                size=config.window_seconds,
                positive_label=config.performance.positive_label,
                task=config.task,
            )
            for c in chunks
        }
        return found, stored

    async def _close_chunk(
        self, config: MonitorConfig, chunks: Sequence[VersionPlan], watermark: float
    ) -> tuple[dict[str, MonitorState], list[WindowStep]]:
        """Close each version's windows (oldest first) with the core's
        :func:`~driftline.detectors.step.close_window`, write the rows of all, send their
        events, save the states that record them (one insert each); the new states and
        the windows' steps."""
        data, stored = await self._store(self._aggregate, config, chunks)
        training = 0.0
        if config.retrain.max_training_seconds_per_day is not None:
            registry = ModelRegistry(self.store)  # the retrain budget's last 24 hours
            since = time.time() - 86_400
            training = await self._store(registry.training_seconds_since, config.model_id, since)
        size, lateness = config.window_seconds, config.allowed_lateness_seconds
        policies = Policies.from_config(config)
        closed: list[tuple[WindowWork, WindowStep]] = []
        states: dict[str, MonitorState] = {}
        for chunk in chunks:
            version, state = chunk.version, chunk.state
            hits = state.concept.by_start()
            found_of, stored_of = data[version], stored.get(version, {})
            for item in chunk.work:  # each window's policy step sees the one before
                found = found_of[item.start]
                if item.n == FRESH:  # counted with its aggregates
                    item = replace(item, n=found.events, labelled=found.labelled)
                previous = stored_of.get(item.start)
                if previous is not None and item.revision <= previous:
                    # Above every stored revision, so that FINAL returns this one.
                    item = replace(item, revision=previous + 1)
                if found.events == 0 and previous is None:
                    # Every event of it moved to another window or version by a re-send
                    # before it was ever reported: nothing to report; recorded so that it
                    # is not planned again. (One reported before is reported again, empty.)
                    state = advance_state(
                        state,
                        item,
                        state.policy,
                        size=size,
                        watermark=watermark,
                        horizon=self.horizon_seconds,
                    )
                    continue
                newest = (
                    item.start if state.last_closed is None else max(state.last_closed, item.start)
                )
                labelled = {w.start: w.labelled for w in state.windows}
                labelled[item.start] = item.labelled
                step = close_window(
                    config,
                    chunk.profile,
                    policies,
                    state.policy,
                    found.data,
                    window_start=item.start,
                    revision=item.revision,
                    hits=hits.get(item.start, {}),
                    labelled_by_start=labelled,
                    now=newest + size + lateness,
                    model_version=version,  # the model's newest profile may stand in
                    training_seconds_today=training,
                )
                state = advance_state(
                    state,
                    item,
                    step.state,
                    size=size,
                    watermark=watermark,
                    horizon=self.horizon_seconds,
                )
                closed.append((item, step))
            states[version] = state
        # Rows, then the events, then the states that record them (see "Exactly once").
        if closed:
            reports = [step.report for _, step in closed]
            alerts = [event for _, step in closed for event in step.alert_events]
            await self._store(self._write_rows, reports, alerts)
        for _, step in closed:
            for event in step.alert_events:
                await self.send_alert(event.model_id, event.model_dump_json().encode())
                self.alerts_sent += 1
            if step.request is not None:
                await self.send_request(
                    step.request.model_id, step.request.model_dump_json().encode()
                )
                self.requests_sent += 1
        await self._store(self._save_states, config.model_id, states)
        for item, _ in closed:
            if item.revision == 0:
                self.windows_closed += 1
            else:
                self.revisions += 1
        return states, [step for _, step in closed]
