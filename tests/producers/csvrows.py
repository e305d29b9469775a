"""Build small hotel-bookings CSV files shaped like the real one (same 32 columns)."""

from __future__ import annotations

import gzip
from datetime import date, timedelta
from pathlib import Path

from tests.hotel_expected import MONTHS

HEADER = (
    "hotel,is_canceled,lead_time,arrival_date_year,arrival_date_month,arrival_date_week_number,"
    "arrival_date_day_of_month,stays_in_weekend_nights,stays_in_week_nights,adults,children,babies,meal,"
    "country,market_segment,distribution_channel,is_repeated_guest,previous_cancellations,"
    "previous_bookings_not_canceled,reserved_room_type,assigned_room_type,booking_changes,deposit_type,"
    "agent,company,days_in_waiting_list,customer_type,adr,required_car_parking_spaces,"
    "total_of_special_requests,reservation_status,reservation_status_date"
)


def mdy(d: date) -> str:
    """A date as the file writes it: M/D/YYYY without leading zeros."""
    return f"{d.month}/{d.day}/{d.year}"


def row(
    *,
    hotel: str = "Resort Hotel",
    arrival: date = date(2016, 3, 10),
    lead_time: int | str = 10,
    weekend: int | str = 1,
    week: int | str = 2,
    status: str = "Check-Out",
    status_date: date | str | None = None,
    is_canceled: str | None = None,
    month: str | None = None,
) -> str:
    """One CSV line (no line break). ``status_date`` defaults to the check-out day for
    Check-Out, else the arrival day; ``is_canceled`` follows the status."""
    if is_canceled is None:
        is_canceled = "0" if status == "Check-Out" else "1"
    if status_date is None:
        nights = int(weekend) + int(week) if str(weekend).isdigit() and str(week).isdigit() else 0
        status_date = arrival + timedelta(days=nights) if status == "Check-Out" else arrival
    sd = status_date if isinstance(status_date, str) else mdy(status_date)
    fields = [
        hotel,
        is_canceled,
        str(lead_time),
        str(arrival.year),
        month if month is not None else MONTHS[arrival.month - 1],
        str(arrival.isocalendar().week),
        str(arrival.day),
        str(weekend),
        str(week),
        "2",
        "0",
        "0",
        "BB",
        "PRT",
        "Online TA",
        "TA/TO",
        "0",
        "0",
        "0",
        "A",
        "A",
        "0",
        "No Deposit",
        "9",
        "NULL",
        "0",
        "Transient",
        "98.5",
        "0",
        "1",
        status,
        sd,
    ]
    return ",".join(fields)


def csv_bytes(lines: list[str | bytes]) -> bytes:
    """Header + lines, CRLF line breaks like the real file."""
    out = [HEADER.encode()] + [line.encode() if isinstance(line, str) else line for line in lines]
    return b"".join(line + b"\r\n" for line in out)


def write_gz(path: Path, lines: list[str | bytes]) -> Path:
    path.write_bytes(gzip.compress(csv_bytes(lines)))
    return path
