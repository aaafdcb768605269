"""Commit-to-feedback latency with a worker process, and claim cost against backlog size.

Run: ``python benchmarks/latency.py [--traces 300] [--backlogs 1000,10000,50000] [--quick]``

1. Latency: an application process (this one, ``LOCALSCORERS_MONITOR=off``) logs traces
   one at a time, 20-60 ms apart, while an idle ``localscorers worker`` scores them with a
   trivial scorer. Latency is the feedback's ``created_ms`` minus the trace's
   ``ingested_ms`` (one clock, one machine). Targets: p50 < 50 ms, p99 < 200 ms. The
   worker notices commits of other processes through ``PRAGMA data_version`` (checked
   every 10 ms), not through its 0.5 s poll.
2. Claim cost: a backlog of N pending evaluations, then ``EvaluationQueue.claim(32)``
   and a release, timed (median of 20) for each N. Target: flat in N (the largest
   backlog's claim within 2x the smallest's): the claim reads the oldest rows through an
   index in id order and never sorts the backlog.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _rows

import localscorers
from localscorers import _context
from localscorers.store.ledger import EvaluationQueue, move_requests

BENCHMARK = "latency"
REPO_ROOT = Path(__file__).resolve().parent.parent


def is_long(outputs):
    return len(str(outputs)) > 20


def _use(path: Path, **env: str) -> None:
    for key in [k for k in os.environ if k.startswith("LOCALSCORERS_")]:
        del os.environ[key]
    for key, value in env.items():
        os.environ[f"LOCALSCORERS_{key}"] = value
    _context.reset()
    localscorers.set_tracking_uri(path)


def _worker(path: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALSCORERS_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "benchmarks"), str(REPO_ROOT)])
    command = [sys.executable, "-m", "localscorers", "--db", str(path), "worker", "--quiet"]
    return subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def measure_latency(directory: Path, *, traces: int) -> list[dict[str, object]]:
    path = directory / "latency.db"
    _use(path, MONITOR="off")
    localscorers.scorer(is_long).register().start()
    localscorers.log_trace(inputs=0, outputs="warm-up")  # the worker's first claim loads it
    worker = _worker(path)
    try:
        deadline = time.monotonic() + 60
        while _scored(path) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        for i in range(traces):
            localscorers.log_trace(inputs=i, outputs="x" * (i % 40))
            time.sleep(random.uniform(0.02, 0.06))
        while _scored(path) < traces + 1 and time.monotonic() < deadline + traces:
            time.sleep(0.05)
    finally:
        worker.terminate()
        worker.wait(30)
    with sqlite3.connect(path) as conn:
        delays = [
            float(ms)
            for (ms,) in conn.execute(
                "SELECT a.created_ms - t.ingested_ms FROM assessments a "
                "JOIN traces t ON t.trace_id = a.trace_id WHERE a.origin = 'online' "
                "ORDER BY t.ingested_ms LIMIT -1 OFFSET 1"
            )
        ]
    conn.close()
    p50, p99 = _percentile(delays, 0.50), _percentile(delays, 0.99)
    print(
        f"commit -> feedback with a worker, {len(delays)} traces: "
        f"p50 {p50:.0f} ms, p99 {p99:.0f} ms"
    )
    return [
        _rows.row(
            BENCHMARK, "latency p50 (ms)", p50, floor=50.0, higher_is_better=False, target="< 50 ms"
        ),
        _rows.row(
            BENCHMARK,
            "latency p99 (ms)",
            p99,
            floor=200.0,
            higher_is_better=False,
            target="< 200 ms",
        ),
    ]


def _scored(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM assessments WHERE origin = 'online'"
        ).fetchone()
    conn.close()
    return int(count)


def measure_claims(directory: Path, *, backlogs: list[int]) -> list[dict[str, object]]:
    times: dict[int, float] = {}
    for size in backlogs:
        path = directory / f"claims-{size}.db"
        _use(path, MONITOR="off")
        localscorers.scorer(is_long).register().start()
        db = _context.current().db
        for start in range(0, size, 1000):
            for i in range(start, min(size, start + 1000)):
                localscorers.log_trace(inputs=i, outputs=i)
        queue = EvaluationQueue(db, owner="bench", lease_ms=60_000)
        move_requests(db)  # the whole backlog in the ledger, as a long-running queue has it
        samples = []
        for _ in range(20):
            started = time.perf_counter()
            claims = queue.claim(32)
            samples.append(time.perf_counter() - started)
            queue.release(claims)
        times[size] = statistics.median(samples)
        print(f"claim(32) with a backlog of {size:>7,}: {times[size] * 1000:.2f} ms")
    smallest, largest = times[min(times)], times[max(times)]
    growth = largest / smallest
    print(f"claim cost, largest backlog against smallest: {growth:.2f}x (target <= 2x)")
    return [
        _rows.row(
            BENCHMARK,
            "claim cost growth",
            growth,
            floor=2.0,
            higher_is_better=False,
            target="<= 2x",
        )
    ]


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    """Run the latency benchmarks, print their figures, and return the rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--traces", type=int, default=300)
    parser.add_argument("--backlogs", default="1000,10000,50000")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args([] if argv is None else argv)
    if args.quick:
        args.traces, args.backlogs = 60, "500,5000"
    saved = {k: v for k, v in os.environ.items() if k.startswith("LOCALSCORERS_")}
    try:
        with tempfile.TemporaryDirectory(prefix="localscorers-latency-") as tmp:
            rows = measure_latency(Path(tmp), traces=args.traces)
            rows += measure_claims(Path(tmp), backlogs=[int(n) for n in args.backlogs.split(",")])
            _context.reset()
    finally:
        for key in [k for k in os.environ if k.startswith("LOCALSCORERS_")]:
            del os.environ[key]
        os.environ.update(saved)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
