"""The single ``slotstream`` command line.

Settings are read once here (:func:`slotstream.settings.load_settings`) and passed
down; every :class:`~slotstream.errors.SlotstreamError` is printed as a one-paragraph
error with exit code 1.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.status import Status
from rich.table import Table

from slotstream.errors import SlotstreamError
from slotstream.settings import Settings, load_settings

__all__ = ["app", "main"]

console = Console(stderr=True)
app = typer.Typer(help="slotstream: track how bookable capacity changes over time.", no_args_is_help=True)
stack_app = typer.Typer(help="The local Docker-less stack (Kafka, PostgreSQL/TimescaleDB).", no_args_is_help=True)
topics_app = typer.Typer(help="Kafka topics declared in slotstream.topics.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
schema_app = typer.Typer(help="JSON Schemas of the wire contract.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
app.add_typer(schema_app, name="schema")


def _settings(ctx: typer.Context) -> Settings:
    settings = ctx.obj
    assert isinstance(settings, Settings)
    return settings


@app.callback()
def _root(ctx: typer.Context) -> None:
    ctx.obj = load_settings()


@stack_app.command("up")
def stack_up(ctx: typer.Context) -> None:
    """Install (cached), start and wait for every service; a no-op when running."""
    from slotstream.stack import services

    settings = _settings(ctx)
    for service in services(settings):
        with console.status(f"[bold]{service.name}[/]: checking") as status:
            service.start(_reporter(status, service.name))
        console.print(f"[green]✓[/] {service.name} up")
    _print_status(settings)


@stack_app.command("build-grafana")
def stack_build_grafana(ctx: typer.Context) -> None:
    """Build the Grafana server from its Go module into the cache (see slotstream.stack.grafana)."""
    from slotstream.stack.grafana import build_grafana

    with console.status("[bold]grafana[/]: building") as status:
        binary = build_grafana(_settings(ctx).stack, _reporter(status, "grafana"))
    console.print(f"[green]✓[/] grafana built: {binary}")


@stack_app.command("down")
def stack_down(ctx: typer.Context) -> None:
    """Stop every service (reverse order); leaves no process behind."""
    from slotstream.stack import services

    for service in reversed(services(_settings(ctx))):
        with console.status(f"stopping {service.name}"):
            service.stop()
        console.print(f"[green]✓[/] {service.name} stopped")


@stack_app.command("status")
def stack_status(ctx: typer.Context) -> None:
    """Pid, address, version and health of each service; exit 1 if any is unhealthy."""
    if not _print_status(_settings(ctx)):
        raise typer.Exit(1)


@stack_app.command("logs")
def stack_logs(
    ctx: typer.Context,
    service: Annotated[str | None, typer.Argument(help="kafka or timescaledb; all if omitted")] = None,
    lines: Annotated[int, typer.Option("--lines", "-n", help="lines per log")] = 40,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new lines")] = False,
) -> None:
    """Print (or follow) the services' log files."""
    from slotstream.stack import services

    chosen = [s for s in services(_settings(ctx)) if service in (None, s.name)]
    if not chosen:
        raise SlotstreamError(f"no service named {service!r}")
    paths = [str(s.log_path) for s in chosen]
    cmd = ["tail", "-n", str(lines), *(["-F"] if follow else []), *paths]
    subprocess.run(cmd, check=False)


def _reporter(status: Status, name: str) -> Callable[[str], None]:
    """Progress of a long step: the spinner's text, plus a timestamped log line."""

    def report(line: str) -> None:
        status.update(f"[bold]{name}[/]: {line}")
        console.log(f"{name}: {line}")

    return report


def _print_status(settings: Settings) -> bool:
    from slotstream.stack import services

    out = Console(soft_wrap=True)
    all_healthy = True
    for service in services(settings):
        st = service.status()
        all_healthy &= st.healthy
        state = "[green]healthy[/]" if st.healthy else ("[yellow]unhealthy[/]" if st.running else "[red]stopped[/]")
        out.print(f"[bold]{st.name:<12}[/] {state}  pid {st.pid or '-'}  {st.address}  {st.version}")
        out.print(f"{'':<13}log {st.log}")
        if st.detail:
            out.print(f"{'':<13}[yellow]{st.detail}[/]")
    from slotstream.stack.grafana import GrafanaBuild

    build = GrafanaBuild(settings.stack)
    if not build.built:  # then not a service of the stack (README, "Grafana")
        out.print(f"[bold]{'grafana':<12}[/] [yellow]absent[/]   {build.describe()}")
    return all_healthy


@topics_app.command("create")
def topics_create(ctx: typer.Context) -> None:
    """Create every declared topic that is missing (idempotent)."""
    from slotstream.kafka_admin import ensure_topics

    kafka = _settings(ctx).kafka
    created = ensure_topics(kafka.bootstrap_servers, kafka.topics.specs())
    console.print(f"[green]✓[/] topics ready ({len(created)} created: {', '.join(created) or 'none'})")


@topics_app.command("list")
def topics_list(ctx: typer.Context) -> None:
    """The declared topics and whether the broker has them."""
    from slotstream.kafka_admin import existing_topics

    kafka = _settings(ctx).kafka
    have = existing_topics(kafka.bootstrap_servers)
    table = Table(title="slotstream topics")
    for column in ("topic", "partitions", "cleanup", "exists", "description"):
        table.add_column(column)
    for spec in kafka.topics.specs():
        exists = have.get(spec.name)
        table.add_row(
            spec.name,
            str(spec.partitions),
            spec.cleanup_policy,
            "yes" if exists is not None else "[red]no[/]",
            spec.description,
        )
    Console().print(table)


produce_app = typer.Typer(help="Producers: replay real exports into Kafka.", no_args_is_help=True)
app.add_typer(produce_app, name="produce")


@produce_app.command("hotel-bookings")
def produce_hotel_bookings(
    ctx: typer.Context,
    path: Annotated[Path | None, typer.Argument(help="gzip CSV; default <data_dir>/hotel_bookings.csv.gz")] = None,
    speed: Annotated[float | None, typer.Option("--speed", help="replay N times faster than event time")] = None,
    max_: Annotated[bool, typer.Option("--max", help="as fast as possible (the default)")] = False,
) -> None:
    """Replay the hotel booking demand dataset as booking events (created / cancelled)."""
    import asyncio

    from producers.hotel_bookings import produce_hotel_bookings as produce

    if speed is not None and max_:
        raise typer.BadParameter("--speed and --max exclude each other")
    summary = asyncio.run(produce(_settings(ctx), path, speed=speed, progress=True))
    Console().print(summary.render())


@app.command("demo")
def demo(ctx: typer.Context) -> None:
    """Main job: replay the hotel data through Kafka → Faust → TimescaleDB and summarise."""
    from slotstream.demo import run_demo

    run_demo(_settings(ctx), Console())


@app.command("stream")
def stream(ctx: typer.Context) -> None:
    """Run the Faust stream worker (booking ledger, change detection) until stopped."""
    from streams.app import main as run_stream

    run_stream(_settings(ctx))


@app.command("sink")
def sink(ctx: typer.Context) -> None:
    """Run the TimescaleDB sink (change events, intervals, current state) until stopped."""
    from sinks.runner import main as run_sink

    run_sink(_settings(ctx))


db_app = typer.Typer(help="The TimescaleDB schema of the sink.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("migrate")
def db_migrate(ctx: typer.Context) -> None:
    """Apply pending migrations (the sink also does this at start)."""
    import psycopg

    from sinks.migrate import migrate

    pg = _settings(ctx).postgres
    with psycopg.connect(pg.conninfo(), autocommit=True) as conn:
        applied = migrate(conn, pg)
    console.print(
        f"[green]✓[/] schema {pg.db_schema} up to date ({len(applied)} applied: {', '.join(applied) or 'none'})"
    )


@db_app.command("prune")
def db_prune(
    ctx: typer.Context,
    older_than_days: Annotated[int, typer.Option("--older-than-days", min=1, help="keep this many days")] = 365,
) -> None:
    """Drop hypertable chunks older than the horizon (``drop_chunks``; for cron on the
    Apache build, where retention policies do not exist)."""
    from datetime import timedelta

    import psycopg

    from sinks.retention import prune

    pg = _settings(ctx).postgres
    with psycopg.connect(pg.conninfo()) as conn:
        dropped = prune(conn, pg, timedelta(days=older_than_days))
    console.print(f"[green]✓[/] chunks dropped: {dropped}")


dashboards_app = typer.Typer(help="Grafana dashboards generated from Python (dashboards/).", no_args_is_help=True)
app.add_typer(dashboards_app, name="dashboards")


@dashboards_app.command("generate")
def dashboards_generate(
    check: Annotated[bool, typer.Option("--check", help="only report stale files; exit 1 if any")] = False,
) -> None:
    """Write dashboards/json/*.json from dashboards/definitions.py (needs the dev extras)."""
    import dashboards

    if check:
        bad = dashboards.stale()
        if bad:
            console.print(f"[red]stale:[/] {', '.join(bad)}; run `slotstream dashboards generate`")
            raise typer.Exit(1)
        console.print("[green]✓[/] dashboards/json is current")
        return
    for path in dashboards.write():
        console.print(f"wrote {path}")


@dashboards_app.command("check")
def dashboards_check(
    ctx: typer.Context,
    time_from: Annotated[str | None, typer.Option("--from", help="e.g. 2015-07-01 or now-30d")] = None,
    time_to: Annotated[str | None, typer.Option("--to", help="e.g. 2017-09-01 or now")] = None,
) -> None:
    """Run every query of the committed dashboards (variables resolved as on load) as the
    read-only role; prints rows per panel, exit 1 on any SQL error. Default: each
    dashboard's own time range."""
    from datetime import UTC, datetime

    import psycopg

    import dashboards
    from dashboards.sqlcheck import (
        TimeRange,
        interpolate,
        panel_queries,
        parse_time,
        reader_connection,
        resolve_variables,
        run_query,
    )

    pg = _settings(ctx).postgres
    now = datetime.now(UTC)
    failed = 0
    table = Table(title=f"dashboard queries as {pg.reader_user}")
    for column in ("dashboard", "panel", "rows", "error"):
        table.add_column(column)
    with reader_connection(pg.conninfo(reader=True), pg.db_schema) as conn:
        for name, model in dashboards.load().items():
            default = TimeRange.of(model, now)
            tr = TimeRange(
                parse_time(time_from, now) if time_from else default.start,
                parse_time(time_to, now) if time_to else default.end,
            )
            variables = resolve_variables(conn, model, tr)
            for q in panel_queries(model):
                try:
                    _, rows = run_query(conn, interpolate(q.raw_sql, tr, variables))
                    table.add_row(name, q.panel, str(len(rows)), "")
                except psycopg.Error as exc:
                    failed += 1
                    table.add_row(name, q.panel, "-", f"[red]{str(exc).splitlines()[0]}[/]")
    Console().print(table)
    if failed:
        raise typer.Exit(1)


@schema_app.command("export")
def schema_export(
    directory: Annotated[Path | None, typer.Argument(help="default: slotstream/schemas")] = None,
) -> None:
    """Write one JSON Schema per record type (for non-Python consumers)."""
    from slotstream.schemas import SCHEMA_DIR, export

    for path in export(directory or SCHEMA_DIR):
        console.print(f"wrote {path}")


def main() -> None:
    """Entry point of the ``slotstream`` script."""
    try:
        app()
    except SlotstreamError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise SystemExit(1) from None
