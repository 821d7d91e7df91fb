"""The monitoring step: what happens when one window of one model version closes.

:func:`close_window` is the one per-window step of driftline. The streaming monitor
(:mod:`driftline.streams.monitor`) and ``driftline backtest`` both call it, window by
window, oldest first, so the same window data and the same previous state give the same
report, alerts and retrain requests in both:

1. the window's concept-drift detections (:mod:`driftline.detectors.concept`) join its
   aggregated data;
2. :func:`~driftline.detectors.evaluate.evaluate_window` scores it against the reference
   profile (drift, quality, performance) into a :class:`WindowReport`;
3. the alert policy turns the report into alert decisions, and the retrain policy the
   opened or escalated alerts into a retrain request
   (:mod:`driftline.detectors.policy`), with ``now`` given by the caller (the window's
   end plus the allowed lateness, the moment streaming closes it), so that replays give
   the same ``opened_at``;
4. the result is a :class:`WindowStep`: the report, the decisions, the events to send
   and the new :class:`~driftline.detectors.policy.PolicyState`.

The streaming monitor also remembers which windows it evaluated, with which revision and
counts (:class:`MonitorState`, :func:`advance_state`); a backtest evaluates every window
once, as revision 0. Later per-window features (rollout decisions, segments) plug in here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from driftline.schemas.events import AlertEvent, RetrainRequestEvent
from driftline.schemas.monitor import MonitorConfig
from pydantic import BaseModel, ConfigDict

from .concept import ConceptState
from .evaluate import WindowData, WindowReport, evaluate_window
from .policy import Alert, AlertDecision, AlertPolicy, PolicyState, RetrainPolicy, alert_id
from .profiles import ModelProfile
from .verdict import SEVERITY_RANK

__all__ = [
    "FRESH",
    "MonitorState",
    "Policies",
    "WindowRecord",
    "WindowStep",
    "WindowWork",
    "advance_state",
    "close_window",
]


@dataclass(frozen=True)
class Policies:
    """The alert and retrain policies of one monitor config.

    Examples
    --------
    >>> cfg = MonitorConfig.from_mapping({"model_id": "m", "features": {"x": "numeric"}})
    >>> Policies.from_config(cfg).retrain.severity
    'critical'
    """

    alert: AlertPolicy
    retrain: RetrainPolicy

    @classmethod
    def from_config(cls, config: MonitorConfig) -> Policies:
        """Both policies as ``config`` sets them."""
        return cls(AlertPolicy.from_config(config), RetrainPolicy.from_config(config))


@dataclass(frozen=True)
class WindowStep:
    """What closing one window produced: its report and what the policies decided.

    Examples
    --------
    >>> step = WindowStep(None, PolicyState(), (), (), None, "no_trigger")  # type: ignore
    >>> step.alert_events, step.request is None
    ((), True)
    """

    report: WindowReport
    #: The policy state after this window.
    state: PolicyState
    decisions: tuple[AlertDecision, ...]
    #: One event per alert opened or escalated, in decision order.
    alert_events: tuple[AlertEvent, ...]
    request: RetrainRequestEvent | None
    #: Why there is no request (``"no_trigger"``, ``"cooldown"``, ...); ``""`` with one.
    reason: str


def close_window(
    config: MonitorConfig,
    profile: ModelProfile,
    policies: Policies,
    state: PolicyState,
    data: WindowData,
    *,
    window_start: float,
    revision: int = 0,
    hits: Mapping[str, int] | None = None,
    labelled_by_start: Mapping[float, int],
    now: float,
    model_version: str | None = None,
    training_seconds_today: float = 0.0,
) -> WindowStep:
    """Evaluate one window and apply the alert and retrain policies to its report.

    Parameters
    ----------
    config, profile
        The monitor config and the reference profile the window is compared with.
    policies, state
        The policies of ``config`` and the policy state after the previous window.
    data
        The window's aggregates (:func:`~driftline.detectors.evaluate.aggregate_window`
        over arrays, or the store's pushed-down aggregation: both give equal data).
    window_start, revision
        The window ``[window_start, window_start + config.window_seconds)`` and the
        revision its rows carry.
    hits
        Concept-drift detections in the window per detector (with a ``concept_drift``
        section; one row per configured detector, 0 where absent).
    labelled_by_start
        Labelled predictions per window start of the windows evaluated so far, this
        one included. A retrain request asks for ``[earliest triggering window start -
        (consecutive_windows - 1) * window, window end)`` (from ``window end -
        training.lookback`` with a lookback, if that is earlier) and counts the
        labelled rows of the triggering windows (from that start to the end) against
        ``retrain.min_labelled_rows``.
    now
        The time the policies see (streaming and the backtest pass the end of the newest
        closed window plus the allowed lateness).
    model_version
        The version the report is for, when the profile is another version's (a version
        without its own reference takes the model's newest).
    training_seconds_today
        Training seconds of the model's versions of the last 24 hours, for the
        ``retrain.max_training_seconds_per_day`` budget (a backtest trains nothing: 0).
        A request beyond a budget is skipped (reason ``budget``) and raises a warning
        ``retrain_budget`` alert for the window.

    Examples
    --------
    >>> import numpy as np
    >>> from driftline.detectors import aggregate_window, build_profile
    >>> cfg = MonitorConfig.from_mapping({"model_id": "m", "window": "1m",
    ...     "features": {"x": "numeric"}, "drift": {"min_samples": 50}})
    >>> rng = np.random.default_rng(0)
    >>> ref = build_profile("m", "v1", features={"x": rng.normal(size=2000)},
    ...                     kinds={"x": "numeric"})
    >>> data = aggregate_window(ref, features={"x": rng.normal(3.0, 1.0, 500)})
    >>> step = close_window(cfg, ref, Policies.from_config(cfg), PolicyState(), data,
    ...     window_start=1767225600.0, labelled_by_start={}, now=1767225660.0)
    >>> [(e.kind, e.feature, e.severity) for e in step.alert_events]  # 3 sigma away
    [('data_drift', 'x', 'critical'), ('data_quality', 'x', 'critical')]
    >>> step.reason
    'too_few_labels'
    """
    names = config.concept_drift.detectors if config.concept_drift is not None else ()
    if names:
        given = hits or {}
        data = data.model_copy(
            update={"concept_drift": {name: int(given.get(name, 0)) for name in names}}
        )
    report = evaluate_window(
        profile,
        config,
        data,
        window_start=window_start,
        window_end=window_start + config.window_seconds,
        revision=revision,
    )
    if model_version is not None and report.model_version != model_version:
        report = report.model_copy(update={"model_version": model_version})
    outcome = policies.alert.apply(state, report, now)
    events = tuple(
        d.alert.to_event() for d in outcome.decisions if d.action in ("open", "escalate")
    )
    triggers = _triggers(policies.retrain, outcome.decisions)
    data_from = data_to = report.window_end
    labelled = 0
    if triggers:
        run = (config.alerting.consecutive_windows - 1) * config.window_seconds
        data_from = min(a.window_start for a in triggers) - run
        labelled = sum(n for s, n in labelled_by_start.items() if data_from <= s < data_to)
        if config.training.lookback is not None:  # never fewer than the triggering windows
            data_from = min(data_from, data_to - config.training.lookback)
    decided = policies.retrain.decide(
        outcome.state,
        outcome.decisions,
        labelled_rows=labelled,
        now=now,
        data_from=data_from,
        data_to=data_to,
        training_seconds_today=training_seconds_today,
    )
    if decided.budget is not None:
        events = (*events, _budget_alert(report, decided.budget, now))
    return WindowStep(
        report=report,
        state=decided.state,
        decisions=outcome.decisions,
        alert_events=events,
        request=None if decided.request is None else decided.request.to_event(),
        reason=decided.reason,
    )


def _budget_alert(report: WindowReport, budget: tuple[str, float, float], now: float) -> AlertEvent:
    """The warning that a retrain the window asked for was beyond a budget."""
    statistic, used, limit = budget
    return Alert(
        alert_id=alert_id(
            report.model_id, report.model_version, "retrain_budget", None, report.window_start
        ),
        model_id=report.model_id,
        model_version=report.model_version,
        kind="retrain_budget",
        feature=None,
        window_start=report.window_start,
        window_end=report.window_end,
        statistic=statistic,
        value=used,
        threshold=limit,
        p_value=None,
        severity="warning",
        opened_at=now,
    ).to_event()


def _triggers(policy: RetrainPolicy, decisions: Sequence[AlertDecision]) -> list[Alert]:
    """The alerts :meth:`RetrainPolicy.decide` takes as triggers."""
    floor = SEVERITY_RANK[policy.severity]
    return [
        d.alert
        for d in decisions
        if d.action in ("open", "escalate")
        and d.alert.kind in policy.on
        and SEVERITY_RANK[d.alert.severity] >= floor
    ]


# --------------------------------------------------------------------------- monitor state


class WindowRecord(BaseModel):
    """What the monitor last evaluated of one closed window.

    Examples
    --------
    >>> WindowRecord(start=60.0, revision=1, n=500, labelled=120).revision
    1
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: float
    revision: int
    n: int
    labelled: int
    #: Concept-drift detections counted in the window when it was evaluated.
    drift: int = 0


class MonitorState(BaseModel):
    """Everything the monitor of one model version remembers; JSON in ``monitor_state``.

    Examples
    --------
    >>> s = MonitorState(windows=(WindowRecord(start=60.0, revision=0, n=5, labelled=2),))
    >>> MonitorState.model_validate_json(s.model_dump_json()) == s
    True
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int = 0
    policy: PolicyState = PolicyState()
    #: Start of the newest window evaluated.
    last_closed: float | None = None
    #: Evaluated windows still within the late-data horizon, oldest first.
    windows: tuple[WindowRecord, ...] = ()
    #: Online concept-drift detectors (only with a ``concept_drift`` section).
    concept: ConceptState = ConceptState()
    #: ``ingested_at`` (µs) up to which stored rows were looked at for re-sent events and
    #: data beyond the horizon (see "Re-sent events").
    fresh_cursor: int | None = None
    #: Starts of reported windows that lost an event to a newer copy in another window or
    #: version, waiting to be evaluated again, oldest first.
    moved: tuple[float, ...] = ()

    def record(self, start: float) -> WindowRecord | None:
        """The record of the window starting at ``start``, if it was evaluated."""
        return next((w for w in self.windows if w.start == start), None)


#: ``WindowWork.n`` and ``labelled`` of a window never evaluated, planned without counting
#: its rows: they are taken from its aggregates.
FRESH = -1


@dataclass(frozen=True)
class WindowWork:
    """A window to evaluate: its start, the revision to write and its current counts
    (:data:`FRESH` where they come with its aggregates).

    Examples
    --------
    >>> WindowWork(start=60.0, revision=0, n=FRESH, labelled=FRESH).n == FRESH
    True
    """

    start: float
    revision: int
    n: int
    labelled: int
    drift: int = 0


def advance_state(
    state: MonitorState,
    work: WindowWork,
    policy: PolicyState,
    *,
    size: float,
    watermark: float,
    horizon: float,
) -> MonitorState:
    """The state after evaluating ``work``: its record replaced, old records dropped."""
    records = {w.start: w for w in state.windows}
    records[work.start] = WindowRecord(
        start=work.start,
        revision=work.revision,
        n=work.n,
        labelled=work.labelled,
        drift=work.drift,
    )
    keep = [
        r for s, r in sorted(records.items()) if s + size >= watermark - horizon or s == work.start
    ]
    last = work.start if state.last_closed is None else max(state.last_closed, work.start)
    # Detections of windows that can no longer be evaluated are dropped.
    hits = tuple(
        h for h in state.concept.hits if h.start + size >= watermark - horizon or h.start > last
    )
    return MonitorState(
        seq=state.seq + 1,
        policy=policy,
        last_closed=last,
        windows=tuple(keep),
        concept=state.concept.model_copy(update={"hits": hits}),
        fresh_cursor=state.fresh_cursor,
        moved=tuple(s for s in state.moved if s != work.start),
    )
