"""Event-time tumbling windows, in integer microseconds.

Windows are ``[start, start + size)`` with starts aligned to the Unix epoch. Every rule
here counts in whole microseconds, as ClickHouse stores event time (``DateTime64(6)``)
and groups it (``intDiv(toUnixTimestamp64Micro(timestamp), size_us)``), so that the
backtest, the monitor's plan and the store's aggregation agree on every boundary:

- a time belongs to window ``floor(t_us / size_us) * size_us`` (:func:`assign_windows`),
  ``t_us`` being the time rounded to the microsecond as the event models round it
  (:func:`to_microseconds`);
- a window *closes* when ``end + allowed_lateness <= watermark``
  (:func:`window_closes`, :func:`closes`), and :func:`closing_boundary` counts the
  window ends a watermark has passed, so that a monitor pass runs only when it moves;
- a model's watermark is the slowest of its active partition marks
  (:func:`global_watermark`, :func:`model_watermarks`);
- which closed windows to evaluate, and as which revision (:func:`plan_windows`,
  :func:`with_moved`): data that arrives for a closed window (late predictions or late
  labels) reopens nothing; the window is evaluated again as its next revision.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from driftline.schemas.monitor import MonitorConfig

from .coerce import as_float_array
from .step import FRESH, MonitorState, WindowWork

__all__ = [
    "MICROS",
    "ModelMark",
    "PartitionMark",
    "assign_windows",
    "closes",
    "closing_boundary",
    "global_watermark",
    "micros",
    "model_watermarks",
    "plan_windows",
    "to_microseconds",
    "window_closes",
    "with_moved",
]

#: Microseconds per second.
MICROS = 1_000_000


def micros(seconds: float) -> int:
    """Seconds as whole microseconds (nearest).

    Examples
    --------
    >>> micros(1.5), micros(0.1 + 0.2)
    (1500000, 300000)
    """
    return round(seconds * MICROS)


def to_microseconds(seconds: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Epoch seconds rounded to the microsecond as ``datetime.fromtimestamp`` rounds them.

    The event models keep times as datetimes (microseconds, half to even on the
    fractional part); batch columns keep the number sent. Rounding both the same way puts
    a row in the same window whichever way it came.

    Examples
    --------
    >>> to_microseconds([1.0000004, 1.0000006, 59.99999951]).tolist()
    [1.0, 1.000001, 60.0]
    """
    t = as_float_array(seconds)
    whole = np.floor(t)
    return np.asarray((whole * 1e6 + np.round((t - whole) * 1e6)) / 1e6, dtype=np.float64)


def _micro_array(seconds: npt.ArrayLike) -> npt.NDArray[np.int64]:
    t = as_float_array(seconds)
    whole = np.floor(t)
    return whole.astype(np.int64) * MICROS + np.round((t - whole) * 1e6).astype(np.int64)


def _size_micros(size: float) -> int:
    if not size > 0:
        raise ValueError("window size must be positive")
    size_us = micros(size)
    if size_us < 1:
        raise ValueError("window size must be at least one microsecond")
    return size_us


def assign_windows(timestamps: npt.ArrayLike, size: float) -> npt.NDArray[np.float64]:
    """Start of the window of each timestamp (epoch seconds), in whole microseconds.

    Examples
    --------
    >>> assign_windows([0.0, 59.9, 60.0, 3599.0, -1.0], 60).tolist()
    [0.0, 0.0, 60.0, 3540.0, -60.0]
    >>> assign_windows([59.9999996], 60).tolist()  # rounds to 60.000000 first
    [60.0]
    """
    size_us = _size_micros(size)
    starts = (_micro_array(timestamps) // size_us) * size_us
    return starts.astype(np.float64) / MICROS


def window_closes(start: float, size: float, lateness: float, watermark: float) -> bool:
    """Whether window ``[start, start + size)`` closes at ``watermark``
    (``end + lateness <= watermark``, in microseconds, as :func:`closing_boundary` counts).

    Examples
    --------
    >>> window_closes(0.0, 60, 10, 70.0), window_closes(0.0, 60, 10, 69.9999994)
    (True, False)
    """
    if not math.isfinite(watermark):
        return watermark > 0
    return micros(start) + micros(size) + micros(lateness) <= micros(watermark)


def closes(
    starts: npt.ArrayLike, size: float, allowed_lateness: float, watermark: float
) -> npt.NDArray[np.bool_]:
    """:func:`window_closes` of each window start.

    Examples
    --------
    >>> closes([0.0, 60.0, 120.0], 60, 10, 130.0).tolist()
    [True, True, False]
    """
    s = _micro_array(starts)
    if not math.isfinite(watermark):
        return np.full(s.shape, watermark > 0, dtype=bool)
    return np.asarray(s + micros(size) + micros(allowed_lateness) <= micros(watermark))


@dataclass(frozen=True)
class ModelMark:
    """One model's progress on one partition: its largest prediction event time and the
    processing time its newest row was stored at (``ingested_at``), epoch seconds.

    Examples
    --------
    >>> ModelMark("credit", 0, event_time=1767225600.0, updated_at=1767225601.5).partition
    0
    """

    model_id: str
    partition: int
    event_time: float
    updated_at: float


@dataclass(frozen=True)
class PartitionMark:
    """One partition's watermark (event time) and last progress (processing time).

    Examples
    --------
    >>> PartitionMark(1, event_time=1767225600.0, updated_at=1767225601.0).partition
    1
    """

    partition: int
    event_time: float
    updated_at: float


def global_watermark(
    marks: Sequence[PartitionMark | ModelMark], now: float, idle_seconds: float
) -> float:
    """The slowest active mark's event time.

    A mark is active when its last progress is at most ``idle_seconds`` before ``now``;
    an idle partition does not hold the watermark back. When every mark is idle, the
    watermark is the largest mark (the stream is quiet; whatever it sent is stored).

    The monitor applies it to the marks of one model (:func:`model_watermarks`); over the
    ``watermarks`` table's partition marks it gives the watermark of all models together.

    Examples
    --------
    >>> marks = [PartitionMark(0, 500.0, 99.0), PartitionMark(1, 300.0, 98.0)]
    >>> global_watermark(marks, now=100.0, idle_seconds=10)
    300.0
    >>> global_watermark(marks, now=108.5, idle_seconds=10)  # partition 1 is idle
    500.0
    >>> global_watermark(marks, now=200.0, idle_seconds=10)  # all idle: the newest
    500.0
    >>> global_watermark([], now=0.0, idle_seconds=10)
    -inf
    """
    if not marks:
        return -math.inf
    active = [m.event_time for m in marks if now - m.updated_at <= idle_seconds]
    return min(active) if active else max(m.event_time for m in marks)


def model_watermarks(
    marks: Sequence[ModelMark], now: float, idle_seconds: float
) -> dict[str, float]:
    """Each model's watermark: :func:`global_watermark` over that model's own marks only.

    Examples
    --------
    >>> marks = [ModelMark("a", 0, 300.0, 50.0), ModelMark("a", 1, 100.0, 49.0),
    ...          ModelMark("b", 0, 9000.0, 50.0)]
    >>> model_watermarks(marks, now=50.0, idle_seconds=10)  # b's clock leaves a alone
    {'a': 100.0, 'b': 9000.0}
    >>> model_watermarks(marks, now=59.5, idle_seconds=10)  # a's partition 1 is idle
    {'a': 300.0, 'b': 9000.0}
    """
    by_model: dict[str, list[ModelMark]] = {}
    for mark in marks:
        by_model.setdefault(mark.model_id, []).append(mark)
    return {
        model: global_watermark(own, now, idle_seconds) for model, own in sorted(by_model.items())
    }


def closing_boundary(config: MonitorConfig, watermark: float) -> int:
    """How many window ends of ``config`` lie at or before ``watermark - allowed_lateness``.

    Windows are epoch-aligned, so window ``[s, s + W)`` can close only once this number
    passes ``(s + W) / W``: while it stays the same, no new window is due.

    Examples
    --------
    >>> config = MonitorConfig.from_mapping({"model_id": "m", "window": "1m",
    ...     "allowed_lateness": "10s", "features": {"x": "numeric"}})
    >>> closing_boundary(config, 129.9), closing_boundary(config, 130.0)
    (1, 2)
    """
    if not math.isfinite(watermark):
        return -(2**63) if watermark < 0 else 2**63
    # In whole microseconds, as windows are planned, so that both agree on every end.
    frontier = micros(watermark) - micros(config.allowed_lateness_seconds)
    return frontier // micros(config.window_seconds)


def plan_windows(
    state: MonitorState,
    counts: Mapping[float, tuple[int, int]],
    *,
    size: float,
    lateness: float,
    watermark: float,
    horizon: float,
    drift: Mapping[float, int] | None = None,
) -> list[WindowWork]:
    """Windows to evaluate now, oldest first.

    ``counts`` maps window starts to ``(predictions, labelled predictions)`` over every
    window that can close (a recorded window absent from it holds no prediction any
    more). A window is due when it closes (``start + size + lateness <= watermark``) and
    either it was never evaluated, holds predictions and is newer than the newest
    evaluated window or within the horizon, or it was evaluated, is within the horizon
    (``start + size >= watermark - horizon``) and its counts or its concept-drift
    detections (``drift``: window start to detections) changed. Counts rise with late
    data; they fall when a merge removed the older copy of an event re-sent elsewhere.

    Examples
    --------
    >>> from driftline.detectors.step import WindowRecord
    >>> counts = {0.0: (5, 0), 60.0: (5, 5), 120.0: (3, 0)}
    >>> [w.start for w in plan_windows(MonitorState(), counts, size=60, lateness=10,
    ...                                watermark=189.0, horizon=3600)]
    [0.0, 60.0]
    >>> done = MonitorState(last_closed=60.0, windows=(
    ...     WindowRecord(start=0.0, revision=0, n=5, labelled=0),
    ...     WindowRecord(start=60.0, revision=0, n=5, labelled=5)))
    >>> plan_windows(done, counts, size=60, lateness=10, watermark=189.0, horizon=3600)
    []
    >>> counts[0.0] = (5, 4)
    >>> plan_windows(done, counts, size=60, lateness=10, watermark=189.0, horizon=3600)
    [WindowWork(start=0.0, revision=1, n=5, labelled=4, drift=0)]
    >>> plan_windows(done, counts, size=60, lateness=10, watermark=189.0, horizon=60)
    []
    >>> counts[0.0] = (5, 0)
    >>> plan_windows(done, counts, size=60, lateness=10, watermark=189.0, horizon=3600,
    ...              drift={60.0: 1})
    [WindowWork(start=60.0, revision=1, n=5, labelled=5, drift=1)]
    >>> # one event of window 0 left, window 60 lost them all
    >>> plan_windows(done, {0.0: (4, 0)}, size=60, lateness=10, watermark=189.0,
    ...              horizon=3600)  # doctest: +NORMALIZE_WHITESPACE
    [WindowWork(start=0.0, revision=1, n=4, labelled=0, drift=0),
     WindowWork(start=60.0, revision=1, n=0, labelled=0, drift=0)]
    """
    drift = drift or {}
    due: list[WindowWork] = []
    for start in sorted({*counts, *(w.start for w in state.windows)}):
        n, labelled = counts.get(start, (0, 0))
        hits = int(drift.get(start, 0))
        if not window_closes(start, size, lateness, watermark):
            continue
        recent = start + size >= watermark - horizon
        record = state.record(start)
        if record is None:
            newer = state.last_closed is None or start > state.last_closed
            if n > 0 and (newer or recent):
                due.append(WindowWork(start, 0, n, labelled, hits))
        elif recent and (n != record.n or labelled != record.labelled or hits != record.drift):
            due.append(WindowWork(start, record.revision + 1, n, labelled, hits))
    return due


def with_moved(
    state: MonitorState,
    work: Sequence[WindowWork],
    counts: Mapping[float, tuple[int, int]] | None = None,
    drift: Mapping[float, int] | None = None,
) -> list[WindowWork]:
    """``work`` plus the windows waiting in ``state.moved`` (see "Re-sent events"), oldest
    first.

    A moved window is evaluated as its record's next revision (0 without a record: the
    stored revisions raise it, see "Revisions"), with its counts from ``counts`` when the
    count pass covered it, else from its aggregates.

    Examples
    --------
    >>> from driftline.detectors.step import WindowRecord
    >>> state = MonitorState(last_closed=120.0, moved=(0.0,),
    ...     windows=(WindowRecord(start=0.0, revision=2, n=5, labelled=5),))
    >>> with_moved(state, [WindowWork(120.0, 0, 3, 0)], counts={0.0: (5, 5)})
    ... # doctest: +NORMALIZE_WHITESPACE
    [WindowWork(start=0.0, revision=3, n=5, labelled=5, drift=0),
     WindowWork(start=120.0, revision=0, n=3, labelled=0, drift=0)]
    """
    planned = {w.start for w in work}
    extra = []
    for start in state.moved:
        if start in planned:
            continue
        record = state.record(start)
        n, labelled = (counts or {}).get(start, (FRESH, FRESH))
        revision = 0 if record is None else record.revision + 1
        extra.append(WindowWork(start, revision, n, labelled, int((drift or {}).get(start, 0))))
    return sorted([*work, *extra], key=lambda w: w.start)
