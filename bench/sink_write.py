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
timing only the ``write_batch`` calls (records/s = records / summed call time), and
fingerprints every table (row count and an order-free hash of the content, see
:func:`fingerprint`: a faster writer must leave the same fingerprints). Then, as
the kill -9 case does, it redelivers ``--redeliver`` already written batches (timed apart)
and checks that they changed nothing. Prints each run and the medians as JSON and writes
``bench/results/sink_write.json``.

Usage: ``python -m bench.sink_write [--runs 3] [--limit N] [--writer-rev REV]``
(``--limit``: only the first N batches, for quick comparisons, the tables then stay
smaller than in the full replay; ``--writer-rev``: time ``sinks/writer.py`` as of a git
revision instead of the working tree's, for side-by-side figures).
Run it under ``flock /tmp/slotstream-heavy.lock``: it loads the database and a core.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from producers.hotel_bookings import DEFAULT_FILE, read_booking_events
from sinks.migrate import migrate
from sinks.writer import SinkBatch, WriteCounts, write_batch
from slotstream.demo import TABLES
from slotstream.settings import Settings, load_settings
from streams.detect import Tracker, detect_batch
from streams.ledger import Ledger, apply_batch

RESULTS = Path(__file__).with_name("results")


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
            # Our own cache file, written below from the data file: trusted.
            records: list[tuple[str, Any]] = pickle.load(f)  # noqa: S301
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


def fingerprint(conn: psycopg.Connection[Any], schema: str, table: str) -> str:
    """``"<rows>:<hash>"`` of ``table``'s content, order-free (a sum of row hashes), without
    ``updated_at`` (when the sink wrote, not what): equal across runs and writer versions
    exactly when the same rows ended up in the table (barring a 64-bit hash collision)."""
    row = conn.execute(
        sql.SQL(
            "SELECT count(*), coalesce(sum(hashtextextended((to_jsonb(t) - 'updated_at')::text, 0)::numeric), 0) "
            "FROM {} t"
        ).format(sql.Identifier(schema, table))
    ).fetchone()
    assert row is not None
    return f"{row[0]}:{row[1]}"


Writer = Callable[..., WriteCounts]


def writer_at(rev: str | None) -> Writer:
    """``write_batch`` of ``sinks/writer.py`` as of git revision ``rev`` (None: the
    working tree's), to compare writer versions side by side on the same records."""
    if rev is None:
        return write_batch
    source = subprocess.run(
        ["git", "show", f"{rev}:sinks/writer.py"],
        cwd=Path(__file__).parent,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "writer_at_rev.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("writer_at_rev", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.write_batch  # type: ignore[no-any-return]


def run_once(settings: Settings, batches: list[SinkBatch], redeliver: int, write: Writer) -> dict[str, Any]:
    pg = settings.postgres.model_copy(update={"db_schema": f"bench_sink_{uuid.uuid4().hex[:8]}"})
    schema = pg.db_schema
    with psycopg.connect(pg.conninfo(), autocommit=True) as conn:
        migrate(conn, pg)
        try:
            total = WriteCounts()
            seconds: list[float] = []
            for b in batches:
                t0 = time.perf_counter()
                total = total + write(conn, b, schema=schema)
                seconds.append(time.perf_counter() - t0)
            rows = {t: fingerprint(conn, schema, t) for t in TABLES}
            # Redeliver batches from the middle of the run (a restart re-reads the batch
            # whose offsets were not committed): they must change nothing.
            again_s = 0.0
            again_rows = 0
            picks = batches[len(batches) // 2 :][:redeliver]
            for b in picks:
                t0 = time.perf_counter()
                again_rows += write(conn, b, schema=schema).rows
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
    parser.add_argument(
        "--writer-rev", default=None, help="git revision of sinks/writer.py to time (default: working tree)"
    )
    args = parser.parse_args()
    write = writer_at(args.writer_rev)
    settings = load_settings()
    t0 = time.perf_counter()
    records = sink_records(settings)
    batches = sink_batches(records, args.batch_size or settings.sink.batch_size)[: args.limit]
    print(f"{len(records)} records in {len(batches)} batches (prepared in {time.perf_counter() - t0:.1f} s)")
    runs = []
    for i in range(args.runs):
        result = run_once(settings, batches, args.redeliver, write)
        runs.append(result)
        print(f"run {i + 1}: {json.dumps(result)}", flush=True)
    numeric = [k for k, v in runs[0].items() if isinstance(v, int | float) and not isinstance(v, bool)]
    report = {
        "writer_rev": args.writer_rev,
        "runs": runs,
        "median": {k: statistics.median(r[k] for r in runs) for k in numeric},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = (
        "sink_write"
        + (f"-{args.writer_rev}" if args.writer_rev else "")
        + (f"-limit{args.limit}" if args.limit else "")
    )
    name += ".json"
    (RESULTS / name).write_text(json.dumps(report, indent=2))
    print(json.dumps(report["median"], indent=2))


if __name__ == "__main__":
    main()
