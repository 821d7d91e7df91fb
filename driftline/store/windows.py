"""Window aggregates computed in ClickHouse: the store's twin of ``aggregate_window``.

When a window closes, the streaming monitor needs the window's
:class:`~driftline.detectors.evaluate.WindowData`: histograms over the profile's
frozen bins, category counts, the prediction and score distributions and the
performance counts. They are aggregated here by ClickHouse (``GROUP BY`` window,
``-Resample`` combinators, ``countIf``/``sumIf``), never by pulling raw rows into
Python; Python only turns the few result rows into counts. The numbers equal those of
:func:`~driftline.detectors.evaluate.aggregate_window` on the window's raw arrays
(float sums up to summation order), taken as ``driftline backtest`` takes them:

Rows
    The rows ``predictions FINAL`` keeps (deduplicated by ``event_id``; computed
    without merging the whole table, see ``_latest_sql``) of one model version whose
    ``timestamp`` lies in ``[start, end)`` (microseconds; an event at ``end`` belongs to
    the next window).
Numeric features
    A value in ``features_num`` that is finite is binned as in
    :class:`~driftline.detectors.profiles.NumericProfile`: bin = number of edges
    ``<= x`` (open outer bins), with per-bin sums. Everything else is null: a feature
    in ``features_null``, absent from the row, or sent as a string.
Categorical features
    A string in ``features_cat`` is its own category; a number sent for a
    categorical feature is the category of its canonical text (``1.0`` is ``"1"``, as
    :func:`~driftline.detectors.coerce.category_string` writes it). Categories the
    profile does not know keep their names (the profile sums them into its unseen
    bucket). Null, absent and non-finite values count as nulls.
Predictions
    Classification: classes as canonical strings; regression: ``prediction_value``
    (a string prediction is null). The profile's prediction kind must match the task.
Scores (binary classification only)
    ``score``, else the positive label's entry of ``class_scores``. As in the
    backtest, a window without any finite score has no score histogram and its
    performance counts have no score part (no ROC AUC, no log loss).
Labels
    The latest label of each ``event_id`` of the model (largest ``ingested_at``,
    then Kafka offset and batch index), joined to the predictions with a ``LEFT
    JOIN``; unlabelled rows count in ``n_predicted`` (label coverage).

Every value travels as a query parameter. Strings (model id, version, feature names,
the positive label) travel hex-encoded and are decoded by ``unhex`` in the query:
chDB reads a ``String`` parameter in the escaped text format (a backslash starts an
escape sequence) and builds no ``Array(String)`` from a Python list, while hex text
means the same thing on every backend. No event content is ever formatted into SQL.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from ..detectors.coerce import category_array, category_string
from ..detectors.evaluate import WindowData
from ..detectors.performance import (
    LOG_EPS,
    SCORE_BINS,
    BinaryCounts,
    MulticlassCounts,
    PerformanceCounts,
    RegressionCounts,
)
from ..detectors.profiles import (
    CategoricalCounts,
    CategoricalProfile,
    ModelProfile,
    NumericCounts,
    NumericProfile,
)
from ..detectors.windows import ModelMark
from .backend import Store
from .params import SqlParams

__all__ = [
    "FreshRows",
    "ModelMark",
    "WindowAggregate",
    "class_strings",
    "fresh_rows",
    "model_marks",
    "stored_revisions",
    "versions_stored_revisions",
    "versions_window_counts",
    "versions_window_starts",
    "window_counts",
    "window_data",
    "window_starts",
    "windows_aggregates",
    "windows_data",
]

_MICROS: Final = 1_000_000
_TASKS: Final = ("binary_classification", "multiclass", "regression")
#: Above this many edges a bin is found with ``arrayCount`` instead of one comparison
#: per edge (which is faster, but makes the query text grow with the edges).
_INLINE_EDGES: Final = 64


# --------------------------------------------------------------------------- parameters


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


def _rows_sql(
    p: SqlParams,
    grid: _Grid,
    model_id: str,
    model_version: str,
    columns: Sequence[str],
    *,
    labels: bool = False,
) -> str:
    """Rows of the wanted windows (``w``: window index) with ``columns`` computed per row.

    The table is ``p`` (the rows ``predictions FINAL`` keeps). With ``labels``, ``label_class``,
    ``label_value`` and ``has_label`` (0 for an unlabelled row) come from the latest
    label of each event.
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
    window = f"intDiv(toUnixTimestamp64Micro(p.timestamp) - {origin}, {size}) AS w"
    select = ",\n           ".join([window, *columns])
    where = _range_sql(p, model_id, model_version, grid.low, grid.high, "p")
    return f"""
    SELECT {select}
    FROM {_latest_sql(p, model_id, model_version, grid.low, grid.high)} AS p{join}
    WHERE {where} AND has({p.integers(grid.wanted)}, w)"""


def _score_sql(p: SqlParams, positive_label: str) -> str:
    """The row's positive-class score: ``score``, else ``class_scores[positive_label]``."""
    label = p.string(positive_label)
    return (
        f"ifNull(coalesce(p.score, if(mapContains(p.class_scores, {label}),"
        f" p.class_scores[{label}], NULL)), nan)"
    )


def _bin_sql(p: SqlParams, x: str, edges: Sequence[float]) -> str:
    """Number of edges ``<= x`` (``x`` finite)."""
    if not edges:
        return "toUInt32(0)"
    if len(edges) > _INLINE_EDGES:
        return f"toUInt32(arrayCount(e -> e <= {x}, {p.numbers(edges)}))"
    return "toUInt32(" + " + ".join(f"({x} >= {p.number(e)})" for e in edges) + ")"


# --------------------------------------------------------------------------- result rows


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


# --------------------------------------------------------------------------- the queries


@dataclass
class _Window:
    """What the queries found for one window."""

    n_events: int = 0
    #: Rows with a label row (whatever its value).
    labelled: int = 0
    numeric: dict[str, NumericCounts] = field(default_factory=dict)
    categories: dict[str, dict[str, int]] = field(default_factory=dict)
    prediction: CategoricalCounts | None = None
    performance: PerformanceCounts | None = None


def _numeric_parts(
    p: SqlParams, columns: dict[str, tuple[str | None, tuple[float, ...]]], positive_label: str
) -> tuple[list[str], list[str]]:
    """Row expressions and aggregates of the histograms of numeric columns.

    ``columns`` maps a result key to ``(feature name or None, edges)``; ``None`` stands
    for the row expression given by the key itself (``score``, ``prediction``). Column
    ``t`` aggregates to ``c{t}`` (counts per bin) and ``s{t}`` (sums per bin); a value
    that is absent, null or not finite falls in no bin.
    """
    inner: list[str] = []
    aggregates: list[str] = []
    for t, (key, (name, edges)) in enumerate(columns.items()):
        x = f"x{t}"
        if name is not None:
            inner.append(f"indexOf(mapKeys(p.features_num), {p.string(name)}) AS i{t}")
            inner.append(f"mapValues(p.features_num)[i{t}] AS {x}")
            present = f"i{t} > 0 AND isFinite({x})"
        else:
            if key == "score":
                value = _score_sql(p, positive_label)
            else:
                value = "ifNull(p.prediction_value, nan)"
            inner.append(f"{value} AS {x}")
            present = f"isFinite({x})"
        bins = len(edges) + 1
        inner.append(f"if({present}, {_bin_sql(p, x, edges)}, {bins}) AS b{t}")
        aggregates.append(f"countResample(0, {bins}, 1)(b{t}) AS c{t}")
        aggregates.append(f"sumResample(0, {bins}, 1)({x}, b{t}) AS s{t}")
    return inner, aggregates


def _numeric_windows(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    totals: Mapping[int, int],
) -> dict[int, dict[str, NumericCounts]]:
    """Histograms per window from result rows holding ``c{t}``/``s{t}`` of some of its
    rows each (several rows of one window are added up); ``totals``: rows per window."""
    if not rows or not columns:
        return {}
    windows, row_window = np.unique(_counts([r["w"] for r in rows]), return_inverse=True)
    per_window: list[dict[str, NumericCounts]] = [{} for _ in windows]
    for t, key in enumerate(columns):
        counts = np.array([r[f"c{t}"] for r in rows], dtype=np.int64).reshape(len(rows), -1)
        sums = _floats([r[f"s{t}"] for r in rows]).reshape(len(rows), -1)
        counted = np.zeros((windows.size, counts.shape[1]), dtype=np.int64)
        summed = np.zeros((windows.size, sums.shape[1]))
        np.add.at(counted, row_window, counts)
        np.add.at(summed, row_window, sums)
        for i, window in enumerate(windows.tolist()):
            per_window[i][key] = _histogram(counted[i], summed[i], totals[window])
    return dict(zip(windows.tolist(), per_window, strict=True))


def _categorical_query(
    store: Store, grid: _Grid, model_id: str, model_version: str, names: Sequence[str]
) -> dict[int, dict[str, dict[str, int]]]:
    """Category counts of categorical features per window (numbers as canonical text)."""
    p = SqlParams()
    k = len(names)
    listed = p.strings(names)
    text_codes = f"range(1, {k + 1})"
    number_codes = f"range({k + 1}, {2 * k + 1})"
    items = (
        f"arrayFilter(t -> t.1 > 0 AND (t.1 <= {k} OR isFinite(t.3)), arrayConcat("
        f"arrayMap((key, v) -> (transform(key, names, {text_codes}, 0), v, toFloat64(0)),"
        " mapKeys(p.features_cat), mapValues(p.features_cat)),"
        f" arrayMap((key, v) -> (transform(key, names, {number_codes}, 0), '', v),"
        " mapKeys(p.features_num), mapValues(p.features_num)))) AS items"
    )
    source = _rows_sql(p, grid, model_id, model_version, [f"{listed} AS names", items])
    sql = f"""
    SELECT w, item.1 AS f, item.2 AS text, item.3 AS number, count() AS n
    FROM ({source}
    ) ARRAY JOIN items AS item
    GROUP BY w, f, text, number"""
    rows = store.query(sql, p.values)
    out: dict[int, dict[str, dict[str, int]]] = {}
    if not rows:
        return out
    w = _counts([r["w"] for r in rows])
    f = _counts([r["f"] for r in rows])
    is_number = f > k
    strings, _ = class_strings(
        [None if number else r["text"] for r, number in zip(rows, is_number.tolist(), strict=True)],
        [r["number"] for r in rows],
    )
    column = np.where(is_number, f - k, f) - 1
    # One key per (window, feature): windows are small integers, features < k.
    grouped = _group_counts(w * k + column, strings, _counts([r["n"] for r in rows]))
    for key, counts in grouped.items():
        window, feature = divmod(key, k)
        out.setdefault(window, {})[names[feature]] = counts
    return out


def _positive_number(positive_label: str) -> float | None:
    """The number whose canonical text is ``positive_label``, if there is one."""
    try:
        value = float(positive_label)
    except ValueError:
        return None
    return value if category_string(value) == positive_label else None


def _classification_query(
    store: Store,
    grid: _Grid,
    model_id: str,
    model_version: str,
    numeric: dict[str, tuple[str | None, tuple[float, ...]]],
    *,
    binary: bool,
    positive_label: str,
) -> list[dict[str, Any]]:
    """Rows per window, prediction and label, with score histograms and log-loss sums,
    and the histograms of ``numeric`` (see :func:`_numeric_parts`) of each such group."""
    p = SqlParams()
    numeric_inner, numeric_aggregates = _numeric_parts(p, numeric, positive_label)
    columns = [
        "p.prediction_class AS pc",
        "p.prediction_value AS pv",
        f"{_score_sql(p, positive_label)} AS sx",
    ]
    scored = ""
    if binary:
        number = _positive_number(positive_label)
        label = p.string(positive_label)
        is_positive = f"ifNull(label_class = {label}, 0)"
        if number is not None:
            is_positive += f" OR ifNull(label_value = {p.number(number)}, 0)"
        low, high = p.number(LOG_EPS), p.number(1 - LOG_EPS)
        columns += [
            "has_label AND (label_class IS NOT NULL OR isFinite(ifNull(label_value, nan)))"
            " AND isFinite(sx) AS scored",
            "if(scored, greatest(least(sx, 1.), 0.), 0.) AS sc",
            f"if(scored, least(toUInt32(sc * {SCORE_BINS}), {SCORE_BINS - 1}),"
            f" {SCORE_BINS}) AS sbin",
            f"{is_positive} AS y",
            f"least(greatest(sc, {low}), {high}) AS clipped",
            "-if(y, log(clipped), log1p(-clipped)) AS loss",
        ]
        scored = (
            ", countIf(scored) AS n_scored,"
            f" countResample(0, {SCORE_BINS}, 1)(sbin) AS hist,"
            " sumIf(loss, scored) AS loss_sum, sumIf(loss * loss, scored) AS loss_sq_sum"
        )
    source = _rows_sql(p, grid, model_id, model_version, [*columns, *numeric_inner], labels=True)
    extra = "".join(f", {aggregate}" for aggregate in numeric_aggregates)
    sql = f"""
    SELECT w, pc, pv, label_class AS lc, label_value AS lv, has_label, count() AS n,
           countIf(isFinite(sx)) AS finite_scores{scored}{extra}
    FROM ({source}
    ) GROUP BY w, pc, pv, lc, lv, has_label"""
    return store.query(sql, p.values)


def _regression_query(
    store: Store,
    grid: _Grid,
    model_id: str,
    model_version: str,
    numeric: dict[str, tuple[str | None, tuple[float, ...]]],
    positive_label: str,
) -> list[dict[str, Any]]:
    """Error moment sums and labelled rows per window, and the histograms of ``numeric``."""
    p = SqlParams()
    numeric_inner, numeric_aggregates = _numeric_parts(p, numeric, positive_label)
    columns = [
        "ifNull(p.prediction_value, nan) AS pv",
        "ifNull(label_value, nan) AS lv",
        "has_label AND isFinite(lv) AND isFinite(pv) AS ok",
        "pv - lv AS err",
        "ok AND lv != 0 AS pct_ok",
        "abs(err / lv) AS pct",
    ]
    source = _rows_sql(p, grid, model_id, model_version, [*columns, *numeric_inner], labels=True)
    extra = "".join(f", {aggregate}" for aggregate in numeric_aggregates)
    sql = f"""
    SELECT w, count() AS n, countIf(ok) AS m, countIf(has_label) AS labelled{extra},
           sumIf(abs(err), ok) AS abs_sum, sumIf(err * err, ok) AS sq_sum,
           sumIf((err * err) * (err * err), ok) AS quad_sum,
           countIf(pct_ok) AS n_pct, sumIf(pct, pct_ok) AS pct_sum,
           sumIf(pct * pct, pct_ok) AS pct_sq_sum
    FROM ({source}
    ) GROUP BY w"""
    return store.query(sql, p.values)


def _total(value: Any) -> float:
    """A sum of non-negative terms; ``None`` (how JSON writes inf) or NaN: it overflowed."""
    total = math.nan if value is None else float(value)
    return math.inf if math.isnan(total) else total


def _regression_counts(row: Mapping[str, Any]) -> RegressionCounts:
    return RegressionCounts(
        n_predicted=int(row["n"]),
        n=int(row["m"]),
        abs_sum=_total(row["abs_sum"]),
        sq_sum=_total(row["sq_sum"]),
        quad_sum=_total(row["quad_sum"]),
        n_pct=int(row["n_pct"]),
        pct_sum=_total(row["pct_sum"]),
        pct_sq_sum=_total(row["pct_sq_sum"]),
    )


def _classification_windows(
    rows: list[dict[str, Any]], *, binary: bool, positive_label: str
) -> dict[int, tuple[int, int, dict[str, int], int, PerformanceCounts, int]]:
    """Per window: rows, finite scores, prediction counts, null predictions, performance
    and rows with a label."""
    out: dict[int, tuple[int, int, dict[str, int], int, PerformanceCounts, int]] = {}
    if not rows:
        return out
    w = _counts([r["w"] for r in rows])
    n = _counts([r["n"] for r in rows])
    finite = _counts([r["finite_scores"] for r in rows])
    pred, pred_null = class_strings([r["pc"] for r in rows], [r["pv"] for r in rows])
    label, label_null = class_strings([r["lc"] for r in rows], [r["lv"] for r in rows])
    has_label = _counts([r["has_label"] for r in rows]) > 0
    labelled = has_label & ~label_null
    predicted = _group_counts(w[~pred_null], pred[~pred_null], n[~pred_null])
    if binary:
        n_scored = _counts([r["n_scored"] for r in rows])
        hist = np.array([r["hist"] for r in rows], dtype=np.int64).reshape(len(rows), -1)
        loss = _floats([r["loss_sum"] for r in rows])
        loss_sq = _floats([r["loss_sq_sum"] for r in rows])
    for window in np.unique(w).tolist():
        mine = w == window
        total, n_finite = int(n[mine].sum()), int(finite[mine].sum())
        nulls = int(n[mine & pred_null].sum())
        lab = mine & labelled
        perf: PerformanceCounts
        if binary:
            p_pos = pred[lab] == positive_label
            y_pos = label[lab] == positive_label
            weights = n[lab]
            tp = int(weights[p_pos & y_pos].sum())
            fp = int(weights[p_pos & ~y_pos].sum())
            fn = int(weights[~p_pos & y_pos].sum())
            tn = int(weights.sum()) - tp - fp - fn
            extra: dict[str, Any] = {}
            if n_finite:
                hists, positive = hist[lab], y_pos
                extra = {
                    "n_scored": int(n_scored[lab].sum()),
                    "score_positive": tuple(hists[positive].sum(axis=0).tolist()),
                    "score_negative": tuple(hists[~positive].sum(axis=0).tolist()),
                    "log_loss_sum": float(loss[lab].sum()),
                    "log_loss_sq_sum": float(loss_sq[lab].sum()),
                }
            perf = BinaryCounts(
                positive_label=positive_label,
                n_predicted=total,
                tp=tp,
                fp=fp,
                tn=tn,
                fn=fn,
                **extra,
            )
        else:
            y, pr, weights = label[lab], pred[lab], n[lab]
            classes, inverse = np.unique(np.concatenate([y, pr]), return_inverse=True)
            k = classes.size
            yi, pi = inverse[: y.size], inverse[y.size :]
            matrix = np.bincount(yi * k + pi, weights=weights, minlength=k * k)
            perf = MulticlassCounts(
                n_predicted=total,
                classes=tuple(classes.tolist()),
                matrix=tuple(tuple(row) for row in matrix.astype(np.int64).reshape(k, k).tolist()),
            )
        with_label = int(n[mine & has_label].sum())
        out[window] = (total, n_finite, predicted.get(window, {}), nulls, perf, with_label)
    return out


# --------------------------------------------------------------------------- public API


def _check_task(profile: ModelProfile, task: str | None) -> str:
    chosen = profile.task if task is None else task
    if chosen not in _TASKS:
        raise ValueError(f"unknown task {chosen!r}")
    expected = "numeric" if chosen == "regression" else "categorical"
    if profile.prediction is not None and profile.prediction.kind != expected:
        raise ValueError(
            f"a {chosen} model needs a {expected} prediction profile,"
            f" this profile's is {profile.prediction.kind}"
        )
    return chosen


@dataclass(frozen=True)
class WindowAggregate:
    """What ClickHouse found for one window: its aggregates and how many rows they cover.

    Examples
    --------
    >>> from driftline.detectors.evaluate import WindowData
    >>> WindowAggregate(WindowData(n_events=0, features={}), events=0, labelled=0).events
    0
    """

    #: The window's aggregates, as :func:`~driftline.detectors.evaluate.aggregate_window`
    #: computes them.
    data: WindowData
    #: Predictions in the window (the rows ``predictions FINAL`` keeps).
    events: int
    #: Those of them with a label (any label row, whatever its value).
    labelled: int


def windows_aggregates(
    store: Store,
    profile: ModelProfile,
    *,
    model_id: str,
    model_version: str,
    starts: Iterable[float],
    size: float,
    positive_label: str = "1",
    task: str | None = None,
) -> dict[float, WindowAggregate]:
    """Aggregates of many windows of one model version, with their row counts.

    Every window in one pass of one query (two with categorical features); see
    :func:`windows_data` for the parameters.
    """
    chosen = _check_task(profile, task)
    grid, start_of = _Grid.of(starts, size)
    binary = chosen == "binary_classification"
    numeric: dict[str, tuple[str | None, tuple[float, ...]]] = {}
    categorical: list[str] = []
    for name, fprof in profile.features.items():
        if isinstance(fprof, NumericProfile):
            numeric[f"feature:{name}"] = (name, fprof.edges)
        else:
            categorical.append(name)
    if isinstance(profile.prediction, NumericProfile):
        numeric["prediction"] = (None, profile.prediction.edges)
    if binary and profile.score is not None:
        numeric["score"] = (None, profile.score.edges)

    found: dict[int, _Window] = {index: _Window() for index in start_of}
    no_scores: set[int] = set()
    if categorical:
        for index, counts in _categorical_query(
            store, grid, model_id, model_version, categorical
        ).items():
            found[index].categories = counts
    if chosen == "regression":
        rows = _regression_query(store, grid, model_id, model_version, numeric, positive_label)
        for row in rows:
            index = int(row["w"])
            found[index].n_events = int(row["n"])
            found[index].performance = _regression_counts(row)
            found[index].labelled = int(row["labelled"])
    else:
        rows = _classification_query(
            store,
            grid,
            model_id,
            model_version,
            numeric,
            binary=binary,
            positive_label=positive_label,
        )
        per_window = _classification_windows(rows, binary=binary, positive_label=positive_label)
        for index, (total, n_finite, predicted, nulls, perf, with_label) in per_window.items():
            window = found[index]
            window.n_events = total
            window.performance = perf
            window.labelled = with_label
            if isinstance(profile.prediction, CategoricalProfile):
                window.prediction = CategoricalCounts(counts=predicted, null_count=nulls)
            if not n_finite:  # no finite score: no score histogram, as in the backtest
                no_scores.add(index)
    totals = {index: window.n_events for index, window in found.items()}
    for index, hists in _numeric_windows(rows, list(numeric), totals).items():
        if index in no_scores:
            hists.pop("score", None)
        found[index].numeric = hists
    return {
        start_of[index]: WindowAggregate(
            _window_data(profile, chosen, window, positive_label),
            events=window.n_events,
            labelled=window.labelled,
        )
        for index, window in sorted(found.items())
    }


def windows_data(
    store: Store,
    profile: ModelProfile,
    *,
    model_id: str,
    model_version: str,
    starts: Iterable[float],
    size: float,
    positive_label: str = "1",
    task: str | None = None,
) -> dict[float, WindowData]:
    """Aggregates of many windows of one model version, each window in one query pass.

    Parameters
    ----------
    store
        The ClickHouse store holding ``predictions`` and ``feedback``.
    profile
        Reference profile: its features, frozen bins, prediction and score profiles.
    model_id, model_version
        The model version whose rows are aggregated.
    starts
        Window starts, epoch seconds, on one grid (each differs from the others by a
        multiple of ``size``).
    size
        Window length, seconds; window ``s`` is ``[s, s + size)``.
    positive_label
        Positive class of a binary classifier (canonical text).
    task
        ``binary_classification``, ``multiclass`` or ``regression``; the profile's task
        when ``None``.

    Returns
    -------
    dict of float to WindowData
        One entry per distinct start, empty windows included (``n_events == 0``).
    """
    found = windows_aggregates(
        store,
        profile,
        model_id=model_id,
        model_version=model_version,
        starts=starts,
        size=size,
        positive_label=positive_label,
        task=task,
    )
    return {start: aggregate.data for start, aggregate in found.items()}


def _window_data(profile: ModelProfile, task: str, found: _Window, positive: str) -> WindowData:
    """Fill in the parts of an empty (or partly empty) window as the raw path has them."""
    n = found.n_events
    features: dict[str, NumericCounts | CategoricalCounts] = {}
    for name, fprof in profile.features.items():
        if isinstance(fprof, NumericProfile):
            features[name] = found.numeric.get(f"feature:{name}") or _empty(fprof, n)
        else:
            counts = found.categories.get(name, {})
            features[name] = CategoricalCounts(
                counts=counts, null_count=n - int(sum(counts.values()))
            )
    prediction: NumericCounts | CategoricalCounts | None = None
    if isinstance(profile.prediction, NumericProfile):
        prediction = found.numeric.get("prediction") or _empty(profile.prediction, n)
    elif isinstance(profile.prediction, CategoricalProfile):
        prediction = found.prediction or CategoricalCounts(counts={}, null_count=n)
    performance = found.performance
    if performance is None:
        performance = {
            "binary_classification": BinaryCounts(
                positive_label=positive, n_predicted=0, tp=0, fp=0, tn=0, fn=0
            ),
            "multiclass": MulticlassCounts(n_predicted=0),
            "regression": RegressionCounts(n_predicted=0, n=0),
        }[task]
    return WindowData(
        n_events=n,
        features=features,
        prediction=prediction,
        score=found.numeric.get("score"),
        performance=performance,
    )


def _empty(profile: NumericProfile, n: int) -> NumericCounts:
    """A histogram without values: ``n`` nulls (a window without a numeric value)."""
    return NumericCounts(counts=(0,) * profile.n_bins, null_count=n, sums=(0.0,) * profile.n_bins)


def window_data(
    store: Store,
    profile: ModelProfile,
    *,
    model_id: str,
    model_version: str,
    start: float,
    end: float,
    positive_label: str = "1",
    task: str | None = None,
) -> WindowData:
    """Aggregates of one window ``[start, end)`` of one model version, computed in ClickHouse.

    Equal to :func:`~driftline.detectors.evaluate.aggregate_window` on the window's raw
    arrays (float sums up to summation order); see the module docstring for how rows,
    nulls, categories, scores and labels are read.

    Parameters
    ----------
    store
        The ClickHouse store holding ``predictions`` and ``feedback``.
    profile
        Reference profile: its features, frozen bins, prediction and score profiles.
    model_id, model_version
        The model version whose rows are aggregated.
    start, end
        Window bounds, epoch seconds (``end`` excluded).
    positive_label
        Positive class of a binary classifier (canonical text).
    task
        ``binary_classification``, ``multiclass`` or ``regression``; the profile's task
        when ``None``.

    Returns
    -------
    WindowData
        The window's aggregates (``n_events == 0`` for an empty window).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from driftline.detectors import build_profile
    >>> from driftline.schemas.codec import decode_ingest
    >>> from driftline.store import EmbeddedStore, migrate
    >>> from driftline.store.rows import KafkaPosition, PredictionRows
    >>> profile = build_profile("m", "v1", features={"x": [1.0, 2.0, 3.0]},
    ...                         kinds={"x": "numeric"}, predictions=[0, 1, 1])
    >>> rows = PredictionRows()
    >>> rows.add(decode_ingest(b'{"type": "prediction_batch", "model_id": "m",'
    ...     b' "model_version": "v1", "event_ids": ["a", "b", "c"],'
    ...     b' "timestamps": [1767225600, 1767225601, 1767229200],'
    ...     b' "features": {"x": [2.0, null, 9.0]}, "predictions": [1, 0, 1]}'),
    ...     KafkaPosition("t", 0, 0))
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     store = EmbeddedStore(pathlib.Path(folder) / "db", "demo")
    ...     _ = migrate(store)
    ...     store.insert_arrow("predictions", rows.build())
    ...     data = window_data(store, profile, model_id="m", model_version="v1",
    ...                        start=1767225600.0, end=1767229200.0)
    ...     store.close()
    >>> data.n_events, data.features["x"].counts, data.features["x"].null_count
    (2, (0, 0, 1, 0), 1)
    >>> data.prediction.counts, data.performance.n_predicted, data.performance.n_labelled
    ({'0': 1, '1': 1}, 2, 0)
    """
    if not end > start:
        raise ValueError("a window ends after it starts")
    return windows_data(
        store,
        profile,
        model_id=model_id,
        model_version=model_version,
        starts=[start],
        size=end - start,
        positive_label=positive_label,
        task=task,
    )[float(start)]


def _micro_range(start: float, end: float, size: float) -> tuple[int, int, int]:
    """``[start, end)`` and the window size in microseconds, checked."""
    if not end > start:
        raise ValueError("a range ends after it starts")
    if not (math.isfinite(size) and round(size * _MICROS) >= 1):
        raise ValueError("window size must be at least one microsecond")
    return round(start * _MICROS), round(end * _MICROS), round(size * _MICROS)


def window_counts(
    store: Store,
    *,
    model_id: str,
    model_version: str,
    start: float,
    end: float,
    size: float,
) -> dict[float, tuple[int, int]]:
    """Distinct predictions and labelled predictions per window, in one cheap pass.

    What the streaming monitor compares to decide whether a closed window got late
    data: event ids of ``model_version`` with a timestamp in ``[start, end)``, counted
    once however often they were re-sent (``uniqExact``), and those with any label.
    It does not resolve which copy of a re-sent event is the latest, so it reads only
    the event id and timestamp columns; a duplicate never raises a count, so it never
    triggers a re-evaluation.

    Returns
    -------
    dict of float to (int, int)
        Window start to (predictions, labelled predictions), for every window with a
        prediction.
    """
    low, high, size_us = _micro_range(start, end, size)
    p = SqlParams()
    in_range = _range_sql(p, model_id, model_version, low, high)
    sql = f"""
    SELECT intDiv(toUnixTimestamp64Micro(p.timestamp), {p.integer(size_us)}) AS w,
           uniqExact(p.event_id) AS n,
           uniqExactIf(p.event_id, l.has_label = 1) AS labelled
    FROM (SELECT event_id, timestamp FROM predictions WHERE {in_range}) AS p
    LEFT JOIN (
        SELECT DISTINCT event_id, toUInt8(1) AS has_label
        FROM feedback
        WHERE model_id = {p.string(model_id)} AND event_id IN (
            SELECT event_id FROM predictions WHERE {in_range})
    ) AS l ON l.event_id = p.event_id
    GROUP BY w
    ORDER BY w
    SETTINGS join_use_nulls = 0"""
    return {
        int(row["w"]) * size_us / _MICROS: (int(row["n"]), int(row["labelled"]))
        for row in store.query(sql, p.values)
    }


def window_starts(
    store: Store,
    *,
    model_id: str,
    model_version: str,
    start: float,
    end: float,
    size: float,
) -> list[float]:
    """Starts of the epoch-aligned windows holding a prediction of ``model_version`` with
    a timestamp in ``[start, end)``, in order.

    Cheap (one pass over the range's timestamps, no deduplication, no labels): what the
    streaming monitor asks when it only looks for windows it never evaluated. A window
    whose events all moved elsewhere by a re-send is listed; its aggregates then hold no
    rows.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from driftline.schemas.codec import decode_ingest
    >>> from driftline.store import EmbeddedStore, migrate
    >>> from driftline.store.rows import KafkaPosition, PredictionRows
    >>> rows = PredictionRows()
    >>> rows.add(decode_ingest(b'{"type": "prediction_batch", "model_id": "m",'
    ...     b' "model_version": "v1", "event_ids": ["a", "b", "c"],'
    ...     b' "timestamps": [1767225600, 1767225601, 1767225730],'
    ...     b' "features": {}, "predictions": [1, 0, 1]}'), KafkaPosition("t", 0, 0))
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     store = EmbeddedStore(pathlib.Path(folder) / "db", "demo")
    ...     _ = migrate(store)
    ...     store.insert_arrow("predictions", rows.build())
    ...     found = window_starts(store, model_id="m", model_version="v1",
    ...                           start=1767225600.0, end=1767225800.0, size=60.0)
    ...     store.close()
    >>> found
    [1767225600.0, 1767225720.0]
    """
    low, high, size_us = _micro_range(start, end, size)
    p = SqlParams()
    sql = f"""
    SELECT DISTINCT intDiv(toUnixTimestamp64Micro(timestamp), {p.integer(size_us)}) AS w
    FROM predictions
    WHERE {_range_sql(p, model_id, model_version, low, high)}
    ORDER BY w"""
    return [int(row["w"]) * size_us / _MICROS for row in store.query(sql, p.values)]


# --------------------------------------------------------------------------- the monitor's clocks


def model_marks(store: Store, *, topic: str, model_ids: Sequence[str]) -> list[ModelMark]:
    """Per model of ``model_ids`` and partition of ``topic``: its largest prediction event
    time and its last progress, from the raw ``predictions``.

    One aggregation over the ``model_marks`` projection (migration 5), which keeps these
    maxima pre-aggregated per part: the cost is the number of parts, not of rows. Every
    stored copy counts (a re-sent event's older copy too), so a mark moves back only when a
    merge removed the copy that held it. Predictions that arrived on another topic (the
    feedback topic) are not counted. A model without a prediction on ``topic`` has no mark.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from driftline.schemas.codec import decode_ingest
    >>> from driftline.store import EmbeddedStore, migrate
    >>> from driftline.store.rows import KafkaPosition, PredictionRows
    >>> rows = PredictionRows()
    >>> for partition, (model, t) in enumerate([("a", 1767225600), ("b", 1767229200)]):
    ...     rows.add(decode_ingest(b'{"type": "prediction", "event_id": "e%d",'
    ...         b' "model_id": "%s", "model_version": "v1", "timestamp": %d,'
    ...         b' "features": {}, "prediction": 1}' % (partition, model.encode(), t)),
    ...         KafkaPosition("t", partition, 0))
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     store = EmbeddedStore(pathlib.Path(folder) / "db", "demo")
    ...     _ = migrate(store)
    ...     store.insert_arrow("predictions", rows.build())
    ...     marks = model_marks(store, topic="t", model_ids=["a", "b", "c"])
    ...     store.close()
    >>> [(m.model_id, m.partition, m.event_time) for m in marks]
    [('a', 0, 1767225600.0), ('b', 1, 1767229200.0)]
    """
    if not model_ids:
        return []
    p = SqlParams()
    sql = f"""
    SELECT model_id AS m, kafka_partition AS partition,
           toUnixTimestamp64Micro(max(timestamp)) AS e,
           toUnixTimestamp64Micro(max(ingested_at)) AS u
    FROM predictions
    WHERE kafka_topic = {p.string(topic)} AND has({p.strings(model_ids)}, model_id)
    GROUP BY m, partition
    ORDER BY m, partition"""
    return [
        ModelMark(
            str(row["m"]), int(row["partition"]), int(row["e"]) / _MICROS, int(row["u"]) / _MICROS
        )
        for row in store.query(sql, p.values)
    ]


def stored_revisions(
    store: Store, *, model_id: str, model_version: str, starts: Iterable[float]
) -> dict[float, int]:
    """The largest revision stored in ``window_metrics`` per window start (windows without
    a stored row are absent): a primary-key range read of one model version."""
    micros = sorted({round(float(start) * _MICROS): float(start) for start in starts}.items())
    if not micros:
        return {}
    p = SqlParams()
    sql = f"""
    SELECT toUnixTimestamp64Micro(window_start) AS ws, max(revision) AS r
    FROM window_metrics
    WHERE model_id = {p.string(model_id)} AND model_version = {p.string(model_version)}
      AND window_start >= fromUnixTimestamp64Micro({p.integer(micros[0][0])}, 'UTC')
      AND window_start <= fromUnixTimestamp64Micro({p.integer(micros[-1][0])}, 'UTC')
      AND has({p.integers([us for us, _ in micros])}, toUnixTimestamp64Micro(window_start))
    GROUP BY ws"""
    start_of = dict(micros)
    return {start_of[int(row["ws"])]: int(row["r"]) for row in store.query(sql, p.values)}


@dataclass(frozen=True)
class FreshRows:
    """What the rows of one model version stored in a span of processing time hold.

    Examples
    --------
    >>> FreshRows(rows=3, beyond=1, left=(60.0,)).left
    (60.0,)
    """

    #: Rows stored in the span.
    rows: int
    #: Those of them in a window at or before the given last window (beyond the horizon).
    beyond: int
    #: Starts of the version's windows that hold an older copy of an event with a row
    #: stored in the span, whose latest copy lies in another window or version, in order.
    left: tuple[float, ...]


def fresh_rows(
    store: Store,
    *,
    model_id: str,
    model_version: str,
    since: int,
    until: int,
    size: float,
    beyond_last: float | None,
) -> FreshRows:
    """The rows of ``model_version`` stored with ``since <= ingested_at < until`` (µs):
    how many, how many fall in a window starting at or before ``beyond_last`` (none when
    ``None``), and which windows of the version hold an older copy of an event with a row
    of the model stored in the span, whose latest copy lies in another window or version
    (the windows a re-send took the event from).

    The latest copy of an event is the one with the largest ``ingested_at``, then Kafka
    offset and batch index, as ``predictions FINAL`` and the window aggregates take it.
    Copies of every version of the model are looked at (an event may move between
    versions), through the primary key, for the event ids of the rows of the model stored
    in the span only; the span itself is found through the ``ingested`` minmax index
    (migration 5), without reading the model's history.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from driftline.schemas.codec import decode_ingest
    >>> from driftline.store import EmbeddedStore, migrate
    >>> from driftline.store.rows import KafkaPosition, PredictionRows
    >>> def stored(store, *times):
    ...     rows = PredictionRows()
    ...     for offset, t in enumerate(times):
    ...         rows.add(decode_ingest(b'{"type": "prediction", "event_id": "e%d",'
    ...             b' "model_id": "m", "model_version": "v1", "timestamp": %d,'
    ...             b' "features": {}, "prediction": 1}' % (offset, t)),
    ...             KafkaPosition("t", 0, offset))
    ...     store.insert_arrow("predictions", rows.build())
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     store = EmbeddedStore(pathlib.Path(folder) / "db", "demo")
    ...     _ = migrate(store)
    ...     stored(store, 1767225600, 1767225601)   # e0, e1 in the window at 1767225600
    ...     since = store.query("SELECT toUnixTimestamp64Micro(now64(6)) + 1 AS t")[0]["t"]
    ...     stored(store, 1767225660)               # e0 again, one window later
    ...     found = fresh_rows(store, model_id="m", model_version="v1", since=since,
    ...                        until=since + 10**9, size=60.0, beyond_last=1767225600.0)
    ...     store.close()
    >>> found
    FreshRows(rows=1, beyond=0, left=(1767225600.0,))
    """
    if not until > since:
        return FreshRows(0, 0, ())
    size_us = round(size * _MICROS)
    if size_us < 1:
        raise ValueError("window size must be at least one microsecond")
    p = SqlParams()
    model = p.string(model_id)
    span = (
        f"ingested_at >= fromUnixTimestamp64Micro({p.integer(since)}, 'UTC')"
        f" AND ingested_at < fromUnixTimestamp64Micro({p.integer(until)}, 'UTC')"
    )
    window = f"intDiv(toUnixTimestamp64Micro(timestamp), {p.integer(size_us)})"
    last = -(2**62) if beyond_last is None else round(beyond_last * _MICROS) // size_us
    version = p.string(model_version)
    counted = store.query(
        f"""
    SELECT count() AS n, countIf({window} <= {p.integer(last)}) AS beyond
    FROM predictions
    WHERE model_id = {model} AND model_version = {version} AND {span}""",
        p.values,
    )
    n, beyond = (int(counted[0]["n"]), int(counted[0]["beyond"])) if counted else (0, 0)
    left = store.query(
        f"""
    SELECT DISTINCT tupleElement(place, 2) AS w
    FROM (
        SELECT groupArray(tuple(toString(model_version), {window})) AS places,
               argMax(tuple(toString(model_version), {window}),
                      tuple(ingested_at, kafka_offset, batch_index)) AS latest
        FROM predictions
        WHERE model_id = {model} AND event_id IN (
            SELECT event_id FROM predictions WHERE model_id = {model} AND {span})
        GROUP BY event_id
        HAVING length(arrayDistinct(places)) > 1
    )
    ARRAY JOIN places AS place
    WHERE place != latest AND tupleElement(place, 1) = {version}
    ORDER BY w""",
        p.values,
    )
    return FreshRows(
        rows=n, beyond=beyond, left=tuple(int(row["w"]) * size_us / _MICROS for row in left)
    )


# --------------------------------------------------------------------------- many versions


def _versions_range_sql(p: SqlParams, model_id: str, lows: Mapping[str, int], high: int) -> str:
    """Condition on ``predictions``: rows of the versions of ``lows`` with
    ``lows[version] <= timestamp < high`` (µs), each version from its own low."""
    names = sorted(lows)
    versions = p.strings(names)
    starts = p.integers([lows[name] for name in names])
    return (
        f"model_id = {p.string(model_id)} AND has({versions}, model_version)"
        f" AND timestamp >= fromUnixTimestamp64Micro({p.integer(min(lows.values()))}, 'UTC')"
        f" AND timestamp < fromUnixTimestamp64Micro({p.integer(high)}, 'UTC')"
        f" AND toUnixTimestamp64Micro(timestamp)"
        f" >= arrayElement({starts}, indexOf({versions}, model_version))"
    )


def _version_lows(
    lows: Mapping[str, float], end: float, size: float
) -> tuple[dict[str, int], int, int]:
    """The versions' lows, the end and the window size in µs, checked like
    :func:`_micro_range` (a version whose range is empty is left out)."""
    kept: dict[str, int] = {}
    high = size_us = 0
    for version, low in lows.items():
        if end > low:
            kept[version], high, size_us = _micro_range(low, end, size)
    return kept, high, size_us


def versions_window_counts(
    store: Store, *, model_id: str, lows: Mapping[str, float], end: float, size: float
) -> dict[str, dict[float, tuple[int, int]]]:
    """:func:`window_counts` of many versions of one model in one query: per version
    ``v`` of ``lows``, its counts over ``[lows[v], end)``; a version without a prediction
    there (or whose range is empty) is absent."""
    kept, high, size_us = _version_lows(lows, end, size)
    if not kept:
        return {}
    p = SqlParams()
    in_range = _versions_range_sql(p, model_id, kept, high)
    sql = f"""
    SELECT p.model_version AS v,
           intDiv(toUnixTimestamp64Micro(p.timestamp), {p.integer(size_us)}) AS w,
           uniqExact(p.event_id) AS n,
           uniqExactIf(p.event_id, l.has_label = 1) AS labelled
    FROM (SELECT model_version, event_id, timestamp FROM predictions WHERE {in_range}) AS p
    LEFT JOIN (
        SELECT DISTINCT event_id, toUInt8(1) AS has_label
        FROM feedback
        WHERE model_id = {p.string(model_id)} AND event_id IN (
            SELECT event_id FROM predictions WHERE {in_range})
    ) AS l ON l.event_id = p.event_id
    GROUP BY v, w
    ORDER BY v, w
    SETTINGS join_use_nulls = 0"""
    found: dict[str, dict[float, tuple[int, int]]] = {}
    for row in store.query(sql, p.values):
        found.setdefault(str(row["v"]), {})[int(row["w"]) * size_us / _MICROS] = (
            int(row["n"]),
            int(row["labelled"]),
        )
    return found


def versions_window_starts(
    store: Store, *, model_id: str, lows: Mapping[str, float], end: float, size: float
) -> dict[str, list[float]]:
    """:func:`window_starts` of many versions of one model in one query: per version
    ``v`` of ``lows``, the starts of its windows holding a prediction in
    ``[lows[v], end)``, in order; a version without any is absent."""
    kept, high, size_us = _version_lows(lows, end, size)
    if not kept:
        return {}
    p = SqlParams()
    sql = f"""
    SELECT DISTINCT model_version AS v,
           intDiv(toUnixTimestamp64Micro(timestamp), {p.integer(size_us)}) AS w
    FROM predictions
    WHERE {_versions_range_sql(p, model_id, kept, high)}
    ORDER BY v, w"""
    found: dict[str, list[float]] = {}
    for row in store.query(sql, p.values):
        found.setdefault(str(row["v"]), []).append(int(row["w"]) * size_us / _MICROS)
    return found


def versions_stored_revisions(
    store: Store, *, model_id: str, starts: Mapping[str, Iterable[float]]
) -> dict[str, dict[float, int]]:
    """:func:`stored_revisions` of many versions of one model in one query (per version,
    the largest revision stored per window start of ``starts[version]``)."""
    wanted = {
        version: {round(float(s) * _MICROS): float(s) for s in given}
        for version, given in starts.items()
    }
    wanted = {version: micros for version, micros in wanted.items() if micros}
    if not wanted:
        return {}
    every = sorted({us for micros in wanted.values() for us in micros})
    pairs = sorted((version, us) for version, micros in wanted.items() for us in micros)
    p = SqlParams()
    sql = f"""
    SELECT model_version AS v, toUnixTimestamp64Micro(window_start) AS ws, max(revision) AS r
    FROM window_metrics
    WHERE model_id = {p.string(model_id)} AND has({p.strings(sorted(wanted))}, model_version)
      AND window_start >= fromUnixTimestamp64Micro({p.integer(every[0])}, 'UTC')
      AND window_start <= fromUnixTimestamp64Micro({p.integer(every[-1])}, 'UTC')
      AND has({p.integers(every)}, toUnixTimestamp64Micro(window_start))
    GROUP BY v, ws"""
    keep = set(pairs)
    found: dict[str, dict[float, int]] = {}
    for row in store.query(sql, p.values):
        version, us = str(row["v"]), int(row["ws"])
        if (version, us) in keep:
            found.setdefault(version, {})[wanted[version][us]] = int(row["r"])
    return found
