"""Performance metrics, their intervals, and degradation against the reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from driftline.detectors import (
    BinaryCounts,
    MulticlassCounts,
    RegressionCounts,
    assess_degradation,
    performance_counts,
    roc_auc,
    wilson_interval,
)
from scipy import stats


def test_binary_confusion_metrics_by_hand() -> None:
    pred = [1, 1, 1, 0, 0, 0, 1, 0]
    true = [1, 0, 1, 0, 1, 0, 1, None]
    counts = BinaryCounts.from_arrays(pred, true)
    assert (counts.tp, counts.fp, counts.tn, counts.fn) == (3, 1, 2, 1)
    m = counts.metrics()
    assert m["accuracy"].value == pytest.approx(5 / 7)
    assert m["precision"].value == pytest.approx(3 / 4)
    assert m["recall"].value == pytest.approx(3 / 4)
    assert m["f1"].value == pytest.approx(0.75)
    assert m["accuracy"].label_coverage == pytest.approx(7 / 8)
    assert (m["precision"].n, m["recall"].n) == (4, 4)
    assert "roc_auc" not in m


def test_string_labels_and_positive_label() -> None:
    counts = BinaryCounts.from_arrays(
        ["yes", "no", "yes"], ["yes", "yes", "no"], positive_label="yes"
    )
    assert (counts.tp, counts.fp, counts.fn, counts.tn) == (1, 1, 1, 0)


def test_auc_from_score_histograms_matches_exact_on_grid_scores() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 4000)
    s = np.round(np.clip(0.25 * y + rng.uniform(0, 0.75, 4000), 0, 1), 3)
    counts = BinaryCounts.from_arrays((s > 0.5).astype(int), y, s)
    auc = counts.metrics()["roc_auc"]
    assert auc.value == pytest.approx(roc_auc(y, s), abs=1e-12)
    u = stats.mannwhitneyu(s[y == 1], s[y == 0]).statistic
    assert roc_auc(y, s) == pytest.approx(u / ((y == 1).sum() * (y == 0).sum()))
    assert auc.ci_low < auc.value < auc.ci_high
    assert auc.ci_method == "hanley_mcneil"


def test_log_loss_and_its_interval() -> None:
    y = np.array([1, 0, 1, 1, 0])
    p = np.array([0.9, 0.2, 0.6, 0.99, 0.4])
    m = BinaryCounts.from_arrays((p > 0.5).astype(int), y, p).metrics()["log_loss"]
    losses = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert m.value == pytest.approx(losses.mean())
    half = 1.959963984540054 * losses.std(ddof=1) / math.sqrt(5)
    assert m.ci_high == pytest.approx(losses.mean() + half)


def test_wilson_interval_reference_values() -> None:
    lo, hi = wilson_interval(81, 263)
    # Wilson (1927) / Newcombe (1998) example: 81/263 -> 0.2553 .. 0.3662
    assert (round(lo, 4), round(hi, 4)) == (0.2553, 0.3662)
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(10, 10)[1] == 1.0


def test_f1_bootstrap_interval_is_deterministic_and_covers() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 3000)
    pred = np.where(rng.random(3000) < 0.85, y, 1 - y)
    a = BinaryCounts.from_arrays(pred, y).metrics()["f1"]
    b = BinaryCounts.from_arrays(pred, y).metrics()["f1"]
    assert a == b
    assert a.ci_low < a.value < a.ci_high
    assert a.ci_high - a.ci_low < 0.05


def test_multiclass_accuracy_and_macro_f1() -> None:
    true = ["a", "a", "b", "b", "c", "c"]
    pred = ["a", "b", "b", "b", "c", "a"]
    m = MulticlassCounts.from_arrays(pred, true).metrics()
    assert m["accuracy"].value == pytest.approx(4 / 6)
    f1 = {"a": 2 * 1 / (2 + 2), "b": 2 * 2 / (2 + 3), "c": 2 * 1 / (2 + 1)}
    assert m["macro_f1"].value == pytest.approx(sum(f1.values()) / 3)


def test_multiclass_merge_unites_classes() -> None:
    a = MulticlassCounts.from_arrays(["a", "b"], ["a", "a"])
    b = MulticlassCounts.from_arrays(["c"], ["c"])
    merged = a + b
    whole = MulticlassCounts.from_arrays(["a", "b", "c"], ["a", "a", "c"])
    assert merged == whole


def test_regression_metrics() -> None:
    pred = np.array([2.0, 4.0, 0.0, 5.0])
    true = np.array([1.0, 4.0, 2.0, np.nan])
    m = RegressionCounts.from_arrays(pred, true).metrics()
    err = np.array([1.0, 0.0, -2.0])
    assert m["mae"].value == pytest.approx(1.0)
    assert m["rmse"].value == pytest.approx(math.sqrt((err**2).mean()))
    assert m["mape"].value == pytest.approx((1 / 1 + 0 / 4 + 2 / 2) / 3)
    assert m["mae"].label_coverage == pytest.approx(0.75)
    assert m["rmse"].ci_method == "delta"


@pytest.mark.parametrize(
    ("task", "pred", "true"),
    [
        ("binary_classification", [1, 0, 1, 1], [1, 0, 0, 1]),
        ("multiclass", ["x", "y", "z", "x"], ["x", "y", "y", None]),
        ("regression", [1.0, 2.0, 3.0, 4.0], [1.5, 2.0, None, 3.0]),
    ],
)
def test_counts_merge_equals_whole(task: str, pred: list[object], true: list[object]) -> None:
    whole = performance_counts(task, pred, true)
    merged = performance_counts(task, pred[:2], true[:2]) + performance_counts(
        task, pred[2:], true[2:]
    )
    assert merged.metrics() == whole.metrics()


def _binary(acc: float, n: int, seed: int) -> BinaryCounts:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    pred = np.where(rng.random(n) < acc, y, 1 - y)
    return BinaryCounts.from_arrays(pred, y)


def test_degradation_two_proportion_z_test() -> None:
    ref = _binary(0.9, 20_000, 0).metrics()["accuracy"]
    cur = _binary(0.8, 2000, 1).metrics()["accuracy"]
    res = assess_degradation(cur, ref, warning_drop=0.03, critical_drop=0.05, min_labels=100)
    assert res.verdict == "critical"
    assert res.test == "two_proportion_z"
    pooled = (ref.successes + cur.successes) / (ref.n + cur.n)
    se = math.sqrt(pooled * (1 - pooled) * (1 / ref.n + 1 / cur.n))
    assert res.p_value == pytest.approx(stats.norm.sf((ref.value - cur.value) / se))


def test_small_or_insignificant_drops_are_not_alerts() -> None:
    ref = _binary(0.9, 20_000, 0).metrics()["accuracy"]
    same = _binary(0.9, 2000, 2).metrics()["accuracy"]
    res = assess_degradation(same, ref, warning_drop=0.03, critical_drop=0.05, min_labels=100)
    assert res.verdict == "ok"
    # A 4-point drop on 60 labels is below min_labels...
    few = _binary(0.86, 60, 3).metrics()["accuracy"]
    res = assess_degradation(few, ref, warning_drop=0.03, critical_drop=0.05, min_labels=100)
    assert res.verdict == "insufficient"
    # ...and on 100 labels (86 right) it is not significant: z = 0.0425 / 0.030 ~ 1.4.
    noisy = BinaryCounts(n_predicted=100, tp=43, tn=43, fp=7, fn=7).metrics()["accuracy"]
    res = assess_degradation(noisy, ref, warning_drop=0.03, critical_drop=0.05, min_labels=100)
    assert res.drop is not None and res.drop > 0.03
    assert res.p_value is not None and res.p_value > 0.05
    assert res.verdict == "ok"


def test_error_metrics_degrade_relatively() -> None:
    rng = np.random.default_rng(5)
    y = rng.normal(size=5000)
    ref = RegressionCounts.from_arrays(y + rng.normal(0, 1.0, 5000), y).metrics()["mae"]
    cur = RegressionCounts.from_arrays(y[:2000] + rng.normal(0, 1.2, 2000), y[:2000]).metrics()[
        "mae"
    ]
    res = assess_degradation(cur, ref, warning_drop=0.05, critical_drop=0.15, min_labels=100)
    assert not res.higher_is_better
    assert res.drop == pytest.approx((cur.value - ref.value) / ref.value)
    assert res.verdict == "critical"
    assert res.test == "z"


def test_missing_reference_is_insufficient() -> None:
    cur = _binary(0.8, 500, 1).metrics()["accuracy"]
    res = assess_degradation(cur, None, warning_drop=0.03, critical_drop=0.05, min_labels=100)
    assert res.verdict == "insufficient"
