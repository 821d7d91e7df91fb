"""The worker's web pages on the real embedded stack (tansu, a worker process, chDB):
tokens, the sandbox, bounds that leave ingest running, a prompt SIGTERM."""

from __future__ import annotations

import json
import signal
import stat
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer
from e2e_support import WorkerProcess, consume_all, wait_for

from driftline.store import ReadOnlyQueryError
from driftline.store.remote import WorkerReader
from driftline.store.sandbox import QueryBoundError

pytestmark = pytest.mark.e2e

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


def post(port: int, path: str, body: bytes, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=body, method="POST", headers=headers or {}
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def get(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def batch(prefix: str, rows: int) -> bytes:
    return orjson.dumps(
        {
            "type": "prediction_batch",
            "model_id": "credit",
            "model_version": "v1",
            "event_ids": [f"{prefix}-{i}" for i in range(rows)],
            "timestamps": [T0 + i for i in range(rows)],
            "features": {"income": [float(i) for i in range(rows)]},
            "predictions": [i % 2 for i in range(rows)],
        }
    )


def test_data_pages_need_the_token_and_open_pages_stay_open(
    worker_factory: Any, tmp_path: Any
) -> None:
    worker: WorkerProcess = worker_factory()
    port = worker.settings.worker_web_port
    token = worker.env["DRIFTLINE_QUERY_TOKEN"]
    sql = b"SELECT count() AS n FROM predictions"
    assert post(port, "/query", sql) == 401
    assert post(port, "/query", sql, {"Authorization": "Bearer wrong"}) == 401
    assert post(port, "/query", sql, {"X-Driftline-Token": "wrong"}) == 401
    assert post(port, "/query", sql, {"Authorization": f"Bearer {token}"}) == 200
    assert post(port, "/query", sql, {"X-Driftline-Token": token}) == 200
    # a forged reference profile is not accepted without the token
    forged = b'{"model_id": "credit", "model_version": "v1", "features": []}'
    assert post(port, "/reference", forged) == 401
    assert worker.scalar("SELECT count() FROM reference_profiles") == 0
    # the store pages take only the store token, which only worker.json holds
    assert post(port, "/store/query", b'{"sql": "SELECT 1", "parameters": {}}') == 403
    headers = {"X-Driftline-Token": token}
    assert (
        post(port, "/store/command", b'{"sql": "DROP TABLE alerts", "parameters": {}}', headers)
        == 403
    )
    # every store page: no token, or the query token, is refused
    for page in ("/store/query", "/store/command", "/store/insert/shadow_predictions"):
        assert post(port, page, b"{}") == 403, page
        assert post(port, page, b"{}", headers) == 403, page
    # open for health checks and Prometheus; Faust's own pages are off
    assert get(port, "/health") == 200
    assert get(port, "/metrics") == 200
    for path in ("/router/", "/table/", "/stats/", "/graph/"):
        assert get(port, path) == 404, path
    # worker.json holds the token, readable by its owner only
    marker = worker.settings.data_dir / "worker.json"
    assert stat.S_IMODE(marker.stat().st_mode) == 0o600
    assert json.loads(marker.read_text())["query_token"] == token


def test_the_page_refuses_what_reads_outside_the_database(worker_factory: Any) -> None:
    worker: WorkerProcess = worker_factory()
    for sql in (
        "SELECT * FROM file('/etc/passwd', 'LineAsString')",
        "SELECT * FROM file('/proc/self/environ', 'RawBLOB')",
        "SELECT * FROM url('http://127.0.0.1:9/', 'CSV', 'a String')",
        "SELECT file('/etc/passwd') AS f",
        "SELECT * FROM system.processes",
        "DROP TABLE predictions",
    ):
        with pytest.raises(ReadOnlyQueryError):
            worker.query(sql)
    assert worker.scalar("SELECT count() FROM predictions") == 0


def test_bounded_queries_fail_clearly_while_ingest_goes_on(
    worker_factory: Any, producer: Producer
) -> None:
    worker: WorkerProcess = worker_factory(
        query_max_seconds="30", query_max_memory_bytes="300000000"
    )
    port = worker.settings.worker_web_port
    with pytest.raises(QueryBoundError, match="DRIFTLINE_QUERY_MAX_RESULT_ROWS"):
        worker.query("SELECT * FROM system.numbers LIMIT 100000000000")
    with pytest.raises(QueryBoundError, match="DRIFTLINE_QUERY_MAX_MEMORY_BYTES"):
        worker.query("SELECT groupArray(number) AS a FROM numbers(500000000)")
    # a query that runs to its time bound: health answers and every row sent meanwhile is stored
    outcome: list[BaseException | None] = []
    patient = WorkerReader(port, timeout=120, token=worker.env["DRIFTLINE_QUERY_TOKEN"])

    def slow() -> None:
        try:
            patient.query("SELECT count() FROM system.numbers WHERE number % 7 = 3")
            outcome.append(None)
        except Exception as error:
            outcome.append(error)

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.5)  # let the slow query reach the worker (it then runs for 30 s)
    topic = worker.settings.topics.predictions
    for index in range(10):
        producer.produce(topic, batch(f"during{index}", 100), key=b"credit")
        assert get(port, "/health") == 200
    assert producer.flush(15) == 0
    wait_for(
        lambda: worker.scalar("SELECT count() FROM predictions FINAL"),
        lambda n: n == 1000,
        60,
        "the 1,000 rows sent during the query",
    )
    assert thread.is_alive(), "the rows were stored only after the slow query ended"
    thread.join(60)
    assert outcome and isinstance(outcome[0], QueryBoundError)
    assert "DRIFTLINE_QUERY_MAX_SECONDS" in str(outcome[0])


def test_sigterm_stops_a_worker_within_seconds_during_a_long_query(worker_factory: Any) -> None:
    # the grace is the bound on a stop: half the limit asserted below, on a loaded machine
    worker: WorkerProcess = worker_factory(query_max_seconds="600", shutdown_grace_seconds="5")
    reader = WorkerReader(
        worker.settings.worker_web_port, timeout=120, token=worker.env["DRIFTLINE_QUERY_TOKEN"]
    )
    errors: list[BaseException] = []

    def endless() -> None:
        try:
            reader.query("SELECT count() FROM system.numbers")
        except Exception as error:
            errors.append(error)

    thread = threading.Thread(target=endless, daemon=True)
    thread.start()
    wait_for(
        lambda: worker.health()["messages"] >= 0 and thread.is_alive(),
        bool,
        10,
        "the query to run",
    )
    time.sleep(1.0)  # the query has been running a while
    process = worker.process
    assert process is not None
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.wait(30)
    elapsed = time.monotonic() - started
    worker.process = None
    assert elapsed < 10, f"the worker took {elapsed:.1f} s to stop"
    thread.join(10)
    assert errors, "the query should have been cut off"


def test_an_event_from_a_wrong_clock_goes_to_the_dlq_and_moves_no_watermark(
    worker_factory: Any, producer: Producer, broker: Any
) -> None:
    worker: WorkerProcess = worker_factory()
    topics = worker.settings.topics
    now = time.time()
    good = orjson.loads(batch("now", 3))
    good["timestamps"] = [now - 60, now - 30, now - 1]
    future = orjson.loads(batch("future", 1))
    future["timestamps"] = [now + 30 * 86_400]
    for event in (good, future):
        producer.produce(topics.predictions, orjson.dumps(event), key=b"credit")
    assert producer.flush(15) == 0
    [letter] = consume_all(broker.bootstrap_servers, topics.dlq, 1, timeout=60)
    headers = dict(letter.headers())
    assert headers["driftline.error.class"] == b"timestamp_in_future"
    assert b"DRIFTLINE_MAX_FUTURE_SECONDS" in headers["driftline.error.message"]
    wait_for(
        lambda: worker.scalar("SELECT count() FROM predictions FINAL"),
        lambda n: n == 3,
        30,
        "the three good rows",
    )
    # the watermarks row is written after the predictions of its group
    newest = wait_for(
        lambda: worker.scalar("SELECT max(toUnixTimestamp(event_time)) FROM watermarks"),
        lambda value: float(value) > 0,
        30,
        "the partition's watermark",
    )
    assert now - 61 <= float(newest) <= now + 1
