"""Serving side of the retraining loop: follow a model's champion and hot-swap it.

:class:`ModelSubscriber` reads ``<prefix>.model-versions`` from the beginning (a
consumer group of its own, so every serving process sees every event), keeps the
newest ``champion`` event of its model, loads that version's artifact and swaps it
in with one reference assignment: a thread calling :meth:`ModelSubscriber.predict`
sees the old model or the new one, whole, never one half loaded. Events of other
models, non-champion statuses and malformed messages are skipped (malformed ones
are logged and counted); a version that fails to load leaves the current model in
place and is tried again with a growing delay, until it loads or a newer champion
supersedes it.

Rollouts: the subscriber also follows the model's **challenger** (the newest version in
``shadow`` or ``canary``, until an event takes it out of that status or promotes it).
:meth:`ModelSubscriber.serve` then answers a request as the rollout says: in shadow
the champion serves and the challenger's output comes back beside it, to be logged
as a shadow prediction; in canary a stable hash of a caller-given key sends the
request to the challenger when it falls below the challenger's share (so a key keeps
its version while the share holds or grows). A rejected challenger is dropped, a
promoted one serves as the champion, and a rollback swaps the parent back, all
without a restart.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from driftline.schemas.events import ModelVersionEvent

__all__ = [
    "ModelSubscriber",
    "Served",
    "Serving",
    "SubscriberStats",
    "load_artifact",
    "share_of",
]

log = logging.getLogger(__name__)

#: Loads the model of a version event (default: :func:`load_artifact`).
Loader = Callable[[ModelVersionEvent], Any]
#: Called after a swap with the event and the model now serving.
OnVersion = Callable[[ModelVersionEvent, Any], None]


def load_artifact(event: ModelVersionEvent) -> Any:
    """Load the model stored at ``event.artifact_uri`` (imports the training stack, torch)."""
    from driftline.retrainer.artifact import ArtifactStore

    return ArtifactStore(Path(".")).load_predictor(event.artifact_uri)


@dataclass
class SubscriberStats:
    """Counters of a :class:`ModelSubscriber`.

    Examples
    --------
    >>> SubscriberStats().swaps
    0
    """

    messages: int = 0
    swaps: int = 0
    ignored: int = 0
    malformed: int = 0
    load_failures: int = 0


@dataclass(frozen=True)
class Serving:
    """What serves now, as one consistent snapshot: the champion's model and event, and
    the challenger's (shadow or canary) when a rollout runs.

    Examples
    --------
    >>> Serving(model="a model", event=None).challenger is None
    True
    """

    model: Any
    event: ModelVersionEvent
    challenger: Any = None
    challenger_event: ModelVersionEvent | None = None


@dataclass(frozen=True)
class Served:
    """One request's answer under a rollout: the output served and the version that
    served it, and (in shadow) the challenger's output, to log as a shadow prediction.

    Examples
    --------
    >>> Served(output=[1], version="v1").shadow_version is None
    True
    """

    output: Any
    version: str
    shadow_output: Any = None
    shadow_version: str | None = None


def share_of(key: str) -> float:
    """Where a routing key falls in ``[0, 1)``: the first 8 bytes of its SHA-256.

    Examples
    --------
    >>> 0.0 <= share_of("customer-42") < 1.0, share_of("a") == share_of("a")
    (True, True)
    """
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


_KEEP = object()  # no news about the challenger in a batch of events


class ModelSubscriber:
    """Follows the champion of one model on ``<prefix>.model-versions``.

    Parameters
    ----------
    model_id
        The model to follow; events of other models are ignored.
    bootstrap_servers
        Kafka bootstrap servers.
    topic_prefix
        The driftline topic prefix (``DRIFTLINE_TOPIC_PREFIX``).
    loader
        Turns a champion event into a model (default: :func:`load_artifact`).
    on_version
        Called on the subscriber's thread after each swap, with the event and model.
    kafka_config
        Extra librdkafka settings (security, ...).
    poll_seconds
        How long one poll of the topic waits for messages.
    connect_timeout
        How long :meth:`start` waits for the topic's metadata.
    retry_seconds
        A champion that failed to load is tried again after this many seconds
        (doubling up to a minute) until it loads or a newer champion arrives.

    Examples
    --------
    >>> subscriber = ModelSubscriber("credit", "127.0.0.1:9092", topic_prefix="acme")
    >>> subscriber.topic, subscriber.version, subscriber.current
    ('acme.model-versions', None, None)
    """

    def __init__(
        self,
        model_id: str,
        bootstrap_servers: str,
        *,
        topic_prefix: str = "driftline",
        loader: Loader | None = None,
        on_version: OnVersion | None = None,
        kafka_config: dict[str, Any] | None = None,
        poll_seconds: float = 0.2,
        connect_timeout: float = 30.0,
        retry_seconds: float = 5.0,
    ) -> None:
        if not model_id:
            raise ValueError("model_id must not be empty")
        self.model_id = model_id
        self.bootstrap_servers = bootstrap_servers
        self.topic = f"{topic_prefix}.model-versions"
        self.stats = SubscriberStats()
        self._loader = loader or load_artifact
        self._on_version = on_version
        self._kafka_config = dict(kafka_config or {})
        self._poll_seconds = poll_seconds
        self._connect_timeout = connect_timeout
        if not retry_seconds > 0:
            raise ValueError(f"retry_seconds must be > 0, got {retry_seconds!r}")
        self._retry_seconds = retry_seconds
        self._serving: Serving | None = None
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ what serves

    @property
    def current(self) -> Any:
        """The model serving now, or ``None`` before the first champion is loaded."""
        serving = self._serving
        return None if serving is None else serving.model

    @property
    def version(self) -> str | None:
        """The version serving now, or ``None``."""
        serving = self._serving
        return None if serving is None else serving.event.version

    @property
    def event(self) -> ModelVersionEvent | None:
        """The champion event of the model serving now, or ``None``."""
        serving = self._serving
        return None if serving is None else serving.event

    def snapshot(self) -> Serving | None:
        """What serves now (champion and challenger together), or ``None`` before the
        first champion is loaded: read once per request or batch, it never mixes a
        swap's before and after."""
        return self._serving

    @property
    def challenger(self) -> ModelVersionEvent | None:
        """The event of the challenger loaded now (shadow or canary), or ``None``."""
        serving = self._serving
        return None if serving is None else serving.challenger_event

    def predict(self, features: Any) -> Any:
        """``predict`` of the champion (one consistent model for the whole call)."""
        model = self.current
        if model is None:
            raise RuntimeError(f"no champion of model {self.model_id!r} has been loaded yet")
        return model.predict(features)

    def serve(self, features: Any, key: str | None = None) -> Served:
        """Answer one request as the rollout says (module docstring); ``key`` routes a
        canary (without one, the champion serves)."""
        serving = self._serving
        if serving is None:
            raise RuntimeError(f"no champion of model {self.model_id!r} has been loaded yet")
        champion, version = serving.model, serving.event.version
        challenger = serving.challenger_event
        if challenger is None:
            return Served(champion.predict(features), version)
        if challenger.status == "canary":
            if key is not None and share_of(key) < (challenger.traffic or 0.0):
                return Served(serving.challenger.predict(features), challenger.version)
            return Served(champion.predict(features), version)
        return Served(
            champion.predict(features),
            version,
            shadow_output=serving.challenger.predict(features),
            shadow_version=challenger.version,
        )

    def wait_for_version(self, version: str | None = None, timeout: float = 30.0) -> bool:
        """Block until ``version`` (or any version) serves; ``False`` after ``timeout``."""
        with self._changed:
            return self._changed.wait_for(
                lambda: self.version is not None and version in (None, self.version), timeout
            )

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> ModelSubscriber:
        """Start the background thread (reads every partition of the topic from its beginning).

        Raises
        ------
        ConnectionError
            When the topic does not exist or Kafka does not answer within
            ``connect_timeout`` seconds.
        """
        if self._thread is not None:
            raise RuntimeError("the subscriber is started already")
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap_servers,
                "group.id": f"driftline-subscriber-{self.model_id}-{uuid.uuid4().hex[:12]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                **self._kafka_config,
            }
        )
        try:
            metadata = consumer.list_topics(self.topic, timeout=self._connect_timeout)
            found = metadata.topics.get(self.topic)
            if found is None or found.error is not None or not found.partitions:
                reason = "missing" if found is None else (found.error or "without partitions")
                raise ConnectionError(f"topic {self.topic} on {self.bootstrap_servers}: {reason}")
        except Exception:
            consumer.close()
            raise
        # every partition from its beginning, without a group to join: the newest
        # champion event of the model is found on start, and no rebalance delays it
        consumer.assign(
            [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in sorted(found.partitions)]
        )
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(consumer,), name=f"model-subscriber-{self.model_id}"
        )
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread and close the consumer; the current model stays."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout)

    def __enter__(self) -> ModelSubscriber:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ the thread

    def _run(self, consumer: Any) -> None:
        pending: ModelVersionEvent | None = None  # the champion to load next
        challenger: Any = _KEEP  # the challenger to follow next (None: drop it)
        retry_at, delay = 0.0, self._retry_seconds
        try:
            while not self._stop.is_set():
                messages = consumer.consume(num_messages=500, timeout=self._poll_seconds)
                newest, news = self._newest(messages, challenger)
                if newest is not None:  # a newer champion supersedes one that failed
                    pending, retry_at, delay = newest, 0.0, self._retry_seconds
                if news is not _KEEP:
                    challenger, retry_at = news, 0.0
                if (pending is None and challenger is _KEEP) or time.monotonic() < retry_at:
                    continue
                loaded = True
                if pending is not None:
                    loaded = self._swap(pending)
                    pending = None if loaded else pending
                if loaded and challenger is not _KEEP:
                    loaded = self._follow(challenger)
                    challenger = _KEEP if loaded else challenger
                if not loaded:  # the artifact may appear later (a slow or remote file system)
                    retry_at = time.monotonic() + delay
                    delay = min(delay * 2, 60.0)
        except Exception:  # the serving process must keep its current model
            log.exception("the model subscriber of %s stopped", self.model_id)
        finally:
            consumer.close()

    def _newest(
        self, messages: list[Any], waiting: Any = _KEEP
    ) -> tuple[ModelVersionEvent | None, Any]:
        """The last champion event of this model in a batch (earlier ones are superseded),
        and the challenger to follow after it (``_KEEP``: no news; ``None``: none).
        ``waiting`` is a challenger not loaded yet (``_KEEP``: none waits)."""
        newest = None
        challenger: Any = _KEEP
        followed = self.challenger if waiting is _KEEP else waiting
        for message in messages:
            if message.error():
                log.warning("model-versions consumer: %s", message.error())
                continue
            self.stats.messages += 1
            try:
                event = ModelVersionEvent.model_validate_json(message.value() or b"")
            except ValidationError as error:
                self.stats.malformed += 1
                log.warning(
                    "skipping a malformed model_version message at %s[%d]@%d: %s",
                    message.topic(),
                    message.partition(),
                    message.offset(),
                    error.errors(include_url=False)[:1],
                )
                continue
            if event.model_id != self.model_id:
                self.stats.ignored += 1
                continue
            current = followed if challenger is _KEEP else challenger
            if event.status in ("shadow", "canary"):
                challenger = event
            elif current is not None and current.version == event.version:
                challenger = None  # rejected, rolled back or promoted: no challenger now
            if event.status == "champion":
                newest = event
            elif event.status not in ("shadow", "canary"):
                self.stats.ignored += 1
        return newest, challenger

    def _follow(self, event: ModelVersionEvent | None) -> bool:
        """Load ``event``'s challenger beside the champion (``None``: drop the one loaded);
        ``False`` when it failed to load."""
        serving = self._serving
        if serving is None:
            return False  # a challenger needs a champion to serve beside
        model = None
        if event is not None:
            same = serving.challenger_event is not None and (
                serving.challenger_event.version == event.version
            )
            try:
                model = serving.challenger if same else self._loader(event)
            except Exception:
                self.stats.load_failures += 1
                log.exception("cannot load challenger %s %s", event.model_id, event.version)
                return False
        with self._changed:
            self._serving = Serving(serving.model, serving.event, model, event)
            self._changed.notify_all()
        if event is None:
            log.info("%s has no challenger now", self.model_id)
        else:
            log.info("%s challenger %s in %s", self.model_id, event.version, event.status)
        return True

    def _swap(self, event: ModelVersionEvent) -> bool:
        """Load and serve ``event``'s version; ``False`` when it failed to load."""
        if self.version == event.version:
            return True
        try:
            model = self._loader(event)
        except Exception:
            self.stats.load_failures += 1
            log.exception(
                "cannot load %s %s from %s (retrying unless a newer champion comes)",
                event.model_id,
                event.version,
                event.artifact_uri,
            )
            return False
        with self._changed:
            old = self._serving
            keep = old is not None and old.challenger_event is not None
            keep = keep and old.challenger_event.version != event.version  # type: ignore[union-attr]
            self._serving = (  # one assignment: the swap
                Serving(model, event, old.challenger, old.challenger_event)  # type: ignore[union-attr]
                if keep
                else Serving(model, event)
            )
            self.stats.swaps += 1
            self._changed.notify_all()
        log.info("now serving %s %s", event.model_id, event.version)
        if self._on_version is not None:
            try:
                self._on_version(event, model)
            except Exception:
                log.exception("on_version callback failed for %s", event.version)
        return True
