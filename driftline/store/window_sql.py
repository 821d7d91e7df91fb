"""The SQL the store's window queries share: the rows of a model version's windows
(``predictions FINAL`` without merging the whole table, the latest label of each event),
binning, scores, and turning result rows into counts.

Every value travels as a query parameter (:class:`~driftline.store.params.SqlParams`).
Strings (model id, version, feature names, the positive label) travel hex-encoded and are
decoded by ``unhex`` in the query: chDB reads a ``String`` parameter in the escaped text
format (a backslash starts an escape sequence) and builds no ``Array(String)`` from a
Python list, while hex text means the same thing on every backend. No event content is
ever formatted into SQL.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from ..detectors.coerce import category_array
from ..detectors.profiles import (
    NumericCounts,
)
from .params import SqlParams

__all__ = [
    "class_strings",
]

_MICROS: Final = 1_000_000


_TASKS: Final = ("binary_classification", "multiclass", "regression")


#: Above this many edges a bin is found with ``arrayCount`` instead of one comparison
#: per edge (which is faster, but makes the query text grow with the edges).
_INLINE_EDGES: Final = 64


@dataclass(frozen=True)
class _Grid:
    """Windows ``[origin + i * size, origin + (i + 1) * size)`` for the wanted ``i``."""

    origin: int
    size: int
    wanted: tuple[int, ...]

    @classmethod
    def of(cls, starts: Iterable[float], size: float) -> tuple[_Grid, dict[int, float]]:
        """The grid of ``starts`` and the start each window index stands for."""
        if not (math.isfinite(size) and size > 0):
            raise ValueError("window size must be a positive number of seconds")
        size_us = round(size * _MICROS)
        if size_us < 1:
            raise ValueError("window size must be at least one microsecond")
        given = {round(float(start) * _MICROS): float(start) for start in starts}
        if not given:
            raise ValueError("no window starts given")
        origin = min(given)
        index: dict[int, float] = {}
        for micros, start in given.items():
            step, rest = divmod(micros - origin, size_us)
            if rest:
                raise ValueError(
                    f"window start {start} is not on the grid of the start {origin / _MICROS}"
                    f" with windows of {size} s"
                )
            index[step] = start
        return cls(origin, size_us, tuple(sorted(index))), index

    @property
    def low(self) -> int:
        return self.origin + self.wanted[0] * self.size

    @property
    def high(self) -> int:
        return self.origin + (self.wanted[-1] + 1) * self.size


def _range_sql(
    p: SqlParams, model_id: str, model_version: str, low: int, high: int, table: str = ""
) -> str:
    """Condition on ``predictions``: the version's rows with ``low <= timestamp < high`` (µs).

    With ``FINAL``, ClickHouse applies ``WHERE`` after deduplication, so an event
    re-sent with another version or timestamp counts where its latest copy says.
    """
    t = f"{table}." if table else ""
    return (
        f"{t}model_id = {p.string(model_id)} AND {t}model_version = {p.string(model_version)}"
        f" AND {t}timestamp >= fromUnixTimestamp64Micro({p.integer(low)}, 'UTC')"
        f" AND {t}timestamp < fromUnixTimestamp64Micro({p.integer(high)}, 'UTC')"
    )


def _latest_sql(p: SqlParams, model_id: str, model_version: str, low: int, high: int) -> str:
    """What ``predictions FINAL`` keeps of the events with a copy in the range, cheaply.

    The latest copy (largest ``ingested_at``, then Kafka offset and batch index) of
    every event of the model that has any copy of ``model_version`` in ``[low, high)``;
    the caller filters on the range again, so an event whose latest copy moved to
    another version or time counts where that copy says, exactly as with ``FINAL``.
    ``FINAL`` would merge the whole table before filtering on the (unsorted)
    timestamp, so closing a window would cost the table, not the window.
    """
    return f"""(
        SELECT *
        FROM predictions
        WHERE model_id = {p.string(model_id)} AND event_id IN (
            SELECT event_id FROM predictions
            WHERE {_range_sql(p, model_id, model_version, low, high)})
        ORDER BY event_id, ingested_at DESC, kafka_offset DESC, batch_index DESC
        LIMIT 1 BY event_id
    )"""


def _labels_sql(p: SqlParams, model_id: str, model_version: str, low: int, high: int) -> str:
    """The latest label of each event of the range (``label``: class and value, ``has_label``).

    ``argMax`` over a tuple: a Nullable argument alone would skip the rows where it is
    null, and so keep an older label whose other kind is set.
    """
    return f"""(
        SELECT event_id,
               argMax(tuple(label_class, label_value),
                      tuple(ingested_at, kafka_offset, batch_index)) AS label,
               toUInt8(1) AS has_label
        FROM feedback
        WHERE model_id = {p.string(model_id)} AND event_id IN (
            SELECT event_id FROM predictions
            WHERE {_range_sql(p, model_id, model_version, low, high)})
        GROUP BY event_id
    )"""


@dataclass(frozen=True)
class _Slices:
    """Segment slices aggregated in the same pass as the whole model.

    Each row is counted once for the whole model (slice 0) and once per key, in the
    slice of its value (:func:`~driftline.detectors.segments.slice_index`: a top value's
    own, else ``_other``); ``w`` is then ``window index * count + slice``.
    """

    #: Per key, its top values and ``_other``'s slice, in the profile's order.
    keys: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def count(self) -> int:
        """Slices, the whole model's included."""
        return 1 + sum(len(top) + 1 for _, top in self.keys)

    def slice_sql(self, p: SqlParams) -> str:
        """The array of a row's slices (ARRAY JOINed: one row per slice)."""
        parts = ["toUInt32(0)"]
        first = 1
        for key, top in self.keys:
            other = first + len(top)
            value = f"p.segment[{p.string(key)}]"
            if top:
                codes = p.integers(list(range(first, other)))
                parts.append(
                    f"toUInt32(transform({value}, {p.strings(top)}, {codes}, {p.integer(other)}))"
                )
            else:
                parts.append(f"toUInt32({p.integer(other)})")
            first = other + 1
        return "[" + ", ".join(parts) + "]"


def _rows_sql(
    p: SqlParams,
    grid: _Grid,
    model_id: str,
    model_version: str,
    columns: Sequence[str],
    *,
    labels: bool = False,
    slices: _Slices | None = None,
) -> str:
    """Rows of the wanted windows (``w``: window index) with ``columns`` computed per row.

    The table is ``p`` (the rows ``predictions FINAL`` keeps). With ``labels``, ``label_class``,
    ``label_value`` and ``has_label`` (0 for an unlabelled row) come from the latest
    label of each event. With ``slices``, each row comes once per slice and ``w`` is
    ``window index * slices.count + slice``.
    """
    join = ""
    if labels:
        latest = _labels_sql(p, model_id, model_version, grid.low, grid.high)
        join = f"\n    LEFT JOIN {latest} AS l ON l.event_id = p.event_id"
        columns = [
            "tupleElement(l.label, 1) AS label_class",
            "tupleElement(l.label, 2) AS label_value",
            "l.has_label AS has_label",
            *columns,
        ]
    origin, size = p.integer(grid.origin), p.integer(grid.size)
    window = f"intDiv(toUnixTimestamp64Micro(p.timestamp) - {origin}, {size})"
    if slices is None:
        heads = [f"{window} AS w"]
        wanted = "w"
    else:
        heads = [
            f"{window} AS w0",
            f"arrayJoin({slices.slice_sql(p)}) AS sl",
            f"w0 * {p.integer(slices.count)} + sl AS w",
        ]
        wanted = "w0"
    select = ",\n           ".join([*heads, *columns])
    where = _range_sql(p, model_id, model_version, grid.low, grid.high, "p")
    return f"""
    SELECT {select}
    FROM {_latest_sql(p, model_id, model_version, grid.low, grid.high)} AS p{join}
    WHERE {where} AND has({p.integers(grid.wanted)}, {wanted})"""


def _score_sql(p: SqlParams, positive_label: str, table: str = "p.") -> str:
    """The row's positive-class score: ``score``, else ``class_scores[positive_label]``
    (columns of ``table``, a prefix such as ``p.``, or none)."""
    label = p.string(positive_label)
    return (
        f"ifNull(coalesce({table}score, if(mapContains({table}class_scores, {label}),"
        f" {table}class_scores[{label}], NULL)), nan)"
    )


def _bin_sql(p: SqlParams, x: str, edges: Sequence[float]) -> str:
    """Number of edges ``<= x`` (``x`` finite)."""
    if not edges:
        return "toUInt32(0)"
    if len(edges) > _INLINE_EDGES:
        return f"toUInt32(arrayCount(e -> e <= {x}, {p.numbers(edges)}))"
    return "toUInt32(" + " + ".join(f"({x} >= {p.number(e)})" for e in edges) + ")"


def _floats(values: Sequence[Any]) -> npt.NDArray[np.float64]:
    """Floats of a result column; ``None`` (how JSON writes NaN and inf) becomes NaN."""
    return np.array(values, dtype=np.float64)


def _counts(values: Sequence[Any]) -> npt.NDArray[np.int64]:
    return np.array([int(v) for v in values], dtype=np.int64)


def _histogram(counts: Sequence[Any], sums: Sequence[Any], n: int) -> NumericCounts:
    c = _counts(counts)
    s = _floats(sums)
    return NumericCounts(
        counts=tuple(c.tolist()),
        null_count=n - int(c.sum()),
        sums=tuple(s.tolist()) if bool(np.isfinite(s).all()) else None,
    )


def class_strings(
    text: Sequence[str | None], numbers: Sequence[Any]
) -> tuple[npt.NDArray[Any], Any]:
    """Canonical class strings (``""`` where null) and the null mask of text/number pairs."""
    number_text, number_null = category_array(_floats(numbers))
    text_arr = np.array(text, dtype=object)
    text_null = np.asarray(text_arr == None, dtype=bool)  # noqa: E711 - elementwise test
    text_arr[text_null] = ""
    strings = np.where(text_null, number_text, text_arr.astype(str))
    null = text_null & number_null
    return np.where(null, "", strings).astype(str), null


def _group_counts(
    keys: npt.NDArray[np.int64], categories: npt.NDArray[np.str_], counts: npt.NDArray[np.int64]
) -> dict[int, dict[str, int]]:
    """Counts per key and category (summed over repeats), categories in sorted order."""
    out: dict[int, dict[str, int]] = {}
    if keys.size == 0:
        return out
    order = np.lexsort((categories, keys))
    k, c, n = keys[order], categories[order], counts[order]
    new = np.ones(k.size, dtype=bool)
    new[1:] = (k[1:] != k[:-1]) | (c[1:] != c[:-1])
    first = np.flatnonzero(new)
    totals = np.add.reduceat(n, first)
    k, c = k[first], c[first]
    bounds = np.flatnonzero(np.diff(k)) + 1
    for key, cats, sums in zip(
        np.split(k, bounds), np.split(c, bounds), np.split(totals, bounds), strict=True
    ):
        out[int(key[0])] = dict(zip(cats.tolist(), sums.tolist(), strict=True))
    return out
