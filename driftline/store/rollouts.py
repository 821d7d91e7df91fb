"""A rollout's evidence of one window, pushed down to ClickHouse.

The same sums as :func:`driftline.detectors.comparison.window_evidence` (read its rules:
rows, labels up to the window's close, paired evidence, arms, latency), from the raw
tables: the served predictions are what ``predictions FINAL`` keeps of the window's
events, the shadow ones what ``shadow_predictions`` keeps of the same event ids (one
per version), the label of an event its latest ``feedback`` row. ClickHouse counts the
rows per combination of predictions and label, and returns the 95th percentile of each
version's latencies; the classes are made canonical here, as the window aggregates
make them (:func:`~driftline.store.window_sql.class_strings`).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pyarrow as pa

from ..detectors.comparison import SCORE_UNITS
from ..detectors.performance import LOG_EPS
from ..detectors.promotion import RolloutEvidence
from ..detectors.rollout import ArmCounts, PairedCounts
from ..detectors.windows import micros
from .aggregates import _positive_number
from .backend import Store
from .params import SqlParams
from .window_sql import _score_sql, class_strings

__all__ = [
    "ROLLOUT_WINDOW_COLUMNS",
    "first_window",
    "load_rollout_state",
    "save_rollout_state",
    "save_rollout_windows",
    "served_windows",
    "window_evidence_sql",
]


def _served_sql(p: SqlParams, model: str, versions: str, low: int, high: int, score: str) -> str:
    """The latest served copy of each event with a copy in ``[low, high)``, kept when it
    still lies there and is of one of ``versions`` (``score``: its probability's SQL)."""
    in_range = (
        f"timestamp >= fromUnixTimestamp64Micro({p.integer(low)}, 'UTC')"
        f" AND timestamp < fromUnixTimestamp64Micro({p.integer(high)}, 'UTC')"
    )
    return f"""(
        SELECT event_id, model_version, prediction_class, prediction_value, latency_ms, sx
        FROM (
            SELECT event_id, model_version, timestamp, prediction_class, prediction_value,
                   latency_ms, {score} AS sx
            FROM predictions
            WHERE model_id = {model} AND event_id IN (
                SELECT event_id FROM predictions WHERE model_id = {model} AND {in_range})
            ORDER BY event_id, ingested_at DESC, kafka_offset DESC, batch_index DESC
            LIMIT 1 BY event_id)
        WHERE {in_range} AND model_version IN {versions}
    )"""


def window_evidence_sql(
    store: Store,
    *,
    model_id: str,
    champion: str,
    challenger: str,
    window_start: float,
    window_end: float,
    label_deadline: float,
    loss_bound: float | None = None,
    loss: str = "mae",
    positive_label: str = "1",
) -> RolloutEvidence:
    """The evidence of ``challenger`` against ``champion`` in one window (seconds);
    ``loss_bound`` and ``loss``: predictions scored by their bounded loss
    (:func:`~driftline.detectors.comparison.event_scores`, in the same millionths; the
    ``log_loss`` of the positive class's probability, as the window's log loss takes
    it: ``score``, else ``class_scores[positive_label]``)."""
    p = SqlParams()
    model = p.string(model_id)
    champion_sql, challenger_sql = p.string(champion), p.string(challenger)
    versions = f"({champion_sql}, {challenger_sql})"
    score = _score_sql(p, positive_label, table="")
    served = _served_sql(p, model, versions, micros(window_start), micros(window_end), score)
    deadline = p.integer(micros(label_deadline))
    # The latest copy of each (version, event) shadow prediction of the served events.
    shadow = f"""(
        SELECT event_id, model_version, prediction_class, prediction_value, latency_ms,
               {score} AS sx
        FROM shadow_predictions
        WHERE model_id = {model} AND model_version IN {versions}
          AND event_id IN (SELECT event_id FROM served)
        ORDER BY model_version, event_id, ingested_at DESC, kafka_offset DESC,
                 batch_index DESC
        LIMIT 1 BY model_version, event_id)"""
    sql = f"""
    WITH served AS {served},
    shadow AS {shadow},
    labels AS (
        SELECT event_id,
               argMax(tuple(label_class, label_value, timestamp),
                      tuple(ingested_at, kafka_offset, batch_index)) AS label
        FROM feedback
        WHERE model_id = {model} AND event_id IN (SELECT event_id FROM served)
        GROUP BY event_id),
    scored AS (
        SELECT s.event_id AS event_id, s.model_version AS served_by,
               s.prediction_class AS spc, s.prediction_value AS spv, s.sx AS ssx,
               h.model_version AS shadowed_by,
               h.prediction_class AS hpc, h.prediction_value AS hpv, h.sx AS hsx
        FROM served AS s
        LEFT JOIN shadow AS h ON h.event_id = s.event_id
            AND h.model_version != s.model_version)
    {_final_select(p, deadline, challenger_sql, loss_bound, loss, positive_label)}"""
    groups = store.query(sql, p.values)
    latency_sql = f"""
    WITH served AS {served}, shadow AS {shadow}
    SELECT model_version AS v, quantileExact(0.95)(latency_ms) AS p95, count() AS n
    FROM (
        SELECT model_version, latency_ms FROM served WHERE latency_ms IS NOT NULL
        UNION ALL
        SELECT model_version, latency_ms FROM shadow
        WHERE latency_ms IS NOT NULL
          AND (model_version, event_id) NOT IN (SELECT model_version, event_id FROM served))
    GROUP BY v"""
    latency = {row["v"]: float(row["p95"]) for row in store.query(latency_sql, p.values)}
    if loss_bound is not None:
        return _loss_evidence(groups, champion, challenger, latency)
    return _evidence(groups, champion, challenger, latency)


def _final_select(
    p: SqlParams,
    deadline: str,
    challenger: str,
    loss_bound: float | None,
    loss: str = "mae",
    positive_label: str = "1",
) -> str:
    """Rows per combination of predictions and label (classes), or per pair of versions
    with the scores' sums (losses, see :func:`_loss_evidence`; for ``log_loss`` also
    per combination of predicted classes, which count the disagreements)."""
    closed = f"fromUnixTimestamp64Micro({deadline}, 'UTC')"
    in_time = f"l.event_id != '' AND tupleElement(l.label, 3) < {closed}"
    if loss_bound is None:
        return f"""SELECT
        served_by, shadowed_by, spc, spv, hpc, hpv,
        tupleElement(l.label, 1) AS lc, tupleElement(l.label, 2) AS lv,
        {in_time} AS has_label, count() AS n
    FROM scored AS x
    LEFT JOIN labels AS l ON l.event_id = x.event_id
    GROUP BY served_by, shadowed_by, spc, spv, hpc, hpv, lc, lv, has_label"""
    bound = p.number(loss_bound * loss_bound if loss == "rmse" else loss_bound)
    if loss == "log_loss":
        return _log_loss_select(p, in_time, challenger, bound, positive_label)

    def score(prediction: str) -> str:
        difference = f"(ifNull({prediction}, nan) - lv)"
        error = {
            "rmse": f"({difference} * {difference})",
            "mape": f"abs({difference} / lv)",
        }.get(loss, f"abs({difference})")
        return _bounded_score(error, bound)

    usable = "isFinite(lv) AND lv != 0" if loss == "mape" else "isFinite(lv)"

    return f"""SELECT
        served_by, shadowed_by, has_label, count() AS n,
        sum(s_served) AS served_sum, sum(greatest(ch - cp, 0)) AS gain,
        sum(greatest(cp - ch, 0)) AS loss
    FROM (
        SELECT served_by, shadowed_by, lv, has_label,
               {score("spv")} AS s_served, {score("hpv")} AS s_shadow,
               if(served_by = {challenger}, s_served, s_shadow) AS ch,
               if(served_by = {challenger}, s_shadow, s_served) AS cp
        FROM (
            SELECT x.*, ifNull(tupleElement(l.label, 2), nan) AS lv,
                   {in_time} AND {usable} AS has_label
            FROM scored AS x
            LEFT JOIN labels AS l ON l.event_id = x.event_id))
    GROUP BY served_by, shadowed_by, has_label"""


def _bounded_score(error: str, bound: str) -> str:
    """An event's score in millionths from its loss ``error`` (0 where unlabelled)."""
    capped = f"if(isFinite({error}), least({error}, {bound}), {bound})"
    return f"if(has_label, toInt64(floor((1 - {capped} / {bound}) * {SCORE_UNITS})), 0)"


def _log_loss_select(
    p: SqlParams, in_time: str, challenger: str, bound: str, positive_label: str
) -> str:
    """:func:`_final_select` for the log loss of the positive class's probability: an
    event is labelled for its served version's arm when that version gave a finite
    probability, and for the pair when the shadow version gave one too."""
    number = _positive_number(positive_label)
    is_positive = f"ifNull(lc = {p.string(positive_label)}, 0)"
    if number is not None:
        is_positive += f" OR ifNull(lv = {p.number(number)}, 0)"
    low, high = p.number(LOG_EPS), p.number(1 - LOG_EPS)

    def score(probability: str) -> str:
        clipped = f"least(greatest(least(greatest({probability}, 0.), 1.), {low}), {high})"
        error = f"if(isFinite({probability}), -if(y, log({clipped}), log1p(-{clipped})), nan)"
        return _bounded_score(error, bound)

    return f"""SELECT
        served_by, shadowed_by, spc, spv, hpc, hpv, has_label, pair_labelled, count() AS n,
        sum(s_served) AS served_sum, sum(greatest(ch - cp, 0)) AS gain,
        sum(greatest(cp - ch, 0)) AS loss
    FROM (
        SELECT served_by, shadowed_by, spc, spv, hpc, hpv, has_label, pair_labelled,
               {score("ifNull(ssx, nan)")} AS s_served,
               if(pair_labelled, {score("ifNull(hsx, nan)")}, 0) AS s_shadow,
               if(pair_labelled, if(served_by = {challenger}, s_served, s_shadow), 0) AS ch,
               if(pair_labelled, if(served_by = {challenger}, s_shadow, s_served), 0) AS cp
        FROM (
            SELECT x.*, tupleElement(l.label, 1) AS lc, tupleElement(l.label, 2) AS lv,
                   {in_time} AND (lc IS NOT NULL OR isFinite(ifNull(lv, nan)))
                       AND isFinite(ifNull(x.ssx, nan)) AS has_label,
                   has_label AND isFinite(ifNull(x.hsx, nan)) AS pair_labelled,
                   {is_positive} AS y
            FROM scored AS x
            LEFT JOIN labels AS l ON l.event_id = x.event_id))
    GROUP BY served_by, shadowed_by, spc, spv, hpc, hpv, has_label, pair_labelled"""


def _loss_evidence(
    groups: list[dict[str, Any]], champion: str, challenger: str, latency: dict[str, float]
) -> RolloutEvidence:
    """The sums of :func:`_final_select` for losses as evidence (exact integers)."""
    pairs = n = gain = loss = disagreements = 0
    arms = {champion: [0, 0], challenger: [0, 0]}
    for g in groups:
        served_by, shadowed_by = g["served_by"], g["shadowed_by"] or ""
        rows, labelled = int(g["n"]), bool(g["has_label"])
        if {served_by, shadowed_by} == {champion, challenger}:
            pairs += rows
            n += rows if bool(g.get("pair_labelled", labelled)) else 0
            gain += int(g["gain"])
            loss += int(g["loss"])
            if "spc" in g:  # classes with probabilities (log loss): they may disagree
                said, _ = class_strings([g["spc"], g["hpc"]], [g["spv"], g["hpv"]])
                disagreements += rows if said[0] != said[1] else 0
        if served_by in arms and labelled:
            arms[served_by][0] += rows
            arms[served_by][1] += int(g["served_sum"])
    ratio = None
    if champion in latency and challenger in latency and latency[champion] > 0:
        ratio = latency[challenger] / latency[champion]
    return RolloutEvidence(
        paired=PairedCounts(
            n=n, challenger_only=gain / SCORE_UNITS, champion_only=loss / SCORE_UNITS
        ),
        challenger=ArmCounts(n=arms[challenger][0], score=arms[challenger][1] / SCORE_UNITS),
        champion=ArmCounts(n=arms[champion][0], score=arms[champion][1] / SCORE_UNITS),
        pairs=pairs,
        disagreements=disagreements,
        latency_p95_ratio=ratio,
    )


def _evidence(
    groups: list[dict[str, Any]], champion: str, challenger: str, latency: dict[str, float]
) -> RolloutEvidence:
    """Sum the grouped rows up as :func:`~driftline.detectors.comparison.window_evidence`."""
    if not groups:
        return RolloutEvidence()
    count = np.array([int(g["n"]) for g in groups], dtype=np.int64)
    served_by = np.array([g["served_by"] for g in groups], dtype=str)
    shadowed_by = np.array([g["shadowed_by"] or "" for g in groups], dtype=str)
    served_says, _ = class_strings([g["spc"] for g in groups], [g["spv"] for g in groups])
    shadow_says, _ = class_strings([g["hpc"] for g in groups], [g["hpv"] for g in groups])
    truth, no_label = class_strings([g["lc"] for g in groups], [g["lv"] for g in groups])
    labelled = np.array([bool(g["has_label"]) for g in groups]) & ~no_label
    served_right = labelled & (served_says == truth)
    shadow_right = labelled & (shadow_says == truth)

    def total(mask: np.ndarray) -> int:
        return int(count[mask].sum())

    # Pairs: the event was served by one of the two and scored in shadow by the other.
    pair = ((served_by == champion) & (shadowed_by == challenger)) | (
        (served_by == challenger) & (shadowed_by == champion)
    )
    challenger_served = served_by == challenger
    challenger_right = np.where(challenger_served, served_right, shadow_right)
    champion_right = np.where(challenger_served, shadow_right, served_right)
    paired = PairedCounts(
        n=total(pair & labelled),
        challenger_only=total(pair & challenger_right & ~champion_right),
        champion_only=total(pair & champion_right & ~challenger_right),
    )
    # Arms: each served event is one group row (it joins the other version's shadow
    # row at most).
    arms = {}
    for version in (champion, challenger):
        mine = (served_by == version) & labelled
        arms[version] = ArmCounts(n=total(mine), score=total(mine & served_right))
    ratio = None
    if champion in latency and challenger in latency and latency[champion] > 0:
        ratio = latency[challenger] / latency[champion]
    return RolloutEvidence(
        paired=paired,
        challenger=arms[challenger],
        champion=arms[champion],
        pairs=total(pair),
        disagreements=total(pair & (served_says != shadow_says)),
        latency_p95_ratio=ratio,
    )


def _window_sql(p: SqlParams, size: float) -> str:
    """The start (µs) of the epoch-aligned window of ``timestamp``."""
    size_us = p.integer(micros(size))
    return f"intDiv(toUnixTimestamp64Micro(timestamp), {size_us}) * {size_us}"


def served_windows(
    store: Store, model_id: str, *, low: float, high: float, size: float
) -> list[float]:
    """Starts (seconds) of the windows holding served predictions of the model with
    ``low <= start <= high``, oldest first."""
    p = SqlParams()
    window = _window_sql(p, size)
    rows = store.query(
        f"""SELECT DISTINCT {window} AS w FROM predictions
        WHERE model_id = {p.string(model_id)}
          AND timestamp >= fromUnixTimestamp64Micro({p.integer(micros(low))}, 'UTC')
          AND timestamp < fromUnixTimestamp64Micro({p.integer(micros(high + size))}, 'UTC')
        ORDER BY w""",
        p.values,
    )
    return [int(row["w"]) / 1e6 for row in rows]


def first_window(store: Store, model_id: str, version: str, size: float) -> float | None:
    """The start of the first window where ``version`` served a prediction or scored one
    in shadow (a shadow prediction counts in its served prediction's window)."""
    p = SqlParams()
    model, version_sql = p.string(model_id), p.string(version)
    window = _window_sql(p, size)
    rows = store.query(
        f"""SELECT min({window}) AS w, count() AS n FROM predictions
        WHERE model_id = {model} AND (model_version = {version_sql} OR event_id IN (
            SELECT event_id FROM shadow_predictions
            WHERE model_id = {model} AND model_version = {version_sql}))""",
        p.values,
    )
    if not rows or not int(rows[0]["n"]):
        return None
    return int(rows[0]["w"]) / 1e6


def load_rollout_state(store: Store, model_id: str) -> str | None:
    """The JSON the monitor saved last for the model's rollout (highest ``seq``)."""
    rows = store.query(
        "SELECT argMax(state, seq) AS s, count() AS n FROM rollout_state "
        "WHERE model_id = {model:String}",
        {"model": model_id},
    )
    return str(rows[0]["s"]) if rows and int(rows[0]["n"]) else None


def save_rollout_state(store: Store, model_id: str, seq: int, state: str) -> None:
    """Save the model's rollout JSON as number ``seq`` (greater than the last one)."""
    store.insert_arrow(
        "rollout_state",
        pa.table(
            {
                "model_id": pa.array([model_id], pa.string()),
                "seq": pa.array([seq], pa.uint64()),
                "state": pa.array([state], pa.string()),
                "updated_at": pa.array([micros(time.time())], pa.timestamp("us", tz="UTC")),
            }
        ),
    )


#: Columns of ``rollout_windows`` (migration 9), ``window_start`` in epoch seconds.
ROLLOUT_WINDOW_COLUMNS = (
    "model_id",
    "champion",
    "challenger",
    "phase",
    "traffic",
    "window_start",
    "estimate",
    "lower",
    "upper",
    "n",
    "margin",
    "decision",
    "reason",
)


def save_rollout_windows(store: Store, rows: list[dict[str, Any]]) -> None:
    """Insert judged windows (dicts with :data:`ROLLOUT_WINDOW_COLUMNS`)."""
    if not rows:
        return
    columns: dict[str, Any] = {name: [row[name] for row in rows] for name in ROLLOUT_WINDOW_COLUMNS}
    columns["window_start"] = pa.array(
        [micros(t) for t in columns["window_start"]], pa.timestamp("us", tz="UTC")
    )
    columns["n"] = pa.array(columns["n"], pa.uint64())
    store.insert_arrow("rollout_windows", pa.table(columns))
