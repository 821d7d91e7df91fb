"""The per-window evaluator through the alert policy, on windows with known change points."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from driftline.detectors import (
    AlertDecision,
    AlertPolicy,
    BinaryCounts,
    CategoricalCounts,
    ModelProfile,
    NumericCounts,
    PolicyState,
    WindowData,
    WindowReport,
    aggregate_window,
    build_profile,
    evaluate_window,
)
from driftline.schemas.monitor import MonitorConfig

FEATURES = [f"f{i}" for i in range(10)]
HOUR = 3600.0


def _labels_and_predictions(
    rng: np.random.Generator, n: int, accuracy: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = rng.integers(0, 2, n)
    pred = np.where(rng.random(n) < accuracy, y, 1 - y)
    scores = np.clip(np.where(pred == 1, 0.75, 0.25) + rng.normal(0, 0.1, n), 0, 1)
    return y, pred, scores


@pytest.fixture(scope="module")
def config() -> MonitorConfig:
    return MonitorConfig(model_id="credit", features=dict.fromkeys(FEATURES, "numeric"))


@pytest.fixture(scope="module")
def profile(config: MonitorConfig) -> ModelProfile:
    rng = np.random.default_rng(100)
    n = 20_000
    y, pred, scores = _labels_and_predictions(rng, n, 0.9)
    return build_profile(
        "credit",
        "v1",
        features={f: rng.normal(size=n) for f in FEATURES},
        kinds=config.features,
        predictions=pred,
        scores=scores,
        labels=y,
    )


@dataclass
class Run:
    reports: list[WindowReport] = field(default_factory=list)
    decisions: list[AlertDecision] = field(default_factory=list)

    def opened(self) -> list[tuple[str, str | None, str]]:
        return [
            (d.alert.kind, d.alert.feature, d.alert.severity)
            for d in self.decisions
            if d.action == "open"
        ]


def _simulate(
    profile: ModelProfile,
    config: MonitorConfig,
    *,
    windows: int,
    size: int,
    seed: int,
    shift: dict[str, float] | None = None,
    accuracy: float = 0.9,
) -> Run:
    rng = np.random.default_rng(seed)
    policy = AlertPolicy.from_config(config)
    state = PolicyState()
    run = Run()
    for w in range(windows):
        feats = {f: rng.normal((shift or {}).get(f, 0.0), 1.0, size) for f in FEATURES}
        y, pred, scores = _labels_and_predictions(rng, size, accuracy)
        data = aggregate_window(profile, features=feats, predictions=pred, scores=scores, labels=y)
        start = w * HOUR
        report = evaluate_window(profile, config, data, window_start=start, window_end=start + HOUR)
        out = policy.apply(state, report, now=start + HOUR)
        state = out.state
        run.reports.append(report)
        run.decisions.extend(out.decisions)
    return run


def test_no_critical_alert_over_200_stable_windows(
    profile: ModelProfile, config: MonitorConfig
) -> None:
    run = _simulate(profile, config, windows=200, size=2000, seed=1)
    assert [o for o in run.opened() if o[2] == "critical"] == []
    assert run.opened() == []
    worst_psi = max(
        r.value for rep in run.reports for r in rep.select("data_drift") if r.value is not None
    )
    assert worst_psi < 0.05


def test_a_075_sigma_shift_is_critical_for_that_feature_only(
    profile: ModelProfile, config: MonitorConfig
) -> None:
    run = _simulate(profile, config, windows=6, size=2000, seed=2, shift={"f3": 0.75})
    assert run.opened() == [("data_drift", "f3", "critical")]
    for rep in run.reports:
        assert rep.status("data_drift", "f3") == "critical"
        assert {r.feature for r in rep.bad_rows()} == {"f3"}
        row = rep.select("data_drift", "f3")[0]
        assert row.q_value is not None and row.q_value < 1e-10
        assert row.threshold == 0.25


def test_a_005_sigma_shift_at_10000_events_does_not_alert(
    profile: ModelProfile, config: MonitorConfig
) -> None:
    shift = dict.fromkeys(FEATURES, 0.05)
    run = _simulate(profile, config, windows=8, size=10_000, seed=3, shift=shift)
    assert run.opened() == []
    rows = [r for rep in run.reports for r in rep.select("data_drift")]
    # The chi-square test alone would often call it drift; the effect size does not.
    assert sum(r.q_value is not None and r.q_value < 0.05 for r in rows) > len(rows) // 4
    assert max(r.value for r in rows if r.value is not None) < 0.02


def test_an_accuracy_drop_of_10_points_is_a_performance_alert(
    profile: ModelProfile, config: MonitorConfig
) -> None:
    run = _simulate(profile, config, windows=3, size=2000, seed=4, accuracy=0.8)
    assert run.opened() == [("performance", None, "critical")]
    rep = run.reports[0]
    row = next(r for r in rep.select("performance") if r.primary)
    assert row.metric == "accuracy"
    assert row.reference == pytest.approx(0.9, abs=0.01)
    assert row.value == pytest.approx(0.8, abs=0.02)
    assert row.label_coverage == 1.0
    assert row.p_value is not None and row.p_value < 1e-10
    assert rep.status("data_drift") == "ok"
    assert rep.status("prediction_drift") == "ok"


def test_a_categorical_mix_change_alerts_on_that_feature() -> None:
    cfg = MonitorConfig(
        model_id="shop",
        features={"price": "numeric", "qty": "numeric", "region": "categorical"},
    )
    rng = np.random.default_rng(7)
    regions = np.array(["north", "south", "east", "west"])
    before = [0.4, 0.3, 0.2, 0.1]
    after = [0.1, 0.2, 0.3, 0.4]
    n = 10_000
    profile = build_profile(
        "shop",
        "v1",
        features={
            "price": rng.lognormal(3, 0.5, n),
            "qty": rng.poisson(3, n).astype(float),
            "region": rng.choice(regions, n, p=before),
        },
        kinds=cfg.features,
    )
    policy = AlertPolicy.from_config(cfg)
    state = PolicyState()
    opened = []
    statuses = []
    for w, mix in enumerate([before, before, after, after]):
        feats = {
            "price": rng.lognormal(3, 0.5, 2000),
            "qty": rng.poisson(3, 2000).astype(float),
            "region": rng.choice(regions, 2000, p=mix),
        }
        rep = evaluate_window(
            profile,
            cfg,
            aggregate_window(profile, features=feats),
            window_start=w * HOUR,
            window_end=(w + 1) * HOUR,
        )
        statuses.append(rep.status("data_drift", "region"))
        out = policy.apply(state, rep, now=(w + 1) * HOUR)
        state = out.state
        opened += [(d.alert.kind, d.alert.feature) for d in out.decisions if d.action == "open"]
        assert rep.status("data_drift", "price") == "ok"
        assert rep.status("data_drift", "qty") == "ok"
    assert statuses == ["ok", "ok", "critical", "critical"]
    assert opened == [("data_drift", "region")]
    # without labels the performance row says so
    assert rep.select("performance")[0].status == "insufficient"


def test_min_samples_gives_insufficient(profile: ModelProfile, config: MonitorConfig) -> None:
    rng = np.random.default_rng(9)
    feats = {f: rng.normal(3.0, 1.0, 150) for f in FEATURES}  # a huge shift, but 150 < 200
    rep = evaluate_window(
        profile,
        config,
        aggregate_window(profile, features=feats),
        window_start=0.0,
        window_end=HOUR,
    )
    assert {r.status for r in rep.select("data_drift")} == {"insufficient"}
    assert all(r.q_value is None for r in rep.select("data_drift"))
    assert AlertPolicy().apply(PolicyState(), rep, now=HOUR).decisions == ()


def test_quality_rows_flag_nulls_and_out_of_range(
    profile: ModelProfile, config: MonitorConfig
) -> None:
    rng = np.random.default_rng(10)
    feats = {f: rng.normal(size=2000) for f in FEATURES}
    feats["f1"][:600] = np.nan
    feats["f2"][:300] = 50.0
    rep = evaluate_window(
        profile,
        config,
        aggregate_window(profile, features=feats),
        window_start=0.0,
        window_end=HOUR,
    )
    bad = {(r.metric, r.feature, r.status) for r in rep.select("data_quality") if r.is_bad}
    assert bad == {("null_rate", "f1", "critical"), ("out_of_range_rate", "f2", "warning")}


def test_counts_from_sql_style_aggregation_give_the_same_report(
    profile: ModelProfile, config: MonitorConfig
) -> None:
    """Aggregates computed as the store would (bin = number of edges <= x) match."""
    rng = np.random.default_rng(11)
    n = 3000
    feats = {f: rng.normal(0.2 if f == "f0" else 0.0, 1.0, n) for f in FEATURES}
    y, pred, scores = _labels_and_predictions(rng, n, 0.85)
    labels = y.astype(object)
    labels[:500] = None  # unlabelled rows
    raw = aggregate_window(profile, features=feats, predictions=pred, scores=scores, labels=labels)

    def sql_hist(prof_edges: tuple[float, ...], x: np.ndarray, k: int) -> NumericCounts:
        idx = (x[:, None] >= np.asarray(prof_edges)[None, :]).sum(axis=1)
        counts = np.bincount(idx, minlength=k)
        sums = np.array([x[idx == b].sum() for b in range(k)])
        return NumericCounts(counts=tuple(counts.tolist()), sums=tuple(sums.tolist()))

    features = {}
    for f in FEATURES:
        p = profile.features[f]
        assert p.kind == "numeric"
        features[f] = sql_hist(p.edges, feats[f], p.n_bins)
    assert profile.score is not None
    lab = y[500:]
    prd = pred[500:]
    sc = scores[500:]
    bins = np.minimum((sc * 1000).astype(int), 999)
    ll = -np.where(lab == 1, np.log(np.clip(sc, 1e-15, 1)), np.log1p(-np.clip(sc, 0, 1 - 1e-15)))
    perf = BinaryCounts(
        n_predicted=n,
        tp=int(((prd == 1) & (lab == 1)).sum()),
        fp=int(((prd == 1) & (lab == 0)).sum()),
        tn=int(((prd == 0) & (lab == 0)).sum()),
        fn=int(((prd == 0) & (lab == 1)).sum()),
        n_scored=len(lab),
        score_positive=tuple(np.bincount(bins[lab == 1], minlength=1000).tolist()),
        score_negative=tuple(np.bincount(bins[lab == 0], minlength=1000).tolist()),
        log_loss_sum=float(ll.sum()),
        log_loss_sq_sum=float((ll**2).sum()),
    )
    sql = WindowData(
        n_events=n,
        features=features,
        prediction=CategoricalCounts(
            counts={"0": int((pred == 0).sum()), "1": int((pred == 1).sum())}
        ),
        score=sql_hist(profile.score.edges, scores, profile.score.n_bins),
        performance=perf,
    )
    kw = {"window_start": 0.0, "window_end": HOUR}
    a = evaluate_window(profile, config, raw, **kw)
    b = evaluate_window(profile, config, sql, **kw)
    assert len(a.rows) == len(b.rows)
    for ra, rb in zip(a.rows, b.rows, strict=True):
        assert (ra.kind, ra.metric, ra.feature, ra.status, ra.n) == (
            rb.kind,
            rb.metric,
            rb.feature,
            rb.status,
            rb.n,
        )
        _close(ra.value, rb.value)
        _close(ra.p_value, rb.p_value)
    # and merging two halves of the window gives the same numbers too
    half = n // 2
    first = aggregate_window(
        profile,
        features={f: v[:half] for f, v in feats.items()},
        predictions=pred[:half],
        scores=scores[:half],
        labels=labels[:half],
    )
    second = aggregate_window(
        profile,
        features={f: v[half:] for f, v in feats.items()},
        predictions=pred[half:],
        scores=scores[half:],
        labels=labels[half:],
    )
    merged = evaluate_window(profile, config, first + second, **kw)
    for ra, rm in zip(a.rows, merged.rows, strict=True):
        assert (ra.status, ra.n) == (rm.status, rm.n)
        _close(ra.value, rm.value)


def _close(a: float | None, b: float | None) -> None:
    if a is None or b is None:
        assert a is b
    else:
        assert a == pytest.approx(b, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize(
    "method", ["psi", "jensen_shannon", "hellinger", "wasserstein", "ks", "chi2"]
)
def test_every_method_flags_the_shift_through_the_evaluator(
    profile: ModelProfile, method: str
) -> None:
    cfg = MonitorConfig(
        model_id="credit",
        features=dict.fromkeys(FEATURES, "numeric"),
        drift={"numeric": {"method": method}},
    )
    rng = np.random.default_rng(12)
    feats = {f: rng.normal(0.75 if f == "f5" else 0.0, 1.0, 2000) for f in FEATURES}
    rep = evaluate_window(
        profile,
        cfg,
        aggregate_window(profile, features=feats),
        window_start=0.0,
        window_end=HOUR,
    )
    assert {r.feature for r in rep.select("data_drift") if r.is_bad} == {"f5"}
    assert rep.status("data_drift", "f5") == "critical"


def test_config_and_profile_must_agree_on_feature_kinds(profile: ModelProfile) -> None:
    cfg = MonitorConfig(
        model_id="credit",
        features={**dict.fromkeys(FEATURES, "numeric"), "f4": "categorical"},
    )
    with pytest.raises(ValueError, match="f4"):
        evaluate_window(profile, cfg, WindowData(n_events=0), window_start=0.0, window_end=HOUR)
