"""Grafana dashboards of slotstream, generated from Python (:mod:`dashboards.definitions`).

``slotstream dashboards generate`` writes ``dashboards/json/<name>.json``, the files
Grafana's file provider loads (dashboards/provisioning); tests check the committed
files equal what the code generates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

__all__ = ["JSON_DIR", "generate", "load", "render", "stale", "write"]

#: Where the provisioned dashboard JSON lives (mounted into Grafana by docker-compose).
JSON_DIR: Final = Path(__file__).with_name("json")


def generate() -> dict[str, dict[str, Any]]:
    """File name stem -> dashboard JSON model (a dict) of every dashboard."""
    from grafana_foundation_sdk.cog.encoder import JSONEncoder

    from dashboards.definitions import DASHBOARDS

    out = {}
    for name, build in DASHBOARDS.items():
        model = json.loads(json.dumps(build().build(), cls=JSONEncoder))
        for i, panel in enumerate(model.get("panels", []), start=1):
            panel["id"] = i  # Grafana keys panel state (links, edits) by a dashboard-unique id
        out[name] = model
    return out


def load(directory: Path = JSON_DIR) -> dict[str, dict[str, Any]]:
    """File name stem -> dashboard JSON model of every committed file (what Grafana's
    provider loads; needs no SDK). Raises ``json.JSONDecodeError`` on a broken file."""
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.json"))}


def render(model: dict[str, Any]) -> str:
    """The committed text of a dashboard: sorted keys, 2-space indent, final newline."""
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write(directory: Path = JSON_DIR) -> list[Path]:
    """Write every dashboard to ``directory`` and delete stale ``*.json`` there; returns the
    paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    models = generate()
    paths = []
    for name, model in models.items():
        path = directory / f"{name}.json"
        path.write_text(render(model), encoding="utf-8")
        paths.append(path)
    for old in directory.glob("*.json"):
        if old.stem not in models:
            old.unlink()
    return paths


def stale(directory: Path = JSON_DIR) -> list[str]:
    """Names of dashboards whose file in ``directory`` differs from the generated one
    (missing, changed, or a file no dashboard generates); empty when all are current."""
    models = generate()
    bad = [
        name
        for name, model in models.items()
        if not (directory / f"{name}.json").exists()
        or (directory / f"{name}.json").read_text(encoding="utf-8") != render(model)
    ]
    bad += [p.stem for p in directory.glob("*.json") if p.stem not in models]
    return sorted(bad)
