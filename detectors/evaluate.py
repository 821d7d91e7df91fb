"""The per-window evaluator: profile + config + a window's aggregates -> a report.

The evaluator works only on aggregates (:class:`WindowData`): per-column histograms
over the profile's frozen bins, category counts, performance counts. They come either
from raw numpy arrays through :func:`aggregate_window` (backtest) or from the same
aggregates computed by SQL in the store (streaming); the numbers are the same either
way because nothing downstream looks at raw rows.

Drift gating
    A column's drift statistic grades its effect size (``ok``/``warning``/``critical``).
    Where the statistic has a p-value (every histogram statistic does, see
    :mod:`driftline.detectors.statistics`), the grade stands only if the p-value
    survives Benjamini-Hochberg at ``drift.fdr`` across the window's *features*
    (one family); the prediction and score columns form a second family. A column
    with fewer than ``drift.min_samples`` non-null values in the window (or in the
    reference) is ``insufficient`` and is left out of the family.
Rows
    Every check gives a :class:`MetricRow`; ``threshold`` is the critical threshold for
    a critical row and the warning threshold otherwise. Performance rows cover every
    metric of the task; only the configured metric has ``primary=True`` (the alert
    policy ignores the others).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, TypeAlias

import numpy as np
import numpy.typing as npt
from driftline.schemas.monitor import TASK_METRICS, AlertKind, MonitorConfig
from pydantic import BaseModel, ConfigDict, Field

from .coerce import category_array
from .estimation import ESTIMATED_METRICS, ScoreBlocks, score_blocks
from .estimation import estimate as estimate_metrics
from .fdr import benjamini_hochberg
from .multivariate import MULTIVARIATE_METRIC, MultivariateSums, multivariate_sums
from .performance import (
    BinaryCounts,
    MulticlassCounts,
    RegressionCounts,
    assess_degradation,
    performance_counts,
)
from .profiles import (
    CategoricalCounts,
    CategoricalProfile,
    FeatureCounts,
    ModelProfile,
    NumericCounts,
    NumericProfile,
    build_profile,  # noqa: F401 - used by the doctests
)
from .quality import assess_quality
from .segments import segment_slices
from .statistics import DriftResult, DriftStatistic, _bin_points, get_statistic
from .thresholds import AutoThresholdRule, auto_drops, drift_levels
from .verdict import SEVERITY_RANK, Verdict

__all__ = [
    "MetricRow",
    "WindowData",
    "WindowReport",
    "aggregate_window",
    "drift_result",
    "evaluate_window",
    "performance_drops",
]

PerformanceCountsField: TypeAlias = Annotated[
    BinaryCounts | MulticlassCounts | RegressionCounts, Field(discriminator="kind")
]


class WindowData(BaseModel):
    """Aggregates of one window, over a profile's frozen bins.

    Examples
    --------
    >>> d = WindowData(n_events=2, features={"x": NumericCounts(counts=(0, 2, 0))})
    >>> (d + d).n_events, (d + d).features["x"].counts
    (4, (0, 4, 0))
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_events: int = Field(ge=0)
    features: dict[str, FeatureCounts] = {}
    prediction: FeatureCounts | None = None
    score: NumericCounts | None = None
    performance: PerformanceCountsField | None = None
    concept_drift: dict[str, int] = {}
    #: Rows and summed reconstruction errors (with a multivariate model in the profile).
    multivariate: MultivariateSums | None = None
    #: Predictions with a finite score per predicted class and calibration block (with a
    #: calibration in the profile; label-free estimation).
    estimation: ScoreBlocks | None = None
    #: Per segment key, per slice value with rows in the window, the slice's aggregates
    #: (over the same bins; see :mod:`~driftline.detectors.segments`).
    segments: dict[str, dict[str, WindowData]] = {}

    def __add__(self, other: WindowData) -> WindowData:
        """Merge two partial aggregates of the same window."""

        def add(a: Any, b: Any) -> Any:
            if a is None:
                return b
            if b is None:
                return a
            return a + b

        features = dict(self.features)
        for name, counts in other.features.items():
            features[name] = add(features.get(name), counts)
        drift = dict(self.concept_drift)
        for name, hits in other.concept_drift.items():
            drift[name] = drift.get(name, 0) + hits
        segments = {key: dict(values) for key, values in self.segments.items()}
        for key, values in other.segments.items():
            mine = segments.setdefault(key, {})
            for value, data in values.items():
                mine[value] = add(mine.get(value), data)
        return WindowData(
            n_events=self.n_events + other.n_events,
            features=features,
            prediction=add(self.prediction, other.prediction),
            score=add(self.score, other.score),
            performance=add(self.performance, other.performance),
            concept_drift=drift,
            multivariate=add(self.multivariate, other.multivariate),
            estimation=add(self.estimation, other.estimation),
            segments=segments,
        )


class MetricRow(BaseModel):
    """One metric of one window (a row of ``window_metrics``).

    Examples
    --------
    >>> row = MetricRow(kind="data_drift", metric="psi", feature="x", value=0.3,
    ...                 warning=0.1, critical=0.25, threshold=0.25, status="critical", n=500)
    >>> row.is_bad
    True
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: AlertKind
    metric: str
    feature: str | None = None
    #: ``None`` for the whole model, else the slice (``{"country": "de"}``).
    segment: dict[str, str] | None = None
    value: float | None
    p_value: float | None = None
    q_value: float | None = None
    reference: float | None = None
    warning: float
    critical: float
    threshold: float
    status: Verdict
    n: int = Field(ge=0)
    label_coverage: float | None = None
    primary: bool = True
    #: A 95% interval of the value where one is stated (estimated performance).
    lower: float | None = None
    upper: float | None = None

    @property
    def is_bad(self) -> bool:
        """Whether the row is ``warning`` or ``critical``."""
        return self.status in ("warning", "critical")


class WindowReport(BaseModel):
    """All metric rows of one window of one model version.

    Examples
    --------
    >>> rep = WindowReport(model_id="m", model_version="v1", window_start=0.0,
    ...                    window_end=60.0, n_events=0, rows=())
    >>> rep.status("data_drift")
    'insufficient'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_id: str
    model_version: str
    window_start: float
    window_end: float
    revision: int = Field(default=0, ge=0)
    n_events: int = Field(ge=0)
    rows: tuple[MetricRow, ...]

    def select(
        self,
        kind: str | None = None,
        feature: str | None = None,
        segment: Mapping[str, str] | None = None,
    ) -> list[MetricRow]:
        """Rows of a kind (and feature) of the whole model, or of one ``segment`` slice,
        in report order."""
        wanted = dict(segment) if segment else None
        return [
            r
            for r in self.rows
            if (kind is None or r.kind == kind)
            and (feature is None or r.feature == feature)
            and r.segment == wanted
        ]

    def status(
        self, kind: str, feature: str | None = None, segment: Mapping[str, str] | None = None
    ) -> Verdict:
        """Worst status of the primary rows of a kind (and feature) of the whole model or
        of one ``segment`` slice."""
        out: Verdict = "insufficient"
        for row in self.select(kind, feature, segment):
            if row.primary and SEVERITY_RANK[row.status] > SEVERITY_RANK[out]:
                out = row.status
        return out

    def bad_rows(self) -> list[MetricRow]:
        """Primary rows with status warning or critical (of the whole model and of every
        segment slice)."""
        return [r for r in self.rows if r.primary and r.is_bad]


def aggregate_window(
    profile: ModelProfile,
    *,
    features: Mapping[str, npt.ArrayLike],
    predictions: npt.ArrayLike | None = None,
    scores: npt.ArrayLike | None = None,
    labels: npt.ArrayLike | None = None,
    positive_label: str = "1",
    concept_drift: Mapping[str, int] | None = None,
    segments: Mapping[str, npt.ArrayLike] | None = None,
    confidences: npt.ArrayLike | None = None,
) -> WindowData:
    """Aggregate a window's raw arrays over the profile's bins.

    Parameters
    ----------
    profile
        The reference profile (its bins and its task).
    features
        Column name to values; columns absent from the profile are ignored.
    predictions, scores, labels
        Optional arrays aligned with the rows; a null label marks an unlabelled row.
    concept_drift
        Online detector name to drifts it detected in the window.
    segments
        Per segment key, each row's value (``""`` where the row has none): with a
        profile that has segments, each slice with rows is aggregated over its own
        profile into ``segments`` (:func:`~driftline.detectors.segments.segment_slices`).
    confidences
        Each row's score of its own predicted class: a multiclass profile's calibration
        counts them for label-free estimation (a binary one counts ``scores``).
    """
    sizes = {np.asarray(v).reshape(-1).size for v in features.values()}
    n_events = max(sizes) if sizes else 0
    counts: dict[str, Any] = {}
    for name, prof in profile.features.items():
        if name in features:
            counts[name] = prof.histogram(features[name])
    prediction = score = perf = None
    if predictions is not None:
        n_events = max(n_events, np.asarray(predictions).reshape(-1).size)
        if profile.prediction is not None:
            prediction = profile.prediction.histogram(predictions)
        if labels is not None:
            perf = performance_counts(profile.task, predictions, labels, scores, positive_label)
    if scores is not None and profile.score is not None:
        score = profile.score.histogram(scores)
    multivariate = None
    if profile.multivariate is not None:
        multivariate = multivariate_sums(profile.multivariate, features)
    blocks = None
    if profile.calibration is not None and predictions is not None:
        if profile.task == "multiclass" and confidences is not None:
            # one side: p is the chance that the prediction is right
            blocks = score_blocks(profile.calibration, confidences, np.ones(n_events, bool))
        elif profile.task == "binary_classification" and scores is not None:
            predicted, _ = category_array(predictions)
            blocks = score_blocks(profile.calibration, scores, predicted == positive_label)
    nested: dict[str, dict[str, WindowData]] = {}
    if profile.segments and n_events:

        def part(values: npt.ArrayLike | None, rows: npt.NDArray[np.intp]) -> Any:
            return None if values is None else np.asarray(values).reshape(-1)[rows]

        for key, value, rows in segment_slices(profile, segments or {}, n_events):
            own_scores = part(scores, rows)
            if own_scores is not None and not np.isfinite(own_scores.astype(float)).any():
                own_scores = None  # as a window without a finite score: no score parts
            own_confidences = part(confidences, rows)
            if own_confidences is not None and not np.isfinite(own_confidences).any():
                own_confidences = None
            nested.setdefault(key, {})[value] = aggregate_window(
                profile.segments[key][value],
                features={name: part(values, rows) for name, values in features.items()},
                predictions=part(predictions, rows),
                scores=own_scores,
                labels=part(labels, rows),
                positive_label=positive_label,
                confidences=own_confidences,
            )
    return WindowData(
        n_events=n_events,
        features=counts,
        prediction=prediction,
        score=score,
        performance=perf,
        concept_drift=dict(concept_drift or {}),
        multivariate=multivariate,
        estimation=blocks,
        segments=nested,
    )


def drift_result(
    statistic: DriftStatistic,
    profile: NumericProfile | CategoricalProfile,
    counts: NumericCounts | CategoricalCounts | None,
) -> DriftResult:
    """Run a statistic on a window's aggregate of one column against its profile.

    Examples
    --------
    >>> prof = NumericProfile(edges=(0.0, 1.0), reference_counts=(0, 100, 0),
    ...                       bin_means=(0.0, 0.5, 1.0), count=100, null_count=0)
    >>> drift_result(get_statistic("psi"), prof, NumericCounts(counts=(0, 60, 40))).verdict
    'critical'
    """
    if counts is None:
        return statistic.insufficient(profile.count, 0)
    if isinstance(profile, NumericProfile) and isinstance(counts, NumericCounts):
        if len(counts.counts) != profile.n_bins:
            raise ValueError(f"{profile.name}: window histogram does not match the profile bins")
        return statistic.compare(
            profile.reference_counts,
            counts.counts,
            reference_points=profile.bin_means,
            current_points=_bin_points(counts.counts, counts.sums, profile.bin_means),
            scale=profile.scale,
        )
    if isinstance(profile, CategoricalProfile) and isinstance(counts, CategoricalCounts):
        return statistic.compare(profile.reference_counts, profile.vector(counts), ordered=False)
    raise TypeError(f"{profile.name}: profile and window aggregate differ in kind")


@dataclass(frozen=True)
class _Slice:
    """The whole model (``segment`` None) or one segment slice, as evaluated."""

    segment: dict[str, str] | None
    profile: ModelProfile
    data: WindowData
    min_samples: int


def _slices(profile: ModelProfile, config: MonitorConfig, data: WindowData) -> list[_Slice]:
    """The whole model, then each segment slice with rows in the window (profile order)."""
    out = [_Slice(None, profile, data, config.drift.min_samples)]
    if config.segments is None:
        return out
    for key, profiles in profile.segments.items():
        found = data.segments.get(key, {})
        for value, part in profiles.items():
            if value in found:
                out.append(_Slice({key: value}, part, found[value], config.segments.min_samples))
    return out


def _gate(
    kind: AlertKind,
    named: list[tuple[int, str, DriftResult]],
    slices: list[_Slice],
    fdr: float,
) -> list[tuple[int, MetricRow]]:
    """Apply min-samples and Benjamini-Hochberg to one family of drift results (``named``:
    slice index, column, result), the family spanning every slice."""
    enough = [
        r.n_current >= slices[i].min_samples
        and r.n_reference >= slices[i].min_samples
        and r.verdict != "insufficient"
        for i, _, r in named
    ]
    p = np.array(
        [
            r.p_value if ok and r.p_value is not None else np.nan
            for (_, _, r), ok in zip(named, enough, strict=True)
        ],
        dtype=np.float64,
    )
    q = benjamini_hochberg(p)
    rows = []
    for (i, name, res), ok, qv in zip(named, enough, q.tolist(), strict=True):
        status: Verdict
        if not ok:
            status = "insufficient"
        elif res.p_value is None or qv <= fdr:
            status = res.verdict
        else:
            status = "ok"
        row = MetricRow(
            kind=kind,
            metric=res.statistic,
            feature=name,
            segment=slices[i].segment,
            value=res.value,
            p_value=res.p_value,
            q_value=None if np.isnan(qv) else qv,
            warning=res.warning,
            critical=res.critical,
            threshold=res.critical if status == "critical" else res.warning,
            status=status,
            n=res.n_current,
        )
        rows.append((i, row))
    return rows


def evaluate_window(
    profile: ModelProfile,
    config: MonitorConfig,
    data: WindowData,
    *,
    window_start: float,
    window_end: float,
    revision: int = 0,
) -> WindowReport:
    """Evaluate one window: data drift, prediction drift, data quality, performance.

    With a ``segments`` section and a profile that has segments, every slice with rows
    in the window (``data.segments``) is evaluated too, against its own reference; one
    Benjamini-Hochberg family then spans the features of the whole model and of every
    slice (another the prediction and score columns), so more slices do not mean more
    false alarms. The whole model's rows come first, then each slice's.

    Parameters
    ----------
    profile
        Reference profile of the model version.
    config
        The model's monitor config. The profile decides which features are evaluated;
        a feature whose kind differs between the two is an error.
    data
        The window's aggregates (from :func:`aggregate_window` or from the store).
    window_start, window_end
        Window bounds, epoch seconds.
    revision
        Revision number of this evaluation of the window.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> cfg = MonitorConfig(model_id="m", features={"x": "numeric", "y": "numeric"})
    >>> prof = build_profile("m", "v1", features={"x": rng.normal(size=5000),
    ...     "y": rng.normal(size=5000)}, kinds=cfg.features)
    >>> data = aggregate_window(prof, features={"x": rng.normal(1, 1, 2000),
    ...                                         "y": rng.normal(size=2000)})
    >>> rep = evaluate_window(prof, cfg, data, window_start=0.0, window_end=3600.0)
    >>> rep.status("data_drift", "x"), rep.status("data_drift", "y")
    ('critical', 'ok')
    """
    drift = config.drift
    mismatched = sorted(
        name
        for name, fprof in profile.features.items()
        if name in config.features and config.features[name] != fprof.kind
    )
    if mismatched:
        raise ValueError(f"config and profile disagree on the kind of features {mismatched}")
    slices = _slices(profile, config, data)

    feature_results: list[tuple[int, str, DriftResult]] = []
    pred_results: list[tuple[int, str, DriftResult]] = []
    pm = drift.prediction
    for i, part in enumerate(slices):
        for name, fprof in part.profile.features.items():
            method = drift.numeric if fprof.kind == "numeric" else drift.categorical
            warning, critical = method.warning, method.critical
            spread = part.profile.drift_spread.get(name, {}).get(method.method)
            if method.threshold == "auto" and spread is not None:
                warning, critical = drift_levels(spread, warning, critical)
            stat = get_statistic(method.method, warning=warning, critical=critical)
            result = drift_result(stat, fprof, part.data.features.get(name))
            feature_results.append((i, name, result))
        if part.profile.prediction is not None:
            stat = get_statistic(pm.method, warning=pm.warning, critical=pm.critical)
            result = drift_result(stat, part.profile.prediction, part.data.prediction)
            pred_results.append((i, "prediction", result))
        if part.profile.score is not None:
            stat = get_statistic(pm.method, warning=pm.warning, critical=pm.critical)
            result = drift_result(stat, part.profile.score, part.data.score)
            pred_results.append((i, "score", result))
    drift_rows = _gate("data_drift", feature_results, slices, drift.fdr)
    pred_rows = _gate("prediction_drift", pred_results, slices, drift.fdr)

    rows: list[MetricRow] = []
    for i, part in enumerate(slices):
        rows += [row for at, row in drift_rows if at == i]
        rows += [row for at, row in pred_rows if at == i]
        if config.drift.multivariate is not None:
            rows += _multivariate_rows(part)
        rows += _quality_rows(part, config)
        performance = _performance_rows(part.profile, config, part.data)
        performance += _estimated_rows(part.profile, config, part.data)
        if part.segment is not None:
            performance = [row.model_copy(update={"segment": part.segment}) for row in performance]
        rows += performance

    for name, hits in sorted(data.concept_drift.items()):
        status: Verdict = "critical" if hits > 0 else "ok"
        rows.append(
            MetricRow(
                kind="concept_drift",
                metric=name,
                value=float(hits),
                warning=1.0,
                critical=1.0,
                threshold=1.0,
                status=status,
                n=data.performance.n_labelled if data.performance is not None else 0,
            )
        )
    return WindowReport(
        model_id=profile.model_id,
        model_version=profile.model_version,
        window_start=window_start,
        window_end=window_end,
        revision=revision,
        n_events=data.n_events,
        rows=tuple(rows),
    )


def _multivariate_rows(part: _Slice) -> list[MetricRow]:
    """The slice's PCA reconstruction error against its reference's levels (none
    without a multivariate model; ``insufficient`` below ``min_samples`` rows)."""
    model = part.profile.multivariate
    if model is None:
        return []
    sums = part.data.multivariate or MultivariateSums(n=0, error_sum=0.0)
    warning, critical = model.levels(max(sums.n, 1))
    status: Verdict
    if sums.n < part.min_samples or model.n < part.min_samples:
        status = "insufficient"
    elif sums.mean is not None and sums.mean > critical:
        status = "critical"
    elif sums.mean is not None and sums.mean > warning:
        status = "warning"
    else:
        status = "ok"
    return [
        MetricRow(
            kind="multivariate_drift",
            metric=MULTIVARIATE_METRIC,
            segment=part.segment,
            value=sums.mean,
            reference=model.error_mean,
            warning=warning,
            critical=critical,
            threshold=critical if status == "critical" else warning,
            status=status,
            n=sums.n,
        )
    ]


def _quality_rows(part: _Slice, config: MonitorConfig) -> list[MetricRow]:
    rows = []
    for name, fprof in part.profile.features.items():
        counts = part.data.features.get(name) or fprof.empty_counts()
        for q in assess_quality(
            fprof,
            counts,
            config.quality,
            min_samples=part.min_samples,
            learned=part.profile.quality_spread.get(name),
        ):
            rows.append(
                MetricRow(
                    kind="data_quality",
                    metric=q.metric,
                    feature=name,
                    segment=part.segment,
                    value=q.value,
                    reference=q.reference,
                    warning=q.warning,
                    critical=q.critical,
                    threshold=q.critical if q.verdict == "critical" else q.warning,
                    status=q.verdict,
                    n=q.n,
                )
            )
    return rows


def _performance_rows(
    profile: ModelProfile, config: MonitorConfig, data: WindowData
) -> list[MetricRow]:
    pc = config.performance
    primary = config.performance_metric
    ref = profile.reference_performance
    n_labelled = data.performance.n_labelled if data.performance is not None else 0
    warning, critical = performance_drops(profile, config, primary, max(n_labelled, pc.min_labels))
    missing = MetricRow(
        kind="performance",
        metric=primary,
        value=None,
        warning=warning,
        critical=critical,
        threshold=warning,
        status="insufficient",
        n=n_labelled,
        label_coverage=_coverage(data.performance),
        reference=ref.metrics[primary].value if ref and primary in ref.metrics else None,
    )
    if data.performance is None:
        return [missing]
    rows = []
    for name, estimate in data.performance.metrics().items():
        warning, critical = performance_drops(profile, config, name, estimate.n)
        res = assess_degradation(
            estimate,
            ref.metrics.get(name) if ref is not None else None,
            warning_drop=warning,
            critical_drop=critical,
            min_labels=pc.min_labels,
            significance=pc.significance,
        )
        rows.append(
            MetricRow(
                kind="performance",
                metric=name,
                value=res.value,
                p_value=res.p_value,
                reference=res.reference,
                warning=res.warning,
                critical=res.critical,
                threshold=res.critical if res.verdict == "critical" else res.warning,
                status=res.verdict,
                n=res.n_labelled,
                label_coverage=res.label_coverage,
                primary=name == primary,
            )
        )
    if not any(r.primary for r in rows):
        rows.append(missing)
    return rows


def _estimated_rows(
    profile: ModelProfile, config: MonitorConfig, data: WindowData
) -> list[MetricRow]:
    """CBPE's ``estimated_<metric>`` rows against the reference's realized metrics and
    the performance section's drops. The primary metric's row alerts while the window's
    label coverage is below ``performance.estimation.max_label_coverage``; from there on
    the realized metric takes over: the row's status is ``ok`` (an open
    ``estimated_performance`` alert resolves, and the realized row alone alerts) and the
    estimate itself stays recorded."""
    settings = config.performance.estimation
    if settings is None or profile.calibration is None:
        return []
    pc = config.performance
    ref = profile.reference_performance
    coverage = _coverage(data.performance)
    blocks = data.estimation
    estimates = estimate_metrics(blocks) if blocks is not None else {}
    rows = []
    # a multiclass model's p is the chance its prediction is right: accuracy only
    names = ESTIMATED_METRICS if config.task == "binary_classification" else ("accuracy",)
    for name in names:
        if name not in TASK_METRICS[config.task]:
            continue
        est = estimates.get(name)
        n = est.n if est is not None else 0
        value = est.value if est is not None else None
        reference = ref.metrics[name].value if ref is not None and name in ref.metrics else None
        warning, critical = performance_drops(profile, config, name, max(n, pc.min_labels))
        status: Verdict
        if value is None or reference is None or n < pc.min_labels:
            status = "insufficient"
        elif reference - value > critical:
            status = "critical"
        elif reference - value > warning:
            status = "warning"
        else:
            status = "ok"
        primary = name == config.performance_metric
        if primary and coverage >= settings.max_label_coverage and status != "insufficient":
            status = "ok"  # handed over: the realized metric's row carries the verdict
        rows.append(
            MetricRow(
                kind="estimated_performance",
                metric=f"estimated_{name}",
                value=value,
                reference=reference,
                warning=warning,
                critical=critical,
                threshold=critical if status == "critical" else warning,
                status=status,
                n=n,
                label_coverage=coverage,
                primary=primary,
                lower=est.lower if est is not None else None,
                upper=est.upper if est is not None else None,
            )
        )
    return rows


def performance_drops(
    profile: ModelProfile, config: MonitorConfig, metric: str, n: int
) -> tuple[float, float]:
    """The warning and critical drops of ``metric`` for a window counting ``n``: learned
    from the reference (``threshold: auto``, :func:`auto_drops`), else the fixed ones (also
    when the reference has no value or spread of the metric)."""
    pc = config.performance
    ref = profile.reference_performance
    if pc.threshold == "auto" and ref is not None and metric in ref.metrics:
        rule = AutoThresholdRule(
            warning_rate=pc.warning_rate,
            critical_rate=pc.critical_rate,
            min_error_increase=pc.min_error_increase,
        )
        learned = auto_drops(ref.metrics[metric], profile.performance_spread.get(metric), n, rule)
        if learned is not None:
            return learned
    return pc.warning_drop, pc.critical_drop


def _coverage(counts: BinaryCounts | MulticlassCounts | RegressionCounts | None) -> float:
    if counts is None or counts.n_predicted == 0:
        return 0.0
    return counts.n_labelled / counts.n_predicted
