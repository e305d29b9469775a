"""The provisioned dashboards through a real Grafana server (issue 4).

Needs the Grafana built by `slotstream stack build-grafana`. When it cannot be built
(see README, "Grafana": the Go module proxy refuses the Grafana module here), every test
of this module is reported as skipped with the reason, and the session summary says in
capitals that the Grafana tests did not run (tests/conftest.py). Never a fake Grafana.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from grafana_client.api import GrafanaApi

import dashboards
from dashboards.common import DATASOURCE, FOLDER_UID
from dashboards.sqlcheck import TimeRange, interpolate_variables, panel_queries, reader_connection, resolve_variables
from slotstream.errors import BuildError, MissingToolError
from slotstream.settings import Settings
from slotstream.stack.grafana import GrafanaBuild, GrafanaServer, build_grafana
from tests import hotel_expected as expected
from tests.e2e.replay import replay

pytestmark = pytest.mark.integration

#: Marker of the skip reason that tests/conftest.py reports loudly.
NOT_RUN = "GRAFANA TESTS DID NOT RUN"
MODELS = dashboards.generate()
DATA_RANGE = TimeRange(datetime(2013, 1, 1, tzinfo=UTC), datetime(2018, 1, 1, tzinfo=UTC))


@pytest.fixture(scope="session")
def grafana(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GrafanaApi, Settings]]:
    """A running Grafana with slotstream's provisioning over the hotel replay in the
    default schema (what `make demo` leaves; the replay is idempotent)."""
    if not GrafanaBuild(stack.stack).built:
        try:
            build_grafana(stack.stack, lambda _line: None)
        except (BuildError, MissingToolError) as exc:
            pytest.skip(f"{NOT_RUN}: no Grafana server could be built: {exc}")
    password = stack.grafana.admin_password
    s = stack
    if password is None:
        from pydantic import SecretStr

        s = stack.model_copy(
            update={
                "grafana": stack.grafana.model_copy(update={"admin_password": SecretStr(secrets.token_urlsafe(16))})
            }
        )
    assert s.grafana.admin_password is not None
    server = GrafanaServer(s.grafana, s.postgres, s.stack)
    server.start(lambda _line: None)
    replay(s, tmp_path_factory.mktemp("grafana-replay"))
    api = GrafanaApi.from_url(
        s.grafana.url, credential=(s.grafana.admin_user, s.grafana.admin_password.get_secret_value())
    )
    try:
        yield api, s
    finally:
        server.stop()


def ds_query(api: GrafanaApi, raw_sql: str, fmt: str, time_range: TimeRange) -> dict[str, Any]:
    """POST /api/ds/query with one raw SQL query; returns its result (``frames`` / ``error``)."""
    body = {
        "from": str(int(time_range.start.timestamp() * 1000)),
        "to": str(int(time_range.end.timestamp() * 1000)),
        "queries": [
            {"refId": "A", "datasource": DATASOURCE.to_json(), "rawSql": raw_sql, "format": fmt, "rawQuery": True}
        ],
    }
    response = api.client.POST("/ds/query", json=body)
    result: dict[str, Any] = response["results"]["A"]
    return result


def test_datasource_health(grafana: tuple[GrafanaApi, Settings]) -> None:
    api, _ = grafana
    assert api.datasource.health(str(DATASOURCE.uid))["status"] == "OK"


def test_search_lists_every_provisioned_dashboard_in_one_folder(grafana: tuple[GrafanaApi, Settings]) -> None:
    api, _ = grafana
    hits = api.search.search_dashboards(type_="dash-db", tag="slotstream")  # type: ignore[no-untyped-call]
    found = {d["uid"]: d for d in hits}
    assert {m["uid"] for m in MODELS.values()} <= set(found)
    assert {found[m["uid"]]["folderUid"] for m in MODELS.values()} == {FOLDER_UID}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_panel_returns_frames_without_error(grafana: tuple[GrafanaApi, Settings], name: str) -> None:
    api, s = grafana
    model = MODELS[name]
    time_range = TimeRange.of(model)
    with reader_connection(s.postgres.conninfo(reader=True)) as conn:
        variables = resolve_variables(conn, model, time_range)
    for q in panel_queries(model):
        result = ds_query(api, interpolate_variables(q.raw_sql, variables), q.format, time_range)
        assert "error" not in result, (q.panel, result.get("error"))
        assert result["frames"], q.panel


def test_monthly_panel_through_grafana_equals_the_counts(grafana: tuple[GrafanaApi, Settings]) -> None:
    api, s = grafana
    model = MODELS["bookings"]
    (q,) = [q for q in panel_queries(model) if q.panel == "Monthly counts"]
    with reader_connection(s.postgres.conninfo(reader=True)) as conn:
        variables = resolve_variables(conn, model, DATA_RANGE)
    result = ds_query(api, interpolate_variables(q.raw_sql, variables), q.format, DATA_RANGE)
    (frame,) = result["frames"]
    names = [f["name"] for f in frame["schema"]["fields"]]
    columns = dict(zip(names, frame["data"]["values"], strict=True))
    got = {
        (hotel, datetime.fromtimestamp(ms / 1000, UTC).date()): (c, x)
        for ms, hotel, c, x in zip(
            columns["month"], columns["resource_id"], columns["created"], columns["cancelled"], strict=True
        )
    }
    want = expected.monthly_counts(Path(s.data_dir) / "hotel_bookings.csv.gz")
    assert got == {k: (c.created, c.cancelled) for k, c in want.items()}


def test_the_datasource_cannot_write(grafana: tuple[GrafanaApi, Settings]) -> None:
    api, s = grafana
    result = ds_query(api, "DELETE FROM booking_counts", "table", DATA_RANGE)
    assert "read-only" in str(result.get("error", ""))
    with psycopg.connect(s.postgres.conninfo()) as conn:
        row = conn.execute(f"SELECT count(*) FROM {s.postgres.db_schema}.booking_counts").fetchone()
    assert row is not None and row[0] > 0
