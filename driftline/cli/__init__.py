"""The ``driftline`` command line: one module per command group.

- :mod:`.run`: ``broker``, ``worker``, ``demo``, ``topics create`` (the processes);
- :mod:`.data`: ``db migrate|query``, ``reference load``, ``backtest``, ``report``;
- :mod:`.models`: ``retrainer``, ``models list|promote|rollback``;
- :mod:`.rollout`: ``rollout status|start|abort``;
- :mod:`.common`: exit codes, the one-line :class:`~.common.CommandError`, settings.

Every failure a user can cause prints one line ``driftline: ...`` on stderr and exits
non-zero (2 for bad input).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import data, models, rollout, run
from .common import CommandError

__all__ = ["main"]


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

    run.register(add, commands)
    data.register(add, commands)
    models.register(add, commands)
    rollout.register(add, commands)
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
