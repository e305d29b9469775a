"""Fixtures of the sink tests: a private schema (and topic prefix) per test module on the
real TimescaleDB and Kafka, dropped afterwards, and table dumps to compare states."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from kafka.admin import KafkaAdminClient
from psycopg import sql

from sinks.migrate import migrate
from slotstream.kafka_admin import ensure_topics
from slotstream.settings import Settings

TABLES = (
    "availability_changes",
    "state_intervals",
    "availability_current",
    "booking_events",
    "booking_counts",
    "dead_letters",
)
# Columns that record when the sink wrote, not what: equal only if written by the same call.
WRITE_TIME_COLUMNS = {"availability_current": ["updated_at"], "dead_letters": []}


def private_settings(settings: Settings) -> Settings:
    """``settings`` with a fresh schema, topic prefix and consumer group (Settings is frozen)."""
    tag = uuid.uuid4().hex[:10]
    return settings.model_copy(
        update={
            "postgres": settings.postgres.model_copy(update={"db_schema": f"test_{tag}"}),
            "kafka": settings.kafka.model_copy(update={"topic_prefix": f"test{tag}."}),
            "sink": settings.sink.model_copy(update={"group_id": f"test-sink-{tag}"}),
        }
    )


def drop_schema(settings: Settings) -> None:
    with psycopg.connect(settings.postgres.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(settings.postgres.db_schema)))


@pytest.fixture(scope="module")
def sink_settings(stack: Settings) -> Iterator[Settings]:
    """Settings whose schema is private to the module (migrated) and dropped afterwards."""
    s = private_settings(stack)
    with psycopg.connect(s.postgres.conninfo(), autocommit=True) as conn:
        migrate(conn, s.postgres)
    try:
        yield s
    finally:
        drop_schema(s)


@pytest.fixture(scope="module")
def pg(sink_settings: Settings) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    """An autocommit owner connection, shared by the module (hypothesis needs module scope)."""
    with psycopg.connect(sink_settings.postgres.conninfo(), autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def sink_topics(sink_settings: Settings) -> Iterator[Settings]:
    """The module's settings with its topics created (deleted afterwards)."""
    specs = sink_settings.kafka.topics.specs()
    ensure_topics(sink_settings.kafka.bootstrap_servers, specs)
    try:
        yield sink_settings
    finally:
        admin = KafkaAdminClient(bootstrap_servers=sink_settings.kafka.bootstrap_servers)
        try:
            admin.delete_topics([s.name for s in specs])
        finally:
            admin.close()


def truncate(conn: psycopg.Connection[Any], schema: str) -> None:
    conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(sql.Identifier(schema, t) for t in TABLES)))


def dump(conn: psycopg.Connection[Any], schema: str, *, write_times: bool = True) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted; without write-time columns unless ``write_times``."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    for table in TABLES:
        cols = [
            str(r[0])
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
                "ORDER BY ordinal_position",
                (schema, table),
            )
        ]
        if not write_times:
            cols = [c for c in cols if c not in WRITE_TIME_COLUMNS.get(table, [])]
        names = sql.SQL(", ").join(map(sql.Identifier, cols))
        query = sql.SQL("SELECT {} FROM {} ORDER BY {}").format(names, sql.Identifier(schema, table), names)
        out[table] = conn.execute(query).fetchall()
    return out
