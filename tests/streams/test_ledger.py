"""Booking ledger: rooms held per night, observations and counts; applied once."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from slotstream.contract import BookingEvent
from streams.ledger import Ledger, apply_batch, apply_event

D0 = date(2016, 3, 1)


def event(
    seq: int, booking: int, kind: str, *, day: int = 0, arrival: int = 10, nights: int = 2, hotel: str = "City Hotel"
) -> BookingEvent:
    return BookingEvent(
        event_id=f"b{booking}:{kind}",
        seq=seq,
        kind=kind,
        booking_id=f"b{booking}",
        source="hotel_bookings",
        resource_id=hotel,
        arrival_date=D0 + timedelta(days=arrival),
        nights=nights,
        lead_time_days=arrival - day,
        event_time=datetime.combine(D0 + timedelta(days=day), datetime.min.time(), tzinfo=UTC),
    )


def test_created_holds_each_night_and_cancelled_releases() -> None:
    ledger = Ledger()
    applied = apply_event(ledger, event(0, 1, "created", nights=3))
    assert applied.nights == [D0 + timedelta(days=d) for d in (10, 11, 12)]
    assert all(ledger.held[n] == 1 for n in applied.nights)
    apply_event(ledger, event(1, 1, "cancelled", day=2, nights=3))
    assert all(ledger.held[n] == 0 for n in applied.nights)
    assert ledger.daily[D0] == [1, 0, 0] and ledger.daily[D0 + timedelta(days=2)] == [0, 1, 1]
    assert ledger.monthly[D0] == [1, 1, 1]


def test_zero_night_booking_holds_nothing_but_counts() -> None:
    ledger = Ledger()
    applied = apply_event(ledger, event(0, 1, "created", nights=0))
    assert applied.nights == [] and ledger.held == {} and ledger.daily[D0] == [1, 0, 0]


def test_redelivered_event_is_not_applied_twice() -> None:
    ledger = Ledger()
    apply_event(ledger, event(0, 1, "created"))
    assert apply_event(ledger, event(0, 1, "created")).skipped
    assert set(ledger.held.values()) == {1}


def test_batch_observations_free_and_overbooking() -> None:
    events = [event(i, i, "created", nights=1) for i in range(4)]
    result = apply_batch(lambda _r: None, events, {"City Hotel": 3}, 100)
    assert [o.free for o in result.observations] == [2, 1, 0, 0]  # overbooked shows 0 free
    assert [o.attributes["rooms_held"] for o in result.observations] == [1, 2, 3, 4]
    assert [o.attributes["lead_time_days"] for o in result.observations] == [10] * 4
    counts = {(c.period, c.bucket): (c.created, c.cancelled, c.net) for c in result.counts}
    assert counts == {("day", D0): (4, 0, 4), ("month", D0): (4, 0, 4)}


def test_batch_of_redeliveries_stores_nothing() -> None:
    stored = Ledger()
    apply_event(stored, event(0, 1, "created"))
    result = apply_batch(lambda _r: stored.model_copy(deep=True), [event(0, 1, "created")], {}, 10)
    assert result.ledgers == {} and result.observations == [] and result.tally["already_applied"] == 1


bookings = st.lists(
    st.tuples(
        st.integers(0, 20),
        st.integers(0, 15),
        st.integers(0, 4),
        st.booleans(),
        st.integers(0, 5),
        st.sampled_from(["City Hotel", "Resort Hotel"]),
    ),
    min_size=1,
    max_size=30,
)


def ordered_events(drawn: list[tuple[int, int, int, bool, int, str]]) -> list[BookingEvent]:
    raw = []
    for b, (day, lead, nights, cancel, cancel_after, hotel) in enumerate(drawn):
        raw.append((day, 0, b, "created", lead, nights, hotel))
        if cancel:
            raw.append((day + min(cancel_after, lead), 1, b, "cancelled", lead, nights, hotel))
    raw.sort()
    return [
        event(i, b, kind, day=day, arrival=day_created + lead, nights=nights, hotel=hotel)
        for i, (day, _o, b, kind, lead, nights, hotel) in enumerate(raw)
        for day_created in [next(d for d, o, bb, *_ in raw if bb == b and o == 0)]
    ]


@given(bookings, st.integers(1, 7), st.lists(st.integers(0, 60), max_size=3))
def test_batches_with_redelivery_equal_one_pass(
    drawn: list[tuple[int, int, int, bool, int, str]], batch_size: int, rewinds: list[int]
) -> None:
    events = ordered_events(drawn)
    expected_held: Counter[tuple[str, date]] = Counter()
    for e in events:
        for i in range(e.nights):
            expected_held[(e.resource_id, e.arrival_date + timedelta(days=i))] += 1 if e.kind == "created" else -1

    table: dict[str, Ledger] = {}
    position, pending = 0, sorted(rewinds)
    while position < len(events):
        batch = events[position : position + batch_size]
        result = apply_batch(lambda r: table[r].model_copy(deep=True) if r in table else None, batch, {}, 50)
        table.update(result.ledgers)
        position += len(batch)
        if pending and pending[0] <= position:  # redeliver from an earlier offset
            position = max(0, position - pending.pop(0) % (batch_size + 1))
    held = Counter({(r, n): v for r, ledger in table.items() for n, v in ledger.held.items() if v})
    assert held == +expected_held
    one_pass = apply_batch(lambda _r: None, events, {}, 50).ledgers
    for r, ledger in table.items():
        # Counts, with the seq of each bucket's last event, do not depend on batching.
        assert (ledger.daily, ledger.monthly) == (one_pass[r].daily, one_pass[r].monthly)
        created = sum(1 for e in events if e.resource_id == r and e.kind == "created")
        assert sum(c for c, _, _ in ledger.monthly.values()) == created
