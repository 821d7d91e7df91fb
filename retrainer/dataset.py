"""Labelled training data: feature columns, labels and event times, split by time.

A :class:`LabelledDataset` is the contract between the store (which joins
predictions with their feedback) and the training core. Numeric features are
float64 arrays with NaN for missing values; categorical features are object arrays
of strings with ``None`` for missing values. Labels are float64 for regression and
strings for classification (``"0"``/``"1"`` for a binary model labelled with
numbers, written as the monitors write them). Splits are by event time: the newest
rows are the holdout, so a model is always judged on data newer than it learned from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from driftline.detectors.coerce import category_string
from driftline.schemas.monitor import MonitorConfig

__all__ = ["LabelledDataset", "check_features", "from_rows"]


@dataclass(frozen=True, eq=False)
class LabelledDataset:
    """Feature columns, labels, event times and event ids of labelled predictions.

    Parameters
    ----------
    features
        Feature name to a 1-D column: float64 (NaN missing) for numeric features,
        object/str (``None`` missing) for categorical ones.
    labels
        float64 for regression, strings for classification.
    timestamps
        Event times, float64 epoch seconds.
    event_ids
        The predictions' event ids (strings); they break ties between equal times.

    Examples
    --------
    >>> ds = LabelledDataset(
    ...     features={"x": np.array([3.0, 1.0, 2.0, 4.0]),
    ...               "c": np.array(["a", None, "b", "a"], dtype=object)},
    ...     labels=np.array(["1", "0", "0", "1"]),
    ...     timestamps=np.array([30.0, 10.0, 20.0, 40.0]),
    ...     event_ids=np.array(["e3", "e1", "e2", "e4"]),
    ... )
    >>> len(ds), ds.sort_by_time().event_ids.tolist()
    (4, ['e1', 'e2', 'e3', 'e4'])
    >>> train, holdout = ds.time_split(0.25)
    >>> train.event_ids.tolist(), holdout.event_ids.tolist()
    (['e1', 'e2', 'e3'], ['e4'])
    """

    features: dict[str, np.ndarray]
    labels: np.ndarray
    timestamps: np.ndarray
    event_ids: np.ndarray
    #: Per segment key of the monitor, each row's value (``""`` where it has none).
    segments: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Check that every column is 1-D and that all have the same length."""
        if not isinstance(self.features, Mapping) or not self.features:
            raise ValueError("a labelled dataset needs at least one feature column")
        n = _length("labels", self.labels)
        for name, column in (("timestamps", self.timestamps), ("event_ids", self.event_ids)):
            if _length(name, column) != n:
                raise ValueError(f"{name} has {len(column)} rows but labels has {n}")
        for name, column in self.features.items():
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"feature names must be non-empty strings, got {name!r}")
            if _length(f"feature {name!r}", column) != n:
                raise ValueError(f"feature {name!r} has {len(column)} rows but labels has {n}")
        if self.timestamps.dtype.kind not in "fiu":
            raise ValueError(f"timestamps must be epoch seconds, got dtype {self.timestamps.dtype}")

    def __len__(self) -> int:
        """Number of rows."""
        return int(self.labels.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes of the rows: numeric columns as stored, text (categories, class labels,
        event ids) as its UTF-8.

        Examples
        --------
        >>> LabelledDataset(features={"x": np.zeros(2)}, labels=np.array(["1", "0"]),
        ...     timestamps=np.zeros(2), event_ids=np.array(["a", "bb"])).nbytes
        37
        """
        columns = [*self.features.values(), self.labels, self.timestamps, self.event_ids]
        return sum(_column_bytes(column) for column in columns)

    def take(self, rows: npt.ArrayLike) -> LabelledDataset:
        """The dataset restricted to ``rows`` (indices or a boolean mask), in that order."""
        index = np.asarray(rows)
        return LabelledDataset(
            features={name: column[index] for name, column in self.features.items()},
            labels=self.labels[index],
            timestamps=self.timestamps[index],
            event_ids=self.event_ids[index],
            segments={key: column[index] for key, column in self.segments.items()},
        )

    def time_order(self) -> np.ndarray:
        """Row indices from oldest to newest (ties broken by event id)."""
        return np.lexsort((self.event_ids.astype(str), self.timestamps.astype(np.float64)))

    def sort_by_time(self) -> LabelledDataset:
        """The rows from oldest to newest; equal times are ordered by event id."""
        return self.take(self.time_order())

    def time_split(self, holdout_fraction: float) -> tuple[LabelledDataset, LabelledDataset]:
        """Split into ``(older rows, newest rows)``; the second part has ``holdout_fraction``.

        The holdout gets ``round(n * holdout_fraction)`` rows, at least one, and the
        first part keeps at least one row. Deterministic: time order, then event id.

        Raises
        ------
        ValueError
            When the fraction is not in (0, 1) or the dataset has fewer than 2 rows.
        """
        if not 0.0 < holdout_fraction < 1.0 or math.isnan(holdout_fraction):
            raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction!r}")
        n = len(self)
        if n < 2:
            raise ValueError(f"cannot split {n} row(s) into train and holdout; need at least 2")
        n_holdout = min(max(1, round(n * holdout_fraction)), n - 1)
        order = self.time_order()
        return self.take(order[: n - n_holdout]), self.take(order[n - n_holdout :])

    @classmethod
    def from_rows(
        cls, rows: Sequence[Mapping[str, Any]], monitor: MonitorConfig
    ) -> LabelledDataset:
        """Build a dataset from joined store rows; see :func:`from_rows`."""
        return from_rows(rows, monitor)


def _column_bytes(column: np.ndarray) -> int:
    """A column's bytes: its buffer when numeric, else its values' UTF-8 (nulls: 0)."""
    if column.dtype.kind in "biuf":
        return int(column.nbytes)
    return sum(len(str(v).encode()) for v in column.tolist() if v is not None)


def _length(name: str, column: Any) -> int:
    if not isinstance(column, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(column).__name__}")
    if column.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {column.shape}")
    return int(column.shape[0])


def check_features(
    features: Mapping[str, np.ndarray], expected: Mapping[str, str], *, what: str = "features"
) -> None:
    """Raise ``ValueError`` naming the features of ``expected`` that ``features`` lacks.

    Examples
    --------
    >>> check_features({"x": np.zeros(2)}, {"x": "numeric", "y": "categorical"})
    Traceback (most recent call last):
    ...
    ValueError: features lack 'y' (expected ['x', 'y'])
    """
    missing = [name for name in expected if name not in features]
    if missing:
        names = ", ".join(repr(name) for name in missing)
        raise ValueError(f"{what} lack {names} (expected {sorted(expected)})")


def _epoch_seconds(value: Any, event_id: str) -> float:
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return moment.timestamp()
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"row {event_id!r}: timestamp {value!r} is neither a datetime nor epoch")
    seconds = float(value)
    if not math.isfinite(seconds):
        raise ValueError(f"row {event_id!r}: timestamp {value!r} is not finite")
    return seconds


def _number(value: Any) -> float:
    if value is None or isinstance(value, bool):
        return math.nan
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return math.nan


def _label(row: Mapping[str, Any], regression: bool) -> float | str | None:
    value, text = row.get("label_value"), row.get("label_class")
    if regression:
        number = _number(value) if value is not None else _number(text)
        return number if math.isfinite(number) else None
    if text is not None:
        return str(text)
    return category_string(value)


def from_rows(rows: Sequence[Mapping[str, Any]], monitor: MonitorConfig) -> LabelledDataset:
    """Build a :class:`LabelledDataset` from predictions joined with their feedback.

    Each row has ``event_id``, ``timestamp`` (a datetime, naive meaning UTC, or epoch
    seconds), ``features_num`` and ``features_cat`` (name to value maps, as in the
    ``predictions`` table), ``label_value`` and ``label_class``. A numeric feature is
    read from ``features_num`` (or parsed from ``features_cat``; NaN when absent or
    not a number). A categorical feature is read from ``features_cat`` (or from a
    number in ``features_num``, written as the monitors write categories: ``3.0`` is
    ``"3"``); ``None`` when absent. Rows without a usable label are skipped.

    Raises
    ------
    ValueError
        When a row lacks ``event_id`` or has a bad timestamp, or no row has a label.

    Examples
    --------
    >>> monitor = MonitorConfig(model_id="m", features={"x": "numeric", "c": "categorical"})
    >>> ds = from_rows([
    ...     {"event_id": "a", "timestamp": 10.0, "features_num": {"x": 1.5},
    ...      "features_cat": {"c": "red"}, "label_value": 1.0, "label_class": None},
    ...     {"event_id": "b", "timestamp": 20.0, "features_num": {"c": 3.0},
    ...      "features_cat": {}, "label_value": None, "label_class": "0"},
    ... ], monitor)
    >>> ds.features["x"].tolist(), ds.features["c"].tolist(), ds.labels.tolist()
    ([1.5, nan], ['red', '3'], ['1', '0'])
    """
    regression = monitor.task == "regression"
    names = list(monitor.features)
    columns: dict[str, list[Any]] = {name: [] for name in names}
    labels: list[Any] = []
    times: list[float] = []
    ids: list[str] = []
    keys = monitor.segments.keys if monitor.segments is not None else ()
    segments: dict[str, list[str]] = {key: [] for key in keys}
    for position, row in enumerate(rows):
        event_id = row.get("event_id")
        if event_id is None:
            raise ValueError(f"row {position} has no event_id")
        event_id = str(event_id)
        label = _label(row, regression)
        if label is None:
            continue
        numeric = row.get("features_num") or {}
        categorical = row.get("features_cat") or {}
        for name in names:
            if monitor.features[name] == "numeric":
                raw = numeric.get(name)
                columns[name].append(_number(raw if raw is not None else categorical.get(name)))
            else:
                raw = categorical.get(name)
                columns[name].append(
                    str(raw) if raw is not None else category_string(numeric.get(name))
                )
        times.append(_epoch_seconds(row.get("timestamp"), event_id))
        ids.append(event_id)
        segment = row.get("segment") or {}
        for key in keys:
            segments[key].append(str(segment.get(key, "")))
        labels.append(label)
    if not labels:
        raise ValueError(
            f"no labelled rows among {len(rows)} row(s) for model {monitor.model_id!r}"
        )
    features: dict[str, np.ndarray] = {}
    for name in names:
        if monitor.features[name] == "numeric":
            features[name] = np.asarray(columns[name], dtype=np.float64)
        else:
            column = np.empty(len(ids), dtype=object)
            column[:] = columns[name]
            features[name] = column
    return LabelledDataset(
        features=features,
        labels=np.asarray(labels, dtype=np.float64 if regression else str),
        timestamps=np.asarray(times, dtype=np.float64),
        event_ids=np.asarray(ids, dtype=str),
        segments={key: np.asarray(values, dtype=str) for key, values in segments.items()},
    )
