"""Kafka plumbing shared by the CLI, the workers and the SDK (confluent-kafka)."""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from .settings import Settings

__all__ = ["TopicError", "client_config", "create_topics"]


class TopicError(RuntimeError):
    """Topics could not be created or listed."""


def client_config(
    settings: Settings, bootstrap_servers: str
) -> dict[str, str | int | float | bool]:
    """librdkafka configuration: bootstrap servers plus the security passthrough.

    Examples
    --------
    >>> client_config(Settings(), "127.0.0.1:9092")["bootstrap.servers"]
    '127.0.0.1:9092'
    """
    return {"bootstrap.servers": bootstrap_servers, **settings.kafka_client_config()}


def create_topics(
    settings: Settings, bootstrap_servers: str, timeout: float = 15.0
) -> dict[str, str]:
    """Create every driftline topic that does not exist yet.

    Returns
    -------
    dict
        Topic name to ``"created"`` or ``"exists"``.
    """
    admin = AdminClient(client_config(settings, bootstrap_servers))
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as error:
        raise TopicError(f"cannot list topics on {bootstrap_servers}: {error}") from None
    wanted = [name for name in settings.topics.all() if name not in existing]
    result = {name: "exists" for name in settings.topics.all() if name in existing}
    if not wanted:
        return result
    futures = admin.create_topics(
        [NewTopic(name, settings.partitions, settings.replication_factor) for name in wanted],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    for name, future in futures.items():
        try:
            future.result(timeout)
            result[name] = "created"
        except KafkaException as error:
            if "TOPIC_ALREADY_EXISTS" in str(error):
                result[name] = "exists"
            else:
                raise TopicError(f"cannot create topic {name}: {error}") from None
    return result
