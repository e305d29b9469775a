"""Dashboards as code: the committed JSON is the generated JSON, and every dashboard
keeps the conventions provisioning and the query checks rely on."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

import dashboards
from dashboards.common import DATASOURCE, SqlTarget
from dashboards.sqlcheck import TimeRange, interpolate, panel_queries, parse_time

PROVISIONING = Path(dashboards.__file__).with_name("provisioning")
MODELS = dashboards.generate()


def test_committed_json_equals_generated() -> None:
    assert dashboards.stale() == [], "run `slotstream dashboards generate` and commit dashboards/json"


def test_stale_files_are_detected(tmp_path: Path) -> None:
    dashboards.write(tmp_path)
    assert dashboards.stale(tmp_path) == []
    assert dashboards.load(tmp_path) == MODELS
    path = tmp_path / "bookings.json"
    model = json.loads(path.read_text())
    model["title"] = "edited by hand"
    path.write_text(json.dumps(model))
    (tmp_path / "orphan.json").write_text("{}")
    assert dashboards.stale(tmp_path) == ["bookings", "orphan"]


def test_uids_are_fixed_short_and_unique() -> None:
    uids = [m["uid"] for m in MODELS.values()]
    assert len(set(uids)) == len(uids) == 4
    assert all(0 < len(uid) <= 40 for uid in uids)
    assert set(MODELS) == {"availability-explorer", "booking-pace", "bookings", "pipeline-health"}


def test_provisioning_points_at_the_committed_files_and_datasource() -> None:
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "slotstream.yaml").read_text())["providers"][0]
    assert provider["type"] == "file" and provider["folderUid"] == dashboards.common.FOLDER_UID
    assert provider["options"]["path"] == "${DASHBOARDS_JSON_DIR}"
    source = yaml.safe_load((PROVISIONING / "datasources" / "slotstream.yaml").read_text())["datasources"][0]
    assert (source["uid"], source["type"]) == (DATASOURCE.uid, DATASOURCE.type_val)
    assert source["jsonData"]["timescaledb"] is True
    assert source["user"] == "${SLOTSTREAM_POSTGRES__READER_USER}"  # the read-only role


def _targets(model: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for p in model["panels"] for t in p.get("targets", [])]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_query_uses_the_provisioned_datasource(name: str) -> None:
    model = MODELS[name]
    assert _targets(model)
    for target in _targets(model):
        assert target["datasource"] == {"type": DATASOURCE.type_val, "uid": DATASOURCE.uid}
        assert target["rawQuery"] is True and target["format"] in ("time_series", "table")
    for var in model.get("templating", {}).get("list", []):
        if var["type"] == "query":
            assert var["datasource"]["uid"] == DATASOURCE.uid
    ids = [p["id"] for p in model["panels"]]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize(
    ("name", "variables"),
    [
        ("availability-explorer", ["source", "resource", "slot"]),
        ("booking-pace", ["source", "resource", "slot", "max_lead"]),
        ("bookings", ["source", "resource"]),
    ],
)
def test_data_dashboards_have_source_resource_slot_variables(name: str, variables: list[str]) -> None:
    assert [v["name"] for v in MODELS[name]["templating"]["list"]] == variables


def test_every_panel_query_interpolates_without_leftovers() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    values = {"source": ["s"], "resource": ["r"], "slot": ["a", "b"], "max_lead": ["365"]}
    for model in MODELS.values():
        for q in panel_queries(model):
            text = interpolate(q.raw_sql, TimeRange.of(model, now), values)
            assert "$" not in text, (q.panel, text)


def test_sql_target_rejects_what_the_checks_cannot_expand() -> None:
    with pytest.raises(ValueError, match="macro"):
        SqlTarget("SELECT $__timeGroup(t, '1h') FROM x")
    with pytest.raises(ValueError, match="sqlstring"):
        SqlTarget("SELECT 1 WHERE source = '$source'")
    assert SqlTarget("SELECT 1 WHERE source = ${source:sqlstring}").build().to_json()["rawSql"]


def test_interpolation_quotes_like_grafana_sqlstring() -> None:
    tr = TimeRange(datetime(2017, 1, 1, tzinfo=UTC), datetime(2017, 2, 1, 12, tzinfo=UTC))
    text = interpolate(
        "WHERE r IN (${r:sqlstring}) AND $__timeFilter(t) AND u < $__timeTo()", tr, {"r": ["O'Hare", "b"]}
    )
    assert text == (
        "WHERE r IN ('O''Hare','b') AND t BETWEEN '2017-01-01T00:00:00Z' AND '2017-02-01T12:00:00Z' "
        "AND u < '2017-02-01T12:00:00Z'"
    )
    with pytest.raises(KeyError):
        interpolate("${missing:sqlstring}", tr, {})


def test_relative_times() -> None:
    now = datetime(2026, 11, 22, 12, tzinfo=UTC)
    assert parse_time("now", now) == now
    assert parse_time("now-30d", now) == now - timedelta(days=30)
    assert parse_time("now+1h", now) == now + timedelta(hours=1)
    assert parse_time("now-2y", now) == now - timedelta(days=730)
    assert parse_time("2015-07-01", now) == datetime(2015, 7, 1, tzinfo=UTC)
