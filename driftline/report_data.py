"""Reads a model's report data from the store and writes the HTML report.

The shell around :mod:`driftline.report`: :func:`load_report_data` reads the most
recent windows of ``window_metrics`` (latest revision, ``FINAL``), the predictions
per window, the alerts of those windows and every ``model_versions`` row of one
model from anything that answers read-only SQL: a :class:`~driftline.store.Store`
or a :class:`~driftline.store.remote.WorkerReader` (the page of a running worker
that owns an embedded store). Because the worker's page takes no query
parameters, the model id travels hex-encoded inside the SQL (``unhex('...')``),
which means the same on every backend and can never break out of the literal.

:func:`write_report` writes the page; :func:`report_command` is the
``driftline report`` command.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol

from .report import AlertRow, ReportData, ReportWindow, VersionRow, WindowMetric, render_report
from .report_rollouts import RolloutPoint, load_rollouts
from .settings import Settings
from .store.backend import StoreError
from .store.params import hex_text

__all__ = [
    "DEFAULT_WINDOWS",
    "ReportError",
    "RowSource",
    "UnknownModelError",
    "known_model_ids",
    "load_report_data",
    "report_command",
    "write_report",
]

#: Windows a report shows unless told otherwise.
DEFAULT_WINDOWS: Final = 48
#: Most alerts a report lists (the most recent ones).
MAX_ALERTS: Final = 500
_MICROS: Final = 1_000_000
_TABLES: Final = ("window_metrics", "alerts", "model_versions", "predictions")


class ReportError(ValueError):
    """The report cannot be made from this input (the message says why)."""


class UnknownModelError(ReportError):
    """The store holds nothing about the requested model."""


class RowSource(Protocol):
    """Anything that runs read-only SQL and returns rows as dicts."""

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]: ...


def _at(micros: Any) -> datetime:
    return datetime.fromtimestamp(int(micros) / _MICROS, UTC)


def _maybe_at(micros: Any) -> datetime | None:
    return None if micros is None else _at(micros)


def _maybe_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _check_tables(source: RowSource) -> None:
    # each table read directly: the query page refuses system tables (its sandbox)
    missing = []
    for table in _TABLES:
        try:
            source.query(f"SELECT 1 FROM {table} LIMIT 0")
        except StoreError as error:
            if "exist" not in str(error).lower() and "unknown_table" not in str(error).lower():
                raise
            missing.append(table)
    if missing:
        raise ReportError(
            f"the store has no table {', '.join(missing)}: run `driftline db migrate` "
            "or start a worker first"
        )


def known_model_ids(source: RowSource) -> list[str]:
    """Model ids that have predictions, windows, alerts or versions in the store."""
    parts = " UNION ALL ".join(f"SELECT DISTINCT toString(model_id) AS m FROM {t}" for t in _TABLES)
    return [str(r["m"]) for r in source.query(f"SELECT DISTINCT m FROM ({parts}) ORDER BY m")]


def _window_starts(source: RowSource, model: str, windows: int) -> list[int]:
    rows = source.query(
        "SELECT toUnixTimestamp64Micro(window_start) AS ws FROM window_metrics "
        f"WHERE model_id = {model} GROUP BY ws ORDER BY ws DESC LIMIT {int(windows)}"
    )
    return sorted(int(r["ws"]) for r in rows)


def _windows(source: RowSource, model: str, first: int, last: int) -> list[ReportWindow]:
    rows = source.query(
        "SELECT toString(model_version) AS version, "
        "toUnixTimestamp64Micro(window_start) AS ws, toUnixTimestamp64Micro(window_end) AS we, "
        "toString(kind) AS kind, toString(metric) AS metric, feature, value, p_value, "
        "threshold, reference, toString(status) AS status, n, label_coverage, primary, revision, "
        "warning, critical, segment "
        "FROM window_metrics FINAL "
        f"WHERE model_id = {model} AND toUnixTimestamp64Micro(window_start) >= {first} "
        f"AND toUnixTimestamp64Micro(window_start) <= {last} "
        "ORDER BY ws, version, kind, metric, feature"
    )
    grouped: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault((int(row["ws"]), str(row["version"])), []).append(row)
    counts = _prediction_counts(
        source, model, sorted({(int(g[0]["ws"]), int(g[0]["we"])) for g in grouped.values()})
    )
    windows = []
    for (start, version), group in sorted(grouped.items()):
        end = int(group[0]["we"])
        windows.append(
            ReportWindow(
                model_version=version,
                start=_at(start),
                end=_at(end),
                revision=max(int(r["revision"]) for r in group),
                predictions=counts.get((version, start, end), 0),
                metrics=tuple(_metric(r) for r in group if not r["segment"]),
                segments=_by_segment([r for r in group if r["segment"]]),
            )
        )
    return windows


def _by_segment(rows: list[dict[str, Any]]) -> dict[str, tuple[WindowMetric, ...]]:
    out: dict[str, list[WindowMetric]] = {}
    for r in rows:
        out.setdefault(str(r["segment"]), []).append(_metric(r))
    return {name: tuple(metrics) for name, metrics in sorted(out.items())}


def _metric(r: dict[str, Any]) -> WindowMetric:
    return WindowMetric(
        kind=str(r["kind"]),
        metric=str(r["metric"]),
        feature=str(r["feature"]) or None,
        value=_maybe_float(r["value"]),
        p_value=_maybe_float(r["p_value"]),
        threshold=_maybe_float(r["threshold"]),
        warning=_maybe_float(r["warning"]),
        critical=_maybe_float(r["critical"]),
        reference=_maybe_float(r["reference"]),
        status=str(r["status"]),
        n=int(r["n"]),
        label_coverage=_maybe_float(r["label_coverage"]),
        primary=bool(r["primary"]),
    )


def _prediction_counts(
    source: RowSource, model: str, spans: list[tuple[int, int]]
) -> dict[tuple[str, int, int], int]:
    """Stored predictions (deduplicated) per model version and window span."""
    if not spans:
        return {}
    literal = "[" + ",".join(f"({s}, {e})" for s, e in spans) + "]"
    rows = source.query(
        "SELECT toString(model_version) AS version, "
        "arrayFirstIndex(span -> t >= span.1 AND t < span.2, "
        f"CAST({literal} AS Array(Tuple(Int64, Int64)))) AS slot, count() AS n "
        "FROM (SELECT model_version, toUnixTimestamp64Micro(timestamp) AS t "
        f"FROM predictions FINAL WHERE model_id = {model} "
        f"AND toUnixTimestamp64Micro(timestamp) >= {min(s for s, _ in spans)} "
        f"AND toUnixTimestamp64Micro(timestamp) < {max(e for _, e in spans)}) "
        "GROUP BY version, slot HAVING slot > 0"
    )
    return {(str(r["version"]), *spans[int(r["slot"]) - 1]): int(r["n"]) for r in rows}


def _alerts(source: RowSource, model: str, since: int | None) -> list[AlertRow]:
    window = "" if since is None else f" AND toUnixTimestamp64Micro(window_end) > {since}"
    rows = source.query(
        "SELECT alert_id, toString(model_version) AS version, toString(kind) AS kind, feature, "
        "toUnixTimestamp64Micro(window_start) AS ws, toUnixTimestamp64Micro(window_end) AS we, "
        "toString(statistic) AS statistic, value, threshold, p_value, "
        "toString(severity) AS severity, toUnixTimestamp64Micro(opened_at) AS opened, segment "
        f"FROM alerts FINAL WHERE model_id = {model}{window} "
        f"ORDER BY opened DESC, alert_id LIMIT {MAX_ALERTS}"
    )
    return [
        AlertRow(
            alert_id=str(r["alert_id"]),
            model_version=str(r["version"]),
            kind=str(r["kind"]),
            feature=r["feature"],
            window_start=_at(r["ws"]),
            window_end=_at(r["we"]),
            statistic=str(r["statistic"]),
            value=float(r["value"]),
            threshold=float(r["threshold"]),
            p_value=_maybe_float(r["p_value"]),
            severity=str(r["severity"]),
            opened_at=_at(r["opened"]),
            segment=str(r["segment"]),
        )
        for r in rows
    ]


def _versions(source: RowSource, model: str) -> list[VersionRow]:
    rows = source.query(
        "SELECT version, parent_version, artifact_uri, mapKeys(metrics) AS metric_names, "
        "mapValues(metrics) AS metric_values, toString(status) AS status, decision, "
        "request_id, alert_ids, train_rows, holdout_rows, training_seconds, "
        "toString(device) AS device, toUnixTimestamp64Micro(data_from) AS data_from, "
        "toUnixTimestamp64Micro(data_to) AS data_to, "
        "toUnixTimestamp64Micro(created_at) AS created, "
        "toUnixTimestamp64Micro(updated_at) AS updated "
        f"FROM model_versions FINAL WHERE model_id = {model} ORDER BY created, version"
    )
    return [
        VersionRow(
            version=str(r["version"]),
            parent_version=r["parent_version"],
            artifact_uri=str(r["artifact_uri"]),
            status=str(r["status"]),
            decision=str(r["decision"]),
            metrics={
                str(k): float(v) for k, v in zip(r["metric_names"], r["metric_values"], strict=True)
            },
            request_id=r["request_id"],
            alert_ids=tuple(str(a) for a in r["alert_ids"]),
            train_rows=int(r["train_rows"]),
            holdout_rows=int(r["holdout_rows"]),
            training_seconds=float(r["training_seconds"]),
            device=str(r["device"]),
            data_from=_maybe_at(r["data_from"]),
            data_to=_maybe_at(r["data_to"]),
            created_at=_at(r["created"]),
            updated_at=_at(r["updated"]),
        )
        for r in rows
    ]


def _rollouts(source: RowSource, model: str) -> list[RolloutPoint]:
    try:
        return load_rollouts(source, model)
    except StoreError as error:  # a store migrated before rollouts existed
        if "rollout_windows" in str(error):
            return []
        raise


def load_report_data(
    source: RowSource,
    model_id: str,
    windows: int = DEFAULT_WINDOWS,
    now: datetime | None = None,
) -> ReportData:
    """The ``windows`` most recent windows of ``model_id``, their alerts, and its versions.

    Raises :class:`UnknownModelError` (naming the known model ids) when the store
    holds nothing about ``model_id``, and :class:`ReportError` when ``windows`` is
    not positive or the store has no driftline tables.
    """
    if isinstance(windows, bool) or not isinstance(windows, int) or windows < 1:
        raise ReportError(f"windows must be a positive whole number, got {windows!r}")
    _check_tables(source)
    known = known_model_ids(source)
    if model_id not in known:
        raise UnknownModelError(
            f"no data for model id {model_id!r} in the store; known model ids: "
            + (", ".join(repr(m) for m in known) or "none")
        )
    model = hex_text(model_id)
    starts = _window_starts(source, model, windows)
    shown = _windows(source, model, starts[0], starts[-1]) if starts else []
    return ReportData(
        model_id=model_id,
        generated_at=now or datetime.now(UTC),
        windows=tuple(shown),
        alerts=tuple(_alerts(source, model, starts[0] if starts else None)),
        versions=tuple(_versions(source, model)),
        rollouts=tuple(_rollouts(source, model)),
    )


def write_report(
    source: RowSource, model_id: str, out_path: Path | str, windows: int = DEFAULT_WINDOWS
) -> Path:
    """Write the HTML report of ``model_id`` to ``out_path`` (atomically) and return it."""
    page = render_report(load_report_data(source, model_id, windows))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(page)
        os.chmod(temporary, 0o644)
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return out


def report_command(
    settings: Settings, model_id: str, out_path: Path, windows: int = DEFAULT_WINDOWS
) -> Path:
    """``driftline report``: read through a running worker when one owns the embedded
    store, else open the store; raises ``ReportError`` or ``StoreError``."""
    from .store import reading_store

    with reading_store(settings) as store:
        return write_report(store, model_id, out_path, windows)
