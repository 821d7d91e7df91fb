"""``driftline broker``, ``worker``, ``demo`` and ``topics create``: the processes."""

from __future__ import annotations

import argparse
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import EXIT_BAD_INPUT, CommandError, settings_from_args

__all__ = ["cmd_broker", "cmd_demo", "cmd_topics_create", "cmd_worker", "register"]


class _StopSignal(Exception):  # noqa: N818 - a signal, not an error
    """Raised by a signal handler to leave a blocking wait."""


def _raise_stop(signum: int, frame: Any) -> None:
    raise _StopSignal(signum)


def cmd_broker(args: argparse.Namespace) -> int:
    """Run the embedded broker until SIGINT/SIGTERM."""
    from driftline.broker import EmbeddedBroker

    broker = EmbeddedBroker(port=args.port).start()
    print(f"tansu broker listening on {broker.bootstrap_servers}", flush=True)
    signal.signal(signal.SIGINT, _raise_stop)
    signal.signal(signal.SIGTERM, _raise_stop)
    try:
        code = broker.wait()
    except _StopSignal:
        # stop outside the handler: a wait inside it would deadlock on the interrupted one
        broker.stop()
        return 0
    return code


def cmd_worker(args: argparse.Namespace) -> int:
    """Run the ingest worker."""
    from driftline.schemas.monitor import MonitorConfigError, load_monitors

    overrides = {} if args.monitors is None else {"monitors_dir": args.monitors}
    settings = settings_from_args(args, **overrides)
    # Check the monitor configs before anything starts (the broker, topics, Faust): a
    # bad file is one line naming the file and the key or line, and exit code 2.
    try:
        load_monitors(settings.monitors_dir)
    except MonitorConfigError as error:
        raise CommandError(f"bad monitor config: {error.summary}", EXIT_BAD_INPUT) from None
    from driftline.streams.worker import run_worker

    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(message)s")
    return run_worker(settings)


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the embedded stack with synthetic traffic."""
    from driftline.demo import run_demo

    settings = settings_from_args(args)
    return run_demo(settings, duration=args.duration)


def cmd_topics_create(args: argparse.Namespace) -> int:
    """Create the driftline topics."""
    from driftline.kafka import TopicError, create_topics

    settings = settings_from_args(args)
    if settings.embedded_broker:
        raise CommandError(
            "DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS is empty: the embedded broker creates its topics "
            "when a worker starts; set it to create topics on a running broker",
            EXIT_BAD_INPUT,
        )
    try:
        result = create_topics(settings, settings.kafka_bootstrap_servers)
    except TopicError as error:
        raise CommandError(str(error)) from None
    for name, state in sorted(result.items()):
        print(f"{name}\t{state}")
    return 0


def register(add: Callable[..., argparse.ArgumentParser], commands: Any) -> None:
    """Add ``broker``, ``worker``, ``demo`` and ``topics create`` to the parser."""
    broker = add("broker", cmd_broker, "run the embedded Kafka-protocol broker (tansu)")
    broker.add_argument("--port", type=int, default=9092, help="port on 127.0.0.1 (default 9092)")
    worker = add("worker", cmd_worker, "run the ingest worker (Faust) and the monitors")
    worker.add_argument(
        "--monitors",
        type=Path,
        default=None,
        help="folder of monitor YAML files (default: DRIFTLINE_MONITORS_DIR)",
    )
    demo = add("demo", cmd_demo, "the whole loop on the embedded stack with synthetic traffic")
    demo.add_argument(
        "--duration", type=float, default=90.0, help="seconds of traffic (default 90)"
    )
    topics = commands.add_parser("topics", help="Kafka topics").add_subparsers(
        dest="topics_command", required=True, metavar="ACTION"
    )
    add("create", cmd_topics_create, "create the driftline topics", topics)
