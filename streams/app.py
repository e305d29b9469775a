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
concurrency 1 and works in batches (``Stream.noack_take``): it computes a batch from
the table (:func:`hold_step`, :func:`detect_step`: plain functions), sends every output
and waits for the broker's acknowledgements (its own :class:`~streams.sender.BatchSender`),
then sends the table's changelog records the same way, and only then updates the table in
memory and commits the batch's offsets (:func:`apply_step`, :func:`process_batches`) — so
neither a table's changelog nor a committed offset is ever ahead of the outputs it stands
for. Events fetched before a rebalance are dropped uncommitted and fetched again in order,
and each partition's records are applied only in offset order from the committed offset,
without holes (:class:`~streams.offsets.OffsetGuard`).
After a crash the batch is replayed from the last committed offset; the ledger skips
events it already applied (``seq``), the detector re-emits the opening change of a
replayed observation (KIP-557), and every output has a deterministic id or key.

Wire formats are the pydantic models of :mod:`slotstream.contract` as JSON; records
that do not parse go to the dead-letter topic with the reason, the raw payload and
their topic/partition/offset, and the agent keeps going.
"""

from __future__ import annotations

import gc
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, TypeVar, cast

import faust
from faust.types import EventT, TableT
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
from streams.offsets import OffsetGuard, first_offset_at
from streams.sender import BatchSender, Output, partitioner

__all__ = ["Step", "apply_step", "build_app", "detect_step", "hold_step", "main", "process_batches"]

log = logging.getLogger("slotstream.stream")

M = TypeVar("M", bound=BaseModel)


def _raw_topic(app: faust.App, name: str) -> faust.TopicT:
    # Raw bytes in and out: pydantic parses (and rejects into the dead-letter topic),
    # and keys hash exactly like our producers' keys (co-partitioned tables).
    # acks=False: the agents commit these topics' offsets themselves (process_batches);
    # Faust acks (so commits) messages it *skips* while a rebalance is under way, and its
    # rebalance commit then committed events nobody had processed (the kill test lost a
    # booking event that way).
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw", acks=False)


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


class Step(NamedTuple):
    """What an agent does with one batch: ``outputs`` to send (and have acknowledged)
    first, then ``writes`` to its table (key → value, bytes); ``tally`` counts
    outcomes for the log."""

    outputs: list[Output]
    writes: dict[bytes, bytes]
    tally: Counter[str]


def _to_json(record: BaseModel) -> bytes:
    # model_dump_json() would decode pydantic's bytes to str, and we encode them again.
    return record.__pydantic_serializer__.to_json(record)


def _parsed(
    batch: Iterable[EventT[bytes]],
    model: type[M],
    stage: str,
    dead_letter_topic: str,
    outputs: list[Output],
    tally: Counter[str],
) -> list[M]:
    """Records of ``batch`` that parse; the rest become dead letters in ``outputs``."""
    records = []
    for event in batch:
        message = event.message
        try:
            record = parse(model, message.value or b"")
        except ContractError as exc:
            outputs.append((dead_letter_topic, *_dead_letter(stage, event, str(exc))))
            tally["dead_letter"] += 1
            continue
        key = getattr(record, "key", None)
        if key is not None and message.key != key.encode():
            # Tables are partitioned by the record's key: a record under another
            # message key would be kept on the wrong partition.
            error = f"message key {message.key!r} is not the record key {key!r}"
            outputs.append((dead_letter_topic, *_dead_letter(stage, event, error)))
            tally["dead_letter"] += 1
            continue
        records.append(record)
    return records


def _as_outputs(topic: str, records: Iterable[Any]) -> list[Output]:
    """Contract records (each with a ``key``) as JSON messages for ``topic``."""
    return [(topic, r.key.encode(), _to_json(r)) for r in records]


def hold_step(batch: Sequence[EventT[bytes]], get: Callable[[bytes], bytes | None], settings: Settings) -> Step:
    """``hold_rooms`` on one batch of booking-event messages; ``get`` reads the ledger
    table (resource id as UTF-8 → stored JSON, or None). Outputs: observations, then
    booking counts, dead letters first; writes: the ledgers that moved."""
    topics, stream = settings.kafka.topics, settings.stream
    outputs: list[Output] = []
    tally: Counter[str] = Counter()
    bookings = _parsed(batch, BookingEvent, "stream.hold_rooms", topics.dead_letter, outputs, tally)

    def load(resource_id: str) -> Ledger | None:
        stored = get(resource_id.encode())
        return Ledger.model_validate_json(stored) if stored else None

    result = apply_batch(load, bookings, stream.hotel_capacity, stream.default_capacity)
    outputs += _as_outputs(topics.observations, result.observations)
    outputs += _as_outputs(topics.booking_counts, result.counts)
    writes = {r.encode(): _to_json(ledger) for r, ledger in result.ledgers.items()}
    tally.update(result.tally)
    tally["observations"] += len(result.observations)
    return Step(outputs, writes, tally)


def detect_step(batch: Sequence[EventT[bytes]], get: Callable[[bytes], bytes | None], settings: Settings) -> Step:
    """``detect_changes`` on one batch of observation messages; ``get`` reads the
    tracker table (slot key as UTF-8 → stored JSON, or None). Outputs: change events,
    then current states, dead letters first; writes: the trackers that moved."""
    topics = settings.kafka.topics
    outputs: list[Output] = []
    tally: Counter[str] = Counter()
    observations = _parsed(batch, AvailabilityObservation, "stream.detect_changes", topics.dead_letter, outputs, tally)

    def load(key: str) -> Tracker | None:
        stored = get(key.encode())
        return Tracker.from_json(stored) if stored else None

    result = detect_batch(load, observations)
    outputs += _as_outputs(topics.changes, result.changes)
    outputs += _as_outputs(topics.current, result.currents)
    writes = {k.encode(): t.to_json() for k, t in result.trackers.items()}
    tally.update(result.verdicts)
    return Step(outputs, writes, tally)


async def apply_step(
    out: BatchSender, table: TableT[bytes, bytes], step: Step, current: Callable[[], bool] = lambda: True
) -> bool:
    """Make one batch's effects durable, in the only safe order: the outputs, acknowledged;
    then the table's changelog records, acknowledged; then the table in memory. Returns
    whether the table was updated; the caller acks the batch's events only then.

    Nothing is committed before both sends were acknowledged. A crash before the first
    acknowledgement replays the batch against the old table (same outputs, same ids);
    between the two, the same; after the second, the replay meets the new table (the
    ledger skips applied ``seq``, the detector re-emits opening changes, KIP-557).

    ``current()`` is asked before the changelog is sent and before the table is touched:
    False means the group rebalanced while the batch was sent, so the partitions may have
    another owner and the table may have been restored from its changelog meanwhile; the
    batch's events will be fetched again from the committed offset. The changelog and the
    table are then left alone (a late changelog record from a former owner could land
    after the new owner's) and False returned: the batch is done again, against the
    restored table, with the same outputs.

    Not ``table[key] = value``: that queues the changelog record in Faust's producer
    buffer, which Faust's commit does not reliably drain — its flush gives up when the
    buffer made no progress for 0.1 s (``ProducerBuffer.flush_atmost``), so under load an
    offset could be committed while the table write that went with it was still
    unsent, and a kill -9 then lost it (found by the kill test). The changelog records
    go to the partition Faust's producer would pick (``use_partitioner``: murmur2 of the
    key), and recovery reads them like any other.
    """
    await out.send_all(step.outputs)
    if not current():
        return False
    if step.writes:
        changelog = table.changelog_topic.get_topic_name()
        await out.send_all((changelog, key, value) for key, value in step.writes.items())
    if not current():
        return False
    store = table.data
    for key, value in step.writes.items():
        store[key] = value
    return True


async def process_batches(
    app: faust.App,
    events: faust.StreamT[bytes],
    batch_size: int,
    within_s: float,
    table: TableT[bytes, bytes],
    step_of: Callable[[Sequence[EventT[bytes]], Callable[[bytes], bytes | None]], Step],
    out: BatchSender,
    stats: _Stats,
    guard: OffsetGuard[Any],
) -> None:
    """An agent's loop: batches of events (``Stream.noack_take``) → ``step_of`` against
    ``table`` → :func:`apply_step` → offset commit.

    Offsets are committed here, after each applied batch (the source topics are declared
    ``acks=False``, so Faust commits nothing of them itself). Events fetched before
    the latest rebalance (Faust's ``generation_id``) are dropped uncommitted: Faust does not
    clear a take buffer on a rebalance, and after it has restored the table and sought
    the partitions back to their committed offsets, processing such leftovers would apply
    them to the restored table ahead of the older events being fetched again — out of
    order, so a change would be computed against the wrong state (the kill test caught
    it). They are fetched again, in order. Of the rest, ``guard`` admits each partition's
    records only in offset order from the committed offset on, without holes
    (:mod:`streams.offsets`: Faust can drop records fetched again after a rebalance).
    """
    stream = cast(faust.Stream[bytes], events)
    async for taken in stream.noack_take(batch_size, within_s):
        await _process_batch(app, cast(Sequence[EventT[bytes]], taken), table, step_of, out, stats, guard)


async def _process_batch(
    app: faust.App,
    taken: Sequence[EventT[bytes]],
    table: TableT[bytes, bytes],
    step_of: Callable[[Sequence[EventT[bytes]], Callable[[bytes], bytes | None]], Step],
    out: BatchSender,
    stats: _Stats,
    guard: OffsetGuard[Any],
) -> None:
    generation = app.consumer_generation_id
    batch = [e for e in taken if e.message.generation_id == generation]
    if len(batch) < len(taken):
        log.info("dropped %d events fetched before a rebalance (fetched again)", len(taken) - len(batch))
    admission = await guard.admit(generation, [(e.message.tp, e.message.offset) for e in batch])
    if len(admission.admitted) < len(batch):
        log.info("not applied (offset order): %s", dict(admission.tally - Counter(admitted=len(admission.admitted))))
        batch = [batch[i] for i in admission.admitted]
    if not batch:
        return
    step = step_of(batch, table.get)
    if not await apply_step(out, table, step, current=lambda: app.consumer_generation_id == generation):
        log.info("rebalanced during a batch of %d events: it is done again", len(batch))
        return
    # The next offset to read per partition, committed only now that the batch's outputs
    # and table writes are acknowledged, and only while the partitions are still ours.
    if app.consumer_generation_id == generation:
        consumer = cast(Any, app.consumer)
        if await consumer._commit(admission.next_offsets):  # Faust's commit path, minus its ack bookkeeping
            # As Faust's own commit does: a restarted agent's guard starts from here.
            consumer._committed_offset.update(admission.next_offsets)
    stats.add(step.tally)


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
        producer_partitioner=partitioner,  # the default one, with key hashes cached
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

    def sender(agent: str) -> BatchSender:
        # Each agent sends its outputs with its own batch producer (see streams.sender);
        # Faust's producer writes only the table changelogs.
        return BatchSender(settings.kafka.bootstrap_servers, client_id=f"{stream.app_id}-{stream.instance}-{agent}")

    def committed(tp: Any) -> int | None:
        # Set by Faust's perform_seek, which every rebalance runs before the flow resumes, and
        # after each of our commits (process_batches). None: nothing committed (Faust also
        # stores 0 as None); the guard then starts at the log's first record.
        offset: int | None = cast(Any, app.consumer)._committed_offset.get(tp)
        return offset if offset is not None and offset >= 0 else None

    async def probe(tp: Any, offset: int) -> int | None:
        return await first_offset_at(settings.kafka.bootstrap_servers, tp.topic, tp.partition, offset, timeout_s=5.0)

    async def seek(tp: Any, offset: int, generation: object) -> None:
        consumer = cast(Any, app.consumer)
        try:
            # Not after a rebalance: the new generation starts from its committed offsets.
            if app.consumer_generation_id == generation and tp in consumer.assignment():
                await consumer.seek_wait({tp: offset})  # in the consumer's thread; resets Faust's read offset
        except Exception:  # a rebalance took it meanwhile: the next generation starts over anyway
            log.warning("could not seek %s to %d", tp, offset, exc_info=True)

    async def run(
        agent: str,
        events: faust.StreamT[bytes],
        table: TableT[bytes, bytes],
        step: Callable[[Sequence[EventT[bytes]], Callable[[bytes], bytes | None], Settings], Step],
        stats: _Stats,
    ) -> None:
        async with sender(agent) as out:
            await process_batches(
                app,
                events,
                stream.batch_size,
                stream.batch_within_s,
                table,
                lambda batch, get: step(batch, get, settings),
                out,
                stats,
                OffsetGuard(committed, probe, seek),
            )

    hold_stats = _Stats("hold_rooms")

    @app.agent(booking_events_topic, concurrency=1)
    async def hold_rooms(events: faust.StreamT[bytes]) -> None:
        await run("hold_rooms", events, ledger_by_resource, hold_step, hold_stats)

    detect_stats = _Stats("detect_changes")

    @app.agent(observations_topic, concurrency=1)
    async def detect_changes(events: faust.StreamT[bytes]) -> None:
        await run("detect_changes", events, tracker_by_slot, detect_step, detect_stats)

    return app


def main(settings: Settings, loglevel: str = "info") -> None:
    """Run the worker until SIGINT/SIGTERM (``slotstream stream``)."""
    app = build_app(settings)
    # The worker allocates millions of short-lived objects per replay (messages, events,
    # records, futures), very few of them in reference cycles. With CPython's default
    # thresholds (700, 10, 10) the cyclic collector ran so often that it cost ~18 % of
    # the worker's CPU on the full replay (stream-only, one worker: 97.8 → 79.7 CPU-s;
    # two workers: 87.4 → 75.5 CPU-s, peak RSS ~125 MB either way). Objects that live as
    # long as the process (modules, the app) are frozen out of the scans; cycles are
    # still collected, only less often.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, override_logging=True)
    worker.execute_from_commandline()
