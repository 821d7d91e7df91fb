"""``driftline report``: the renderer on typed data, the store shell, and the page in Chromium.

The end-to-end test fills the tables through the real pipeline (tansu, a worker
process, chDB), records a model version through the registry, runs the CLI, and
renders the page in headless Chromium (Debian package): a screenshot that is not
blank, and a DOM in which the page's own watchdog recorded no error.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import sys
import zlib
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from backtest_streams import monitor_yaml, simulate, write_jsonl
from confluent_kafka import Producer
from driftline.retrainer.registry import ModelRegistry, VersionRecord
from e2e_support import wait_for
from test_monitor import EXTRA, clock_event

from driftline.backtest import reference_profile
from driftline.report import (
    AlertRow,
    ReportData,
    ReportWindow,
    VersionRow,
    WindowMetric,
    render_report,
)
from driftline.report_data import ReportError, UnknownModelError, load_report_data, write_report
from driftline.store import EmbeddedStore, migrate
from driftline.store.remote import SharedStore, running_worker

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PLOTS = ("performance", "drift", "label-coverage", "volume")
VOLUME_BAR = (0x26, 0xA6, 0x9A)  # the bar colours of the volume and coverage plots
COVERAGE_BAR = (0x5C, 0x6B, 0xC0)


# --------------------------------------------------------------------------- helpers


class Tags(HTMLParser):
    """Every start tag of a page with its attributes."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def named(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]


def window(
    index: int,
    *,
    drift: float | None = 0.05,
    accuracy: float | None = 0.9,
    coverage: float | None = 0.8,
    predictions: int = 500,
    feature: str = "x2",
) -> ReportWindow:
    start = T0 + timedelta(minutes=index)
    status = "critical" if drift is not None and drift > 0.25 else "ok"
    return ReportWindow(
        model_version="v1",
        start=start,
        end=start + timedelta(minutes=1),
        predictions=predictions,
        metrics=(
            WindowMetric(
                kind="data_drift",
                metric="psi",
                feature=feature,
                value=drift,
                threshold=0.25,
                status=status,
                n=predictions,
            ),
            WindowMetric(
                kind="performance",
                metric="accuracy",
                value=accuracy,
                threshold=0.05,
                reference=0.9,
                status="ok" if accuracy is not None else "insufficient",
                label_coverage=coverage,
            ),
            WindowMetric(
                kind="performance",
                metric="f1",
                value=accuracy,
                primary=False,
                label_coverage=coverage,
            ),
        ),
    )


def sample(
    model_id: str = "credit", feature: str = "x2", decision: str = "promoted", n: int = 6
) -> ReportData:
    windows = tuple(window(i, drift=0.05 if i < 3 else 0.6, feature=feature) for i in range(n))
    alert = AlertRow(
        alert_id="a-1",
        model_version="v1",
        kind="data_drift",
        feature=feature,
        window_start=windows[3].start,
        window_end=windows[3].end,
        statistic="psi",
        value=0.6,
        threshold=0.25,
        p_value=1e-9,
        severity="critical",
        opened_at=windows[3].end,
    )
    version = VersionRow(
        version="v2",
        parent_version="v1",
        status="champion",
        decision=decision,
        metrics={"candidate_accuracy": 0.91, "champion_accuracy": 0.62},
        created_at=windows[-1].end,
        updated_at=windows[-1].end,
    )
    return ReportData(
        model_id=model_id,
        generated_at=windows[-1].end,
        windows=windows,
        alerts=(alert,),
        versions=(version,),
    )


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.skip("chromium is not installed (scripts/setup.sh installs the Debian package)")
    return found


def run_chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium on ``page`` with its own profile directory."""
    return subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={profile}",
            *args,
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )


def png_pixels(path: Path) -> np.ndarray:
    """An 8-bit RGB/RGBA PNG as (rows, columns, RGB): zlib, then the five row filters."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    position, chunks = 8, b""
    width = height = channels = 0
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            chunks += body
    raw = np.frombuffer(zlib.decompress(chunks), np.uint8).reshape(height, width * channels + 1)
    pixels = np.zeros((height, width * channels), np.uint8)
    above = np.zeros(width * channels, np.uint8)
    for row in range(height):
        kind, line = int(raw[row, 0]), raw[row, 1:]
        if kind == 0:
            out = line.copy()
        elif kind == 1:  # sub: a running sum per channel, modulo 256
            out = np.cumsum(line.reshape(width, channels), axis=0, dtype=np.uint8).reshape(-1)
        elif kind == 2:
            out = line + above
        else:  # average and Paeth depend on the pixel just decoded: one byte at a time
            values, up = line.tolist(), above.tolist()
            done = [0] * len(values)
            for i, x in enumerate(values):
                a = done[i - channels] if i >= channels else 0
                b = up[i]
                if kind == 3:
                    done[i] = (x + (a + b) // 2) & 0xFF
                    continue
                c = up[i - channels] if i >= channels else 0
                p = a + b - c
                pa_, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                best = a if pa_ <= pb and pa_ <= pc else (b if pb <= pc else c)
                done[i] = (x + best) & 0xFF
            out = np.array(done, np.uint8)
        pixels[row] = above = out
    return pixels.reshape(height, width, channels)[:, :, :3]


def has_colour(pixels: np.ndarray, rgb: tuple[int, int, int]) -> bool:
    return bool((pixels == np.array(rgb, np.uint8)).all(axis=2).any())


def check_rendered(page: Path, tmp_path: Path, plots: int) -> np.ndarray:
    """Render ``page`` in Chromium: a non-blank screenshot and a clean DOM; return its pixels."""
    screenshot = tmp_path / f"{page.stem}.png"
    shot = run_chromium(
        page, tmp_path / "chromium", f"--screenshot={screenshot}", "--window-size=1280,2000"
    )
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.stat().st_size > 10_000
    pixels = png_pixels(screenshot)
    assert pixels.shape == (2000, 1280, 3)
    colours, counts = np.unique(pixels.reshape(-1, 3), axis=0, return_counts=True)
    assert len(colours) > 16, "the screenshot is (almost) one colour"
    assert counts.max() < 0.97 * pixels.shape[0] * pixels.shape[1], "the screenshot is blank"
    dom = run_chromium(
        page, tmp_path / "chromium", "--dump-dom", "--enable-logging=stderr", "--v=0"
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert not [line for line in dom.stderr.splitlines() if "Uncaught" in line]
    body = Tags(dom.stdout).named("body")[0]
    assert body["data-errors"] == "", body["data-errors"]
    assert body["data-plots-drawn"] == str(plots)
    assert len([s for s in Tags(dom.stdout).named("svg") if s.get("class") == "plot"]) == plots
    return pixels


# --------------------------------------------------------------------------- the renderer


def test_each_plot_is_an_inline_svg_and_the_page_loads_nothing_from_anywhere() -> None:
    page = render_report(sample())
    tags = Tags(page)
    plots = [s["data-plot"] for s in tags.named("svg") if s.get("class") == "plot"]
    assert plots == list(PLOTS)
    assert len(tags.named("script")) == 1 and tags.named("script")[0] == {}
    assert not tags.named("link") and not tags.named("img") and not tags.named("iframe")
    assert not [attrs for _, attrs in tags.tags if "src" in attrs or "href" in attrs]
    assert "http:" not in page and "https:" not in page and "url(" not in page
    policy = [m for m in tags.named("meta") if m.get("http-equiv") == "Content-Security-Policy"]
    assert policy and "default-src 'none'" in str(policy[0]["content"])
    # one heatmap cell per feature and window, critical ones marked
    cells = re.findall(r'class="cell" data-status="(\w+)"', page)
    assert cells == ["ok"] * 3 + ["critical"] * 3
    # the alert table and the version table show their rows
    assert "a-1" in page and "candidate_accuracy = 0.91" in page
    assert '<span class="badge champion">champion</span>' in page
    assert '<span class="badge critical">critical</span>' in page


def test_the_performance_plot_draws_the_alert_level_from_the_reference_and_the_drop() -> None:
    page = render_report(sample())
    assert "reference 0.9<" in page and "warning level 0.85<" in page  # 0.9 - 0.05
    error_metric = ReportWindow(
        model_version="v1",
        start=T0,
        end=T0 + timedelta(minutes=1),
        metrics=(
            WindowMetric(
                kind="performance", metric="log_loss", value=0.5, threshold=0.5, reference=0.4
            ),
        ),
    )
    page = render_report(ReportData(model_id="m", generated_at=T0, windows=(error_metric,)))
    assert "warning level 0.6<" in page  # a relative increase of 50% over 0.4
    # a row with both levels (learned thresholds): both lines, each window its own
    learned = [
        ReportWindow(
            model_version="v1",
            start=T0 + timedelta(minutes=i),
            end=T0 + timedelta(minutes=i + 1),
            metrics=(
                WindowMetric(
                    kind="performance",
                    metric="accuracy",
                    value=0.9,
                    threshold=drop,
                    warning=drop,
                    critical=2 * drop,
                    reference=0.94,
                ),
            ),
        )
        for i, drop in enumerate((0.02, 0.01))
    ]
    page = render_report(ReportData(model_id="m", generated_at=T0, windows=tuple(learned)))
    assert "warning level 0.93<" in page and "critical level 0.92<" in page  # the last window


def test_every_string_from_the_data_is_escaped() -> None:
    hostile = '"><img src=x onerror=alert(1)><script>alert(2)</script>'
    data = sample(model_id=f"m{hostile}", feature=f"f{hostile}", decision=f"d{hostile}&")
    data = data.model_copy(
        update={
            "versions": (
                data.versions[0].model_copy(
                    update={"version": f"v{hostile}", "metrics": {f"k{hostile}": 1.0}}
                ),
            )
        }
    )
    page = render_report(data)
    assert hostile not in page
    assert "onerror=alert(1)&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in page
    tags = Tags(page)
    assert len(tags.named("script")) == 1  # only the page's own watchdog
    assert not tags.named("img")
    assert not [attrs for _, attrs in tags.tags if any(a.startswith("on") for a in attrs)]
    assert tags.named("title")[0] == {}  # the model id stayed text inside <title>


def test_empty_sections_say_there_is_no_data() -> None:
    page = render_report(ReportData(model_id="credit", generated_at=T0))
    assert "<svg" not in page
    assert page.count('class="no-data"') == 8  # the segment heatmap's too
    assert "No windows closed for this model yet." in page
    assert "No alerts for these windows." in page
    assert "No model versions recorded for this model." in page
    # windows without labels: no performance value, no coverage; drift and volume still drawn
    unlabelled = tuple(window(i, accuracy=None, coverage=None) for i in range(3))
    page = render_report(ReportData(model_id="credit", generated_at=T0, windows=unlabelled))
    plots = [s["data-plot"] for s in Tags(page).named("svg") if s.get("class") == "plot"]
    assert plots == ["drift", "volume"]
    assert "No labelled window yet: accuracy has no value in these windows." in page
    assert "No label coverage recorded in these windows." in page


def test_the_page_renders_in_chromium_and_its_watchdog_reports_errors(tmp_path: Path) -> None:
    page = tmp_path / "sample.html"
    page.write_text(render_report(sample()))
    pixels = check_rendered(page, tmp_path, plots=4)
    assert has_colour(pixels, VOLUME_BAR) and has_colour(pixels, COVERAGE_BAR)
    empty = tmp_path / "empty.html"
    empty.write_text(render_report(ReportData(model_id="credit", generated_at=T0)))
    check_rendered(empty, tmp_path, plots=0)
    # the watchdog is not blind: a failing script and a blocked image are recorded
    broken = tmp_path / "broken.html"
    broken.write_text(
        render_report(sample()).replace(
            "</body>", '<img src="missing.png"><script>notDefined();</script></body>'
        )
    )
    dom = run_chromium(broken, tmp_path / "chromium", "--dump-dom", "--enable-logging=stderr")
    errors = str(Tags(dom.stdout).named("body")[0]["data-errors"])
    assert "notDefined" in errors and "content security policy" in errors
    assert any("Uncaught" in line for line in dom.stderr.splitlines())


# --------------------------------------------------------------------------- the store shell


def version_record(
    model_id: str, decision: str, alert_ids: tuple[str, ...] = ("a1", "a2")
) -> VersionRecord:
    """A ``model_versions`` row as the retrainer's registry writes it."""
    at = T0.timestamp() + 600
    return VersionRecord(
        model_id=model_id,
        version="r-2",
        parent_version="v1",
        artifact_uri="file:artifacts/r-2",
        metrics={"candidate_accuracy": 0.91, "champion_accuracy": 0.63},
        status="champion",
        decision=decision,
        request_id="req-1",
        alert_ids=alert_ids,
        train_rows=3000,
        holdout_rows=1000,
        training_seconds=2.5,
        device="cpu",
        data_from=T0.timestamp(),
        data_to=at,
        created_at=at,
        updated_at=at,
    )


def test_the_store_shell_names_unknown_models_and_refuses_bad_input(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "db", "driftline")
    try:
        with pytest.raises(ReportError, match="driftline db migrate"):
            load_report_data(store, "credit")
        migrate(store)
        with pytest.raises(UnknownModelError, match=r"'credit'.*known model ids: none"):
            load_report_data(store, "credit")
        ModelRegistry(store).record(version_record("o'hara\\", "kept <champion>"))
        with pytest.raises(UnknownModelError, match=r"'credit'.*known model ids: \"o'hara"):
            load_report_data(store, "credit")
        with pytest.raises(ReportError, match="positive whole number, got 0"):
            load_report_data(store, "o'hara\\", windows=0)
        # a model with a version but no window yet: a page with "no data" plots
        data = load_report_data(store, "o'hara\\")
        assert data.windows == () and data.alerts == ()
        (version,) = data.versions
        assert (version.version, version.status, version.decision) == (
            "r-2",
            "champion",
            "kept <champion>",
        )
        assert version.metrics == {"candidate_accuracy": 0.91, "champion_accuracy": 0.63}
        assert version.alert_ids == ("a1", "a2") and version.train_rows == 3000
        out = write_report(store, "o'hara\\", tmp_path / "out" / "report.html")
        page = out.read_text()
        assert "kept &lt;champion&gt;" in page and "No windows closed" in page
    finally:
        store.close()


def test_the_cli_refuses_a_window_count_that_is_not_positive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from driftline.cli import main

    for bad in ("0", "-3", "many"):
        with pytest.raises(SystemExit) as exit_info:
            main(["report", "--model-id", "m", "--out", str(tmp_path / "r.html"), "--windows", bad])
        assert exit_info.value.code == 2
        assert f"--windows: must be a positive whole number, got '{bad}'" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


# --------------------------------------------------------------------------- end to end

WINDOW = 60.0


def report_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "driftline.cli", "report", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.e2e
def test_report_of_a_real_pipeline_run_renders_in_chromium(
    worker_factory: Any, producer: Producer, tmp_path: Path
) -> None:
    ref = simulate(
        n_windows=2,
        per_window=1000,
        n_numeric=4,
        seed=1,
        window_seconds=WINDOW,
        id_prefix="r",
        start=T0.timestamp() - 3600,
    )
    stream = simulate(
        n_windows=8,
        per_window=500,
        n_numeric=4,
        seed=2,
        window_seconds=WINDOW,
        mean_shift={"x2": (4, 0.75)},
        accuracy_change=(6, 0.6),
        label_fraction=0.7,
    )
    monitors = tmp_path / "monitors"
    monitors.mkdir()
    monitor = monitors / "credit.yaml"
    monitor.write_text(monitor_yaml(stream, window="1m", allowed_lateness="10s", extra=EXTRA))
    ref_path = write_jsonl(ref, tmp_path / "ref.jsonl")
    events = write_jsonl(stream, tmp_path / "events.jsonl", batch_size=250)

    worker = worker_factory(monitors_dir=str(monitors), monitor_interval_seconds="0.5")
    worker.reader.save_profile(reference_profile(monitor, ref_path)[1].to_json())
    topics = worker.settings.topics
    for line in events.read_bytes().splitlines():
        producer.produce(topics.predictions, line, key=b"credit")
    producer.produce(  # on the data's partition: it closes the last window at once
        topics.predictions,
        clock_event(float(stream.timestamps.max()) + 2 * WINDOW + 10),
        key=b"credit",
    )
    assert producer.flush(15) == 0
    wait_for(
        lambda: worker.scalar(
            "SELECT uniqExact(window_start) FROM window_metrics FINAL WHERE model_id = 'credit'"
        ),
        lambda n: int(n) == 8,
        45,
        "8 closed windows",
    )
    # labels that reach a window after it closed make a new revision: wait for the last one
    coverage = [round(float(part.mean()), 6) for part in np.split(stream.labelled, 8)]
    wait_for(
        lambda: [
            round(float(r["label_coverage"] or 0), 6)
            for r in worker.query(
                "SELECT label_coverage FROM window_metrics FINAL WHERE model_id = 'credit' "
                "AND metric = 'accuracy' ORDER BY window_start"
            )
        ],
        lambda got: got == coverage,
        30,
        f"label coverage {coverage}",
    )
    alerts = wait_for(
        lambda: worker.query("SELECT alert_id, kind FROM alerts FINAL WHERE model_id = 'credit'"),
        lambda rows: {"data_drift", "performance"} <= {r["kind"] for r in rows},
        30,
        "a drift alert and a performance alert",
    )
    # the retrainer's registry records a version through the owner's store pages
    owner = running_worker(worker.settings.data_dir)
    assert owner is not None
    shared = SharedStore(int(owner["web_port"]), str(owner["store_token"]), "driftline")
    decision = "promoted: 0.91 > 0.63 <b>"
    ModelRegistry(shared).record(
        version_record("credit", decision, tuple(r["alert_id"] for r in alerts))
    )

    data_dir = str(worker.settings.data_dir)
    out = tmp_path / "report.html"
    result = report_cli(
        worker.env,
        "--model-id",
        "credit",
        "--out",
        str(out),
        "--windows",
        "8",
        "--data-dir",
        data_dir,
    )
    assert result.returncode == 0, result.stderr
    assert "wrote the report of credit" in result.stdout
    page = out.read_text()
    tags = Tags(page)
    assert [s["data-plot"] for s in tags.named("svg") if s.get("class") == "plot"] == list(PLOTS)
    assert all(r["alert_id"] in page for r in alerts)
    assert "promoted: 0.91 &gt; 0.63 &lt;b&gt;" in page and "<b>" not in page
    assert re.findall(r'class="cell" data-status="critical"', page), "no critical drift cell"
    assert page.count('class="bar"') == 16  # coverage and volume of 8 windows
    assert "8 windows from 2026-01-01 00:00:00 to 2026-01-01 00:08:00 UTC" in page

    # an unknown model: exit code 2, naming it and the known ones
    unknown = report_cli(
        worker.env, "--model-id", "nope", "--out", str(tmp_path / "x.html"), "--data-dir", data_dir
    )
    assert unknown.returncode == 2
    assert "'nope'" in unknown.stderr and "'credit'" in unknown.stderr
    assert not (tmp_path / "x.html").exists()

    pixels = check_rendered(out, tmp_path, plots=4)
    assert has_colour(pixels, VOLUME_BAR) and has_colour(pixels, COVERAGE_BAR)

    # with the worker stopped the CLI opens the store itself: the same page
    worker.stop()
    again = tmp_path / "again.html"
    result = report_cli(
        worker.env,
        "--model-id",
        "credit",
        "--out",
        str(again),
        "--windows",
        "8",
        "--data-dir",
        data_dir,
    )
    assert result.returncode == 0, result.stderr

    def undated(text: str) -> str:
        return re.sub(r"Generated [^<]* UTC\.", "", text)

    assert undated(again.read_text()) == undated(page)
