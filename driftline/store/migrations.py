"""Versioned schema migrations, applied in order and recorded in ``schema_migrations``.

Every statement is idempotent (``IF NOT EXISTS``), and so is every step that a
migration runs as code (it looks at the schema first), so re-running a migration
that was cut short is safe. The same SQL runs on chDB and on a ClickHouse server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .backend import Store

__all__ = ["MIGRATIONS", "Migration", "applied_versions", "migrate", "watermarks_keep_the_max"]


@dataclass(frozen=True)
class Migration:
    """One schema change: a version number, a name, its statements and, for a change
    that SQL alone cannot make idempotent (a new table engine), a step in code that
    runs after them.

    Examples
    --------
    >>> MIGRATIONS[0].version, MIGRATIONS[0].name
    (1, 'raw events and derived tables')
    """

    version: int
    name: str
    statements: tuple[str, ...]
    apply: Callable[[Store], None] | None = None


_RAW_EVENT_POSITION = """
    kafka_topic LowCardinality(String),
    kafka_partition Int32,
    kafka_offset Int64,
    batch_index UInt32,
    ingested_at DateTime64(6, 'UTC')"""

_WATERMARKS_MAX = """CREATE TABLE IF NOT EXISTS {name} (
    topic LowCardinality(String),
    partition Int32,
    event_time SimpleAggregateFunction(max, DateTime64(6, 'UTC')),
    updated_at SimpleAggregateFunction(max, DateTime64(6, 'UTC'))
) ENGINE = AggregatingMergeTree
ORDER BY (topic, partition)"""

_CARRY_WATERMARKS = (
    "INSERT INTO {target} (topic, partition, event_time, updated_at) "
    "SELECT topic, partition, max(event_time), max(updated_at) FROM {source} "
    "GROUP BY topic, partition"
)


def _table_engine(store: Store, table: str) -> str | None:
    rows = store.query(
        "SELECT engine FROM system.tables WHERE database = currentDatabase() "
        "AND name = {table:String}",
        {"table": table},
    )
    return str(rows[0]["engine"]) if rows else None


def watermarks_keep_the_max(store: Store) -> None:
    """Make ``watermarks`` keep the largest event time per partition, by construction.

    Migration 1 made it a ``ReplacingMergeTree(updated_at)``: a merge kept the row
    written last, so a group of late data (written after a newer one) moved the
    partition's watermark back once merged. Now it is an ``AggregatingMergeTree``
    whose ``event_time`` and ``updated_at`` are ``SimpleAggregateFunction(max)``:
    merges keep the maximum of both (the event-time watermark and the last progress
    that the idle rule reads), whatever the order of the writes. Writers insert plain
    values as before; readers take ``max()`` per partition (or ``FINAL``) and so get
    the maximum before merges too.

    The engine of a table cannot be altered: the new table is filled with the
    maximum per partition of the old one, the two are exchanged (atomic: readers
    always find a ``watermarks``), rows written to the old one meanwhile are carried
    over, and the old one is dropped. Each step is safe to repeat: carried rows are
    maxima, and the exchange is skipped once ``watermarks`` has the new engine.

    Examples
    --------
    >>> MIGRATIONS[3].apply is watermarks_keep_the_max
    True
    """
    swap = "watermarks_swap"  # the new table before the exchange, the old one after
    if _table_engine(store, "watermarks") != "AggregatingMergeTree":
        store.command(_WATERMARKS_MAX.format(name=swap))
        store.command(_CARRY_WATERMARKS.format(target=swap, source="watermarks"))
        store.command(f"EXCHANGE TABLES watermarks AND {swap}")
    if _table_engine(store, swap) is not None:
        store.command(_CARRY_WATERMARKS.format(target="watermarks", source=swap))
        store.command(f"DROP TABLE IF EXISTS {swap}")


# The columns of a stored prediction: served ones in ``predictions``, shadow ones in
# ``shadow_predictions`` (the same columns, so that one row builder feeds both).
_PREDICTION_COLUMNS = f"""
    model_id LowCardinality(String),
    model_version LowCardinality(String),
    event_id String,
    timestamp DateTime64(6, 'UTC'),
    features_num Map(LowCardinality(String), Float64),
    features_cat Map(LowCardinality(String), String),
    features_null Array(LowCardinality(String)),
    prediction_value Nullable(Float64),
    prediction_class Nullable(String),
    score Nullable(Float64),
    class_scores Map(LowCardinality(String), Float64),
    latency_ms Nullable(Float64),
    segment Map(LowCardinality(String), String),{_RAW_EVENT_POSITION}"""


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "raw events and derived tables",
        (
            f"""CREATE TABLE IF NOT EXISTS predictions ({_PREDICTION_COLUMNS}
) ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMMDD(timestamp)
ORDER BY (model_id, event_id)""",
            f"""CREATE TABLE IF NOT EXISTS feedback (
    model_id LowCardinality(String),
    event_id String,
    timestamp DateTime64(6, 'UTC'),
    label_value Nullable(Float64),
    label_class Nullable(String),{_RAW_EVENT_POSITION}
) ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMMDD(timestamp)
ORDER BY (model_id, event_id)""",
            """CREATE TABLE IF NOT EXISTS reference_profiles (
    model_id LowCardinality(String),
    model_version LowCardinality(String),
    profile String,
    created_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree(created_at)
ORDER BY (model_id, model_version)""",
            """CREATE TABLE IF NOT EXISTS window_metrics (
    model_id LowCardinality(String),
    model_version LowCardinality(String),
    window_start DateTime64(6, 'UTC'),
    window_end DateTime64(6, 'UTC'),
    metric LowCardinality(String),
    feature String,
    value Float64,
    p_value Nullable(Float64),
    threshold Nullable(Float64),
    status LowCardinality(String),
    n UInt64,
    label_coverage Nullable(Float64),
    revision UInt32,
    computed_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree(revision)
ORDER BY (model_id, model_version, window_start, metric, feature)""",
            """CREATE TABLE IF NOT EXISTS alerts (
    alert_id String,
    model_id LowCardinality(String),
    model_version LowCardinality(String),
    kind LowCardinality(String),
    feature Nullable(String),
    window_start DateTime64(6, 'UTC'),
    window_end DateTime64(6, 'UTC'),
    statistic LowCardinality(String),
    value Float64,
    threshold Float64,
    p_value Nullable(Float64),
    severity LowCardinality(String),
    opened_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY (model_id, alert_id)""",
            """CREATE TABLE IF NOT EXISTS model_versions (
    model_id LowCardinality(String),
    version String,
    parent_version Nullable(String),
    artifact_uri String,
    metrics Map(LowCardinality(String), Float64),
    status LowCardinality(String),
    request_id Nullable(String),
    data_from Nullable(DateTime64(6, 'UTC')),
    data_to Nullable(DateTime64(6, 'UTC')),
    created_at DateTime64(6, 'UTC'),
    updated_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (model_id, version)""",
            """CREATE TABLE IF NOT EXISTS watermarks (
    topic LowCardinality(String),
    partition Int32,
    event_time DateTime64(6, 'UTC'),
    updated_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (topic, partition)""",
        ),
    ),
    Migration(
        2,
        "streaming monitor state and full metric rows",
        (
            """CREATE TABLE IF NOT EXISTS monitor_state (
    model_id LowCardinality(String),
    model_version LowCardinality(String),
    seq UInt64,
    state String,
    updated_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree(seq)
ORDER BY (model_id, model_version)""",
            "ALTER TABLE window_metrics MODIFY COLUMN value Nullable(Float64)",
            "ALTER TABLE window_metrics ADD COLUMN IF NOT EXISTS kind LowCardinality(String)"
            " DEFAULT ''",
            "ALTER TABLE window_metrics ADD COLUMN IF NOT EXISTS q_value Nullable(Float64)",
            "ALTER TABLE window_metrics ADD COLUMN IF NOT EXISTS reference Nullable(Float64)",
            "ALTER TABLE window_metrics ADD COLUMN IF NOT EXISTS primary Bool DEFAULT true",
        ),
    ),
    Migration(
        3,
        "model version provenance",
        tuple(
            f"ALTER TABLE model_versions ADD COLUMN IF NOT EXISTS {column}"
            for column in (
                "alert_ids Array(String) DEFAULT []",
                "decision String DEFAULT ''",
                "train_rows UInt64 DEFAULT 0",
                "holdout_rows UInt64 DEFAULT 0",
                "training_seconds Float64 DEFAULT 0",
                "device LowCardinality(String) DEFAULT ''",
            )
        ),
    ),
    Migration(4, "watermarks keep the largest event time", (), watermarks_keep_the_max),
    # The streaming monitor keeps one clock per model (streams/monitor.py, "Watermark
    # rule"): the largest event time and the last progress of each model on each
    # partition, read every tick. The projection keeps them per part, pre-aggregated, so
    # that read costs the number of parts, not of rows (a ReplacingMergeTree needs to be
    # told what a merge does with a projection: rebuild it from the merged rows). The
    # minmax index on ``ingested_at`` lets the monitor read the rows stored since its last
    # look (re-sent event ids, data beyond the late-data horizon) without scanning the
    # model's history. Both only speed reads up: parts that lack them (written before this
    # migration, until the MATERIALIZE mutations end) are read as they are.
    Migration(
        5,
        "per-model watermarks and rows stored since a time",
        (
            "ALTER TABLE predictions MODIFY SETTING deduplicate_merge_projection_mode = 'rebuild'",
            "ALTER TABLE predictions ADD PROJECTION IF NOT EXISTS model_marks ("
            "SELECT model_id, kafka_topic, kafka_partition, max(timestamp), max(ingested_at) "
            "GROUP BY model_id, kafka_topic, kafka_partition)",
            "ALTER TABLE predictions ADD INDEX IF NOT EXISTS ingested ingested_at "
            "TYPE minmax GRANULARITY 1",
            "ALTER TABLE predictions MATERIALIZE PROJECTION model_marks",
            "ALTER TABLE predictions MATERIALIZE INDEX ingested",
        ),
    ),
    # Shadow predictions (scored by a version that did not serve the request) keep the
    # served prediction's event id: one row per model, version and event id, apart from
    # the served traffic that every window metric reads.
    Migration(
        6,
        "shadow predictions",
        (
            f"""CREATE TABLE IF NOT EXISTS shadow_predictions ({_PREDICTION_COLUMNS}
) ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMMDD(timestamp)
ORDER BY (model_id, model_version, event_id)""",
        ),
    ),
    Migration(
        7,
        "rollout traffic share of a version",
        ("ALTER TABLE model_versions ADD COLUMN IF NOT EXISTS traffic Nullable(Float64)",),
    ),
    # The streaming monitor's progress through a model's rollout (its policy state and
    # the next window to judge), saved after the decisions it took were published.
    Migration(
        8,
        "rollout progress",
        (
            """CREATE TABLE IF NOT EXISTS rollout_state (
    model_id LowCardinality(String),
    seq UInt64,
    state String,
    updated_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree(seq)
ORDER BY model_id""",
        ),
    ),
    # Each window a rollout judged: the confidence sequence after it (what the report
    # draws) and the decision taken there, if any.
    Migration(
        9,
        "rollout windows",
        (
            """CREATE TABLE IF NOT EXISTS rollout_windows (
    model_id LowCardinality(String),
    champion LowCardinality(String),
    challenger LowCardinality(String),
    phase LowCardinality(String),
    traffic Float64,
    window_start DateTime64(6, 'UTC'),
    estimate Float64,
    lower Float64,
    upper Float64,
    n UInt64,
    margin Float64,
    decision LowCardinality(String),
    reason String
) ENGINE = ReplacingMergeTree
ORDER BY (model_id, challenger, window_start)""",
        ),
    ),
    # What training a version cost (wall time and device were there from the start).
    Migration(
        10,
        "training cost of a version",
        (
            "ALTER TABLE model_versions ADD COLUMN IF NOT EXISTS cpu_seconds Float64 DEFAULT 0",
            "ALTER TABLE model_versions ADD COLUMN IF NOT EXISTS gpu_seconds Float64 DEFAULT 0",
            "ALTER TABLE model_versions ADD COLUMN IF NOT EXISTS bytes_read UInt64 DEFAULT 0",
        ),
    ),
    # The warning and critical levels a window's row was judged by (learned thresholds
    # differ from window to window); ``threshold`` stays the one its status reached.
    Migration(
        11,
        "warning and critical levels of each window metric",
        (
            "ALTER TABLE window_metrics ADD COLUMN IF NOT EXISTS warning Nullable(Float64)",
            "ALTER TABLE window_metrics ADD COLUMN IF NOT EXISTS critical Nullable(Float64)",
        ),
    ),
    # Segment slices: a window's rows per slice (``key=value``; '' for the whole model)
    # are rows of their own, so the slice joins the sorting (and deduplicating) key; a
    # column added in the same ALTER (without a DEFAULT: '' is a String's own) may extend it.
    Migration(
        12,
        "segment of each window metric and alert",
        (
            "ALTER TABLE window_metrics ADD COLUMN IF NOT EXISTS segment String,"
            " MODIFY ORDER BY (model_id, model_version, window_start, metric, feature, segment)",
            "ALTER TABLE alerts ADD COLUMN IF NOT EXISTS segment String DEFAULT ''",
        ),
    ),
    # Estimated performance states a 95% interval around its value.
    Migration(
        13,
        "interval of each window metric",
        (
            "ALTER TABLE window_metrics ADD COLUMN IF NOT EXISTS lower Nullable(Float64)",
            "ALTER TABLE window_metrics ADD COLUMN IF NOT EXISTS upper Nullable(Float64)",
        ),
    ),
)

_LEDGER = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version UInt32,
    name String,
    applied_at DateTime64(6, 'UTC') DEFAULT now64(6)
) ENGINE = ReplacingMergeTree
ORDER BY version"""


def applied_versions(store: Store) -> set[int]:
    """Versions recorded as applied in ``schema_migrations``."""
    store.command(_LEDGER)
    return {int(row["version"]) for row in store.query("SELECT version FROM schema_migrations")}


def migrate(store: Store, raw_ttl_days: int = 0) -> list[int]:
    """Apply every migration not yet recorded; return the versions applied now.

    ``raw_ttl_days`` > 0 sets a TTL on the raw tables (0 removes none and sets none).
    """
    done = applied_versions(store)
    applied: list[int] = []
    for migration in MIGRATIONS:
        if migration.version in done:
            continue
        for statement in migration.statements:
            store.command(statement)
        if migration.apply is not None:
            migration.apply(store)
        store.command(
            "INSERT INTO schema_migrations (version, name) "
            "VALUES ({version:UInt32}, {name:String})",
            {"version": migration.version, "name": migration.name},
        )
        applied.append(migration.version)
    if raw_ttl_days > 0:
        days = int(raw_ttl_days)
        for table in ("predictions", "shadow_predictions", "feedback"):
            store.command(
                f"ALTER TABLE {table} MODIFY TTL toDateTime(timestamp) + INTERVAL {days} DAY"
            )
    return applied
