"""``driftline worker``: the Faust worker that ingests predictions and feedback.

It owns the store (chDB allows one process per data directory) and serves
sandboxed read-only SQL on ``POST /query`` so that the CLI and tests can look into
the embedded store while it runs. ``DATA_DIR/worker.json`` (mode 0600) tells them
where, and holds the token that the data pages require.

Pages (see README "Security"): ``/health`` and ``/metrics`` are open (health checks,
Prometheus); ``/query`` and ``/reference`` need the query token (``Authorization:
Bearer`` or ``X-Driftline-Token``); ``/store/*`` need the store token, which only
another worker on the same data directory reads from ``worker.json``. Faust's own
pages (``/router``, ``/table``, ``/stats``, ``/graph``) are switched off.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import re
import secrets
import signal
import threading
import time
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any, cast

import faust
import orjson
import pyarrow as pa
import pyarrow.ipc as ipc
from driftline.detectors.profiles import ModelProfile
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from driftline.kafka import create_topics
from driftline.metrics import WorkerMetrics, consumer_lags
from driftline.settings import Settings
from driftline.store import EmbeddedStore, open_store
from driftline.store.backend import ReadOnlyQueryError, Store, StoreError
from driftline.store.migrations import migrate
from driftline.store.profiles import save_profile
from driftline.store.remote import SharedStore, running_worker
from driftline.store.rows import KafkaPosition
from driftline.store.sandbox import QueryBoundError, SqlSandbox

from .app import create_app
from .ingest import (
    DeadLetter,
    Ingestor,
    IngestOutcome,
    RawMessage,
    dead_letter_headers,
)
from .monitor import Monitor, load_monitors
from .take import IngestStream

__all__ = ["WORKER_FILE", "build_worker", "run_worker", "use_uvloop"]

log = logging.getLogger(__name__)

#: Name of the file in the data directory that advertises a running worker.
WORKER_FILE = "worker.json"
#: Bytes of messages after which a group is decoded and inserted (pipelining granularity).
GROUP_BYTES = 16 * 1024 * 1024
#: Tries to store a group before the worker stops without acknowledging it.
STORE_ATTEMPTS = 5


def _raw_message(event: faust.types.EventT) -> RawMessage:
    # per message on the hot path: positional arguments, headers only when there are some
    message = event.message
    headers = message.headers
    return RawMessage(
        message.value,
        KafkaPosition(message.topic, message.partition, message.offset),
        _headers(headers) if headers else [],
        message.key,
    )


def _headers(given: Any) -> list[tuple[str, bytes]]:
    pairs = given.items() if isinstance(given, dict) else given
    return [(str(name), _as_bytes(value)) for name, value in pairs]


def _as_bytes(value: bytes | str | None) -> bytes:
    if value is None:
        return b""
    return value.encode() if isinstance(value, str) else bytes(value)


def _store_for(settings: Settings) -> Store:
    """The worker's store: its own, or, when another live worker owns this embedded data
    directory, that worker's store reached through its ``/store/*`` pages."""
    owner = running_worker(settings.data_dir) if settings.embedded_store else None
    if owner is not None and owner.get("store_token"):
        log.info("sharing the store of worker pid %s", owner["pid"])
        return SharedStore(
            int(owner["web_port"]), str(owner["store_token"]), settings.clickhouse_database
        )
    return open_store(settings)


def bearer_token(headers: Any) -> str:
    """The token of a request: ``Authorization: Bearer <token>`` or ``X-Driftline-Token``.

    Examples
    --------
    >>> bearer_token({"Authorization": "Bearer abc"}), bearer_token({"X-Driftline-Token": "x"})
    ('abc', 'x')
    >>> bearer_token({})
    ''
    """
    given = str(headers.get("Authorization", ""))
    scheme, _, value = given.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return str(headers.get("X-Driftline-Token", ""))


def _token_matches(headers: Any, token: str) -> bool:
    return hmac.compare_digest(bearer_token(headers).encode(), token.encode())


def build_worker(
    settings: Settings,
    bootstrap_servers: str,
    store_token: str | None = None,
    query_token: str | None = None,
) -> tuple[faust.App, Ingestor]:
    """The Faust app with its ingest agents and web pages, and the store behind them.

    ``store_token`` (when this worker owns an embedded store) lets other workers on
    the same data directory use it through ``/store/*``; ``query_token`` is what
    ``/query`` and ``/reference`` require (a random one when not given: then nobody
    can call them).
    """
    query_token = query_token or secrets.token_urlsafe(32)
    store = _store_for(settings)
    migrate(store, settings.raw_ttl_days)
    app, topics = create_app(settings, bootstrap_servers)

    async def send_dead_letter(letter: DeadLetter) -> Awaitable[Any]:
        return await topics.dlq.send(
            key=letter.message.key,
            value=letter.message.value or b"",
            headers=dead_letter_headers(letter),
        )

    ingestor = Ingestor(
        store,
        send_dead_letter,
        settings.max_message_bytes,
        settings.max_future_seconds,
        monitors=load_monitors(settings.monitors_dir),
    )
    batch, within = settings.ingest_batch_messages, settings.ingest_flush_seconds

    async def consume(source: faust.StreamT) -> None:
        stream = cast(IngestStream, source)  # the app's Stream class (create_app)
        # Groups of at most `batch` messages and about GROUP_BYTES, or what arrived
        # within `within` seconds; group k+1 fills and is decoded while group k is
        # inserted on a thread. A group's offsets are acknowledged only after its rows
        # are stored and its dead letters delivered, in order, so a crash re-reads,
        # never skips (duplicates are removed by event_id).
        storing: asyncio.Task[None] | None = None
        async for events in stream.take_groups(batch, GROUP_BYTES, within):
            outcome = ingestor.route([_raw_message(event) for event in events])
            if storing is not None:
                await storing
            storing = asyncio.create_task(store_then_ack(stream, events, outcome))

    async def store_then_ack(
        stream: faust.Stream, events: Sequence[faust.types.EventT], outcome: IngestOutcome
    ) -> None:
        for attempt in range(STORE_ATTEMPTS):
            try:
                await ingestor.persist(outcome, len(events))
                break
            except StoreError:
                log.exception("storing %d messages failed (attempt %d)", len(events), attempt + 1)
                await asyncio.sleep(0.5 * 2**attempt)
        else:
            # Nothing of this group is acknowledged: stop, and a restart re-reads it.
            log.critical("the store keeps failing; stopping the worker")
            os.kill(os.getpid(), signal.SIGTERM)
            return
        reasons = [letter.error.reason for letter in outcome.dead_letters]
        topic = events[0].message.topic
        metrics.observe_group(
            topic, len(events), outcome.predictions, outcome.feedback, reasons, outcome.watermarks
        )
        for event in events:
            await stream.ack(event)

    app.agent(topics.predictions, name="ingest-predictions")(consume)
    app.agent(topics.feedback, name="ingest-feedback")(consume)

    monitor = _monitor(app, settings, ingestor)
    metrics = WorkerMetrics(CollectorRegistry(), monitor.monitors)
    monitor.metrics = metrics

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        try:
            ingest = {settings.topics.predictions, settings.topics.feedback}
            metrics.set_partitions(*await consumer_lags(app.consumer, ingest))
        except Exception:  # no consumer yet (starting) or it is rebalancing
            log.debug("consumer lag unavailable", exc_info=True)
        body = generate_latest(metrics.registry)
        return web.bytes(body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})

    # The query page's sandbox has chDB connections of its own: a reader never delays
    # an insert, and its read-only settings touch no other connection.
    sandbox = None if isinstance(store, SharedStore) else SqlSandbox(store, settings.query_bounds)
    app.sandbox = sandbox  # type: ignore[attr-defined]  # cancelled by the stop signal

    def refused(request: Any) -> Any:
        return None if _token_matches(request.headers, query_token) else _unauthorized()

    @app.page("/query")
    class QueryPage(faust.web.View):
        async def post(self, request: Any) -> Any:
            if (answer := refused(request)) is not None:
                return answer
            if sandbox is None:
                owner = running_worker(settings.data_dir) or {}
                return self.bytes(
                    f"this worker shares the store of worker pid {owner.get('pid')}; "
                    f"query that worker (port {owner.get('web_port')})".encode(),
                    status=409,
                )
            sql = (await request.read()).decode("utf-8", errors="replace")
            try:
                rows = await asyncio.to_thread(sandbox.query, sql)
            except ReadOnlyQueryError as error:
                return self.bytes(str(error).encode(), status=403)
            except QueryBoundError as error:
                return self.bytes(str(error).encode(), status=422)
            except StoreError as error:
                return self.bytes(str(error).encode(), status=400)
            return self.bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))

    if store_token is not None and not isinstance(store, SharedStore):
        _add_store_pages(app, ingestor, store_token)

    @app.page("/reference")
    class ReferencePage(faust.web.View):
        async def post(self, request: Any) -> Any:
            if (answer := refused(request)) is not None:
                return answer
            try:
                profile = ModelProfile.from_json(await request.read())
            except ValueError as error:
                return self.bytes(f"not a reference profile: {error}".encode(), status=400)
            await asyncio.to_thread(_locked_save_profile, ingestor, profile)
            return self.json({"model_id": profile.model_id, "version": profile.model_version})

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        stats = ingestor.stats
        return web.json(
            {
                "messages": stats.messages,
                "first_received": stats.first_received,
                "last_stored": stats.last_stored,
                "prediction_rows": stats.prediction_rows,
                "feedback_rows": stats.feedback_rows,
                "dead_letters": dict(stats.dead_letters),
                "monitors": sorted(monitor.monitors),
                "watermark": monitor.watermark if monitor.watermark > -1e300 else None,
                "watermarks": {  # each model's own clock (see streams/monitor.py)
                    model: mark if abs(mark) < 1e300 else None
                    for model, mark in monitor.watermarks.items()
                },
                "predictions_beyond_horizon": dict(monitor.beyond_horizon),
                "windows_closed": monitor.windows_closed,
                "revisions": monitor.revisions,
                "alerts_sent": monitor.alerts_sent,
                "retrain_requests_sent": monitor.requests_sent,
                "assigned": _assigned(app),
            }
        )

    return app, ingestor


def _monitor(app: faust.App, settings: Settings, ingestor: Ingestor) -> Monitor:
    """The monitor of ``settings.monitors_dir`` and the leader timer that drives it."""
    names = settings.topics

    def sender(name: str) -> Any:
        topic = app.topic(name, value_type=bytes, value_serializer="raw", key_serializer="raw")

        async def send(key: str, value: bytes) -> None:
            delivery = await topic.send(key=key.encode(), value=value)
            await delivery  # acknowledged by Kafka before the state that records it

        return send

    # The monitor's window queries run in parallel with the ingest's inserts.
    monitor_store, monitor_lock = _own_connection(ingestor)
    monitor = Monitor(
        monitor_store,
        monitor_lock,
        ingestor.monitors,  # loaded once: the ingest checks rows against the same configs
        predictions_topic=names.predictions,
        idle_seconds=settings.idle_partition_seconds,
        horizon_seconds=settings.late_data_horizon_seconds,
        send_alert=sender(names.alerts),
        send_request=sender(names.retrain_requests),
        late_check_seconds=settings.late_data_check_seconds,
        send_version=sender(names.model_versions),
    )
    monitor.cards_root = settings.artifacts_dir
    if monitor.monitors:
        log.info("monitoring %s", ", ".join(sorted(monitor.monitors)))

        @app.timer(settings.monitor_interval_seconds, on_leader=True)
        async def close_windows() -> None:
            try:
                await monitor.tick()
            except Exception:  # a bad tick must not stop the timer; the next one retries
                log.exception("closing windows failed")

    return monitor


_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def _add_store_pages(app: faust.App, ingestor: Ingestor, token: str) -> None:
    """``/store/query``, ``/store/command`` and ``/store/insert/{table}`` for other workers."""

    def allowed(request: Any) -> bool:
        return _token_matches(request.headers, token)

    def locked(function: Any, *args: Any) -> Any:
        with ingestor._store_lock:
            return function(*args)

    @app.page("/store/query")
    class StoreQueryPage(faust.web.View):
        async def post(self, request: Any) -> Any:
            if not allowed(request):
                return self.bytes(b"bad store token", status=403)
            body = orjson.loads(await request.read())
            try:
                rows = await asyncio.to_thread(
                    locked, ingestor.store.query, body["sql"], body["parameters"]
                )
            except StoreError as error:
                return self.bytes(str(error).encode(), status=400)
            return self.bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))

    @app.page("/store/command")
    class StoreCommandPage(faust.web.View):
        async def post(self, request: Any) -> Any:
            if not allowed(request):
                return self.bytes(b"bad store token", status=403)
            body = orjson.loads(await request.read())
            try:
                await asyncio.to_thread(
                    locked, ingestor.store.command, body["sql"], body["parameters"]
                )
            except StoreError as error:
                return self.bytes(str(error).encode(), status=400)
            return self.bytes(b"")

    @app.page("/store/insert/{table}")
    class StoreInsertPage(faust.web.View):
        async def post(self, request: Any, table: str) -> Any:
            if not allowed(request):
                return self.bytes(b"bad store token", status=403)
            if not _TABLE.match(table):
                return self.bytes(b"not a table name", status=400)
            data = ipc.open_stream(pa.py_buffer(await request.read())).read_all()
            try:
                await asyncio.to_thread(locked, ingestor.store.insert_arrow, table, data)
            except StoreError as error:
                return self.bytes(str(error).encode(), status=400)
            return self.bytes(b"")


def _assigned(app: faust.App) -> list[str]:
    """``topic:partition`` of every partition this worker consumes now."""
    try:
        assignment = app.consumer.assignment()
    except Exception:  # no consumer yet (starting) or it is rebalancing
        return []
    return sorted(f"{tp.topic}:{tp.partition}" for tp in assignment)


def _locked_save_profile(ingestor: Ingestor, profile: ModelProfile) -> None:
    with ingestor._store_lock:
        save_profile(ingestor.store, profile)


def _own_connection(ingestor: Ingestor) -> tuple[Store, threading.Lock]:
    """A chDB connection of its own (a sibling of the ingest's) with its lock, so that
    its queries run beside the inserts; the ingest's store and lock otherwise."""
    if isinstance(ingestor.store, EmbeddedStore):
        return ingestor.store.sibling(), threading.Lock()
    return ingestor.store, ingestor._store_lock


def _unauthorized() -> Any:
    from aiohttp import web

    return web.Response(
        body=b"this page needs the query token (Authorization: Bearer <token>; "
        b"see DATA_DIR/worker.json or DRIFTLINE_QUERY_TOKEN)",
        status=401,
        headers={"WWW-Authenticate": 'Bearer realm="driftline"'},
    )


class _Worker(faust.Worker):
    """Faust's worker, which on SIGTERM/SIGINT first cancels the query page's running
    statements and starts a deadline: the process exits at the latest ``grace`` seconds
    later, whatever it is doing then (a crash at that instant loses nothing: offsets are
    acknowledged only after their rows are stored)."""

    def __init__(self, app: faust.App, grace: float, **options: Any) -> None:
        super().__init__(app, **options)
        self._grace = grace
        self._deadline_started = False

    def _schedule_shutdown(self, signum: signal.Signals) -> None:
        if not self._deadline_started:
            self._deadline_started = True
            threading.Thread(target=self._cut_off, name="shutdown-deadline", daemon=True).start()
            sandbox = getattr(self.app, "sandbox", None)
            if sandbox is not None:
                threading.Thread(target=_cancel_quietly, args=(sandbox,), daemon=True).start()
        super()._schedule_shutdown(signum)

    def _cut_off(self) -> None:
        time.sleep(self._grace)
        log.warning("the worker did not stop within %.0f s of the signal; exiting now", self._grace)
        logging.shutdown()
        os._exit(0)


def _cancel_quietly(sandbox: SqlSandbox) -> None:
    try:
        sandbox.cancel_running()
    except StoreError:
        log.warning("could not cancel the running queries", exc_info=True)


def use_uvloop() -> bool:
    """Run asyncio on uvloop when it is installed (the ``fast`` extra); say whether it is."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.set_event_loop(asyncio.new_event_loop())
    return True


def run_worker(settings: Settings) -> int:
    """Run the worker until SIGINT/SIGTERM; start the embedded broker when none is configured."""
    from driftline.broker import EmbeddedBroker

    use_uvloop()
    broker = None
    bootstrap = settings.kafka_bootstrap_servers
    if settings.embedded_broker:
        broker = EmbeddedBroker(log_file=None).start()
        bootstrap = broker.bootstrap_servers
        log.info("embedded broker on %s", bootstrap)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    create_topics(settings, bootstrap)
    token = secrets.token_hex(16)
    given = settings.query_token
    query_token = given.get_secret_value() if given is not None else secrets.token_urlsafe(32)
    app, ingestor = build_worker(settings, bootstrap, store_token=token, query_token=query_token)
    owner = not isinstance(ingestor.store, SharedStore)
    marker = Path(settings.data_dir) / WORKER_FILE
    if owner:  # the owner of the store advertises itself; a sharing worker writes nothing
        descriptor = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump(
                {
                    "pid": os.getpid(),
                    "web_port": settings.worker_web_port,
                    "bootstrap_servers": bootstrap,
                    "store_token": token if settings.embedded_store else None,
                    "query_token": query_token,
                },
                handle,
            )
    try:
        worker = _Worker(
            app, settings.shutdown_grace_seconds, loglevel=settings.log_level, quiet=True
        )
        worker.execute_from_commandline()
    finally:
        if owner:
            with contextlib.suppress(FileNotFoundError):
                marker.unlink()
        ingestor.store.close()
        if broker is not None:
            broker.stop()
    return 0
