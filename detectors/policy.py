"""Alert and retrain policy: window reports -> alert decisions -> retrain requests.

Pure and deterministic: the caller passes the time (``now``, epoch seconds; a backtest
passes the window end) and the previous :class:`PolicyState`, and gets a new state and
the decisions back. The state is a frozen pydantic model that serialises to JSON, so a
restarted worker restores it and carries on.

Alert keys
    One alert may be open per ``(model_id, kind, feature, segment)``. A key's status in a window
    is the worst status of its primary rows (``feature`` is ``None`` for performance and
    concept drift, ``"prediction"``/``"score"`` for prediction drift).
Opening
    An alert opens when the key is ``warning``/``critical`` in ``consecutive_windows``
    windows in a row (``insufficient`` windows neither count nor break the run; an
    ``ok`` window breaks it), the run reaches the newest window seen for the key, no
    alert is open for the key, and ``cooldown`` seconds have passed since the key's
    previous alert opened. Severity is the triggering window's.
Escalation and resolution
    A critical window while a warning alert is open escalates it (same ``alert_id``).
    An ``ok`` window that is the newest window seen for the key resolves the open alert.
Revisions
    Reports for a window already seen (new revisions after late labels) replace that
    window's status in the key's history, so a late-labelled window can open an alert
    and a replayed report changes nothing.
Identifiers
    ``alert_id`` is the first 32 hex digits of SHA-256 over model id, model version,
    kind, feature and the triggering window's start; ``request_id`` likewise over model
    id, model version and the sorted triggering alert ids. Replays give the same ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, Literal

from driftline.schemas.events import AlertEvent, RetrainRequestEvent
from driftline.schemas.monitor import AlertKind, MonitorConfig, Severity
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .evaluate import MetricRow, WindowReport
from .segments import segment_label
from .verdict import SEVERITY_RANK, Verdict

__all__ = [
    "Alert",
    "AlertDecision",
    "AlertPolicy",
    "KeyState",
    "PolicyOutcome",
    "PolicyState",
    "RetrainOutcome",
    "RetrainPolicy",
    "RetrainRequest",
    "alert_id",
    "request_id",
]


def _digest(parts: Iterable[str]) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]


def alert_id(
    model_id: str,
    model_version: str,
    kind: str,
    feature: str | None,
    window_start: float,
    segment: Mapping[str, str] | None = None,
) -> str:
    """Deterministic alert id (32 hex digits); a segment slice's alert includes its
    ``key=value`` (the whole model's ids are those it always had).

    Examples
    --------
    >>> alert_id("credit", "v1", "data_drift", "income", 3600.0)
    'fb3da1b866e82e1a66a5371a093e9de5'
    >>> alert_id("credit", "v1", "data_drift", "income", 3600.0, {"country": "de"}) != (
    ...     alert_id("credit", "v1", "data_drift", "income", 3600.0))
    True
    """
    parts: tuple[str, ...] = (
        model_id,
        model_version,
        kind,
        feature or "",
        repr(float(window_start)),
    )
    if segment:
        parts = (*parts, segment_label(segment))
    return _digest(parts)


def request_id(model_id: str, model_version: str, alert_ids: Iterable[str]) -> str:
    """Deterministic retrain request id (32 hex digits) over the sorted alert ids.

    Examples
    --------
    >>> request_id("credit", "v1", ["b", "a"]) == request_id("credit", "v1", ["a", "b"])
    True
    """
    return _digest((model_id, model_version, *sorted(alert_ids)))


#: The span of a retrain budget, in seconds.
_DAY: Final = 86_400.0


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Alert(_Frozen):
    """An alert, with the fields of the ``alert`` event (DESIGN §3).

    Examples
    --------
    >>> a = Alert(alert_id="x", model_id="m", model_version="v1", kind="performance",
    ...           feature=None, window_start=0.0, window_end=60.0, statistic="accuracy",
    ...           value=0.8, threshold=0.05, p_value=0.001, severity="critical",
    ...           opened_at=60.0)
    >>> a.severity
    'critical'
    """

    alert_id: str
    model_id: str
    model_version: str
    kind: AlertKind
    feature: str | None
    window_start: float
    window_end: float
    statistic: str
    value: float | None
    threshold: float
    p_value: float | None
    severity: Severity
    opened_at: float
    #: ``None`` for the whole model, else the segment slice (``{"country": "de"}``).
    segment: dict[str, str] | None = None

    def to_event(self) -> AlertEvent:
        """The ``alert`` event of this alert (a missing value is sent as 0.0).

        Examples
        --------
        >>> t = 1767225600.0
        >>> a = Alert(alert_id="x", model_id="m", model_version="v1", kind="data_drift",
        ...           feature="age", window_start=t, window_end=t + 60, statistic="psi",
        ...           value=None, threshold=0.25, p_value=None, severity="critical",
        ...           opened_at=t + 60)
        >>> a.to_event().value, a.to_event().type
        (0.0, 'alert')
        """
        return AlertEvent(
            alert_id=self.alert_id,
            model_id=self.model_id,
            model_version=self.model_version,
            kind=self.kind,
            feature=self.feature,
            window_start=self.window_start,
            window_end=self.window_end,
            statistic=self.statistic,
            value=self.value if self.value is not None else 0.0,
            threshold=self.threshold,
            p_value=self.p_value,
            severity=self.severity,
            opened_at=self.opened_at,
            segment=self.segment,
        )


class AlertDecision(_Frozen):
    """What the policy decided about one alert key in one report.

    Examples
    --------
    >>> a = Alert(alert_id="x", model_id="m", model_version="v1", kind="concept_drift",
    ...           feature=None, window_start=0.0, window_end=60.0, statistic="adwin",
    ...           value=1.0, threshold=1.0, p_value=None, severity="critical", opened_at=60.0)
    >>> AlertDecision(action="resolve", alert=a, at=120.0).action
    'resolve'
    """

    action: Literal["open", "escalate", "resolve"]
    alert: Alert
    at: float


class KeyState(_Frozen):
    """Memory of one alert key: recent window statuses and the open alert.

    Examples
    --------
    >>> KeyState(model_id="m", kind="data_drift", feature="x").open_alert is None
    True
    """

    model_id: str
    kind: AlertKind
    feature: str | None
    segment: dict[str, str] | None = None
    history: tuple[tuple[float, Verdict], ...] = ()
    open_alert: Alert | None = None
    last_opened_at: float | None = None


class PolicyState(_Frozen):
    """Everything the policy remembers; JSON round-trips exactly.

    Examples
    --------
    >>> s = PolicyState()
    >>> PolicyState.model_validate_json(s.model_dump_json()) == s
    True
    """

    keys: tuple[KeyState, ...] = ()
    last_retrain_at: dict[str, float] = {}
    #: Per model, the times of its requests of the last 24 hours (retrain budget).
    retrain_times: dict[str, tuple[float, ...]] = {}

    def open_alerts(self) -> list[Alert]:
        """Alerts currently open."""
        return [k.open_alert for k in self.keys if k.open_alert is not None]


class PolicyOutcome(_Frozen):
    """New state and the decisions taken on one report.

    Examples
    --------
    >>> out = AlertPolicy().apply(PolicyState(), WindowReport(
    ...     model_id="m", model_version="v1", window_start=0.0, window_end=60.0,
    ...     n_events=0, rows=()), now=60.0)
    >>> out.decisions, out.state == PolicyState()
    ((), True)
    """

    state: PolicyState
    decisions: tuple[AlertDecision, ...]


_Key = tuple[str, str, str | None, str]


def _key_sort(k: KeyState) -> tuple[str, str, str, str]:
    return (k.model_id, k.kind, k.feature or "", segment_label(k.segment))


class AlertPolicy(_Frozen):
    """Turns window reports into alert decisions.

    Examples
    --------
    >>> def report(start, status):
    ...     row = MetricRow(kind="data_drift", metric="psi", feature="x", value=0.3,
    ...                     warning=0.1, critical=0.25, threshold=0.25, status=status, n=500)
    ...     return WindowReport(model_id="m", model_version="v1", window_start=start,
    ...                         window_end=start + 60, n_events=500, rows=(row,))
    >>> policy = AlertPolicy(consecutive_windows=2, cooldown_seconds=0)
    >>> state = PolicyState()
    >>> for start, status in [(0, "critical"), (60, "critical"), (120, "ok")]:
    ...     out = policy.apply(state, report(start, status), now=start + 60)
    ...     state = out.state
    ...     print(start, [(d.action, d.alert.severity) for d in out.decisions])
    0 []
    60 [('open', 'critical')]
    120 [('resolve', 'critical')]
    """

    consecutive_windows: int = Field(default=1, ge=1)
    cooldown_seconds: float = Field(default=7200.0, ge=0)
    history: int = Field(default=16, ge=2)

    @model_validator(mode="after")
    def _history_long_enough(self) -> AlertPolicy:
        if self.history <= self.consecutive_windows:
            raise ValueError("history must exceed consecutive_windows")
        return self

    @classmethod
    def from_config(cls, config: MonitorConfig) -> AlertPolicy:
        """Policy from a monitor config's ``alerting`` section."""
        n = config.alerting.consecutive_windows
        return cls(
            consecutive_windows=n,
            cooldown_seconds=config.alerting.cooldown_seconds,
            history=max(16, n + 1),
        )

    def apply(self, state: PolicyState, report: WindowReport, now: float) -> PolicyOutcome:
        """Apply one window report; return the new state and the decisions."""
        keys: dict[_Key, KeyState] = {
            (k.model_id, k.kind, k.feature, segment_label(k.segment)): k for k in state.keys
        }
        grouped: dict[_Key, list[MetricRow]] = {}
        for row in report.rows:
            if row.primary:
                key = (report.model_id, row.kind, row.feature, segment_label(row.segment))
                grouped.setdefault(key, []).append(row)
        decisions: list[AlertDecision] = []
        for key, rows in grouped.items():
            worst_row = max(rows, key=lambda r: SEVERITY_RANK[r.status])
            ks = keys.get(key) or KeyState(
                model_id=key[0], kind=key[1], feature=key[2], segment=worst_row.segment
            )
            new_ks, decision = self._step(ks, report, worst_row, now)
            keys[key] = new_ks
            if decision is not None:
                decisions.append(decision)
        new_state = state.model_copy(update={"keys": tuple(sorted(keys.values(), key=_key_sort))})
        return PolicyOutcome(state=new_state, decisions=tuple(decisions))

    def _step(
        self, ks: KeyState, report: WindowReport, row: MetricRow, now: float
    ) -> tuple[KeyState, AlertDecision | None]:
        start = report.window_start
        history = dict(ks.history)
        if len(history) >= self.history and start < min(history):
            return ks, None  # older than anything remembered
        history[start] = row.status
        ordered = sorted(history.items())[-self.history :]
        latest = ordered[-1][0]
        ks = ks.model_copy(update={"history": tuple(ordered)})
        bad = row.status in ("warning", "critical")
        open_alert = ks.open_alert

        if open_alert is not None:
            if row.status == "ok" and start >= latest:
                closed = ks.model_copy(update={"open_alert": None})
                return closed, AlertDecision(action="resolve", alert=open_alert, at=now)
            if row.status == "critical" and open_alert.severity == "warning" and start >= latest:
                raised = open_alert.model_copy(
                    update={
                        "severity": "critical",
                        "statistic": row.metric,
                        "value": row.value,
                        "threshold": row.threshold,
                        "p_value": row.p_value,
                        "window_end": max(open_alert.window_end, report.window_end),
                    }
                )
                return ks.model_copy(update={"open_alert": raised}), AlertDecision(
                    action="escalate", alert=raised, at=now
                )
            return ks, None

        if not bad:
            return ks, None
        if any(status == "ok" for s, status in ordered if s > start):
            return ks, None  # a newer window is fine: the run does not reach the present
        run = 0
        for _, status in reversed(ordered):
            if status == "ok":
                break
            if status in ("warning", "critical"):
                run += 1
        if run < self.consecutive_windows:
            return ks, None
        if ks.last_opened_at is not None and now - ks.last_opened_at < self.cooldown_seconds:
            return ks, None
        severity: Severity = "critical" if row.status == "critical" else "warning"
        alert = Alert(
            alert_id=alert_id(
                report.model_id, report.model_version, ks.kind, ks.feature, start, ks.segment
            ),
            model_id=report.model_id,
            model_version=report.model_version,
            kind=ks.kind,
            feature=ks.feature,
            window_start=start,
            window_end=report.window_end,
            statistic=row.metric,
            value=row.value,
            threshold=row.threshold,
            p_value=row.p_value,
            severity=severity,
            opened_at=now,
            segment=ks.segment,
        )
        opened = ks.model_copy(update={"open_alert": alert, "last_opened_at": now})
        return opened, AlertDecision(action="open", alert=alert, at=now)


class RetrainRequest(_Frozen):
    """A request to retrain, with the fields of the ``retrain_request`` event.

    Examples
    --------
    >>> RetrainRequest(request_id="r", model_id="m", model_version="v1", reason=("a",),
    ...                data_from=0.0, data_to=60.0, requested_at=60.0).reason
    ('a',)
    """

    request_id: str
    model_id: str
    model_version: str
    reason: tuple[str, ...]
    data_from: float
    data_to: float
    requested_at: float

    def to_event(self) -> RetrainRequestEvent:
        """The ``retrain_request`` event of this request.

        Examples
        --------
        >>> t = 1767225600.0
        >>> RetrainRequest(request_id="r", model_id="m", model_version="v1", reason=("a",),
        ...     data_from=t, data_to=t + 60, requested_at=t + 60).to_event().type
        'retrain_request'
        """
        return RetrainRequestEvent(
            request_id=self.request_id,
            model_id=self.model_id,
            model_version=self.model_version,
            reason=self.reason,
            data_from=self.data_from,
            data_to=self.data_to,
            requested_at=self.requested_at,
        )


class RetrainOutcome(_Frozen):
    """New state, the request (if any), and why there is none otherwise.

    Examples
    --------
    >>> out = RetrainPolicy().decide(PolicyState(), [], labelled_rows=0, now=0.0,
    ...                              data_from=0.0, data_to=0.0)
    >>> out.request is None, out.reason
    (True, 'no_trigger')
    """

    state: PolicyState
    request: RetrainRequest | None
    reason: Literal["requested", "no_trigger", "too_few_labels", "cooldown", "budget"]
    #: With reason ``budget``: which budget (``retrains_per_day`` or
    #: ``training_seconds_per_day``), how much of it was used, and its limit.
    budget: tuple[str, float, float] | None = None


class RetrainPolicy(_Frozen):
    """Decides when alerts ask for a retrain.

    Examples
    --------
    >>> a = Alert(alert_id="a1", model_id="m", model_version="v1", kind="performance",
    ...           feature=None, window_start=0.0, window_end=60.0, statistic="accuracy",
    ...           value=0.8, threshold=0.05, p_value=0.001, severity="critical",
    ...           opened_at=60.0)
    >>> policy = RetrainPolicy(on=("performance",), min_labelled_rows=100,
    ...                        cooldown_seconds=3600)
    >>> out = policy.decide(PolicyState(), [AlertDecision(action="open", alert=a, at=60.0)],
    ...                     labelled_rows=500, now=60.0, data_from=0.0, data_to=60.0)
    >>> out.reason, out.request.reason
    ('requested', ('a1',))
    """

    on: tuple[AlertKind, ...] = ("performance", "data_drift")
    min_labelled_rows: int = Field(default=1000, ge=0)
    cooldown_seconds: float = Field(default=21600.0, ge=0)
    severity: Severity = "critical"
    max_per_day: int | None = Field(default=None, ge=1)
    max_training_seconds_per_day: float | None = Field(default=None, gt=0)

    @classmethod
    def from_config(cls, config: MonitorConfig) -> RetrainPolicy:
        """Policy from a monitor config's ``retrain`` section."""
        r = config.retrain
        return cls(
            on=r.on,
            min_labelled_rows=r.min_labelled_rows,
            cooldown_seconds=r.cooldown_seconds,
            severity=r.severity,
            max_per_day=r.max_per_day,
            max_training_seconds_per_day=r.max_training_seconds_per_day,
        )

    def decide(
        self,
        state: PolicyState,
        decisions: Sequence[AlertDecision],
        *,
        labelled_rows: int,
        now: float,
        data_from: float,
        data_to: float,
        training_seconds_today: float = 0.0,
    ) -> RetrainOutcome:
        """Whether the alerts just opened or escalated ask for a retrain.

        Parameters
        ----------
        state
            Policy state (holds the last request time per model).
        decisions
            Decisions of :meth:`AlertPolicy.apply` for one model.
        labelled_rows
            Labelled rows available for training.
        now
            Current time, epoch seconds.
        data_from, data_to
            Training data range to request.
        training_seconds_today
            Training seconds of the model's versions of the last 24 hours (the shell
            reads them from the registry; a backtest trains nothing).
        """
        floor = SEVERITY_RANK[self.severity]
        triggers = [
            d.alert
            for d in decisions
            if d.action in ("open", "escalate")
            and d.alert.kind in self.on
            and SEVERITY_RANK[d.alert.severity] >= floor
        ]
        if not triggers:
            return RetrainOutcome(state=state, request=None, reason="no_trigger")
        if labelled_rows < self.min_labelled_rows:
            return RetrainOutcome(state=state, request=None, reason="too_few_labels")
        model_id = triggers[0].model_id
        version = triggers[0].model_version
        if any(a.model_id != model_id for a in triggers):
            raise ValueError("decide() takes the decisions of one model at a time")
        last = state.last_retrain_at.get(model_id)
        if last is not None and now - last < self.cooldown_seconds:
            return RetrainOutcome(state=state, request=None, reason="cooldown")
        recent = tuple(t for t in state.retrain_times.get(model_id, ()) if now - t < _DAY)
        budget: tuple[str, float, float] | None = None
        if self.max_per_day is not None and len(recent) >= self.max_per_day:
            budget = ("retrains_per_day", float(len(recent)), float(self.max_per_day))
        elif (
            self.max_training_seconds_per_day is not None
            and training_seconds_today >= self.max_training_seconds_per_day
        ):
            budget = (
                "training_seconds_per_day",
                training_seconds_today,
                self.max_training_seconds_per_day,
            )
        if budget is not None:
            return RetrainOutcome(state=state, request=None, reason="budget", budget=budget)
        ids = tuple(sorted({a.alert_id for a in triggers}))
        request = RetrainRequest(
            request_id=request_id(model_id, version, ids),
            model_id=model_id,
            model_version=version,
            reason=ids,
            data_from=data_from,
            data_to=data_to,
            requested_at=now,
        )
        new_state = state.model_copy(
            update={
                "last_retrain_at": {**state.last_retrain_at, model_id: now},
                "retrain_times": {**state.retrain_times, model_id: (*recent, now)},
            }
        )
        return RetrainOutcome(state=new_state, request=request, reason="requested")
