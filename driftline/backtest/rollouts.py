"""Replaying rollouts: the decisions the monitor would take on the versions of a file.

Runs only with a ``rollout`` section of mode ``shadow`` or ``canary``. The champion is
the reference's version (the profile's); every other version with predictions in the
events (served or shadow) is a challenger, taken one at a time in the order of its
first prediction (ties: by name). A challenger's rollout starts at the window of its
first prediction, in ``shadow`` when it only scored in shadow there, else in
``canary`` at the first share (the file says how it was deployed; the config gives
the rule). Then each window holding served predictions, oldest first, gives its
evidence (:func:`~driftline.detectors.comparison.window_evidence`, labels counted up to
the window's close) to the rollout policy
(:func:`~driftline.detectors.promotion.rollout_step`), the step the streaming monitor
runs. A promoted challenger becomes the champion that later challengers face; a
rolled back one gives the champion back to its parent. A challenger whose
predictions all come while another rollout runs waits for it to end, and starts at
the next window holding its predictions.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from driftline.detectors.comparison import VersionScores, WindowLabels, window_evidence
from driftline.detectors.promotion import (
    RolloutEvidence,
    RolloutRecord,
    RolloutState,
    rollout_step,
    start_rollout,
)
from driftline.detectors.windows import assign_windows
from driftline.schemas.monitor import MonitorConfig

from .reader import FileRows

__all__ = ["FileWindows", "replay_rollouts"]


def _scores(
    version: str,
    rows: FileRows,
    served_at: npt.NDArray[np.intp],
    shadow_at: npt.NDArray[np.intp],
    classes: bool = True,
) -> VersionScores:
    """``version``'s served rows at ``served_at`` and its shadow rows at ``shadow_at`` of
    events it did not serve itself."""
    shadow = rows.shadow
    served = served_at[rows.row_versions[served_at] == version]
    mine = shadow_at[shadow.versions[shadow_at] == version]
    mine = mine[~np.isin(shadow.event_ids[mine], rows.event_ids[served])]
    ids = np.concatenate([rows.event_ids[served], shadow.event_ids[mine]])
    order = np.argsort(ids, kind="stable")
    return VersionScores(
        event_ids=ids[order],
        predictions=np.concatenate(
            [rows.predictions[served], shadow.predictions[mine]]
            if not classes
            else [rows.predictions[served].astype(str), shadow.predictions[mine].astype(str)]
        )[order],
        served=np.concatenate([np.ones(served.size, bool), np.zeros(mine.size, bool)])[order],
        latency_ms=np.concatenate([rows.latency_ms[served], shadow.latency_ms[mine]])[order],
        scores=np.concatenate([rows.scores[served], shadow.scores[mine]])[order],
    )


class FileWindows:
    """A file's served and shadow rows by window, and the evidence of any two versions in
    any window (module docstring).

    Examples
    --------
    >>> from driftline.backtest.reader import RowReader
    >>> config = MonitorConfig(model_id="m", features={"x": "numeric"})
    >>> windows = FileWindows(config, RowReader(config).rows("events"))
    >>> windows.starts.tolist()
    []
    """

    def __init__(self, config: MonitorConfig, rows: FileRows) -> None:
        self.rows = rows
        self.classes = config.task != "regression"
        self.loss = config.rollout_metric
        self.loss_bound = config.rollout_loss_bound
        self.positive_label = config.performance.positive_label
        self.size = config.window_seconds
        self.lateness = config.allowed_lateness_seconds
        shadow = rows.shadow
        self.row_starts = assign_windows(rows.timestamps, self.size)
        #: Starts of the windows holding served predictions, oldest first.
        self.starts = np.unique(self.row_starts)
        # A shadow row belongs to the window of its event's served prediction.
        pos = np.minimum(np.searchsorted(rows.event_ids, shadow.event_ids), max(rows.n - 1, 0))
        self.has_served = (
            rows.event_ids[pos] == shadow.event_ids if rows.n else np.zeros(0, dtype=bool)
        )
        self.shadow_starts = np.full(shadow.event_ids.size, np.nan)
        self.shadow_starts[self.has_served] = self.row_starts[pos[self.has_served]]
        labelled = np.flatnonzero(rows.labelled)
        self.labels = WindowLabels(
            event_ids=rows.event_ids[labelled],
            labels=rows.labels[labelled].astype(str) if self.classes else rows.labels[labelled],
            times=rows.label_times[labelled],
        )

    def first_seen(self) -> dict[str, tuple[float, bool]]:
        """Each version's first window, and whether it only scored in shadow there."""
        rows, shadow = self.rows, self.rows.shadow
        first: dict[str, tuple[float, bool]] = {}
        for version in np.unique(rows.row_versions).tolist():
            first[version] = (float(self.row_starts[rows.row_versions == version].min()), False)
        for version in np.unique(shadow.versions[self.has_served]).tolist():
            mine = self.has_served & (shadow.versions == version)
            start = float(self.shadow_starts[mine].min())
            if version not in first or start < first[version][0]:
                first[version] = (start, True)
        return first

    def versions_in(self, start: float) -> set[str]:
        """The versions with a served or shadow prediction in the window."""
        found = set(self.rows.row_versions[self.row_starts == start].tolist())
        found.update(self.rows.shadow.versions[self.shadow_starts == start].tolist())
        return found

    def evidence(self, champion: str, challenger: str, start: float) -> RolloutEvidence:
        """The window's evidence of ``challenger`` against ``champion``."""
        rows, shadow = self.rows, self.rows.shadow
        served_at = np.flatnonzero(self.row_starts == start)
        served_at = served_at[np.isin(rows.row_versions[served_at], (champion, challenger))]
        shadow_at = np.flatnonzero(self.shadow_starts == start)
        shadow_at = shadow_at[np.isin(shadow.event_ids[shadow_at], rows.event_ids[served_at])]
        return window_evidence(
            _scores(champion, rows, served_at, shadow_at, self.classes),
            _scores(challenger, rows, served_at, shadow_at, self.classes),
            self.labels,
            label_deadline=start + self.size + self.lateness,
            loss_bound=self.loss_bound,
            loss=self.loss,
            positive_label=self.positive_label,
        )


def replay_rollouts(config: MonitorConfig, champion: str, rows: FileRows) -> list[RolloutRecord]:
    """Every rollout decision on the events' versions, in order (module docstring).

    Examples
    --------
    >>> from driftline.backtest.reader import RowReader
    >>> config = MonitorConfig(model_id="m", features={"x": "numeric"},
    ...                        rollout={"mode": "shadow"})
    >>> replay_rollouts(config, "v1", RowReader(config).rows("events"))
    []
    """
    rollout = config.rollout
    if rollout is None or rollout.mode == "direct" or rows.n == 0:
        return []
    metric = config.rollout_metric
    windows = FileWindows(config, rows)
    first = windows.first_seen()
    waiting = sorted((v for v in first if v != champion), key=lambda v: (first[v][0], v))
    records: list[RolloutRecord] = []
    state: RolloutState | None = None
    for start in windows.starts.tolist():
        end = start + windows.size
        if state is None:
            present = windows.versions_in(start)
            ready = [v for v in waiting if first[v][0] <= start and v in present]
            if ready:
                challenger = ready[0]
                waiting.remove(challenger)
                mode = "shadow" if first[challenger][1] else "canary"
                state = start_rollout(
                    rollout.model_copy(update={"mode": mode}),
                    model_id=config.model_id,
                    champion=champion,
                    challenger=challenger,
                    now=start,
                )
        if state is None:
            continue
        evidence = windows.evidence(state.champion, state.challenger, start)
        state, record = rollout_step(
            rollout, metric, state, evidence, window_start=start, window_end=end
        )
        if record is None:
            continue
        records.append(record)
        if record.decision == "promote":
            champion = record.challenger
        elif record.decision == "rollback":
            champion = record.champion
    return records
