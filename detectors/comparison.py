"""One window's evidence about a challenger: two versions compared on the same traffic.

The rollout policy (:mod:`driftline.detectors.promotion`) decides from sums; this module
makes them from one window's rows, with numpy. The streaming monitor pushes the same
sums down to ClickHouse (:mod:`driftline.store.rollouts`); both follow these rules, and a
test checks that they agree.

Rows
    Each version's predictions of the window as a :class:`VersionScores`: event ids,
    predicted classes, whether the version *served* the event (else it scored it in
    shadow), and its latency where measured. A window holds the events whose served
    prediction's event time falls in it; a shadow prediction belongs to the window of
    the served prediction of its event id (one without a served prediction is not
    evidence).
Labels
    A label counts when its feedback timestamp is before ``window_end +
    allowed_lateness``, the moment the stream closes the window: later labels never
    change a decision taken, so replaying the events gives the same decisions whatever
    order they arrived in.
Paired evidence
    The events both versions scored (one served, the other in shadow). ``pairs`` counts
    them and ``disagreements`` those whose predicted classes differ (label-free; numbers
    never disagree); the labelled ones give
    :class:`~driftline.detectors.rollout.PairedCounts`: how many, and the sums of the
    positive and negative parts of challenger minus champion per-event score
    (:func:`event_scores`: for classes, how many only the challenger or only the
    champion predicted right, McNemar's discordant pairs; for numbers, and for the
    log loss of probabilities, the bounded losses' differences, the paired loss
    differences).
Arms
    Each version's *served*, labelled events: how many, and the sum of their scores
    (:class:`~driftline.detectors.rollout.ArmCounts`), the evidence of a canary.
Guarantee
    Every score lies in ``[0, 1]`` (:func:`event_scores`), which is all the confidence
    sequences of :mod:`driftline.detectors.rollout` need: decisions taken from this
    evidence keep their level ``alpha`` under continuous monitoring
    (``tests/test_rollout.py`` simulates it for classes and for each loss).
Latency
    Each version's 95th percentile over every prediction it made in the window (served
    or shadow) that carries a latency, taken as ClickHouse's ``quantileExact(0.95)``
    takes it: the sorted values' element at ``floor(0.95 n)``. The guardrail ratio is
    the challenger's over the champion's, ``None`` unless both were measured and the
    champion's is positive.

Examples
--------
>>> import numpy as np
>>> champion = VersionScores(event_ids=np.array(["a", "b", "c"]),
...     predictions=np.array(["1", "0", "1"]), served=np.array([True, True, True]))
>>> challenger = VersionScores(event_ids=np.array(["a", "b", "c"]),
...     predictions=np.array(["1", "1", "0"]), served=np.array([False, False, False]))
>>> labels = WindowLabels(event_ids=np.array(["a", "b", "c"]),
...     labels=np.array(["1", "1", "1"]), times=np.array([10.0, 10.0, 99.0]))
>>> evidence = window_evidence(champion, challenger, labels, label_deadline=50.0)
>>> evidence.pairs, evidence.disagreements, evidence.paired
(3, 2, PairedCounts(n=2, challenger_only=1.0, champion_only=0.0))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from .performance import LOG_EPS
from .promotion import RolloutEvidence
from .rollout import ArmCounts, PairedCounts

__all__ = [
    "SCORE_UNITS",
    "VersionScores",
    "WindowLabels",
    "event_scores",
    "latency_p95",
    "window_evidence",
]


@dataclass(frozen=True)
class VersionScores:
    """One version's predictions in a window (one row per event id).

    Examples
    --------
    >>> scores = VersionScores(event_ids=np.array(["a"]), predictions=np.array(["1"]),
    ...                        served=np.array([True]))
    >>> scores.latency_ms.tolist()
    [nan]
    """

    event_ids: npt.NDArray[np.str_]
    predictions: npt.NDArray[Any]
    served: npt.NDArray[np.bool_]
    #: Milliseconds, NaN where not measured (default: none measured).
    latency_ms: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    #: The positive class's probability (binary classification), NaN where not given
    #: (default: none given); only ``log_loss`` reads it.
    scores: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0))

    def __post_init__(self) -> None:
        for name in ("latency_ms", "scores"):
            if getattr(self, name).size == 0 and self.event_ids.size:
                object.__setattr__(self, name, np.full(self.event_ids.size, np.nan))


@dataclass(frozen=True)
class WindowLabels:
    """The labels of a window's events: event id, label, the feedback's timestamp
    (kept in event-id order, sorted once here, for the lookups of every window).

    Examples
    --------
    >>> WindowLabels(event_ids=np.array(["a"]), labels=np.array(["1"]),
    ...              times=np.array([5.0])).labels.tolist()
    ['1']
    """

    event_ids: npt.NDArray[np.str_]
    labels: npt.NDArray[Any]
    times: npt.NDArray[np.float64]

    def __post_init__(self) -> None:
        ids = self.event_ids
        if ids.size > 1 and not bool(np.all(ids[1:] >= ids[:-1])):
            order = np.argsort(ids, kind="stable")
            object.__setattr__(self, "event_ids", ids[order])
            object.__setattr__(self, "labels", self.labels[order])
            object.__setattr__(self, "times", self.times[order])


def latency_p95(latency_ms: npt.NDArray[np.float64]) -> float | None:
    """The 95th percentile of the measured latencies, as ``quantileExact(0.95)``.

    Examples
    --------
    >>> latency_p95(np.array([5.0, np.nan, 1.0, 3.0]))
    5.0
    >>> latency_p95(np.array([np.nan])) is None
    True
    """
    measured = np.sort(latency_ms[~np.isnan(latency_ms)])
    if measured.size == 0:
        return None
    return float(measured[min(int(measured.size * 0.95), measured.size - 1)])


def _label_of(
    event_ids: npt.NDArray[np.str_],
    labels: WindowLabels,
    deadline: float,
    loss_bound: float | None = None,
    loss: str = "mae",
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[Any]]:
    """Whether each event has a label in time (a finite one, for numbers), and the label
    (where it has)."""
    ids = labels.event_ids  # sorted
    pos = np.minimum(np.searchsorted(ids, event_ids), max(ids.size - 1, 0))
    found = np.zeros(event_ids.size, dtype=bool)
    if ids.size:
        found = ids[pos] == event_ids
        found &= labels.times[pos] < deadline
    if not ids.size:
        as_classes = loss_bound is None or loss == "log_loss"
        values: npt.NDArray[Any] = np.full(event_ids.size, "" if as_classes else np.nan)
    else:
        values = labels.labels[pos]
    if loss_bound is not None and loss != "log_loss" and ids.size:
        numbers = values.astype(np.float64)
        found &= np.isfinite(numbers)
        if loss == "mape":
            found &= numbers != 0
    return found, values


#: Per-event scores are counted in millionths, so that sums are exact integers in numpy
#: and in ClickHouse alike.
SCORE_UNITS: Final = 1_000_000


def event_scores(
    predictions: npt.NDArray[Any],
    truth: npt.NDArray[Any],
    labelled: npt.NDArray[np.bool_],
    loss_bound: float | None = None,
    loss: str = "mae",
    positive_label: str = "1",
) -> npt.NDArray[np.int64]:
    """Each labelled event's score in millionths of [0, 1] (0 where unlabelled).

    Classes (``loss_bound`` None): 1 when the prediction is the label, else 0. Numbers:
    ``1 - min(e, cap) / cap`` rounded down to a millionth (a missing prediction scores
    0), with ``loss`` ``mae``: ``e = |prediction - label|``, ``cap = loss_bound``;
    ``rmse``: ``e = (prediction - label)**2``, ``cap = loss_bound**2`` (the comparison is
    of mean squared errors); ``mape``: ``e = |(prediction - label) / label|``, ``cap =
    loss_bound`` (labels of 0 are not labelled for it, see :func:`window_evidence`);
    ``log_loss`` (binary classification): ``predictions`` are the positive class's
    probabilities, ``e = -ln p`` of the probability ``p`` given to the label (clipped
    to ``[LOG_EPS, 1 - LOG_EPS]`` as the window's log loss clips it; a missing or
    non-finite probability scores 0), ``cap = loss_bound`` in nats. A mean score
    difference is then a difference of mean losses over the cap, losses capped at it.

    Examples
    --------
    >>> event_scores(np.array(["1", "0"]), np.array(["1", "1"]), np.array([True, True])).tolist()
    [1000000, 0]
    >>> event_scores(np.array([1.0, 3.0, 9.0]), np.array([1.5, 1.0, 1.0]),
    ...              np.array([True, True, True]), loss_bound=4.0).tolist()
    [875000, 500000, 0]
    >>> event_scores(np.array([1.0, 3.0]), np.array([2.0, 1.0]), np.array([True, True]),
    ...              loss_bound=4.0, loss="rmse").tolist()
    [937500, 750000]
    >>> event_scores(np.array([0.9, 0.9, np.nan]), np.array(["1", "0", "1"]),
    ...              np.array([True, True, True]), loss_bound=4.0, loss="log_loss").tolist()
    [973659, 424353, 0]
    """
    if loss_bound is None:
        right = labelled & (predictions == truth)
        return right.astype(np.int64) * SCORE_UNITS
    cap = loss_bound * loss_bound if loss == "rmse" else loss_bound
    with np.errstate(invalid="ignore", divide="ignore"):
        if loss == "log_loss":
            p = np.clip(np.clip(predictions.astype(np.float64), 0.0, 1.0), LOG_EPS, 1 - LOG_EPS)
            error = -np.where(truth == positive_label, np.log(p), np.log1p(-p))
        else:
            y = truth.astype(np.float64)
            difference = predictions.astype(np.float64) - y
            if loss == "rmse":
                error = difference * difference
            elif loss == "mape":
                error = np.abs(difference / y)
            else:
                error = np.abs(difference)
    capped = np.where(np.isfinite(error), np.minimum(error, cap), cap)
    scores = np.floor((1.0 - capped / cap) * SCORE_UNITS).astype(np.int64)
    return np.where(labelled, scores, 0)


def window_evidence(
    champion: VersionScores,
    challenger: VersionScores,
    labels: WindowLabels,
    *,
    label_deadline: float,
    loss_bound: float | None = None,
    loss: str = "mae",
    positive_label: str = "1",
) -> RolloutEvidence:
    """The window's evidence of ``challenger`` against ``champion`` (module docstring).

    ``label_deadline`` is ``window_end + allowed_lateness``, in the labels' time unit;
    ``loss_bound`` makes the per-event scores those of the bounded ``loss``
    (:func:`event_scores`; ``log_loss`` scores each version's ``scores`` against the
    ``positive_label``, and an event counts only where the versions compared gave a
    probability: a shadow version logged without one is not judged on what it did not
    say); with numbers, predictions never "disagree" (the disagreement guardrail is for
    classes).
    """
    by_probability = loss_bound is not None and loss == "log_loss"

    def scored(scores: VersionScores, at: npt.NDArray[np.intp]) -> npt.NDArray[Any]:
        return scores.scores[at] if by_probability else scores.predictions[at]

    both, at_champion, at_challenger = np.intersect1d(
        champion.event_ids, challenger.event_ids, assume_unique=True, return_indices=True
    )
    one_served = champion.served[at_champion] ^ challenger.served[at_challenger]
    at_champion, at_challenger = at_champion[one_served], at_challenger[one_served]
    champion_says = champion.predictions[at_champion]
    challenger_says = challenger.predictions[at_challenger]
    labelled, truth = _label_of(both[one_served], labels, label_deadline, loss_bound, loss)
    if by_probability:  # a pair counts only when both versions gave a probability
        labelled &= np.isfinite(champion.scores[at_champion])
        labelled &= np.isfinite(challenger.scores[at_challenger])
    rule = (loss_bound, loss, positive_label)
    gain = event_scores(scored(challenger, at_challenger), truth, labelled, *rule) - (
        event_scores(scored(champion, at_champion), truth, labelled, *rule)
    )
    paired = PairedCounts(
        n=int(np.count_nonzero(labelled)),
        challenger_only=int(gain[gain > 0].sum()) / SCORE_UNITS,
        champion_only=int(-gain[gain < 0].sum()) / SCORE_UNITS,
    )

    def arm(scores: VersionScores) -> ArmCounts:
        served = np.flatnonzero(scores.served)
        has, value = _label_of(scores.event_ids[served], labels, label_deadline, loss_bound, loss)
        if by_probability:
            has &= np.isfinite(scores.scores[served])
        total = int(event_scores(scored(scores, served), value, has, *rule).sum())
        return ArmCounts(n=int(np.count_nonzero(has)), score=total / SCORE_UNITS)

    champion_p95 = latency_p95(champion.latency_ms)
    challenger_p95 = latency_p95(challenger.latency_ms)
    ratio = None
    if champion_p95 is not None and challenger_p95 is not None and champion_p95 > 0:
        ratio = challenger_p95 / champion_p95
    return RolloutEvidence(
        paired=paired,
        challenger=arm(challenger),
        champion=arm(champion),
        pairs=int(at_champion.size),
        disagreements=0
        if loss_bound is not None and not by_probability
        else int(np.count_nonzero(champion_says != challenger_says)),
        latency_p95_ratio=ratio,
    )
