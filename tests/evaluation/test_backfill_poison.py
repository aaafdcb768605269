"""A backfill job whose scorer kills its process ends (issue 12 item 6, the backfill half).

Each claim of a job counts itself in the claim's transaction. A holder that finds the
job claimed before since its cursor last moved goes one pair at a time, recording the
pair first; a pair that killed ``LOCALSCORERS_MAX_ATTEMPTS`` holders is FAILED with
``SCORER_CRASHED`` and the job goes on. Processes are real ``worker --drain`` runs.
"""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

import localscorers
from localscorers import Feedback, _context
from localscorers.store import Progress, ScorerSpec, claim_job, dialect, migrations
from tests import process_helpers
from tests import scorer_helpers_online as helpers

TRACES = 3
MAX_ATTEMPTS = 2


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LOCALSCORERS_MONITOR", "off")
    path = tmp_path / "poison.db"
    localscorers.set_tracking_uri(path)
    return path


def create_job(names: list[str]) -> str:
    """Create a job without waking this process's runner: only subprocesses run it."""
    runtime = _context.current()
    experiment = _context.resolve_experiment_id(None)
    specs = [ScorerSpec(name, 1, 1.0) for name in names]
    return runtime.storage.jobs().create(experiment, specs)


def run_worker(path: Path) -> subprocess.CompletedProcess[str]:
    return process_helpers.run_worker(
        path,
        LOCALSCORERS_MONITOR="off",
        LOCALSCORERS_MAX_ATTEMPTS=str(MAX_ATTEMPTS),
        LOCALSCORERS_LEASE_SECONDS="0.3",
        LOCALSCORERS_EXIT_WAIT_SECONDS="0",
    )


def feedback(trace_id: str, scorer_name: str) -> list[Feedback]:
    return [
        a
        for a in localscorers.get_trace(trace_id).info.assessments
        if isinstance(a, Feedback) and a.scorer_name == scorer_name
    ]


def test_a_backfill_whose_scorer_kills_its_process_ends(db: Path) -> None:
    helpers.crash.register()
    helpers.always_true.register()
    traces = [localscorers.log_trace(inputs=i, outputs=i) for i in range(TRACES)]
    job_id = create_job(["always_true", "crash"])
    _context.reset()  # close the database: only the workers run the job

    # One run that dies unwarned, then MAX_ATTEMPTS careful runs per crashing pair, the
    # last of which records it and goes on (the old code died at the same pair forever).
    bound = 2 + TRACES * MAX_ATTEMPTS
    codes: list[int] = []
    while not codes or codes[-1] != 0:
        if len(codes) == bound:
            pytest.fail(f"the job did not end within {bound} runs: {codes}")
        worker = run_worker(db)
        if worker.returncode not in (0, 17):
            pytest.fail(f"worker exited {worker.returncode}: {worker.stderr}")
        codes.append(worker.returncode)
    assert 17 in codes

    localscorers.set_tracking_uri(db)
    job = localscorers.get_backfill_job(job_id)
    assert (job.status, job.processed, job.succeeded, job.failed) == (
        "SUCCEEDED",
        2 * TRACES,
        TRACES,
        TRACES,
    )
    for trace_id in traces:
        assert [f.value for f in feedback(trace_id, "always_true")] == [True]
        crashed = feedback(trace_id, "crash")
        assert len(crashed) == 1
        assert crashed[0].error is not None
        assert crashed[0].error.error_code == "SCORER_CRASHED"
        assert f"LOCALSCORERS_MAX_ATTEMPTS={MAX_ATTEMPTS}" in (crashed[0].error.error_message or "")
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT scorer_name, status, count(*), count(DISTINCT trace_id) FROM evaluations "
            "GROUP BY scorer_name, status ORDER BY scorer_name"
        ).fetchall()
        left = conn.execute("SELECT claims, probe FROM backfill_job_parts").fetchall()
    conn.close()
    assert rows == [
        ("always_true", "SUCCEEDED", TRACES, TRACES),
        ("crash", "FAILED", TRACES, TRACES),
    ]
    # Each part (a holder's range of the job) ended with no claim and no probe left over.
    assert left
    assert set(left) == {(0, None)}


def test_a_claim_counts_itself_and_a_normal_end_gives_it_back(
    store_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALSCORERS_MONITOR", "off")
    localscorers.set_tracking_uri(store_uri)
    helpers.always_true.register()
    localscorers.log_trace(inputs=1, outputs=1)
    create_job(["always_true"])
    database = _context.current().db

    first = claim_job(database, "first", lease_ms=-1)  # expired at once: a dead holder
    assert first is not None
    assert (first.claims, first.probe) == (1, None)
    second = claim_job(database, "second", lease_ms=-1)
    assert second is not None
    assert second.claims == 2  # taken over before the cursor moved: a holder died

    # A careful holder records the pair it runs alone; dying leaves it for the next one.
    lease = _context.current().storage.lease(second, owner="second", lease_ms=-1)  # it dies
    lease.probe("t-1", "always_true", 1)
    third = claim_job(database, "third", lease_ms=60_000)
    assert third is not None
    assert third.claims == 3
    assert third.probe == {"trace_id": "t-1", "scorer": "always_true", "attempts": 1}

    # A holder that lets go normally did not die: its claim and its probe are given back.
    lease = _context.current().storage.lease(third, owner="third", lease_ms=60_000)
    lease.probe("t-1", "always_true", 2)
    lease.commit(
        Progress([], [dict(s) for s in third.scorers], None, release=True),
        on_written=lambda _result, _status: None,
    )
    fourth = claim_job(database, "fourth", lease_ms=60_000)
    assert fourth is not None
    assert fourth.claims == 3
    assert fourth.probe == {"trace_id": "t-1", "scorer": "always_true", "attempts": 1}


def test_a_database_of_schema_8_gets_the_claim_columns(store_uri: str) -> None:
    localscorers.set_tracking_uri(store_uri)
    database = _context.current().db
    with database.write() as conn:
        conn.execute(sa.text("ALTER TABLE backfill_jobs DROP COLUMN claims"))
        conn.execute(sa.text("ALTER TABLE backfill_jobs DROP COLUMN probe"))
        dialect.of(conn).set_user_version(conn, 8)
    _context.reset()

    localscorers.set_tracking_uri(store_uri)
    database = _context.current().db
    with database.read() as conn:
        assert dialect.of(conn).get_user_version(conn) == migrations.SCHEMA_VERSION
        columns = {c["name"] for c in sa.inspect(conn).get_columns("backfill_jobs")}
    assert {"claims", "probe"} <= columns
    helpers.always_true.register()
    localscorers.log_trace(inputs=1, outputs=1)
    create_job(["always_true"])
    job = claim_job(database, "first", lease_ms=60_000)
    assert job is not None
    assert (job.claims, job.probe) == (1, None)
