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

The SQL fragments and result shaping are in :mod:`driftline.store.window_sql`; which
windows are due is found by :mod:`driftline.store.planning`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..detectors.coerce import category_string
from ..detectors.estimation import Calibration, ScoreBlocks
from ..detectors.evaluate import WindowData
from ..detectors.multivariate import CLIP, MultivariateModel, MultivariateSums
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
from ..schemas.monitor import OTHER_SEGMENT
from .backend import Store
from .params import SqlParams
from .window_sql import (
    _TASKS,
    _bin_sql,
    _counts,
    _floats,
    _Grid,
    _group_counts,
    _histogram,
    _rows_sql,
    _score_sql,
    _Slices,
    class_strings,
)

__all__ = [
    "WindowAggregate",
    "windows_aggregates",
]


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
    #: Summed squared PCA reconstruction errors of the rows.
    mv_sum: float = 0.0
    #: Predictions with a finite score per predicted class and calibration block.
    estimation: ScoreBlocks | None = None


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


def _multivariate_parts(
    p: SqlParams, model: MultivariateModel | None
) -> tuple[list[str], list[str]]:
    """Row expressions and the aggregate of the rows' squared PCA reconstruction errors
    (:mod:`~driftline.detectors.multivariate`: the same encoding, imputation and
    components as ``MultivariateModel.errors``), summed as ``mv_sum``."""
    if model is None:
        return [], []
    inner: list[str] = []
    for j, (name, kind) in enumerate(zip(model.columns, model.kinds, strict=True)):
        key = p.string(name)
        num = f"mapValues(p.features_num)[indexOf(mapKeys(p.features_num), {key})]"
        has_num = f"(indexOf(mapKeys(p.features_num), {key}) > 0 AND isFinite({num}))"
        if kind == "numeric":
            raw = f"if({has_num}, {num}, nan)"
        else:
            shares = model.frequencies.get(name, {})
            texts = [text for text in shares]
            numbers = [
                (value, shares[text])
                for text in texts
                if (value := _positive_number(text)) is not None
            ]
            by_text = "nan"
            if texts:
                by_text = (
                    f"transform(p.features_cat[{key}], {p.strings(texts)},"
                    f" {p.numbers([shares[t] for t in texts])}, toFloat64(0))"
                )
            by_number = "toFloat64(0)"
            if numbers:
                by_number = (
                    f"transform({num}, {p.numbers([v for v, _ in numbers])},"
                    f" {p.numbers([share for _, share in numbers])}, toFloat64(0))"
                )
            raw = (
                f"if(mapContains(p.features_cat, {key}), {by_text if texts else 'toFloat64(0)'},"
                f" if({has_num}, {by_number}, nan))"
            )
        center, scale = p.number(model.centers[j]), p.number(model.scales[j])
        inner.append(f"{raw} AS mvr{j}")
        clip = p.number(CLIP)
        inner.append(
            f"if(isFinite(mvr{j}), least(greatest((mvr{j} - {center}) / {scale}, -{clip}),"
            f" {clip}), 0.) AS mvz{j}"
        )
    squares = " + ".join(f"mvz{j} * mvz{j}" for j in range(len(model.columns)))
    projections = []
    for k, axis in enumerate(model.components):
        dot = " + ".join(f"{p.number(w)} * mvz{j}" for j, w in enumerate(axis))
        inner.append(f"({dot}) AS mvp{k}")
        projections.append(f"mvp{k} * mvp{k}")
    inner.append(f"greatest(({squares}) - ({' + '.join(projections)}), 0.) AS mv_e")
    return inner, ["sum(mv_e) AS mv_sum"]


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
    store: Store,
    grid: _Grid,
    model_id: str,
    model_version: str,
    names: Sequence[str],
    slices: _Slices | None = None,
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
    source = _rows_sql(
        p, grid, model_id, model_version, [f"{listed} AS names", items], slices=slices
    )
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
    slices: _Slices | None = None,
    multivariate: MultivariateModel | None = None,
    calibration: Calibration | None = None,
) -> list[dict[str, Any]]:
    """Rows per window, prediction and label, with score histograms and log-loss sums,
    and the histograms of ``numeric`` (see :func:`_numeric_parts`) of each such group."""
    p = SqlParams()
    numeric_inner, numeric_aggregates = _numeric_parts(p, numeric, positive_label)
    mv_inner, mv_aggregates = _multivariate_parts(p, multivariate)
    numeric_inner, numeric_aggregates = numeric_inner + mv_inner, numeric_aggregates + mv_aggregates
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
    if calibration is not None:  # every prediction with a finite score, labelled or not
        # binary: the positive class's score; multiclass: the predicted class's own
        x = "sx"
        if not binary:
            x = "cx"
            columns += [
                "ifNull(p.prediction_class, toString(p.prediction_value)) AS pcs",
                "if(mapContains(p.class_scores, pcs), p.class_scores[pcs],"
                " ifNull(p.score, nan)) AS cx",
            ]
        k = len(calibration.edges) + 1
        if calibration.kept:
            probability = f"arrayElement({p.numbers(calibration.probabilities)}, ebk + 1)"
        else:
            probability = f"greatest(least({x}, 1.), 0.)"
        columns += [
            f"if(isFinite({x}), {_bin_sql(p, x, calibration.edges)}, {k}) AS ebk",
            f"if(ebk < {k}, {probability}, 0.) AS ep",
        ]
        scored += (
            f", countIf(isFinite({x})) AS eb_finite,"
            f" countResample(0, {k}, 1)(ebk) AS eb_n,"
            f" sumResample(0, {k}, 1)(ep, ebk) AS eb_p,"
            f" sumResample(0, {k}, 1)(ep * ep, ebk) AS eb_p2"
        )
    source = _rows_sql(
        p, grid, model_id, model_version, [*columns, *numeric_inner], labels=True, slices=slices
    )
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
    slices: _Slices | None = None,
    multivariate: MultivariateModel | None = None,
) -> list[dict[str, Any]]:
    """Error moment sums and labelled rows per window, and the histograms of ``numeric``."""
    p = SqlParams()
    numeric_inner, numeric_aggregates = _numeric_parts(p, numeric, positive_label)
    mv_inner, mv_aggregates = _multivariate_parts(p, multivariate)
    numeric_inner, numeric_aggregates = numeric_inner + mv_inner, numeric_aggregates + mv_aggregates
    columns = [
        "ifNull(p.prediction_value, nan) AS pv",
        "ifNull(label_value, nan) AS lv",
        "has_label AND isFinite(lv) AND isFinite(pv) AS ok",
        "pv - lv AS err",
        "ok AND lv != 0 AS pct_ok",
        "abs(err / lv) AS pct",
    ]
    source = _rows_sql(
        p, grid, model_id, model_version, [*columns, *numeric_inner], labels=True, slices=slices
    )
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


def _estimation_windows(
    rows: list[dict[str, Any]], positive_label: str, binary: bool
) -> dict[int, ScoreBlocks]:
    """Per window with a finite score (binary: the positive class's; multiclass: the
    predicted class's own), the calibration-block counts and probability sums of its
    rows, split by whether the prediction is the positive class (multiclass: one side,
    the chance of being right)."""
    out: dict[int, ScoreBlocks] = {}
    if not rows:
        return out
    w = _counts([r["w"] for r in rows])
    if binary:
        pred, _ = class_strings([r["pc"] for r in rows], [r["pv"] for r in rows])
        positive = pred == positive_label
    else:
        positive = np.ones(len(rows), dtype=bool)
    finite = _counts([r["eb_finite"] for r in rows])
    n = np.array([r["eb_n"] for r in rows], dtype=np.int64).reshape(len(rows), -1)
    sums = _floats([r["eb_p"] for r in rows]).reshape(len(rows), -1)
    squares = _floats([r["eb_p2"] for r in rows]).reshape(len(rows), -1)
    for window in np.unique(w).tolist():
        if not finite[w == window].sum():
            continue  # no finite score: nothing to estimate from, as in the backtest
        parts = []
        for side in (False, True):
            mine = (w == window) & (positive == side)
            parts.append((n[mine].sum(axis=0), sums[mine].sum(axis=0), squares[mine].sum(axis=0)))
        out[window] = ScoreBlocks(
            n=(tuple(parts[0][0].tolist()), tuple(parts[1][0].tolist())),
            p=(tuple(parts[0][1].tolist()), tuple(parts[1][1].tolist())),
            p2=(tuple(parts[0][2].tolist()), tuple(parts[1][2].tolist())),
        )
    return out


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

    Every window in one pass of one query (two with categorical features). Each window's
    data equals :func:`~driftline.detectors.evaluate.aggregate_window` on its raw arrays
    (float sums up to summation order); see the module docstring for how rows, nulls,
    categories, scores and labels are read.

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
    dict of float to WindowAggregate
        One entry per distinct start, empty windows included (``events == 0``).

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
    ...     found = windows_aggregates(store, profile, model_id="m", model_version="v1",
    ...                                starts=[1767225600.0], size=3600.0)
    ...     store.close()
    >>> window = found[1767225600.0]
    >>> window.events, window.labelled, window.data.features["x"].counts
    (2, 0, (0, 0, 1, 0))
    >>> window.data.prediction.counts, window.data.performance.n_predicted
    ({'0': 1, '1': 1}, 2)
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

    slices = _slices_of(profile)
    count = 1 if slices is None else slices.count
    found: dict[int, _Window] = {index * count: _Window() for index in start_of}
    no_scores: set[int] = set()
    if categorical:
        for index, counts in _categorical_query(
            store, grid, model_id, model_version, categorical, slices
        ).items():
            found.setdefault(index, _Window()).categories = counts
    if chosen == "regression":
        rows = _regression_query(
            store,
            grid,
            model_id,
            model_version,
            numeric,
            positive_label,
            slices,
            profile.multivariate,
        )
        for row in rows:
            window = found.setdefault(int(row["w"]), _Window())
            window.n_events = int(row["n"])
            window.performance = _regression_counts(row)
            window.labelled = int(row["labelled"])
    else:
        rows = _classification_query(
            store,
            grid,
            model_id,
            model_version,
            numeric,
            binary=binary,
            positive_label=positive_label,
            slices=slices,
            multivariate=profile.multivariate,
            calibration=profile.calibration,
        )
        per_window = _classification_windows(rows, binary=binary, positive_label=positive_label)
        for index, (total, n_finite, predicted, nulls, perf, with_label) in per_window.items():
            window = found.setdefault(index, _Window())
            window.n_events = total
            window.performance = perf
            window.labelled = with_label
            if isinstance(profile.prediction, CategoricalProfile):
                window.prediction = CategoricalCounts(counts=predicted, null_count=nulls)
            if not n_finite:  # no finite score: no score histogram, as in the backtest
                no_scores.add(index)
    if profile.multivariate is not None:
        for row in rows:
            window = found[int(row["w"])]
            window.mv_sum += _total(row["mv_sum"])
    if chosen != "regression" and profile.calibration is not None:
        for index, blocks in _estimation_windows(rows, positive_label, binary).items():
            found[index].estimation = blocks
    totals = {index: window.n_events for index, window in found.items()}
    for index, hists in _numeric_windows(rows, list(numeric), totals).items():
        if index in no_scores:
            hists.pop("score", None)
        found[index].numeric = hists
    parts = _slice_profiles(profile)
    out: dict[float, WindowAggregate] = {}
    nested: dict[float, dict[str, dict[str, WindowData]]] = {}
    for index, window in sorted(found.items()):
        at, code = divmod(index, count)
        start = start_of[at]
        if code == 0:
            data = _window_data(profile, chosen, window, positive_label)
            out[start] = WindowAggregate(data, events=window.n_events, labelled=window.labelled)
        elif window.n_events:
            key, value, part = parts[code - 1]
            data = _window_data(part, chosen, window, positive_label)
            nested.setdefault(start, {}).setdefault(key, {})[value] = data
    for start, segments in nested.items():
        whole = out[start]
        out[start] = WindowAggregate(
            whole.data.model_copy(update={"segments": segments}),
            events=whole.events,
            labelled=whole.labelled,
        )
    return out


def _slice_profiles(profile: ModelProfile) -> list[tuple[str, str, ModelProfile]]:
    """The segment slices of ``profile`` in slice order (slice ``i + 1`` is item ``i``)."""
    return [
        (key, value, part)
        for key, values in profile.segments.items()
        for value, part in values.items()
    ]


def _slices_of(profile: ModelProfile) -> _Slices | None:
    """The slices of ``profile``'s segments; ``None`` without segments."""
    if not profile.segments:
        return None
    keys = []
    for key, values in profile.segments.items():
        names = list(values)
        if names[-1:] != [OTHER_SEGMENT] or OTHER_SEGMENT in names[:-1]:
            raise ValueError(f"segment {key!r} of the profile does not end with {OTHER_SEGMENT}")
        keys.append((key, tuple(names[:-1])))
    return _Slices(tuple(keys))


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
    multivariate = None
    if profile.multivariate is not None:
        multivariate = MultivariateSums(n=n, error_sum=found.mv_sum if n else 0.0)
    estimation = found.estimation if profile.calibration is not None else None
    return WindowData(
        n_events=n,
        features=features,
        prediction=prediction,
        score=found.numeric.get("score"),
        performance=performance,
        multivariate=multivariate,
        estimation=estimation,
    )


def _empty(profile: NumericProfile, n: int) -> NumericCounts:
    """A histogram without values: ``n`` nulls (a window without a numeric value)."""
    return NumericCounts(counts=(0,) * profile.n_bins, null_count=n, sums=(0.0,) * profile.n_bins)
