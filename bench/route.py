"""Benchmark of the ingest's routing: decode, bounds, and the checks against monitors.

Run: ``.venv/bin/python bench/route.py [--rows 5000] [--messages 20] [--repeat 9]``

Prints rows/s of :func:`route_messages` (best of ``--repeat`` runs, one process) for
prediction and feedback batches, without a monitor and with one that declares the
features and the task (labels and feature types are then checked), and the ratio of
the two, measured in the same run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import orjson
from driftline.schemas.monitor import MonitorConfig
from driftline.streams.ingest import RawMessage, route_messages

from driftline.store.rows import KafkaPosition

NOW = 1_767_225_600.0


def _messages(rows: int, count: int, kind: str) -> list[RawMessage]:
    rng = np.random.default_rng(0)
    out = []
    for index in range(count):
        ids = [f"m{index}-{i}" for i in range(rows)]
        times = (NOW - 3600 + rng.random(rows) * 3000).tolist()
        if kind == "prediction":
            event = {
                "type": "prediction_batch",
                "model_id": "credit",
                "model_version": "v1",
                "event_ids": ids,
                "timestamps": times,
                "features": {
                    **{f"x{k}": rng.normal(size=rows).tolist() for k in range(8)},
                    "region": rng.choice(["eu", "us", "apac"], rows).tolist(),
                    "channel": rng.choice(["web", "app"], rows).tolist(),
                },
                "predictions": rng.integers(0, 2, rows).tolist(),
                "scores": rng.random(rows).tolist(),
            }
        else:
            event = {
                "type": "feedback_batch",
                "model_id": "credit",
                "event_ids": ids,
                "timestamps": times,
                "labels": rng.integers(0, 2, rows).tolist(),
            }
        out.append(RawMessage(orjson.dumps(event), KafkaPosition("p", 0, index)))
    return out


def _best(
    messages: list[RawMessage], monitors: dict[str, MonitorConfig] | None, repeat: int
) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        outcome = route_messages(messages, 1 << 26, now=NOW, monitors=monitors)
        best = min(best, time.perf_counter() - started)
        assert not outcome.dead_letters, outcome.dead_letters[0].error
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    features = {f"x{k}": "numeric" for k in range(8)}
    features.update(region="categorical", channel="categorical")
    monitor = MonitorConfig.from_mapping(
        {"model_id": "credit", "task": "binary_classification", "features": features}
    )
    total = args.rows * args.messages
    print(f"route_messages: {args.messages} messages x {args.rows} rows, best of {args.repeat}")
    for kind in ("prediction", "feedback"):
        messages = _messages(args.rows, args.messages, kind)
        plain = _best(messages, None, args.repeat)
        checked = _best(messages, {"credit": monitor}, args.repeat)
        print(
            f"  {kind + '_batch':<17} no monitor {total / plain:>11,.0f} rows/s   "
            f"checked {total / checked:>11,.0f} rows/s   speed ratio {plain / checked:.3f}"
        )


if __name__ == "__main__":
    main()
