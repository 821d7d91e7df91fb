"""Verdicts: the four outcomes of every check, and how a value is graded."""

from __future__ import annotations

from typing import Final, Literal, TypeAlias

__all__ = ["SEVERITY_RANK", "Verdict", "grade", "worst"]

#: ``ok`` / ``warning`` / ``critical``, or ``insufficient`` when too few samples.
Verdict: TypeAlias = Literal["ok", "warning", "critical", "insufficient"]

#: Order used to compare verdicts; ``insufficient`` ranks below ``ok``.
SEVERITY_RANK: Final[dict[str, int]] = {"insufficient": -1, "ok": 0, "warning": 1, "critical": 2}


def grade(value: float, warning: float, critical: float) -> Verdict:
    """Grade a value where larger is worse.

    Examples
    --------
    >>> grade(0.05, 0.1, 0.25), grade(0.1, 0.1, 0.25), grade(0.3, 0.1, 0.25)
    ('ok', 'warning', 'critical')
    """
    if value >= critical:
        return "critical"
    if value >= warning:
        return "warning"
    return "ok"


def worst(verdicts: list[Verdict]) -> Verdict:
    """The most severe verdict of a list (``insufficient`` for an empty list).

    Examples
    --------
    >>> worst(["ok", "critical", "warning"])
    'critical'
    """
    out: Verdict = "insufficient"
    for verdict in verdicts:
        if SEVERITY_RANK[verdict] > SEVERITY_RANK[out]:
            out = verdict
    return out
