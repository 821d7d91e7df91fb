"""One settings model for every driftline process (environment prefix ``DRIFTLINE_``).

The environment names are a contract: ``DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS``
(empty: start the embedded broker), ``DRIFTLINE_TOPIC_PREFIX``,
``DRIFTLINE_PARTITIONS``, ``DRIFTLINE_CLICKHOUSE_URL`` (empty: chDB under the
data directory) and ``DRIFTLINE_DATA_DIR``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from .store.sandbox import QueryBounds

__all__ = ["Settings", "TopicNames"]

_TOPIC_PREFIX = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_DATABASE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class TopicNames:
    """The Kafka topic names derived from one prefix.

    Examples
    --------
    >>> TopicNames("acme").predictions
    'acme.predictions'
    >>> len(TopicNames("acme").all())
    6
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.predictions = f"{prefix}.predictions"
        self.feedback = f"{prefix}.feedback"
        self.alerts = f"{prefix}.alerts"
        self.retrain_requests = f"{prefix}.retrain-requests"
        self.model_versions = f"{prefix}.model-versions"
        self.dlq = f"{prefix}.dlq"

    def all(self) -> list[str]:
        """Every topic driftline uses, ingest topics first."""
        return [
            self.predictions,
            self.feedback,
            self.alerts,
            self.retrain_requests,
            self.model_versions,
            self.dlq,
        ]


class Settings(BaseSettings):
    """Configuration of every driftline process, read from ``DRIFTLINE_*`` variables.

    Examples
    --------
    >>> settings = Settings(topic_prefix="acme", partitions=3)
    >>> settings.topics.feedback, settings.partitions, settings.embedded_broker
    ('acme.feedback', 3, True)
    """

    model_config = SettingsConfigDict(env_prefix="DRIFTLINE_", extra="forbid", frozen=True)

    kafka_bootstrap_servers: str = Field(
        "", description="Kafka bootstrap servers; empty starts the embedded broker."
    )
    topic_prefix: str = Field("driftline", description="Prefix of every driftline topic.")
    partitions: int = Field(4, ge=1, le=1024, description="Partitions of created topics.")
    replication_factor: int = Field(1, ge=1, le=16)
    clickhouse_url: str = Field(
        "", description="ClickHouse HTTP URL; empty uses chDB under the data directory."
    )
    clickhouse_database: str = Field("driftline", description="ClickHouse database name.")
    clickhouse_user: str = "default"
    clickhouse_password: SecretStr = SecretStr("")
    data_dir: Path = Field(Path(".driftline"), description="Where embedded state lives.")
    raw_ttl_days: int = Field(0, ge=0, le=36_500, description="TTL of raw rows; 0 keeps them.")

    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_ssl_key_password: SecretStr | None = None

    max_message_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024, description="Largest accepted event."
    )
    ingest_batch_messages: int = Field(
        5_000,
        ge=1,
        le=100_000,
        description="Most messages per ingest group (a group is also cut at 16 MiB).",
    )
    ingest_flush_seconds: float = Field(
        0.5, gt=0, le=60, description="Longest a group waits after its first message."
    )
    worker_web_port: int = Field(6066, ge=0, le=65535, description="Worker HTTP port (0: any).")
    worker_web_host: str = Field(
        "127.0.0.1",
        min_length=1,
        description="Interface of the worker's HTTP pages (/metrics, /health, /query); "
        "0.0.0.0 in a container so Prometheus can scrape it.",
    )
    query_token: SecretStr | None = Field(
        None,
        description="Token of the worker's data pages (/query, /reference), sent as "
        "'Authorization: Bearer <token>'; unset: a new random token per worker start, "
        "written only to DATA_DIR/worker.json (mode 0600).",
    )
    query_max_seconds: float = Field(
        20.0, gt=0, le=3600, description="Longest a /query or 'db query' statement runs."
    )
    query_max_result_rows: int = Field(
        1_000_000, ge=1, description="Most rows a /query or 'db query' result may have."
    )
    query_max_result_bytes: int = Field(
        128 * 1024 * 1024, ge=1024, description="Largest /query or 'db query' result (bytes)."
    )
    query_max_memory_bytes: int = Field(
        1024 * 1024 * 1024,
        ge=16 * 1024 * 1024,
        description="Most memory a /query or 'db query' statement may use (bytes).",
    )
    shutdown_grace_seconds: float = Field(
        8.0,
        gt=0,
        le=600,
        description="After SIGTERM/SIGINT the worker exits at the latest after this long "
        "(whatever is still running is cut off as by a crash; nothing unacknowledged "
        "is lost).",
    )
    retrainer_metrics_port: int = Field(
        9108, ge=0, le=65535, description="Port of the retrainer's Prometheus /metrics."
    )
    retrainer_metrics_host: str = Field(
        "127.0.0.1",
        min_length=1,
        description="Interface of the retrainer's /metrics; 0.0.0.0 in a container.",
    )
    retrain_max_data_seconds: float = Field(
        30 * 86_400.0,
        gt=0,
        description="Longest data range a retrain request may ask for (data_to - data_from); "
        "a longer one is refused with a clear reason.",
    )
    max_future_seconds: float = Field(
        300.0,
        ge=0,
        le=31 * 86_400,
        description="Event time may run at most this far ahead of the worker's clock; a "
        "message with a later timestamp goes to the DLQ as 'timestamp_in_future'.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    monitors_dir: Path | None = Field(
        None, description="Folder of monitor YAML files (*.yaml) the worker evaluates."
    )
    monitor_interval_seconds: float = Field(
        1.0,
        gt=0,
        le=3600,
        description="How often the leader reads the watermark; a model's windows are "
        "planned when it crossed one of their ends plus the allowed lateness.",
    )
    idle_partition_seconds: float = Field(
        10.0,
        gt=0,
        description="A predictions partition without new events for this long (processing "
        "time) stops holding the global watermark back.",
    )
    late_data_horizon_seconds: float = Field(
        172_800.0,
        ge=0,
        description="Closed windows whose end is this close to the watermark are "
        "re-evaluated when late labels or predictions arrive.",
    )
    late_data_check_seconds: float = Field(
        5.0,
        ge=0,
        description="How often the leader re-counts closed windows within the horizon for "
        "late labels and predictions, and looks for new model versions and reference "
        "profiles; new windows close as soon as the watermark passes their end plus the "
        "allowed lateness.",
    )
    artifact_root: Path | None = Field(
        None, description="Where model artifacts are written (default: DATA_DIR/artifacts)."
    )

    @field_validator("topic_prefix")
    @classmethod
    def _valid_prefix(cls, value: str) -> str:
        if not _TOPIC_PREFIX.match(value):
            raise ValueError(
                f"topic_prefix {value!r} must be 1-100 characters of letters, digits, '.', '_', '-'"
            )
        return value

    @field_validator("query_token")
    @classmethod
    def _strong_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None  # empty (e.g. an unset compose variable): a random token per start
        if len(value.get_secret_value().strip()) < 16:
            raise ValueError("query_token must be at least 16 characters")
        return SecretStr(value.get_secret_value().strip())

    @field_validator("clickhouse_database")
    @classmethod
    def _valid_database(cls, value: str) -> str:
        if not _DATABASE.match(value):
            raise ValueError(f"clickhouse_database {value!r} is not a plain identifier")
        return value

    @property
    def topics(self) -> TopicNames:
        """Topic names under :attr:`topic_prefix`."""
        return TopicNames(self.topic_prefix)

    @property
    def embedded_broker(self) -> bool:
        """Whether no external Kafka is configured."""
        return not self.kafka_bootstrap_servers.strip()

    @property
    def embedded_store(self) -> bool:
        """Whether no external ClickHouse is configured."""
        return not self.clickhouse_url.strip()

    @property
    def query_bounds(self) -> QueryBounds:
        """The bounds of every statement of the query page and ``driftline db query``."""
        from .store.sandbox import QueryBounds

        return QueryBounds(
            max_seconds=self.query_max_seconds,
            max_result_rows=self.query_max_result_rows,
            max_result_bytes=self.query_max_result_bytes,
            max_memory_bytes=self.query_max_memory_bytes,
        )

    @property
    def artifacts_dir(self) -> Path:
        """The artifact root: ``artifact_root``, or ``artifacts`` under the data directory."""
        return self.artifact_root if self.artifact_root is not None else self.data_dir / "artifacts"

    def kafka_client_config(self) -> dict[str, str]:
        """librdkafka security settings (``bootstrap.servers`` excluded)."""
        config: dict[str, str] = {"security.protocol": self.kafka_security_protocol.lower()}
        if self.kafka_sasl_mechanism:
            config["sasl.mechanism"] = self.kafka_sasl_mechanism
        if self.kafka_sasl_username is not None:
            config["sasl.username"] = self.kafka_sasl_username
        if self.kafka_sasl_password is not None:
            config["sasl.password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_ssl_cafile is not None:
            config["ssl.ca.location"] = str(self.kafka_ssl_cafile)
        if self.kafka_ssl_certfile is not None:
            config["ssl.certificate.location"] = str(self.kafka_ssl_certfile)
        if self.kafka_ssl_keyfile is not None:
            config["ssl.key.location"] = str(self.kafka_ssl_keyfile)
        if self.kafka_ssl_key_password is not None:
            config["ssl.key.password"] = self.kafka_ssl_key_password.get_secret_value()
        return config
