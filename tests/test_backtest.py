"""``driftline backtest`` on generated streams with known change points."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from backtest_streams import START, Stream, monitor_yaml, simulate, write_jsonl
from driftline.schemas.codec import DecodeError, decode_ingest
from driftline.schemas.events import FeedbackEvent, PredictionEvent
from driftline.schemas.jsonl import LineError
from driftline.schemas.monitor import MonitorConfig
from driftline.schemas.singles import (
    feedback_run,
    feedback_view,
    prediction_run,
    prediction_view,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_events import (
    feedback_batch_bodies,
    feedback_bodies,
    finite,
    identifiers,
    prediction_bodies,
)

from driftline.backtest import BacktestInputError, BacktestSummary, run_backtest
from driftline.backtest.reader import RowReader

HOUR = 3600.0
OUTPUTS = ("metrics.jsonl", "alerts.jsonl", "retrain_requests.jsonl", "profile.json")
MIX = {"north": 0.4, "south": 0.3, "east": 0.2, "west": 0.1}
NEW_MIX = {"north": 0.1, "south": 0.2, "east": 0.3, "west": 0.4}


def _at(window: int) -> str:
    """RFC 3339 start of monitored window ``window``."""
    moment = datetime.fromtimestamp(START + window * HOUR, tz=UTC)
    return moment.isoformat().replace("+00:00", "Z")


def _reference(**kwargs: Any) -> Stream:
    """A reference period of 20 hours before the monitored one."""
    args: dict[str, Any] = {
        "n_windows": 20,
        "per_window": 2000,
        "seed": 1000,
        "start": START - 20 * HOUR,
        "id_prefix": "r",
    }
    return simulate(**(args | kwargs))


@pytest.fixture(scope="module")
def reference() -> Stream:
    return _reference()


@pytest.fixture(scope="module")
def reference_file(reference: Stream, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(reference, tmp_path_factory.mktemp("ref") / "reference.jsonl")


Backtest = Callable[..., tuple[BacktestSummary, Path]]


@pytest.fixture
def backtest(tmp_path: Path, reference: Stream, reference_file: Path) -> Backtest:
    """Write a stream (and a monitor) and backtest it against the shared reference."""
    runs = iter(range(1000))

    def run(
        events: Stream,
        *,
        extra_yaml: str = "",
        ref_file: Path | None = None,
        stream_for_yaml: Stream | None = None,
        **write: Any,
    ) -> tuple[BacktestSummary, Path]:
        i = next(runs)
        monitor = tmp_path / f"monitor{i}.yaml"
        monitor.write_text(monitor_yaml(stream_for_yaml or events, extra=extra_yaml))
        ev = write_jsonl(events, tmp_path / f"events{i}.jsonl", **write)
        out = tmp_path / f"out{i}"
        summary = run_backtest(monitor, ref_file or reference_file, ev, out)
        return summary, out

    return run


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _alerts(out: Path, **match: Any) -> list[dict[str, Any]]:
    return [a for a in _lines(out / "alerts.jsonl") if all(a[k] == v for k, v in match.items())]


def test_no_drift_over_200_windows_raises_no_critical_alert(
    tmp_path: Path, reference_file: Path, reference: Stream
) -> None:
    events = simulate(n_windows=200, per_window=2000, seed=1)
    monitor = tmp_path / "m.yaml"
    monitor.write_text(monitor_yaml(events))
    ev = write_jsonl(events, tmp_path / "ev.jsonl", batch_size=2000)
    summary = run_backtest(monitor, reference_file, ev, tmp_path / "out")

    assert summary.windows.count == 200
    assert summary.events.predictions == 400_000
    assert summary.events.label_coverage == 1.0
    assert summary.alerts.by_severity["critical"] == 0
    assert summary.retrain.requests == 0
    assert _alerts(tmp_path / "out", severity="critical") == []
    metrics = _lines(tmp_path / "out" / "metrics.jsonl")
    assert len(metrics) == summary.metric_rows
    assert {m["window_start"] for m in metrics} == {_at(w) for w in range(200)}
    drift = [m for m in metrics if m["kind"] == "data_drift"]
    assert len(drift) == 200 * 10
    assert all(m["status"] == "ok" and m["n"] == 2000 for m in drift)
    assert all(m["revision"] == 0 for m in metrics)


def test_mean_shift_in_one_feature_alerts_on_that_feature_at_its_window(
    backtest: Backtest,
) -> None:
    events = simulate(n_windows=24, per_window=2000, seed=2, mean_shift={"x4": (12, 0.75)})
    summary, out = backtest(events)

    drift = _alerts(out, kind="data_drift")
    assert [(a["feature"], a["severity"], a["window_start"]) for a in drift] == [
        ("x4", "critical", _at(12))
    ]
    alert = drift[0]
    assert alert["statistic"] == "psi" and alert["value"] >= alert["threshold"] == 0.25
    assert alert["opened_at"] == _at(13).replace(":00:00Z", ":10:00Z")  # end + 10m lateness
    metrics = _lines(out / "metrics.jsonl")
    x4 = {
        m["window_start"]: m["status"]
        for m in metrics
        if m["kind"] == "data_drift" and m["feature"] == "x4"
    }
    assert [x4[_at(w)] for w in range(24)] == ["ok"] * 12 + ["critical"] * 12
    others = [m for m in metrics if m["kind"] == "data_drift" and m["feature"] != "x4"]
    assert len(others) == 24 * 9 and all(m["status"] == "ok" for m in others)
    assert summary.alerts.by_kind["data_drift"] == 1


def test_small_shift_with_large_windows_raises_no_alert(backtest: Backtest) -> None:
    events = simulate(n_windows=12, per_window=10_000, seed=3, mean_shift={"x7": (0, 0.05)})
    summary, out = backtest(events, batch_size=5000)

    assert summary.events.predictions == 120_000
    assert summary.alerts.total == 0
    assert (out / "alerts.jsonl").read_text() == ""
    x7 = [
        m
        for m in _lines(out / "metrics.jsonl")
        if m["kind"] == "data_drift" and m["feature"] == "x7"
    ]
    assert len(x7) == 12 and all(m["status"] == "ok" for m in x7)


def test_concept_change_raises_performance_alert_and_no_data_drift(backtest: Backtest) -> None:
    events = simulate(n_windows=20, per_window=2000, seed=4, accuracy_change=(10, 0.8))
    summary, out = backtest(events)

    performance = _alerts(out, kind="performance")
    assert [(a["severity"], a["window_start"], a["feature"]) for a in performance] == [
        ("critical", _at(10), None)
    ]
    assert performance[0]["statistic"] == "accuracy"
    assert 0.78 < performance[0]["value"] < 0.82
    assert _alerts(out, kind="data_drift") == []
    assert summary.alerts.by_kind["data_drift"] == 0
    accuracy = [
        m
        for m in _lines(out / "metrics.jsonl")
        if m["kind"] == "performance" and m["metric"] == "accuracy"
    ]
    assert [m["status"] for m in accuracy[:10]] == ["ok"] * 10
    assert all(m["label_coverage"] == 1.0 and m["primary"] for m in accuracy)
    assert all(0.88 < m["reference"] < 0.92 for m in accuracy)


def test_categorical_mix_change_alerts_on_that_feature(tmp_path: Path, backtest: Backtest) -> None:
    reference = _reference(n_windows=10, categorical={"region": MIX})
    ref_file = write_jsonl(reference, tmp_path / "ref_cat.jsonl")
    events = simulate(
        n_windows=16,
        per_window=2000,
        seed=5,
        categorical={"region": MIX},
        mix_change={"region": (8, NEW_MIX)},
    )
    summary, out = backtest(events, ref_file=ref_file)

    drift = _alerts(out, kind="data_drift")
    assert [(a["feature"], a["severity"], a["window_start"]) for a in drift] == [
        ("region", "critical", _at(8))
    ]
    assert summary.alerts.by_kind["data_drift"] == 1
    profile = json.loads((out / "profile.json").read_text())
    assert profile["features"]["region"]["categories"] == ["north", "south", "east", "west"]


def test_retrain_request_follows_the_alert(backtest: Backtest) -> None:
    events = simulate(n_windows=16, per_window=2000, seed=6, mean_shift={"x2": (5, 1.0)})
    summary, out = backtest(events)

    (alert,) = _alerts(out, kind="data_drift")
    (request,) = _lines(out / "retrain_requests.jsonl")
    assert request["reason"] == [alert["alert_id"]]
    assert request["requested_at"] == alert["opened_at"]
    assert (request["data_from"], request["data_to"]) == (_at(5), _at(6))
    assert request["model_id"] == "credit" and request["model_version"] == "v1"
    assert summary.retrain.requests == 1


def test_a_lookback_asks_for_that_much_labelled_history(backtest: Backtest) -> None:
    events = simulate(n_windows=16, per_window=2000, seed=6, mean_shift={"x2": (5, 1.0)})
    _, out = backtest(events, extra_yaml="training: {lookback: 4h}\n")
    (request,) = _lines(out / "retrain_requests.jsonl")
    # the alert's window ends at 6h: the four hours before it, not only its own hour
    assert (request["data_from"], request["data_to"]) == (_at(2), _at(6))
    # the labelled-rows check still counts the triggering window's 2,000 labels
    _, out = backtest(
        events, extra_yaml="training: {lookback: 4h}\nretrain: {min_labelled_rows: 2001}\n"
    )
    assert (out / "retrain_requests.jsonl").read_text() == ""
    # a lookback shorter than the run of windows that raised it still asks for them all
    _, out = backtest(
        events, extra_yaml="training: {lookback: 30m}\nalerting: {consecutive_windows: 2}\n"
    )
    (request,) = _lines(out / "retrain_requests.jsonl")
    assert (request["data_from"], request["data_to"]) == (_at(5), _at(7))


def test_retrain_needs_min_labelled_rows(backtest: Backtest) -> None:
    events = simulate(n_windows=10, per_window=2000, seed=6, mean_shift={"x2": (5, 1.0)})
    summary, out = backtest(events, extra_yaml="retrain: {min_labelled_rows: 2001}\n")
    assert len(_alerts(out, kind="data_drift")) == 1
    assert (out / "retrain_requests.jsonl").read_text() == ""
    assert summary.retrain.too_few_labels == 1

    # Two bad windows in a row: the request covers both, and 4000 labels suffice.
    summary, out = backtest(
        events,
        extra_yaml="retrain: {min_labelled_rows: 4000}\nalerting: {consecutive_windows: 2}\n",
    )
    (alert,) = _alerts(out, kind="data_drift")
    assert alert["window_start"] == _at(6)
    (request,) = _lines(out / "retrain_requests.jsonl")
    assert (request["data_from"], request["data_to"]) == (_at(5), _at(7))


def test_retrain_cooldown(backtest: Backtest) -> None:
    shifts = {"x3": (4, 1.0), "x6": (7, 1.0)}
    events = simulate(n_windows=10, per_window=2000, seed=7, mean_shift=shifts)

    summary, out = backtest(events)  # default retrain cooldown: 6h
    alerts = _alerts(out, kind="data_drift")
    assert [(a["feature"], a["window_start"]) for a in alerts] == [("x3", _at(4)), ("x6", _at(7))]
    (request,) = _lines(out / "retrain_requests.jsonl")
    assert request["reason"] == [alerts[0]["alert_id"]]
    assert summary.retrain.cooldown == 1

    summary, out = backtest(events, extra_yaml="retrain: {cooldown: 2h}\n")
    requests = _lines(out / "retrain_requests.jsonl")
    assert [r["reason"] for r in requests] == [[a["alert_id"]] for a in alerts]
    assert summary.retrain.cooldown == 0


def _outputs(out: Path) -> dict[str, bytes]:
    files = {name: (out / name).read_bytes() for name in OUTPUTS}
    summary = json.loads((out / "summary.json").read_text())
    for side in ("reference", "events"):
        summary[side].pop("lines")
    files["summary"] = json.dumps(summary).encode()
    return files


def test_batches_single_events_and_shuffled_lines_give_the_same_outputs(
    backtest: Backtest,
) -> None:
    events = simulate(
        n_windows=6,
        per_window=400,
        seed=8,
        mean_shift={"x1": (3, 1.0)},
        label_fraction=0.9,
    )
    _, batched = backtest(events, batch_size=150)
    _, single = backtest(events, batch_size=None)
    _, shuffled = backtest(events, batch_size=None, shuffle_seed=1)
    _, before = backtest(events, batch_size=97, feedback="before", shuffle_seed=2)

    expected = _outputs(batched)
    assert _lines(batched / "alerts.jsonl")  # something to compare
    assert _outputs(single) == expected
    assert _outputs(shuffled) == expected
    assert _outputs(before) == expected


def test_two_runs_are_byte_identical(backtest: Backtest, tmp_path: Path) -> None:
    events = simulate(n_windows=8, per_window=500, seed=9, accuracy_change=(4, 0.75))
    _, first = backtest(events)
    _, second = backtest(events)
    for name in (*OUTPUTS, "summary.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert _lines(first / "alerts.jsonl")


def test_input_problems_are_counted(backtest: Backtest, reference: Stream) -> None:
    events = simulate(n_windows=3, per_window=300, seed=10, label_fraction=0.5)
    base = {"model_version": "v2", "timestamp": START + 10, "prediction": 1}
    label = {"type": "feedback", "model_id": "credit", "timestamp": START, "label": 0}
    extra = [
        # another model: skipped and counted
        {"type": "prediction", "event_id": "o1", "model_id": "other", "features": {}, **base},
        {"type": "feedback", "event_id": "o1", "model_id": "other", "timestamp": START, "label": 1},
        # a label for an unknown prediction; a repeated label
        {**label, "event_id": "nope"},
        {**label, "event_id": "e0"},
        # a repeated prediction (the last one wins), a wrong-kind value, an unknown feature
        {"type": "prediction", "event_id": "e1", "model_id": "credit", **base,
         "features": {"x0": "high", "zz": 1.0}},
    ]  # fmt: skip
    summary, _ = backtest(events, batch_size=100, feedback="after", extra_lines=extra)

    problems = summary.input_problems["events"]
    assert problems.other_model_predictions == 1
    assert problems.other_model_labels == 1
    assert problems.unmatched_labels == 1
    assert problems.duplicate_labels == (1 if events.labelled[0] else 0)
    assert problems.duplicate_predictions == 1
    assert problems.wrong_kind_values == 1
    assert problems.unknown_features == ("zz",)
    assert summary.input_problems_total == problems.total > 0
    assert summary.events.predictions == 900
    assert summary.events.model_versions == {"v1": 899, "v2": 1}
    assert summary.model_version == "v1"
    assert summary.input_problems["reference"].total == 0


def test_bad_input_raises(tmp_path: Path, reference_file: Path, reference: Stream) -> None:
    monitor = tmp_path / "m.yaml"
    monitor.write_text(monitor_yaml(reference))
    events = write_jsonl(simulate(n_windows=1, per_window=10, seed=11), tmp_path / "ev.jsonl")
    with pytest.raises(BacktestInputError, match="events file not found"):
        run_backtest(monitor, reference_file, tmp_path / "missing.jsonl", tmp_path / "out")
    other = tmp_path / "other.yaml"
    other.write_text(monitor_yaml(reference).replace("model_id: credit", "model_id: fraud"))
    with pytest.raises(BacktestInputError, match=r"no predictions of model 'fraud'.*credit"):
        run_backtest(other, reference_file, events, tmp_path / "out")
    alert = tmp_path / "alert.jsonl"
    alert.write_text(
        events.read_text() + '{"type": "retrain_request", "request_id": "r", "model_id": "credit", '
        '"model_version": "v1", "reason": [], "data_from": 1767225600, '
        '"data_to": 1767225600, "requested_at": 1767225600}\n'
    )
    with pytest.raises(BacktestInputError, match=r"alert\.jsonl:\d+: unknown_type"):
        run_backtest(monitor, reference_file, alert, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("driftline")
    return subprocess.run(
        [str(exe), "backtest", *map(str, args)], capture_output=True, text=True, timeout=120
    )


def test_cli_writes_the_outputs(tmp_path: Path, reference_file: Path) -> None:
    events = simulate(n_windows=6, per_window=500, seed=12, mean_shift={"x5": (2, 1.0)})
    monitor = tmp_path / "m.yaml"
    monitor.write_text(monitor_yaml(events))
    ev = write_jsonl(events, tmp_path / "ev.jsonl")
    out = tmp_path / "out" / "nested"
    done = _cli("--monitor", monitor, "--reference", reference_file, "--events", ev, "--out", out)

    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed == json.loads((out / "summary.json").read_text())
    assert printed["windows"]["count"] == 6
    assert printed["alerts"]["by_kind"]["data_drift"] == 1
    for name in (*OUTPUTS, "summary.json"):
        assert (out / name).is_file()
    assert _alerts(out, feature="x5")[0]["window_start"] == _at(2)


def test_cli_bad_yaml_key_exits_2_naming_the_key(tmp_path: Path, reference_file: Path) -> None:
    monitor = tmp_path / "m.yaml"
    monitor.write_text(
        "model_id: credit\nfeatures: {x0: numeric}\ndrift: {numeric: {methd: psi}}\n"
    )
    done = _cli(
        "--monitor", monitor, "--reference", reference_file,
        "--events", reference_file, "--out", tmp_path / "out",
    )  # fmt: skip
    assert done.returncode == 2
    assert "drift.numeric.methd: unknown key" in done.stderr
    assert done.stdout == ""
    assert not (tmp_path / "out").exists()


def test_cli_bad_jsonl_line_exits_2_naming_file_and_line(
    tmp_path: Path, reference_file: Path
) -> None:
    events = simulate(n_windows=1, per_window=50, seed=13)
    monitor = tmp_path / "m.yaml"
    monitor.write_text(monitor_yaml(events))
    ev = write_jsonl(events, tmp_path / "ev.jsonl", batch_size=10, feedback="after")
    lines = ev.read_text().splitlines()
    lines[2] = lines[2].replace('"timestamps":[', '"timestamps":["yesterday",', 1)
    lines.insert(6, "{not json")
    ev.write_text("\n".join(lines) + "\n")
    done = _cli(
        "--monitor", monitor, "--reference", reference_file, "--events", ev,
        "--out", tmp_path / "out",
    )  # fmt: skip
    assert done.returncode == 2
    assert f"{ev}:3: " in done.stderr and "timestamps" in done.stderr
    lines[2] = lines[2].replace('"yesterday",', "", 1)
    ev.write_text("\n".join(lines) + "\n")
    done = _cli(
        "--monitor", monitor, "--reference", reference_file, "--events", ev,
        "--out", tmp_path / "out",
    )  # fmt: skip
    assert done.returncode == 2
    assert f"{ev}:7: invalid_json" in done.stderr


# ----------------------------------------------------------------------------- fast path
#
# Single events skip the event models when the column-wise checks of
# driftline.schemas.singles prove them valid. Whatever the line, the decoder must
# accept exactly what the codec accepts, raise the codec's error otherwise, and give
# the backtest the same rows as the event models do.

_JSON = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | finite | st.text(max_size=3)
_JSON_VALUES = _JSON | st.lists(_JSON, max_size=3) | st.dictionaries(st.text(max_size=3), _JSON)


@st.composite
def _lines_for_fast_path(draw: st.DrawFn) -> dict[str, Any]:
    body = dict(draw(prediction_bodies() | feedback_bodies() | feedback_batch_bodies()))
    change = draw(st.sampled_from(["none", "none", "replace", "drop", "add", "feature"]))
    key = draw(st.sampled_from(sorted(body)))
    if change == "replace" and key != "type":
        body[key] = draw(_JSON_VALUES)
    elif change == "drop" and key != "type":
        del body[key]
    elif change == "add":
        body[draw(st.text(max_size=5))] = draw(_JSON)
    elif change == "feature" and isinstance(body.get("features"), dict):
        body["features"][draw(identifiers)] = draw(_JSON_VALUES)
    return body


def _plain(value: Any) -> Any:
    """Lists for arrays (NaN as None, so that equal rows compare equal), recursively."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if dataclasses.is_dataclass(value):
        return _plain(vars(value))
    if hasattr(value, "tolist"):
        return [None if isinstance(v, float) and v != v else v for v in value.tolist()]
    return value


def _rows_of(reader: RowReader) -> dict[str, Any]:
    rows = reader.rows("events")
    return {name: _plain(value) for name, value in vars(rows).items() if name != "lines"}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_lines_for_fast_path(), task=st.sampled_from(["binary_classification", "regression"]))
def test_fast_path_agrees_with_the_codec(body: dict[str, Any], task: str) -> None:
    line = orjson.dumps(body)
    model = body.get("model_id") if isinstance(body.get("model_id"), str) else "m"
    given = body.get("features")
    features: dict[str, Any] = given if isinstance(given, dict) else {}
    names = {
        str(n): "numeric" if i % 2 else "categorical" for i, n in enumerate(features) if n.strip()
    }
    config = MonitorConfig(model_id=model or "m", task=task, features=names or {"x": "numeric"})
    try:
        expected: Any = decode_ingest(line)
    except DecodeError as error:
        expected = error
    fast = RowReader(config)
    if isinstance(expected, DecodeError):
        with pytest.raises(LineError) as caught:
            fast.read([b"", b"  "] * 3 + [line])  # blank lines count: the line is line 7
        assert caught.value.line == 7
        assert str(caught.value) == str(expected)
        return
    fast.read([line])
    slow = RowReader(config)
    if isinstance(expected, PredictionEvent):
        expected = prediction_run([prediction_view(expected)], trusted=True)
    elif isinstance(expected, FeedbackEvent):
        expected = feedback_run([feedback_view(expected)], trusted=True)
    slow.add(expected)
    assert _rows_of(fast) == _rows_of(slow)


@pytest.mark.parametrize("task", ["regression", "multiclass"])
def test_other_tasks(tmp_path: Path, task: str) -> None:
    rng = np.random.default_rng(14)
    classes = np.array(["cat", "dog", "eel"])

    def write(path: Path, start: float, prefix: str, n: int = 6000) -> Path:
        x = rng.normal(size=n).round(4)
        if task == "regression":
            pred: list[Any] = (2 * x).round(3).tolist()
            label: list[Any] = (2 * x + rng.normal(0, 0.5, n)).round(3).tolist()
        else:
            guess = rng.integers(0, 3, n)
            truth = np.where(rng.random(n) < 0.8, guess, (guess + 1) % 3)
            pred, label = classes[guess].tolist(), classes[truth].tolist()
        ids = [f"{prefix}{i}" for i in range(n)]
        ts = (start + np.arange(n) * 3.0).tolist()  # 1200 rows an hour
        batch = {"type": "prediction_batch", "model_id": "m", "model_version": "v1",
                 "event_ids": ids, "timestamps": ts, "features": {"x": x.tolist()},
                 "predictions": pred}  # fmt: skip
        labels = {"type": "feedback_batch", "model_id": "m", "event_ids": ids,
                  "timestamps": ts, "labels": label}  # fmt: skip
        path.write_bytes(orjson.dumps(labels) + b"\n" + orjson.dumps(batch) + b"\n")
        return path

    monitor = tmp_path / "m.yaml"
    monitor.write_text(f"model_id: m\ntask: {task}\nfeatures: {{x: numeric}}\n")
    ref = write(tmp_path / "ref.jsonl", START - 5 * HOUR, "r")
    ev = write(tmp_path / "ev.jsonl", START, "e")
    summary = run_backtest(monitor, ref, ev, tmp_path / "out")

    assert summary.windows.count == 5 and summary.events.label_coverage == 1.0
    assert summary.alerts.total == 0
    metrics = _lines(tmp_path / "out" / "metrics.jsonl")
    primary = "mae" if task == "regression" else "accuracy"
    perf = [m for m in metrics if m["kind"] == "performance" and m["metric"] == primary]
    assert [m["status"] for m in perf] == ["ok"] * 5
    assert all(m["n"] == 1200 and m["reference"] is not None for m in perf)
