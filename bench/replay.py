"""``make bench-replay``: the full hotel replay end to end, and the raw ceilings beside it.

Each run gets its own topics, consumer groups and database schema. Timed from the
first booking event produced until both consumer groups have lag 0 (the sink has
committed every change row). In the same invocation, on the last run's data:

- the consume-only ceiling: a bare aiokafka consumer reading the observations topic
  (the stream worker's busiest input) from the beginning, messages/s;
- the COPY ceiling: the run's change rows copied (binary COPY) into an empty copy of
  the ``availability_changes`` hypertable, rows/s.

Prints medians of ``--runs`` runs (default 3) and writes ``bench/results/replay.json``;
each run also reports the CPU seconds of the stream workers, the sink and the whole
machine while it was timed (where the cores went).
Optionally ``--profile`` samples a stream worker and the sink with py-spy during the last
run (``bench/results/*.speedscope.json``, open them in https://www.speedscope.app).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer
from kafka.admin import KafkaAdminClient
from psycopg import sql

from slotstream.demo import table_counts
from slotstream.kafka_admin import ensure_topics
from slotstream.pipeline import Pipeline, namespaced
from slotstream.settings import Settings, load_settings

RESULTS = Path(__file__).with_name("results")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def _machine_busy_s() -> float:
    """CPU seconds all cores spent not idle since boot (``/proc/stat``)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / _CLOCK_TICKS


def _py_spy() -> str | None:
    """The py-spy executable: beside this interpreter (the venv's), else on PATH."""
    return shutil.which("py-spy", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))


def _spy(pid: int, name: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """py-spy sampling process ``pid`` at 50 Hz into ``results/<name>.speedscope.json``;
    its messages go to ``results/<name>.py-spy.log``."""
    out = RESULTS / f"{name}.speedscope.json"
    out.unlink(missing_ok=True)
    cmd = [str(_py_spy()), "record", "--pid", str(pid), "--format", "speedscope", "--output", str(out)]
    log = RESULTS / f"{name}.py-spy.log"
    with log.open("wb") as f:
        spy = subprocess.Popen([*cmd, "--rate", "50", "--nonblocking"], stdout=f, stderr=subprocess.STDOUT)
    return spy, out, log


def _stop_spy(spy: subprocess.Popen[bytes], out: Path, log: Path) -> None:
    spy.terminate()
    spy.wait(timeout=60)
    if not out.exists():
        # py-spy reads the target's memory (ptrace): refused in some sandboxes and
        # containers. Say so rather than leave the profile silently missing.
        first = log.read_text(errors="replace").strip().splitlines()[:1] if log.exists() else []
        print(f"no profile {out.name}: py-spy {first[0] if first else 'wrote nothing'} (see {log})", flush=True)


def replay_once(base: Settings, profile: bool) -> tuple[Settings, dict[str, Any]]:
    from producers.hotel_bookings import produce_hotel_bookings

    s = namespaced(base, f"bench_{uuid.uuid4().hex[:8]}")
    ensure_topics(s.kafka.bootstrap_servers, s.kafka.topics.specs())
    log_dir = RESULTS / "logs" / s.postgres.db_schema
    pipeline = Pipeline(s, log_dir=log_dir)
    spies: list[tuple[subprocess.Popen[bytes], Path, Path]] = []
    try:
        sink = pipeline.start("sink")
        workers = pipeline.start("stream")
        worker = workers[0]
        time.sleep(8)  # let both join their groups, so the timing is the pipeline's
        if profile:
            # One speedscope profile per process: the first stream worker and the sink.
            spies = [_spy(worker.pid, "stream-worker"), _spy(sink[0].pid, "sink")]
        cpu_before = [_process_cpu_s(p.pid) for p in workers + sink] + [_machine_busy_s()]
        started = time.monotonic()
        summary = asyncio.run(produce_hotel_bookings(s, None, progress=False))
        produced = time.monotonic()
        stream_done: list[float] = []

        def note_stream(lags: Mapping[str, int]) -> None:
            # When the stream worker alone was done (polled every 0.5 s): which of the
            # two stages the end-to-end time waits for.
            if lags["stream"] == 0 and not stream_done:
                stream_done.append(time.monotonic())

        pipeline.wait_caught_up(timeout=3600, on_poll=note_stream)
        done = time.monotonic()
        cpu = [
            after - before
            for before, after in zip(
                cpu_before, [_process_cpu_s(p.pid) for p in workers + sink] + [_machine_busy_s()], strict=True
            )
        ]
    finally:
        for spy in spies:
            _stop_spy(*spy)
        pipeline.stop()
    rows = table_counts(s)
    elapsed = done - started
    return s, {
        "events": summary.events,
        "change_rows": rows["availability_changes"],
        "produce_s": round(produced - started, 2),
        "elapsed_s": round(elapsed, 2),
        "stream_lag_0_s": round(stream_done[0] - started, 2) if stream_done else None,
        "events_per_s": round(summary.events / elapsed),
        "change_rows_per_s": round(rows["availability_changes"] / elapsed),
        # CPU seconds while timed: the stream worker processes, the sink, and every
        # process on the machine (producer, Kafka, PostgreSQL included; 2 cores here).
        "stream_cpu_s": round(sum(cpu[: len(workers)]), 1),
        "sink_cpu_s": round(sum(cpu[len(workers) : -1]), 1),
        "machine_cpu_s": round(cpu[-1], 1),
    }


async def consume_only(s: Settings, topic: str) -> float:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=s.kafka.bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        ends = await consumer.end_offsets(list(consumer.assignment()) or [])
        total = 0
        started = time.monotonic()
        target = None
        while True:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if target is None:
                ends = await consumer.end_offsets(list(consumer.assignment()))
                target = sum(ends.values())
            total += sum(len(v) for v in batch.values())
            if total >= target:
                break
        return total / (time.monotonic() - started)
    finally:
        await consumer.stop()


def copy_only(s: Settings) -> float:
    pg = s.postgres
    schema = sql.Identifier(pg.db_schema)
    with psycopg.connect(pg.conninfo(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE TABLE {}.copy_ceiling (LIKE {}.availability_changes INCLUDING ALL)").format(schema, schema)
        )
        conn.execute(
            "SELECT create_hypertable(%s, by_range('observed_at', INTERVAL '30 days'))",
            (f"{pg.db_schema}.copy_ceiling",),
        )
        buffer = bytearray()
        # COPY <hypertable> TO copies only the (empty) parent table: select from it instead.
        with conn.cursor().copy(
            sql.SQL("COPY (SELECT * FROM {}.availability_changes) TO STDOUT (FORMAT BINARY)").format(schema)
        ) as copy:
            for chunk in copy:
                buffer += chunk
        rows = conn.execute(sql.SQL("SELECT count(*) FROM {}.availability_changes").format(schema)).fetchone()
        started = time.monotonic()
        with (
            conn.transaction(),
            conn.cursor().copy(sql.SQL("COPY {}.copy_ceiling FROM STDIN (FORMAT BINARY)").format(schema)) as copy,
        ):
            copy.write(bytes(buffer))
        elapsed = time.monotonic() - started
        copied = conn.execute(sql.SQL("SELECT count(*) FROM {}.copy_ceiling").format(schema)).fetchone()
        if copied != rows:  # a ceiling that moved nothing must not be reported
            raise RuntimeError(f"COPY ceiling copied {copied} rows of {rows}")
        return int(rows[0]) / elapsed  # type: ignore[index]


def cleanup(s: Settings) -> None:
    with psycopg.connect(s.postgres.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(s.postgres.db_schema)))
    admin = KafkaAdminClient(bootstrap_servers=s.kafka.bootstrap_servers)
    try:
        names = [n for n in admin.list_topics() if n.startswith(s.kafka.topic_prefix) or n.startswith(s.stream.app_id)]
        if names:
            admin.delete_topics(names)
    finally:
        admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="py-spy a stream worker and the sink in the last run")
    args = parser.parse_args()
    if args.profile and _py_spy() is None:
        parser.error("--profile needs py-spy (a dev dependency: make venv)")
    settings = load_settings()
    RESULTS.mkdir(parents=True, exist_ok=True)
    runs, namespaces = [], []
    try:
        for i in range(args.runs):
            ns, result = replay_once(settings, profile=args.profile and i == args.runs - 1)
            namespaces.append(ns)
            runs.append(result)
            print(f"run {i + 1}: {json.dumps(result)}", flush=True)
        last = namespaces[-1]
        consume_rate = asyncio.run(consume_only(last, last.kafka.topics.observations))
        copy_rate = copy_only(last)
    finally:
        for ns in namespaces:
            cleanup(ns)
    median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    slower_ceiling = min(consume_rate, copy_rate)
    report = {
        "runs": runs,
        "median": median,
        "ceilings": {
            "consume_observations_msgs_per_s": round(consume_rate),
            "copy_change_rows_per_s": round(copy_rate),
        },
        "pipeline_change_rows_per_s_vs_slower_ceiling": round(median["change_rows_per_s"] / slower_ceiling, 3),
    }
    (RESULTS / "replay.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
