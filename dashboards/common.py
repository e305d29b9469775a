"""Building blocks of slotstream's dashboards, on top of grafana-foundation-sdk.

The SDK's Python builders have no PostgreSQL query type, so :class:`SqlTarget` is a
small builder of the JSON model Grafana's PostgreSQL data source stores for a raw SQL
query (``rawSql``, ``format``, ``editorMode: code``); everything else is the SDK's.

Panel SQL may use only the macros in :data:`MACROS` and template variables written as
``${name:sqlstring}`` (Grafana quotes and escapes each value and joins multi-values with
commas), so every query can be checked outside Grafana too (tests/dashboards). Tables
are unqualified: the read-only role's ``search_path`` starts with the sink's schema
(slotstream/stack/sql/bootstrap.sql).
"""

from __future__ import annotations

import re
import textwrap
from typing import Any, Final, Literal, Self

from grafana_foundation_sdk.builders import dashboard as gdash
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard as gmodel

__all__ = [
    "DATASOURCE",
    "FOLDER_UID",
    "MACROS",
    "OCCUPANCY_LEVELS",
    "SqlQuery",
    "SqlTarget",
    "occupancy_level_sql",
    "occupancy_mappings",
    "query_variable",
]

#: The provisioned TimescaleDB data source (dashboards/provisioning/datasources).
DATASOURCE: Final = gmodel.DataSourceRef(type_val="grafana-postgresql-datasource", uid="slotstream-tsdb")
#: The folder of the file provider (dashboards/provisioning/dashboards).
FOLDER_UID: Final = "slotstream"
#: Grafana macros the panels use, with what Grafana's PostgreSQL data source expands
#: them to (grafana.com/docs/grafana/latest/datasources/postgres/query-editor, "Macros").
MACROS: Final = {
    "$__timeFilter": "column BETWEEN '<from RFC 3339>' AND '<to RFC 3339>'",
    "$__timeFrom": "'<from RFC 3339>'",
    "$__timeTo": "'<to RFC 3339>'",
}

Format = Literal["time_series", "table"]


class SqlQuery(cogvariants.Dataquery):
    """A raw SQL query of the PostgreSQL data source, as stored in dashboard JSON."""

    def __init__(self, ref_id: str, raw_sql: str, fmt: Format) -> None:
        self.ref_id = ref_id
        self.raw_sql = raw_sql
        self.format = fmt

    def to_json(self) -> dict[str, object]:
        return {
            "datasource": DATASOURCE.to_json(),
            "editorMode": "code",
            "format": self.format,
            "rawQuery": True,
            "rawSql": self.raw_sql,
            "refId": self.ref_id,
        }


class SqlTarget(cogbuilder.Builder[cogvariants.Dataquery]):
    """Builder of a :class:`SqlQuery` (the SDK's custom-query escape hatch).

    ``sql`` is dedented and stripped; raises ``ValueError`` when it uses a ``$__`` macro
    outside :data:`MACROS` or a variable not written ``${name:sqlstring}``.
    """

    def __init__(self, sql: str, *, fmt: Format = "time_series", ref_id: str = "A") -> None:
        text = textwrap.dedent(sql).strip()
        for macro in re.findall(r"\$__\w+", text):
            if macro not in MACROS:
                raise ValueError(f"macro {macro} is not one of {sorted(MACROS)}")
        for var in re.findall(r"\$(?!__)\{?[^}\s]*\}?", text):
            if not re.fullmatch(r"\$\{\w+:sqlstring\}", var):
                raise ValueError(f"variable {var!r} must be written ${{name:sqlstring}}")
        self._query = SqlQuery(ref_id, text, fmt)

    def build(self) -> SqlQuery:
        return self._query

    def ref(self, ref_id: str) -> Self:
        self._query.ref_id = ref_id
        return self


def query_variable(
    name: str,
    label: str,
    sql: str,
    *,
    multi: bool = False,
    include_all: bool = False,
    refresh_on_time_range: bool = False,
) -> gdash.QueryVariable:
    """A template variable filled by ``sql`` (its first column) from the data source."""
    var = (
        gdash.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(" ".join(sql.split()))
        .multi(multi)
        .include_all(include_all)
        .allow_custom_value(False)
        .refresh(
            gmodel.VariableRefresh.ON_TIME_RANGE_CHANGED
            if refresh_on_time_range
            else gmodel.VariableRefresh.ON_DASHBOARD_LOAD
        )
        .sort(gmodel.VariableSort.DISABLED)
    )
    return var


#: occupancy_status (seed 001, slotstream.contract.occupancy) -> (level, colour). The state
#: timeline plots the level (a number: Grafana's SQL long-to-wide conversion needs
#: numeric values) and maps it back to the status name and its colour.
OCCUPANCY_LEVELS: Final[dict[str, tuple[int, str]]] = {
    "empty": (0, "green"),
    "low": (1, "light-green"),
    "medium": (2, "yellow"),
    "high": (3, "orange"),
    "full": (4, "red"),
}
UNKNOWN_COLOUR: Final = "text"


def occupancy_level_sql(column: str = "occupancy_status") -> str:
    """SQL ``CASE`` turning ``column`` into its level; NULL for ``unknown``."""
    whens = " ".join(f"WHEN '{status}' THEN {level}" for status, (level, _) in OCCUPANCY_LEVELS.items())
    return f"CASE {column} {whens} END"


def occupancy_mappings() -> list[gmodel.ValueMapping]:
    """Value mappings: level -> status name and colour; NULL -> ``unknown``."""
    value = gmodel.ValueMap(
        options={
            str(level): gmodel.ValueMappingResult(text=status, color=colour, index=level)
            for status, (level, colour) in OCCUPANCY_LEVELS.items()
        }
    )
    special = gmodel.SpecialValueMap(
        options=gmodel.DashboardSpecialValueMapOptions(
            match=gmodel.SpecialValueMatch.NULL,
            result=gmodel.ValueMappingResult(text="unknown", color=UNKNOWN_COLOUR, index=len(OCCUPANCY_LEVELS)),
        )
    )
    return [value, special]


def status_text_mappings() -> list[gmodel.ValueMapping]:
    """Value mappings colouring the status *names* (table cells)."""
    options: dict[str, Any] = {
        status: gmodel.ValueMappingResult(color=colour, index=level)
        for status, (level, colour) in OCCUPANCY_LEVELS.items()
    }
    options["unknown"] = gmodel.ValueMappingResult(color=UNKNOWN_COLOUR, index=len(OCCUPANCY_LEVELS))
    return [gmodel.ValueMap(options=options)]
