"""Generated traffic of a model whose challenger runs in shadow, as a canary, or serves.

Each window's requests are served by the champion, the challenger, or split between
them (``canary``, by a stable hash of the event id); in ``shadow`` the challenger also
scores every request the champion serves, and in ``watch`` the old champion scores in
shadow what the challenger serves. A version's prediction is right with its own
probability, independently of the other's, so the true difference of accuracies is
known.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

START = 1_767_225_600.0
WINDOW = 3600.0

Phase = Literal["shadow", "canary", "serves", "watch"]


@dataclass(frozen=True)
class Step:
    """One window's deployment: the phase and, for ``canary``, the challenger's share."""

    phase: Phase
    share: float = 0.0


def _share(event_id: str) -> float:
    digest = hashlib.sha256(event_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def rollout_events(
    plan: list[Step],
    *,
    accuracy: dict[str, float],
    per_window: int = 1000,
    seed: int = 0,
    champion: str = "v1",
    challenger: str = "v2",
    model_id: str = "m",
    start: float = START,
    latency_ms: dict[str, float] | None = None,
    label_delay: float = 60.0,
    prefix: str = "e",
    regression: bool = False,
    scores: bool = False,
) -> list[dict[str, Any]]:
    """Prediction and feedback events (dicts, single events) of ``plan``'s windows.

    With ``regression``, labels are standard normal and ``accuracy[v]`` is the standard
    deviation of version ``v``'s error instead; with ``scores``, each class prediction
    carries a positive-class probability on its side of 0.5 (drawn apart, so that the
    other fields are those without it)."""
    rng = np.random.default_rng(seed)
    confidence = np.random.default_rng(seed + 10_000)
    events: list[dict[str, Any]] = []
    for w, step in enumerate(plan):
        times = start + w * WINDOW + np.sort(rng.uniform(0, WINDOW - 1.0, per_window))
        x = rng.normal(size=per_window)
        y = rng.integers(0, 2, per_window)
        said: dict[str, Any] = {
            v: np.where(rng.random(per_window) < accuracy[v], y, 1 - y)
            for v in (champion, challenger)
        }
        if regression:
            y = rng.normal(size=per_window).round(4)
            said = {v: (y + rng.normal(0, accuracy[v], per_window)).round(4) for v in said}
        slow = {
            v: rng.lognormal(np.log((latency_ms or {}).get(v, 10.0)), 0.2, per_window)
            for v in (champion, challenger)
        }
        for i in range(per_window):
            event_id = f"{prefix}{w:03d}-{i:05d}"
            if step.phase == "canary":
                served = challenger if _share(event_id) < step.share else champion
            else:
                served = challenger if step.phase in ("serves", "watch") else champion
            shadow = {"shadow": challenger, "watch": champion}.get(step.phase)
            versions = [(served, False)] + ([(shadow, True)] if shadow else [])
            for version, is_shadow in versions:
                event: dict[str, Any] = {
                    "type": "prediction",
                    "event_id": event_id,
                    "model_id": model_id,
                    "model_version": version,
                    "timestamp": float(times[i]),
                    "features": {"x": float(x[i])},
                    "prediction": float(said[version][i]) if regression else int(said[version][i]),
                    "latency_ms": float(slow[version][i]),
                }
                if scores and not regression:
                    sure = 0.5 * confidence.uniform(0.0, 1.0)
                    event["score"] = 0.5 + sure if said[version][i] == 1 else 0.5 - sure
                if is_shadow:
                    event["shadow"] = True
                events.append(event)
            events.append(
                {
                    "type": "feedback",
                    "event_id": event_id,
                    "model_id": model_id,
                    "timestamp": float(times[i]) + label_delay,
                    "label": float(y[i]) if regression else int(y[i]),
                }
            )
    return events


def rollback_events() -> list[dict[str, Any]]:
    """A better challenger in shadow, then a 50% canary (promoted), that turns out worse
    than its parent in the two windows of the watch that follow (rolled back)."""
    good = rollout_events(
        [Step("shadow"), Step("canary", 0.5)], accuracy={"v1": 0.80, "v2": 0.92}, per_window=2000
    )
    worse = rollout_events(
        [Step("watch")] * 2,
        accuracy={"v1": 0.85, "v2": 0.70},
        start=START + 2 * WINDOW,
        seed=1,
        prefix="f",
    )
    return good + worse


def reference_events(
    *,
    per_window: int = 2000,
    seed: int = 99,
    champion: str = "v1",
    model_id: str = "m",
    regression: bool = False,
) -> list[dict[str, Any]]:
    """One window of the champion serving alone, the hour before :data:`START`."""
    return rollout_events(
        [Step("serves")],
        regression=regression,
        accuracy={champion: 0.5 if regression else 0.85, "unused": 0.5},
        per_window=per_window,
        seed=seed,
        champion="unused",
        challenger=champion,
        model_id=model_id,
        start=START - WINDOW,
        prefix="r",
    )


def monitor_yaml(rollout: str, model_id: str = "m", task: str = "binary_classification") -> str:
    """A monitor config of the generated model with ``rollout`` (YAML flow mapping)."""
    return (
        f"model_id: {model_id}\ntask: {task}\nfeatures: {{x: numeric}}\n"
        f"window: 1h\nallowed_lateness: 10m\nrollout: {rollout}\n"
    )
