"""The retrainer: turn a ``retrain_request`` into a registered, published model version.

:class:`Retrainer` is the in-process API (``driftline demo`` runs it directly):
:meth:`Retrainer.handle` reads the labelled rows of the request's data window
(predictions joined with their feedback, in SQL), splits them by time, trains a
candidate, scores it and the current champion on the same holdout (the newest
rows), saves the artifact (with a reference profile of its training data),
records the version in ``model_versions`` (and the profile in
``reference_profiles`` when it becomes champion; a later manual promotion copies it
from the artifact) and publishes the ``model_version`` event. :func:`run_retrainer`
is the ``driftline retrainer`` shell around it: a confluent-kafka consumer of
``<prefix>.retrain-requests`` that commits a request's offset only after it is handled.

Idempotency: the version name is derived from the request id
(:func:`~driftline.retrainer.registry.version_for_request`) and the
``model_versions`` row is the commit point. A request whose row exists is not
trained again: its event is re-published (a crash may have come between the row
and the event) and its offset committed. A crash before the row retrains from
scratch into the same version name, replacing the artifact the crashed attempt
may have left, so a request yields one version at most, whose stored weights are
the ones its row's metrics describe.

A request that cannot train (no monitor config for the model, fewer labelled rows
than ``training.min_rows``, one class only, a user's training function that fails)
records nothing: the reason is logged and the request is committed, so it does not
block the queue. So is a refused request: a message that is not a valid
``retrain_request``, or one whose data range is empty or longer than
``DRIFTLINE_RETRAIN_MAX_DATA_SECONDS``; refusals are also counted by reason in
``driftline_retrain_requests_refused_total``. Other failures (the store, Kafka) are
retried.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from driftline.detectors.profiles import ModelProfile
from driftline.schemas.events import ModelVersionEvent, RetrainRequestEvent
from driftline.schemas.monitor import MonitorConfig
from driftline.schemas.monitor import load_monitors as load_monitor_configs
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from driftline.card_data import PROFILE_FILE
from driftline.metrics import RetrainerMetrics, start_metrics_server
from driftline.settings import Settings
from driftline.store.access import writing_store
from driftline.store.backend import Store, StoreError
from driftline.store.profiles import save_profile

from .cards import label_balance, training_run
from .dataset import LabelledDataset
from .profiling import training_profile
from .registry import ModelRegistry, VersionRecord, version_for_request

__all__ = [
    "PROFILE_FILE",
    "STATUS_FILE",
    "KafkaPublisher",
    "RetrainOutcome",
    "Retrainer",
    "load_monitors",
    "publish_version_profile",
    "read_labelled_rows",
    "refusal_reason",
    "resolve_bootstrap",
    "run_retrainer",
    "training_profile",
]

log = logging.getLogger(__name__)

#: The retrainer's state file in the data directory (``{"state": "idle"|"training", ...}``).
STATUS_FILE = "retrainer.json"

#: Publishes a model_version event and returns once Kafka acknowledged it.
Publish = Callable[[ModelVersionEvent], None]

#: The longest data range a request may ask for unless told otherwise (the default of
#: ``DRIFTLINE_RETRAIN_MAX_DATA_SECONDS``: 30 days).
DEFAULT_MAX_DATA_SECONDS: float = float(Settings.model_fields["retrain_max_data_seconds"].default)

_LABELLED_ROWS = """
SELECT p.event_id AS event_id,
       toUnixTimestamp64Micro(p.timestamp) / 1000000 AS timestamp,
       p.features_num AS features_num, p.features_cat AS features_cat,
       p.segment AS segment, f.label_value AS label_value, f.label_class AS label_class
FROM (
    SELECT event_id, timestamp, features_num, features_cat, segment FROM predictions FINAL
    WHERE model_id = {model:String}
      AND timestamp >= fromUnixTimestamp64Micro({start:Int64}, 'UTC')
      AND timestamp < fromUnixTimestamp64Micro({stop:Int64}, 'UTC')
) AS p
INNER JOIN (
    SELECT event_id, label_value, label_class FROM feedback FINAL
    WHERE model_id = {model:String} AND event_id IN (
        SELECT event_id FROM predictions
        WHERE model_id = {model:String}
          AND timestamp >= fromUnixTimestamp64Micro({start:Int64}, 'UTC')
          AND timestamp < fromUnixTimestamp64Micro({stop:Int64}, 'UTC'))
) AS f ON p.event_id = f.event_id
ORDER BY timestamp, event_id
"""


def read_labelled_rows(
    store: Store, model_id: str, data_from: datetime, data_to: datetime
) -> list[dict[str, Any]]:
    """Predictions of ``model_id`` with event time in ``[data_from, data_to)`` that have
    feedback, joined in the store, oldest first (rows as
    :func:`~driftline.retrainer.dataset.from_rows` takes them)."""
    return store.query(
        _LABELLED_ROWS,
        {
            "model": model_id,
            "start": round(data_from.timestamp() * 1_000_000),
            "stop": round(data_to.timestamp() * 1_000_000),
        },
    )


@dataclass(frozen=True)
class RetrainOutcome:
    """What handling one retrain request did.

    ``status`` is ``registered`` (a new version), ``duplicate`` (the request had its
    version already; its event was published again) or ``skipped`` (nothing was
    recorded; ``reason`` says why). ``refused`` is the reason code (one of
    ``RetrainerMetrics.REFUSALS``) of a request skipped because the request itself is
    unacceptable (its data range is empty or too long), else empty.

    Examples
    --------
    >>> RetrainOutcome("skipped", None, "no monitor config for model 'm'").registered
    False
    """

    status: Literal["registered", "duplicate", "skipped"]
    record: VersionRecord | None
    reason: str = ""
    refused: str = ""

    @property
    def registered(self) -> bool:
        """Whether this call registered a new version."""
        return self.status == "registered"

    @property
    def event(self) -> ModelVersionEvent | None:
        """The published event, if any."""
        return None if self.record is None else self.record.to_event()


class Retrainer:
    """Handles retrain requests against one store, artifact store and publisher.

    Parameters
    ----------
    store
        The store holding predictions, feedback and ``model_versions`` (migrated).
    monitors
        Monitor configs by model id (the training section says how to train).
    artifacts
        An :class:`~driftline.retrainer.artifact.ArtifactStore`.
    publish
        Sends a ``model_version`` event and returns when Kafka acknowledged it.
    status_path
        Optional file where the retrainer writes its state (``idle``/``training``).
    options
        :class:`~driftline.retrainer.training.TrainingOptions` for the built-in trainer
        (the monitor's ``training:`` overrides still apply).
    max_data_seconds
        The longest data range (``data_to - data_from``) a request may ask for; a longer
        one is refused (``DRIFTLINE_RETRAIN_MAX_DATA_SECONDS``, default 30 days).

    Examples
    --------
    >>> published = []
    >>> retrainer = Retrainer(None, {}, None, published.append)
    >>> request = RetrainRequestEvent(request_id="r1", model_id="m", model_version="v1",
    ...     reason=["a1"], data_from=1767225600, data_to=1767229200, requested_at=1767229200)
    >>> retrainer.monitor_problem(request)
    "no monitor config for model 'm'"
    >>> year = RetrainRequestEvent(request_id="r2", model_id="m", model_version="v1",
    ...     reason=["a1"], data_from="2025-01-01T00:00:00Z", data_to="2026-01-01T00:00:00Z",
    ...     requested_at="2026-01-01T00:00:00Z")
    >>> retrainer.refusal(year)[0]
    'data_range_too_long'
    """

    def __init__(
        self,
        store: Any,
        monitors: Mapping[str, MonitorConfig],
        artifacts: Any,
        publish: Publish,
        *,
        status_path: Path | None = None,
        options: Any = None,
        clock: Callable[[], float] = time.time,
        max_data_seconds: float = DEFAULT_MAX_DATA_SECONDS,
    ) -> None:
        self.store = store
        self.registry = ModelRegistry(store)
        self.monitors = dict(monitors)
        self.artifacts = artifacts
        self.publish = publish
        self.status_path = status_path
        self.options = options
        self.clock = clock
        self.max_data_seconds = max_data_seconds

    # ------------------------------------------------------------------ status

    def _status(self, state: str, **fields: Any) -> None:
        if self.status_path is None:
            return
        temporary = self.status_path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"pid": os.getpid(), "state": state, **fields}))
        temporary.replace(self.status_path)

    # ------------------------------------------------------------------ requests

    def refusal(self, request: RetrainRequestEvent) -> tuple[str, str] | None:
        """``(code, reason)`` when ``request`` asks for an unacceptable data range, else
        ``None``: an empty one (``empty_data_range``) or one longer than
        ``max_data_seconds`` (``data_range_too_long``)."""
        start, stop = request.data_from, request.data_to
        if stop <= start:
            return (
                "empty_data_range",
                f"empty data window: data_to {stop.isoformat()} is not after "
                f"data_from {start.isoformat()}",
            )
        span = (stop - start).total_seconds()
        if span > self.max_data_seconds:
            return (
                "data_range_too_long",
                f"data range {start.isoformat()} to {stop.isoformat()} spans {span:.0f} s "
                f"({span / 86_400:.1f} days), more than the {self.max_data_seconds:.0f} s "
                f"({self.max_data_seconds / 86_400:.1f} days) a request may ask for "
                "(DRIFTLINE_RETRAIN_MAX_DATA_SECONDS)",
            )
        return None

    def monitor_problem(self, request: RetrainRequestEvent) -> str | None:
        """Why ``request`` cannot be trained (no monitor config for its model, or a
        :meth:`refusal` of its data range), or ``None``."""
        if request.model_id not in self.monitors:
            return f"no monitor config for model {request.model_id!r}"
        refused = self.refusal(request)
        return None if refused is None else refused[1]

    def handle(self, request: RetrainRequestEvent) -> RetrainOutcome:
        """Train, challenge, register and publish the version of one request (idempotent)."""
        done = self.registry.by_request(request.model_id, request.request_id)
        if done:
            record = done[0]
            log.info(
                "request %s has version %s %s already; publishing it again",
                request.request_id,
                record.version,
                record.status,
            )
            self._finish(record)
            return RetrainOutcome("duplicate", record, "the request has a version already")
        refused = self.refusal(request)
        if refused is not None:
            code, reason = refused
            log.warning("refusing retrain request %s (%s): %s", request.request_id, code, reason)
            return RetrainOutcome("skipped", None, reason, refused=code)
        problem = self.monitor_problem(request)
        if problem is not None:
            log.warning("not retraining for request %s: %s", request.request_id, problem)
            return RetrainOutcome("skipped", None, problem)
        monitor = self.monitors[request.model_id]
        rows = read_labelled_rows(self.store, request.model_id, request.data_from, request.data_to)
        minimum = monitor.training.min_rows
        if len(rows) < minimum:
            reason = (
                f"{len(rows)} labelled rows of model {request.model_id!r} between "
                f"{request.data_from.isoformat()} and {request.data_to.isoformat()}, "
                f"fewer than training.min_rows = {minimum}"
            )
            log.warning("not retraining for request %s: %s", request.request_id, reason)
            return RetrainOutcome("skipped", None, reason)
        try:
            dataset = LabelledDataset.from_rows(rows, monitor)
            record = self._train_and_register(request, monitor, dataset)
        except ValueError as error:  # the data cannot train (one class...) or a bad function
            self._status("idle")
            reason = f"cannot train model {request.model_id!r}: {error}"
            log.error("not retraining for request %s: %s", request.request_id, reason)
            return RetrainOutcome("skipped", None, reason)
        return RetrainOutcome("registered", record)

    def _train_and_register(
        self, request: RetrainRequestEvent, monitor: MonitorConfig, dataset: LabelledDataset
    ) -> VersionRecord:
        from .evaluation import challenge, score_predictor
        from .training import train_model

        version = version_for_request(request.request_id)
        train, holdout = dataset.time_split(monitor.training.holdout_fraction)
        self._status("training", request_id=request.request_id, version=version)
        log.info(
            "training %s %s for request %s on %d rows (holdout %d)",
            request.model_id,
            version,
            request.request_id,
            len(train),
            len(holdout),
        )
        started, cpu_started = time.perf_counter(), time.process_time()
        candidate, report = train_model(train, monitor, self.options, log=log.info)
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_started
        self._status("evaluating", request_id=request.request_id, version=version)
        champion_record = self.registry.champion(request.model_id)
        champion_score = None
        if champion_record is not None:
            try:
                champion = self.artifacts.load_predictor(champion_record.artifact_uri)
                champion_score = score_predictor(champion, holdout, monitor)
            except Exception:  # a champion we cannot load or score cannot block a retrain
                log.exception("cannot score champion %s", champion_record.version)
        metric = monitor.training.metric or monitor.performance_metric
        with _user_model(monitor, "scoring the holdout"):
            candidate_score = score_predictor(candidate, holdout, monitor)
        result = challenge(
            candidate_score, champion_score, metric, monitor.training.promotion_margin
        )
        log.info("request %s: %s", request.request_id, result.decision)
        status, traffic, decision = "rejected", None, result.decision
        if result.promote:
            rollout = monitor.rollout
            if rollout is None or rollout.mode == "direct":
                status = "champion"
            else:  # live evidence first: the winner becomes the challenger
                status = rollout.mode
                traffic = rollout.canary_steps[0] if rollout.mode == "canary" else 0.0
                decision = f"{result.decision}; challenger in {rollout.mode}"
        now = self.clock()
        record = VersionRecord(
            model_id=request.model_id,
            version=version,
            parent_version=champion_record.version if champion_record else request.model_version,
            artifact_uri="pending",
            metrics=result.metrics,
            status=status,
            traffic=traffic,
            request_id=request.request_id,
            data_from=request.data_from.timestamp(),
            data_to=request.data_to.timestamp(),
            created_at=now,
            updated_at=now,
            alert_ids=request.reason,
            decision=decision,
            train_rows=len(train),
            holdout_rows=len(holdout),
            training_seconds=round(seconds, 3),
            device=str(report.device),
            cpu_seconds=round(cpu_seconds, 3),
            gpu_seconds=round(seconds, 3) if str(report.device).startswith("cuda") else 0.0,
            bytes_read=dataset.nbytes,
        )
        with _user_model(monitor, "profiling the training data"):
            profile = training_profile(candidate, train, monitor, version, holdout)
        # No row names this version yet, so a directory already there is the leftover of
        # an attempt that crashed before its row: replace it, so that the weights stored
        # are the ones the row's metrics describe.
        uri = self.artifacts.save(
            candidate,
            request.model_id,
            version,
            metadata=record.model_dump(mode="json"),
            files={PROFILE_FILE: profile.to_json()},
            replace=True,
        )
        record = record.model_copy(update={"artifact_uri": str(uri)})
        if result.promote:
            save_profile(self.store, profile)
        self.registry.record(record)  # the commit point of the request
        self._finish(record)
        self._card(record, monitor, (self.options, report, seconds), dataset)
        self._status("idle")
        return record

    def _card(
        self,
        record: VersionRecord,
        monitor: MonitorConfig,
        training: Any = None,
        dataset: LabelledDataset | None = None,
    ) -> None:
        """Write the version's model card beside its artifact (``training``: the
        options, report and seconds of the run that made it; a card that cannot be
        written is logged: it never fails a retrain)."""
        from driftline.card_data import refresh_card

        try:
            run = None if training is None else training_run(monitor, *training)
            refresh_card(
                self.store,
                record,
                self.artifacts.root,
                monitor=monitor,
                training=run,
                label_balance=None if dataset is None else label_balance(dataset, monitor),
            )
        except Exception:
            log.exception("cannot write the model card of %s %s", record.model_id, record.version)

    def _finish(self, record: VersionRecord) -> None:
        """Steps after the row, safe to repeat: one champion (or one challenger), then
        the events."""
        changed: list[VersionRecord] = []
        if record.status == "champion":
            current = self.registry.champion(record.model_id)
            if current is not None and current.version == record.version:
                changed = self.registry.demote_other_champions(record)
        elif record.status in ("shadow", "canary"):
            changed = self.registry.supersede_challengers(
                record.model_id, keep=record.version, after=record
            )
            for old in changed:
                self.publish(old.to_event())
        self.publish(record.to_event())
        monitor = self.monitors.get(record.model_id)
        for old in changed:  # their status changed: their cards say so
            if monitor is not None:
                self._card(old, monitor)

    # ------------------------------------------------------------------ first version

    def register_initial(
        self,
        model: Any,
        monitor: MonitorConfig,
        version: str,
        train: LabelledDataset,
        *,
        seconds: float = 0.0,
        device: str = "",
    ) -> VersionRecord:
        """Register an externally trained model as the champion ``version`` of its model:
        artifact, row, reference profile of ``train`` and the published event.

        Registering a version that exists already only publishes it again.
        """
        existing = self.registry.get(monitor.model_id, version)
        if existing is not None:
            self._finish(existing)
            return existing
        now = self.clock()
        record = VersionRecord(
            model_id=monitor.model_id,
            version=version,
            artifact_uri="pending",
            status="champion",
            data_from=float(train.timestamps.min()),
            data_to=float(train.timestamps.max()),
            created_at=now,
            updated_at=now,
            decision="registered as the initial champion",
            train_rows=len(train),
            training_seconds=round(seconds, 3),
            device=device,
        )
        profile = training_profile(model, train, monitor, version)
        uri = self.artifacts.save(
            model,
            monitor.model_id,
            version,
            metadata=record.model_dump(mode="json"),
            files={PROFILE_FILE: profile.to_json()},
        )
        record = record.model_copy(update={"artifact_uri": str(uri)})
        save_profile(self.store, profile)
        self.registry.record(record)
        self._finish(record)
        self._card(record, monitor, None, train)
        return record


@contextmanager
def _user_model(monitor: MonitorConfig, step: str) -> Iterator[None]:
    """Turn a failure of a user's model (``training.function``) into a request error.

    A user's ``predict`` that raises fails this request, not the retrainer: the
    request is skipped with the reason instead of being retried forever.
    """
    try:
        yield
    except Exception as error:
        path = monitor.training.function
        if path is None or isinstance(error, ValueError):
            raise
        raise ValueError(
            f"the model of training.function {path!r} failed while {step}: "
            f"{type(error).__name__}: {error}"
        ) from error


def publish_version_profile(store: Any, record: VersionRecord) -> bool:
    """Make the reference profile of ``record``'s version the monitors' for that version.

    The retrainer stores a profile of every version's training data in its artifact
    (:data:`PROFILE_FILE`) and in ``reference_profiles`` only for the versions it
    promotes; a version promoted or restored later by hand gets it from its artifact
    here. Returns whether a profile was written (``False``: it was there already, or
    the artifact holds none, as for versions registered before profiles were kept).
    """
    from .artifact import ArtifactStore

    rows = store.query(
        "SELECT count() AS n FROM reference_profiles FINAL "
        "WHERE model_id = {model:String} AND model_version = {version:String}",
        {"model": record.model_id, "version": record.version},
    )
    if rows and int(rows[0]["n"]) > 0:
        return False
    try:
        path = ArtifactStore(".").path_of(record.artifact_uri) / PROFILE_FILE
        text = path.read_text(encoding="utf-8")
    except (ValueError, OSError) as error:
        log.warning("version %s has no stored reference profile: %s", record.version, error)
        return False
    save_profile(store, ModelProfile.from_json(text))
    return True


class KafkaPublisher:
    """Publishes ``model_version`` events on ``<prefix>.model-versions``, keyed by model id
    (one partition per model keeps its events in order), waiting for each delivery.

    Examples
    --------
    >>> KafkaPublisher(Settings(topic_prefix="acme"), "127.0.0.1:1").topic
    'acme.model-versions'
    """

    def __init__(self, settings: Settings, bootstrap_servers: str, timeout: float = 30.0) -> None:
        self.topic = settings.topics.model_versions
        self._config = {
            "bootstrap.servers": bootstrap_servers,
            **settings.kafka_client_config(),
            "enable.idempotence": True,
        }
        self._producer: Any = None
        self.timeout = timeout

    def __call__(self, event: ModelVersionEvent) -> None:
        """Send one event; raise when Kafka did not acknowledge it within the timeout."""
        from confluent_kafka import Producer

        if self._producer is None:
            self._producer = Producer(self._config)
        failures: list[str] = []

        def delivered(error: Any, message: Any) -> None:
            if error is not None:
                failures.append(str(error))

        self._producer.produce(
            self.topic,
            key=event.model_id.encode(),
            value=event.model_dump_json().encode(),
            on_delivery=delivered,
        )
        left = self._producer.flush(self.timeout)
        if left or failures:
            reason = failures[0] if failures else f"not delivered within {self.timeout}s"
            raise StoreError(f"publishing {event.model_id} {event.version} failed: {reason}")


# --------------------------------------------------------------------------- the shell


def resolve_bootstrap(settings: Settings) -> str:
    """The Kafka to use: the configured one, or the embedded broker of the running worker."""
    if not settings.embedded_broker:
        return settings.kafka_bootstrap_servers
    from driftline.store.remote import running_worker

    owner = running_worker(settings.data_dir)
    if owner is None or not owner.get("bootstrap_servers"):
        raise StoreError(
            "DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS is empty and no worker runs on "
            f"{settings.data_dir} to tell the embedded broker's address; set it"
        )
    return str(owner["bootstrap_servers"])


def refusal_reason(error: ValidationError) -> str:
    """The reason code (one of ``RetrainerMetrics.REFUSALS``) of a message that is not a
    valid ``retrain_request``, from its first problem.

    Examples
    --------
    >>> try:
    ...     RetrainRequestEvent.model_validate_json(b"{not json")
    ... except ValidationError as error:
    ...     print(refusal_reason(error))
    invalid_json
    """
    problems = error.errors(include_url=False)
    if not problems:
        return "invalid_value"
    first = problems[0]
    kind, where = str(first["type"]), tuple(first["loc"])
    if kind == "json_invalid":
        return "invalid_json"
    if not where and kind in ("model_type", "model_attributes_type", "dict_type"):
        return "not_an_object"
    if where == ("type",):
        return "unknown_type"
    if kind == "missing":
        return "missing_field"
    if kind == "extra_forbidden":
        return "unknown_field"
    if kind.endswith("_type"):
        return "wrong_type"
    return "invalid_value"


def _first_problem(error: ValidationError, limit: int = 300) -> str:
    """``field: message`` of the first problem, without the input (a message can be
    megabytes), cut to ``limit`` characters."""
    problems = error.errors(include_url=False, include_input=False)
    if not problems:
        return "invalid"
    where = ".".join(str(part) for part in problems[0]["loc"]) or "<message>"
    text = f"{where}: {problems[0]['msg']}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_monitors(folder: Path | None) -> dict[str, MonitorConfig]:
    """Monitor configs of ``folder/*.yaml`` by model id; a folder that does not exist is
    an error (the retrainer cannot train a model it has no config for)."""
    if folder is not None and not Path(folder).is_dir():
        raise ValueError(f"monitors folder {folder} does not exist")
    return load_monitor_configs(folder)


def run_retrainer(
    settings: Settings, monitors: Mapping[str, MonitorConfig], stop: threading.Event | None = None
) -> int:
    """Consume retrain requests until SIGINT/SIGTERM (or ``stop``); return an exit code."""
    from confluent_kafka import Consumer, TopicPartition

    from .artifact import ArtifactStore

    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
    bootstrap = resolve_bootstrap(settings)
    store = writing_store(settings)
    status_path = settings.data_dir / STATUS_FILE
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    retrainer = Retrainer(
        store,
        monitors,
        ArtifactStore(settings.artifacts_dir),
        KafkaPublisher(settings, bootstrap),
        status_path=status_path,
        max_data_seconds=settings.retrain_max_data_seconds,
    )
    metrics = RetrainerMetrics(CollectorRegistry(), monitors)
    host, port = settings.retrainer_metrics_host, settings.retrainer_metrics_port
    try:
        metrics_server = start_metrics_server(metrics.registry, port, host)
    except OSError as error:  # the port is taken (another retrainer): run without /metrics
        log.warning("no /metrics on %s port %d: %s", host, port, error)
        metrics_server = None
    else:
        log.info("retrainer /metrics on http://%s:%d/metrics", host, port)
    topic = settings.topics.retrain_requests
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            **settings.kafka_client_config(),
            "group.id": f"{settings.topic_prefix}-retrainer",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            # training can outlast the default poll interval; the group must keep us
            "max.poll.interval.ms": 3_600_000,
            # a retrainer killed mid-request leaves the group soon, so a restart resumes
            "session.timeout.ms": 6_000,
            "heartbeat.interval.ms": 1_000,
        }
    )
    consumer.subscribe([topic])
    retrainer._status("idle")
    log.info("retrainer consuming %s (models: %s)", topic, ", ".join(sorted(monitors)) or "none")
    backoff = 1.0
    try:
        while not stop.is_set():
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                log.warning("retrain-requests consumer: %s", message.error())
                continue
            try:
                request = RetrainRequestEvent.model_validate_json(message.value() or b"")
            except ValidationError as error:
                code = refusal_reason(error)
                log.error(
                    "skipping a malformed retrain request at %s[%d]@%d (%s): %s",
                    message.topic(),
                    message.partition(),
                    message.offset(),
                    code,
                    _first_problem(error),
                )
                metrics.request_refused(code)
                consumer.commit(message=message, asynchronous=False)
                continue
            try:
                outcome = retrainer.handle(request)
            except Exception:
                log.exception("request %s failed; retrying in %.0fs", request.request_id, backoff)
                metrics.request_processed(request.model_id, "failed")
                retrainer._status("idle", last_error=request.request_id)
                where = (str(message.topic()), message.partition(), message.offset())
                consumer.seek(TopicPartition(where[0], int(where[1] or 0), int(where[2] or 0)))
                stop.wait(backoff)
                backoff = min(backoff * 2, 60.0)
                continue
            backoff = 1.0
            # counted before the commit: a reader that sees the offset sees the count
            metrics.request_handled(request.model_id, outcome)
            if outcome.refused:
                metrics.request_refused(outcome.refused)
            consumer.commit(message=message, asynchronous=False)
            log.info(
                "request %s %s%s",
                request.request_id,
                outcome.status,
                f": {outcome.record.version} {outcome.record.status}" if outcome.record else "",
            )
    finally:
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()
        consumer.close()
        store.close()
    return 0
