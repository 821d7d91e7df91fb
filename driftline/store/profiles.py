"""Reference profiles in the store: one per model version, the newest wins."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from ..detectors.profiles import ModelProfile
from .backend import Store

__all__ = ["load_profile", "save_profile", "version_profiles"]


def save_profile(store: Store, profile: ModelProfile) -> None:
    """Store ``profile`` for its model version (replacing an older one of that version)."""
    store.insert_arrow(
        "reference_profiles",
        pa.table(
            {
                "model_id": pa.array([profile.model_id], pa.string()),
                "model_version": pa.array([profile.model_version], pa.string()),
                "profile": pa.array([profile.to_json()], pa.string()),
                "created_at": pa.array(
                    [int(time.time() * 1_000_000)], pa.timestamp("us", tz="UTC")
                ),
            }
        ),
    )


def load_profile(
    store: Store, model_id: str, model_version: str | None = None
) -> ModelProfile | None:
    """The profile of ``model_version``, or the newest of the model when no version is
    given or that version has none; ``None`` when the model has no profile at all."""
    rows = store.query(
        "SELECT model_version, profile FROM reference_profiles FINAL "
        "WHERE model_id = {model:String} ORDER BY created_at DESC",
        {"model": model_id},
    )
    if not rows:
        return None
    chosen = next((row for row in rows if row["model_version"] == model_version), rows[0])
    return ModelProfile.from_json(chosen["profile"])


def version_profiles(
    store: Store, model_id: str, versions: Sequence[str]
) -> dict[str, ModelProfile]:
    """Each version's profile (its own, else the model's newest), in one query; empty
    when the model has no profile (as :func:`load_profile` takes them)."""
    rows = store.query(
        "SELECT model_version, profile FROM reference_profiles FINAL "
        "WHERE model_id = {model:String} ORDER BY created_at DESC",
        {"model": model_id},
    )
    if not rows:
        return {}
    own: dict[str, dict[str, Any]] = {}
    for row in rows:  # the first of each version, as load_profile's next() takes it
        own.setdefault(str(row["model_version"]), row)
    parsed: dict[int, ModelProfile] = {}
    found = {}
    for version in versions:
        chosen = own.get(version, rows[0])
        key = id(chosen)
        if key not in parsed:
            parsed[key] = ModelProfile.from_json(chosen["profile"])
        found[version] = parsed[key]
    return found
