"""Migrations against the real TimescaleDB (Apache-2 edition here): idempotent, safe
under concurrency, hypertables as declared, the reader role reads but never writes."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql

from sinks.errors import MigrationError
from sinks.migrate import load_migrations, migrate, render
from sinks.writer import SinkBatch, write_batch
from slotstream.settings import Settings
from tests.sinks.conftest import TABLES, drop_schema, private_settings, truncate
from tests.sinks.streamsim import simulate, walk

pytestmark = pytest.mark.integration

Conn = psycopg.Connection[tuple[Any, ...]]
ALL_MIGRATIONS = [m.name for m in load_migrations()]


def test_migrations_are_idempotent(pg: Conn, sink_settings: Settings) -> None:
    # The module fixture applied everything; again, nothing is left to do.
    assert migrate(pg, sink_settings.postgres) == []
    rows = pg.execute(
        sql.SQL("SELECT version, name FROM {}.schema_migrations ORDER BY version").format(
            sql.Identifier(sink_settings.postgres.db_schema)
        )
    ).fetchall()
    assert [name for _, name in rows] == ALL_MIGRATIONS
    assert [v for v, _ in rows] == [m.version for m in load_migrations()] == [1, 2, 3, 4]


def test_concurrent_migrations_apply_each_file_once(stack: Settings) -> None:
    s = private_settings(stack)
    results: list[list[str]] = []
    failures: list[BaseException] = []

    def run() -> None:
        try:
            with psycopg.connect(s.postgres.conninfo(), autocommit=True) as conn:
                results.append(migrate(conn, s.postgres))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert failures == []
        assert sorted(name for r in results for name in r) == ALL_MIGRATIONS
    finally:
        drop_schema(s)


def test_time_series_tables_are_hypertables(pg: Conn, sink_settings: Settings) -> None:
    rows = pg.execute(
        "SELECT hypertable_name, column_name, time_interval FROM timescaledb_information.dimensions "
        "WHERE hypertable_schema = %s ORDER BY hypertable_name",
        (sink_settings.postgres.db_schema,),
    ).fetchall()
    assert [(name, col, iv.days) for name, col, iv in rows] == [
        ("availability_changes", "observed_at", 90),
        ("booking_events", "event_time", 90),
        ("pipeline_metrics", "sampled_at", 1),
        ("state_intervals", "first_seen", 90),
    ]


def test_latest_changes_of_a_key_are_index_backed(pg: Conn, sink_settings: Settings) -> None:
    schema = sink_settings.postgres.db_schema
    truncate(pg, schema)
    changes = simulate(walk("h", "2017-07-01", [5, 4, 3, 2, 1], step=timedelta(days=60))).changes  # 3+ chunks
    write_batch(pg, SinkBatch(changes=changes), schema=schema)
    with pg.transaction():
        # Forbid the alternatives: if the plan still has no Sort, an index delivers the order.
        pg.execute("SET LOCAL enable_seqscan = off")
        pg.execute("SET LOCAL enable_sort = off")
        plan = "\n".join(
            str(r[0])
            for r in pg.execute(
                sql.SQL(
                    "EXPLAIN SELECT * FROM {}.availability_changes WHERE key = %s ORDER BY observed_at DESC LIMIT 10"
                ).format(sql.Identifier(schema)),
                ("sim|h|2017-07-01",),
            )
        )
    assert "Index Scan Backward using" in plan and "availability_changes_pkey" in plan, plan
    assert "Sort" not in plan, plan


def test_occupancy_hourly_is_a_view_here(pg: Conn, sink_settings: Settings) -> None:
    """Apache edition: a plain view; the compose (timescale) image gets a continuous aggregate."""
    schema = sink_settings.postgres.db_schema
    kind = pg.execute(
        "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = 'occupancy_hourly'",
        (schema,),
    ).fetchone()
    assert kind == ("v",)
    truncate(pg, schema)
    changes = simulate(walk("h", "2017-07-02", [5, 4, 3, 2], step=timedelta(minutes=20))).changes
    write_batch(pg, SinkBatch(changes=changes), schema=schema)
    rows = pg.execute(
        sql.SQL("SELECT bucket, key, last_free, min_free, changes FROM {}.occupancy_hourly ORDER BY bucket").format(
            sql.Identifier(schema)
        )
    ).fetchall()
    t0 = changes[0].observed_at
    assert [(b - t0, last, low, n) for b, _, last, low, n in rows] == [
        (timedelta(0), 3, 3, 3),
        (timedelta(hours=1), 2, 2, 1),
    ]


def test_reader_reads_but_never_writes(reader_db: Conn, sink_settings: Settings) -> None:
    schema = sql.Identifier(sink_settings.postgres.db_schema)
    for table in (*TABLES, "occupancy_hourly", "schema_migrations"):
        reader_db.execute(sql.SQL("SELECT * FROM {}.{} LIMIT 1").format(schema, sql.Identifier(table)))
    # The role defaults to read-only transactions; ask for read-write to test the grants.
    reader_db.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")
    for stmt in (
        "INSERT INTO {s}.booking_counts VALUES ('s', 'r', 'day', '2017-01-01', 1, 0, 1, 0)",
        "UPDATE {s}.availability_current SET free = 0",
        "DELETE FROM {s}.availability_changes",
        "TRUNCATE {s}.state_intervals",
        "CREATE TABLE {s}.intruder (id int)",
    ):
        with pytest.raises(errors.InsufficientPrivilege):
            reader_db.execute(sql.SQL(stmt).format(s=schema))


def test_render_quotes_identifiers_and_refuses_unknown_placeholders(db: Conn) -> None:
    text = 'GRANT USAGE ON SCHEMA :"schema" TO :"reader"; SELECT 1::"char", \'100 %\''
    rendered = render(text, {"schema": "a b", "reader": 'x"; DROP TABLE t; --'}).as_string(db)
    assert rendered == 'GRANT USAGE ON SCHEMA "a b" TO "x""; DROP TABLE t; --"; SELECT 1::"char", \'100 %\''
    with pytest.raises(MigrationError, match="unknown placeholder"):
        render('SELECT :"nope"', {"schema": "s"})


def test_bad_migration_file_names_are_refused(tmp_path: Path) -> None:
    (tmp_path / "1_short.sql").write_text("SELECT 1")
    with pytest.raises(MigrationError, match="NNN_lower_snake"):
        load_migrations(tmp_path)
    (tmp_path / "1_short.sql").unlink()
    (tmp_path / "001_a.sql").write_text("SELECT 1")
    (tmp_path / "001_b.sql").write_text("SELECT 1")
    with pytest.raises(MigrationError, match="version 1"):
        load_migrations(tmp_path)


def test_no_migration_files_is_an_error(sink_settings: Settings, tmp_path: Path) -> None:
    """A package installed without its .sql files must not pass for an up-to-date schema."""
    with (
        psycopg.connect(sink_settings.postgres.conninfo(), autocommit=True) as conn,
        pytest.raises(MigrationError, match="no migration files"),
    ):
        migrate(conn, sink_settings.postgres, directory=tmp_path)


def test_a_failing_migration_leaves_nothing_behind(stack: Settings, tmp_path: Path) -> None:
    s = private_settings(stack)
    (tmp_path / "001_ok.sql").write_text("CREATE TABLE ok (id int);")
    (tmp_path / "002_bad.sql").write_text("CREATE TABLE half (id int); SELECT no_such_function();")
    try:
        with psycopg.connect(s.postgres.conninfo(), autocommit=True) as conn:
            with pytest.raises(errors.UndefinedFunction):
                migrate(conn, s.postgres, directory=tmp_path)
            tables = conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1",
                (s.postgres.db_schema,),
            ).fetchall()
            assert tables == [("ok",), ("schema_migrations",)]
            (tmp_path / "002_bad.sql").write_text("CREATE TABLE half (id int);")
            assert migrate(conn, s.postgres, directory=tmp_path) == ["002_bad.sql"]
    finally:
        drop_schema(s)


def test_a_renamed_migration_is_refused(stack: Settings, tmp_path: Path) -> None:
    s = private_settings(stack)
    (tmp_path / "001_first.sql").write_text("SELECT 1;")
    try:
        with psycopg.connect(s.postgres.conninfo(), autocommit=True) as conn:
            migrate(conn, s.postgres, directory=tmp_path)
            (tmp_path / "001_first.sql").rename(tmp_path / "001_renamed.sql")
            with pytest.raises(MigrationError, match="never be renamed"):
                migrate(conn, s.postgres, directory=tmp_path)
    finally:
        drop_schema(s)


def test_refuses_a_connection_inside_a_transaction(sink_settings: Settings) -> None:
    with psycopg.connect(sink_settings.postgres.conninfo()) as conn:
        conn.execute("SELECT 1")
        with pytest.raises(MigrationError, match="outside a transaction"):
            migrate(conn, sink_settings.postgres)
