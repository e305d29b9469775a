"""tests/hotel_expected.py itself reproduces the numbers of shared/data/README.md, so
other tests can trust it as the reference."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from slotstream.settings import Settings
from tests import hotel_expected
from tests.producers.csvrows import row, write_gz


@pytest.fixture(scope="module")
def data_file(settings: Settings) -> Path:
    return settings.data_dir / "hotel_bookings.csv.gz"


def test_readme_counts(data_file: Path) -> None:
    bookings = hotel_expected.bookings(data_file)
    assert len(bookings) == 119_390
    assert sum(b.cancelled is not None for b in bookings) == 43_017
    assert min(b.created for b in bookings) == date(2013, 6, 24)
    assert max(b.created for b in bookings) == date(2017, 8, 31)
    assert sum(b.cancelled == b.created for b in bookings) == 7_057
    assert sum(b.nights == 0 for b in bookings) == 715
    monthly = hotel_expected.monthly_counts(data_file)
    assert sum(c.created for c in monthly.values()) == 119_390
    assert sum(c.cancelled for c in monthly.values()) == 43_017


def test_readme_peaks(data_file: Path) -> None:
    assert hotel_expected.peak_rooms_held(data_file) == {"Resort Hotel": 188, "City Hotel": 235}
    # before later cancellations, more is held: the hotels overbook
    assert hotel_expected.peak_rooms_held_in_flight(data_file) == {"Resort Hotel": 213, "City Hotel": 354}


def test_small_file_by_hand(tmp_path: Path) -> None:
    arrival = date(2016, 3, 10)
    path = write_gz(
        tmp_path / "small.csv.gz",
        [
            row(arrival=arrival, lead_time=9, weekend=1, week=1),  # 3/1, nights 3/10, 3/11
            row(arrival=arrival, lead_time=9, weekend=1, week=1),  # the same again: distinct
            row(arrival=arrival, lead_time=9, weekend=0, week=1, status="Canceled", status_date=date(2016, 3, 1)),
            row(arrival=arrival, lead_time=40, weekend=0, week=1, status="No-Show"),  # 1/30
            row(arrival=arrival, lead_time=0, weekend=0, week=0),  # holds nothing
        ],
    )
    r, m = "Resort Hotel", date(2016, 3, 1)
    assert hotel_expected.monthly_counts(path) == {(r, date(2016, 1, 1)): (1, 0), (r, m): (4, 1)}
    assert hotel_expected.daily_counts(path)[(r, m)] == (3, 1)
    assert hotel_expected.final_rooms_held(path) == {(r, arrival): 3, (r, arrival + timedelta(days=1)): 2}
    assert hotel_expected.night_history(path, r, arrival) == [
        (date(2016, 1, 30), 0, 1),
        (m, 1, 2),
        (m, 2, 3),
        (m, 3, 4),
        (m, 4, 3),  # the same-day cancellation comes after every creation of the day
    ]
    assert hotel_expected.night_history(path, r, date(2020, 1, 1)) == []
    assert hotel_expected.peak_rooms_held(path) == {r: 3}
    assert hotel_expected.peak_rooms_held_in_flight(path) == {r: 4}
