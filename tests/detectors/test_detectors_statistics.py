"""Drift statistics against hand-worked values and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from driftline.detectors import (
    ChiSquare,
    Hellinger,
    JensenShannon,
    KolmogorovSmirnov,
    PopulationStabilityIndex,
    Wasserstein,
    chi2_homogeneity,
    profile_numeric,
)
from driftline.detectors.statistics import smoothed_shares
from scipy import stats
from scipy.spatial.distance import jensenshannon


def test_psi_hand_worked_example() -> None:
    # reference shares 0.5 / 0.3 / 0.2, current 0.3 / 0.3 / 0.4:
    #   (0.3 - 0.5) * ln(0.3 / 0.5) = -0.2 * -0.5108256 = 0.1021651
    #   (0.3 - 0.3) * ln(0.3 / 0.3) =  0
    #   (0.4 - 0.2) * ln(0.4 / 0.2) =  0.2 *  0.6931472 = 0.1386294
    #   PSI                                               = 0.2407946
    res = PopulationStabilityIndex(epsilon=1e-12).compare([50, 30, 20], [30, 30, 40])
    assert res.value == pytest.approx(0.2407946, abs=1e-6)
    assert res.verdict == "warning"  # 0.1 <= 0.24 < 0.25
    # With the default epsilon 1e-4 each share moves by at most ~3e-4:
    # r = (0.5 + 1e-4) / 1.0003 = 0.4999500..., etc.
    r = (np.array([0.5, 0.3, 0.2]) + 1e-4) / 1.0003
    c = (np.array([0.3, 0.3, 0.4]) + 1e-4) / 1.0003
    expected = float(((c - r) * np.log(c / r)).sum())
    assert PopulationStabilityIndex().compare([50, 30, 20], [30, 30, 40]).value == pytest.approx(
        expected, rel=1e-12
    )
    assert expected == pytest.approx(0.2407946, abs=5e-4)


def test_psi_empty_reference_bin_is_finite_and_large() -> None:
    # current mass where the reference had none: (0.5 - 1e-4) * ln(0.5 / 1e-4) ~ 4.26
    res = PopulationStabilityIndex().compare([100, 0], [50, 50])
    assert math.isfinite(res.value)
    assert res.value > 3.0
    assert res.verdict == "critical"


def test_smoothing_formula() -> None:
    assert smoothed_shares([3, 1, 0], epsilon=0.1).tolist() == pytest.approx(
        [(0.75 + 0.1) / 1.3, (0.25 + 0.1) / 1.3, 0.1 / 1.3]
    )


@pytest.fixture(scope="module")
def samples() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    return rng.normal(size=4000), rng.normal(0.3, 1.2, size=1500)


def test_ks_matches_scipy_exactly_on_raw_samples(samples: tuple[np.ndarray, np.ndarray]) -> None:
    ref, cur = samples
    ours = KolmogorovSmirnov().compare_samples(ref, cur)
    theirs = stats.ks_2samp(ref, cur)
    assert ours.value == theirs.statistic
    assert ours.p_value == theirs.pvalue
    assert ours.test == "ks_2samp"


def test_ks_on_histograms_is_within_the_stated_bound(
    samples: tuple[np.ndarray, np.ndarray],
) -> None:
    ref, cur = samples
    prof = profile_numeric(ref)
    hist = prof.histogram(cur)
    ours = KolmogorovSmirnov().compare(prof.reference_counts, hist.counts)
    exact = stats.ks_2samp(ref, cur).statistic
    r = np.asarray(prof.reference_counts) / prof.count
    c = np.asarray(hist.counts) / hist.n
    bound = float(np.maximum(r, c).max())
    assert ours.value <= exact + 1e-12
    assert exact <= ours.value + bound
    # The p-value is the asymptotic Kolmogorov form ks_2samp uses for that D.
    en = round(len(ref) * len(cur) / (len(ref) + len(cur)))
    assert ours.p_value == pytest.approx(stats.kstwo.sf(ours.value, en), rel=1e-12)


def test_wasserstein_matches_scipy_on_raw_samples(
    samples: tuple[np.ndarray, np.ndarray],
) -> None:
    ref, cur = samples
    ours = Wasserstein().compare_samples(ref, cur)
    assert ours.value == pytest.approx(stats.wasserstein_distance(ref, cur) / ref.std(), rel=1e-12)
    assert ours.p_value is None


def test_wasserstein_on_histograms_matches_weighted_scipy(
    samples: tuple[np.ndarray, np.ndarray],
) -> None:
    ref, cur = samples
    prof = profile_numeric(ref)
    hist = prof.histogram(cur)
    cur_points = np.where(
        np.asarray(hist.counts) > 0,
        np.asarray(hist.sums) / np.maximum(hist.counts, 1),
        prof.bin_means,
    )
    ours = Wasserstein().compare(
        prof.reference_counts,
        hist.counts,
        reference_points=prof.bin_means,
        current_points=cur_points,
        scale=prof.scale,
    )
    theirs = stats.wasserstein_distance(
        prof.bin_means, cur_points, prof.reference_counts, hist.counts
    )
    assert ours.value == pytest.approx(theirs / prof.scale, rel=1e-12)
    # Binned with per-bin means it stays close to the exact distance (within 10 %).
    exact = stats.wasserstein_distance(ref, cur) / ref.std()
    assert ours.value == pytest.approx(exact, rel=0.1)


def test_jensen_shannon_matches_scipy_base_2(samples: tuple[np.ndarray, np.ndarray]) -> None:
    ref, cur = samples
    prof = profile_numeric(ref)
    hist = prof.histogram(cur)
    edges = np.r_[-np.inf, prof.edges, np.inf]
    p = np.histogram(ref, edges)[0]
    q = np.histogram(cur, edges)[0]
    # np.histogram closes the last finite bin on the right; our bins are all left-closed,
    # which only matters for values equal to an edge (none here except the reference max).
    assert np.abs(p - np.asarray(prof.reference_counts)).sum() <= 2
    assert np.array_equal(q, hist.counts)
    ours = JensenShannon().compare(prof.reference_counts, hist.counts)
    theirs = jensenshannon(np.asarray(prof.reference_counts), q, base=2)
    assert ours.value == pytest.approx(theirs, rel=1e-12)
    assert JensenShannon().compare([1, 0], [0, 1]).value == pytest.approx(1.0)


def test_hellinger_closed_form() -> None:
    p = np.array([0.5, 0.3, 0.2])
    q = np.array([0.2, 0.3, 0.5])
    expected = math.sqrt(1 - float(np.sqrt(p * q).sum()))
    assert Hellinger().compare(p * 1000, q * 1000).value == pytest.approx(expected, rel=1e-12)


def test_chi2_matches_chi2_contingency() -> None:
    ref = np.array([480, 310, 205, 5, 0])
    cur = np.array([40, 35, 20, 3, 0])
    res = ChiSquare().compare(ref, cur)
    table = np.vstack([ref, cur])[:, (ref + cur) > 0]
    chi2, p, dof, _ = stats.chi2_contingency(table, correction=False)
    assert res.test_statistic == pytest.approx(chi2, rel=1e-12)
    assert res.p_value == pytest.approx(p, rel=1e-9)
    stat, p2, dof2 = chi2_homogeneity(ref, cur)
    assert (stat, p2, dof2) == (pytest.approx(chi2, rel=1e-12), pytest.approx(p, rel=1e-9), dof)
    # Cohen's w on smoothed shares
    r = smoothed_shares(ref)
    c = smoothed_shares(cur)
    assert res.value == pytest.approx(math.sqrt(float(((c - r) ** 2 / r).sum())), rel=1e-12)


def test_chi2_two_column_table_has_no_continuity_correction() -> None:
    ref, cur = np.array([60, 40]), np.array([45, 55])
    res = ChiSquare().compare(ref, cur)
    _, p, _, _ = stats.chi2_contingency(np.vstack([ref, cur]), correction=False)
    assert res.p_value == pytest.approx(p, rel=1e-9)


def test_histogram_statistics_share_the_chi2_homogeneity_p_value() -> None:
    ref, cur = [500, 300, 200], [430, 330, 240]
    _, p, _ = chi2_homogeneity(ref, cur)
    for stat in (PopulationStabilityIndex(), JensenShannon(), Hellinger(), Wasserstein()):
        res = stat.compare(ref, cur)
        assert res.p_value == pytest.approx(p)
        assert res.test == "chi2_homogeneity"


def test_thresholds_grade_the_value() -> None:
    stat = PopulationStabilityIndex(warning=0.3, critical=0.5)
    assert stat.compare([50, 30, 20], [30, 30, 40]).verdict == "ok"
    with pytest.raises(ValueError):
        PopulationStabilityIndex(warning=0.5, critical=0.3)
    with pytest.raises(ValueError):
        PopulationStabilityIndex(warning=-1.0)


def test_mean_shift_sizes_map_to_psi_defaults() -> None:
    """0.05 sigma at 10k events stays far below 0.1; 0.75 sigma passes 0.25."""
    rng = np.random.default_rng(4)
    prof = profile_numeric(rng.normal(size=50_000))
    small = prof.histogram(rng.normal(0.05, 1, 10_000))
    large = prof.histogram(rng.normal(0.75, 1, 10_000))
    psi = PopulationStabilityIndex()
    assert psi.compare(prof.reference_counts, small.counts).value < 0.02
    assert psi.compare(prof.reference_counts, large.counts).value > 0.4
