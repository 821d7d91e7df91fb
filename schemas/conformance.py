"""Conformance: decoded rows checked against the monitor config of their model.

The codec (:mod:`driftline.schemas.codec`) checks that a message is a valid event;
this module checks that its labels and features are of the kind the model's monitor
expects, so that a label ``"yes"`` for a 0/1 model, or a numeric feature sent as a
string, goes to the DLQ instead of being stored and counted silently. The checks
are pure and vectorised: a 100k-row batch of labels costs a few numpy passes, and a
batch of predictions one dictionary lookup per declared numeric feature.

What each task accepts as a label (the monitor declares no class list; its
``performance.positive_label``, ``"1"`` by default, is the only class it names):

``binary_classification``
    With a numeric positive label (the default ``1``): 0 or 1 -- a number, a JSON
    boolean (read as 1/0 by the codec) or the string ``"0"``/``"1"`` -- or the
    positive label itself (``positive_label: 2`` also accepts 2). With a class-name
    positive label (``positive_label: churn``): any string (the positive label is
    the positive class, every other string the negative one: the monitor names no
    negative class); numbers and booleans are refused, since they never equal the
    positive label.
``multiclass``
    A class name (any string) or an integer class id (``2`` and ``2.0`` are class
    ``"2"``); a fractional number such as ``0.5`` is refused.
``regression``
    A finite number (the codec refuses NaN and infinities); strings are refused,
    numeric strings such as ``"3.5"`` included. A JSON boolean is read as 1/0.

Features, by the kind the monitor declares:

``numeric``
    A number or null (JSON booleans are read as 1/0); a string is refused, a numeric
    string such as ``"42"`` included (it would be stored as a category and show only
    as a null rate).
``categorical``
    A string, a number or null: a number is the category of its canonical text
    (``3`` and ``3.0`` are category ``"3"``), as the monitors and the retrainer read
    it, so codes sent as numbers are accepted.
undeclared
    Accepted and stored, not monitored. A declared feature missing from an event
    is a null.

A model without a monitor has nothing to be checked against: its rows are stored as
they decode. A batch with one bad row is refused whole, as the codec refuses a batch
with one invalid value: the error names the first bad row (its event id and index)
and how many rows are bad. (A batch column that mixes numbers and strings never gets
here: the codec refuses it as ``wrong_type``.)

Examples
--------
>>> from driftline.schemas.codec import decode_ingest
>>> from driftline.schemas.monitor import MonitorConfig
>>> monitors = {"credit": MonitorConfig(model_id="credit", features={"income": "numeric"})}
>>> rows = decode_ingest(b'{"type": "feedback_batch", "model_id": "credit",'
...     b' "event_ids": ["a", "b"], "timestamps": [1767225600, 1767225600],'
...     b' "labels": [1, 7]}')
>>> try:
...     check_rows(rows, monitors)
... except DecodeError as error:
...     print(error.reason)
...     print(error.message)
label_type
event 'b' (row 1 of 2): label 7 is not a binary_classification label of model 'credit': \
expected 0 or 1 (a number, true/false or the string "0"/"1"); 1 of 2 rows are wrong, \
the whole message is refused
>>> check_rows(decode_ingest(b'{"type": "feedback", "event_id": "a", "model_id": "credit",'
...     b' "timestamp": 1767225600, "label": true}'), monitors) is None
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from .codec import DecodeError, FeedbackColumns, IngestRows, PredictionColumns
from .events import FeedbackEvent, PredictionEvent
from .monitor import MonitorConfig

__all__ = [
    "Conformance",
    "LabelRule",
    "bad_labels",
    "check_features",
    "check_labels",
    "check_rows",
    "label_rule",
]


def _canonical(value: float) -> str:
    """The text of a number as a category (``1.0`` is ``"1"``), as the monitors write it."""
    return str(int(value)) if value.is_integer() else repr(value)


@dataclass(frozen=True, slots=True)
class LabelRule:
    """The labels a model accepts.

    Parameters
    ----------
    task : str
        The monitor's task.
    numbers : frozenset of float or None
        The numbers accepted; ``None``: any finite number (integers only when
        ``integral``); empty: no number.
    strings : frozenset of str or None
        The strings accepted; ``None``: any string; empty: no string.
    integral : bool
        Numbers must be integers (class ids).
    expected : str
        What is accepted, in words, for error messages.

    Examples
    --------
    >>> label_rule("regression", "1").strings
    frozenset()
    """

    task: str
    numbers: frozenset[float] | None
    strings: frozenset[str] | None
    integral: bool
    expected: str

    def accepts(self, label: float | str) -> bool:
        """Whether one decoded label (a float or a string) is accepted.

        Examples
        --------
        >>> rule = label_rule("binary_classification", "1")
        >>> rule.accepts(1.0), rule.accepts("0"), rule.accepts(0.5), rule.accepts("yes")
        (True, True, False, False)
        """
        if isinstance(label, str):
            return self.strings is None or label in self.strings
        if self.numbers is None:
            return not self.integral or float(label).is_integer()
        return label in self.numbers


@lru_cache(maxsize=256)
def label_rule(task: str, positive_label: str) -> LabelRule:
    """The labels a model of ``task`` with ``positive_label`` accepts (see the module doc).

    Parameters
    ----------
    task : str
        ``binary_classification``, ``multiclass`` or ``regression``.
    positive_label : str
        The monitor's ``performance.positive_label`` (used for binary classification).

    Returns
    -------
    LabelRule

    Examples
    --------
    >>> sorted(label_rule("binary_classification", "2").strings)
    ['0', '1', '2']
    >>> label_rule("binary_classification", "churn").numbers
    frozenset()
    >>> label_rule("multiclass", "1").integral
    True
    """
    if task == "regression":
        return LabelRule(task, None, frozenset(), False, "a finite number")
    if task == "multiclass":
        return LabelRule(task, None, None, True, "a class name (a string) or an integer class id")
    try:
        number: float | None = float(positive_label)
    except ValueError:
        number = None
    if number is None or not math.isfinite(number) or _canonical(number) != positive_label:
        return LabelRule(
            task,
            frozenset(),
            None,
            False,
            f"a class name (a string; the positive class is {positive_label!r}, "
            "performance.positive_label), not a number or a boolean",
        )
    if positive_label in ("0", "1"):
        expected = '0 or 1 (a number, true/false or the string "0"/"1")'
    else:
        expected = (
            f"0, 1 or the positive label {positive_label} (a number, true/false or the "
            f'string "0"/"1"/"{positive_label}")'
        )
    return LabelRule(
        task,
        frozenset({0.0, 1.0, number}),
        frozenset({"0", "1", positive_label}),
        False,
        expected,
    )


def bad_labels(
    rule: LabelRule, values: np.ndarray | None, classes: np.ndarray | None
) -> np.ndarray:
    """Mask of the labels ``rule`` refuses, one pass per accepted value at most.

    Parameters
    ----------
    rule : LabelRule
        What the model accepts.
    values : numpy.ndarray or None
        Number labels (float64), as in :attr:`FeedbackColumns.label_value`.
    classes : numpy.ndarray or None
        String labels (object), as in :attr:`FeedbackColumns.label_class`; exactly
        one of ``values`` and ``classes`` is set.

    Returns
    -------
    numpy.ndarray
        Boolean mask, ``True`` where a label is refused.

    Examples
    --------
    >>> rule = label_rule("binary_classification", "1")
    >>> bad_labels(rule, np.array([0.0, 1.0, 7.0, 0.5]), None).tolist()
    [False, False, True, True]
    >>> bad_labels(rule, None, np.array(["1", "yes"], dtype=object)).tolist()
    [False, True]
    >>> bad_labels(label_rule("multiclass", "1"), np.array([2.0, 0.5]), None).tolist()
    [False, True]
    """
    if values is not None:
        if rule.numbers is None:
            if rule.integral:
                return np.asarray(values != np.floor(values))
            return np.zeros(values.shape, dtype=bool)
        ok = np.zeros(values.shape, dtype=bool)
        for number in rule.numbers:
            ok |= values == number
        return ~ok
    if classes is None:
        raise ValueError("give label values or label classes")
    if rule.strings is None:
        return np.zeros(classes.shape, dtype=bool)
    ok = np.zeros(classes.shape, dtype=bool)
    for text in rule.strings:
        ok |= np.equal(classes, text).astype(bool)
    return ~ok


def _show(value: Any) -> str:
    """A value as an error message shows it (numbers canonical, strings quoted, short)."""
    if isinstance(value, float | np.floating):
        return _canonical(float(value))
    if isinstance(value, str) and len(value) > 64:
        return repr(value[:64]) + "..."
    return repr(value)


def _refused(
    reason: str, mask: np.ndarray, event_ids: np.ndarray, detail: Callable[[int], str]
) -> DecodeError:
    """The error of a batch with bad rows: the first one named, the others counted."""
    bad = np.flatnonzero(mask)
    first, rows = int(bad[0]), int(mask.shape[0])
    if rows == 1:
        return DecodeError(reason, f"event {event_ids[0]!r}: {detail(first)}")
    return DecodeError(
        reason,
        f"event {event_ids[first]!r} (row {first} of {rows}): {detail(first)}; "
        f"{bad.size} of {rows} rows are wrong, the whole message is refused",
    )


@dataclass(frozen=True, slots=True)
class _Model:
    """What the checks need of one monitor, prepared once."""

    model_id: str
    numeric: tuple[str, ...]
    labels: LabelRule

    @classmethod
    def of(cls, monitor: MonitorConfig) -> _Model:
        numeric = tuple(name for name, kind in monitor.features.items() if kind == "numeric")
        return cls(
            monitor.model_id, numeric, label_rule(monitor.task, monitor.performance.positive_label)
        )

    def label_detail(self, label: Any) -> str:
        rule = self.labels
        return (
            f"label {_show(label)} is not a {rule.task} label of model {self.model_id!r}: "
            f"expected {rule.expected}"
        )

    def feature_detail(self, name: str, value: Any) -> str:
        return (
            f"feature {name!r} is {_show(value)}, a string, but the monitor of model "
            f"{self.model_id!r} declares it numeric: expected a number or null"
        )

    def check(self, rows: IngestRows) -> None:
        if isinstance(rows, PredictionEvent):
            self._event_features(rows)
        elif isinstance(rows, PredictionColumns):
            self._column_features(rows)
        elif isinstance(rows, FeedbackEvent):
            if not self.labels.accepts(rows.label):
                detail = self.label_detail(rows.label)
                raise DecodeError("label_type", f"event {rows.event_id!r}: {detail}")
        else:
            self._column_labels(rows)

    def _column_labels(self, rows: FeedbackColumns) -> None:
        mask = bad_labels(self.labels, rows.label_value, rows.label_class)
        if mask.any():
            labels = rows.label_class if rows.label_class is not None else rows.label_value
            assert labels is not None  # one of the two is set: bad_labels checked it
            raise _refused(
                "label_type", mask, rows.event_ids, lambda i: self.label_detail(labels[i])
            )

    def _event_features(self, rows: PredictionEvent) -> None:
        features = rows.features
        for name in self.numeric:
            if type(features.get(name)) is str:
                bad = [other for other in self.numeric if type(features.get(other)) is str]
                detail = self.feature_detail(name, features[name]) + _also(bad)
                raise DecodeError("feature_type", f"event {rows.event_id!r}: {detail}")

    def _column_features(self, rows: PredictionColumns) -> None:
        strings = rows.categorical
        for name in self.numeric:
            # A column is categorical only when it holds a string (one kind per column).
            if name in strings:
                bad = [other for other in self.numeric if other in strings]
                column = strings[name]
                mask = np.asarray(column != None, dtype=bool)  # noqa: E711 - elementwise test
                raise _refused(
                    "feature_type",
                    mask,
                    rows.event_ids,
                    lambda i: self.feature_detail(name, column[i]) + _also(bad),  # noqa: B023
                )


def _also(bad: list[str]) -> str:
    """The other features with wrong values, after the first."""
    return f" (also wrong: {', '.join(map(repr, bad[1:]))})" if bad[1:] else ""


def check_labels(rows: FeedbackColumns | FeedbackEvent, monitor: MonitorConfig) -> None:
    """Refuse labels that are not of the model's task (see the module doc).

    Parameters
    ----------
    rows : FeedbackColumns or FeedbackEvent
        Decoded feedback of the model of ``monitor``.
    monitor : MonitorConfig
        The model's monitor.

    Raises
    ------
    DecodeError
        With reason ``label_type``, naming the event id (and row) of the first bad
        label, the label, and what the model accepts.

    Examples
    --------
    >>> from driftline.schemas.monitor import MonitorConfig
    >>> monitor = MonitorConfig(model_id="m", task="regression", features={"x": "numeric"})
    >>> try:
    ...     check_labels(FeedbackEvent(event_id="e", model_id="m", timestamp=1767225600,
    ...         label="3.5"), monitor)
    ... except DecodeError as error:
    ...     print(error)
    label_type: event 'e': label '3.5' is not a regression label of model 'm': \
expected a finite number
    """
    _Model.of(monitor).check(rows)


def check_features(rows: PredictionColumns | PredictionEvent, monitor: MonitorConfig) -> None:
    """Refuse features of the wrong kind: a string where the monitor declares a number.

    Categorical features take strings, numbers (their canonical text is the category)
    and nulls, and undeclared features anything the codec accepts, so only numeric
    features are checked (see the module doc).

    Parameters
    ----------
    rows : PredictionColumns or PredictionEvent
        Decoded predictions of the model of ``monitor``.
    monitor : MonitorConfig
        The model's monitor.

    Raises
    ------
    DecodeError
        With reason ``feature_type``, naming the event id (and row) of the first bad
        value, the feature, the value and what was expected; other features with bad
        values are listed.

    Examples
    --------
    >>> from driftline.schemas.monitor import MonitorConfig
    >>> monitor = MonitorConfig(model_id="m", features={"income": "numeric"})
    >>> try:
    ...     check_features(PredictionEvent(event_id="e", model_id="m", model_version="v",
    ...         timestamp=1767225600, features={"income": "42"}, prediction=1), monitor)
    ... except DecodeError as error:
    ...     print(error)
    feature_type: event 'e': feature 'income' is '42', a string, but the monitor of \
model 'm' declares it numeric: expected a number or null
    """
    _Model.of(monitor).check(rows)


class Conformance:
    """The checks of every monitored model, prepared once for many messages.

    Parameters
    ----------
    monitors : Mapping
        Monitor configs by model id; rows of other models are not checked.

    Examples
    --------
    >>> from driftline.schemas.monitor import MonitorConfig
    >>> conformance = Conformance({"m": MonitorConfig(model_id="m", features={"x": "numeric"})})
    >>> conformance.models
    ('m',)
    >>> try:
    ...     conformance.check(FeedbackEvent(event_id="e", model_id="m",
    ...         timestamp=1767225600, label=0.5))
    ... except DecodeError as error:
    ...     print(error.reason)
    label_type
    """

    __slots__ = ("_models",)

    def __init__(self, monitors: Mapping[str, MonitorConfig]) -> None:
        self._models = {model_id: _Model.of(monitor) for model_id, monitor in monitors.items()}

    @property
    def models(self) -> tuple[str, ...]:
        """The ids of the models checked, sorted."""
        return tuple(sorted(self._models))

    def check(self, rows: IngestRows) -> None:
        """Check decoded rows against their model's monitor, if it has one.

        Raises
        ------
        DecodeError
            ``label_type`` or ``feature_type`` (see :func:`check_labels` and
            :func:`check_features`).
        """
        model = self._models.get(rows.model_id)
        if model is not None:
            model.check(rows)


def check_rows(rows: IngestRows, monitors: Mapping[str, MonitorConfig]) -> None:
    """Check decoded rows against the monitor of their model, if it has one.

    For many messages, :class:`Conformance` prepares the checks once.

    Parameters
    ----------
    rows : IngestRows
        What :func:`~driftline.schemas.codec.decode_ingest` returned.
    monitors : Mapping
        Monitor configs by model id; a model without one is not checked.

    Raises
    ------
    DecodeError
        ``label_type`` or ``feature_type`` (see :func:`check_labels` and
        :func:`check_features`).

    Examples
    --------
    >>> check_rows(FeedbackEvent(event_id="e", model_id="other", timestamp=1767225600,
    ...     label="yes"), {}) is None
    True
    """
    monitor = monitors.get(rows.model_id)
    if monitor is not None:
        _Model.of(monitor).check(rows)
