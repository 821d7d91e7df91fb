"""Runs of single events as columns: the column-wise check of ``prediction`` and ``feedback``.

A reader of many single events (a JSONL file of ``prediction`` and ``feedback`` lines)
gathers their parsed JSON objects and hands a run of them to :func:`prediction_run` or
:func:`feedback_run`. These check the run a field at a time with C-level passes (type
sets, numpy range checks) instead of one pydantic model per event, and return it as
columns, one list per field (:class:`PredictionRun`, :class:`FeedbackRun`).

A check only ever *accepts* objects that the event models accept: it is stricter than
they are (RFC 3339 times, booleans, class ``scores`` and ``segment`` are left to the
models), and returns ``None`` for a run holding any object it does not take. The
caller then validates those objects with the models
(:func:`~driftline.schemas.codec.validate`, which accepts them or names the problem) and
builds the run from the models' view of them (:func:`prediction_view`,
:func:`feedback_view`) with ``trusted=True``. :class:`~driftline.schemas.jsonl.JsonlDecoder`
does exactly that.

Everything here is pure: no I/O, no monitor config, no numpy array in the result.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Any, Final, Literal, overload

import numpy as np

from .events import (
    EARLIEST_EPOCH,
    LATEST_EPOCH,
    MAX_FEATURES,
    MAX_ID_LENGTH,
    MAX_VALUE_LENGTH,
    FeedbackEvent,
    PredictionEvent,
)

__all__ = [
    "FeedbackRun",
    "PredictionRun",
    "feedback_run",
    "feedback_view",
    "prediction_run",
    "prediction_view",
]

_get = operator.itemgetter
_NUMBER_TYPES: Final = frozenset({int, float})
_LABEL_TYPES: Final = frozenset({int, float, str})
_OPTIONAL_NUMBER_TYPES: Final = frozenset({int, float, type(None)})
_VALUE_TYPES: Final = frozenset({int, float, str, type(None)})
_PREDICTION_REQUIRED: Final = frozenset(
    {"type", "event_id", "model_id", "model_version", "timestamp", "features", "prediction"}
)
_PREDICTION_ALLOWED: Final = _PREDICTION_REQUIRED | {"score", "latency_ms", "shadow"}
_FEEDBACK_KEYS: Final = frozenset({"type", "event_id", "model_id", "timestamp", "label"})


@dataclass(frozen=True, slots=True, eq=False)
class PredictionRun:
    """Single predictions as columns: one list per field, rows in the order given.

    ``timestamps`` are epoch seconds, as given (the models round them to the
    microsecond). ``features`` has one list per feature name any event carries, in
    name order, with ``None`` where an event's value is null or absent. Predictions are
    numbers or strings, as given. ``class_scores`` and ``segments`` are ``None`` when no
    event of the run has them.

    Examples
    --------
    >>> run = prediction_run([
    ...     {"type": "prediction", "event_id": "a", "model_id": "m", "model_version": "v1",
    ...      "timestamp": 1767225600, "features": {"x": 1.5, "c": "eu"}, "prediction": 1},
    ...     {"type": "prediction", "event_id": "b", "model_id": "m", "model_version": "v1",
    ...      "timestamp": 1767225601, "features": {"x": None}, "prediction": 0, "score": 0.2}])
    >>> run.rows, run.features, run.scores
    (2, {'c': ['eu', None], 'x': [1.5, None]}, [None, 0.2])
    """

    event_ids: list[str]
    model_ids: list[str]
    model_versions: list[str]
    timestamps: list[float]
    features: dict[str, list[Any]]
    predictions: list[float | str]
    scores: list[float | None]
    latency_ms: list[float | None]
    class_scores: list[dict[str, float] | None] | None = None
    segments: list[dict[str, str] | None] | None = None
    #: Whether each prediction is a shadow one; ``None`` when none of the run is.
    shadows: list[bool] | None = None

    @property
    def rows(self) -> int:
        """Number of predictions."""
        return len(self.event_ids)


@dataclass(frozen=True, slots=True, eq=False)
class FeedbackRun:
    """Single labels as columns: one list per field, rows in the order given.

    Examples
    --------
    >>> run = feedback_run([{"type": "feedback", "event_id": "a", "model_id": "m",
    ...     "timestamp": 1767225600, "label": "yes"}])
    >>> run.rows, run.labels
    (1, ['yes'])
    """

    event_ids: list[str]
    model_ids: list[str]
    timestamps: list[float]
    labels: list[float | str]

    @property
    def rows(self) -> int:
        """Number of labels."""
        return len(self.event_ids)


# --------------------------------------------------------------------------- checks


def _identifiers(values: list[Any], distinct: bool = False) -> bool:
    """Whether every value is an identifier (``distinct``: check each value once)."""
    if distinct:
        values = list(set(values)) if set(map(type, values)) == {str} else values
    if set(map(type, values)) != {str}:
        return False
    lengths = np.fromiter(map(len, values), np.intp, len(values))
    return bool(lengths.min() >= 1 and lengths.max() <= MAX_ID_LENGTH)


def _epochs(values: list[Any]) -> bool:
    """Whether every value is a number of epoch seconds in the models' range."""
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


def _present(values: list[Any]) -> list[Any] | None:
    """The list, or ``None`` when every value is ``None``."""
    return values if any(value is not None for value in values) else None


# --------------------------------------------------------------------------- runs


@overload
def prediction_run(events: list[dict[str, Any]], *, trusted: Literal[True]) -> PredictionRun: ...
@overload
def prediction_run(
    events: list[dict[str, Any]], *, trusted: bool = False
) -> PredictionRun | None: ...
def prediction_run(events: list[dict[str, Any]], *, trusted: bool = False) -> PredictionRun | None:
    """The columns of a run of ``prediction`` objects.

    Parameters
    ----------
    events : list of dict
        Parsed JSON objects whose ``type`` is ``"prediction"``.
    trusted : bool
        ``False``: check the run; ``True``: the objects are known to be valid (they
        passed the check, or are :func:`prediction_view` of models) and are not checked.

    Returns
    -------
    PredictionRun or None
        ``None`` (never with ``trusted``) unless every object is certainly valid.

    Examples
    --------
    >>> event = {"type": "prediction", "event_id": "a", "model_id": "m",
    ...     "model_version": "v1", "timestamp": 1767225600, "features": {}, "prediction": 1}
    >>> prediction_run([event]).event_ids
    ['a']
    >>> prediction_run([event | {"timestamp": "2026-01-01T00:00:00Z"}]) is None  # the models'
    True
    """
    if not events:
        return PredictionRun([], [], [], [], {}, [], [], [])
    check = not trusted
    if check:
        for keys in set(map(tuple, events)):
            if not (_PREDICTION_REQUIRED <= set(keys) <= _PREDICTION_ALLOWED):
                return None
    ids = list(map(_get("event_id"), events))
    models = list(map(_get("model_id"), events))
    versions = list(map(_get("model_version"), events))
    times = list(map(_get("timestamp"), events))
    dicts = list(map(_get("features"), events))
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
    predictions = list(map(_get("prediction"), events))
    scores = list(map(dict.get, events, repeat("score")))
    latency = list(map(dict.get, events, repeat("latency_ms")))
    shadows = list(map(dict.get, events, repeat("shadow"), repeat(False)))
    if check:
        kinds = set(map(type, predictions))
        if not (
            kinds <= _LABEL_TYPES
            and _texts(predictions, kinds, MAX_VALUE_LENGTH)
            and _in_range(scores, 0.0, 1.0)
            and _in_range(latency, 0.0, math.inf)
            and set(map(type, shadows)) <= {bool}
        ):
            return None
        # checked objects carry neither class scores nor a segment (not allowed above)
        return PredictionRun(
            ids,
            models,
            versions,
            times,
            features,
            predictions,
            scores,
            latency,
            shadows=shadows if any(shadows) else None,
        )
    return PredictionRun(
        ids,
        models,
        versions,
        times,
        features,
        predictions,
        scores,
        latency,
        class_scores=_present(list(map(dict.get, events, repeat("scores")))),
        segments=_present(list(map(dict.get, events, repeat("segment")))),
        shadows=shadows if any(shadows) else None,
    )


@overload
def feedback_run(events: list[dict[str, Any]], *, trusted: Literal[True]) -> FeedbackRun: ...
@overload
def feedback_run(events: list[dict[str, Any]], *, trusted: bool = False) -> FeedbackRun | None: ...
def feedback_run(events: list[dict[str, Any]], *, trusted: bool = False) -> FeedbackRun | None:
    """The columns of a run of ``feedback`` objects.

    Parameters
    ----------
    events : list of dict
        Parsed JSON objects whose ``type`` is ``"feedback"``.
    trusted : bool
        ``False``: check the run; ``True``: the objects are known to be valid (they
        passed the check, or are :func:`feedback_view` of models) and are not checked.

    Returns
    -------
    FeedbackRun or None
        ``None`` (never with ``trusted``) unless every object is certainly valid.

    Examples
    --------
    >>> event = {"type": "feedback", "event_id": "a", "model_id": "m",
    ...     "timestamp": 1767225600, "label": 1}
    >>> feedback_run([event]).labels, feedback_run([event | {"label": True}])
    ([1], None)
    """
    if not events:
        return FeedbackRun([], [], [], [])
    if not trusted:
        for keys in set(map(tuple, events)):
            if set(keys) != _FEEDBACK_KEYS:
                return None
    labels = list(map(_get("label"), events))
    ids = list(map(_get("event_id"), events))
    models = list(map(_get("model_id"), events))
    times = list(map(_get("timestamp"), events))
    if not trusted:
        kinds = set(map(type, labels))
        if not (
            kinds <= _LABEL_TYPES
            and _texts(labels, kinds, MAX_ID_LENGTH)
            and _identifiers(ids)
            and _identifiers(models, distinct=True)
            and _epochs(times)
        ):
            return None
    return FeedbackRun(ids, models, times, labels)


def prediction_view(event: PredictionEvent) -> dict[str, Any]:
    """A validated prediction as the plain object a run is built from (``trusted``).

    Examples
    --------
    >>> event = PredictionEvent(event_id="a", model_id="m", model_version="v1",
    ...     timestamp="2026-01-01T00:00:00Z", features={"x": 1}, prediction="yes")
    >>> run = prediction_run([prediction_view(event)], trusted=True)
    >>> run.timestamps, run.features, run.predictions
    ([1767225600.0], {'x': [1.0]}, ['yes'])
    """
    return {
        "type": "prediction",
        "event_id": event.event_id,
        "model_id": event.model_id,
        "model_version": event.model_version,
        "timestamp": event.timestamp.timestamp(),
        "features": event.features,
        "prediction": event.prediction,
        "score": event.score,
        "scores": event.scores,
        "latency_ms": event.latency_ms,
        "segment": event.segment,
        "shadow": event.shadow,
    }


def feedback_view(event: FeedbackEvent) -> dict[str, Any]:
    """A validated label as the plain object a run is built from (``trusted``).

    Examples
    --------
    >>> event = FeedbackEvent(event_id="a", model_id="m", timestamp=1767225600, label=1)
    >>> feedback_run([feedback_view(event)], trusted=True).labels
    [1.0]
    """
    return {
        "type": "feedback",
        "event_id": event.event_id,
        "model_id": event.model_id,
        "timestamp": event.timestamp.timestamp(),
        "label": event.label,
    }
