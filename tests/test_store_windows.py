"""Window aggregates pushed down to ClickHouse equal the raw-array reference implementation.

Events go through the ingest path (``decode_ingest`` then ``PredictionRows`` /
``FeedbackRows`` into real chDB); the reference takes the same messages as plain
arrays, read as ``driftline backtest`` reads them, into ``aggregate_window``.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from driftline.detectors import ModelProfile, aggregate_window, build_profile, evaluate_window
from driftline.detectors.coerce import category_string
from driftline.detectors.estimation import fit_calibration
from driftline.detectors.evaluate import WindowData
from driftline.detectors.multivariate import fit_multivariate
from driftline.detectors.performance import BinaryCounts
from driftline.detectors.profiles import CategoricalCounts
from driftline.schemas.codec import PredictionColumns, decode_ingest
from driftline.schemas.monitor import MonitorConfig
from hypothesis import given, settings
from hypothesis import strategies as st
from store_helpers import window_data, windows_data

from driftline.store import EmbeddedStore, migrate
from driftline.store.aggregates import windows_aggregates
from driftline.store.planning import (
    FreshRows,
    ModelMark,
    fresh_rows,
    model_marks,
    stored_revisions,
    window_counts,
    window_starts,
)
from driftline.store.rows import FeedbackRows, KafkaPosition, PredictionRows

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
HOUR = 3600.0
US = 1e-6
MISSING = object()  # a feature left out of an event


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStore]:
    """One chDB store for the module (chDB takes one data directory per process)."""
    opened = EmbeddedStore(Path(tmp_path_factory.mktemp("windows")) / "chdb", "driftline")
    migrate(opened)
    yield opened
    opened.close()


class Loader:
    """Sends messages through the ingest path, one insert per message (offsets rise)."""

    def __init__(self, store: EmbeddedStore) -> None:
        self.store = store
        self.offset = 0

    def send(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            item = decode_ingest(orjson.dumps(message))
            kind = message["type"]
            where = KafkaPosition(f"t.{kind}", 0, self.offset)
            self.offset += 1
            if kind.startswith("prediction"):
                rows: PredictionRows | FeedbackRows = PredictionRows()
                table = "predictions"
            else:
                rows = FeedbackRows()
                table = "feedback"
            rows.add(item, where)
            self.store.insert_arrow(table, rows.build())


# --------------------------------------------------------------------------- reference


def _rows(
    messages: list[dict[str, Any]], model_id: str
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Predictions of a model by event id (last one wins) and the latest label by event id."""
    predictions: dict[str, dict[str, Any]] = {}
    labels: dict[str, Any] = {}
    for m in messages:
        if m["model_id"] != model_id:
            continue
        if m["type"] == "prediction":
            predictions[m["event_id"]] = m
        elif m["type"] == "prediction_batch":
            for i, event_id in enumerate(m["event_ids"]):
                predictions[event_id] = {
                    "model_id": m["model_id"],
                    "model_version": m["model_version"],
                    "timestamp": m["timestamps"][i],
                    "features": {name: column[i] for name, column in m["features"].items()},
                    "prediction": m["predictions"][i],
                    "score": m["scores"][i] if "scores" in m else None,
                    "segment": m.get("segment") or {},
                }
        elif m["type"] == "feedback":
            labels[m["event_id"]] = m["label"]
        else:
            for event_id, label in zip(m["event_ids"], m["labels"], strict=True):
                labels[event_id] = label
    return predictions, labels


def _micros(seconds: float) -> int:
    return round(seconds * 1_000_000)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def reference(
    profile: ModelProfile,
    messages: list[dict[str, Any]],
    *,
    model_id: str,
    model_version: str,
    start: float,
    end: float,
    positive_label: str = "1",
) -> WindowData:
    """``aggregate_window`` on the window's raw arrays, read as the backtest reads them."""
    predictions, labels = _rows(messages, model_id)
    rows = [
        (event_id, row)
        for event_id, row in sorted(predictions.items())
        if row["model_version"] == model_version
        and _micros(start) <= _micros(row["timestamp"]) < _micros(end)
    ]
    classes = profile.task != "regression"
    features: dict[str, np.ndarray] = {}
    for name, fprof in profile.features.items():
        values = [row["features"].get(name, None) for _, row in rows]
        if fprof.kind == "numeric":
            features[name] = np.array(
                [float(v) if _number(v) else np.nan for v in values], dtype=np.float64
            )
        else:
            column = np.empty(len(values), dtype=object)
            column[:] = [category_string(float(v)) if _number(v) else v for v in values]
            features[name] = column

    def value(v: Any) -> Any:
        if classes:
            return category_string(float(v)) if _number(v) else v
        return float(v) if _number(v) else np.nan

    preds = np.empty(len(rows), dtype=object if classes else np.float64)
    preds[:] = [value(row["prediction"]) for _, row in rows]
    labs = np.empty(len(rows), dtype=object if classes else np.float64)
    labs[:] = [
        value(labels[event_id]) if event_id in labels else (None if classes else np.nan)
        for event_id, _ in rows
    ]
    scores = np.array(
        [
            row.get("score")
            if row.get("score") is not None
            else (row.get("scores") or {}).get(positive_label, np.nan)
            for _, row in rows
        ],
        dtype=np.float64,
    )
    binary = profile.task == "binary_classification"
    segments = {
        key: np.array([(row.get("segment") or {}).get(key, "") for _, row in rows], dtype=str)
        for key in profile.segments
    }
    return aggregate_window(
        profile,
        features=features,
        predictions=preds,
        scores=scores if binary and np.isfinite(scores).any() else None,
        labels=labs,
        positive_label=positive_label,
        segments=segments,
    )


def assert_close(a: Any, b: Any, path: str = "") -> None:
    """Equal structures; floats equal within 1e-9 relative (sums differ in their order)."""
    if isinstance(a, Mapping):
        assert isinstance(b, Mapping) and set(a) == set(b), f"{path}: {a} != {b}"
        for key in a:
            assert_close(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), f"{path}: {a} != {b}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9) or (
            math.isnan(a) and math.isnan(b)
        ), f"{path}: {a} != {b}"
    else:
        assert a == b and type(a) is type(b), f"{path}: {a!r} != {b!r}"


def check(
    store: EmbeddedStore,
    profile: ModelProfile,
    messages: list[dict[str, Any]],
    *,
    model_id: str,
    model_version: str = "v1",
    start: float = T0,
    end: float = T0 + HOUR,
    positive_label: str = "1",
) -> WindowData:
    """Pushed-down aggregates equal the reference, and so do the reports."""
    got = window_data(
        store,
        profile,
        model_id=model_id,
        model_version=model_version,
        start=start,
        end=end,
        positive_label=positive_label,
    )
    want = reference(
        profile,
        messages,
        model_id=model_id,
        model_version=model_version,
        start=start,
        end=end,
        positive_label=positive_label,
    )
    assert_close(got.model_dump(), want.model_dump())
    config = MonitorConfig(
        model_id=model_id,
        task=profile.task,
        features={name: f.kind for name, f in profile.features.items()},
        drift={"min_samples": 5, "multivariate": {} if profile.multivariate else None},
        performance={
            "min_labels": 5,
            "positive_label": positive_label,
            "estimation": {} if profile.calibration else None,
        },
        segments={"keys": list(profile.segments), "min_samples": 5} if profile.segments else None,
    )
    reports = [
        evaluate_window(profile, config, data, window_start=start, window_end=end)
        for data in (got, want)
    ]
    assert_close(reports[0].model_dump(), reports[1].model_dump())
    return got


# --------------------------------------------------------------------------- profiles

RNG = np.random.default_rng(7)
N_REF = 2000


def _binary_profile() -> ModelProfile:
    y = RNG.integers(0, 2, N_REF)
    score = np.clip(0.35 * y + RNG.uniform(0, 0.65, N_REF), 0, 1)
    return build_profile(
        "ref",
        "v1",
        features={
            "x": RNG.normal(0, 10, N_REF),
            "d": RNG.integers(0, 5, N_REF).astype(float),
            "c": RNG.choice(["a", "b", "c", "x' OR 1=1 --"], N_REF),
            "x' OR 1=1 --": RNG.normal(size=N_REF),
        },
        kinds={"x": "numeric", "d": "numeric", "c": "categorical", "x' OR 1=1 --": "numeric"},
        predictions=(score > 0.5).astype(int),
        scores=score,
        labels=y,
        task="binary_classification",
    )


BINARY = _binary_profile()
X_EDGES = list(BINARY.features["x"].edges)


def _multiclass_profile() -> ModelProfile:
    y = RNG.choice(["cat", "dog", "eel"], N_REF)
    return build_profile(
        "ref",
        "v1",
        features={"x": RNG.normal(size=N_REF), "c": RNG.choice(["a", "b"], N_REF)},
        kinds={"x": "numeric", "c": "categorical"},
        predictions=np.where(RNG.random(N_REF) < 0.8, y, "dog"),
        labels=y,
        task="multiclass",
    )


def _regression_profile() -> ModelProfile:
    x = RNG.normal(size=N_REF)
    y = 3 * x + RNG.normal(size=N_REF)
    return build_profile(
        "ref",
        "v1",
        features={"x": x, "c": RNG.choice(["a", "b"], N_REF)},
        kinds={"x": "numeric", "c": "categorical"},
        predictions=3 * x,
        labels=y,
        task="regression",
    )


PROFILES = {
    "binary_classification": BINARY,
    "multiclass": _multiclass_profile(),
    "regression": _regression_profile(),
}


# --------------------------------------------------------------------------- generated events


def _new_model() -> str:
    return f"m-{uuid.uuid4().hex[:12]}"


def _numeric_value(rng: np.random.Generator, edges: list[float]) -> Any:
    pick = rng.integers(0, 8)
    if pick == 0:
        return float(rng.choice(edges))  # exactly on an edge
    if pick == 1:
        return edges[0] - 1.0  # below the reference range
    if pick == 2:
        return edges[-1] + 1.0  # above it
    if pick == 3:
        return None
    if pick == 4:
        return MISSING
    return float(np.round(rng.normal(0, 10), 3))


def _category(rng: np.random.Generator) -> Any:
    options: list[Any] = ["a", "b", "c", "unseen", "x' OR 1=1 --", "", None, MISSING, 3, 2.5]
    return options[rng.integers(0, len(options))]


def random_messages(
    task: str,
    model_id: str,
    rng: np.random.Generator,
    n: int = 300,
    profile: ModelProfile | None = None,
    segments: bool = False,
) -> list[dict[str, Any]]:
    """Singles and batches of predictions, then labels (some late, some re-sent); with
    ``segments``, events carry a random ``segment`` (or none)."""
    profile = profile or PROFILES[task]
    edges = list(profile.features["x"].edges)
    offsets = [0, 1, HOUR * 1e6 - 1, HOUR * 1e6, -1, *rng.integers(0, 3_600_000_000, n).tolist()]
    messages: list[dict[str, Any]] = []
    ids = [f"e{i}" for i in range(n)]

    def prediction(i: int) -> Any:
        if task == "binary_classification":
            return [0, 1, "1", "0", 1.0][rng.integers(0, 5)]
        if task == "multiclass":
            return ["cat", "dog", "eel", "fox"][rng.integers(0, 4)]
        return float(np.round(rng.normal(0, 3), 4)) if rng.random() < 0.95 else "oops"

    def label(i: int) -> Any:
        if task == "binary_classification":
            return [0, 1, "1", "0", 1.0][rng.integers(0, 5)]
        if task == "multiclass":
            return ["cat", "dog", "eel"][rng.integers(0, 3)]
        return [0.0, float(np.round(rng.normal(0, 3), 4))][int(rng.random() < 0.9)]

    i = 0
    while i < n:
        stamp = T0 + float(offsets[i % len(offsets)]) * US
        if rng.random() < 0.5:  # a single event
            features: dict[str, Any] = {}
            for name, fprof in profile.features.items():
                v = _numeric_value(rng, edges) if fprof.kind == "numeric" else _category(rng)
                if v is not MISSING:
                    features[name] = v
            event: dict[str, Any] = {
                "type": "prediction",
                "event_id": ids[i],
                "model_id": model_id,
                "model_version": "v1" if rng.random() < 0.9 else "v2",
                "timestamp": stamp,
                "features": features,
                "prediction": prediction(i),
            }
            if segments and rng.random() < 0.8:
                event["segment"] = _segment(rng)
            if task == "binary_classification":
                pick = rng.integers(0, 4)
                if pick == 0:
                    event["score"] = float(rng.choice([0.0, 1.0, 0.0005, 0.9995, 0.5]))
                elif pick == 1:
                    event["score"] = float(rng.random())
                elif pick == 2:
                    p1 = float(np.round(rng.random(), 3))
                    event["scores"] = {"1": p1, "0": 1 - p1}
            messages.append(event)
            i += 1
            continue
        size = min(int(rng.integers(2, 30)), n - i)
        batch_ids = ids[i : i + size]
        stamps = [T0 + float(offsets[(i + j) % len(offsets)]) * US for j in range(size)]
        columns: dict[str, list[Any]] = {}
        for name, fprof in profile.features.items():
            mode = rng.integers(0, 4)
            if mode == 0:
                continue  # the whole batch lacks the feature
            if fprof.kind == "numeric" or mode == 1:
                values = [_numeric_value(rng, edges) for _ in range(size)]
                columns[name] = [None if v is MISSING else v for v in values]
            else:
                cats = [_category(rng) for _ in range(size)]
                columns[name] = [c if isinstance(c, str) else None for c in cats]
        preds = [prediction(i + j) for j in range(size)]
        kinds = {isinstance(p, str) for p in preds}
        if len(kinds) > 1:  # one kind per batch column
            preds = [str(p) if task != "regression" else 0.5 for p in preds]
        batch: dict[str, Any] = {
            "type": "prediction_batch",
            "model_id": model_id,
            "model_version": "v1",
            "event_ids": batch_ids,
            "timestamps": stamps,
            "features": columns,
            "predictions": preds,
        }
        if segments and rng.random() < 0.8:
            batch["segment"] = _segment(rng)
        if task == "binary_classification" and rng.random() < 0.7:
            batch["scores"] = [
                float(np.round(rng.random(), int(rng.integers(1, 6)))) for _ in preds
            ]
        messages.append(batch)
        i += size
    # A redelivered message (the same event ids again) is counted once.
    messages.append(messages[len(messages) // 2])
    labelled = [e for e in ids if rng.random() < 0.7]
    for j in range(0, len(labelled), 40):
        chunk = labelled[j : j + 40]
        values = [label(0) for _ in chunk]
        if len({isinstance(v, str) for v in values}) > 1:
            values = [str(category_string(v)) if task != "regression" else 1.0 for v in values]
        messages.append(
            {
                "type": "feedback_batch",
                "model_id": model_id,
                "event_ids": chunk,
                "timestamps": [T0 + HOUR] * len(chunk),
                "labels": values,
            }
        )
    for event_id in labelled[::7]:  # re-sent later with (maybe) another value
        messages.append(
            {
                "type": "feedback",
                "event_id": event_id,
                "model_id": model_id,
                "timestamp": T0 + 2 * HOUR,
                "label": label(0),
            }
        )
    messages.append(  # a label of another model for the same event id is ignored
        {
            "type": "feedback",
            "event_id": ids[0],
            "model_id": "someone-else",
            "timestamp": T0,
            "label": label(0),
        }
    )
    return messages


def _segment(rng: np.random.Generator) -> dict[str, str]:
    """A random segment: some keys, values in and out of the profile's top values."""
    segment = {}
    if rng.random() < 0.8:
        segment["country"] = ["de", "fr", "it", "", "_other", "de\\'x"][rng.integers(0, 6)]
    if rng.random() < 0.6:
        segment["device"] = ["ios", "android"][rng.integers(0, 2)]
    if rng.random() < 0.2:
        segment["channel"] = "web"
    return segment


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("task", list(PROFILES))
def test_pushdown_equals_the_raw_array_reference(store: EmbeddedStore, task: str) -> None:
    model_id = _new_model()
    messages = random_messages(task, model_id, np.random.default_rng(11))
    Loader(store).send(messages)
    data = check(store, PROFILES[task], messages, model_id=model_id)
    assert data.n_events > 100
    assert data.performance is not None and 0 < data.performance.n_labelled < data.n_events
    check(store, PROFILES[task], messages, model_id=model_id, model_version="v2")


@pytest.mark.parametrize("task", list(PROFILES))
def test_segment_slices_pushed_down_equal_the_raw_array_split(
    store: EmbeddedStore, task: str
) -> None:
    """Every slice of every key, aggregated in the same pass as the whole model, equals
    ``aggregate_window`` on the slice's raw arrays (and so do the reports)."""
    whole = PROFILES[task]
    segmented = whole.model_copy(
        update={
            "segments": {
                "country": {"de": whole, "de\\'x": whole, "fr": whole, "_other": whole},
                "device": {"ios": whole, "_other": whole},
                "region": {"_other": whole},  # a key without top values: all in _other
            }
        }
    )
    model_id = _new_model()
    messages = random_messages(task, model_id, np.random.default_rng(12), segments=True)
    Loader(store).send(messages)
    data = check(store, segmented, messages, model_id=model_id)
    assert set(data.segments) == {"country", "device", "region"}
    assert set(data.segments["country"]) == {"de", "de\\'x", "fr", "_other"}
    assert sum(part.n_events for part in data.segments["country"].values()) == data.n_events
    assert data.segments["region"]["_other"].n_events == data.n_events


@pytest.mark.parametrize("task", list(PROFILES))
def test_pca_reconstruction_errors_pushed_down_equal_the_raw_arrays(
    store: EmbeddedStore, task: str
) -> None:
    """The rows' squared reconstruction errors summed in ClickHouse (per window and per
    slice) equal the numpy sums: numbers sent for a categorical feature, unseen and
    missing values, strings sent for a numeric one, names that look like SQL."""
    whole = PROFILES[task]
    rng = np.random.default_rng(21)
    n = 3_000
    base = rng.normal(size=n)
    reference = {
        name: (base + rng.normal(0, 0.5, n)) * 10
        if fprof.kind == "numeric"
        else rng.choice(["a", "b", "3", "2.5", "x' OR 1=1 --"], n)
        for name, fprof in whole.features.items()
    }
    kinds = {name: fprof.kind for name, fprof in whole.features.items()}
    model = fit_multivariate(reference, kinds, variance=0.5)
    assert model is not None and 0 < len(model.components) < len(model.columns)
    with_model = whole.model_copy(update={"multivariate": model})
    profile = with_model.model_copy(
        update={"segments": {"country": {"de": with_model, "_other": with_model}}}
    )
    model_id = _new_model()
    messages = random_messages(task, model_id, np.random.default_rng(22), segments=True)
    Loader(store).send(messages)
    data = check(store, profile, messages, model_id=model_id)
    assert data.multivariate is not None and data.multivariate.n == data.n_events
    assert data.multivariate.error_sum > 0
    assert data.segments["country"]["de"].multivariate is not None


@pytest.mark.parametrize("kept", [True, False])
def test_estimation_blocks_pushed_down_equal_the_raw_arrays(
    store: EmbeddedStore, kept: bool
) -> None:
    """Every prediction with a finite score (labelled or not, score or class score)
    counted in its calibration block per predicted class, with the sums of its
    probability, per window and slice, as the numpy path counts them."""
    rng = np.random.default_rng(31)
    scores = rng.random(5_000)
    sharp = 1 / (1 + np.exp(-4 * (scores - 0.5)))  # over-confident: calibration kept
    calibration = fit_calibration(sharp if kept else scores, rng.random(5_000) < scores)
    assert calibration.kept == kept
    with_calibration = BINARY.model_copy(update={"calibration": calibration})
    profile = with_calibration.model_copy(
        update={"segments": {"country": {"de": with_calibration, "_other": with_calibration}}}
    )
    model_id = _new_model()
    messages = random_messages(
        "binary_classification", model_id, np.random.default_rng(32), segments=True
    )
    Loader(store).send(messages)
    data = check(store, profile, messages, model_id=model_id)
    assert data.estimation is not None and 0 < data.estimation.total < data.n_events
    assert data.segments["country"]["de"].estimation is not None


def test_many_bins_and_a_profile_without_edges(store: EmbeddedStore) -> None:
    x = RNG.normal(0, 10, N_REF)
    profile = build_profile(
        "ref",
        "v1",
        features={"x": x, "empty": np.full(N_REF, np.nan), "c": RNG.choice(["a", "b"], N_REF)},
        kinds={"x": "numeric", "empty": "numeric", "c": "categorical"},
        predictions=(x > 0).astype(int),
        labels=(x > 1).astype(int),
        bins=300,  # edges travel as one Array(Float64) parameter
    )
    assert len(profile.features["x"].edges) > 64
    assert profile.features["empty"].edges == ()
    model_id = _new_model()
    messages = random_messages("binary_classification", model_id, RNG, profile=profile)
    Loader(store).send(messages)
    data = check(store, profile, messages, model_id=model_id)
    assert data.score is None  # the profile has no score profile


@st.composite
def binary_scenario(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A few single events and labels with values on edges, unseen categories, nulls."""
    model_id = _new_model()
    n = draw(st.integers(0, 12))
    number = st.one_of(
        st.sampled_from([*X_EDGES, X_EDGES[0] - 1, X_EDGES[-1] + 1]),
        st.floats(-100, 100, allow_nan=False),
        st.none(),
        st.just(MISSING),
        st.just("text"),
    )
    category = st.one_of(
        st.sampled_from(["a", "b", "c", "new", "x' OR 1=1 --", "", "a\\b"]),
        st.none(),
        st.just(MISSING),
        st.sampled_from([1, 2.5]),
    )
    klass = st.sampled_from([0, 1, "1", "0", "yes"])
    messages: list[dict[str, Any]] = []
    for i in range(n):
        features = {
            "x": draw(number),
            "d": draw(st.one_of(st.sampled_from([0.0, 2.0, 4.0, 5.0, -1.0]), number)),
            "c": draw(category),
            "x' OR 1=1 --": draw(number),
        }
        event: dict[str, Any] = {
            "type": "prediction",
            "event_id": f"e{i}",
            "model_id": model_id,
            "model_version": "v1",
            "timestamp": T0 + draw(st.sampled_from([-1, 0, 1, 1800e6, 3600e6 - 1, 3600e6])) * US,
            "features": {k: v for k, v in features.items() if v is not MISSING},
            "prediction": draw(klass),
        }
        score = draw(st.one_of(st.none(), st.sampled_from([0.0, 1.0, 0.0005]), st.floats(0, 1)))
        if score is not None:
            event["score"] = score
        messages.append(event)
        for _ in range(draw(st.integers(0, 2))):  # no label, a label, or a re-sent one
            messages.append(
                {
                    "type": "feedback",
                    "event_id": f"e{i}",
                    "model_id": model_id,
                    "timestamp": T0 + HOUR,
                    "label": draw(klass),
                }
            )
    return messages


@settings(max_examples=12, deadline=None)
@given(messages=binary_scenario())
def test_pushdown_equals_the_reference_on_generated_events(
    store: EmbeddedStore, messages: list[dict[str, Any]]
) -> None:
    if not messages:
        return
    model_id = messages[0]["model_id"]
    Loader(store).send(messages)
    check(store, BINARY, messages, model_id=model_id)


def test_an_empty_window_has_empty_aggregates(store: EmbeddedStore) -> None:
    model_id = _new_model()
    for task, profile in PROFILES.items():
        data = check(store, profile, [], model_id=model_id)
        assert data.n_events == 0, task
        assert data.performance is not None and data.performance.n_predicted == 0


def test_window_bounds_and_duplicates(store: EmbeddedStore) -> None:
    model_id = _new_model()

    def event(event_id: str, stamp: float) -> dict[str, Any]:
        return {
            "type": "prediction",
            "event_id": event_id,
            "model_id": model_id,
            "model_version": "v1",
            "timestamp": stamp,
            "features": {"x": 1.0},
            "prediction": 1,
        }

    moved = event("moved", T0 + 5)
    messages = [
        event("before", T0 - US),
        event("first", T0),
        event("last", T0 + HOUR - US),
        event("at-end", T0 + HOUR),
        event("first", T0),  # inserted twice
        moved,
        {**moved, "model_version": "v2"},  # re-sent later as another version
    ]
    Loader(store).send(messages)

    def n_events(start: float, version: str = "v1") -> int:
        return window_data(
            store, BINARY, model_id=model_id, model_version=version, start=start, end=start + HOUR
        ).n_events

    assert (n_events(T0 - HOUR), n_events(T0), n_events(T0 + HOUR), n_events(T0, "v2")) == (
        1,
        2,
        1,
        1,
    )
    check(store, BINARY, messages, model_id=model_id)
    check(store, BINARY, messages, model_id=model_id, model_version="v2")


def test_many_windows_in_one_query_equal_one_window_each(store: EmbeddedStore) -> None:
    model_id = _new_model()
    rng = np.random.default_rng(5)
    messages = random_messages("binary_classification", model_id, rng, n=200)
    for m in messages:  # spread the events over five hours
        if m["type"] == "prediction":
            m["timestamp"] += float(rng.integers(0, 5)) * HOUR
        elif m["type"] == "prediction_batch":
            m["timestamps"] = [t + float(rng.integers(0, 5)) * HOUR for t in m["timestamps"]]
    Loader(store).send(messages)
    starts = [T0 + k * HOUR for k in (4, 0, 1, 2, 3, 6)]
    many = windows_data(
        store, BINARY, model_id=model_id, model_version="v1", starts=starts, size=HOUR
    )
    assert list(many) == sorted(starts)
    for start in starts:
        one = window_data(
            store, BINARY, model_id=model_id, model_version="v1", start=start, end=start + HOUR
        )
        assert_close(many[start].model_dump(), one.model_dump())
        check(store, BINARY, messages, model_id=model_id, start=start, end=start + HOUR)
    assert many[T0 + 6 * HOUR].n_events == 0
    assert sum(w.n_events for w in many.values()) > 150
    with pytest.raises(ValueError, match="not on the grid"):
        windows_data(
            store, BINARY, model_id=model_id, model_version="v1", starts=[T0, T0 + 10], size=HOUR
        )


def test_window_counts_rise_with_late_labels(store: EmbeddedStore) -> None:
    model_id = _new_model()
    loader = Loader(store)
    events = [
        {
            "type": "prediction_batch",
            "model_id": model_id,
            "model_version": "v1",
            "event_ids": [f"e{i}" for i in range(6)],
            "timestamps": [T0 + 10, T0 + 20, T0 + 30, T0 + HOUR, T0 + HOUR + 1, T0 + 3 * HOUR],
            "features": {"x": [1.0] * 6},
            "predictions": [1] * 6,
        }
    ]
    loader.send(events)

    def counts() -> dict[float, int]:
        found = window_counts(
            store, model_id=model_id, model_version="v1", start=T0, end=T0 + 3 * HOUR, size=HOUR
        )
        return {start: labelled for start, (_, labelled) in found.items()}

    assert counts() == {T0: 0, T0 + HOUR: 0}
    starts = window_starts(
        store, model_id=model_id, model_version="v1", start=T0, end=T0 + 3 * HOUR, size=HOUR
    )
    assert starts == [T0, T0 + HOUR]  # the event at T0 + 3 h lies past the end

    def labels(ids: list[str], value: int) -> dict[str, Any]:
        return {
            "type": "feedback_batch",
            "model_id": model_id,
            "event_ids": ids,
            "timestamps": [T0 + 4 * HOUR] * len(ids),
            "labels": [value] * len(ids),
        }

    loader.send([labels(["e0", "e3"], 1)])
    assert counts() == {T0: 1, T0 + HOUR: 1}
    loader.send([labels(["e1", "e2", "e4", "e5"], 0), labels(["e0"], 0)])  # e0 re-sent
    assert counts() == {T0: 3, T0 + HOUR: 2}
    loader.send(events)  # every prediction re-sent: nothing the monitor compares moves
    both = window_counts(
        store, model_id=model_id, model_version="v1", start=T0, end=T0 + 3 * HOUR, size=HOUR
    )
    assert both == {T0: (3, 3), T0 + HOUR: (2, 2)}
    assert counts() == {T0: 3, T0 + HOUR: 2}
    first = window_data(
        store, BINARY, model_id=model_id, model_version="v1", start=T0, end=T0 + HOUR
    )
    assert first.performance is not None and first.performance.n_labelled == 3
    assert isinstance(first.performance, BinaryCounts)
    assert first.performance.tp == 0  # e0's latest label is 0
    # the aggregates' own counts are what the monitor records for a window it closes
    found = windows_aggregates(
        store, BINARY, model_id=model_id, model_version="v1", starts=[T0, T0 + HOUR], size=HOUR
    )
    assert [(a.events, a.labelled) for a in found.values()] == [(3, 3), (2, 2)]
    assert found[T0].data == first


# --------------------------------------------------------------------------- the monitor's clocks


def _store_predictions(
    store: EmbeddedStore, model_id: str, rows: list[tuple[str, float]], **where: Any
) -> None:
    """Predictions ``(event_id, timestamp)`` of ``model_id`` in one insert, at ``where``
    (topic, partition, version)."""
    table = PredictionRows()
    for offset, (event_id, at) in enumerate(rows):
        event = {
            "type": "prediction",
            "event_id": event_id,
            "model_id": model_id,
            "model_version": where.get("version", "v1"),
            "timestamp": at,
            "features": {"x": 1.0},
            "prediction": 1,
        }
        position = KafkaPosition(where.get("topic", "t.p"), where.get("partition", 0), offset)
        table.add(decode_ingest(orjson.dumps(event)), position)
    store.insert_arrow("predictions", table.build())


class _Recorder:
    """A store that remembers the last query it ran."""

    def __init__(self, store: EmbeddedStore) -> None:
        self.store = store
        self.last: tuple[str, dict[str, Any]] = ("", {})

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        self.last = (sql, dict(parameters or {}))
        return self.store.query(sql, parameters)


def test_model_marks_per_model_and_partition_come_from_the_projection(
    store: EmbeddedStore,
) -> None:
    a, b, quiet = _new_model(), _new_model(), _new_model()
    before = time.time()
    # Every stored copy counts until a background merge removes the older one (then the
    # mark may move back, as the docstring says); merges are held here so that the re-sent
    # copy and the one it replaces are both there whenever the merge scheduler runs.
    store.command("SYSTEM STOP MERGES predictions")
    try:
        _store_predictions(store, a, [("a1", T0 + 10), ("a2", T0 + 50)], partition=0)
        _store_predictions(store, a, [("a3", T0 + 30)], partition=1)
        _store_predictions(store, b, [("b1", T0 + 5 * HOUR)], partition=0)  # far ahead
        _store_predictions(store, a, [("a2", T0 + 20)], partition=0)  # re-sent, earlier
        _store_predictions(store, a, [("a9", T0 + 9 * HOUR)], topic="t.f")  # feedback topic
        recorder = _Recorder(store)
        marks = model_marks(recorder, topic="t.p", model_ids=[a, b, quiet])  # type: ignore[arg-type]
    finally:
        store.command("SYSTEM START MERGES predictions")
    assert [(m.model_id, m.partition, m.event_time) for m in marks] == sorted(
        [(a, 0, T0 + 50), (a, 1, T0 + 30), (b, 0, T0 + 5 * HOUR)]
    )
    assert all(isinstance(m, ModelMark) and before <= m.updated_at <= time.time() for m in marks)
    assert model_marks(store, topic="t.p", model_ids=[]) == []
    # the tick's read is the projection's, not a scan of the rows
    sql, parameters = recorder.last
    plan = "\n".join(r["explain"] for r in store.query("EXPLAIN projections=1 " + sql, parameters))
    assert "ReadFromMergeTree (model_marks)" in plan, plan


def test_fresh_rows_name_the_windows_that_re_sent_events_left(store: EmbeddedStore) -> None:
    m = _new_model()

    def now_us() -> int:
        return int(store.query("SELECT toUnixTimestamp64Micro(now64(6)) AS t")[0]["t"])

    def fresh(since: int, until: int, version: str = "v1", last: float | None = None) -> Any:
        return fresh_rows(
            store,
            model_id=m,
            model_version=version,
            since=since,
            until=until,
            size=HOUR,
            beyond_last=last,
        )

    # A merge removes the older copies of an event within a day partition (the monitor then
    # sees the window's count fall instead); kept here so that every copy is there.
    store.command("SYSTEM STOP MERGES predictions")
    try:
        _fresh_rows_cases(store, m, now_us, fresh)
    finally:
        store.command("SYSTEM START MERGES predictions")


def _fresh_rows_cases(store: EmbeddedStore, m: str, now_us: Any, fresh: Any) -> None:
    start = now_us()
    _store_predictions(store, m, [("e0", T0 + 1), ("e1", T0 + 2), ("e2", T0 + HOUR + 1)])
    first = now_us() + 1
    assert fresh(start, first) == FreshRows(rows=3, beyond=0, left=())
    assert fresh(start, first, last=T0) == FreshRows(rows=3, beyond=2, left=())
    _store_predictions(store, m, [("e0", T0 + HOUR + 5), ("e2", T0 + HOUR + 1)])  # e2: same
    _store_predictions(store, m, [("e1", T0 + 3)], version="v2")  # same window, new version
    second = now_us() + 1
    assert fresh(first, second) == FreshRows(rows=2, beyond=0, left=(T0,))
    assert fresh(first, second, last=T0 + HOUR) == FreshRows(rows=2, beyond=2, left=(T0,))
    assert fresh(first, second, version="v2") == FreshRows(rows=1, beyond=0, left=())
    _store_predictions(store, m, [("e0", T0 + 7)])  # e0 moves back: it left T0 + 1 h now
    assert fresh(second, now_us() + 1) == FreshRows(rows=1, beyond=0, left=(T0 + HOUR,))
    assert fresh(second, second) == FreshRows(rows=0, beyond=0, left=())


def test_stored_revisions_are_the_largest_per_window(store: EmbeddedStore) -> None:
    m = _new_model()
    for version, start, revision in [
        ("v1", T0, 0),
        ("v1", T0, 2),
        ("v1", T0, 1),
        ("v1", T0 + HOUR, 0),
        ("v2", T0 + 2 * HOUR, 5),
    ]:
        store.command(
            "INSERT INTO window_metrics (model_id, model_version, window_start, window_end, "
            "metric, feature, value, status, n, revision, computed_at) VALUES ({m:String}, "
            "{v:String}, fromUnixTimestamp64Micro({s:Int64}, 'UTC'), "
            "fromUnixTimestamp64Micro({s:Int64}, 'UTC'), 'psi', 'x', 0.1, 'ok', 1, {r:UInt32}, "
            "now64(6))",
            {"m": m, "v": version, "s": round(start * 1e6), "r": revision},
        )
    starts = [T0, T0 + HOUR, T0 + 2 * HOUR, T0 + 3 * HOUR]
    found = stored_revisions(store, model_id=m, model_version="v1", starts=starts)
    assert found == {T0: 2, T0 + HOUR: 0}
    assert stored_revisions(store, model_id=m, model_version="v2", starts=starts) == {
        T0 + 2 * HOUR: 5
    }
    assert stored_revisions(store, model_id=m, model_version="v1", starts=[]) == {}


def test_names_and_values_are_parameters_not_sql(store: EmbeddedStore) -> None:
    hostile = "x' OR 1=1 --"
    model_id = f"{hostile} {_new_model()}"
    version = "v\\1'\t--"
    messages: list[dict[str, Any]] = [
        {
            "type": "prediction",
            "event_id": f"e{i}",
            "model_id": model_id,
            "model_version": version,
            "timestamp": T0 + i,
            "features": {hostile: float(i), "c": hostile if i % 2 else "a\\b\t\n'", "x": 0.5},
            "prediction": hostile if i % 3 else "1",
        }
        for i in range(20)
    ]
    Loader(store).send(messages)
    data = check(
        store, BINARY, messages, model_id=model_id, model_version=version, positive_label=hostile
    )
    assert data.n_events == 20
    assert data.features[hostile].n == 20
    assert data.features["c"].counts == {hostile: 10, "a\\b\t\n'": 10}
    # Nothing leaked: the other models' rows are untouched and unseen.
    for other in ("x", hostile):
        assert (
            window_data(
                store, BINARY, model_id=other, model_version=version, start=T0, end=T0 + HOUR
            ).n_events
            == 0
        )
    predicted = data.prediction
    assert isinstance(predicted, CategoricalCounts) and predicted.counts[hostile] == 13


def test_timing_one_million_rows(store: EmbeddedStore, capsys: pytest.CaptureFixture[str]) -> None:
    """Not a timed assertion: prints the time of window_data next to aggregate_window."""
    n, k = 1_000_000, 20
    rng = np.random.default_rng(3)
    names = [f"f{i}" for i in range(k)]
    profile = build_profile(
        "m",
        "v1",
        features={name: rng.normal(size=20_000) for name in names},
        kinds=dict.fromkeys(names, "numeric"),
        predictions=rng.integers(0, 2, 20_000),
        scores=rng.random(20_000),
        labels=rng.integers(0, 2, 20_000),
    )
    model_id = _new_model()
    values = rng.normal(0.1, 1, size=(n, k))
    values[rng.random((n, k)) < 0.01] = np.nan
    predictions = rng.integers(0, 2, n).astype(np.float64)
    scores = rng.random(n)
    labels = rng.integers(0, 2, n).astype(np.float64)
    labelled = rng.random(n) < 0.5
    ids = np.array([f"e{i}" for i in range(n)], dtype=object)
    step = 100_000
    for lo in range(0, n, step):
        part = slice(lo, lo + step)
        rows = PredictionRows()
        rows.add(
            PredictionColumns(
                model_id=model_id,
                model_version="v1",
                event_ids=ids[part],
                timestamps=T0 + np.arange(lo, lo + step) * (HOUR / n),
                numeric={name: values[part, i] for i, name in enumerate(names)},
                categorical={},
                prediction_value=predictions[part],
                prediction_class=None,
                score=scores[part],
            ),
            KafkaPosition("p", 0, lo),
        )
        store.insert_arrow("predictions", rows.build())
    feedback = FeedbackRows()
    from driftline.schemas.codec import FeedbackColumns

    feedback.add(
        FeedbackColumns(
            model_id=model_id,
            event_ids=ids[labelled],
            timestamps=np.full(int(labelled.sum()), T0 + HOUR),
            label_value=labels[labelled],
            label_class=None,
        ),
        KafkaPosition("f", 0, 0),
    )
    store.insert_arrow("feedback", feedback.build())

    began = time.perf_counter()
    got = window_data(
        store, profile, model_id=model_id, model_version="v1", start=T0, end=T0 + HOUR
    )
    pushed = time.perf_counter() - began
    began = time.perf_counter()
    want = aggregate_window(
        profile,
        features={name: values[:, i] for i, name in enumerate(names)},
        predictions=predictions,
        scores=scores,
        labels=np.where(labelled, labels, np.nan),
    )
    raw = time.perf_counter() - began
    assert_close(got.model_dump(), want.model_dump())
    with capsys.disabled():
        print(
            f"\nwindow_data, {n:,} rows x {k} numeric features + binary performance:"
            f" chDB {pushed:.2f} s; aggregate_window on in-memory arrays {raw:.2f} s"
        )
