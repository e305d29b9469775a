"""Pipeline health samples: broker offsets and lag, and what the sink wrote, land in
pipeline_metrics (real Kafka and TimescaleDB)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import psycopg
import pytest
from kafka import KafkaProducer
from psycopg import sql

from sinks.health import HealthSampler
from sinks.writer import WriteCounts
from slotstream.contract import AvailabilityCurrent, SlotState
from slotstream.settings import Settings

pytestmark = pytest.mark.integration


def _current(source: str, last_seen: datetime) -> AvailabilityCurrent:
    return AvailabilityCurrent(
        key=f"{source}|r1|2024-01-01",
        source=source,
        resource_id="r1",
        slot="2024-01-01",
        slot_start=datetime(2024, 1, 1, tzinfo=UTC),
        slot_end=datetime(2024, 1, 2, tzinfo=UTC),
        current=SlotState(capacity=10, free=4),
        first_seen=datetime(2023, 12, 1, tzinfo=UTC),
        last_seen=last_seen,
        first_seq=0,
        last_seq=3,
        observations=2,
    )


def test_a_sample_records_offsets_lag_and_what_the_sink_wrote(sink_topics: Settings) -> None:
    s = sink_topics
    producer = KafkaProducer(bootstrap_servers=s.kafka.bootstrap_servers)
    for i in range(7):
        producer.send(s.kafka.topics.observations, key=b"k", value=f"{i}".encode())
    producer.flush()
    producer.close()

    sampler = HealthSampler(s)
    seen = datetime(2024, 1, 1, 6, tzinfo=UTC)
    sampler.note(
        [_current("surf", datetime(2023, 12, 30, tzinfo=UTC)), _current("surf", seen)], WriteCounts(currents=2)
    )
    sampler.note([], WriteCounts(changes=5, currents=1))
    try:
        written = asyncio.run(sampler.sample_once())
    finally:
        sampler.close()

    with psycopg.connect(s.postgres.conninfo(reader=True)) as conn:
        rows = {
            (r[0], r[1], r[2]): r[3]
            for r in conn.execute(
                sql.SQL("SELECT component, metric, subject, value FROM {}.pipeline_metrics").format(
                    sql.Identifier(s.postgres.db_schema)
                )
            )
        }
    assert written == len(rows)
    assert rows[("kafka", "end_offset", "observations")] == 7
    assert rows[("kafka", "end_offset", "availability-changes")] == 0
    # Nobody consumed: the stream group's lag is everything on its input topics.
    assert rows[("kafka", "consumer_lag", "stream")] == 7
    assert rows[("kafka", "consumer_lag", "sink")] == 0
    assert rows[("sink", "last_observed_at", "surf")] == seen.timestamp()
    assert abs(rows[("sink", "last_received_at", "surf")] - datetime.now(UTC).timestamp()) < 60
    assert rows[("sink", "records_written", "currents")] == 3
    assert rows[("sink", "records_written", "changes")] == 5
