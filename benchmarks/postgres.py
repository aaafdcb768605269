"""Scaling out: ingest, claim and backfill throughput with 1, 2 and 4 processes, per backend.

Run: ``python benchmarks/postgres.py [--postgres URI] [--traces 2000] [--quick]``

The PostgreSQL server comes from ``--postgres`` or ``LOCALSCORERS_TEST_POSTGRES_URI``
(each run gets a fresh schema); without one only SQLite is measured. Every process is a
separate Python interpreter, standing in for a host:

1. Ingest: N application processes each log ``traces / N`` traces (one active scorer, so
   each commit also writes its online request; monitor off). Traces/s over the wall
   time from the moment every process is ready (a gate file) to the last commit.
2. Claim: ``traces`` pending evaluations of a trivial scorer, drained by N
   ``localscorers worker --drain`` processes started together. Evaluations/s from the
   first feedback written to the last (process start-up left out).
3. Backfill, N jobs: N jobs (one per scorer, ``traces`` traces each) run by N workers
   at once. Evaluations/s from the first job's start to the last job's end.
4. Backfill, one job: ONE job of ``traces`` traces run by N workers at once, which
   share it part by part (key ranges of ``traces / 16`` traces here, so 4 workers
   balance). Twice: with a trivial scorer (the database and the CPU are the limit) and
   with a scorer that waits 20 ms, as a call to a model does (the wait is the limit,
   so more workers help). Evaluations/s from the job's start to its end.

All figures are informational (no floors): they depend on the machine and, for
PostgreSQL, on the server's disk and ``synchronous_commit``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import _rows

import localscorers
from localscorers import _context
from localscorers.store.jobs import BackfillJobs, ScorerSpec

BENCHMARK = "postgres"
REPO_ROOT = Path(__file__).resolve().parent.parent
WORKERS = (1, 2, 4)

_LOGGER = """
import os, sys, time, localscorers
uri, count, gate = sys.argv[1], int(sys.argv[2]), sys.argv[3]
localscorers.set_tracking_uri(uri)
localscorers.log_trace(inputs="warm", outputs="up")
print("ready", flush=True)
while not os.path.exists(gate):
    time.sleep(0.001)
for i in range(count):
    localscorers.log_trace(inputs={"i": i}, outputs=f"answer {i}", tags={"env": "bench"})
"""


def short(outputs):
    return len(str(outputs)) < 40


short.__module__ = "__main__"  # stored as source: workers need not import this file


def waits(outputs):
    import time  # noqa: PLC0415 - stored as source: its body must bring what it uses

    time.sleep(0.02)  # a model call's latency, without the model
    return len(str(outputs)) < 40


waits.__module__ = "__main__"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALSCORERS_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(LOCALSCORERS_MONITOR="off", LOCALSCORERS_EXIT_WAIT_SECONDS="0", **extra)
    return env


def fresh(backend: str, directory: Path, postgres: str | None) -> str:
    """A new empty database: a SQLite file, or a schema on the PostgreSQL server."""
    if backend == "sqlite":
        return f"sqlite:///{directory / f'{uuid.uuid4().hex[:8]}.db'}"
    import psycopg  # noqa: PLC0415 - the optional extra, only when PostgreSQL is measured

    assert postgres is not None
    name = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    joiner = "&" if "?" in postgres else "?"
    return f"{postgres}{joiner}options={quote(f'-csearch_path={name}')}"


def use(uri: str) -> None:
    _context.reset()
    os.environ["LOCALSCORERS_MONITOR"] = "off"
    localscorers.set_tracking_uri(uri)


def create_jobs(names: list[str]) -> None:
    """Create one job per scorer without starting this process's runner: workers run them.

    (``backfill_scorers`` would start this process's runner, which would plan the job
    and make its start the creator's, not the workers'.)
    """
    runtime = _context.current()
    service = BackfillJobs(runtime.db, runtime.store, runtime.registry)
    for name in names:
        service.create("0", [ScorerSpec(name, 1, 1.0)])


def ingest(uri: str, processes: int, traces: int, directory: Path) -> float:
    use(uri)
    localscorers.scorer(short).register(name="short").start()
    _context.reset()
    gate = directory / f"gate-{uuid.uuid4().hex[:8]}"
    per = traces // processes
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _LOGGER, uri, str(per), str(gate)],
            env=_env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    for child in children:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
    start = time.perf_counter()
    gate.touch()
    for child in children:
        assert child.wait() == 0
    return per * processes / (time.perf_counter() - start)


def drain(uri: str, workers: int, **env: str) -> float:
    """Run ``workers`` draining workers at once; return their wall time in seconds."""
    start = time.perf_counter()
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "localscorers", "--db", uri, "worker", "--drain", "-q"],
            env=_env(LOCALSCORERS_MAX_WORKERS="4", **env),
        )
        for _ in range(workers)
    ]
    for child in children:
        assert child.wait() == 0
    return time.perf_counter() - start


def scoring_rate(uri: str) -> float:
    """Feedback written per second, from the first to the last (start-up left out)."""
    use(uri)
    times = sorted(
        a.create_time.timestamp()
        for t in localscorers.search_traces()
        for a in t.info.assessments
        if a.create_time is not None
    )
    _context.reset()
    return (len(times) - 1) / max(times[-1] - times[0], 1e-3)


def claim(uri: str, workers: int, traces: int) -> float:
    use(uri)
    localscorers.scorer(short).register(name="short").start()
    for i in range(traces):
        localscorers.log_trace(inputs={"i": i}, outputs=f"answer {i}")
    _context.reset()
    drain(uri, workers)
    return scoring_rate(uri)


def backfill(uri: str, workers: int, traces: int) -> float:
    use(uri)
    names = [f"short_{n}" for n in range(workers)]
    for name in names:
        localscorers.scorer(short).register(name=name)
    for i in range(traces):
        localscorers.log_trace(inputs={"i": i}, outputs=f"answer {i}")
    create_jobs(names)
    _context.reset()
    drain(uri, workers)
    return job_rate(uri)


def job_rate(uri: str) -> float:
    """Evaluations/s of the database's jobs, from the first start to the last end."""
    # Backfill writes a batch's feedback with one time: use the jobs' own times.
    use(uri)
    jobs = localscorers.list_backfill_jobs()
    _context.reset()
    assert all(j.status == "SUCCEEDED" for j in jobs), [j.status for j in jobs]
    started = min(j.started_at.timestamp() for j in jobs if j.started_at is not None)
    finished = max(j.finished_at.timestamp() for j in jobs if j.finished_at is not None)
    return sum(j.processed for j in jobs) / max(finished - started, 1e-3)


def one_job(uri: str, workers: int, traces: int, scorer: Callable[..., object]) -> float:
    """ONE job over ``traces`` traces, shared by ``workers`` workers part by part."""
    use(uri)
    localscorers.scorer(scorer).register(name="scored")
    for i in range(traces):
        localscorers.log_trace(inputs={"i": i}, outputs=f"answer {i}")
    create_jobs(["scored"])
    _context.reset()
    drain(uri, workers, LOCALSCORERS_BACKFILL_PART_TRACES=str(max(1, traces // 16)))
    return job_rate(uri)


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    """Measure each backend with 1, 2 and 4 processes; print and return the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=os.environ.get("LOCALSCORERS_TEST_POSTGRES_URI"))
    parser.add_argument("--traces", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="400 traces")
    args = parser.parse_args(argv)
    traces = 400 if args.quick else args.traces
    backends = ["sqlite"] + (["postgres"] if args.postgres else [])
    if not args.postgres:
        print("postgres: no --postgres or LOCALSCORERS_TEST_POSTGRES_URI; SQLite only")
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for backend in backends:
            for n in WORKERS:
                figures = {
                    "ingest (traces/s)": ingest(
                        fresh(backend, directory, args.postgres), n, traces, directory
                    ),
                    "claim (evaluations/s)": claim(
                        fresh(backend, directory, args.postgres), n, traces
                    ),
                    "backfill, N jobs (evaluations/s)": backfill(
                        fresh(backend, directory, args.postgres), n, traces
                    ),
                    "backfill, one job (evaluations/s)": one_job(
                        fresh(backend, directory, args.postgres), n, traces, short
                    ),
                    "backfill, one job, 20 ms scorer (evaluations/s)": one_job(
                        fresh(backend, directory, args.postgres), n, traces, waits
                    ),
                }
                for figure, value in figures.items():
                    label = f"{backend}, {n} process{'es' if n > 1 else ''}: {figure}"
                    print(f"{label}: {value:,.0f}")
                    rows.append(
                        _rows.row(
                            BENCHMARK,
                            label,
                            value,
                            floor=None,
                            higher_is_better=True,
                            target="informational",
                        )
                    )
    _context.reset()
    return rows


if __name__ == "__main__":
    main()
