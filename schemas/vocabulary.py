"""The vocabulary of monitor configs: tasks, feature kinds, drift methods and their
default thresholds, alert kinds, metrics per task, online detectors and their
parameters, and durations (``30s``, ``10m``, ``1h``, ``1d``; a bare number is seconds).

:mod:`driftline.schemas.monitor` builds the config sections from these names and
re-exports them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Annotated, Final, Literal, TypeAlias, get_args

from pydantic import BeforeValidator

__all__ = [
    "ALERT_KINDS",
    "CATEGORICAL_METHODS",
    "DEFAULT_THRESHOLDS",
    "DRIFT_METHODS",
    "ONLINE_DETECTORS",
    "TASK_METRICS",
    "AlertKind",
    "DriftMethod",
    "Duration",
    "FeatureKind",
    "OnlineDetectorName",
    "PerformanceMetric",
    "Severity",
    "Task",
    "parse_duration",
]

Task: TypeAlias = Literal["binary_classification", "multiclass", "regression"]
FeatureKind: TypeAlias = Literal["numeric", "categorical"]
DriftMethod: TypeAlias = Literal["psi", "jensen_shannon", "hellinger", "wasserstein", "ks", "chi2"]
AlertKind: TypeAlias = Literal[
    "data_drift",
    "prediction_drift",
    "performance",
    "data_quality",
    "concept_drift",
    "retrain_budget",
    "multivariate_drift",
    "estimated_performance",
]
Severity: TypeAlias = Literal["warning", "critical"]
OnlineDetectorName: TypeAlias = Literal["adwin", "page_hinkley", "kswin", "ddm"]
PerformanceMetric: TypeAlias = Literal[
    "accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "log_loss",
    "macro_f1",
    "mae",
    "rmse",
    "mape",
]

#: Every drift statistic, by its config name.
DRIFT_METHODS: Final[tuple[str, ...]] = (
    "psi",
    "jensen_shannon",
    "hellinger",
    "wasserstein",
    "ks",
    "chi2",
)
#: Statistics that need no order on the values, so apply to categorical data.
CATEGORICAL_METHODS: Final[frozenset[str]] = frozenset(
    {"psi", "jensen_shannon", "hellinger", "chi2"}
)
#: ``(warning, critical)`` per method when the config leaves them out. They sit near the
#: small-shift equivalents of PSI 0.1 / 0.25 (see ``driftline.detectors.statistics``).
DEFAULT_THRESHOLDS: Final[Mapping[str, tuple[float, float]]] = {
    "psi": (0.1, 0.25),
    "jensen_shannon": (0.1, 0.2),
    "hellinger": (0.1, 0.2),
    "wasserstein": (0.3, 0.5),
    "ks": (0.1, 0.2),
    "chi2": (0.3, 0.5),
}
ALERT_KINDS: Final[tuple[str, ...]] = get_args(AlertKind)
#: Performance metrics each task computes; the first is the default ``performance.metric``.
TASK_METRICS: Final[Mapping[str, tuple[str, ...]]] = {
    "binary_classification": ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"),
    "multiclass": ("accuracy", "macro_f1"),
    "regression": ("mae", "rmse", "mape"),
}

#: Online detectors by config name, with the parameter names each takes (those of
#: ``driftline.detectors.online``; ``schemas`` imports no detector code).
ONLINE_DETECTORS: Final[Mapping[str, frozenset[str]]] = {
    "adwin": frozenset({"delta", "clock", "max_buckets", "min_window_length", "grace_period"}),
    "page_hinkley": frozenset({"min_instances", "delta", "threshold", "alpha", "mode"}),
    "kswin": frozenset({"alpha", "window_size", "stat_size", "seed"}),
    "ddm": frozenset({"warm_start", "warning_threshold", "drift_threshold"}),
}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS: Final[Mapping[str, float]] = {
    "": 1.0,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}


def parse_duration(value: object) -> float:
    """Parse a duration into seconds.

    Parameters
    ----------
    value
        A non-negative number of seconds, or a string ``<number><unit>`` with unit
        ``s``, ``m``, ``h`` or ``d`` (no unit means seconds).

    Returns
    -------
    float
        The duration in seconds.

    Raises
    ------
    ValueError
        When the value is not a duration.

    Examples
    --------
    >>> parse_duration("30s"), parse_duration("10m"), parse_duration("1h"), parse_duration("1d")
    (30.0, 600.0, 3600.0, 86400.0)
    >>> parse_duration(90)
    90.0
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}: use e.g. 30s, 10m, 1h or 1d")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(
                f"invalid duration {value!r}: use a number and a unit s, m, h or d "
                "(e.g. 30s, 10m, 1h, 1d)"
            )
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError(f"invalid duration {value!r}: use e.g. 30s, 10m, 1h or 1d")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"invalid duration {value!r}: must be finite and non-negative")
    return seconds


#: A duration in seconds, accepting ``30s``/``10m``/``1h``/``1d`` or a number.
Duration: TypeAlias = Annotated[float, BeforeValidator(parse_duration)]
