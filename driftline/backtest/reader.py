"""Reading a backtest's input: JSONL lines to the rows of the monitor's model.

The lines are decoded by :class:`~driftline.schemas.jsonl.JsonlDecoder` (this module
decodes nothing itself). :class:`RowReader` coerces what it yields to the monitor's
config, a batch or a run of single events at a time, and :meth:`RowReader.rows` keeps
the monitor's model, deduplicates event ids and joins the labels (see
:mod:`driftline.backtest`, Joining, Other models, Coercion).
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from driftline.detectors.coerce import category_array, category_string
from driftline.detectors.windows import to_microseconds
from driftline.schemas.codec import FeedbackColumns, PredictionColumns
from driftline.schemas.jsonl import JsonlDecoder, LineError, LineRows
from driftline.schemas.monitor import MonitorConfig
from driftline.schemas.singles import FeedbackRun, PredictionRun

from .outputs import BacktestInputError, InputProblems

__all__ = ["FileRows", "RowReader", "ShadowRows", "read_rows"]

_NUMBER_TYPES: Final = frozenset({int, float})
_STR_OR_NONE: Final = frozenset({str, type(None)})


@dataclass
class _Part:
    """Prediction rows of one batch or of one run of single events, coerced to the config."""

    model_ids: str | npt.NDArray[Any]
    versions: str | npt.NDArray[Any]
    event_ids: npt.NDArray[Any]
    timestamps: npt.NDArray[np.float64]
    features: dict[str, npt.NDArray[Any]]
    predictions: npt.NDArray[Any]
    scores: npt.NDArray[np.float64]
    latency_ms: npt.NDArray[np.float64]
    #: Shadow predictions (scored by a version that did not serve the request).
    shadow: bool | npt.NDArray[np.bool_] = False
    #: Per configured segment key, each row's value (``""`` where it has none).
    segments: dict[str, npt.NDArray[np.str_]] = field(default_factory=dict)
    #: The predicted class's own score (multiclass estimation; NaN where not given).
    confidence: npt.NDArray[np.float64] | None = None

    @property
    def size(self) -> int:
        return int(self.event_ids.size)

    def shadow_mask(self) -> npt.NDArray[np.bool_]:
        if isinstance(self.shadow, bool):
            return np.full(self.size, self.shadow)
        return self.shadow


@dataclass
class _FeedbackPart:
    model_ids: str | npt.NDArray[Any]
    event_ids: npt.NDArray[Any]
    labels: npt.NDArray[Any]
    timestamps: npt.NDArray[np.float64]


@dataclass(frozen=True)
class ShadowRows:
    """The shadow predictions of the monitor's model: one row per version and event id
    (the last occurrence in the file), in (version, event id) order.

    Examples
    --------
    >>> ShadowRows.empty().event_ids.size
    0
    """

    event_ids: npt.NDArray[np.str_]
    versions: npt.NDArray[np.str_]
    predictions: npt.NDArray[Any]
    latency_ms: npt.NDArray[np.float64]
    #: The positive class's probability, NaN where not given (as ``FileRows.scores``).
    scores: npt.NDArray[np.float64]

    @classmethod
    def empty(cls) -> ShadowRows:
        """No shadow predictions."""
        return cls(np.empty(0, str), np.empty(0, str), np.empty(0, str), np.empty(0), np.empty(0))


@dataclass
class FileRows:
    """Rows of one file after filtering, deduplication and the label join.

    Rows are the *served* predictions, in ``event_id`` order (``row_versions``: each
    row's model version); ``shadow`` holds the shadow predictions apart. Classification
    predictions and labels are canonical category strings; ``labelled`` marks rows with
    a label. Timestamps (of predictions and of their labels) are rounded to the
    microsecond.

    Examples
    --------
    >>> from driftline.schemas.singles import prediction_run
    >>> reader = RowReader(MonitorConfig(model_id="m", features={"x": "numeric"}))
    >>> reader.add(prediction_run([{"type": "prediction", "event_id": "a",
    ...     "model_id": "m", "model_version": "v1", "timestamp": 1767225600,
    ...     "features": {"x": 2}, "prediction": 1.0}]))
    >>> rows = reader.rows("events")
    >>> rows.n, rows.predictions.tolist(), rows.labelled.tolist()
    (1, ['1'], [False])
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
    row_versions: npt.NDArray[np.str_] = field(default_factory=lambda: np.empty(0, str))
    latency_ms: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    shadow: ShadowRows = field(default_factory=ShadowRows.empty)
    #: Per segment key of the config, each row's value (``""`` where it has none).
    segments: dict[str, npt.NDArray[np.str_]] = field(default_factory=dict)
    #: The predicted class's own score, ``class_scores[prediction]`` (multiclass
    #: models with ``performance.estimation``; NaN where not given).
    confidence: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0))

    @property
    def n(self) -> int:
        """Number of rows."""
        return int(self.event_ids.size)


class RowReader:
    """Accumulates the rows of one file, in file order, coerced to a monitor's config.

    Parameters
    ----------
    config : MonitorConfig
        The monitor: its model, task, features and positive label.

    Examples
    --------
    >>> reader = RowReader(MonitorConfig(model_id="m", features={"x": "numeric"}))
    >>> reader.read([
    ...     b'{"type": "prediction", "event_id": "a", "model_id": "m", "model_version": "v1",'
    ...     b' "timestamp": 1767225600, "features": {"x": "high"}, "prediction": 1}',
    ...     b'{"type": "feedback", "event_id": "a", "model_id": "m",'
    ...     b' "timestamp": 1767225660, "label": 0}'])
    >>> rows = reader.rows("events")
    >>> rows.lines, rows.labels.tolist(), rows.problems.wrong_kind_values
    (2, ['0'], 1)
    """

    def __init__(self, config: MonitorConfig) -> None:
        self.config = config
        self.classes = config.task != "regression"
        self.segment_keys = config.segments.keys if config.segments is not None else ()
        #: Whether each row's predicted-class score is read (multiclass estimation).
        self.confidences = config.task == "multiclass" and config.performance.estimation is not None
        self.parts: list[_Part] = []
        self.feedback: list[_FeedbackPart] = []
        self.wrong_kind = 0
        self.unknown: set[str] = set()
        self.lines = 0

    def read(self, lines: Iterable[bytes]) -> None:
        """Decode JSONL lines (an open binary file, say) and add their rows.

        Raises
        ------
        LineError
            For the first line the codec refuses.
        """
        decoder = JsonlDecoder()
        try:
            with _gc_paused():
                for item in decoder.decode(lines):
                    self.add(item)
        finally:
            self.lines += decoder.lines

    def add(self, item: LineRows) -> None:
        """Add a batch's columns or a run of single events (what the decoder yields)."""
        if isinstance(item, PredictionColumns):
            self.parts.append(self._batch(item))
        elif isinstance(item, PredictionRun):
            self.parts.append(self._singles(item))
        elif isinstance(item, FeedbackColumns):
            self.feedback.append(
                _FeedbackPart(
                    model_ids=item.model_id,
                    event_ids=item.event_ids,
                    labels=self._value_column(item.label_value, item.label_class),
                    timestamps=np.asarray(item.timestamps, dtype=np.float64),
                )
            )
        elif isinstance(item, FeedbackRun):
            self.feedback.append(
                _FeedbackPart(
                    model_ids=_objects(item.model_ids),
                    event_ids=_objects(item.event_ids),
                    labels=self._mixed_column(item.labels),
                    timestamps=np.array(item.timestamps, dtype=np.float64),
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
            latency_ms=np.full(n, np.nan) if cols.latency_ms is None else cols.latency_ms,
            shadow=cols.shadow,
            segments={key: np.full(n, cols.segment.get(key, "")) for key in self.segment_keys},
            confidence=self._confidence(
                cols.prediction_class
                if cols.prediction_class is not None
                else cols.prediction_value,
                cols.class_scores,
                cols.score,
            ),
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

    def _singles(self, run: PredictionRun) -> _Part:
        n = run.rows
        features: dict[str, npt.NDArray[Any]] = {}
        for name, kind in self.config.features.items():
            values = run.features.get(name)
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
        self.unknown.update(run.features.keys() - self.config.features.keys())
        scores: list[Any] = run.scores
        if run.class_scores is not None:  # a class score of the positive label stands in
            positive = self.config.performance.positive_label
            scores = [
                score if score is not None or given is None else given.get(positive)
                for score, given in zip(scores, run.class_scores, strict=True)
            ]
        return _Part(
            model_ids=_objects(run.model_ids),
            versions=_objects(run.model_versions),
            event_ids=_objects(run.event_ids),
            timestamps=np.array(run.timestamps, dtype=np.float64),
            features=features,
            predictions=self._mixed_column(run.predictions),
            scores=np.array(scores, dtype=np.float64),
            latency_ms=np.array(run.latency_ms, dtype=np.float64),
            shadow=False if run.shadows is None else np.array(run.shadows, dtype=bool),
            segments={
                key: np.array(
                    ["" if given is None else given.get(key, "") for given in run.segments]
                    if run.segments is not None
                    else [""] * n,
                    dtype=str,
                ).reshape(n)
                for key in self.segment_keys
            },
            confidence=self._confidence(run.predictions, run.class_scores, run.scores),
        )

    def _confidence(
        self,
        predictions: Any,
        class_scores: Sequence[Mapping[str, float] | None] | None,
        scores: Any,
    ) -> npt.NDArray[np.float64] | None:
        """Each row's score of its own predicted class: its entry of the class scores
        (canonical class text), else the row's ``score`` (a multiclass model's score is
        its predicted class's), NaN where neither is given."""
        if not self.confidences:
            return None
        n = len(predictions)
        out = np.array([np.nan] * n if scores is None else list(scores), dtype=np.float64)
        if class_scores is not None:
            for i, (prediction, given) in enumerate(
                zip(list(predictions), class_scores, strict=True)
            ):
                value = given.get(category_string(prediction) or "") if given else None
                if value is not None:
                    out[i] = float(value)
        return out

    # -- the file's rows

    def rows(self, name: str) -> FileRows:
        """The file's rows of the monitor's model: filtered, deduplicated, joined.

        Raises
        ------
        BacktestInputError
            When the file holds predictions, none of them of the monitor's model.
        """
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
        shadow = _cat([p.shadow_mask() for p in parts], bool)
        mine_shadow = mine & shadow if shadow.any() else None
        served = mine if mine_shadow is None else mine & ~shadow
        n_served = n_mine if mine_shadow is None else int(np.count_nonzero(served))
        all_ids = _cat([p.event_ids for p in parts], object)
        raw_ids = all_ids[served]
        fb_mine = _cat([_matches(f.model_ids, f.event_ids.size, model) for f in feedback], bool)
        raw_fb_ids = _cat([f.event_ids for f in feedback], object)[fb_mine]
        # numpy strings drop trailing NULs: ids holding one get a suffix (all sides).
        nul = _has_nul(raw_ids) or _has_nul(raw_fb_ids)
        if mine_shadow is not None:
            nul = nul or _has_nul(all_ids[mine_shadow])
        ids = _id_strings(raw_ids, nul)
        # Keep the last occurrence of each event id; rows end up in event-id order.
        uids, keep = _last_occurrence(ids)
        keep = np.flatnonzero(served)[keep]

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
        names = np.array(list(vocabulary) or [""], dtype=str)
        shadow_rows = ShadowRows.empty()
        if mine_shadow is not None:
            at = np.flatnonzero(mine_shadow)
            all_codes = _cat([_codes(p.versions, p.size, vocabulary) for p in parts], np.int64)
            names = np.array(list(vocabulary), dtype=str)
            shadow_versions = names[all_codes[at]]
            shadow_ids = _id_strings(all_ids[at], nul)
            keys = np.char.add(np.char.add(shadow_versions, "\x1f"), shadow_ids)
            last = at[_last_occurrence(keys)[1]]
            order = np.lexsort((_id_strings(all_ids[last], nul), names[all_codes[last]]))
            last = last[order]
            shadow_rows = ShadowRows(
                event_ids=_id_strings(all_ids[last], nul),
                versions=names[all_codes[last]],
                predictions=self._values([p.predictions for p in parts])[last],
                latency_ms=_cat([p.latency_ms for p in parts], np.float64)[last],
                scores=_cat([p.scores for p in parts], np.float64)[last],
            )

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
        return FileRows(
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
                duplicate_predictions=n_served - int(uids.size),
                duplicate_labels=int(fb_ids.size - fb_uids.size),
                unmatched_labels=int(fb_uids.size - at.size),
                wrong_kind_values=self.wrong_kind,
                unknown_features=tuple(sorted(self.unknown)),
            ),
            row_versions=names[codes],
            latency_ms=take([p.latency_ms for p in parts], np.float64),
            shadow=shadow_rows,
            segments={
                key: take([p.segments[key] for p in parts], str) for key in self.segment_keys
            },
            confidence=(
                take(
                    [
                        p.confidence if p.confidence is not None else np.full(p.size, np.nan)
                        for p in parts
                    ],
                    np.float64,
                )
                if self.confidences
                else np.empty(0)
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


def read_rows(path: Path, name: str, config: MonitorConfig) -> FileRows:
    """The rows of the monitor's model in one JSONL file (``name``: for messages).

    Raises
    ------
    BacktestInputError
        For a missing or unreadable file, a bad line (naming ``path:line``), or a file
        holding predictions, none of them of the monitor's model.
    """
    reader = RowReader(config)
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        raise BacktestInputError(f"{name} file not found: {path}") from None
    except OSError as error:
        raise BacktestInputError(f"cannot read {name} file {path}: {error.strerror}") from None
    try:
        with handle:
            reader.read(handle)
    except LineError as bad:
        raise BacktestInputError(f"{path}:{bad.line}: {bad.reason}: {bad.message}") from None
    return reader.rows(name)


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
