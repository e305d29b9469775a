"""produce_hotel_bookings against the real broker: every event and dead letter arrives,
keyed by hotel, in seq order per key; pacing; a clear error without topics."""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from kafka.admin import KafkaAdminClient
from rich.console import Console

from producers.hotel_bookings import ProduceError, ProduceSummary, produce_hotel_bookings, read_booking_events
from slotstream.contract import BookingEvent, DeadLetter, FileOrigin, parse
from slotstream.kafka_admin import ensure_topics
from slotstream.settings import Settings
from slotstream.topics import Topics
from tests.producers.csvrows import row, write_gz

pytestmark = pytest.mark.integration


def _with_prefix(settings: Settings, prefix: str) -> Settings:
    return settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"topic_prefix": prefix})})


@pytest.fixture
def prefixed(stack: Settings) -> Iterator[Settings]:
    """Settings whose topics (all declared ones) live under a fresh prefix."""
    prefix = f"test{uuid.uuid4().hex[:10]}."
    specs = Topics(prefix).specs()
    ensure_topics(stack.kafka.bootstrap_servers, specs)
    yield _with_prefix(stack, prefix)
    admin = KafkaAdminClient(bootstrap_servers=stack.kafka.bootstrap_servers)
    try:
        admin.delete_topics([s.name for s in specs])
    finally:
        admin.close()


async def _consume(bootstrap: str, topic: str, count: int) -> list[tuple[int, bytes, bytes]]:
    """(partition, key, value) of the first ``count`` records of ``topic``."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=f"test-{uuid.uuid4().hex[:8]}"
    )
    await consumer.start()
    out: list[tuple[int, bytes, bytes]] = []
    try:
        async with asyncio.timeout(30):
            async for msg in consumer:
                out.append((msg.partition, msg.key, msg.value))
                if len(out) == count:
                    break
        # nothing beyond what was expected
        extra = await consumer.getmany(timeout_ms=500)
        assert not any(extra.values()), extra
    finally:
        await consumer.stop()
    return out


def _small_file(tmp_path: Path) -> tuple[Path, list[str | bytes]]:
    lines: list[str | bytes] = []
    for i in range(40):
        arrival = date(2016, 4, 1 + i % 20)
        status = ("Check-Out", "Canceled", "No-Show", "Canceled")[i % 4]
        lead = i % 7  # many bookings created on the same few days
        lines.append(
            row(
                hotel=("Resort Hotel", "City Hotel", "Hotel Ü")[i % 3],
                arrival=arrival,
                lead_time=lead,
                status=status,
                # every other cancellation on the day of creation, the rest on arrival
                status_date=arrival - timedelta(days=lead) if i % 8 == 1 else None,
            )
        )
    lines.insert(5, row(lead_time="soon"))
    lines.insert(20, b"Caf\xe9," + row().encode())
    return write_gz(tmp_path / "small.csv.gz", lines), lines


def test_produce_small_file(prefixed: Settings, tmp_path: Path) -> None:
    path, _ = _small_file(tmp_path)
    replay = read_booking_events(path)
    assert replay.bad_rows == 2 and replay.cancelled > 0
    topics = prefixed.kafka.topics
    bootstrap = prefixed.kafka.bootstrap_servers

    async def run() -> tuple[ProduceSummary, list[tuple[int, bytes, bytes]], list[tuple[int, bytes, bytes]]]:
        summary = await produce_hotel_bookings(prefixed, path, progress=True)
        events = await _consume(bootstrap, topics.booking_events, len(replay.events))
        letters = await _consume(bootstrap, topics.dead_letter, 2)
        return summary, events, letters

    summary, got_events, got_letters = asyncio.run(run())

    events = [(p, k, parse(BookingEvent, v)) for p, k, v in got_events]
    assert sorted((e for *_, e in events), key=lambda e: e.seq) == list(replay.events)
    for _partition, key, event in events:
        assert key == event.resource_id.encode()
    for hotel in {e.resource_id for e in replay.events}:
        mine = [(p, e.seq) for p, _k, e in events if e.resource_id == hotel]
        assert len({p for p, _ in mine}) == 1, "one hotel, one partition"
        assert [s for _, s in mine] == sorted(s for _, s in mine), "per-key order is seq order"

    letters = [(k, parse(DeadLetter, v)) for _p, k, v in got_letters]
    by_line = {d.origin.line: (k, d) for k, d in letters if isinstance(d.origin, FileOrigin)}
    assert sorted(by_line) == [7, 22]
    key, letter = by_line[7]
    assert key == f"{path}:7".encode()
    assert "lead_time is not a whole number: 'soon'" in letter.error
    assert letter.raw == row(lead_time="soon") and letter.stage == "producer.hotel-bookings"
    assert by_line[22][1].raw_encoding == "base64"

    assert (summary.rows, summary.bad_rows, summary.dead_letters) == (42, 2, 2)
    assert (summary.created, summary.cancelled) == (replay.created, replay.cancelled)
    assert summary.events == len(replay.events) and summary.events_per_s > 0
    out = io.StringIO()
    Console(file=out, width=120).print(summary.render())
    assert "events cancelled" in out.getvalue() and f"{replay.cancelled:,}" in out.getvalue()


def test_speed_paces_by_event_time(prefixed: Settings, tmp_path: Path) -> None:
    # creations on 2016-01-01, 01-02 and 01-04: three event days
    path = write_gz(
        tmp_path / "paced.csv.gz",
        [row(arrival=date(2016, 1, 10), lead_time=n) for n in (9, 8, 6)],
    )
    started = time.perf_counter()
    summary = asyncio.run(produce_hotel_bookings(prefixed, path, speed=10 * 86_400, progress=False))
    assert summary.speed == 10 * 86_400
    # 3 event days at 10 days per second: the last event is due 0.3 s after the first
    assert time.perf_counter() - started >= 0.3
    assert summary.events == 3


def test_missing_topics_fail_fast_with_the_fix(stack: Settings, tmp_path: Path) -> None:
    path = write_gz(tmp_path / "one.csv.gz", [row()])
    lonely = _with_prefix(stack, f"absent{uuid.uuid4().hex[:8]}.")
    with pytest.raises(ProduceError, match="slotstream topics create"):
        asyncio.run(produce_hotel_bookings(lonely, path, progress=False))


def test_unreachable_kafka_fails_fast(settings: Settings, tmp_path: Path) -> None:
    path = write_gz(tmp_path / "one.csv.gz", [row()])
    nowhere = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"bootstrap_servers": "127.0.0.1:1"})}
    )
    started = time.perf_counter()
    with pytest.raises(ProduceError, match="slotstream stack up"):
        asyncio.run(produce_hotel_bookings(nowhere, path, progress=False))
    assert time.perf_counter() - started < 10


def test_speed_must_be_positive(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="speed must be > 0"):
        asyncio.run(produce_hotel_bookings(settings, tmp_path / "x.csv.gz", speed=0))
