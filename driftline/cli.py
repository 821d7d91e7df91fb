"""The ``driftline`` command line."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from .retrain_cli import register_retrain_commands
from .settings import Settings

__all__ = ["main"]

EXIT_BAD_INPUT = 2


class CommandError(Exception):
    """A failure to report as one line on stderr with a non-zero exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    values = dict(overrides)
    if getattr(args, "data_dir", None) is not None:
        values["data_dir"] = args.data_dir
    try:
        return Settings(**values)
    except ValidationError as error:
        problems = "; ".join(
            f"DRIFTLINE_{'_'.join(str(p) for p in item['loc']).upper()}: {item['msg']}"
            for item in error.errors(include_url=False)
        )
        raise CommandError(f"bad configuration: {problems}", EXIT_BAD_INPUT) from None


# --------------------------------------------------------------------------- commands


class _StopSignal(Exception):  # noqa: N818 - a signal, not an error
    """Raised by a signal handler to leave a blocking wait."""


def _raise_stop(signum: int, frame: Any) -> None:
    raise _StopSignal(signum)


def cmd_broker(args: argparse.Namespace) -> int:
    """Run the embedded broker until SIGINT/SIGTERM."""
    from .broker import EmbeddedBroker

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
    settings = _settings(args, **overrides)
    # Check the monitor configs before anything starts (the broker, topics, Faust): a
    # bad file is one line naming the file and the key or line, and exit code 2.
    try:
        load_monitors(settings.monitors_dir)
    except MonitorConfigError as error:
        raise CommandError(f"bad monitor config: {error.summary}", EXIT_BAD_INPUT) from None
    from driftline.streams.worker import run_worker

    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(message)s")
    return run_worker(settings)


def cmd_topics_create(args: argparse.Namespace) -> int:
    """Create the driftline topics."""
    from .kafka import TopicError, create_topics

    settings = _settings(args)
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


def cmd_db_migrate(args: argparse.Namespace) -> int:
    """Apply pending migrations."""
    from .store import StoreError, migrate, open_store

    settings = _settings(args)
    try:
        store = open_store(settings)
        try:
            applied = migrate(store, settings.raw_ttl_days)
        finally:
            store.close()
    except StoreError as error:
        raise CommandError(str(error)) from None
    print(f"applied migrations: {applied}" if applied else "schema is up to date")
    return 0


def cmd_db_query(args: argparse.Namespace) -> int:
    """Run one read-only query; print one JSON object per row."""
    from .store import ReadOnlyQueryError, StoreError, check_read_only, open_store
    from .store.remote import worker_reader
    from .store.sandbox import SqlSandbox

    settings = _settings(args)
    try:
        sql = check_read_only(args.sql)
        reader = worker_reader(settings)
        if reader is not None:  # the worker's page runs it in its sandbox
            rows = reader.query(sql)
        else:
            store = open_store(settings)
            try:
                sandbox = SqlSandbox(store, settings.query_bounds)
                try:
                    rows = sandbox.query(sql)
                finally:
                    sandbox.close()
            finally:
                store.close()
    except ReadOnlyQueryError as error:
        raise CommandError(f"refused: {error}", EXIT_BAD_INPUT) from None
    except StoreError as error:
        raise CommandError(str(error)) from None
    out = sys.stdout.buffer
    for row in rows:
        out.write(orjson.dumps(row) + b"\n")
    out.flush()
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    """Replay recorded events through the monitoring core."""
    from .backtest import BacktestInputError, run_backtest

    try:
        summary = run_backtest(args.monitor, args.reference, args.events, args.out)
    except BacktestInputError as error:
        raise CommandError(str(error), EXIT_BAD_INPUT) from None
    print(summary.model_dump_json(indent=2))
    return 0


def cmd_reference_load(args: argparse.Namespace) -> int:
    """Build a reference profile from a JSONL file and store it."""
    from .backtest import BacktestInputError, reference_profile
    from .store import StoreError, migrate, open_store
    from .store.profiles import save_profile
    from .store.remote import worker_reader

    settings = _settings(args)
    try:
        _, profile = reference_profile(args.monitor, args.file)
    except BacktestInputError as error:
        raise CommandError(str(error), EXIT_BAD_INPUT) from None
    try:
        reader = worker_reader(settings)
        if reader is not None:
            reader.save_profile(profile.to_json())
        else:
            store = open_store(settings)
            try:
                migrate(store, settings.raw_ttl_days)
                save_profile(store, profile)
            finally:
                store.close()
    except StoreError as error:
        raise CommandError(str(error)) from None
    print(
        f"stored the reference profile of {profile.model_id} {profile.model_version} "
        f"({len(profile.features)} features)"
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Write the HTML report of one model."""
    from .report_data import ReportError, report_command
    from .store import StoreError

    settings = _settings(args)
    try:
        out = report_command(settings, args.model_id, args.out, args.windows)
    except ReportError as error:
        raise CommandError(str(error), EXIT_BAD_INPUT) from None
    except StoreError as error:
        raise CommandError(str(error)) from None
    print(f"wrote the report of {args.model_id} to {out}")
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text!r}")
    return value


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the embedded stack with synthetic traffic."""
    from .demo import run_demo

    settings = _settings(args)
    return run_demo(settings, duration=args.duration)


# --------------------------------------------------------------------------- parser


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where embedded state lives (default: $DRIFTLINE_DATA_DIR or ./.driftline)",
    )
    parser = argparse.ArgumentParser(
        prog="driftline", description="Streaming monitoring of ML models in production."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, handler: Callable[[argparse.Namespace], int], help_text: str, parent: Any = None
    ) -> argparse.ArgumentParser:
        sub = (parent or commands).add_parser(name, parents=[common], help=help_text)
        sub.set_defaults(handler=handler)
        return sub

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
    report = add("report", cmd_report, "write a self-contained HTML report of one model")
    report.add_argument("--model-id", required=True, help="the model to report on")
    report.add_argument("--out", type=Path, required=True, help="HTML file to write")
    report.add_argument(
        "--windows", type=_positive_int, default=48, help="most recent windows shown (default 48)"
    )

    backtest = add("backtest", cmd_backtest, "replay JSONL events through the monitoring core")
    backtest.add_argument("--monitor", type=Path, required=True, help="monitor YAML")
    backtest.add_argument("--reference", type=Path, required=True, help="reference JSONL")
    backtest.add_argument("--events", type=Path, required=True, help="monitored JSONL")
    backtest.add_argument("--out", type=Path, required=True, help="output directory")

    reference = commands.add_parser("reference", help="reference profiles").add_subparsers(
        dest="reference_command", required=True, metavar="ACTION"
    )
    load = add("load", cmd_reference_load, "profile a reference JSONL file and store it", reference)
    load.add_argument("--monitor", type=Path, required=True, help="monitor YAML")
    load.add_argument("--file", type=Path, required=True, help="reference JSONL")

    topics = commands.add_parser("topics", help="Kafka topics").add_subparsers(
        dest="topics_command", required=True, metavar="ACTION"
    )
    add("create", cmd_topics_create, "create the driftline topics", topics)
    register_retrain_commands(add, commands)

    db = commands.add_parser("db", help="the ClickHouse store").add_subparsers(
        dest="db_command", required=True, metavar="ACTION"
    )
    add("migrate", cmd_db_migrate, "apply schema migrations", db)
    query = add("query", cmd_db_query, "run a read-only SQL query, one JSON object per row", db)
    query.add_argument(
        "sql", help="one SELECT (or WITH ... SELECT), SHOW TABLES or DESCRIBE statement"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``driftline`` console script."""
    args = _parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except CommandError as error:
        print(f"driftline: {error}", file=sys.stderr)
        return error.code
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
