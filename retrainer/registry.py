"""The model registry: the ``model_versions`` table, one row per version and state.

``model_versions`` is a ReplacingMergeTree on ``updated_at``: a status change is a
new row of the same ``(model_id, version)`` with a later ``updated_at``, and reads
use ``FINAL``. A model has at most one current champion: the newest row (by
``updated_at``) with status ``champion``; promoting a version demotes the former
champion to ``candidate`` (registered, not serving). A rollback marks the current
champion ``rolled_back`` and restores another version as champion.

A model has at most one **challenger** on its way to champion: the newest version whose
latest status is ``shadow`` (it scores the champion's requests and serves nothing) or
``canary`` (it serves ``traffic``, a share of the requests). Starting a rollout
replaces a running one (the former challenger is ``rejected``, "superseded");
aborting one rejects its challenger.

Version names that the retrainer creates are derived from the request
(:func:`version_for_request`), so a request retried after a crash can only ever
register the version it registered the first time.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
from driftline.schemas.events import ModelVersionEvent, VersionStatus
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ModelRegistry",
    "RegistryError",
    "Rollback",
    "VersionRecord",
    "version_for_request",
]


class RegistryError(ValueError):
    """An unknown model or version, or a status change that cannot be made."""


def version_for_request(request_id: str) -> str:
    """The version name a retrain request registers: the same for every retry.

    Examples
    --------
    >>> version_for_request("r1") == version_for_request("r1")
    True
    >>> version_for_request("r1")
    'r-...'
    """
    digest = hashlib.sha256(request_id.encode()).hexdigest()[:16]
    return f"r-{digest}"


def _now() -> float:
    return time.time()


class VersionRecord(BaseModel):
    """The latest state of one model version, as stored in ``model_versions``.

    Times are epoch seconds.

    Examples
    --------
    >>> record = VersionRecord(model_id="credit", version="v1", artifact_uri="file:///a/v1",
    ...     status="champion", created_at=1767225600.0, updated_at=1767225600.0)
    >>> record.to_event().status, record.to_event().version
    ('champion', 'v1')
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_id: str = Field(min_length=1)
    version: str = Field(min_length=1)
    parent_version: str | None = None
    artifact_uri: str = Field(min_length=1)
    metrics: dict[str, float] = {}
    status: VersionStatus
    request_id: str | None = None
    data_from: float | None = None
    data_to: float | None = None
    created_at: float
    updated_at: float
    alert_ids: tuple[str, ...] = ()
    decision: str = ""
    train_rows: int = 0
    holdout_rows: int = 0
    training_seconds: float = 0.0
    device: str = ""
    #: CPU seconds of the training run (all threads of the retrainer's process).
    cpu_seconds: float = 0.0
    #: Seconds the run held a GPU (its wall time on a CUDA device, else 0).
    gpu_seconds: float = 0.0
    #: Bytes of the labelled rows the retrain read (features, labels, times, ids).
    bytes_read: int = 0
    #: A ``canary``'s served share of the traffic (``shadow``: 0.0; other statuses: None).
    traffic: float | None = Field(default=None, ge=0.0, le=1.0)

    def to_event(self) -> ModelVersionEvent:
        """The ``model_version`` event announcing this state of the version."""
        return ModelVersionEvent(
            model_id=self.model_id,
            version=self.version,
            parent_version=self.parent_version,
            artifact_uri=self.artifact_uri,
            metrics=self.metrics,
            status=self.status,
            request_id=self.request_id,
            data_from=self.data_from,
            data_to=self.data_to,
            created_at=self.updated_at,
            traffic=self.traffic,
        )

    def with_status(self, status: VersionStatus, updated_at: float | None = None) -> VersionRecord:
        """The same version in another status, updated now (or at ``updated_at``); a
        traffic share is kept only by a ``canary`` (``shadow``: 0.0)."""
        when = _now() if updated_at is None else updated_at
        later = round(max(when, self.updated_at + 1e-6), 6)  # as stored: microseconds
        traffic = {"canary": self.traffic, "shadow": 0.0}.get(status)
        return self.model_copy(update={"status": status, "updated_at": later, "traffic": traffic})


class Rollback(BaseModel):
    """What a rollback changed: the version taken out and the one restored.

    Examples
    --------
    >>> old = VersionRecord(model_id="m", version="v2", artifact_uri="file:///v2",
    ...     status="rolled_back", created_at=2.0, updated_at=3.0)
    >>> new = old.model_copy(update={"version": "v1", "status": "champion"})
    >>> Rollback(rolled_back=old, restored=new).restored.version
    'v1'
    """

    model_config = ConfigDict(frozen=True)

    rolled_back: VersionRecord
    restored: VersionRecord


_COLUMNS = """model_id, version, parent_version, artifact_uri, metrics, status, request_id,
    toUnixTimestamp64Micro(data_from) / 1000000 AS data_from,
    toUnixTimestamp64Micro(data_to) / 1000000 AS data_to,
    toUnixTimestamp64Micro(created_at) / 1000000 AS created_at,
    toUnixTimestamp64Micro(updated_at) / 1000000 AS updated_at,
    alert_ids, decision, toFloat64(train_rows) AS train_rows,
    toFloat64(holdout_rows) AS holdout_rows, training_seconds, device, traffic,
    cpu_seconds, gpu_seconds, toFloat64(bytes_read) AS bytes_read"""

_TIME = pa.timestamp("us", tz="UTC")


def _micros(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1_000_000)


def _record(row: dict[str, Any]) -> VersionRecord:
    values = dict(row)
    values["train_rows"] = int(values["train_rows"])
    values["holdout_rows"] = int(values["holdout_rows"])
    values["bytes_read"] = int(values["bytes_read"])
    values["alert_ids"] = tuple(values["alert_ids"])
    return VersionRecord.model_validate(values)


class ModelRegistry:
    """Reads and writes model versions in a :class:`~driftline.store.backend.Store`.

    Parameters
    ----------
    store
        Any store (embedded, server, or a :class:`~driftline.store.remote.SharedStore`),
        migrated to at least migration 3. A read-only
        :class:`~driftline.store.remote.WorkerReader` serves the read methods.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from driftline.store import EmbeddedStore, migrate
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     store = EmbeddedStore(pathlib.Path(folder), "registry_doc")
    ...     _ = migrate(store)
    ...     registry = ModelRegistry(store)
    ...     registry.record(VersionRecord(model_id="m", version="v1",
    ...         artifact_uri="file:///v1", status="champion", created_at=1.0, updated_at=1.0))
    ...     champion = registry.champion("m")
    ...     store.close()
    >>> champion.version, champion.status
    ('v1', 'champion')
    """

    def __init__(self, store: Any) -> None:
        self.store = store

    # ------------------------------------------------------------------ reads

    def _select(self, where: str, order: str = "model_id, created_at, version") -> str:
        return f"SELECT {_COLUMNS} FROM model_versions FINAL WHERE {where} ORDER BY {order}"

    def versions(self, model_id: str | None = None) -> list[VersionRecord]:
        """Every version (latest state each), oldest first; of one model when given."""
        if model_id is None:
            rows = self.store.query(self._select("1"))
        else:
            rows = self._query(self._select("model_id = {model:String}"), {"model": model_id})
        return [_record(row) for row in rows]

    def _query(self, sql: str, parameters: dict[str, Any]) -> list[dict[str, Any]]:
        """Parameters when the store takes them; inlined literals for a worker's read page."""
        try:
            return list(self.store.query(sql, parameters))
        except Exception as error:
            if "takes no parameters" not in str(error):
                raise
        for name, value in parameters.items():
            literal = "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"
            sql = sql.replace(f"{{{name}:String}}", literal)
        return list(self.store.query(sql))

    def get(self, model_id: str, version: str) -> VersionRecord | None:
        """The latest state of one version, or ``None``."""
        rows = self._query(
            self._select("model_id = {model:String} AND version = {version:String}"),
            {"model": model_id, "version": version},
        )
        return _record(rows[0]) if rows else None

    def require(self, model_id: str, version: str) -> VersionRecord:
        """The latest state of one version; :class:`RegistryError` naming what is unknown."""
        found = self.get(model_id, version)
        if found is not None:
            return found
        known = [record.version for record in self.versions(model_id)]
        if not known:
            raise RegistryError(f"unknown model {model_id!r}: it has no registered version")
        raise RegistryError(
            f"model {model_id!r} has no version {version!r} (known: {', '.join(known)})"
        )

    def champion(self, model_id: str) -> VersionRecord | None:
        """The current champion: the newest version whose latest status is ``champion``."""
        rows = self._query(
            self._select(
                "model_id = {model:String} AND status = 'champion'",
                order="updated_at DESC, created_at DESC, version DESC",
            ),
            {"model": model_id},
        )
        return _record(rows[0]) if rows else None

    def challenger(self, model_id: str) -> VersionRecord | None:
        """The running rollout's challenger: the newest version in ``shadow`` or ``canary``."""
        rows = self._query(
            self._select(
                "model_id = {model:String} AND status IN ('shadow', 'canary')",
                order="updated_at DESC, created_at DESC, version DESC",
            ),
            {"model": model_id},
        )
        return _record(rows[0]) if rows else None

    def training_seconds_since(self, model_id: str, since: float) -> float:
        """Training seconds of the model's versions created at ``since`` (epoch seconds)
        or later: what ``retrain.max_training_seconds_per_day`` counts."""
        rows = self._query(
            "SELECT sum(training_seconds) AS seconds FROM model_versions FINAL "
            "WHERE model_id = {model:String} "
            "AND created_at >= fromUnixTimestamp64Micro(toInt64({since:String}), 'UTC')",
            {"model": model_id, "since": str(round(since * 1_000_000))},
        )
        return float(rows[0]["seconds"] or 0.0) if rows else 0.0

    def by_request(self, model_id: str, request_id: str) -> list[VersionRecord]:
        """Versions registered for one retrain request (at most one, by construction)."""
        return [
            _record(row)
            for row in self._query(
                self._select("model_id = {model:String} AND request_id = {request:String}"),
                {"model": model_id, "request": request_id},
            )
        ]

    # ------------------------------------------------------------------ writes

    def record(self, *records: VersionRecord) -> None:
        """Insert rows (a new version, or a new state of one)."""
        if not records:
            return
        self.store.insert_arrow("model_versions", _table(records))

    def demote_other_champions(self, keep: VersionRecord) -> list[VersionRecord]:
        """Make ``keep`` the only champion of its model: the others become ``candidate``."""
        others = [
            record.with_status("candidate")
            for record in self.versions(keep.model_id)
            if record.status == "champion" and record.version != keep.version
        ]
        self.record(*others)
        return others

    def start_rollout(
        self, model_id: str, version: str, mode: str, traffic: float = 0.0
    ) -> list[VersionRecord]:
        """Make ``version`` the challenger in ``mode`` (``shadow``, or ``canary`` serving
        ``traffic``); return the rows written (a superseded challenger's first).

        Raises
        ------
        RegistryError
            For an unknown version, the champion itself, or another mode.
        """
        if mode not in ("shadow", "canary"):
            raise RegistryError(f"a rollout runs in shadow or canary mode, not {mode!r}")
        record = self.require(model_id, version)
        if record.status == "champion":
            raise RegistryError(f"version {version!r} is the champion already")
        share = traffic if mode == "canary" else 0.0
        started = record.with_status(mode).model_copy(update={"traffic": share})
        superseded = self.supersede_challengers(model_id, keep=version)
        self.record(started)
        return [*superseded, started]

    def supersede_challengers(
        self, model_id: str, keep: str, after: VersionRecord | None = None
    ) -> list[VersionRecord]:
        """Reject every challenger of the model but ``keep`` ("superseded by ...", at
        ``after``'s update time when given); return the rows written."""
        running = [
            r
            for r in self.versions(model_id)
            if r.status in ("shadow", "canary") and r.version != keep
        ]
        when = None if after is None else after.updated_at
        rejected = [
            r.with_status("rejected", when).model_copy(update={"decision": f"superseded by {keep}"})
            for r in running
        ]
        self.record(*rejected)
        return rejected

    def abort_rollout(self, model_id: str, reason: str = "aborted") -> VersionRecord:
        """Reject the running challenger now (``reason`` goes into its decision).

        Raises
        ------
        RegistryError
            When the model has no rollout running.
        """
        challenger = self.challenger(model_id)
        if challenger is None:
            if not self.versions(model_id):
                raise RegistryError(f"unknown model {model_id!r}: it has no registered version")
            raise RegistryError(f"model {model_id!r} has no rollout running")
        rejected = challenger.with_status("rejected").model_copy(update={"decision": reason})
        self.record(rejected)
        return rejected

    def promote(self, model_id: str, version: str) -> VersionRecord:
        """Make ``version`` the champion (demoting the former one); return its new state."""
        record = self.require(model_id, version).with_status("champion")
        self.record(record)
        self.demote_other_champions(record)
        return record

    def rollback(self, model_id: str, to: str | None = None, decision: str = "") -> Rollback:
        """Take the current champion out and restore ``to`` (default: its parent version).

        ``decision`` (when given) says why, on the rolled back version's row.

        Raises
        ------
        RegistryError
            When the model is unknown, has no champion, the champion has no parent and
            no ``to`` is given, or ``to`` is the champion itself or unknown.
        """
        current = self.champion(model_id)
        if current is None:
            if not self.versions(model_id):
                raise RegistryError(f"unknown model {model_id!r}: it has no registered version")
            raise RegistryError(f"model {model_id!r} has no champion to roll back")
        target = to if to is not None else current.parent_version
        if target is None:
            raise RegistryError(
                f"champion {current.version!r} of model {model_id!r} has no parent version; "
                "name the version to restore with --to"
            )
        if target == current.version:
            raise RegistryError(f"version {target!r} is the champion already")
        restored = self.require(model_id, target).with_status("champion")
        rolled_back = current.with_status("rolled_back", restored.updated_at)
        if decision:
            rolled_back = rolled_back.model_copy(update={"decision": decision})
        self.record(rolled_back, restored)
        return Rollback(rolled_back=rolled_back, restored=restored)


def _table(records: Sequence[VersionRecord]) -> pa.Table:
    def column(name: str) -> list[Any]:
        return [getattr(record, name) for record in records]

    return pa.table(
        {
            "model_id": pa.array(column("model_id"), pa.string()),
            "version": pa.array(column("version"), pa.string()),
            "parent_version": pa.array(column("parent_version"), pa.string()),
            "artifact_uri": pa.array(column("artifact_uri"), pa.string()),
            "metrics": pa.array(
                [list(record.metrics.items()) for record in records],
                pa.map_(pa.string(), pa.float64()),
            ),
            "status": pa.array(column("status"), pa.string()),
            "request_id": pa.array(column("request_id"), pa.string()),
            "data_from": pa.array([_micros(r.data_from) for r in records], _TIME),
            "data_to": pa.array([_micros(r.data_to) for r in records], _TIME),
            "created_at": pa.array([_micros(r.created_at) for r in records], _TIME),
            "updated_at": pa.array([_micros(r.updated_at) for r in records], _TIME),
            "alert_ids": pa.array([list(r.alert_ids) for r in records], pa.list_(pa.string())),
            "decision": pa.array(column("decision"), pa.string()),
            "train_rows": pa.array(column("train_rows"), pa.uint64()),
            "holdout_rows": pa.array(column("holdout_rows"), pa.uint64()),
            "training_seconds": pa.array(column("training_seconds"), pa.float64()),
            "device": pa.array(column("device"), pa.string()),
            "traffic": pa.array(column("traffic"), pa.float64()),
            "cpu_seconds": pa.array(column("cpu_seconds"), pa.float64()),
            "gpu_seconds": pa.array(column("gpu_seconds"), pa.float64()),
            "bytes_read": pa.array(column("bytes_read"), pa.uint64()),
        }
    )
