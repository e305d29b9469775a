"""The main job end to end on the real data: producer → Kafka → Faust → TimescaleDB.

The database must agree exactly with tests/hotel_expected.py, a second, independent
computation from the CSV; a run with the stream worker and the sink killed (-9) and
restarted in the middle must leave the same database content as an uninterrupted run.
"""

from __future__ import annotations

import signal
import time
from datetime import date
from itertools import pairwise
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from slotstream.settings import Settings
from tests import hotel_expected as expected
from tests.e2e.replay import drop, isolated, produce, replay, running

pytestmark = pytest.mark.integration

NIGHTS = [
    ("City Hotel", date(2016, 8, 15)),
    ("City Hotel", date(2017, 5, 3)),
    ("Resort Hotel", date(2015, 12, 31)),
    ("Resort Hotel", date(2017, 8, 31)),
    ("Resort Hotel", date(2015, 7, 1)),
]

#: Columns compared between two runs (everything but wall-clock times of processing).
COMPARED = {
    "booking_events": "event_id, event_time, seq, kind, booking_id, resource_id, arrival_date, nights, lead_time_days",
    "availability_changes": "key, observed_at, seq, event_id, prev_capacity, prev_free, prev_status, capacity, free, "
    "status, delta_free, previous_first_seen, previous_last_seen, previous_duration_s, occupancy_percent, "
    "occupancy_steps, occupancy_status, attributes",
    "state_intervals": "key, capacity, free, status, first_seen, last_seen, ended_at, first_seq, observations",
    "availability_current": "key, capacity, free, status, first_seen, last_seen, last_seq, observations, attributes",
    "booking_counts": "source, resource_id, period, bucket, created, cancelled, net, last_seq",
}


def query(settings: Settings, text: str, *params: object) -> list[tuple[object, ...]]:
    pg = settings.postgres
    with psycopg.connect(pg.conninfo()) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(pg.db_schema)))
        return conn.execute(text, params).fetchall()


def test_booking_events_all_stored_once(replayed: Settings, settings: Settings) -> None:
    path = settings.data_dir / "hotel_bookings.csv.gz"
    rows = query(replayed, "SELECT kind, count(*), count(DISTINCT booking_id) FROM booking_events GROUP BY kind")
    cancelled = sum(1 for b in expected.bookings(path) if b.cancelled is not None)
    assert dict((k, (n, d)) for k, n, d in rows) == {
        "created": (len(expected.bookings(path)), len(expected.bookings(path))),
        "cancelled": (cancelled, cancelled),
    }


@pytest.mark.parametrize("period", ["month", "day"])
def test_booking_counts_equal_independent_computation(replayed: Settings, settings: Settings, period: str) -> None:
    path = settings.data_dir / "hotel_bookings.csv.gz"
    want = expected.monthly_counts(path) if period == "month" else expected.daily_counts(path)
    got = {
        (hotel, bucket): (created, cancelled, net)
        for hotel, bucket, created, cancelled, net in query(
            replayed,
            "SELECT resource_id, bucket, created, cancelled, net FROM booking_counts WHERE period = %s",
            period,
        )
    }
    assert got == {k: (c.created, c.cancelled, c.created - c.cancelled) for k, c in want.items()}


def test_final_rooms_held_per_night(replayed: Settings, settings: Settings) -> None:
    path = settings.data_dir / "hotel_bookings.csv.gz"
    capacity = settings.stream.hotel_capacity
    got = {
        (hotel, date.fromisoformat(str(slot))): (int(str(held)), free)
        for hotel, slot, held, free in query(
            replayed,
            "SELECT resource_id, slot, attributes->>'rooms_held', free FROM availability_current",
        )
    }
    want = {k: (held, max(capacity[k[0]] - held, 0)) for k, held in expected.final_rooms_held(path).items()}
    assert got == want


@pytest.mark.parametrize(("hotel", "night"), NIGHTS)
def test_night_history_rebuilt_from_change_rows(
    replayed: Settings, settings: Settings, hotel: str, night: date
) -> None:
    """The full availability history of a night: one change row per run of equal free
    rooms, in event order, with the rooms held after the event that caused it."""
    path = settings.data_dir / "hotel_bookings.csv.gz"
    capacity = settings.stream.hotel_capacity[hotel]
    history = expected.night_history(path, hotel, night)
    assert history, "pick nights that have bookings"
    want: list[tuple[date, int, int]] = []
    last_free = None
    for day, _position, held in history:
        free = max(capacity - held, 0)
        if free != last_free:
            want.append((day, free, held))
            last_free = free
    rows = query(
        replayed,
        "SELECT observed_at::date, free, (attributes->>'rooms_held')::int, prev_free, delta_free "
        "FROM availability_changes WHERE resource_id = %s AND slot = %s ORDER BY observed_at, seq",
        hotel,
        night.isoformat(),
    )
    assert [(d, f, h) for d, f, h, _p, _delta in rows] == want
    previous_free: list[int | None] = [None, *[w[1] for w in want]]
    for row, before in zip(rows, previous_free, strict=False):
        free_now, prev, delta = row[1], row[3], row[4]
        assert prev == before
        assert delta == (None if before is None else int(str(free_now)) - before)
    intervals = query(
        replayed,
        "SELECT first_seen, last_seen, ended_at, free FROM state_intervals "
        "WHERE resource_id = %s AND slot = %s ORDER BY first_seen, first_seq",
        hotel,
        night.isoformat(),
    )
    assert [f for *_, f in intervals] == [w[1] for w in want]
    for (_fs, _ls, ended, _f), (next_first, *_rest) in pairwise(intervals):
        assert ended == next_first
    assert intervals[-1][2] is None  # the last interval is open


def test_no_dead_letters_on_the_real_file(replayed: Settings) -> None:
    assert query(replayed, "SELECT stage, count(*) FROM dead_letters GROUP BY stage") == []


def test_replaying_again_adds_no_rows(replayed: Settings, tmp_path: Path) -> None:
    before = {t: query(replayed, f"SELECT count(*) FROM {t}")[0][0] for t in COMPARED}
    replay(replayed, tmp_path)
    after = {t: query(replayed, f"SELECT count(*) FROM {t}")[0][0] for t in COMPARED}
    assert after == before


def test_kill_9_and_restart_leaves_the_same_database(replayed: Settings, stack: Settings, tmp_path: Path) -> None:
    """kill -9 the stream worker and the sink mid-replay, restart them, let it finish:
    the tables equal the uninterrupted run's."""
    s = isolated(stack, "crash")
    with running(s, tmp_path) as pipeline:
        produce(s)
        kills = 0
        deadline = time.monotonic() + 1800
        while kills < 4 and time.monotonic() < deadline:
            lags = pipeline.lags()
            if lags["stream"] == 0 and lags["sink"] == 0:
                break
            time.sleep(3 + kills)
            victim = "stream" if kills % 2 == 0 else "sink"
            pipeline.kill(victim, signal.SIGKILL)
            pipeline.start(victim)
            kills += 1
        assert kills >= 2, "the replay finished before the worker could be killed twice"
        pipeline.wait_caught_up(timeout=1800)
    try:
        a, b = replayed.postgres.db_schema, s.postgres.db_schema
        differences = {}
        for table, columns in COMPARED.items():
            for x, y in ((a, b), (b, a)):
                # The rows themselves, both ways, so that a failure shows what differs.
                rows = query(
                    replayed,
                    f"SELECT {columns} FROM {x}.{table} EXCEPT ALL SELECT {columns} FROM {y}.{table} LIMIT 10",
                )
                if rows:
                    differences[f"{table}: in {x}, not in {y}"] = rows
        assert not differences, "\n".join(
            f"{what}:\n  " + "\n  ".join(map(repr, rows)) for what, rows in differences.items()
        )
    finally:
        drop(s)


def test_bad_input_goes_to_dead_letters_and_the_rest_flows(stack: Settings, tmp_path: Path) -> None:
    """A file with malformed rows, and garbage on the observations topic: every bad
    record ends in dead_letters with its reason and raw payload; every good row is
    processed; the pipeline keeps running."""
    from kafka import KafkaProducer

    from tests.producers.csvrows import row, write_gz

    arrival = date(2016, 3, 10)
    lines: list[str | bytes] = [
        row(arrival=arrival, lead_time=20, status="Canceled", status_date=date(2016, 3, 1)),
        row(lead_time="abc"),
        row(hotel="City Hotel", arrival=arrival, lead_time=3),
        row(month="Juyl"),
        row(arrival=arrival, lead_time=5, weekend=1, week=2),
        row(hotel="Caf\x00 Hotel").encode().replace(b"\x00", b"\xe9"),
    ]
    path = write_gz(tmp_path / "bad.csv.gz", lines)
    s = isolated(stack, "bad")
    with running(s, tmp_path / "logs") as pipeline:
        producer = KafkaProducer(bootstrap_servers=s.kafka.bootstrap_servers)
        producer.send(s.kafka.topics.observations, key=b"x|y|z", value=b'{"free": "lots"}').get(timeout=30)
        producer.close()
        events = produce(s, path)
        pipeline.wait_caught_up(timeout=600)
        assert all(proc.poll() is None for proc in pipeline.procs.values()), "a component died"
    try:
        letters = query(s, "SELECT stage, origin->>'line', error, raw FROM dead_letters ORDER BY 1, 2")
        by_stage: dict[str, list[tuple[object, ...]]] = {}
        for letter in letters:
            by_stage.setdefault(str(letter[0]), []).append(letter)
        assert [line for _s, line, _e, _r in by_stage["producer.hotel-bookings"]] == ["3", "5", "7"]
        assert all(error and raw for _s, _l, error, raw in letters)
        [garbage] = by_stage["stream.detect_changes"]
        assert garbage[3] == '{"free": "lots"}' and "AvailabilityObservation" in str(garbage[2])
        assert events == 4  # 3 good rows: 3 created + 1 cancelled
        assert query(s, "SELECT count(*) FROM booking_events") == [(4,)]
        assert query(s, "SELECT count(DISTINCT key) > 0 FROM availability_changes") == [(True,)]
    finally:
        drop(s)
