"""``driftline demo`` as a user runs it: the whole loop on the embedded stack, exit 0."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from driftline.schemas.monitor import MonitorConfig

from driftline.demo import DemoPlan, monitor_text, synthetic_window
from driftline.lifeline import die_with_parent

pytestmark = pytest.mark.e2e


def _driftline(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "driftline.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=die_with_parent(),  # the demo (and its processes) never outlive the run
    )


@pytest.mark.timeout(460)  # the demo's own limit below is 400 s
def test_demo_closes_the_loop_from_drift_to_a_served_retrained_champion(tmp_path: Path) -> None:
    result = _driftline("demo", "--duration", "40", "--data-dir", str(tmp_path), timeout=400)
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-3000:]
    plan = DemoPlan()
    sent = plan.windows * plan.events_per_window
    assert f"{sent} predictions stored (sent {sent}), {sent} labels" in out
    assert "'invalid_json': 1" in out and "'missing_field': 1" in out

    alerts = re.findall(r"ALERT\s+(\w+)\s+(\w+)\s+(\S+)\s+window (\d+) .*\[(\S+)\]", out)
    drift = {(f, int(w)) for s, k, f, w, v in alerts if k == "data_drift" and s == "critical"}
    assert ("income", plan.covariate_shift_from) in drift
    assert all(f == "income" and w >= plan.covariate_shift_from for f, w in drift), drift
    performance = [int(w) for s, k, f, w, v in alerts if k == "performance" and s == "critical"]
    assert plan.concept_change_from in performance
    assert min(performance) >= plan.concept_change_from  # nothing before the labels flip

    champions = re.findall(r"VERSION (r-[0-9a-f]+) champion", out)
    assert len(champions) == 1, out[-4000:]
    # Safe rollout: the wrong-rule challenger is rejected in shadow on the labels while v1
    # serves; the retrained one goes shadow -> canary -> champion on live evidence.
    assert re.search(
        r"rollout\s+v1-wrong-rule rejected: rollout reject \(shadow -> 0\).*worse", out
    )
    steps = re.findall(rf"VERSION {champions[0]} (shadow|canary|champion)", out)
    assert steps == ["shadow", "canary", "champion"], steps
    assert re.search(rf"rollout\s+{champions[0]} champion: rollout promote \(canary -> 1\)", out)
    swap = re.search(r"swap\s+serving (r-[0-9a-f]+) from window (\d+)", out)
    assert swap is not None and swap.group(1) == champions[0]
    assert int(swap.group(2)) > plan.concept_change_from
    served = dict(
        re.findall(
            r"served\s+(v1 after the labels flipped|retrained champion): "
            r"accuracy ([0-9.]+)",
            out,
        )
    )
    assert (
        float(served["retrained champion"])
        > 0.75
        > 0.35
        > float(served["v1 after the labels flipped"])
    )
    report = tmp_path / "report.html"
    assert report.is_file() and "<svg" in report.read_text()
    assert out.rstrip().endswith("driftline demo: done")

    listed = _driftline("models", "list", "--json", "--data-dir", str(tmp_path))
    assert listed.returncode == 0, listed.stderr
    versions = {v["version"]: v for v in map(json.loads, listed.stdout.splitlines())}
    assert versions["v1"]["status"] != "champion"
    new = versions[champions[0]]
    assert new["status"] == "champion" and new["parent_version"] == "v1"
    assert (
        new["request_id"]
        and new["metrics"]["candidate.accuracy"] > new["metrics"]["champion.accuracy"]
    )

    # every version has a model card beside its artifact, saying what the registry says
    from driftline.cards import ModelCard

    for name, version in versions.items():
        path = tmp_path / "artifacts" / "credit" / name / "card.json"
        card = ModelCard.model_validate_json(path.read_bytes())
        assert (card.version, card.status) == (name, version["status"]), name
        assert card.owner == "driftline demo" and card.limitations
        assert card.intended_use and card.task == "binary_classification"
        assert card.training_data.train_rows > 0 and card.training_data.features
        assert card.training_data.label_balance and card.training.device
        assert card.cost.rows > 0
    retrained = ModelCard.model_validate_json(
        (tmp_path / "artifacts" / "credit" / champions[0] / "card.json").read_bytes()
    )
    assert retrained.training.trainer == "built-in MLP" and retrained.training.driftline_version
    assert retrained.holdout["candidate.accuracy"] > retrained.holdout["champion.accuracy"]
    assert retrained.triggered_by and {a.kind for a in retrained.triggered_by} <= {
        "performance",
        "data_drift",
    }
    assert [r.decision for r in retrained.rollout][-1] == "promote"
    assert retrained.cost.cpu_seconds > 0 and retrained.cost.bytes_read > 0
    served = ModelCard.model_validate_json(
        (tmp_path / "artifacts" / "credit" / "v1" / "card.json").read_bytes()
    )
    assert served.live and any(w.performance_status == "critical" for w in served.live)


def test_synthetic_traffic_is_seeded_and_drifts_where_the_plan_says() -> None:
    plan = DemoPlan(windows=12, events_per_window=4000)
    first = synthetic_window(plan, 0)
    again = synthetic_window(plan, 0)
    assert first["event_ids"] == again["event_ids"]
    assert (first["features"]["income"] == again["features"]["income"]).all()
    shifted = synthetic_window(plan, plan.covariate_shift_from)
    delta = shifted["features"]["income"].mean() - first["features"]["income"].mean()
    assert 0.5 * 15 < delta < 1.0 * 15
    before = synthetic_window(plan, plan.concept_change_from - 1)
    after = synthetic_window(plan, plan.concept_change_from)
    assert (before["labels"] == before["predictions"]).mean() > 0.75
    assert (after["labels"] == after["predictions"]).mean() < 0.25


def test_the_demo_monitor_config_is_valid_and_retrains_on_critical_alerts() -> None:
    config = MonitorConfig.from_yaml(monitor_text(DemoPlan()))
    assert config.retrain.severity == "critical"
    assert set(config.retrain.on) == {"performance", "data_drift"}
    assert config.training.min_rows <= DemoPlan().events_per_window
