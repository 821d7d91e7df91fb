"""JSONL files of events: each line one Kafka message, decoded as the ingest decodes it.

:class:`JsonlDecoder` turns the lines of a file into columns: a batch line into its
columns (the codec's fast path), runs of single events into columns checked together by
:mod:`driftline.schemas.singles`; anything those checks refuse goes through the event
models, in line order, which accept it or name the problem (:class:`LineError`, with the
line number). ``driftline backtest`` reads its files through it.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator
from typing import Any, Final, TypeAlias

import orjson

from .codec import (
    DEFAULT_MAX_MESSAGE_BYTES,
    DecodeError,
    FeedbackColumns,
    PredictionColumns,
    decode_ingest,
    feedback_batch_columns,
    prediction_batch_columns,
    validate,
)
from .events import (
    FeedbackEvent,
    PredictionEvent,
)
from .singles import (
    FeedbackRun,
    PredictionRun,
    feedback_run,
    feedback_view,
    prediction_run,
    prediction_view,
)

__all__ = ["JsonlDecoder", "LineError", "LineRows"]


# --------------------------------------------------------------------------- JSONL

#: What :meth:`JsonlDecoder.decode` yields: a batch's columns, or a run of single events.
LineRows: TypeAlias = PredictionColumns | FeedbackColumns | PredictionRun | FeedbackRun

#: Single events gathered before their run is checked (bounds the objects held).
_RUN_ROWS: Final = 32_768


class LineError(DecodeError):
    """A bad line of a JSONL file: the codec's error for it, and its number.

    Parameters
    ----------
    line : int
        The line number, from 1 (blank lines count).
    error : DecodeError
        Why the line is refused: ``reason`` and ``message`` are its own.
    """

    def __init__(self, line: int, error: DecodeError) -> None:
        super().__init__(error.reason, error.message)
        self.line = line


def _parse(line: bytes, max_bytes: int) -> Any:
    """The JSON value of a line, or ``None`` when :func:`decode_ingest` must say what is wrong."""
    if len(line) > max_bytes:
        return None
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return None


def _runs(
    singles: list[dict[str, Any]],
    single_lines: list[int],
    labels: list[dict[str, Any]],
    label_lines: list[int],
) -> list[PredictionRun | FeedbackRun]:
    """The runs of gathered single events (and the gathered lists emptied).

    Objects the column-wise checks refuse are validated by the models, in line order:
    the first one they refuse raises :class:`LineError`; the others join the run as
    the models' view of them.
    """
    predictions = prediction_run(singles) if singles else None
    feedback = feedback_run(labels) if labels else None
    suspects: list[tuple[int, list[dict[str, Any]], int]] = []
    if singles and predictions is None:
        suspects += [
            (single_lines[i], singles, i)
            for i, obj in enumerate(singles)
            if prediction_run([obj]) is None
        ]
    if labels and feedback is None:
        suspects += [
            (label_lines[i], labels, i)
            for i, obj in enumerate(labels)
            if feedback_run([obj]) is None
        ]
    for line, target, i in sorted(suspects, key=operator.itemgetter(0)):
        try:
            event = validate(target[i])
        except DecodeError as error:
            raise LineError(line, error) from None
        # Valid after all (the checks are stricter than the models): the model's view.
        if isinstance(event, PredictionEvent):
            target[i] = prediction_view(event)
        elif isinstance(event, FeedbackEvent):
            target[i] = feedback_view(event)
    runs: list[PredictionRun | FeedbackRun] = []
    if singles:
        runs.append(prediction_run(singles, trusted=True) if predictions is None else predictions)
    if labels:
        runs.append(feedback_run(labels, trusted=True) if feedback is None else feedback)
    for gathered in (singles, single_lines, labels, label_lines):
        gathered.clear()
    return runs


class JsonlDecoder:
    """Decodes the lines of a JSONL file of ingest events into columns, in file order.

    A line is accepted exactly when :func:`decode_ingest` accepts it (same size limit);
    blank lines are skipped. A ``prediction_batch`` or ``feedback_batch`` line gives its
    columns, as :func:`decode_ingest` does. Single ``prediction`` and ``feedback``
    events are gathered as the JSON objects they are and checked a run at a time
    (:func:`~driftline.schemas.singles.prediction_run`,
    :func:`~driftline.schemas.singles.feedback_run`), with no model and no array per
    event; their runs come before the next batch, every ``run_rows`` events, and at the
    end. So prediction rows (and label rows) come in file order, and the first bad
    line of the file is the one reported: a :class:`LineError` (raised once the rows
    before it have been yielded).

    Parameters
    ----------
    max_bytes : int
        The longest line accepted, in bytes.
    run_rows : int
        Single events gathered before their run is checked.

    Attributes
    ----------
    lines : int
        Non-blank lines read so far.

    Examples
    --------
    >>> decoder = JsonlDecoder()
    >>> items = list(decoder.decode([
    ...     b'{"type": "prediction", "event_id": "a", "model_id": "m", "model_version": "v1",'
    ...     b' "timestamp": 1767225600, "features": {"x": 1.5}, "prediction": 1}',
    ...     b"",
    ...     b'{"type": "feedback", "event_id": "a", "model_id": "m",'
    ...     b' "timestamp": 1767225660, "label": 0}']))
    >>> [type(item).__name__ for item in items], decoder.lines
    (['PredictionRun', 'FeedbackRun'], 2)
    >>> try:
    ...     list(JsonlDecoder().decode([b"", b'{"type": "feedback"}']))
    ... except LineError as error:
    ...     print(error.line, error)
    2 missing_field: missing field 'event_id'
    """

    def __init__(
        self, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, run_rows: int = _RUN_ROWS
    ) -> None:
        self.max_bytes = max_bytes
        self.run_rows = run_rows
        self.lines = 0

    def decode(self, lines: Iterable[bytes]) -> Iterator[LineRows]:
        """Yield the columns of the lines (``lines`` may be an open binary file).

        Raises
        ------
        LineError
            For the first line :func:`decode_ingest` refuses.
        """
        max_bytes, limit = self.max_bytes, self.run_rows
        singles: list[dict[str, Any]] = []
        single_lines: list[int] = []
        labels: list[dict[str, Any]] = []
        label_lines: list[int] = []
        count = self.lines
        try:
            for number, raw in enumerate(lines, start=1):
                line = raw.strip()
                if not line:
                    continue
                count += 1
                obj = _parse(line, max_bytes)
                if type(obj) is dict:
                    kind = obj.get("type")
                    if kind == "prediction":
                        singles.append(obj)
                        single_lines.append(number)
                        if len(singles) >= limit:
                            yield from _runs(singles, single_lines, labels, label_lines)
                        continue
                    if kind == "feedback":
                        labels.append(obj)
                        label_lines.append(number)
                        if len(labels) >= limit:
                            yield from _runs(singles, single_lines, labels, label_lines)
                        continue
                if singles or labels:  # gathered single events come first in the file
                    yield from _runs(singles, single_lines, labels, label_lines)
                yield self._line(line, obj, number)
            if singles or labels:
                yield from _runs(singles, single_lines, labels, label_lines)
        finally:
            self.lines = count

    def _line(self, line: bytes, obj: Any, number: int) -> LineRows:
        """A line that is not a single event (parsed as ``obj``): what decode_ingest gives."""
        try:
            if type(obj) is dict:
                kind = obj.get("type")
                if kind == "prediction_batch":
                    return prediction_batch_columns(obj)
                if kind == "feedback_batch":
                    return feedback_batch_columns(obj)
            item = decode_ingest(line, self.max_bytes)
        except DecodeError as error:
            raise LineError(number, error) from None
        if isinstance(item, PredictionEvent):
            return prediction_run([prediction_view(item)], trusted=True)
        if isinstance(item, FeedbackEvent):
            return feedback_run([feedback_view(item)], trusted=True)
        return item
