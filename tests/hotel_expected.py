"""Expected results for hotel_bookings.csv.gz, computed a second, independent way.

A deliberately plain implementation of the rules in ``shared/data/README.md`` (no
import of ``producers/``, no pydantic, only dicts and the standard library), so tests
of the producer, the stream and the sink can compare against numbers that were not
derived by the code under test:

- one booking per data row (row 1 = first row after the header), never deduplicated;
- created on arrival − ``lead_time`` days; cancelled on ``reservation_status_date``
  only when ``reservation_status`` is ``Canceled`` (``No-Show`` is not cancelled);
- it holds 1 room on each of its ``stays_in_weekend_nights + stays_in_week_nights``
  nights, from the arrival date on, from creation until cancellation;
- events are ordered by (date, created before cancelled, row).

Every function takes the CSV path (gzip). Dates are ``datetime.date`` (UTC calendar
dates); months are the first day of the month; counts are integers. The parsed file is
cached per (path, size, mtime), so repeated calls are cheap; results are fresh copies.
"""

from __future__ import annotations

import csv
import gzip
import os
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

__all__ = [
    "Booking",
    "Count",
    "bookings",
    "daily_counts",
    "final_rooms_held",
    "monthly_counts",
    "night_history",
    "peak_rooms_held",
    "peak_rooms_held_in_flight",
]

MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]


class Booking(NamedTuple):
    row: int  # 1-based data row
    hotel: str
    arrival: date
    nights: int
    created: date
    cancelled: date | None


class Count(NamedTuple):
    created: int
    cancelled: int


def _booking(row: int, r: dict[str, str]) -> Booking:
    arrival = date(
        int(r["arrival_date_year"]),
        MONTHS.index(r["arrival_date_month"]) + 1,
        int(r["arrival_date_day_of_month"]),
    )
    cancelled = None
    if r["reservation_status"] == "Canceled":
        cancelled = datetime.strptime(r["reservation_status_date"], "%m/%d/%Y").date()
    return Booking(
        row=row,
        hotel=r["hotel"],
        arrival=arrival,
        nights=int(r["stays_in_weekend_nights"]) + int(r["stays_in_week_nights"]),
        created=arrival - timedelta(days=int(r["lead_time"])),
        cancelled=cancelled,
    )


@lru_cache(maxsize=8)
def _load(path: str, _size: int, _mtime_ns: int) -> tuple[Booking, ...]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        return tuple(_booking(i, r) for i, r in enumerate(csv.DictReader(f), start=1))


def bookings(path: Path) -> tuple[Booking, ...]:
    """Every booking of the file, in row order (the cache key includes size and mtime,
    so a test that rewrites a file gets fresh results)."""
    st = os.stat(path)
    return _load(str(path), st.st_size, st.st_mtime_ns)


def _counts(path: Path, bucket: str) -> dict[tuple[str, date], Count]:
    created: dict[tuple[str, date], int] = {}
    cancelled: dict[tuple[str, date], int] = {}

    def key(hotel: str, d: date) -> tuple[str, date]:
        return (hotel, d.replace(day=1) if bucket == "month" else d)

    for b in bookings(path):
        k = key(b.hotel, b.created)
        created[k] = created.get(k, 0) + 1
        if b.cancelled is not None:
            k = key(b.hotel, b.cancelled)
            cancelled[k] = cancelled.get(k, 0) + 1
    return {k: Count(created.get(k, 0), cancelled.get(k, 0)) for k in sorted(created.keys() | cancelled.keys())}


def monthly_counts(path: Path) -> dict[tuple[str, date], Count]:
    """(hotel, first day of month) -> bookings created / cancelled in that month (by
    event date); only months with at least one event."""
    return _counts(path, "month")


def daily_counts(path: Path) -> dict[tuple[str, date], Count]:
    """(hotel, day) -> bookings created / cancelled that day; only days with events."""
    return _counts(path, "day")


# Per night: the changes to its rooms held, as (event date, 0 = created / 1 = cancelled,
# row, +1 / -1), sorted in event order.
@lru_cache(maxsize=8)
def _night_changes(path: str, size: int, mtime_ns: int) -> dict[tuple[str, date], list[tuple[date, int, int, int]]]:
    changes: dict[tuple[str, date], list[tuple[date, int, int, int]]] = {}
    for b in _load(path, size, mtime_ns):
        for i in range(b.nights):
            night = b.arrival + timedelta(days=i)
            entries = changes.setdefault((b.hotel, night), [])
            entries.append((b.created, 0, b.row, +1))
            if b.cancelled is not None:
                entries.append((b.cancelled, 1, b.row, -1))
    for entries in changes.values():
        entries.sort()
    return changes


def _changes(path: Path) -> dict[tuple[str, date], list[tuple[date, int, int, int]]]:
    st = os.stat(path)
    return _night_changes(str(path), st.st_size, st.st_mtime_ns)


def final_rooms_held(path: Path) -> dict[tuple[str, date], int]:
    """(hotel, night) -> rooms held after the last event, for every night any booking
    touches (0 where every booking of the night was cancelled)."""
    return {k: sum(delta for *_, delta in entries) for k, entries in sorted(_changes(path).items())}


def night_history(path: Path, hotel: str, night: date) -> list[tuple[date, int, int]]:
    """Every event touching (hotel, night) in event order, as (event date, position in
    this history (0-based), rooms held after the event). Empty if no booking touches it."""
    out: list[tuple[date, int, int]] = []
    held = 0
    for position, (day, _kind, _row, delta) in enumerate(_changes(path).get((hotel, night), [])):
        held += delta
        out.append((day, position, held))
    return out


def peak_rooms_held(path: Path) -> dict[str, int]:
    """hotel -> the most rooms held on one night once every event is applied (the max
    of :func:`final_rooms_held` per hotel). This is the README's "peak of rooms held at
    once": 188 Resort Hotel, 235 City Hotel, the default hotel capacities."""
    peak: dict[str, int] = {}
    for (hotel, _night), held in final_rooms_held(path).items():
        peak[hotel] = max(peak.get(hotel, 0), held)
    return peak


def peak_rooms_held_in_flight(path: Path) -> dict[str, int]:
    """hotel -> the most rooms held on one night at *any moment* of the event order,
    counting bookings that are cancelled later (213 Resort Hotel, 354 City Hotel on the
    real file): the hotels overbook, so the stream sees more holds than the README peak."""
    peak: dict[str, int] = {}
    for (hotel, _night), entries in _changes(path).items():
        held = 0
        for *_, delta in entries:
            held += delta
            peak[hotel] = max(peak.get(hotel, 0), held)
    return peak
