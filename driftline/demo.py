"""``driftline demo``: the whole loop on the embedded stack, in one command.

What it runs, all on this machine: the tansu broker; a ``driftline worker`` process
that owns the chDB store under the data directory and monitors the ``credit`` model;
a ``driftline retrainer`` process that reaches the store through the worker; and, in
this process, a synthetic credit-scoring service. The service trains the first model
(an MLP, on CPU) at start and registers it as champion ``v1``, then serves
predictions with whatever champion a :class:`~driftline.sdk.ModelSubscriber` holds,
and logs predictions and labels through the SDK. Part-way, ``income`` shifts
(covariate drift) and later the true labels stop following the old rule (concept
drift); a few malformed messages go to the DLQ. The monitor raises alerts and asks
for retrains; the retrainer trains candidates on the recent labelled windows, scores
them against the champion on the same holdout, and registers the better one as the
**challenger** (safe rollout, ``rollout:`` in the monitor config): it scores traffic
in shadow, then serves a canary share, and the monitor promotes it on live evidence;
the subscriber swaps it in while traffic flows, and the served accuracy recovers. At
the start a challenger trained on the opposite rule is put in shadow by hand: the
monitor rejects it on the labels while ``v1`` keeps serving.

Event time runs faster than wall time: every monitor window is one minute of event
time, sent in ``duration / windows`` seconds. The demo ends with a summary, an HTML
report (``report.html`` in the data directory) and exit code 0 when the loop closed
(a retrained champion was served), 1 otherwise.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from .broker import EmbeddedBroker, free_port
from .kafka import client_config, create_topics
from .lifeline import die_with_parent
from .settings import Settings
from .store.remote import WorkerReader, running_worker, worker_health

__all__ = ["DemoPlan", "DemoResult", "monitor_text", "run_demo", "synthetic_window"]

MODEL_ID = "credit"
FEATURES = {"income": "numeric", "age": "numeric", "debt_ratio": "numeric", "region": "categorical"}
REGIONS = np.array(["north", "south", "east", "west"])
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z, event time of the first window
WINDOW_SECONDS = 60.0
FIRST_VERSION = "v1"


@dataclass(frozen=True)
class DemoPlan:
    """How much synthetic traffic the demo sends and where the drift starts.

    Windows before ``training_windows`` are the first model's training data (sent
    as traffic too); ``income`` shifts from ``covariate_shift_from`` and the labels
    flip from ``concept_change_from``.

    Examples
    --------
    >>> plan = DemoPlan(windows=24, events_per_window=1500)
    >>> plan.training_windows, plan.covariate_shift_from, plan.concept_change_from
    (4, 8, 12)
    """

    windows: int = 24
    events_per_window: int = 1500

    @property
    def training_windows(self) -> int:
        """Windows the first model is trained on."""
        return max(2, self.windows // 6)

    @property
    def covariate_shift_from(self) -> int:
        """First window where ``income`` is shifted by 0.75 standard deviations."""
        return self.windows // 3

    @property
    def concept_change_from(self) -> int:
        """First window where the true labels no longer follow the first model's rule."""
        return self.windows // 2


def synthetic_window(plan: DemoPlan, window: int, seed: int = 7) -> dict[str, Any]:
    """Features, the rule's predictions and scores, and labels of one window (seeded).

    ``predictions``/``scores`` are those of the generating rule (a stand-in model for
    traffic generators); the demo itself serves a trained model's predictions.

    Examples
    --------
    >>> data = synthetic_window(DemoPlan(windows=12, events_per_window=100), 0)
    >>> len(data["event_ids"]), sorted(data["features"])
    (100, ['age', 'debt_ratio', 'income', 'region'])
    """
    rng = np.random.default_rng([seed, window])
    n = plan.events_per_window
    shift = 0.75 if window >= plan.covariate_shift_from else 0.0
    income = rng.normal(50.0 + 15.0 * shift, 15.0, n)
    age = rng.normal(40.0, 10.0, n)
    debt_ratio = rng.beta(2.0, 5.0, n)
    region = REGIONS[rng.integers(0, len(REGIONS), n)]
    logit = 0.08 * (income - 50.0) - 6.0 * (debt_ratio - 0.28)
    score = 1.0 / (1.0 + np.exp(-logit))
    truth_logit = logit if window < plan.concept_change_from else -logit
    labels = (rng.random(n) < 1.0 / (1.0 + np.exp(-2.0 * truth_logit))).astype(int)
    times = START + window * WINDOW_SECONDS + np.sort(rng.random(n)) * WINDOW_SECONDS
    return {
        "event_ids": [f"w{window}-{i}" for i in range(n)],
        "timestamps": times,
        "features": {"income": income, "age": age, "debt_ratio": debt_ratio, "region": region},
        "predictions": (score >= 0.5).astype(int),
        "scores": score,
        "labels": labels,
    }


def monitor_text(plan: DemoPlan) -> str:
    """The demo's monitor config (YAML): one-minute windows, retrains on critical alerts.

    Examples
    --------
    >>> from driftline.schemas.monitor import MonitorConfig
    >>> config = MonitorConfig.from_yaml(monitor_text(DemoPlan()))
    >>> config.model_id, config.retrain.on, config.training.promotion_margin
    ('credit', ('performance', 'data_drift'), 0.02)
    """
    features = ", ".join(f"{name}: {kind}" for name, kind in FEATURES.items())
    rows = plan.events_per_window
    return f"""\
model_id: {MODEL_ID}
task: binary_classification
features: {{{features}}}
window: 1m
allowed_lateness: 5s
drift: {{min_samples: 200}}
performance: {{metric: accuracy, warning_drop: 0.05, critical_drop: 0.10, min_labels: 200}}
alerting: {{consecutive_windows: 1, cooldown: 10m}}
retrain:
  on: [performance, data_drift]
  severity: critical
  min_labelled_rows: {rows // 2}
  cooldown: 3m
training:
  max_epochs: 40
  patience: 5
  holdout_fraction: 0.25
  promotion_margin: 0.02
  min_rows: {rows // 2}
card:
  owner: driftline demo
  intended_use: scoring synthetic credit applications for the demo
  limitations: [trained on synthetic data only]
rollout:
  mode: shadow
  margin: 0.02
  min_labels: 200
  canary_steps: [0.5, 1.0]
  max_duration: 8m
  watch_after_promotion: 2m
  # a challenger retrained after the labels flipped disagrees with the champion on most
  # requests, by design: only the labels can judge it here
  guardrails: {{latency_p95_ratio: 3.0, disagreement_rate: 1.0}}
"""


# --------------------------------------------------------------------------- processes


def _start(
    command: Sequence[str], settings: Settings, bootstrap: str, env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    full_env = {
        **os.environ,
        "DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DRIFTLINE_TOPIC_PREFIX": settings.topic_prefix,
        "DRIFTLINE_DATA_DIR": str(settings.data_dir),
        "DRIFTLINE_LOG_LEVEL": "INFO",
        **env,
    }
    full_env.pop("DRIFTLINE_CLICKHOUSE_URL", None)
    with open(log, "ab") as out:
        # Own session: Ctrl-C reaches the demo only, whose ``finally`` stops the
        # retrainer, the worker and then the broker in that order. die_with_parent:
        # if the demo is SIGKILLed (no ``finally`` runs) the kernel kills the child
        # too. Called from the demo's main thread, which lives as long as the demo.
        return subprocess.Popen(
            [sys.executable, "-m", "driftline.cli", *command],
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.2)


# --------------------------------------------------------------------------- the service


def _dataset(plan: DemoPlan, windows: range) -> Any:
    from .retrainer.dataset import LabelledDataset

    parts = [synthetic_window(plan, w) for w in windows]
    features = {
        name: np.concatenate([p["features"][name] for p in parts]).astype(
            object if kind == "categorical" else np.float64
        )
        for name, kind in FEATURES.items()
    }
    return LabelledDataset(
        features=features,
        labels=np.concatenate([p["labels"] for p in parts]).astype(str),
        timestamps=np.concatenate([p["timestamps"] for p in parts]),
        event_ids=np.array([e for p in parts for e in p["event_ids"]]),
    )


@dataclass
class DemoResult:
    """What happened during one demo run (printed in the summary).

    Examples
    --------
    >>> DemoResult().served_versions
    []
    """

    alerts: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    versions: list[dict[str, Any]] = field(default_factory=list)
    swaps: list[tuple[int, str]] = field(default_factory=list)
    #: (window, served version, accuracy of the served predictions on the labels).
    served: list[tuple[int, str, float]] = field(default_factory=list)

    @property
    def served_versions(self) -> list[str]:
        """Versions that served traffic, in order."""
        seen: list[str] = []
        for _, version, _ in self.served:
            if version not in seen:
                seen.append(version)
        return seen


class _EventTap:
    """Reads alerts, retrain requests and model versions as the demo goes."""

    def __init__(self, settings: Settings, bootstrap: str) -> None:
        from confluent_kafka import Consumer

        topics = settings.topics
        self.kinds = {
            topics.alerts: "alert",
            topics.retrain_requests: "retrain request",
            topics.model_versions: "model version",
        }
        self.consumer = Consumer(
            {
                **client_config(settings, bootstrap),
                "group.id": f"{settings.topic_prefix}-demo-{os.getpid()}-{time.time_ns()}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        self.consumer.subscribe(list(self.kinds))

    def drain(self, result: DemoResult, wait: float = 0.0) -> None:
        deadline = time.monotonic() + wait
        while True:
            message = self.consumer.poll(max(0.0, min(0.1, deadline - time.monotonic())))
            if message is None:
                if time.monotonic() >= deadline:
                    return
                continue
            value, topic = message.value(), message.topic()
            if message.error() or value is None or topic is None:
                continue
            event = orjson.loads(value)
            kind = self.kinds[topic]
            if kind == "alert":
                result.alerts.append(event)
                print(
                    f"    ALERT   {event['severity']:<8} {event['kind']:<16} "
                    f"{event.get('feature') or '-':<12} window "
                    f"{_window_of(event['window_start'])} {event['statistic']}="
                    f"{event['value']:.3f} (threshold {event['threshold']:.3f}) "
                    f"[{event['model_version']}]",
                    flush=True,
                )
            elif kind == "retrain request":
                result.requests.append(event)
                print(
                    f"    RETRAIN requested for {event['model_version']} on windows "
                    f"{_window_of(event['data_from'])}-{_window_of(event['data_to']) - 1} "
                    f"({len(event['reason'])} alert(s))",
                    flush=True,
                )
            else:
                result.versions.append(event)
                metrics = ", ".join(f"{k} {v:.3f}" for k, v in sorted(event["metrics"].items()))
                print(
                    f"    VERSION {event['version']} {event['status']}"
                    + (f" ({metrics})" if metrics else ""),
                    flush=True,
                )

    def close(self) -> None:
        self.consumer.close()


def _window_of(when: Any) -> int:
    """The demo window of an event's time (RFC 3339 text or epoch seconds)."""
    if isinstance(when, str):
        when = datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp()
    return int((float(when) - START) // WINDOW_SECONDS)


#: Timings of one window's batch per model; the fastest is its latency (as ``timeit``).
LATENCY_REPEATS = 3


def _timed_predict(model: Any, features: Any, events: int) -> tuple[Any, float]:
    """A model's predictions of one window's batch and its latency per event in ms: the
    fastest of :data:`LATENCY_REPEATS` timings, so that a stall of a loaded machine in
    one of them does not make the latency guardrail judge the machine, not the model."""
    best = math.inf
    predicted: Any = None
    for _ in range(LATENCY_REPEATS):
        started = time.perf_counter()
        predicted = model.predict(features)
        best = min(best, time.perf_counter() - started)
    return predicted, best * 1000.0 / max(1, events)


def _serve_window(
    plan: DemoPlan, window: int, subscriber: Any, logger: Any, feedback: Any
) -> tuple[str, float, str]:
    """Serve one window as the rollout says, log predictions (and shadow ones) and labels.

    Returns the champion's version, the accuracy of what was served, and a note on the
    challenger (``""`` without one).
    """
    from .sdk import share_of

    data = synthetic_window(plan, window)
    features = data["features"]
    snapshot = subscriber.snapshot()  # one read: champion and challenger together
    version = str(snapshot.event.version)
    predicted, latency_ms = _timed_predict(snapshot.model, features, len(data["event_ids"]))
    labels_out = predicted.labels.astype(str)
    scores = predicted.class_scores("1")
    served_by = np.full(len(labels_out), version, dtype=object)
    served_labels, served_scores = labels_out.copy(), scores.copy()
    shadow_of: str | None = None
    challenger_labels: Any = None
    other_ms = latency_ms
    note = ""
    rollout = snapshot.challenger_event
    if rollout is not None:
        other, other_ms = _timed_predict(snapshot.challenger, features, len(data["event_ids"]))
        challenger_labels = other.labels.astype(str)
        if rollout.status == "canary":
            share = float(rollout.traffic or 0.0)
            routed = np.array([share_of(e) < share for e in data["event_ids"]], dtype=bool)
            served_by[routed] = rollout.version
            served_labels[routed] = challenger_labels[routed]
            served_scores[routed] = other.class_scores("1")[routed]
            note = f"{rollout.version} canary serves {routed.mean():.0%}"
        else:
            shadow_of = str(rollout.version)
            note = f"{rollout.version} in shadow"
    labels = [str(v) for v in data["labels"]]
    for i, event_id in enumerate(data["event_ids"]):
        own = served_by[i] == version
        logger.log(
            event_id,
            {
                "income": float(features["income"][i]),
                "age": float(features["age"][i]),
                "debt_ratio": float(features["debt_ratio"][i]),
                "region": str(features["region"][i]),
            },
            str(served_labels[i]),
            timestamp=float(data["timestamps"][i]),
            score=float(served_scores[i]),
            latency_ms=latency_ms if own else other_ms,
            model_version=str(served_by[i]),
            shadow=None if shadow_of is None else {shadow_of: str(challenger_labels[i])},
        )
        feedback.log(event_id, labels[i], timestamp=float(data["timestamps"][i]) + 30.0)
    accuracy = float(np.mean(served_labels == np.array(labels)))
    return version, accuracy, note


def _start_bad_challenger(settings: Settings, bootstrap: str, plan: DemoPlan, monitor: Any) -> str:
    """Train a challenger on labels that follow the opposite rule (as if trained on data
    from after a change that has not happened) and start its rollout in shadow."""
    from .card_data import PROFILE_FILE, refresh_card
    from .retrainer.artifact import ArtifactStore
    from .retrainer.cards import label_balance, training_run
    from .retrainer.profiling import training_profile
    from .retrainer.registry import ModelRegistry, VersionRecord
    from .retrainer.training import train_model
    from .retrainer.worker import KafkaPublisher
    from .store import writing_store

    version = "v1-wrong-rule"
    right = _dataset(plan, range(plan.training_windows))
    train = replace(right, labels=np.where(right.labels == "1", "0", "1"))
    model, report = train_model(train, monitor)
    profile = training_profile(model, train, monitor, version)
    uri = ArtifactStore(settings.artifacts_dir).save(
        model, MODEL_ID, version, {}, files={PROFILE_FILE: profile.to_json()}, replace=True
    )
    now = time.time()
    record = VersionRecord(
        model_id=MODEL_ID,
        version=version,
        parent_version=FIRST_VERSION,
        artifact_uri=str(uri),
        status="candidate",
        created_at=now,
        updated_at=now,
        decision="trained by hand on the wrong rule: to be judged live",
        train_rows=len(train),
        device=str(report.device),
    )
    store = writing_store(settings.model_copy(update={"kafka_bootstrap_servers": bootstrap}))
    try:
        registry = ModelRegistry(store)
        registry.record(record)
        changed = registry.start_rollout(MODEL_ID, version, "shadow")
        run = training_run(monitor, None, report, report.seconds)
        for row in changed:  # its model card, as the retrainer writes one
            refresh_card(
                store,
                row,
                settings.artifacts_dir,
                monitor=monitor,
                training=run if row.version == version else None,
                label_balance=label_balance(train, monitor) if row.version == version else None,
            )
    finally:
        store.close()
    publish = KafkaPublisher(settings, bootstrap)
    for row in changed:
        publish(row.to_event())
    return version


def _send_bad_messages(bootstrap: str, settings: Settings) -> int:
    from confluent_kafka import Producer

    producer = Producer(client_config(settings, bootstrap))
    bad = [
        b'{"type": "prediction", "event_id": ',
        orjson.dumps({"type": "prediction", "event_id": "x", "model_id": MODEL_ID}),
        b'{"type": "feedback", "event_id": "y", "model_id": "credit",'
        b' "timestamp": 1767225600, "label": NaN}',
    ]
    for value in bad:
        producer.produce(settings.topics.predictions, value)
    producer.flush(10)
    return len(bad)


def _register_first_model(
    settings: Settings, bootstrap: str, plan: DemoPlan, monitor: Any
) -> tuple[str, float]:
    """Train ``v1`` on the first windows and register it as champion (through the worker)."""
    from .retrainer.artifact import ArtifactStore
    from .retrainer.training import train_model
    from .retrainer.worker import KafkaPublisher, Retrainer
    from .store import writing_store

    train = _dataset(plan, range(plan.training_windows))
    started = time.perf_counter()
    model, report = train_model(train, monitor)
    seconds = time.perf_counter() - started
    store = writing_store(settings.model_copy(update={"kafka_bootstrap_servers": bootstrap}))
    try:
        retrainer = Retrainer(
            store,
            {MODEL_ID: monitor},
            ArtifactStore(settings.artifacts_dir),
            KafkaPublisher(settings, bootstrap),
        )
        retrainer.register_initial(
            model, monitor, FIRST_VERSION, train, seconds=seconds, device=str(report.device)
        )
    finally:
        store.close()
    return str(report.device), seconds


def _window_accuracy(reader: WorkerReader) -> list[tuple[int, str, float | None, float | None]]:
    """Accuracy and label coverage per closed window, latest revision, from the monitor."""
    rows = reader.query(
        "SELECT toUnixTimestamp64Micro(window_start) AS s, model_version AS v, "
        "argMax(value, revision) AS value, argMax(label_coverage, revision) AS coverage "
        f"FROM window_metrics WHERE model_id = '{MODEL_ID}' AND metric = 'accuracy' "
        "AND segment = '' "
        "GROUP BY s, v ORDER BY s, v"
    )
    return [
        (
            int((int(r["s"]) / 1e6 - START) // WINDOW_SECONDS),
            str(r["v"]),
            None if r["value"] is None else float(r["value"]),
            None if r["coverage"] is None else float(r["coverage"]),
        )
        for r in rows
    ]


def _summary(
    reader: WorkerReader, result: DemoResult, plan: DemoPlan, sent: int, bad: int, port: int
) -> bool:
    state = worker_health(port) or {}
    stored = reader.query(
        f"SELECT count() AS n FROM predictions FINAL WHERE model_id = '{MODEL_ID}'"
    )
    print("driftline demo: summary")
    print(
        f"  events      {stored[0]['n']} predictions stored (sent {sent}), "
        f"{state.get('feedback_rows', 0)} labels; DLQ {state.get('dead_letters')} "
        f"(sent {bad} malformed)"
    )
    print("  monitor     accuracy per closed window (latest revision; label coverage):")
    for window, version, value, coverage in _window_accuracy(reader):
        marks = []
        if window == plan.covariate_shift_from:
            marks.append("income shifts")
        if window == plan.concept_change_from:
            marks.append("labels flip")
        shown = "-" if value is None else f"{value:.3f}"
        cover = "-" if coverage is None else f"{coverage:.0%}"
        print(
            f"    window {window:>3} {version:<14} accuracy {shown} ({cover})"
            + (f"  <- {', '.join(marks)}" if marks else "")
        )
    kinds: dict[str, int] = {}
    for alert in result.alerts:
        key = f"{alert['kind']}/{alert['severity']}"
        kinds[key] = kinds.get(key, 0) + 1
    print(f"  alerts      {len(result.alerts)}: " + ", ".join(f"{k} {n}" for k, n in kinds.items()))
    print(f"  retrains    {len(result.requests)} requested")
    versions = {}
    for event in result.versions:
        versions[event["version"]] = event
    for version, event in versions.items():
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in sorted(event["metrics"].items()))
        print(f"    {version:<16} {event['status']:<9} {metrics}")
    decisions = reader.query(
        "SELECT version, status, decision FROM model_versions FINAL "
        f"WHERE model_id = '{MODEL_ID}' AND startsWith(decision, 'rollout ') "
        "ORDER BY updated_at"
    )
    for row in decisions:
        print(f"  rollout     {row['version']} {row['status']}: {row['decision']}")
    for window, version in result.swaps:
        print(f"  swap        serving {version} from window {window}")
    before = [
        a for w, v, a in result.served if v == FIRST_VERSION and w >= plan.concept_change_from
    ]
    after = [a for w, v, a in result.served if v != FIRST_VERSION]
    if before:
        print(
            f"  served      {FIRST_VERSION} after the labels flipped: "
            f"accuracy {np.mean(before):.3f}"
        )
    if after:
        print(f"  served      retrained champion: accuracy {np.mean(after):.3f}")
    return bool(after)


def run_demo(settings: Settings, duration: float = 90.0, windows: int = 24) -> int:
    """Run the demo; return the process exit code (0 when a retrained champion served)."""
    from .report_data import write_report
    from .schemas.monitor import MonitorConfig
    from .sdk import FeedbackLogger, ModelSubscriber, PredictionLogger

    plan = DemoPlan(windows=windows)
    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    monitors = data_dir / "monitors"
    monitors.mkdir(exist_ok=True)
    (monitors / f"{MODEL_ID}.yaml").write_text(monitor_text(plan))
    monitor = MonitorConfig.from_yaml(monitors / f"{MODEL_ID}.yaml")
    print(f"driftline demo: data directory {data_dir}")
    broker = worker = retrainer = None
    bootstrap = settings.kafka_bootstrap_servers
    result = DemoResult()
    closed = False
    try:
        if settings.embedded_broker:
            broker = EmbeddedBroker(log_file=data_dir / "broker.log").start()
            bootstrap = broker.bootstrap_servers
        print(f"  broker      {bootstrap}" + (" (embedded tansu)" if broker else ""))
        create_topics(settings, bootstrap)
        port = free_port()
        worker = _start(
            ["worker", "--monitors", str(monitors)],
            settings,
            bootstrap,
            {
                "DRIFTLINE_WORKER_WEB_PORT": str(port),
                "DRIFTLINE_MONITOR_INTERVAL_SECONDS": "0.5",
                "DRIFTLINE_LATE_DATA_CHECK_SECONDS": "2",
            },
            data_dir / "worker.log",
        )
        _wait(lambda: worker_health(port) is not None, 90, "the worker")
        print(f"  worker      pid {worker.pid}, store {data_dir} (chDB), monitors {monitors}")
        device, seconds = _register_first_model(settings, bootstrap, plan, monitor)
        print(
            f"  model       {MODEL_ID} {FIRST_VERSION} trained on windows 0-"
            f"{plan.training_windows - 1} ({device}, {seconds:.1f}s) and registered as champion"
        )
        retrainer = _start(
            ["retrainer", "--monitors", str(monitors)],
            settings,
            bootstrap,
            {},
            data_dir / "retrainer.log",
        )
        print(f"  retrainer   pid {retrainer.pid} (store through the worker)")
        tap = _EventTap(settings, bootstrap)
        subscriber = ModelSubscriber(MODEL_ID, bootstrap, topic_prefix=settings.topic_prefix)
        subscriber.start()
        if not subscriber.wait_for_version(FIRST_VERSION, timeout=60):
            raise RuntimeError(f"the subscriber did not load {FIRST_VERSION}")
        wrong = _start_bad_challenger(settings, bootstrap, plan, monitor)
        print(
            f"  rollout     {wrong} (trained on the opposite rule) starts in shadow: the"
            " monitor should reject it while v1 keeps serving"
        )
        _wait(
            lambda: subscriber.challenger is not None and subscriber.challenger.version == wrong,
            60,
            "the subscriber to load the shadow challenger",
        )
        bad = _send_bad_messages(bootstrap, settings)
        print(
            f"  traffic     {plan.windows} one-minute windows x {plan.events_per_window} events"
            f" over {duration:.0f}s; income shifts from window {plan.covariate_shift_from},"
            f" labels flip from window {plan.concept_change_from}"
        )

        logger = PredictionLogger(
            MODEL_ID, FIRST_VERSION, bootstrap_servers=bootstrap, settings=settings
        )
        feedback = FeedbackLogger(MODEL_ID, bootstrap_servers=bootstrap, settings=settings)
        pace = duration / plan.windows
        started = time.monotonic()
        sent = 0
        for window in range(plan.windows):
            version, accuracy, note = _serve_window(plan, window, subscriber, logger, feedback)
            sent += plan.events_per_window
            if result.served and result.served[-1][1] != version:
                result.swaps.append((window, version))
                print(f"    SWAP    the subscriber serves {version} now", flush=True)
            result.served.append((window, version, accuracy))
            health = worker_health(port) or {}
            print(
                f"  window {window:>3}/{plan.windows} served by {version:<14} accuracy "
                f"{accuracy:.3f} | stored {health.get('prediction_rows', 0):>6} predictions "
                f"{health.get('feedback_rows', 0):>6} labels" + (f" | {note}" if note else ""),
                flush=True,
            )
            tap.drain(result, wait=max(0.0, started + (window + 1) * pace - time.monotonic()))
        logger.close(30)  # the producers go now, before the broker does
        feedback.close(30)
        del logger, feedback
        _wait(
            lambda: (worker_health(port) or {}).get("prediction_rows", 0) >= sent,
            120,
            "every event to be stored",
        )
        pending = {r["request_id"] for r in result.requests}
        deadline = time.monotonic() + 90
        while pending - {v.get("request_id") for v in result.versions}:
            if time.monotonic() > deadline:
                print("  (a retrain did not finish within 90 s; see retrainer.log)")
                break
            tap.drain(result, wait=0.5)
        tap.close()
        subscriber.stop()
        reader = WorkerReader.for_worker(running_worker(data_dir) or {"web_port": port})
        closed = _summary(reader, result, plan, sent, bad, port)
        report = write_report(reader, MODEL_ID, data_dir / "report.html")
        print(f"  report      {report}")
        print(f"  models      driftline models list --json --data-dir {data_dir}")
        print(f"  card        driftline models card --model-id {MODEL_ID} --data-dir {data_dir}")
    finally:
        _stop(retrainer)
        _stop(worker)
        if broker is not None:
            broker.stop()
    if not closed:
        print("driftline demo: the loop did not close (no retrained champion served)")
        return 1
    print("driftline demo: done")
    return 0
