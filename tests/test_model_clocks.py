"""Event-time rules of the streaming monitor, through the in-process harness on chDB.

Issue 11: each model has its own clock (finding 2a); every new evaluation of a window
gets a revision above every stored one (finding 2b); the latest copy of a re-sent event
counts once, in its own window, and the window it left is evaluated again without it
(finding 7); predictions stored beyond the late-data horizon are counted and logged
(finding 8).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from backtest_streams import Stream, monitor_yaml, simulate, write_jsonl
from driftline.streams.monitor import load_monitors
from prometheus_client import CollectorRegistry
from test_monitor import EXTRA, Harness, assert_same_metrics, clock_event

from driftline.backtest import reference_profile, run_backtest
from driftline.metrics import WorkerMetrics
from driftline.store.profiles import save_profile

WINDOW = 60.0
DAY = 86_400.0


def streams(tmp_path: Path, *models: str) -> tuple[Path, dict[str, tuple[Stream, Path, Path]]]:
    """Per model: its stream of 8 one-minute windows, its reference file and monitor file."""
    monitors = tmp_path / "monitors"
    monitors.mkdir()
    found = {}
    for seed, model in enumerate(models):
        ref = simulate(
            n_windows=2,
            per_window=1000,
            n_numeric=4,
            seed=10 + seed,
            window_seconds=WINDOW,
            id_prefix=f"r{model}",
            start=1_767_225_600.0 - 3600,
            model_id=model,
        )
        stream = simulate(
            n_windows=8,
            per_window=500,
            n_numeric=4,
            seed=20 + seed,
            window_seconds=WINDOW,
            id_prefix=f"e{model}",
            model_id=model,
        )
        monitor = monitors / f"{model}.yaml"
        monitor.write_text(monitor_yaml(stream, window="1m", allowed_lateness="10s", extra=EXTRA))
        ref_path = write_jsonl(ref, tmp_path / f"ref-{model}.jsonl")
        found[model] = (stream, monitor, ref_path)
    return monitors, found


def prediction(stream: Stream, i: int, *, at: float | None = None, event_id: str = "") -> bytes:
    """Row ``i`` of the stream as one prediction event (at another time or id if given)."""
    return orjson.dumps(
        {
            "type": "prediction",
            "event_id": event_id or stream.event_ids[i],
            "model_id": stream.model_id,
            "model_version": stream.model_version,
            "timestamp": float(stream.timestamps[i]) if at is None else at,
            "features": {name: col[i].item() for name, col in stream.features.items()},
            "prediction": stream.predictions[i].item(),
            "score": stream.scores[i].item(),
        }
    )


def window_of(stream: Stream, line: bytes) -> int:
    event = orjson.loads(line)
    first = event["timestamps"][0] if "timestamps" in event else event["timestamp"]
    delay = stream.label_delay if event["type"].startswith("feedback") else 0.0
    return int((first - delay - float(stream.timestamps.min())) // WINDOW)


def x0(h: Harness, model: str = "credit") -> dict[float, dict[str, Any]]:
    """The latest (FINAL) data-drift row of feature x0 per window start of ``model``."""
    rows = h.store.query(
        "SELECT toUnixTimestamp64Micro(window_start) / 1e6 AS ws, n, revision "
        "FROM window_metrics FINAL WHERE model_id = {m:String} AND kind = 'data_drift' "
        "AND feature = 'x0' ORDER BY ws",
        {"m": model},
    )
    return {float(r["ws"]): r for r in rows}


def test_another_models_clock_never_closes_a_models_open_windows(tmp_path: Path) -> None:
    """Finding 2a: a prediction of model B far ahead (within the future bound) leaves
    model A's open window open, on a partition of its own or on A's."""
    monitors, found = streams(tmp_path, "credit", "fraud")
    credit, monitor, ref_path = found["credit"]
    events = write_jsonl(credit, tmp_path / "credit.jsonl", batch_size=250)
    out = tmp_path / "out"
    run_backtest(monitor, ref_path, events, out)
    lines = events.read_bytes().splitlines()
    t0 = float(credit.timestamps.min())
    h = Harness(tmp_path, monitor)
    try:
        for _, config, ref in found.values():
            save_profile(h.store, reference_profile(config, ref)[1])
        assert sorted(load_monitors(monitors)) == ["credit", "fraud"]
        h.ingest([x for x in lines if window_of(credit, x) <= 5])
        h.tick()
        assert sorted(x0(h)) == [t0 + w * WINDOW for w in range(5)]  # window 5 is open
        # fraud's clock runs two days ahead of credit's, on credit's partition and another
        ahead = t0 + 2 * DAY
        h.ingest([clock_event(ahead, "fraud")], partition=0)
        h.ingest([clock_event(ahead + 1, "fraud")], partition=1)
        h.tick()
        assert sorted(x0(h)) == [t0 + w * WINDOW for w in range(5)], "credit's window 5 closed"
        assert h.monitor.watermarks["fraud"] == ahead  # the slowest of fraud's partitions
        assert h.monitor.watermarks["credit"] < t0 + 6 * WINDOW
        # credit's own events close its windows, with all their data
        h.ingest([x for x in lines if window_of(credit, x) > 5])
        h.ingest([clock_event(float(credit.timestamps.max()) + 2 * WINDOW + 10)])
        h.tick()
        assert len(x0(h)) == 8
        assert x0(h, "fraud") == {}  # fraud's only window holds its newest events
        assert_same_metrics(h.metrics(), out)
    finally:
        h.store.close()


def test_a_window_evaluated_again_after_its_record_left_the_state_gets_a_higher_revision(
    tmp_path: Path,
) -> None:
    """Finding 2b: a model watermark jumps (an idle partition), the windows' records leave
    the state (beyond the horizon), the watermark comes back when the partition wakes
    up, late data re-opens a window: its new evaluation must beat the stored revisions."""
    _, found = streams(tmp_path, "credit")
    credit, monitor, ref_path = found["credit"]
    lines = write_jsonl(credit, tmp_path / "credit.jsonl", batch_size=250).read_bytes().splitlines()
    t0 = float(credit.timestamps.min())
    # idle after 5 s: a tick within 5 s of an ingest sees its partition active (a loaded
    # machine stalls for seconds)
    h = Harness(tmp_path, monitor, horizon_seconds=2 * DAY, idle_seconds=5.0)
    try:
        save_profile(h.store, reference_profile(monitor, ref_path)[1])
        held = [x for x in lines if b'"feedback_batch"' in x and window_of(credit, x) == 3]
        h.ingest([x for x in lines if x not in held])
        h.ingest([clock_event(float(credit.timestamps.max()) + 2 * WINDOW + 10)])
        h.tick()
        h.ingest(held)
        h.tick()  # window 3's late labels: revision 1
        three = t0 + 3 * WINDOW
        assert x0(h)[three]["revision"] == 1
        # partition 0 goes quiet; partition 1 runs three days ahead: the model's watermark
        # is partition 1's, windows 0..7 fall beyond the horizon and leave the state
        time.sleep(5.3)
        far = t0 + 3 * DAY
        h.ingest([clock_event(far), clock_event(far + 2 * WINDOW + 10)], partition=1)
        h.tick()
        assert h.monitor.watermark == far + 2 * WINDOW + 10
        assert far - far % WINDOW in x0(h)  # the first far window closed
        # partition 1 goes quiet, partition 0 wakes up with a late prediction in window 3:
        # the watermark is back at partition 0's, window 3 is within the horizon again
        time.sleep(5.3)
        h.ingest([prediction(credit, 3 * 500 + 7, event_id="late-3")], partition=0)
        h.tick()
        assert h.monitor.watermark < t0 + DAY
        latest = x0(h)[three]
        assert latest["n"] == 501, "FINAL returned a stale evaluation of window 3"
        assert latest["revision"] == 2
        revisions = h.store.query(
            "SELECT revision FROM window_metrics WHERE kind = 'data_drift' AND feature = 'x0' "
            "AND toUnixTimestamp64Micro(window_start) = {ws:Int64} ORDER BY revision",
            {"ws": round(three * 1e6)},
        )
        assert [r["revision"] for r in revisions] == [0, 1, 2]  # strictly increasing
    finally:
        h.store.close()


def test_an_event_re_sent_three_days_later_counts_once_in_its_new_window(tmp_path: Path) -> None:
    """Finding 7 (with 2b): the latest copy counts once, in its own window; the window it
    left is evaluated again without it, as a higher revision, although that window lies
    beyond the horizon by then; the result equals the backtest of the same lines."""
    _, found = streams(tmp_path, "credit")
    credit, monitor, ref_path = found["credit"]
    lines = write_jsonl(credit, tmp_path / "credit.jsonl", batch_size=250).read_bytes().splitlines()
    t0 = float(credit.timestamps.min())
    moved = 2 * 500 + 7  # a row of window 2
    again = prediction(credit, moved, at=float(credit.timestamps[moved]) + 3 * DAY)
    resent = tmp_path / "resent.jsonl"
    resent.write_bytes(b"\n".join([*lines, again]) + b"\n")
    out = tmp_path / "out"
    run_backtest(monitor, ref_path, resent, out)
    h = Harness(tmp_path, monitor, horizon_seconds=2 * DAY)
    try:
        save_profile(h.store, reference_profile(monitor, ref_path)[1])
        h.ingest(lines)
        h.tick()  # windows 0..6 close; 7 waits for the model's clock
        two = t0 + 2 * WINDOW
        assert (x0(h)[two]["n"], x0(h)[two]["revision"]) == (500, 0)
        h.ingest([again])
        h.tick()  # the copy moves the clock 3 days on: 7 closes, 2 loses the event
        assert (x0(h)[two]["n"], x0(h)[two]["revision"]) == (499, 1)
        h.ingest([clock_event(float(credit.timestamps[moved]) + 3 * DAY + 2 * WINDOW + 10)])
        h.tick()  # the copy's window closes
        rows = x0(h)
        new = float(credit.timestamps[moved]) + 3 * DAY
        assert rows[new - new % WINDOW]["n"] == 1
        assert sum(r["n"] for r in rows.values()) == credit.rows  # each event counted once
        assert_same_metrics(h.metrics(), out)
    finally:
        h.store.close()


def test_a_re_send_within_the_day_leaves_its_window_before_and_after_a_merge(
    tmp_path: Path,
) -> None:
    """Finding 7 within one day partition, where a merge removes the older copy: the
    window the event left is evaluated again when a timed pass sees the new copy, or,
    once the older copy is gone, when its count falls."""
    _, found = streams(tmp_path, "credit")
    credit, monitor, ref_path = found["credit"]
    lines = write_jsonl(credit, tmp_path / "credit.jsonl", batch_size=250).read_bytes().splitlines()
    t0 = float(credit.timestamps.min())
    first, second = 2 * 500 + 7, 3 * 500 + 9  # rows of windows 2 and 3
    to_five = prediction(credit, first, at=float(credit.timestamps[first]) + 3 * WINDOW)
    to_six = prediction(credit, second, at=float(credit.timestamps[second]) + 3 * WINDOW)
    resent = tmp_path / "resent.jsonl"
    resent.write_bytes(b"\n".join([*lines, to_five, to_six]) + b"\n")
    out = tmp_path / "out"
    run_backtest(monitor, ref_path, resent, out)
    h = Harness(tmp_path, monitor)
    try:
        save_profile(h.store, reference_profile(monitor, ref_path)[1])
        h.ingest(lines)
        h.ingest([clock_event(float(credit.timestamps.max()) + 2 * WINDOW + 10)])
        h.tick()
        assert {w["n"] for w in x0(h).values()} == {500}
        # both copies stored: the timed pass finds the new one and the window it left
        h.store.command("SYSTEM STOP MERGES predictions")
        h.ingest([to_five])
        h.tick()
        rows = x0(h)
        assert (rows[t0 + 2 * WINDOW]["n"], rows[t0 + 5 * WINDOW]["n"]) == (499, 501)
        assert rows[t0 + 2 * WINDOW]["revision"] == 1
        # the older copy merged away before any pass looked: the window's count fell
        h.ingest([to_six])
        h.store.command("SYSTEM START MERGES predictions")
        h.store.command("OPTIMIZE TABLE predictions FINAL")
        copies = h.store.query(
            "SELECT count() AS n FROM predictions WHERE event_id = {e:String}",
            {"e": credit.event_ids[second]},
        )
        assert copies[0]["n"] == 1
        h.tick()
        rows = x0(h)
        assert (rows[t0 + 3 * WINDOW]["n"], rows[t0 + 6 * WINDOW]["n"]) == (499, 501)
        assert sum(r["n"] for r in rows.values()) == credit.rows
        assert_same_metrics(h.metrics(), out)
    finally:
        h.store.close()


def test_predictions_beyond_the_horizon_are_counted_and_logged_once_an_hour(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Finding 8: late predictions whose window ended more than the horizon before the
    model's watermark are stored, never evaluated, counted and logged once an hour."""
    monitors, found = streams(tmp_path, "credit")
    credit, monitor, ref_path = found["credit"]
    lines = write_jsonl(credit, tmp_path / "credit.jsonl", batch_size=250).read_bytes().splitlines()
    t0 = float(credit.timestamps.min())
    now = [0.0]
    h = Harness(tmp_path, monitor, clock=lambda: now[0], horizon_seconds=600)
    registry = CollectorRegistry()
    h.monitor.metrics = WorkerMetrics(registry, load_monitors(monitors))

    def counted() -> float | None:
        return registry.get_sample_value(
            "driftline_predictions_beyond_horizon_total", {"model_id": "credit"}
        )

    def late(prefix: str, window: int, rows: int) -> list[bytes]:
        first = window * 500
        return [prediction(credit, first + i, event_id=f"{prefix}-{i}") for i in range(rows)]

    try:
        save_profile(h.store, reference_profile(monitor, ref_path)[1])
        h.ingest(lines)
        h.ingest([clock_event(t0 + 3600)])  # an hour on: windows 0..7 are beyond 10 min
        h.tick()
        assert len(x0(h)) == 8 and counted() == 0
        caplog.set_level(logging.WARNING, "driftline.streams.monitor")
        h.ingest(late("a", 1, 5))  # window 1 ended 58 min before the watermark
        h.ingest([prediction(credit, 10, at=t0 + 3600 - 300, event_id="recent")])  # within
        now[0] = 1.0
        h.tick()
        assert counted() == 5 and h.monitor.beyond_horizon == {"credit": 5}
        logged = [r.getMessage() for r in caplog.records if "horizon" in r.getMessage()]
        assert len(logged) == 1 and "5 predictions" in logged[0]
        h.ingest(late("b", 2, 3))
        now[0] = 2.0
        h.tick()  # counted, not logged again within the hour
        assert counted() == 8
        assert len([r for r in caplog.records if "horizon" in r.getMessage()]) == 1
        h.ingest(late("c", 4, 4))
        now[0] = 3602.0
        h.tick()  # an hour later: logged again, with what was not logged yet
        assert counted() == 12
        logged = [r.getMessage() for r in caplog.records if "horizon" in r.getMessage()]
        assert len(logged) == 2 and "7 predictions" in logged[1]
        # they were stored, never evaluated: windows 1, 2 and 4 keep their first revision
        assert {r["revision"] for r in x0(h).values()} == {0}
        assert x0(h)[t0 + WINDOW]["n"] == 500
    finally:
        h.store.close()
