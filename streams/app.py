"""The Faust stream worker: booking events → observations → change events.

Model → app → topics → tables → agents, as in Faust's examples:

- ``hold_rooms`` reads booking events (key: resource) and keeps a
  :class:`~streams.ledger.Ledger` per resource in ``ledger_by_resource``; every night
  whose rooms held changed becomes an observation, and the day/month booking counts it
  touched go to the booking-counts topic.
- ``detect_changes`` reads observations of any producer (key: ``source|resource|slot``)
  and keeps a :class:`~streams.detect.Tracker` per slot in ``tracker_by_slot``; it
  emits a change event only when a slot's state changed, and the latest state with its
  open interval to the compacted current topic.

Delivery is at-least-once (Faust's ``exactly_once`` is not used). Each agent runs with
concurrency 1 and works in batches (``Stream.take_events``): it computes a batch from
the table, sends every output and waits for the broker's acknowledgements, and only
then writes the table — so a table's changelog is never ahead of the outputs it caused.
After a crash the batch is replayed from the last committed offset; the ledger skips
events it already applied (``seq``), the detector re-emits the opening change of a
replayed observation (KIP-557), and every output has a deterministic id or key.

Wire formats are the pydantic models of :mod:`slotstream.contract` as JSON; records
that do not parse go to the dead-letter topic with the reason, the raw payload and
their topic/partition/offset, and the agent keeps going.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar, cast

import faust
from faust.types import EventT
from pydantic import BaseModel

from slotstream.contract import (
    AvailabilityObservation,
    BookingEvent,
    ContractError,
    DeadLetter,
    TopicOrigin,
    parse,
)
from slotstream.settings import Settings
from streams.detect import Tracker, detect_batch
from streams.ledger import Ledger, apply_batch

__all__ = ["build_app", "main"]

log = logging.getLogger("slotstream.stream")

Output = tuple[str, bytes, bytes]  # topic, key, value
M = TypeVar("M", bound=BaseModel)


def _raw_topic(app: faust.App, name: str) -> faust.TopicT:
    # Raw bytes in and out: pydantic parses (and rejects into the dead-letter topic),
    # and keys hash exactly like our producers' keys (co-partitioned tables).
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


def _dead_letter(stage: str, event: EventT[bytes], error: str) -> tuple[bytes, bytes]:
    msg = event.message
    letter = DeadLetter.of(
        stage=stage,
        error=error,
        raw=msg.value if isinstance(msg.value, bytes) else bytes(msg.value or b""),
        origin=TopicOrigin(topic=msg.topic, partition=msg.partition, offset=msg.offset),
    )
    return letter.key.encode(), letter.model_dump_json().encode()


class _Stats:
    """Counts per verdict, logged every ``every`` seconds."""

    def __init__(self, name: str, every: float = 10.0) -> None:
        self.name = name
        self.counts: Counter[str] = Counter()
        self._every = every
        self._next = time.monotonic() + every

    def add(self, counts: Counter[str]) -> None:
        self.counts.update(counts)
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self._every
            log.info("%s: %s", self.name, dict(sorted(self.counts.items())))


def build_app(settings: Settings) -> faust.App:
    """The Faust app with its topics, tables and agents, configured from ``settings``."""
    stream = settings.stream
    topics = settings.kafka.topics
    # One data directory per worker process: several may run side by side.
    datadir = settings.stack.state_dir / "faust" / stream.app_id / stream.instance
    datadir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    app = faust.App(
        stream.app_id,
        broker=[f"kafka://{hp}" for hp in settings.kafka.bootstrap_servers.split(",")],
        store="memory://",
        datadir=str(datadir),
        topic_partitions=4,
        topic_replication_factor=1,
        processing_guarantee="at_least_once",
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        broker_commit_every=10_000,
        broker_commit_interval=1.0,
        producer_linger_ms=5,
        producer_max_batch_size=256 * 1024,
        stream_buffer_maxsize=16_384,
        web_enabled=False,
        # Raw bytes everywhere, tables included: pydantic does the (de)serialization.
        key_serializer="raw",
        value_serializer="raw",
        table_cleanup_interval=3600.0,
        # No standby replicas: with several workers, Faust seeks a never-written standby
        # changelog partition to offset -1 and crashes (aiokafka refuses negative offsets);
        # the memory store recovers from the changelog on assignment anyway.
        table_standby_replicas=0,
    )

    booking_events_topic = _raw_topic(app, topics.booking_events)
    observations_topic = _raw_topic(app, topics.observations)

    ledger_by_resource = app.Table(
        "ledger_by_resource",
        key_type=bytes,
        value_type=bytes,
        partitions=4,
        use_partitioner=True,  # keys hash like the source topic's keys: same partition
    )
    tracker_by_slot = app.Table(
        "tracker_by_slot",
        key_type=bytes,
        value_type=bytes,
        partitions=4,
        use_partitioner=True,
    )

    async def send_all(outputs: Iterable[Output]) -> None:
        """Send and wait for every acknowledgement (outputs before state)."""
        producer = app.producer
        pending: list[Awaitable[Any]] = []
        for topic, key, value in outputs:
            pending.append(await producer.send(topic, key, value, None, None, None))
        if pending:
            await asyncio.gather(*pending)

    def parsed(
        batch: Iterable[EventT[bytes]], model: type[M], stage: str, outputs: list[Output], tally: Counter[str]
    ) -> list[M]:
        """Records of ``batch`` that parse; the rest become dead letters in ``outputs``."""
        records = []
        for event in batch:
            try:
                record = parse(model, event.message.value or b"")
            except ContractError as exc:
                outputs.append((topics.dead_letter, *_dead_letter(stage, event, str(exc))))
                tally["dead_letter"] += 1
                continue
            key = getattr(record, "key", None)
            if key is not None and event.message.key != key.encode():
                # Tables are partitioned by the record's key: a record under another
                # message key would be kept on the wrong partition.
                error = f"message key {event.message.key!r} is not the record key {key!r}"
                outputs.append((topics.dead_letter, *_dead_letter(stage, event, error)))
                tally["dead_letter"] += 1
                continue
            records.append(record)
        return records

    def as_outputs(topic: str, records: Iterable[Any]) -> list[Output]:
        """Contract records (each with a ``key``) as JSON messages for ``topic``."""
        return [(topic, r.key.encode(), r.model_dump_json().encode()) for r in records]

    def load_ledger(resource_id: str) -> Ledger | None:
        stored = ledger_by_resource.get(resource_id.encode())
        return Ledger.model_validate_json(stored) if stored else None

    def load_tracker(key: str) -> Tracker | None:
        stored = tracker_by_slot.get(key.encode())
        return Tracker.model_validate_json(stored) if stored else None

    hold_stats = _Stats("hold_rooms")

    @app.agent(booking_events_topic, concurrency=1)
    async def hold_rooms(events: faust.StreamT[bytes]) -> None:
        async for batch in cast(faust.Stream[bytes], events).take_events(stream.batch_size, stream.batch_within_s):
            outputs: list[Output] = []
            tally: Counter[str] = Counter()
            bookings = parsed(batch, BookingEvent, "stream.hold_rooms", outputs, tally)
            result = apply_batch(load_ledger, bookings, stream.hotel_capacity, stream.default_capacity)
            outputs += as_outputs(topics.observations, result.observations)
            outputs += as_outputs(topics.booking_counts, result.counts)
            await send_all(outputs)
            for resource_id, ledger in result.ledgers.items():
                ledger_by_resource[resource_id.encode()] = ledger.model_dump_json().encode()
            tally.update(result.tally)
            tally["observations"] += len(result.observations)
            hold_stats.add(tally)

    detect_stats = _Stats("detect_changes")

    @app.agent(observations_topic, concurrency=1)
    async def detect_changes(events: faust.StreamT[bytes]) -> None:
        async for batch in cast(faust.Stream[bytes], events).take_events(stream.batch_size, stream.batch_within_s):
            outputs: list[Output] = []
            tally: Counter[str] = Counter()
            observations = parsed(batch, AvailabilityObservation, "stream.detect_changes", outputs, tally)
            result = detect_batch(load_tracker, observations)
            outputs += as_outputs(topics.changes, result.changes)
            outputs += as_outputs(topics.current, result.currents)
            await send_all(outputs)
            for key, tracker in result.trackers.items():
                tracker_by_slot[key.encode()] = tracker.model_dump_json().encode()
            tally.update(result.verdicts)
            detect_stats.add(tally)

    return app


def main(settings: Settings, loglevel: str = "info") -> None:
    """Run the worker until SIGINT/SIGTERM (``slotstream stream``)."""
    app = build_app(settings)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, override_logging=True)
    worker.execute_from_commandline()
