"""The monitor's own tables: what it reads to plan and writes when windows close.

``window_metrics`` and ``alerts`` rows of closed windows (Arrow tables shaped here),
the per-version :class:`~driftline.detectors.step.MonitorState` in ``monitor_state``,
and the small reads of a pass: a model's versions, its raw row counts, the labels not
yet fed to the concept-drift detectors, the ``watermarks`` table's partition marks.
Every value travels as a query parameter.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ..detectors.concept import LabelRows
from ..detectors.evaluate import WindowReport
from ..detectors.segments import segment_label
from ..detectors.step import MonitorState
from ..detectors.windows import MICROS, PartitionMark, micros
from ..schemas.events import AlertEvent
from ..schemas.monitor import MonitorConfig
from .backend import Store
from .params import SqlParams
from .window_sql import class_strings

__all__ = [
    "alert_table",
    "load_states",
    "metric_table",
    "model_versions",
    "new_labels",
    "partition_marks",
    "raw_row_counts",
    "save_states",
    "write_window_rows",
]


def metric_table(report: WindowReport, computed_at: float) -> pa.Table:
    """The ``window_metrics`` rows of a report (``feature`` is ``''`` where null;
    ``segment`` is ``key=value`` of a slice, ``''`` for the whole model)."""
    us_type = pa.timestamp("us", tz="UTC")
    rows = report.rows
    n = len(rows)
    return pa.table(
        {
            "model_id": pa.array([report.model_id] * n, pa.string()),
            "model_version": pa.array([report.model_version] * n, pa.string()),
            "window_start": pa.array([micros(report.window_start)] * n, us_type),
            "window_end": pa.array([micros(report.window_end)] * n, us_type),
            "metric": pa.array([r.metric for r in rows], pa.string()),
            "feature": pa.array([r.feature or "" for r in rows], pa.string()),
            "value": pa.array([r.value for r in rows], pa.float64()),
            "p_value": pa.array([r.p_value for r in rows], pa.float64()),
            "threshold": pa.array([r.threshold for r in rows], pa.float64()),
            "status": pa.array([r.status for r in rows], pa.string()),
            "n": pa.array([r.n for r in rows], pa.uint64()),
            "label_coverage": pa.array([r.label_coverage for r in rows], pa.float64()),
            "revision": pa.array([report.revision] * n, pa.uint32()),
            "computed_at": pa.array([micros(computed_at)] * n, us_type),
            "kind": pa.array([r.kind for r in rows], pa.string()),
            "q_value": pa.array([r.q_value for r in rows], pa.float64()),
            "reference": pa.array([r.reference for r in rows], pa.float64()),
            "primary": pa.array([r.primary for r in rows], pa.bool_()),
            "warning": pa.array([r.warning for r in rows], pa.float64()),
            "critical": pa.array([r.critical for r in rows], pa.float64()),
            "segment": pa.array([segment_label(r.segment) for r in rows], pa.string()),
            "lower": pa.array([r.lower for r in rows], pa.float64()),
            "upper": pa.array([r.upper for r in rows], pa.float64()),
        }
    )


def alert_table(events: Sequence[AlertEvent]) -> pa.Table:
    """The ``alerts`` rows of alert events (an escalation replaces its alert's row)."""
    us_type = pa.timestamp("us", tz="UTC")

    def ts(values: list[Any]) -> pa.Array:
        return pa.array([micros(v.timestamp()) for v in values], us_type)

    return pa.table(
        {
            "alert_id": pa.array([e.alert_id for e in events], pa.string()),
            "model_id": pa.array([e.model_id for e in events], pa.string()),
            "model_version": pa.array([e.model_version for e in events], pa.string()),
            "kind": pa.array([e.kind for e in events], pa.string()),
            "feature": pa.array([e.feature for e in events], pa.string()),
            "window_start": ts([e.window_start for e in events]),
            "window_end": ts([e.window_end for e in events]),
            "statistic": pa.array([e.statistic for e in events], pa.string()),
            "value": pa.array([e.value for e in events], pa.float64()),
            "threshold": pa.array([e.threshold for e in events], pa.float64()),
            "p_value": pa.array([e.p_value for e in events], pa.float64()),
            "severity": pa.array([e.severity for e in events], pa.string()),
            "opened_at": ts([e.opened_at for e in events]),
            "segment": pa.array([segment_label(e.segment) for e in events], pa.string()),
        }
    )


def write_window_rows(
    store: Store, reports: Sequence[WindowReport], alerts: Sequence[AlertEvent]
) -> None:
    """The metric rows of ``reports`` in one insert, then the rows of ``alerts``."""
    now = time.time()
    store.insert_arrow("window_metrics", pa.concat_tables([metric_table(r, now) for r in reports]))
    if alerts:
        store.insert_arrow("alerts", alert_table(alerts))


def load_states(store: Store, model_id: str) -> dict[str, MonitorState]:
    """The saved state of every version of the model (the highest ``seq``), one query."""
    rows = store.query(
        "SELECT model_version AS v, argMax(state, seq) AS s FROM monitor_state "
        "WHERE model_id = {model:String} GROUP BY model_version",
        {"model": model_id},
    )
    return {str(r["v"]): MonitorState.model_validate_json(r["s"]) for r in rows if r["s"]}


def save_states(store: Store, model_id: str, states: Mapping[str, MonitorState]) -> None:
    """Save the states of many versions of the model in one insert."""
    if not states:
        return
    versions = sorted(states)
    now = micros(time.time())
    store.insert_arrow(
        "monitor_state",
        pa.table(
            {
                "model_id": pa.array([model_id] * len(versions), pa.string()),
                "model_version": pa.array(versions, pa.string()),
                "seq": pa.array([states[v].seq for v in versions], pa.uint64()),
                "state": pa.array([states[v].model_dump_json() for v in versions], pa.string()),
                "updated_at": pa.array([now] * len(versions), pa.timestamp("us", tz="UTC")),
            }
        ),
    )


def model_versions(store: Store, model_id: str) -> list[str]:
    """The versions of the model with a stored prediction, in order."""
    rows = store.query(
        "SELECT DISTINCT model_version AS v FROM predictions "
        "WHERE model_id = {model:String} ORDER BY v",
        {"model": model_id},
    )
    return [str(r["v"]) for r in rows]


def raw_row_counts(store: Store, model_id: str) -> tuple[int, int]:
    """Stored prediction and feedback rows of the model, every copy counted (cheap: no
    deduplication); they change whenever a row of the model arrives."""
    rows = store.query(
        "SELECT (SELECT count() FROM predictions WHERE model_id = {model:String}) AS p, "
        "(SELECT count() FROM feedback WHERE model_id = {model:String}) AS f",
        {"model": model_id},
    )
    return int(rows[0]["p"]), int(rows[0]["f"])


def partition_marks(store: Store, topic: str) -> list[PartitionMark]:
    """The ``watermarks`` table's mark of every partition of ``topic``."""
    rows = store.query(
        "SELECT partition, toUnixTimestamp64Micro(max(event_time)) AS e, "
        "toUnixTimestamp64Micro(max(updated_at)) AS u FROM watermarks "
        "WHERE topic = {topic:String} GROUP BY partition",
        {"topic": topic},
    )
    return [
        PartitionMark(int(r["partition"]), int(r["e"]) / MICROS, int(r["u"]) / MICROS) for r in rows
    ]


def new_labels(
    store: Store,
    config: MonitorConfig,
    version: str,
    cursor: tuple[int, str] | None,
    frontier: float,
) -> LabelRows | None:
    """The labels of a model version whose key ``(feedback time in µs, event_id)`` lies
    beyond ``cursor`` and whose feedback time is at most ``frontier``, in key order (label
    order), joined to their predictions (``feedback FINAL`` and ``predictions FINAL``);
    ``None`` when there is none."""
    if not math.isfinite(frontier):
        return None
    p = SqlParams()
    size_us = micros(config.window_seconds)
    model = p.string(config.model_id)
    after = ""
    if cursor is not None:
        t, event_id = cursor
        after = (
            f" AND (toUnixTimestamp64Micro(f.timestamp), f.event_id)"
            f" > ({p.integer(t)}, {p.string(event_id)})"
        )
    sql = f"""
    SELECT toUnixTimestamp64Micro(f.timestamp) AS t, f.event_id AS id,
           f.label_class AS lc, f.label_value AS lv,
           q.prediction_class AS pc, q.prediction_value AS pv,
           intDiv(q.us, {p.integer(size_us)}) AS w
    FROM feedback AS f FINAL
    INNER JOIN (
        SELECT event_id, prediction_class, prediction_value,
               toUnixTimestamp64Micro(timestamp) AS us
        FROM predictions FINAL
        WHERE model_id = {model} AND model_version = {p.string(version)}
    ) AS q ON q.event_id = f.event_id
    WHERE f.model_id = {model}
      AND toUnixTimestamp64Micro(f.timestamp) <= {p.integer(micros(frontier))}{after}
    ORDER BY t, id"""
    rows = store.query(sql, p.values)
    if not rows:
        return None
    starts = [int(r["w"]) * size_us / MICROS for r in rows]
    if config.task == "regression":
        predictions: Any = np.array(
            [np.nan if r["pv"] is None else float(r["pv"]) for r in rows], dtype=np.float64
        )
        labels: Any = np.array(
            [np.nan if r["lv"] is None else float(r["lv"]) for r in rows], dtype=np.float64
        )
    else:
        predictions, _ = class_strings([r["pc"] for r in rows], [r["pv"] for r in rows])
        labels, _ = class_strings([r["lc"] for r in rows], [r["lv"] for r in rows])
    return LabelRows(
        times=[int(r["t"]) for r in rows],
        event_ids=[str(r["id"]) for r in rows],
        predictions=predictions,
        labels=labels,
        starts=starts,
    )
