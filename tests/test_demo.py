"""``driftline demo`` as a user runs it: the embedded stack, traffic, drift found, exit 0."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from driftline.demo import DemoPlan, synthetic_window

pytestmark = pytest.mark.e2e


def test_demo_runs_the_embedded_stack_and_finds_the_injected_drift(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "driftline.cli",
            "demo",
            "--duration",
            "5",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "stored      30000 predictions (sent 30000), 30000 labels" in out
    assert "'invalid_json': 1" in out and "'missing_field': 1" in out
    verdicts = dict(re.findall(r"window\s+(\d+): (.*)", out))
    plan = DemoPlan()
    for window, flags in verdicts.items():
        w = int(window)
        assert ("income critical" in flags) == (w >= plan.covariate_shift_from), (w, flags)
        assert ("accuracy critical" in flags) == (w >= plan.concept_change_from), (w, flags)
        assert "age" not in flags and "region" not in flags and "debt_ratio" not in flags
    assert out.rstrip().endswith("driftline demo: done")


def test_synthetic_traffic_is_seeded_and_shifts_where_the_plan_says() -> None:
    plan = DemoPlan(windows=10, events_per_window=4000)
    first = synthetic_window(plan, 0)
    again = synthetic_window(plan, 0)
    assert first["event_ids"] == again["event_ids"]
    assert (first["features"]["income"] == again["features"]["income"]).all()
    shifted = synthetic_window(plan, plan.covariate_shift_from)
    delta = shifted["features"]["income"].mean() - first["features"]["income"].mean()
    assert 0.5 * 15 < delta < 1.0 * 15
