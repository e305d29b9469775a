"""Write one batch of contract records into slotstream's tables, in one transaction.

:func:`write_batch` is idempotent and order-insensitive: applying a batch twice, or
the same records split into batches applied in any order, or redelivered, leaves the
same table content (``availability_current.updated_at`` aside, which records when the
sink last *changed* a row, so it only moves when content does). That is what lets the
runner commit Kafka offsets after the database: a crash in between only causes a
redelivery, and a redelivery is harmless.

How each table stays a function of the *set* of records seen:

- ``availability_changes``, ``booking_events``, ``dead_letters``: insert, ignore
  duplicates of the key (the first stored copy stays).
- ``availability_current`` (seed 001 HutAvailability) and ``booking_counts`` (seed 002):
  upsert only when the incoming ``last_seq`` is ``>=`` the stored one (monotonic), and
  only when content differs.
- ``state_intervals`` (seed 001 HutAvailabilityHistory): one row per change, keyed
  ``(key, first_seen = observed_at, first_seq = seq)``; its state columns come from the
  change. Each AvailabilityCurrent extends the row of its open interval (its
  ``first_seen``, ``first_seq``; created if the change has not arrived yet):
  ``last_seen`` and ``observations`` only grow (GREATEST). A row is closed by its
  *successor*, the next change of the key by ``(observed_at, seq)`` among the stored
  changes: ``ended_at`` = its ``observed_at``; when the successor names this interval as
  its previous one and describes it (``end_confirmed``), ``last_seen`` and
  ``observations`` are its ``previous_last_seen`` and ``previous_observations``, exact,
  whatever snapshots arrived. Rows are written already closed when the successor is
  known; afterwards only the row just before each new change can gain a new successor,
  and its end is recomputed.

  The successor is looked up rather than found through the change's
  ``previous_first_seen``, because sources with date-only timestamps (the hotel data)
  emit several changes of one key with the same ``observed_at``: several rows then share
  ``first_seen`` and only ``seq``, which a change does not carry for its previous
  interval, tells them apart. Looking it up in the stored set also corrects a row whose
  real successor arrives late (out of order, or after a gap).

The one limit: two *different* records claiming the same row key (two changes with the
same ``(key, observed_at, seq)``, two currents with the same ``key`` and ``last_seq``)
cannot both be right; the first stored change wins, the last applied current or count.
The stream never emits such pairs: ids and seqs are deterministic.

Within a batch, records of one key are first reduced in Python (:func:`reduce_batch`) so
that no ``INSERT ... ON CONFLICT DO UPDATE`` meets the same row twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import astuple, dataclass, field, fields
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from sinks.errors import RejectedBatchError, SinkError
from slotstream.contract import (
    AvailabilityChange,
    AvailabilityCurrent,
    BookingCount,
    BookingEvent,
    DeadLetter,
    SlotStatus,
)

__all__ = [
    "IntervalExtension",
    "ReducedBatch",
    "SinkBatch",
    "WriteCounts",
    "reduce_batch",
    "write_batch",
]

V = TypeVar("V")


@dataclass
class SinkBatch:
    """Parsed contract records to write together, per kind, in arrival order."""

    changes: list[AvailabilityChange] = field(default_factory=list)
    currents: list[AvailabilityCurrent] = field(default_factory=list)
    booking_events: list[BookingEvent] = field(default_factory=list)
    booking_counts: list[BookingCount] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)

    def __len__(self) -> int:
        return (
            len(self.changes)
            + len(self.currents)
            + len(self.booking_events)
            + len(self.booking_counts)
            + len(self.dead_letters)
        )


@dataclass(frozen=True)
class WriteCounts:
    """Rows written by :func:`write_batch` (or summed over many calls with ``+``).

    ``records``: records in the batch(es). ``changes``, ``booking_events``,
    ``dead_letters``: rows inserted (duplicates are not counted). ``currents``,
    ``booking_counts``: rows inserted or updated (stale or identical records are not).
    ``intervals``: ``state_intervals`` rows inserted or changed by the batch's own
    records; ``intervals_closed``: earlier rows whose end (``ended_at``, ``last_seen``)
    this batch's changes set or corrected.
    """

    records: int = 0
    changes: int = 0
    currents: int = 0
    booking_events: int = 0
    booking_counts: int = 0
    dead_letters: int = 0
    intervals: int = 0
    intervals_closed: int = 0

    def __add__(self, other: WriteCounts) -> WriteCounts:
        return WriteCounts(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))

    @property
    def rows(self) -> int:
        """Every row inserted or updated, all tables together."""
        return sum(getattr(self, f.name) for f in fields(self) if f.name != "records")


# -- the pure part: reducing a batch ------------------------------------------------------


@dataclass(frozen=True)
class IntervalExtension:
    """What the AvailabilityCurrent records of a batch say about one state interval
    ``(key, first_seen, first_seq)``: it lasted at least until ``last_seen`` (UTC) and
    was observed ``observations`` times (the largest values seen). The state columns are
    those of the record with the highest ``last_seq`` (later wins ties)."""

    key: str
    source: str
    resource_id: str
    slot: str
    slot_start: datetime
    capacity: int | None
    free: int | None
    status: SlotStatus
    occupancy_percent: float | None
    first_seen: datetime
    first_seq: int
    last_seen: datetime
    observations: int
    last_seq: int

    @property
    def interval(self) -> tuple[str, datetime, int]:
        return (self.key, self.first_seen, self.first_seq)

    @classmethod
    def of(cls, cur: AvailabilityCurrent) -> IntervalExtension:
        return cls(
            key=cur.key,
            source=cur.source,
            resource_id=cur.resource_id,
            slot=cur.slot,
            slot_start=cur.slot_start,
            capacity=cur.current.capacity,
            free=cur.current.free,
            status=cur.current.status,
            occupancy_percent=cur.occupancy_percent,
            first_seen=cur.first_seen,
            first_seq=cur.first_seq,
            last_seen=cur.last_seen,
            observations=cur.observations,
            last_seq=cur.last_seq,
        )

    def merge(self, later: IntervalExtension) -> IntervalExtension:
        """Both extensions of the same interval as one (``later`` arrived after ``self``)."""
        base = later if later.last_seq >= self.last_seq else self
        return IntervalExtension(
            **{
                **{f.name: getattr(base, f.name) for f in fields(base)},
                "last_seen": max(self.last_seen, later.last_seen),
                "observations": max(self.observations, later.observations),
            }
        )


def _count_key(c: BookingCount) -> tuple[str, str, str, Any]:
    return (c.source, c.resource_id, c.period, c.bucket)


@dataclass(frozen=True)
class ReducedBatch:
    """A batch with at most one record per table row, as :func:`write_batch` applies it.

    - ``changes`` / ``booking_events`` / ``dead_letters``: one per key
      ``(key, observed_at, seq)`` / ``(event_id, event_time)`` / ``(stage, key)``, the
      first one (like ``ON CONFLICT DO NOTHING``).
    - ``currents``: one per key, the highest ``last_seq`` (a later record wins a tie).
    - ``booking_counts``: one per ``(source, resource_id, period, bucket)``, same rule.
    - ``extensions``: one per interval of *every* current, including currents that lost
      to a later one of their key (their interval still lasted that long).

    Lists are sorted by key so that concurrent writers lock rows in the same order.
    """

    changes: list[AvailabilityChange]
    currents: list[AvailabilityCurrent]
    booking_events: list[BookingEvent]
    booking_counts: list[BookingCount]
    dead_letters: list[DeadLetter]
    extensions: list[IntervalExtension]

    def merge(self, later: ReducedBatch) -> ReducedBatch:
        """The reduction of this batch's records followed by ``later``'s: for any batches
        ``a``, ``b``: ``reduce(a + b) == reduce(a).merge(reduce(b))``, the rule the
        tables follow across :func:`write_batch` calls."""
        r = _Reducer()
        for batch in (self, later):
            r.add(batch.changes, batch.currents, batch.booking_events, batch.booking_counts, batch.dead_letters)
            for ext in batch.extensions:
                r.add_extension(ext)
        return r.result()


class _Reducer:
    def __init__(self) -> None:
        self.changes: dict[tuple[str, datetime, int], AvailabilityChange] = {}
        self.currents: dict[str, AvailabilityCurrent] = {}
        self.events: dict[tuple[str, datetime], BookingEvent] = {}
        self.counts: dict[tuple[str, str, str, Any], BookingCount] = {}
        self.dead: dict[tuple[str, str], DeadLetter] = {}
        self.extensions: dict[tuple[str, datetime, int], IntervalExtension] = {}

    def add(
        self,
        changes: Iterable[AvailabilityChange] = (),
        currents: Iterable[AvailabilityCurrent] = (),
        booking_events: Iterable[BookingEvent] = (),
        booking_counts: Iterable[BookingCount] = (),
        dead_letters: Iterable[DeadLetter] = (),
    ) -> None:
        for c in changes:
            self.changes.setdefault((c.key, c.observed_at, c.seq), c)
        for cur in currents:
            have = self.currents.get(cur.key)
            if have is None or cur.last_seq >= have.last_seq:
                self.currents[cur.key] = cur
            self.add_extension(IntervalExtension.of(cur))
        for e in booking_events:
            self.events.setdefault((e.event_id, e.event_time), e)
        for n in booking_counts:
            k = _count_key(n)
            had = self.counts.get(k)
            if had is None or n.last_seq >= had.last_seq:
                self.counts[k] = n
        for d in dead_letters:
            self.dead.setdefault((d.stage, d.key), d)

    def add_extension(self, ext: IntervalExtension) -> None:
        have = self.extensions.get(ext.interval)
        self.extensions[ext.interval] = ext if have is None else have.merge(ext)

    def result(self) -> ReducedBatch:
        return ReducedBatch(
            changes=_by_key(self.changes),
            currents=_by_key(self.currents),
            booking_events=_by_key(self.events),
            booking_counts=_by_key(self.counts),
            dead_letters=_by_key(self.dead),
            extensions=_by_key(self.extensions),
        )


def _by_key(d: Mapping[Any, V]) -> list[V]:
    return [d[k] for k in sorted(d)]


def reduce_batch(batch: SinkBatch) -> ReducedBatch:
    """At most one record per table row (see :class:`ReducedBatch`); pure, no I/O."""
    r = _Reducer()
    r.add(batch.changes, batch.currents, batch.booking_events, batch.booking_counts, batch.dead_letters)
    return r.result()


# -- the database part ------------------------------------------------------------------

_Cols = tuple[tuple[str, str], ...]

_CHANGE_COLS: _Cols = (
    ("key", "text"),
    ("source", "text"),
    ("resource_id", "text"),
    ("slot", "text"),
    ("slot_start", "timestamptz"),
    ("slot_end", "timestamptz"),
    ("observed_at", "timestamptz"),
    ("seq", "bigint"),
    ("event_id", "text"),
    ("prev_capacity", "integer"),
    ("prev_free", "integer"),
    ("prev_status", "text"),
    ("capacity", "integer"),
    ("free", "integer"),
    ("status", "text"),
    ("delta_free", "integer"),
    ("previous_first_seen", "timestamptz"),
    ("previous_last_seen", "timestamptz"),
    ("previous_duration_s", "double precision"),
    ("previous_observations", "integer"),
    ("occupancy_percent", "double precision"),
    ("occupancy_steps", "integer"),
    ("occupancy_status", "text"),
    ("attributes", "jsonb"),
)
_CURRENT_COLS: _Cols = (
    ("key", "text"),
    ("source", "text"),
    ("resource_id", "text"),
    ("slot", "text"),
    ("slot_start", "timestamptz"),
    ("slot_end", "timestamptz"),
    ("capacity", "integer"),
    ("free", "integer"),
    ("status", "text"),
    ("occupancy_percent", "double precision"),
    ("occupancy_steps", "integer"),
    ("occupancy_status", "text"),
    ("first_seen", "timestamptz"),
    ("last_seen", "timestamptz"),
    ("first_seq", "bigint"),
    ("last_seq", "bigint"),
    ("observations", "integer"),
    ("attributes", "jsonb"),
)
_EVENT_COLS: _Cols = (
    ("event_id", "text"),
    ("event_time", "timestamptz"),
    ("seq", "bigint"),
    ("kind", "text"),
    ("booking_id", "text"),
    ("source", "text"),
    ("resource_id", "text"),
    ("arrival_date", "date"),
    ("nights", "integer"),
    ("lead_time_days", "integer"),
    ("rooms", "integer"),
    ("schema_version", "smallint"),
)
_COUNT_COLS: _Cols = (
    ("source", "text"),
    ("resource_id", "text"),
    ("period", "text"),
    ("bucket", "date"),
    ("created", "integer"),
    ("cancelled", "integer"),
    ("net", "integer"),
    ("last_seq", "bigint"),
)
_DEAD_COLS: _Cols = (
    ("stage", "text"),
    ("dl_key", "text"),
    ("failed_at", "timestamptz"),
    ("error", "text"),
    ("raw", "text"),
    ("raw_encoding", "text"),
    ("origin", "jsonb"),
)
_EXT_COLS: _Cols = (
    ("key", "text"),
    ("source", "text"),
    ("resource_id", "text"),
    ("slot", "text"),
    ("slot_start", "timestamptz"),
    ("capacity", "integer"),
    ("free", "integer"),
    ("status", "text"),
    ("occupancy_percent", "double precision"),
    ("first_seen", "timestamptz"),
    ("first_seq", "bigint"),
    ("last_seen", "timestamptz"),
    ("observations", "integer"),
)
# Neighbour lookups, set-based (see _statements): per key of the batch, the stored rows
# from the interval just before the batch's first position ("from") to its last ("hi").
_KEY_COLS: _Cols = (
    ("key", "text"),
    ("from_at", "timestamptz"),
    ("from_seq", "bigint"),
    ("hi_at", "timestamptz"),
    ("hi_seq", "bigint"),
)
# A stored change, as a successor: what closing an interval reads of it.
_NEXT_COLS: _Cols = (
    ("key", "text"),
    ("observed_at", "timestamptz"),
    ("seq", "bigint"),
    ("previous_first_seen", "timestamptz"),
    ("previous_last_seen", "timestamptz"),
    ("previous_observations", "integer"),
)
# The successor (NULLs: none stored) of each interval the batch writes.
_SUCC_COLS: _Cols = (("key", "text"), ("first_seen", "timestamptz"), ("first_seq", "bigint"), *_NEXT_COLS[1:])
# State columns of an interval: taken from its change when there is one (a change wins
# over an AvailabilityCurrent, so the result does not depend on which came first).
_INTERVAL_STATE = ("source", "resource_id", "slot", "slot_start", "capacity", "free", "status", "occupancy_percent")

# Temp staging tables, created once per session; ON COMMIT DELETE ROWS empties them at
# every commit without the catalog churn of creating and dropping tables per batch.
_STAGES: dict[str, _Cols] = {
    "slotstream_stage_changes": _CHANGE_COLS,
    "slotstream_stage_current": _CURRENT_COLS,
    "slotstream_stage_events": _EVENT_COLS,
    "slotstream_stage_counts": _COUNT_COLS,
    "slotstream_stage_dead": _DEAD_COLS,
    "slotstream_stage_ext": _EXT_COLS,
    "slotstream_stage_keys": _KEY_COLS,
    "slotstream_stage_next": _NEXT_COLS,
    "slotstream_stage_succ": _SUCC_COLS,
}


def _names(cols: _Cols | Sequence[str], prefix: str | None = None) -> sql.Composable:
    names = [c if isinstance(c, str) else c[0] for c in cols]
    if prefix is None:
        return sql.SQL(", ").join(map(sql.Identifier, names))
    return sql.SQL(", ").join(sql.Identifier(prefix, n) for n in names)


def _change_row(c: AvailabilityChange) -> tuple[Any, ...]:
    prev = c.previous
    return (
        c.key,
        c.source,
        c.resource_id,
        c.slot,
        c.slot_start,
        c.slot_end,
        c.observed_at,
        c.seq,
        c.event_id,
        None if prev is None else prev.capacity,
        None if prev is None else prev.free,
        None if prev is None else prev.status,
        c.current.capacity,
        c.current.free,
        c.current.status,
        c.delta_free,
        c.previous_first_seen,
        c.previous_last_seen,
        c.previous_duration_s,
        c.previous_observations,
        c.occupancy_percent,
        c.occupancy_steps,
        c.occupancy_status,
        c.attributes,
    )


def _current_row(c: AvailabilityCurrent) -> tuple[Any, ...]:
    return (
        c.key,
        c.source,
        c.resource_id,
        c.slot,
        c.slot_start,
        c.slot_end,
        c.current.capacity,
        c.current.free,
        c.current.status,
        c.occupancy_percent,
        c.occupancy_steps,
        c.occupancy_status,
        c.first_seen,
        c.last_seen,
        c.first_seq,
        c.last_seq,
        c.observations,
        c.attributes,
    )


def _event_row(e: BookingEvent) -> tuple[Any, ...]:
    return (
        e.event_id,
        e.event_time,
        e.seq,
        e.kind,
        e.booking_id,
        e.source,
        e.resource_id,
        e.arrival_date,
        e.nights,
        e.lead_time_days,
        e.rooms,
        e.schema_version,
    )


def _count_row(n: BookingCount) -> tuple[Any, ...]:
    return (n.source, n.resource_id, n.period, n.bucket, n.created, n.cancelled, n.net, n.last_seq)


def _dead_row(d: DeadLetter) -> tuple[Any, ...]:
    return (d.stage, d.key, d.failed_at, d.error, d.raw, d.raw_encoding, d.origin.model_dump(mode="json"))


def _ext_row(x: IntervalExtension) -> tuple[Any, ...]:
    return (
        x.key,
        x.source,
        x.resource_id,
        x.slot,
        x.slot_start,
        x.capacity,
        x.free,
        x.status,
        x.occupancy_percent,
        x.first_seen,
        x.first_seq,
        x.last_seen,
        x.observations,
    )


def _stage_type(pg_type: str) -> str:
    # Binary COPY: psycopg's int4 dumper wraps values beyond 32 bits silently, so integers
    # are staged as bigint and the INSERT's cast to integer range-checks them (22003).
    return "bigint" if pg_type in ("integer", "smallint") else pg_type


def _copy(cur: psycopg.Cursor[Any], table: str, rows: Iterable[tuple[Any, ...]]) -> None:
    """COPY ``rows`` into staging table ``table`` in binary format (2-3x faster than text
    here); jsonb values are Python dicts, dumped by psycopg."""
    cols = _STAGES[table]
    stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(sql.Identifier(table), _names(cols))
    with cur.copy(stmt) as copy:
        copy.set_types([_stage_type(t) for _, t in cols])
        for row in rows:
            copy.write_row(row)


def _upsert_set(cols: Sequence[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in cols)


# -- closing intervals: successors and predecessors, set-based ----------------------------
#
# An interval (key, first_seen, first_seq) is closed by its *successor*, the first stored
# change of its key after it by (observed_at, seq); a batch change may become the
# successor of the stored interval just before it, its *predecessor*. Both used to be
# looked up per row (an index probe into the hypertables per interval written, two per
# change for predecessors: ~80 % of the sink's database time in the hotel replay). They
# are now found for the whole batch at once from a few rows per key, which is exact:
#
# - Per key of the batch, lo and hi are the first and last position of the batch's
#   changes and AvailabilityCurrent intervals, and "from" is the stored interval just
#   before lo (lo when there is none): slotstream_stage_keys, one probe per key.
# - slotstream_stage_next holds the key's stored changes in [from, hi] (this batch's
#   included) plus the first one after hi: two probes per key. For any position q in
#   [from, hi] the first of these after q is q's successor among *all* stored changes
#   (every stored change after q up to its successor is among them). Every interval the
#   batch writes lies in [lo, hi], and every predecessor in [from, hi] (the interval just
#   before a change at or after lo is "from" or later).
# - Predecessors come from the key's stored intervals in [from, hi] (one range scan per
#   key, after this batch's intervals are written): the interval just before a batch
#   change is the last of them before it.
#
# "The first candidate after q" is found without a per-row lookup and without a join:
# q and the candidates are sorted together per key, a running count of candidates
# (``grp``) puts each candidate and the rows up to the next one into one group, and the
# group's first row, a window's first_value, is the candidate sought. Two sorts per
# statement, O(n log n) however many rows a key has in the batch (a join on a rank
# degraded to a per-key nested comparison when the planner misjudged the sizes). In the
# replay a key has ~7 positions in a batch: small sorts instead of ~11k index probes.


def _bounded(s: sql.Identifier, table: str, at: str, seq: str, cols: Sequence[str]) -> sql.Composed:
    """Rows of ``table`` (positions ``at``, ``seq``) of each key in slotstream_stage_keys
    from its "from" to its "hi" position, both included: one index range scan (primary
    key) per key. The bounds on ``at`` alone, the batch-wide ones as query parameters
    ``from_min`` / ``hi_max`` (constants when planned), let TimescaleDB skip the chunks
    outside the batch's span at plan time instead of probing every chunk for every key.
    OFFSET 0 keeps the subquery a per-key probe: pulled up, the planner may hash-join a
    whole hypertable instead (seen once the chunks had statistics)."""
    return sql.SQL(
        "SELECT {cols} FROM slotstream_stage_keys k CROSS JOIN LATERAL ("
        "SELECT {cols} FROM {s}.{table} t WHERE t.key = k.key "
        "AND t.{at} >= %(from_min)s AND t.{at} <= %(hi_max)s "
        "AND t.{at} >= k.from_at AND t.{at} <= k.hi_at "
        "AND (t.{at}, t.{seq}) >= (k.from_at, k.from_seq) AND (t.{at}, t.{seq}) <= (k.hi_at, k.hi_seq) "
        "OFFSET 0) t"
    ).format(
        cols=_names(cols, "t"),
        s=s,
        table=sql.Identifier(table),
        at=sql.Identifier(at),
        seq=sql.Identifier(seq),
    )


def _successors(queries: sql.Composable) -> sql.Composed:
    """``key, first_seen, first_seq`` of each row of ``queries`` (positions within the
    keys' [from, hi], distinct) with the columns of its successor from
    slotstream_stage_next (NULLs when the key has no stored change after it).

    Walked backwards (latest first), ``grp`` counts the candidates met so far; a query's
    group starts with the first candidate after it. A candidate at the very position of
    a query sorts after it (``is_query DESC``), so the successor is strictly later."""
    nx = [c for c, _ in _NEXT_COLS[3:]]
    return sql.SQL(
        "WITH u AS ("
        "SELECT key, first_seen AS at, first_seq AS seq, true AS is_query, {nulls} FROM ({queries}) q "
        "UNION ALL SELECT key, observed_at, seq, false, {nx} FROM slotstream_stage_next"
        "), g AS ("
        "SELECT u.*, count(*) FILTER (WHERE NOT is_query) OVER ("
        "PARTITION BY key ORDER BY at DESC, seq DESC, is_query DESC ROWS UNBOUNDED PRECEDING) AS grp FROM u"
        "), h AS ("
        "SELECT key, at, seq, is_query, grp, {firsts} FROM g "
        "WINDOW w AS (PARTITION BY key, grp ORDER BY at DESC, seq DESC, is_query DESC)"
        ") "
        "SELECT key, at AS first_seen, seq AS first_seq, {succ} FROM h WHERE is_query"
    ).format(
        queries=queries,
        nulls=sql.SQL(", ").join(
            sql.SQL("NULL::{} AS {}").format(sql.SQL(_stage_type(t)), sql.Identifier(c)) for c, t in _NEXT_COLS[3:]
        ),
        nx=_names(nx),
        firsts=sql.SQL(", ").join(
            sql.SQL("first_value({c}) OVER w AS {n}").format(c=sql.Identifier(c), n=sql.Identifier(n))
            for c, n in [("at", "nx_at"), ("seq", "nx_seq")] + [(c, f"nx_{c}") for c in nx]
        ),
        # grp 0: no candidate after the query, its group's first row is a query.
        succ=sql.SQL(", ").join(
            sql.SQL("CASE WHEN grp > 0 THEN {} END AS {}").format(sql.Identifier(f"nx_{c}"), sql.Identifier(o))
            for c, o in [("at", "observed_at"), ("seq", "seq"), *((c, c) for c in nx)]
        ),
    )


# A successor *confirms* the end of an interval when it names the interval's start as its
# previous one and reports it fully (AvailabilityChange.previous_last_seen and
# .previous_observations): those are then the interval's exact last_seen and observation
# count, and they *replace* whatever snapshots said (a snapshot never knows more; and a
# successor displaced by a late change - date-only ties - must not leave its numbers
# behind, which a GREATEST would). Otherwise a change in between is missing (or not yet
# arrived), or the producer does not report the count: the interval keeps what its own
# records (its change, AvailabilityCurrent snapshots) showed, r.seen and r.observations.
_CONFIRMED = sql.SQL(
    "(nx.previous_first_seen = r.first_seen AND nx.previous_last_seen IS NOT NULL "
    "AND nx.previous_observations IS NOT NULL)"
)
_LAST_SEEN = sql.SQL("CASE WHEN {c} THEN nx.previous_last_seen ELSE r.seen END").format(c=_CONFIRMED)
_OBSERVATIONS = sql.SQL("CASE WHEN {c} THEN nx.previous_observations ELSE r.observations END").format(c=_CONFIRMED)
_INTERVAL_COLS = (
    *_INTERVAL_STATE,
    "key",
    "first_seen",
    "first_seq",
    "observations",
    "last_seen",
    "end_confirmed",
    "ended_at",
    "ended_seq",
)


def _same_interval(a: str, b: str, first_seen: str, first_seq: str) -> sql.Composed:
    """``a`` (a state_intervals-shaped row) is the interval ``b`` opens or describes."""
    return sql.SQL("{a}.key = {b}.key AND {a}.first_seen = {b}.{t} AND {a}.first_seq = {b}.{q}").format(
        a=sql.Identifier(a), b=sql.Identifier(b), t=sql.Identifier(first_seen), q=sql.Identifier(first_seq)
    )


def _interval_upsert(s: sql.Identifier, rows: sql.Composable, *, with_state: bool) -> sql.Composed:
    """Insert (or merge into) one state_intervals row per row of ``rows``, already closed by
    its successor when there is one (from slotstream_stage_succ). ``rows`` yields the
    state columns, key, first_seen, first_seq, seen (the latest time its records showed
    the state) and observations, at most once per interval."""
    merged: list[tuple[str, str]] = [(c, f"EXCLUDED.{c}") for c in _INTERVAL_STATE] if with_state else []
    merged += [
        # A confirmed end is exact and replaces whatever was known (which may have come from
        # a successor that a late change has since displaced); otherwise both only grow, a
        # max, whatever order the interval's records arrive in.
        (
            "observations",
            "CASE WHEN EXCLUDED.end_confirmed THEN EXCLUDED.observations "
            "ELSE GREATEST(si.observations, EXCLUDED.observations) END",
        ),
        (
            "last_seen",
            "CASE WHEN EXCLUDED.end_confirmed THEN EXCLUDED.last_seen "
            "ELSE GREATEST(si.last_seen, EXCLUDED.last_seen) END",
        ),
        # The successor was looked up among all stored changes, this batch's included.
        ("end_confirmed", "EXCLUDED.end_confirmed"),
        ("ended_at", "EXCLUDED.ended_at"),
        ("ended_seq", "EXCLUDED.ended_seq"),
    ]
    return sql.SQL(
        "INSERT INTO {s}.state_intervals AS si ({cols}) "
        "SELECT {r_state}, r.key, r.first_seen, r.first_seq, {observations}, "
        "{last_seen}, COALESCE({confirmed}, false), nx.observed_at, nx.seq "
        "FROM ({rows}) r LEFT JOIN slotstream_stage_succ nx ON {nx_is_r} "
        "ORDER BY r.key, r.first_seen, r.first_seq "
        "ON CONFLICT (key, first_seen, first_seq) DO UPDATE SET {set} "
        "WHERE ({si_cols}) IS DISTINCT FROM ({new})"
    ).format(
        s=s,
        cols=_names(_INTERVAL_COLS),
        r_state=_names(_INTERVAL_STATE, "r"),
        observations=_OBSERVATIONS,
        last_seen=_LAST_SEEN,
        confirmed=_CONFIRMED,
        rows=rows,
        nx_is_r=_same_interval("nx", "r", "first_seen", "first_seq"),
        set=sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(c), sql.SQL(e)) for c, e in merged),
        si_cols=_names([c for c, _ in merged], "si"),
        new=sql.SQL(", ").join(sql.SQL(e) for _, e in merged),
    )


def _statements(schema: str) -> dict[str, sql.Composed]:
    s = sql.Identifier(schema)
    change_cols = _names(_CHANGE_COLS)
    current_names = [c for c, _ in _CURRENT_COLS if c != "key"]
    count_names = [c for c, _ in _COUNT_COLS if c not in ("source", "resource_id", "period", "bucket")]
    change_opens_x = _same_interval("x", "c", "observed_at", "seq")
    # Every interval the batch writes: each change's, and each current's.
    batch_intervals = sql.SQL(
        "SELECT key, observed_at AS first_seen, seq AS first_seq FROM slotstream_stage_changes "
        "UNION SELECT key, first_seen, first_seq FROM slotstream_stage_ext"
    )
    return {
        "changes": sql.SQL(
            "INSERT INTO {s}.availability_changes ({cols}) SELECT {cols} FROM slotstream_stage_changes "
            "ORDER BY key, observed_at, seq ON CONFLICT DO NOTHING"
        ).format(s=s, cols=change_cols),
        # Per key: lo, hi and "from" (the stored interval before lo, else lo itself).
        "keys": sql.SQL(
            "INSERT INTO slotstream_stage_keys (key, from_at, from_seq, hi_at, hi_seq) "
            "SELECT b.key, COALESCE(p.first_seen, b.lo_at), COALESCE(p.first_seq, b.lo_seq), b.hi_at, b.hi_seq "
            "FROM (SELECT DISTINCT ON (key) key, first_seen AS lo_at, first_seq AS lo_seq, "
            "last_value(first_seen) OVER w AS hi_at, last_value(first_seq) OVER w AS hi_seq "
            "FROM ({batch_intervals}) i "
            "WINDOW w AS (PARTITION BY key ORDER BY first_seen, first_seq "
            "ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) "
            "ORDER BY key, first_seen, first_seq) b "
            "LEFT JOIN LATERAL (SELECT si.first_seen, si.first_seq FROM {s}.state_intervals si "
            "WHERE si.key = b.key AND si.first_seen <= b.lo_at AND (si.first_seen, si.first_seq) < (b.lo_at, b.lo_seq) "
            "ORDER BY si.first_seen DESC, si.first_seq DESC LIMIT 1) p ON true"
        ).format(s=s, batch_intervals=batch_intervals),
        # Candidate successors: stored changes in [from, hi] and the first one after hi.
        "next": sql.SQL(
            "INSERT INTO slotstream_stage_next ({cols}) {bounded} "
            "UNION ALL SELECT {nx_cols} FROM slotstream_stage_keys k CROSS JOIN LATERAL ("
            "SELECT {c_cols} FROM {s}.availability_changes c WHERE c.key = k.key "
            "AND c.observed_at >= %(hi_min)s AND c.observed_at >= k.hi_at "
            "AND (c.observed_at, c.seq) > (k.hi_at, k.hi_seq) ORDER BY c.observed_at, c.seq LIMIT 1) nx"
        ).format(
            s=s,
            cols=_names(_NEXT_COLS),
            bounded=_bounded(s, "availability_changes", "observed_at", "seq", [c for c, _ in _NEXT_COLS]),
            nx_cols=_names(_NEXT_COLS, "nx"),
            c_cols=_names(_NEXT_COLS, "c"),
        ),
        "succ": sql.SQL("INSERT INTO slotstream_stage_succ ({cols}) {succ}").format(
            cols=_names(_SUCC_COLS), succ=_successors(batch_intervals)
        ),
        # The interval each change opens, merged with what this batch's currents say of it.
        # Its state comes from the change (a change wins over a current, whichever came first).
        "intervals_of_changes": _interval_upsert(
            s,
            sql.SQL(
                "SELECT {c_state}, c.key, c.observed_at AS first_seen, c.seq AS first_seq, "
                "GREATEST(c.observed_at, x.last_seen) AS seen, GREATEST(1, x.observations) AS observations "
                "FROM slotstream_stage_changes c LEFT JOIN slotstream_stage_ext x ON {on}"
            ).format(c_state=_names(_INTERVAL_STATE, "c"), on=change_opens_x),
            with_state=True,
        ),
        # Intervals that only currents of this batch mention: extend them (or create them,
        # when the change that opened them has not arrived yet).
        "intervals_of_currents": _interval_upsert(
            s,
            sql.SQL(
                "SELECT {state}, x.key, x.first_seen, x.first_seq, x.last_seen AS seen, x.observations "
                "FROM slotstream_stage_ext x "
                "WHERE NOT EXISTS (SELECT 1 FROM slotstream_stage_changes c WHERE {on})"
            ).format(state=_names(_INTERVAL_STATE, "x"), on=change_opens_x),
            with_state=False,
        ),
        # Older intervals whose successor may now be one of this batch's changes: the one
        # just before each change (normally the interval the change ends). Rows written by
        # this batch are left out: they were closed correctly when written. Intervals of
        # [from, hi] are read after this batch's were written, so that a predecessor is
        # the last interval before the change among all of them: walking forwards, grp
        # counts intervals, so a change's group starts with the last interval before it
        # (a change sorts before its own interval, is_change DESC).
        "close_predecessors": sql.SQL(
            """
            WITH iv AS ({intervals}),
            g AS (
                SELECT u.*, count(*) FILTER (WHERE NOT is_change) OVER (
                    PARTITION BY key ORDER BY at, seq, is_change DESC ROWS UNBOUNDED PRECEDING) AS grp
                FROM (
                    SELECT key, observed_at AS at, seq, true AS is_change,
                           NULL::timestamptz AS last_seen, NULL::integer AS observations
                    FROM slotstream_stage_changes
                    UNION ALL SELECT key, first_seen, first_seq, false, last_seen, observations FROM iv
                ) u
            ),
            h AS (
                SELECT key, is_change, grp, first_value(at) OVER w AS p_at, first_value(seq) OVER w AS p_seq,
                       first_value(last_seen) OVER w AS p_last_seen, first_value(observations) OVER w AS p_obs
                FROM g WINDOW w AS (PARTITION BY key, grp ORDER BY at, seq, is_change DESC)
            ),
            pred AS (
                SELECT DISTINCT p.key, p.first_seen, p.first_seq, p.seen, p.observations
                FROM (
                    SELECT key, p_at AS first_seen, p_seq AS first_seq, p_last_seen AS seen, p_obs AS observations
                    FROM h WHERE is_change AND grp > 0
                ) p
                WHERE NOT EXISTS (SELECT 1 FROM slotstream_stage_changes c WHERE {c_is_p})
                  AND NOT EXISTS (SELECT 1 FROM slotstream_stage_ext x WHERE {x_is_p})
            ),
            succ AS ({successors}),
            closing AS (
                SELECT r.key, r.first_seen, r.first_seq, nx.observed_at AS ended_at, nx.seq AS ended_seq,
                       {last_seen} AS last_seen, {confirmed} AS end_confirmed, {observations} AS observations
                FROM pred r JOIN succ nx ON {nx_is_r}
                WHERE nx.observed_at IS NOT NULL
            )
            UPDATE {s}.state_intervals si
            SET ended_at = cl.ended_at, ended_seq = cl.ended_seq, last_seen = cl.last_seen,
                end_confirmed = cl.end_confirmed, observations = cl.observations
            FROM closing cl
            WHERE si.key = cl.key AND si.first_seen = cl.first_seen AND si.first_seq = cl.first_seq
              AND si.first_seen >= %(from_min)s AND si.first_seen <= %(hi_max)s
              AND (si.ended_at, si.ended_seq, si.last_seen, si.end_confirmed, si.observations)
                  IS DISTINCT FROM (cl.ended_at, cl.ended_seq, cl.last_seen, cl.end_confirmed, cl.observations)
            """
        ).format(
            s=s,
            intervals=_bounded(
                s,
                "state_intervals",
                "first_seen",
                "first_seq",
                ["key", "first_seen", "first_seq", "last_seen", "observations"],
            ),
            c_is_p=_same_interval("p", "c", "observed_at", "seq"),
            x_is_p=_same_interval("p", "x", "first_seen", "first_seq"),
            successors=_successors(sql.SQL("SELECT key, first_seen, first_seq FROM pred")),
            nx_is_r=_same_interval("nx", "r", "first_seen", "first_seq"),
            last_seen=_LAST_SEEN,
            confirmed=_CONFIRMED,
            observations=_OBSERVATIONS,
        ),
        "currents": sql.SQL(
            "INSERT INTO {s}.availability_current AS t ({cols}, updated_at) "
            "SELECT {cols}, now() FROM slotstream_stage_current "
            "ON CONFLICT (key) DO UPDATE SET {set}, updated_at = EXCLUDED.updated_at "
            "WHERE EXCLUDED.last_seq >= t.last_seq AND ({t_cols}) IS DISTINCT FROM ({ex_cols})"
        ).format(
            s=s,
            cols=_names(_CURRENT_COLS),
            set=_upsert_set(current_names),
            t_cols=_names(current_names, "t"),
            ex_cols=_names(current_names, "excluded"),
        ),
        "booking_events": sql.SQL(
            "INSERT INTO {s}.booking_events ({cols}) SELECT {cols} FROM slotstream_stage_events ON CONFLICT DO NOTHING"
        ).format(s=s, cols=_names(_EVENT_COLS)),
        "booking_counts": sql.SQL(
            "INSERT INTO {s}.booking_counts AS t ({cols}) SELECT {cols} FROM slotstream_stage_counts "
            "ON CONFLICT (source, resource_id, period, bucket) DO UPDATE SET {set} "
            "WHERE EXCLUDED.last_seq >= t.last_seq AND ({t_cols}) IS DISTINCT FROM ({ex_cols})"
        ).format(
            s=s,
            cols=_names(_COUNT_COLS),
            set=_upsert_set(count_names),
            t_cols=_names(count_names, "t"),
            ex_cols=_names(count_names, "excluded"),
        ),
        "dead_letters": sql.SQL(
            "INSERT INTO {s}.dead_letters ({cols}) SELECT {cols} FROM slotstream_stage_dead ON CONFLICT DO NOTHING"
        ).format(s=s, cols=_names(_DEAD_COLS)),
    }


# The batch-wide bounds of the per-key probes (see _bounded).
_KEY_BOUNDS = "SELECT min(from_at), min(hi_at), max(hi_at) FROM slotstream_stage_keys"

_STAGE_DDL = sql.SQL("; ").join(
    sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ({}) ON COMMIT DELETE ROWS").format(
        sql.Identifier(name),
        sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(_stage_type(t))) for c, t in cols),
    )
    for name, cols in _STAGES.items()
)


def write_batch(conn: psycopg.Connection[Any], batch: SinkBatch, *, schema: str | None = None) -> WriteCounts:
    """Write ``batch`` into the tables of ``schema`` in one transaction; returns the counts.

    ``schema`` defaults to the connection's ``current_schema()``. ``conn`` must be outside
    a transaction (autocommit or idle): the transaction commits before this returns, so
    the caller may acknowledge the records afterwards. Each kind is COPYed into a temp
    staging table, then moved with one ``INSERT ... SELECT`` per table (see the module
    docstring for the rules).

    Raises :class:`SinkError` when ``conn`` is inside a transaction, and
    :class:`RejectedBatchError` (cause chained) when the database refuses a record's data
    (an integer beyond 32 bits, a NUL character in text, ...). Other psycopg errors
    propagate as they are (``OperationalError``: the connection was lost). Either way the
    transaction rolled back: nothing of the batch is kept.
    """
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise SinkError("write_batch() commits its own transaction: pass a connection outside one")
    try:
        return _write(conn, batch, schema)
    except (psycopg.errors.DataError, psycopg.errors.IntegrityError, OverflowError) as exc:
        # OverflowError: an integer beyond 64 bits, refused by psycopg before the server.
        raise RejectedBatchError(f"the database refused the batch: {exc}") from exc


def _write(conn: psycopg.Connection[Any], batch: SinkBatch, schema: str | None) -> WriteCounts:
    red = reduce_batch(batch)
    with conn.transaction(), conn.cursor() as cur:
        if schema is None:
            row = cur.execute("SELECT current_schema()").fetchone()
            if row is None or row[0] is None:
                raise SinkError("no schema given and the connection's search_path names none that exists")
            schema = str(row[0])
        stmts = _statements(schema)
        cur.execute(_STAGE_DDL)

        def run(name: str) -> int:
            cur.execute(stmts[name])
            return max(cur.rowcount, 0)

        changes = intervals = closed = currents = events = counts = dead = 0
        if red.changes:
            _copy(cur, "slotstream_stage_changes", map(_change_row, red.changes))
            changes = run("changes")
        if red.extensions:
            _copy(cur, "slotstream_stage_ext", map(_ext_row, red.extensions))
        # Intervals after the changes: closing an interval looks its successor up among the
        # stored changes, this batch's included.
        bounds: dict[str, Any] = {}
        if red.changes or red.extensions:
            cur.execute(stmts["keys"])
            row = cur.execute(_KEY_BOUNDS).fetchone()
            assert row is not None  # an aggregate without GROUP BY returns one row
            bounds = dict(zip(("from_min", "hi_min", "hi_max"), row, strict=True))
            cur.execute(stmts["next"], bounds)
            cur.execute(stmts["succ"])
        if red.changes:
            intervals += run("intervals_of_changes")
        if red.extensions:
            intervals += run("intervals_of_currents")
        if red.changes:
            cur.execute(stmts["close_predecessors"], bounds)
            closed = max(cur.rowcount, 0)
        if red.currents:
            _copy(cur, "slotstream_stage_current", map(_current_row, red.currents))
            currents = run("currents")
        if red.booking_events:
            _copy(cur, "slotstream_stage_events", map(_event_row, red.booking_events))
            events = run("booking_events")
        if red.booking_counts:
            _copy(cur, "slotstream_stage_counts", map(_count_row, red.booking_counts))
            counts = run("booking_counts")
        if red.dead_letters:
            _copy(cur, "slotstream_stage_dead", map(_dead_row, red.dead_letters))
            dead = run("dead_letters")
    return WriteCounts(
        records=len(batch),
        changes=changes,
        currents=currents,
        booking_events=events,
        booking_counts=counts,
        dead_letters=dead,
        intervals=intervals,
        intervals_closed=closed,
    )
