"""The learned performance thresholds keep their stated false-alarm rate (simulation).

Unchanged windows are drawn as the reference was, many seeds and windows at 500, 2,000
and 10,000 labels each; the share judged worse than the learned warning (critical)
drop stays within ``warning_rate`` (``critical_rate``) plus three simulation standard
errors. The minimum effect is switched off (``min_error_increase: 0``) so that the
statistical part of the rule is what is measured; it only lowers the rates.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from driftline.detectors.performance import MetricEstimate, RegressionCounts
from driftline.detectors.thresholds import AutoThresholdRule, MetricSpread, auto_drops, learn_spread

RULE = AutoThresholdRule(warning_rate=1e-3, critical_rate=1e-5, min_error_increase=0.0)
SIZES = (500, 2_000, 10_000)


def _within(measured: float, rate: float, trials: int) -> bool:
    return measured <= rate + 3 * math.sqrt(rate / trials)


def _accuracy(right: int, n: int) -> MetricEstimate:
    return MetricEstimate(
        metric="accuracy", value=right / n, n=n, successes=right, n_labelled=n, n_predicted=n
    )


def _reference(rng: np.random.Generator, windows: np.ndarray, per_window: int):
    """The reference's accuracy and its windows' (true accuracies ``windows``)."""
    right = rng.binomial(per_window, windows)
    each = [_accuracy(int(k), per_window) for k in right]
    whole = _accuracy(int(right.sum()), per_window * windows.size)
    return whole, each


@pytest.mark.parametrize("accuracy", [0.94, 0.99, 0.7])
def test_unchanged_accuracy_windows_alert_at_most_at_the_stated_rate(accuracy: float) -> None:
    rng = np.random.default_rng(int(accuracy * 100))
    references, windows_per_reference = 100, 2_000
    for n in SIZES:
        warned = critical = 0
        for _ in range(references):
            whole, each = _reference(rng, np.full(40, accuracy), 2_000)
            spread = learn_spread(whole, each, min_labels=100)
            drops = auto_drops(whole, spread, n, RULE)
            assert drops is not None
            observed = rng.binomial(n, accuracy, windows_per_reference) / n
            fall = whole.value - observed  # type: ignore[operator]
            warned += int(np.count_nonzero(fall >= drops[0]))
            critical += int(np.count_nonzero(fall >= drops[1]))
        trials = references * windows_per_reference
        assert _within(warned / trials, RULE.warning_rate, trials), (n, warned / trials)
        assert _within(critical / trials, RULE.critical_rate, trials), (n, critical / trials)
        # and the rule is no blunter than it says: the rate is of its order, not far below
        if accuracy < 0.99:
            assert warned / trials > RULE.warning_rate / 5, (n, warned / trials)


def test_the_reference_window_spread_is_learned_and_keeps_the_rate() -> None:
    """The true accuracy moves from window to window (sd 0.006) on the reference and
    after it: a rule without the spread alarms in most windows of 10,000 labels; the
    learned one keeps its rate."""
    rng = np.random.default_rng(7)
    references, per_reference = 60, 1_000
    warned = naive = 0
    taus = []
    for _ in range(references):
        truth = np.clip(rng.normal(0.94, 0.006, 60), 0, 1)
        whole, each = _reference(rng, truth, 5_000)
        spread = learn_spread(whole, each, min_labels=100)
        taus.append(spread.tau)
        learned = auto_drops(whole, spread, 10_000, RULE)
        blind = auto_drops(whole, MetricSpread(metric="accuracy", tau=0, windows=0), 10_000, RULE)
        assert learned is not None and blind is not None
        now = np.clip(rng.normal(0.94, 0.006, per_reference), 0, 1)
        fall = whole.value - rng.binomial(10_000, now) / 10_000  # type: ignore[operator]
        warned += int(np.count_nonzero(fall >= learned[0]))
        naive += int(np.count_nonzero(fall >= blind[0]))
    trials = references * per_reference
    # tau on the arcsine scale: 0.006 / (2 sqrt(p (1 - p))) = 0.0126
    assert 0.009 < float(np.median(taus)) < 0.016
    assert _within(warned / trials, RULE.warning_rate * 3, trials), warned / trials
    assert naive / trials > 0.02, naive / trials


def test_unchanged_mae_windows_alert_at_most_at_the_stated_rate() -> None:
    rng = np.random.default_rng(11)
    references = 40
    for n, per_reference in zip(SIZES, (5_000, 1_500, 300), strict=True):
        warned = critical = 0
        for _ in range(references):
            errors = rng.normal(0, 1.0, 40 * 2_000)
            whole = RegressionCounts.from_arrays(errors, np.zeros(errors.size)).metrics()["mae"]
            drops = auto_drops(whole, None, n, RULE)
            assert drops is not None and whole.value is not None
            mae = np.abs(rng.normal(0, 1.0, (per_reference, n))).mean(axis=1)
            growth = (mae - whole.value) / whole.value
            warned += int(np.count_nonzero(growth >= drops[0]))
            critical += int(np.count_nonzero(growth >= drops[1]))
        trials = references * per_reference
        assert _within(warned / trials, RULE.warning_rate, trials), (n, warned / trials)
        assert _within(critical / trials, RULE.critical_rate, trials), (n, critical / trials)


def test_the_minimum_effect_and_the_fallbacks() -> None:
    reference = _accuracy(94_000, 100_000)
    rule = AutoThresholdRule()  # min_error_increase 0.1
    # with a million labels the statistics would flag a 2% growth of the error; the
    # minimum effect asks for 10% (0.006 of accuracy) and 20% for critical
    warning, critical = auto_drops(reference, None, 1_000_000, rule)  # type: ignore[misc]
    assert warning == pytest.approx(0.006) and critical == pytest.approx(0.012)
    # fewer windows than MIN_WINDOWS with enough labels: no spread
    assert learn_spread(reference, [_accuracy(90, 100)] * 3).windows == 3
    assert learn_spread(reference, [_accuracy(90, 100)] * 3).tau == 0.0
    # no value or no standard error: no learned drops (the fixed ones apply)
    empty = MetricEstimate(metric="f1", value=None, n=0, n_labelled=0, n_predicted=0)
    assert auto_drops(empty, None, 500, rule) is None


# -- data-quality rates


@pytest.mark.parametrize("base", [0.0, 0.01, 0.2])
def test_unchanged_null_rates_alert_at_most_at_the_stated_rate(base: float) -> None:
    from driftline.detectors.thresholds import auto_rate_levels, learn_rate_spread

    rng = np.random.default_rng(int(base * 1000) + 3)
    references, per_reference = 100, 2_000
    for n in SIZES:
        warned = critical = 0
        for _ in range(references):
            counts = np.full(30, 2_000)
            spread = learn_rate_spread("null_rate", rng.binomial(counts, base), counts)
            warning, worst = auto_rate_levels(spread, n, RULE)
            rates = rng.binomial(n, base, per_reference) / n
            warned += int(np.count_nonzero(rates - spread.base_rate >= warning - spread.base_rate))
            critical += int(np.count_nonzero(rates >= worst))
        trials = references * per_reference
        assert _within(warned / trials, RULE.warning_rate, trials), (n, warned / trials)
        assert _within(critical / trials, RULE.critical_rate, trials), (n, critical / trials)


def _heavy(rng: np.random.Generator, size: int | tuple[int, int]) -> np.ndarray:
    return rng.standard_t(2, size)  # heavy tails: new windows often leave the range


def test_out_of_range_rates_learned_leaving_one_window_out_keep_the_rate() -> None:
    """A heavy-tailed feature: a fresh window of 10,000 values lands outside the
    reference's range now and then (about half a value each). The base rate learned
    by leaving each reference window out keeps the stated rate; taking the reference's
    own rate (0) alarms in many windows."""
    from driftline.detectors.profiles import quality_windows
    from driftline.detectors.thresholds import RateSpread, auto_rate_levels, learn_rate_spread

    rng = np.random.default_rng(17)
    references, per_reference, n = 40, 100, 10_000
    warned = naive = 0
    bases = []
    for _ in range(references):
        values = _heavy(rng, 20 * 2_000)
        starts = np.repeat(np.arange(20) * 60.0, 2_000)
        bad, counts = quality_windows(values, "numeric", starts)["out_of_range_rate"]
        spread = learn_rate_spread("out_of_range_rate", bad, counts)
        bases.append(spread.base_rate)
        warning, _ = auto_rate_levels(spread, n, RULE)
        zero = RateSpread(
            metric="out_of_range_rate", base_rate=0.0, n=values.size, tau=0, windows=0
        )
        blind, _ = auto_rate_levels(zero, n, RULE)
        low, high = values.min(), values.max()
        fresh = _heavy(rng, (per_reference, n))
        rates = ((fresh < low) | (fresh > high)).mean(axis=1)
        warned += int(np.count_nonzero(rates >= warning))
        naive += int(np.count_nonzero(rates >= blind))
    trials = references * per_reference
    # one window of 2,000 against 19 others of 2,000: about 2 / 20 / 2,000 per value
    assert 2e-5 < float(np.median(bases)) < 1e-4
    assert _within(warned / trials, RULE.warning_rate, trials), warned / trials
    assert naive / trials > 0.005, naive / trials


def test_unseen_categories_learned_leaving_one_window_out() -> None:
    from driftline.detectors.profiles import quality_windows
    from driftline.detectors.thresholds import learn_rate_spread

    rng = np.random.default_rng(5)
    categories = rng.zipf(1.6, 20 * 1_000).astype(str)  # a long tail of rare names
    starts = np.repeat(np.arange(20) * 60.0, 1_000)
    bad, counts = quality_windows(categories, "categorical", starts)["unseen_rate"]
    spread = learn_rate_spread("unseen_rate", bad, counts)
    # a name seen in one window only is unseen for it: the long tail is a few percent
    assert 0.01 < spread.base_rate < 0.2 and spread.windows == 20
    # and the same names again in a fresh window are unseen at about that rate
    seen = set(categories.tolist())
    fresh = rng.zipf(1.6, (200, 1_000)).astype(str)
    fresh_rate = float(np.mean([[c not in seen for c in row] for row in fresh]))
    assert 0.5 * spread.base_rate < fresh_rate < 1.5 * spread.base_rate


def test_review_edge_cases_fall_back_instead_of_misleading() -> None:
    from driftline.detectors.profiles import quality_windows
    from driftline.detectors.thresholds import learn_rate_spread
    from driftline.schemas.monitor import QualityConfig

    # a window whose others hold no values cannot say what is "out of range"
    values = np.concatenate([np.full(300, np.nan), np.arange(300.0), np.arange(300.0)])
    starts = np.repeat([0.0, 60.0, 120.0], 300)
    bad, n = quality_windows(values, "numeric", starts, min_others=200)["out_of_range_rate"]
    assert bad.tolist() == [0, 0, 0] and n.tolist() == [0, 300, 300]
    lonely = quality_windows(values[:600], "numeric", starts[:600], min_others=200)
    spread = learn_rate_spread("out_of_range_rate", *lonely["out_of_range_rate"])
    assert spread.base_rate == 0.0  # not 1.0: the all-null window's others were empty
    # a reference without spread (a perfect score): the fixed drops apply
    perfect = MetricEstimate(
        metric="roc_auc",
        value=1.0,
        ci_low=1.0,
        ci_high=1.0,
        n=500,
        n_labelled=500,
        n_predicted=500,
    )
    assert auto_drops(perfect, None, 500, AutoThresholdRule()) is None
    with pytest.raises(ValueError, match="warning_rate"):
        QualityConfig(warning_rate=1e-6, critical_rate=1e-4)
