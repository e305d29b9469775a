"""The real PostgreSQL + TimescaleDB (Apache-2 build here): hypertables, time_bucket,
and a read-only role that cannot write."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import errors

from slotstream import versions

pytestmark = pytest.mark.integration


def test_extension_version_and_license(db: psycopg.Connection) -> None:
    version = db.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    assert version == (versions.TIMESCALEDB_VERSION,)
    license_ = db.execute("SHOW timescaledb.license").fetchone()
    assert license_ is not None and license_[0] in {"apache", "timescale"}


def test_local_build_is_the_apache_edition(db: psycopg.Connection) -> None:
    """The Docker-less stack builds TimescaleDB with APACHE_ONLY (DEVELOPERS.md)."""
    assert db.execute("SHOW timescaledb.license").fetchone() == ("apache",)


def test_hypertable_insert_and_time_bucket(db: psycopg.Connection) -> None:
    table = f"test_ht_{uuid.uuid4().hex[:8]}"
    db.execute(f"CREATE TABLE {table} (time timestamptz NOT NULL, key text NOT NULL, free int NOT NULL)")
    try:
        db.execute(f"SELECT create_hypertable('{table}', by_range('time', INTERVAL '1 day'))")
        start = datetime(2017, 8, 1, tzinfo=UTC)
        rows = [(start + timedelta(hours=h), "hotel|2017-08-15", 100 - h) for h in range(72)]
        with db.cursor() as cur:
            cur.executemany(f"INSERT INTO {table} VALUES (%s, %s, %s)", rows)
        buckets = db.execute(
            f"SELECT time_bucket('1 day', time) AS day, min(free), count(*) FROM {table} GROUP BY day ORDER BY day"
        ).fetchall()
        assert [(b[1], b[2]) for b in buckets] == [(77, 24), (53, 24), (29, 24)]
        chunks = db.execute(
            "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = %s", (table,)
        ).fetchone()
        assert chunks == (3,)
        dropped = db.execute(
            f"SELECT count(*) FROM drop_chunks('{table}', older_than => %s::timestamptz)",
            (start + timedelta(days=2),),
        ).fetchone()
        assert dropped == (2,)
    finally:
        db.execute(f"DROP TABLE {table}")


def test_reader_can_read_but_never_write(db: psycopg.Connection, reader_db: psycopg.Connection) -> None:
    # Qualified: the owner's search_path starts with its own schema ("$user" = slotstream).
    table = f"public.test_ro_{uuid.uuid4().hex[:8]}"
    db.execute(f"CREATE TABLE {table} (id int)")
    try:
        db.execute(f"INSERT INTO {table} VALUES (1)")
        assert reader_db.execute(f"SELECT id FROM {table}").fetchall() == [(1,)]
        with pytest.raises((errors.InsufficientPrivilege, errors.ReadOnlySqlTransaction)):
            reader_db.execute(f"INSERT INTO {table} VALUES (2)")
        with pytest.raises((errors.InsufficientPrivilege, errors.ReadOnlySqlTransaction)):
            reader_db.execute(f"DELETE FROM {table}")
        with pytest.raises((errors.InsufficientPrivilege, errors.ReadOnlySqlTransaction)):
            reader_db.execute(f"CREATE TABLE {table}_x (id int)")
        # Even an explicit read-write transaction is refused the write.
        reader_db.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")
        with pytest.raises(errors.InsufficientPrivilege):
            reader_db.execute(f"INSERT INTO {table} VALUES (3)")
    finally:
        db.execute(f"DROP TABLE {table}")
