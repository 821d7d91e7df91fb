"""Event-time tumbling windows with allowed lateness.

Windows are ``[start, start + size)`` with starts aligned to the Unix epoch
(``start = floor(t / size) * size``). A window *closes* when the watermark passes
``end + allowed_lateness`` (``end + lateness <= watermark``); its metrics are then
written as revision 0. Data that arrives for a closed window (late predictions or late
labels) reopens nothing: the window's metrics are recomputed as the next revision.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from driftline.schemas.monitor import parse_duration
from pydantic import BaseModel, ConfigDict, Field

from ._coerce import as_float_array

__all__ = [
    "ClosedWindow",
    "WindowTracker",
    "WindowTrackerState",
    "assign_windows",
    "closes",
    "parse_duration",
    "window_bounds",
]


def assign_windows(timestamps: npt.ArrayLike, size: float) -> npt.NDArray[np.float64]:
    """Start of the window of each timestamp (epoch seconds).

    Examples
    --------
    >>> assign_windows([0.0, 59.9, 60.0, 3599.0, -1.0], 60).tolist()
    [0.0, 0.0, 60.0, 3540.0, -60.0]
    """
    if not size > 0:
        raise ValueError("window size must be positive")
    t = as_float_array(timestamps)
    return np.floor(t / size) * size


def window_bounds(start: float, size: float) -> tuple[float, float]:
    """``(start, end)`` of the window starting at ``start``.

    Examples
    --------
    >>> window_bounds(3600.0, 3600)
    (3600.0, 7200.0)
    """
    return float(start), float(start) + float(size)


def closes(
    starts: npt.ArrayLike, size: float, allowed_lateness: float, watermark: float
) -> npt.NDArray[np.bool_]:
    """Whether a watermark closes each window (``start + size + lateness <= watermark``).

    Examples
    --------
    >>> closes([0.0, 60.0, 120.0], 60, 10, 130.0).tolist()
    [True, True, False]
    """
    s = as_float_array(starts)
    return np.asarray(s + size + allowed_lateness <= watermark, dtype=bool)


class ClosedWindow(BaseModel):
    """A window whose metrics are due, with the revision to write.

    Examples
    --------
    >>> ClosedWindow(start=0.0, end=60.0, revision=0).end
    60.0
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: float
    end: float
    revision: int = Field(ge=0)


class WindowTrackerState(BaseModel):
    """Serialisable state of a :class:`WindowTracker`.

    Examples
    --------
    >>> WindowTrackerState(size=60.0, allowed_lateness=0.0).watermark is None
    True
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    size: float = Field(gt=0)
    allowed_lateness: float = Field(ge=0)
    watermark: float | None = None
    open: tuple[float, ...] = ()
    closed: tuple[tuple[float, int], ...] = ()


class WindowTracker:
    """Knows which windows are open, which are closed, and each closed window's revision.

    Parameters
    ----------
    size, allowed_lateness
        Seconds, or durations like ``"1h"`` and ``"10m"``.

    Examples
    --------
    >>> tr = WindowTracker("1m", "10s")
    >>> tr.observe([5.0, 70.0, 75.0]).tolist()      # no closed window touched
    []
    >>> [(w.start, w.revision) for w in tr.advance(75.0)]
    [(0.0, 0)]
    >>> tr.observe([30.0]).tolist()                  # late event for a closed window
    [0.0]
    >>> tr.revise(0.0)
    ClosedWindow(start=0.0, end=60.0, revision=1)
    >>> WindowTracker.from_state(tr.to_state()).to_state() == tr.to_state()
    True
    """

    def __init__(self, size: float | str, allowed_lateness: float | str = 0.0) -> None:
        self.size = parse_duration(size)
        self.allowed_lateness = parse_duration(allowed_lateness)
        if self.size <= 0:
            raise ValueError("window size must be positive")
        self.watermark: float | None = None
        self._open: set[float] = set()
        self._closed: dict[float, int] = {}

    def observe(self, timestamps: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Register event times; return the starts of *closed* windows they fall in.

        Open windows are created as needed. The returned (late) windows need a new
        revision: call :meth:`revise` for each once its data is stored. A window the
        watermark had already passed before any of its events arrived is closed at once
        and its first :meth:`revise` gives revision 0.
        """
        t = as_float_array(timestamps)
        t = t[np.isfinite(t)]
        starts = np.unique(assign_windows(t, self.size))
        if starts.size == 0:
            return starts
        closed = np.fromiter(
            (s in self._closed for s in starts.tolist()), dtype=bool, count=starts.size
        )
        if self.watermark is not None:
            # A window the watermark already passed but never saw data is closed too.
            newly = closes(starts, self.size, self.allowed_lateness, self.watermark) & ~closed
            for s in starts[newly].tolist():
                self._closed[s] = -1  # never written: its first revision will be 0
            closed |= newly
        self._open.update(starts[~closed].tolist())
        return np.asarray(starts[closed], dtype=np.float64)

    def advance(self, watermark: float) -> list[ClosedWindow]:
        """Move the watermark (never backwards); return open windows it closes, oldest first."""
        if not math.isfinite(watermark):
            raise ValueError("watermark must be finite")
        if self.watermark is None or watermark > self.watermark:
            self.watermark = float(watermark)
        due = sorted(
            s for s in self._open if s + self.size + self.allowed_lateness <= self.watermark
        )
        out = []
        for s in due:
            self._open.discard(s)
            self._closed[s] = 0
            out.append(ClosedWindow(start=s, end=s + self.size, revision=0))
        return out

    def revise(self, start: float) -> ClosedWindow:
        """Give a closed window its next revision (late data changed its metrics)."""
        if start not in self._closed:
            raise KeyError(f"window {start} is not closed")
        self._closed[start] += 1
        return ClosedWindow(start=start, end=start + self.size, revision=self._closed[start])

    def revision(self, start: float) -> int | None:
        """Last revision given to a closed window, ``None`` if none was given yet."""
        rev = self._closed.get(start)
        return None if rev is None or rev < 0 else rev

    @property
    def open_windows(self) -> list[float]:
        """Starts of the open windows, oldest first."""
        return sorted(self._open)

    @property
    def closed_windows(self) -> list[float]:
        """Starts of the closed windows still remembered, oldest first."""
        return sorted(self._closed)

    def forget_before(self, start: float) -> None:
        """Drop closed windows starting before ``start`` (bounded memory)."""
        for s in [s for s in self._closed if s < start]:
            del self._closed[s]

    def to_state(self) -> WindowTrackerState:
        """Serialisable state."""
        return WindowTrackerState(
            size=self.size,
            allowed_lateness=self.allowed_lateness,
            watermark=self.watermark,
            open=tuple(sorted(self._open)),
            closed=tuple(sorted(self._closed.items())),
        )

    @classmethod
    def from_state(cls, state: WindowTrackerState) -> WindowTracker:
        """Restore a tracker from :meth:`to_state`."""
        tr = cls(state.size, state.allowed_lateness)
        tr.watermark = state.watermark
        tr._open = set(state.open)
        tr._closed = dict(state.closed)
        return tr

    def __repr__(self) -> str:
        return (
            f"WindowTracker(size={self.size}, allowed_lateness={self.allowed_lateness}, "
            f"open={len(self._open)}, closed={len(self._closed)})"
        )
