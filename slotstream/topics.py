"""Every Kafka topic slotstream owns, declared in one place.

Full names are ``<prefix><suffix>``; the prefix is ``Settings.kafka.topic_prefix``
(default ``slotstream.``, so e.g. ``slotstream.availability-changes``), which lets tests
and parallel deployments use their own namespace.

Other teams consume these topics, so names, partition counts and cleanup policies are
part of the wire contract. A topic that holds the *latest* state per key is compacted;
a topic that holds *events* is retained by time. ``slotstream topics create`` creates
them (idempotently); the broker itself never auto-creates topics
(``auto.create.topics.enable=false``). Faust creates its own changelog topics.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

__all__ = ["ALL_TOPICS", "TopicSpec", "Topics", "by_name"]

_DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    """One topic: ``name`` (the suffix after the prefix), ``partitions`` (count),
    ``cleanup_policy`` and its configs.

    ``retention_ms`` (milliseconds, -1 = forever) applies to ``delete`` topics only.
    """

    name: str
    partitions: int
    cleanup_policy: Literal["delete", "compact"]
    description: str
    retention_ms: int = 30 * _DAY_MS
    extra_configs: dict[str, str] = field(default_factory=dict)

    def configs(self) -> dict[str, str]:
        """Topic-level configs as the broker takes them (all values strings)."""
        conf = {"cleanup.policy": self.cleanup_policy, **self.extra_configs}
        if self.cleanup_policy == "delete":
            conf["retention.ms"] = str(self.retention_ms)
        return conf


BOOKING_EVENTS = TopicSpec(
    name="booking-events",
    partitions=4,
    cleanup_policy="delete",
    retention_ms=-1,
    description="Booking commands/facts (created, cancelled), keyed by resource so one "
    "resource's events stay ordered. Kept forever: the source of truth for replays.",
)
OBSERVATIONS = TopicSpec(
    name="observations",
    partitions=4,
    cleanup_policy="delete",
    description="Availability observations from producers, keyed by source|resource|slot.",
)
AVAILABILITY_CHANGES = TopicSpec(
    name="availability-changes",
    partitions=4,
    cleanup_policy="delete",
    retention_ms=-1,
    description="Change events: emitted only when free, capacity or status of a slot changed, keyed like observations.",
)
AVAILABILITY_CURRENT = TopicSpec(
    name="availability-current",
    partitions=4,
    cleanup_policy="compact",
    description="Latest state per source|resource|slot (compacted).",
)
BOOKING_COUNTS = TopicSpec(
    name="booking-counts",
    partitions=4,
    cleanup_policy="compact",
    description="Daily and monthly created/cancelled/net counts per hotel; the key is "
    "resource|period|bucket, the value the latest count (compacted).",
)
DEAD_LETTER = TopicSpec(
    name="dead-letter",
    partitions=1,
    cleanup_policy="delete",
    retention_ms=-1,
    description="Records that could not be processed, with the reason, the raw payload and their origin.",
)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    BOOKING_EVENTS,
    OBSERVATIONS,
    AVAILABILITY_CHANGES,
    AVAILABILITY_CURRENT,
    BOOKING_COUNTS,
    DEAD_LETTER,
)


@dataclass(frozen=True)
class Topics:
    """Full topic names under one prefix: ``Topics("slotstream.").changes`` etc."""

    prefix: str = "slotstream."

    def name(self, spec: TopicSpec) -> str:
        return f"{self.prefix}{spec.name}"

    @property
    def booking_events(self) -> str:
        return self.name(BOOKING_EVENTS)

    @property
    def observations(self) -> str:
        return self.name(OBSERVATIONS)

    @property
    def changes(self) -> str:
        return self.name(AVAILABILITY_CHANGES)

    @property
    def current(self) -> str:
        return self.name(AVAILABILITY_CURRENT)

    @property
    def booking_counts(self) -> str:
        return self.name(BOOKING_COUNTS)

    @property
    def dead_letter(self) -> str:
        return self.name(DEAD_LETTER)

    @property
    def stream_inputs(self) -> list[str]:
        """The topics the stream worker consumes."""
        return [self.booking_events, self.observations]

    @property
    def sink_inputs(self) -> list[str]:
        """The topics the sink consumes."""
        return [self.changes, self.current, self.booking_events, self.booking_counts, self.dead_letter]

    def specs(self) -> list[TopicSpec]:
        """Every declared topic with its full name."""
        return [replace(spec, name=self.name(spec)) for spec in ALL_TOPICS]


def by_name(name: str) -> TopicSpec:
    """The declared topic whose suffix is ``name``; raises ``KeyError`` if none is."""
    for spec in ALL_TOPICS:
        if spec.name == name:
            return spec
    raise KeyError(name)
