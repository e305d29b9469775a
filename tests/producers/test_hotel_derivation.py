"""The pure part of the hotel bookings producer: rows -> ordered booking events and dead
letters (rules of shared/data/README.md), without Kafka."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from producers.hotel_bookings import (
    STAGE,
    HotelDataError,
    parse_booking_csv,
    read_booking_events,
)
from slotstream.contract import BookingEvent, FileOrigin
from tests.producers.csvrows import HEADER, csv_bytes, row, write_gz


def _parse(lines: list[str | bytes]) -> tuple[list[BookingEvent], int]:
    replay = parse_booking_csv(csv_bytes(lines), path="mem.csv")
    assert not replay.dead_letters, [d.error for d in replay.dead_letters]
    return list(replay.events), replay.rows


def _summary(events: list[BookingEvent]) -> list[tuple[int, str, str, date]]:
    return [(e.seq, e.booking_id, e.kind, e.event_time.date()) for e in events]


def test_same_day_cancellation_follows_creation_and_all_creations_of_the_day() -> None:
    day = date(2016, 1, 5)
    events, rows = _parse(
        [
            # row 1: created and cancelled on 2016-01-05
            row(arrival=date(2016, 1, 10), lead_time=5, status="Canceled", status_date=day),
            # row 2: also created on 2016-01-05 (after row 1 by row number)
            row(arrival=date(2016, 1, 20), lead_time=15),
            # row 3: created the day before, in another hotel
            row(hotel="City Hotel", arrival=date(2016, 1, 4), lead_time=0),
        ]
    )
    assert rows == 3
    assert _summary(events) == [
        (0, "hotel_bookings-000003", "created", date(2016, 1, 4)),
        (1, "hotel_bookings-000001", "created", day),
        (2, "hotel_bookings-000002", "created", day),
        (3, "hotel_bookings-000001", "cancelled", day),
    ]


def test_event_fields() -> None:
    events, _ = _parse(
        [row(hotel="City Hotel", arrival=date(2016, 2, 29), lead_time=30, weekend=2, week=3, status="Canceled")]
    )
    created, cancelled = events
    assert created.model_dump(exclude={"event_time"}) == {
        "event_type": "booking_event",
        "schema_version": 1,
        "event_id": "hotel_bookings-000001:created",
        "seq": 0,
        "kind": "created",
        "booking_id": "hotel_bookings-000001",
        "source": "hotel_bookings",
        "resource_id": "City Hotel",
        "arrival_date": date(2016, 2, 29),
        "nights": 5,
        "lead_time_days": 30,
        "rooms": 1,
    }
    assert created.event_time == datetime(2016, 1, 30, tzinfo=UTC)  # 2016 is a leap year
    assert created.key == "City Hotel"
    # a cancellation on the arrival day is allowed (README: none follows its arrival)
    assert (cancelled.event_id, cancelled.seq, cancelled.event_time) == (
        "hotel_bookings-000001:cancelled",
        1,
        datetime(2016, 2, 29, tzinfo=UTC),
    )


def test_no_show_is_not_a_cancellation() -> None:
    replay = parse_booking_csv(csv_bytes([row(status="No-Show", is_canceled="1")]), path="mem.csv")
    assert [e.kind for e in replay.events] == ["created"]
    assert (replay.created, replay.cancelled, replay.bad_rows) == (1, 0, 0)


def test_zero_night_booking_is_valid_and_holds_none() -> None:
    events, _ = _parse([row(weekend=0, week=0, status="Canceled")])
    assert [(e.kind, e.nights) for e in events] == [("created", 0), ("cancelled", 0)]


def test_identical_rows_are_distinct_bookings() -> None:
    line = row(hotel="City Hotel", lead_time=3, status="Canceled")
    events, rows = _parse([line, line, line])
    assert rows == 3
    assert {e.booking_id for e in events} == {f"hotel_bookings-00000{i}" for i in (1, 2, 3)}
    assert len({e.event_id for e in events}) == 6


def test_ids_and_order_are_deterministic_across_reads(tmp_path: Path) -> None:
    lines: list[str | bytes] = [
        row(arrival=date(2016, 5, d % 28 + 1), lead_time=d * 7 % 40, status=s)
        for d, s in zip(range(30), ["Canceled", "Check-Out", "No-Show"] * 10, strict=True)
    ]
    path = write_gz(tmp_path / "b.csv.gz", lines)
    first, second = read_booking_events(path), read_booking_events(path)
    assert first.events == second.events
    assert first.rows == 30


def test_plain_csv_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_bytes(csv_bytes([row()]))
    assert read_booking_events(path).created == 1


def test_missing_file_and_bad_header_raise(tmp_path: Path) -> None:
    with pytest.raises(HotelDataError, match="SLOTSTREAM_DATA_DIR"):
        read_booking_events(tmp_path / "nope.csv.gz")
    with pytest.raises(HotelDataError, match="lacks lead_time"):
        parse_booking_csv(HEADER.replace("lead_time,", "").encode() + b"\r\n", path="x.csv")
    with pytest.raises(HotelDataError, match="empty"):
        parse_booking_csv(b"", path="x.csv")
    (tmp_path / "corrupt.csv.gz").write_bytes(b"\x1f\x8bnot really gzip")
    with pytest.raises(HotelDataError, match="cannot read"):
        read_booking_events(tmp_path / "corrupt.csv.gz")


def test_malformed_rows_become_dead_letters(tmp_path: Path) -> None:
    arrival = date(2016, 3, 10)
    good_a = row(arrival=arrival, lead_time=20, status="Canceled", status_date=date(2016, 3, 1))
    good_b = row(hotel="City Hotel", arrival=arrival, lead_time=0)
    good_c = row(arrival=arrival, lead_time=2, weekend=0, week=0)
    invalid_utf8 = row(hotel="Caf\x00 Hotel").encode().replace(b"\x00", b"\xe9")
    lines: list[str | bytes] = [
        good_a,  # line 2, row 1
        good_a.rsplit(",", 1)[0],  # line 3: a column short
        row(lead_time="abc"),  # line 4
        good_b,  # line 5, row 4
        row(month="Juyl"),  # line 6
        row(arrival=arrival, lead_time=5, status="Canceled", status_date=date(2016, 3, 1)),  # line 7
        row(status="Pending"),  # line 8
        invalid_utf8,  # line 9
        row(lead_time=-3),  # line 10
        row(arrival=arrival, status="Canceled", status_date=date(2016, 3, 11)),  # line 11
        row(arrival=date(2016, 2, 28), month="February").replace(",28,", ",30,"),  # line 12
        row(status_date="2016-03-10"),  # line 13
        "",  # line 14: blank, skipped (not a row)
        row(status="Canceled", is_canceled="0"),  # line 15
        good_c,  # line 16, row 14
        good_b + ",extra",  # line 17
        row(week="2.5"),  # line 18
    ]
    path = write_gz(tmp_path / "bad.csv.gz", lines)
    replay = read_booking_events(path)

    expected = {
        3: "31 columns, the header has 32",
        4: "lead_time is not a whole number: 'abc'",
        6: "arrival_date_month is not an English month name: 'Juyl'",
        7: "precedes creation on 2016-03-05",
        8: "reservation_status is not one of Check-Out, Canceled, No-Show: 'Pending'",
        9: "not valid UTF-8",
        10: "lead_time must not be negative: '-3'",
        11: "follows arrival on 2016-03-10",
        12: "arrival date does not exist",
        13: "reservation_status_date is not a date M/D/YYYY: '2016-03-10'",
        15: "is_canceled='0' contradicts reservation_status='Canceled'",
        17: "33 columns, the header has 32",
        18: "stays_in_week_nights is not a whole number: '2.5'",
    }
    got = {d.origin.line: d for d in replay.dead_letters if isinstance(d.origin, FileOrigin)}
    assert sorted(got) == sorted(expected)
    for line, reason in expected.items():
        letter = got[line]
        assert reason in letter.error, (line, letter.error)
        assert letter.stage == STAGE
        assert letter.origin == FileOrigin(path=str(path), line=line)
        assert letter.key == f"{path}:{line}"
        source = lines[line - 2]
        if isinstance(source, bytes):
            assert letter.raw_encoding == "base64"
            assert base64.b64decode(letter.raw) == source
        else:
            assert (letter.raw_encoding, letter.raw) == ("utf-8", source)

    assert (replay.rows, replay.bad_rows, replay.created, replay.cancelled) == (16, 13, 3, 1)
    # bad rows keep their row numbers, so good bookings' ids do not depend on them
    assert sorted({e.booking_id for e in replay.events}) == [
        "hotel_bookings-000001",
        "hotel_bookings-000004",
        "hotel_bookings-000014",
    ]
    assert [e.seq for e in replay.events] == [0, 1, 2, 3]


def test_stray_quote_is_a_dead_letter_not_a_crash() -> None:
    # a quote inside an unquoted field is literal CSV; one after a closing quote is not
    replay = parse_booking_csv(csv_bytes([row(hotel='"Resort Hotel"x'), row(hotel='Res"ort')]), path="q.csv")
    [letter] = replay.dead_letters
    assert isinstance(letter.origin, FileOrigin) and letter.origin.line == 2
    assert letter.error.startswith("not a valid CSV record")
    assert [e.resource_id for e in replay.events] == ['Res"ort']


# -- property: any valid table yields ordered events ------------------------------------------

_booking = st.fixed_dictionaries(
    {
        "hotel": st.sampled_from(["Resort Hotel", "City Hotel", "Hostel Ü"]),
        "arrival": st.dates(min_value=date(2015, 7, 1), max_value=date(2017, 8, 31)),
        "lead_time": st.integers(0, 400),
        "weekend": st.integers(0, 4),
        "week": st.integers(0, 10),
        "status": st.sampled_from(["Check-Out", "Canceled", "No-Show"]),
        "cancel_after": st.floats(0, 1),
    }
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_booking, max_size=40))
def test_valid_tables_yield_ordered_events(table: list[dict[str, object]]) -> None:
    lines: list[str | bytes] = []
    for b in table:
        arrival, lead = b["arrival"], b["lead_time"]
        assert isinstance(arrival, date) and isinstance(lead, int) and isinstance(b["cancel_after"], float)
        cancel_on = arrival - timedelta(days=lead) + timedelta(days=round(lead * b["cancel_after"]))
        status = str(b["status"])
        lines.append(
            row(
                hotel=str(b["hotel"]),
                arrival=arrival,
                lead_time=lead,
                weekend=int(str(b["weekend"])),
                week=int(str(b["week"])),
                status=status,
                status_date=cancel_on if status == "Canceled" else None,
            )
        )
    replay = parse_booking_csv(csv_bytes(lines), path="prop.csv")
    events = list(replay.events)

    assert not replay.dead_letters
    assert [e.seq for e in events] == list(range(len(events)))
    order = [(e.event_time, e.kind != "created", int(e.booking_id.rsplit("-", 1)[1])) for e in events]
    assert order == sorted(order)
    assert len(set(order)) == len(order)
    created_at = {e.booking_id: e.seq for e in events if e.kind == "created"}
    assert len(created_at) == len(table)
    for e in events:
        if e.kind == "cancelled":
            assert created_at[e.booking_id] < e.seq
            assert e.event_time.date() <= e.arrival_date
    cancelled = {e.booking_id for e in events if e.kind == "cancelled"}
    assert cancelled == {f"hotel_bookings-{i:06d}" for i, b in enumerate(table, 1) if b["status"] == "Canceled"}
    assert (replay.created, replay.cancelled) == (len(table), len(cancelled))
