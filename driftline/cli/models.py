"""The ``driftline retrainer`` and ``driftline models list|promote|rollback`` commands.

``models list`` reads ``model_versions`` through the worker that owns an embedded
store (its read-only ``/query`` page) or directly; ``promote`` and ``rollback``
write status rows (through the owner worker's ``/store`` pages when one runs),
give the new champion its reference profile from its artifact when the store has
none for it yet, and publish the matching ``model_version`` events.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from .common import EXIT_BAD_INPUT, CommandError, settings_from_args

__all__ = [
    "change_status",
    "cmd_models_list",
    "cmd_models_promote",
    "cmd_models_rollback",
    "cmd_retrainer",
    "cost_text",
    "refresh_cards",
    "register",
]


def cmd_retrainer(args: argparse.Namespace) -> int:
    """Consume retrain requests: train, challenge, register and publish versions."""
    from driftline.retrainer.worker import load_monitors, run_retrainer
    from driftline.schemas.monitor import MonitorConfigError
    from driftline.store import StoreError

    overrides = {} if args.monitors is None else {"monitors_dir": args.monitors}
    settings = settings_from_args(args, **overrides)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(message)s")
    try:
        monitors = load_monitors(settings.monitors_dir)
    except (MonitorConfigError, ValueError, OSError) as error:
        raise CommandError(f"bad monitor config: {error}", EXIT_BAD_INPUT) from None
    try:
        return run_retrainer(settings, monitors)
    except StoreError as error:
        raise CommandError(str(error)) from None


def cmd_models_list(args: argparse.Namespace) -> int:
    """Print one JSON object per model version (its latest state)."""
    from driftline.retrainer.registry import ModelRegistry
    from driftline.store import StoreError, reading_store

    settings = settings_from_args(args)
    try:
        with reading_store(settings) as store:
            records = ModelRegistry(store).versions(args.model_id)
    except StoreError as error:
        if "model_versions" in str(error) and "exist" in str(error).lower():
            records = []  # no migrated store yet: no versions
        else:
            raise CommandError(str(error)) from None
    if args.model_id is not None and not records and not args.json:
        print(f"model {args.model_id!r} has no registered version", file=sys.stderr)
    out = sys.stdout.buffer
    for record in records:
        if args.json:
            out.write(orjson.dumps(record.model_dump(mode="json")) + b"\n")
        else:
            metrics = " ".join(f"{k}={v:.4g}" for k, v in sorted(record.metrics.items()))
            line = (
                f"{record.model_id}\t{record.version}\t{record.status}\t{metrics}"
                f"\t{cost_text(record)}\n"
            )
            out.write(line.encode())
    out.flush()
    return 0


def cost_text(record: Any) -> str:
    """What training a version cost, in a few words (empty when it was not trained here).

    Examples
    --------
    >>> from driftline.retrainer.registry import VersionRecord
    >>> cost_text(VersionRecord(model_id="m", version="v2", artifact_uri="file:///a",
    ...     status="champion", created_at=0.0, updated_at=0.0, training_seconds=42.0,
    ...     cpu_seconds=80.5, gpu_seconds=42.0, device="cuda:0", train_rows=9000,
    ...     holdout_rows=1000, bytes_read=2_500_000))
    'trained 42s on cuda:0 (cpu 80.5s, gpu 42s), 10000 rows, 2.5 MB read'
    """
    if not record.training_seconds and not record.train_rows:
        return ""
    return (
        f"trained {record.training_seconds:.3g}s on {record.device or '?'} "
        f"(cpu {record.cpu_seconds:.3g}s, gpu {record.gpu_seconds:.3g}s), "
        f"{record.train_rows + record.holdout_rows} rows, {record.bytes_read / 1e6:.3g} MB read"
    )


def change_status(args: argparse.Namespace, change: Callable[[Any], list[Any]], what: str) -> int:
    """Run ``change`` (registry writes returning the rows written) on the writing store,
    publish a ``model_version`` event per row, and print one line each."""
    from driftline.retrainer.registry import RegistryError
    from driftline.retrainer.worker import KafkaPublisher, resolve_bootstrap
    from driftline.store import StoreError, writing_store

    settings = settings_from_args(args)
    try:
        bootstrap = resolve_bootstrap(settings)
        store = writing_store(settings)
        try:
            records = change(store)
            refresh_cards(store, records, settings)
        finally:
            store.close()
        publish = KafkaPublisher(settings, bootstrap)
        for record in records:
            publish(record.to_event())
    except RegistryError as error:
        raise CommandError(str(error), EXIT_BAD_INPUT) from None
    except StoreError as error:
        raise CommandError(str(error)) from None
    for record in records:
        print(f"{what}: {record.model_id} {record.version} is {record.status}")
    return 0


def refresh_cards(store: Any, records: list[Any], settings: Any) -> None:
    """Rewrite the model cards of versions whose status changed (those whose artifact
    directory is this machine's); a card that cannot be written is only a warning."""
    from driftline.card_data import refresh_card
    from driftline.schemas.monitor import MonitorConfigError, load_monitors

    try:
        monitors = load_monitors(settings.monitors_dir)
    except MonitorConfigError:
        monitors = {}
    for record in records:
        try:
            refresh_card(
                store, record, settings.artifacts_dir, monitor=monitors.get(record.model_id)
            )
        except Exception as error:  # the status change itself is done
            print(f"warning: cannot write the card of {record.version}: {error}", file=sys.stderr)


def cmd_models_card(args: argparse.Namespace) -> int:
    """Print the model card of a version (default: the champion), or two side by side."""
    from driftline.card_data import card_for
    from driftline.cards import card_html, card_markdown, cards_diff
    from driftline.retrainer.registry import ModelRegistry
    from driftline.schemas.monitor import MonitorConfigError, load_monitors
    from driftline.store import StoreError, reading_store

    settings = settings_from_args(args)
    try:
        monitor = load_monitors(settings.monitors_dir).get(args.model_id)
    except MonitorConfigError:
        monitor = None
    try:
        with reading_store(settings) as store:
            registry = ModelRegistry(store)
            versions = {r.version: r for r in registry.versions(args.model_id)}
            if not versions:
                raise CommandError(
                    f"model {args.model_id!r} has no registered version", EXIT_BAD_INPUT
                )
            wanted = list(args.diff) if args.diff else [args.version]
            if wanted == [None]:
                champion = registry.champion(args.model_id)
                wanted = [champion.version if champion else list(versions)[-1]]
            unknown = [v for v in wanted if v not in versions]
            if unknown:
                raise CommandError(
                    f"model {args.model_id!r} has no version {unknown[0]!r} (it has: "
                    f"{', '.join(list(versions)[-10:])})",
                    EXIT_BAD_INPUT,
                )
            cards = [
                card_for(
                    store,
                    versions[v],
                    monitor=monitor,
                    artifacts_root=settings.artifacts_dir,
                )
                for v in wanted
            ]
    except StoreError as error:
        raise CommandError(str(error)) from None
    if args.diff:
        text = cards_diff(cards[0], cards[1])
    elif args.format == "json":
        text = cards[0].model_dump_json(indent=2) + "\n"
    elif args.format == "html":
        text = card_html(cards[0])
    else:
        text = card_markdown(cards[0])
    sys.stdout.write(text)
    return 0


def cmd_models_promote(args: argparse.Namespace) -> int:
    """Make a version the champion and publish it."""
    from driftline.retrainer.registry import ModelRegistry
    from driftline.retrainer.worker import publish_version_profile

    def change(store: Any) -> list[Any]:
        promoted = ModelRegistry(store).promote(args.model_id, args.version)
        publish_version_profile(store, promoted)  # the monitors' reference for its traffic
        return [promoted]

    return change_status(args, change, "promoted")


def cmd_models_rollback(args: argparse.Namespace) -> int:
    """Roll the champion back to its parent (or ``--to``) and publish both changes."""
    from driftline.retrainer.registry import ModelRegistry
    from driftline.retrainer.worker import publish_version_profile

    def change(store: Any) -> list[Any]:
        done = ModelRegistry(store).rollback(args.model_id, args.to)
        publish_version_profile(store, done.restored)  # a restored rejected version has none
        return [done.rolled_back, done.restored]

    return change_status(args, change, "rollback")


def register(add: Callable[..., argparse.ArgumentParser], commands: Any) -> None:
    """Add ``retrainer`` and ``models list|promote|rollback`` to the ``driftline`` parser."""
    retrainer = add("retrainer", cmd_retrainer, "train and publish new versions on requests")
    retrainer.add_argument(
        "--monitors",
        type=Path,
        default=None,
        help="folder of monitor YAML files (default: DRIFTLINE_MONITORS_DIR)",
    )
    models = commands.add_parser("models", help="the model registry").add_subparsers(
        dest="models_command", required=True, metavar="ACTION"
    )
    listing = add("list", cmd_models_list, "one line (or JSON object) per version", models)
    listing.add_argument("--model-id", default=None, help="only this model")
    listing.add_argument("--json", action="store_true", help="one JSON object per version")
    card = add("card", cmd_models_card, "a version's model card (md, html or json)", models)
    card.add_argument("--model-id", required=True)
    card.add_argument("--version", default=None, help="default: the champion")
    card.add_argument("--format", choices=("md", "html", "json"), default="md")
    card.add_argument(
        "--diff", nargs=2, metavar=("V1", "V2"), default=None, help="two versions side by side"
    )
    promote = add("promote", cmd_models_promote, "make a version the champion", models)
    promote.add_argument("--model-id", required=True)
    promote.add_argument("--version", required=True)
    rollback = add("rollback", cmd_models_rollback, "restore the previous champion", models)
    rollback.add_argument("--model-id", required=True)
    rollback.add_argument(
        "--to", default=None, help="version to restore (default: the champion's parent)"
    )
