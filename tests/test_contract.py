"""The wire contract: committed JSON Schemas are current, rules of seed 001, errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slotstream.contract import (
    AvailabilityObservation,
    BookingEvent,
    ContractError,
    DeadLetter,
    TopicOrigin,
    occupancy,
    parse,
)
from slotstream.schemas import SCHEMA_DIR, render


def test_committed_json_schemas_are_current() -> None:
    """Run `slotstream schema export` after changing a model."""
    rendered = render()
    committed = {p.name: p.read_text() for p in SCHEMA_DIR.glob("*.schema.json")}
    assert committed == rendered


def test_schemas_are_valid_json_with_ids() -> None:
    for text in render().values():
        schema = json.loads(text)
        assert schema["$id"].endswith(".schema.json") and schema["additionalProperties"] is False


@pytest.mark.parametrize(
    ("capacity", "free", "expected"),
    [
        (12, 12, (0.0, 0, "empty")),
        (12, 11, (8.33, 10, "low")),
        (12, 9, (25.0, 30, "low")),
        (12, 6, (50.0, 50, "medium")),
        (12, 3, (75.0, 80, "medium")),
        (12, 1, (91.67, 90, "high")),
        (100, 1, (99.0, 90, "high")),  # 100 only when full
        (100, 99, (1.0, 10, "low")),  # 0 only when empty
        (12, 0, (100.0, 100, "full")),
        (None, 3, (None, None, "unknown")),
        (0, 0, (None, None, "unknown")),
        (10, None, (None, None, "unknown")),
    ],
)
def test_occupancy_rules_of_seed_001(capacity: int | None, free: int | None, expected: tuple[object, ...]) -> None:
    assert occupancy(capacity, free) == expected


@given(st.integers(1, 500), st.data())
def test_occupancy_is_monotonic_in_rooms_taken(capacity: int, data: st.DataObject) -> None:
    a = data.draw(st.integers(0, capacity))
    b = data.draw(st.integers(0, capacity))
    pa, sa, _ = occupancy(capacity, a)
    pb, sb, _ = occupancy(capacity, b)
    assert pa is not None and pb is not None and sa is not None and sb is not None
    if a >= b:
        assert pa <= pb and sa <= sb


def observation(**kw: object) -> AvailabilityObservation:
    base: dict[str, object] = {
        "source": "huts",
        "resource_id": "cabane-1",
        "slot": "2025-07-01",
        "slot_start": datetime(2025, 7, 1, tzinfo=UTC),
        "slot_end": datetime(2025, 7, 2, tzinfo=UTC),
        "capacity": 40,
        "free": 12,
        "observed_at": datetime(2025, 6, 1, 10, tzinfo=UTC),
    }
    return AvailabilityObservation.model_validate({**base, **kw})


def test_times_are_normalised_to_utc_and_key_is_composite() -> None:
    cet = timezone(timedelta(hours=2))
    obs = observation(observed_at=datetime(2025, 6, 1, 12, tzinfo=cet))
    assert obs.observed_at == datetime(2025, 6, 1, 10, tzinfo=UTC) and obs.observed_at.tzinfo == UTC
    assert obs.key == "huts|cabane-1|2025-07-01"
    assert parse(AvailabilityObservation, obs.model_dump_json()) == obs


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"free": 41}, "exceeds capacity"),
        ({"slot_end": datetime(2025, 6, 30, tzinfo=UTC)}, "slot_end must be after"),
        ({"observed_at": datetime(2025, 6, 1, 10)}, "timezone"),  # naive time: ambiguous
        ({"resource_id": "a|b"}, "pattern"),  # the key separator
        ({"free": -1}, "greater than or equal"),
    ],
)
def test_invalid_observations_are_refused(change: dict[str, object], message: str) -> None:
    payload = observation().model_dump(mode="json") | {
        k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in change.items()
    }
    with pytest.raises(ContractError, match=message):
        parse(AvailabilityObservation, json.dumps(payload))


def test_parse_names_the_model_and_field() -> None:
    with pytest.raises(ContractError, match=r"invalid BookingEvent: .*kind"):
        parse(BookingEvent, b'{"kind": "moved"}')
    with pytest.raises(ContractError, match="Invalid JSON"):
        parse(BookingEvent, b"{not json")


def test_dead_letter_keeps_any_payload_losslessly() -> None:
    origin = TopicOrigin(topic="t", partition=0, offset=7)
    text = DeadLetter.of(stage="s", error="e", raw=b'{"a": 1}', origin=origin)
    assert (text.raw, text.raw_encoding, text.key) == ('{"a": 1}', "utf-8", "t:0:7")
    binary = DeadLetter.of(stage="s", error="e", raw=b"\xff\xfe\x00", origin=origin)
    assert binary.raw_encoding == "base64"
    import base64

    assert base64.b64decode(binary.raw) == b"\xff\xfe\x00"
    assert parse(DeadLetter, binary.model_dump_json()) == binary
