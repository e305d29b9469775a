"""Micro-benchmark of the sink's database writes: :func:`sinks.writer.write_batch` over the
full hotel replay's records, without Kafka or the stream worker.

The records are those the pipeline sends the sink, computed once with the stream's pure
functions (``producers.hotel_bookings.read_booking_events`` -> ``streams.ledger.apply_batch``
in batches of ``stream.batch_size`` -> ``streams.detect.detect_batch`` in batches of the
same size) and cached under ``bench/results/`` (pickle; recomputed when the data file
changes). The sink's input order is modelled as: per ledger batch, its booking events and
booking counts, then the changes and currents its observations produced; that order is
cut into batches of ``sink.batch_size`` records (the sink's ``getmany`` limit). Like on
Kafka, every key's records stay in their order (the real sink sees the four partitions
interleaved; the per-key order is what the writer's work depends on).

Each run writes every batch, in order, into a fresh migrated schema (dropped afterwards),
timing only the ``write_batch`` calls (records/s = records / summed call time). Then, as
the kill -9 case does, it redelivers ``--redeliver`` already written batches (timed apart)
and checks that they changed nothing. Prints each run and the medians as JSON and writes
``bench/results/sink_write.json``.

Usage: ``python -m bench.sink_write [--runs 3] [--limit N]`` (``--limit``: only the first
N batches, for quick comparisons; the tables then stay smaller than in the full replay).
Run it under ``flock /tmp/slotstream-heavy.lock``: it loads the database and a core.
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from producers.hotel_bookings import DEFAULT_FILE, read_booking_events
from sinks.migrate import migrate
from sinks.writer import SinkBatch, WriteCounts, write_batch
from slotstream.settings import Settings, load_settings
from streams.detect import Tracker, detect_batch
from streams.ledger import Ledger, apply_batch

RESULTS = Path(__file__).with_name("results")
TABLES = (
    "booking_events",
    "availability_changes",
    "state_intervals",
    "availability_current",
    "booking_counts",
    "dead_letters",
)


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def sink_records(settings: Settings) -> list[tuple[str, Any]]:
    """``(SinkBatch attribute, record)`` in the modelled arrival order (see module doc)."""
    path = settings.data_dir / DEFAULT_FILE
    stat = path.stat()
    cache = RESULTS / f"sink_records-{stat.st_size}-{stat.st_mtime_ns}-{settings.stream.batch_size}.pickle"
    if cache.exists():
        with cache.open("rb") as f:
            records: list[tuple[str, Any]] = pickle.load(f)
        return records
    replay = read_booking_events(path)
    ledgers: dict[str, Ledger] = {}
    trackers: dict[str, Tracker] = {}
    records = []
    size = settings.stream.batch_size
    for events in _chunks(list(replay.events), size):
        lb = apply_batch(ledgers.get, events, settings.stream.hotel_capacity, settings.stream.default_capacity)
        ledgers.update(lb.ledgers)
        records += [("booking_events", e) for e in events]
        records += [("booking_counts", c) for c in lb.counts]
        for observations in _chunks(lb.observations, size):
            db = detect_batch(trackers.get, observations)
            trackers.update(db.trackers)
            records += [("changes", c) for c in db.changes]
            records += [("currents", c) for c in db.currents]
    RESULTS.mkdir(parents=True, exist_ok=True)
    with cache.open("wb") as f:
        pickle.dump(records, f, protocol=pickle.HIGHEST_PROTOCOL)
    return records


def sink_batches(records: list[tuple[str, Any]], size: int) -> list[SinkBatch]:
    batches = []
    for chunk in _chunks(records, size):
        b = SinkBatch()
        for kind, record in chunk:
            getattr(b, kind).append(record)
        batches.append(b)
    return batches


def run_once(settings: Settings, batches: list[SinkBatch], redeliver: int) -> dict[str, Any]:
    pg = settings.postgres.model_copy(update={"db_schema": f"bench_sink_{uuid.uuid4().hex[:8]}"})
    schema = pg.db_schema
    with psycopg.connect(pg.conninfo(), autocommit=True) as conn:
        migrate(conn, pg)
        try:
            total = WriteCounts()
            seconds: list[float] = []
            for b in batches:
                t0 = time.perf_counter()
                total = total + write_batch(conn, b, schema=schema)
                seconds.append(time.perf_counter() - t0)
            rows = {
                t: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, t))).fetchone()[0]  # type: ignore[index]
                for t in TABLES
            }
            # Redeliver batches from the middle of the run (a restart re-reads the batch
            # whose offsets were not committed): they must change nothing.
            again_s = 0.0
            again_rows = 0
            picks = batches[len(batches) // 2 :][:redeliver]
            for b in picks:
                t0 = time.perf_counter()
                again_rows += write_batch(conn, b, schema=schema).rows
                again_s += time.perf_counter() - t0
            if again_rows:
                raise RuntimeError(f"redelivered batches changed {again_rows} rows")
        finally:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    db_s = sum(seconds)
    return {
        "records": total.records,
        "batches": len(batches),
        "write_s": round(db_s, 2),
        "records_per_s": round(total.records / db_s),
        "batch_ms_median": round(statistics.median(seconds) * 1000, 1),
        "batch_ms_max": round(max(seconds) * 1000, 1),
        "redelivered_batches": len(picks),
        "redelivered_records_per_s": round(sum(len(b) for b in picks) / again_s) if again_s else None,
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None, help="only the first N batches")
    parser.add_argument("--redeliver", type=int, default=5, help="batches to redeliver after each run")
    parser.add_argument("--batch-size", type=int, default=None, help="default: settings sink.batch_size")
    args = parser.parse_args()
    settings = load_settings()
    t0 = time.perf_counter()
    records = sink_records(settings)
    batches = sink_batches(records, args.batch_size or settings.sink.batch_size)[: args.limit]
    print(f"{len(records)} records in {len(batches)} batches (prepared in {time.perf_counter() - t0:.1f} s)")
    runs = []
    for i in range(args.runs):
        result = run_once(settings, batches, args.redeliver)
        runs.append(result)
        print(f"run {i + 1}: {json.dumps(result)}", flush=True)
    numeric = [k for k, v in runs[0].items() if isinstance(v, int | float) and not isinstance(v, bool)]
    report = {"runs": runs, "median": {k: statistics.median(r[k] for r in runs) for k in numeric}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "sink_write.json" if args.limit is None else f"sink_write-limit{args.limit}.json"
    (RESULTS / name).write_text(json.dumps(report, indent=2))
    print(json.dumps(report["median"], indent=2))


if __name__ == "__main__":
    main()
