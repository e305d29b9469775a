"""JSON Schema export of the wire contract for consumers that don't use Python.

``slotstream schema export`` writes one ``<event_type>.schema.json`` per record into
``slotstream/schemas/`` (committed); ``tests/test_contract.py`` checks that the committed
files equal what the models generate.
"""

from __future__ import annotations

import json
from pathlib import Path

from slotstream.contract import RECORDS, SCHEMA_VERSION

__all__ = ["SCHEMA_DIR", "export", "render"]

SCHEMA_DIR = Path(__file__).with_name("schemas")


def render() -> dict[str, str]:
    """File name -> JSON text of every record's schema (validation mode, sorted keys)."""
    out = {}
    for event_type, model in RECORDS.items():
        schema = model.model_json_schema(mode="validation")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://slotstream.dev/schemas/v{SCHEMA_VERSION}/{event_type}.schema.json"
        out[f"{event_type}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def export(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write the schemas into ``directory``; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written
