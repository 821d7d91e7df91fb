"""A model's recent windows, alerts and versions as one self-contained HTML page.

Pure rendering: :func:`render_report` turns a typed :class:`ReportData` into an
HTML string. The plots are SVG drawn here (no plotting library, no JavaScript
library, no external URL); a content security policy forbids the page to load
anything at all. Every string that comes from the data (model ids, versions,
feature names, decisions, alert ids...) is HTML-escaped.

The page carries one tiny inline script: it records script errors, failed loads
and policy violations in the ``data-errors`` attribute of ``<body>`` and, once the
page has loaded, the number of plots the browser laid out in ``data-plots-drawn``,
so that a headless browser can check that the page rendered cleanly.

Reading the tables is the job of :mod:`driftline.report_data`.

Examples
--------
>>> from datetime import datetime, timezone
>>> start = datetime(2026, 1, 1, tzinfo=timezone.utc)
>>> page = render_report(ReportData(model_id="credit", generated_at=start))
>>> page.startswith("<!DOCTYPE html>"), "No windows" in page
(True, True)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from .detectors.performance import alert_level
from .report_rollouts import RolloutPoint, rollouts_section

__all__ = [
    "AlertRow",
    "ReportData",
    "ReportWindow",
    "VersionRow",
    "WindowMetric",
    "render_report",
]

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class WindowMetric(BaseModel):
    """One metric of one window (the latest revision of a ``window_metrics`` row).

    Examples
    --------
    >>> WindowMetric(kind="data_drift", metric="psi", feature="x2", value=0.31,
    ...              threshold=0.25, status="critical").feature
    'x2'
    """

    model_config = _FROZEN

    kind: str
    metric: str
    feature: str | None = None
    value: float | None = None
    p_value: float | None = None
    threshold: float | None = None
    reference: float | None = None
    status: str = ""
    n: int = 0
    label_coverage: float | None = None
    primary: bool = True
    #: The warning and critical levels the row was judged by (rows stored before they
    #: were recorded have ``threshold`` only).
    warning: float | None = None
    critical: float | None = None


class ReportWindow(BaseModel):
    """One closed window of a model version: its metrics and the predictions in it.

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> w = ReportWindow(model_version="v1", start=datetime(2026, 1, 1, tzinfo=timezone.utc),
    ...                  end=datetime(2026, 1, 1, 1, tzinfo=timezone.utc), predictions=500,
    ...                  metrics=(WindowMetric(kind="performance", metric="accuracy",
    ...                                        value=0.9, label_coverage=0.5),))
    >>> w.label_coverage, w.revision
    (0.5, 0)
    """

    model_config = _FROZEN

    model_version: str
    start: datetime
    end: datetime
    revision: int = 0
    predictions: int = 0
    #: The whole model's metrics.
    metrics: tuple[WindowMetric, ...] = ()
    #: Per segment slice (``key=value``), its metrics (with a ``segments`` section).
    segments: dict[str, tuple[WindowMetric, ...]] = Field(default_factory=dict)

    @property
    def label_coverage(self) -> float | None:
        """Share of the window's predictions that have a label (``None`` when unknown)."""
        known = [m.label_coverage for m in self.metrics if m.label_coverage is not None]
        return max(known) if known else None


class AlertRow(BaseModel):
    """One alert of the model (a row of ``alerts``).

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> AlertRow(alert_id="a1", model_version="v1", kind="data_drift", feature="x2",
    ...          window_start=at, window_end=at, statistic="psi", value=0.6, threshold=0.25,
    ...          severity="critical", opened_at=at).severity
    'critical'
    """

    model_config = _FROZEN

    alert_id: str
    model_version: str
    kind: str
    feature: str | None = None
    window_start: datetime
    window_end: datetime
    statistic: str
    value: float
    threshold: float
    p_value: float | None = None
    severity: str
    opened_at: datetime
    #: ``key=value`` of the segment slice the alert is about; ``""``: the whole model.
    segment: str = ""


class VersionRow(BaseModel):
    """One model version (a row of ``model_versions``).

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> VersionRow(version="v2", parent_version="v1", status="champion", decision="promoted",
    ...            metrics={"candidate_accuracy": 0.91}, created_at=at, updated_at=at).status
    'champion'
    """

    model_config = _FROZEN

    version: str
    parent_version: str | None = None
    artifact_uri: str = ""
    status: str
    decision: str = ""
    metrics: dict[str, float] = Field(default_factory=dict)
    request_id: str | None = None
    alert_ids: tuple[str, ...] = ()
    train_rows: int = 0
    holdout_rows: int = 0
    training_seconds: float = 0.0
    device: str = ""
    data_from: datetime | None = None
    data_to: datetime | None = None
    created_at: datetime
    updated_at: datetime


class ReportData(BaseModel):
    """Everything a report shows about one model; windows in time order.

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> ReportData(model_id="credit", generated_at=at).windows
    ()
    """

    model_config = _FROZEN

    model_id: str
    generated_at: datetime
    windows: tuple[ReportWindow, ...] = ()
    alerts: tuple[AlertRow, ...] = ()
    versions: tuple[VersionRow, ...] = ()
    rollouts: tuple[RolloutPoint, ...] = ()


# --------------------------------------------------------------------------- formatting

_STATUS_COLOURS: Final = {
    "ok": "#2e7d32",
    "warning": "#f9a825",
    "critical": "#c62828",
    "insufficient": "#9e9e9e",
}
_WIDTH: Final = 960
_HEIGHT: Final = 240
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 16, 44
_MAX_TICKS: Final = 8


def _text(value: object) -> str:
    """Any value as escaped HTML text (``None`` as a dash)."""
    return "\u2014" if value is None else escape(str(value), quote=True)


def _number(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "\u2014" if value is None else escape(str(value))
    if value != 0 and (abs(value) >= 10_000 or abs(value) < 1e-3):
        return f"{value:.3g}"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:.4g}"


def _time(value: datetime | None) -> str:
    if value is None:
        return "\u2014"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _tick_label(value: datetime, same_day: bool) -> str:
    return value.astimezone(UTC).strftime("%H:%M" if same_day else "%m-%d %H:%M")


def _no_data(message: str) -> str:
    return f'<p class="no-data">{_text(message)}</p>'


_BADGES: Final = frozenset(
    {*_STATUS_COLOURS, "candidate", "champion", "rejected", "rolled_back", "shadow", "canary"}
)


def _status_class(status: str) -> str:
    return status if status in _BADGES else "other"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# --------------------------------------------------------------------------- plots


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (steps of 1, 2 or 5 times a power of ten) covering [low, high]."""
    if not high > low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / (count - 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1.0, 2.0, 5.0, 10.0) if m * power >= raw)
    first = math.floor(low / step + 1e-9)
    last = math.ceil(high / step - 1e-9)
    return [round(i * step, 12) for i in range(first, last + 1)]


class _Frame:
    """The plot area of one chart: window index to x, value to y."""

    def __init__(self, count: int, low: float, high: float, height: int = _HEIGHT) -> None:
        self.count = max(count, 1)
        self.ticks = _nice_ticks(low, high)
        self.low, self.high = self.ticks[0], self.ticks[-1]
        self.height = height
        self.inner_width = _WIDTH - _LEFT - _RIGHT
        self.inner_height = height - _TOP - _BOTTOM

    def x(self, index: float) -> float:
        return _LEFT + (index + 0.5) * self.inner_width / self.count

    def slot(self) -> float:
        return self.inner_width / self.count

    def y(self, value: float) -> float:
        share = (value - self.low) / (self.high - self.low)
        return _TOP + (1.0 - min(max(share, 0.0), 1.0)) * self.inner_height


def _svg_open(name: str, title: str, height: int = _HEIGHT) -> str:
    return (
        f'<svg class="plot" data-plot="{_text(name)}" role="img" viewBox="0 0 {_WIDTH} {height}" '
        f'width="{_WIDTH}" height="{height}"><title>{_text(title)}</title>'
        f'<rect x="0" y="0" width="{_WIDTH}" height="{height}" fill="#ffffff"/>'
    )


def _axes(frame: _Frame, windows: Sequence[ReportWindow], y_format: str = "number") -> str:
    parts = []
    bottom = _TOP + frame.inner_height
    parts.append(
        f'<line x1="{_LEFT}" y1="{bottom}" x2="{_WIDTH - _RIGHT}" y2="{bottom}" class="axis"/>'
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{bottom}" class="axis"/>'
    )
    for value in frame.ticks:
        y = frame.y(value)
        label = f"{value:.0%}" if y_format == "percent" else _number(round(value, 6))
        parts.append(
            f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_WIDTH - _RIGHT}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{label}</text>'
        )
    same_day = len({w.start.astimezone(UTC).date() for w in windows}) <= 1
    every = max(1, math.ceil(len(windows) / _MAX_TICKS))
    for index, window in enumerate(windows):
        if index % every:
            continue
        parts.append(
            f'<text x="{frame.x(index):.1f}" y="{bottom + 16}" class="tick" '
            f'text-anchor="middle">{_text(_tick_label(window.start, same_day))}</text>'
        )
    parts.append(
        f'<text x="{_LEFT + frame.inner_width / 2:.1f}" y="{frame.height - 6}" class="tick" '
        'text-anchor="middle">window start (UTC)</text>'
    )
    return "".join(parts)


def _primary_performance(windows: Sequence[ReportWindow]) -> str | None:
    """The primary performance metric's name (the most frequent one)."""
    counts: dict[str, int] = {}
    for window in windows:
        for m in window.metrics:
            if m.kind == "performance" and m.primary:
                counts[m.metric] = counts.get(m.metric, 0) + 1
    return max(sorted(counts), key=lambda name: counts[name]) if counts else None


def _alert_level(metric: str, row: WindowMetric, level: str = "warning") -> float | None:
    """The metric value at which a window's drop from the reference reaches its warning
    (or critical) level (``threshold`` for rows without them).

    Performance thresholds are drops: absolute for scores (higher is better),
    relative increases for error metrics.
    """
    drop = row.warning if level == "warning" else row.critical
    if drop is None:
        drop = row.threshold if level == "warning" else None
    if row.reference is None or drop is None:
        return None
    return alert_level(metric, row.reference, drop)


def _performance_plot(windows: Sequence[ReportWindow]) -> str:
    name = _primary_performance(windows)
    if name is None:
        return _no_data("No performance metric in these windows.")
    rows: list[WindowMetric | None] = [
        next((m for m in w.metrics if m.kind == "performance" and m.metric == name), None)
        for w in windows
    ]
    estimated = [
        next(
            (
                m
                for m in w.metrics
                if m.kind == "estimated_performance" and m.metric == f"estimated_{name}"
            ),
            None,
        )
        for w in windows
    ]
    values = [r.value for r in rows + estimated if r is not None and r.value is not None]
    if not values:
        return _no_data(f"No labelled window yet: {name} has no value in these windows.")
    lines = {
        "threshold": [(i, _alert_level(name, r)) for i, r in enumerate(rows) if r is not None],
        "critical": [
            (i, _alert_level(name, r, "critical")) for i, r in enumerate(rows) if r is not None
        ],
        "reference": [(i, r.reference) for i, r in enumerate(rows) if r is not None],
        "estimated": [(i, e.value) for i, e in enumerate(estimated) if e is not None],
    }
    guides = [v for points in lines.values() for _, v in points if v is not None]
    finite = [v for v in values + guides if math.isfinite(v)]
    low, high = min(finite), max(finite)
    pad = (high - low) * 0.1 or 0.05
    frame = _Frame(len(windows), low - pad, high + pad)
    parts = [_svg_open("performance", f"{name} per window"), _axes(frame, windows)]
    for css, points in lines.items():
        known = [(i, v) for i, v in points if v is not None and math.isfinite(v)]
        if not known:
            continue
        path = " ".join(
            f"{frame.x(i - 0.5):.1f},{frame.y(v):.1f} {frame.x(i + 0.5):.1f},{frame.y(v):.1f}"
            for i, v in known
        )
        last = known[-1][1]
        label = {
            "threshold": "warning level",
            "critical": "critical level",
            "estimated": "estimated (no labels needed)",
        }.get(css, css)
        parts.append(
            f'<polyline points="{path}" class="{css}"/>'
            f'<text x="{_WIDTH - _RIGHT - 4}" y="{frame.y(last) - 4:.1f}" class="{css}-label" '
            f'text-anchor="end">{label} {_number(last)}</text>'
        )
    segment: list[str] = []
    segments: list[list[str]] = []
    for i, r in enumerate(rows):
        if r is None or r.value is None:
            if segment:
                segments.append(segment)
            segment = []
            continue
        segment.append(f"{frame.x(i):.1f},{frame.y(r.value):.1f}")
    if segment:
        segments.append(segment)
    for line in segments:
        parts.append(f'<polyline points="{" ".join(line)}" class="series"/>')
    for i, r in enumerate(rows):
        if r is None or r.value is None:
            continue
        colour = _STATUS_COLOURS.get(r.status, "#455a64")
        parts.append(
            f'<circle cx="{frame.x(i):.1f}" cy="{frame.y(r.value):.1f}" r="4" fill="{colour}">'
            f"<title>{_text(_time(windows[i].start))}: {_text(name)} {_number(r.value)} "
            f"({_text(r.status)})</title></circle>"
        )
    parts.append("</svg>")
    caption = (
        f'<p class="caption">{_text(name)} per window; dotted grey: the reference; dashed red: '
        "the warning level, dotted purple: the critical level (the reference less the drop "
        "each window was judged by, or plus the relative increase for error metrics; "
        "learned thresholds move with a window's label count); point colour: status; "
        "dashed blue, where estimation is on: the estimate from the scores alone (CBPE).</p>"
    )
    return "".join(parts) + caption


#: The kinds of drift rows the heatmaps show, in their order.
_DRIFT_KINDS: Final = ("data_drift", "multivariate_drift", "prediction_drift")


def _heat_colour(value: float | None, threshold: float | None) -> str:
    """Green below half the threshold, yellow at the threshold, red at twice it."""
    if value is None or not math.isfinite(value):
        return "#eeeeee"
    ratio = value / threshold if threshold else value
    share = min(max(ratio / 2.0, 0.0), 1.0)
    stops = ((0.0, (232, 245, 233)), (0.5, (255, 235, 59)), (1.0, (198, 40, 40)))
    for (a, ca), (b, cb) in itertools.pairwise(stops):
        if share <= b:
            t = (share - a) / (b - a)
            rgb = tuple(round(x + (y - x) * t) for x, y in zip(ca, cb, strict=True))
            return "#{:02x}{:02x}{:02x}".format(*rgb)
    return "#c62828"  # pragma: no cover - share is at most 1


def _cell(
    x: float,
    y: float,
    slot: float,
    row_height: int,
    colour: str,
    status: str,
    tip: str,
    segment: str | None = None,
) -> str:
    """One heatmap cell, outlined in its status's colour when warning or critical."""
    outline = (
        f' stroke="{_STATUS_COLOURS[status]}" stroke-width="2"'
        if status in ("warning", "critical")
        else ' stroke="#ffffff" stroke-width="1"'
    )
    named = "" if segment is None else f' data-segment="{_text(segment)}"'
    return (
        f'<rect x="{x:.1f}" y="{y}" width="{max(slot - 1, 1):.1f}" '
        f'height="{row_height - 2}" fill="{colour}"{outline} class="cell"{named} '
        f'data-status="{_text(status)}"><title>{_text(tip)}</title></rect>'
    )


def _window_ticks(
    windows: Sequence[ReportWindow], left: float, slot: float, bottom: float
) -> list[str]:
    """The window-start labels under a heatmap (at most ``_MAX_TICKS``)."""
    same_day = len({w.start.astimezone(UTC).date() for w in windows}) <= 1
    every = max(1, math.ceil(len(windows) / _MAX_TICKS))
    return [
        f'<text x="{left + (index + 0.5) * slot:.1f}" y="{bottom + 16}" class="tick" '
        f'text-anchor="middle">{_text(_tick_label(window.start, same_day))}</text>'
        for index, window in enumerate(windows)
        if index % every == 0
    ]


def _drift_heatmap(windows: Sequence[ReportWindow]) -> str:
    keys: list[tuple[str, str, str]] = []
    cells: dict[tuple[int, tuple[str, str, str]], WindowMetric] = {}
    for index, window in enumerate(windows):
        for m in window.metrics:
            if m.kind not in _DRIFT_KINDS or not m.primary:
                continue
            key = (m.kind, m.feature or "", m.metric)
            if key not in keys:
                keys.append(key)
            cells[(index, key)] = m
    if not keys:
        return _no_data("No drift statistic in these windows.")
    keys.sort(key=lambda k: (_DRIFT_KINDS.index(k[0]), k[1], k[2]))
    row_height = 22
    height = _TOP + row_height * len(keys) + _BOTTOM
    left = 180
    width = _WIDTH - left - _RIGHT
    slot = width / max(len(windows), 1)
    parts = [_svg_open("drift", "drift statistic per feature and window", height)]
    for row, key in enumerate(keys):
        kind, feature, metric = key
        y = _TOP + row * row_height
        label = {
            "data_drift": f"{feature} ({metric})",
            "prediction_drift": f"{feature} ({metric}, output)",
            "multivariate_drift": "all features (PCA)",
        }[kind]
        parts.append(
            f'<text x="{left - 6}" y="{y + row_height * 0.7:.1f}" class="tick" '
            f'text-anchor="end">{_text(label)}</text>'
        )
        for index, window in enumerate(windows):
            cell = cells.get((index, key))
            x = left + index * slot
            colour = _heat_colour(cell.value if cell else None, cell.threshold if cell else None)
            status = cell.status if cell else "no value"
            tip = (
                f"{feature} {metric} {_time(window.start)}: "
                f"{_number(cell.value if cell else None)} "
                f"(threshold {_number(cell.threshold if cell else None)}, {status})"
            )
            parts.append(_cell(x, y, slot, row_height, colour, status, tip))
    bottom = _TOP + row_height * len(keys)
    parts += _window_ticks(windows, left, slot, bottom)
    parts.append(
        f'<text x="{left + width / 2:.1f}" y="{height - 6}" class="tick" '
        'text-anchor="middle">window start (UTC)</text></svg>'
    )
    caption = (
        '<p class="caption">Colour: statistic relative to its threshold (green: low, '
        "yellow: at the threshold, red: twice it or more; grey: no value); outlined cells "
        "raised a warning or a critical status.</p>"
    )
    return "".join(parts) + caption


def _segment_heatmap(windows: Sequence[ReportWindow]) -> str:
    """Segment slice x window: each cell the slice's worst drift statistic relative to
    its threshold, outlined where a feature of the slice was warning or critical."""
    names = sorted({name for w in windows for name in w.segments})
    if not names:
        return _no_data("No segment slices (the monitor has no segments section).")
    row_height = 22
    height = _TOP + row_height * len(names) + _BOTTOM
    left = 180
    width = _WIDTH - left - _RIGHT
    slot = width / max(len(windows), 1)
    parts = [_svg_open("segments", "worst drift per segment slice and window", height)]
    for row, name in enumerate(names):
        y = _TOP + row * row_height
        parts.append(
            f'<text x="{left - 6}" y="{y + row_height * 0.7:.1f}" class="tick" '
            f'text-anchor="end">{_text(name)}</text>'
        )
        for index, window in enumerate(windows):
            drift = [
                m
                for m in window.segments.get(name, ())
                if m.kind in _DRIFT_KINDS and m.primary and m.value is not None and m.threshold
            ]
            worst = max(drift, key=lambda m: (m.value or 0.0) / (m.threshold or 1.0), default=None)
            statuses = [m.status for m in drift]
            status = next(
                (s for s in ("critical", "warning", "ok") if s in statuses),
                "no value",
            )
            colour = _heat_colour(
                worst.value if worst else None, worst.threshold if worst else None
            )
            bad = sorted({m.feature or "" for m in drift if m.status in ("warning", "critical")})
            tip = f"{name} {_time(window.start)}: {status}"
            if worst is not None:
                tip += f"; worst {worst.feature} {worst.metric} {_number(worst.value)}"
            if bad:
                tip += f"; drifted: {', '.join(bad)}"
            parts.append(_cell(left + index * slot, y, slot, row_height, colour, status, tip, name))
    bottom = _TOP + row_height * len(names)
    parts += _window_ticks(windows, left, slot, bottom)
    parts.append("</svg>")
    caption = (
        '<p class="caption">Each slice is compared with its own reference; colour: its '
        "worst drift statistic relative to its threshold; outlined cells had a feature "
        "with a warning or critical status (hover for which).</p>"
    )
    return "".join(parts) + caption


def _bar_plot(
    name: str,
    title: str,
    windows: Sequence[ReportWindow],
    values: Sequence[float | None],
    high: float,
    y_format: str,
    colour: str,
) -> str:
    frame = _Frame(len(windows), 0.0, high)
    parts = [_svg_open(name, title), _axes(frame, windows, y_format)]
    bar = max(frame.slot() * 0.8, 1.0)
    for index, value in enumerate(values):
        shown = (
            "no value"
            if value is None
            else (f"{value:.1%}" if y_format == "percent" else _number(value))
        )
        tip = f"{_time(windows[index].start)}: {shown}"
        if value is None:
            parts.append(
                f'<text x="{frame.x(index):.1f}" y="{frame.y(0) - 4:.1f}" class="tick" '
                f'text-anchor="middle">n/a<title>{_text(tip)}</title></text>'
            )
            continue
        top = frame.y(value)
        parts.append(
            f'<rect x="{frame.x(index) - bar / 2:.1f}" y="{top:.1f}" width="{bar:.1f}" '
            f'height="{frame.y(0) - top:.1f}" fill="{colour}" class="bar">'
            f"<title>{_text(tip)}</title></rect>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _coverage_plot(windows: Sequence[ReportWindow]) -> str:
    values = [w.label_coverage for w in windows]
    if all(v is None for v in values):
        return _no_data("No label coverage recorded in these windows.")
    return _bar_plot(
        "label-coverage", "label coverage per window", windows, values, 1.0, "percent", "#5c6bc0"
    )


def _volume_plot(windows: Sequence[ReportWindow]) -> str:
    values = [float(w.predictions) for w in windows]
    if not any(values):
        return _no_data("No predictions stored for these windows.")
    return _bar_plot(
        "volume", "predictions per window", windows, values, max(values) * 1.1, "number", "#26a69a"
    )


# --------------------------------------------------------------------------- tables


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], css: str) -> str:
    head = "".join(f"<th>{_text(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _badge(status: str) -> str:
    return f'<span class="badge {_status_class(status)}">{_text(status)}</span>'


def _alerts_table(alerts: Sequence[AlertRow]) -> str:
    if not alerts:
        return _no_data("No alerts for these windows.")
    rows = [
        (
            _text(_time(a.opened_at)),
            _text(f"{_time(a.window_start)} \u2192 {_time(a.window_end)}"),
            _text(a.kind),
            _text(a.feature),
            _text(a.segment or "whole model"),
            _text(a.statistic),
            _number(a.value),
            _number(a.threshold),
            _number(a.p_value),
            _badge(a.severity),
            _text(a.model_version),
            f"<code>{_text(a.alert_id)}</code>",
        )
        for a in alerts
    ]
    headers = (
        "opened",
        "window",
        "kind",
        "feature",
        "segment",
        "statistic",
        "value",
        "threshold",
        "p-value",
        "severity",
        "version",
        "alert id",
    )
    return _table(headers, rows, "alerts")


def _metrics_list(metrics: dict[str, float]) -> str:
    if not metrics:
        return "\u2014"
    return "<br>".join(f"{_text(k)} = {_number(v)}" for k, v in sorted(metrics.items()))


def _versions_table(versions: Sequence[VersionRow]) -> str:
    if not versions:
        return _no_data("No model versions recorded for this model.")
    rows = [
        (
            f"<code>{_text(v.version)}</code>",
            _text(v.parent_version),
            _badge(v.status),
            _text(v.decision or None),
            _metrics_list(v.metrics),
            _text(f"{_number(v.train_rows)} / {_number(v.holdout_rows)}"),
            _text(f"{v.training_seconds:.1f} s" + (f" on {v.device}" if v.device else "")),
            _text(f"{_time(v.data_from)} \u2192 {_time(v.data_to)}"),
            _text(_time(v.created_at)),
            _text(v.request_id),
            _text(len(v.alert_ids)),
        )
        for v in versions
    ]
    headers = (
        "version",
        "parent",
        "status",
        "decision",
        "metrics",
        "train / holdout rows",
        "training",
        "data",
        "created",
        "retrain request",
        "alerts",
    )
    return _table(headers, rows, "versions")


# --------------------------------------------------------------------------- the page

_STYLE: Final = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #212121; background: #fafafa; }
h1 { font-size: 22px; margin-bottom: 4px; }
h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.summary { color: #555; margin: 0 0 8px 0; }
.plot { display: block; background: #fff; border: 1px solid #e0e0e0;
        max-width: 100%; height: auto; }
.axis { stroke: #616161; stroke-width: 1; }
.grid { stroke: #eeeeee; stroke-width: 1; }
.tick { font-size: 11px; fill: #616161; }
.series { fill: none; stroke: #1e88e5; stroke-width: 2; }
.threshold { fill: none; stroke: #c62828; stroke-width: 1.5; stroke-dasharray: 6 4; }
.reference { fill: none; stroke: #757575; stroke-width: 1.5; stroke-dasharray: 2 3; }
.threshold-label { font-size: 11px; fill: #c62828; }
.critical { fill: none; stroke: #6a1b9a; stroke-width: 1.5; stroke-dasharray: 2 3; }
.critical-label { font-size: 11px; fill: #6a1b9a; }
.reference-label { font-size: 11px; fill: #757575; }
.estimated { fill: none; stroke: #1565c0; stroke-width: 1.5; stroke-dasharray: 6 3; }
.estimated-label { font-size: 11px; fill: #1565c0; }
.caption { color: #616161; font-size: 12px; margin: 4px 0 0 0; }
.no-data { color: #757575; font-style: italic; background: #f0f0f0; padding: 12px; }
table { border-collapse: collapse; font-size: 12px; background: #fff; }
th, td { border: 1px solid #e0e0e0; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f5f5f5; }
.badge { padding: 1px 6px; border-radius: 8px; color: #fff; background: #546e7a; }
.badge.ok, .badge.champion { background: #2e7d32; }
.badge.warning, .badge.candidate { background: #f9a825; color: #212121; }
.badge.critical, .badge.rejected, .badge.rolled_back { background: #c62828; }
"""

# Records script errors, failed loads and policy violations on <body data-errors>,
# and how many plots were laid out on <body data-plots-drawn> once loaded.
_WATCHDOG: Final = """
(function () {
  var errors = [];
  function record(message) {
    errors.push(message);
    document.body.setAttribute("data-errors", errors.join(" | "));
  }
  window.addEventListener("error", function (event) {
    var target = event.target;
    if (target && target !== window && target.tagName) {
      record("failed to load " + target.tagName.toLowerCase() + " " +
             (target.currentSrc || target.src || target.href || ""));
    } else {
      record("script error: " + event.message);
    }
  }, true);
  window.addEventListener("unhandledrejection", function (event) {
    record("unhandled rejection: " + event.reason);
  });
  document.addEventListener("securitypolicyviolation", function (event) {
    record("blocked by the content security policy: " + event.blockedURI);
  });
  window.addEventListener("load", function () {
    var plots = document.querySelectorAll("svg.plot");
    var drawn = 0;
    for (var i = 0; i < plots.length; i++) {
      var box = plots[i].getBoundingClientRect();
      if (box.width > 0 && box.height > 0) { drawn++; }
    }
    document.body.setAttribute("data-plots-drawn", String(drawn));
  });
})();
"""

_POLICY: Final = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"
)


def _summary(data: ReportData) -> str:
    windows = data.windows
    versions = sorted({w.model_version for w in windows})
    span = (
        f"{_count(len(windows), 'window')} from {_time(windows[0].start)} "
        f"to {_time(windows[-1].end)} UTC"
        if windows
        else "no windows"
    )
    critical = sum(1 for a in data.alerts if a.severity == "critical")
    return (
        f'<p class="summary">{_text(span)}; versions in these windows: '
        f"{_text(', '.join(versions) or 'none')}; {_count(len(data.alerts), 'alert')} "
        f"({critical} critical); {_count(len(data.versions), 'model version')} recorded. "
        f"Generated {_text(_time(data.generated_at))} UTC.</p>"
    )


def render_report(data: ReportData) -> str:
    """The HTML page of ``data`` (a complete document, nothing loaded from elsewhere).

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> w = ReportWindow(model_version="v1", start=at, end=at, predictions=10,
    ...                  metrics=(WindowMetric(kind="data_drift", metric="psi",
    ...                                        feature="<b>", value=0.1, threshold=0.25),))
    >>> page = render_report(ReportData(model_id="m", generated_at=at, windows=(w,)))
    >>> 'data-plot="drift"' in page, "<b>" in page, "&lt;b&gt;" in page
    (True, False, True)
    """
    windows = list(data.windows)
    if windows:
        plots = (
            ("Performance", _performance_plot(windows)),
            ("Drift per feature", _drift_heatmap(windows)),
            ("Drift per segment", _segment_heatmap(windows)),
            ("Label coverage", _coverage_plot(windows)),
            ("Volume", _volume_plot(windows)),
        )
    else:
        empty = _no_data("No windows closed for this model yet.")
        plots = (
            ("Performance", empty),
            ("Drift per feature", empty),
            ("Drift per segment", empty),
            ("Label coverage", empty),
            ("Volume", empty),
        )
    sections = "".join(
        f'<section id="{title.lower().replace(" ", "-")}"><h2>{title}</h2>{body}</section>'
        for title, body in (
            *plots,
            ("Alerts", _alerts_table(data.alerts)),
            ("Model versions", _versions_table(data.versions)),
            ("Rollouts", rollouts_section(data.rollouts)),
        )
    )
    title = f"driftline report: {data.model_id}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_text(title)}</title><style>{_STYLE}</style></head>"
        f'<body data-errors=""><script>{_WATCHDOG}</script>'
        f"<h1>{_text(title)}</h1>{_summary(data)}{sections}</body></html>\n"
    )
