"""The sink process: Kafka topics -> :func:`sinks.writer.write_batch` -> TimescaleDB.

Consumes the five output topics of the pipeline (changes, current, booking events,
booking counts, dead letters) in one consumer group, without auto-commit, reading only
committed transactions (``read_committed``: the stream worker does not write
transactionally, but another producer of these topics may, and its aborted records must
not reach the database).
Each ``getmany`` batch is parsed with :func:`slotstream.contract.parse` and written in one
database transaction; only after that transaction committed are the batch's offsets
committed to Kafka. A crash in between redelivers records the database already has,
which :func:`~sinks.writer.write_batch` makes harmless: at-least-once delivery,
exactly-once effect.

A record that does not parse becomes a :class:`~slotstream.contract.DeadLetter`
(stage ``sink``, origin ``topic:partition:offset``, the raw payload) written in the same
transaction, so a poison record never stops the sink. A record the database refuses
(say, a count beyond 32 bits) is found by bisecting its batch and dead-lettered likewise.

Parsing and database work run in a worker thread (``asyncio.to_thread``) on a
synchronous psycopg connection, so the event loop keeps serving the consumer's heartbeats
while a batch is written; one writer serves the runner, the tests and any other caller.
Measured on the local stack (2 cores): the thread hop costs 60-100 µs per batch; a
depth-1 pipeline (fetching and parsing batch N+1 while N is written) gained nothing
measurable, PostgreSQL and the sink sharing the cores, so batches are handled in turn.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

import psycopg
from aiokafka import AIOKafkaConsumer
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError
from pydantic import BaseModel

from sinks.errors import RejectedBatchError, SinkError
from sinks.health import HealthSampler
from sinks.migrate import migrate
from sinks.writer import SinkBatch, WriteCounts, write_batch
from slotstream.contract import (
    AvailabilityChange,
    AvailabilityCurrent,
    BookingCount,
    BookingEvent,
    ContractError,
    DeadLetter,
    TopicOrigin,
    parse,
)
from slotstream.settings import PostgresSettings, Settings
from slotstream.topics import Topics

__all__ = ["STAGE", "SinkTotals", "main", "run_sink", "sink_dead_letter", "topic_models"]

log = logging.getLogger(__name__)

#: ``DeadLetter.stage`` of records the sink gives up on.
STAGE: Final = "sink"
#: Seconds to wait for the consumer group to assign partitions when ``until_idle_s`` is
#: given (a batch run must not wait forever for a broker that never answers).
JOIN_TIMEOUT_S: Final = 60.0
#: Attempts at writing one batch when the database is unreachable or a transaction is
#: rolled back by a deadlock/serialization failure, with 1, 2, 4, ... s between them.
DB_ATTEMPTS: Final = 6

# SinkBatch attribute per model.
_KIND: dict[type[BaseModel], str] = {
    AvailabilityChange: "changes",
    AvailabilityCurrent: "currents",
    BookingEvent: "booking_events",
    BookingCount: "booking_counts",
    DeadLetter: "dead_letters",
}


def topic_models(topics: Topics) -> dict[str, type[BaseModel]]:
    """Full topic name -> the contract model its values hold, for the five topics the sink reads."""
    return {
        topics.changes: AvailabilityChange,
        topics.current: AvailabilityCurrent,
        topics.booking_events: BookingEvent,
        topics.booking_counts: BookingCount,
        topics.dead_letter: DeadLetter,
    }


@dataclass(frozen=True)
class SinkTotals:
    """What one :func:`run_sink` call did.

    ``batches``: batches written; ``records``: Kafka records consumed (tombstones
    included); ``dead_lettered``: records the sink turned into dead letters itself (did
    not parse, or refused by the database); ``tombstones``: records without a value
    (skipped: compacted topics may carry them); ``counts``: rows written, summed;
    ``elapsed_s`` / ``db_s``: seconds running / spent writing to the database.
    """

    batches: int = 0
    records: int = 0
    dead_lettered: int = 0
    tombstones: int = 0
    counts: WriteCounts = field(default_factory=WriteCounts)
    elapsed_s: float = 0.0
    db_s: float = 0.0

    @property
    def records_per_s(self) -> float:
        return self.records / self.elapsed_s if self.elapsed_s > 0 else 0.0


def sink_dead_letter(error: str, raw: bytes, origin: TopicOrigin) -> DeadLetter:
    """A dead letter of stage ``sink`` for the Kafka record at ``origin``, ``raw`` kept losslessly.

    PostgreSQL text cannot hold NUL characters, so a payload containing one is kept as
    base64 (``raw_encoding``), and NULs in the error message are escaped.
    """
    dl = DeadLetter.of(stage=STAGE, error=error.replace("\x00", "\\x00"), raw=raw, origin=origin)
    if "\x00" in dl.raw:
        dl = dl.model_copy(update={"raw": base64.b64encode(raw).decode("ascii"), "raw_encoding": "base64"})
    return dl


@dataclass(frozen=True)
class _Item:
    """One consumed record, parsed (or dead-lettered), with where it came from."""

    kind: str
    record: BaseModel
    raw: bytes
    origin: TopicOrigin
    #: True when the sink itself turned the record into a dead letter (did not parse).
    rejected: bool = False


def _decode(msg: Any, models: dict[str, type[BaseModel]]) -> _Item | None:
    """The record of Kafka message ``msg``; None for a tombstone."""
    if msg.value is None:
        return None
    raw = bytes(msg.value)
    origin = TopicOrigin(topic=msg.topic, partition=msg.partition, offset=msg.offset)
    model = models[msg.topic]
    try:
        record: BaseModel = parse(model, raw)
    except ContractError as exc:
        return _Item("dead_letters", sink_dead_letter(str(exc), raw, origin), raw, origin, rejected=True)
    return _Item(_KIND[model], record, raw, origin)


def _batch_of(items: Sequence[_Item]) -> SinkBatch:
    batch = SinkBatch()
    for item in items:
        getattr(batch, item.kind).append(item.record)
    return batch


class _Database:
    """The sink's connection (autocommit: write_batch opens its own transactions)."""

    def __init__(self, pg: PostgresSettings, application_name: str) -> None:
        self.pg = pg
        self.application_name = application_name
        self.conn: psycopg.Connection[Any] | None = None

    def connection(self) -> psycopg.Connection[Any]:
        if self.conn is None or self.conn.closed:
            self.conn = psycopg.connect(
                self.pg.conninfo(), autocommit=True, application_name=self.application_name, connect_timeout=10
            )
        return self.conn

    def migrate(self) -> list[str]:
        return migrate(self.connection(), self.pg)

    def write(self, items: Sequence[_Item]) -> tuple[WriteCounts, int]:
        """Write ``items``; returns the counts and how many the database refused (those
        were dead-lettered instead). Raises psycopg.OperationalError when the connection
        is lost (the caller retries the whole batch: writes are idempotent)."""
        conn = self.connection()
        try:
            return write_batch(conn, _batch_of(items), schema=self.pg.db_schema), 0
        except RejectedBatchError as exc:
            if len(items) > 1:
                # Bisect to the refused record(s); every half is a transaction of its own,
                # which is fine: offsets are committed only after all halves are written.
                mid = len(items) // 2
                (a, na), (b, nb) = self.write(items[:mid]), self.write(items[mid:])
                return a + b, na + nb
            item = items[0]
            log.warning("database refused %s at %s: %s", item.kind, item.origin, exc.__cause__)
            dl = sink_dead_letter(f"rejected by the database: {exc.__cause__}", item.raw, item.origin)
            return write_batch(conn, SinkBatch(dead_letters=[dl]), schema=self.pg.db_schema), 1

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def reset(self) -> None:
        """Drop a connection that may be broken; the next write reconnects."""
        try:
            self.close()
        except psycopg.Error:
            self.conn = None


class _Assignments(ConsumerRebalanceListener):  # type: ignore[misc]
    """Notes when the group (re)assigned partitions: the idle clock starts there."""

    def __init__(self) -> None:
        self.assigned_at: float | None = None

    async def on_partitions_revoked(self, revoked: Any) -> None:
        log.info("partitions revoked: %s", sorted(f"{tp.topic}:{tp.partition}" for tp in revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.assigned_at = time.monotonic()
        log.info("partitions assigned: %s", sorted(f"{tp.topic}:{tp.partition}" for tp in assigned))


async def run_sink(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    until_idle_s: float | None = None,
    progress: Callable[[WriteCounts], None] | None = None,
    log_every_s: float = 10.0,
) -> SinkTotals:
    """Consume the pipeline's output topics into TimescaleDB until told to stop.

    Runs the migrations first (:func:`sinks.migrate.migrate`). Then loops: ``getmany``
    (at most ``settings.sink.batch_size`` records, waiting at most
    ``settings.sink.batch_wait_ms``), write the batch in one transaction, commit the
    batch's offsets (last offset + 1 per partition), call ``progress`` with the batch's
    counts. Logs a line with counts and rates every ``log_every_s`` seconds.

    Every ``settings.sink.health_interval_s`` seconds (unless 0) a pipeline health sample
    goes to ``pipeline_metrics`` (:mod:`sinks.health`), and a last one when stopping.

    Stops after the batch in hand when ``stop`` is set, or when ``until_idle_s`` is given
    and no record arrived for that many seconds since the last record or partition
    assignment. Returns the totals.

    Raises :class:`SinkError` when a topic does not exist (``slotstream topics create``),
    the group gets no assignment within :data:`JOIN_TIMEOUT_S` in an ``until_idle_s`` run,
    or the database stays unreachable for :data:`DB_ATTEMPTS` attempts;
    :class:`~sinks.errors.MigrationError` when the schema cannot be migrated. Offsets of a
    batch that was not written are never committed.
    """
    stop = stop or asyncio.Event()
    started = time.monotonic()
    models = topic_models(settings.kafka.topics)
    # The group in pg_stat_activity tells which sink a connection belongs to (63 bytes max).
    db = _Database(settings.postgres, f"slotstream-sink {settings.sink.group_id}"[:63])
    applied = await asyncio.to_thread(db.migrate)
    if applied:
        log.info("migrated schema %s: %s", settings.postgres.db_schema, ", ".join(applied))
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        group_id=settings.sink.group_id,
        client_id="slotstream-sink",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    listener = _Assignments()
    totals = SinkTotals()
    health = HealthSampler(settings) if settings.sink.health_interval_s > 0 else None
    health_stop = asyncio.Event()
    health_task = asyncio.create_task(health.run(health_stop)) if health is not None else None
    await consumer.start()
    try:
        missing = sorted(set(models) - set(await consumer.topics()))
        if missing:
            raise SinkError(f"topics {', '.join(missing)} do not exist; create them with `slotstream topics create`")
        consumer.subscribe(topics=list(models), listener=listener)
        last_record = started
        window, window_start = WriteCounts(), started
        while not stop.is_set():
            data = await consumer.getmany(timeout_ms=settings.sink.batch_wait_ms, max_records=settings.sink.batch_size)
            now = time.monotonic()
            if not data:
                if until_idle_s is not None:
                    if listener.assigned_at is None:
                        if now - started > JOIN_TIMEOUT_S:
                            raise SinkError(f"no partitions assigned within {JOIN_TIMEOUT_S:.0f} s; is Kafka healthy?")
                    elif now - max(last_record, listener.assigned_at) >= until_idle_s:
                        log.info("no record for %.1f s: stopping", until_idle_s)
                        break
                continue
            last_record = now
            # Parsing (~15 µs a record) and writing run in a worker thread: the event loop
            # stays free for the consumer's heartbeats.
            fetched = await asyncio.to_thread(_fetch, data, models)
            written = await _write_with_retries(db, fetched.items, stop)
            if written is None:
                break  # stopped while the database was unreachable; nothing is committed
            try:
                await consumer.commit(fetched.offsets)
            except (CommitFailedError, IllegalStateError) as exc:
                # The group rebalanced while we wrote: another member now owns some of these
                # partitions and is redelivered the batch, which is harmless.
                log.warning("offset commit failed after a rebalance (records will be redelivered): %s", exc)
            totals = replace(
                totals,
                batches=totals.batches + 1,
                records=totals.records + fetched.records,
                dead_lettered=totals.dead_lettered + fetched.unparsable + written.refused,
                tombstones=totals.tombstones + fetched.tombstones,
                counts=totals.counts + written.counts,
                db_s=totals.db_s + written.seconds,
            )
            if health is not None:
                health.note((item.record for item in fetched.items), written.counts)
            if progress is not None:
                progress(written.counts)
            window = window + written.counts
            if now - window_start >= log_every_s:
                _log_window(window, now - window_start, totals)
                window, window_start = WriteCounts(), now
    finally:
        await consumer.stop()
        if health is not None and health_task is not None:
            health_stop.set()
            await health_task
            await asyncio.to_thread(health.close)
        await asyncio.to_thread(db.close)
    return replace(totals, elapsed_s=time.monotonic() - started)


@dataclass(frozen=True)
class _Fetched:
    """One getmany batch, parsed: the offsets to commit once it is written."""

    offsets: dict[Any, int]
    items: list[_Item]
    records: int
    tombstones: int
    unparsable: int


@dataclass(frozen=True)
class _Written:
    counts: WriteCounts
    refused: int  # records the database refused, dead-lettered instead
    seconds: float


def _fetch(data: dict[Any, list[Any]], models: dict[str, type[BaseModel]]) -> _Fetched:
    """Parse a getmany result: what to write, and the offsets to commit after it."""
    items = [_decode(m, models) for batch in data.values() for m in batch]
    present = [i for i in items if i is not None]
    return _Fetched(
        offsets={tp: batch[-1].offset + 1 for tp, batch in data.items()},
        items=present,
        records=len(items),
        tombstones=len(items) - len(present),
        unparsable=sum(1 for i in present if i.rejected),
    )


def _write(db: _Database, items: list[_Item]) -> _Written:
    t = time.perf_counter()
    counts, refused = db.write(items)
    return _Written(counts, refused, time.perf_counter() - t)


async def _write_with_retries(db: _Database, items: list[_Item], stop: asyncio.Event) -> _Written | None:
    """:func:`_write` in a worker thread, retried while the database is unreachable (or a
    transaction was rolled back by a deadlock): None if ``stop`` was set meanwhile."""
    for attempt in range(DB_ATTEMPTS):
        try:
            return await asyncio.to_thread(_write, db, items)
        except psycopg.OperationalError as exc:
            db.reset()
            if attempt == DB_ATTEMPTS - 1:
                raise SinkError(f"database unavailable after {DB_ATTEMPTS} attempts: {exc}") from exc
            delay = 2.0**attempt
            log.warning("database error (attempt %d/%d, retrying in %.0f s): %s", attempt + 1, DB_ATTEMPTS, delay, exc)
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except TimeoutError:
                continue
            log.warning("stopping with a batch of %d records unwritten; it will be redelivered", len(items))
            return None
    raise AssertionError("unreachable")


def _log_window(window: WriteCounts, seconds: float, totals: SinkTotals) -> None:
    log.info(
        "sink: %d records in %.0f s (%.0f/s); rows: changes +%d, intervals +%d (closed %d), current %d, "
        "booking events +%d, counts %d, dead letters +%d; total %d records, %d dead-lettered by the sink",
        window.records,
        seconds,
        window.records / seconds if seconds > 0 else 0.0,
        window.changes,
        window.intervals,
        window.intervals_closed,
        window.currents,
        window.booking_events,
        window.booking_counts,
        window.dead_letters,
        totals.records,
        totals.dead_lettered,
    )


def main(settings: Settings) -> None:
    """Run the sink until SIGINT or SIGTERM; graceful: the batch in hand is written and its
    offsets committed before exiting. A second signal exits at once (its default action).

    Configures logging (INFO, to stderr) when nothing did before. Raises the errors of
    :func:`run_sink`.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def serve() -> SinkTotals:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)

        def on_signal(sig: signal.Signals) -> None:
            log.info("%s: stopping after the current batch", sig.name)
            stop.set()
            for s in signals:
                loop.remove_signal_handler(s)

        for sig in signals:
            loop.add_signal_handler(sig, on_signal, sig)
        return await run_sink(settings, stop=stop)

    log.info(
        "sink starting: group %s, schema %s, topics prefix %s",
        settings.sink.group_id,
        settings.postgres.db_schema,
        settings.kafka.topic_prefix,
    )
    totals = asyncio.run(serve())
    log.info(
        "sink stopped: %d records in %d batches, %.1f s (%.0f/s, %.1f s in the database), %d dead-lettered",
        totals.records,
        totals.batches,
        totals.elapsed_s,
        totals.records_per_s,
        totals.db_s,
        totals.dead_lettered,
    )
