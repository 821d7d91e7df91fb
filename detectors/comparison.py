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
    them and ``disagreements`` those whose predicted classes differ (label-free); the
    labelled ones give :class:`~driftline.detectors.rollout.PairedCounts`: how many, and
    how many only the challenger or only the champion predicted right (McNemar's
    discordant pairs).
Arms
    Each version's *served*, labelled events: how many, and how many it predicted right
    (:class:`~driftline.detectors.rollout.ArmCounts`), the evidence of a canary.
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
from typing import Any

import numpy as np
import numpy.typing as npt

from .promotion import RolloutEvidence
from .rollout import ArmCounts, PairedCounts

__all__ = ["VersionScores", "WindowLabels", "latency_p95", "window_evidence"]


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

    def __post_init__(self) -> None:
        if self.latency_ms.size == 0 and self.event_ids.size:
            object.__setattr__(self, "latency_ms", np.full(self.event_ids.size, np.nan))


@dataclass(frozen=True)
class WindowLabels:
    """The labels of a window's events: event id, label, the feedback's timestamp.

    Examples
    --------
    >>> WindowLabels(event_ids=np.array(["a"]), labels=np.array(["1"]),
    ...              times=np.array([5.0])).labels.tolist()
    ['1']
    """

    event_ids: npt.NDArray[np.str_]
    labels: npt.NDArray[Any]
    times: npt.NDArray[np.float64]


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
    event_ids: npt.NDArray[np.str_], labels: WindowLabels, deadline: float
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[Any]]:
    """Whether each event has a label in time, and the label (where it has)."""
    order = np.argsort(labels.event_ids, kind="stable")
    ids = labels.event_ids[order]
    pos = np.minimum(np.searchsorted(ids, event_ids), max(ids.size - 1, 0))
    found = np.zeros(event_ids.size, dtype=bool)
    if ids.size:
        found = ids[pos] == event_ids
        found &= labels.times[order][pos] < deadline
    values = labels.labels[order][pos] if ids.size else np.empty(event_ids.size, dtype=str)
    return found, values


def window_evidence(
    champion: VersionScores,
    challenger: VersionScores,
    labels: WindowLabels,
    *,
    label_deadline: float,
) -> RolloutEvidence:
    """The window's evidence of ``challenger`` against ``champion`` (module docstring).

    ``label_deadline`` is ``window_end + allowed_lateness``, in the labels' time unit.
    """
    both, at_champion, at_challenger = np.intersect1d(
        champion.event_ids, challenger.event_ids, assume_unique=True, return_indices=True
    )
    one_served = champion.served[at_champion] ^ challenger.served[at_challenger]
    at_champion, at_challenger = at_champion[one_served], at_challenger[one_served]
    champion_says = champion.predictions[at_champion]
    challenger_says = challenger.predictions[at_challenger]
    labelled, truth = _label_of(both[one_served], labels, label_deadline)
    champion_right = labelled & (champion_says == truth)
    challenger_right = labelled & (challenger_says == truth)
    paired = PairedCounts(
        n=int(np.count_nonzero(labelled)),
        challenger_only=int(np.count_nonzero(challenger_right & ~champion_right)),
        champion_only=int(np.count_nonzero(champion_right & ~challenger_right)),
    )

    def arm(scores: VersionScores) -> ArmCounts:
        served = np.flatnonzero(scores.served)
        has, value = _label_of(scores.event_ids[served], labels, label_deadline)
        right = has & (scores.predictions[served] == value)
        return ArmCounts(n=int(np.count_nonzero(has)), score=int(np.count_nonzero(right)))

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
        disagreements=int(np.count_nonzero(champion_says != challenger_says)),
        latency_p95_ratio=ratio,
    )
