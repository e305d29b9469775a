"""slotstream's four dashboards, as grafana-foundation-sdk builders.

- **Availability explorer** (seed 001's map / detail / trend views): free places of the
  chosen slots over time as a step line, a state timeline coloured by occupancy status,
  the current state of every slot of the resource.
- **Booking pace** (seed 000: when do people book?): places held against days before
  the slot for several slots overlaid; pickup by weekday of booking and by lead time.
- **Bookings** (seed 002's daily/monthly dashboard): created / cancelled / net bookings
  per day and per month per resource (hotel).
- **Pipeline health**: messages/s per topic, consumer-group lag, per-source observation
  age, rows the sink wrote, dead letters (table ``pipeline_metrics``, sinks/health.py).

Times are UTC. "Held" is ``capacity - free``; "pickup" is the places a change took
(``previous free - free``; on a slot's first sight the previous free is its capacity).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from grafana_foundation_sdk.builders import barchart, stat, statetimeline, table, timeseries, trend
from grafana_foundation_sdk.builders import dashboard as gdash
from grafana_foundation_sdk.builders.common import VizLegendOptions
from grafana_foundation_sdk.models import common as gcommon
from grafana_foundation_sdk.models import dashboard as gmodel

from dashboards.common import (
    SqlTarget,
    occupancy_level_sql,
    occupancy_mappings,
    query_variable,
    status_text_mappings,
)

__all__ = ["DASHBOARDS", "availability_explorer", "booking_pace", "bookings", "pipeline_health"]

TAGS: Final = ["slotstream"]
# The slot filter shared by the availability panels.
SLOT_FILTER: Final = (
    "source = ${source:sqlstring} AND resource_id = ${resource:sqlstring} AND slot IN (${slot:sqlstring})"
)
RESOURCE_FILTER: Final = "source = ${source:sqlstring} AND resource_id = ${resource:sqlstring}"


def _dashboard(uid: str, title: str, description: str, time_from: str, time_to: str) -> gdash.Dashboard:
    return (
        gdash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .timezone("utc")
        .time(time_from, time_to)
        .readonly()
    )


def _legend() -> VizLegendOptions:
    return (
        VizLegendOptions()
        .show_legend(True)
        .display_mode(gcommon.LegendDisplayMode.LIST)
        .placement(gcommon.LegendPlacement.BOTTOM)
    )


def _source_variable(table_name: str) -> gdash.QueryVariable:
    return query_variable("source", "Source", f"SELECT DISTINCT source FROM {table_name} ORDER BY 1")


def _resource_variable(table_name: str, *, multi: bool = False) -> gdash.QueryVariable:
    return query_variable(
        "resource",
        "Resource",
        f"SELECT DISTINCT resource_id FROM {table_name} WHERE source = ${{source:sqlstring}} ORDER BY 1",
        multi=multi,
        include_all=multi,
    )


def _slot_variable() -> gdash.QueryVariable:
    return query_variable(
        "slot",
        "Slot",
        f"SELECT slot FROM availability_current WHERE {RESOURCE_FILTER} ORDER BY slot_start, slot",
        multi=True,
    )


# A value per slot and time: the last change of each (slot, observed_at) inside the time
# range, plus each slot's state when the range starts (its last change before it), so a
# step line starts at the left edge. One row per (slot, time): date-only sources have
# many changes at one timestamp, and Grafana's long-to-wide conversion wants one.
def _per_slot_series(value_sql: str) -> str:
    return f"""
        SELECT time, metric, value FROM (
            SELECT DISTINCT ON (slot) $__timeFrom()::timestamptz AS time, slot AS metric, {value_sql} AS value
            FROM availability_changes
            WHERE {SLOT_FILTER} AND observed_at < $__timeFrom()::timestamptz
            ORDER BY slot, observed_at DESC, seq DESC
        ) AS at_start
        UNION ALL
        SELECT time, metric, value FROM (
            SELECT DISTINCT ON (slot, observed_at) observed_at AS time, slot AS metric, {value_sql} AS value
            FROM availability_changes
            WHERE {SLOT_FILTER} AND $__timeFilter(observed_at)
            ORDER BY slot, observed_at, seq DESC
        ) AS in_range
        ORDER BY time, metric
    """


def availability_explorer() -> gdash.Dashboard:
    free = (
        timeseries.Panel()
        .title("Free places over time")
        .description("Free places of each chosen slot after every change (step line; UTC).")
        .with_target(SqlTarget(_per_slot_series("free")))
        .line_interpolation(gcommon.LineInterpolation.STEP_AFTER)
        .span(24)
        .height(9)
        .unit("none")
        .decimals(0)
        .min(0)
        .legend(_legend())
    )
    states = (
        statetimeline.Panel()
        .title("Occupancy status")
        .description(
            "Occupancy status of each chosen slot over time (seed 001: empty, low <= 25 %, medium <= 75 %, "
            "high, full; unknown without a capacity)."
        )
        .with_target(SqlTarget(_per_slot_series(occupancy_level_sql())))
        .mappings(occupancy_mappings())
        .color_scheme(gdash.FieldColor().mode(gmodel.FieldColorModeId.FIXED).fixed_color("text"))
        .show_value(gcommon.VisibilityMode.NEVER)
        .span(24)
        .height(8)
    )
    current = (
        table.Panel()
        .title("Current state")
        .description("Latest state of every slot of the resource starting in the time range (seed 001's table).")
        .with_target(
            SqlTarget(
                f"""
                SELECT slot, slot_start, capacity, free, status, occupancy_percent, occupancy_status,
                       first_seen, last_seen, observations
                FROM availability_current
                WHERE {RESOURCE_FILTER} AND slot_start BETWEEN $__timeFrom()::timestamptz AND $__timeTo()::timestamptz
                ORDER BY slot_start, slot
                """,
                fmt="table",
            )
        )
        .override_by_name(
            "occupancy_status",
            [
                gmodel.DynamicConfigValue(id_val="mappings", value=status_text_mappings()),
                gmodel.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background"}),
            ],
        )
        .override_by_name("occupancy_percent", [gmodel.DynamicConfigValue(id_val="unit", value="percent")])
        .span(24)
        .height(10)
    )
    return (
        _dashboard(
            "slotstream-availability",
            "Availability explorer",
            "How the free places of slots changed: pick a source, a resource and slots.",
            "now-30d",
            "now+30d",
        )
        .with_variable(_source_variable("availability_current"))
        .with_variable(_resource_variable("availability_current"))
        .with_variable(_slot_variable())
        .with_panel(free)
        .with_panel(states)
        .with_panel(current)
    )


#: Lead-time buckets of the pickup panel: (label, from day inclusive, to day exclusive).
LEAD_TIME_BUCKETS: Final = (
    ("0-1 d", 0, 2),
    ("2-7 d", 2, 8),
    ("8-30 d", 8, 31),
    ("31-90 d", 31, 91),
    ("91-180 d", 91, 181),
    ("181-365 d", 181, 366),
    (">365 d", 366, 100_000),
)
# Places taken by a change: previous free minus free; on first sight from the capacity.
PICKUP_SQL: Final = "coalesce(prev_free, capacity) - free"


def booking_pace() -> gdash.Dashboard:
    held = (
        trend.Panel()
        .title("Places held by days before the slot")
        .description(
            "capacity - free of each chosen slot against days before the slot starts (x: negative days, "
            "0 = the slot's start), slots overlaid; only the last max lead time days."
        )
        .with_target(
            SqlTarget(
                f"""
                SELECT slot, -round((extract(epoch FROM slot_start - observed_at) / 86400.0)::numeric, 2)::float8
                           AS days_before, capacity - free AS held
                FROM (
                    SELECT DISTINCT ON (slot, observed_at) slot, slot_start, observed_at, capacity, free
                    FROM availability_changes
                    WHERE {SLOT_FILTER}
                      AND observed_at >= slot_start - make_interval(days => ${{max_lead:sqlstring}}::int)
                    ORDER BY slot, observed_at, seq DESC
                ) AS last_per_time
                ORDER BY slot, days_before
                """,
                fmt="table",
            )
        )
        .with_transformation(
            gmodel.DataTransformerConfig(
                id_val="partitionByValues",
                options={"fields": ["slot"], "keepFields": False, "naming": {"asLabels": True}},
            )
        )
        .x_field("days_before")
        .line_interpolation(gcommon.LineInterpolation.STEP_AFTER)
        .unit("none")
        .decimals(0)
        .min(0)
        .span(24)
        .height(10)
        .legend(_legend())
    )
    by_weekday = (
        barchart.Panel()
        .title("Pickup by weekday of booking")
        .description("Places taken (booked) and given back (released) per weekday of the change, in the time range.")
        .with_target(
            SqlTarget(
                f"""
                SELECT to_char(observed_at AT TIME ZONE 'UTC', 'ID Dy') AS weekday,
                       sum(greatest({PICKUP_SQL}, 0)) AS booked,
                       sum(greatest(-({PICKUP_SQL}), 0)) AS released
                FROM availability_changes
                WHERE {RESOURCE_FILTER} AND $__timeFilter(observed_at)
                GROUP BY 1
                ORDER BY 1
                """,
                fmt="table",
            )
        )
        .x_field("weekday")
        .span(12)
        .height(9)
        .legend(_legend())
    )
    buckets = ", ".join(f"({i}, '{label}', {lo}, {hi})" for i, (label, lo, hi) in enumerate(LEAD_TIME_BUCKETS))
    by_lead = (
        barchart.Panel()
        .title("Pickup by lead time")
        .description("Places booked and released by days between the change and the slot's start, in the time range.")
        .with_target(
            SqlTarget(
                f"""
                WITH pickup AS (
                    SELECT extract(epoch FROM slot_start - observed_at) / 86400.0 AS days, {PICKUP_SQL} AS places
                    FROM availability_changes
                    WHERE {RESOURCE_FILTER} AND $__timeFilter(observed_at)
                )
                SELECT b.label AS lead_time,
                       coalesce(sum(greatest(p.places, 0)), 0) AS booked,
                       coalesce(sum(greatest(-p.places, 0)), 0) AS released
                FROM (VALUES {buckets}) AS b(ord, label, lo, hi)
                LEFT JOIN pickup AS p ON p.days >= b.lo AND p.days < b.hi
                GROUP BY b.ord, b.label
                ORDER BY b.ord
                """,
                fmt="table",
            )
        )
        .x_field("lead_time")
        .span(12)
        .height(9)
        .legend(_legend())
    )
    max_lead = (
        gdash.CustomVariable("max_lead")
        .label("Max lead time (days)")
        .values("30,90,180,365,730")
        .current(gmodel.VariableOption(selected=True, text="365", value="365"))
    )
    return (
        _dashboard(
            "slotstream-booking-pace",
            "Booking pace",
            "When do people book? How slots fill as their start approaches, and when bookings arrive.",
            "now-1y",
            "now",
        )
        .with_variable(_source_variable("availability_current"))
        .with_variable(_resource_variable("availability_current"))
        .with_variable(_slot_variable())
        .with_variable(max_lead)
        .with_panel(held)
        .with_panel(by_weekday)
        .with_panel(by_lead)
    )


def _counts_sql(period: str) -> str:
    return f"""
        SELECT bucket::timestamp AT TIME ZONE 'UTC' AS time, resource_id, created, cancelled, net
        FROM booking_counts
        WHERE period = '{period}' AND source = ${{source:sqlstring}} AND resource_id IN (${{resource:sqlstring}})
          AND bucket BETWEEN $__timeFrom()::timestamptz::date AND $__timeTo()::timestamptz::date
        ORDER BY 1, 2
    """


def _counts_panel(title: str, period: str, description: str) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .with_target(SqlTarget(_counts_sql(period)))
        .draw_style(gcommon.GraphDrawStyle.BARS)
        .fill_opacity(60)
        .unit("none")
        .decimals(0)
        .span(24)
        .height(9)
        .legend(_legend())
    )


def bookings() -> gdash.Dashboard:
    totals = (
        stat.Panel()
        .title("Bookings in the time range")
        .with_target(
            SqlTarget(
                """
                SELECT coalesce(sum(created), 0) AS created, coalesce(sum(cancelled), 0) AS cancelled,
                       coalesce(sum(net), 0) AS net
                FROM booking_counts
                WHERE period = 'day' AND source = ${source:sqlstring} AND resource_id IN (${resource:sqlstring})
                  AND bucket BETWEEN $__timeFrom()::timestamptz::date AND $__timeTo()::timestamptz::date
                """,
                fmt="table",
            )
        )
        .span(24)
        .height(4)
    )
    monthly_table = (
        table.Panel()
        .title("Monthly counts")
        .description("Bookings created, cancelled and net per month and resource (seed 002's monthly dashboard).")
        .with_target(
            SqlTarget(
                """
                SELECT bucket AS month, resource_id, created, cancelled, net
                FROM booking_counts
                WHERE period = 'month' AND source = ${source:sqlstring} AND resource_id IN (${resource:sqlstring})
                  AND bucket BETWEEN date_trunc('month', $__timeFrom()::timestamptz)::date
                                 AND $__timeTo()::timestamptz::date
                ORDER BY 1, 2
                """,
                fmt="table",
            )
        )
        .span(24)
        .height(10)
    )
    return (
        _dashboard(
            "slotstream-bookings",
            "Bookings",
            "Bookings created, cancelled and net per day and per month (seed 002).",
            "now-2y",
            "now",
        )
        .with_variable(query_variable("source", "Source", "SELECT DISTINCT source FROM booking_counts ORDER BY 1"))
        .with_variable(_resource_variable("booking_counts", multi=True))
        .with_panel(totals)
        .with_panel(
            _counts_panel(
                "Bookings per day", "day", "Created / cancelled / net bookings per day (event time, UTC) and resource."
            )
        )
        .with_panel(
            _counts_panel(
                "Bookings per month", "month", "Created / cancelled / net bookings per month (UTC) and resource."
            )
        )
        .with_panel(monthly_table)
    )


def _rate_sql(metric: str, subjects: str) -> str:
    # Per-second rate of a counter between consecutive samples; a counter that went back
    # (a restarted sink, a recreated topic) gives no negative rate.
    return f"""
        SELECT time, metric, value FROM (
            SELECT sampled_at AS time, subject AS metric,
                   greatest(value - lag(value) OVER w, 0)
                       / nullif(extract(epoch FROM sampled_at - lag(sampled_at) OVER w), 0) AS value
            FROM pipeline_metrics
            WHERE metric = '{metric}' AND subject IN ({subjects}) AND $__timeFilter(sampled_at)
            WINDOW w AS (PARTITION BY subject ORDER BY sampled_at)
        ) AS rates
        WHERE value IS NOT NULL
        ORDER BY 1, 2
    """


def pipeline_health() -> gdash.Dashboard:
    topics = (
        timeseries.Panel()
        .title("Messages per second by topic")
        .description("Rate of each topic's end offset between health samples (messages/s).")
        .with_target(
            SqlTarget(
                _rate_sql("end_offset", "'booking-events', 'observations', 'availability-changes', 'dead-letter'")
            )
        )
        .unit("short")
        .span(12)
        .height(8)
        .legend(_legend())
    )
    lag = (
        timeseries.Panel()
        .title("Consumer lag")
        .description("Messages not yet committed by the stream worker's and the sink's consumer groups.")
        .with_target(
            SqlTarget(
                """
                SELECT sampled_at AS time, subject AS metric, value
                FROM pipeline_metrics
                WHERE metric = 'consumer_lag' AND $__timeFilter(sampled_at)
                ORDER BY 1, 2
                """
            )
        )
        .unit("short")
        .min(0)
        .span(12)
        .height(8)
        .legend(_legend())
    )
    age = (
        table.Panel()
        .title("Last observation per source")
        .description(
            "Seconds since the sink last wrote a record of each source (observation age), and the newest "
            "observed_at written (event time: years ago for replays)."
        )
        .with_target(
            SqlTarget(
                """
                SELECT subject AS source,
                       extract(epoch FROM now()) - max(value) FILTER (WHERE metric = 'last_received_at')
                           AS observation_age_s,
                       to_timestamp(max(value) FILTER (WHERE metric = 'last_observed_at')) AS newest_observed_at
                FROM pipeline_metrics
                WHERE metric IN ('last_received_at', 'last_observed_at') AND $__timeFilter(sampled_at)
                GROUP BY subject
                ORDER BY 1
                """,
                fmt="table",
            )
        )
        .override_by_name("observation_age_s", [gmodel.DynamicConfigValue(id_val="unit", value="s")])
        .span(12)
        .height(7)
    )
    written = (
        timeseries.Panel()
        .title("Rows written per second by the sink")
        .description("Rate of the sink's rows written, per kind of record (rows/s).")
        .with_target(
            SqlTarget(
                _rate_sql(
                    "records_written",
                    "'changes', 'currents', 'intervals', 'booking_events', 'booking_counts', 'dead_letters'",
                )
            )
        )
        .unit("short")
        .span(12)
        .height(7)
        .legend(_legend())
    )
    dead_total = (
        stat.Panel()
        .title("Dead letters")
        .description("Records that could not be processed, by stage (all time).")
        .with_target(
            SqlTarget("SELECT stage, count(*) AS dead_letters FROM dead_letters GROUP BY stage ORDER BY 1", fmt="table")
        )
        .span(6)
        .height(7)
    )
    dead_latest = (
        table.Panel()
        .title("Latest dead letters")
        .description("The 50 newest dead letters in the time range: stage, origin, reason.")
        .with_target(
            SqlTarget(
                """
                SELECT failed_at, stage, dl_key AS origin, error
                FROM dead_letters
                WHERE $__timeFilter(failed_at)
                ORDER BY failed_at DESC
                LIMIT 50
                """,
                fmt="table",
            )
        )
        .span(18)
        .height(7)
    )
    return (
        _dashboard(
            "slotstream-pipeline",
            "Pipeline health",
            "Throughput, lag, observation age and dead letters of the running pipeline.",
            "now-1h",
            "now",
        )
        .refresh("10s")
        .with_panel(topics)
        .with_panel(lag)
        .with_panel(age)
        .with_panel(written)
        .with_panel(dead_total)
        .with_panel(dead_latest)
    )


#: File name stem -> builder of each provisioned dashboard.
DASHBOARDS: Final[dict[str, Callable[[], gdash.Dashboard]]] = {
    "availability-explorer": availability_explorer,
    "booking-pace": booking_pace,
    "bookings": bookings,
    "pipeline-health": pipeline_health,
}
