"""Each partition's records in offset order, without holes, whatever the fetch path did.

The stream worker's agents must apply the records of a partition exactly in log order:
the ledger and the change detector compute each output from the state the previous
record left. Faust does not guarantee that around a rebalance. After one, it seeks each
partition to its committed offset and then delivers only records at or above its *read
offset*, which every delivered record moves forward; a record fetched from the old
position and handed over after the seek moves it past records that are then fetched
again and silently dropped (``Consumer._drain_messages``: "DROPPED MESSAGE"). The kill
test met the result: the detector saw a night's observation ``seq 16501`` without ever
seeing ``16500`` before it, so the change it emitted was off by one room, for good. With
this guard in place, kill runs logged what Faust delivered right after a rebalance:
observations from offset 3,252 while 1,210 was committed, booking events from 10,551
while 10,512 was.

:class:`OffsetGuard` checks what Faust delivers against what was committed: per
partition, the next record admitted must be the one at the next offset. A record below
it is a duplicate (dropped); a record above it opens a *hole*. A hole is either records
that Faust lost — then the partition is sought back to the missing offset and fetched
again — or offsets that hold no record a consumer can see (transaction markers of a
transactional producer, records deleted by retention) — then the guard moves past it.
Which of the two a broker's log holds is asked of the broker (``probe``: the offset of
the first record at or after the missing one), not guessed.

:func:`admit` is the pure rule; the guard adds the broker calls.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition

__all__ = ["Admission", "OffsetGuard", "admit", "first_offset_at"]

log = logging.getLogger("slotstream.stream")

TP = TypeVar("TP", bound=Hashable)


@dataclass(frozen=True)
class Admission(Generic[TP]):
    """What :func:`admit` decided for one batch.

    ``admitted``: indices into the batch, in batch order; ``next_offsets``: per partition,
    the offset the next admitted record must have (the committed offset after the batch);
    ``holes``: per partition whose records stopped at a hole, (missing offset, offset of
    the first record above it); ``tally``: ``admitted`` / ``duplicate`` / ``after_hole``.
    """

    admitted: list[int]
    next_offsets: dict[TP, int]
    holes: dict[TP, tuple[int, int]]
    tally: Counter[str] = field(default_factory=Counter)


def admit(
    records: Sequence[tuple[TP, int]],
    next_offsets: Mapping[TP, int | None],
    empty: Mapping[TP, Mapping[int, int]] | None = None,
) -> Admission[TP]:
    """Admit the ``(partition, offset)`` records of one batch in log order.

    ``next_offsets[tp]`` is the offset the partition's next record must have (its committed
    offset), or None when unknown (nothing committed yet: the first record starts the
    partition). A record below it is a duplicate; one at it is admitted and moves it on; one
    above it is a hole, and no later record of that partition in the batch is admitted
    (they would be applied ahead of the missing ones). ``empty[tp]`` maps the first offset
    of a range known to hold no record to the offset after it: the next offset skips such
    ranges. Partitions are independent.
    """
    expected: dict[TP, int | None] = dict(next_offsets)
    empty = empty or {}
    admitted: list[int] = []
    holes: dict[TP, tuple[int, int]] = {}
    tally: Counter[str] = Counter()
    for i, (tp, offset) in enumerate(records):
        if tp in holes:
            tally["after_hole"] += 1
            continue
        want = expected.get(tp)
        ranges = empty.get(tp)
        while ranges and want is not None and want in ranges:
            want = expected[tp] = ranges[want]
        if want is not None and offset < want:
            tally["duplicate"] += 1
        elif want is None or offset == want:
            admitted.append(i)
            expected[tp] = offset + 1
            tally["admitted"] += 1
        else:
            holes[tp] = (want, offset)
            tally["after_hole"] += 1
    known = {tp: offset for tp, offset in expected.items() if offset is not None}
    return Admission(admitted, known, holes, tally)


async def first_offset_at(
    bootstrap_servers: str, topic: str, partition: int, offset: int, timeout_s: float
) -> int | None:
    """The offset of the first record a consumer reads from ``offset`` on (``offset`` itself
    when a record is there), or None when none arrived within ``timeout_s`` seconds. A
    throw-away consumer outside any consumer group; an offset below the log's start reads
    from the start (``auto_offset_reset="earliest"``)."""
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="slotstream-offset-probe",
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        consumer.seek(tp, offset)
        batch = await consumer.getmany(tp, timeout_ms=int(timeout_s * 1000), max_records=1)
        records = batch.get(tp, [])
        return records[0].offset if records else None
    finally:
        await consumer.stop()


Probe = Callable[[TP, int], Awaitable[int | None]]
Seek = Callable[[TP, int, object], Awaitable[None]]


class OffsetGuard(Generic[TP]):
    """:func:`admit` across batches, with the broker calls a hole needs.

    ``committed(tp)``: the partition's committed offset as of now (None if nothing is
    committed); ``probe(tp, offset)``: :func:`first_offset_at` for the partition (errors
    count as "unknown"); ``seek(tp, offset, generation)``: fetch the partition again from
    ``offset`` if the consumer is still in ``generation``. What the guard knows is reset
    whenever the consumer generation changes (another worker may have committed meanwhile).

    A partition with nothing committed starts at the first record of its log (``probe`` from
    offset 0: the consumer's ``auto_offset_reset="earliest"``), not at whatever record
    happens to arrive first. After a seek, records fetched before it keep arriving for a
    while (Faust's stream buffer holds thousands) and are dropped; and Faust's fetch loop can
    still drop the records fetched again (it finishes delivering its current fetch after the
    seek, moving its read offset past them). So a watcher checks every ``reseek_after_s``
    seconds whether the hole was filled, and probes and seeks again if not — also when no
    further record of the partition arrives (the end of a replay).
    """

    def __init__(
        self,
        committed: Callable[[TP], int | None],
        probe: Probe[TP],
        seek: Seek[TP],
        reseek_after_s: float = 2.0,
    ) -> None:
        self._committed = committed
        self._probe = probe
        self._seek = seek
        self._reseek_after_s = reseek_after_s
        self._generation: object = None
        self._next: dict[TP, int] = {}
        self._sought: dict[TP, int] = {}  # partition -> the missing offset being fetched again
        self._empty: dict[TP, dict[int, int]] = {}
        self._watchers: set[asyncio.Task[None]] = set()
        self.tally: Counter[str] = Counter()

    async def admit(self, generation: object, records: Sequence[tuple[TP, int]]) -> Admission[TP]:
        """:func:`admit` for one batch of the consumer generation ``generation``; holes are
        probed and either skipped (no record there) or sought back to. The result's
        ``next_offsets`` are what to commit (only partitions with admitted records)."""
        if generation != self._generation:
            self._generation, self._next, self._sought, self._empty = generation, {}, {}, {}
        expected: dict[TP, int | None] = {}
        for tp, _ in records:
            if tp not in expected:
                expected[tp] = self._next[tp] if tp in self._next else await self._start(tp)
        while True:  # each pass moves past one more empty range, so this ends
            result = admit(records, expected, self._empty)
            skipped = False
            for tp, (missing, seen) in result.holes.items():
                skipped |= await self._on_hole(tp, missing, seen)
            if not skipped:
                break
        self._next.update(result.next_offsets)
        self.tally.update(result.tally)
        admitted_tps = {records[i][0] for i in result.admitted}
        return Admission(
            result.admitted,
            {tp: offset for tp, offset in result.next_offsets.items() if tp in admitted_tps},
            result.holes,
            result.tally,
        )

    async def _start(self, tp: TP) -> int | None:
        """The committed offset, or the first record of the log when nothing is committed."""
        committed = self._committed(tp)
        if committed is not None:
            return committed
        first = await self._probe_or_none(tp, 0)
        log.info("%s: nothing committed; the log starts at offset %s", tp, first)
        return first

    async def _probe_or_none(self, tp: TP, offset: int) -> int | None:
        try:
            return await self._probe(tp, offset)
        except Exception:  # the broker unreachable: unknown, so the hole is fetched again
            log.warning("%s: could not probe offset %d", tp, offset, exc_info=True)
            return None

    async def _on_hole(self, tp: TP, missing: int, seen: int) -> bool:
        """Deal with the hole [missing, seen) of ``tp``; True if (some of) it holds no
        record, now known (the batch is then admitted again)."""
        if self._sought.get(tp) == missing:
            return False  # being fetched again (the watcher retries); these came before
        first = await self._probe_or_none(tp, missing)
        if first is not None and missing < first <= seen:
            log.info("%s: offsets %d..%d hold no record (markers, deleted): moving past", tp, missing, first - 1)
            self.tally["hole_skipped"] += 1
            self._empty.setdefault(tp, {})[missing] = first
            return True
        log.warning("%s: offset %d was not delivered before offset %d: fetching again from there", tp, missing, seen)
        self.tally["hole_refetched"] += 1
        self._sought[tp] = missing
        await self._seek(tp, missing, self._generation)
        watcher = asyncio.create_task(self._watch(tp, missing, self._generation))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        return False

    async def _watch(self, tp: TP, missing: int, generation: object) -> None:
        """Until the hole at ``missing`` is filled (or the generation changed): every
        ``reseek_after_s`` seconds, probe again and seek to the first record there."""
        while True:
            await asyncio.sleep(self._reseek_after_s)
            if self._generation != generation or self._sought.get(tp) != missing or self._next.get(tp) != missing:
                return
            first = await self._probe_or_none(tp, missing)
            target = missing
            if first is not None and first > missing:  # deleted meanwhile: move past it
                self._empty.setdefault(tp, {})[missing] = first
                target = first
            log.warning("%s: offset %d still missing: fetching again from %d", tp, missing, target)
            self.tally["hole_refetched"] += 1
            await self._seek(tp, target, generation)
