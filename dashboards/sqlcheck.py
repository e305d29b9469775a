"""Run every query of the dashboards against TimescaleDB as the read-only role.

This is what Grafana's frontend (template variables) and its PostgreSQL data source
(macros) do before a query reaches the database, restricted to the forms
:class:`dashboards.common.SqlTarget` allows: ``$__timeFilter(col)``, ``$__timeFrom()``,
``$__timeTo()`` and ``${name:sqlstring}``. It proves each query is valid SQL that the
reader may run on the real schema and returns what a panel expects; it does not prove
that Grafana renders it (a real Grafana server does; see README, "Grafana").
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

__all__ = [
    "PanelQuery",
    "TimeRange",
    "interpolate",
    "interpolate_variables",
    "panel_queries",
    "parse_time",
    "reader_connection",
    "resolve_variables",
    "run_query",
]

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(text: str, now: datetime) -> datetime:
    """A Grafana time-range bound (``now``, ``now-30d``, ``now+1y``, or RFC 3339) as UTC.

    Months and years count as 30 and 365 days (Grafana rounds to calendar units; the
    difference does not matter for checking queries). Raises ``ValueError`` otherwise.
    """
    m = re.fullmatch(r"now(?:([+-])(\d+)([smhdwMy]))?", text)
    if m is None:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    if m.group(1) is None:
        return now
    n, unit = int(m.group(2)), m.group(3)
    delta = timedelta(days=30 * n) if unit == "M" else timedelta(days=365 * n) if unit == "y" else None
    if delta is None:
        delta = timedelta(**{_UNITS[unit]: n})
    return now + delta if m.group(1) == "+" else now - delta


@dataclass(frozen=True)
class TimeRange:
    """A dashboard time range, UTC."""

    start: datetime
    end: datetime

    @classmethod
    def of(cls, model: Mapping[str, Any], now: datetime | None = None) -> TimeRange:
        """The dashboard's default time range (its ``time`` field)."""
        at = now or datetime.now(UTC)
        return cls(parse_time(model["time"]["from"], at), parse_time(model["time"]["to"], at))


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def interpolate_variables(raw_sql: str, variables: Mapping[str, Sequence[str]]) -> str:
    """``raw_sql`` with ``${name:sqlstring}`` replaced by the quoted values joined by
    ``,`` (what Grafana's frontend sends to ``/api/ds/query``; macros stay). Raises
    ``KeyError`` for a variable without values."""

    def variable(m: re.Match[str]) -> str:
        values = variables[m.group(1)]
        if not values:
            raise KeyError(f"variable {m.group(1)} has no value")
        return ",".join(_quote(v) for v in values)

    return re.sub(r"\$\{(\w+):sqlstring\}", variable, raw_sql)


def interpolate(raw_sql: str, time_range: TimeRange, variables: Mapping[str, Sequence[str]]) -> str:
    """``raw_sql`` with variables (:func:`interpolate_variables`) and macros replaced as
    Grafana would. Raises ``KeyError`` for a variable without values and ``ValueError``
    for an unsupported macro.
    """
    text = interpolate_variables(raw_sql, variables)
    start, end = _quote(_rfc3339(time_range.start)), _quote(_rfc3339(time_range.end))
    text = re.sub(r"\$__timeFilter\(([^()]+)\)", lambda m: f"{m.group(1).strip()} BETWEEN {start} AND {end}", text)
    text = text.replace("$__timeFrom()", start).replace("$__timeTo()", end)
    left = re.findall(r"\$__\w+", text)
    if left:
        raise ValueError(f"unsupported macros {left}")
    return text


@dataclass(frozen=True)
class PanelQuery:
    """One target of one panel: ``panel`` title, ``ref_id``, ``format``, ``raw_sql``."""

    panel: str
    ref_id: str
    format: str
    raw_sql: str


def panel_queries(model: Mapping[str, Any]) -> list[PanelQuery]:
    """Every target of every panel (rows' nested panels included)."""
    out = []
    panels = list(model.get("panels", []))
    while panels:
        panel = panels.pop(0)
        panels.extend(panel.get("panels", []))
        for target in panel.get("targets", []):
            out.append(PanelQuery(panel["title"], target["refId"], target.get("format", "table"), target["rawSql"]))
    return out


def run_query(conn: psycopg.Connection[Any], text: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run ``text``; returns column names and rows. Raises psycopg errors."""
    cur = conn.execute(text.encode())
    names = [d.name for d in cur.description or []]
    return names, cur.fetchall()


def resolve_variables(
    conn: psycopg.Connection[Any],
    model: Mapping[str, Any],
    time_range: TimeRange,
    chosen: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, list[str]]:
    """Values of the dashboard's variables, in order, as Grafana picks them on load:
    ``chosen`` where given, else a custom variable's current value, a query variable's
    first option, or every option when it includes "All". Query variables run through
    :func:`interpolate` with the variables before them. Raises psycopg errors."""
    chosen = chosen or {}
    values: dict[str, list[str]] = {}
    for var in model.get("templating", {}).get("list", []):
        name = var["name"]
        if var["type"] == "custom":
            options = [o.strip() for o in var["query"].split(",")]
            current = var.get("current", {}).get("value")
            default = [current] if isinstance(current, str) else list(current or options[:1])
        elif var["type"] == "query":
            _, rows = run_query(conn, interpolate(var["query"], time_range, values))
            options = [str(r[0]) for r in rows]
            default = options if var.get("includeAll") else options[:1]
        else:
            raise ValueError(f"variable {name}: type {var['type']} is not supported here")
        values[name] = list(chosen.get(name, default))
    return values


def reader_connection(conninfo: str, schema: str | None = None) -> psycopg.Connection[Any]:
    """A read-only connection; ``schema`` replaces the role's search_path (tests use their
    own schema), keeping ``public`` for the timescaledb functions."""
    conn = psycopg.connect(conninfo, autocommit=True)
    if schema is not None:
        conn.execute(sql.SQL("SET search_path TO {}, public").format(sql.Identifier(schema)))
    return conn
