"""Model cards: for whom a version is, on what data and how it was trained, how it did.

A :class:`ModelCard` gathers what driftline knows of one version (Mitchell et al. 2019,
"Model Cards for Model Reporting"): intended use, owner and known limitations from the
monitor's optional ``card:`` section; its training data (time range, rows, label
balance, a summary of each feature from the version's training profile); how it was
trained (trainer, options, seed, driftline version, device, duration); its holdout
metrics next to the champion's and the decision with its evidence, and the live
rollout decisions; the alerts that triggered it; its live performance and drift per
window since it started serving; and its cost. Building one is pure
(:func:`build_card`); :mod:`driftline.card_data` reads the parts from the store and
writes ``card.json`` and ``card.md`` beside the version's artifact. Cards render as
Markdown (:func:`card_markdown`) or HTML (:func:`card_html`), and two versions side by
side (:func:`cards_diff`), to diff a model like code.

Examples
--------
>>> card = ModelCard(model_id="credit", version="v2", status="champion")
>>> card_markdown(card).splitlines()[0]
'# Model card: credit v2'
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = [
    "AlertSummary",
    "CardCost",
    "FeatureSummary",
    "ModelCard",
    "RolloutDecisionSummary",
    "TrainingData",
    "TrainingRun",
    "WindowStatus",
    "build_card",
    "card_html",
    "card_markdown",
    "cards_diff",
    "feature_summaries",
]


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FeatureSummary(_Part):
    """One feature of the training data.

    Examples
    --------
    >>> FeatureSummary(name="age", kind="numeric", rows=10, null_rate=0.0).kind
    'numeric'
    """

    name: str
    kind: str
    rows: int
    null_rate: float
    #: Numeric: min, median, max, mean, std (``None`` where unknown).
    numbers: dict[str, float | None] = {}
    #: Categorical: the most frequent categories and their shares.
    top_categories: dict[str, float] = {}


class TrainingData(_Part):
    """The data a version was trained and scored on.

    Examples
    --------
    >>> TrainingData(train_rows=900, holdout_rows=300).train_rows
    900
    """

    data_from: float | None = None
    data_to: float | None = None
    train_rows: int = 0
    holdout_rows: int = 0
    #: Classes: rows per label; numbers: ``mean``, ``std``, ``min``, ``max``.
    label_balance: dict[str, float] = {}
    features: tuple[FeatureSummary, ...] = ()


class TrainingRun(_Part):
    """How a version was trained.

    Examples
    --------
    >>> TrainingRun(trainer="builtin MLP", device="cpu").device
    'cpu'
    """

    trainer: str = ""
    options: dict[str, Any] = {}
    seed: int | None = None
    driftline_version: str = ""
    device: str = ""
    seconds: float = 0.0
    epochs_run: int | None = None


class CardCost(_Part):
    """What training the version cost.

    Examples
    --------
    >>> CardCost(training_seconds=2.0).gpu_seconds
    0.0
    """

    training_seconds: float = 0.0
    cpu_seconds: float = 0.0
    gpu_seconds: float = 0.0
    rows: int = 0
    bytes_read: int = 0


class AlertSummary(_Part):
    """An alert that asked for the retrain that made the version.

    Examples
    --------
    >>> AlertSummary(alert_id="a", kind="performance", statistic="accuracy", value=0.8,
    ...              threshold=0.05, severity="critical", window_start=0.0).kind
    'performance'
    """

    alert_id: str
    kind: str
    feature: str | None = None
    statistic: str
    value: float
    threshold: float
    severity: str
    window_start: float


class RolloutDecisionSummary(_Part):
    """A live rollout decision about the version.

    Examples
    --------
    >>> RolloutDecisionSummary(window_start=0.0, phase="shadow", decision="step",
    ...     estimate=0.02, lower=0.0, upper=0.04, n=500, reason="not_worse").decision
    'step'
    """

    window_start: float
    phase: str
    decision: str
    estimate: float
    lower: float
    upper: float
    n: int
    reason: str


class WindowStatus(_Part):
    """One window of the version's live traffic.

    Examples
    --------
    >>> WindowStatus(window_start=0.0, events=100).drifted_features
    0
    """

    window_start: float
    events: int = 0
    metric: str | None = None
    value: float | None = None
    performance_status: str = "insufficient"
    drifted_features: int = 0
    drift_status: str = "ok"


class ModelCard(_Part):
    """The card of one model version (module docstring).

    Examples
    --------
    >>> ModelCard(model_id="credit", version="v2", status="shadow", traffic=0.0).status
    'shadow'
    """

    model_id: str
    version: str
    status: str
    traffic: float | None = None
    parent_version: str | None = None
    created_at: float | None = None
    updated_at: float | None = None
    owner: str = ""
    intended_use: str = ""
    limitations: tuple[str, ...] = ()
    task: str = ""
    metric: str = ""
    training_data: TrainingData = TrainingData()
    training: TrainingRun = TrainingRun()
    holdout: dict[str, float] = {}
    decision: str = ""
    rollout: tuple[RolloutDecisionSummary, ...] = ()
    triggered_by: tuple[AlertSummary, ...] = ()
    live: tuple[WindowStatus, ...] = ()
    cost: CardCost = CardCost()
    generated_at: float | None = None


def feature_summaries(profile: Any) -> tuple[FeatureSummary, ...]:
    """Summaries of a training profile's features (a
    :class:`~driftline.detectors.profiles.ModelProfile`), in name order."""
    out = []
    for name in sorted(profile.features):
        feature = profile.features[name]
        total = feature.count + feature.null_count
        null_rate = feature.null_count / total if total else 0.0
        if feature.kind == "numeric":
            levels = dict(zip(feature.quantile_levels, feature.quantile_values, strict=False))
            numbers = {
                "min": feature.min,
                "median": levels.get(0.5),
                "max": feature.max,
                "mean": feature.mean,
                "std": feature.std,
            }
            out.append(
                FeatureSummary(
                    name=name, kind="numeric", rows=total, null_rate=null_rate, numbers=numbers
                )
            )
        else:
            counts = feature.reference_counts[: len(feature.categories)]
            top = {
                category: count / feature.count
                for category, count in list(zip(feature.categories, counts, strict=False))[:5]
                if feature.count
            }
            out.append(
                FeatureSummary(
                    name=name,
                    kind="categorical",
                    rows=total,
                    null_rate=null_rate,
                    top_categories=top,
                )
            )
    return tuple(out)


def build_card(
    record: Any,
    *,
    monitor: Any = None,
    profile: Any = None,
    training: TrainingRun | None = None,
    label_balance: Mapping[str, float] | None = None,
    alerts: Sequence[AlertSummary] = (),
    rollout: Sequence[RolloutDecisionSummary] = (),
    live: Sequence[WindowStatus] = (),
    generated_at: float | None = None,
) -> ModelCard:
    """The card of a registry ``record`` (a
    :class:`~driftline.retrainer.registry.VersionRecord`) with what else is known.

    ``monitor`` (its ``card`` section, task and metric) and ``profile`` (the version's
    training profile) are optional; ``training`` and ``label_balance`` are known when
    the version is trained (a regenerated card keeps them from the card it replaces).

    Examples
    --------
    >>> from driftline.retrainer.registry import VersionRecord
    >>> record = VersionRecord(model_id="credit", version="v2", artifact_uri="file:///a",
    ...     status="champion", created_at=0.0, updated_at=0.0, train_rows=900,
    ...     holdout_rows=300, training_seconds=2.5, cpu_seconds=4.0,
    ...     metrics={"candidate.accuracy": 0.91, "champion.accuracy": 0.62})
    >>> card = build_card(record, label_balance={"0": 450, "1": 450})
    >>> card.cost.rows, card.holdout["candidate.accuracy"], card.training_data.label_balance
    (1200, 0.91, {'0': 450.0, '1': 450.0})
    """
    section = getattr(monitor, "card", None)
    features = feature_summaries(profile) if profile is not None else ()
    return ModelCard(
        model_id=record.model_id,
        version=record.version,
        status=record.status,
        traffic=record.traffic,
        parent_version=record.parent_version,
        created_at=record.created_at,
        updated_at=record.updated_at,
        owner=section.owner if section is not None else "",
        intended_use=section.intended_use if section is not None else "",
        limitations=tuple(section.limitations) if section is not None else (),
        task=getattr(monitor, "task", "") or "",
        metric=monitor.performance_metric if monitor is not None else "",
        training_data=TrainingData(
            data_from=record.data_from,
            data_to=record.data_to,
            train_rows=record.train_rows,
            holdout_rows=record.holdout_rows,
            label_balance=dict(label_balance or {}),
            features=features,
        ),
        training=training or TrainingRun(device=record.device, seconds=record.training_seconds),
        holdout=dict(record.metrics),
        decision=record.decision,
        rollout=tuple(rollout),
        triggered_by=tuple(alerts),
        live=tuple(live),
        cost=CardCost(
            training_seconds=record.training_seconds,
            cpu_seconds=record.cpu_seconds,
            gpu_seconds=record.gpu_seconds,
            rows=record.train_rows + record.holdout_rows,
            bytes_read=record.bytes_read,
        ),
        generated_at=generated_at,
    )


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _sections(card: ModelCard) -> list[tuple[str, list[str]]]:
    """The card as titled sections of Markdown lines (shared by the renderers)."""
    data = card.training_data
    run = card.training
    overview = [
        f"- status: **{card.status}**"
        + (f" (traffic {card.traffic:.0%})" if card.traffic is not None else ""),
        f"- parent version: {card.parent_version or '-'}",
        f"- task: {card.task or '-'}; monitored metric: {card.metric or '-'}",
        f"- registered: {_when(card.created_at)}; last change: {_when(card.updated_at)}",
        f"- owner: {card.owner or '-'}",
        f"- intended use: {card.intended_use or '-'}",
    ]
    overview += [f"- known limitation: {item}" for item in card.limitations] or [
        "- known limitations: -"
    ]
    balance = ", ".join(f"{k}: {_number(v)}" for k, v in sorted(data.label_balance.items()))
    training_data = [
        f"- time range: {_when(data.data_from)} to {_when(data.data_to)}",
        f"- rows: {data.train_rows} trained on, {data.holdout_rows} held out",
        f"- labels: {balance or '-'}",
    ]
    if data.features:
        training_data += [
            "",
            "| feature | kind | rows | null rate | summary |",
            "|---|---|---|---|---|",
        ]
        for feature in data.features:
            if feature.kind == "numeric":
                summary = ", ".join(f"{k} {_number(v)}" for k, v in feature.numbers.items())
            else:
                summary = ", ".join(f"{k} {v:.0%}" for k, v in feature.top_categories.items())
            training_data.append(
                f"| {feature.name} | {feature.kind} | {feature.rows} | "
                f"{feature.null_rate:.2%} | {summary} |"
            )
    options = ", ".join(f"{k}={v}" for k, v in sorted(run.options.items()))
    training = [
        f"- trainer: {run.trainer or '-'}",
        f"- options: {options or '-'}",
        f"- seed: {run.seed if run.seed is not None else '-'}",
        f"- driftline version: {run.driftline_version or '-'}",
        f"- device: {run.device or '-'}; duration: {run.seconds:.3g} s"
        + (f"; epochs: {run.epochs_run}" if run.epochs_run is not None else ""),
    ]
    evaluation = [f"- decision: {card.decision or '-'}"]
    names = sorted({key.split(".", 1)[1] for key in card.holdout if "." in key})
    if names:
        evaluation += ["", "| metric | this version | champion then |", "|---|---|---|"]
        for name in names:
            evaluation.append(
                f"| {name} | {_number(card.holdout.get(f'candidate.{name}'))} | "
                f"{_number(card.holdout.get(f'champion.{name}'))} |"
            )
    if card.rollout:
        evaluation += ["", "| window | phase | decision | estimate [lower, upper] | n | reason |"]
        evaluation.append("|---|---|---|---|---|---|")
        for r in card.rollout:
            evaluation.append(
                f"| {_when(r.window_start)} | {r.phase} | {r.decision} | {r.estimate:+.4f} "
                f"[{r.lower:+.4f}, {r.upper:+.4f}] | {r.n} | {r.reason} |"
            )
    triggered = [
        f"- {a.severity} {a.kind} alert {a.alert_id[:12]}: {a.statistic}"
        + (f" of {a.feature}" if a.feature else "")
        + f" {_number(a.value)} (threshold {_number(a.threshold)}), window "
        f"{_when(a.window_start)}"
        for a in card.triggered_by
    ] or ["- none (registered directly, not by a retrain)"]
    live = ["- no closed window yet"]
    if card.live:
        live = [
            "| window | events | performance | status | drifted features |",
            "|---|---|---|---|---|",
        ]
        for w in card.live:
            live.append(
                f"| {_when(w.window_start)} | {w.events} | {w.metric or '-'} "
                f"{_number(w.value)} | {w.performance_status} | {w.drifted_features} "
                f"({w.drift_status}) |"
            )
    cost = card.cost
    costs = [
        f"- training: {cost.training_seconds:.3g} s wall, {cost.cpu_seconds:.3g} s CPU, "
        f"{cost.gpu_seconds:.3g} s GPU",
        f"- data: {cost.rows} rows, {cost.bytes_read / 1e6:.3g} MB read",
    ]
    return [
        ("Overview", overview),
        ("Training data", training_data),
        ("How it was trained", training),
        ("Evaluation", evaluation),
        ("What triggered it", triggered),
        ("Live performance and drift", live),
        ("Cost", costs),
    ]


def card_markdown(card: ModelCard) -> str:
    """The card as Markdown (``card.md``)."""
    lines = [f"# Model card: {card.model_id} {card.version}", ""]
    for title, body in _sections(card):
        lines += [f"## {title}", "", *body, ""]
    if card.generated_at is not None:
        lines.append(f"_Generated by driftline at {_when(card.generated_at)}._")
    return "\n".join(lines).rstrip() + "\n"


def card_html(card: ModelCard) -> str:
    """The card as a self-contained HTML page (every value escaped).

    Examples
    --------
    >>> "<script>" in card_html(ModelCard(model_id="m", version="<script>", status="x"))
    False
    """
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Model card: {html.escape(card.model_id)} {html.escape(card.version)}</title>",
        "<style>body{font-family:sans-serif;max-width:980px;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}</style>",
        "</head><body>",
        f"<h1>Model card: {html.escape(card.model_id)} {html.escape(card.version)}</h1>",
    ]
    for title, body in _sections(card):
        parts.append(f"<h2>{html.escape(title)}</h2>")
        rows = [line for line in body if line.startswith("|") and not line.startswith("|---")]
        items = [line[2:] for line in body if line.startswith("- ")]
        if items:
            parts.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>")
        if rows:
            cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
            head = "".join(f"<th>{html.escape(c)}</th>" for c in cells[0])
            body_rows = "".join(
                "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                for row in cells[1:]
            )
            parts.append(f"<table><tr>{head}</tr>{body_rows}</table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def cards_diff(left: ModelCard, right: ModelCard) -> str:
    """Two versions side by side, as Markdown: one row per fact, ``*`` where they differ.

    Examples
    --------
    >>> a = ModelCard(model_id="m", version="v1", status="candidate")
    >>> b = ModelCard(model_id="m", version="v2", status="champion")
    >>> print(cards_diff(a, b).splitlines()[4])
    | status * | candidate | champion |
    """

    def facts(card: ModelCard) -> dict[str, str]:
        data, cost = card.training_data, card.cost
        out = {
            "status": card.status,
            "parent version": card.parent_version or "-",
            "registered": _when(card.created_at),
            "data from": _when(data.data_from),
            "data to": _when(data.data_to),
            "rows trained on": str(data.train_rows),
            "rows held out": str(data.holdout_rows),
            "labels": ", ".join(
                f"{k}: {_number(v)}" for k, v in sorted(data.label_balance.items())
            ),
            "trainer": card.training.trainer or "-",
            "options": ", ".join(f"{k}={v}" for k, v in sorted(card.training.options.items())),
            "device": card.training.device or "-",
            "decision": card.decision or "-",
            "training seconds": f"{cost.training_seconds:.3g}",
            "CPU seconds": f"{cost.cpu_seconds:.3g}",
            "GPU seconds": f"{cost.gpu_seconds:.3g}",
            "bytes read": str(cost.bytes_read),
            "alerts behind it": ", ".join(a.alert_id[:12] for a in card.triggered_by) or "-",
            "live windows": str(len(card.live)),
        }
        for key, value in sorted(card.holdout.items()):
            out[f"holdout {key}"] = _number(value)
        for feature in data.features:
            if feature.kind == "numeric":
                mean, std = feature.numbers.get("mean"), feature.numbers.get("std")
                out[f"feature {feature.name}"] = f"mean {_number(mean)}, std {_number(std)}"
            else:
                out[f"feature {feature.name}"] = ", ".join(
                    f"{k} {v:.0%}" for k, v in feature.top_categories.items()
                )
        return out

    a, b = facts(left), facts(right)
    lines = [
        f"# {left.model_id}: {left.version} vs {right.version}",
        "",
        f"| | {left.version} | {right.version} |",
        "|---|---|---|",
    ]
    for key in list(dict.fromkeys([*a, *b])):
        x, y = a.get(key, "-"), b.get(key, "-")
        lines.append(f"| {key}{' *' if x != y else ''} | {x} | {y} |")
    return "\n".join(lines) + "\n"
