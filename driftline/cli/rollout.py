"""The ``driftline rollout status|start|abort`` commands.

``start`` makes a registered version the model's challenger in ``shadow`` or ``canary``
mode (a version a person trained, or one rejected before), replacing a running
rollout; ``abort`` rejects the running challenger now. Both write status rows (through
the owner worker's ``/store`` pages when one runs) and publish the ``model_version``
events. ``status`` prints the champion and the challenger of each model (or of one).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import orjson

from .common import CommandError, settings_from_args
from .models import change_status

__all__ = ["cmd_rollout_abort", "cmd_rollout_start", "cmd_rollout_status", "register"]


def cmd_rollout_status(args: argparse.Namespace) -> int:
    """Print one line (or JSON object) per model: champion, challenger, mode, share."""
    from driftline.retrainer.registry import ModelRegistry
    from driftline.store import StoreError, reading_store

    settings = settings_from_args(args)
    try:
        with reading_store(settings) as store:
            registry = ModelRegistry(store)
            records = registry.versions(args.model_id)
            models = sorted({record.model_id for record in records})
            rows = [(m, registry.champion(m), registry.challenger(m)) for m in models]
            judged = {m: _last_judged(store, m) for m, _, c in rows if c is not None}
    except StoreError as error:
        raise CommandError(str(error)) from None
    if args.model_id is not None and not rows:
        print(f"model {args.model_id!r} has no registered version", file=sys.stderr)
    out = sys.stdout.buffer
    for model_id, champion, challenger in rows:
        state = {
            "model_id": model_id,
            "champion": champion.version if champion else None,
            "challenger": challenger.version if challenger else None,
            "mode": challenger.status if challenger else None,
            "traffic": challenger.traffic if challenger else None,
            "since": challenger.updated_at if challenger else None,
        }
        last = judged.get(model_id)
        if challenger is not None and last is not None and last["challenger"] == challenger.version:
            state.update(
                {k: last[k] for k in ("window_start", "phase", "estimate", "lower", "upper", "n")}
            )
        if args.json:
            out.write(orjson.dumps(state) + b"\n")
        elif challenger is None:
            out.write(f"{model_id}\tchampion={state['champion']}\tno rollout\n".encode())
        else:
            evidence = (
                f"\td={state['estimate']:+.4f} in [{state['lower']:+.4f}, {state['upper']:+.4f}]"
                f" n={state['n']} after the window of {state['window_start']}"
                if "estimate" in state
                else "\tno window judged yet"
            )
            out.write(
                f"{model_id}\tchampion={state['champion']}\tchallenger={challenger.version}"
                f"\t{challenger.status}\ttraffic={challenger.traffic:g}{evidence}\n".encode()
            )
    out.flush()
    return 0


def _last_judged(store: Any, model_id: str) -> dict[str, Any] | None:
    """The newest window the monitor judged for the model's rollout, or ``None``."""
    from driftline.store import StoreError

    hexed = model_id.encode().hex()
    try:
        rows = store.query(
            "SELECT challenger, phase, estimate, lower, upper, toInt64(n) AS n, "
            "formatDateTime(window_start, '%Y-%m-%dT%H:%i:%SZ', 'UTC') AS window_start "
            f"FROM rollout_windows FINAL WHERE model_id = unhex('{hexed}') "
            "ORDER BY rollout_windows.window_start DESC LIMIT 1"
        )
    except StoreError:  # a store migrated before rollouts existed
        return None
    return dict(rows[0]) if rows else None


def cmd_rollout_start(args: argparse.Namespace) -> int:
    """Make a version the challenger in shadow or canary mode and publish it."""
    from driftline.retrainer.registry import ModelRegistry

    def change(store: Any) -> list[Any]:
        return ModelRegistry(store).start_rollout(
            args.model_id, args.version, args.mode, args.traffic
        )

    return change_status(args, change, "rollout")


def cmd_rollout_abort(args: argparse.Namespace) -> int:
    """Reject the running challenger now and publish it."""
    from driftline.retrainer.registry import ModelRegistry

    def change(store: Any) -> list[Any]:
        return [ModelRegistry(store).abort_rollout(args.model_id, "aborted by hand")]

    return change_status(args, change, "aborted")


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"a canary share lies in (0, 1), not {value:g}")
    return value


def register(add: Callable[..., argparse.ArgumentParser], commands: Any) -> None:
    """Add ``rollout status|start|abort`` to the ``driftline`` parser."""
    rollout = commands.add_parser("rollout", help="shadow and canary rollouts").add_subparsers(
        dest="rollout_command", required=True, metavar="ACTION"
    )
    status = add("status", cmd_rollout_status, "champion and challenger per model", rollout)
    status.add_argument("--model-id", default=None, help="only this model")
    status.add_argument("--json", action="store_true", help="one JSON object per model")
    start = add("start", cmd_rollout_start, "make a version the challenger", rollout)
    start.add_argument("--model-id", required=True)
    start.add_argument("--version", required=True)
    start.add_argument("--mode", required=True, choices=["shadow", "canary"])
    start.add_argument(
        "--traffic", type=_share, default=0.05, help="canary: the share it serves (default 0.05)"
    )
    abort = add("abort", cmd_rollout_abort, "reject the running challenger now", rollout)
    abort.add_argument("--model-id", required=True)
