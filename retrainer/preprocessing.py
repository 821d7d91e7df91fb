"""Feature and label encoding learned from training data, stored with the model.

:class:`Preprocessor` turns feature columns into one float32 matrix from the
monitor's feature kinds:

* a numeric feature gives two columns: the value standardised with the training
  mean and standard deviation (missing or non-finite values become 0 after
  standardising) and a 0/1 missing indicator;
* a categorical feature is one-hot over its ``max_categories`` most frequent
  training categories (ties by name), plus an "other" column for every other or
  unseen category and a "missing" column.

Labels are encoded too: class indices over the sorted training classes for
classification, the standardised value for regression. Everything is stored as
JSON (:meth:`Preprocessor.to_json`), which reads back exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from driftline.detectors.coerce import category_string
from driftline.schemas.monitor import MonitorConfig, Task
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .dataset import LabelledDataset, check_features

__all__ = ["CategoricalEncoding", "NumericEncoding", "Preprocessor"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NumericEncoding(_Frozen):
    """Standardisation of one numeric feature.

    Examples
    --------
    >>> enc = NumericEncoding(name="x", mean=2.0, std=0.5)
    >>> enc.encode(np.array([2.5, np.nan])).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """

    name: str
    mean: float = Field(allow_inf_nan=False)
    std: float = Field(gt=0, allow_inf_nan=False)

    def encode(self, values: np.ndarray) -> np.ndarray:
        """``(n, 2)`` float32: the standardised value (0 when missing) and the missing flag."""
        x = _floats(values, self.name)
        missing = ~np.isfinite(x)
        z = np.where(missing, 0.0, (np.where(missing, 0.0, x) - self.mean) / self.std)
        return np.stack([z, missing.astype(np.float64)], axis=1).astype(np.float32)


class CategoricalEncoding(_Frozen):
    """One-hot encoding of one categorical feature over its kept training categories.

    Columns: one per kept category, then "other", then "missing".

    Examples
    --------
    >>> enc = CategoricalEncoding(name="c", categories=("a", "b"))
    >>> enc.encode(np.array(["b", "z", None], dtype=object)).tolist()
    [[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
    """

    name: str
    categories: tuple[str, ...]

    @property
    def width(self) -> int:
        """Number of columns."""
        return len(self.categories) + 2

    def encode(self, values: np.ndarray) -> np.ndarray:
        """``(n, categories + 2)`` float32 one-hot rows."""
        index = self.indices(values)
        out = np.zeros((index.size, self.width), dtype=np.float32)
        out[np.arange(index.size), index] = 1.0
        return out

    def indices(self, values: np.ndarray) -> np.ndarray:
        """The column of each value: its category, "other" or "missing"."""
        lookup = {category: i for i, category in enumerate(self.categories)}
        other, missing = len(self.categories), len(self.categories) + 1
        strings = _category_strings(values)
        return np.fromiter(
            (missing if s is None else lookup.get(s, other) for s in strings),
            dtype=np.int64,
            count=len(strings),
        )


class Preprocessor(_Frozen):
    """Feature matrix and label encoding fitted on training data.

    Examples
    --------
    >>> monitor = MonitorConfig(model_id="m", features={"x": "numeric", "c": "categorical"})
    >>> train = LabelledDataset(
    ...     features={"x": np.array([1.0, 3.0, np.nan]),
    ...               "c": np.array(["a", "b", "a"], dtype=object)},
    ...     labels=np.array(["no", "yes", "no"]),
    ...     timestamps=np.array([1.0, 2.0, 3.0]),
    ...     event_ids=np.array(["1", "2", "3"]),
    ... )
    >>> pre = Preprocessor.fit(train, monitor)
    >>> pre.classes, pre.width, pre.column_names
    (('no', 'yes'), 6, ('x', 'x:missing', 'c=a', 'c=b', 'c:other', 'c:missing'))
    >>> pre.transform({"x": np.array([2.0]), "c": np.array(["new"], dtype=object)}).tolist()
    [[0.0, 0.0, 0.0, 0.0, 1.0, 0.0]]
    >>> pre.encode_labels(np.array(["yes", "no"])).tolist()
    [1, 0]
    >>> Preprocessor.from_json(pre.to_json()) == pre
    True
    """

    task: Task
    numeric: tuple[NumericEncoding, ...] = ()
    categorical: tuple[CategoricalEncoding, ...] = ()
    classes: tuple[str, ...] = ()
    target_mean: float = Field(default=0.0, allow_inf_nan=False)
    target_std: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    format: Literal[1] = 1

    @model_validator(mode="after")
    def _consistent(self) -> Preprocessor:
        if not self.numeric and not self.categorical:
            raise ValueError("a preprocessor needs at least one feature")
        if self.task != "regression" and len(self.classes) < 2:
            raise ValueError(f"{self.task} needs at least 2 classes, got {list(self.classes)}")
        return self

    @classmethod
    def fit(cls, dataset: LabelledDataset, monitor: MonitorConfig) -> Preprocessor:
        """Learn the encodings of ``monitor``'s features and the labels from ``dataset``.

        Raises
        ------
        ValueError
            When a monitored feature is missing, a classification dataset has fewer
            than two classes, or the dataset is empty.
        """
        if len(dataset) == 0:
            raise ValueError("cannot fit a preprocessor on an empty dataset")
        check_features(dataset.features, monitor.features, what="training features")
        numeric: list[NumericEncoding] = []
        categorical: list[CategoricalEncoding] = []
        for name, kind in monitor.features.items():
            column = dataset.features[name]
            if kind == "numeric":
                mean, std = _moments(_floats(column, name))
                numeric.append(NumericEncoding(name=name, mean=mean, std=std))
            else:
                categorical.append(
                    CategoricalEncoding(
                        name=name,
                        categories=_top_categories(column, monitor.training.max_categories),
                    )
                )
        if monitor.task == "regression":
            target = _floats(dataset.labels, "labels")
            if not np.isfinite(target).all():
                raise ValueError("regression labels must all be finite numbers")
            mean, std = _moments(target)
            return cls(
                task=monitor.task,
                numeric=tuple(numeric),
                categorical=tuple(categorical),
                target_mean=mean,
                target_std=std,
            )
        classes = tuple(sorted({str(label) for label in dataset.labels.tolist()}))
        if len(classes) < 2:
            raise ValueError(
                f"the training labels hold one class only ({list(classes)}); "
                f"{monitor.task} needs at least 2"
            )
        return cls(
            task=monitor.task,
            numeric=tuple(numeric),
            categorical=tuple(categorical),
            classes=classes,
        )

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The input features, numeric first then categorical."""
        return tuple(e.name for e in self.numeric) + tuple(e.name for e in self.categorical)

    @property
    def width(self) -> int:
        """Number of columns of :meth:`transform`'s matrix."""
        return 2 * len(self.numeric) + sum(e.width for e in self.categorical)

    @property
    def column_names(self) -> tuple[str, ...]:
        """A name for every matrix column."""
        names: list[str] = []
        for num in self.numeric:
            names += [num.name, f"{num.name}:missing"]
        for cat in self.categorical:
            names += [f"{cat.name}={c}" for c in cat.categories]
            names += [f"{cat.name}:other", f"{cat.name}:missing"]
        return tuple(names)

    @property
    def n_outputs(self) -> int:
        """Model outputs: one per class, or 1 for regression."""
        return 1 if self.task == "regression" else len(self.classes)

    def transform(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """The ``(n, width)`` float32 matrix of ``features`` (extra columns are ignored).

        Raises
        ------
        ValueError
            When a feature is missing or the columns differ in length.
        """
        check_features(features, dict.fromkeys(self.feature_names, ""), what="features")
        lengths = {name: len(features[name]) for name in self.feature_names}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"feature columns differ in length: {lengths}")
        blocks = [e.encode(np.asarray(features[e.name])) for e in self.numeric]
        blocks += [e.encode(np.asarray(features[e.name])) for e in self.categorical]
        return np.concatenate(blocks, axis=1)

    def encode_labels(self, labels: np.ndarray) -> np.ndarray:
        """Class indices (int64) or standardised targets (float32).

        Raises
        ------
        ValueError
            When a class label was not seen in training, or a target is not finite.
        """
        if self.task == "regression":
            target = _floats(labels, "labels")
            if not np.isfinite(target).all():
                raise ValueError("regression labels must all be finite numbers")
            return ((target - self.target_mean) / self.target_std).astype(np.float32)
        lookup = {c: i for i, c in enumerate(self.classes)}
        strings = [str(label) for label in np.asarray(labels).tolist()]
        unknown = sorted(set(strings) - set(lookup))
        if unknown:
            raise ValueError(f"labels {unknown} are not among the classes {list(self.classes)}")
        return np.fromiter((lookup[s] for s in strings), dtype=np.int64, count=len(strings))

    def decode_targets(self, outputs: np.ndarray) -> np.ndarray:
        """Regression outputs back in label units (float64)."""
        return np.asarray(outputs, dtype=np.float64) * self.target_std + self.target_mean

    def to_json(self) -> str:
        """The encodings as JSON text; :meth:`from_json` reads it back exactly."""
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> Preprocessor:
        """Read a preprocessor written by :meth:`to_json`."""
        return cls.model_validate_json(text)


def _number(value: Any) -> float:
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


_vector_number = np.frompyfunc(_number, 1, 1)


def _floats(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D column, got shape {arr.shape}")
    if arr.dtype.kind in "fiub":
        return arr.astype(np.float64)
    return np.asarray(_vector_number(arr), dtype=np.float64)


def _category_strings(values: Any) -> list[str | None]:
    arr = np.asarray(values, dtype=object)
    if arr.ndim != 1:
        raise ValueError(f"a categorical column must be 1-D, got shape {arr.shape}")
    return [v if isinstance(v, str) else category_string(v) for v in arr.tolist()]


def _moments(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    mean = float(finite.mean())
    std = float(finite.std())
    return mean, std if std > 1e-12 and math.isfinite(std) else 1.0


def _top_categories(values: np.ndarray, limit: int) -> tuple[str, ...]:
    counts: dict[str, int] = {}
    for s in _category_strings(values):
        if s is not None:
            counts[s] = counts.get(s, 0) + 1
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return tuple(sorted(name for name, _ in ranked[:limit]))
