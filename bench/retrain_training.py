"""Benchmark of the retrainer's training core (no Kafka, no store).

Run: ``.venv/bin/python bench/retrain_training.py [--rows N] [--features K] [--device D]``

Builds N labelled rows x K numeric features of a synthetic binary task (a noisy
non-linear rule), splits off the newest 20 % as the holdout, trains the built-in
MLP with the default options (``--max-epochs``/``--batch-size`` to change them)
and prints rows, epochs, seconds, rows/s (training rows x epochs per second) and
the holdout accuracy next to the majority baseline.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch
from driftline.retrainer import LabelledDataset, score_predictions
from driftline.retrainer.training import TrainingOptions, train_mlp
from driftline.schemas.monitor import MonitorConfig


def synthetic(rows: int, features: int, seed: int = 0) -> LabelledDataset:
    """A binary task: the sign of a linear term plus an interaction, with 10 % label noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features))
    weights = rng.normal(size=features)
    logit = x @ weights / np.sqrt(features) + 0.8 * x[:, 0] * x[:, 1]
    label = (logit > 0) ^ (rng.random(rows) < 0.1)
    return LabelledDataset(
        features={f"f{i:02d}": x[:, i] for i in range(features)},
        labels=np.where(label, "1", "0"),
        timestamps=np.arange(rows, dtype=np.float64),
        event_ids=np.array([f"e{i:07d}" for i in range(rows)]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--no-mixed-precision", action="store_true")
    args = parser.parse_args()

    monitor = MonitorConfig(
        model_id="bench", features={f"f{i:02d}": "numeric" for i in range(args.features)}
    )
    changes = {"max_epochs": args.max_epochs, "batch_size": args.batch_size}
    options = TrainingOptions(
        device=args.device,
        mixed_precision=not args.no_mixed_precision,
        **{k: v for k, v in changes.items() if v is not None},
    )
    data = synthetic(args.rows, args.features)
    train, holdout = data.time_split(0.2)

    started = time.perf_counter()
    model, report = train_mlp(train, monitor, options)
    seconds = time.perf_counter() - started
    score = score_predictions(model.predict(holdout.features), holdout, monitor)
    majority = max(float(np.mean(holdout.labels == c)) for c in ("0", "1"))

    print(
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs"
    )
    print(f"options: {options.model_dump(exclude={'device'})}")
    print(f"rows: {len(data)} ({report.train_rows} train, {report.validation_rows} validation,")
    print(f"      {len(holdout)} holdout) x {args.features} features")
    print(
        f"device: {report.device}, precision: {report.precision}, epochs: {report.epochs_run} "
        f"(best {report.best_epoch}, early stop: {report.stopped_early})"
    )
    print(f"seconds: {seconds:.2f} (train_mlp, including preprocessing)")
    print(f"rows/s: {report.train_rows * report.epochs_run / seconds:,.0f} (row-epochs per second)")
    print(f"holdout accuracy: {score.metrics['accuracy']:.4f} (majority baseline {majority:.4f})")


if __name__ == "__main__":
    main()
