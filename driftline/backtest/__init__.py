"""``driftline backtest``: replay recorded events through the monitoring core.

A thin shell (DESIGN §2): JSONL files in, the pure core of
:mod:`driftline.detectors` in the middle, JSONL/JSON files out. The streaming monitor
runs the same core, so its final metrics must equal the ones written here.

Inputs
    ``--monitor`` is the model's monitor YAML (its ``reference`` key is ignored: the
    ``--reference`` file is the reference). ``--reference`` and ``--events`` hold one
    DESIGN §3 event per line: ``prediction``, ``prediction_batch``, ``feedback`` and
    ``feedback_batch`` in any order. A file is accepted exactly when the ingest worker
    would ingest each of its lines as a Kafka message
    (:func:`driftline.schemas.codec.decode_ingest`, same size limit); a bad line stops the
    backtest (streaming sends it to the DLQ instead). The lines are decoded by
    :class:`driftline.schemas.jsonl.JsonlDecoder`: single events skip the event models
    when column-wise checks (:mod:`driftline.schemas.singles`), stricter than the
    models, pass; an event they refuse goes through the models, which accept it or name
    the problem.
Joining
    Feedback joins predictions of the *same file* by ``event_id``, wherever it sits in
    the file. A repeated ``event_id`` keeps its last occurrence in the file (the raw
    tables keep the last one ingested); the repeats are counted. Labels whose event
    id has no prediction are counted and ignored.
Other models
    Rows whose ``model_id`` is not the monitor's are skipped and counted (the topics
    are shared by models). A file that holds predictions, none of them of the
    monitor's model, is an input error: the monitor and the file do not belong together.
Model version
    The reference profile is built from every reference row of the model and carries
    the reference's most frequent ``model_version`` (ties: the smallest). Monitored
    rows of every version are compared with it; the rows per version are counted.
Shadow predictions
    A prediction marked ``shadow`` (scored by a version that did not serve the
    request) is kept apart, one per version and event id (the last occurrence); it
    takes no part in the windows' metrics, only in the rollout replay. Its event's
    label labels it too.
Coercion
    A value of the other kind than the config says (a string in a numeric feature, a
    string prediction of a regression model) is taken as null and counted; numbers in
    a categorical feature are categories (``1.0`` is ``"1"``). Feature names the
    config does not list are ignored and reported.
Windows
    Event-time tumbling windows of ``window`` seconds aligned to the epoch
    (:func:`~driftline.detectors.windows.assign_windows` over timestamps rounded to the
    microsecond); each prediction belongs to the window of its timestamp, and a
    window's performance uses the labels of its predictions. Only windows holding at
    least one prediction are evaluated, oldest first. Within a window rows are taken
    in ``event_id`` order, so that float sums do not depend on the order of the lines.
Policy
    Each window is closed by the core's one window step
    (:func:`~driftline.detectors.step.close_window`), as the streaming monitor closes
    it. The alert policy sees the windows in time order with ``now = window_end +
    allowed_lateness`` (the moment streaming would close the window), so ``opened_at``
    is deterministic. A retrain request asks for the data of the triggering alerts'
    run, ``[earliest triggering window start - (consecutive_windows - 1) * window,
    current window end)``, and counts the labelled rows of the evaluated windows in that
    range against ``retrain.min_labelled_rows``.
Concept drift (optional ``concept_drift`` section)
    Every labelled prediction of the model gives one error
    (:func:`~driftline.detectors.online.error_stream`), fed to the configured online
    detectors in **label order**: the label's feedback timestamp (rounded to the
    microsecond), then ``event_id`` (:func:`~driftline.detectors.concept.label_order`). A
    detection counts in the window of the labelled prediction's event time; every
    evaluated window gets one ``concept_drift`` row per detector (its detections there).
    One detector stream covers the model's rows of every version (streaming keeps one
    per version: they agree for a single version). The pure step
    (:func:`~driftline.detectors.concept.concept_drift_step`) is the one the streaming
    monitor runs.
Revisions
    A backtest knows every label, so each window is evaluated once, as revision 0, and
    that revision is final. Streaming writes revision 0 at window close and later
    revisions as late labels arrive; its last revision equals the backtest's revision 0.
Outputs (in ``--out``, created if needed)
    ``metrics.jsonl``
        One line per window x metric row of the report (:class:`MetricLine`), windows
        in time order, rows in report order.
    ``alerts.jsonl``
        :class:`~driftline.schemas.events.AlertEvent` JSON, in the order they were
        raised: a line when an alert opens, and a line with the same ``alert_id`` when a
        warning escalates to critical (the last line of an id is its final state).
        Resolutions are counted in the summary (an alert event has no status).
    ``retrain_requests.jsonl``
        :class:`~driftline.schemas.events.RetrainRequestEvent` JSON, in order.
    ``rollouts.jsonl`` (only with a ``rollout`` section of mode ``shadow`` or ``canary``)
        One :class:`~driftline.backtest.outputs.RolloutLine` per rollout decision, in
        order (:mod:`.rollouts`).
    ``profile.json``
        The reference :class:`~driftline.detectors.profiles.ModelProfile`.
    ``summary.json``
        :class:`BacktestSummary`.
    Outputs are a pure function of the inputs: the same files give byte-identical
    outputs. The same events written as batches or as single events, or with their
    lines shuffled, give the same outputs too (bar the line counts of the summary),
    unless repeated event ids differ in content.
Exit codes (in :mod:`driftline.cli`)
    0 on success; 2 with one message on stderr for bad input
    (:class:`BacktestInputError`): a missing file, an invalid monitor config (naming
    the key), a bad line (naming ``path:line``), a file without rows of the model.
Modules
    :mod:`.reader` (JSONL lines to the deduplicated, label-joined rows of the model),
    :mod:`.run` (the profile, then each window through the core's step),
    :mod:`.rollouts` (the rollout decisions on the events' versions) and
    :mod:`.outputs` (the output files and their models).
"""

from __future__ import annotations

from .outputs import BacktestInputError, BacktestSummary, MetricLine
from .run import reference_profile, run_backtest

__all__ = [
    "BacktestInputError",
    "BacktestSummary",
    "MetricLine",
    "reference_profile",
    "run_backtest",
]
