"""Every dashboard query, run as Grafana would send it (variables and macros expanded by
dashboards.sqlcheck) through the read-only role, over the whole hotel replay; key
panels return the numbers of the independent computation (tests/hotel_expected.py).

This proves the SQL and the numbers, not the rendering: tests/grafana does that against
a real Grafana server when one can be built (README, "Grafana").
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest

import dashboards
from dashboards.sqlcheck import TimeRange, interpolate, panel_queries, reader_connection, resolve_variables, run_query
from slotstream.settings import Settings
from tests import hotel_expected as expected

pytestmark = pytest.mark.integration

MODELS = dashboards.generate()
# The replay's event times (2013-06 .. 2017-09) in one range.
DATA_RANGE = TimeRange(datetime(2013, 1, 1, tzinfo=UTC), datetime(2018, 1, 1, tzinfo=UTC))
HOTEL = "City Hotel"
NIGHTS = ["2016-08-15", "2017-05-03"]


def recent() -> TimeRange:
    """The last day: the pipeline samples of this session's replay."""
    now = datetime.now(UTC)
    return TimeRange(now - timedelta(days=1), now)


@pytest.fixture(scope="module")
def reader(replayed: Settings) -> Iterator[psycopg.Connection[Any]]:
    pg = replayed.postgres
    with reader_connection(pg.conninfo(reader=True), pg.db_schema) as conn:
        yield conn


def panel(conn: psycopg.Connection[Any], dashboard: str, title: str, chosen: dict[str, list[str]]) -> list[Any]:
    model = MODELS[dashboard]
    (query,) = [q for q in panel_queries(model) if q.panel == title]
    variables = resolve_variables(conn, model, DATA_RANGE, chosen)
    _, rows = run_query(conn, interpolate(query.raw_sql, DATA_RANGE, variables))
    return rows


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_query_runs_with_the_default_time_range_and_variables(reader: psycopg.Connection[Any], name: str) -> None:
    model = MODELS[name]
    time_range = TimeRange.of(model)
    variables = resolve_variables(reader, model, time_range)
    for q in panel_queries(model):
        run_query(reader, interpolate(q.raw_sql, time_range, variables))  # raises on any SQL error


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_panel_shows_data_over_the_replay(reader: psycopg.Connection[Any], name: str) -> None:
    model = MODELS[name]
    # Pipeline samples are stamped with the wall clock, the rest with event times.
    time_range = recent() if name == "pipeline-health" else DATA_RANGE
    variables = resolve_variables(reader, model, time_range, {"resource": [HOTEL], "slot": NIGHTS})
    empty = []
    for q in panel_queries(model):
        _, rows = run_query(reader, interpolate(q.raw_sql, time_range, variables))
        if not rows:
            empty.append(q.panel)
    # The real file has no bad rows.
    allowed = {"pipeline-health": {"Dead letters", "Latest dead letters"}}.get(name, set())
    assert set(empty) <= allowed


def test_pipeline_panels_show_this_replay(reader: psycopg.Connection[Any]) -> None:
    model = MODELS["pipeline-health"]
    got = {}
    for q in panel_queries(model):
        _, rows = run_query(reader, interpolate(q.raw_sql, recent(), {}))
        got[q.panel] = rows
    lag = {metric: value for _t, metric, value in got["Consumer lag"]}
    assert set(lag) == {"stream", "sink"}
    assert {metric for _t, metric, _v in got["Messages per second by topic"]} >= {"booking-events", "observations"}
    (source, age_s, newest) = got["Last observation per source"][0]
    assert source == "hotel_bookings" and age_s >= 0
    assert newest.date() == date(2017, 8, 31)  # the newest booking event of the file


def test_monthly_bookings_panel_equals_the_independent_counts(
    reader: psycopg.Connection[Any], replayed: Settings
) -> None:
    want = expected.monthly_counts(replayed.data_dir / "hotel_bookings.csv.gz")
    got = {(hotel, month): (c, x, n) for month, hotel, c, x, n in panel(reader, "bookings", "Monthly counts", {})}
    assert got == {k: (c.created, c.cancelled, c.created - c.cancelled) for k, c in want.items()}
    per_month = panel(reader, "bookings", "Bookings per month", {})
    assert {(h, t.date()): (c, x, n) for t, h, c, x, n in per_month} == got


def test_daily_bookings_panel_and_totals_equal_the_independent_counts(
    reader: psycopg.Connection[Any], replayed: Settings
) -> None:
    want = expected.daily_counts(replayed.data_dir / "hotel_bookings.csv.gz")
    got = {(h, t.date()): (c, x) for t, h, c, x, _n in panel(reader, "bookings", "Bookings per day", {})}
    assert got == {k: (c.created, c.cancelled) for k, c in want.items()}
    ((created, cancelled, net),) = panel(reader, "bookings", "Bookings in the time range", {})
    assert (created, cancelled) == (sum(c.created for c in want.values()), sum(c.cancelled for c in want.values()))
    assert net == created - cancelled


def test_current_state_table_shows_the_final_free_rooms(reader: psycopg.Connection[Any], replayed: Settings) -> None:
    held = expected.final_rooms_held(replayed.data_dir / "hotel_bookings.csv.gz")
    capacity = replayed.stream.hotel_capacity[HOTEL]
    rows = panel(reader, "availability-explorer", "Current state", {"resource": [HOTEL]})
    got = {date.fromisoformat(slot): (cap, free) for slot, _start, cap, free, *_ in rows}
    want = {night: (capacity, capacity - n) for (hotel, night), n in held.items() if hotel == HOTEL}
    assert got == want


def test_pace_panel_follows_each_nights_history(reader: psycopg.Connection[Any], replayed: Settings) -> None:
    path = replayed.data_dir / "hotel_bookings.csv.gz"
    rows = panel(reader, "booking-pace", "Places held by days before the slot", {"resource": [HOTEL], "slot": NIGHTS})
    for night in NIGHTS:
        start = date.fromisoformat(night)
        last_per_day: dict[int, int] = {}
        for day, _pos, held in expected.night_history(path, HOTEL, start):
            if (start - day).days <= 365:
                last_per_day[-(start - day).days] = held
        got = [(days, held) for slot, days, held in rows if slot == night]
        assert got == sorted(last_per_day.items())


def test_pickup_by_weekday_adds_up_to_the_rooms_held(reader: psycopg.Connection[Any], replayed: Settings) -> None:
    # Pickup of a night telescopes to capacity - final free = final rooms held.
    held = expected.final_rooms_held(replayed.data_dir / "hotel_bookings.csv.gz")
    rows = panel(reader, "booking-pace", "Pickup by weekday of booking", {"resource": [HOTEL]})
    assert [w for w, *_ in rows] == ["1 Mon", "2 Tue", "3 Wed", "4 Thu", "5 Fri", "6 Sat", "7 Sun"]
    assert sum(b - r for _w, b, r in rows) == sum(n for (hotel, _), n in held.items() if hotel == HOTEL)


def test_the_dashboard_role_cannot_write(reader: psycopg.Connection[Any]) -> None:
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        reader.execute("DELETE FROM booking_counts")
