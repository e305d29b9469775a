"""Booking ledger: booking events in, rooms held per night and booking counts out (pure).

One :class:`Ledger` per resource (a hotel). Rules (shared/data/README.md): a created
booking holds ``rooms`` rooms on each of its nights (arrival date, arrival + 1, ...,
``nights`` of them); a cancellation releases them. Every night whose rooms held change
becomes an :class:`~slotstream.contract.AvailabilityObservation` with
``free = max(capacity - held, 0)`` (overbooking shows as 0 free; the held count is in
``attributes.rooms_held``). Counts per day and per month of the event time are seed
002's dashboard data: bookings created, cancelled and net.

Each event is applied at most once: events of one resource arrive in ``seq`` order
(one partition per key), so an event with ``seq <= last_seq`` is a redelivery and is
skipped — the ledger is a running sum, and a replay must not count twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from pydantic import BaseModel, ConfigDict, Field

from slotstream.contract import SCHEMA_VERSION, AvailabilityObservation, BookingCount, BookingEvent, trusted

__all__ = ["Applied", "Ledger", "LedgerBatch", "apply_batch", "apply_event", "counts_of", "night_observation"]

_DAY = timedelta(days=1)


class Ledger(BaseModel):
    """Table value per resource. Dates are ISO strings as JSON object keys.

    ``held``: rooms held per night; ``daily`` / ``monthly``: ``[created, cancelled,
    last_seq]`` per event day / first day of the event month, ``last_seq`` being the
    last event counted in that bucket; ``last_seq``: the last event applied (-1: none).
    """

    model_config = ConfigDict(extra="forbid")

    last_seq: int = -1
    held: dict[date, int] = Field(default_factory=dict)
    daily: dict[date, list[int]] = Field(default_factory=dict)
    monthly: dict[date, list[int]] = Field(default_factory=dict)


@dataclass(slots=True)
class Applied:
    """What one event changed: nights whose rooms held changed, count buckets touched."""

    nights: list[date] = field(default_factory=list)
    days: list[date] = field(default_factory=list)
    months: list[date] = field(default_factory=list)
    skipped: bool = False


def apply_event(ledger: Ledger, event: BookingEvent) -> Applied:
    """Apply ``event`` to ``ledger`` in place (mutable for speed inside a batch)."""
    if event.seq <= ledger.last_seq:
        return Applied(skipped=True)
    ledger.last_seq = event.seq
    sign = 1 if event.kind == "created" else -1
    nights = [event.arrival_date + i * _DAY for i in range(event.nights)]
    held = ledger.held
    for night in nights:
        held[night] = held.get(night, 0) + sign * event.rooms
    day = event.event_time.date()
    month = day.replace(day=1)
    column = 0 if event.kind == "created" else 1
    for buckets, bucket in ((ledger.daily, day), (ledger.monthly, month)):
        counts = buckets.setdefault(bucket, [0, 0, event.seq])
        counts[column] += 1
        # Per bucket, not the ledger's: a count record must not depend on where a batch
        # ended, or a replay with other batch boundaries would write other rows.
        counts[2] = event.seq
    return Applied(nights=nights, days=[day], months=[month])


def night_observation(event: BookingEvent, night: date, held: int, capacity: int) -> AvailabilityObservation:
    """The observation of one hotel night after ``event`` changed its rooms held.

    Slot: the night as ``YYYY-MM-DD``, from 00:00 UTC to the next day. Observed at the
    event time; ``seq`` is the event's, so observations of one night are ordered like
    the events. ``lead_time_days`` = days from the observation to the night.

    Built unvalidated (:func:`~slotstream.contract.trusted`): ``event`` was validated and
    the rest is valid by construction, a free count in 0..``capacity`` included; raises
    ``ValueError`` for a negative ``capacity``, the one input that could make it invalid.
    """
    if capacity < 0:
        raise ValueError(f"capacity of {event.resource_id!r} is {capacity}; it must be >= 0")
    start = datetime.combine(night, time(), tzinfo=UTC)
    return trusted(
        AvailabilityObservation,
        event_type="availability_observation",
        schema_version=SCHEMA_VERSION,
        source=event.source,
        resource_id=event.resource_id,
        slot=night.isoformat(),
        slot_start=start,
        slot_end=start + _DAY,
        capacity=capacity,
        free=min(max(capacity - held, 0), capacity),
        status="open",
        observed_at=event.event_time,
        seq=event.seq,
        attributes={"rooms_held": held, "lead_time_days": (night - event.event_time.date()).days},
    )


def counts_of(ledger: Ledger, source: str, resource_id: str, days: set[date], months: set[date]) -> list[BookingCount]:
    """Count records of the given day and month buckets, as the ledger holds them now."""
    out = []
    for period, buckets, wanted in (("day", ledger.daily, days), ("month", ledger.monthly, months)):
        for bucket in sorted(wanted):
            created, cancelled, last_seq = buckets[bucket]
            out.append(
                BookingCount(
                    source=source,
                    resource_id=resource_id,
                    period=period,
                    bucket=bucket,
                    created=created,
                    cancelled=cancelled,
                    net=created - cancelled,
                    last_seq=last_seq,
                )
            )
    return out


@dataclass(slots=True)
class LedgerBatch:
    """What one batch of booking events produced: observations and counts to send,
    then the ledgers to store (per resource id); ``tally`` counts events by outcome."""

    observations: list[AvailabilityObservation] = field(default_factory=list)
    counts: list[BookingCount] = field(default_factory=list)
    ledgers: dict[str, Ledger] = field(default_factory=dict)
    tally: Counter[str] = field(default_factory=Counter)


def apply_batch(
    load: Callable[[str], Ledger | None],
    events: Iterable[BookingEvent],
    capacity: Mapping[str, int],
    default_capacity: int,
) -> LedgerBatch:
    """Apply a batch of events; ``load(resource_id)`` reads a ledger from the table.

    Capacity per resource comes from ``capacity`` (rooms), else ``default_capacity``.
    Count records are emitted once per touched bucket with the batch's final counts.
    """
    out = LedgerBatch()
    touched: dict[str, tuple[str, set[date], set[date]]] = {}
    for event in events:
        resource = event.resource_id
        ledger = out.ledgers.get(resource)
        if ledger is None:
            ledger = load(resource) or Ledger()
            out.ledgers[resource] = ledger
        applied = apply_event(ledger, event)
        if applied.skipped:
            out.tally["already_applied"] += 1
            continue
        out.tally[event.kind] += 1
        cap = capacity.get(resource, default_capacity)
        for night in applied.nights:
            out.observations.append(night_observation(event, night, ledger.held[night], cap))
        _, days, months = touched.setdefault(resource, (event.source, set(), set()))
        days.update(applied.days)
        months.update(applied.months)
    for resource, (source, days, months) in touched.items():
        out.counts.extend(counts_of(out.ledgers[resource], source, resource, days, months))
    # Store only what moved: a batch of redeliveries writes nothing to the changelog.
    out.ledgers = {r: ledger for r, ledger in out.ledgers.items() if r in touched}
    return out
