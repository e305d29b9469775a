"""The pure part of the sink: reducing a batch to one record per table row. These rules
are the ones the SQL upserts apply across batches, so: reduce(a + b) == reduce(a).merge(
reduce(b)), and for conflict-free records the order of the parts does not matter."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sinks.writer import ReducedBatch, SinkBatch, WriteCounts, reduce_batch
from slotstream.contract import AvailabilityCurrent, BookingCount, SlotState

T0 = datetime(2017, 1, 1, tzinfo=UTC)


def _current(key: int, last_seq: int) -> AvailabilityCurrent:
    """Content is a function of (key, last_seq), as the stream guarantees: two records with
    the same key and last_seq are the same record. The state changes every 3rd seq."""
    first = last_seq // 3 * 3
    slot = f"2017-02-{key + 1:02d}"
    start = datetime.fromisoformat(slot).replace(tzinfo=UTC)
    return AvailabilityCurrent(
        key=f"s|r|{slot}",
        source="s",
        resource_id="r",
        slot=slot,
        slot_start=start,
        slot_end=start + timedelta(days=1),
        current=SlotState(capacity=10, free=first % 10),
        first_seen=T0 + timedelta(hours=first),
        last_seen=T0 + timedelta(hours=last_seq),
        first_seq=first,
        last_seq=last_seq,
        observations=last_seq - first + 1,
    )


def _count(day: int, last_seq: int) -> BookingCount:
    return BookingCount(
        source="s",
        resource_id="r",
        period="day",
        bucket=date(2017, 1, 1 + day),
        created=last_seq,
        cancelled=0,
        net=last_seq,
        last_seq=last_seq,
    )


_currents = st.builds(_current, st.integers(0, 2), st.integers(0, 8))
_counts = st.builds(_count, st.integers(0, 2), st.integers(0, 5))
_batches = st.builds(
    lambda cur, cnt: SinkBatch(currents=cur, booking_counts=cnt),
    st.lists(_currents, max_size=12),
    st.lists(_counts, max_size=8),
)


def _content(r: ReducedBatch) -> dict[str, Any]:
    return {
        "currents": {c.key: c for c in r.currents},
        "counts": {(c.period, c.bucket): c for c in r.booking_counts},
        "extensions": {x.interval: x for x in r.extensions},
    }


@given(_batches, _batches)
def test_reduce_is_a_homomorphism(a: SinkBatch, b: SinkBatch) -> None:
    joined = SinkBatch(currents=a.currents + b.currents, booking_counts=a.booking_counts + b.booking_counts)
    assert reduce_batch(joined) == reduce_batch(a).merge(reduce_batch(b))


@given(_batches, _batches)
def test_order_of_batches_does_not_matter(a: SinkBatch, b: SinkBatch) -> None:
    ab = reduce_batch(a).merge(reduce_batch(b))
    ba = reduce_batch(b).merge(reduce_batch(a))
    assert _content(ab) == _content(ba)


@given(_batches)
def test_at_most_one_record_per_row_and_the_newest_wins(batch: SinkBatch) -> None:
    r = reduce_batch(batch)
    assert len({c.key for c in r.currents}) == len(r.currents)
    for c in r.currents:
        assert c.last_seq == max(x.last_seq for x in batch.currents if x.key == c.key)
    for x in r.extensions:
        same = [c for c in batch.currents if (c.key, c.first_seen, c.first_seq) == x.interval]
        assert x.last_seen == max(c.last_seen for c in same)
        assert x.observations == max(c.observations for c in same)
    for n in r.booking_counts:
        assert n.last_seq == max(m.last_seq for m in batch.booking_counts if m.bucket == n.bucket)


def test_write_counts_add_up() -> None:
    a = WriteCounts(records=3, changes=2, intervals=2)
    b = WriteCounts(records=1, currents=1, intervals_closed=1)
    assert a + b == WriteCounts(records=4, changes=2, currents=1, intervals=2, intervals_closed=1)
    assert (a + b).rows == 6
