"""The wire contract: every record slotstream writes to Kafka.

Pydantic v2 models, frozen, JSON on the wire (UTF-8), each with ``event_type`` and
``schema_version`` so consumers in any language can dispatch and evolve; the JSON
Schemas in ``slotstream/schemas/`` are generated from these models
(``slotstream schema export``) for non-Python consumers.

Times are timezone-aware and normalised to UTC; durations are seconds; counts are
integers. Keys on the wire are UTF-8 strings (``key`` properties below).

Records:

- :class:`BookingEvent` — a booking was created or cancelled (seed 002's events).
- :class:`AvailabilityObservation` — what a producer saw for one slot of one resource.
- :class:`AvailabilityChange` — emitted only when free / capacity / status of a slot
  changed, with the previous state interval (seed 000: append only on change; seed
  001: HutAvailabilityHistory with first/last checked).
- :class:`AvailabilityCurrent` — the latest state and its open interval per slot
  (seed 001: HutAvailability).
- :class:`BookingCount` — created / cancelled / net per resource per day or month
  (seed 002's dashboard).
- :class:`DeadLetter` — a record that could not be processed, with the reason, the raw
  payload and its origin.
"""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Annotated, Any, Final, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from slotstream.errors import SlotstreamError

__all__ = [
    "SCHEMA_VERSION",
    "AvailabilityChange",
    "AvailabilityCurrent",
    "AvailabilityObservation",
    "BookingCount",
    "BookingEvent",
    "ContractError",
    "DeadLetter",
    "FileOrigin",
    "OccupancyStatus",
    "SlotState",
    "SlotStatus",
    "TopicOrigin",
    "occupancy",
    "parse",
    "trusted",
]

SCHEMA_VERSION: Final = 1

OccupancyStatus = Literal["empty", "low", "medium", "high", "full", "unknown"]
SlotStatus = Literal["open", "closed", "offline", "unknown"]


class ContractError(SlotstreamError):
    """A payload is not a valid record of the expected type; the message says why."""


def _to_utc(value: datetime) -> datetime:
    # Most values are UTC already (every record the stream builds): skip the conversion.
    return value if value.tzinfo is UTC else value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
#: One part of a composite key: non-empty, without the key separator ``|``.
KeyPart = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^|]+$")]


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], raw: bytes | str) -> M:
    """Validate a JSON payload as ``model``; raises :class:`ContractError` with the reason."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<record>'}: {e['msg']}" for e in exc.errors()[:5])
        raise ContractError(f"invalid {model.__name__}: {problems}") from None


_FIELD_NAMES: dict[type[BaseModel], tuple[str, ...]] = {}


def trusted(model: type[M], /, **values: Any) -> M:
    """A ``model`` record of ``values`` that are valid by construction, not validated again.

    For records this code assembles from parts that were validated already (the stream
    worker's observations, changes and current states, ~1.2 M on the full hotel
    replay): building one this way takes ~0.9 µs against ~4.7 µs with validation, and
    pydantic's ``model_construct`` takes ~5 µs. Only when ``values`` name every field of
    ``model`` in declaration order (defaults included, so nothing is derived or filled
    in); otherwise the record is validated as usual (``model(**values)``, which raises
    ``ValidationError``). The result equals, and serializes exactly like, the validated
    record of valid values (tests/streams checks both on every record kind it builds).
    """
    names = _FIELD_NAMES.get(model)
    if names is None:
        # A model with private attributes or a post-init hook needs pydantic's own
        # construction: no field list matches, so it is always validated.
        plain = not model.__private_attributes__ and model.__pydantic_post_init__ is None
        names = _FIELD_NAMES[model] = tuple(model.model_fields) if plain else ("<validate>",)
    if tuple(values) != names:
        return model(**values)
    record = model.__new__(model)
    # What pydantic's own model_construct sets (its documented instance attributes).
    object.__setattr__(record, "__dict__", values)
    object.__setattr__(record, "__pydantic_fields_set__", set(names))
    object.__setattr__(record, "__pydantic_extra__", None)
    object.__setattr__(record, "__pydantic_private__", None)
    return record


# -- occupancy (seed 001) --------------------------------------------------------------


@lru_cache(maxsize=65_536)  # pure, and called for every change: few distinct (capacity, free) pairs
def occupancy(capacity: int | None, free: int | None) -> tuple[float | None, int | None, OccupancyStatus]:
    """``(occupancy_percent, occupancy_steps, occupancy_status)`` of a slot.

    Rules of seed 001 (HutBookingSchema): percent = (capacity - free) / capacity * 100,
    0..100; steps = percent in steps of 10 (nearest; 100 only when full, 0 only when
    empty); status: ``full`` when nothing is free, ``empty`` at 0 %, ``low`` up to 25 %,
    ``medium`` up to 75 %, ``high`` above (the seed's priority bands), ``unknown``
    without a positive capacity or a free count.
    """
    if capacity is None or free is None or capacity <= 0:
        return None, None, "unknown"
    free = min(max(free, 0), capacity)
    percent = round((capacity - free) * 100.0 / capacity, 2)
    steps = int(percent / 10 + 0.5) * 10
    if free == 0:
        return 100.0, 100, "full"
    steps = min(max(steps, 10 if percent > 0 else 0), 90)
    if percent == 0:
        return 0.0, 0, "empty"
    if percent <= 25:
        return percent, steps, "low"
    if percent <= 75:
        return percent, steps, "medium"
    return percent, steps, "high"


# -- booking events ----------------------------------------------------------------------


class BookingEvent(_Record):
    """A booking was created or cancelled; key on the wire: ``resource_id``.

    ``seq`` is the event's position in the source's event-time order (0-based,
    strictly increasing per resource): consumers use it to apply each event exactly
    once. ``event_id`` is ``"<booking_id>:<kind>"``, deterministic, so a replay of the
    same input yields the same ids.
    """

    event_type: Literal["booking_event"] = "booking_event"
    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: str
    seq: int = Field(ge=0)
    kind: Literal["created", "cancelled"]
    booking_id: KeyPart
    source: KeyPart
    resource_id: KeyPart
    arrival_date: date
    nights: int = Field(ge=0, le=366, description="nights held, from arrival_date on")
    lead_time_days: int = Field(ge=0, description="days between booking and arrival")
    rooms: int = Field(default=1, ge=1)
    event_time: UtcDatetime

    @property
    def key(self) -> str:
        return self.resource_id


# -- observations and changes ------------------------------------------------------------


class SlotState(_Record):
    """The part of an observation that change detection compares."""

    capacity: int | None = Field(default=None, ge=0)
    free: int | None = Field(default=None, ge=0)
    status: SlotStatus = "open"

    @staticmethod
    @lru_cache(maxsize=65_536)
    def of(capacity: int | None, free: int | None, status: SlotStatus) -> SlotState:
        """The validated state with these fields, shared: frozen, and a stream of
        observations has few distinct states, so each is validated once."""
        return SlotState(capacity=capacity, free=free, status=status)


class AvailabilityObservation(_Record):
    """What a producer saw for one slot of one resource at ``observed_at`` (UTC).

    Key on the wire: ``"<source>|<resource_id>|<slot>"``. Observations of one key are
    ordered by ``(observed_at, seq)``; ``seq`` breaks ties between observations with the
    same timestamp (e.g. date-only sources) and must increase with them.
    """

    event_type: Literal["availability_observation"] = "availability_observation"
    schema_version: Literal[1] = SCHEMA_VERSION
    source: KeyPart
    resource_id: KeyPart
    slot: KeyPart = Field(description="slot id, e.g. a night as YYYY-MM-DD or an ISO start time")
    slot_start: UtcDatetime
    slot_end: UtcDatetime
    capacity: int | None = Field(default=None, ge=0)
    free: int | None = Field(default=None, ge=0)
    status: SlotStatus = "open"
    observed_at: UtcDatetime
    seq: int = Field(default=0, ge=0)
    attributes: dict[str, str | int | float | bool | None] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> AvailabilityObservation:
        if self.slot_end <= self.slot_start:
            raise ValueError("slot_end must be after slot_start")
        if self.capacity is not None and self.free is not None and self.free > self.capacity:
            raise ValueError(f"free ({self.free}) exceeds capacity ({self.capacity})")
        return self

    @property
    def key(self) -> str:
        return f"{self.source}|{self.resource_id}|{self.slot}"

    @property
    def state(self) -> SlotState:
        return SlotState.of(self.capacity, self.free, self.status)


class _Occupancy(_Record):
    """Fields derived from ``current`` by :func:`occupancy` (filled in when absent)."""

    occupancy_percent: float | None = None
    occupancy_steps: int | None = None
    occupancy_status: OccupancyStatus = "unknown"

    @model_validator(mode="before")
    @classmethod
    def _derive(cls, data: Any) -> Any:
        if isinstance(data, dict) and "occupancy_status" not in data and "current" in data:
            current = data["current"]
            cap, free = (
                (current.capacity, current.free)
                if isinstance(current, SlotState)
                else (current.get("capacity"), current.get("free"))
            )
            pct, steps, status = occupancy(cap, free)
            data = {**data, "occupancy_percent": pct, "occupancy_steps": steps, "occupancy_status": status}
        return data


class AvailabilityChange(_Occupancy):
    """Emitted when free, capacity or status of a slot changed (or it was first seen).

    ``previous`` is None on first sight. ``previous_first_seen`` / ``previous_last_seen``
    bound the previous state interval (UTC), ``previous_duration_s`` is its length in
    seconds (until this change) and ``previous_observations`` how many observations
    confirmed it: the closed interval is fully described by the change that closed it.
    ``event_id`` is ``"<key>@<observed_at>#<seq>"``: deterministic, so a re-emitted change
    after a crash is recognisably the same event.
    """

    event_type: Literal["availability_change"] = "availability_change"
    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: str
    key: str
    source: KeyPart
    resource_id: KeyPart
    slot: KeyPart
    slot_start: UtcDatetime
    slot_end: UtcDatetime
    observed_at: UtcDatetime
    seq: int = Field(ge=0)
    previous: SlotState | None
    current: SlotState
    delta_free: int | None = Field(description="current.free - previous.free; None if either is unknown")
    previous_first_seen: UtcDatetime | None = None
    previous_last_seen: UtcDatetime | None = None
    previous_duration_s: float | None = None
    previous_observations: int | None = Field(default=None, ge=1, description="observations of the previous interval")
    attributes: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


class AvailabilityCurrent(_Occupancy):
    """The latest state of one slot and its open interval; key: the slot key (compacted)."""

    event_type: Literal["availability_current"] = "availability_current"
    schema_version: Literal[1] = SCHEMA_VERSION
    key: str
    source: KeyPart
    resource_id: KeyPart
    slot: KeyPart
    slot_start: UtcDatetime
    slot_end: UtcDatetime
    current: SlotState
    first_seen: UtcDatetime
    last_seen: UtcDatetime
    first_seq: int = Field(ge=0)
    last_seq: int = Field(ge=0)
    observations: int = Field(ge=1, description="observations of the open interval")
    attributes: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


class BookingCount(_Record):
    """Created / cancelled / net bookings of one resource in one day or month (UTC).

    Key: ``"<source>|<resource_id>|<period>|<bucket>"`` (compacted: the latest count
    wins). ``bucket`` is the day, or the first day of the month.
    """

    event_type: Literal["booking_count"] = "booking_count"
    schema_version: Literal[1] = SCHEMA_VERSION
    source: KeyPart
    resource_id: KeyPart
    period: Literal["day", "month"]
    bucket: date
    created: int = Field(ge=0)
    cancelled: int = Field(ge=0)
    net: int
    last_seq: int = Field(ge=0, description="seq of the last booking event counted")

    @property
    def key(self) -> str:
        return f"{self.source}|{self.resource_id}|{self.period}|{self.bucket.isoformat()}"


# -- dead letters --------------------------------------------------------------------------


class FileOrigin(_Record):
    """A record read from a file: its path and 1-based line (the header is line 1)."""

    kind: Literal["file"] = "file"
    path: str
    line: int = Field(ge=1)


class TopicOrigin(_Record):
    """A record consumed from Kafka."""

    kind: Literal["topic"] = "topic"
    topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)


class DeadLetter(_Record):
    """A record that could not be processed. Nothing is lost: ``raw`` is the payload
    (UTF-8 text, or base64 when it was not valid UTF-8, see ``raw_encoding``)."""

    event_type: Literal["dead_letter"] = "dead_letter"
    schema_version: Literal[1] = SCHEMA_VERSION
    stage: str = Field(description="who gave up, e.g. producer.hotel-bookings, stream.detect")
    error: str
    raw: str
    raw_encoding: Literal["utf-8", "base64"] = "utf-8"
    origin: Annotated[FileOrigin | TopicOrigin, Field(discriminator="kind")]
    failed_at: UtcDatetime

    @classmethod
    def of(cls, *, stage: str, error: str, raw: bytes | str, origin: FileOrigin | TopicOrigin) -> DeadLetter:
        """Build a dead letter now, keeping ``raw`` losslessly."""
        if isinstance(raw, bytes):
            try:
                text, encoding = raw.decode("utf-8"), "utf-8"
            except UnicodeDecodeError:
                text, encoding = base64.b64encode(raw).decode("ascii"), "base64"
        else:
            text, encoding = raw, "utf-8"
        return cls(
            stage=stage,
            error=error,
            raw=text,
            raw_encoding=encoding,
            origin=origin,
            failed_at=datetime.now(UTC),
        )

    @property
    def key(self) -> str:
        o = self.origin
        return f"{o.path}:{o.line}" if isinstance(o, FileOrigin) else f"{o.topic}:{o.partition}:{o.offset}"


#: Every record type, by ``event_type`` (for the JSON Schema export).
RECORDS: dict[str, type[BaseModel]] = {
    "booking_event": BookingEvent,
    "availability_observation": AvailabilityObservation,
    "availability_change": AvailabilityChange,
    "availability_current": AvailabilityCurrent,
    "booking_count": BookingCount,
    "dead_letter": DeadLetter,
}
