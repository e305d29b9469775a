"""Retention of the hypertables: drop whole chunks older than a horizon.

On the Apache-2 TimescaleDB build (the Docker-less stack) there are no retention
policies, so ``slotstream db prune`` calls ``drop_chunks`` itself (run it from cron);
on the full edition (``SHOW timescaledb.license`` = ``timescale``, the compose image)
``ensure_retention_policy`` registers the same horizon as a background policy instead.
Dropping whole chunks is how TimescaleDB deletes old data cheaply: nothing is deleted
row by row, and a chunk is dropped only when all of it is older than the horizon.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
from psycopg import sql

from slotstream.settings import PostgresSettings

__all__ = ["HYPERTABLES", "METRICS_RETENTION", "ensure_retention_policy", "prune"]

#: The sink's hypertables of pipeline data.
HYPERTABLES = ("booking_events", "availability_changes", "state_intervals")
#: Pipeline health samples (migration 004) are kept at most this long, whatever the
#: data horizon: they matter while the pipeline runs, and accrue ~130k rows a day.
METRICS_RETENTION = timedelta(days=30)


def prune(conn: psycopg.Connection[Any], pg: PostgresSettings, older_than: timedelta) -> dict[str, int]:
    """Drop every chunk whose whole time range is older than ``now() - older_than``, and
    chunks of ``pipeline_metrics`` older than :data:`METRICS_RETENTION` (or the horizon,
    if shorter).

    Returns chunks dropped per hypertable. Raises psycopg errors (e.g. no such schema).
    """
    dropped = {}
    horizons = {table: older_than for table in HYPERTABLES}
    horizons["pipeline_metrics"] = min(older_than, METRICS_RETENTION)
    for table, horizon in horizons.items():
        name = f"{pg.db_schema}.{table}"
        row = conn.execute(
            "SELECT count(*) FROM drop_chunks(%s::regclass, older_than => now() - %s::interval)",
            (name, horizon),
        ).fetchone()
        dropped[table] = int(row[0]) if row else 0
    conn.commit()
    return dropped


def ensure_retention_policy(conn: psycopg.Connection[Any], pg: PostgresSettings, older_than: timedelta) -> bool:
    """Register a retention policy on every hypertable where the edition has them.

    Returns False (and does nothing) on the Apache-2 build, where :func:`prune` is the
    way. Idempotent (``if_not_exists``).
    """
    row = conn.execute("SHOW timescaledb.license").fetchone()
    if row is None or row[0] != "timescale":
        return False
    for table in HYPERTABLES:
        conn.execute(
            sql.SQL("SELECT add_retention_policy({}, %s::interval, if_not_exists => true)").format(
                sql.Literal(f"{pg.db_schema}.{table}")
            ),
            (older_than,),
        )
    conn.commit()
    return True
