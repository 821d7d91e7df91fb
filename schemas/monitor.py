"""The monitor config: one YAML document per model (DESIGN §3).

Every model here is frozen and rejects unknown keys. :meth:`MonitorConfig.from_yaml`
reads a file or a YAML string and raises :class:`MonitorConfigError` whose message
names the key path of every problem, for example ``drift.numeric.methd: unknown key``.
Keys left out take the defaults below. Durations are written ``30s``, ``10m``,
``1h`` or ``1d`` (a bare number is seconds) and are stored as float seconds.

Example
-------
>>> cfg = MonitorConfig.from_yaml('''
... model_id: credit
... task: binary_classification
... features: {income: numeric, region: categorical}
... window: 1h
... drift:
...   numeric: {method: ks}
... retrain: {on: [performance]}
... ''')
>>> cfg.window_seconds, cfg.allowed_lateness_seconds
(3600.0, 600.0)
>>> cfg.drift.numeric.method, cfg.drift.numeric.warning, cfg.drift.numeric.critical
('ks', 0.1, 0.2)
>>> cfg.retrain.on
('performance',)
>>> bad = "model_id: m\\nfeatures: {x: numeric}\\ndrift: {numeric: {methd: psi}}"
>>> try:
...     MonitorConfig.from_yaml(bad)
... except MonitorConfigError as exc:
...     print(exc)
invalid monitor config:
  drift.numeric.methd: unknown key
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .vocabulary import (
    ALERT_KINDS,
    CATEGORICAL_METHODS,
    DEFAULT_THRESHOLDS,
    DRIFT_METHODS,
    ONLINE_DETECTORS,
    TASK_METRICS,
    AlertKind,
    DriftMethod,
    Duration,
    FeatureKind,
    OnlineDetectorName,
    PerformanceMetric,
    Severity,
    Task,
    parse_duration,
)

__all__ = [
    "ALERT_KINDS",
    "CATEGORICAL_METHODS",
    "DEFAULT_THRESHOLDS",
    "DRIFT_METHODS",
    "ONLINE_DETECTORS",
    "OTHER_SEGMENT",
    "ROLLOUT_METRICS",
    "TASK_METRICS",
    "AlertKind",
    "AlertingConfig",
    "CardConfig",
    "ConceptDriftConfig",
    "DriftConfig",
    "DriftMethod",
    "DriftMethodConfig",
    "Duration",
    "EstimationConfig",
    "FeatureKind",
    "MonitorConfig",
    "MonitorConfigError",
    "MultivariateConfig",
    "OnlineDetectorName",
    "PerformanceConfig",
    "PerformanceMetric",
    "QualityConfig",
    "QualityThreshold",
    "ReferenceConfig",
    "RetrainConfig",
    "RolloutConfig",
    "RolloutGuardrails",
    "SegmentsConfig",
    "Severity",
    "Task",
    "TrainingConfig",
    "load_monitors",
    "parse_duration",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DriftMethodConfig(_Frozen):
    """Drift statistic and thresholds for one kind of column.

    ``warning``/``critical`` left out take the method's defaults (:data:`DEFAULT_THRESHOLDS`).
    ``threshold: auto`` raises a feature's levels to what its own reference windows
    show (:mod:`driftline.detectors.drift_spread`), never below ``warning``/``critical``
    (features only; the prediction and score keep the fixed levels).

    Examples
    --------
    >>> DriftMethodConfig(method="hellinger").critical
    0.2
    """

    method: DriftMethod = "psi"
    warning: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    critical: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    threshold: Literal["auto", "fixed"] = "fixed"

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            method = data.get("method", "psi")
            if isinstance(method, str) and method in DEFAULT_THRESHOLDS:
                warning, critical = DEFAULT_THRESHOLDS[method]
                data = {"warning": warning, "critical": critical, **data}
        return data

    @model_validator(mode="after")
    def _ordered(self) -> DriftMethodConfig:
        if self.warning > self.critical:
            raise ValueError(f"warning ({self.warning}) must not exceed critical ({self.critical})")
        return self


class MultivariateConfig(_Frozen):
    """Multivariate drift (optional ``drift.multivariate``): the PCA reconstruction
    error of each window against the reference's components
    (:mod:`~driftline.detectors.multivariate`).

    Examples
    --------
    >>> MultivariateConfig().variance
    0.65
    """

    method: Literal["pca"] = "pca"
    #: Share of the reference's variance the kept components explain.
    variance: float = Field(default=0.65, gt=0, lt=1)


class DriftConfig(_Frozen):
    """Drift methods per column kind, minimum samples and the false-discovery rate.

    Examples
    --------
    >>> DriftConfig().min_samples, DriftConfig().fdr
    (200, 0.05)
    """

    numeric: DriftMethodConfig = DriftMethodConfig()
    categorical: DriftMethodConfig = DriftMethodConfig()
    prediction: DriftMethodConfig = DriftMethodConfig()
    min_samples: int = Field(default=200, ge=1)
    fdr: float = Field(default=0.05, gt=0, lt=1)
    multivariate: MultivariateConfig | None = None


class EstimationConfig(_Frozen):
    """Label-free performance estimation (optional ``performance.estimation``;
    classifiers with scores): CBPE (:mod:`~driftline.detectors.estimation`). A
    window's ``estimated_<metric>`` rows are always recorded; they raise
    ``estimated_performance`` alerts while the window's label coverage is below
    ``max_label_coverage`` (after that the realized metric decides).

    Examples
    --------
    >>> EstimationConfig().max_label_coverage
    0.5
    """

    max_label_coverage: float = Field(default=0.5, gt=0, le=1)


class PerformanceConfig(_Frozen):
    """The performance metric that alerts, and its degradation rules.

    ``threshold: auto`` (the default when no drop is given) learns each metric's
    thresholds from the reference (:mod:`driftline.detectors.thresholds`): a window
    warns when its metric is worse than the reference's by more than an unchanged
    window would be with probability ``warning_rate`` (critical: ``critical_rate``),
    given its label count and the reference's window-to-window spread, and its error
    grew by at least ``min_error_increase`` (critical: twice it).
    ``threshold: fixed``, or giving ``warning_drop``/``critical_drop``, keeps fixed
    drops (defaults 0.03 and 0.05): absolute drops for scores in [0, 1] (accuracy,
    precision, recall, f1, roc_auc, macro_f1) and relative increases for error metrics
    (log_loss, mae, rmse, mape). Either way a drop counts only when significant at
    ``significance``. ``metric`` left out is the task's first metric in
    :data:`TASK_METRICS`.

    Examples
    --------
    >>> PerformanceConfig().min_labels, PerformanceConfig().threshold
    (100, 'auto')
    >>> fixed = PerformanceConfig(warning_drop=0.02)
    >>> fixed.threshold, fixed.warning_drop, fixed.critical_drop
    ('fixed', 0.02, 0.05)
    """

    metric: PerformanceMetric | None = None
    threshold: Literal["auto", "fixed"] = "auto"
    warning_drop: float = Field(default=0.03, ge=0, allow_inf_nan=False)
    critical_drop: float = Field(default=0.05, ge=0, allow_inf_nan=False)
    warning_rate: float = Field(default=1e-4, gt=0, lt=0.5)
    critical_rate: float = Field(default=1e-6, gt=0, lt=0.5)
    min_error_increase: float = Field(default=0.1, ge=0, allow_inf_nan=False)
    min_labels: int = Field(default=100, ge=1)
    significance: float = Field(default=0.05, gt=0, lt=1)
    positive_label: str = "1"
    estimation: EstimationConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _threshold_kind(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        drops = [key for key in ("warning_drop", "critical_drop") if key in data]
        if data.get("threshold") is None:
            return {**data, "threshold": "fixed" if drops else "auto"}
        # A dumped config carries the unused default drops next to threshold: auto.
        drops = [key for key in drops if data[key] != cls.model_fields[key].default]
        if data["threshold"] == "auto" and drops:
            raise ValueError(
                f"threshold: auto learns the drops from the reference; remove "
                f"{' and '.join(drops)} or set threshold: fixed"
            )
        return data

    @field_validator("positive_label", mode="before")
    @classmethod
    def _label_text(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        if isinstance(value, int | float):
            return str(value)
        return value

    @model_validator(mode="after")
    def _ordered(self) -> PerformanceConfig:
        if self.warning_drop > self.critical_drop:
            raise ValueError(
                f"warning_drop ({self.warning_drop}) must not exceed "
                f"critical_drop ({self.critical_drop})"
            )
        if self.warning_rate < self.critical_rate:
            raise ValueError(
                f"warning_rate ({self.warning_rate}) must not be below "
                f"critical_rate ({self.critical_rate})"
            )
        return self


class QualityThreshold(_Frozen):
    """Warning and critical levels for one data-quality rate (fractions of the window).

    Examples
    --------
    >>> QualityThreshold(warning=0.01, critical=0.1).critical
    0.1
    """

    warning: float = Field(ge=0, le=1)
    critical: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> QualityThreshold:
        if self.warning > self.critical:
            raise ValueError(f"warning ({self.warning}) must not exceed critical ({self.critical})")
        return self


class QualityConfig(_Frozen):
    """Data-quality thresholds.

    The null rate is judged by its increase over the reference null rate; the
    out-of-reference-range and unseen-category rates are zero in the reference.
    ``threshold: fixed`` (the default) grades those increases against the fixed
    levels below; ``threshold: auto`` learns each feature's levels from the reference
    the way performance thresholds are learned
    (:func:`driftline.detectors.thresholds.auto_rate_levels`): the rate an unchanged
    window exceeds with probability ``warning_rate`` (``critical_rate``), given its
    count, the reference's rate and its window-to-window spread, and at least
    ``1 + min_increase`` (critical: ``1 + 2 min_increase``) times that rate.

    Examples
    --------
    >>> QualityConfig().null_rate.warning, QualityConfig().threshold
    (0.05, 'fixed')
    """

    threshold: Literal["auto", "fixed"] = "fixed"
    null_rate: QualityThreshold = QualityThreshold(warning=0.05, critical=0.2)
    out_of_range_rate: QualityThreshold = QualityThreshold(warning=0.05, critical=0.2)
    unseen_rate: QualityThreshold = QualityThreshold(warning=0.05, critical=0.2)
    warning_rate: float = Field(default=1e-4, gt=0, lt=0.5)
    critical_rate: float = Field(default=1e-6, gt=0, lt=0.5)
    min_increase: float = Field(default=0.1, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _rates_ordered(self) -> QualityConfig:
        if self.warning_rate < self.critical_rate:
            raise ValueError(
                f"warning_rate ({self.warning_rate}) must not be below "
                f"critical_rate ({self.critical_rate})"
            )
        return self


class AlertingConfig(_Frozen):
    """Alert policy: bad windows in a row before an alert opens, and its cooldown.

    Examples
    --------
    >>> AlertingConfig(cooldown="30m").cooldown_seconds
    1800.0
    """

    consecutive_windows: int = Field(default=1, ge=1)
    cooldown: Duration = 7200.0

    @property
    def cooldown_seconds(self) -> float:
        """The cooldown in seconds."""
        return self.cooldown


class RetrainConfig(_Frozen):
    """Retrain policy: which alert kinds ask for a retrain, and when.

    Budgets (optional): at most ``max_per_day`` requests in any 24 hours, and no new
    request once the versions trained in the last 24 hours took
    ``max_training_seconds_per_day`` of training; a request beyond a budget is skipped
    with reason ``budget`` and raises a warning ``retrain_budget`` alert.

    Examples
    --------
    >>> RetrainConfig().on, RetrainConfig().cooldown_seconds
    (('performance', 'data_drift'), 21600.0)
    >>> RetrainConfig(max_per_day=4).max_per_day
    4
    """

    on: tuple[AlertKind, ...] = ("performance", "data_drift")
    min_labelled_rows: int = Field(default=1000, ge=0)
    cooldown: Duration = 21600.0
    severity: Severity = "critical"
    max_per_day: int | None = Field(default=None, ge=1)
    max_training_seconds_per_day: float | None = Field(default=None, gt=0, allow_inf_nan=False)

    @field_validator("on")
    @classmethod
    def _not_the_budget(cls, on: tuple[str, ...]) -> tuple[str, ...]:
        if "retrain_budget" in on:
            raise ValueError("a retrain_budget alert cannot ask for a retrain")
        return on

    @property
    def cooldown_seconds(self) -> float:
        """The cooldown in seconds."""
        return self.cooldown


class ConceptDriftConfig(_Frozen):
    """Online concept-drift detectors on the model's error stream (optional section).

    Each labelled prediction gives one error (0/1 misclassification, or the absolute
    error for regression); the errors are fed to every detector in label order
    (feedback timestamp, then ``event_id``). A detection counts in the window of the
    labelled prediction's event time and shows as a ``concept_drift`` metric row per
    detector (value: detections in the window; critical when > 0). Detections made
    before a detector has seen ``min_labels`` errors are ignored (warm-up).
    ``params`` sets detector parameters by detector name.

    Examples
    --------
    >>> ConceptDriftConfig().detectors
    ('adwin',)
    >>> ConceptDriftConfig(detectors=["page_hinkley"], params={"page_hinkley": {"threshold": 20}})
    ... # doctest: +ELLIPSIS
    ConceptDriftConfig(detectors=('page_hinkley',), params={'page_hinkley': {'threshold': 20}}, ...)
    """

    detectors: tuple[OnlineDetectorName, ...] = Field(default=("adwin",), min_length=1)
    params: dict[OnlineDetectorName, dict[str, bool | int | float | str]] = {}
    min_labels: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _known(self) -> ConceptDriftConfig:
        if len(set(self.detectors)) != len(self.detectors):
            raise ValueError("detectors: a detector is named twice")
        for name, params in self.params.items():
            if name not in self.detectors:
                raise ValueError(f"params.{name}: {name!r} is not in detectors")
            unknown = sorted(set(params) - ONLINE_DETECTORS[name])
            if unknown:
                raise ValueError(
                    f"params.{name}.{unknown[0]}: unknown key (takes "
                    f"{sorted(ONLINE_DETECTORS[name])})"
                )
            for key, value in params.items():
                if isinstance(value, float) and not math.isfinite(value):
                    raise ValueError(f"params.{name}.{key}: must be finite")
        return self


class RolloutGuardrails(_Frozen):
    """Label-free limits a challenger must keep in every window (``rollout.guardrails``).

    Examples
    --------
    >>> RolloutGuardrails().latency_p95_ratio
    1.2
    """

    #: Challenger's p95 prediction latency over the champion's, at most.
    latency_p95_ratio: float = Field(default=1.2, gt=1.0, allow_inf_nan=False)
    #: Share of shadow pairs whose predictions differ, at most.
    disagreement_rate: float = Field(default=0.5, gt=0.0, le=1.0)


class RolloutConfig(_Frozen):
    """How a retrained challenger replaces the champion (optional ``rollout`` section).

    ``shadow``: the challenger scores the champion's requests and serves nothing;
    ``canary``: it serves a growing share (``canary_steps``); ``direct``: it is promoted
    at once (the behaviour without this section). Every decision compares ``metric``
    (default: the performance metric) on the same windows with an anytime-valid
    confidence sequence at level ``alpha`` and a non-inferiority ``margin``
    (:mod:`driftline.detectors.rollout`); no decision before ``min_labels`` labelled
    pairs (shadow) or labels per arm (canary); no verdict within ``max_duration``
    rejects it as inconclusive; ``watch_after_promotion`` keeps comparing a new
    champion with its parent, and rolls it back when it is worse. Live comparisons are
    sums over events (:data:`ROLLOUT_METRICS`): ``accuracy``, or a loss with
    ``loss_bound``: ``mae`` (each event scores ``1 - min(|error|, loss_bound) /
    loss_bound``; ``rmse`` squares both, ``mape`` takes the relative error) and
    ``log_loss`` (the error is ``-ln`` of the probability given to the label, the bound
    in nats). F1, precision, recall and ROC AUC are no mean over events; a monitor
    whose performance metric is one of them names ``rollout.metric``.

    Examples
    --------
    >>> RolloutConfig().canary_steps
    (0.05, 0.25, 0.5, 1.0)
    >>> RolloutConfig(mode="canary", margin=0.02, max_duration="1d").max_duration
    86400.0
    """

    mode: Literal["shadow", "canary", "direct"] = "shadow"
    metric: str | None = None
    margin: float = Field(default=0.01, ge=0.0, allow_inf_nan=False)
    alpha: float = Field(default=0.05, gt=0.0, lt=0.5)
    min_labels: int = Field(default=200, ge=1)
    canary_steps: tuple[float, ...] = Field(default=(0.05, 0.25, 0.5, 1.0), min_length=1)
    max_duration: Duration = 172800.0
    watch_after_promotion: Duration = 86400.0
    guardrails: RolloutGuardrails = RolloutGuardrails()
    #: Losses (``mae``, ``rmse``, ``mape``, ``log_loss``): the error that scores 0 (an
    #: event scores 1 - min(|error|, loss_bound) / loss_bound, errors squared for rmse,
    #: relative for mape and -ln of the label's probability for log_loss, so that the
    #: comparison's per-event scores lie in [0, 1]).
    loss_bound: float | None = Field(default=None, gt=0.0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _steps(self) -> RolloutConfig:
        steps = self.canary_steps
        if any(not 0 < step <= 1 for step in steps):
            raise ValueError("canary_steps: every share lies in (0, 1]")
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError("canary_steps: shares must increase")
        if steps[-1] != 1.0:
            raise ValueError("canary_steps: the last share is 1.0 (the challenger serves all)")
        if self.max_duration <= 0:
            raise ValueError("max_duration: must be longer than 0 seconds")
        return self


class CardConfig(_Frozen):
    """What a person says about the model on its versions' model cards (optional
    ``card`` section): its owner, intended use and known limitations.

    Examples
    --------
    >>> CardConfig(owner="risk team", limitations=["not for applicants under 18"]).owner
    'risk team'
    """

    owner: str = Field(default="", max_length=200)
    intended_use: str = Field(default="", max_length=2000)
    limitations: tuple[Annotated[str, Field(max_length=500)], ...] = Field(
        default=(), max_length=50
    )


_SEGMENT_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")

#: The slice of the values of a segment key that the reference did not rank among its
#: ``max_values`` most frequent (values new since the reference, an empty value and an
#: event without the key included).
OTHER_SEGMENT: Final = "_other"


class SegmentsConfig(_Frozen):
    """Which slices of the traffic are monitored on their own (optional ``segments``
    section): every metric of a window is also computed per value of each key of the
    events' ``segment`` object.

    ``keys`` are segment keys (each on its own, not crossed); per key the ``max_values``
    most frequent values of the reference are slices of their own and every other value
    is pooled as ``_other``. A slice's drift and data-quality rows need ``min_samples``
    values in the window (its performance rows ``performance.min_labels`` labels).

    Examples
    --------
    >>> SegmentsConfig(keys=["country"]).max_values
    20
    """

    keys: tuple[str, ...] = Field(min_length=1, max_length=8)
    max_values: int = Field(default=20, ge=1, le=200)
    min_samples: int = Field(default=200, ge=1)

    @field_validator("keys")
    @classmethod
    def _key_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for key in value:
            if not _SEGMENT_KEY.match(key):
                raise ValueError(
                    f"segment key {key!r}: use letters, digits, '_', '.' or '-' (at most 64)"
                )
        if len(set(value)) != len(value):
            raise ValueError("segment keys must be distinct")
        return value


#: The metrics a live rollout compares: means of bounded per-event scores
#: (:func:`driftline.detectors.comparison.event_scores`).
ROLLOUT_METRICS: Final = ("accuracy", "log_loss", "mae", "rmse", "mape")

_TRAINING_FUNCTION = re.compile(
    r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
)


class TrainingConfig(_Frozen):
    """How the retrainer trains, scores and promotes a new version (optional section).

    ``function`` names a user's own training function as ``package.module:function``
    (called like ``driftline.retrainer.training.train_model``); left out, the built-in
    MLP trains. ``hidden_layers``, ``max_epochs``, ``patience``, ``learning_rate``,
    ``batch_size`` and ``seed`` override the trainer's options when given;
    ``max_categories`` caps the one-hot columns per categorical feature (the rest go
    to an "other" column). The newest ``holdout_fraction`` of the labelled rows is
    the holdout on which candidate and champion are scored with ``metric`` (left out:
    the monitor's performance metric); the candidate is promoted only when it beats
    the champion by more than ``promotion_margin``. Fewer than ``min_rows`` labelled
    rows do not train. ``lookback`` (e.g. ``7d``) asks a retrain for the labelled
    events of ``[end - lookback, end]``, ``end`` the end of the windows that raised it
    (never fewer than those windows); left out, a retrain reads those windows only
    (after a concept change older labels teach the old concept).

    Examples
    --------
    >>> TrainingConfig().holdout_fraction, TrainingConfig().promotion_margin
    (0.2, 0.0)
    >>> TrainingConfig(function="my_models.train:fit", max_epochs=5).function
    'my_models.train:fit'
    >>> try:
    ...     TrainingConfig(function="my_models.train.fit")
    ... except ValueError as exc:
    ...     print("package.module:function" in str(exc))
    True
    """

    function: str | None = None
    hidden_layers: tuple[int, ...] | None = None
    max_epochs: int | None = Field(default=None, ge=1)
    patience: int | None = Field(default=None, ge=1)
    learning_rate: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    batch_size: int | None = Field(default=None, ge=1)
    seed: int | None = None
    max_categories: int = Field(default=50, ge=1)
    holdout_fraction: float = Field(default=0.2, gt=0, lt=1)
    promotion_margin: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    metric: PerformanceMetric | None = None
    min_rows: int = Field(default=100, ge=2)
    lookback: Duration | None = None

    @field_validator("function")
    @classmethod
    def _import_path(cls, value: str | None) -> str | None:
        if value is not None and not _TRAINING_FUNCTION.match(value):
            raise ValueError(f"{value!r} is not an import path: write package.module:function")
        return value

    @field_validator("hidden_layers")
    @classmethod
    def _widths(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and any(width < 1 for width in value):
            raise ValueError("every hidden layer needs at least 1 unit")
        return value


class ReferenceConfig(_Frozen):
    """Where the reference comes from: a file of events or a model version's training data.

    Examples
    --------
    >>> ReferenceConfig(path="ref.jsonl").path
    'ref.jsonl'
    """

    path: str | None = None
    model_version: str | None = None

    @model_validator(mode="after")
    def _one(self) -> ReferenceConfig:
        if (self.path is None) == (self.model_version is None):
            raise ValueError("give exactly one of path or model_version")
        return self


class MonitorConfig(_Frozen):
    """The monitor config of one model.

    Examples
    --------
    >>> cfg = MonitorConfig(model_id="m", features={"x": "numeric"})
    >>> cfg.task, cfg.window_seconds, cfg.performance_metric, cfg.bins
    ('binary_classification', 3600.0, 'accuracy', 10)
    """

    model_id: str = Field(min_length=1)
    task: Task = "binary_classification"
    features: dict[str, FeatureKind] = Field(min_length=1)
    window: Duration = 3600.0
    allowed_lateness: Duration = 600.0
    reference: ReferenceConfig | None = None
    bins: int = Field(default=10, ge=2, le=1000)
    drift: DriftConfig = DriftConfig()
    performance: PerformanceConfig = PerformanceConfig()
    quality: QualityConfig = QualityConfig()
    alerting: AlertingConfig = AlertingConfig()
    retrain: RetrainConfig = RetrainConfig()
    concept_drift: ConceptDriftConfig | None = None
    training: TrainingConfig = TrainingConfig()
    rollout: RolloutConfig | None = None
    card: CardConfig | None = None
    segments: SegmentsConfig | None = None

    @field_validator("window")
    @classmethod
    def _positive_window(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("window must be longer than 0 seconds")
        return value

    @field_validator("features")
    @classmethod
    def _feature_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not name.strip():
                raise ValueError("feature names must not be empty")
        return value

    @model_validator(mode="after")
    def _task_rules(self) -> MonitorConfig:
        if self.drift.categorical.method not in CATEGORICAL_METHODS:
            raise ValueError(
                f"drift.categorical.method: {self.drift.categorical.method!r} needs ordered "
                f"values; categorical columns take one of {sorted(CATEGORICAL_METHODS)}"
            )
        metric = self.performance.metric
        if metric is not None and metric not in TASK_METRICS[self.task]:
            raise ValueError(
                f"performance.metric: {metric!r} is not a {self.task} metric "
                f"(choose from {list(TASK_METRICS[self.task])})"
            )
        if self.task != "regression" and self.drift.prediction.method not in CATEGORICAL_METHODS:
            raise ValueError(
                f"drift.prediction.method: {self.drift.prediction.method!r} needs ordered "
                f"values, but {self.task} predictions are classes; choose one of "
                f"{sorted(CATEGORICAL_METHODS)}"
            )
        if self.performance.estimation is not None and self.task == "regression":
            raise ValueError(
                "performance.estimation: label-free estimation (CBPE) needs a classifier "
                "with scores; a regression model's error is not estimated (it would need "
                "a model of its residuals; remove the section)"
            )
        training_metric = self.training.metric
        if training_metric is not None and training_metric not in TASK_METRICS[self.task]:
            raise ValueError(
                f"training.metric: {training_metric!r} is not a {self.task} metric "
                f"(choose from {list(TASK_METRICS[self.task])})"
            )
        rollout_metric = self.rollout.metric if self.rollout is not None else None
        if rollout_metric is not None and rollout_metric not in TASK_METRICS[self.task]:
            raise ValueError(
                f"rollout.metric: {rollout_metric!r} is not a {self.task} metric "
                f"(choose from {list(TASK_METRICS[self.task])})"
            )
        rollout = self.rollout
        if rollout is not None and rollout.mode != "direct":
            if self.rollout_metric not in ROLLOUT_METRICS:
                raise ValueError(
                    f"rollout.metric: rollouts compare means of per-event scores: accuracy "
                    f"or log_loss (classification), mae, rmse or mape (regression), not "
                    f"{self.rollout_metric!r}, which is no mean over events (set "
                    "rollout.metric, or use mode: direct)"
                )
            if self.rollout_metric != "accuracy" and rollout.loss_bound is None:
                unit = "the -ln of the label's probability, in nats (5 is a probability of 0.7%)"
                raise ValueError(
                    f"rollout.loss_bound: required with metric {self.rollout_metric}: the "
                    "error at which a prediction counts as wholly wrong (larger errors "
                    "count as it); "
                    + (unit if self.rollout_metric == "log_loss" else "absolute; relative for mape")
                )
        if (
            self.task == "regression"
            and self.concept_drift is not None
            and "ddm" in self.concept_drift.detectors
        ):
            raise ValueError(
                "concept_drift.detectors: 'ddm' takes 0/1 errors; regression errors are "
                "absolute errors (use adwin, page_hinkley or kswin)"
            )
        return self

    @property
    def window_seconds(self) -> float:
        """Window size in seconds."""
        return self.window

    @property
    def allowed_lateness_seconds(self) -> float:
        """Allowed lateness in seconds."""
        return self.allowed_lateness

    @property
    def performance_metric(self) -> str:
        """The metric that alerts: ``performance.metric`` or the task's default."""
        return self.performance.metric or TASK_METRICS[self.task][0]

    @property
    def rollout_metric(self) -> str:
        """The metric rollout decisions compare: ``rollout.metric`` or the performance
        metric."""
        chosen = self.rollout.metric if self.rollout is not None else None
        return chosen or self.performance_metric

    @property
    def rollout_loss_bound(self) -> float | None:
        """The loss at which a rollout comparison scores an event 0 (``rollout.loss_bound``),
        ``None`` when it compares classes (``accuracy``)."""
        if self.rollout is None or self.rollout_metric == "accuracy":
            return None
        return self.rollout.loss_bound

    @property
    def training_metric(self) -> str:
        """The metric that decides promotion: ``training.metric`` or the performance metric."""
        return self.training.metric or self.performance_metric

    @classmethod
    def from_yaml(cls, source: str | Path) -> MonitorConfig:
        """Load a config from a YAML file path or a YAML string.

        Parameters
        ----------
        source
            A :class:`~pathlib.Path`, a path string naming an existing file, or YAML text.

        Raises
        ------
        MonitorConfigError
            When the YAML does not parse or the config is invalid; the message names
            the key path of each problem.
        """
        if isinstance(source, Path):
            text = source.read_text(encoding="utf-8")
        elif "\n" not in source and (
            source.strip().endswith((".yaml", ".yml")) or Path(source).is_file()
        ):
            text = Path(source).read_text(encoding="utf-8")
        else:
            text = source
        try:
            data = yaml.load(text, Loader=_Loader)
        except yaml.YAMLError as exc:
            raise MonitorConfigError([f"<yaml>: {_yaml_problem(exc)}"]) from exc
        if not isinstance(data, dict):
            raise MonitorConfigError(["<root>: expected a mapping of keys"])
        return cls.from_mapping(data)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> MonitorConfig:
        """Validate a mapping, raising :class:`MonitorConfigError` with key paths."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise MonitorConfigError(_messages(exc)) from None


class MonitorConfigError(ValueError):
    """An invalid monitor config; ``problems`` holds one ``key.path: reason`` line each.

    ``source`` is the file the config came from when it is known (:func:`load_monitors`
    sets it); :attr:`summary` is the whole error on one line, for a command's stderr.

    Examples
    --------
    >>> error = MonitorConfigError(["window: bad", "bins: too small"], source="m.yaml")
    >>> error.summary
    'm.yaml: window: bad; bins: too small'
    >>> print(error)
    invalid monitor config m.yaml:
      window: bad
      bins: too small
    """

    def __init__(self, problems: list[str], source: str | Path | None = None) -> None:
        self.problems = tuple(problems)
        self.source = None if source is None else str(source)
        where = "" if self.source is None else f" {self.source}"
        super().__init__(
            f"invalid monitor config{where}:\n" + "\n".join(f"  {p}" for p in problems)
        )

    @property
    def summary(self) -> str:
        """``source: problem; problem`` on one line (no line breaks inside)."""
        text = "; ".join(" ".join(problem.split()) for problem in self.problems)
        return text if self.source is None else f"{self.source}: {text}"


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line, naming its line and column (1-based).

    PyYAML's own message spans several lines and quotes the text, and names the
    source ``<unicode string>``; this keeps the position and the reason.
    """
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is None or problem is None:
        return " ".join(str(exc).split())
    text = f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and context_mark is not None:
        text += f" ({context} at line {context_mark.line + 1}, column {context_mark.column + 1})"
    elif context:
        text += f" ({context})"
    return text


def _messages(exc: ValidationError) -> list[str]:
    out: list[str] = []
    for err in exc.errors(include_url=False):
        loc = [str(part) for part in err["loc"] if not str(part).startswith("function-")]
        path = ".".join(loc)
        msg = str(err["msg"])
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] == "literal_error":
            msg = f"{err.get('input')!r} is not allowed: {msg}"
        out.append(f"{path}: {msg}" if path else msg)
    return out


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads only true/false as booleans, so ``on:`` stays a key."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def load_monitors(folder: Path | None) -> dict[str, MonitorConfig]:
    """Monitor configs of ``folder/*.yaml`` by model id (a model named twice is an error).

    Raises
    ------
    MonitorConfigError
        For the first file that cannot be read, is not YAML (the message names the
        line and column), is not a valid config (it names each key path) or names a
        model another file configures already; ``source`` is that file.
    """
    monitors: dict[str, MonitorConfig] = {}
    if folder is None:
        return monitors
    sources: dict[str, Path] = {}
    for path in sorted(Path(folder).glob("*.yaml")):
        try:
            config = MonitorConfig.from_yaml(path)
        except MonitorConfigError as error:
            raise MonitorConfigError(list(error.problems), source=path) from error
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else error
            raise MonitorConfigError([f"<file>: cannot read it: {reason}"], source=path) from None
        if config.model_id in monitors:
            raise MonitorConfigError(
                [
                    f"model_id: model {config.model_id!r} has another monitor already "
                    f"({sources[config.model_id]})"
                ],
                source=path,
            )
        monitors[config.model_id] = config
        sources[config.model_id] = path
    return monitors
