"""Pipeline health samples for the Grafana "Pipeline health" dashboard.

The sink takes a sample every ``SinkSettings.health_interval_s`` seconds and writes it to
``pipeline_metrics`` (migration 004 documents every metric):

- from the broker (kafka-python admin, :class:`slotstream.kafka_admin.OffsetProbe`):
  each topic's end offset (its rate is the topic's messages/s) and the lag of the
  stream worker's and the sink's consumer groups;
- from the sink itself: per source the newest ``observed_at`` written and the wall clock
  of the last record written (the observation age), and rows written per table.

Samples are best effort: a failing sample is logged and the next one tried; the sink's
data path never waits for them (they run in a worker thread, on their own connection).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql
from pydantic import BaseModel

from sinks.writer import WriteCounts
from slotstream.contract import AvailabilityChange, AvailabilityCurrent
from slotstream.kafka_admin import OffsetProbe
from slotstream.pipeline import consumer_groups
from slotstream.settings import Settings
from slotstream.topics import ALL_TOPICS

__all__ = ["HealthSampler", "MetricRow"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetricRow:
    """One ``pipeline_metrics`` row: when (UTC), who measured, what, of what, the value."""

    sampled_at: datetime
    component: str
    metric: str
    subject: str
    value: float


@dataclass
class _SourceSeen:
    last_observed_at: float  # epoch seconds, newest observed_at written
    last_received_at: float  # epoch seconds, wall clock of the last write


class HealthSampler:
    """Collects what the sink wrote (:meth:`note`, called per batch on the event loop)
    and writes a sample every ``settings.sink.health_interval_s`` seconds (:meth:`run`).
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        topics = settings.kafka.topics
        # Topic role (the declared suffix) -> full name.
        self._topics = {spec.name: topics.name(spec) for spec in ALL_TOPICS}
        # Group role -> (group id, input topics), as Pipeline.lags() reads them.
        self._groups = consumer_groups(settings)
        self._sources: dict[str, _SourceSeen] = {}
        self._written: Counter[str] = Counter()
        self._probe: OffsetProbe | None = None
        self._conn: psycopg.Connection[Any] | None = None

    def note(self, records: Iterable[BaseModel], counts: WriteCounts) -> None:
        """Account for one written batch: its records (for the per-source times) and the
        rows it wrote per table."""
        now = time.time()
        for record in records:
            if isinstance(record, AvailabilityCurrent):
                observed = record.last_seen.timestamp()
            elif isinstance(record, AvailabilityChange):
                observed = record.observed_at.timestamp()
            else:
                continue
            seen = self._sources.get(record.source)
            if seen is None:
                self._sources[record.source] = _SourceSeen(observed, now)
            else:
                seen.last_observed_at = max(seen.last_observed_at, observed)
                seen.last_received_at = now
        for f in fields(counts):
            if f.name != "records":
                self._written[f.name] += getattr(counts, f.name)

    def snapshot(self, sampled_at: datetime | None = None) -> list[MetricRow]:
        """The sink's own metrics as rows (call on the event loop: it reads live state)."""
        at = sampled_at or datetime.now(UTC)
        rows = []
        for source, seen in sorted(self._sources.items()):
            rows.append(MetricRow(at, "sink", "last_observed_at", source, seen.last_observed_at))
            rows.append(MetricRow(at, "sink", "last_received_at", source, seen.last_received_at))
        for table, n in sorted(self._written.items()):
            rows.append(MetricRow(at, "sink", "records_written", table, float(n)))
        return rows

    def broker_rows(self, sampled_at: datetime) -> list[MetricRow]:
        """End offsets per topic role and lag per group role, read from the broker now.

        Raises ``kafka.errors.KafkaError`` when the broker does not answer.
        """
        if self._probe is None:
            self._probe = OffsetProbe(self._settings.kafka.bootstrap_servers)
        sample = self._probe.sample(
            list(self._topics.values()), {group: topics for group, topics in self._groups.values()}
        )
        rows = [
            MetricRow(sampled_at, "kafka", "end_offset", role, float(sample.end_offsets[name]))
            for role, name in self._topics.items()
        ]
        rows += [
            MetricRow(sampled_at, "kafka", "consumer_lag", role, float(sample.lag[group]))
            for role, (group, _) in self._groups.items()
        ]
        return rows

    def write(self, rows: list[MetricRow]) -> int:
        """Insert ``rows`` (idempotent on (metric, subject, sampled_at)); returns rows
        inserted. Raises psycopg errors."""
        pg = self._settings.postgres
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(pg.conninfo(), autocommit=True, application_name="slotstream-sink health")
        query = sql.SQL(
            "INSERT INTO {}.pipeline_metrics (sampled_at, component, metric, subject, value) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
        ).format(sql.Identifier(pg.db_schema))
        with self._conn.cursor() as cur:
            cur.executemany(query, [(r.sampled_at, r.component, r.metric, r.subject, r.value) for r in rows])
            return cur.rowcount

    def _sample_and_write(self, own: list[MetricRow]) -> int:
        return self.write(own + self.broker_rows(own[0].sampled_at if own else datetime.now(UTC)))

    async def sample_once(self) -> int:
        """Take and write one sample; returns rows written. Raises what :meth:`write` and
        :meth:`broker_rows` raise."""
        own = self.snapshot()
        return await asyncio.to_thread(self._sample_and_write, own)

    async def run(self, stop: asyncio.Event) -> None:
        """Sample every ``health_interval_s`` seconds until ``stop`` is set, and once more
        then (so a short run leaves its final state). Failures are logged, not raised."""
        interval = self._settings.sink.health_interval_s
        while True:
            stopping = False
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
                stopping = True
            except TimeoutError:
                pass
            try:
                await self.sample_once()
            except Exception as exc:  # noqa: BLE001 - health is best effort; the data path goes on
                log.warning("pipeline health sample failed: %s", exc)
            if stopping:
                return

    def close(self) -> None:
        if self._probe is not None:
            self._probe.close()
            self._probe = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
