"""Online evaluation: hot-path overhead, sustained throughput, and parallel slow scorers.

Run: ``python benchmarks/online.py [--duration 30] [--rate 2000] [--scorers 5] [--quick]``

1. Hot path: ``log_trace`` into an experiment with 5 active trivial scorers against one
   with none, the monitor off (``LOCALSCORERS_MONITOR=off``) so only what the
   application thread pays is measured: the pending evaluations written in the trace's
   transaction. Interleaved blocks, median of each. Target: <= 1.3x.
2. Throughput: ``log_trace`` paced at ``--rate`` traces/s for ``--duration`` s with
   ``--scorers`` trivial scorers active, scored by the in-process monitor and then by a
   ``localscorers worker`` process; the backlog of pending evaluations when ingest
   stops, and how long until it reaches zero. Targets: zero within 5 s, and the worker
   run ingesting at the requested rate. In-process, the achieved rate is reported
   only: the application and the evaluator share one interpreter lock.
3. Slow scorers: a scorer sleeping 20 ms, 16 workers, a backlog drained from the start
   of the monitor; evaluations/s against the ideal 16 / 0.020 s = 800/s. Target: >= 85 %.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _rows

import localscorers
from localscorers import ScorerSamplingConfig, _context
from localscorers.store.ledger import EvaluationQueue

BENCHMARK = "online"
SLOW_SECONDS = 0.020
SLOW_WORKERS = 16


def is_long(outputs):
    return len(str(outputs)) > 20


def has_question(inputs):
    return "?" in str(inputs)


def word_count(outputs):
    return len(str(outputs).split())


def constant():
    return 1.0


def label(inputs):
    return "long" if len(str(inputs)) > 40 else "short"


def slow():
    time.sleep(SLOW_SECONDS)
    return True


TRIVIAL = (is_long, has_question, word_count, constant, label)
for _func in (*TRIVIAL, slow):
    # Stored as source, so that a `localscorers worker` process can run them without
    # importing this file (run.py loads it under another module name).
    _func.__module__ = "__main__"


def row(name: str, value: float, *, floor: float | None, higher_is_better: bool, target: str):
    return _rows.row(
        BENCHMARK, name, value, floor=floor, higher_is_better=higher_is_better, target=target
    )


def log(i: int) -> str:
    return localscorers.log_trace(
        inputs={"question": f"What is the status of order {i}?"},
        outputs=f"Order {i} shipped on day {i % 30}; it should arrive within a week.",
        name="answer",
        tags={"env": "prod"},
    )


def use(path: Path, **env: str) -> None:
    """Switch to a fresh database with these LOCALSCORERS_* settings (read when it opens)."""
    _context.reset()
    for key in [k for k in os.environ if k.startswith("LOCALSCORERS_")]:
        del os.environ[key]
    os.environ.update({f"LOCALSCORERS_{k}": v for k, v in env.items()})
    localscorers.set_tracking_uri(path)


def start_trivial(count: int) -> None:
    for func in TRIVIAL[:count]:
        localscorers.scorer(func).register().start(
            sampling_config=ScorerSamplingConfig(sample_rate=1.0)
        )


def pending() -> int:
    runtime = _context.current()
    return EvaluationQueue(runtime.db, owner="benchmark", lease_ms=0).pending_count()


# -- 1. hot-path overhead -------------------------------------------------------------


def measure_overhead(directory: Path, *, block: int, rounds: int) -> list[dict[str, object]]:
    use(directory / "overhead.db", MONITOR="off")
    quiet = localscorers.set_experiment("no scorers").experiment_id
    busy = localscorers.set_experiment("five scorers").experiment_id
    start_trivial(5)
    for experiment in (quiet, busy):  # warm up both paths
        localscorers.set_experiment(experiment_id=experiment)
        for i in range(200):
            log(i)
    times: dict[str, list[float]] = {quiet: [], busy: []}
    for _ in range(rounds):
        for experiment in (quiet, busy):
            localscorers.set_experiment(experiment_id=experiment)
            started = time.perf_counter()
            for i in range(block):
                log(i)
            times[experiment].append((time.perf_counter() - started) / block)
    none_us = statistics.median(times[quiet]) * 1e6
    five_us = statistics.median(times[busy]) * 1e6
    assert pending() == 5 * (200 + block * rounds)
    overhead = five_us / none_us
    print(f"log_trace, no scorers:       {none_us:6.0f} us/trace ({1e6 / none_us:.0f}/s)")
    print(f"log_trace, 5 active scorers: {five_us:6.0f} us/trace ({1e6 / five_us:.0f}/s)")
    print(f"hot-path overhead of 5 active scorers: {overhead:.2f}x (target <= 1.3x)")
    return [
        row("log_trace, no scorers (us/trace)", none_us, floor=None, higher_is_better=False,
            target="informational"),
        row("log_trace, 5 active scorers (us/trace)", five_us, floor=None,
            higher_is_better=False, target="informational"),
        row("hot-path cost with 5 active scorers vs none (x)", overhead, floor=1.3,
            higher_is_better=False, target="<= 1.3x"),
    ]  # fmt: skip


# -- 2. sustained throughput ----------------------------------------------------------


def measure_throughput(
    directory: Path, *, rate: float, duration: float, scorers: int, worker: bool
) -> list[dict[str, object]]:
    mode = "worker process" if worker else "in-process monitor"
    path = directory / f"throughput-{'worker' if worker else 'monitor'}.db"
    if worker:
        use(path, MONITOR="off")
        process = subprocess.Popen(
            [sys.executable, "-m", "localscorers", "--db", str(path), "worker"],
            env={k: v for k, v in os.environ.items() if not k.startswith("LOCALSCORERS_")},
        )
    else:
        use(path)
    start_trivial(scorers)
    for i in range(100):  # starts the monitor (or lets the worker start) and warms the path
        log(i)
    assert localscorers.flush(timeout=60)
    interval = 1.0 / rate
    samples: list[tuple[float, int]] = []
    count = 0
    started = time.perf_counter()
    next_sample = started + 1.0
    end = started + duration
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        if now >= next_sample:
            samples.append((now - started, pending()))
            next_sample += 1.0
        log(count)
        count += 1
        delay = started + count * interval - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    stopped = time.perf_counter()
    achieved = count / (stopped - started)
    backlog = pending()
    finished = localscorers.flush(timeout=600)
    drain = time.perf_counter() - stopped
    evaluations = count * scorers
    if worker:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    print(f"-- {mode}")
    print(
        f"ingest: {count} traces in {stopped - started:.1f} s = {achieved:.0f}/s "
        f"(asked {rate:.0f}/s), {scorers} trivial scorers"
    )
    print("backlog of pending evaluations, each second: " + ", ".join(str(p) for _, p in samples))
    print(f"backlog when ingest stopped: {backlog}; reached zero {drain:.2f} s later")
    print(
        f"evaluations: {evaluations} in {time.perf_counter() - started:.1f} s = "
        f"{evaluations / (time.perf_counter() - started):.0f}/s"
    )
    if not finished:
        print("flush timed out: the backlog did not reach zero within 600 s")
    peak = max((p for _, p in samples), default=backlog)
    # The rate is the target for the worker process. In-process, the application's own
    # log_trace calls and the evaluator share one interpreter lock, so on a small machine
    # the application cannot log that fast while it also scores: reported, not targeted.
    ingest_floor = rate if worker else None
    ingest_target = f">= {rate:.0f} traces/s" if worker else "informational: one GIL"
    return [
        row(f"{mode}: ingest achieved, asked {rate:.0f}/s, {scorers} scorers (traces/s)",
            achieved, floor=ingest_floor, higher_is_better=True, target=ingest_target),
        row(f"{mode}: backlog when ingest stopped (evaluations)", float(backlog), floor=None,
            higher_is_better=False, target="informational"),
        row(f"{mode}: peak backlog during ingest (evaluations)", float(peak), floor=None,
            higher_is_better=False, target="informational"),
        row(f"{mode}: backlog reaches zero after ingest (s)", drain, floor=5.0,
            higher_is_better=False, target="<= 5 s"),
    ]  # fmt: skip


# -- 3. slow scorers in parallel ------------------------------------------------------


def measure_parallel(directory: Path, *, traces: int) -> list[dict[str, object]]:
    use(directory / "parallel.db", MONITOR="off")
    localscorers.scorer(slow).register().start()
    for i in range(traces):
        log(i)
    os.environ["LOCALSCORERS_MONITOR"] = "on"
    os.environ["LOCALSCORERS_MAX_WORKERS"] = str(SLOW_WORKERS)
    started = time.perf_counter()
    assert localscorers.flush(timeout=600)  # starts the monitor with 16 workers
    elapsed = time.perf_counter() - started
    throughput = traces / elapsed
    ideal = SLOW_WORKERS / SLOW_SECONDS
    share = throughput / ideal
    print(
        f"slow scorer ({SLOW_SECONDS * 1000:.0f} ms), {SLOW_WORKERS} workers: {traces} "
        f"evaluations in {elapsed:.2f} s = {throughput:.0f}/s, {share:.0%} of the ideal "
        f"{ideal:.0f}/s (target >= 85 %)"
    )
    return [
        row(f"slow scorers, {SLOW_WORKERS} workers (evaluations/s)", throughput,
            floor=0.85 * ideal, higher_is_better=True, target=f">= 85 % of {ideal:.0f}/s"),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    """Run the online benchmarks, print their figures, and return the rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of paced ingest")
    parser.add_argument("--rate", type=float, default=2000.0, help="traces/s to ingest")
    parser.add_argument("--scorers", type=int, default=5, choices=range(1, len(TRIVIAL) + 1))
    parser.add_argument("--block", type=int, default=1000, help="traces per overhead block")
    parser.add_argument("--rounds", type=int, default=5, help="overhead blocks of each kind")
    parser.add_argument("--slow-traces", type=int, default=4000)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args([] if argv is None else argv)
    if args.quick:
        args.duration, args.block, args.rounds, args.slow_traces = 5.0, 300, 3, 800
    saved = {k: v for k, v in os.environ.items() if k.startswith("LOCALSCORERS_")}
    try:
        with tempfile.TemporaryDirectory(prefix="localscorers-online-") as tmp:
            directory = Path(tmp)
            rows = measure_overhead(directory, block=args.block, rounds=args.rounds)
            for worker in (False, True):
                rows += measure_throughput(
                    directory,
                    rate=args.rate,
                    duration=args.duration,
                    scorers=args.scorers,
                    worker=worker,
                )
            rows += measure_parallel(directory, traces=args.slow_traces)
            _context.reset()
    finally:
        for key in [k for k in os.environ if k.startswith("LOCALSCORERS_")]:
            del os.environ[key]
        os.environ.update(saved)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
