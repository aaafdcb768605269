"""The evaluation ledger and backfill job claims as a contract, on SQLite and PostgreSQL.

Claimers run on threads against one database: on SQLite they queue on the write lock,
on PostgreSQL they run side by side and ``FOR UPDATE SKIP LOCKED`` keeps them apart.
Either way every pending evaluation is claimed by exactly one holder, completion is
refused to a holder whose lease was taken over, and a job has one holder at a time.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator

import pytest

import localscorers
from localscorers import Feedback, ScorerSamplingConfig, _context
from localscorers.store import Database, Ledger, Outcome, ScorerSpec, Store, claim_job


@localscorers.scorer
def yes() -> bool:
    """Always true."""
    return True


@pytest.fixture
def db(contract_tracking: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """The test database with 40 pending evaluations (nobody in this process scores them)."""
    monkeypatch.setenv("LOCALSCORERS_MONITOR", "off")
    yes.register(name="yes").start(sampling_config=ScorerSamplingConfig())
    for i in range(40):
        localscorers.log_trace(inputs=i, outputs=i)
    database = Database(contract_tracking)
    yield database
    database.close()
    _context.reset()


def test_concurrent_claimers_take_each_evaluation_once(db: Database) -> None:
    queues = [Store(db).queue(owner=f"q{i}", lease_ms=60_000) for i in range(4)]
    claimed: dict[str, list[int]] = {q.owner: [] for q in queues}
    barrier = threading.Barrier(len(queues))

    def run(queue: Ledger) -> None:
        barrier.wait()
        while batch := queue.claim(3):
            claimed[queue.owner] += [c.id for c in batch]
            queue.complete([Outcome(c, plain=(True,)) for c in batch])

    threads = [threading.Thread(target=run, args=(q,)) for q in queues]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    every = [i for ids in claimed.values() for i in ids]
    assert len(every) == len(set(every)) == 40
    assert queues[0].pending_count() == 0
    counts = Counter(
        (t.info.trace_id, a.name)
        for t in localscorers.search_traces()
        for a in t.info.assessments
        if isinstance(a, Feedback)
    )
    assert len(counts) == 40
    assert set(counts.values()) == {1}


def test_an_expired_lease_is_taken_over_and_the_old_holder_cannot_complete(
    db: Database,
) -> None:
    dead = Store(db).queue(owner="dead", lease_ms=-1)  # expired at once
    alive = Store(db).queue(owner="alive", lease_ms=60_000)
    [orphan] = dead.claim(1)
    [taken] = alive.claim(5)  # a claim taken over from a dead holder runs alone
    assert (taken.id, taken.suspect, taken.attempts) == (orphan.id, True, 2)
    assert dead.complete([Outcome(orphan, plain=(False,))]) == 0
    assert alive.complete([Outcome(taken, plain=(True,))]) == 1
    trace = localscorers.get_trace(taken.trace_id)
    assert [(a.name, a.value) for a in trace.info.assessments] == [("yes", True)]


def test_concurrent_job_claims_take_each_job_once(db: Database) -> None:
    service = Store(db).jobs()
    spec = ScorerSpec(name="yes", version=1, sample_rate=1.0)
    created = {service.create("0", [spec]) for _ in range(3)}
    taken: list[str] = []
    barrier = threading.Barrier(6)

    def claim(owner: str) -> None:
        barrier.wait()
        job = claim_job(db, owner, 60_000)
        if job is not None:
            taken.append(job.job_id)

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(taken) == sorted(created)  # three holders, one job each; three got none
    assert claim_job(db, "late", 60_000) is None
