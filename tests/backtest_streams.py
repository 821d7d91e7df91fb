"""Synthetic prediction/feedback streams with known change points, as JSONL files.

A small, seeded generator for the backtest tests, and reusable by streaming tests and
the demo. :func:`simulate` draws a :class:`Stream` (numpy columns, one row per
prediction) and :func:`write_jsonl` writes it as DESIGN §3 events: ``prediction_batch``
+ ``feedback_batch`` lines, or single ``prediction`` + ``feedback`` lines, optionally
shuffled.

The model
    Numeric features ``x0..x{k-1}`` are standard normal (plus a mean shift from a given
    window on); categorical features draw from a category mix (which may change from a
    given window on). The score is ``sigmoid(1.5 (x0 + x1))`` rounded to 3 decimals and
    the prediction is ``1`` when the score is at least 0.5. The label equals the
    prediction with probability ``accuracy`` (which may drop from a given window on,
    a concept change that leaves the features alone) and is ``1 - prediction`` otherwise.
Time
    Window ``w`` covers ``[start + w W, start + (w + 1) W)``; its rows are spread over it
    (millisecond timestamps, increasing). Feedback arrives ``label_delay`` seconds later.

Examples
--------
>>> s = simulate(n_windows=2, per_window=100, n_numeric=2, seed=1)
>>> s.rows, sorted(s.features), int(s.labelled.sum())
(200, ['x0', 'x1'], 200)
>>> bool((np.diff(s.timestamps) > 0).all())
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson

__all__ = [
    "DEFAULT_MIX",
    "START",
    "Stream",
    "iso_at",
    "json_lines",
    "monitor_yaml",
    "simulate",
    "write_jsonl",
]

#: 2026-01-01T00:00:00Z.
START = 1_767_225_600.0
#: Default category mix of a categorical feature.
DEFAULT_MIX: Mapping[str, float] = {"north": 0.4, "south": 0.3, "east": 0.2, "west": 0.1}


@dataclass(frozen=True)
class Stream:
    """Predictions (one row each) with their labels; ``labelled`` marks rows with feedback."""

    model_id: str
    model_version: str
    event_ids: list[str]
    timestamps: np.ndarray
    features: dict[str, np.ndarray]
    predictions: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    labelled: np.ndarray
    label_delay: float = 60.0
    kinds: dict[str, str] = field(default_factory=dict)
    #: Each row's value of segment key ``segment_key`` (``""``: no segment), if any.
    segments: np.ndarray | None = None
    segment_key: str = "country"

    @property
    def rows(self) -> int:
        """Number of predictions."""
        return len(self.event_ids)


def simulate(
    *,
    n_windows: int,
    per_window: int,
    n_numeric: int = 10,
    categorical: Mapping[str, Mapping[str, float]] | None = None,
    seed: int = 0,
    start: float = START,
    window_seconds: float = 3600.0,
    mean_shift: Mapping[str, tuple[int, float]] | None = None,
    mix_change: Mapping[str, tuple[int, Mapping[str, float]]] | None = None,
    accuracy: float = 0.9,
    accuracy_change: tuple[int, float] | None = None,
    label_fraction: float = 1.0,
    model_id: str = "credit",
    model_version: str = "v1",
    id_prefix: str = "e",
    segments: Mapping[str, float] | None = None,
    segment_shift: tuple[str, str, int, float] | None = None,
) -> Stream:
    """Draw a stream of ``n_windows`` windows of ``per_window`` predictions.

    Parameters
    ----------
    categorical
        Categorical feature name to its category mix.
    mean_shift
        Numeric feature name to ``(first window, shift in standard deviations)``.
    mix_change
        Categorical feature name to ``(first window, new mix)``.
    accuracy, accuracy_change
        Share of labels equal to the prediction, and ``(first window, new share)``.
    label_fraction
        Share of predictions that get feedback.
    id_prefix
        Event ids are ``{id_prefix}{row}``; give reference and monitored streams
        different prefixes.
    segments
        Mix of the values of segment key ``country`` (drawn per row; ``""`` for none).
    segment_shift
        ``(segment value, numeric feature, first window, shift in standard deviations)``:
        a mean shift confined to one segment value.
    """
    rng = np.random.default_rng(seed)
    n = n_windows * per_window
    window = np.repeat(np.arange(n_windows), per_window)
    offsets = np.sort(rng.random((n_windows, per_window)), axis=1).reshape(-1)
    slot = window_seconds / per_window
    within = (np.tile(np.arange(per_window), n_windows) + offsets) * slot
    timestamps = start + window * window_seconds + np.floor(within * 1000.0) / 1000.0
    features: dict[str, np.ndarray] = {}
    kinds: dict[str, str] = {}
    shifts = dict(mean_shift or {})
    for i in range(n_numeric):
        name = f"x{i}"
        values = rng.normal(size=n)
        if name in shifts:
            first, delta = shifts[name]
            values = values + np.where(window >= first, delta, 0.0)
        features[name] = np.round(values, 4)
        kinds[name] = "numeric"
    segment_values = None
    if segments is not None:
        segment_values = np.array(list(segments), dtype=object)[_draw(rng, segments, n)]
        if segment_shift is not None:
            value, name, first, delta = segment_shift
            hit = (segment_values == value) & (window >= first)
            features[name] = np.round(features[name] + np.where(hit, delta, 0.0), 4)
    changes = dict(mix_change or {})
    for name, mix in (categorical or {}).items():
        cats = np.array(list(mix), dtype=object)
        values = cats[_draw(rng, mix, n)]
        if name in changes:
            first, new_mix = changes[name]
            new_cats = np.array(list(new_mix), dtype=object)
            later = window >= first
            values[later] = new_cats[_draw(rng, new_mix, int(later.sum()))]
        features[name] = values
        kinds[name] = "categorical"
    z = features["x0"] + features["x1"] if n_numeric >= 2 else rng.normal(size=n)
    scores = np.round(1.0 / (1.0 + np.exp(-1.5 * z)), 3)
    predictions = (scores >= 0.5).astype(np.int64)
    acc = np.full(n, accuracy)
    if accuracy_change is not None:
        acc = np.where(window >= accuracy_change[0], accuracy_change[1], acc)
    labels = np.where(rng.random(n) < acc, predictions, 1 - predictions)
    labelled = rng.random(n) < label_fraction
    return Stream(
        model_id=model_id,
        model_version=model_version,
        event_ids=[f"{id_prefix}{i}" for i in range(n)],
        timestamps=timestamps,
        features=features,
        predictions=predictions,
        scores=scores,
        labels=labels,
        labelled=labelled,
        kinds=kinds,
        segments=None if segment_values is None else segment_values.astype(str),
    )


def _draw(rng: np.random.Generator, mix: Mapping[str, float], n: int) -> np.ndarray:
    p = np.array(list(mix.values()), dtype=np.float64)
    return rng.choice(p.size, size=n, p=p / p.sum())


def _lines(stream: Stream, batch_size: int | None) -> tuple[list[bytes], list[bytes]]:
    """Prediction lines and feedback lines, each in time order."""
    n = stream.rows
    ts = stream.timestamps
    fb_ts = ts + stream.label_delay
    preds: list[bytes] = []
    feedback: list[bytes] = []
    if batch_size is None:
        cols = {name: values.tolist() for name, values in stream.features.items()}
        ts_list, fb_list = ts.tolist(), fb_ts.tolist()
        p_list, s_list, y_list = (
            stream.predictions.tolist(),
            stream.scores.tolist(),
            stream.labels.tolist(),
        )
        for i in range(n):
            event = {
                "type": "prediction",
                "event_id": stream.event_ids[i],
                "model_id": stream.model_id,
                "model_version": stream.model_version,
                "timestamp": ts_list[i],
                "features": {name: col[i] for name, col in cols.items()},
                "prediction": p_list[i],
                "score": s_list[i],
            }
            if stream.segments is not None and stream.segments[i]:
                event["segment"] = {stream.segment_key: str(stream.segments[i])}
            preds.append(orjson.dumps(event))
            if stream.labelled[i]:
                feedback.append(
                    orjson.dumps(
                        {
                            "type": "feedback",
                            "event_id": stream.event_ids[i],
                            "model_id": stream.model_id,
                            "timestamp": fb_list[i],
                            "label": y_list[i],
                        }
                    )
                )
        return preds, feedback
    for lo in range(0, n, batch_size):
        hi = min(n, lo + batch_size)
        chunk = np.arange(lo, hi)
        # a batch's segment is the whole batch's: one batch per segment value of the chunk
        groups = (
            [chunk]
            if stream.segments is None
            else [
                chunk[stream.segments[lo:hi] == value]
                for value in dict.fromkeys(stream.segments[lo:hi].tolist())
            ]
        )
        for rows in groups:
            batch: dict[str, Any] = {
                "type": "prediction_batch",
                "model_id": stream.model_id,
                "model_version": stream.model_version,
                "event_ids": [stream.event_ids[i] for i in rows.tolist()],
                "timestamps": ts[rows].tolist(),
                "features": {name: col[rows].tolist() for name, col in stream.features.items()},
                "predictions": stream.predictions[rows].tolist(),
                "scores": stream.scores[rows].tolist(),
            }
            if stream.segments is not None and stream.segments[rows[0]]:
                batch["segment"] = {stream.segment_key: str(stream.segments[rows[0]])}
            preds.append(orjson.dumps(batch))
        keep = np.flatnonzero(stream.labelled[lo:hi]) + lo
        if keep.size:
            feedback.append(
                orjson.dumps(
                    {
                        "type": "feedback_batch",
                        "model_id": stream.model_id,
                        "event_ids": [stream.event_ids[i] for i in keep.tolist()],
                        "timestamps": fb_ts[keep].tolist(),
                        "labels": stream.labels[keep].tolist(),
                    }
                )
            )
    return preds, feedback


def write_jsonl(
    stream: Stream,
    path: Path | str,
    *,
    batch_size: int | None = 1000,
    feedback: Literal["interleaved", "after", "before"] = "interleaved",
    shuffle_seed: int | None = None,
    extra_lines: Sequence[bytes | str | dict[str, Any]] = (),
) -> Path:
    """Write a stream as JSONL and return the path.

    Parameters
    ----------
    batch_size
        Rows per ``prediction_batch``/``feedback_batch`` line; ``None`` writes single
        ``prediction`` and ``feedback`` events.
    feedback
        ``interleaved``: each feedback line follows its predictions; ``after``/``before``:
        all feedback after/before all predictions.
    shuffle_seed
        Shuffle all lines with this seed (feedback may then precede its prediction).
    extra_lines
        Lines appended as they are (dicts are JSON-encoded).
    """
    preds, fbs = _lines(stream, batch_size)
    if feedback == "after":
        lines = preds + fbs
    elif feedback == "before":
        lines = fbs + preds
    elif batch_size is None:
        lines = preds + fbs
        lines.sort(key=lambda line: orjson.loads(line)["timestamp"])
    else:
        lines = [line for pair in zip(preds, fbs, strict=False) for line in pair]
        lines += preds[len(fbs) :] + fbs[len(preds) :]
    for extra in extra_lines:
        if isinstance(extra, dict):
            lines.append(orjson.dumps(extra))
        else:
            lines.append(extra.encode() if isinstance(extra, str) else extra)
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(len(lines))
        lines = [lines[i] for i in order.tolist()]
    out = Path(path)
    with open(out, "wb") as handle:
        for line in lines:
            handle.write(line)
            handle.write(b"\n")
    return out


def monitor_yaml(
    stream: Stream,
    *,
    window: str = "1h",
    allowed_lateness: str = "10m",
    extra: str = "",
) -> str:
    """A monitor config for a stream's model and features (``extra`` is appended YAML)."""
    features = ", ".join(f"{name}: {kind}" for name, kind in stream.kinds.items())
    text = (
        f"model_id: {stream.model_id}\n"
        "task: binary_classification\n"
        f"features: {{{features}}}\n"
        f"window: {window}\n"
        f"allowed_lateness: {allowed_lateness}\n"
    )
    return text + extra


@dataclass(frozen=True)
class BacktestRun:
    """The files :func:`backtest` wrote and ran ``driftline backtest`` on."""

    monitor: Path
    reference: Path
    events: Path
    out: Path

    def alerts(self) -> list[dict[str, Any]]:
        return json_lines(self.out / "alerts.jsonl")


def backtest(
    tmp_path: Path,
    reference: Stream,
    events: Stream,
    *,
    extra: str = "",
    batch_size: int | None = 1000,
    **yaml: str,
) -> BacktestRun:
    """Write ``monitors/<model>.yaml`` (:func:`monitor_yaml` with ``extra`` and ``yaml``),
    the reference and the events into ``tmp_path`` and run the backtest into ``out``."""
    from driftline.backtest import run_backtest

    monitor = tmp_path / "monitors" / f"{events.model_id}.yaml"
    monitor.parent.mkdir(exist_ok=True)
    monitor.write_text(monitor_yaml(events, extra=extra, **yaml))
    run = BacktestRun(
        monitor,
        write_jsonl(reference, tmp_path / "reference.jsonl"),
        write_jsonl(events, tmp_path / "events.jsonl", batch_size=batch_size),
        tmp_path / "out",
    )
    run_backtest(run.monitor, run.reference, run.events, run.out)
    return run


def json_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL output file (``metrics.jsonl``, ``alerts.jsonl``)."""
    return [orjson.loads(line) for line in Path(path).read_bytes().splitlines()]


def iso_at(window: int, size: float = 3600.0) -> str:
    """``window_start`` as the backtest writes it, of window ``window`` after START."""
    from datetime import UTC, datetime

    stamp = datetime.fromtimestamp(START + window * size, tz=UTC)
    return stamp.isoformat().replace("+00:00", "Z")
