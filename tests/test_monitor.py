"""The streaming monitor's pure parts, and its shell in-process against chDB (no Kafka)."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from backtest_streams import monitor_yaml, simulate, write_jsonl
from driftline.detectors.step import MonitorState, WindowRecord
from driftline.detectors.windows import PartitionMark, global_watermark, plan_windows
from driftline.streams.ingest import RawMessage, route_messages, watermark_table
from driftline.streams.monitor import Monitor, load_monitors

from driftline.backtest import reference_profile, run_backtest
from driftline.store import EmbeddedStore, migrate
from driftline.store.profiles import save_profile
from driftline.store.rows import KafkaPosition

TOPIC = "t.predictions"


# --------------------------------------------------------------------------- pure parts


def test_watermark_is_the_slowest_active_partition() -> None:
    marks = [PartitionMark(0, 1000.0, 50.0), PartitionMark(1, 400.0, 45.0)]
    assert global_watermark(marks, now=50.0, idle_seconds=10) == 400.0
    # partition 1 made no progress for more than 10 s: it no longer holds the others back
    assert global_watermark(marks, now=55.5, idle_seconds=10) == 1000.0
    # every partition idle: the stream is quiet, the newest event time stands
    assert global_watermark(marks, now=500.0, idle_seconds=10) == 1000.0
    assert global_watermark([], now=0.0, idle_seconds=10) == -math.inf


def test_windows_close_when_the_watermark_passes_end_plus_lateness() -> None:
    counts = {0.0: (10, 0), 60.0: (10, 0), 120.0: (10, 0), 240.0: (0, 0)}
    plan = plan_windows(MonitorState(), counts, size=60, lateness=30, watermark=210.0, horizon=1e9)
    assert [w.start for w in plan] == [0.0, 60.0, 120.0]  # 120 + 60 + 30 <= 210
    plan = plan_windows(MonitorState(), counts, size=60, lateness=30, watermark=209.9, horizon=1e9)
    assert [w.start for w in plan] == [0.0, 60.0]
    plan = plan_windows(MonitorState(), counts, size=60, lateness=30, watermark=149.9, horizon=1e9)
    assert [w.start for w in plan] == [0.0]  # 60 + 60 + 30 > 149.9
    # windows without predictions never close
    assert all(w.n > 0 for w in plan)


def test_closed_windows_are_revised_only_when_their_counts_rise_within_the_horizon() -> None:
    state = MonitorState(
        last_closed=60.0,
        windows=(
            WindowRecord(start=0.0, revision=0, n=10, labelled=3),
            WindowRecord(start=60.0, revision=2, n=10, labelled=5),
        ),
    )
    same = {0.0: (10, 3), 60.0: (10, 5)}
    assert plan_windows(state, same, size=60, lateness=0, watermark=200.0, horizon=1e9) == []
    more = {0.0: (10, 4), 60.0: (11, 5), 120.0: (1, 0)}
    plan = plan_windows(state, more, size=60, lateness=0, watermark=200.0, horizon=1e9)
    assert [(w.start, w.revision) for w in plan] == [(0.0, 1), (60.0, 3), (120.0, 0)]
    # beyond the horizon nothing is revised, but newer windows still close
    plan = plan_windows(state, more, size=60, lateness=0, watermark=200.0, horizon=10)
    assert [(w.start, w.revision) for w in plan] == [(120.0, 0)]
    # a never-closed window older than the newest closed one (late predictions) closes
    late = MonitorState(
        last_closed=60.0, windows=(WindowRecord(start=60.0, revision=0, n=1, labelled=0),)
    )
    plan = plan_windows(
        late, {0.0: (2, 0), 60.0: (1, 0)}, size=60, lateness=0, watermark=200.0, horizon=1e9
    )
    assert [(w.start, w.revision) for w in plan] == [(0.0, 0)]


def test_monitors_are_loaded_from_a_folder(tmp_path: Path) -> None:
    stream = simulate(n_windows=1, per_window=10, n_numeric=2)
    (tmp_path / "credit.yaml").write_text(monitor_yaml(stream))
    (tmp_path / "notes.txt").write_text("ignored")
    assert list(load_monitors(tmp_path)) == ["credit"]
    assert load_monitors(None) == {}
    (tmp_path / "again.yaml").write_text(monitor_yaml(stream))
    with pytest.raises(ValueError, match="another monitor"):
        load_monitors(tmp_path)


# --------------------------------------------------------------------------- in-process shell


class Harness:
    """A store fed like the ingest agents feed it, and a monitor with in-memory senders."""

    def __init__(
        self,
        folder: Path,
        monitor: Path,
        late_check_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        horizon_seconds: float = 1e9,
        idle_seconds: float = 60,
    ) -> None:
        self.store = EmbeddedStore(folder / "db", "driftline")
        migrate(self.store)
        self.sent: dict[str, list[dict[str, Any]]] = {"alerts": [], "requests": [], "versions": []}
        self.offset = 0
        self.horizon_seconds = horizon_seconds
        self.idle_seconds = idle_seconds
        self.monitor = self._monitor(monitor, late_check_seconds, clock)

    def _monitor(
        self,
        monitor: Path,
        late_check_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> Monitor:
        async def alert(key: str, value: bytes) -> None:
            self.sent["alerts"].append(orjson.loads(value))

        async def request(key: str, value: bytes) -> None:
            self.sent["requests"].append(orjson.loads(value))

        async def version(key: str, value: bytes) -> None:
            self.sent["versions"].append(orjson.loads(value))

        return Monitor(
            self.store,
            threading.Lock(),
            load_monitors(monitor.parent),
            predictions_topic=TOPIC,
            idle_seconds=self.idle_seconds,
            horizon_seconds=self.horizon_seconds,
            send_alert=alert,
            send_request=request,
            late_check_seconds=late_check_seconds,
            clock=clock,
            settle_seconds=0.0,  # rows inserted here are visible at once
            send_version=version,
        )

    def ingest(self, lines: list[bytes], partition: int = 0) -> None:
        messages = []
        for line in lines:
            messages.append(RawMessage(line, KafkaPosition(TOPIC, partition, self.offset)))
            self.offset += 1
        outcome = route_messages(messages, 1 << 24)
        if outcome.predictions is not None:
            self.store.insert_arrow("predictions", outcome.predictions)
        if outcome.shadow_predictions is not None:
            self.store.insert_arrow("shadow_predictions", outcome.shadow_predictions)
        if outcome.feedback is not None:
            self.store.insert_arrow("feedback", outcome.feedback)
        if outcome.watermarks:
            self.store.insert_arrow("watermarks", watermark_table(outcome.watermarks))

    def tick(self) -> None:
        asyncio.run(self.monitor.tick())

    def metrics(self) -> list[dict[str, Any]]:
        return self.store.query(
            "SELECT toUnixTimestamp64Micro(window_start) AS ws, metric, feature, kind, value, "
            "p_value, q_value, reference, threshold, status, n, label_coverage, primary, revision, "
            "warning, critical, segment, lower, upper FROM window_metrics FINAL "
            "ORDER BY ws, metric, feature, segment"
        )


@contextmanager
def streamed(
    folder: Path, monitor: Path, reference: Path, lines: list[bytes], clock: float
) -> Iterator[Harness]:
    """The in-process stream after ``lines``: the reference file's profile stored, the
    lines ingested, a clock event at ``clock`` closing their windows, one tick; the
    store is closed on the way out."""
    h = Harness(folder, monitor)
    try:
        save_profile(h.store, reference_profile(monitor, reference)[1])
        h.ingest(lines)
        h.ingest([clock_event(clock)])
        h.tick()
        yield h
    finally:
        h.store.close()


def clock_event(at: float, model_id: str = "credit", model_version: str = "v1") -> bytes:
    """A prediction of ``model_id`` (no features) that moves its watermark to ``at``.

    Each model has its own clock: only a prediction of the same model closes its windows.
    The event lies in a window of its own past the stream's last one, which it does not
    close: the results of the stream's windows do not change.
    """
    return orjson.dumps(
        {
            "type": "prediction",
            "event_id": f"clock-{at}",
            "model_id": model_id,
            "model_version": model_version,
            "timestamp": at,
            "features": {},
            "prediction": 0,
        }
    )


EXTRA = "retrain:\n  min_labelled_rows: 100\n"


def expected_metrics(out: Path) -> dict[tuple[int, str, str, str], dict[str, Any]]:
    """The backtest's metric rows by window start (µs), metric, feature and segment
    (``key=value``, ``""`` for the whole model, as ``window_metrics`` keeps it)."""
    expected = {}
    for line in (out / "metrics.jsonl").read_bytes().splitlines():
        row = orjson.loads(line)
        from datetime import datetime

        ws = round(datetime.fromisoformat(row["window_start"]).timestamp() * 1_000_000)
        segment = "".join(f"{k}={v}" for k, v in (row.get("segment") or {}).items())
        expected[(ws, row["metric"], row["feature"] or "", segment)] = row
    return expected


def assert_same_metrics(got: list[dict[str, Any]], out: Path) -> None:
    expected = expected_metrics(out)
    assert len(got) == len(expected)
    for row in got:
        key = (int(row["ws"]), row["metric"], row["feature"], row.get("segment", ""))
        want = expected[key]
        for name in ("status", "n", "kind", "primary"):
            assert row[name] == want[name], (row, want)
        for name in (
            "value",
            "p_value",
            "q_value",
            "reference",
            "threshold",
            "label_coverage",
            "warning",
            "critical",
            "lower",
            "upper",
        ):
            a, b = row.get(name), want.get(name)
            if b is None or a is None:
                assert a is None and b is None, (name, row, want)
            else:
                assert a == pytest.approx(b, rel=1e-9, abs=1e-9), (name, row, want)


def backtest_case(tmp_path: Path) -> tuple[Path, Path, Path, Any]:
    ref = simulate(
        n_windows=2,
        per_window=1000,
        n_numeric=4,
        seed=1,
        window_seconds=60.0,
        id_prefix="r",
        start=1_767_225_600.0 - 3600,
    )
    stream = simulate(
        n_windows=8,
        per_window=500,
        n_numeric=4,
        seed=2,
        window_seconds=60.0,
        mean_shift={"x2": (4, 0.75)},
        accuracy_change=(6, 0.6),
    )
    monitors = tmp_path / "monitors"
    monitors.mkdir()
    monitor = monitors / "credit.yaml"
    monitor.write_text(monitor_yaml(stream, window="1m", allowed_lateness="10s", extra=EXTRA))
    ref_path = write_jsonl(ref, tmp_path / "ref.jsonl")
    events = write_jsonl(stream, tmp_path / "events.jsonl", batch_size=250)
    return monitor, ref_path, events, stream


def test_streaming_equals_the_backtest_in_process(tmp_path: Path) -> None:
    monitor, ref_path, events, stream = backtest_case(tmp_path)
    out = tmp_path / "out"
    run_backtest(monitor, ref_path, events, out)
    h = Harness(tmp_path, monitor)
    try:
        save_profile(h.store, reference_profile(monitor, ref_path)[1])
        lines = events.read_bytes().splitlines()
        half = len(lines) // 2
        h.ingest(lines[:half])
        h.tick()  # closes what the first half allows
        h.ingest(lines[half:])
        h.ingest([clock_event(float(stream.timestamps.max()) + 60 + 10 + 60)])
        h.tick()
        h.tick()  # nothing more to do
        assert_same_metrics(h.metrics(), out)
        assert {r["revision"] for r in h.metrics()} == {0}
        want_alerts = [orjson.loads(x) for x in (out / "alerts.jsonl").read_bytes().splitlines()]
        assert [a["alert_id"] for a in h.sent["alerts"]] == [a["alert_id"] for a in want_alerts]
        assert [a["severity"] for a in h.sent["alerts"]] == [a["severity"] for a in want_alerts]
        assert [a["opened_at"] for a in h.sent["alerts"]] == [a["opened_at"] for a in want_alerts]
        want_requests = [
            orjson.loads(x) for x in (out / "retrain_requests.jsonl").read_bytes().splitlines()
        ]
        assert h.sent["requests"] == want_requests
        assert any(a["kind"] == "data_drift" and a["feature"] == "x2" for a in want_alerts)
        stored = h.store.query("SELECT alert_id FROM alerts FINAL ORDER BY alert_id")
        assert [r["alert_id"] for r in stored] == sorted({a["alert_id"] for a in want_alerts})
    finally:
        h.store.close()


def test_late_labels_make_a_new_revision_and_can_raise_an_alert(tmp_path: Path) -> None:
    monitor, ref_path, events, stream = backtest_case(tmp_path)
    out = tmp_path / "out"
    run_backtest(monitor, ref_path, events, out)
    lines = events.read_bytes().splitlines()
    predictions = [x for x in lines if b'"prediction_batch"' in x]
    feedback = [x for x in lines if b'"feedback_batch"' in x]
    # labels of the windows from 6 on (where accuracy drops) are held back
    cut = 6 * 60 + stream.timestamps.min()
    early = [x for x in feedback if max(orjson.loads(x)["timestamps"]) - 60 < cut]
    late = [x for x in feedback if x not in early]
    h = Harness(tmp_path, monitor)
    try:
        save_profile(h.store, reference_profile(monitor, ref_path)[1])
        h.ingest(predictions + early)
        h.ingest([clock_event(float(stream.timestamps.max()) + 60 + 10 + 60)])
        h.tick()
        before = {(r["ws"], r["metric"]): r for r in h.metrics() if r["kind"] == "performance"}
        perf_alerts = [a for a in h.sent["alerts"] if a["kind"] == "performance"]
        assert perf_alerts == []
        h.ingest(late)
        h.tick()
        after = {(r["ws"], r["metric"]): r for r in h.metrics() if r["kind"] == "performance"}
        changed = [k for k in after if after[k]["revision"] > 0]
        assert changed, "late labels made no new revision"
        for key in changed:
            assert (after[key]["label_coverage"] or 0) > (before[key]["label_coverage"] or 0)
        assert [a for a in h.sent["alerts"] if a["kind"] == "performance"], "no late alert"
        # once every label is in, the latest revisions equal the backtest
        assert_same_metrics(h.metrics(), out)
    finally:
        h.store.close()


def test_new_windows_close_at_once_and_late_data_waits_for_a_timed_pass(tmp_path: Path) -> None:
    monitor, ref_path, events, stream = backtest_case(tmp_path)
    out = tmp_path / "out"
    run_backtest(monitor, ref_path, events, out)
    t0 = float(stream.timestamps.min())
    lines = events.read_bytes().splitlines()

    def window_of(line: bytes, delay: float) -> int:
        return int((max(orjson.loads(line)["timestamps"]) - delay - t0) // 60)

    predictions = [x for x in lines if b'"prediction_batch"' in x]
    feedback = [x for x in lines if b'"feedback_batch"' in x]
    held = [x for x in feedback if window_of(x, 60) in (4, 5)]  # labels of windows 4 and 5
    now = [0.0]
    h = Harness(tmp_path, monitor, late_check_seconds=5.0, clock=lambda: now[0])

    def closed() -> dict[int, int]:
        rows = h.store.query(
            "SELECT toUnixTimestamp64Micro(window_start) AS ws, max(revision) AS r "
            "FROM window_metrics GROUP BY ws"
        )
        return {int((r["ws"] / 1e6 - t0) // 60): int(r["r"]) for r in rows}

    try:
        save_profile(h.store, reference_profile(monitor, ref_path)[1])
        h.ingest([x for x in predictions if window_of(x, 0) <= 6])
        h.ingest([x for x in feedback if window_of(x, 60) < 4])
        h.tick()  # the watermark lies in window 6: windows 0..5 close
        assert closed() == dict.fromkeys(range(6), 0)
        h.ingest(held)
        now[0] = 1.0
        h.tick()  # no boundary crossed, no timed pass due: the late labels wait
        assert closed() == dict.fromkeys(range(6), 0)
        h.ingest([x for x in predictions if window_of(x, 0) == 7])
        h.ingest([x for x in feedback if window_of(x, 60) >= 6])
        h.ingest([clock_event(float(stream.timestamps.max()) + 60 + 10 + 60)])
        now[0] = 2.0
        h.tick()  # boundaries crossed: windows 6 and 7 close at once, nothing is re-counted
        assert closed() == dict.fromkeys(range(8), 0)
        now[0] = 6.0
        h.tick()  # the timed pass finds the late labels of windows 4 and 5
        assert closed() == {**dict.fromkeys(range(8), 0), 4: 1, 5: 1}
        assert_same_metrics(h.metrics(), out)
    finally:
        h.store.close()


class _CountingStore:
    """The harness's store, counting watermark reads (the models' marks)."""

    def __init__(self, store: EmbeddedStore) -> None:
        self.store = store
        self.watermark_reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        if "max(ingested_at)" in sql:
            self.watermark_reads += 1
        return self.store.query(sql, parameters)


def test_a_tick_looks_again_only_when_the_watermark_crossed_a_boundary(tmp_path: Path) -> None:
    monitor, ref_path, events, stream = backtest_case(tmp_path)
    h = Harness(tmp_path, monitor)  # every tick is also a timed pass
    counting = _CountingStore(h.store)
    h.monitor.store = counting  # type: ignore[assignment]
    try:
        save_profile(h.store, reference_profile(monitor, ref_path)[1])
        h.ingest(events.read_bytes().splitlines())
        h.tick()  # the first pass: one more round finds that nothing moved
        assert counting.watermark_reads == 2
        h.tick()  # a timed pass, no boundary crossed: one round
        assert counting.watermark_reads == 3
        h.ingest([clock_event(float(stream.timestamps.max()) + 60 + 10 + 60)])
        h.tick()
        assert counting.watermark_reads == 5
    finally:
        h.store.close()


def test_windows_close_in_chunks_with_the_same_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Monitor, "CLOSE_CHUNK", 3)
    monitor, ref_path, events, stream = backtest_case(tmp_path)
    out = tmp_path / "out"
    run_backtest(monitor, ref_path, events, out)
    h = Harness(tmp_path, monitor)
    try:
        save_profile(h.store, reference_profile(monitor, ref_path)[1])
        h.ingest(events.read_bytes().splitlines())
        h.ingest([clock_event(float(stream.timestamps.max()) + 60 + 10 + 60)])
        h.tick()
        assert_same_metrics(h.metrics(), out)
        saves = h.store.query("SELECT count() AS n FROM monitor_state")[0]["n"]
        assert int(saves) == 3  # 8 windows in chunks of 3, 3, 2: each chunk saved
        want_alerts = [orjson.loads(x) for x in (out / "alerts.jsonl").read_bytes().splitlines()]
        assert [a["alert_id"] for a in h.sent["alerts"]] == [a["alert_id"] for a in want_alerts]
    finally:
        h.store.close()


def test_a_window_whose_events_all_moved_away_is_not_reported(tmp_path: Path) -> None:
    monitor, ref_path, events, stream = backtest_case(tmp_path)
    t0 = float(stream.timestamps.min())
    lines = events.read_bytes().splitlines()
    moved = []
    for line in lines:  # window 2's predictions re-sent with times in window 3
        event = orjson.loads(line)
        if event["type"] == "prediction_batch" and int((event["timestamps"][0] - t0) // 60) == 2:
            event["timestamps"] = [t + 60 for t in event["timestamps"]]
            moved.append(orjson.dumps(event))
    assert moved
    # the model's own clock closes windows 0 and 1: an event at the start of window 3
    early_clock = clock_event(t0 + 3 * 60)
    resent = tmp_path / "resent.jsonl"
    resent.write_bytes(b"\n".join([*lines, *moved, early_clock]) + b"\n")
    out = tmp_path / "out"
    run_backtest(monitor, ref_path, resent, out)
    now = [0.0]
    h = Harness(tmp_path, monitor, late_check_seconds=5.0, clock=lambda: now[0])
    try:
        save_profile(h.store, reference_profile(monitor, ref_path)[1])
        h.ingest([x for x in lines if b'"prediction_batch"' in x][:4])  # windows 0 and 1
        h.ingest([early_clock])
        h.tick()  # windows 0 and 1 close, 2 not yet (it ends at 180 + 10 s of lateness)
        h.ingest(lines)
        h.ingest(moved)
        h.ingest([clock_event(float(stream.timestamps.max()) + 60 + 10 + 60)])
        now[0] = 1.0
        h.tick()  # a pass that only looks for new windows: 2 has copies but no events
        starts = {int((r["ws"] / 1e6 - t0) // 60) for r in h.metrics()}
        assert 2 not in starts and set(range(8)) - {2} <= starts
        now[0] = 10.0
        h.tick()  # the timed pass: windows 0 and 1 get their labels; 2 stays unreported
        assert 2 not in {int((r["ws"] / 1e6 - t0) // 60) for r in h.metrics()}
        assert_same_metrics(h.metrics(), out)
    finally:
        h.store.close()
