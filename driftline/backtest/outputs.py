"""What a backtest writes: the lines of ``metrics.jsonl``, ``summary.json`` and the files.

The models here are the files' contracts (see :mod:`driftline.backtest`, Outputs);
:func:`write_outputs` writes every file of a run at once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from pydantic import BaseModel, ConfigDict

from driftline.detectors import MetricRow, ModelProfile, WindowReport
from driftline.detectors.promotion import RolloutRecord

__all__ = [
    "ALERTS_FILE",
    "METRICS_FILE",
    "PROFILE_FILE",
    "RETRAIN_FILE",
    "ROLLOUTS_FILE",
    "SUMMARY_FILE",
    "BacktestInputError",
    "BacktestSummary",
    "MetricLine",
    "RolloutLine",
    "metric_line",
    "rollout_line",
    "write_outputs",
]

#: Files written to the output directory.
ALERTS_FILE: Final = "alerts.jsonl"
METRICS_FILE: Final = "metrics.jsonl"
RETRAIN_FILE: Final = "retrain_requests.jsonl"
ROLLOUTS_FILE: Final = "rollouts.jsonl"
PROFILE_FILE: Final = "profile.json"
SUMMARY_FILE: Final = "summary.json"


class BacktestInputError(ValueError):
    """Bad input to a backtest; the message says which file (and line) and why."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MetricLine(_Frozen):
    """One line of ``metrics.jsonl``: a metric row of one window.

    ``threshold`` is the critical threshold on a critical row and the warning threshold
    otherwise; ``warning`` and ``critical`` are both levels the row was judged by (with
    learned thresholds they change from window to window); ``primary`` is false for
    performance metrics other than the configured one (the policy ignores them).
    ``feature`` is the feature of data drift and data quality rows,
    ``prediction``/``score`` for prediction drift, null for performance.

    Examples
    --------
    >>> line = MetricLine(model_id="credit", model_version="v1",
    ...     window_start="2026-01-01T00:00:00Z", window_end="2026-01-01T01:00:00Z",
    ...     revision=0, kind="data_drift", metric="psi", feature="income", value=0.31,
    ...     p_value=1e-9, q_value=1e-8, reference=None, threshold=0.25, status="critical",
    ...     n=2000, label_coverage=None, primary=True)
    >>> line.model_dump(mode="json")["window_start"]
    '2026-01-01T00:00:00Z'
    """

    model_id: str
    model_version: str
    window_start: datetime
    window_end: datetime
    revision: int
    kind: str
    metric: str
    feature: str | None
    value: float | None
    p_value: float | None
    q_value: float | None
    reference: float | None
    threshold: float
    status: str
    n: int
    label_coverage: float | None
    primary: bool
    warning: float | None = None
    critical: float | None = None
    #: The segment slice (``{"country": "de"}``), null for the whole model.
    segment: dict[str, str] | None = None
    #: A 95% interval of the value where one is stated (estimated performance).
    lower: float | None = None
    upper: float | None = None


class RolloutLine(_Frozen):
    """One line of ``rollouts.jsonl``: a rollout decision, at the window it was taken.

    ``mode`` is the phase the decision was taken in (``shadow``, ``canary``, or
    ``watch`` for a rollback); ``traffic`` is the challenger's share after it;
    ``estimate``, ``lower`` and ``upper`` bound challenger minus champion on ``metric``
    over the ``n`` labelled pairs (or labels per arm) of the phase; ``decision_id`` is
    the idempotency key the streaming monitor publishes it under.

    Examples
    --------
    >>> line = RolloutLine(model_id="m", champion="v1", challenger="v2", mode="shadow",
    ...     decision="step", traffic=0.05, window_start="2026-01-01T00:00:00Z",
    ...     metric="accuracy", estimate=0.03, lower=0.001, upper=0.06, n=2400,
    ...     reason="not_worse", decision_id="0" * 32)
    >>> line.model_dump(mode="json")["window_start"]
    '2026-01-01T00:00:00Z'
    """

    model_id: str
    champion: str
    challenger: str
    mode: str
    decision: str
    traffic: float
    window_start: datetime
    metric: str
    estimate: float
    lower: float
    upper: float
    n: int
    reason: str
    decision_id: str


def rollout_line(record: RolloutRecord) -> bytes:
    """The ``rollouts.jsonl`` line (no newline) of one decision."""
    fields = record.model_dump(exclude={"window_start"})
    return RolloutLine(**fields, window_start=utc(record.window_start)).model_dump_json().encode()


class FileSummary(_Frozen):
    """What one input file held (rows of the monitor's model, after deduplication)."""

    lines: int
    predictions: int
    labelled: int
    label_coverage: float
    model_versions: dict[str, int]
    first_timestamp: datetime | None
    last_timestamp: datetime | None


class InputProblems(_Frozen):
    """Input that was skipped or coerced, per file."""

    other_model_predictions: int = 0
    other_model_labels: int = 0
    duplicate_predictions: int = 0
    duplicate_labels: int = 0
    unmatched_labels: int = 0
    wrong_kind_values: int = 0
    unknown_features: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        """Rows and values skipped or coerced."""
        return (
            self.other_model_predictions
            + self.other_model_labels
            + self.duplicate_predictions
            + self.duplicate_labels
            + self.unmatched_labels
            + self.wrong_kind_values
        )


class WindowSummary(_Frozen):
    """The evaluated windows."""

    count: int
    first_start: datetime | None
    last_end: datetime | None
    by_status: dict[str, int]


class AlertSummary(_Frozen):
    """Alerts raised; ``by_kind``/``by_severity`` count alerts by their final state."""

    total: int
    opened: int
    escalated: int
    resolved: int
    open_at_end: int
    by_kind: dict[str, int]
    by_severity: dict[str, int]


class RetrainSummary(_Frozen):
    """Retrain requests, and triggers that asked for none."""

    requests: int
    too_few_labels: int
    cooldown: int
    #: Requests skipped beyond ``retrain.max_per_day`` (a backtest trains nothing, so
    #: the training-seconds budget never binds there).
    budget: int = 0


class BacktestSummary(_Frozen):
    """``summary.json``: what a backtest read and what it found.

    Examples
    --------
    >>> [name for name in BacktestSummary.model_fields][:4]
    ['model_id', 'model_version', 'task', 'window_seconds']
    """

    model_id: str
    model_version: str
    task: str
    window_seconds: float
    allowed_lateness_seconds: float
    revision: int
    reference: FileSummary
    events: FileSummary
    windows: WindowSummary
    metric_rows: int
    alerts: AlertSummary
    retrain: RetrainSummary
    input_problems: dict[str, InputProblems]
    input_problems_total: int
    #: Rollout decisions written to ``rollouts.jsonl`` (``None``: no rollout configured).
    rollout_decisions: int | None = None


def utc(seconds: float) -> datetime:
    """The UTC datetime of epoch seconds.

    Examples
    --------
    >>> utc(1767225600.0).isoformat()
    '2026-01-01T00:00:00+00:00'
    """
    return datetime.fromtimestamp(seconds, tz=UTC)


def metric_line(report: WindowReport, row: MetricRow) -> bytes:
    """The ``metrics.jsonl`` line (no newline) of one row of a window's report."""
    return (
        MetricLine(
            model_id=report.model_id,
            model_version=report.model_version,
            window_start=utc(report.window_start),
            window_end=utc(report.window_end),
            revision=report.revision,
            kind=row.kind,
            metric=row.metric,
            feature=row.feature,
            value=row.value,
            p_value=row.p_value,
            q_value=row.q_value,
            reference=row.reference,
            threshold=row.threshold,
            warning=row.warning,
            critical=row.critical,
            status=row.status,
            n=row.n,
            label_coverage=row.label_coverage,
            primary=row.primary,
            segment=row.segment,
            lower=row.lower,
            upper=row.upper,
        )
        .model_dump_json()
        .encode()
    )


def write_outputs(
    out: Path,
    *,
    metric_lines: list[bytes],
    alert_lines: list[bytes],
    request_lines: list[bytes],
    profile: ModelProfile,
    summary: BacktestSummary,
    rollout_lines: list[bytes] | None = None,
) -> None:
    """Write every output file of a backtest into ``out`` (created if needed).

    Raises
    ------
    BacktestInputError
        When the directory or a file cannot be written.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        _write_lines(out / METRICS_FILE, metric_lines)
        _write_lines(out / ALERTS_FILE, alert_lines)
        _write_lines(out / RETRAIN_FILE, request_lines)
        if rollout_lines is not None:
            _write_lines(out / ROLLOUTS_FILE, rollout_lines)
        (out / PROFILE_FILE).write_text(profile.model_dump_json(indent=2) + "\n", encoding="utf-8")
        (out / SUMMARY_FILE).write_text(summary.model_dump_json(indent=2) + "\n", encoding="utf-8")
    except OSError as error:
        raise BacktestInputError(f"cannot write to {out}: {error.strerror}") from None


def _write_lines(path: Path, lines: list[bytes]) -> None:
    with open(path, "wb") as handle:
        for line in lines:
            handle.write(line)
            handle.write(b"\n")
