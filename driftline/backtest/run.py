"""Running a backtest: the reference profile, then each window through the core's step.

Per evaluated window, oldest first: :func:`~driftline.detectors.aggregate_window`, then
the one window step the streaming monitor runs too
(:func:`~driftline.detectors.step.close_window`); see :mod:`driftline.backtest` for the
contract (Windows, Policy, Concept drift, Revisions).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from driftline.detectors import (
    Alert,
    ModelProfile,
    PolicyState,
    WindowData,
    aggregate_window,
)
from driftline.detectors.concept import concept_drift_detectors, concept_drift_step, label_order
from driftline.detectors.reference import monitor_profile
from driftline.detectors.step import Policies, close_window
from driftline.detectors.verdict import SEVERITY_RANK
from driftline.detectors.windows import assign_windows
from driftline.schemas.monitor import ALERT_KINDS, MonitorConfig, MonitorConfigError

from .outputs import (
    AlertSummary,
    BacktestInputError,
    BacktestSummary,
    FileSummary,
    RetrainSummary,
    WindowSummary,
    metric_line,
    rollout_line,
    utc,
    write_outputs,
)
from .reader import FileRows, read_rows
from .rollouts import replay_rollouts

__all__ = ["reference_profile", "run_backtest"]


def _load_config(monitor_path: Path) -> MonitorConfig:
    if not monitor_path.is_file():
        raise BacktestInputError(f"monitor file not found: {monitor_path}")
    try:
        return MonitorConfig.from_yaml(monitor_path)
    except MonitorConfigError as error:
        raise BacktestInputError(f"{monitor_path}: {error}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise BacktestInputError(f"cannot read monitor file {monitor_path}: {error}") from None


def _profile(config: MonitorConfig, ref: FileRows) -> ModelProfile:
    if ref.n == 0:
        raise BacktestInputError(
            f"reference file holds no predictions of model {config.model_id!r}"
        )
    versions = ref.versions
    version = min(versions, key=lambda v: (-versions[v], v))
    binary = config.task == "binary_classification"
    scores = ref.scores if binary and np.isfinite(ref.scores).any() else None
    features = {
        name: _with_nulls(values, ref.feature_nulls.get(name))
        for name, values in ref.features.items()
    }
    return monitor_profile(
        config,
        version,
        features=features,
        timestamps=ref.timestamps,
        predictions=ref.predictions,
        scores=scores,
        labels=_labels(ref.labels, ref.labelled) if ref.labelled.any() else None,
        segments=ref.segments,
        confidences=ref.confidence if ref.confidence.size else None,
    )


def _with_nulls(values: npt.NDArray[Any], null: npt.NDArray[np.bool_] | None) -> npt.NDArray[Any]:
    """A categorical column for the core: strings, or objects with ``None`` where null."""
    if null is None or not null.any():
        return values
    out = values.astype(object)
    out[null] = None
    return out


def _labels(labels: npt.NDArray[Any], labelled: npt.NDArray[np.bool_]) -> npt.NDArray[Any]:
    if labels.dtype.kind == "f":
        return labels
    return _with_nulls(labels, ~labelled)


@dataclass
class _Window:
    start: float
    end: float
    data: WindowData
    labelled: int


def _windows(config: MonitorConfig, profile: ModelProfile, rows: FileRows) -> Iterable[_Window]:
    """Aggregate every window holding predictions, oldest first."""
    size = config.window_seconds
    starts = assign_windows(rows.timestamps, size)
    order = np.argsort(starts, kind="stable")  # rows are in event-id order already
    sorted_starts = starts[order]
    unique_starts, first = np.unique(sorted_starts, return_index=True)
    bounds = np.append(first, sorted_starts.size)
    binary = config.task == "binary_classification"
    for i, start in enumerate(unique_starts.tolist()):
        idx = order[bounds[i] : bounds[i + 1]]
        features = {
            name: _with_nulls(values[idx], _part(rows.feature_nulls.get(name), idx))
            for name, values in rows.features.items()
        }
        labelled = rows.labelled[idx]
        scores = rows.scores[idx]
        data = aggregate_window(
            profile,
            features=features,
            predictions=rows.predictions[idx],
            scores=scores if binary and np.isfinite(scores).any() else None,
            labels=_labels(rows.labels[idx], labelled),
            positive_label=config.performance.positive_label,
            segments={key: values[idx] for key, values in rows.segments.items()},
            confidences=_finite(rows.confidence[idx]) if rows.confidence.size else None,
        )
        yield _Window(start, start + size, data, int(np.count_nonzero(labelled)))


def _finite(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64] | None:
    """``values``, or ``None`` when none is finite (a window without a score)."""
    return values if np.isfinite(values).any() else None


def _part(mask: npt.NDArray[np.bool_] | None, idx: npt.NDArray[np.intp]) -> Any:
    return None if mask is None else mask[idx]


def _concept_hits(config: MonitorConfig, rows: FileRows) -> dict[float, dict[str, int]]:
    """Detections per window start over every label of the file, in label order."""
    if config.concept_drift is None:
        return {}
    idx = np.flatnonzero(rows.labelled)
    idx = idx[label_order(rows.label_times[idx], rows.event_ids[idx])]
    starts = assign_windows(rows.timestamps, config.window_seconds)[idx]
    return concept_drift_step(
        config,
        concept_drift_detectors(config),
        predictions=rows.predictions[idx],
        labels=rows.labels[idx],
        window_starts=starts,
    )


def _file_summary(rows: FileRows) -> FileSummary:
    labelled = int(np.count_nonzero(rows.labelled))
    return FileSummary(
        lines=rows.lines,
        predictions=rows.n,
        labelled=labelled,
        label_coverage=labelled / rows.n if rows.n else 0.0,
        model_versions=rows.versions,
        first_timestamp=utc(float(rows.timestamps.min())) if rows.n else None,
        last_timestamp=utc(float(rows.timestamps.max())) if rows.n else None,
    )


def reference_profile(
    monitor_path: Path | str, reference_path: Path | str
) -> tuple[MonitorConfig, ModelProfile]:
    """The monitor config and the reference profile built from a reference JSONL file.

    The same reading and profiling as :func:`run_backtest`, so that a profile
    stored for the streaming monitor is the one a backtest compares against.

    Raises
    ------
    BacktestInputError
        On a bad monitor file or a bad reference line (naming the file and line).
    """
    config = _load_config(Path(monitor_path))
    return config, _profile(config, read_rows(Path(reference_path), "reference", config))


def run_backtest(
    monitor_path: Path | str,
    reference_path: Path | str,
    events_path: Path | str,
    out_dir: Path | str,
) -> BacktestSummary:
    """Run a backtest and write its outputs (see :mod:`driftline.backtest`).

    Raises
    ------
    BacktestInputError
        On bad input; nothing is written then.
    """
    config = _load_config(Path(monitor_path))
    ref = read_rows(Path(reference_path), "reference", config)
    events = read_rows(Path(events_path), "events", config)
    profile = _profile(config, ref)

    policies = Policies.from_config(config)
    state = PolicyState()
    lateness = config.allowed_lateness_seconds
    size = config.window_seconds
    metric_lines: list[bytes] = []
    alert_lines: list[bytes] = []
    request_lines: list[bytes] = []
    final: dict[str, Alert] = {}
    actions: Counter[str] = Counter()
    retrain_reasons: Counter[str] = Counter()
    window_status: Counter[str] = Counter()
    labelled_by_start: dict[float, int] = {}
    windows: list[_Window] = []
    hits = _concept_hits(config, events)
    for window in _windows(config, profile, events):
        windows.append(window)
        labelled_by_start[window.start] = window.labelled
        step = close_window(
            config,
            profile,
            policies,
            state,
            window.data,
            window_start=window.start,
            hits=hits.get(window.start, {}),
            labelled_by_start=labelled_by_start,
            now=window.end + lateness,
        )
        report = step.report
        metric_lines.extend(metric_line(report, row) for row in report.rows)
        worst = max(  # the whole model's status (slices have rows of their own)
            (r.status for r in report.rows if r.primary and r.segment is None),
            key=lambda s: SEVERITY_RANK[s],
            default="insufficient",
        )
        window_status[worst] += 1
        state = step.state
        for decision in step.decisions:
            actions[decision.action] += 1
            if decision.action in ("open", "escalate"):
                final[decision.alert.alert_id] = decision.alert
        alert_lines.extend(event.model_dump_json().encode() for event in step.alert_events)
        if step.request is not None:
            request_lines.append(step.request.model_dump_json().encode())
        elif step.reason != "no_trigger":
            retrain_reasons[step.reason] += 1

    rollout_lines: list[bytes] | None = None
    if config.rollout is not None and config.rollout.mode != "direct":
        records = replay_rollouts(config, profile.model_version, events)
        rollout_lines = [rollout_line(record) for record in records]
    summary = BacktestSummary(
        model_id=config.model_id,
        model_version=profile.model_version,
        task=config.task,
        window_seconds=size,
        allowed_lateness_seconds=lateness,
        revision=0,
        reference=_file_summary(ref),
        events=_file_summary(events),
        windows=WindowSummary(
            count=len(windows),
            first_start=utc(windows[0].start) if windows else None,
            last_end=utc(windows[-1].end) if windows else None,
            by_status={s: window_status[s] for s in ("ok", "warning", "critical", "insufficient")},
        ),
        metric_rows=len(metric_lines),
        alerts=AlertSummary(
            total=len(final),
            opened=actions["open"],
            escalated=actions["escalate"],
            resolved=actions["resolve"],
            open_at_end=len(state.open_alerts()),
            by_kind={k: sum(a.kind == k for a in final.values()) for k in ALERT_KINDS},
            by_severity={
                s: sum(a.severity == s for a in final.values()) for s in ("warning", "critical")
            },
        ),
        retrain=RetrainSummary(
            requests=len(request_lines),
            too_few_labels=retrain_reasons["too_few_labels"],
            cooldown=retrain_reasons["cooldown"],
            budget=retrain_reasons["budget"],
        ),
        input_problems={"reference": ref.problems, "events": events.problems},
        input_problems_total=ref.problems.total + events.problems.total,
        rollout_decisions=None if rollout_lines is None else len(rollout_lines),
    )
    write_outputs(
        Path(out_dir),
        metric_lines=metric_lines,
        alert_lines=alert_lines,
        request_lines=request_lines,
        profile=profile,
        summary=summary,
        rollout_lines=rollout_lines,
    )
    return summary
