"""Records the stream builds unvalidated (contract.trusted) equal the validated ones,
byte for byte on the wire, for every kind it builds."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from slotstream.contract import AvailabilityChange, AvailabilityObservation, BookingEvent, trusted
from streams.detect import current_of, detect
from streams.ledger import Ledger, apply_batch

T0 = datetime(2016, 3, 1, tzinfo=UTC)


def same_as_validated(record: BaseModel) -> None:
    model = type(record)
    validated = model(**record.model_dump())
    assert validated == record
    assert validated.model_dump_json() == record.model_dump_json()
    assert model.model_validate_json(record.model_dump_json()) == record


@given(
    st.lists(st.tuples(st.integers(0, 12), st.sampled_from(["open", "closed"]), st.integers(0, 3)), min_size=1),
    st.integers(0, 12),
)
def test_changes_and_currents_equal_validated_records(drawn: list[tuple[int, str, int]], capacity: int) -> None:
    tracker, minute = None, 0
    for i, (free, status, step) in enumerate(drawn):
        minute += step
        obs = AvailabilityObservation(
            source="src",
            resource_id="res",
            slot="s",
            slot_start=T0,
            slot_end=T0 + timedelta(hours=1),
            capacity=capacity,
            free=min(free, capacity),
            status=status,
            observed_at=T0 + timedelta(minutes=minute),
            seq=i,
            attributes={"note": "x", "n": i, "ratio": 0.5, "flag": True, "none": None},
        )
        d = detect(tracker, obs)
        tracker = d.tracker
        if d.change is not None:
            same_as_validated(d.change)
        same_as_validated(current_of(obs, tracker))


@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 5), st.booleans()), min_size=1, max_size=20))
def test_observations_equal_validated_records(drawn: list[tuple[int, int, bool]]) -> None:
    events = [
        BookingEvent(
            event_id=f"b{i}:{'cancelled' if cancel else 'created'}",
            seq=i,
            kind="cancelled" if cancel else "created",
            booking_id=f"b{i}",
            source="hotel_bookings",
            resource_id="City Hotel",
            arrival_date=date(2016, 3, 1) + timedelta(days=arrival),
            nights=nights,
            lead_time_days=arrival,
            event_time=T0,
        )
        for i, (arrival, nights, cancel) in enumerate(drawn)
    ]
    result = apply_batch(lambda _r: Ledger(), events, {"City Hotel": 3}, 10)
    for observation in result.observations:
        same_as_validated(observation)


def test_negative_capacity_is_refused() -> None:
    event = BookingEvent(
        event_id="b:created",
        seq=0,
        kind="created",
        booking_id="b",
        source="hotel_bookings",
        resource_id="City Hotel",
        arrival_date=date(2016, 3, 1),
        nights=1,
        lead_time_days=0,
        event_time=T0,
    )
    with pytest.raises(ValueError, match="capacity"):
        apply_batch(lambda _r: None, [event], {"City Hotel": -1}, 10)


def test_values_not_naming_every_field_in_order_are_validated() -> None:
    base = {
        "source": "src",
        "resource_id": "res",
        "slot": "s",
        "slot_start": T0,
        "slot_end": T0 + timedelta(hours=1),
        "capacity": 3,
        "free": 2,
        "observed_at": T0,
    }
    record = trusted(AvailabilityObservation, **base)  # defaults left out: validated
    assert record == AvailabilityObservation(**base)
    with pytest.raises(ValidationError):
        trusted(AvailabilityObservation, **{**base, "free": 5})  # free > capacity
    with pytest.raises(ValidationError):
        trusted(AvailabilityChange, key="k")
