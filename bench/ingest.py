"""Ingest throughput on the embedded stack (tansu + chDB), one run, figures and ratios.

Measures, each over messages produced beforehand and counted from the first
message handled to the last one stored (so group joins are not counted):

* rows/s stored by a ``driftline worker`` process for ``prediction_batch``
  messages (1,000 rows x 10 features each) and for single ``prediction`` messages;
* the raw aiokafka consume rate of the same single-event topic;
* the rate of an empty Faust agent (``take_events`` doing nothing) on that topic,
  on the same event loop as the worker (uvloop when installed).

Run: ``.venv/bin/python bench/ingest.py [--batches 300] [--singles 60000] [--repeat 3]``

Each run uses fresh topics; the medians of the runs are reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import orjson
from confluent_kafka import Producer

from driftline.broker import EmbeddedBroker, free_port
from driftline.kafka import create_topics
from driftline.settings import Settings
from driftline.store.remote import worker_health

T0 = 1_767_225_600
FEATURES = [f"f{j}" for j in range(10)]


def batch_messages(count: int, rows: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    messages = []
    for k in range(count):
        values = rng.normal(size=(len(FEATURES), rows))
        messages.append(
            orjson.dumps(
                {
                    "type": "prediction_batch",
                    "model_id": "bench",
                    "model_version": "v1",
                    "event_ids": [f"b{k}-{i}" for i in range(rows)],
                    "timestamps": (T0 + (k * rows + np.arange(rows)) * 0.001).tolist(),
                    "features": {name: values[j].tolist() for j, name in enumerate(FEATURES)},
                    "predictions": rng.integers(0, 2, rows).tolist(),
                    "scores": rng.random(rows).tolist(),
                }
            )
        )
    return messages


def single_messages(count: int, seed: int = 1) -> list[bytes]:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(count, len(FEATURES)))
    return [
        orjson.dumps(
            {
                "type": "prediction",
                "event_id": f"s{i}",
                "model_id": "bench",
                "model_version": "v1",
                "timestamp": T0 + i * 0.001,
                "features": dict(zip(FEATURES, values[i].tolist(), strict=True)),
                "prediction": int(i % 2),
                "score": 0.5,
            }
        )
        for i in range(count)
    ]


def produce(bootstrap: str, topic: str, messages: list[bytes]) -> None:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "message.max.bytes": 10_000_000,
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    for i, message in enumerate(messages):
        while True:
            try:
                producer.produce(topic, message, key=str(i % 64).encode())
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(120):
        raise SystemExit(f"could not produce to {topic}")


def worker_rate(bootstrap: str, prefix: str, rows: int, data_dir: Path) -> float:
    """Rows/s stored by a worker process that finds ``rows`` rows waiting."""
    port = free_port()
    env = {
        **os.environ,
        "DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DRIFTLINE_TOPIC_PREFIX": prefix,
        "DRIFTLINE_DATA_DIR": str(data_dir),
        "DRIFTLINE_WORKER_WEB_PORT": str(port),
        "DRIFTLINE_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "driftline.cli", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            state = worker_health(port)
            if state and int(state["prediction_rows"]) >= rows:  # type: ignore[call-overload]
                first = float(state["first_received"])  # type: ignore[arg-type]
                last = float(state["last_stored"])  # type: ignore[arg-type]
                return rows / (last - first)
            if process.poll() is not None:
                raise SystemExit(f"worker exited with {process.returncode}")
            time.sleep(0.2)
        raise SystemExit("worker did not store every row in time")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


async def _aiokafka_rate(bootstrap: str, topic: str, count: int) -> float:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bench-raw-{time.time_ns()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    seen = 0
    first = 0.0
    try:
        while seen < count:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batches.values():
                if records and not first:
                    first = time.perf_counter()
                seen += len(records)
        return count / (time.perf_counter() - first)
    finally:
        await consumer.stop()


EMPTY_AGENT = textwrap.dedent(
    """
    import sys, time, json, faust
    from driftline.streams.worker import use_uvloop
    use_uvloop()  # the same event loop as the worker, for a fair comparison
    bootstrap, topic, count, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    app = faust.App("bench-empty-" + str(time.time_ns()), broker="kafka://" + bootstrap,
        store="memory://", web_enabled=False, consumer_auto_offset_reset="earliest",
        broker_rebalance_timeout=5, broker_session_timeout=6, broker_heartbeat_interval=1,
        broker_max_poll_records=5000, stream_buffer_maxsize=10000, stream_wait_empty=False,
        topic_allow_declare=False, consumer_max_fetch_size=16 * 1024 * 1024)
    source = app.topic(topic, value_type=bytes, value_serializer="raw")
    state = {"seen": 0, "first": 0.0}

    @app.agent(source)
    async def empty(stream):
        async for events in stream.take_events(5000, within=0.5):
            if not state["first"]:
                state["first"] = time.time()
            state["seen"] += len(events)
            if state["seen"] >= count:
                with open(out, "w") as handle:
                    json.dump({"rate": count / (time.time() - state["first"])}, handle)
                raise SystemExit(0)

    app.finalize()
    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.execute_from_commandline()
    """
)


def empty_agent_rate(bootstrap: str, topic: str, count: int, folder: Path) -> float:
    script = folder / "empty_agent.py"
    script.write_text(EMPTY_AGENT)
    out = folder / "empty_agent.json"
    process = subprocess.Popen(
        [sys.executable, str(script), bootstrap, topic, str(count), str(out)],
        cwd=folder,  # Faust keeps its data folder in the working directory
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 600
        while not out.exists() or not out.read_text():
            if time.monotonic() > deadline:
                raise SystemExit("empty Faust agent did not finish")
            time.sleep(0.2)
        time.sleep(0.1)
        return float(json.loads(out.read_text())["rate"])
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def one_run(bootstrap: str, run: int, batches: int, singles: int, folder: Path) -> list[float]:
    """[batched rows/s, single rows/s, raw aiokafka msg/s, empty Faust msg/s] on fresh topics."""
    batched = Settings(topic_prefix=f"benchbatch{run}", partitions=4)
    single = Settings(topic_prefix=f"benchsingle{run}", partitions=4)
    create_topics(batched, bootstrap)
    create_topics(single, bootstrap)
    produce(bootstrap, batched.topics.predictions, batch_messages(batches, 1000, seed=run))
    produce(bootstrap, single.topics.predictions, single_messages(singles, seed=run + 100))
    raw = asyncio.run(_aiokafka_rate(bootstrap, single.topics.predictions, singles))
    empty = empty_agent_rate(bootstrap, single.topics.predictions, singles, folder)
    batched_rate = worker_rate(bootstrap, batched.topic_prefix, batches * 1000, folder / "b")
    single_rate = worker_rate(bootstrap, single.topic_prefix, singles, folder / "s")
    return [batched_rate, single_rate, raw, empty]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=300, help="batch messages of 1,000 rows")
    parser.add_argument("--singles", type=int, default=60_000, help="single-event messages")
    parser.add_argument("--repeat", type=int, default=3, help="runs; medians are reported")
    args = parser.parse_args()
    if args.singles < 20_000 or args.batches < 20:
        # rates are timed from the first take (5,000 messages) to the last row: a stream
        # that fits in a few takes gives meaningless figures
        parser.error("use at least 20,000 singles and 20 batches")
    runs = []
    with EmbeddedBroker() as broker:
        for run in range(args.repeat):
            with tempfile.TemporaryDirectory() as folder:
                figures = one_run(
                    broker.bootstrap_servers, run, args.batches, args.singles, Path(folder)
                )
            runs.append(figures)
            print(
                f"run {run + 1}: batched {figures[0]:,.0f} rows/s, single {figures[1]:,.0f} "
                f"rows/s, raw aiokafka {figures[2]:,.0f} msg/s, empty Faust {figures[3]:,.0f} "
                f"msg/s (single/empty {figures[1] / figures[3]:.0%})",
                flush=True,
            )
    batched_rate, single_rate, raw, empty = np.median(np.array(runs), axis=0)
    ratios = sorted(run[1] / run[3] for run in runs)
    print()
    print(
        f"medians over {args.repeat} runs ({args.batches} batch messages, {args.singles} singles)"
    )
    print(f"{'measure':<58}{'rate':>14}")
    print(
        f"{'worker, prediction_batch (1,000 rows x 10 features)':<58}{batched_rate:>10,.0f} rows/s"
    )
    print(f"{'worker, single prediction events':<58}{single_rate:>10,.0f} rows/s")
    print(f"{'raw aiokafka getmany, same single-event topic':<58}{raw:>10,.0f} msg/s")
    print(f"{'empty Faust agent (take_events), same topic':<58}{empty:>10,.0f} msg/s")
    print()
    print(f"batched vs target 250,000 rows/s: {batched_rate / 250_000:.2f}x")
    print(
        f"single-event vs empty Faust agent: {ratios[len(ratios) // 2]:.0%} median of runs "
        f"(range {ratios[0]:.0%}-{ratios[-1]:.0%}; target >= 70%)"
    )
    print(f"single-event vs raw aiokafka:      {single_rate / raw:.0%}")


if __name__ == "__main__":
    main()
