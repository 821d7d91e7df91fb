"""Holdout scoring and the champion/challenger decision (pure numpy, no torch).

A candidate model and the current champion are scored on the same holdout (the
newest labelled rows) with the monitors' own metrics
(:mod:`driftline.detectors.performance`), so the numbers match what the windows
show. :func:`challenge` promotes the candidate only when it beats the champion on
the primary metric by more than the margin, in the metric's direction (accuracy,
F1 and ROC AUC: higher is better; log loss, MAE, RMSE and MAPE: lower is better).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from driftline.detectors.performance import HIGHER_IS_BETTER, performance_counts
from driftline.schemas.monitor import MonitorConfig
from pydantic import BaseModel, ConfigDict, Field

from .dataset import LabelledDataset

__all__ = [
    "ChallengeResult",
    "HoldoutScore",
    "Predictions",
    "Predictor",
    "challenge",
    "score_predictions",
    "score_predictor",
]


@dataclass(frozen=True, eq=False)
class Predictions:
    """What a model predicts for a batch of rows.

    Parameters
    ----------
    labels
        Predicted classes (strings) for classification, predicted values (float64)
        for regression.
    scores
        ``(n, len(classes))`` class probabilities for classification, or ``None``.
    classes
        The class of each score column (empty for regression).

    Examples
    --------
    >>> p = Predictions(labels=np.array(["b", "a"]), scores=np.array([[0.2, 0.8], [0.6, 0.4]]),
    ...                 classes=("a", "b"))
    >>> len(p), p.class_scores("b").tolist()
    (2, [0.8, 0.4])
    """

    labels: np.ndarray
    scores: np.ndarray | None = None
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Check the shapes."""
        if not isinstance(self.labels, np.ndarray) or self.labels.ndim != 1:
            raise ValueError("prediction labels must be a 1-D numpy array")
        if self.scores is not None:
            expected = (self.labels.shape[0], len(self.classes))
            if not isinstance(self.scores, np.ndarray) or self.scores.shape != expected:
                shape = getattr(self.scores, "shape", None)
                raise ValueError(
                    f"prediction scores must have shape (rows, classes) = {expected}, got {shape}"
                )

    def __len__(self) -> int:
        """Number of rows."""
        return int(self.labels.shape[0])

    def class_scores(self, label: str) -> np.ndarray | None:
        """The probability column of class ``label``, or ``None`` without scores or class."""
        if self.scores is None or label not in self.classes:
            return None
        return np.asarray(self.scores[:, self.classes.index(label)], dtype=np.float64)


@runtime_checkable
class Predictor(Protocol):
    """A trained model: what a user's training function must return."""

    def predict(self, features: Mapping[str, np.ndarray]) -> Predictions:
        """Predict for feature columns (name to 1-D array)."""
        ...

    def save(self, directory: Path) -> None:
        """Write the model into ``directory``."""
        ...


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HoldoutScore(_Frozen):
    """A model's metrics on a holdout.

    Metrics the task defines but the data cannot give (ROC AUC with one class, log
    loss without scores) are left out.

    Examples
    --------
    >>> HoldoutScore(metrics={"accuracy": 0.9}, rows=200).metrics["accuracy"]
    0.9
    """

    metrics: dict[str, float]
    rows: int = Field(ge=0)


class ChallengeResult(_Frozen):
    """The champion/challenger decision.

    Examples
    --------
    >>> r = challenge(HoldoutScore(metrics={"rmse": 1.5}, rows=10),
    ...               HoldoutScore(metrics={"rmse": 2.0}, rows=10), "rmse", 0.1)
    >>> r.promote, r.metrics
    (True, {'candidate.rmse': 1.5, 'champion.rmse': 2.0})
    >>> r.decision
    'promote: candidate rmse 1.5 beats champion rmse 2 by 0.5 (lower is better), more than the margin 0.1'
    """  # noqa: E501

    promote: bool
    decision: str
    metric: str
    margin: float
    candidate_value: float
    champion_value: float | None
    metrics: dict[str, float]


def score_predictions(
    predictions: Predictions, holdout: LabelledDataset, monitor: MonitorConfig
) -> HoldoutScore:
    """Score predictions against the holdout's labels with the monitor task's metrics.

    Binary classification uses ``performance.positive_label``; its ROC AUC and log
    loss need the positive class's scores.

    Raises
    ------
    ValueError
        When the predictions and the holdout differ in length.

    Examples
    --------
    >>> monitor = MonitorConfig(model_id="m", task="regression", features={"x": "numeric"})
    >>> holdout = LabelledDataset(features={"x": np.zeros(2)}, labels=np.array([1.0, 3.0]),
    ...                           timestamps=np.array([1.0, 2.0]), event_ids=np.array(["a", "b"]))
    >>> score_predictions(Predictions(labels=np.array([2.0, 3.0])), holdout, monitor)
    HoldoutScore(metrics={'mae': 0.5, 'rmse': 0.7071067811865476, 'mape': 0.5}, rows=2)
    """
    if len(predictions) != len(holdout):
        raise ValueError(
            f"{len(predictions)} predictions for a holdout of {len(holdout)} rows: "
            "they must be the same rows"
        )
    positive = monitor.performance.positive_label
    scores = predictions.class_scores(positive) if monitor.task == "binary_classification" else None
    counts = performance_counts(
        monitor.task, predictions.labels, holdout.labels, scores, positive_label=positive
    )
    values = {
        name: float(estimate.value)
        for name, estimate in counts.metrics().items()
        if estimate.value is not None and np.isfinite(estimate.value)
    }
    return HoldoutScore(metrics=values, rows=len(holdout))


def score_predictor(
    model: Predictor, holdout: LabelledDataset, monitor: MonitorConfig
) -> HoldoutScore:
    """Predict the holdout's features with ``model`` and score the predictions."""
    return score_predictions(model.predict(holdout.features), holdout, monitor)


def challenge(
    candidate: HoldoutScore, champion: HoldoutScore | None, metric: str, margin: float
) -> ChallengeResult:
    """Decide whether the candidate replaces the champion.

    The candidate is promoted when there is no champion (or the champion has no
    value for ``metric``), or when its improvement on ``metric``, in the metric's
    direction, is larger than ``margin`` (in the metric's units).

    Raises
    ------
    ValueError
        When ``metric`` is unknown, the candidate has no value for it, or the
        margin is negative.

    Examples
    --------
    >>> cand = HoldoutScore(metrics={"accuracy": 0.91}, rows=500)
    >>> challenge(cand, None, "accuracy", 0.0).decision
    'promote: no champion to beat; candidate accuracy 0.91'
    >>> r = challenge(cand, HoldoutScore(metrics={"accuracy": 0.9}, rows=500), "accuracy", 0.02)
    >>> r.promote, r.decision
    (False, 'reject: candidate accuracy 0.91 beats champion accuracy 0.9 by 0.01 (higher is better), not more than the margin 0.02')
    """  # noqa: E501
    if metric not in HIGHER_IS_BETTER:
        raise ValueError(f"unknown metric {metric!r} (choose from {sorted(HIGHER_IS_BETTER)})")
    if not margin >= 0:
        raise ValueError(f"the promotion margin must be >= 0, got {margin!r}")
    if metric not in candidate.metrics:
        raise ValueError(
            f"the candidate has no {metric!r} on the holdout (it has {sorted(candidate.metrics)})"
        )
    flat = {f"candidate.{name}": value for name, value in candidate.metrics.items()}
    value = candidate.metrics[metric]
    champion_value = None if champion is None else champion.metrics.get(metric)
    if champion is not None:
        flat.update({f"champion.{name}": v for name, v in champion.metrics.items()})
    if champion_value is None:
        why = "no champion to beat" if champion is None else f"the champion has no {metric}"
        return ChallengeResult(
            promote=True,
            decision=f"promote: {why}; candidate {metric} {value:.6g}",
            metric=metric,
            margin=margin,
            candidate_value=value,
            champion_value=None,
            metrics=flat,
        )
    higher = HIGHER_IS_BETTER[metric]
    gain = value - champion_value if higher else champion_value - value
    promote = gain > margin
    direction = "higher" if higher else "lower"
    verb = "beats" if gain > 0 else "does not beat"
    decision = (
        f"{'promote' if promote else 'reject'}: candidate {metric} {value:.6g} {verb} "
        f"champion {metric} {champion_value:.6g}"
        + (f" by {gain:.6g}" if gain > 0 else "")
        + f" ({direction} is better), "
        + ("more than" if promote else "not more than")
        + f" the margin {margin:.6g}"
    )
    return ChallengeResult(
        promote=promote,
        decision=decision,
        metric=metric,
        margin=margin,
        candidate_value=value,
        champion_value=champion_value,
        metrics=flat,
    )
