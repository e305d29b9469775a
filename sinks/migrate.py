"""Versioned SQL migrations of slotstream's TimescaleDB schema.

Migrations are the files ``sinks/migrations/NNN_name.sql``, applied in version order,
each at most once per schema; ``<schema>.schema_migrations(version, name, applied_at)``
records them. The SQL stays in the ``.sql`` files; the only templating is the
placeholders ``:"schema"`` and ``:"reader"`` (psql's variable syntax), which are replaced
by :class:`psycopg.sql.Identifier`-quoted names, never by raw text.

Concurrency: every step runs under a transaction-scoped advisory lock keyed by the
schema name, so sinks starting together apply each migration once; a migration and its
``schema_migrations`` row commit together, so a crash never leaves a half-applied one.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from sinks.errors import MigrationError
from slotstream.settings import PostgresSettings

__all__ = ["MIGRATIONS_DIR", "Migration", "load_migrations", "migrate", "render"]

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

_FILE_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
# psql-style :"name", but not a cast such as x::"char".
_PLACEHOLDER = re.compile(r'(?<!:):"([A-Za-z_][A-Za-z0-9_]*)"')


@dataclass(frozen=True)
class Migration:
    """One migration file: ``version`` (the NNN prefix), ``name`` (the file name) and its SQL text."""

    version: int
    name: str
    text: str


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every ``NNN_name.sql`` file of ``directory``, by version.

    Raises :class:`MigrationError` for a ``.sql`` file with another name shape, or two
    files with the same version.
    """
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path}: migration files are named NNN_lower_snake.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"{path}: version {version} is also {found[version].name}")
        found[version] = Migration(version, path.name, path.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def render(text: str, names: Mapping[str, str]) -> sql.Composed:
    """``text`` with each ``:"placeholder"`` replaced by the quoted identifier ``names[placeholder]``.

    Raises :class:`MigrationError` for a placeholder missing from ``names`` (a typo must
    not reach the server as a quoted name).
    """
    parts: list[sql.Composable] = []
    pos = 0
    for match in _PLACEHOLDER.finditer(text):
        name = match.group(1)
        if name not in names:
            raise MigrationError(f'unknown placeholder :"{name}" (known: {", ".join(sorted(names))})')
        parts += [sql.SQL(text[pos : match.start()]), sql.Identifier(names[name])]
        pos = match.end()
    parts.append(sql.SQL(text[pos:]))
    return sql.Composed(parts)


def _lock_key(schema: str) -> int:
    """A stable signed 64-bit advisory lock key per schema (not hashtext(): its values may
    change between PostgreSQL versions)."""
    digest = hashlib.sha256(f"slotstream.migrate:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def migrate(
    conn: psycopg.Connection[Any],
    pg: PostgresSettings,
    *,
    directory: Path = MIGRATIONS_DIR,
) -> list[str]:
    """Bring schema ``pg.db_schema`` up to date; returns the names of the migrations applied
    now (``[]`` when it already was: idempotent).

    Creates the schema and ``schema_migrations`` when missing, then applies each pending
    migration in its own transaction, under ``pg_advisory_xact_lock``, with
    ``search_path`` set to the schema and then the schema of the timescaledb extension.
    Grants to ``pg.reader_user`` are part of the migrations.

    ``conn`` must be connected as the role that owns (or may create) the schema, and must
    not be inside a transaction: each migration commits on its own. Raises
    :class:`MigrationError` when the timescaledb extension is missing, a migration file is
    malformed, or the schema records a migration under another name than this code has;
    psycopg errors of a failing migration propagate after its transaction rolled back.
    Also raises :class:`MigrationError` when ``directory`` holds no migration at all (a
    wheel built without the package's ``.sql`` data files).
    """
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise MigrationError("migrate() needs a connection outside a transaction: each migration commits")
    migrations = load_migrations(directory)
    if not migrations:
        # An install without the package's data files (pyproject package-data) would
        # otherwise "succeed" with no tables at all.
        raise MigrationError(f"no migration files in {directory}; was sinks installed with its .sql files?")
    schema = sql.Identifier(pg.db_schema)
    table = sql.SQL("{}.schema_migrations").format(schema)
    lock = sql.SQL("SELECT pg_advisory_xact_lock({})").format(sql.Literal(_lock_key(pg.db_schema)))
    names = {"schema": pg.db_schema, "reader": pg.reader_user}

    with conn.transaction():
        conn.execute(lock)
        row = conn.execute(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
            "WHERE e.extname = 'timescaledb'"
        ).fetchone()
        if row is None:
            raise MigrationError(
                f"the timescaledb extension is not installed in database {pg.database!r}; "
                "`slotstream stack up` (or the compose init script) creates it"
            )
        ext_schema = str(row[0])
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (version integer PRIMARY KEY, name text NOT NULL, "
                "applied_at timestamptz NOT NULL DEFAULT now())"
            ).format(table)
        )
        recorded = {int(v): str(n) for v, n in conn.execute(sql.SQL("SELECT version, name FROM {}").format(table))}

    known = {m.version: m.name for m in migrations}
    for version, name in sorted(recorded.items()):
        if version in known and known[version] != name:
            raise MigrationError(
                f"schema {pg.db_schema} applied migration {version} as {name}, this code calls it "
                f"{known[version]}: migrations must never be renamed or reused"
            )
        if version not in known:
            log.warning("schema %s has migration %s, unknown to this code (newer sink?)", pg.db_schema, name)

    search_path = sql.SQL("SELECT set_config('search_path', {}, true)").format(
        sql.Literal(sql.SQL("{}, {}").format(schema, sql.Identifier(ext_schema)).as_string(conn))
    )
    applied: list[str] = []
    for migration in migrations:
        if migration.version in recorded:
            continue
        body = render(migration.text, names)
        with conn.transaction():
            conn.execute(lock)
            # Another process may have applied it while we waited for the lock.
            done = conn.execute(
                sql.SQL("SELECT 1 FROM {} WHERE version = %s").format(table), (migration.version,)
            ).fetchone()
            if done is not None:
                continue
            conn.execute(search_path)
            conn.execute(body)
            conn.execute(
                sql.SQL("INSERT INTO {} (version, name) VALUES (%s, %s)").format(table),
                (migration.version, migration.name),
            )
        log.info("applied migration %s to schema %s", migration.name, pg.db_schema)
        applied.append(migration.name)
    return applied
