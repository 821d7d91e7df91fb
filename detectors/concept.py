"""Concept drift: online detectors on the stream of a model's label errors.

Every labelled prediction gives one error (:func:`~driftline.detectors.online.error_stream`
for classification, the absolute error for regression), fed to the configured online
detectors (the monitor config's ``concept_drift`` section) in **label order**: the
label's feedback time, then ``event_id`` (:func:`label_order`). A detection counts in the
window of the labelled prediction's event time; a detection made before its detector had
seen ``concept_drift.min_labels`` errors is ignored.

The backtest feeds every label of its file at once; the streaming monitor feeds the new
labels of each pass and keeps the detectors' states between passes
(:class:`ConceptState`, :func:`advance_concept`). Both run :func:`concept_drift_step`, so
the same labels in the same order give the same detections.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from driftline.schemas.monitor import MonitorConfig
from pydantic import BaseModel, ConfigDict

from .online import OnlineDetector, error_stream, get_detector

__all__ = [
    "ConceptDriftHits",
    "ConceptState",
    "LabelRows",
    "WindowHits",
    "advance_concept",
    "concept_drift_detectors",
    "concept_drift_step",
    "label_order",
]


#: Detections per window start, then per detector name.
ConceptDriftHits = dict[float, dict[str, int]]


def label_order(times: npt.ArrayLike, event_ids: npt.ArrayLike) -> npt.NDArray[np.intp]:
    """The order in which labels feed the online detectors: feedback time, then event id.

    Examples
    --------
    >>> label_order([5.0, 1.0, 5.0], ["b", "z", "a"]).tolist()
    [1, 2, 0]
    """
    t = np.asarray(times, dtype=np.float64)
    ids = np.asarray(event_ids).astype(str)
    return np.lexsort((ids, t)).astype(np.intp)


def concept_drift_detectors(
    config: MonitorConfig, saved: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, OnlineDetector]:
    """The configured online detectors, restored from ``saved`` states where they fit.

    A saved state whose detector or parameters differ from the config is dropped (the
    detector starts afresh), so a changed config never resumes a foreign state.

    Examples
    --------
    >>> from driftline.schemas.monitor import MonitorConfig
    >>> cfg = MonitorConfig.from_mapping({"model_id": "m", "features": {"x": "numeric"},
    ...     "concept_drift": {"detectors": ["adwin", "page_hinkley"]}})
    >>> sorted(concept_drift_detectors(cfg))
    ['adwin', 'page_hinkley']
    """
    section = config.concept_drift
    if section is None:
        return {}
    out: dict[str, OnlineDetector] = {}
    for name in section.detectors:
        fresh = get_detector(name, **section.params.get(name, {}))
        state = (saved or {}).get(name)
        if (
            state is not None
            and state.get("detector") == name
            and dict(state.get("params", {})) == fresh.params
        ):
            out[name] = OnlineDetector.from_state(state)
        else:
            out[name] = fresh
    return out


def _errors(
    task: str, predictions: npt.ArrayLike, labels: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """One error per labelled row, aligned with the rows (NaN where it has none)."""
    if task == "regression":
        p = np.asarray(predictions, dtype=np.float64)
        y = np.asarray(labels, dtype=np.float64)
        return np.abs(p - y)
    return error_stream(task, predictions, labels)


def concept_drift_step(
    config: MonitorConfig,
    detectors: Mapping[str, OnlineDetector],
    *,
    predictions: npt.ArrayLike,
    labels: npt.ArrayLike,
    window_starts: npt.ArrayLike,
) -> ConceptDriftHits:
    """Feed labelled rows, already in label order, to the detectors (updated in place).

    ``predictions`` and ``labels`` are canonical class strings (every row labelled) or
    numbers (regression); ``window_starts`` is each row's prediction window. Returns the
    detections per window start and detector; a detection made before its detector had
    seen ``concept_drift.min_labels`` errors is ignored.

    Examples
    --------
    >>> from driftline.schemas.monitor import MonitorConfig
    >>> cfg = MonitorConfig.from_mapping({"model_id": "m", "features": {"x": "numeric"},
    ...     "concept_drift": {"detectors": ["page_hinkley"],
    ...                       "params": {"page_hinkley": {"threshold": 10.0}}}})
    >>> dets = concept_drift_detectors(cfg)
    >>> labels = ["1"] * 300 + ["0"] * 300
    >>> starts = [0.0] * 300 + [60.0] * 300
    >>> concept_drift_step(cfg, dets, predictions=["1"] * 600, labels=labels,
    ...                    window_starts=starts)
    {60.0: {'page_hinkley': 1}}
    """
    section = config.concept_drift
    out: ConceptDriftHits = {}
    if section is None or not detectors:
        return out
    errors = _errors(config.task, predictions, labels)
    starts = np.asarray(window_starts, dtype=np.float64)
    if errors.size != starts.size:
        raise ValueError("one window start per labelled row")
    if not errors.size:
        return out
    finite_before = np.cumsum(np.isfinite(errors))
    for name, det in detectors.items():
        seen = det.n_seen
        for i in det.update_many(errors).tolist():
            if seen + int(finite_before[i]) < section.min_labels:
                continue
            counts = out.setdefault(float(starts[i]), {})
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(out.items()))


class WindowHits(BaseModel):
    """Concept-drift detections counted in one window, per detector.

    Examples
    --------
    >>> WindowHits(start=60.0, counts={"adwin": 1}).counts["adwin"]
    1
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: float
    counts: dict[str, int]


class ConceptState(BaseModel):
    """The online detectors of one model version: their states, cursor and detections.

    ``cursor`` is the key ``(feedback time in µs, event_id)`` of the last label fed.

    Examples
    --------
    >>> state = ConceptState(hits=(WindowHits(start=60.0, counts={"adwin": 2, "ddm": 1}),))
    >>> state.by_start(), state.totals(["adwin"])
    ({60.0: {'adwin': 2, 'ddm': 1}}, {60.0: 2})
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    cursor: tuple[int, str] | None = None
    detectors: dict[str, dict[str, Any]] = {}
    hits: tuple[WindowHits, ...] = ()

    def by_start(self) -> dict[float, dict[str, int]]:
        """Detections per window start."""
        return {h.start: dict(h.counts) for h in self.hits}

    def totals(self, names: Sequence[str]) -> dict[float, int]:
        """Detections of the detectors ``names`` per window start."""
        return {h.start: sum(h.counts.get(n, 0) for n in names) for h in self.hits}


@dataclass(frozen=True)
class LabelRows:
    """Labels not yet fed to the online detectors, in label order: feedback times (µs)
    and event ids (the cursor's key), the predictions and labels (class strings or
    numbers) and each labelled prediction's window start.

    Examples
    --------
    >>> LabelRows(times=[1], event_ids=["e1"], predictions=["1"], labels=["0"],
    ...           starts=[0.0]).event_ids
    ['e1']
    """

    times: list[int]
    event_ids: list[str]
    predictions: Any
    labels: Any
    starts: Any


def advance_concept(
    config: MonitorConfig, state: ConceptState, rows: LabelRows
) -> tuple[ConceptState, bool]:
    """Feed ``rows`` to the detectors restored from ``state``; the new state and whether it
    changed (a pure step: the same state and rows give the same result).

    Examples
    --------
    >>> cfg = MonitorConfig.from_mapping({"model_id": "m", "features": {"x": "numeric"},
    ...     "concept_drift": {"detectors": ["page_hinkley"],
    ...                       "params": {"page_hinkley": {"threshold": 10.0}}}})
    >>> rows = LabelRows(times=list(range(600)), event_ids=[f"e{i}" for i in range(600)],
    ...                  predictions=["1"] * 600, labels=["1"] * 300 + ["0"] * 300,
    ...                  starts=[0.0] * 300 + [60.0] * 300)
    >>> new, changed = advance_concept(cfg, ConceptState(), rows)
    >>> changed, new.cursor, new.by_start()
    (True, (599, 'e599'), {60.0: {'page_hinkley': 1}})
    """
    if config.concept_drift is None or not rows.times:
        return state, False
    detectors = concept_drift_detectors(config, state.detectors)
    found = concept_drift_step(
        config,
        detectors,
        predictions=rows.predictions,
        labels=rows.labels,
        window_starts=rows.starts,
    )
    merged = state.by_start()
    for start, counts in found.items():
        into = merged.setdefault(start, {})
        for name, hits in counts.items():
            into[name] = into.get(name, 0) + hits
    new = ConceptState(
        cursor=(int(rows.times[-1]), str(rows.event_ids[-1])),
        detectors={name: det.to_state() for name, det in detectors.items()},
        hits=tuple(WindowHits(start=s, counts=c) for s, c in sorted(merged.items())),
    )
    return new, True
