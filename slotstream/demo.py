"""``make demo``: the full pipeline on the real hotel data, ending with where to look.

Creates the topics, starts the stream worker and the sink as child processes, replays
``<data_dir>/hotel_bookings.csv.gz`` as booking events, waits until both consumer groups
have lag 0, prints a summary (events, change events, rows per table, time, throughput)
and ready-made queries. Running it again re-sends the same events: the ledger skips
what it already applied and the sink's natural keys keep every table free of
duplicates.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import psycopg
from psycopg import sql
from rich.console import Console
from rich.table import Table

from slotstream.kafka_admin import ensure_topics
from slotstream.pipeline import Pipeline
from slotstream.settings import Settings

__all__ = ["TABLES", "DemoResult", "run_demo", "table_counts"]

#: The sink's tables, in the order the summary shows them.
TABLES = (
    "booking_events",
    "availability_changes",
    "state_intervals",
    "availability_current",
    "booking_counts",
    "dead_letters",
)


@dataclass(frozen=True)
class DemoResult:
    """Figures of one demo run (counts; seconds)."""

    events: int
    dead_letters: int
    produce_s: float
    catch_up_s: float
    total_s: float
    rows: dict[str, int]
    #: Rows this run added per table (0 everywhere when the data was already there).
    added: dict[str, int]


def table_counts(settings: Settings) -> dict[str, int]:
    """Row count per sink table (exact ``count(*)``)."""
    pg = settings.postgres
    with psycopg.connect(pg.conninfo()) as conn:
        return {
            name: conn.execute(
                sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(pg.db_schema), sql.Identifier(name))
            ).fetchone()[0]  # type: ignore[index]
            for name in TABLES
        }


def _counts_before(settings: Settings) -> dict[str, int]:
    """:func:`table_counts`, or zeros when the sink has not created its tables yet."""
    try:
        return table_counts(settings)
    except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
        return dict.fromkeys(TABLES, 0)


def run_demo(settings: Settings, console: Console) -> DemoResult:
    """Run the whole pipeline once over the hotel data; see the module docstring."""
    from producers.hotel_bookings import produce_hotel_bookings

    kafka = settings.kafka
    ensure_topics(kafka.bootstrap_servers, kafka.topics.specs())
    before = _counts_before(settings)
    pipeline = Pipeline(settings)
    started = time.monotonic()
    try:
        pipeline.start("sink")
        pipeline.start("stream")
        console.print(f"stream worker and sink started; logs in {pipeline.log_dir}")
        summary = asyncio.run(produce_hotel_bookings(settings, None, speed=None, progress=True))
        console.print(summary.render())
        produced = time.monotonic()
        with console.status("waiting for the stream worker and the sink to catch up") as status:
            waited = pipeline.wait_caught_up(
                on_poll=lambda lags: status.update(
                    f"waiting for lag 0: stream {lags['stream']:,} · sink {lags['sink']:,} messages"
                )
            )
        del waited
        done = time.monotonic()
    finally:
        pipeline.stop()
    rows = table_counts(settings)
    result = DemoResult(
        events=summary.events,
        dead_letters=summary.dead_letters,
        produce_s=produced - started,
        catch_up_s=done - produced,
        total_s=done - started,
        rows=rows,
        added={name: rows[name] - before.get(name, 0) for name in rows},
    )
    _print_summary(settings, result, console)
    return result


def _print_summary(settings: Settings, r: DemoResult, console: Console) -> None:
    table = Table(title="slotstream demo: hotel booking demand replay")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("booking events produced", f"{r.events:,}")
    table.add_row("dead letters (producer)", f"{r.dead_letters:,}")
    for name, count in r.rows.items():
        table.add_row(f"rows in {settings.postgres.db_schema}.{name}", f"{count:,} (+{r.added[name]:,})")
    table.add_row("elapsed (start → lag 0)", f"{r.total_s:.1f} s")
    table.add_row("booking events / s", f"{r.events / r.total_s:,.0f}")
    table.add_row("change rows added / s", f"{r.added['availability_changes'] / r.total_s:,.0f}")
    console.print(table)
    if r.events and not any(r.added.values()):
        console.print("Every row was already in the database: replaying the same data adds nothing.")
    pg = settings.postgres
    schema = pg.db_schema
    console.print(
        "\n[bold]Where to look[/] (read-only role):\n"
        f"  psql 'host={pg.host} port={pg.port} dbname={pg.database} user={pg.reader_user}'"
        f"  (password: SLOTSTREAM_POSTGRES__READER_PASSWORD, default {pg.reader_user})\n\n"
        "  -- bookings created / cancelled / net per hotel and month (seed 002)\n"
        f"  SELECT resource_id, bucket, created, cancelled, net FROM {schema}.booking_counts\n"
        "   WHERE period = 'month' ORDER BY resource_id, bucket;\n\n"
        "  -- how one night filled up: rooms free by lead time (change events)\n"
        f"  SELECT observed_at::date, attributes->>'lead_time_days' AS lead_time_days, free, occupancy_status\n"
        f"    FROM {schema}.availability_changes\n"
        "   WHERE resource_id = 'City Hotel' AND slot = '2016-08-15' ORDER BY observed_at, seq;\n\n"
        "  -- state intervals of that night (first seen / last seen, seed 001)\n"
        f"  SELECT free, first_seen, last_seen, ended_at FROM {schema}.state_intervals\n"
        "   WHERE resource_id = 'City Hotel' AND slot = '2016-08-15' ORDER BY first_seen, first_seq;\n\n"
        "  -- the fullest nights now (current state, seed 001's HutAvailability)\n"
        f"  SELECT resource_id, slot, free, occupancy_percent FROM {schema}.availability_current\n"
        "   ORDER BY occupancy_percent DESC NULLS LAST LIMIT 10;\n\n"
        f"Logs: {settings.stack.log_dir}."
    )
    _print_grafana(settings, console)


#: The replay's event times (epoch ms, as Grafana URLs take them), so the links open on
#: the data rather than on "now": 2015-01-01 .. 2017-09-30 UTC.
DATA_FROM_MS, DATA_TO_MS = 1420070400000, 1506729600000
_DATA_RANGE = f"?from={DATA_FROM_MS}&to={DATA_TO_MS}"
#: uid, title and query string of the provisioned dashboards (dashboards/json).
DASHBOARD_LINKS = (
    ("slotstream-bookings", "Bookings (seed 002)", _DATA_RANGE),
    ("slotstream-availability", "Availability explorer", _DATA_RANGE),
    ("slotstream-booking-pace", "Booking pace", _DATA_RANGE),
    ("slotstream-pipeline", "Pipeline health", ""),  # wall-clock samples: its own last hour
)


def _print_grafana(settings: Settings, console: Console) -> None:
    """Where the dashboards are: the local Grafana when built, else the compose one."""
    from slotstream.stack.grafana import GrafanaBuild, grafana_answers

    g = settings.grafana
    build = GrafanaBuild(settings.stack)
    local = build.built and grafana_answers(g.url)
    if local:
        login = f"user {g.admin_user}, password: the value of SLOTSTREAM_GRAFANA__ADMIN_PASSWORD"
    else:
        login = "user $GRAFANA_ADMIN_USER (default admin), password: GRAFANA_ADMIN_PASSWORD from your .env"
        console.print(
            f"\n[yellow]No local Grafana:[/] {build.describe()}\n"
            'The same dashboards run in the compose stack (`docker compose up -d`, README "With Docker").'
        )
    console.print(f"\n[bold]Grafana[/] {g.url} ({login}):")
    for uid, title, query in DASHBOARD_LINKS:
        console.print(f"  {title}: {g.url}/d/{uid}{query}", soft_wrap=True)
    console.print(
        "Without Grafana, run every panel's query as the read-only role:\n"
        "  slotstream dashboards check --from 2015-01-01 --to 2017-09-30",
        soft_wrap=True,
    )
