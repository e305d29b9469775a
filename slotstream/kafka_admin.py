"""Create and inspect the topics declared in :mod:`slotstream.topics` (kafka-python admin)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from slotstream.errors import TopicError
from slotstream.topics import Topics, TopicSpec

__all__ = ["OffsetProbe", "OffsetSample", "consumer_lag", "ensure_topics", "existing_topics"]


def existing_topics(bootstrap_servers: str) -> dict[str, int]:
    """Topic name -> partition count of every topic on the broker."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers)
    try:
        return {t["name"]: len(t["partitions"]) for t in admin.describe_topics() if not t["name"].startswith("__")}
    finally:
        admin.close()


#: Seconds :func:`ensure_topics` waits for created topics to appear in the metadata.
CREATE_VISIBLE_S = 30.0


def ensure_topics(bootstrap_servers: str, specs: Iterable[TopicSpec] | None = None) -> list[str]:
    """Create each missing topic of ``specs`` (default: all declared, default prefix);
    returns the names created.

    Idempotent; returns once the created topics show in the broker's metadata. Raises
    :class:`TopicError` when a topic exists with another partition count (consumers rely
    on key -> partition staying put), the broker refuses, or created topics stay
    invisible for :data:`CREATE_VISIBLE_S` seconds.
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
    # CreateTopics returns once the controller has them; the broker's metadata, which
    # producers check, catches up a moment later (seen under load: a topic reported
    # missing right after its creation). Return only once every topic is visible.
    names = {s.name for s in missing}
    deadline = time.monotonic() + CREATE_VISIBLE_S
    while not names <= existing_topics(bootstrap_servers).keys():
        if time.monotonic() > deadline:
            raise TopicError(f"created topics not visible after {CREATE_VISIBLE_S:.0f} s: {', '.join(sorted(names))}")
        time.sleep(0.1)
    return [s.name for s in missing]


#: Milliseconds an offset lookup may take before ``KafkaTimeoutError``.
TIMEOUT_MS = 30_000


@dataclass(frozen=True)
class OffsetSample:
    """One look at the broker: ``end_offsets`` per topic (the messages ever appended,
    summed over partitions, a count) and ``lag`` per consumer group (messages of its
    topics not yet committed, a count)."""

    end_offsets: dict[str, int]
    lag: dict[str, int]


class OffsetProbe:
    """Reads topic end offsets and consumer-group lag, keeping one admin client and one
    (group-less) consumer open between calls; :meth:`close` them when done.

    ``groups`` maps a consumer group id to the topics it consumes. A partition a group
    never committed counts in full (from its beginning offset); a topic that does not
    exist counts as empty. kafka-python errors (``kafka.errors.KafkaError``, e.g.
    ``KafkaTimeoutError`` after :data:`TIMEOUT_MS`) propagate.
    """

    def __init__(self, bootstrap_servers: str) -> None:
        from kafka import KafkaConsumer

        self._admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers)
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers)

    def sample(self, topics: Sequence[str], groups: Mapping[str, Sequence[str]]) -> OffsetSample:
        from kafka import TopicPartition

        names = sorted(set(topics).union(*groups.values()))
        # Partitions from the admin API, and offsets with a timeout: the consumer's
        # metadata refresh (partitions_for_topic) waits without one and was seen to hang
        # for good on a busy broker (kafka-python 3.0.12).
        partitions = [
            TopicPartition(t["name"], p["partition_index"])
            for t in self._admin.describe_topics(names)
            if t["error_code"] == 0
            for p in sorted(t["partitions"], key=lambda p: p["partition_index"])
        ]
        ends = self._consumer.end_offsets(partitions, timeout_ms=TIMEOUT_MS)
        starts = self._consumer.beginning_offsets(partitions, timeout_ms=TIMEOUT_MS)
        end_offsets = {t: sum(ends[tp] for tp in partitions if tp.topic == t) for t in topics}
        lag: dict[str, int] = {}
        for group, group_topics in groups.items():
            committed = self._admin.list_group_offsets(group).get(group, {})
            total = 0
            for tp in partitions:
                if tp.topic not in group_topics:
                    continue
                meta = committed.get(tp)
                position = meta.offset if meta is not None and meta.offset >= 0 else starts[tp]
                total += max(ends[tp] - position, 0)
            lag[group] = total
        return OffsetSample(end_offsets=end_offsets, lag=lag)

    def close(self) -> None:
        self._consumer.close()
        self._admin.close()


def consumer_lag(bootstrap_servers: str, group_id: str, topics: Iterable[str]) -> int:
    """Messages of ``topics`` not yet committed by consumer group ``group_id`` (a count).

    A partition the group never committed counts in full (from its beginning offset).
    """
    probe = OffsetProbe(bootstrap_servers)
    try:
        return probe.sample([], {group_id: list(topics)}).lag[group_id]
    finally:
        probe.close()
