"""Grafana dashboards as code: built with grafana-foundation-sdk, written as JSON.

Four dashboards, checked in under ``grafana/dashboards`` and provisioned by
``grafana/provisioning``:

``driftline-overview``
    Volume, latency percentiles (``latency_ms``), label coverage, the primary
    performance metric with a 95 % Wilson band, and the open alerts of a model.
``driftline-drift``
    A feature x window heatmap of the chosen drift statistic, that statistic of
    one feature against its thresholds, the latest window per feature, and the
    reference vs current histogram of a feature over the reference profile's
    frozen bins (computed in SQL from the raw predictions).
``driftline-versions``
    Retrains, promotions and rollbacks: the version history with decisions,
    metrics, provenance, and the alerts that asked for each retrain.
``driftline-operations``
    Consumer lag, DLQ rate by reason, watermark delay, throughput and retrainer
    outcomes (Prometheus), plus the stored watermarks and ingest per minute
    (ClickHouse).

ClickHouse panels use the macros of the grafana-clickhouse-datasource plugin
(``$__timeFilter(column)``, ``$__timeInterval(column)``) and the dashboard
variables ``${model_id}``, ``${feature}`` and ``${statistic}``; metric rows are
read with ``FINAL``, which keeps the latest revision of each window.

Regenerate with ``python -m driftline.dashboards --out grafana/dashboards``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Self

from grafana_foundation_sdk.builders import barchart, heatmap, stat, table, timeseries
from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.builders import prometheus as gp
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as gm

__all__ = [
    "CLICKHOUSE",
    "CLICKHOUSE_UID",
    "PROMETHEUS",
    "PROMETHEUS_UID",
    "ClickHouseQuery",
    "build_dashboards",
    "main",
    "render",
    "write_dashboards",
]

#: Datasource uids; ``grafana/provisioning/datasources/datasources.yml`` uses the same.
CLICKHOUSE_UID = "driftline-clickhouse"
PROMETHEUS_UID = "driftline-prometheus"
CLICKHOUSE = gm.DataSourceRef(type_val="grafana-clickhouse-datasource", uid=CLICKHOUSE_UID)
PROMETHEUS = gm.DataSourceRef(type_val="prometheus", uid=PROMETHEUS_UID)

QueryFormat = Literal["table", "timeseries"]


class ClickHouseQuery(cogvariants.Dataquery, cogbuilder.Builder[cogvariants.Dataquery]):
    """A raw-SQL query of the grafana-clickhouse-datasource plugin (it is its own builder).

    The SDK ships no ClickHouse query type, so this one follows the plugin's
    ``CHSqlQuery`` model: ``editorType: sql``, ``rawSql``, ``queryType``
    (``table`` or ``timeseries``) and the matching numeric ``format``.

    Examples
    --------
    >>> q = ClickHouseQuery("SELECT 1", "table", ref_id="A")
    >>> q.build().to_json()["rawSql"], q.to_json()["format"], q.to_json()["editorType"]
    ('SELECT 1', 1, 'sql')
    """

    def __init__(self, raw_sql: str, fmt: QueryFormat = "table", ref_id: str = "A") -> None:
        self.raw_sql = raw_sql
        self.fmt: QueryFormat = fmt
        self.ref_id = ref_id

    def build(self) -> Self:
        """The query itself (builder protocol of the SDK)."""
        return self

    def to_json(self) -> dict[str, object]:
        """The target object of a panel, as Grafana stores it."""
        return {
            "datasource": CLICKHOUSE.to_json(),
            "editorType": "sql",
            "format": 1 if self.fmt == "table" else 0,
            "queryType": "table" if self.fmt == "table" else "timeSeries",
            "rawSql": self.raw_sql,
            "refId": self.ref_id,
        }


def _sql(text: str) -> str:
    """Dedent a SQL block written inside this module."""
    lines = [line.rstrip() for line in text.strip("\n").splitlines()]
    indent = min(len(line) - len(line.lstrip()) for line in lines if line)
    return "\n".join(line[indent:] for line in lines)


def _prom(expr: str, legend: str, ref_id: str = "A") -> gp.Dataquery:
    return gp.Dataquery().expr(expr).legend_format(legend).ref_id(ref_id).datasource(PROMETHEUS)


def _variable(name: str, label: str, sql: str) -> gd.QueryVariable:
    return (
        gd.QueryVariable(name)
        .label(label)
        .datasource(CLICKHOUSE)
        .query(_sql(sql))
        .refresh(gm.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(gm.VariableSort.ALPHABETICAL_ASC)
    )


MODEL_VARIABLE_SQL = "SELECT DISTINCT model_id FROM window_metrics ORDER BY model_id"
FEATURE_VARIABLE_SQL = """
    SELECT DISTINCT feature FROM window_metrics
    WHERE model_id = '${model_id}' AND kind = 'data_drift' ORDER BY feature
"""
#: The whole model in the segment selector (its rows have segment '').
WHOLE_MODEL = "(whole model)"
SEGMENT_VARIABLE_SQL = f"""
    SELECT DISTINCT if(segment = '', '{WHOLE_MODEL}', segment) AS segment FROM window_metrics
    WHERE model_id = '${{model_id}}' AND kind = 'data_drift' ORDER BY segment
"""
#: The chosen slice as the ``segment`` column holds it.
SEGMENT = f"if('${{segment}}' = '{WHOLE_MODEL}', '', '${{segment}}')"
STATISTIC_VARIABLE_SQL = """
    SELECT DISTINCT metric FROM window_metrics
    WHERE model_id = '${model_id}' AND kind IN ('data_drift', 'prediction_drift') ORDER BY metric
"""


def _base(uid: str, title: str, description: str, tags: list[str]) -> gd.Dashboard:
    return (
        gd.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["driftline", *tags])
        .time("now-24h", "now")
        .timezone("utc")
        .refresh("1m")
        .editable()
    )


# --------------------------------------------------------------------------- overview


VOLUME_SQL = """
    SELECT $__timeInterval(timestamp) AS time, count() AS predictions
    FROM predictions FINAL
    WHERE model_id = '${model_id}' AND $__timeFilter(timestamp)
    GROUP BY time
    ORDER BY time
"""
LATENCY_SQL = """
    SELECT
        $__timeInterval(timestamp) AS time,
        quantile(0.5)(latency_ms) AS p50,
        quantile(0.95)(latency_ms) AS p95,
        quantile(0.99)(latency_ms) AS p99
    FROM predictions FINAL
    WHERE model_id = '${model_id}' AND $__timeFilter(timestamp) AND latency_ms IS NOT NULL
    GROUP BY time
    ORDER BY time
"""
LABEL_COVERAGE_SQL = """
    SELECT window_start AS time, label_coverage
    FROM window_metrics FINAL
    WHERE model_id = '${model_id}' AND kind = 'performance' AND primary AND segment = ''
      AND $__timeFilter(window_start)
    ORDER BY time
"""
# window_metrics has no interval column: the band is the 95 % Wilson score interval of
# a proportion metric (accuracy, precision, ...) over the window's n labelled rows.
PERFORMANCE_SQL = """
    SELECT
        time, value, reference, warning_line, critical_line,
        if(proportion, (value + z * z / (2 * n) - half) / (1 + z * z / n), NULL) AS lower,
        if(proportion, (value + z * z / (2 * n) + half) / (1 + z * z / n), NULL) AS upper
    FROM (
        SELECT
            window_start AS time,
            value,
            reference,
            metric IN ('log_loss', 'mae', 'rmse', 'mape') AS relative,
            ifNull(warning, threshold) AS warning_drop,
            if(relative, if(reference > 0, reference * (1 + warning_drop),
               reference + warning_drop), reference - warning_drop) AS warning_line,
            if(relative, if(reference > 0, reference * (1 + critical), reference + critical),
               reference - critical) AS critical_line,
            toFloat64(greatest(n, 1)) AS n,
            1.959964 AS z,
            metric IN ('accuracy', 'precision', 'recall', 'f1') AND value BETWEEN 0 AND 1
                AS proportion,
            z * sqrt(greatest(value * (1 - value), 0) / n + z * z / (4 * n * n)) AS half
        FROM window_metrics FINAL
        WHERE model_id = '${model_id}' AND kind = 'performance' AND primary AND segment = ''
          AND value IS NOT NULL AND $__timeFilter(window_start)
    )
    ORDER BY time
"""
ESTIMATED_SQL = """
    SELECT window_start AS time,
           maxIf(value, kind = 'estimated_performance') AS estimated,
           maxIf(lower, kind = 'estimated_performance') AS estimate_lower,
           maxIf(upper, kind = 'estimated_performance') AS estimate_upper,
           maxIf(value, kind = 'performance') AS realized
    FROM window_metrics FINAL
    WHERE model_id = '${model_id}' AND segment = ''
      AND ((kind = 'estimated_performance' AND metric = 'estimated_accuracy')
           OR (kind = 'performance' AND metric = 'accuracy'))
      AND $__timeFilter(window_start)
    GROUP BY time
    HAVING estimated IS NOT NULL
    ORDER BY time
"""
OPEN_ALERTS_SQL = """
    SELECT
        a.opened_at, a.severity, a.kind, a.feature, a.segment, a.statistic, a.value,
        a.threshold, a.window_start, latest.status AS latest_status, a.model_version, a.alert_id
    FROM alerts AS a FINAL
    INNER JOIN (
        SELECT kind, feature, segment, metric, argMax(status, window_start) AS status
        FROM window_metrics FINAL
        WHERE model_id = '${model_id}'
        GROUP BY kind, feature, segment, metric
    ) AS latest
        ON a.kind = latest.kind AND ifNull(a.feature, '') = latest.feature
        AND a.segment = latest.segment AND a.statistic = latest.metric
    WHERE a.model_id = '${model_id}' AND latest.status IN ('warning', 'critical')
    ORDER BY a.opened_at DESC
"""


def overview_dashboard() -> gd.Dashboard:
    """Volume, latency, label coverage, performance with its band, open alerts."""
    return (
        _base(
            "driftline-overview",
            "driftline / model overview",
            "Traffic, latency, labels, performance and open alerts of one model.",
            ["overview"],
        )
        .with_variable(_variable("model_id", "model", MODEL_VARIABLE_SQL))
        .with_panel(
            timeseries.Panel()
            .title("Predictions per interval")
            .datasource(CLICKHOUSE)
            .with_target(ClickHouseQuery(_sql(VOLUME_SQL), "timeseries"))
            .unit("short")
            .span(12)
            .height(8)
        )
        .with_panel(
            timeseries.Panel()
            .title("Prediction latency (latency_ms)")
            .description("Percentiles of the latency the serving service reported per event.")
            .datasource(CLICKHOUSE)
            .with_target(ClickHouseQuery(_sql(LATENCY_SQL), "timeseries"))
            .unit("ms")
            .span(12)
            .height(8)
        )
        .with_panel(
            timeseries.Panel()
            .title("Label coverage per window")
            .description("Share of the window's predictions that have a label (latest revision).")
            .datasource(CLICKHOUSE)
            .with_target(ClickHouseQuery(_sql(LABEL_COVERAGE_SQL), "timeseries"))
            .unit("percentunit")
            .min(0)
            .max(1)
            .span(8)
            .height(8)
        )
        .with_panel(
            timeseries.Panel()
            .title("Primary performance metric with 95% band")
            .description(
                "Value per window (latest revision), the reference value, the alert line "
                "(reference minus the warning drop) and a 95% Wilson score band from the "
                "window's labelled rows (proportion metrics only; window_metrics stores no "
                "interval)."
            )
            .datasource(CLICKHOUSE)
            .with_target(ClickHouseQuery(_sql(PERFORMANCE_SQL), "timeseries"))
            .span(16)
            .height(8)
        )
        .with_panel(
            timeseries.Panel()
            .title("Estimated vs realized accuracy")
            .description(
                "Label-free estimate (CBPE, performance.estimation) with its 95% interval, "
                "next to the accuracy realized once labels arrived: their gap is the "
                "estimation error (Prometheus: driftline_estimation_error)."
            )
            .datasource(CLICKHOUSE)
            .with_target(ClickHouseQuery(_sql(ESTIMATED_SQL), "timeseries"))
            .span(24)
            .height(8)
        )
        .with_panel(
            table.Panel()
            .title("Open alerts")
            .description(
                "Alerts whose metric is still warning or critical in the latest closed window."
            )
            .datasource(CLICKHOUSE)
            .with_target(ClickHouseQuery(_sql(OPEN_ALERTS_SQL)))
            .span(24)
            .height(8)
        )
    )


# --------------------------------------------------------------------------- drift


HEATMAP_SQL = """
    SELECT window_start AS time, feature, value
    FROM window_metrics FINAL
    WHERE model_id = '${model_id}' AND metric = '${statistic}' AND segment = __SEGMENT__
      AND kind IN ('data_drift', 'prediction_drift') AND $__timeFilter(window_start)
    ORDER BY time, feature
""".replace("__SEGMENT__", SEGMENT)
FEATURE_DRIFT_SQL = """
    SELECT window_start AS time, value, threshold, p_value, q_value
    FROM window_metrics FINAL
    WHERE model_id = '${model_id}' AND feature = '${feature}' AND metric = '${statistic}'
      AND segment = __SEGMENT__ AND $__timeFilter(window_start)
    ORDER BY time
""".replace("__SEGMENT__", SEGMENT)
LATEST_DRIFT_SQL = """
    SELECT
        feature, metric, kind,
        argMax(value, window_start) AS value,
        argMax(threshold, window_start) AS threshold,
        argMax(p_value, window_start) AS p_value,
        argMax(q_value, window_start) AS q_value,
        argMax(status, window_start) AS status,
        max(window_start) AS latest_window
    FROM window_metrics FINAL
    WHERE model_id = '${model_id}' AND kind IN ('data_drift', 'prediction_drift')
      AND segment = __SEGMENT__ AND primary AND $__timeFilter(window_start)
    GROUP BY feature, metric, kind
    ORDER BY value DESC
""".replace("__SEGMENT__", SEGMENT)
MULTIVARIATE_SQL = """
    SELECT window_start AS time, value AS reconstruction_error, reference,
           warning AS warning_level, critical AS critical_level
    FROM window_metrics FINAL
    WHERE model_id = '${model_id}' AND kind = 'multivariate_drift'
      AND segment = __SEGMENT__ AND $__timeFilter(window_start)
    ORDER BY time
""".replace("__SEGMENT__", SEGMENT)
# Bins are the reference profile's frozen ones (detectors/profiles.py): numeric bin i is
# the number of edges <= x; categorical bins are the reference categories plus "unseen".
HISTOGRAM_SQL = """
    WITH
        ifNull(
            (
                SELECT argMax(profile, created_at) FROM reference_profiles FINAL
                WHERE model_id = '${model_id}'
            ),
            '{}'
        ) AS profile,
        JSONExtractString(profile, 'features', '${feature}', 'kind') AS feature_kind,
        JSONExtract(profile, 'features', '${feature}', 'edges', 'Array(Float64)') AS edges,
        JSONExtract(profile, 'features', '${feature}', 'categories', 'Array(String)')
            AS categories,
        JSONExtract(profile, 'features', '${feature}', 'reference_counts', 'Array(UInt64)')
            AS reference_counts
    SELECT
        bins.bin AS bin,
        if(
            feature_kind = 'categorical',
            if(bins.bin < length(categories), categories[bins.bin + 1], '(unseen)'),
            multiIf(
                bins.bin = 0, concat('< ', toString(edges[1])),
                bins.bin = length(edges), concat('>= ', toString(edges[-1])),
                concat('[', toString(edges[bins.bin]), ', ', toString(edges[bins.bin + 1]), ')')
            )
        ) AS bucket,
        reference_counts[bins.bin + 1] / greatest(arraySum(reference_counts), 1) AS reference,
        ifNull(current.rows, 0) / greatest(sum(ifNull(current.rows, 0)) OVER (), 1) AS current
    FROM (SELECT toUInt64(arrayJoin(range(length(reference_counts)))) AS bin) AS bins
    LEFT JOIN (
        SELECT
            toUInt64(
                if(
                    feature_kind = 'categorical',
                    if(
                        indexOf(categories, features_cat['${feature}']) = 0,
                        length(categories),
                        indexOf(categories, features_cat['${feature}']) - 1
                    ),
                    arrayCount(e -> e <= features_num['${feature}'], edges)
                )
            ) AS bin,
            count() AS rows
        FROM predictions FINAL
        WHERE model_id = '${model_id}' AND $__timeFilter(timestamp)
          AND (mapContains(features_num, '${feature}') OR mapContains(features_cat, '${feature}'))
        GROUP BY bin
    ) AS current ON bins.bin = current.bin
    ORDER BY bin
"""


def drift_dashboard() -> gd.Dashboard:
    """Feature x window heatmap, one feature over time, histograms over the frozen bins."""
    return (
        _base(
            "driftline-drift",
            "driftline / drift",
            "Data and prediction drift of one model, per feature and window.",
            ["drift"],
        )
        .with_variable(_variable("model_id", "model", MODEL_VARIABLE_SQL))
        .with_variable(_variable("statistic", "statistic", STATISTIC_VARIABLE_SQL))
        .with_variable(_variable("feature", "feature", FEATURE_VARIABLE_SQL))
        .with_variable(_variable("segment", "segment", SEGMENT_VARIABLE_SQL))
        .with_panel(
            heatmap.Panel()
            .title("${statistic} per feature and window (${segment})")
            .description(
                "Rows are features (__prediction__ for prediction drift), of the whole model"
                " or of the segment slice chosen above."
            )
            .datasource(CLICKHOUSE)
            .with_target(ClickHouseQuery(_sql(HEATMAP_SQL), "timeseries"))
            .calculate(False)
            .color(heatmap.HeatmapColorOptions().scheme("Oranges"))
            .span(24)
            .height(10)
        )
        .with_panel(
            timeseries.Panel()
            .title("${statistic} of ${feature} against its threshold")
            .datasource(CLICKHOUSE)
            .with_target(ClickHouseQuery(_sql(FEATURE_DRIFT_SQL), "timeseries"))
            .span(12)
            .height(9)
        )
        .with_panel(
            barchart.Panel()
            .title("${feature}: reference vs current histogram")
            .description(
                "Shares per bin of the reference profile's frozen bins; current = the "
                "predictions in the dashboard's time range."
            )
            .datasource(CLICKHOUSE)
            .with_target(ClickHouseQuery(_sql(HISTOGRAM_SQL)))
            .x_field("bucket")
            .unit("percentunit")
            .span(12)
            .height(9)
        )
        .with_panel(
            table.Panel()
            .title("Latest window per feature")
            .datasource(CLICKHOUSE)
            .with_target(ClickHouseQuery(_sql(LATEST_DRIFT_SQL)))
            .span(24)
            .height(8)
        )
        .with_panel(
            timeseries.Panel()
            .title("Multivariate drift: PCA reconstruction error (${segment})")
            .description(
                "Mean squared error of reconstructing each row from the reference's "
                "principal components, against the reference's own value and the warning "
                "and critical levels the window was judged by (drift.multivariate)."
            )
            .datasource(CLICKHOUSE)
            .with_target(ClickHouseQuery(_sql(MULTIVARIATE_SQL), "timeseries"))
            .span(24)
            .height(8)
        )
    )


# --------------------------------------------------------------------------- versions


VERSION_EVENTS_SQL = """
    SELECT $__timeInterval(updated_at) AS time, status, count() AS versions
    FROM model_versions FINAL
    WHERE model_id = '${model_id}' AND $__timeFilter(updated_at)
    GROUP BY time, status
    ORDER BY time, status
"""
VERSIONS_SQL = """
    SELECT
        created_at, updated_at, version, parent_version, status, decision,
        toJSONString(metrics) AS metrics, request_id, arrayStringConcat(alert_ids, ', ')
            AS alert_ids,
        data_from, data_to, train_rows, holdout_rows, training_seconds, cpu_seconds,
        gpu_seconds, bytes_read, device, artifact_uri
    FROM model_versions FINAL
    WHERE model_id = '${model_id}' AND $__timeFilter(created_at)
    ORDER BY created_at DESC
"""
# What the model's retraining cost per day: versions trained, wall, CPU and GPU time.
TRAINING_COST_SQL = """
    SELECT
        toStartOfDay(created_at) AS time, count() AS versions_trained,
        sum(training_seconds) AS wall_seconds, sum(cpu_seconds) AS cpu_seconds,
        sum(gpu_seconds) AS gpu_seconds, sum(bytes_read) AS bytes_read
    FROM model_versions FINAL
    WHERE model_id = '${model_id}' AND training_seconds > 0 AND $__timeFilter(created_at)
    GROUP BY time
    ORDER BY time
"""
RETRAIN_REASONS_SQL = """
    SELECT
        v.created_at, v.version, v.status, v.request_id, alert_id,
        a.kind, a.feature, a.statistic, a.value, a.threshold, a.severity, a.window_start
    FROM model_versions AS v FINAL
    ARRAY JOIN v.alert_ids AS alert_id
    LEFT JOIN (SELECT * FROM alerts FINAL WHERE model_id = '${model_id}') AS a
        ON a.alert_id = alert_id
    WHERE v.model_id = '${model_id}' AND $__timeFilter(v.created_at)
    ORDER BY v.created_at DESC, alert_id
"""
ROLLOUTS_SQL = """
    SELECT
        updated_at, version, parent_version, status, traffic, decision
    FROM model_versions FINAL
    WHERE model_id = '${model_id}' AND $__timeFilter(updated_at)
        AND (status IN ('shadow', 'canary') OR startsWith(decision, 'rollout '))
    ORDER BY updated_at DESC
"""
STATUS_COUNTS_SQL = """
    SELECT status, count() AS versions
    FROM model_versions FINAL
    WHERE model_id = '${model_id}' AND $__timeFilter(updated_at)
    GROUP BY status
    ORDER BY status
"""


def versions_dashboard() -> gd.Dashboard:
    """Retrains, promotions, rollbacks and the reasons behind them."""
    return (
        _base(
            "driftline-versions",
            "driftline / versions",
            "Model versions: retrains, promotions, rollbacks and why.",
            ["versions"],
        )
        .with_variable(_variable("model_id", "model", MODEL_VARIABLE_SQL))
        .with_panel(
            stat.Panel()
            .title("Versions by status")
            .description("champion = promoted, rejected = lost the challenge, rolled_back.")
            .datasource(CLICKHOUSE)
            .with_target(ClickHouseQuery(_sql(STATUS_COUNTS_SQL)))
            .span(8)
            .height(6)
        )
        .with_panel(
            barchart.Panel()
            .title("Retrains, promotions and rollbacks over time")
            .datasource(CLICKHOUSE)
            .with_target(ClickHouseQuery(_sql(VERSION_EVENTS_SQL), "timeseries"))
            .span(16)
            .height(6)
        )
        .with_panel(
            table.Panel()
            .title("Version history")
            .description(
                "decision: the challenge result (candidate vs champion on the same holdout); "
                "metrics: candidate.* and champion.* values."
            )
            .datasource(CLICKHOUSE)
            .with_target(ClickHouseQuery(_sql(VERSIONS_SQL)))
            .span(24)
            .height(10)
        )
        .with_panel(
            table.Panel()
            .title("Training cost per day")
            .description(
                "Versions trained per day and what their training took: wall, CPU and GPU "
                "seconds, bytes of labelled rows read (retrain budgets: retrain.max_per_day, "
                "retrain.max_training_seconds_per_day)."
            )
            .datasource(CLICKHOUSE)
            .with_target(ClickHouseQuery(_sql(TRAINING_COST_SQL)))
            .span(24)
            .height(6)
        )
        .with_panel(
            table.Panel()
            .title("Retrain reasons (alerts behind each version)")
            .datasource(CLICKHOUSE)
            .with_target(ClickHouseQuery(_sql(RETRAIN_REASONS_SQL)))
            .span(24)
            .height(8)
        )
        .with_panel(
            timeseries.Panel()
            .title("Rollout: challenger - champion (confidence sequence)")
            .description(
                "The running rollout's estimate of challenger minus champion on its metric,"
                " with the anytime-valid bounds: promoted (or the next canary share) when"
                " the lower bound passes -margin, rejected when the upper one falls below."
            )
            .datasource(PROMETHEUS)
            .with_target(_prom('driftline_rollout_difference{model_id="$model_id"}', "{{bound}}"))
            .span(12)
            .height(8)
        )
        .with_panel(
            timeseries.Panel()
            .title("Rollout: challenger's traffic share")
            .datasource(PROMETHEUS)
            .with_target(_prom('driftline_rollout_traffic{model_id="$model_id"}', "{{phase}}"))
            .span(12)
            .height(8)
        )
        .with_panel(
            table.Panel()
            .title("Rollouts (challengers and live decisions)")
            .description(
                "shadow/canary: the running challenger and its share; a decision starting"
                " with 'rollout' was taken live, with its window, estimate, bounds and n."
            )
            .datasource(CLICKHOUSE)
            .with_target(ClickHouseQuery(_sql(ROLLOUTS_SQL)))
            .span(24)
            .height(8)
        )
    )


# --------------------------------------------------------------------------- operations


WATERMARKS_SQL = """
    SELECT
        topic, partition, event_time, updated_at,
        dateDiff('second', event_time, updated_at) AS event_time_behind_update_seconds
    FROM watermarks FINAL
    ORDER BY topic, partition
"""
INGEST_SQL = """
    SELECT time, source, rows FROM (
        SELECT toStartOfMinute(ingested_at) AS time, 'predictions' AS source, count() AS rows
        FROM predictions
        WHERE $__timeFilter(ingested_at)
        GROUP BY time
        UNION ALL
        SELECT toStartOfMinute(ingested_at) AS time, 'feedback' AS source, count() AS rows
        FROM feedback
        WHERE $__timeFilter(ingested_at)
        GROUP BY time
    )
    ORDER BY time, source
"""


def operations_dashboard() -> gd.Dashboard:
    """Lag, DLQ, watermarks and throughput of the workers and the retrainer."""
    rate = "[$__rate_interval]"
    return (
        _base(
            "driftline-operations",
            "driftline / operations",
            "Health of the driftline workers and retrainer.",
            ["operations"],
        )
        .with_panel(
            timeseries.Panel()
            .title("Consumer lag")
            .datasource(PROMETHEUS)
            .with_target(
                _prom(
                    "sum by (topic, partition) (driftline_consumer_lag_messages)",
                    "{{topic}}/{{partition}}",
                )
            )
            .unit("short")
            .span(12)
            .height(8)
        )
        .with_panel(
            timeseries.Panel()
            .title("DLQ messages per second by reason")
            .datasource(PROMETHEUS)
            .with_target(
                _prom(f"sum by (reason) (rate(driftline_dlq_messages_total{rate}))", "{{reason}}")
            )
            .unit("ops")
            .span(12)
            .height(8)
        )
        .with_panel(
            timeseries.Panel()
            .title("Watermark delay (now - event-time watermark)")
            .datasource(PROMETHEUS)
            .with_target(
                _prom(
                    "max by (topic, partition) (driftline_watermark_delay_seconds)",
                    "{{topic}}/{{partition}}",
                )
            )
            .unit("s")
            .span(12)
            .height(8)
        )
        .with_panel(
            timeseries.Panel()
            .title("Ingest throughput")
            .datasource(PROMETHEUS)
            .with_target(
                _prom(
                    f"sum by (topic) (rate(driftline_ingested_messages_total{rate}))",
                    "messages {{topic}}",
                )
            )
            .with_target(
                _prom(
                    f"sum by (model_id) (rate(driftline_ingested_rows_total{rate}))",
                    "rows {{model_id}}",
                    "B",
                )
            )
            .unit("ops")
            .span(12)
            .height(8)
        )
        .with_panel(
            timeseries.Panel()
            .title("Windows closed and close duration (p95)")
            .datasource(PROMETHEUS)
            .with_target(
                _prom(
                    f"sum by (model_id) (increase(driftline_windows_closed_total{rate}))",
                    "closed {{model_id}}",
                )
            )
            .with_target(
                _prom(
                    "histogram_quantile(0.95, sum by (le, model_id) "
                    f"(rate(driftline_window_close_duration_seconds_bucket{rate})))",
                    "p95 seconds {{model_id}}",
                    "B",
                )
            )
            .span(12)
            .height(8)
        )
        .with_panel(
            timeseries.Panel()
            .title("Retrain requests and outcomes")
            .datasource(PROMETHEUS)
            .with_target(
                _prom(
                    f"sum by (model_id) (increase(driftline_retrain_requests_total{rate}))",
                    "requested {{model_id}}",
                )
            )
            .with_target(
                _prom(
                    "sum by (outcome) "
                    f"(increase(driftline_retrain_requests_processed_total{rate}))",
                    "{{outcome}}",
                    "B",
                )
            )
            .with_target(
                _prom(
                    "histogram_quantile(0.95, sum by (le, device) "
                    f"(rate(driftline_training_duration_seconds_bucket{rate})))",
                    "training p95 seconds {{device}}",
                    "C",
                )
            )
            .span(12)
            .height(8)
        )
        .with_panel(
            stat.Panel()
            .title("Processes reporting")
            .datasource(PROMETHEUS)
            .with_target(_prom('sum by (job) (up{job=~"driftline-.*"})', "{{job}}"))
            .span(6)
            .height(8)
        )
        .with_panel(
            table.Panel()
            .title("Stored watermarks per partition")
            .datasource(CLICKHOUSE)
            .with_target(ClickHouseQuery(_sql(WATERMARKS_SQL)))
            .span(8)
            .height(8)
        )
        .with_panel(
            timeseries.Panel()
            .title("Rows ingested per minute (ClickHouse, before deduplication)")
            .datasource(CLICKHOUSE)
            .with_target(ClickHouseQuery(_sql(INGEST_SQL), "timeseries"))
            .span(10)
            .height(8)
        )
    )


# --------------------------------------------------------------------------- output


def build_dashboards() -> dict[str, gm.Dashboard]:
    """Every dashboard by its file name (``<uid>.json``)."""
    built = [
        overview_dashboard().build(),
        drift_dashboard().build(),
        versions_dashboard().build(),
        operations_dashboard().build(),
    ]
    return {f"{board.uid}.json": board for board in built}


def render(board: gm.Dashboard) -> str:
    """Stable JSON of a dashboard: sorted keys, two-space indent, final newline."""
    data: Any = json.loads(json.dumps(board, cls=JSONEncoder))
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_dashboards(out: Path) -> list[Path]:
    """Write every dashboard under ``out``; return the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, board in build_dashboards().items():
        path = out / name
        path.write_text(render(board), encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m driftline.dashboards --out grafana/dashboards``."""
    parser = argparse.ArgumentParser(
        prog="python -m driftline.dashboards", description="Write the Grafana dashboards as JSON."
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    args = parser.parse_args(argv)
    for path in write_dashboards(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
