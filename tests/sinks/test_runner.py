"""run_sink end to end against the real Kafka and TimescaleDB: records produced to the
topics land in the tables once, whatever is redelivered; poison records become dead
letters; offsets are committed only after the database has the rows."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from psycopg import sql

import sinks.runner
from sinks.errors import SinkError
from sinks.migrate import migrate
from sinks.runner import STAGE, run_sink
from slotstream.contract import DeadLetter, FileOrigin
from slotstream.kafka_admin import consumer_lag, ensure_topics
from slotstream.pipeline import settings_env
from slotstream.settings import Settings
from tests.sinks.conftest import drop_schema, dump, private_settings
from tests.sinks.streamsim import Interval, booking_counts, booking_events, simulate, walk

pytestmark = pytest.mark.integration

Message = tuple[str, bytes | None, bytes | None]


@pytest.fixture
def fresh(stack: Settings) -> Iterator[Settings]:
    """Settings with a schema, topics and consumer group of their own (topics created; the
    schema is left for run_sink to migrate, and dropped afterwards)."""
    s = private_settings(stack)
    ensure_topics(s.kafka.bootstrap_servers, s.kafka.topics.specs())
    try:
        yield s
    finally:
        drop_schema(s)
        from kafka.admin import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=s.kafka.bootstrap_servers)
        try:
            admin.delete_topics([spec.name for spec in s.kafka.topics.specs()])
        finally:
            admin.close()


def produce(settings: Settings, messages: list[Message]) -> None:
    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, enable_idempotence=True)
        await producer.start()
        try:
            for topic, key, value in messages:
                await producer.send(topic, value, key=key)
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(run())


def _valid(settings: Settings) -> tuple[list[Message], list[Interval]]:
    """Contract records for every topic, keyed like the producers key them."""
    t = settings.kafka.topics
    sim = simulate(walk("hotel-a", "2017-08-01", [5, 5, 4, 4, 2, 0, 1]) + walk("hotel-b", "2017-08-02", [3, 1, 1]))
    events = booking_events("hotel-a", 6)
    out: list[Message] = []
    for c in sim.changes:
        out.append((t.changes, c.key.encode(), c.model_dump_json().encode()))
    for cur in sim.currents:
        out.append((t.current, cur.key.encode(), cur.model_dump_json().encode()))
    for e in events:
        out.append((t.booking_events, e.resource_id.encode(), e.model_dump_json().encode()))
    for n in booking_counts(events):
        out.append((t.booking_counts, n.key.encode(), n.model_dump_json().encode()))
    foreign = DeadLetter.of(stage="producer.test", error="bad row", raw="a,b", origin=FileOrigin(path="x.csv", line=3))
    out.append((t.dead_letter, None, foreign.model_dump_json().encode()))
    return out, sim.intervals


def _rows(conn: psycopg.Connection[Any], schema: str, query: str) -> list[tuple[Any, ...]]:
    return conn.execute(sql.SQL(query).format(s=sql.Identifier(schema))).fetchall()


def _lag(settings: Settings) -> int:
    return consumer_lag(settings.kafka.bootstrap_servers, settings.sink.group_id, settings.kafka.topics.sink_inputs)


def test_end_to_end_with_poison_records_and_redelivery(fresh: Settings) -> None:
    t = fresh.kafka.topics
    valid, intervals = _valid(fresh)
    poison: list[Message] = [
        (t.changes, b"k", b'{"not json'),
        (t.booking_counts, b"k", b'{"event_type": "booking_count", "period": "week"}'),
        (t.current, b"sim|hotel-a|2017-08-01", None),  # a tombstone: skipped, not an error
    ]
    # Poison in the middle of the stream: the records after it must still be written.
    produce(fresh, valid[:5] + poison + valid[5:])

    totals = asyncio.run(run_sink(fresh, until_idle_s=2.0))

    assert totals.records == len(valid) + len(poison)
    assert (totals.dead_lettered, totals.tombstones) == (2, 1)
    assert _lag(fresh) == 0
    schema = fresh.postgres.db_schema
    with psycopg.connect(fresh.postgres.conninfo(), autocommit=True) as conn:
        got = _rows(
            conn,
            schema,
            "SELECT key, first_seen, first_seq, capacity, free, status, last_seen, ended_at, observations "
            "FROM {s}.state_intervals ORDER BY key, first_seen, first_seq",
        )
        assert [Interval(*r) for r in got] == intervals
        assert _rows(conn, schema, "SELECT count(*) FROM {s}.availability_changes") == [
            (sum(1 for m in valid if m[0] == t.changes),)
        ]
        assert _rows(conn, schema, "SELECT count(*) FROM {s}.booking_events") == [(8,)]
        dead = _rows(conn, schema, "SELECT stage, error, raw, origin FROM {s}.dead_letters ORDER BY dl_key")
        by_origin = {d[3].get("topic", d[3].get("path")): d for d in dead}
        assert by_origin["x.csv"][0] == "producer.test"
        bad_change = by_origin[t.changes]
        assert bad_change[0] == STAGE and bad_change[2] == '{"not json'
        assert "invalid AvailabilityChange" in bad_change[1] and "JSON" in bad_change[1]
        assert bad_change[3]["partition"] >= 0 and bad_change[3]["offset"] >= 0
        assert "period" in by_origin[t.booking_counts][1]
        before = dump(conn, schema)

        # The producer retries and sends every valid record again: nothing changes.
        produce(fresh, valid)
        again = asyncio.run(run_sink(fresh, until_idle_s=2.0))
        assert again.records == len(valid)
        assert again.counts.rows == 0
        assert dump(conn, schema) == before

        # A new consumer group re-reads the very same offsets (poison included).
        regroup = fresh.model_copy(
            update={"sink": fresh.sink.model_copy(update={"group_id": fresh.sink.group_id + "-2"})}
        )
        replay = asyncio.run(run_sink(regroup, until_idle_s=2.0))
        assert replay.records == 2 * len(valid) + len(poison)
        assert dump(conn, schema) == before


def test_offsets_are_committed_only_after_the_database_has_the_rows(
    fresh: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh = fresh.model_copy(update={"sink": fresh.sink.model_copy(update={"batch_size": 5})})
    t = fresh.kafka.topics
    changes = [m for m in _valid(fresh)[0] if m[0] == t.changes]
    produce(fresh, changes)
    seen: list[tuple[int, int]] = []  # (offsets committed so far for the changes topic, rows in the table)
    committed: dict[Any, int] = {}
    conninfo, schema = fresh.postgres.conninfo(), fresh.postgres.db_schema

    class CheckingConsumer(AIOKafkaConsumer):  # type: ignore[misc]
        async def commit(self, offsets: Any = None) -> None:
            committed.update({tp: o for tp, o in offsets.items() if tp.topic == t.changes})
            with psycopg.connect(conninfo) as conn:
                rows = _rows(conn, schema, "SELECT count(*) FROM {s}.availability_changes")[0][0]
            seen.append((sum(committed.values()), rows))
            await super().commit(offsets)

    monkeypatch.setattr(sinks.runner, "AIOKafkaConsumer", CheckingConsumer)
    asyncio.run(run_sink(fresh, until_idle_s=2.0))
    assert len(seen) >= 2
    assert all(offsets <= rows for offsets, rows in seen), seen
    assert seen[-1] == (len(changes), len(changes))


def test_a_crash_between_database_and_offset_commit_loses_and_duplicates_nothing(
    fresh: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh = fresh.model_copy(update={"sink": fresh.sink.model_copy(update={"batch_size": 4})})
    valid, intervals = _valid(fresh)
    produce(fresh, valid)
    calls = 0
    real_commit = AIOKafkaConsumer.commit

    async def crashing_commit(self: Any, offsets: Any = None) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("crash after the database commit, before the offset commit")
        await real_commit(self, offsets)

    monkeypatch.setattr(AIOKafkaConsumer, "commit", crashing_commit)
    with pytest.raises(RuntimeError, match="crash after"):
        asyncio.run(run_sink(fresh, until_idle_s=2.0))
    assert _lag(fresh) == len(valid) - 8  # two batches of 4 committed
    monkeypatch.undo()

    totals = asyncio.run(run_sink(fresh, until_idle_s=2.0))
    assert totals.records == len(valid) - 8  # the third batch is redelivered
    assert _lag(fresh) == 0
    with psycopg.connect(fresh.postgres.conninfo()) as conn:
        got = _rows(
            conn,
            fresh.postgres.db_schema,
            "SELECT key, first_seen, first_seq, capacity, free, status, last_seen, ended_at, observations "
            "FROM {s}.state_intervals ORDER BY key, first_seen, first_seq",
        )
    assert [Interval(*r) for r in got] == intervals


def test_a_record_the_database_refuses_is_dead_lettered_alone(fresh: Settings) -> None:
    t = fresh.kafka.topics
    ok = simulate(walk("h", "2017-08-03", [2, 1])).changes
    # Valid by the contract (no upper bound), beyond PostgreSQL's integer.
    huge = simulate(walk("h", "2017-08-04", [2**40])).changes[0]
    huge = huge.model_copy(update={"current": huge.current.model_copy(update={"capacity": 2**41})})
    produce(fresh, [(t.changes, c.key.encode(), c.model_dump_json().encode()) for c in [ok[0], huge, ok[1]]])
    totals = asyncio.run(run_sink(fresh, until_idle_s=2.0))
    assert totals.dead_lettered == 1
    with psycopg.connect(fresh.postgres.conninfo()) as conn:
        schema = fresh.postgres.db_schema
        assert _rows(conn, schema, "SELECT count(*) FROM {s}.availability_changes") == [(2,)]
        [(stage, error, raw)] = _rows(conn, schema, "SELECT stage, error, raw FROM {s}.dead_letters")
    assert stage == STAGE and "rejected by the database" in error and "out of range" in error
    assert raw == huge.model_dump_json()


def test_stop_event_ends_the_run_after_the_batch_in_hand(fresh: Settings) -> None:
    t = fresh.kafka.topics
    changes = [m for m in _valid(fresh)[0] if m[0] == t.changes]

    async def scenario() -> int:
        stop = asyncio.Event()
        written: list[int] = []
        task = asyncio.create_task(run_sink(fresh, stop=stop, progress=lambda c: written.append(c.changes)))
        await asyncio.to_thread(produce, fresh, changes)
        async with asyncio.timeout(30):
            while sum(written) < len(changes):
                await asyncio.sleep(0.05)
        stop.set()
        async with asyncio.timeout(10):
            totals = await task
        return totals.records

    assert asyncio.run(scenario()) == len(changes)
    assert _lag(fresh) == 0


def test_a_lost_database_connection_is_retried(fresh: Settings, caplog: pytest.LogCaptureFixture) -> None:
    """The sink's backend is terminated between batches: the next write reconnects and
    nothing is lost or doubled."""
    t = fresh.kafka.topics
    changes = [m for m in _valid(fresh)[0] if m[0] == t.changes]
    app = f"slotstream-sink {fresh.sink.group_id}"

    async def scenario() -> None:
        stop = asyncio.Event()
        written: list[int] = []
        task = asyncio.create_task(run_sink(fresh, stop=stop, progress=lambda c: written.append(c.changes)))
        await asyncio.to_thread(produce, fresh, changes[:3])
        async with asyncio.timeout(30):
            while sum(written) < 3:
                await asyncio.sleep(0.05)
        with psycopg.connect(fresh.postgres.conninfo(), autocommit=True) as conn:
            killed = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (app,)
            ).fetchall()
        assert killed == [(True,)]
        await asyncio.to_thread(produce, fresh, changes[3:])
        async with asyncio.timeout(30):
            while sum(written) < len(changes):
                await asyncio.sleep(0.05)
        stop.set()
        await task

    with caplog.at_level("WARNING", logger="sinks.runner"):
        asyncio.run(scenario())
    assert any("database error (attempt 1/" in r.getMessage() for r in caplog.records)
    with psycopg.connect(fresh.postgres.conninfo()) as conn:
        rows = _rows(conn, fresh.postgres.db_schema, "SELECT count(*) FROM {s}.availability_changes")
    assert rows == [(len(changes),)]
    assert _lag(fresh) == 0


def test_missing_topics_are_reported(stack: Settings) -> None:
    s = private_settings(stack)  # topics never created
    try:
        with pytest.raises(SinkError, match="slotstream topics create"):
            asyncio.run(run_sink(s, until_idle_s=1.0))
    finally:
        drop_schema(s)


def test_main_stops_gracefully_on_sigterm(fresh: Settings) -> None:
    with psycopg.connect(fresh.postgres.conninfo(), autocommit=True) as conn:
        migrate(conn, fresh.postgres)
    env = {**os.environ, **settings_env(fresh)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from slotstream.settings import load_settings; import sinks.runner as r; r.main(load_settings())",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if "partitions assigned" in line or not line:
            break
    assert any("partitions assigned" in line for line in lines), "".join(lines)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, "".join(lines) + out
    assert "SIGTERM: stopping after the current batch" in out
    assert "sink stopped" in out
