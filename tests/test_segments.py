"""Segments through the backtest: slices of the traffic monitored on their own.

The issue's cases: drift confined to one segment value is found at that segment in the
window it starts and nowhere else; ten segment values over 40 unchanged windows raise
no critical alert; segment metrics equal a hand-computed split of the same events.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from backtest_streams import (
    START,
    backtest,
    iso_at,
    json_lines,
    monitor_yaml,
    simulate,
    write_jsonl,
)
from driftline.detectors.profiles import ModelProfile
from driftline.detectors.statistics import get_statistic
from driftline.schemas.monitor import MonitorConfig, MonitorConfigError

from driftline.backtest import run_backtest

HOUR = 3600.0
TEN = {f"s{i}": 1.0 for i in range(10)}
SEGMENTS = "segments: {keys: [country], max_values: 8, min_samples: 200}\n"


def _run(tmp_path: Path, reference: Any, events: Any, extra: str = SEGMENTS) -> Path:
    return backtest(tmp_path, reference, events, extra=extra).out


def test_drift_confined_to_one_segment_is_found_there_in_its_first_window_and_nowhere_else(
    tmp_path: Path,
) -> None:
    reference = simulate(
        n_windows=4, per_window=5_000, n_numeric=5, seed=1, id_prefix="r", segments=TEN,
        start=START - 4 * HOUR,
    )  # fmt: skip
    events = simulate(
        n_windows=6, per_window=5_000, n_numeric=5, seed=2, segments=TEN,
        segment_shift=("s3", "x2", 3, 1.0),
    )  # fmt: skip
    out = _run(tmp_path, reference, events)
    alerts = json_lines(out / "alerts.jsonl")
    assert [(a["kind"], a["feature"], a["segment"], a["window_start"]) for a in alerts] == [
        ("data_drift", "x2", {"country": "s3"}, iso_at(3))
    ]
    rows = json_lines(out / "metrics.jsonl")
    bad = {
        (r["window_start"], r["feature"], json.dumps(r["segment"]))
        for r in rows
        if r["kind"] == "data_drift" and r["status"] in ("warning", "critical")
    }
    assert bad == {(iso_at(w), "x2", '{"country": "s3"}') for w in range(3, 6)}
    # the slice is 10% of the traffic: the whole model's x2 is not critical
    whole = [
        r
        for r in rows
        if r["segment"] is None and r["feature"] == "x2" and r["kind"] == "data_drift"
    ]
    assert len(whole) == 6 and all(r["status"] != "critical" for r in whole)
    # every row of a window is of the whole model or of one slice of the reference's top
    slices = {json.dumps(r["segment"]) for r in rows}
    assert len(slices) == 1 + 8 + 1  # whole, 8 values, _other (s8 and s9 pooled)


def test_ten_segment_values_over_40_unchanged_windows_raise_no_critical_alert(
    tmp_path: Path,
) -> None:
    reference = simulate(
        n_windows=8, per_window=4_000, n_numeric=10, seed=3, id_prefix="r", segments=TEN,
        start=START - 8 * HOUR,
    )  # fmt: skip
    events = simulate(n_windows=40, per_window=4_000, n_numeric=10, seed=4, segments=TEN)
    extra = "segments: {keys: [country], max_values: 10, min_samples: 200}\n"
    out = _run(tmp_path, reference, events, extra)
    alerts = json_lines(out / "alerts.jsonl")
    assert [a for a in alerts if a["severity"] == "critical"] == []
    rows = json_lines(out / "metrics.jsonl")
    segment_rows = [r for r in rows if r["segment"] is not None and r["kind"] == "data_drift"]
    assert len(segment_rows) == 40 * 10 * 10  # every slice of every window was judged
    assert all(r["status"] != "insufficient" for r in segment_rows)


def test_segment_metrics_equal_a_hand_computed_split_of_the_same_events(
    tmp_path: Path,
) -> None:
    mix = {"de": 0.5, "fr": 0.3, "it": 0.15, "": 0.05}  # some events carry no segment
    reference = simulate(
        n_windows=3, per_window=3_000, n_numeric=3, seed=5, id_prefix="r", segments=mix,
        start=START - 3 * HOUR, categorical={"channel": {"web": 0.6, "app": 0.4}},
    )  # fmt: skip
    events = simulate(
        n_windows=3, per_window=3_000, n_numeric=3, seed=6, segments=mix,
        segment_shift=("fr", "x1", 1, 0.5), categorical={"channel": {"web": 0.6, "app": 0.4}},
        accuracy=0.8, label_fraction=0.7,
    )  # fmt: skip
    extra = "segments: {keys: [country], max_values: 2, min_samples: 100}\n"
    out = _run(tmp_path, reference, events, extra)
    profile = ModelProfile.model_validate_json((out / "profile.json").read_text())
    assert list(profile.segments["country"]) == ["de", "fr", "_other"]
    rows = json_lines(out / "metrics.jsonl")
    psi = get_statistic("psi")
    checked = 0
    for value in ("de", "fr", "_other"):
        pooled = {"de": ["de"], "fr": ["fr"], "_other": ["it", ""]}[value]
        ref_rows = np.isin(reference.segments, pooled)
        for window in range(3):
            at = (np.floor((events.timestamps - START) / HOUR) == window) & np.isin(
                events.segments, pooled
            )
            got = {
                (r["kind"], r["metric"], r["feature"]): r
                for r in rows
                if r["segment"] == {"country": value} and r["window_start"] == iso_at(window)
            }
            assert got[("performance", "accuracy", None)]["n"] == int(events.labelled[at].sum())
            labelled = at & events.labelled
            accuracy = float(np.mean(events.predictions[labelled] == events.labels[labelled]))
            assert got[("performance", "accuracy", None)]["value"] == pytest.approx(accuracy)
            for name in ("x0", "x1"):
                edges = np.asarray(profile.features[name].edges)  # the whole model's bins
                bins = len(edges) + 1
                ref_hist = np.bincount(
                    np.searchsorted(edges, reference.features[name][ref_rows], side="right"),
                    minlength=bins,
                )
                cur_hist = np.bincount(
                    np.searchsorted(edges, events.features[name][at], side="right"),
                    minlength=bins,
                )
                want = psi.compare(tuple(ref_hist), tuple(cur_hist)).value
                row = got[("data_drift", "psi", name)]
                assert row["value"] == pytest.approx(want, rel=1e-9), (value, window, name)
                assert row["n"] == int(at.sum())
                checked += 1
            channel = got[("data_drift", "psi", "channel")]
            assert channel["n"] == int(at.sum())
    assert checked == 3 * 3 * 2
    fr_shifted = [
        r
        for r in rows
        if r["segment"] == {"country": "fr"} and r["feature"] == "x1" and r["kind"] == "data_drift"
    ]
    bad = [r["status"] in ("warning", "critical") for r in fr_shifted]
    assert bad == [False, True, True]


def test_segments_config_rejects_unknown_keys_and_bad_names() -> None:
    base = {"model_id": "m", "features": {"x": "numeric"}}
    with pytest.raises(MonitorConfigError, match=r"segments\.colour: unknown key"):
        MonitorConfig.from_mapping({**base, "segments": {"keys": ["country"], "colour": 1}})
    with pytest.raises(MonitorConfigError, match="segment key"):
        MonitorConfig.from_mapping({**base, "segments": {"keys": ["a=b"]}})
    with pytest.raises(MonitorConfigError, match="keys"):
        MonitorConfig.from_mapping({**base, "segments": {"keys": []}})


def _stream_case(tmp_path: Path) -> tuple[Path, Path, Path, Path, Any]:
    """A reference and a stream of 1-minute windows with segments (some events without),
    drift confined to ``s3`` from window 3, and the backtest's outputs."""
    mix = {"s0": 6.0, "s1": 5.0, "s2": 4.0, "s3": 3.5, "s4": 1.5, "s5": 1.0, "": 1.0}
    ref = simulate(
        n_windows=3, per_window=3_000, n_numeric=3, seed=7, window_seconds=60.0,
        id_prefix="r", start=START - 3600, segments=mix, accuracy=0.85,
    )  # fmt: skip
    stream = simulate(
        n_windows=6, per_window=3_000, n_numeric=3, seed=8, window_seconds=60.0,
        segments=mix, segment_shift=("s3", "x1", 3, 1.0), accuracy=0.85,
        accuracy_change=(4, 0.7),
    )  # fmt: skip
    monitors = tmp_path / "monitors"
    monitors.mkdir()
    monitor = monitors / "credit.yaml"
    extra = "segments: {keys: [country], max_values: 4, min_samples: 150}\n"
    extra += "performance: {min_labels: 150}\nretrain: {min_labelled_rows: 100}\n"
    monitor.write_text(monitor_yaml(stream, window="1m", allowed_lateness="10s", extra=extra))
    ref_path = write_jsonl(ref, tmp_path / "ref.jsonl")
    events = write_jsonl(stream, tmp_path / "events.jsonl", batch_size=500)
    out = tmp_path / "out"
    run_backtest(monitor, ref_path, events, out)
    return monitor, ref_path, events, out, stream


def test_the_stream_gives_the_backtest_segment_rows_and_alerts(tmp_path: Path) -> None:
    """The store's pushed-down slices through the streaming monitor: every window's
    rows of the whole model and of each slice, and the alerts, as the backtest has them."""
    from test_monitor import assert_same_metrics, streamed

    monitor, ref, events, out, stream = _stream_case(tmp_path)
    want = json_lines(out / "alerts.jsonl")
    segmented = [a for a in want if a["segment"] is not None]
    assert {(a["kind"], json.dumps(a["segment"])) for a in segmented} >= {
        ("data_drift", '{"country": "s3"}')
    }
    lines = events.read_bytes().splitlines()
    clock = float(stream.timestamps.max()) + 60 + 10 + 60
    with streamed(tmp_path, monitor, ref, lines, clock) as h:
        got = h.metrics()
        assert {r["segment"] for r in got} == {"", *(f"country=s{i}" for i in range(4))} | {
            "country=_other"
        }
        assert_same_metrics(got, out)
        assert [a["alert_id"] for a in h.sent["alerts"]] == [a["alert_id"] for a in want]
        assert [a["segment"] for a in h.sent["alerts"]] == [a["segment"] for a in want]
        stored = h.store.query("SELECT alert_id, segment FROM alerts FINAL ORDER BY alert_id")
        assert {(r["alert_id"], r["segment"]) for r in stored} == {
            (a["alert_id"], "".join(f"{k}={v}" for k, v in (a["segment"] or {}).items()))
            for a in want
        }
        # report.html: the per-segment heatmap marks s3 from its first drifted window on
        import re

        from driftline.report import render_report
        from driftline.report_data import load_report_data

        data = load_report_data(h.store, "credit")
        for window in data.windows:  # the whole model's rows apart from the slices'
            assert [m.feature for m in window.metrics if m.kind == "data_drift"] == [
                "x0",
                "x1",
                "x2",
            ]
            assert len(window.segments) == 5
        page = render_report(data)
        assert 'data-plot="segments"' in page
        cells = re.findall(r'data-segment="country=s3" data-status="(\w+)"', page)
        assert cells[:3] == ["ok", "ok", "ok"] and cells[3:] == ["critical"] * 3
        others = re.findall(r'data-segment="country=s[0124]" data-status="(\w+)"', page)
        assert others and "critical" not in others
        assert "country=s3" in page.split('id="alerts"')[1]  # the alert names its slice


@pytest.mark.e2e
def test_a_real_worker_publishes_and_stores_the_backtest_segment_alerts(
    worker_factory: Any, producer: Any, tmp_path: Path
) -> None:
    """tansu, a worker process and chDB: segmented windows and alerts in ClickHouse and
    on Kafka equal the backtest."""
    from test_monitor import assert_same_metrics
    from test_monitor_e2e import metrics, replayed

    monitor, ref, events, out, stream = _stream_case(tmp_path)
    want = json_lines(out / "alerts.jsonl")
    clock = float(stream.timestamps.max()) + 60 + 10 + 60
    worker, got = replayed(worker_factory, producer, monitor, ref, events, clock, 6, len(want))
    assert [(a["alert_id"], a["segment"]) for a in got] == [
        (a["alert_id"], a["segment"]) for a in want
    ]
    assert any(a["segment"] == {"country": "s3"} for a in got)
    assert_same_metrics(metrics(worker), out)
