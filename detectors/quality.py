"""Data quality per window: null rate, out-of-reference-range rate, unseen-category rate.

* ``null_rate`` = nulls / all values of the column in the window; it is judged by its
  *increase* over the reference null rate, so a column that is often null in the
  reference does not alert for being as null as usual.
* ``out_of_range_rate`` (numeric) = values below the reference minimum or above its
  maximum / non-null values, read off the profile's two open outer bins.
* ``unseen_rate`` (categorical) = values of categories the reference never showed /
  non-null values.

Below ``min_samples`` values the verdict is ``insufficient``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from driftline.schemas.monitor import QualityConfig, QualityThreshold
from pydantic import BaseModel, ConfigDict, Field

from .profiles import CategoricalCounts, CategoricalProfile, NumericCounts, NumericProfile
from .thresholds import AutoThresholdRule, RateSpread, auto_rate_levels
from .verdict import Verdict, grade

__all__ = ["QualityMetric", "QualityResult", "assess_quality"]

QualityMetric = Literal["null_rate", "out_of_range_rate", "unseen_rate"]


class QualityResult(BaseModel):
    """One data-quality rate of one column in one window.

    ``reference`` is the reference rate (0 for range and unseen rates); the verdict
    grades ``value - reference`` against ``warning``/``critical``.

    Examples
    --------
    >>> prof = NumericProfile(edges=(0.0, 1.0), reference_counts=(0, 10, 0),
    ...                       bin_means=(0.0, 0.5, 1.0), count=10, null_count=0)
    >>> res = assess_quality(prof, NumericCounts(counts=(1, 7, 2), null_count=0),
    ...                      QualityConfig(), min_samples=5)
    >>> [(r.metric, r.value, r.verdict) for r in res]
    [('null_rate', 0.0, 'ok'), ('out_of_range_rate', 0.3, 'critical')]
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: QualityMetric
    feature: str
    value: float = Field(ge=0, le=1)
    reference: float = Field(ge=0, le=1)
    warning: float
    critical: float
    verdict: Verdict
    n: int = Field(ge=0)


def _rate(
    metric: QualityMetric,
    feature: str,
    bad: int,
    n: int,
    reference: float,
    threshold: QualityThreshold,
    min_samples: int,
    learned: tuple[RateSpread, AutoThresholdRule] | None = None,
) -> QualityResult:
    value = bad / n if n > 0 else 0.0
    warning, critical = threshold.warning, threshold.critical
    if learned is not None:
        levels = auto_rate_levels(learned[0], max(n, min_samples), learned[1])
        warning, critical = (max(level - reference, 0.0) for level in levels)
    verdict: Verdict = (
        "insufficient" if n < min_samples or n == 0 else grade(value - reference, warning, critical)
    )
    return QualityResult(
        metric=metric,
        feature=feature,
        value=value,
        reference=reference,
        warning=warning,
        critical=critical,
        verdict=verdict,
        n=n,
    )


def assess_quality(
    profile: NumericProfile | CategoricalProfile,
    counts: NumericCounts | CategoricalCounts,
    config: QualityConfig,
    *,
    min_samples: int = 1,
    feature: str | None = None,
    learned: Mapping[str, RateSpread] | None = None,
) -> list[QualityResult]:
    """Quality rates of one column of a window against its reference profile.

    Parameters
    ----------
    profile
        The column's reference profile.
    counts
        The window's histogram over the profile's bins (or category counts).
    config
        Thresholds.
    min_samples
        Fewer values than this give ``insufficient``.
    feature
        Column name (default: the profile's name).
    learned
        With ``config.threshold`` ``auto``: the column's rates on the reference
        (:func:`~driftline.detectors.thresholds.learn_rate_spread`); a rate without
        one keeps the fixed levels.
    """
    name = profile.name if feature is None else feature
    auto = config.threshold == "auto" and bool(learned)
    rule = (
        AutoThresholdRule(
            warning_rate=config.warning_rate,
            critical_rate=config.critical_rate,
            min_error_increase=config.min_increase,
        )
        if auto
        else None
    )

    def rule_of(metric: str) -> tuple[RateSpread, AutoThresholdRule] | None:
        spread = (learned or {}).get(metric) if rule is not None else None
        return None if spread is None or rule is None else (spread, rule)

    ref_total = profile.count + profile.null_count
    ref_null = profile.null_count / ref_total if ref_total else 0.0
    out = [
        _rate(
            "null_rate",
            name,
            counts.null_count,
            counts.total,
            ref_null,
            config.null_rate,
            min_samples,
            rule_of("null_rate"),
        )
    ]
    if isinstance(profile, NumericProfile) and isinstance(counts, NumericCounts):
        bad = profile.out_of_range(counts) if profile.has_range_bins else 0
        n = counts.n if profile.has_range_bins else 0
        out.append(
            _rate(
                "out_of_range_rate",
                name,
                bad,
                n,
                0.0,
                config.out_of_range_rate,
                min_samples,
                rule_of("out_of_range_rate"),
            )
        )
    elif isinstance(profile, CategoricalProfile) and isinstance(counts, CategoricalCounts):
        vec = profile.vector(counts)
        out.append(
            _rate(
                "unseen_rate",
                name,
                int(vec[-1]),
                counts.n,
                0.0,
                config.unseen_rate,
                min_samples,
                rule_of("unseen_rate"),
            )
        )
    else:
        raise TypeError("profile and counts must both be numeric or both categorical")
    return out
