"""Offset order: each partition's records admitted exactly in log order from the committed
offset, whatever the delivery did (duplicates, reordering, records lost); holes probed
and either fetched again or, when the broker's log has no record there, moved past.
The probe itself against the real broker, with a hole made by transaction markers."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable

from aiokafka import AIOKafkaProducer
from hypothesis import given
from hypothesis import strategies as st

from slotstream.settings import Settings
from streams.offsets import OffsetGuard, admit, first_offset_at
from tests.conftest import TopicFactory

# A delivery: per record, its partition and offset, in the order delivered.
deliveries = st.lists(st.tuples(st.sampled_from("ab"), st.integers(0, 12)), max_size=60)


@given(deliveries, st.dictionaries(st.sampled_from("ab"), st.none() | st.integers(0, 12)))
def test_admitted_records_continue_each_partition_without_holes(
    records: list[tuple[str, int]], committed: dict[str, int | None]
) -> None:
    result = admit(records, committed)
    for tp in "ab":
        offsets = [records[i][1] for i in result.admitted if records[i][0] == tp]
        start = committed.get(tp)
        if offsets:
            first = offsets[0] if start is None else start
            assert offsets == list(range(first, first + len(offsets)))
            assert result.next_offsets[tp] == offsets[-1] + 1
        elif start is not None:
            assert result.next_offsets[tp] == start
    assert result.admitted == sorted(result.admitted)
    assert sum(result.tally.values()) == len(records)


@given(st.integers(0, 5), st.integers(0, 30), st.data())
def test_an_in_order_delivery_is_admitted_whole(start: int, length: int, data: st.DataObject) -> None:
    # Two partitions' contiguous logs, interleaved in any way that keeps each one's order.
    logs = {"a": list(range(start, start + length)), "b": list(range(length // 2))}
    records: list[tuple[str, int]] = []
    while logs["a"] or logs["b"]:
        tp = data.draw(st.sampled_from([tp for tp in "ab" if logs[tp]]))
        records.append((tp, logs[tp].pop(0)))
    result = admit(records, {"a": start, "b": None})
    assert result.admitted == list(range(len(records)))
    assert not result.holes


def test_duplicates_are_dropped_and_a_hole_stops_the_partition() -> None:
    records = [("a", 3), ("a", 4), ("a", 5), ("b", 0), ("a", 7), ("a", 6), ("b", 1)]
    result = admit(records, {"a": 4, "b": 0})
    assert [records[i] for i in result.admitted] == [("a", 4), ("a", 5), ("b", 0), ("b", 1)]
    assert result.holes == {"a": (6, 7)}
    assert result.next_offsets == {"a": 6, "b": 2}
    assert result.tally == {"admitted": 4, "duplicate": 1, "after_hole": 2}


class FakeBroker:
    """The guard's three broker calls over a log whose offsets ``gaps`` hold no record;
    ``position`` is the fetch position a seek replaces."""

    def __init__(self, committed: dict[Hashable, int], gaps: frozenset[int] = frozenset()) -> None:
        self.committed = committed
        self.gaps = gaps
        self.position: int | None = None
        self.probes: list[tuple[Hashable, int]] = []
        self.seeks: list[tuple[Hashable, int]] = []
        self.now = 0.0

    def guard(self) -> OffsetGuard[Hashable]:
        async def probe(tp: Hashable, offset: int) -> int | None:
            self.probes.append((tp, offset))
            while offset in self.gaps:
                offset += 1
            return offset

        async def seek(tp: Hashable, offset: int) -> int | None:
            self.seeks.append((tp, offset))
            return self.position

        return OffsetGuard(self.committed.get, probe, seek, reseek_after_s=10.0, clock=lambda: self.now)


def _admitted(guard: OffsetGuard[Hashable], generation: int, records: list[tuple[Hashable, int]]) -> list[int]:
    result = asyncio.run(guard.admit(generation, records))
    return [records[i][1] for i in result.admitted]


def test_a_lost_record_is_fetched_again_and_then_admitted_in_order() -> None:
    broker = FakeBroker({"a": 10})
    guard = broker.guard()
    broker.position = 20  # records up to 19 had been fetched when the guard sought back
    assert _admitted(guard, 1, [("a", 10), ("a", 12), ("a", 13)]) == [10]
    assert broker.seeks == [("a", 11)] and broker.probes == [("a", 11)]
    # Records fetched before the seek (below 20) still arrive: dropped, not sought again.
    assert _admitted(guard, 1, [("a", 14), ("a", 19)]) == []
    assert broker.seeks == [("a", 11)]
    # One from 20 on was fetched after the seek, so the fetch loop dropped 11 again:
    # sought again, without another probe.
    broker.position = 22
    assert _admitted(guard, 1, [("a", 20), ("a", 21)]) == []
    assert broker.seeks == [("a", 11), ("a", 11)] and broker.probes == [("a", 11)]
    # Fetched again from 11 (with what was delivered already, as duplicates).
    assert _admitted(guard, 1, [("a", 10), ("a", 11), ("a", 12), ("a", 13), ("a", 14)]) == [11, 12, 13, 14]
    # A new hole is probed and sought on its own.
    assert _admitted(guard, 1, [("a", 16)]) == []
    assert broker.seeks == [("a", 11), ("a", 11), ("a", 15)] and broker.probes == [("a", 11), ("a", 15)]


def test_a_hole_still_there_after_the_delay_is_sought_again() -> None:
    broker = FakeBroker({"a": 10})  # the seek cannot tell the position it replaced
    guard = broker.guard()
    assert _admitted(guard, 1, [("a", 12)]) == []
    broker.now = 9.0
    assert _admitted(guard, 1, [("a", 13)]) == []
    assert broker.seeks == [("a", 10)]
    broker.now = 10.5
    assert _admitted(guard, 1, [("a", 14)]) == []
    assert broker.seeks == [("a", 10), ("a", 10)] and broker.probes == [("a", 10)]


def test_a_hole_without_records_is_moved_past_without_a_seek() -> None:
    broker = FakeBroker({"a": 10}, gaps=frozenset({11, 12}))
    guard = broker.guard()
    assert _admitted(guard, 1, [("a", 10), ("a", 13), ("a", 14)]) == [10, 13, 14]
    assert broker.probes == [("a", 11)] and not broker.seeks
    assert guard.tally["hole_skipped"] == 1


def test_a_hole_partly_without_records_is_fetched_from_the_first_record() -> None:
    broker = FakeBroker({"a": 10}, gaps=frozenset({10}))
    guard = broker.guard()
    assert _admitted(guard, 1, [("a", 12)]) == []
    assert broker.probes == [("a", 10), ("a", 11)]
    assert broker.seeks == [("a", 11)]


def test_a_new_generation_starts_again_from_the_committed_offsets() -> None:
    broker = FakeBroker({"a": 10, "b": 0})
    guard = broker.guard()
    assert _admitted(guard, 1, [("a", 10), ("a", 11), ("b", 0)]) == [10, 11, 0]
    broker.committed.clear()
    broker.committed["a"] = 11  # another worker committed up to 11 meanwhile; b never
    assert _admitted(guard, 2, [("a", 11), ("b", 5), ("a", 12)]) == [11, 5, 12]
    result = asyncio.run(guard.admit(2, [("a", 13), ("b", 6)]))
    assert result.next_offsets == {"a": 14, "b": 7}


def test_the_probe_finds_the_first_record_after_transaction_markers(stack: Settings, make_topic: TopicFactory) -> None:
    topic = make_topic(partitions=1)
    bootstrap = stack.kafka.bootstrap_servers

    async def run() -> list[int | None]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{topic}-tx")
        await producer.start()
        try:
            for i in range(2):  # each committed transaction ends with a marker at its own offset
                async with producer.transaction():
                    await producer.send_and_wait(topic, f"r{i}".encode(), partition=0)
        finally:
            await producer.stop()
        # The log: record 0, marker 1, record 2, marker 3.
        found = [await first_offset_at(bootstrap, topic, 0, offset, timeout_s=10.0) for offset in (0, 1, 2)]
        return [*found, await first_offset_at(bootstrap, topic, 0, 3, timeout_s=1.0)]  # nothing to wait for

    assert asyncio.run(run()) == [0, 2, 2, None]
