"""One backfill job shared by several workers: its parts (key ranges) are claimed apart.

``localscorers worker`` processes stand in for hosts, on a SQLite file (WAL) and on
PostgreSQL. A gate file holds one trace of every part until the test opens it, so
"both workers hold a part" is observed, not timed. Exactly one feedback per (trace,
scorer version) must hold whoever dies or is cancelled.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import localscorers
from localscorers import ConfigurationError, Feedback, JobStatus, Scorer, _context
from localscorers.evaluation import part_traces_from_env
from localscorers.store import Finished, Progress, ScorerSpec, claim_job, dialect, schema
from tests import scorer_helpers_online as helpers
from tests.process_helpers import spawn, wait_until

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX")

T0 = 1_700_000_000_000
TRACES = 120
PART = 20  # traces per part: 6 parts; trace 10 of each part waits for the gate
HOLD = 10
DEADLINE = 90.0
WORKER_ENV = {
    "LOCALSCORERS_MONITOR": "off",
    "LOCALSCORERS_BACKFILL_PART_TRACES": str(PART),
    "LOCALSCORERS_LEASE_SECONDS": "1.5",
    "LOCALSCORERS_MAX_WORKERS": "2",
    "LOCALSCORERS_EXIT_WAIT_SECONDS": "0",
}


class Gated(Scorer):
    """Score at once, except a trace marked ``hold``: it waits for the gate file first."""

    gate: str = ""

    def __call__(
        self,
        *,
        inputs: Any = None,
        outputs: Any = None,
        expectations: dict[str, Any] | None = None,
        trace: Any = None,
    ) -> Any:
        """Say which process scored (after the gate opens, for held traces)."""
        deadline = time.monotonic() + DEADLINE
        while inputs.get("hold") and not os.path.exists(self.gate):
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)  # a child process waiting for the test, not test timing
        return Feedback(value=True, metadata={"pid": os.getpid()})


@pytest.fixture
def shared(store_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh database of each backend with the traces and the gated scorer; no monitor."""
    monkeypatch.setenv("LOCALSCORERS_MONITOR", "off")
    localscorers.set_tracking_uri(store_uri)
    for i in range(TRACES):
        localscorers.log_trace(
            inputs={"i": i, "hold": i % PART == HOLD}, outputs=i, request_time=T0 + i
        )
    Gated(name="gated", gate=str(tmp_path / "gate")).register()
    return store_uri


def create_job() -> str:
    """Create the job without waking this process's runner: only the workers run it."""
    runtime = _context.current()
    service = runtime.storage.jobs()
    return service.create("0", [ScorerSpec("gated", 1, 1.0)])


def parts(job_id: str) -> list[Any]:
    p = schema.backfill_job_parts
    query = sa.select(p).where(p.c.job_id == job_id).order_by(p.c.part_no)
    with _context.current().db.read() as conn:
        return list(conn.execute(query).all())


def held(job_id: str) -> list[Any]:
    """The parts held now, each with some work committed."""
    return [
        part
        for part in parts(job_id)
        if part.status == "RUNNING" and part.lease_owner is not None and part.processed > 0
    ]


def feedback() -> tuple[Counter[int], dict[int, int]]:
    """Count the gated feedback per trace index, and say which pid scored each index."""
    counts: Counter[int] = Counter()
    pids: dict[int, int] = {}
    for trace in localscorers.search_traces(max_results=10_000):
        index = trace.data.request["i"]
        for a in trace.info.assessments:
            if isinstance(a, Feedback) and a.name == "gated":
                counts[index] += 1
                pids[index] = a.metadata["pid"] if a.metadata else 0
    return counts, pids


def start_workers(uri: str, processes: list[subprocess.Popen[str]]) -> list[subprocess.Popen[str]]:
    return [spawn(processes, helpers.worker_command(uri, drain=False), **WORKER_ENV) for _ in "ab"]


def two_holders(job_id: str, workers: list[subprocess.Popen[str]]) -> list[Any]:
    """Wait until two workers each hold a part with work committed; return those parts."""
    wait_until(
        lambda: (
            len({p.lease_owner for p in held(job_id)}) >= 2
            or any(w.poll() is not None for w in workers)
        ),
        timeout=DEADLINE,
    )
    for worker in workers:
        assert worker.poll() is None, worker.communicate()[1]
    return held(job_id)


def finished(job_id: str, workers: list[subprocess.Popen[str]]) -> localscorers.BackfillJob:
    wait_until(
        lambda: (
            localscorers.get_backfill_job(job_id).status in {"SUCCEEDED", "FAILED", "CANCELLED"}
            or all(w.poll() is not None for w in workers)
        ),
        timeout=DEADLINE,
    )
    return localscorers.get_backfill_job(job_id)


def test_two_workers_share_one_job(
    shared: str, tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    job_id = create_job()
    workers = start_workers(shared, processes)
    holding = two_holders(job_id, workers)
    running = localscorers.get_backfill_job(job_id)
    assert running.status == JobStatus.RUNNING
    assert running.total == TRACES  # counted once, when the job was split
    assert running.processed == sum(p.processed for p in parts(job_id))
    (tmp_path / "gate").touch()

    job = finished(job_id, workers)
    assert (job.status, job.total, job.processed, job.succeeded, job.failed) == (
        "SUCCEEDED",
        TRACES,
        TRACES,
        TRACES,
        0,
    )
    assert job.scorers[0]["processed"] == TRACES
    counts, pids = feedback()
    assert counts == Counter(range(TRACES))  # every trace once, none twice
    assert {pids[i] for i in range(TRACES)} == {w.pid for w in workers}  # both worked
    ended = parts(job_id)
    assert len(ended) == TRACES // PART
    assert {p.status for p in ended} == {"SUCCEEDED"}
    assert sum(p.processed for p in ended) == TRACES
    assert len(holding) >= 2


def test_a_killed_workers_part_is_taken_over_after_its_lease(
    shared: str, tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    job_id = create_job()
    workers = start_workers(shared, processes)
    holding = two_holders(job_id, workers)
    _, pids = feedback()
    victim_part = holding[0]
    first_index = victim_part.part_no * PART
    victim = next(w for w in workers if w.pid == pids[first_index])
    survivor = next(w for w in workers if w is not victim)
    os.kill(victim.pid, signal.SIGKILL)  # holding its part, a call waiting at the gate
    victim.wait(timeout=DEADLINE)
    (tmp_path / "gate").touch()

    job = finished(job_id, [survivor])
    assert (job.status, job.processed, job.succeeded) == ("SUCCEEDED", TRACES, TRACES)
    counts, pids = feedback()
    assert counts == Counter(range(TRACES))
    taken = range(first_index, first_index + PART)
    # The victim's committed prefix stays; the survivor did the rest of its part.
    assert victim.pid in {pids[i] for i in taken}
    assert pids[first_index + HOLD] == survivor.pid
    assert {p.status for p in parts(job_id)} == {"SUCCEEDED"}


def test_cancel_reaches_every_holder(
    shared: str, tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    job_id = create_job()
    workers = start_workers(shared, processes)
    holding = two_holders(job_id, workers)
    assert len({p.lease_owner for p in holding}) == 2

    job = localscorers.cancel_backfill_job(job_id)  # waits up to 5 s for the holders
    if job.status != JobStatus.CANCELLED:
        job = finished(job_id, workers)
    assert job.status == JobStatus.CANCELLED
    ended = parts(job_id)
    assert {p.status for p in ended} <= {"CANCELLED", "SUCCEEDED"}
    assert {p.status for p in ended if p.part_no in {h.part_no for h in holding}} == {"CANCELLED"}
    assert all(p.lease_owner is None for p in ended)
    (tmp_path / "gate").touch()  # let the held calls return: nothing more is written
    counts, _ = feedback()
    assert set(counts.values()) <= {1}
    assert job.processed == sum(counts.values())
    assert job.processed < TRACES
    for worker in workers:
        assert worker.poll() is None, worker.communicate()[1]


def test_concurrent_claims_take_each_part_once(shared: str) -> None:
    job_id = create_job()
    db = _context.current().db
    taken: list[tuple[str, int]] = []
    barrier = threading.Barrier(8)

    def claim(owner: str) -> None:
        barrier.wait()
        while (part := claim_job(db, owner, 60_000, part_traces=PART)) is not None:
            taken.append((part.job_id, part.part_no))

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=DEADLINE)
    assert sorted(taken) == [(job_id, n) for n in range(TRACES // PART)]
    bounds = [(p.lower_trace_id, p.upper_trace_id) for p in parts(job_id)]
    assert bounds[0][0] is None
    assert bounds[-1][1] is None
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    assert localscorers.get_backfill_job(job_id).total == TRACES


def end_part(part: Any, *, next_part: bool = True) -> Any:
    """End a held part SUCCEEDED (no results), asking for the job's next part."""
    lease = _context.current().storage.lease(part, owner="w1", lease_ms=60_000)
    progress = Progress([], part.scorers, None, status=JobStatus.SUCCEEDED, next_part=next_part)
    return lease.commit(progress, on_written=lambda *_: None)


def test_a_part_that_ends_takes_the_next_part_of_its_job(shared: str) -> None:
    job_id = create_job()
    part = claim_job(_context.current().db, "w1", 60_000, part_traces=PART)
    taken = []
    while part is not None:
        taken.append(part.part_no)
        assert part.job_id == job_id
        assert part.claims == 1  # a fresh claim: no holder died
        part = end_part(part)
    assert taken == list(range(TRACES // PART))
    assert localscorers.get_backfill_job(job_id).status == JobStatus.SUCCEEDED
    assert all(p.lease_owner is None for p in parts(job_id))


def test_a_cancelled_job_gives_no_next_part(shared: str) -> None:
    job_id = create_job()
    part = claim_job(_context.current().db, "w1", 60_000, part_traces=PART)
    assert part is not None
    _context.current().storage.jobs().cancel(job_id)  # the free parts end; ours stays held
    assert end_part(part) is None
    assert localscorers.get_backfill_job(job_id).status == JobStatus.CANCELLED
    assert {p.status for p in parts(job_id)} == {"SUCCEEDED", "CANCELLED"}


def test_feedback_names_its_own_evaluation_when_some_pairs_were_written_meanwhile(
    shared: str,
) -> None:
    create_job()
    runtime = _context.current()
    part = claim_job(runtime.db, "w1", 60_000, part_traces=PART)
    assert part is not None
    lease = runtime.storage.lease(part, owner="w1", lease_ms=60_000)
    by_index = {
        t.data.request["i"]: t.info.trace_id for t in localscorers.search_traces(max_results=1000)
    }

    def commit(indexes: list[int]) -> list[str | None]:
        statuses: list[str | None] = []
        results = [Finished(by_index[i], "gated", 1, (i,), 1) for i in indexes]
        progress = Progress(results, part.scorers, None)
        lease.commit(progress, on_written=lambda _result, status: statuses.append(status))
        return statuses

    assert commit([0, 1]) == ["SUCCEEDED", "SUCCEEDED"]  # every row new
    assert commit([1, 2, 3]) == [None, "SUCCEEDED", "SUCCEEDED"]  # 1 is held already
    a, e = schema.assessments, schema.evaluations
    query = sa.select(a.c.trace_id, a.c.value_num, e.c.trace_id, e.c.scorer_name).join(
        e, e.c.id == a.c.evaluation_id
    )
    with runtime.db.read() as conn:
        rows = sorted(conn.execute(query).all(), key=lambda row: row[1])
    assert [tuple(row) for row in rows] == [
        (by_index[i], float(i), by_index[i], "gated") for i in range(4)
    ]


def test_a_running_job_from_before_parts_resumes_at_its_cursor(shared: str, tmp_path: Path) -> None:
    job_id = create_job()
    runtime = _context.current()
    by_index = {
        t.data.request["i"]: t.info.trace_id for t in localscorers.search_traces(max_results=1000)
    }
    ids = [by_index[i] for i in range(TRACES)]
    j = schema.backfill_jobs
    counts = {"total": TRACES, "processed": 50, "succeeded": 50, "failed": 0, "skipped": 0}
    with runtime.db.write() as conn:
        (frozen,) = conn.execute(sa.select(j.c.scorers).where(j.c.job_id == job_id)).one()
        conn.execute(
            sa.update(j)
            .where(j.c.job_id == job_id)
            .values(
                status="RUNNING",
                cursor_time_ms=T0 + 49,
                cursor_trace_id=ids[49],
                scorers=[{**frozen[0], **counts}],
                **counts,
            )
        )
        conn.execute(sa.text("DROP TABLE backfill_job_parts"))
        dialect.of(conn).set_user_version(conn, 9)
    _context.reset()

    localscorers.set_tracking_uri(shared)  # migrates: the job becomes one part at its cursor
    (part,) = parts(job_id)
    assert (part.cursor_time_ms, part.cursor_trace_id, part.processed) == (T0 + 49, ids[49], 50)
    (tmp_path / "gate").touch()
    job = localscorers.wait_for_backfill_job(job_id, timeout=DEADLINE)
    assert (job.status, job.processed, job.succeeded) == ("SUCCEEDED", TRACES, TRACES)
    counts_now, _ = feedback()
    assert counts_now == Counter(range(50, TRACES))  # only past the cursor


def test_part_size_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALSCORERS_BACKFILL_PART_TRACES", "many")
    with pytest.raises(ConfigurationError, match="LOCALSCORERS_BACKFILL_PART_TRACES must be"):
        part_traces_from_env()
    monkeypatch.setenv("LOCALSCORERS_BACKFILL_PART_TRACES", "0")
    with pytest.raises(ConfigurationError, match="got '0'"):
        part_traces_from_env()
    monkeypatch.setenv("LOCALSCORERS_BACKFILL_PART_TRACES", "250")
    assert part_traces_from_env() == 250
