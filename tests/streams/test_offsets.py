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
    """The guard's three broker calls over logs that start at ``log_start`` and whose
    offsets ``gaps`` hold no record; ``generation`` is the consumer's."""

    def __init__(self, committed: dict[Hashable, int], gaps: frozenset[int] = frozenset(), log_start: int = 0) -> None:
        self.committed = committed
        self.gaps = gaps
        self.log_start = log_start
        self.generation: object = 1
        self.probes: list[tuple[Hashable, int]] = []
        self.seeks: list[tuple[Hashable, int]] = []

    def guard(self, reseek_after_s: float = 60.0) -> OffsetGuard[Hashable]:
        async def probe(tp: Hashable, offset: int) -> int | None:
            self.probes.append((tp, offset))
            offset = max(offset, self.log_start)
            while offset in self.gaps:
                offset += 1
            return offset

        async def seek(tp: Hashable, offset: int, generation: object) -> None:
            if generation == self.generation:
                self.seeks.append((tp, offset))

        return OffsetGuard(self.committed.get, probe, seek, reseek_after_s=reseek_after_s)


async def _admitted(guard: OffsetGuard[Hashable], generation: int, records: list[tuple[Hashable, int]]) -> list[int]:
    result = await guard.admit(generation, records)
    return [records[i][1] for i in result.admitted]


def test_a_lost_record_is_fetched_again_and_then_admitted_in_order() -> None:
    async def run() -> None:
        broker = FakeBroker({"a": 10})
        guard = broker.guard()
        assert await _admitted(guard, 1, [("a", 10), ("a", 12), ("a", 13)]) == [10]
        assert broker.seeks == [("a", 11)] and broker.probes == [("a", 11)]
        # Records fetched before the seek still arrive: dropped, no second probe or seek.
        assert await _admitted(guard, 1, [("a", 14), ("a", 19)]) == []
        assert broker.seeks == [("a", 11)] and broker.probes == [("a", 11)]
        # Fetched again from 11 (with what was delivered already, as duplicates).
        assert await _admitted(guard, 1, [("a", 10), ("a", 11), ("a", 12), ("a", 13), ("a", 14)]) == [11, 12, 13, 14]
        # A new hole is probed and sought on its own.
        assert await _admitted(guard, 1, [("a", 16)]) == []
        assert broker.seeks == [("a", 11), ("a", 15)] and broker.probes == [("a", 11), ("a", 15)]

    asyncio.run(run())


async def _sought_back_to_10() -> tuple[FakeBroker, OffsetGuard[Hashable]]:
    """A guard (watcher period 50 ms) that has just sought partition "a" back to offset 10."""
    broker = FakeBroker({"a": 10})
    guard = broker.guard(reseek_after_s=0.05)
    assert await _admitted(guard, 1, [("a", 12)]) == []
    return broker, guard


def test_a_hole_not_filled_is_sought_again_even_when_nothing_more_arrives() -> None:
    async def run() -> None:
        broker, guard = await _sought_back_to_10()
        async with asyncio.timeout(5):  # the fetch loop dropped the refetched 10 again: retried
            while len(broker.seeks) < 3:
                await asyncio.sleep(0.01)
        assert set(broker.seeks) == {("a", 10)}
        assert await _admitted(guard, 1, [("a", 10), ("a", 11), ("a", 12)]) == [10, 11, 12]
        retries = len(broker.seeks)
        await asyncio.sleep(0.12)  # filled: the watcher stopped
        assert len(broker.seeks) == retries

    asyncio.run(run())


def test_the_watcher_stops_at_a_new_generation() -> None:
    async def run() -> None:
        broker, guard = await _sought_back_to_10()
        broker.generation = 2
        assert await _admitted(guard, 2, [("a", 10)]) == [10]
        await asyncio.sleep(0.12)
        assert broker.seeks == [("a", 10)]

    asyncio.run(run())


def test_a_hole_without_records_is_moved_past_without_a_seek() -> None:
    broker = FakeBroker({"a": 10}, gaps=frozenset({11, 12, 14, 16}))
    guard = broker.guard()
    assert asyncio.run(_admitted(guard, 1, [("a", 10), ("a", 13), ("a", 15), ("a", 17)])) == [10, 13, 15, 17]
    assert broker.probes == [("a", 11), ("a", 14), ("a", 16)] and not broker.seeks
    assert guard.tally["hole_skipped"] == 3


def test_a_hole_partly_without_records_is_fetched_from_the_first_record() -> None:
    broker = FakeBroker({"a": 10}, gaps=frozenset({10}))
    guard = broker.guard()
    assert asyncio.run(_admitted(guard, 1, [("a", 12)])) == []
    assert broker.probes == [("a", 10), ("a", 11)]
    assert broker.seeks == [("a", 11)]
    assert asyncio.run(guard.admit(1, [])).next_offsets == {}  # nothing admitted: nothing to commit


def test_the_next_offset_moves_past_an_empty_range_even_without_an_admitted_record() -> None:
    result = admit([("a", 13)], {"a": 10}, {"a": {10: 11}})
    assert result.holes == {"a": (11, 13)} and result.next_offsets == {"a": 11}


def test_with_nothing_committed_the_partition_starts_at_its_log_start() -> None:
    broker = FakeBroker({}, log_start=7)
    guard = broker.guard()
    # A record from further on arrives first (fetched before a rebalance): not a start.
    assert asyncio.run(_admitted(guard, 1, [("a", 3252), ("a", 3253)])) == []
    assert broker.probes == [("a", 0), ("a", 7)] and broker.seeks == [("a", 7)]
    assert asyncio.run(_admitted(guard, 1, [("a", 7), ("a", 8)])) == [7, 8]


def test_a_new_generation_starts_again_from_the_committed_offsets() -> None:
    broker = FakeBroker({"a": 10, "b": 0})
    guard = broker.guard()
    assert asyncio.run(_admitted(guard, 1, [("a", 10), ("a", 11), ("b", 0)])) == [10, 11, 0]
    broker.committed.clear()
    broker.committed["a"] = 11  # another worker committed up to 11 meanwhile; b never
    broker.log_start = 5  # and b's log starts at 5 now
    assert asyncio.run(_admitted(guard, 2, [("a", 11), ("b", 5), ("a", 12)])) == [11, 5, 12]
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
