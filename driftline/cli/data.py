"""``driftline db``, ``reference load``, ``backtest`` and ``report``: the data commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from .common import EXIT_BAD_INPUT, CommandError, positive_int, settings_from_args

if TYPE_CHECKING:
    from driftline.detectors.profiles import ModelProfile
    from driftline.schemas.monitor import MonitorConfig

__all__ = [
    "cmd_backtest",
    "cmd_db_migrate",
    "cmd_db_query",
    "cmd_reference_load",
    "cmd_report",
    "reference_lines",
    "register",
    "threshold_lines",
]


def cmd_db_migrate(args: argparse.Namespace) -> int:
    """Apply pending migrations."""
    from driftline.store import StoreError, migrate, open_store

    settings = settings_from_args(args)
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
    from driftline.store import (
        ReadOnlyQueryError,
        StoreError,
        check_read_only,
        sandboxed_reader,
    )

    settings = settings_from_args(args)
    try:
        sql = check_read_only(args.sql)
        with sandboxed_reader(settings) as reader:
            rows = reader.query(sql)
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
    from driftline.backtest import BacktestInputError, run_backtest

    try:
        summary = run_backtest(args.monitor, args.reference, args.events, args.out)
    except BacktestInputError as error:
        raise CommandError(str(error), EXIT_BAD_INPUT) from None
    print(summary.model_dump_json(indent=2))
    return 0


def cmd_reference_load(args: argparse.Namespace) -> int:
    """Build a reference profile from a JSONL file and store it."""
    from driftline.backtest import BacktestInputError, reference_profile
    from driftline.store import StoreError, writing_store
    from driftline.store.profiles import save_profile
    from driftline.store.remote import worker_reader

    settings = settings_from_args(args)
    try:
        config, profile = reference_profile(args.monitor, args.file)
    except BacktestInputError as error:
        raise CommandError(str(error), EXIT_BAD_INPUT) from None
    try:
        reader = worker_reader(settings)
        if reader is not None:  # the worker's /reference page, with the query token
            reader.save_profile(profile.to_json())
        else:
            store = writing_store(settings)
            try:
                save_profile(store, profile)
            finally:
                store.close()
    except StoreError as error:
        raise CommandError(str(error)) from None
    print(
        f"stored the reference profile of {profile.model_id} {profile.model_version} "
        f"({len(profile.features)} features)"
    )
    for line in threshold_lines(config, profile) + reference_lines(profile):
        print(line)
    return 0


def reference_lines(profile: ModelProfile) -> list[str]:
    """What else the reference set up: segment slices, the multivariate model and the
    calibration of label-free estimation (nothing for a profile without them).

    Examples
    --------
    >>> from driftline.detectors import build_profile, fit_calibration
    >>> import numpy as np
    >>> profile = build_profile("m", "v1", features={"x": [0.0]}, kinds={"x": "numeric"})
    >>> rng = np.random.default_rng(0)
    >>> s = rng.random(2000)
    >>> cal = fit_calibration(s, rng.random(2000) < s)
    >>> reference_lines(profile.model_copy(update={"calibration": cal}))[0][:43]
    'estimation: calibration skipped (raw scores'
    """
    lines = []
    for key, values in profile.segments.items():
        shown = ", ".join(f"{v} ({part.n_rows} rows)" for v, part in values.items())
        lines.append(f"segments of {key}: {shown}")
    model = profile.multivariate
    if model is not None:
        warning, critical = model.levels(1_000)
        lines.append(
            f"multivariate drift: {len(model.components)} of {len(model.columns)} components "
            f"explain {model.explained:.0%} of the variance; reference error "
            f"{model.error_mean:.4g}; at 1,000 rows warning above {warning:.4g}, "
            f"critical above {critical:.4g}"
        )
    calibration = profile.calibration
    if calibration is not None:
        brier = ""
        if calibration.brier_isotonic is not None and calibration.brier_raw is not None:
            brier = (
                f"; cross-fitted Brier {calibration.brier_isotonic:.4f} isotonic vs"
                f" {calibration.brier_raw:.4f} raw"
            )
        how = (
            f"calibration kept (isotonic, {len(calibration.probabilities)} blocks"
            if calibration.kept
            else "calibration skipped (raw scores stand as probabilities"
        )
        lines.append(f"estimation: {how}, {calibration.n} labelled rows{brier})")
    return lines


def threshold_lines(config: MonitorConfig, profile: ModelProfile) -> list[str]:
    """The performance thresholds a window will be judged by, per metric, at the
    reference's median label count per window (``performance.min_labels`` when the
    reference has no windows' counts), so that a person sees them before the first
    window closes.

    Examples
    --------
    >>> from driftline.detectors import build_profile
    >>> from driftline.schemas.monitor import MonitorConfig
    >>> config = MonitorConfig(model_id="m", features={"x": "numeric"})
    >>> profile = build_profile("m", "v1", features={"x": [0.0] * 400},
    ...     kinds={"x": "numeric"}, predictions=[1] * 400, labels=[1] * 380 + [0] * 20,
    ...     window_starts=[0.0] * 400)
    >>> print(threshold_lines(config, profile)[1])  # doctest: +NORMALIZE_WHITESPACE
      accuracy: reference 0.9500 (n 400), no spread learned (1 window); at 400 labels
      per window warning below 0.8779, critical below 0.8529
    """
    from driftline.detectors import HIGHER_IS_BETTER, MIN_WINDOWS, alert_level, performance_drops

    reference = profile.reference_performance
    pc = config.performance
    if reference is None:
        return ["performance: the reference has no labels; no performance thresholds"]
    how = (
        "learned from the reference (threshold: auto)"
        if pc.threshold == "auto"
        else "fixed (threshold: fixed)"
    )
    lines = [f"performance thresholds, {how}:"]
    for metric, estimate in reference.metrics.items():
        if estimate.value is None:
            continue
        spread = profile.performance_spread.get(metric)
        n = spread.median_n if spread is not None and spread.median_n else pc.min_labels
        warning, critical = performance_drops(profile, config, metric, n)
        side = "below" if HIGHER_IS_BETTER.get(metric, True) else "above"
        if spread is None or spread.windows < MIN_WINDOWS:
            count = spread.windows if spread is not None else 0
            learned = f"no spread learned ({count} window{'s' if count != 1 else ''})"
        else:
            learned = f"spread {spread.tau:.4g} over {spread.windows} windows"
        lines.append(
            f"  {metric}: reference {estimate.value:.4f} (n {estimate.n}), {learned}; "
            f"at {n} labels per window warning {side} "
            f"{alert_level(metric, estimate.value, warning):.4f}, critical {side} "
            f"{alert_level(metric, estimate.value, critical):.4f}"
        )
    return lines


def cmd_report(args: argparse.Namespace) -> int:
    """Write the HTML report of one model."""
    from driftline.report_data import ReportError, report_command
    from driftline.store import StoreError

    settings = settings_from_args(args)
    try:
        out = report_command(settings, args.model_id, args.out, args.windows)
    except ReportError as error:
        raise CommandError(str(error), EXIT_BAD_INPUT) from None
    except StoreError as error:
        raise CommandError(str(error)) from None
    print(f"wrote the report of {args.model_id} to {out}")
    return 0


def register(add: Callable[..., argparse.ArgumentParser], commands: Any) -> None:
    """Add ``report``, ``backtest``, ``reference load`` and ``db migrate|query``."""
    report = add("report", cmd_report, "write a self-contained HTML report of one model")
    report.add_argument("--model-id", required=True, help="the model to report on")
    report.add_argument("--out", type=Path, required=True, help="HTML file to write")
    report.add_argument(
        "--windows", type=positive_int, default=48, help="most recent windows shown (default 48)"
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

    db = commands.add_parser("db", help="the ClickHouse store").add_subparsers(
        dest="db_command", required=True, metavar="ACTION"
    )
    add("migrate", cmd_db_migrate, "apply schema migrations", db)
    query = add("query", cmd_db_query, "run a read-only SQL query, one JSON object per row", db)
    query.add_argument(
        "sql", help="one SELECT (or WITH ... SELECT), SHOW TABLES or DESCRIBE statement"
    )
