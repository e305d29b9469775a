"""The producer's derivation on the real hotel_bookings.csv.gz: the counts of
shared/data/README.md, and agreement with the independent tests/hotel_expected.py."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import pytest

from producers.hotel_bookings import HotelReplay, read_booking_events
from slotstream.contract import BookingEvent
from slotstream.settings import Settings
from tests import hotel_expected


@pytest.fixture(scope="module")
def data_file(settings: Settings) -> Path:
    path = settings.data_dir / "hotel_bookings.csv.gz"
    if not path.exists():
        pytest.fail(f"{path} is missing; see shared/data/README.md (set SLOTSTREAM_DATA_DIR)", pytrace=False)
    return path


@pytest.fixture(scope="module")
def replay(data_file: Path) -> HotelReplay:
    return read_booking_events(data_file)


def _held_by_replaying(events: list[BookingEvent]) -> tuple[dict[tuple[str, date], int], dict[str, int]]:
    """Apply the events in seq order, as a consumer would: final rooms held per
    (hotel, night), and the most held on one night at any moment."""
    held: dict[tuple[str, date], int] = {}
    peak: dict[str, int] = {}
    for e in events:
        delta = e.rooms if e.kind == "created" else -e.rooms
        for i in range(e.nights):
            key = (e.resource_id, e.arrival_date + timedelta(days=i))
            held[key] = held.get(key, 0) + delta
            peak[e.resource_id] = max(peak.get(e.resource_id, 0), held[key])
    return held, peak


def test_counts_match_the_data_readme(replay: HotelReplay) -> None:
    events = list(replay.events)
    assert (replay.rows, replay.bad_rows, replay.dead_letters) == (119_390, 0, [])
    assert (replay.created, replay.cancelled, len(events)) == (119_390, 43_017, 162_407)
    created = [e for e in events if e.kind == "created"]
    assert min(e.event_time for e in created).date() == date(2013, 6, 24)
    assert max(e.event_time for e in created).date() == date(2017, 8, 31)
    # duplicates stay distinct: one booking per row
    assert len({e.booking_id for e in created}) == 119_390
    assert sum(1 for e in created if e.nights == 0) == 715
    created_on = {e.booking_id: e.event_time for e in created}
    same_day = [e for e in events if e.kind == "cancelled" and e.event_time == created_on[e.booking_id]]
    assert len(same_day) == 7_057
    assert Counter(e.resource_id for e in created) == {"City Hotel": 79_330, "Resort Hotel": 40_060}


def test_events_are_ordered_with_seq(replay: HotelReplay) -> None:
    events = list(replay.events)
    assert [e.seq for e in events] == list(range(len(events)))
    assert len({e.event_id for e in events}) == len(events)
    keys = [(e.event_time, e.kind == "cancelled", e.booking_id) for e in events]
    assert keys == sorted(keys)  # booking ids are zero-padded, so they sort as rows
    seen: set[str] = set()
    for e in events:
        if e.kind == "created":
            seen.add(e.booking_id)
        else:
            assert e.booking_id in seen, e.event_id
            assert e.event_time.date() <= e.arrival_date


def test_counts_agree_with_the_independent_computation(replay: HotelReplay, data_file: Path) -> None:
    monthly: dict[tuple[str, date], list[int]] = {}
    daily: dict[tuple[str, date], list[int]] = {}
    for e in replay.events:
        day, column = e.event_time.date(), 0 if e.kind == "created" else 1
        monthly.setdefault((e.resource_id, day.replace(day=1)), [0, 0])[column] += 1
        daily.setdefault((e.resource_id, day), [0, 0])[column] += 1
    assert {k: tuple(v) for k, v in monthly.items()} == hotel_expected.monthly_counts(data_file)
    assert {k: tuple(v) for k, v in daily.items()} == hotel_expected.daily_counts(data_file)


def test_rooms_held_agree_with_the_independent_computation(replay: HotelReplay, data_file: Path) -> None:
    held, peak_in_flight = _held_by_replaying(list(replay.events))
    assert held == hotel_expected.final_rooms_held(data_file)
    assert peak_in_flight == hotel_expected.peak_rooms_held_in_flight(data_file)
    peak: dict[str, int] = {}
    for (hotel, _night), rooms in held.items():
        peak[hotel] = max(peak.get(hotel, 0), rooms)
    assert peak == {"Resort Hotel": 188, "City Hotel": 235}


@pytest.mark.parametrize(
    ("hotel", "night"),
    [("City Hotel", date(2016, 10, 15)), ("Resort Hotel", date(2015, 7, 1)), ("Resort Hotel", date(2017, 9, 5))],
)
def test_night_history_agrees(replay: HotelReplay, data_file: Path, hotel: str, night: date) -> None:
    history: list[tuple[date, int, int]] = []
    held = 0
    for e in replay.events:
        if e.resource_id == hotel and e.arrival_date <= night < e.arrival_date + timedelta(days=e.nights):
            held += 1 if e.kind == "created" else -1
            history.append((e.event_time.date(), len(history), held))
    assert history
    assert history == hotel_expected.night_history(data_file, hotel, night)
