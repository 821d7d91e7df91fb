"""Alert and retrain policy."""

from __future__ import annotations

import pytest
from driftline.detectors import (
    AlertDecision,
    AlertPolicy,
    MetricRow,
    PolicyState,
    RetrainPolicy,
    WindowReport,
    alert_id,
    request_id,
)
from driftline.detectors.verdict import Verdict
from driftline.schemas.monitor import MonitorConfig

H = 3600.0


def _row(status: Verdict, feature: str | None = "x", kind: str = "data_drift") -> MetricRow:
    return MetricRow(
        kind=kind,
        metric="psi",
        feature=feature,
        value=0.3,
        warning=0.1,
        critical=0.25,
        threshold=0.25,
        status=status,
        n=1000,
    )


def _report(i: int, *rows: MetricRow, version: str = "v1") -> WindowReport:
    return WindowReport(
        model_id="m",
        model_version=version,
        window_start=i * H,
        window_end=(i + 1) * H,
        n_events=1000,
        rows=rows,
    )


def _run(
    policy: AlertPolicy, statuses: list[Verdict], state: PolicyState | None = None
) -> tuple[PolicyState, list[list[AlertDecision]]]:
    state = state or PolicyState()
    out = []
    for i, status in enumerate(statuses):
        res = policy.apply(state, _report(i, _row(status)), now=(i + 1) * H)
        state = res.state
        out.append(list(res.decisions))
    return state, out


def _actions(decisions: list[list[AlertDecision]]) -> list[list[str]]:
    return [[d.action for d in ds] for ds in decisions]


def test_consecutive_windows_before_opening() -> None:
    policy = AlertPolicy(consecutive_windows=3, cooldown_seconds=0)
    _, out = _run(
        policy,
        [
            "warning",
            "critical",
            "ok",
            "warning",
            "insufficient",
            "warning",
            "critical",
            "critical",
            "ok",
        ],
    )
    assert _actions(out) == [[], [], [], [], [], [], ["open"], [], ["resolve"]]
    opened = out[6][0].alert
    assert opened.severity == "critical"
    assert opened.window_start == 6 * H
    assert opened.opened_at == 7 * H


def test_one_open_alert_per_key_with_escalation() -> None:
    policy = AlertPolicy(consecutive_windows=1, cooldown_seconds=0)
    state, out = _run(policy, ["warning", "warning", "critical", "critical"])
    assert _actions(out) == [["open"], [], ["escalate"], []]
    assert out[2][0].alert.alert_id == out[0][0].alert.alert_id
    assert out[2][0].alert.severity == "critical"
    assert len(state.open_alerts()) == 1


def test_keys_are_independent() -> None:
    policy = AlertPolicy()
    rep = _report(0, _row("critical", "a"), _row("critical", "b"), _row("ok", "c"))
    out = policy.apply(PolicyState(), rep, now=H)
    assert sorted(d.alert.feature for d in out.decisions) == ["a", "b"]
    assert len({d.alert.alert_id for d in out.decisions}) == 2


def test_cooldown_counts_from_the_last_opening() -> None:
    policy = AlertPolicy(consecutive_windows=1, cooldown_seconds=3 * H)
    _, out = _run(policy, ["critical", "ok", "critical", "critical", "ok"])
    # opened at 1h, resolved at 2h, suppressed at 3h (2h < 3h), reopened at 4h
    assert _actions(out) == [["open"], ["resolve"], [], ["open"], ["resolve"]]


def test_non_primary_rows_do_not_alert() -> None:
    row = _row("critical").model_copy(update={"primary": False})
    out = AlertPolicy().apply(PolicyState(), _report(0, row), now=H)
    assert out.decisions == ()


def test_worst_row_of_a_key_decides() -> None:
    rows = (
        _row("ok", kind="data_quality").model_copy(update={"metric": "null_rate"}),
        _row("critical", kind="data_quality").model_copy(update={"metric": "out_of_range_rate"}),
    )
    out = AlertPolicy().apply(PolicyState(), _report(0, *rows), now=H)
    assert [(d.alert.kind, d.alert.statistic) for d in out.decisions] == [
        ("data_quality", "out_of_range_rate")
    ]


def test_ids_are_deterministic_and_replay_is_idempotent() -> None:
    policy = AlertPolicy(consecutive_windows=2, cooldown_seconds=0)
    statuses: list[Verdict] = ["critical", "critical", "ok", "critical", "critical"]
    s1, a = _run(policy, statuses)
    s2, b = _run(policy, statuses)
    assert a == b
    assert s1 == s2
    first = a[1][0].alert
    assert first.alert_id == alert_id("m", "v1", "data_drift", "x", H)
    assert len(first.alert_id) == 32
    # replaying the last report changes nothing
    again = policy.apply(s1, _report(4, _row("critical")), now=5 * H)
    assert again.decisions == ()
    assert again.state == s1
    # the version is part of the id
    assert alert_id("m", "v2", "data_drift", "x", H) != first.alert_id


def test_state_round_trip_mid_run() -> None:
    policy = AlertPolicy(consecutive_windows=2, cooldown_seconds=H)
    statuses: list[Verdict] = ["warning", "critical", "critical", "ok", "warning", "warning"]
    _, straight = _run(policy, statuses)
    state, first = _run(policy, statuses[:3])
    restored = PolicyState.model_validate_json(state.model_dump_json())
    assert restored == state
    rest = []
    for i, status in enumerate(statuses[3:], start=3):
        res = policy.apply(restored, _report(i, _row(status)), now=(i + 1) * H)
        restored = res.state
        rest.append(list(res.decisions))
    assert first + rest == straight


def test_late_labels_revision_can_open_and_stale_windows_cannot() -> None:
    policy = AlertPolicy(consecutive_windows=1, cooldown_seconds=0)
    perf = "performance"
    state = PolicyState()
    for i in range(3):
        report = _report(i, _row("insufficient", None, perf))
        state = policy.apply(state, report, now=(i + 1) * H).state
    # late labels arrive for the newest window (revision 1): it turns critical
    out = policy.apply(state, _report(2, _row("critical", None, perf)), now=4 * H)
    assert [d.action for d in out.decisions] == ["open"]
    assert out.decisions[0].alert.window_start == 2 * H
    # a revision that turns an older window bad while a newer one is ok opens nothing
    state = policy.apply(out.state, _report(3, _row("ok", None, perf)), now=5 * H).state
    late = policy.apply(state, _report(1, _row("critical", None, perf)), now=6 * H)
    assert late.decisions == ()


def test_policy_from_config() -> None:
    cfg = MonitorConfig.from_yaml(
        "model_id: m\nfeatures: {x: numeric}\nalerting: {consecutive_windows: 3, cooldown: 30m}\n"
        "retrain: {on: [concept_drift], min_labelled_rows: 10, cooldown: 1d, severity: warning}\n"
    )
    assert AlertPolicy.from_config(cfg) == AlertPolicy(consecutive_windows=3, cooldown_seconds=1800)
    assert RetrainPolicy.from_config(cfg) == RetrainPolicy(
        on=("concept_drift",), min_labelled_rows=10, cooldown_seconds=86400, severity="warning"
    )
    with pytest.raises(ValueError):
        AlertPolicy(consecutive_windows=20, history=10)


# ------------------------------------------------------------------------------ retrain


def _opened(kind: str, severity: Verdict, i: int = 0, feature: str | None = None) -> AlertDecision:
    policy = AlertPolicy(cooldown_seconds=0)
    out = policy.apply(PolicyState(), _report(i, _row(severity, feature, kind)), now=(i + 1) * H)
    assert len(out.decisions) == 1
    return out.decisions[0]


def test_retrain_triggers_filters_and_cooldown() -> None:
    policy = RetrainPolicy(
        on=("performance", "data_drift"), min_labelled_rows=1000, cooldown_seconds=6 * H
    )
    perf = _opened("performance", "critical")
    drift = _opened("data_drift", "critical", feature="x")
    state = PolicyState()
    kw = {"data_from": 0.0, "data_to": H}
    assert (
        policy.decide(
            state, [_opened("data_quality", "critical")], labelled_rows=5000, now=H, **kw
        ).reason
        == "no_trigger"
    )
    assert (
        policy.decide(
            state, [_opened("performance", "warning")], labelled_rows=5000, now=H, **kw
        ).reason
        == "no_trigger"
    )
    assert policy.decide(state, [perf], labelled_rows=999, now=H, **kw).reason == "too_few_labels"
    out = policy.decide(state, [drift, perf], labelled_rows=1000, now=H, **kw)
    assert out.reason == "requested"
    assert out.request is not None
    assert out.request.reason == tuple(sorted([perf.alert.alert_id, drift.alert.alert_id]))
    assert out.request.request_id == request_id(
        "m", "v1", [drift.alert.alert_id, perf.alert.alert_id]
    )
    # same alerts in another order -> same request id
    again = policy.decide(state, [perf, drift], labelled_rows=1000, now=H, **kw)
    assert again.request == out.request
    # cooldown
    later = _opened("performance", "critical", i=3)
    assert (
        policy.decide(out.state, [later], labelled_rows=5000, now=4 * H, **kw).reason == "cooldown"
    )
    ok = policy.decide(out.state, [later], labelled_rows=5000, now=7 * H, **kw)
    assert ok.reason == "requested"
    restored = PolicyState.model_validate_json(ok.state.model_dump_json())
    assert restored.last_retrain_at == {"m": 7 * H}
