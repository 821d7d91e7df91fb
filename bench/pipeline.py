"""End-to-end benchmark of the streaming monitor: tansu + one worker process + chDB.

Run: ``.venv/bin/python bench/pipeline.py [--rows N] [--single-rows M] [--batch B]
[--no-labels]``

Prints:

* batched: from the first event produced to the last window's metrics in ClickHouse
  (``prediction_batch`` messages of ``--batch`` rows and ``feedback_batch`` messages
  with a label for every prediction, 10 numeric features, 1-minute windows, all on
  one partition as the SDK keys by model): predictions/s, and rows/s counting the
  labels too; per stream also when the predictions were all stored and the worker's
  CPU time;
* single events: the same with one ``prediction``/``feedback`` message per row;
* alert latency: from producing the event that moves the watermark past a drifted
  window's end + allowed lateness to the alert read from ``<prefix>.alerts``.

The worker runs with its defaults but a 0.2 s monitor interval and 0.2 s ingest flush.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from backtest_streams import _lines, monitor_yaml, simulate

from driftline.backtest import reference_profile
from driftline.broker import EmbeddedBroker, free_port
from driftline.kafka import create_topics
from driftline.settings import Settings
from driftline.store.remote import WorkerReader

WINDOW = 60.0
T0 = 1_767_225_600.0


def _wait(probe: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = probe()
        except Exception:  # the worker may not answer yet
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def _clock(at: float, model_id: str) -> bytes:
    """A prediction of ``model_id`` far ahead: each model has its own clock, so only a
    prediction of the same model closes its last windows."""
    return orjson.dumps(
        {
            "type": "prediction",
            "event_id": f"clock-{model_id}-{at}",
            "model_id": model_id,
            "model_version": "v1",
            "timestamp": at,
            "features": {},
            "prediction": 0,
        }
    )


def _health(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
        return dict(orjson.loads(answer.read()))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_stream(
    producer: Producer,
    reader: WorkerReader,
    topics: Any,
    model: str,
    rows: int,
    batch: int | None,
    start: float,
    worker_pid: int,
    labels: bool = True,
) -> tuple[float, float]:
    """Produce a stream of ``model``; return (predictions/s, rows/s with the labels) until
    its last window's metrics exist."""
    n_windows = 10
    stream = simulate(
        n_windows=n_windows,
        per_window=rows // n_windows,
        window_seconds=WINDOW,
        model_id=model,
        id_prefix=f"{model}-",
        start=start,
    )
    preds, feedback = _lines(stream, batch)
    cpu0 = _cpu_seconds(worker_pid)
    t0 = time.perf_counter()
    for line in preds:
        producer.produce(topics.predictions, line, key=model.encode())
        producer.poll(0)
    for line in feedback if labels else ():
        producer.produce(topics.feedback, line, key=model.encode())
        producer.poll(0)
    producer.produce(
        topics.predictions, _clock(start + (n_windows + 1) * WINDOW + 10, model), key=model.encode()
    )
    producer.flush(60)
    produced = time.perf_counter() - t0
    n_labels = int(stream.labelled.sum()) if labels else 0
    milestones = _milestones(reader, model, stream.rows, n_labels, n_windows, t0)
    expected = _expected_coverage(stream, start, n_windows) if labels else None
    if expected is not None:
        # the metrics count only once every window's latest revision has all its labels
        _wait(lambda: _coverage(reader, model) == expected, 600, f"{model} labels in metrics")
    total = time.perf_counter() - t0
    cpu = _cpu_seconds(worker_pid) - cpu0
    print(
        f"  {model}: produced {produced:.2f}s, predictions stored {milestones['p']:.2f}s, "
        f"labels stored {milestones['f']:.2f}s, every window's first metrics "
        f"{milestones['w']:.2f}s, with all labels {total:.2f}s; worker CPU {cpu:.2f}s "
        f"({(stream.rows + n_labels) / cpu:,.0f} rows per CPU second)"
    )
    return stream.rows / total, (stream.rows + n_labels) / total


def _milestones(
    reader: WorkerReader, model: str, rows: int, labels: int, windows: int, t0: float
) -> dict[str, float]:
    """Seconds since ``t0`` at which the predictions (``p``), the labels (``f``) were
    stored and every window had metrics (``w``), polled every 20 ms."""
    targets = {"p": rows, "f": labels, "w": windows}
    reached: dict[str, float] = {}
    deadline = time.monotonic() + 600
    while len(reached) < len(targets):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out; reached only {sorted(reached)}")
        found = reader.query(
            f"SELECT (SELECT count() FROM predictions WHERE model_id = '{model}') AS p, "
            f"(SELECT count() FROM feedback WHERE model_id = '{model}') AS f, "
            "(SELECT uniqExact(window_start) FROM window_metrics "
            f"WHERE model_id = '{model}') AS w"  # constants of this script
        )[0]
        now = time.perf_counter() - t0
        for key, target in targets.items():
            if key not in reached and int(found[key]) >= target:
                reached[key] = now
        time.sleep(0.02)
    return reached


def _expected_coverage(stream: Any, start: float, n_windows: int) -> list[float]:
    """Label coverage of each window once all of its labels are in."""
    window = ((stream.timestamps - start) // WINDOW).astype(int)
    return [round(float(stream.labelled[window == w].mean()), 6) for w in range(n_windows)]


def _coverage(reader: WorkerReader, model: str) -> list[float]:
    rows = reader.query(
        "SELECT window_start, argMax(label_coverage, revision) AS c FROM window_metrics "
        f"WHERE model_id = '{model}' AND label_coverage IS NOT NULL "  # a constant here
        "GROUP BY window_start ORDER BY window_start"
    )
    return [round(float(row["c"]), 6) for row in rows]


def alert_latency(
    producer: Producer, reader: WorkerReader, topics: Any, bootstrap: str, repeat: int
) -> list[float]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex}",
            "auto.offset.reset": "latest",
        }
    )
    consumer.subscribe([topics.alerts])
    while not consumer.assignment():
        consumer.poll(0.2)
    latencies = []
    base = T0 + 3600.0
    for i in range(repeat):
        model = f"alert{i}"
        stream = simulate(
            n_windows=2,
            per_window=2000,
            window_seconds=WINDOW,
            model_id=model,
            id_prefix=f"{model}-",
            start=base,
            mean_shift={"x3": (1, 1.0)},
        )
        preds, _ = _lines(stream, 1000)
        for line in preds:
            producer.produce(topics.predictions, line, key=b"credit")
        producer.flush(30)
        _wait(lambda m=model: _stored(reader, m), 60, "rows")
        t0 = time.perf_counter()
        producer.produce(topics.predictions, _clock(base + 2 * WINDOW + 10, model), key=b"credit")
        producer.flush(10)
        while True:
            message = consumer.poll(0.05)
            if (
                message is not None
                and not message.error()
                and orjson.loads(message.value())["model_id"] == model
            ):
                latencies.append(time.perf_counter() - t0)
                break
            if time.perf_counter() - t0 > 60:
                raise SystemExit("no alert within 60 s")
        base += 3600.0
    consumer.close()
    return latencies


def _stored(reader: WorkerReader, model: str) -> bool:
    rows = reader.query(f"SELECT count() AS n FROM predictions WHERE model_id = '{model}'")
    return int(rows[0]["n"]) >= 4000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--single-rows", type=int, default=30_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--alerts", type=int, default=3)
    parser.add_argument(
        "--no-labels", action="store_true", help="predictions only (drift monitoring alone)"
    )
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="driftline-bench-"))
    monitors = folder / "monitors"
    monitors.mkdir()
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap_servers
        prefix = f"bench{uuid.uuid4().hex[:6]}"
        port = free_port()
        settings = Settings(
            kafka_bootstrap_servers=bootstrap, topic_prefix=prefix, partitions=1, data_dir=folder
        )
        create_topics(settings, bootstrap)
        models = ["batched", "single"] + [f"alert{i}" for i in range(args.alerts)]
        ref = simulate(n_windows=1, per_window=5000, window_seconds=WINDOW, id_prefix="ref-")
        ref_path = folder / "ref.jsonl"
        ref_path.write_bytes(b"\n".join(_lines(ref, 1000)[0]) + b"\n")
        text = monitor_yaml(ref, window="1m", allowed_lateness="10s")
        (folder / "credit.yaml").write_text(text)
        profile = reference_profile(folder / "credit.yaml", ref_path)[1]
        profiles = []
        for model in models:
            monitor = monitors / f"{model}.yaml"
            monitor.write_text(text.replace("model_id: credit", f"model_id: {model}"))
            profiles.append(profile.model_copy(update={"model_id": model}))
        env = {
            **os.environ,
            "DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "DRIFTLINE_TOPIC_PREFIX": prefix,
            "DRIFTLINE_PARTITIONS": "1",
            "DRIFTLINE_DATA_DIR": str(folder / "data"),
            "DRIFTLINE_WORKER_WEB_PORT": str(port),
            "DRIFTLINE_INGEST_FLUSH_SECONDS": "0.2",
            "DRIFTLINE_MONITOR_INTERVAL_SECONDS": os.environ.get("BENCH_TICK", "0.2"),
            "DRIFTLINE_MONITORS_DIR": str(monitors),
            "DRIFTLINE_LOG_LEVEL": "WARNING",
            "DRIFTLINE_QUERY_TOKEN": secrets.token_urlsafe(16),
        }
        env.pop("DRIFTLINE_CLICKHOUSE_URL", None)
        log = open(folder / "worker.log", "wb")  # noqa: SIM115
        worker = subprocess.Popen(
            [sys.executable, "-m", "driftline.cli", "worker"], env=env, stdout=log, stderr=log
        )
        reader = WorkerReader(port, token=env["DRIFTLINE_QUERY_TOKEN"])
        try:
            _wait(lambda: reader.query("SELECT 1 AS x"), 60, "the worker")
            for profile in profiles:
                reader.save_profile(profile.to_json())
            producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
            topics = settings.topics
            # the worker consumes both ingest topics before anything is produced
            wanted = {f"{topics.predictions}:0", f"{topics.feedback}:0"}
            _wait(lambda: wanted <= set(_health(port).get("assigned", [])), 60, "assignment")
            batched = run_stream(
                producer,
                reader,
                topics,
                "batched",
                args.rows,
                args.batch,
                T0,
                worker.pid,
                not args.no_labels,
            )
            single = run_stream(
                producer,
                reader,
                topics,
                "single",
                args.single_rows,
                None,
                T0 + 1200,
                worker.pid,
                not args.no_labels,
            )
            latencies = alert_latency(producer, reader, topics, bootstrap, args.alerts)
        finally:
            worker.terminate()
            worker.wait(30)
            log.close()
    for name, (predictions, rows) in (
        (f"batched ({args.batch} rows/message, {args.rows} predictions)", batched),
        (f"single events ({args.single_rows} predictions)", single),
    ):
        print(
            f"{name}: {predictions:,.0f} predictions/s; {rows:,.0f} rows/s "
            "counting predictions and labels"
        )
    print(
        "alert latency (watermark past window end + lateness -> alert on Kafka): "
        + ", ".join(f"{x:.2f}s" for x in latencies)
    )


if __name__ == "__main__":
    main()
