"""Columnar row builders: decoded events plus their Kafka position to Arrow tables.

Batches stay vectorised (numpy in, Arrow out); single events are gathered into
flat lists so that no per-row numpy array is built. Map columns are built from
offsets, dictionary-encoded keys and values, which is how Arrow stores them.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from ..schemas.codec import FeedbackColumns, PredictionColumns
from ..schemas.events import FeedbackEvent, PredictionEvent

__all__ = ["FeedbackRows", "KafkaPosition", "PredictionRows"]

_MICROS = pa.timestamp("us", tz="UTC")


class KafkaPosition(NamedTuple):
    """Where a message came from (a named tuple: built once per message, so cheap).

    Examples
    --------
    >>> KafkaPosition("driftline.predictions", 0, 42).offset
    42
    """

    topic: str
    partition: int
    offset: int


class _Dictionary:
    """Interns strings to int32 codes for dictionary-encoded Arrow arrays."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}

    def code(self, value: str) -> int:
        found = self.codes.get(value)
        if found is None:
            found = self.codes[value] = len(self.codes)
        return found

    def codes_of(self, values: list[str]) -> np.ndarray:
        return np.fromiter((self.code(value) for value in values), np.int32, len(values))

    def array(self, codes: np.ndarray) -> pa.DictionaryArray:
        return pa.DictionaryArray.from_arrays(
            pa.array(codes, pa.int32()), pa.array(list(self.codes), pa.string())
        )


class _MapColumn:
    """Parts of a ``Map(String, V)`` or ``Array(String)`` column, appended chunk by chunk."""

    def __init__(self, keys: _Dictionary) -> None:
        self.keys = keys
        self.counts: list[np.ndarray] = []
        self.key_codes: list[np.ndarray] = []
        self.values: list[Any] = []

    def add_dense(self, names: list[str], matrix: np.ndarray, present: np.ndarray) -> None:
        """Rows of ``matrix`` (rows by names) where ``present`` is true."""
        codes = self.keys.codes_of(names)
        self.counts.append(present.sum(axis=1))
        self.key_codes.append(np.broadcast_to(codes, present.shape)[present])
        self.values.append(matrix[present])

    def add_constant(self, mapping: dict[str, Any], rows: int) -> None:
        """The same mapping on ``rows`` rows."""
        codes = self.keys.codes_of(list(mapping))
        self.counts.append(np.full(rows, len(mapping), dtype=np.int64))
        self.key_codes.append(np.tile(codes, rows))
        self.values.append(np.tile(np.array(list(mapping.values()), dtype=object), rows))

    def add_flat(self, counts: list[int], names: list[str], values: list[Any]) -> None:
        """Rows given as flat lists: ``counts[i]`` entries each."""
        self.counts.append(np.array(counts, dtype=np.int64))
        self.key_codes.append(self.keys.codes_of(names))
        self.values.append(values)

    def _offsets_and_keys(self) -> tuple[pa.Array, pa.DictionaryArray]:
        counts = np.concatenate(self.counts) if self.counts else np.zeros(0, np.int64)
        offsets = np.zeros(len(counts) + 1, dtype=np.int32)
        np.cumsum(counts, out=offsets[1:])
        codes = np.concatenate(self.key_codes) if self.key_codes else np.zeros(0, np.int32)
        return pa.array(offsets, pa.int32()), self.keys.array(codes.astype(np.int32))

    def build_map(self, value_type: pa.DataType) -> pa.MapArray:
        offsets, keys = self._offsets_and_keys()
        parts = [pa.array(part, value_type) for part in self.values if len(part)]
        items = pa.concat_arrays(parts) if parts else pa.array([], value_type)
        return pa.MapArray.from_arrays(offsets, keys, items)

    def build_list(self) -> pa.ListArray:
        offsets, keys = self._offsets_and_keys()
        return pa.ListArray.from_arrays(offsets, keys)


class _Rows:
    """Common parts: identity columns and the Kafka position of every row."""

    def __init__(self) -> None:
        self.names = _Dictionary()
        self.rows = 0
        self._topics = _Dictionary()
        self._models = _Dictionary()
        self._model_codes: list[np.ndarray] = []
        self._event_ids: list[np.ndarray] = []
        self._timestamps: list[np.ndarray] = []
        self._topic_codes: list[np.ndarray] = []
        self._partitions: list[np.ndarray] = []
        self._offsets: list[np.ndarray] = []
        self._batch_index: list[np.ndarray] = []

    def _position(self, rows: int, model_id: str, position: KafkaPosition) -> None:
        self.rows += rows
        self._model_codes.append(np.full(rows, self._models.code(model_id), np.int32))
        self._topic_codes.append(np.full(rows, self._topics.code(position.topic), np.int32))
        self._partitions.append(np.full(rows, position.partition, np.int32))
        self._offsets.append(np.full(rows, position.offset, np.int64))
        self._batch_index.append(np.arange(rows, dtype=np.uint32))

    def _positions(self, model_ids: list[str], positions: list[KafkaPosition]) -> None:
        """One row per (model, position), for gathered single events."""
        self.rows += len(positions)
        self._model_codes.append(self._models.codes_of(model_ids))
        self._topic_codes.append(self._topics.codes_of([where.topic for where in positions]))
        self._partitions.append(np.array([where.partition for where in positions], np.int32))
        self._offsets.append(np.array([where.offset for where in positions], np.int64))
        self._batch_index.append(np.zeros(len(positions), dtype=np.uint32))

    def _identity(self) -> dict[str, pa.Array]:
        timestamps = np.concatenate(self._timestamps) if self._timestamps else np.zeros(0)
        event_ids = np.concatenate(self._event_ids) if self._event_ids else np.zeros(0, object)
        now = int(time.time() * 1_000_000)
        return {
            "model_id": self._models.array(np.concatenate(self._model_codes)),
            "event_id": pa.array(event_ids, pa.string()),
            "timestamp": pa.array(np.round(timestamps * 1_000_000).astype(np.int64), _MICROS),
            "kafka_topic": self._topics.array(np.concatenate(self._topic_codes)),
            "kafka_partition": pa.array(np.concatenate(self._partitions), pa.int32()),
            "kafka_offset": pa.array(np.concatenate(self._offsets), pa.int64()),
            "batch_index": pa.array(np.concatenate(self._batch_index), pa.uint32()),
            "ingested_at": pa.array(np.full(self.rows, now, np.int64), _MICROS),
        }


def _optional(parts: list[np.ndarray | None], sizes: list[int], dtype: Any) -> pa.Array:
    """Concatenate optional per-chunk columns; a missing chunk is all null."""
    if all(part is None for part in parts):
        return pa.nulls(sum(sizes), dtype)
    arrays = [
        pa.nulls(size, dtype) if part is None else pa.array(part, dtype, from_pandas=True)
        for part, size in zip(parts, sizes, strict=True)
    ]
    return pa.concat_arrays(arrays)


class PredictionRows(_Rows):
    """Accumulates predictions for one insert into the ``predictions`` table, and the
    shadow predictions among them for one into ``shadow_predictions``.

    :meth:`build` is the served rows, :meth:`build_shadow` the shadow ones (both tables
    have the same columns).

    Examples
    --------
    >>> from driftline.schemas.codec import decode_ingest
    >>> rows = PredictionRows()
    >>> rows.add(decode_ingest(b'{"type": "prediction_batch", "model_id": "m",'
    ...     b' "model_version": "v1", "event_ids": ["a", "b"],'
    ...     b' "timestamps": [1767225600, 1767225601],'
    ...     b' "features": {"x": [1.5, null], "c": ["eu", "us"]}, "predictions": [0, 1]}'),
    ...     KafkaPosition("t", 0, 7))
    >>> table = rows.build()
    >>> table.num_rows, table.column("features_null").to_pylist()
    (2, [[], ['x']])
    """

    def __init__(self) -> None:
        super().__init__()
        self._versions = _Dictionary()
        self._version_codes: list[np.ndarray] = []
        self._numeric = _MapColumn(self.names)
        self._categorical = _MapColumn(self.names)
        self._nulls = _MapColumn(self.names)
        self._segments = _MapColumn(self.names)
        self._class_scores = _MapColumn(self.names)
        self._sizes: list[int] = []
        self._prediction_value: list[np.ndarray | None] = []
        self._prediction_class: list[np.ndarray | None] = []
        self._score: list[np.ndarray | None] = []
        self._latency: list[np.ndarray | None] = []
        self._shadow: list[np.ndarray] = []
        self._any_shadow = False
        self._singles: list[tuple[PredictionEvent, KafkaPosition]] = []
        self._built: pa.Table | None = None

    def add(self, columns: PredictionColumns | PredictionEvent, position: KafkaPosition) -> None:
        """Add a decoded batch (vectorised) or a single event (gathered for later)."""
        self._built = None
        if isinstance(columns, PredictionEvent):
            self._singles.append((columns, position))
            return
        rows = columns.rows
        self._shadow.append(np.full(rows, columns.shadow))
        self._any_shadow |= columns.shadow
        self._position(rows, columns.model_id, position)
        self._version_codes.append(np.full(rows, self._versions.code(columns.model_version)))
        self._event_ids.append(columns.event_ids)
        self._timestamps.append(columns.timestamps)
        numeric_names = list(columns.numeric)
        numeric = (
            np.column_stack([columns.numeric[name] for name in numeric_names])
            if numeric_names
            else np.zeros((rows, 0))
        )
        numeric_present = ~np.isnan(numeric)
        self._numeric.add_dense(numeric_names, numeric, numeric_present)
        categorical_names = list(columns.categorical)
        categorical = (
            np.column_stack([columns.categorical[name] for name in categorical_names])
            if categorical_names
            else np.zeros((rows, 0), dtype=object)
        )
        categorical_present = categorical != None  # noqa: E711 - elementwise test
        self._categorical.add_dense(categorical_names, categorical, categorical_present)
        self._nulls.add_dense(
            numeric_names + categorical_names,
            np.zeros((rows, len(numeric_names) + len(categorical_names))),
            np.hstack([~numeric_present, ~categorical_present]),
        )
        self._segments.add_constant(columns.segment, rows)
        self._class_scores.add_flat([0] * rows, [], [])
        self._sizes.append(rows)
        self._prediction_value.append(columns.prediction_value)
        self._prediction_class.append(columns.prediction_class)
        self._score.append(columns.score)
        self._latency.append(columns.latency_ms)

    def _fold_singles(self) -> None:
        """Turn gathered single events into one chunk with flat Python lists."""
        singles, self._singles = self._singles, []
        if not singles:
            return
        rows = len(singles)
        numeric: tuple[list[int], list[str], list[Any]] = ([], [], [])
        categorical: tuple[list[int], list[str], list[Any]] = ([], [], [])
        nulls: tuple[list[int], list[str], list[Any]] = ([], [], [])
        segments: tuple[list[int], list[str], list[Any]] = ([], [], [])
        class_scores: tuple[list[int], list[str], list[Any]] = ([], [], [])
        values: list[float | None] = []
        classes: list[str | None] = []
        scores: list[float | None] = []
        latencies: list[float | None] = []
        events = [event for event, _ in singles]
        shadow = np.array([event.shadow for event in events], dtype=bool)
        self._shadow.append(shadow)
        self._any_shadow |= bool(shadow.any())
        self._positions([event.model_id for event in events], [where for _, where in singles])
        self._version_codes.append(self._versions.codes_of([e.model_version for e in events]))
        for event in events:
            counts = [0, 0, 0]
            for name, value in event.features.items():
                if value is None:
                    nulls[1].append(name)
                    counts[2] += 1
                elif isinstance(value, str):
                    categorical[1].append(name)
                    categorical[2].append(value)
                    counts[1] += 1
                else:
                    numeric[1].append(name)
                    numeric[2].append(value)
                    counts[0] += 1
            numeric[0].append(counts[0])
            categorical[0].append(counts[1])
            nulls[0].append(counts[2])
            segment = event.segment or {}
            segments[0].append(len(segment))
            segments[1].extend(segment)
            segments[2].extend(segment.values())
            given = event.scores or {}
            class_scores[0].append(len(given))
            class_scores[1].extend(given)
            class_scores[2].extend(given.values())
            if isinstance(event.prediction, str):
                values.append(None)
                classes.append(event.prediction)
            else:
                values.append(event.prediction)
                classes.append(None)
            scores.append(event.score)
            latencies.append(event.latency_ms)
        self._event_ids.append(np.array([event.event_id for event in events], dtype=object))
        self._timestamps.append(np.array([event.timestamp.timestamp() for event in events]))
        self._numeric.add_flat(*numeric)
        self._categorical.add_flat(*categorical)
        self._nulls.add_flat(*nulls)
        self._segments.add_flat(*segments)
        self._class_scores.add_flat(*class_scores)
        self._sizes.append(rows)
        self._prediction_value.append(np.array(values, dtype=object))
        self._prediction_class.append(np.array(classes, dtype=object))
        self._score.append(np.array(scores, dtype=object))
        self._latency.append(np.array(latencies, dtype=object))

    @property
    def pending(self) -> int:
        """Rows added so far (batches and single events)."""
        return self.rows + len(self._singles)

    def build(self) -> pa.Table:
        """The Arrow table of the served rows added, in the ``predictions`` column order."""
        table = self._all()
        if not self._any_shadow:
            return table
        return table.filter(pa.array(~np.concatenate(self._shadow)))

    def build_shadow(self) -> pa.Table | None:
        """The table of the shadow rows added (same columns), ``None`` when there are none."""
        table = self._all()
        if not self._any_shadow:
            return None
        return table.filter(pa.array(np.concatenate(self._shadow)))

    def _all(self) -> pa.Table:
        if self._built is None:
            self._built = self._build_all()
        return self._built

    def _build_all(self) -> pa.Table:
        self._fold_singles()
        columns = self._identity()
        version_codes = (
            np.concatenate(self._version_codes) if self._version_codes else np.zeros(0, np.int32)
        )
        ordered = {
            "model_id": columns["model_id"],
            "model_version": self._versions.array(version_codes.astype(np.int32)),
            "event_id": columns["event_id"],
            "timestamp": columns["timestamp"],
            "features_num": self._numeric.build_map(pa.float64()),
            "features_cat": self._categorical.build_map(pa.string()),
            "features_null": self._nulls.build_list(),
            "prediction_value": _optional(self._prediction_value, self._sizes, pa.float64()),
            "prediction_class": _optional(self._prediction_class, self._sizes, pa.string()),
            "score": _optional(self._score, self._sizes, pa.float64()),
            "class_scores": self._class_scores.build_map(pa.float64()),
            "latency_ms": _optional(self._latency, self._sizes, pa.float64()),
            "segment": self._segments.build_map(pa.string()),
        }
        ordered.update(
            (name, columns[name])
            for name in (
                "kafka_topic",
                "kafka_partition",
                "kafka_offset",
                "batch_index",
                "ingested_at",
            )
        )
        return pa.table(ordered)


class FeedbackRows(_Rows):
    """Accumulates labels for one insert into the ``feedback`` table.

    Examples
    --------
    >>> from driftline.schemas.codec import decode_ingest
    >>> rows = FeedbackRows()
    >>> rows.add(decode_ingest(b'{"type": "feedback", "event_id": "a", "model_id": "m",'
    ...     b' "timestamp": 1767225600, "label": 1}'), KafkaPosition("t", 0, 3))
    >>> rows.build().column("label_value").to_pylist()
    [1.0]
    """

    def __init__(self) -> None:
        super().__init__()
        self._sizes: list[int] = []
        self._label_value: list[np.ndarray | None] = []
        self._label_class: list[np.ndarray | None] = []

    def add(self, columns: FeedbackColumns | FeedbackEvent, position: KafkaPosition) -> None:
        """Add decoded labels."""
        if isinstance(columns, FeedbackEvent):
            is_class = isinstance(columns.label, str)
            columns = FeedbackColumns(
                model_id=columns.model_id,
                event_ids=np.array([columns.event_id], dtype=object),
                timestamps=np.array([columns.timestamp.timestamp()]),
                label_value=None if is_class else np.array([columns.label], dtype=np.float64),
                label_class=np.array([columns.label], dtype=object) if is_class else None,
            )
        rows = columns.rows
        self._position(rows, columns.model_id, position)
        self._event_ids.append(columns.event_ids)
        self._timestamps.append(columns.timestamps)
        self._sizes.append(rows)
        self._label_value.append(columns.label_value)
        self._label_class.append(columns.label_class)

    @property
    def pending(self) -> int:
        """Rows added so far."""
        return self.rows

    def build(self) -> pa.Table:
        """The Arrow table of every row added, in the ``feedback`` column order."""
        columns = self._identity()
        return pa.table(
            {
                "model_id": columns["model_id"],
                "event_id": columns["event_id"],
                "timestamp": columns["timestamp"],
                "label_value": _optional(self._label_value, self._sizes, pa.float64()),
                "label_class": _optional(self._label_class, self._sizes, pa.string()),
                **{
                    name: columns[name]
                    for name in (
                        "kafka_topic",
                        "kafka_partition",
                        "kafka_offset",
                        "batch_index",
                        "ingested_at",
                    )
                },
            }
        )
