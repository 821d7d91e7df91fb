"""PCA reconstruction drift: its stated false-alarm rates by simulation, and power on a
change of correlation that leaves every marginal as it was."""

from __future__ import annotations

import numpy as np
import pytest
from driftline.detectors.multivariate import (
    MultivariateModel,
    fit_multivariate,
    multivariate_sums,
)
from driftline.detectors.thresholds import DRIFT_TAILS

KINDS = {"a": "numeric", "b": "numeric", "c": "numeric", "d": "numeric", "tier": "categorical"}


def draw(
    rng: np.random.Generator, n: int, rho: float = 0.8, tail: float | None = None
) -> dict[str, np.ndarray]:
    """Correlated numerics (``c`` Student-t with ``tail`` degrees of freedom, normal
    when None), a categorical tied to them, and missing values."""
    a = rng.normal(size=n)
    b = rho * a + np.sqrt(1 - rho**2) * rng.normal(size=n)
    c = rng.normal(size=n) if tail is None else rng.standard_t(tail, size=n)
    d = 0.5 * a + 0.5 * c + rng.normal(0, 0.5, n)
    tier = np.where(a + rng.normal(0, 0.5, n) > 0.5, "gold", np.where(c > 0, "silver", "bronze"))
    tier = tier.astype(object)
    tier[rng.random(n) < 0.02] = None
    d[rng.random(n) < 0.03] = np.nan
    return {"a": a, "b": b, "c": c, "d": d, "tier": tier}


def fitted(
    seed: int, windows: int = 8, per_window: int = 2_000, tail: float | None = None
) -> MultivariateModel:
    rng = np.random.default_rng(seed)
    n = windows * per_window
    model = fit_multivariate(
        draw(rng, n, tail=tail), KINDS, window_starts=np.repeat(np.arange(windows), per_window)
    )
    assert model is not None
    return model


@pytest.mark.parametrize("tail", [None, 5])
def test_unchanged_windows_warn_and_alarm_at_most_at_the_stated_rates(
    tail: float | None,
) -> None:
    """30 references x 200 unchanged windows of 500 rows, with normal or Student-t (5
    degrees of freedom) data: the warning rate is within 2.5x its stated 0.00135
    (Monte Carlo, the gamma approximation and the reference's own sampling) and at
    most 2 of 6,000 windows are critical (stated 3.2e-5: 0.2 expected)."""
    warnings = criticals = total = 0
    for seed in range(30):
        model = fitted(seed, tail=tail)
        rng = np.random.default_rng(1_000 + seed)
        warning, critical = model.levels(500)
        for _ in range(200):
            mean = multivariate_sums(model, draw(rng, 500, tail=tail)).mean
            assert mean is not None
            warnings += mean > warning
            criticals += mean > critical
            total += 1
    rate = warnings / total
    assert rate <= 2.5 * DRIFT_TAILS[0], rate
    assert criticals <= 2


def test_a_correlation_flip_with_unchanged_marginals_is_critical_in_its_window() -> None:
    for seed in range(10):
        model = fitted(seed)
        rng = np.random.default_rng(50 + seed)
        flipped = draw(rng, 2_000, rho=-0.8)  # b's marginal is still N(0, 1)
        mean = multivariate_sums(model, flipped).mean
        assert mean is not None and mean > model.levels(2_000)[1]


def test_fewer_than_two_features_fit_nothing_and_missing_columns_are_imputed() -> None:
    rng = np.random.default_rng(0)
    assert fit_multivariate({"a": rng.normal(size=100)}, {"a": "numeric"}) is None
    model = fitted(0)
    window = draw(rng, 1_000)
    missing = {name: values for name, values in window.items() if name != "d"}
    assert multivariate_sums(model, missing).n == 1_000  # d imputed with its mean
    assert multivariate_sums(model, {}).n == 0


@pytest.mark.parametrize("variance", [0.3, 0.65, 0.95])
def test_the_kept_components_explain_the_asked_share(variance: float) -> None:
    rng = np.random.default_rng(1)
    model = fit_multivariate(draw(rng, 5_000), KINDS, variance=variance)
    assert model is not None
    assert 1 <= len(model.components) < len(model.columns)
    axes = np.asarray(model.components)
    assert np.allclose(axes @ axes.T, np.eye(len(axes)), atol=1e-9)  # orthonormal rows
    assert model.explained >= variance or len(model.components) == len(model.columns) - 1


def test_encoding_treats_infinite_and_missing_as_the_center_and_refuses_a_short_column() -> None:
    model = fitted(0)
    rng = np.random.default_rng(1)
    window = draw(rng, 5)
    window["a"][0], window["b"][1] = np.inf, -np.inf
    window["c"][2] = np.nan
    z = model.encode(window, 5)
    assert z[0, model.columns.index("a")] == z[1, model.columns.index("b")] == 0.0
    assert z[2, model.columns.index("c")] == 0.0 and np.abs(z).max() <= 4.0
    assert z.flags.c_contiguous
    window["a"] = window["a"][:1]
    with pytest.raises(ValueError, match="feature 'a' has 1 values for 5 rows"):
        model.encode(window, 5)
