"""Backfill throughput against a raw sqlite3 floor, and peak memory as the traces grow.

Run: ``python benchmarks/backfill.py [--traces 20000] [--repeat 3] [--memory-traces 20000]``

The floor is the least a correct-looking backfill could do with the same data: read the
traces page by page with plain ``sqlite3``, call the same two scorer functions, and
insert the feedback rows into ``assessments`` with ``executemany``, one transaction per
1,000 traces. It writes no evaluation ledger, no cursor and no counts, so it is neither
resumable nor exactly-once; ``backfill_scorers`` is all three. Both run on copies of one
database built once, best of ``--repeat`` runs each (the machine may be shared).

Memory: ``tracemalloc`` peak while a job backfills N and 10 N traces (tracemalloc
slows Python down, so those runs are not timed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path

import _rows

import localscorers
from localscorers import _context
from localscorers.models import TraceStatus

# new_id_hex: the library's own ids, so the raw floors write the very same rows.
from localscorers.store.rows import TraceRecord, new_id_hex

_EXPERIMENT = "0"
_ASSESSMENT_COLUMNS = (
    "assessment_id, trace_id, evaluation_id, kind, name, value, value_str, value_num, "
    "rationale, error, meta, source_type, source_id, scorer_name, scorer_version, origin, "
    "created_ms, valid, overrides"
)


def is_long(outputs):
    return len(str(outputs)) > 20


def word_count(inputs, outputs):
    return len(str(inputs).split()) + len(str(outputs).split())


def build_database(path: Path, traces: int) -> None:
    """Write ``traces`` traces and register the two scorers (no online scoring)."""
    os.environ["LOCALSCORERS_MONITOR"] = "off"
    localscorers.set_tracking_uri(path)
    store = _context.current().store
    batch = []
    for i in range(traces):
        batch.append(
            TraceRecord(
                trace_id=f"tr-{uuid.UUID(int=i).hex}",
                experiment_id=_EXPERIMENT,
                status=TraceStatus.OK,
                request_time_ms=1_700_000_000_000 + i * 1000,
                inputs={"question": f"What is item number {i}?"},
                outputs=f"Item {i} is a thing of size {i % 97}.",
            )
        )
        if len(batch) == 5000:
            store.write_traces(batch)
            batch = []
    store.write_traces(batch)
    localscorers.scorer(is_long).register()
    localscorers.scorer(word_count).register()
    _context.reset()


def run_floor(path: Path) -> float:
    """Raw sqlite3: read, call the two functions, insert feedback in batches."""
    started = time.perf_counter()
    write = sqlite3.connect(path, isolation_level=None)
    read = sqlite3.connect(path, isolation_level=None)
    for conn in (write, read):
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
    insert = f"INSERT INTO assessments ({_ASSESSMENT_COLUMNS}) VALUES ({', '.join('?' * 19)})"
    after: tuple[int, str] = (-1, "")
    while True:
        rows = read.execute(
            "SELECT trace_id, request_time_ms, inputs, outputs FROM traces "
            "WHERE experiment_id = ? AND (request_time_ms, trace_id) > (?, ?) "
            "ORDER BY request_time_ms, trace_id LIMIT 1000",
            (_EXPERIMENT, *after),
        ).fetchall()
        if not rows:
            break
        now = time.time_ns() // 1_000_000
        batch = []
        for trace_id, _, inputs_text, outputs_text in rows:
            inputs, outputs = json.loads(inputs_text), json.loads(outputs_text)
            for name, value in (
                ("is_long", is_long(outputs=outputs)),
                ("word_count", word_count(inputs=inputs, outputs=outputs)),
            ):
                batch.append(
                    (
                        f"a-{new_id_hex()}",
                        trace_id,
                        None,
                        "FEEDBACK",
                        name,
                        json.dumps(value),
                        str(value),
                        float(value),
                        None,
                        None,
                        None,
                        "CODE",
                        name,
                        name,
                        1,
                        "floor",
                        now,
                        1,
                        None,
                    )
                )
        write.execute("BEGIN IMMEDIATE")
        write.executemany(insert, batch)
        write.execute("COMMIT")
        after = (rows[-1][1], rows[-1][0])
    write.close()
    read.close()
    return time.perf_counter() - started


def run_minimal_floor(path: Path) -> float:
    """The MINIMAL floor (issue 16): read outputs, insert one feedback row per pair.

    A raw ``sqlite3`` loop over the same traces and the same two functions that writes
    each result as one row of a table keyed by its id (2 B-tree entries per pair), one
    transaction per 1,000 traces: no ledger, no assessment indexes, no cursor.
    """
    started = time.perf_counter()
    write = sqlite3.connect(path, isolation_level=None)
    read = sqlite3.connect(path, isolation_level=None)
    for conn in (write, read):
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
    write.execute(
        "CREATE TABLE IF NOT EXISTS feedback "
        "(feedback_id TEXT PRIMARY KEY, trace_id TEXT, name TEXT, value TEXT)"
    )
    after: tuple[int, str] = (-1, "")
    while True:
        rows = read.execute(
            "SELECT trace_id, request_time_ms, inputs, outputs FROM traces "
            "WHERE experiment_id = ? AND (request_time_ms, trace_id) > (?, ?) "
            "ORDER BY request_time_ms, trace_id LIMIT 1000",
            (_EXPERIMENT, *after),
        ).fetchall()
        if not rows:
            break
        batch = []
        for trace_id, _, inputs_text, outputs_text in rows:
            inputs, outputs = json.loads(inputs_text), json.loads(outputs_text)
            batch.append((new_id_hex(), trace_id, "is_long", json.dumps(is_long(outputs))))
            batch.append(
                (new_id_hex(), trace_id, "word_count", json.dumps(word_count(inputs, outputs)))
            )
        write.execute("BEGIN IMMEDIATE")
        write.executemany("INSERT INTO feedback VALUES (?, ?, ?, ?)", batch)
        write.execute("COMMIT")
        after = (rows[-1][1], rows[-1][0])
    write.close()
    read.close()
    return time.perf_counter() - started


def run_backfill(path: Path) -> tuple[float, localscorers.BackfillJob]:
    """The public API: backfill_scorers, then wait for the job."""
    localscorers.set_tracking_uri(path)
    started = time.perf_counter()
    job_id = localscorers.backfill_scorers(
        scorers=[
            localscorers.BackfillScorerConfig(scorer="is_long", sample_rate=1.0),
            localscorers.BackfillScorerConfig(scorer="word_count", sample_rate=1.0),
        ]
    )
    job = localscorers.wait_for_backfill_job(job_id, timeout=600)
    elapsed = time.perf_counter() - started
    _context.reset()
    return elapsed, job


def _check(job: localscorers.BackfillJob, traces: int) -> None:
    if job.status != "SUCCEEDED" or job.succeeded != 2 * traces:
        raise SystemExit(f"the backfill did not score every pair: {job}")


def peak_memory(workdir: Path, traces: int) -> float:
    """Return tracemalloc's peak (MiB) while backfilling ``traces`` traces."""
    path = workdir / f"memory-{traces}.db"
    build_database(path, traces)
    localscorers.set_tracking_uri(path)
    tracemalloc.start()
    tracemalloc.reset_peak()
    _, job = run_backfill(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    _check(job, traces)
    return peak / 2**20


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--memory-traces", type=int, default=20_000, help="N of the memory check (0: skip it)"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.traces, args.repeat, args.memory_traces = 2_000, 1, 2_000
    with tempfile.TemporaryDirectory(prefix="localscorers-bench-") as tmp:
        workdir = Path(tmp)
        template = workdir / "template.db"
        build_database(template, args.traces)
        floors, minimals, backfills = [], [], []
        for attempt in range(args.repeat):
            floor_db = workdir / f"floor-{attempt}.db"
            minimal_db = workdir / f"minimal-{attempt}.db"
            backfill_db = workdir / f"backfill-{attempt}.db"
            for copy in (floor_db, minimal_db, backfill_db):
                shutil.copy(template, copy)
            floors.append(run_floor(floor_db))
            minimals.append(run_minimal_floor(minimal_db))
            elapsed, job = run_backfill(backfill_db)
            _check(job, args.traces)
            backfills.append(elapsed)
            for copy in (floor_db, minimal_db, backfill_db):
                copy.unlink()
        floor, minimal, backfill = min(floors), min(minimals), min(backfills)
        # Per round: the three ran back to back, so a busy moment of the machine hits all.
        minimal_ratios = sorted(b / m for b, m in zip(backfills, minimals, strict=True))
        minimal_ratio = minimal_ratios[len(minimal_ratios) // 2]
        pairs = 2 * args.traces
        print(f"traces: {args.traces:,}  scorers: 2  pairs: {pairs:,}  (best of {args.repeat})")
        print(f"raw sqlite3 floor : {floor:6.2f} s  {pairs / floor:9,.0f} pairs/s")
        print(f"minimal floor     : {minimal:6.2f} s  {pairs / minimal:9,.0f} pairs/s")
        print(f"backfill_scorers  : {backfill:6.2f} s  {pairs / backfill:9,.0f} pairs/s")
        print(f"ratio             : {backfill / floor:6.2f}x  (target <= 3x)")
        print(
            f"vs minimal floor  : {minimal_ratio:6.2f}x median, {minimal_ratios[0]:.2f}x min "
            "(target <= 3x)"
        )
        print(
            f"all runs (s)      : floor {[round(f, 2) for f in floors]}, "
            f"minimal {[round(m, 2) for m in minimals]}, "
            f"backfill {[round(b, 2) for b in backfills]}"
        )
        growth = None
        if args.memory_traces > 0:
            small, large = args.memory_traces, 10 * args.memory_traces
            peaks = {n: peak_memory(workdir, n) for n in (small, large)}
            for n, peak in peaks.items():
                print(f"peak traced memory, {n:>9,} traces: {peak:7.1f} MiB")
            growth = peaks[large] / peaks[small]
            print(f"memory growth for 10x traces: {growth:.2f}x")
    rows = [
        _rows.row("backfill", "raw sqlite3 floor (pairs/s)", pairs / floor, floor=None,
                  higher_is_better=True, target="informational"),
        _rows.row("backfill", "backfill_scorers (pairs/s)", pairs / backfill, floor=None,
                  higher_is_better=True, target="informational"),
        _rows.row("backfill", "backfill cost vs raw sqlite3 (x)", backfill / floor, floor=3.0,
                  higher_is_better=False, target="<= 3x the raw floor"),
        _rows.row("backfill", "minimal floor: one row per pair (pairs/s)", pairs / minimal,
                  floor=None, higher_is_better=True, target="informational"),
        _rows.row("backfill", "backfill cost vs minimal floor (x)", minimal_ratio, floor=3.0,
                  higher_is_better=False, target="<= 3x the minimal floor"),
    ]  # fmt: skip
    if growth is not None:
        rows.append(
            _rows.row("backfill", "peak memory growth for 10x traces (x)", growth, floor=1.5,
                      higher_is_better=False, target="flat (<= 1.5x)")
        )  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
