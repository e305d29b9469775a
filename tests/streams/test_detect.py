"""Change detection: unit cases and properties (hypothesis) under redelivery,
duplicates, reordering and crashes between outputs and table writes."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from slotstream.contract import AvailabilityChange, AvailabilityObservation
from streams.detect import Tracker, detect, detect_batch

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


def obs(
    i: int,
    free: int | None,
    *,
    status: str = "open",
    capacity: int | None = 12,
    at: int | None = None,
    slot: str = "s1",
) -> AvailabilityObservation:
    return AvailabilityObservation(
        source="wellenwerk",
        resource_id="wave",
        slot=slot,
        slot_start=T0 + timedelta(days=3),
        slot_end=T0 + timedelta(days=3, hours=1),
        capacity=capacity,
        free=free,
        status=status,
        observed_at=T0 + timedelta(minutes=i if at is None else at),
        seq=i,
    )


def run(observations: list[AvailabilityObservation]) -> tuple[list[AvailabilityChange], Tracker | None]:
    tracker: Tracker | None = None
    changes = []
    for o in observations:
        d = detect(tracker, o)
        tracker = d.tracker
        if d.change is not None:
            changes.append(d.change)
    return changes, tracker


def boundaries(observations: list[AvailabilityObservation]) -> list[int]:
    """Indices where a run of equal states starts: the changes that must be emitted."""
    return [i for i, o in enumerate(observations) if i == 0 or o.state != observations[i - 1].state]


def test_first_observation_is_a_change_without_previous() -> None:
    changes, tracker = run([obs(0, 12)])
    assert len(changes) == 1 and changes[0].previous is None and changes[0].delta_free is None
    assert tracker is not None and tracker.observations == 1


def test_unchanged_extends_the_interval_and_change_carries_it() -> None:
    changes, tracker = run([obs(0, 12), obs(1, 12), obs(2, 12), obs(5, 9)])
    assert [c.current.free for c in changes] == [12, 9]
    last = changes[-1]
    assert last.previous is not None and last.previous.free == 12
    assert last.delta_free == -3
    assert last.previous_first_seen == T0
    assert last.previous_last_seen == T0 + timedelta(minutes=2)
    assert last.previous_duration_s == 300.0  # until the change, as seed 001 closes an entry
    assert last.previous_observations == 3
    assert tracker is not None and tracker.first_seen == T0 + timedelta(minutes=5)


def test_status_or_capacity_change_is_a_change() -> None:
    changes, _ = run([obs(0, 5), obs(1, 5, status="closed"), obs(2, 5, status="closed", capacity=14)])
    assert len(changes) == 3


def test_occupancy_fields_follow_seed_001() -> None:
    changes, _ = run([obs(0, 12), obs(1, 9), obs(2, 3), obs(3, 0), obs(4, None)])
    assert [(c.occupancy_steps, c.occupancy_status) for c in changes] == [
        (0, "empty"),
        (30, "low"),
        (80, "medium"),
        (100, "full"),
        (None, "unknown"),
    ]
    assert [c.occupancy_percent for c in changes] == [0.0, 25.0, 75.0, 100.0, None]


def test_redelivered_opening_observation_re_emits_the_same_change() -> None:
    """KIP-557: the table already holds the new state; the replay must not be swallowed."""
    first, tracker = run([obs(0, 12), obs(1, 10)])
    d = detect(tracker, obs(1, 10))
    assert d.verdict == "replayed" and d.change == first[-1]
    assert d.tracker == tracker


def test_old_observation_is_stale_and_changes_nothing() -> None:
    _, tracker = run([obs(0, 12), obs(1, 10), obs(2, 10)])
    for late in (obs(0, 12), obs(2, 10), obs(1, 7)):
        d = detect(tracker, late)
        assert d.change is None and d.tracker == tracker


def test_same_timestamp_is_ordered_by_seq() -> None:
    changes, _ = run([obs(0, 12, at=0), obs(1, 11, at=0), obs(2, 10, at=0)])
    assert [c.current.free for c in changes] == [12, 11, 10]
    assert len({c.event_id for c in changes}) == 3


# -- properties -------------------------------------------------------------------------

states = st.tuples(st.sampled_from([0, 1, 2]), st.sampled_from(["open", "closed"]))


@st.composite
def sequences(draw: st.DrawFn) -> list[AvailabilityObservation]:
    """An in-order observation sequence of one slot (ties in time broken by seq)."""
    drawn = draw(st.lists(st.tuples(states, st.integers(0, 2)), min_size=1, max_size=40))
    out, minute = [], 0
    for i, ((free, status), step) in enumerate(drawn):
        minute += step
        out.append(obs(i, free, status=status, at=minute))
    return out


def expected(seq: list[AvailabilityObservation]) -> dict[str, AvailabilityChange]:
    changes, _ = run(seq)
    return {c.event_id: c for c in changes}


@given(sequences())
def test_changes_are_exactly_the_run_boundaries(seq: list[AvailabilityObservation]) -> None:
    changes, tracker = run(seq)
    assert [c.seq for c in changes] == [seq[i].seq for i in boundaries(seq)]
    assert tracker is not None and tracker.last_seq == seq[-1].seq
    for prev, change in pairwise(changes):
        assert change.previous == prev.current


@given(sequences(), st.lists(st.tuples(st.integers(0, 39), st.integers(0, 39)), max_size=5))
def test_rewinds_and_duplicates_emit_the_same_history(
    seq: list[AvailabilityObservation], rewinds: list[tuple[int, int]]
) -> None:
    """At-least-once delivery: after any point, delivery may restart from an earlier one."""
    delivery: list[AvailabilityObservation] = []
    position = 0
    for at, back in rewinds:
        at = min(at, len(seq))
        delivery += seq[position:at] if at > position else []
        position = max(position, at)
        delivery += seq[min(back, position) : position]  # replayed suffix
    delivery += seq[position:]
    emitted, tracker = run(delivery)
    want = expected(seq)
    assert {c.event_id for c in emitted} == set(want)
    assert all(c == want[c.event_id] for c in emitted)  # a re-emitted change is identical
    assert tracker == run(seq)[1]


@given(sequences(), st.randoms(use_true_random=False))
def test_reordering_never_invents_or_rewrites_history(seq: list[AvailabilityObservation], rnd: random.Random) -> None:
    """Out of order: late observations are dropped; what is emitted is the run boundaries
    of the observations that were newest on arrival, and never a change twice."""
    shuffled = seq[:]
    rnd.shuffle(shuffled)
    accepted, newest = [], None
    for o in shuffled:
        if newest is None or (o.observed_at, o.seq) > newest:
            accepted.append(o)
            newest = (o.observed_at, o.seq)
    emitted, _ = run(shuffled)
    assert [c.event_id for c in emitted] == [c.event_id for c in run(accepted)[0]]


@settings(max_examples=200)
@given(
    st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), states), min_size=1, max_size=60),
    st.integers(1, 8),
    st.lists(st.integers(0, 1000), max_size=4),
    st.randoms(use_true_random=False),
)
def test_crash_between_outputs_and_table_loses_no_change(
    drawn: list[tuple[str, tuple[int, str]]], batch_size: int, crashes: list[int], rnd: random.Random
) -> None:
    """The agent's protocol: per batch, send outputs, then store trackers, then commit.
    A crash may hit after any part of the outputs or of the table writes; delivery then
    restarts at the last committed batch. The deduplicated output must equal a run
    without crashes, and nothing emitted may differ from it."""
    seq = [obs(i, free, status=status, slot=slot) for i, (slot, (free, status)) in enumerate(drawn)]
    want: dict[str, AvailabilityChange] = {}
    for slot in "abc":
        want.update(expected([o for o in seq if o.slot == slot]))

    table: dict[str, Tracker] = {}
    emitted: list[AvailabilityChange] = []
    committed = 0
    crash_points = sorted(crashes)
    while committed < len(seq):
        batch = seq[committed : committed + batch_size]
        result = detect_batch(table.get, batch)
        if crash_points and crash_points[0] <= committed + len(batch):
            crash_points.pop(0)
            # Crash: some outputs made it, and maybe some table writes (only after all
            # outputs were acknowledged); the batch is not committed.
            if rnd.random() < 0.5:
                emitted += rnd.sample(result.changes, rnd.randint(0, len(result.changes)))
            else:
                emitted += result.changes
                for key in rnd.sample(sorted(result.trackers), rnd.randint(0, len(result.trackers))):
                    table[key] = result.trackers[key]
            continue
        emitted += result.changes
        table.update(result.trackers)
        committed += len(batch)
    assert {c.event_id for c in emitted} == set(want)
    assert all(c == want[c.event_id] for c in emitted)
