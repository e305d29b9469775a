"""Running the whole pipeline in tests: namespaced settings, a replay to lag 0, cleanup."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from kafka.admin import KafkaAdminClient
from psycopg import sql

from slotstream.kafka_admin import ensure_topics, existing_topics
from slotstream.pipeline import Pipeline, namespaced
from slotstream.settings import Settings


def isolated(settings: Settings, tag: str) -> Settings:
    """``settings`` with its own topics, consumer groups and database schema."""
    return namespaced(settings, f"test_{tag}{uuid.uuid4().hex[:8]}")


def produce(settings: Settings, path: Path | None = None) -> int:
    from producers.hotel_bookings import produce_hotel_bookings

    summary = asyncio.run(produce_hotel_bookings(settings, path, progress=False))
    return int(summary.events)


@contextmanager
def running(settings: Settings, log_dir: Path) -> Iterator[Pipeline]:
    """Topics created, sink and stream worker(s) running; stopped on exit."""
    ensure_topics(settings.kafka.bootstrap_servers, settings.kafka.topics.specs())
    pipeline = Pipeline(settings, log_dir=log_dir)
    try:
        pipeline.start("sink")
        pipeline.start("stream")
        yield pipeline
    finally:
        pipeline.stop()


def replay(settings: Settings, log_dir: Path, path: Path | None = None) -> int:
    """Replay a hotel file through a running pipeline until lag 0; returns events produced."""
    with running(settings, log_dir) as pipeline:
        events = produce(settings, path)
        pipeline.wait_caught_up(timeout=1800)
    return events


def drop(settings: Settings) -> None:
    """Remove what a namespaced run left: its schema, its topics (ours and Faust's
    changelogs, all named after the run) and the worker's data directories."""
    pg = settings.postgres
    run = pg.db_schema
    with psycopg.connect(pg.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(run)))
    topics = [t for t in existing_topics(settings.kafka.bootstrap_servers) if t.startswith((f"{run}.", f"{run}-"))]
    if topics:
        admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
        try:
            admin.delete_topics(topics)
        finally:
            admin.close()
    shutil.rmtree(settings.stack.state_dir / "faust" / settings.stream.app_id, ignore_errors=True)
