"""``driftline reference load``: the backtest's reference profile, stored for the monitor."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from backtest_streams import monitor_yaml, simulate, write_jsonl

from driftline.backtest import reference_profile
from driftline.store import EmbeddedStore
from driftline.store.profiles import load_profile


def driftline(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "driftline.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def reference_files(tmp_path: Path) -> tuple[Path, Path]:
    stream = simulate(
        n_windows=2, per_window=500, n_numeric=3, categorical={"region": {"eu": 0.5, "us": 0.5}}
    )
    monitor = tmp_path / "monitor.yaml"
    monitor.write_text(monitor_yaml(stream))
    return monitor, write_jsonl(stream, tmp_path / "ref.jsonl")


def test_reference_load_stores_the_profile_a_backtest_uses(
    tmp_path: Path, reference_files: tuple[Path, Path]
) -> None:
    monitor, ref = reference_files
    data = tmp_path / "data"
    result = driftline(
        "reference", "load", "--monitor", str(monitor), "--file", str(ref), "--data-dir", str(data)
    )
    assert result.returncode == 0, result.stderr
    assert "stored the reference profile of credit v1 (4 features)" in result.stdout
    store = EmbeddedStore(data / "chdb", "driftline")
    try:
        stored = load_profile(store, "credit", "v1")
        assert load_profile(store, "credit") == stored  # newest of the model
        assert load_profile(store, "other") is None
    finally:
        store.close()
    config, expected = reference_profile(monitor, ref)
    assert stored == expected
    # the learned thresholds, before any window closed: at the reference's 500 labels
    # per window, the levels the monitor will judge accuracy by
    from driftline.detectors import alert_level, performance_drops

    assert "performance thresholds, learned from the reference (threshold: auto):" in (
        result.stdout
    )
    accuracy = expected.reference_performance.metrics["accuracy"].value  # type: ignore[union-attr]
    warning, critical = performance_drops(expected, config, "accuracy", 500)
    assert (
        f"  accuracy: reference {accuracy:.4f} (n 1000), no spread learned (2 windows); at 500 "
        f"labels per window warning below {alert_level('accuracy', accuracy, warning):.4f}, "
        f"critical below {alert_level('accuracy', accuracy, critical):.4f}"
    ) in result.stdout.splitlines()
    assert 0.03 < warning < critical < 0.2


def test_reference_load_goes_through_a_running_worker(
    worker_factory, reference_files: tuple[Path, Path]
) -> None:
    monitor, ref = reference_files
    worker = worker_factory()
    result = driftline(
        "reference",
        "load",
        "--monitor",
        str(monitor),
        "--file",
        str(ref),
        "--data-dir",
        str(worker.settings.data_dir),
    )
    assert result.returncode == 0, result.stderr
    rows = worker.query("SELECT model_id, model_version FROM reference_profiles FINAL")
    assert rows == [{"model_id": "credit", "model_version": "v1"}]


def test_a_bad_reference_line_is_named_with_exit_2(
    tmp_path: Path, reference_files: tuple[Path, Path]
) -> None:
    monitor, ref = reference_files
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(ref.read_bytes() + b'{"type": "prediction"}\n')
    result = driftline(
        "reference",
        "load",
        "--monitor",
        str(monitor),
        "--file",
        str(bad),
        "--data-dir",
        str(tmp_path / "data"),
    )
    assert result.returncode == 2
    assert f"{bad}:" in result.stderr and "missing_field" in result.stderr
