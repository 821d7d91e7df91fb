"""CBPE: the stated interval's coverage with no shift, tracking of the realized drop
under covariate shift, and when the calibration is kept or skipped."""

from __future__ import annotations

import numpy as np
import pytest
from driftline.detectors.estimation import (
    MIN_CALIBRATION_ROWS,
    estimate,
    fit_calibration,
    fit_isotonic,
    score_blocks,
)
from scipy.stats import rankdata


def model_scores(x: np.ndarray, sharpness: float = 1.0) -> np.ndarray:
    """The model's positive-class probability for inputs ``x``; ``sharpness`` != 1
    makes the reported scores over- or under-confident."""
    logit = 2.0 * x
    return 1.0 / (1.0 + np.exp(-sharpness * logit))


def draw(rng: np.random.Generator, n: int, shift: float = 0.0, sharpness: float = 1.0):
    """Inputs ``x ~ N(1.2 - shift, 1)`` (shift moves them toward the boundary at 0),
    labels from the true probability, reported scores, predictions at 0.5."""
    x = rng.normal(1.2 - shift, 1.0, n)
    truth = model_scores(x)
    labels = (rng.random(n) < truth).astype(int)
    scores = model_scores(x, sharpness)
    return scores, labels, scores >= 0.5


@pytest.mark.parametrize("sharpness", [1.0, 2.5])
def test_with_no_shift_the_interval_covers_the_realized_accuracy_at_its_rate(
    sharpness: float,
) -> None:
    """20 references x 25 unchanged windows of 2,000: the 95% interval holds the
    realized accuracy in 92-98% of windows, for calibrated scores (calibration skipped)
    and over-confident ones (isotonic calibration kept)."""
    covered = total = 0
    errors = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        calibration = fit_calibration(*draw(rng, 20_000, sharpness=sharpness)[:2])
        assert calibration.kept == (sharpness != 1.0)
        for _ in range(25):
            scores, labels, predicted = draw(rng, 2_000, sharpness=sharpness)
            est = estimate(score_blocks(calibration, scores, predicted))["accuracy"]
            realized = float(np.mean(predicted == labels))
            assert est.value is not None and est.lower is not None and est.upper is not None
            covered += est.lower <= realized <= est.upper
            errors.append(est.value - realized)
            total += 1
    assert 0.92 <= covered / total <= 0.98, covered / total
    assert abs(float(np.mean(errors))) < 0.003  # unbiased


def test_under_covariate_shift_the_estimate_follows_the_realized_drop() -> None:
    """Inputs moving toward the decision boundary over 10 windows of 2,000: accuracy
    falls from about 0.86 to 0.79; the estimate's mean absolute error is within 0.03."""
    rng = np.random.default_rng(7)
    calibration = fit_calibration(*draw(rng, 20_000)[:2])
    errors, realized_drop = [], []
    for step in range(10):
        scores, labels, predicted = draw(rng, 2_000, shift=0.13 * step)
        est = estimate(score_blocks(calibration, scores, predicted))
        realized = float(np.mean(predicted == labels))
        errors.append(abs(est["accuracy"].value - realized))  # type: ignore[operator]
        realized_drop.append(realized)
        for metric in ("precision", "recall", "f1"):
            assert est[metric].value is not None
    assert realized_drop[0] - realized_drop[-1] > 0.05
    assert float(np.mean(errors)) <= 0.03


def test_the_other_metrics_match_their_realized_values_on_average() -> None:
    rng = np.random.default_rng(3)
    calibration = fit_calibration(*draw(rng, 40_000)[:2])
    scores, labels, predicted = draw(rng, 200_000, shift=0.5)
    est = estimate(score_blocks(calibration, scores, predicted))
    tp = int(np.sum(predicted & (labels == 1)))
    fp = int(np.sum(predicted & (labels == 0)))
    fn = int(np.sum(~predicted & (labels == 1)))
    ranks = rankdata(scores)
    positives = labels == 1
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    auc = (ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    realized = {
        "precision": tp / (tp + fp),
        "recall": tp / (tp + fn),
        "f1": 2 * tp / (2 * tp + fp + fn),
        "roc_auc": auc,
    }
    for metric, value in realized.items():
        assert est[metric].value == pytest.approx(value, abs=0.01), metric


def test_calibration_is_skipped_on_a_small_reference_and_pav_is_monotone() -> None:
    rng = np.random.default_rng(4)
    small = fit_calibration(*draw(rng, MIN_CALIBRATION_ROWS - 1, sharpness=3.0)[:2])
    assert not small.kept and small.n == MIN_CALIBRATION_ROWS - 1
    x = rng.random(500)
    y = (rng.random(500) < x).astype(float)
    upper, value = fit_isotonic(x, y)
    assert np.all(np.diff(value) > 0) and np.all(np.diff(upper) > 0)
    # the fit keeps the total: each block's value is the mean of its labels
    blocks = np.searchsorted(upper, x, side="left")
    assert np.isclose((value[blocks]).sum(), y.sum())
