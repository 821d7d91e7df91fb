"""Model cards from the store, and their files beside each version's artifact.

:func:`card_for` reads what a card needs (:mod:`driftline.cards`) with bounded queries
whose values enter hex-encoded (no text can change a query, and they need no query
parameters, which a running worker's read page does not take): the registry row, the
version's training profile, the alerts behind it, its live rollout decisions
(``rollout_windows``) and its latest windows (``window_metrics``, at most
:data:`LIVE_WINDOWS`). What is known only when the version is trained (the training run,
the label balance), and what the monitor config says when none is at hand, come from
the card it replaces.

:func:`refresh_card` writes ``card.json`` and ``card.md`` into the version's artifact
directory: the retrainer when it registers a version, and whoever changes its status
(the CLI, the streaming monitor's rollout decisions) afterwards. A directory outside
the artifact root, or one not on this machine, is left alone.

Examples
--------
>>> LIVE_WINDOWS
500
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote, urlparse

from .cards import (
    AlertSummary,
    ModelCard,
    RolloutDecisionSummary,
    TrainingRun,
    WindowStatus,
    build_card,
    card_markdown,
)
from .detectors.profiles import ModelProfile
from .store.params import hex_text

__all__ = [
    "CARD_JSON",
    "CARD_MD",
    "LIVE_WINDOWS",
    "card_directory",
    "card_for",
    "read_saved_card",
    "refresh_card",
]

log = logging.getLogger(__name__)

CARD_JSON: Final = "card.json"
#: The training profile the retrainer stores beside every version's artifact (a
#: version that never served has no profile in the store).
PROFILE_FILE: Final = "reference_profile.json"
CARD_MD: Final = "card.md"
#: The most recent windows a card lists.
LIVE_WINDOWS: Final = 500


def _rows(store: Any, sql: str) -> list[dict[str, Any]]:
    return list(store.query(sql))


def _alerts(store: Any, model_id: str, ids: tuple[str, ...]) -> list[AlertSummary]:
    if not ids:
        return []
    rows = _rows(
        store,
        "SELECT alert_id, kind, feature, statistic, value, threshold, severity, "
        "toUnixTimestamp64Micro(window_start) AS ws FROM alerts FINAL "
        f"WHERE model_id = {hex_text(model_id)} "
        f"AND alert_id IN ({', '.join(hex_text(i) for i in ids[:1000])}) "
        "ORDER BY window_start, alert_id LIMIT 1000",
    )
    return [
        AlertSummary(
            alert_id=r["alert_id"],
            kind=r["kind"],
            feature=r["feature"],
            statistic=r["statistic"],
            value=float(r["value"]),
            threshold=float(r["threshold"]),
            severity=r["severity"],
            window_start=int(r["ws"]) / 1e6,
        )
        for r in rows
    ]


def _rollout(store: Any, model_id: str, version: str) -> list[RolloutDecisionSummary]:
    rows = _rows(
        store,
        "SELECT toUnixTimestamp64Micro(window_start) AS ws, phase, decision, estimate, "
        "lower, upper, n, reason FROM rollout_windows FINAL "
        f"WHERE model_id = {hex_text(model_id)} AND challenger = {hex_text(version)} "
        "AND decision != '' ORDER BY window_start LIMIT 1000",
    )
    return [
        RolloutDecisionSummary(
            window_start=int(r["ws"]) / 1e6,
            phase=r["phase"],
            decision=r["decision"],
            estimate=float(r["estimate"]),
            lower=float(r["lower"]),
            upper=float(r["upper"]),
            n=int(r["n"]),
            reason=r["reason"],
        )
        for r in rows
    ]


def _live(store: Any, model_id: str, version: str) -> list[WindowStatus]:
    """The version's latest windows, oldest first: its primary performance metric and
    how many features drifted."""
    where = f"model_id = {hex_text(model_id)} AND model_version = {hex_text(version)}"
    performance = _rows(
        store,
        f"SELECT toUnixTimestamp64Micro(window_start) AS ws, metric, value, status "
        f"FROM window_metrics FINAL WHERE {where} AND kind = 'performance' AND primary "
        "AND segment = '' "
        f"ORDER BY window_start DESC LIMIT {int(LIVE_WINDOWS)}",
    )
    drift = _rows(
        store,
        f"SELECT toUnixTimestamp64Micro(window_start) AS ws, max(n) AS n, "
        "countIf(status IN ('warning', 'critical')) AS drifted, "
        "max(status = 'critical') AS critical, max(status = 'warning') AS warning "
        f"FROM window_metrics FINAL WHERE {where} AND kind = 'data_drift' AND segment = '' "
        f"GROUP BY window_start ORDER BY window_start DESC LIMIT {int(LIVE_WINDOWS)}",
    )
    by_start: dict[int, dict[str, Any]] = {}
    for row in drift:
        status = "critical" if row["critical"] else "warning" if row["warning"] else "ok"
        by_start[int(row["ws"])] = {
            "events": int(row["n"]),
            "drifted_features": int(row["drifted"]),
            "drift_status": status,
        }
    for row in performance:
        entry = by_start.setdefault(int(row["ws"]), {})
        entry.update(metric=row["metric"], value=row["value"], performance_status=row["status"])
    starts = sorted(by_start)[-LIVE_WINDOWS:]
    return [WindowStatus(window_start=s / 1e6, **by_start[s]) for s in starts]


def card_directory(artifact_uri: str, artifacts_root: Path | None) -> Path | None:
    """The local directory of a ``file://`` artifact URI under ``artifacts_root``, or
    ``None`` (another scheme, outside the root, or not on this machine)."""
    parsed = urlparse(artifact_uri)
    if parsed.scheme != "file" or artifacts_root is None:
        return None
    path = Path(unquote(parsed.path)).resolve()
    root = Path(artifacts_root).expanduser().resolve()
    if not path.is_dir() or not path.is_relative_to(root):
        return None
    return path


def read_saved_card(directory: Path | None) -> ModelCard | None:
    """The card saved in ``directory``, or ``None`` (none there, or unreadable)."""
    if directory is None or not (directory / CARD_JSON).is_file():
        return None
    try:
        return ModelCard.model_validate_json((directory / CARD_JSON).read_bytes())
    except ValueError:
        log.warning("ignoring an unreadable %s in %s", CARD_JSON, directory)
        return None


def card_for(
    store: Any,
    record: Any,
    *,
    monitor: Any = None,
    artifacts_root: Path | None = None,
    training: TrainingRun | None = None,
    label_balance: Mapping[str, float] | None = None,
    now: float | None = None,
) -> ModelCard:
    """The card of a registry ``record`` from the store (module docstring)."""
    stored = _rows(
        store,
        "SELECT profile FROM reference_profiles FINAL "
        f"WHERE model_id = {hex_text(record.model_id)} "
        f"AND model_version = {hex_text(record.version)} "
        "ORDER BY created_at DESC LIMIT 1",
    )
    profile = ModelProfile.from_json(stored[0]["profile"]) if stored else None
    directory = card_directory(record.artifact_uri, artifacts_root)
    if profile is None and directory is not None and (directory / PROFILE_FILE).is_file():
        profile = ModelProfile.from_json((directory / PROFILE_FILE).read_bytes())  # rejected
    saved = read_saved_card(directory)
    if saved is not None:
        training = training or saved.training
        if label_balance is None and saved.training_data.label_balance:
            label_balance = saved.training_data.label_balance
    card = build_card(
        record,
        monitor=monitor,
        profile=profile,
        training=training,
        label_balance=label_balance,
        alerts=_alerts(store, record.model_id, tuple(record.alert_ids)),
        rollout=_rollout(store, record.model_id, record.version),
        live=_live(store, record.model_id, record.version),
        generated_at=time.time() if now is None else now,
    )
    if monitor is None and saved is not None:  # what the monitor config said, as saved
        said = ("owner", "intended_use", "limitations", "task", "metric")
        card = card.model_copy(update={name: getattr(saved, name) for name in said})
    return card


def refresh_card(
    store: Any,
    record: Any,
    artifacts_root: Path | None,
    *,
    monitor: Any = None,
    training: TrainingRun | None = None,
    label_balance: Mapping[str, float] | None = None,
) -> ModelCard | None:
    """Write the version's ``card.json`` and ``card.md`` beside its artifact; the card,
    or ``None`` when the directory is not this machine's to write (module docstring)."""
    directory = card_directory(record.artifact_uri, artifacts_root)
    if directory is None:
        return None
    card = card_for(
        store,
        record,
        monitor=monitor,
        artifacts_root=artifacts_root,
        training=training,
        label_balance=label_balance,
    )
    for name, text in (
        (CARD_JSON, json.dumps(card.model_dump(mode="json"), indent=2, sort_keys=True)),
        (CARD_MD, card_markdown(card)),
    ):
        staging = directory / f".{name}.tmp"
        staging.write_text(text + ("" if text.endswith("\n") else "\n"), encoding="utf-8")
        staging.replace(directory / name)
    return card
