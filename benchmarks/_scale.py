"""The 1M-trace run of ``run.py --scale 1m``: search and backfill figures at that size.

Run: ``python benchmarks/run.py --scale 1m`` (or this file: ``python benchmarks/_scale.py
[--traces 1000000] [--cache DIR] [--window 20000]``).

The database (``filters.record`` traces: spans, feedback, tags, metadata) is built once
under ``--cache`` (default: the system temp directory, never the repository), 5,000
traces per transaction; an interrupted build resumes where it stopped (ids are
deterministic and written in order), and a ``.done`` file next to it marks it whole.
Then, each in a fresh process so its peak RSS is its own:

- search: the newest page of 100 for every case of ``filters.py`` (p50 and p95 of 5),
  one line per field of the grammar and case (common, rare, none);
- backfill: ``backfill_scorers`` with the two trivial scorers of ``backfill.py`` over
  the newest ``--window`` traces and over ten times as many, each against the minimal
  floor (a raw loop that reads the same traces' outputs and inserts one row per pair),
  with the process's peak RSS: a job pages through the traces, so it stays flat.

The feedback a run writes is deleted afterwards, so the cached database stays the same.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _rows
import backfill as backfill_bench
import filters as filters_bench

import localscorers
from localscorers import _context
from localscorers.store.rows import new_id_hex

BENCHMARK = "scale"
BATCH = 5000
SCORERS = ("is_long", "word_count")


def database_path(cache: Path, traces: int) -> Path:
    return cache / f"localscorers-scale-v1-{traces}.db"


def build(path: Path, traces: int) -> None:
    """Write the traces that are missing, in order, one transaction per batch."""
    done = path.with_suffix(".done")
    if done.exists():
        return
    os.environ["LOCALSCORERS_MONITOR"] = "off"
    localscorers.set_tracking_uri(path)
    store = _context.current().store
    with sqlite3.connect(path) as conn:
        have = conn.execute("SELECT count(*) FROM traces").fetchone()[0]
    started = time.perf_counter()
    print(f"building {path}: {have:,} of {traces:,} traces there", flush=True)
    for first in range(have, traces, BATCH):
        batch = [filters_bench.record(i) for i in range(first, min(first + BATCH, traces))]
        store.write_traces(batch, enqueue=False)
        if (first // BATCH) % 20 == 19:
            rate = (first + BATCH - have) / (time.perf_counter() - started)
            print(f"  {first + BATCH:>9,} traces  ({rate:,.0f}/s)", flush=True)
    for function in (backfill_bench.is_long, backfill_bench.word_count):
        # Registering the same definition again is a no-op (an interrupted run's).
        localscorers.scorer(function).register()
    _context.reset()
    elapsed = time.perf_counter() - started
    print(f"built {traces - have:,} traces in {elapsed:.0f} s", flush=True)
    done.write_text(f"{traces} traces; last build step took {elapsed:.0f} s\n")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child_search(path: Path, traces: int) -> list[dict[str, object]]:
    localscorers.set_tracking_uri(path)
    rows = filters_bench.time_cases(traces, 5, BENCHMARK)
    print(f"search process peak RSS: {peak_rss_mib():.0f} MiB")
    rows.append(_rows.row(BENCHMARK, "search process peak RSS (MiB)", peak_rss_mib(),
                          floor=None, higher_is_better=False, target="informational"))  # fmt: skip
    return rows


def minimal_floor(path: Path, start_ms: int) -> float:
    """The minimal floor of ``backfill.py`` over the traces from ``start_ms`` on."""
    started = time.perf_counter()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS floor_feedback "
        "(feedback_id TEXT PRIMARY KEY, trace_id TEXT, name TEXT, value TEXT)"
    )
    after: tuple[int, str] = (start_ms - 1, "")
    while True:
        page = conn.execute(
            "SELECT trace_id, request_time_ms, inputs, outputs FROM traces "
            "WHERE experiment_id = '0' AND (request_time_ms, trace_id) > (?, ?) "
            "ORDER BY request_time_ms, trace_id LIMIT 1000",
            after,
        ).fetchall()
        if not page:
            break
        batch = []
        for trace_id, _, inputs_text, outputs_text in page:
            inputs, outputs = json.loads(inputs_text), json.loads(outputs_text)
            batch.append((new_id_hex(), trace_id, "is_long",
                          json.dumps(backfill_bench.is_long(outputs))))  # fmt: skip
            batch.append((new_id_hex(), trace_id, "word_count",
                          json.dumps(backfill_bench.word_count(inputs, outputs))))  # fmt: skip
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO floor_feedback VALUES (?, ?, ?, ?)", batch)
        conn.execute("COMMIT")
        after = (page[-1][1], page[-1][0])
    elapsed = time.perf_counter() - started
    conn.execute("DROP TABLE floor_feedback")
    conn.close()
    return elapsed


def forget_backfill(path: Path) -> None:
    """Delete what the backfill wrote, so the cached database stays the same."""
    conn = sqlite3.connect(path, isolation_level=None)
    marks = ", ".join("?" * len(SCORERS))
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(f"DELETE FROM assessments WHERE scorer_name IN ({marks})", SCORERS)
    conn.execute(f"DELETE FROM evaluations WHERE scorer_name IN ({marks})", SCORERS)
    conn.execute("DELETE FROM backfill_jobs")
    conn.execute("COMMIT")
    conn.close()


def child_backfill(path: Path, traces: int, window: int) -> list[dict[str, object]]:
    start_ms = filters_bench.T0 + (traces - window) * 100  # filters.record: 100 ms apart
    forget_backfill(path)
    floor = minimal_floor(path, start_ms)
    localscorers.set_tracking_uri(path)
    started = time.perf_counter()
    job_id = localscorers.backfill_scorers(
        scorers=[localscorers.BackfillScorerConfig(scorer=n, sample_rate=1.0) for n in SCORERS],
        start_time=start_ms,
    )
    job = localscorers.wait_for_backfill_job(job_id, timeout=3600)
    elapsed = time.perf_counter() - started
    _context.reset()
    forget_backfill(path)
    if job.status != "SUCCEEDED" or job.succeeded != 2 * window:
        raise SystemExit(f"the backfill did not score every pair: {job}")
    pairs, rss = 2 * window, peak_rss_mib()
    print(f"backfill of the newest {window:,} of {traces:,} traces: {elapsed:.1f} s, "
          f"{pairs / elapsed:,.0f} pairs/s; minimal floor {floor:.1f} s "
          f"({elapsed / floor:.2f}x); peak RSS {rss:.0f} MiB", flush=True)  # fmt: skip
    label = f"{window // 1000}k of {traces // 1000}k traces"
    return [
        _rows.row(BENCHMARK, f"backfill {label} (pairs/s)", pairs / elapsed, floor=None,
                  higher_is_better=True, target="informational"),
        _rows.row(BENCHMARK, f"backfill {label} vs minimal floor (x)", elapsed / floor,
                  floor=3.0, higher_is_better=False, target="<= 3x the minimal floor"),
        _rows.row(BENCHMARK, f"backfill {label}: peak RSS (MiB)", rss, floor=None,
                  higher_is_better=False, target="flat"),
    ]  # fmt: skip


def in_child(args: list[str]) -> list[dict[str, object]]:
    """Run one part in a fresh process (its own peak RSS); return its rows."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        target = Path(out.name)
    try:
        subprocess.run([sys.executable, __file__, *args, "--out", str(target)], check=True)
        rows: list[dict[str, object]] = json.loads(target.read_text())
        return rows
    finally:
        target.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    """Build (or resume) the database, then run search and backfill in fresh processes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=1_000_000)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--window", type=int, default=20_000, help="traces backfilled")
    parser.add_argument("--part", choices=("search", "backfill"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ["LOCALSCORERS_MONITOR"] = "off"
    path = database_path(args.cache, args.traces)
    if args.part is not None:
        if args.part == "search":
            rows = child_search(path, args.traces)
        else:
            rows = child_backfill(path, args.traces, args.window)
        if args.out is not None:
            args.out.write_text(json.dumps(rows))
        return rows
    started = time.perf_counter()
    build(path, args.traces)
    print(f"database ready in {time.perf_counter() - started:.0f} s: {path}", flush=True)
    common = ["--traces", str(args.traces), "--cache", str(args.cache)]
    rows = in_child([*common, "--part", "search"])
    for window in (args.window, 10 * args.window):
        rows += in_child([*common, "--part", "backfill", "--window", str(window)])
    rss = [r["value"] for r in rows if str(r["figure"]).endswith("peak RSS (MiB)")][-2:]
    if len(rss) == 2:
        growth = float(rss[1]) / float(rss[0])  # type: ignore[arg-type]
        print(f"backfill peak RSS for 10x the traces: {growth:.2f}x")
        rows.append(
            _rows.row(BENCHMARK, "backfill peak RSS growth for 10x traces (x)", growth,
                      floor=1.5, higher_is_better=False, target="flat (<= 1.5x)")
        )  # fmt: skip
    print(f"median page: {statistics.median(_page_times(rows)):.1f} ms")
    return rows


def _page_times(rows: list[dict[str, object]]) -> list[float]:
    return [float(r["value"]) for r in rows if str(r["figure"]).startswith("page of 100")]  # type: ignore[arg-type]


if __name__ == "__main__":
    main(sys.argv[1:])
