"""``driftline backtest``: replay recorded events through the monitoring core.

A thin shell (DESIGN §2): JSONL files in, the pure core of
:mod:`driftline.detectors` in the middle, JSONL/JSON files out. The streaming monitor
runs the same core, so its final metrics must equal the ones written here.

Inputs
    ``--monitor`` is the model's monitor YAML (its ``reference`` key is ignored: the
    ``--reference`` file is the reference). ``--reference`` and ``--events`` hold one
    DESIGN §3 event per line: ``prediction``, ``prediction_batch``, ``feedback`` and
    ``feedback_batch`` in any order. A file is accepted exactly when the ingest worker
    would ingest each of its lines as a Kafka message
    (:func:`driftline.schemas.codec.decode_ingest`, same size limit); a bad line stops the
    backtest (streaming sends it to the DLQ instead). Single events and feedback batches
    skip the event models when column-wise checks, stricter than the models, pass; a
    line they refuse goes through the codec, which accepts it or names the problem.
Joining
    Feedback joins predictions of the *same file* by ``event_id``, wherever it sits in
    the file. A repeated ``event_id`` keeps its last occurrence in the file (the raw
    tables keep the last one ingested); the repeats are counted. Labels whose event
    id has no prediction are counted and ignored.
Other models
    Rows whose ``model_id`` is not the monitor's are skipped and counted (the topics
    are shared by models). A file that holds predictions, none of them of the
    monitor's model, is an input error: the monitor and the file do not belong together.
Model version
    The reference profile is built from every reference row of the model and carries
    the reference's most frequent ``model_version`` (ties: the smallest). Monitored
    rows of every version are compared with it; the rows per version are counted.
Coercion
    A value of the other kind than the config says (a string in a numeric feature, a
    string prediction of a regression model) is taken as null and counted; numbers in
    a categorical feature are categories (``1.0`` is ``"1"``). Feature names the
    config does not list are ignored and reported.
Windows
    Event-time tumbling windows of ``window`` seconds aligned to the epoch
    (:func:`~driftline.detectors.windows.assign_windows` over timestamps rounded to the
    microsecond); each prediction belongs to the window of its timestamp, and a
    window's performance uses the labels of its predictions. Only windows holding at
    least one prediction are evaluated, oldest first. Within a window rows are taken
    in ``event_id`` order, so that float sums do not depend on the order of the lines.
Policy
    Each window is closed by the core's one window step
    (:func:`~driftline.detectors.step.close_window`), as the streaming monitor closes
    it. The alert policy sees the windows in time order with ``now = window_end +
    allowed_lateness`` (the moment streaming would close the window), so ``opened_at``
    is deterministic. A retrain request asks for the data of the triggering alerts'
    run, ``[earliest triggering window start - (consecutive_windows - 1) * window,
    current window end)``, and counts the labelled rows of the evaluated windows in that
    range against ``retrain.min_labelled_rows``.
Concept drift (optional ``concept_drift`` section)
    Every labelled prediction of the model gives one error
    (:func:`~driftline.detectors.online.error_stream`), fed to the configured online
    detectors in **label order**: the label's feedback timestamp (rounded to the
    microsecond), then ``event_id`` (:func:`~driftline.detectors.concept.label_order`). A
    detection counts in the window of the labelled prediction's event time; every
    evaluated window gets one ``concept_drift`` row per detector (its detections there).
    One detector stream covers the model's rows of every version (streaming keeps one
    per version: they agree for a single version). The pure step
    (:func:`~driftline.detectors.concept.concept_drift_step`) is the one the streaming
    monitor runs.
Revisions
    A backtest knows every label, so each window is evaluated once, as revision 0, and
    that revision is final. Streaming writes revision 0 at window close and later
    revisions as late labels arrive; its last revision equals the backtest's revision 0.
Outputs (in ``--out``, created if needed)
    ``metrics.jsonl``
        One line per window x metric row of the report (:class:`MetricLine`), windows
        in time order, rows in report order.
    ``alerts.jsonl``
        :class:`~driftline.schemas.events.AlertEvent` JSON, in the order they were
        raised: a line when an alert opens, and a line with the same ``alert_id`` when a
        warning escalates to critical (the last line of an id is its final state).
        Resolutions are counted in the summary (an alert event has no status).
    ``retrain_requests.jsonl``
        :class:`~driftline.schemas.events.RetrainRequestEvent` JSON, in order.
    ``profile.json``
        The reference :class:`~driftline.detectors.profiles.ModelProfile`.
    ``summary.json``
        :class:`BacktestSummary`.
    Outputs are a pure function of the inputs: the same files give byte-identical
    outputs. The same events written as batches or as single events, or with their
    lines shuffled, give the same outputs too (bar the line counts of the summary),
    unless repeated event ids differ in content.
Exit codes (in :mod:`driftline.cli`)
    0 on success; 2 with one message on stderr for bad input
    (:class:`BacktestInputError`): a missing file, an invalid monitor config (naming
    the key), a bad line (naming ``path:line``), a file without rows of the model.
"""

from __future__ import annotations

import gc
import math
import operator
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain, repeat
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import orjson
from pydantic import BaseModel, ConfigDict

from driftline.detectors import (
    Alert,
    MetricRow,
    ModelProfile,
    PolicyState,
    WindowData,
    WindowReport,
    aggregate_window,
    build_profile,
)
from driftline.detectors.coerce import category_array, category_string
from driftline.detectors.concept import concept_drift_detectors, concept_drift_step, label_order
from driftline.detectors.step import Policies, close_window
from driftline.detectors.verdict import SEVERITY_RANK
from driftline.detectors.windows import assign_windows, to_microseconds
from driftline.schemas.codec import (
    DEFAULT_MAX_MESSAGE_BYTES,
    DecodeError,
    FeedbackColumns,
    PredictionColumns,
    decode_ingest,
    prediction_batch_columns,
)
from driftline.schemas.events import (
    EARLIEST_EPOCH,
    LATEST_EPOCH,
    MAX_BATCH_ROWS,
    MAX_FEATURES,
    MAX_ID_LENGTH,
    MAX_VALUE_LENGTH,
    FeedbackEvent,
    PredictionEvent,
)
from driftline.schemas.monitor import ALERT_KINDS, MonitorConfig, MonitorConfigError

__all__ = [
    "BacktestInputError",
    "BacktestSummary",
    "MetricLine",
    "reference_profile",
    "run_backtest",
]

#: Files written to the output directory.
ALERTS_FILE: Final = "alerts.jsonl"
METRICS_FILE: Final = "metrics.jsonl"
RETRAIN_FILE: Final = "retrain_requests.jsonl"
PROFILE_FILE: Final = "profile.json"
SUMMARY_FILE: Final = "summary.json"


class BacktestInputError(ValueError):
    """Bad input to a backtest; the message says which file (and line) and why."""


# --------------------------------------------------------------------------- outputs


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MetricLine(_Frozen):
    """One line of ``metrics.jsonl``: a metric row of one window.

    ``threshold`` is the critical threshold on a critical row and the warning threshold
    otherwise; ``primary`` is false for performance metrics other than the configured
    one (the policy ignores them). ``feature`` is the feature of data drift and data
    quality rows, ``prediction``/``score`` for prediction drift, null for performance.

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


# --------------------------------------------------------------------------- reading


@dataclass
class _Part:
    """Prediction rows of one line or of a run of single events, coerced to the config."""

    model_ids: str | npt.NDArray[Any]
    versions: str | npt.NDArray[Any]
    event_ids: npt.NDArray[Any]
    timestamps: npt.NDArray[np.float64]
    features: dict[str, npt.NDArray[Any]]
    predictions: npt.NDArray[Any]
    scores: npt.NDArray[np.float64]

    @property
    def size(self) -> int:
        return int(self.event_ids.size)


@dataclass
class _FeedbackPart:
    model_ids: str | npt.NDArray[Any]
    event_ids: npt.NDArray[Any]
    labels: npt.NDArray[Any]
    timestamps: npt.NDArray[np.float64]


@dataclass
class _Rows:
    """Rows of one file after filtering, deduplication and the label join.

    Rows are in ``event_id`` order. Classification predictions and labels are canonical
    category strings; ``labelled`` marks rows with a label.
    """

    event_ids: npt.NDArray[np.str_]
    timestamps: npt.NDArray[np.float64]
    versions: dict[str, int]
    features: dict[str, npt.NDArray[Any]]
    feature_nulls: dict[str, npt.NDArray[np.bool_] | None]
    predictions: npt.NDArray[Any]
    scores: npt.NDArray[np.float64]
    labels: npt.NDArray[Any]
    labelled: npt.NDArray[np.bool_]
    label_times: npt.NDArray[np.float64]
    lines: int
    problems: InputProblems

    @property
    def n(self) -> int:
        return int(self.event_ids.size)


@dataclass
class _Reader:
    """Accumulates the rows of one file, in file order.

    Batches become parts at once. Single events are gathered as the JSON objects they
    are, then checked and turned into columns a run at a time (:meth:`fold`), with no
    model and no array per event; the run is folded before any other line is decoded,
    so the first bad line of the file is the one reported.
    """

    config: MonitorConfig
    parts: list[_Part] = field(default_factory=list)
    feedback: list[_FeedbackPart] = field(default_factory=list)
    singles: list[dict[str, Any]] = field(default_factory=list)
    single_lines: list[int] = field(default_factory=list)
    labels: list[dict[str, Any]] = field(default_factory=list)
    label_lines: list[int] = field(default_factory=list)
    wrong_kind: int = 0
    unknown: set[str] = field(default_factory=set)
    lines: int = 0

    @property
    def classes(self) -> bool:
        return self.config.task != "regression"

    def add(self, item: PredictionColumns | FeedbackColumns) -> None:
        """Add a batch decoded by the codec."""
        self.fold()  # keep parts in file order
        if isinstance(item, PredictionColumns):
            self.parts.append(self._batch(item))
        else:
            self.feedback.append(
                _FeedbackPart(
                    model_ids=item.model_id,
                    event_ids=item.event_ids,
                    labels=self._value_column(item.label_value, item.label_class),
                    timestamps=np.asarray(item.timestamps, dtype=np.float64),
                )
            )

    def add_event(
        self, item: PredictionColumns | PredictionEvent | FeedbackColumns | FeedbackEvent
    ) -> None:
        """Add anything :func:`~driftline.schemas.codec.decode_ingest` returns."""
        if isinstance(item, PredictionEvent):
            self.fold()
            positive = self.config.performance.positive_label
            columns = _prediction_columns([_prediction_dict(item, positive)], check=False)
            assert columns is not None
            self.parts.append(self._singles(columns))
        elif isinstance(item, FeedbackEvent):
            self.fold()
            self.feedback.append(self._labels([_label_dict(item)]))
        else:
            self.add(item)

    def add_prediction(self, event: dict[str, Any], line: int) -> None:
        """Gather a single ``prediction`` object (checked when folded)."""
        self.singles.append(event)
        self.single_lines.append(line)
        if len(self.singles) >= _FOLD_ROWS:
            self.fold()

    def add_label(self, event: dict[str, Any], line: int) -> None:
        """Gather a single ``feedback`` object (checked when folded)."""
        self.labels.append(event)
        self.label_lines.append(line)
        if len(self.labels) >= _FOLD_ROWS:
            self.fold()

    def add_label_batch(
        self, model_id: str, event_ids: list[str], labels: list[Any], timestamps: list[Any]
    ) -> None:
        """Add a checked ``feedback_batch`` object."""
        self.fold()
        self.feedback.append(
            _FeedbackPart(
                model_ids=model_id,
                event_ids=_objects(event_ids),
                labels=self._mixed_column(labels),
                timestamps=np.array(timestamps, dtype=np.float64),
            )
        )

    # -- batches

    def _batch(self, cols: PredictionColumns) -> _Part:
        n = cols.rows
        features: dict[str, npt.NDArray[Any]] = {}
        for name, kind in self.config.features.items():
            if name in cols.numeric:
                features[name] = self._coerce_numbers(cols.numeric[name], kind)
            elif name in cols.categorical:
                features[name] = self._coerce_strings(cols.categorical[name], kind)
            else:
                features[name] = _null_column(kind, n)
        self.unknown.update((set(cols.numeric) | set(cols.categorical)) - set(self.config.features))
        return _Part(
            model_ids=cols.model_id,
            versions=cols.model_version,
            event_ids=cols.event_ids,
            timestamps=cols.timestamps,
            features=features,
            predictions=self._value_column(cols.prediction_value, cols.prediction_class),
            scores=np.full(n, np.nan) if cols.score is None else cols.score,
        )

    def _coerce_numbers(self, values: npt.NDArray[np.float64], kind: str) -> npt.NDArray[Any]:
        if kind == "numeric":
            return values
        strings, null = category_array(values)
        out = strings.astype(object)
        out[null] = None
        return out

    def _coerce_strings(self, values: npt.NDArray[Any], kind: str) -> npt.NDArray[Any]:
        if kind == "categorical":
            return values
        self.wrong_kind += int(np.count_nonzero(values != None))  # noqa: E711
        return np.full(values.size, np.nan)

    def _value_column(
        self, value: npt.NDArray[np.float64] | None, classes: npt.NDArray[Any] | None
    ) -> npt.NDArray[Any]:
        """Predictions or labels as numbers, or as strings (classes only; see ``_values``)."""
        if self.classes:
            column = value if value is not None else classes
            assert column is not None
            return column
        if value is not None:
            return value
        assert classes is not None
        self.wrong_kind += classes.size
        return np.full(classes.size, np.nan)

    # -- single events

    def fold(self) -> None:
        """Check the gathered single events and turn them into parts.

        Raises
        ------
        _LineError
            For the first line (in file order) the codec refuses.
        """
        if not self.singles and not self.labels:
            return
        # Copies: the lists themselves stay (``_read`` holds their append methods).
        singles, single_lines = self.singles[:], self.single_lines[:]
        labels, label_lines = self.labels[:], self.label_lines[:]
        for gathered in (self.singles, self.single_lines, self.labels, self.label_lines):
            gathered.clear()
        suspects: list[tuple[int, list[dict[str, Any]], int]] = []
        columns = _prediction_columns(singles, check=True) if singles else None
        if singles and columns is None:
            suspects += [
                (single_lines[i], singles, i)
                for i, obj in enumerate(singles)
                if _prediction_columns([obj], check=True) is None
            ]
        if labels and not _valid_labels(labels):
            suspects += [
                (label_lines[i], labels, i)
                for i, obj in enumerate(labels)
                if not _valid_labels([obj])
            ]
        positive = self.config.performance.positive_label
        for line, target, i in sorted(suspects, key=lambda s: s[0]):
            try:
                event = decode_ingest(orjson.dumps(target[i]))
            except DecodeError as error:
                raise _LineError(line, error) from None
            # Valid after all (the checks are stricter than the models): the model's view.
            if isinstance(event, PredictionEvent):
                target[i] = _prediction_dict(event, positive)
            elif isinstance(event, FeedbackEvent):
                target[i] = _label_dict(event)
        if singles:
            if columns is None:
                columns = _prediction_columns(singles, check=False)
            assert columns is not None
            self.parts.append(self._singles(columns))
        if labels:
            self.feedback.append(self._labels(labels))

    def _labels(self, events: list[dict[str, Any]]) -> _FeedbackPart:
        return _FeedbackPart(
            model_ids=_objects(list(map(_get("model_id"), events))),
            event_ids=_objects(list(map(_get("event_id"), events))),
            labels=self._mixed_column(list(map(_get("label"), events))),
            timestamps=np.array(list(map(_get("timestamp"), events)), dtype=np.float64),
        )

    def _mixed_column(self, values: list[Any]) -> npt.NDArray[Any]:
        """Predictions or labels of single events (numbers or strings, no nulls)."""
        kinds = set(map(type, values))
        if kinds <= _NUMBER_TYPES:
            return np.array(values, dtype=np.float64)
        if self.classes:
            return _objects([v if type(v) is str else category_string(float(v)) for v in values])
        if str in kinds:
            self.wrong_kind += sum(type(v) is str for v in values)
            values = [None if type(v) is str else v for v in values]
        return np.array(values, dtype=np.float64)

    def _singles(self, cols: _SingleColumns) -> _Part:
        n = len(cols.event_ids)
        features: dict[str, npt.NDArray[Any]] = {}
        for name, kind in self.config.features.items():
            values = cols.features.get(name)
            if values is None:
                features[name] = _null_column(kind, n)
                continue
            types = set(map(type, values))
            if kind == "numeric":
                if str in types:
                    self.wrong_kind += sum(type(v) is str for v in values)
                    values = [None if type(v) is str else v for v in values]
                features[name] = np.array(values, dtype=np.float64)  # None -> NaN
            elif types <= _STR_OR_NONE:
                features[name] = _objects(values)
            else:
                features[name] = _objects(
                    [
                        v if v is None or type(v) is str else category_string(float(v))
                        for v in values
                    ]
                )
        self.unknown.update(cols.features.keys() - self.config.features.keys())
        return _Part(
            model_ids=_objects(cols.model_ids),
            versions=_objects(cols.versions),
            event_ids=_objects(cols.event_ids),
            timestamps=np.array(cols.timestamps, dtype=np.float64),
            features=features,
            predictions=self._mixed_column(cols.predictions),
            scores=np.array(cols.scores, dtype=np.float64),
        )

    # -- the file's rows

    def rows(self, name: str) -> _Rows:
        """The file's rows of the monitor's model: filtered, deduplicated, joined."""
        self.fold()
        config = self.config
        model = config.model_id
        parts, feedback = self.parts, self.feedback
        kinds = config.features

        mine = _cat([_matches(p.model_ids, p.size, model) for p in parts], bool)
        n_mine = int(np.count_nonzero(mine))
        if mine.size and not n_mine:
            found = sorted(set().union(*(_distinct(p.model_ids) for p in parts)))
            raise BacktestInputError(
                f"{name} file holds no predictions of model {model!r} (it has: "
                f"{', '.join(found[:5])}); check the monitor's model_id"
            )
        raw_ids = _cat([p.event_ids for p in parts], object)[mine]
        fb_mine = _cat([_matches(f.model_ids, f.event_ids.size, model) for f in feedback], bool)
        raw_fb_ids = _cat([f.event_ids for f in feedback], object)[fb_mine]
        # numpy strings drop trailing NULs: ids holding one get a suffix (both sides).
        nul = _has_nul(raw_ids) or _has_nul(raw_fb_ids)
        ids = _id_strings(raw_ids, nul)
        # Keep the last occurrence of each event id; rows end up in event-id order.
        uids, keep = _last_occurrence(ids)
        keep = np.flatnonzero(mine)[keep]

        def take(arrays: list[npt.NDArray[Any]], dtype: Any) -> npt.NDArray[Any]:
            return _cat(arrays, dtype)[keep]

        timestamps = to_microseconds(take([p.timestamps for p in parts], np.float64))
        features: dict[str, npt.NDArray[Any]] = {}
        feature_nulls: dict[str, npt.NDArray[np.bool_] | None] = {}
        for fname, kind in kinds.items():
            if kind == "numeric":
                features[fname] = take([p.features[fname] for p in parts], np.float64)
            else:
                values = take([p.features[fname] for p in parts], object)
                features[fname], feature_nulls[fname] = _canonical(values)
        predictions = self._values([p.predictions for p in parts])[keep]
        vocabulary: dict[str, int] = {}
        codes = _cat([_codes(p.versions, p.size, vocabulary) for p in parts], np.int64)[keep]
        counts = np.bincount(codes, minlength=len(vocabulary))
        versions = {v: int(counts[c]) for v, c in sorted(vocabulary.items()) if counts[c]}

        fb_ids = _id_strings(raw_fb_ids, nul)
        fb_labels = self._values([f.labels for f in feedback])[fb_mine]
        fb_uids, fb_keep = _last_occurrence(fb_ids)
        fb_labels = fb_labels[fb_keep]
        fb_times = _cat([f.timestamps for f in feedback], np.float64)[fb_mine][fb_keep]
        pos = np.searchsorted(uids, fb_uids)
        matched = pos < uids.size
        matched[matched] = uids[pos[matched]] == fb_uids[matched]
        at = pos[matched]
        labelled = np.zeros(uids.size, dtype=bool)
        labelled[at] = True
        labels: npt.NDArray[Any]
        if self.classes:
            labels = np.zeros(uids.size, dtype=fb_labels.dtype if fb_labels.size else "U1")
        else:
            labels = np.full(uids.size, np.nan)
        labels[at] = fb_labels[matched]
        if not self.classes:
            labelled &= np.isfinite(labels)  # a string label of a regression model
        label_times = np.full(uids.size, np.nan)
        label_times[at] = to_microseconds(fb_times[matched])
        return _Rows(
            event_ids=uids,
            timestamps=timestamps,
            versions=versions,
            features=features,
            feature_nulls=feature_nulls,
            predictions=predictions,
            scores=take([p.scores for p in parts], np.float64),
            labels=labels,
            labelled=labelled,
            label_times=label_times,
            lines=self.lines,
            problems=InputProblems(
                other_model_predictions=int(mine.size) - n_mine,
                other_model_labels=int(fb_mine.size - np.count_nonzero(fb_mine)),
                duplicate_predictions=n_mine - int(uids.size),
                duplicate_labels=int(fb_ids.size - fb_uids.size),
                unmatched_labels=int(fb_uids.size - at.size),
                wrong_kind_values=self.wrong_kind,
                unknown_features=tuple(sorted(self.unknown)),
            ),
        )

    def _values(self, arrays: list[npt.NDArray[Any]]) -> npt.NDArray[Any]:
        """Predictions or labels of all parts: class strings, or numbers (regression)."""
        if not self.classes:
            return _cat(arrays, np.float64)
        if all(a.dtype.kind == "f" for a in arrays):
            return _number_classes(_cat(arrays, np.float64))
        return _cat(
            [_number_classes(a) if a.dtype.kind == "f" else a for a in arrays], object
        ).astype(str)


def _cat(arrays: list[npt.NDArray[Any]], dtype: Any) -> npt.NDArray[Any]:
    if not arrays:
        return np.empty(0, dtype=dtype)
    return np.concatenate(arrays) if len(arrays) > 1 else arrays[0]


def _matches(ids: str | npt.NDArray[Any], size: int, model: str) -> npt.NDArray[np.bool_]:
    if isinstance(ids, str):
        return np.full(size, ids == model)
    return np.asarray(ids == np.asarray(model, dtype=object), dtype=bool)  # no str_ cast


def _has_nul(ids: npt.NDArray[Any]) -> bool:
    return "\x00" in "".join(ids.tolist())


def _id_strings(ids: npt.NDArray[Any], suffix: bool) -> npt.NDArray[np.str_]:
    """Event ids as a numpy string array (suffixed with ``\x01`` when ``suffix``)."""
    if suffix:
        return np.array([i + "\x01" for i in ids.tolist()] or [""], dtype=str)[: ids.size]
    return ids.astype(str)


def _distinct(ids: str | npt.NDArray[Any]) -> set[str]:
    return {ids} if isinstance(ids, str) else set(ids.tolist())


def _codes(
    values: str | npt.NDArray[Any], size: int, vocabulary: dict[str, int]
) -> npt.NDArray[np.int64]:
    """Integer codes of a part's model versions (``vocabulary`` grows as needed)."""
    if isinstance(values, str):
        return np.full(size, vocabulary.setdefault(values, len(vocabulary)), dtype=np.int64)
    items = values.tolist()
    for value in dict.fromkeys(items):
        vocabulary.setdefault(value, len(vocabulary))
    return np.fromiter(map(vocabulary.__getitem__, items), np.int64, size)


def _objects(values: list[Any]) -> npt.NDArray[Any]:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _number_classes(values: npt.NDArray[np.float64]) -> npt.NDArray[np.str_]:
    """Category strings of numeric classes (``1.0`` is ``"1"``), converting each value once."""
    uniq, inverse = np.unique(values, return_inverse=True)
    table = np.array(category_array(uniq)[0].tolist() or [""])  # narrowest string dtype
    return table[inverse.reshape(-1)]


def _null_column(kind: str, n: int) -> npt.NDArray[Any]:
    if kind == "numeric":
        return np.full(n, np.nan)
    return np.full(n, None, dtype=object)


def _canonical(values: npt.NDArray[Any]) -> tuple[npt.NDArray[np.str_], npt.NDArray[np.bool_]]:
    """Category strings (``""`` where null) and the null mask of an object column."""
    null = values == None  # noqa: E711 - elementwise test
    if not null.any():
        return values.astype(str), null
    filled = values.copy()
    filled[null] = ""
    return filled.astype(str), null


def _last_occurrence(
    ids: npt.NDArray[np.str_],
) -> tuple[npt.NDArray[np.str_], npt.NDArray[np.intp]]:
    """Sorted unique ids and the index of the last occurrence of each."""
    if ids.size == 0:
        return ids, np.empty(0, dtype=np.intp)
    uniq, first_in_reversed = np.unique(ids[::-1], return_index=True)
    return uniq, ids.size - 1 - first_in_reversed


# --------------------------------------------------------------------------- fast checks
#
# Single events and feedback batches are checked here, a column at a time with C-level
# passes, instead of through a pydantic model per event. A check only ever *accepts*
# input that the event models accept (it is stricter than they are); what it does not
# accept is decoded by the codec, which then accepts it or raises the error that
# ingest raises.

_FOLD_ROWS: Final = 32_768
_get = operator.itemgetter
_NUMBER_TYPES: Final = frozenset({int, float})
_LABEL_TYPES: Final = frozenset({int, float, str})
_OPTIONAL_NUMBER_TYPES: Final = frozenset({int, float, type(None)})
_STR_OR_NONE: Final = frozenset({str, type(None)})
_VALUE_TYPES: Final = frozenset({int, float, str, type(None)})
_PREDICTION_REQUIRED: Final = frozenset(
    {"type", "event_id", "model_id", "model_version", "timestamp", "features", "prediction"}
)
_PREDICTION_ALLOWED: Final = _PREDICTION_REQUIRED | {"score", "latency_ms"}
_FEEDBACK_KEYS: Final = frozenset({"type", "event_id", "model_id", "timestamp", "label"})
_FEEDBACK_BATCH_KEYS: Final = frozenset({"type", "model_id", "event_ids", "timestamps", "labels"})


class _LineError(Exception):
    """A line the codec refuses."""

    def __init__(self, line: int, error: DecodeError) -> None:
        super().__init__(line, error)
        self.line = line
        self.error = error


def _identifier(value: Any) -> bool:
    return type(value) is str and 0 < len(value) <= MAX_ID_LENGTH


def _identifiers(values: list[Any], distinct: bool = False) -> bool:
    """Whether every value is an identifier (``distinct``: check each value once)."""
    if distinct:
        values = list(set(values)) if set(map(type, values)) == {str} else values
    if set(map(type, values)) != {str}:
        return False
    lengths = np.fromiter(map(len, values), np.intp, len(values))
    return bool(lengths.min() >= 1 and lengths.max() <= MAX_ID_LENGTH)


def _epochs(values: list[Any]) -> bool:
    if not set(map(type, values)) <= _NUMBER_TYPES:
        return False
    seconds = np.array(values, dtype=np.float64)
    return bool(((seconds >= EARLIEST_EPOCH) & (seconds < LATEST_EPOCH)).all())


def _texts(values: list[Any], kinds: set[type], limit: int) -> bool:
    """Whether the strings among the values are at most ``limit`` characters long."""
    return str not in kinds or max(len(v) for v in values if type(v) is str) <= limit


def _in_range(values: list[Any], low: float, high: float) -> bool:
    """Whether optional numbers (``None`` allowed) lie in ``[low, high]``."""
    if not set(map(type, values)) <= _OPTIONAL_NUMBER_TYPES:
        return False
    x = np.array(values, dtype=np.float64)  # None -> NaN
    x = x[~np.isnan(x)]
    return bool(((x >= low) & (x <= high)).all())


@dataclass
class _SingleColumns:
    """The fields of a run of single predictions, one list per field."""

    event_ids: list[Any]
    model_ids: list[Any]
    versions: list[Any]
    timestamps: list[Any]
    features: dict[str, list[Any]]
    predictions: list[Any]
    scores: list[Any]


def _prediction_columns(objs: list[dict[str, Any]], *, check: bool) -> _SingleColumns | None:
    """The columns of a run of ``prediction`` objects.

    With ``check``, ``None`` unless every object is certainly valid; without, the objects
    must be valid (they passed the check, or are the event model's view of one).
    """
    if check:
        for keys in set(map(tuple, objs)):
            if not (_PREDICTION_REQUIRED <= set(keys) <= _PREDICTION_ALLOWED):
                return None
    ids = list(map(_get("event_id"), objs))
    models = list(map(_get("model_id"), objs))
    versions = list(map(_get("model_version"), objs))
    times = list(map(_get("timestamp"), objs))
    dicts = list(map(_get("features"), objs))
    if check and not (
        _identifiers(ids)
        and _identifiers(models, distinct=True)
        and _identifiers(versions, distinct=True)
        and _epochs(times)
        and set(map(type, dicts)) == {dict}
        and max(map(len, dicts)) <= MAX_FEATURES
    ):
        return None
    names = set(chain.from_iterable(set(map(tuple, dicts))))
    features = {name: list(map(dict.get, dicts, repeat(name))) for name in sorted(names)}
    if check:
        if names and not _identifiers(list(names)):
            return None
        for values in features.values():
            kinds = set(map(type, values))
            if not (kinds <= _VALUE_TYPES and _texts(values, kinds, MAX_VALUE_LENGTH)):
                return None
    predictions = list(map(_get("prediction"), objs))
    scores = list(map(dict.get, objs, repeat("score")))
    if check:
        kinds = set(map(type, predictions))
        if not (
            kinds <= _LABEL_TYPES
            and _texts(predictions, kinds, MAX_VALUE_LENGTH)
            and _in_range(scores, 0.0, 1.0)
            and _in_range(list(map(dict.get, objs, repeat("latency_ms"))), 0.0, math.inf)
        ):
            return None
    return _SingleColumns(ids, models, versions, times, features, predictions, scores)


def _valid_labels(objs: list[dict[str, Any]]) -> bool:
    """Whether every ``feedback`` object of a run is certainly valid."""
    for keys in set(map(tuple, objs)):
        if set(keys) != _FEEDBACK_KEYS:
            return False
    labels = list(map(_get("label"), objs))
    kinds = set(map(type, labels))
    return (
        kinds <= _LABEL_TYPES
        and _texts(labels, kinds, MAX_ID_LENGTH)
        and _identifiers(list(map(_get("event_id"), objs)))
        and _identifiers(list(map(_get("model_id"), objs)), distinct=True)
        and _epochs(list(map(_get("timestamp"), objs)))
    )


def _quick_feedback_batch(obj: dict[str, Any]) -> bool:
    """Whether a ``feedback_batch`` object is certainly valid (epoch-second timestamps)."""
    if obj.keys() != _FEEDBACK_BATCH_KEYS or not _identifier(obj["model_id"]):
        return False
    ids, times, labels = obj["event_ids"], obj["timestamps"], obj["labels"]
    if not (type(ids) is list and type(times) is list and type(labels) is list):
        return False
    n = len(ids)
    if not (0 < n <= MAX_BATCH_ROWS and len(times) == n and len(labels) == n):
        return False
    if not (_identifiers(ids) and _epochs(times)):
        return False
    kinds = set(map(type, labels))
    return kinds <= _NUMBER_TYPES or (kinds == {str} and _texts(labels, kinds, MAX_ID_LENGTH))


def _prediction_dict(event: PredictionEvent, positive_label: str) -> dict[str, Any]:
    """A validated single prediction as the plain object the fast path gathers."""
    score = event.score
    if score is None and event.scores is not None:
        score = event.scores.get(positive_label)
    return {
        "event_id": event.event_id,
        "model_id": event.model_id,
        "model_version": event.model_version,
        "timestamp": event.timestamp.timestamp(),
        "features": event.features,
        "prediction": event.prediction,
        "score": score,
    }


def _label_dict(event: FeedbackEvent) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "model_id": event.model_id,
        "label": event.label,
        "timestamp": event.timestamp.timestamp(),
    }


def _parse(line: bytes) -> Any:
    """The JSON value of a line, or ``None`` when the codec must say what is wrong."""
    if len(line) > DEFAULT_MAX_MESSAGE_BYTES:
        return None
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return None


def _route(reader: _Reader, line: bytes, number: int = 0) -> None:
    """Decode one line into the reader (``_read`` does the same, inlined).

    Raises
    ------
    _LineError
        For a line the codec refuses (this one, or a gathered single event before it).
    """
    obj = _parse(line)
    if type(obj) is dict:
        kind = obj.get("type")
        if kind == "prediction":
            reader.add_prediction(obj, number)
            return
        if kind == "feedback":
            reader.add_label(obj, number)
            return
    _dispatch(reader, line, obj, number)


def _dispatch(reader: _Reader, line: bytes, obj: Any, number: int) -> None:
    """Decode a line that is not a single event: fast checks first, the codec for the rest."""
    reader.fold()  # gathered single events come first in the file
    try:
        if type(obj) is dict:
            kind = obj.get("type")
            if kind == "prediction_batch":
                # What decode_ingest does with a parsed batch: the codec's own fast path.
                reader.add(prediction_batch_columns(obj))
                return
            if kind == "feedback_batch" and _quick_feedback_batch(obj):
                reader.add_label_batch(
                    obj["model_id"], obj["event_ids"], obj["labels"], obj["timestamps"]
                )
                return
        item = decode_ingest(line)
    except DecodeError as error:
        raise _LineError(number, error) from None
    reader.add_event(item)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a file is read.

    Reading gathers many small JSON objects (no cycles: reference counting frees them);
    each collection would walk them all, and everything the process has imported.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _read(path: Path, name: str, config: MonitorConfig) -> _Rows:
    reader = _Reader(config)
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        raise BacktestInputError(f"{name} file not found: {path}") from None
    except OSError as error:
        raise BacktestInputError(f"cannot read {name} file {path}: {error.strerror}") from None
    try:
        with handle, _gc_paused():
            # _route inlined: single events are most of the lines of an unbatched file.
            singles, single_lines = reader.singles, reader.single_lines
            labels, label_lines = reader.labels, reader.label_lines
            for number, raw in enumerate(handle, start=1):
                line = raw.strip()
                if not line:
                    continue
                reader.lines += 1
                obj = _parse(line)
                if type(obj) is dict:
                    kind = obj.get("type")
                    if kind == "prediction":
                        singles.append(obj)
                        single_lines.append(number)
                        if len(singles) >= _FOLD_ROWS:
                            reader.fold()
                        continue
                    if kind == "feedback":
                        labels.append(obj)
                        label_lines.append(number)
                        if len(labels) >= _FOLD_ROWS:
                            reader.fold()
                        continue
                _dispatch(reader, line, obj, number)
            reader.fold()
    except _LineError as bad:
        reason, message = bad.error.reason, bad.error.message
        raise BacktestInputError(f"{path}:{bad.line}: {reason}: {message}") from None
    return reader.rows(name)


# --------------------------------------------------------------------------- the core


def _profile(config: MonitorConfig, ref: _Rows) -> ModelProfile:
    if ref.n == 0:
        raise BacktestInputError(
            f"reference file holds no predictions of model {config.model_id!r}"
        )
    versions = ref.versions
    version = min(versions, key=lambda v: (-versions[v], v))
    binary = config.task == "binary_classification"
    scores = ref.scores if binary and np.isfinite(ref.scores).any() else None
    return build_profile(
        config.model_id,
        version,
        features={
            name: _with_nulls(values, ref.feature_nulls.get(name))
            for name, values in ref.features.items()
        },
        kinds=config.features,
        predictions=ref.predictions,
        scores=scores,
        labels=_labels(ref.labels, ref.labelled) if ref.labelled.any() else None,
        task=config.task,
        bins=config.bins,
        positive_label=config.performance.positive_label,
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


def _windows(config: MonitorConfig, profile: ModelProfile, rows: _Rows) -> Iterable[_Window]:
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
        )
        yield _Window(start, start + size, data, int(np.count_nonzero(labelled)))


def _part(mask: npt.NDArray[np.bool_] | None, idx: npt.NDArray[np.intp]) -> Any:
    return None if mask is None else mask[idx]


def _concept_hits(config: MonitorConfig, rows: _Rows) -> dict[float, dict[str, int]]:
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


def _metric_line(report: WindowReport, row: MetricRow) -> bytes:
    return (
        MetricLine(
            model_id=report.model_id,
            model_version=report.model_version,
            window_start=_utc(report.window_start),
            window_end=_utc(report.window_end),
            revision=report.revision,
            kind=row.kind,
            metric=row.metric,
            feature=row.feature,
            value=row.value,
            p_value=row.p_value,
            q_value=row.q_value,
            reference=row.reference,
            threshold=row.threshold,
            status=row.status,
            n=row.n,
            label_coverage=row.label_coverage,
            primary=row.primary,
        )
        .model_dump_json()
        .encode()
    )


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def _file_summary(rows: _Rows) -> FileSummary:
    labelled = int(np.count_nonzero(rows.labelled))
    return FileSummary(
        lines=rows.lines,
        predictions=rows.n,
        labelled=labelled,
        label_coverage=labelled / rows.n if rows.n else 0.0,
        model_versions=rows.versions,
        first_timestamp=_utc(float(rows.timestamps.min())) if rows.n else None,
        last_timestamp=_utc(float(rows.timestamps.max())) if rows.n else None,
    )


def _load_config(monitor_path: Path) -> MonitorConfig:
    if not monitor_path.is_file():
        raise BacktestInputError(f"monitor file not found: {monitor_path}")
    try:
        return MonitorConfig.from_yaml(monitor_path)
    except MonitorConfigError as error:
        raise BacktestInputError(f"{monitor_path}: {error}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise BacktestInputError(f"cannot read monitor file {monitor_path}: {error}") from None


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
    return config, _profile(config, _read(Path(reference_path), "reference", config))


def run_backtest(
    monitor_path: Path | str,
    reference_path: Path | str,
    events_path: Path | str,
    out_dir: Path | str,
) -> BacktestSummary:
    """Run a backtest and write its outputs (see the module docstring).

    Raises
    ------
    BacktestInputError
        On bad input; nothing is written then.
    """
    config = _load_config(Path(monitor_path))
    ref = _read(Path(reference_path), "reference", config)
    events = _read(Path(events_path), "events", config)
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
        metric_lines.extend(_metric_line(report, row) for row in report.rows)
        worst = max(
            (r.status for r in report.rows if r.primary),
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
            first_start=_utc(windows[0].start) if windows else None,
            last_end=_utc(windows[-1].end) if windows else None,
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
        ),
        input_problems={"reference": ref.problems, "events": events.problems},
        input_problems_total=ref.problems.total + events.problems.total,
    )
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        _write_lines(out / METRICS_FILE, metric_lines)
        _write_lines(out / ALERTS_FILE, alert_lines)
        _write_lines(out / RETRAIN_FILE, request_lines)
        (out / PROFILE_FILE).write_text(profile.model_dump_json(indent=2) + "\n", encoding="utf-8")
        (out / SUMMARY_FILE).write_text(summary.model_dump_json(indent=2) + "\n", encoding="utf-8")
    except OSError as error:
        raise BacktestInputError(f"cannot write to {out}: {error.strerror}") from None
    return summary


def _write_lines(path: Path, lines: list[bytes]) -> None:
    with open(path, "wb") as handle:
        for line in lines:
            handle.write(line)
            handle.write(b"\n")
