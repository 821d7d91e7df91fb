"""Model cards: written beside every version's artifact when the retrainer registers it,
rewritten when its status changes, and printed by ``driftline models card``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from driftline.detectors.policy import Alert
from driftline.retrainer import ArtifactStore
from driftline.retrainer.registry import ModelRegistry
from driftline.retrainer.training import train_model
from driftline.retrainer.worker import Retrainer
from driftline.schemas.monitor import MonitorConfig
from test_registry import FAST_OPTIONS, START, _period, _request

from driftline.card_data import CARD_JSON, CARD_MD, refresh_card
from driftline.cards import ModelCard
from driftline.store import EmbeddedStore, migrate
from driftline.store.monitoring import alert_table

MONITOR = {
    "model_id": "credit",
    "features": {"x0": "numeric", "x1": "numeric", "region": "categorical"},
    "training": {"min_rows": 100, "holdout_fraction": 0.25},
    "card": {
        "owner": "credit risk team",
        "intended_use": "pre-screening of loan applications",
        "limitations": ["not validated for business loans"],
    },
}


@pytest.fixture
def registered(tmp_path: Path) -> Iterator[tuple[EmbeddedStore, Path, str]]:
    """v1 registered from old rows; a retrain on drifted rows registers the champion."""
    store = EmbeddedStore(tmp_path / "data" / "chdb", "driftline")
    migrate(store)
    monitor = MonitorConfig.from_mapping(MONITOR)
    before = _period(store, 0, 600, drifted=False)
    _period(store, 600, 600, drifted=True)
    trigger = Alert(
        alert_id="alert-1",
        model_id="credit",
        model_version="v1",
        kind="performance",
        feature=None,
        window_start=START + 600,
        window_end=START + 1200,
        statistic="accuracy",
        value=0.51,
        threshold=0.03,
        p_value=1e-9,
        severity="critical",
        opened_at=START + 1260,
    )
    store.insert_arrow("alerts", alert_table([trigger.to_event()]))
    root = tmp_path / "data" / "artifacts"
    retrainer = Retrainer(
        store, {"credit": monitor}, ArtifactStore(root), lambda event: None, options=FAST_OPTIONS
    )
    first, _ = train_model(before, monitor, FAST_OPTIONS)
    retrainer.register_initial(first, monitor, "v1", before, seconds=1.5, device="cpu")
    outcome = retrainer.handle(_request("req-1", 600, 600))
    assert outcome.record is not None and outcome.record.status == "champion"
    yield store, root, outcome.record.version
    store.close()


def _saved(root: Path, version: str) -> ModelCard:
    text = (root / "credit" / version / CARD_JSON).read_text()
    return ModelCard.model_validate(json.loads(text))


def test_the_retrainer_writes_a_card_beside_each_version(
    registered: tuple[EmbeddedStore, Path, str],
) -> None:
    _store, root, version = registered
    card = _saved(root, version)
    assert (card.model_id, card.version, card.status, card.parent_version) == (
        "credit",
        version,
        "champion",
        "v1",
    )
    # intended use, owner and limitations from the monitor's card section
    assert card.owner == "credit risk team"
    assert card.intended_use == "pre-screening of loan applications"
    assert card.limitations == ("not validated for business loans",)
    # training data: range, rows, label balance, a summary of each feature
    data = card.training_data
    assert (data.data_from, data.data_to) == (START + 600, START + 1200)
    assert (data.train_rows, data.holdout_rows) == (450, 150)
    assert sum(data.label_balance.values()) == 600 and set(data.label_balance) == {"0", "1"}
    assert [f.name for f in data.features] == ["region", "x0", "x1"]
    x0 = next(f for f in data.features if f.name == "x0")
    assert -0.3 < x0.numbers["mean"] < 0.3 and 0.7 < x0.numbers["std"] < 1.3  # type: ignore[operator]
    region = next(f for f in data.features if f.name == "region")
    assert set(region.top_categories) == {"north", "south"}
    # how it was trained
    run = card.training
    assert run.trainer == "built-in MLP" and run.options["hidden_layers"] == [16]
    assert run.seed == 0 and run.driftline_version and run.device and run.seconds > 0
    assert run.epochs_run is not None and run.epochs_run >= 1
    # holdout metrics next to the champion's, the decision, the alert behind it, the cost
    assert card.holdout["candidate.accuracy"] > card.holdout["champion.accuracy"]
    assert card.decision.startswith("promote: candidate accuracy")
    assert [(a.alert_id, a.kind, a.statistic) for a in card.triggered_by] == [
        ("alert-1", "performance", "accuracy")
    ]
    assert card.cost.rows == 600 and card.cost.cpu_seconds > 0 and card.cost.bytes_read > 0
    assert card.live == ()  # it has served no window yet
    markdown = (root / "credit" / version / CARD_MD).read_text()
    assert markdown.startswith(f"# Model card: credit {version}")
    assert "## What triggered it" in markdown and "alert-1" in markdown
    # v1, registered directly: a card too; demoted by the new champion, it says so
    first = _saved(root, "v1")
    assert first.status == "candidate" and first.training.seconds == 1.5
    assert first.triggered_by == () and sum(first.training_data.label_balance.values()) == 600


def test_a_status_change_rewrites_the_card_and_keeps_what_training_knew(
    registered: tuple[EmbeddedStore, Path, str],
) -> None:
    store, root, version = registered
    before = _saved(root, version)
    registry = ModelRegistry(store)
    rollback = registry.rollback("credit", decision="worse live")
    assert rollback.rolled_back.version == version
    for record in (rollback.rolled_back, rollback.restored):
        assert refresh_card(store, record, root) is not None
    after = _saved(root, version)
    assert after.status == "rolled_back" and _saved(root, "v1").status == "champion"
    assert after.training == before.training  # known only when it trained
    assert after.training_data.label_balance == before.training_data.label_balance
    # a directory outside the artifact root is not written
    assert refresh_card(store, rollback.restored, root / "elsewhere") is None


def _driftline(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "driftline.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_models_card_prints_a_card_and_a_diff(
    registered: tuple[EmbeddedStore, Path, str], tmp_path: Path
) -> None:
    store, _root, version = registered
    store.close()  # the CLI opens the store itself
    data = ["--data-dir", str(tmp_path / "data")]
    shown = _driftline("models", "card", "--model-id", "credit", "--format", "json", *data)
    assert shown.returncode == 0, shown.stderr
    card = ModelCard.model_validate_json(shown.stdout)
    assert card.version == version and card.status == "champion"  # the champion by default
    assert card.training.trainer == "built-in MLP"  # read from the saved card
    assert card.owner == "credit risk team"  # no monitors folder here: as the card saved it
    page = _driftline(
        "models", "card", "--model-id", "credit", "--version", "v1", "--format", "html", *data
    )
    assert page.returncode == 0 and page.stdout.startswith("<!doctype html>")
    assert "Model card: credit v1" in page.stdout
    diff = _driftline("models", "card", "--model-id", "credit", "--diff", "v1", version, *data)
    assert diff.returncode == 0, diff.stderr
    lines = diff.stdout.splitlines()
    assert lines[0] == f"# credit: v1 vs {version}"
    assert "| status * | candidate | champion |" in lines
    assert any(line.startswith("| rows trained on * |") for line in lines)
    unknown = _driftline("models", "card", "--model-id", "credit", "--version", "v9", *data)
    assert unknown.returncode == 2 and "has no version 'v9'" in unknown.stderr
