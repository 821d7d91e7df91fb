"""``driftline worker``: the Faust worker that ingests predictions and feedback.

It owns the store (chDB allows one process per data directory) and serves
read-only SQL on ``POST /query`` so that the CLI and tests can look into the
embedded store while it runs. ``DATA_DIR/worker.json`` tells them where.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import faust
import orjson

from driftline.kafka import create_topics
from driftline.settings import Settings
from driftline.store import open_store
from driftline.store.backend import ReadOnlyQueryError, StoreError, check_read_only
from driftline.store.migrations import migrate
from driftline.store.rows import KafkaPosition

from .app import create_app
from .ingest import DeadLetter, IngestOutcome, Ingestor, RawMessage, dead_letter_headers

__all__ = ["WORKER_FILE", "build_worker", "run_worker"]

log = logging.getLogger(__name__)

#: Name of the file in the data directory that advertises a running worker.
WORKER_FILE = "worker.json"


def _raw_message(event: faust.types.EventT) -> RawMessage:
    message = event.message
    headers = message.headers or []
    if isinstance(headers, dict):
        headers = list(headers.items())
    return RawMessage(
        value=message.value,
        position=KafkaPosition(message.topic, message.partition, message.offset),
        headers=[(str(name), bytes(value or b"")) for name, value in headers],
        key=message.key,
    )


def build_worker(settings: Settings, bootstrap_servers: str) -> tuple[faust.App, Ingestor]:
    """The Faust app with its ingest agents and web pages, and the store behind them."""
    store = open_store(settings)
    migrate(store, settings.raw_ttl_days)
    app, topics = create_app(settings, bootstrap_servers)

    async def send_dead_letter(letter: DeadLetter) -> Awaitable[Any]:
        return await topics.dlq.send(
            key=letter.message.key,
            value=letter.message.value or b"",
            headers=dead_letter_headers(letter),
        )

    ingestor = Ingestor(store, send_dead_letter, settings.max_message_bytes)
    batch, within = settings.ingest_batch_messages, settings.ingest_flush_seconds

    async def consume(stream: faust.StreamT) -> None:
        # Two groups in flight: group k+1 is decoded while group k is inserted.
        # A group's offsets are acknowledged only after its rows are stored and
        # its dead letters delivered, in order, so a crash re-reads, never skips.
        storing: asyncio.Task[None] | None = None
        async for events in stream.noack_take(batch, within=within):
            outcome = ingestor.route([_raw_message(event) for event in events])
            if storing is not None:
                await storing
            storing = asyncio.create_task(store_then_ack(stream, events, outcome))

    async def store_then_ack(
        stream: faust.StreamT, events: list[faust.types.EventT], outcome: IngestOutcome
    ) -> None:
        try:
            await ingestor.persist(outcome, len(events))
            for event in events:
                await stream.ack(event)
        except BaseException:
            log.exception("storing a group failed")
            raise

    app.agent(topics.predictions, name="ingest-predictions")(consume)
    app.agent(topics.feedback, name="ingest-feedback")(consume)

    @app.page("/query")
    class QueryPage(faust.web.View):
        async def post(self, request: Any) -> Any:
            sql = (await request.read()).decode("utf-8", errors="replace")
            try:
                rows = await asyncio.to_thread(_locked_query, ingestor, check_read_only(sql))
            except ReadOnlyQueryError as error:
                return self.bytes(str(error).encode(), status=403)
            except StoreError as error:
                return self.bytes(str(error).encode(), status=400)
            return self.bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))

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
            }
        )

    return app, ingestor


def _locked_query(ingestor: Ingestor, sql: str) -> list[dict[str, Any]]:
    with ingestor._store_lock:
        return ingestor.store.query(sql)


def run_worker(settings: Settings) -> int:
    """Run the worker until SIGINT/SIGTERM; start the embedded broker when none is configured."""
    from driftline.broker import EmbeddedBroker

    broker = None
    bootstrap = settings.kafka_bootstrap_servers
    if settings.embedded_broker:
        broker = EmbeddedBroker(log_file=None).start()
        bootstrap = broker.bootstrap_servers
        log.info("embedded broker on %s", bootstrap)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    create_topics(settings, bootstrap)
    app, ingestor = build_worker(settings, bootstrap)
    marker = Path(settings.data_dir) / WORKER_FILE
    marker.write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "web_port": settings.worker_web_port,
                "bootstrap_servers": bootstrap,
            }
        )
    )
    try:
        worker = faust.Worker(app, loglevel=settings.log_level, quiet=True)
        worker.execute_from_commandline()
    finally:
        with contextlib.suppress(FileNotFoundError):
            marker.unlink()
        ingestor.store.close()
        if broker is not None:
            broker.stop()
    return 0
