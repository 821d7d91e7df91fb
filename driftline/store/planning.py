"""The monitor's planning reads: which windows of a model's versions hold predictions,
their counts, the stored revisions, the per-model clocks and the rows stored since a
cursor. Each is one small query (an aggregation over the raw tables' primary key or a
projection), never a pull of raw rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..detectors.windows import ModelMark
from .backend import Store
from .params import SqlParams
from .window_sql import (
    _MICROS,
    _range_sql,
)

__all__ = [
    "FreshRows",
    "fresh_rows",
    "model_marks",
    "newest_ingested",
    "stored_revisions",
    "versions_stored_revisions",
    "versions_window_counts",
    "versions_window_starts",
    "window_counts",
    "window_starts",
]


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


def newest_ingested(store: Store, *, model_id: str, since: int, until: int) -> int | None:
    """The newest ``ingested_at`` (µs) of the model's predictions stored in ``[since,
    until)`` (µs, found through the ``ingested`` minmax index); ``None`` when none is."""
    rows = store.query(
        "SELECT count() AS n, max(toUnixTimestamp64Micro(ingested_at)) AS t FROM predictions "
        "WHERE model_id = {model:String} "
        "AND ingested_at >= fromUnixTimestamp64Micro({since:Int64}, 'UTC') "
        "AND ingested_at < fromUnixTimestamp64Micro({until:Int64}, 'UTC')",
        {"model": model_id, "since": since, "until": until},
    )
    return int(rows[0]["t"]) if rows and int(rows[0]["n"]) else None
