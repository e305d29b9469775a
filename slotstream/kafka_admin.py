"""Create and inspect the topics declared in :mod:`slotstream.topics` (kafka-python admin)."""

from __future__ import annotations

from collections.abc import Iterable

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from slotstream.errors import TopicError
from slotstream.topics import Topics, TopicSpec

__all__ = ["ensure_topics", "existing_topics"]


def existing_topics(bootstrap_servers: str) -> dict[str, int]:
    """Topic name -> partition count of every topic on the broker."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers)
    try:
        return {t["name"]: len(t["partitions"]) for t in admin.describe_topics() if not t["name"].startswith("__")}
    finally:
        admin.close()


def ensure_topics(bootstrap_servers: str, specs: Iterable[TopicSpec] | None = None) -> list[str]:
    """Create each missing topic of ``specs`` (default: all declared, default prefix);
    returns the names created.

    Idempotent. Raises :class:`TopicError` when a topic exists with another partition
    count (consumers rely on key -> partition staying put) or the broker refuses.
    """
    specs = list(Topics().specs() if specs is None else specs)
    have = existing_topics(bootstrap_servers)
    for spec in specs:
        if spec.name in have and have[spec.name] != spec.partitions:
            raise TopicError(
                f"topic {spec.name} exists with {have[spec.name]} partitions, declared "
                f"{spec.partitions}; changing it would move keys between partitions"
            )
    missing = [s for s in specs if s.name not in have]
    if not missing:
        return []
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers)
    try:
        new = [
            NewTopic(name=s.name, num_partitions=s.partitions, replication_factor=1, topic_configs=s.configs())
            for s in missing
        ]
        try:
            admin.create_topics(new, timeout_ms=30_000)
        except TopicAlreadyExistsError:
            pass  # created concurrently: fine, that is the goal
        except KafkaError as exc:
            raise TopicError(f"creating topics failed: {exc}") from exc
    finally:
        admin.close()
    return [s.name for s in missing]


def consumer_lag(bootstrap_servers: str, group_id: str, topics: Iterable[str]) -> int:
    """Messages of ``topics`` not yet committed by consumer group ``group_id`` (a count).

    A partition the group never committed counts in full (from its beginning offset).
    """
    from kafka import KafkaConsumer, TopicPartition

    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers)
    try:
        committed = admin.list_group_offsets(group_id).get(group_id, {})
        partitions = [
            TopicPartition(topic, p) for topic in topics for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        ends = consumer.end_offsets(partitions)
        starts = consumer.beginning_offsets(partitions)
        lag = 0
        for tp in partitions:
            meta = committed.get(tp)
            position = meta.offset if meta is not None and meta.offset >= 0 else starts[tp]
            lag += max(ends[tp] - position, 0)
        return lag
    finally:
        consumer.close()
        admin.close()
