"""write_batch against the real TimescaleDB: idempotent, order-insensitive, and the
tables the stream's records describe (seed 001 intervals, seed 002 counts)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import errors, sql

from sinks.errors import RejectedBatchError, SinkError
from sinks.writer import SinkBatch, write_batch
from slotstream.contract import DeadLetter, TopicOrigin
from slotstream.settings import Settings
from tests.sinks.conftest import dump, truncate
from tests.sinks.streamsim import T0, Interval, Obs, booking_counts, booking_events, simulate, walk

pytestmark = pytest.mark.integration

Conn = psycopg.Connection[tuple[Any, ...]]


def _batch(records: list[Any]) -> SinkBatch:
    b = SinkBatch()
    lists: dict[str, list[Any]] = {
        "availability_change": b.changes,
        "availability_current": b.currents,
        "booking_event": b.booking_events,
        "booking_count": b.booking_counts,
        "dead_letter": b.dead_letters,
    }
    for r in records:
        lists[r.event_type].append(r)
    return b


def _intervals(conn: Conn, schema: str) -> list[Interval]:
    rows = conn.execute(
        sql.SQL(
            "SELECT key, first_seen, first_seq, capacity, free, status, last_seen, ended_at, observations "
            "FROM {}.state_intervals ORDER BY key, first_seen, first_seq"
        ).format(sql.Identifier(schema))
    ).fetchall()
    return [Interval(*r) for r in rows]


def _observations() -> list[Obs]:
    """Three slots: hourly-ish changes, a date-only source (several changes at one
    timestamp), and long gaps across 90-day chunks."""
    return (
        walk("hotel-a", "2017-04-01", [4, 4, 3, 3, 3, 1, 0, 0, 2])
        + walk("hotel-a", "2017-04-02", [4, 3, 3, 2, 2, 1], step=timedelta(0))
        + walk("hotel-a", "2017-04-02", [1, 1, 0], step=timedelta(days=1), start=6)
        + walk("hotel-b", "2017-04-01", [None, 2, 2, None, 1], step=timedelta(days=60))
    )


def _everything() -> tuple[list[Any], list[Interval]]:
    sim = simulate(_observations())
    events = booking_events("hotel-a", 20)
    records: list[Any] = [*sim.changes, *sim.currents, *events, *booking_counts(events)]
    records.append(
        DeadLetter.of(stage="test", error="bad", raw=b"\xff{", origin=TopicOrigin(topic="t", partition=0, offset=7))
    )
    return records, sim.intervals


def test_state_is_what_the_stream_described(pg: Conn, sink_settings: Settings) -> None:
    schema = sink_settings.postgres.db_schema
    truncate(pg, schema)
    records, intervals = _everything()
    batch = _batch(records)
    counts = write_batch(pg, batch, schema=schema)

    assert counts.records == len(records)
    assert counts.changes == len(batch.changes)
    assert counts.booking_events == len(batch.booking_events)
    assert counts.dead_letters == 1
    assert _intervals(pg, schema) == intervals

    s = sql.Identifier(schema)
    current = pg.execute(
        sql.SQL("SELECT key, free, last_seq, observations, first_seen, last_seen FROM {}.availability_current").format(
            s
        )
    ).fetchall()
    last = {c.key: c for c in batch.currents}  # the stream's last word per key
    assert sorted(current) == sorted(
        (c.key, c.current.free, c.last_seq, c.observations, c.first_seen, c.last_seen) for c in last.values()
    )
    got_counts = pg.execute(
        sql.SQL("SELECT period, bucket, created, cancelled, net FROM {}.booking_counts").format(s)
    ).fetchall()
    final = {(c.period, c.bucket): (c.created, c.cancelled, c.net) for c in batch.booking_counts}
    assert sorted(got_counts) == sorted((p, b, *v) for (p, b), v in final.items())
    dead = pg.execute(sql.SQL("SELECT dl_key, raw, raw_encoding, origin FROM {}.dead_letters").format(s)).fetchall()
    assert dead == [("t:0:7", "/3s=", "base64", {"kind": "topic", "topic": "t", "partition": 0, "offset": 7})]


def test_writing_twice_changes_nothing(pg: Conn, sink_settings: Settings) -> None:
    schema = sink_settings.postgres.db_schema
    truncate(pg, schema)
    batch = _batch(_everything()[0])
    first = write_batch(pg, batch, schema=schema)
    once = dump(pg, schema)
    again = write_batch(pg, batch, schema=schema)
    assert dump(pg, schema) == once  # updated_at included: nothing was rewritten
    assert first.rows > 0
    assert again.rows == 0


def test_split_and_reordered_batches_equal_one(pg: Conn, sink_settings: Settings) -> None:
    """Deterministic companion of the hypothesis test: every record alone, newest first."""
    schema = sink_settings.postgres.db_schema
    records, intervals = _everything()
    truncate(pg, schema)
    write_batch(pg, _batch(records), schema=schema)
    whole = dump(pg, schema, write_times=False)
    truncate(pg, schema)
    for r in reversed(records):
        write_batch(pg, _batch([r]), schema=schema)
    assert dump(pg, schema, write_times=False) == whole
    assert _intervals(pg, schema) == intervals


@st.composite
def _streams(draw: st.DrawFn) -> list[Obs]:
    out: list[Obs] = []
    for k in range(draw(st.integers(1, 3))):
        t, seq = T0, 0
        for _ in range(draw(st.integers(1, 10))):
            # 0 h: date-only ties; 1200 h: 50 days, across 90-day chunks.
            t += timedelta(hours=draw(st.sampled_from([0, 0, 1, 24, 1200])))
            seq += draw(st.integers(1, 3))  # seq gaps: not every observation is seen
            out.append(Obs(f"r{k}", "2017-05-01", t, seq, free=draw(st.sampled_from([None, 0, 1, 2]))))
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(observations=_streams(), data=st.data())
def test_any_split_in_any_order_with_redelivery(
    pg: Conn, sink_settings: Settings, observations: list[Obs], data: st.DataObject
) -> None:
    schema = sink_settings.postgres.db_schema
    sim = simulate(observations)
    records: list[Any] = [*sim.changes, *sim.currents]
    truncate(pg, schema)
    write_batch(pg, _batch(records), schema=schema)
    whole = dump(pg, schema, write_times=False)
    assert _intervals(pg, schema) == sim.intervals

    shuffled = data.draw(st.permutations(records))
    cuts = sorted(data.draw(st.sets(st.integers(0, len(records)), max_size=6)))
    chunks = [shuffled[a:b] for a, b in zip([0, *cuts], [*cuts, len(records)], strict=True)]
    redelivered = data.draw(st.lists(st.sampled_from(chunks), max_size=2))
    truncate(pg, schema)
    for chunk in chunks + redelivered:
        write_batch(pg, _batch(chunk), schema=schema)
    assert dump(pg, schema, write_times=False) == whole


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(observations=_streams(), data=st.data())
def test_closed_intervals_do_not_depend_on_which_snapshots_arrived(
    pg: Conn, sink_settings: Settings, observations: list[Obs], data: st.DataObject
) -> None:
    """The stream sends one AvailabilityCurrent per key per batch of its own, so which
    snapshots of an interval reach the sink depends on its batching (seen in the kill -9
    replay); only the latest per key is certain. A closed interval is fully described by
    the change that closed it (previous_last_seen, previous_observations), so whatever
    the subset, every column of every row is exact."""
    schema = sink_settings.postgres.db_schema
    sim = simulate(observations)
    latest = {c.key: c for c in sim.currents}
    some = [c for c in sim.currents if c is latest[c.key] or data.draw(st.booleans())]

    def every_column() -> list[tuple[Any, ...]]:
        return pg.execute(
            sql.SQL("SELECT * FROM {}.state_intervals ORDER BY key, first_seen, first_seq").format(
                sql.Identifier(schema)
            )
        ).fetchall()

    truncate(pg, schema)
    write_batch(pg, _batch([*sim.changes, *sim.currents]), schema=schema)
    with_all = every_column()
    truncate(pg, schema)
    write_batch(pg, _batch([*sim.changes, *some]), schema=schema)
    assert every_column() == with_all
    assert _intervals(pg, schema) == sim.intervals


@pytest.mark.parametrize("redeliver_b", [False, True], ids=["late-c", "late-c-with-b-again"])
def test_late_change_corrects_the_interval_before_it(pg: Conn, sink_settings: Settings, redeliver_b: bool) -> None:
    """Date-only ties: B and C share a timestamp; D arrives before C. Until C arrives, B
    looks closed by D (and seen as late as D says C was); C then becomes B's successor and
    D's predecessor, also when B itself is redelivered with C."""
    schema = sink_settings.postgres.db_schema
    obs = walk("h", "2017-06-01", [3, 2, 1], step=timedelta(0)) + walk(
        "h", "2017-06-01", [1, 0], step=timedelta(days=2), start=3
    )
    sim = simulate(obs)  # changes: 3 (A, t0), 2 (B, t0), 1 (C, t0, seen until t0+6d), 0 (D, t0+8d)
    a, b, c, d = sim.changes
    truncate(pg, schema)
    write_batch(pg, _batch([a, b, d, *sim.currents]), schema=schema)
    before = {i.first_seq: i for i in _intervals(pg, schema)}
    assert before[b.seq].ended_at == d.observed_at  # best knowledge so far
    assert before[b.seq].last_seen == d.previous_last_seen
    write_batch(pg, _batch([b, c] if redeliver_b else [c]), schema=schema)
    assert _intervals(pg, schema) == sim.intervals


def test_the_change_decides_the_state_of_its_interval(pg: Conn, sink_settings: Settings) -> None:
    """A current contradicting its change (a stream bug) must not make the result depend
    on arrival order: the change's state wins either way."""
    schema = sink_settings.postgres.db_schema
    sim = simulate(walk("h", "2017-06-07", [3]))
    change, current = sim.changes[0], sim.currents[0]
    liar = current.model_copy(update={"current": current.current.model_copy(update={"free": 0})})
    states = []
    for order in ([change, liar], [liar, change]):
        truncate(pg, schema)
        for r in order:
            write_batch(pg, _batch([r]), schema=schema)
        states.append([(i.free, i.observations) for i in _intervals(pg, schema)])
    assert states == [[(3, 1)], [(3, 1)]]


def test_stale_current_never_overwrites_a_newer_one(pg: Conn, sink_settings: Settings) -> None:
    schema = sink_settings.postgres.db_schema
    sim = simulate(walk("h", "2017-06-02", [3, 2, 2, 1]))
    truncate(pg, schema)
    write_batch(pg, _batch([sim.currents[-1]]), schema=schema)
    counts = write_batch(pg, _batch(sim.currents[:-1]), schema=schema)
    assert counts.currents == 0
    row = pg.execute(
        sql.SQL("SELECT free, last_seq FROM {}.availability_current").format(sql.Identifier(schema))
    ).fetchall()
    assert row == [(1, sim.currents[-1].last_seq)]


def test_a_refused_record_rolls_back_the_whole_batch(pg: Conn, sink_settings: Settings) -> None:
    schema = sink_settings.postgres.db_schema
    truncate(pg, schema)
    good = simulate(walk("h", "2017-06-03", [3, 2]))
    huge = simulate([Obs("h", "2017-06-04", T0, 0, free=2**40, capacity=2**41)])  # beyond integer
    with pytest.raises(RejectedBatchError) as refused:
        write_batch(pg, _batch([*good.changes, *huge.changes]), schema=schema)
    assert isinstance(refused.value.__cause__, errors.NumericValueOutOfRange)
    assert dump(pg, schema) == {t: [] for t in dump(pg, schema)}
    nul = DeadLetter.of(stage="test", error="x", raw="a\x00b", origin=TopicOrigin(topic="t", partition=0, offset=1))
    beyond_64_bits = simulate([Obs("h", "2017-06-04", T0, 2**70, free=1)])
    for bad in ([nul], beyond_64_bits.changes):
        with pytest.raises(RejectedBatchError):
            write_batch(pg, _batch([*good.changes, *bad]), schema=schema)
    assert dump(pg, schema) == {t: [] for t in dump(pg, schema)}


def test_refuses_a_connection_inside_a_transaction(sink_settings: Settings) -> None:
    with psycopg.connect(sink_settings.postgres.conninfo()) as conn:
        conn.execute("SELECT 1")
        with pytest.raises(SinkError, match="own transaction"):
            write_batch(conn, SinkBatch(), schema=sink_settings.postgres.db_schema)


def test_schema_defaults_to_the_search_path(pg: Conn, sink_settings: Settings) -> None:
    schema = sink_settings.postgres.db_schema
    truncate(pg, schema)
    sim = simulate(walk("h", "2017-06-05", [1, 0]))
    with psycopg.connect(sink_settings.postgres.conninfo(), options=f"-c search_path={schema}") as conn:
        assert write_batch(conn, _batch(sim.changes)).changes == 2


def test_a_gap_does_not_lend_the_missing_interval_to_the_one_before(pg: Conn, sink_settings: Settings) -> None:
    """A -> B -> C with B not (yet) delivered: C's previous_last_seen is B's, so A must not
    take it (A would claim to be seen after B replaced it); when B arrives, all is exact."""
    schema = sink_settings.postgres.db_schema
    sim = simulate(walk("h", "2017-06-06", [3, 3, 2, 2, 2, 1], step=timedelta(hours=1)))
    a, b, c = sim.changes
    truncate(pg, schema)
    write_batch(pg, _batch([a, c]), schema=schema)
    first = _intervals(pg, schema)[0]
    assert first.ended_at == c.observed_at
    assert first.last_seen < b.observed_at
    write_batch(pg, _batch([b, *sim.currents]), schema=schema)
    assert _intervals(pg, schema) == sim.intervals
