"""A miniature of the stream worker's change detection, to feed the sink realistic records.

From observations of slots it emits what the stream does (seed 000: a change only when
free / capacity / status changed; seed 001: the current state with its open interval) and
the state intervals the sink must end up with, as ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple

from slotstream.contract import (
    AvailabilityChange,
    AvailabilityCurrent,
    BookingCount,
    BookingEvent,
    SlotState,
    SlotStatus,
)

T0 = datetime(2017, 3, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Obs:
    """One observation of slot ``slot`` of ``resource_id``; ``seq`` increases per key."""

    resource_id: str
    slot: str
    observed_at: datetime
    seq: int
    free: int | None
    capacity: int | None = 4
    status: SlotStatus = "open"
    source: str = "sim"

    @property
    def key(self) -> str:
        return f"{self.source}|{self.resource_id}|{self.slot}"


class Interval(NamedTuple):
    """Expected ``state_intervals`` row (the columns the sink must get right)."""

    key: str
    first_seen: datetime
    first_seq: int
    capacity: int | None
    free: int | None
    status: str
    last_seen: datetime
    ended_at: datetime | None
    observations: int


@dataclass
class _Open:
    state: SlotState
    first_seen: datetime
    first_seq: int
    last_seen: datetime
    observations: int


@dataclass
class Simulation:
    changes: list[AvailabilityChange] = field(default_factory=list)
    currents: list[AvailabilityCurrent] = field(default_factory=list)
    intervals: list[Interval] = field(default_factory=list)


def _slot_start(slot: str) -> datetime:
    return datetime.combine(date.fromisoformat(slot), datetime.min.time(), tzinfo=UTC)


def simulate(observations: list[Obs]) -> Simulation:
    """Changes, currents (one per observation) and expected intervals of ``observations``
    (processed in list order, which must be ``(observed_at, seq)`` order per key)."""
    out = Simulation()
    open_: dict[str, _Open] = {}
    closed: list[Interval] = []
    for o in observations:
        state = SlotState(capacity=o.capacity, free=o.free, status=o.status)
        start = _slot_start(o.slot)
        common = {
            "key": o.key,
            "source": o.source,
            "resource_id": o.resource_id,
            "slot": o.slot,
            "slot_start": start,
            "slot_end": start + timedelta(days=1),
        }
        cur = open_.get(o.key)
        if cur is not None and cur.state == state:
            cur.last_seen, cur.observations = o.observed_at, cur.observations + 1
        else:
            prev_free = None if cur is None else cur.state.free
            out.changes.append(
                AvailabilityChange(
                    **common,
                    event_id=f"{o.key}@{o.observed_at.isoformat()}#{o.seq}",
                    observed_at=o.observed_at,
                    seq=o.seq,
                    previous=None if cur is None else cur.state,
                    current=state,
                    delta_free=None if prev_free is None or o.free is None else o.free - prev_free,
                    previous_first_seen=None if cur is None else cur.first_seen,
                    previous_last_seen=None if cur is None else cur.last_seen,
                    previous_duration_s=None if cur is None else (cur.last_seen - cur.first_seen).total_seconds(),
                    # What the stream reports since the contract has it: the closed interval's count.
                    previous_observations=None if cur is None else cur.observations,
                    attributes={"sim": True},
                )
            )
            if cur is not None:
                closed.append(_interval(o.key, cur, ended_at=o.observed_at))
            cur = open_[o.key] = _Open(state, o.observed_at, o.seq, o.observed_at, 1)
        out.currents.append(
            AvailabilityCurrent(
                **common,
                current=state,
                first_seen=cur.first_seen,
                last_seen=cur.last_seen,
                first_seq=cur.first_seq,
                last_seq=o.seq,
                observations=cur.observations,
            )
        )
    out.intervals = sorted(
        closed + [_interval(k, c, ended_at=None) for k, c in open_.items()],
        key=lambda i: (i.key, i.first_seen, i.first_seq),
    )
    return out


def _interval(key: str, o: _Open, *, ended_at: datetime | None) -> Interval:
    return Interval(
        key=key,
        first_seen=o.first_seen,
        first_seq=o.first_seq,
        capacity=o.state.capacity,
        free=o.state.free,
        status=o.state.status,
        last_seen=o.last_seen,
        ended_at=ended_at,
        observations=o.observations,
    )


def walk(
    resource_id: str, slot: str, frees: list[int | None], *, step: timedelta = timedelta(hours=6), start: int = 0
) -> list[Obs]:
    """Observations of one slot with the given free counts, ``step`` apart (0 = ties)."""
    return [Obs(resource_id, slot, T0 + step * (start + i), seq=start + i, free=f) for i, f in enumerate(frees)]


def booking_events(resource_id: str, n: int, *, source: str = "sim") -> list[BookingEvent]:
    """``n`` bookings of one resource, every third one cancelled the day after."""
    out: list[BookingEvent] = []
    for i in range(n):
        t = T0 + timedelta(days=i)
        kinds = ["created", "cancelled"] if i % 3 == 0 else ["created"]
        for j, kind in enumerate(kinds):
            out.append(
                BookingEvent(
                    event_id=f"b{i}:{kind}",
                    seq=len(out),
                    kind=kind,
                    booking_id=f"b{i}",
                    source=source,
                    resource_id=resource_id,
                    arrival_date=(t + timedelta(days=30)).date(),
                    nights=2,
                    lead_time_days=30,
                    event_time=t + timedelta(days=j),
                )
            )
    return out


def booking_counts(events: list[BookingEvent]) -> list[BookingCount]:
    """The running daily and monthly counts after each event (what a compacted topic
    receives: many versions of each bucket, the last one wins)."""
    totals: dict[tuple[str, str, str, date], list[int]] = {}
    out: list[BookingCount] = []
    for e in events:
        day = e.event_time.date()
        for period, bucket in (("day", day), ("month", day.replace(day=1))):
            c = totals.setdefault((e.source, e.resource_id, period, bucket), [0, 0])
            c[0 if e.kind == "created" else 1] += 1
            out.append(
                BookingCount(
                    source=e.source,
                    resource_id=e.resource_id,
                    period=period,
                    bucket=bucket,
                    created=c[0],
                    cancelled=c[1],
                    net=c[0] - c[1],
                    last_seq=e.seq,
                )
            )
    return out
