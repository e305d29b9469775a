"""Replay the hotel booking demand dataset as booking events (seed 002's events).

``hotel_bookings.csv.gz`` (N. Antonio, A. de Almeida, L. Nunes, *Data in Brief* 22
(2019) 41–49, CC BY 4.0) has one row per booking. Each row becomes one ``created``
:class:`~slotstream.contract.BookingEvent` and, when the booking was cancelled, one
``cancelled`` event. The rules are those of ``shared/data/README.md``:

- a booking's id comes from its row's position in the file (``hotel_bookings-000001``
  is the first data row); identical rows are distinct bookings and are never
  deduplicated;
- it is created on arrival date − ``lead_time`` days and holds one room (``rooms=1``)
  for each of its ``stays_in_weekend_nights + stays_in_week_nights`` nights (0 nights
  is valid: the booking holds none);
- only ``reservation_status == "Canceled"`` is a cancellation, on
  ``reservation_status_date``; ``No-Show`` is not (the hotel held the rooms);
- event times are dates only, so each event is at 00:00 UTC of its date, and events
  are ordered by ``(date, created before cancelled, row)``: a booking cancelled on the
  day it was made is cancelled after it was created. ``seq`` is the position in that
  order (0..n-1), which seed 002's consumers need to apply each event once.

Parsing and derivation (:func:`parse_booking_csv`, :func:`read_booking_events`,
:func:`order_events`) are pure and never touch Kafka; :func:`produce_hotel_bookings`
sends their result.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from slotstream.contract import BookingEvent, DeadLetter, FileOrigin
from slotstream.errors import SlotstreamError
from slotstream.settings import Settings

__all__ = [
    "DEFAULT_FILE",
    "REQUIRED_COLUMNS",
    "SOURCE",
    "STAGE",
    "Booking",
    "HotelDataError",
    "HotelReplay",
    "ProduceError",
    "ProduceSummary",
    "order_events",
    "parse_booking_csv",
    "produce_hotel_bookings",
    "read_booking_events",
]

#: ``source`` of every event, and the prefix of every booking id.
SOURCE: Final = "hotel_bookings"
#: ``stage`` of the dead letters this producer writes.
STAGE: Final = "producer.hotel-bookings"
#: File name under ``Settings.data_dir`` read when no path is given.
DEFAULT_FILE: Final = "hotel_bookings.csv.gz"

#: Columns the rules read; the other columns of the 32 are carried but not used.
REQUIRED_COLUMNS: Final = (
    "hotel",
    "is_canceled",
    "lead_time",
    "arrival_date_year",
    "arrival_date_month",
    "arrival_date_day_of_month",
    "stays_in_weekend_nights",
    "stays_in_week_nights",
    "reservation_status",
    "reservation_status_date",
)
_MONTHS: Final = {
    name: number
    for number, name in enumerate(
        (
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ),
        start=1,
    )
}
#: reservation_status -> the is_canceled it implies (shared/data/README.md: No-Show rows
#: have is_canceled = 1 but are not cancellations).
_STATUSES: Final = {"Check-Out": 0, "Canceled": 1, "No-Show": 1}
#: The contract's limit on ``BookingEvent.nights``.
_MAX_NIGHTS: Final = 366
_MAX_KEY_PART: Final = 200


class HotelDataError(SlotstreamError):
    """The file as a whole cannot be read: missing, not gzip/CSV, or a header without a
    required column. (A bad *row* is never an exception: it becomes a dead letter.)"""


class ProduceError(SlotstreamError):
    """Kafka refused or could not be reached; the message says what to do next."""


class _RowError(Exception):
    """One row breaks a rule; the message names the column and the value."""


# -- derivation (pure) ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Booking:
    """One valid row, derived: ``row`` is its 1-based position among the data rows,
    ``line`` its 1-based physical line (the header is line 1). Dates are calendar dates
    (UTC); ``cancelled_on`` is None unless ``reservation_status`` was ``Canceled``."""

    row: int
    line: int
    hotel: str
    arrival: date
    lead_time_days: int
    nights: int
    created_on: date
    cancelled_on: date | None

    @property
    def booking_id(self) -> str:
        # Position, not content: 31,994 rows repeat an earlier row and are still distinct.
        return f"{SOURCE}-{self.row:06d}"


def _count(value: str, column: str) -> int:
    """A non-negative integer written with ASCII digits only (``int()`` alone would also
    take ``" 5"``, ``"+5"``, ``"1_0"`` and other scripts' digits)."""
    if value.isascii() and value.isdigit():
        return int(value)
    if value[:1] == "-" and value[1:].isascii() and value[1:].isdigit():
        raise _RowError(f"{column} must not be negative: {value!r}")
    raise _RowError(f"{column} is not a whole number: {value!r}")


class _Dates:
    """Memoised date parsing: the file has ~120k rows but only ~1,000 distinct dates."""

    def __init__(self) -> None:
        self._arrivals: dict[tuple[str, str, str], date] = {}
        self._status_dates: dict[str, date] = {}

    def arrival(self, year: str, month: str, day: str) -> date:
        key = (year, month, day)
        found = self._arrivals.get(key)
        if found is None:
            number = _MONTHS.get(month)
            if number is None:
                raise _RowError(f"arrival_date_month is not an English month name: {month!r}")
            y = _count(year, "arrival_date_year")
            d = _count(day, "arrival_date_day_of_month")
            try:
                found = date(y, number, d)
            except ValueError:
                raise _RowError(
                    f"arrival date does not exist: arrival_date_year={year!r}, "
                    f"arrival_date_month={month!r}, arrival_date_day_of_month={day!r}"
                ) from None
            self._arrivals[key] = found
        return found

    def status_date(self, value: str) -> date:
        found = self._status_dates.get(value)
        if found is None:
            parts = value.split("/")
            try:
                if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts):
                    raise ValueError
                month, day, year = (int(p) for p in parts)
                found = date(year, month, day)
            except ValueError:
                raise _RowError(f"reservation_status_date is not a date M/D/YYYY: {value!r}") from None
            self._status_dates[value] = found
        return found


def _derive(fields: list[str], index: dict[str, int], row: int, line: int, dates: _Dates) -> Booking:
    """Apply the rules of shared/data/README.md to one row; raises :class:`_RowError`."""
    if len(fields) != len(index):
        raise _RowError(f"row has {len(fields)} columns, the header has {len(index)}")
    hotel = fields[index["hotel"]]
    if not hotel or "|" in hotel or len(hotel) > _MAX_KEY_PART:
        # It becomes the Kafka key and resource_id (a contract KeyPart).
        raise _RowError(f"hotel must be 1..{_MAX_KEY_PART} characters without '|': {hotel!r}")
    status = fields[index["reservation_status"]]
    implied = _STATUSES.get(status)
    if implied is None:
        raise _RowError(f"reservation_status is not one of Check-Out, Canceled, No-Show: {status!r}")
    is_canceled = fields[index["is_canceled"]]
    if is_canceled not in ("0", "1"):
        raise _RowError(f"is_canceled is not 0 or 1: {is_canceled!r}")
    if int(is_canceled) != implied:
        # A contradiction means the row is corrupt, so neither column can be trusted.
        raise _RowError(f"is_canceled={is_canceled!r} contradicts reservation_status={status!r}")
    lead_time = _count(fields[index["lead_time"]], "lead_time")
    arrival = dates.arrival(
        fields[index["arrival_date_year"]],
        fields[index["arrival_date_month"]],
        fields[index["arrival_date_day_of_month"]],
    )
    nights = _count(fields[index["stays_in_weekend_nights"]], "stays_in_weekend_nights") + _count(
        fields[index["stays_in_week_nights"]], "stays_in_week_nights"
    )
    if nights > _MAX_NIGHTS:
        raise _RowError(
            f"stays_in_weekend_nights + stays_in_week_nights = {nights} exceeds {_MAX_NIGHTS} "
            f"(weekend {fields[index['stays_in_weekend_nights']]!r}, week {fields[index['stays_in_week_nights']]!r})"
        )
    try:
        created_on = arrival - timedelta(days=lead_time)
    except OverflowError:
        raise _RowError(f"lead_time {lead_time} puts the booking before year 1 (arrival {arrival})") from None
    status_date = dates.status_date(fields[index["reservation_status_date"]])
    cancelled_on = None
    if status == "Canceled":
        # README: no cancellation precedes its creation or follows its arrival.
        if status_date < created_on:
            raise _RowError(
                f"cancellation on {status_date} (reservation_status_date "
                f"{fields[index['reservation_status_date']]!r}) precedes creation on {created_on} "
                f"(arrival {arrival} − lead_time {lead_time} days)"
            )
        if status_date > arrival:
            raise _RowError(
                f"cancellation on {status_date} (reservation_status_date "
                f"{fields[index['reservation_status_date']]!r}) follows arrival on {arrival}"
            )
        cancelled_on = status_date
    return Booking(row, line, hotel, arrival, lead_time, nights, created_on, cancelled_on)


def order_events(bookings: Iterable[Booking]) -> list[BookingEvent]:
    """The booking events of ``bookings`` in event-time order with ``seq`` = 0..n-1.

    Order: ``(event date, created before cancelled, row)`` (shared/data/README.md: within
    a day, a booking's creation precedes its cancellation). Each event is at 00:00 UTC of
    its date; ``event_id`` is ``"<booking_id>:<kind>"``. Pure and deterministic.
    """
    keyed: list[tuple[int, int, int, Booking]] = []
    for b in bookings:
        keyed.append((b.created_on.toordinal(), 0, b.row, b))
        if b.cancelled_on is not None:
            keyed.append((b.cancelled_on.toordinal(), 1, b.row, b))
    # (date, kind, row) is unique per event (row is unique per booking), so the sort never
    # compares Booking objects and the order is total, hence replays are identical.
    keyed.sort(key=lambda k: (k[0], k[1], k[2]))
    midnight: dict[int, datetime] = {}
    events: list[BookingEvent] = []
    for seq, (ordinal, kind_rank, _row, b) in enumerate(keyed):
        at = midnight.get(ordinal)
        if at is None:
            d = date.fromordinal(ordinal)
            at = midnight[ordinal] = datetime(d.year, d.month, d.day, tzinfo=UTC)
        kind = "created" if kind_rank == 0 else "cancelled"
        booking_id = b.booking_id
        events.append(
            BookingEvent(
                event_id=f"{booking_id}:{kind}",
                seq=seq,
                kind=kind,
                booking_id=booking_id,
                source=SOURCE,
                resource_id=b.hotel,
                arrival_date=b.arrival,
                nights=b.nights,
                lead_time_days=b.lead_time_days,
                rooms=1,
                event_time=at,
            )
        )
    return events


@dataclass(frozen=True)
class HotelReplay:
    """What one file yields: ``events`` in event-time order (``seq`` = index), one dead
    letter per bad row in file order, and counts. ``rows`` counts data rows read (good
    and bad, not the header, not blank lines); ``created`` / ``cancelled`` count events."""

    path: str
    events: Sequence[BookingEvent]
    dead_letters: Sequence[DeadLetter]
    rows: int
    bad_rows: int
    created: int
    cancelled: int


class _Lines(Iterator[str]):
    """Feeds decoded lines to :mod:`csv` and remembers which physical lines (and their
    text) make up the current record, so a dead letter can quote its line exactly.

    A line that is not valid UTF-8 is not passed on: it is reported to ``on_undecodable``
    with its line number and bytes (one bad byte must not cost the rest of the file)."""

    def __init__(
        self, lines: list[bytes], first: int, on_undecodable: Callable[[int, bytes, UnicodeDecodeError], None]
    ) -> None:
        self._lines = lines
        self._next = first  # 0-based index of the next line; its line number is _next + 1
        self._on_undecodable = on_undecodable
        self.record: list[str] = []
        self.start = 0

    def __next__(self) -> str:
        while self._next < len(self._lines):
            raw = self._lines[self._next]
            self._next += 1
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                self._on_undecodable(self._next, raw.rstrip(b"\r\n"), exc)
                continue
            if not self.record:
                self.start = self._next
            self.record.append(text)
            return text
        raise StopIteration


def parse_booking_csv(data: bytes, *, path: str) -> HotelReplay:
    """Parse an uncompressed hotel bookings CSV (``data``, UTF-8, header first).

    ``path`` names the file in dead letters' :class:`~slotstream.contract.FileOrigin`.
    Every row is validated (column count, whole non-negative numbers, English month
    names, existing dates, known ``reservation_status`` consistent with ``is_canceled``,
    cancellation between creation and arrival); a bad row yields no event and one
    :class:`~slotstream.contract.DeadLetter` (stage ``producer.hotel-bookings``) whose
    ``raw`` is the row's line text without its line break (base64 if not UTF-8) and whose
    ``error`` names the column and value. Bad rows keep their row number, so fixing one
    never renumbers the bookings after it. Blank lines are skipped.

    Raises :class:`HotelDataError` when there is no header, it is not UTF-8, or it lacks
    a column of :data:`REQUIRED_COLUMNS`.
    """
    lines = data.splitlines(keepends=True)
    if not lines:
        raise HotelDataError(f"{path} is empty: expected a CSV header line")
    try:
        header_text = lines[0].decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise HotelDataError(f"{path}: the header line is not UTF-8 ({exc})") from None
    header = next(csv.reader([header_text]), [])
    index = {name: i for i, name in enumerate(header)}
    missing = [c for c in REQUIRED_COLUMNS if c not in index]
    if missing or len(index) != len(header):
        problem = f"lacks {', '.join(missing)}" if missing else "repeats a column name"
        raise HotelDataError(f"{path}: the header {problem}; found {', '.join(header) or 'nothing'}")

    dates = _Dates()
    bookings: list[Booking] = []
    dead: list[DeadLetter] = []
    row = 0

    def reject(line: int, raw: bytes | str, error: str) -> None:
        dead.append(DeadLetter.of(stage=STAGE, error=error, raw=raw, origin=FileOrigin(path=path, line=line)))

    def undecodable(line: int, raw: bytes, exc: UnicodeDecodeError) -> None:
        nonlocal row
        row += 1  # it was a data row; later rows keep their numbers
        reject(line, raw, f"line is not valid UTF-8: {exc.reason} at byte {exc.start}: {raw[exc.start : exc.end]!r}")

    source = _Lines(lines, 1, undecodable)
    reader = csv.reader(source, strict=True)
    while True:
        source.record = []
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # e.g. a stray quote: the record is unreadable, not the file
            row += 1
            reject(source.start, "".join(source.record).rstrip("\r\n"), f"not a valid CSV record: {exc}")
            continue
        if not fields:
            continue
        row += 1
        try:
            bookings.append(_derive(fields, index, row, source.start, dates))
        except _RowError as exc:
            reject(source.start, "".join(source.record).rstrip("\r\n"), str(exc))

    events = order_events(bookings)
    cancelled = sum(1 for b in bookings if b.cancelled_on is not None)
    return HotelReplay(
        path=path,
        events=events,
        dead_letters=dead,
        rows=row,
        bad_rows=len(dead),
        created=len(bookings),
        cancelled=cancelled,
    )


def read_booking_events(path: Path) -> HotelReplay:
    """Read ``path`` (gzip CSV; an uncompressed CSV is accepted too) and derive its
    booking events and dead letters, see :func:`parse_booking_csv` for the rules.

    Takes ~2 s for the full file (119,390 rows, 162,407 events; over half of it is
    pydantic validating each event against the contract). Raises
    :class:`HotelDataError` when the file is missing, unreadable, a corrupt gzip stream,
    or has no usable header.
    """
    try:
        with path.open("rb") as f:
            data = f.read()
        if data[:2] == b"\x1f\x8b":  # gzip magic; sniffed so a plain .csv works as well
            data = gzip.decompress(data)
    except FileNotFoundError:
        raise HotelDataError(
            f"{path} does not exist; pass the path or set SLOTSTREAM_DATA_DIR to the folder holding {DEFAULT_FILE}"
        ) from None
    except (OSError, EOFError, zlib.error) as exc:
        raise HotelDataError(f"cannot read {path}: {exc}") from None
    return parse_booking_csv(data, path=str(path))


# -- producing -------------------------------------------------------------------------------

#: Producer tuning, measured with the full file (162,407 events) against the local
#: single-node broker on 2 CPUs, median of 3 runs: linger 10 ms / 64 KiB batches sent
#: ~72k events/s; 2-10 ms and 64-128 KiB were within the run-to-run noise (55-75k), 0 ms /
#: 16 KiB (the defaults) ~37k. Compression stays off: gzip cost ~20 % throughput on
#: loopback, and lz4 / zstd / snappy would need cramjam, which is not a dependency.
_LINGER_MS: Final = 10
_MAX_BATCH_BYTES: Final = 64 * 1024
#: Delivery futures are checked in chunks of this many sends (see _Acks): errors surface
#: early and memory stays bounded, without one wait per message.
_ACK_CHUNK: Final = 5_000
_DAY_S: Final = 86_400.0


@dataclass(frozen=True)
class ProduceSummary:
    """The outcome of :func:`produce_hotel_bookings`: counts (rows, events, dead
    letters), and wall-clock seconds: ``read_s`` parsing the file, ``elapsed_s`` the whole
    call (read + send + acknowledgements). ``events_per_s`` = events / ``elapsed_s``."""

    path: str
    events_topic: str
    dead_letter_topic: str
    rows: int
    bad_rows: int
    created: int
    cancelled: int
    dead_letters: int
    read_s: float
    elapsed_s: float
    speed: float | None

    @property
    def events(self) -> int:
        return self.created + self.cancelled

    @property
    def events_per_s(self) -> float:
        return self.events / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def render(self) -> Any:
        """A :class:`rich.table.Table` of the summary (``Any``: rich is imported lazily)."""
        from rich.table import Table

        table = Table(
            title=f"hotel bookings → {self.events_topic}",
            caption=f"dead letters → {self.dead_letter_topic}",
            show_header=False,
        )
        table.add_column("what", style="bold", no_wrap=True)
        table.add_column("value", justify="right", overflow="fold")
        table.add_row("file", self.path)
        table.add_row("rows read", f"{self.rows:,}")
        table.add_row("bad rows", f"{self.bad_rows:,}")
        table.add_row("events created", f"{self.created:,}")
        table.add_row("events cancelled", f"{self.cancelled:,}")
        table.add_row("dead letters", f"{self.dead_letters:,}")
        table.add_row("pace", "as fast as possible" if self.speed is None else f"{self.speed:g}× event time")
        table.add_row("read", f"{self.read_s:.2f} s")
        table.add_row("elapsed (read + send + acks)", f"{self.elapsed_s:.2f} s")
        table.add_row("events/s", f"{self.events_per_s:,.0f}")
        return table


async def _check_topics(settings: Settings, names: list[str]) -> None:
    """Fail fast: the broker never auto-creates topics, and aiokafka would otherwise
    wait for metadata until its request timeout before saying 'unknown topic'."""
    from kafka.errors import KafkaError

    from slotstream.kafka_admin import existing_topics

    bootstrap = settings.kafka.bootstrap_servers
    try:
        have = await asyncio.to_thread(existing_topics, bootstrap)
    except KafkaError as exc:
        raise ProduceError(
            f"cannot reach Kafka at {bootstrap} ({exc}); is the stack up (`slotstream stack up`)?"
        ) from None
    missing = [n for n in names if n not in have]
    if missing:
        raise ProduceError(f"topic {', '.join(missing)} does not exist on {bootstrap}; run `slotstream topics create`")


async def produce_hotel_bookings(
    settings: Settings,
    path: Path | None = None,
    *,
    speed: float | None = None,
    progress: bool = True,
) -> ProduceSummary:
    """Read ``path`` (default ``settings.data_dir / "hotel_bookings.csv.gz"``) and produce
    its booking events and dead letters to Kafka; returns when every record is
    acknowledged by the broker.

    - events: JSON (``model_dump_json()``) to ``settings.kafka.topics.booking_events``,
      key = ``resource_id`` (the hotel, UTF-8) so one hotel's events stay in one
      partition in ``seq`` order; dead letters: JSON to ``topics.dead_letter``, key =
      ``DeadLetter.key`` (``path:line``), sent before the events;
    - an idempotent producer (``enable_idempotence=True``, ``acks="all"``): broker-side
      retries neither duplicate nor reorder. A *rerun* does send everything again;
      consumers dedupe by ``event_id`` / ``seq`` (contract);
    - ``speed=None`` sends as fast as possible; ``speed=N`` (> 0) replays N times faster
      than event time, e.g. 86400 is one event day per second (events are date-only, so
      each day's events go out together);
    - ``progress`` shows a rich progress bar on stderr.

    Raises :class:`HotelDataError` (unreadable file), :class:`ProduceError` (Kafka
    unreachable, topic missing, a send failed), :class:`ValueError` (``speed`` <= 0).
    Record timestamps are the send time; the event time is in the payload.
    """
    if speed is not None and not speed > 0:
        raise ValueError(f"speed must be > 0 (times faster than event time), got {speed}")
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    started = time.perf_counter()
    path = settings.data_dir / DEFAULT_FILE if path is None else path
    topics = settings.kafka.topics
    replay = await asyncio.to_thread(read_booking_events, path)
    read_s = time.perf_counter() - started

    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        client_id="slotstream-producer-hotel-bookings",
        enable_idempotence=True,
        acks="all",
        linger_ms=_LINGER_MS,
        max_batch_size=_MAX_BATCH_BYTES,
    )
    try:
        # Started before the topic check: it fails at once when nothing listens, where
        # kafka-python's admin client would retry for 30 s first.
        await producer.start()
    except KafkaError as exc:
        await producer.stop()  # releases what start() opened before failing
        raise ProduceError(
            f"cannot connect to Kafka at {settings.kafka.bootstrap_servers} ({exc}); "
            "is the stack up (`slotstream stack up`)?"
        ) from None

    bar = _Progress(progress, replay)
    try:
        await _check_topics(settings, [topics.booking_events, topics.dead_letter])
        with bar:
            acks = _Acks(_ACK_CHUNK)
            for letter in replay.dead_letters:
                await acks.add(
                    await producer.send(topics.dead_letter, letter.model_dump_json().encode(), key=letter.key.encode())
                )
            pace_start = time.perf_counter()
            first_day = replay.events[0].event_time if replay.events else None
            for i, event in enumerate(replay.events):
                if speed is not None and first_day is not None:
                    due = (event.event_time - first_day).total_seconds() / speed
                    lag = due - (time.perf_counter() - pace_start)
                    if lag > 0:
                        bar.advance_to(i)
                        await asyncio.sleep(lag)
                # send() only appends to a batch (it awaits only when the buffer is full:
                # back-pressure); the returned future resolves on the broker's ack.
                sent = await producer.send(
                    topics.booking_events, event.model_dump_json().encode(), key=event.resource_id.encode()
                )
                if await acks.add(sent):
                    bar.advance_to(i + 1)
            await acks.drain()
            bar.advance_to(len(replay.events))
    except KafkaError as exc:
        raise ProduceError(f"producing to {topics.booking_events} failed: {exc!r}") from None
    finally:
        await producer.stop()
    return ProduceSummary(
        path=replay.path,
        events_topic=topics.booking_events,
        dead_letter_topic=topics.dead_letter,
        rows=replay.rows,
        bad_rows=replay.bad_rows,
        created=replay.created,
        cancelled=replay.cancelled,
        dead_letters=len(replay.dead_letters),
        read_s=read_s,
        elapsed_s=time.perf_counter() - started,
        speed=speed,
    )


class _Acks:
    """Delivery futures, checked a chunk at a time: when a chunk fills, the *previous*
    chunk is awaited, so waiting for acks overlaps with sending the next chunk instead of
    stalling it, errors surface within two chunks, and memory stays bounded."""

    def __init__(self, chunk: int) -> None:
        self._chunk = chunk
        self._current: list[asyncio.Future[Any]] = []
        self._previous: list[asyncio.Future[Any]] = []

    async def add(self, future: asyncio.Future[Any]) -> bool:
        """Track ``future``; True when a chunk was completed (and the one before acked)."""
        self._current.append(future)
        if len(self._current) < self._chunk:
            return False
        await self._wait(self._previous)
        self._previous, self._current = self._current, []
        return True

    async def drain(self) -> None:
        """Wait for every tracked future; raises the first delivery error."""
        await self._wait(self._previous)
        await self._wait(self._current)
        self._previous, self._current = [], []

    @staticmethod
    async def _wait(futures: list[asyncio.Future[Any]]) -> None:
        # Awaiting a done future returns at once; unlike gather() this adds no callback
        # per future (measured: gather's callbacks cost ~1 s per 160k messages).
        for future in futures:
            await future


class _Progress:
    """A rich progress bar of events handed to the producer (on stderr), or nothing. Updated in
    steps, not per event: a rich update costs microseconds, 160k of them a second."""

    def __init__(self, enabled: bool, replay: HotelReplay) -> None:
        self._bar: Any = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("events · {task.fields[rows]:,} rows, {task.fields[bad]:,} bad"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
        )
        self._task = self._bar.add_task(
            "hotel bookings", total=len(replay.events), rows=replay.rows, bad=replay.bad_rows
        )

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def advance_to(self, done: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done)
