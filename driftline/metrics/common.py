"""What the worker's and the retrainer's metrics share: the cardinality guard, a
vectorised histogram, and the HTTP endpoint of the retrainer."""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from prometheus_client import CollectorRegistry
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from driftline.schemas.monitor import MonitorConfig

__all__ = [
    "MULTIVARIATE_FEATURE",
    "OTHER",
    "PREDICTION_FEATURE",
    "SCORE_FEATURE",
    "LabelGuard",
    "VectorHistogram",
    "start_metrics_server",
]

#: ``feature`` label of the prediction column's drift.
PREDICTION_FEATURE = "__prediction__"

#: ``feature`` label of the score column's drift (binary classifiers with a score).
SCORE_FEATURE = "__score__"

#: ``feature`` label of the multivariate (PCA reconstruction) drift of all features.
MULTIVARIATE_FEATURE = "__multivariate__"


#: The label value that stands for every value outside the configured set.
OTHER = "_other"


class LabelGuard:
    """Maps label values outside the configured models and features to ``"_other"``.

    Parameters
    ----------
    features : mapping
        Feature names per configured model id.

    Examples
    --------
    >>> guard = LabelGuard({"credit": ["income", "age"]})
    >>> guard.model("credit"), guard.model("spam-9000")
    ('credit', '_other')
    >>> guard.feature("credit", "age"), guard.feature("credit", "zip")
    ('age', '_other')
    >>> guard.feature("credit", "__prediction__"), guard.feature("spam", "age")
    ('__prediction__', '_other')
    """

    def __init__(self, features: Mapping[str, Iterable[str]]) -> None:
        self.models = frozenset(features)
        self._features = {model: frozenset(names) for model, names in features.items()}

    @classmethod
    def from_monitors(cls, monitors: Mapping[str, MonitorConfig]) -> LabelGuard:
        """The guard of a worker's monitor configs (model id to config)."""
        return cls({config.model_id: list(config.features) for config in monitors.values()})

    def model(self, model_id: str) -> str:
        """``model_id`` when it is configured, else ``"_other"``."""
        return model_id if model_id in self.models else OTHER

    def feature(self, model_id: str, feature: str) -> str:
        """``feature`` when it is configured for ``model_id`` (or names the prediction or
        score column), else ``"_other"``."""
        names = self._features.get(model_id)
        if names is None:
            return OTHER
        if feature in names or feature in (PREDICTION_FEATURE, SCORE_FEATURE, MULTIVARIATE_FEATURE):
            return feature
        return OTHER


class VectorHistogram(Collector):
    """A labelled histogram fed whole arrays at once (no Python work per value).

    Values go to the first bucket whose upper bound is at least the value, as
    prometheus-client's :class:`~prometheus_client.Histogram` does; NaN values are
    ignored. The registry exposes it like any histogram (``_bucket``, ``_count``,
    ``_sum``).

    Parameters
    ----------
    name, documentation : str
        The metric name (base unit, e.g. ``..._seconds``) and help text.
    labelnames : sequence of str
        Label names; :meth:`observe` takes one value per name.
    buckets : sequence of float
        Increasing upper bounds; ``+Inf`` is added when missing.
    registry : CollectorRegistry
        Where to register.

    Examples
    --------
    >>> from prometheus_client import generate_latest
    >>> registry = CollectorRegistry()
    >>> latency = VectorHistogram("demo_latency_seconds", "Latency.", ["model_id"],
    ...                           [0.1, 1.0], registry)
    >>> latency.observe(("m",), np.array([0.05, 0.1, 0.5, 7.0]))
    >>> print(generate_latest(registry).decode().strip())
    # HELP demo_latency_seconds Latency.
    # TYPE demo_latency_seconds histogram
    demo_latency_seconds_bucket{le="0.1",model_id="m"} 2.0
    demo_latency_seconds_bucket{le="1.0",model_id="m"} 3.0
    demo_latency_seconds_bucket{le="+Inf",model_id="m"} 4.0
    demo_latency_seconds_count{model_id="m"} 4.0
    demo_latency_seconds_sum{model_id="m"} 7.65
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        bounds = [float(b) for b in buckets]
        if not bounds or bounds[-1] != math.inf:
            bounds.append(math.inf)
        if any(b >= c for b, c in itertools.pairwise(bounds)):
            raise ValueError(f"{name}: bucket bounds must increase, got {list(buckets)}")
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.bounds = np.array(bounds)
        self._le = [floatToGoString(b) for b in bounds]
        self._series: dict[tuple[str, ...], tuple[np.ndarray, float]] = {}
        self._lock = threading.Lock()
        registry.register(self)

    def observe(self, labels: tuple[str, ...], values: np.ndarray) -> None:
        """Add every (non-NaN) value of ``values`` to the series of ``labels``."""
        self.observe_groups([labels], np.zeros(len(values), np.intp), values)

    def observe_groups(
        self, labels: Sequence[tuple[str, ...]], groups: np.ndarray, values: np.ndarray
    ) -> None:
        """Add ``values[i]`` to the series ``labels[groups[i]]`` for every ``i`` at once."""
        for given in labels:
            if len(given) != len(self.labelnames):
                raise ValueError(f"{self.name}: labels {given!r} do not match {self.labelnames}")
        values = np.asarray(values, dtype=np.float64)
        groups = np.asarray(groups, dtype=np.intp)
        keep = ~np.isnan(values)
        if not keep.all():
            values, groups = values[keep], groups[keep]
        if values.size == 0:
            return
        width = len(self.bounds)
        if len(labels) == 1:
            # one series (the usual group): a comparison per bound beats a binary search
            at_most = [np.count_nonzero(values <= bound) for bound in self.bounds[:-1]]
            counts = np.diff(np.array([0, *at_most, values.size]))[np.newaxis, :]
            sums = np.array([values.sum()])
        else:
            slots = np.searchsorted(self.bounds, values, side="left")
            counts = np.bincount(groups * width + slots, minlength=len(labels) * width)
            counts = counts.reshape(len(labels), width)
            sums = np.bincount(groups, weights=values, minlength=len(labels))
        with self._lock:
            for index, given in enumerate(labels):
                if not counts[index].any():
                    continue
                old, total = self._series.get(given, (np.zeros(width, np.int64), 0.0))
                self._series[given] = (old + counts[index], total + float(sums[index]))

    def describe(self) -> Iterable[Metric]:
        """The family without samples (names for the registry's duplicate check)."""
        return [HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterable[Metric]:
        """One histogram family with a series per label set observed."""
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            series = sorted(self._series.items())
        for labels, (counts, total) in series:
            cumulative = np.cumsum(counts).astype(np.float64).tolist()
            family.add_metric(
                list(labels),
                buckets=list(zip(self._le, cumulative, strict=True)),
                sum_value=total,
            )
        return [family]


def start_metrics_server(registry: CollectorRegistry, port: int, address: str = "127.0.0.1") -> Any:
    """Serve ``registry`` on ``http://address:port/metrics`` from a daemon thread (the
    retrainer's endpoint; loopback only unless ``address`` says otherwise, e.g.
    ``DRIFTLINE_RETRAINER_METRICS_HOST=0.0.0.0`` in a container); returns the HTTP
    server (``shutdown()`` stops it and ``server_close()`` frees the port)."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=address, registry=registry)
    return server


def _codes(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, list[str]]:
    """Integer codes per row and the distinct values of a string column."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not pa.types.is_dictionary(column.type):
        column = column.dictionary_encode()
    indices = column.indices.to_numpy(zero_copy_only=False).astype(np.intp, copy=False)
    return indices, [str(value) for value in column.dictionary.to_pylist()]
