"""What every ``driftline`` command shares: exit codes, the one-line error, settings."""

from __future__ import annotations

import argparse
from typing import Any

from pydantic import ValidationError

from driftline.settings import Settings

__all__ = ["EXIT_BAD_INPUT", "CommandError", "positive_int", "settings_from_args"]

#: Exit code for bad input: a bad file, config, query or argument.
EXIT_BAD_INPUT = 2


class CommandError(Exception):
    """A failure to report as one line on stderr with a non-zero exit code.

    Examples
    --------
    >>> CommandError("bad monitor config: m.yaml: window", EXIT_BAD_INPUT).code
    2
    """

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def settings_from_args(args: argparse.Namespace, **overrides: Any) -> Settings:
    """The settings of a command: the environment, ``--data-dir`` and ``overrides``; a bad
    value is a :class:`CommandError` naming its variable."""
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


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1.

    Examples
    --------
    >>> positive_int("48")
    48
    """
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text!r}")
    return value
