"""Retention: drop_chunks on the Apache build drops only whole chunks past the horizon."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from sinks.migrate import migrate
from sinks.retention import ensure_retention_policy, prune
from slotstream.settings import Settings

pytestmark = pytest.mark.integration


def test_prune_drops_old_chunks_only(stack: Settings) -> None:
    pg = stack.postgres.model_copy(update={"db_schema": f"test_ret{uuid.uuid4().hex[:8]}"})
    with psycopg.connect(pg.conninfo(), autocommit=True) as conn:
        migrate(conn, pg)
    try:
        with psycopg.connect(pg.conninfo()) as conn:
            now = datetime.now(UTC)
            for age_days in (900, 600, 10):  # chunks of 90 days: 600 days old ends > 365 days ago
                t = now - timedelta(days=age_days)
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {}.booking_events (event_id, event_time, seq, kind, booking_id, source, "
                        "resource_id, arrival_date, nights, lead_time_days, rooms, schema_version) "
                        "VALUES (%s, %s, 0, 'created', 'b', 's', 'r', %s, 1, 0, 1, 1)"
                    ).format(sql.Identifier(pg.db_schema)),
                    (f"b{age_days}:created", t, t.date()),
                )
            conn.commit()
            assert ensure_retention_policy(conn, pg, timedelta(days=365)) is False  # Apache build
            dropped = prune(conn, pg, timedelta(days=365))
            assert dropped["booking_events"] == 2
            left = conn.execute(
                sql.SQL("SELECT event_id FROM {}.booking_events").format(sql.Identifier(pg.db_schema))
            ).fetchall()
            assert left == [("b10:created",)]
            assert prune(conn, pg, timedelta(days=365)) == dict.fromkeys(dropped, 0)
    finally:
        with psycopg.connect(pg.conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(pg.db_schema)))
