"""Online concept-drift detectors over the per-event error stream.

Adapters over river's ``drift.ADWIN``, ``drift.PageHinkley``, ``drift.KSWIN`` and
``drift.binary.DDM`` (written against river 0.26.1). They watch the stream of errors
of labelled predictions: 0/1 misclassifications for classification, absolute errors
for regression (:func:`error_stream`); DDM takes 0/1 only.

* :meth:`OnlineDetector.update_many` feeds an array and returns the indices (into
  that array) after which a drift was detected. Non-finite values are skipped. river's
  detectors update one value at a time, so this is a tight Python loop over the
  values; it is the only per-event loop in the core.
* :meth:`OnlineDetector.to_state` returns a JSON-serialisable dict: the constructor
  parameters, river's version, and the river object's instance attributes pickled and
  base64-encoded (bound methods are stored by name). :meth:`OnlineDetector.from_state`
  rebuilds the detector, which then continues exactly as the original would. The
  unpickler only admits classes from ``river.drift``, ``river.stats``,
  ``river._river_rust`` and a few stdlib/numpy value types.
"""

from __future__ import annotations

import base64
import inspect
import io
import math
import pickle
from collections.abc import Mapping
from typing import Any, ClassVar, Final

import numpy as np
import numpy.typing as npt
import river
from river import base as river_base
from river import drift
from river.drift import binary

from .coerce import as_float_array, category_array

__all__ = [
    "DETECTORS",
    "RIVER_VERSION",
    "ADWINDetector",
    "DDMDetector",
    "KSWINDetector",
    "OnlineDetector",
    "PageHinkleyDetector",
    "error_stream",
    "get_detector",
]

#: The river version the adapters run on.
RIVER_VERSION: Final[str] = str(river.__version__)

_ALLOWED_PREFIXES: Final[tuple[str, ...]] = ("river.drift.", "river.stats.", "river._river_rust")
_ALLOWED_GLOBALS: Final[frozenset[tuple[str, str]]] = frozenset(
    {
        ("collections", "deque"),
        ("random", "Random"),
        ("numpy", "dtype"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.multiarray", "scalar"),
    }
)


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS or module.startswith(_ALLOWED_PREFIXES):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"detector state may not reference {module}.{name}")


def error_stream(
    task: str, predictions: npt.ArrayLike, labels: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Per-event errors of the labelled rows, in input order.

    Classification gives 1.0 for a wrong prediction and 0.0 for a right one;
    regression gives the absolute error. Unlabelled rows (null label) are dropped.

    Examples
    --------
    >>> error_stream("multiclass", ["a", "b", "c"], ["a", None, "b"]).tolist()
    [0.0, 1.0]
    >>> error_stream("regression", [1.0, 2.0], [1.5, 2.0]).tolist()
    [0.5, 0.0]
    """
    if task == "regression":
        p = as_float_array(predictions)
        y = as_float_array(labels)
        keep = np.isfinite(y) & np.isfinite(p)
        return np.abs(p[keep] - y[keep])
    pred, _ = category_array(predictions)
    lab, unlabelled = category_array(labels)
    keep = ~unlabelled
    return (pred[keep] != lab[keep]).astype(np.float64)


class OnlineDetector:
    """Base adapter: a river drift detector behind a small, serialisable interface.

    Examples
    --------
    >>> det = get_detector("page_hinkley", threshold=20.0)
    >>> errors = np.r_[np.zeros(500), np.ones(500)]
    >>> det.update_many(errors).tolist()
    [520]
    >>> det.n_seen, det.n_detections
    (1000, 1)
    """

    name: ClassVar[str] = ""
    #: What the detector watches, in one line.
    description: ClassVar[str] = ""
    #: Takes only 0/1 input.
    binary_input: ClassVar[bool] = False
    _river_cls: ClassVar[type[river_base.DriftDetector] | type[river_base.BinaryDriftDetector]]
    _defaults: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, **params: Any) -> None:
        if not self.name:
            raise TypeError("OnlineDetector is a base class; use a detector from DETECTORS")
        unknown = set(params) - set(self._defaults)
        if unknown:
            raise TypeError(f"{self.name} takes no parameters {sorted(unknown)}")
        self._params: dict[str, Any] = {**self._defaults, **params}
        self._detector = self._river_cls(**self._params)
        self.n_seen = 0
        self.n_detections = 0

    @property
    def params(self) -> dict[str, Any]:
        """Constructor parameters."""
        return dict(self._params)

    @property
    def drift_detected(self) -> bool:
        """Whether the last update detected a drift."""
        return bool(self._detector.drift_detected)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params.items())
        return f"{type(self).__name__}({args})"

    def update(self, x: float) -> bool:
        """Feed one value; return whether a drift was detected (non-finite: skipped)."""
        return bool(self.update_many(np.asarray([x], dtype=np.float64)).size)

    def update_many(self, values: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Feed values in order; return the indices after which a drift was detected."""
        x = as_float_array(values)
        finite = np.isfinite(x)
        if self.binary_input and not np.isin(x[finite], (0.0, 1.0)).all():
            raise ValueError(f"{self.name} takes 0/1 errors only")
        positions = np.flatnonzero(finite)
        det = self._detector
        update = det.update
        hits: list[int] = []
        if self.binary_input:
            for i, v in zip(positions.tolist(), (x[finite] > 0.5).tolist(), strict=True):
                update(v)
                if det.drift_detected:
                    hits.append(i)
        else:
            for i, fv in zip(positions.tolist(), x[finite].tolist(), strict=True):
                update(fv)
                if det.drift_detected:
                    hits.append(i)
        self.n_seen += int(positions.size)
        self.n_detections += len(hits)
        return np.asarray(hits, dtype=np.int64)

    def reset(self) -> None:
        """Forget everything seen."""
        self._detector = self._river_cls(**self._params)
        self.n_seen = 0
        self.n_detections = 0

    def clone(self) -> OnlineDetector:
        """A fresh detector with the same parameters."""
        return type(self)(**self._params)

    def to_state(self) -> dict[str, Any]:
        """JSON-serialisable state from which :meth:`from_state` restores this detector."""
        attrs: dict[str, Any] = {}
        methods: dict[str, str] = {}
        for key, value in vars(self._detector).items():
            if inspect.ismethod(value) and value.__self__ is self._detector:
                methods[key] = value.__func__.__name__
            else:
                attrs[key] = value
        payload = base64.b64encode(pickle.dumps(attrs, protocol=4)).decode("ascii")
        return {
            "detector": self.name,
            "params": dict(self._params),
            "river_version": RIVER_VERSION,
            "n_seen": self.n_seen,
            "n_detections": self.n_detections,
            "attrs": payload,
            "methods": methods,
        }

    @staticmethod
    def from_state(state: Mapping[str, Any]) -> OnlineDetector:
        """Rebuild a detector from :meth:`to_state` (any subclass, by ``detector``)."""
        cls = DETECTORS[str(state["detector"])]
        det = cls(**dict(state["params"]))
        raw = base64.b64decode(str(state["attrs"]).encode("ascii"), validate=True)
        attrs = _RestrictedUnpickler(io.BytesIO(raw)).load()
        if not isinstance(attrs, dict):
            raise ValueError("corrupt detector state")
        inner = det._detector
        vars(inner).update(attrs)
        for key, method in dict(state.get("methods", {})).items():
            func = getattr(type(inner), str(method), None)
            if not callable(func):
                raise ValueError(f"corrupt detector state: no method {method!r}")
            setattr(inner, str(key), getattr(inner, str(method)))
        det.n_seen = int(state["n_seen"])
        det.n_detections = int(state["n_detections"])
        return det


class ADWINDetector(OnlineDetector):
    """ADWIN (adaptive windowing; Bifet & Gavalda 2007) on errors.

    Examples
    --------
    >>> rng = np.random.default_rng(7)
    >>> errors = np.r_[rng.random(2000) < 0.1, rng.random(2000) < 0.5].astype(float)
    >>> hits = ADWINDetector().update_many(errors)
    >>> bool(hits.size) and 2000 <= int(hits[0]) < 2200
    True
    """

    name: ClassVar[str] = "adwin"
    description: ClassVar[str] = "change in the mean of the error stream (adaptive window)"
    _river_cls = drift.ADWIN
    _defaults: ClassVar[Mapping[str, Any]] = {
        "delta": 0.002,
        "clock": 32,
        "max_buckets": 5,
        "min_window_length": 5,
        "grace_period": 10,
    }


class PageHinkleyDetector(OnlineDetector):
    """Page-Hinkley test (Page 1954) on errors.

    Examples
    --------
    >>> errors = np.r_[np.full(300, 0.1), np.full(300, 0.9)]
    >>> PageHinkleyDetector(threshold=10.0).update_many(errors).tolist()
    [312]
    """

    name: ClassVar[str] = "page_hinkley"
    description: ClassVar[str] = "cumulative deviation of the error stream from its mean"
    _river_cls = drift.PageHinkley
    _defaults: ClassVar[Mapping[str, Any]] = {
        "min_instances": 30,
        "delta": 0.005,
        "threshold": 50.0,
        "alpha": 1 - 0.0001,
        "mode": "both",
    }


class KSWINDetector(OnlineDetector):
    """KSWIN (Raab et al. 2020): Kolmogorov-Smirnov test on a sliding window.

    ``seed`` defaults to 0 so that runs are reproducible.

    Examples
    --------
    >>> rng = np.random.default_rng(3)
    >>> errors = np.r_[rng.normal(0, 0.1, 300), rng.normal(1, 0.1, 300)]
    >>> hits = KSWINDetector(alpha=0.0001).update_many(errors)
    >>> 300 <= int(hits[0]) < 330
    True
    """

    name: ClassVar[str] = "kswin"
    description: ClassVar[str] = "distribution change inside a sliding window of errors"
    _river_cls = drift.KSWIN
    _defaults: ClassVar[Mapping[str, Any]] = {
        "alpha": 0.005,
        "window_size": 100,
        "stat_size": 30,
        "seed": 0,
    }


class DDMDetector(OnlineDetector):
    """DDM (Gama et al. 2004), the drift detection method on 0/1 errors.

    Examples
    --------
    >>> rng = np.random.default_rng(5)
    >>> errors = np.r_[rng.random(1000) < 0.05, rng.random(1000) < 0.4].astype(float)
    >>> hits = DDMDetector().update_many(errors)
    >>> 1000 <= int(hits[0]) < 1100
    True
    """

    name: ClassVar[str] = "ddm"
    description: ClassVar[str] = "error rate rising past its minimum plus three standard deviations"
    binary_input: ClassVar[bool] = True
    _river_cls = binary.DDM
    _defaults: ClassVar[Mapping[str, Any]] = {
        "warm_start": 30,
        "warning_threshold": 2.0,
        "drift_threshold": 3.0,
    }


#: Detector class by name.
DETECTORS: Final[Mapping[str, type[OnlineDetector]]] = {
    cls.name: cls for cls in (ADWINDetector, PageHinkleyDetector, KSWINDetector, DDMDetector)
}


def get_detector(name: str, **params: Any) -> OnlineDetector:
    """The detector called ``name`` (``adwin``, ``page_hinkley``, ``kswin``, ``ddm``).

    Examples
    --------
    >>> get_detector("ddm", drift_threshold=2.5)
    DDMDetector(warm_start=30, warning_threshold=2.0, drift_threshold=2.5)
    """
    try:
        cls = DETECTORS[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; choose from {sorted(DETECTORS)}") from None
    for key, value in params.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{key} must be finite")
    return cls(**params)
