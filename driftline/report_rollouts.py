"""The rollouts part of ``report.html``: each challenger's confidence sequence over the
windows the monitor judged, with the margin and the decisions.

Rows come from ``rollout_windows`` (written by the streaming monitor, see
:mod:`driftline.streams.rollouts`); one chart per challenger: the band between the
lower and upper bounds of challenger minus champion, the estimate, the ``-margin``
line the bounds are compared with, and a marker with the decision where one was taken.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict

__all__ = ["RolloutPoint", "load_rollouts", "rollouts_section"]

_WIDTH: Final = 960
_HEIGHT: Final = 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 16, 40
_DECISION_COLOURS: Final = {
    "promote": "#2e7d32",
    "step": "#1565c0",
    "reject": "#c62828",
    "rollback": "#c62828",
}


class RolloutPoint(BaseModel):
    """One judged window of a rollout.

    Examples
    --------
    >>> at = datetime(2026, 1, 1, tzinfo=UTC)
    >>> RolloutPoint(champion="v1", challenger="v2", phase="shadow", traffic=0.0,
    ...     window_start=at, estimate=0.03, lower=-0.01, upper=0.07, n=900,
    ...     margin=0.01, decision="", reason="").phase
    'shadow'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    champion: str
    challenger: str
    phase: str
    traffic: float
    window_start: datetime
    estimate: float
    lower: float
    upper: float
    n: int
    margin: float
    decision: str
    reason: str


def load_rollouts(source: Any, model_sql: str, limit: int = 2000) -> list[RolloutPoint]:
    """The judged windows of the model (``model_sql``: a SQL expression of its id), in
    challenger and time order, the newest ``limit`` at most."""
    rows = source.query(
        "SELECT champion, challenger, phase, traffic, "
        "toUnixTimestamp64Micro(window_start) AS ws, estimate, lower, upper, n, margin, "
        f"decision, reason FROM rollout_windows FINAL WHERE model_id = {model_sql} "
        f"ORDER BY window_start DESC LIMIT {int(limit)}"
    )
    points = [
        RolloutPoint(
            champion=str(r["champion"]),
            challenger=str(r["challenger"]),
            phase=str(r["phase"]),
            traffic=float(r["traffic"]),
            window_start=datetime.fromtimestamp(int(r["ws"]) / 1e6, UTC),
            estimate=float(r["estimate"]),
            lower=float(r["lower"]),
            upper=float(r["upper"]),
            n=int(r["n"]),
            margin=float(r["margin"]),
            decision=str(r["decision"]),
            reason=str(r["reason"]),
        )
        for r in rows
    ]
    return sorted(points, key=lambda p: (p.challenger, p.window_start))


def _chart(points: Sequence[RolloutPoint]) -> str:
    first = points[0]
    low = min(-first.margin, *(max(p.lower, -1.0) for p in points))
    high = max(0.0, *(min(p.upper, 1.0) for p in points))
    pad = (high - low) * 0.05 or 0.05
    low, high = low - pad, high + pad
    width = _WIDTH - _LEFT - _RIGHT
    inner = _HEIGHT - _TOP - _BOTTOM

    def x(i: int) -> float:
        return _LEFT + (i + 0.5) * width / len(points)

    def y(value: float) -> float:
        share = (min(max(value, low), high) - low) / (high - low)
        return _TOP + (1.0 - share) * inner

    band = " ".join(f"{x(i):.1f},{y(p.upper):.1f}" for i, p in enumerate(points))
    band += " " + " ".join(
        f"{x(i):.1f},{y(p.lower):.1f}" for i, p in reversed(list(enumerate(points)))
    )
    line = " ".join(f"{x(i):.1f},{y(p.estimate):.1f}" for i, p in enumerate(points))
    title = f"{first.challenger} - {first.champion}"
    parts = [
        f'<svg class="plot" data-plot="rollout" role="img" viewBox="0 0 {_WIDTH} {_HEIGHT}" '
        f'width="{_WIDTH}" height="{_HEIGHT}"><title>{html.escape(title)}</title>'
        f'<rect x="0" y="0" width="{_WIDTH}" height="{_HEIGHT}" fill="#ffffff"/>',
        f'<polygon points="{band}" fill="#90caf9" fill-opacity="0.5"/>',
        f'<polyline points="{line}" fill="none" stroke="#1565c0" stroke-width="2"/>',
        f'<line x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{y(0.0):.1f}" y2="{y(0.0):.1f}" '
        'stroke="#9e9e9e"/>',
        f'<line x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{y(-first.margin):.1f}" '
        f'y2="{y(-first.margin):.1f}" stroke="#c62828" stroke-dasharray="6 4"/>',
        f'<text x="{_LEFT - 6}" y="{y(-first.margin) + 4:.1f}" class="tick" '
        f'text-anchor="end">-{first.margin:g}</text>',
        f'<text x="{_LEFT - 6}" y="{y(0.0) + 4:.1f}" class="tick" text-anchor="end">0</text>',
    ]
    for i, point in enumerate(points):
        if point.decision:
            colour = _DECISION_COLOURS.get(point.decision, "#424242")
            parts.append(
                f'<circle cx="{x(i):.1f}" cy="{y(point.estimate):.1f}" r="5" fill="{colour}">'
                f"<title>{html.escape(point.decision)} ({html.escape(point.reason)})</title>"
                "</circle>"
                f'<text x="{x(i):.1f}" y="{_TOP + inner + 16}" class="tick" '
                f'text-anchor="middle">{html.escape(point.decision)}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def rollouts_section(points: Sequence[RolloutPoint]) -> str:
    """The HTML of the rollouts part: one chart and one line of decisions per challenger.

    Examples
    --------
    >>> rollouts_section([])
    '<p class="no-data">No rollout judged for this model.</p>'
    """
    if not points:
        return '<p class="no-data">No rollout judged for this model.</p>'
    out = []
    by_challenger: dict[str, list[RolloutPoint]] = {}
    for point in points:
        by_challenger.setdefault(point.challenger, []).append(point)
    for challenger, series in by_challenger.items():
        decisions = [
            f"{p.decision} at {p.window_start:%Y-%m-%d %H:%M} ({p.reason}; {p.phase}; "
            f"{p.estimate:+.4f} in [{p.lower:+.4f}, {p.upper:+.4f}], n={p.n})"
            for p in series
            if p.decision
        ]
        out.append(
            f"<h3>{html.escape(challenger)} against {html.escape(series[0].champion)}: "
            f"{len(series)} windows judged, margin {series[0].margin:g}</h3>"
            + _chart(series)
            + f'<p class="decisions">{html.escape("; ".join(decisions) or "no decision yet")}</p>'
        )
    return "".join(out)
