"""Change detection: one slot's observations in, change events out (pure functions).

The rule (seed 000: append history only when availability changes; seed 001:
HutAvailability / HutAvailabilityHistory with first and last checked):

- The first observation of a key opens a state interval and is a change
  (``previous`` is None).
- A newer observation (ordered by ``(observed_at, seq)``) with the same
  :class:`~slotstream.contract.SlotState` (capacity, free, status) only extends the
  open interval: ``last_seen``, ``last_seq`` and the observation count move.
- A newer observation with another state closes the interval and opens a new one:
  that is a change event, carrying the previous state and its interval.
- An observation that is not newer than the last one applied is a redelivery or a
  late arrival. If it is the very observation that opened the open interval, the
  opening change is emitted again, identical (same ``event_id``): after a crash the
  table may already hold the new state while the change never reached the output
  topic, and swallowing it there is the trap that made Kafka Streams drop
  emit-on-change (KIP-557). Consumers deduplicate by ``event_id``. Any other old
  observation is dropped (counted as ``stale``): a history that was already emitted is
  never rewritten.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import ConfigDict, TypeAdapter

from slotstream.contract import (
    SCHEMA_VERSION,
    AvailabilityChange,
    AvailabilityCurrent,
    AvailabilityObservation,
    SlotState,
    UtcDatetime,
    occupancy,
    trusted,
)

__all__ = ["BatchResult", "Detection", "Tracker", "current_of", "detect", "detect_batch"]

Verdict = Literal["first", "changed", "unchanged", "replayed", "stale"]


@dataclass(frozen=True, slots=True)
class Tracker:
    """Table value per slot key: the open state interval and how it was opened.

    Times are UTC; ``*_seq`` are observation ``seq`` values. ``previous*`` describe the
    interval before the open one (None after the first observation), so the opening
    change can be rebuilt exactly on a replay. A plain dataclass, not a pydantic model:
    one is built for every observation, and only the table (de)serializes it
    (:meth:`to_json`, :meth:`from_json`, same JSON as before).
    """

    __pydantic_config__ = ConfigDict(extra="forbid")

    state: SlotState
    first_seen: UtcDatetime
    first_seq: int
    last_seen: UtcDatetime
    last_seq: int
    observations: int
    previous: SlotState | None = None
    previous_first_seen: UtcDatetime | None = None
    previous_last_seen: UtcDatetime | None = None
    previous_observations: int | None = None

    def to_json(self) -> bytes:
        """The table value: a JSON object of the fields (UTF-8)."""
        return _TRACKER.dump_json(self)

    @staticmethod
    def from_json(raw: bytes | str) -> Tracker:
        """A tracker from :meth:`to_json`'s output; raises pydantic's ``ValidationError``."""
        return _TRACKER.validate_json(raw)


_TRACKER: TypeAdapter[Tracker] = TypeAdapter(Tracker)


@dataclass(frozen=True, slots=True)
class Detection:
    """Outcome of one observation: the tracker to store and the change to emit, if any."""

    tracker: Tracker
    change: AvailabilityChange | None
    verdict: Verdict


def _change(obs: AvailabilityObservation, t: Tracker) -> AvailabilityChange:
    """The change event that opened tracker ``t`` (observation ``obs`` opened it); built
    unvalidated (:func:`~slotstream.contract.trusted`) from the validated observation
    and tracker."""
    prev = t.previous
    state = t.state
    delta = None
    if prev is not None and prev.free is not None and state.free is not None:
        delta = state.free - prev.free
    duration = None
    if t.previous_first_seen is not None:
        duration = (obs.observed_at - t.previous_first_seen).total_seconds()
    key = obs.key
    percent, steps, status = occupancy(state.capacity, state.free)
    return trusted(
        AvailabilityChange,
        occupancy_percent=percent,
        occupancy_steps=steps,
        occupancy_status=status,
        event_type="availability_change",
        schema_version=SCHEMA_VERSION,
        event_id=f"{key}@{obs.observed_at.isoformat()}#{obs.seq}",
        key=key,
        source=obs.source,
        resource_id=obs.resource_id,
        slot=obs.slot,
        slot_start=obs.slot_start,
        slot_end=obs.slot_end,
        observed_at=obs.observed_at,
        seq=obs.seq,
        previous=prev,
        current=state,
        delta_free=delta,
        previous_first_seen=t.previous_first_seen,
        previous_last_seen=t.previous_last_seen,
        previous_duration_s=duration,
        previous_observations=t.previous_observations,
        attributes=obs.attributes,
    )


def _same(obs: AvailabilityObservation, state: SlotState) -> bool:
    # Field by field: cheaper than building a SlotState for every observation.
    return obs.free == state.free and obs.capacity == state.capacity and obs.status == state.status


def _open(obs: AvailabilityObservation, closing: Tracker | None) -> Tracker:
    """The tracker of the interval ``obs`` opens, after ``closing`` (None: first sight)."""
    return Tracker(
        state=obs.state,
        first_seen=obs.observed_at,
        first_seq=obs.seq,
        last_seen=obs.observed_at,
        last_seq=obs.seq,
        observations=1,
        previous=None if closing is None else closing.state,
        previous_first_seen=None if closing is None else closing.first_seen,
        previous_last_seen=None if closing is None else closing.last_seen,
        previous_observations=None if closing is None else closing.observations,
    )


def detect(tracker: Tracker | None, obs: AvailabilityObservation) -> Detection:
    """Apply one observation to a slot's tracker (None: never seen); see the module doc.

    The previous interval's duration (``previous_duration_s``, seconds) runs from its
    first sight to this change, as seed 001 closes a history entry at the time of the
    change; ``previous_last_seen`` is its last confirming observation.
    """
    if tracker is None:
        new = _open(obs, None)
        return Detection(new, _change(obs, new), "first")
    position = (obs.observed_at, obs.seq)
    if position <= (tracker.last_seen, tracker.last_seq):
        if position == (tracker.first_seen, tracker.first_seq) and _same(obs, tracker.state):
            return Detection(tracker, _change(obs, tracker), "replayed")
        return Detection(tracker, None, "stale")
    if _same(obs, tracker.state):
        t = tracker
        extended = Tracker(
            t.state,
            t.first_seen,
            t.first_seq,
            obs.observed_at,
            obs.seq,
            t.observations + 1,
            t.previous,
            t.previous_first_seen,
            t.previous_last_seen,
            t.previous_observations,
        )
        return Detection(extended, None, "unchanged")
    new = _open(obs, tracker)
    return Detection(new, _change(obs, new), "changed")


def current_of(obs: AvailabilityObservation, tracker: Tracker) -> AvailabilityCurrent:
    """The latest state record of ``obs``'s slot (for the compacted current topic);
    built unvalidated like :func:`_change`."""
    percent, steps, status = occupancy(tracker.state.capacity, tracker.state.free)
    return trusted(
        AvailabilityCurrent,
        occupancy_percent=percent,
        occupancy_steps=steps,
        occupancy_status=status,
        event_type="availability_current",
        schema_version=SCHEMA_VERSION,
        key=obs.key,
        source=obs.source,
        resource_id=obs.resource_id,
        slot=obs.slot,
        slot_start=obs.slot_start,
        slot_end=obs.slot_end,
        current=tracker.state,
        first_seen=tracker.first_seen,
        last_seen=tracker.last_seen,
        first_seq=tracker.first_seq,
        last_seq=tracker.last_seq,
        observations=tracker.observations,
        attributes=obs.attributes,
    )


@dataclass(slots=True)
class BatchResult:
    """What one batch of observations produced, in input order.

    ``changes`` go to the change topic, ``currents`` (one per key touched) to the
    current topic; ``trackers`` are the table values to store *after* both were
    acknowledged; ``verdicts`` counts :data:`Verdict` values.
    """

    changes: list[AvailabilityChange] = field(default_factory=list)
    currents: list[AvailabilityCurrent] = field(default_factory=list)
    trackers: dict[str, Tracker] = field(default_factory=dict)
    verdicts: Counter[str] = field(default_factory=Counter)


def detect_batch(load: Callable[[str], Tracker | None], observations: Iterable[AvailabilityObservation]) -> BatchResult:
    """Run :func:`detect` over a batch; ``load(key)`` reads a tracker from the table.

    Trackers are read once per key and carried through the batch; only keys whose
    tracker moved are returned for storing, each with the current-state record of its
    latest observation.
    """
    result = BatchResult()
    trackers: dict[str, Tracker | None] = {}
    latest: dict[str, AvailabilityObservation] = {}
    for obs in observations:
        key = obs.key
        tracker = trackers[key] if key in trackers else load(key)
        d = detect(tracker, obs)
        result.verdicts[d.verdict] += 1
        trackers[key] = d.tracker
        if d.change is not None:
            result.changes.append(d.change)
        if d.verdict in ("first", "changed", "unchanged"):
            latest[key] = obs
    for key, obs in latest.items():
        tracker = trackers[key]
        assert tracker is not None
        result.trackers[key] = tracker
        result.currents.append(current_of(obs, tracker))
    return result
