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
