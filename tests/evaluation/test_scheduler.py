"""The scheduler under faulty scorers (issue 12 items 5, 6 and 8), on real SQLite files.

A scorer that hangs, one that kills its process, one that leaves non-daemon threads
behind: none may stop the others' evaluations, keep a process alive, or leave an
evaluation pending without a stated reason. Processes are real subprocesses.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import localscorers
from localscorers import BackfillScorerConfig, Feedback, _context
from localscorers.evaluation import DaemonThreadPool
from localscorers.store import ledger
from tests import process_helpers
from tests import scorer_helpers_online as helpers

WAIT = 30.0


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    helpers.reset()
    helpers.release.clear()
    for key, value in {"BACKOFF_SECONDS": "0", "EXIT_WAIT_SECONDS": "0.5"}.items():
        monkeypatch.setenv(f"LOCALSCORERS_{key}", value)
    path = tmp_path / "s.db"
    localscorers.set_tracking_uri(path)
    yield path
    helpers.release.set()  # before conftest's reset closes the monitor


def feedback(trace_id: str, scorer_name: str) -> list[Feedback]:
    return [
        a
        for a in localscorers.get_trace(trace_id).info.assessments
        if isinstance(a, Feedback) and a.scorer_name == scorer_name
    ]


def wait_until(condition: Callable[[], bool], *, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.02)


def statuses(path: Path) -> dict[tuple[str, str], tuple[str, int]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT trace_id, scorer_name, status, attempts FROM evaluations"
        ).fetchall()
    conn.close()
    return {(t, n): (s, a) for t, n, s, a in rows}


def run_worker(path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return process_helpers.run_worker(path, **{f"LOCALSCORERS_{k}": v for k, v in env.items()})


# -- a hanging scorer ---------------------------------------------------------------------------


def test_a_hanging_scorer_does_not_stop_the_others(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One thread: the old scheduler kept counting the hung call's thread, so once the
    # first call timed out nothing else ever ran.
    monkeypatch.setenv("LOCALSCORERS_MAX_WORKERS", "1")
    helpers.Hang(name="hang", timeout_seconds=0.2, cap_seconds=60).register().start()
    helpers.always_true.register().start()
    traces = [localscorers.log_trace(inputs=i, outputs=i) for i in range(6)]

    wait_until(
        lambda: (
            all(feedback(t, "always_true") for t in traces)
            and any(feedback(t, "hang") for t in traces)
        )
    )
    assert all(feedback(t, "always_true")[0].value is True for t in traces)
    # The hanging scorer's calls end as SCORER_TIMEOUT, one at a time; once its own slot
    # is held by a call that never returns, the rest wait, and the runner says why.
    timed_out = [f for t in traces for f in feedback(t, "hang")]
    assert timed_out
    assert all(f.error is not None and f.error.error_code == "SCORER_TIMEOUT" for f in timed_out)
    runner = _context.current().existing_runner()
    assert runner is not None
    wait_until(lambda: bool(runner.blocked))
    reason = next(iter(runner.blocked.values()))
    assert "'hang'" in reason
    assert "timeout" in reason
    # flush() does not wait forever for calls that may never return: it says "not done".
    started = time.monotonic()
    assert localscorers.flush(timeout=WAIT) is False
    assert time.monotonic() - started < WAIT / 2


def test_the_pool_replaces_an_abandoned_thread_up_to_its_bound() -> None:
    pool = DaemonThreadPool(1, thread_name_prefix="bounded", max_abandoned=1)
    gate = helpers.release
    gate.clear()
    stuck = [pool.submit(gate.wait, 60), pool.submit(gate.wait, 60)]
    wait_until(stuck[0].running)
    assert pool.abandon(stuck[0]) is True  # a new thread takes the queued call
    wait_until(stuck[1].running)
    assert pool.abandon(stuck[1]) is False  # the bound: this one keeps its thread
    assert pool.abandoned == 1
    gate.set()
    assert all(f.result(WAIT) for f in stuck)
    wait_until(lambda: pool.abandoned == 0)  # the replaced thread ended when its call did
    assert pool.submit(str, 1).result(WAIT) == "1"
    pool.shutdown()


def test_worker_drain_exits_when_only_a_hanging_scorers_work_is_left(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALSCORERS_MONITOR", "off")
    helpers.Hang(name="hang", timeout_seconds=0.3, cap_seconds=3600).register().start()
    helpers.always_true.register().start()
    traces = [localscorers.log_trace(inputs=i, outputs=i) for i in range(4)]

    started = time.monotonic()
    worker = run_worker(db, MAX_WORKERS="1")
    assert time.monotonic() - started < 60
    assert worker.returncode == 1, worker.stderr
    assert "left pending" in worker.stderr
    assert "'hang'" in worker.stderr
    found = statuses(db)
    assert all(found[(t, "always_true")][0] == "SUCCEEDED" for t in traces)
    hang = [found[(t, "hang")] for t in traces if (t, "hang") in found]
    assert ("FAILED", 1) in hang  # the first call timed out
    assert {status for status, _ in hang} <= {"FAILED", "PENDING"}


def test_a_backfill_left_waiting_for_a_hanging_scorer_says_why(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALSCORERS_MAX_WORKERS", "1")
    helpers.Hang(name="hang", timeout_seconds=0.2, cap_seconds=60).register()
    helpers.always_true.register()
    for i in range(5):
        localscorers.log_trace(inputs=i, outputs=i)
    job_id = localscorers.backfill_scorers(
        scorers=[
            BackfillScorerConfig("hang", sample_rate=1.0),
            BackfillScorerConfig("always_true", sample_rate=1.0),
        ]
    )
    runner = _context.current().job_runner()
    wait_until(lambda: bool(runner.blocked()))
    assert "'hang'" in next(iter(runner.blocked().values()))
    assert localscorers.get_backfill_job(job_id).status == "RUNNING"

    helpers.release.set()  # the hung call returns: the scorer has its slot back
    job = localscorers.wait_for_backfill_job(job_id, timeout=WAIT)
    assert (job.status, job.processed) == ("SUCCEEDED", 10)
    assert job.failed >= 1  # the call that timed out
    assert not runner.blocked()


# -- a scorer that kills its process ------------------------------------------------------------


def test_a_scorer_that_kills_its_process_fails_with_scorer_crashed(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALSCORERS_MONITOR", "off")
    helpers.crash.register().start()
    helpers.always_true.register().start()
    trace_id = localscorers.log_trace(inputs=1, outputs=1)

    codes = []
    for _ in range(6):  # the old code died every time, with attempts still 0
        worker = run_worker(db, MAX_ATTEMPTS="2", LEASE_SECONDS="0.3")
        codes.append(worker.returncode)
        if worker.returncode not in (0, 17):
            pytest.fail(f"worker exited {worker.returncode}: {worker.stderr}")
        if worker.returncode == 0:
            break
    assert codes[-1] == 0, codes
    assert 17 in codes  # the scorer did kill the worker
    assert len(codes) <= 4

    found = statuses(db)
    assert found[(trace_id, "crash")] == ("FAILED", 2)
    assert found[(trace_id, "always_true")][0] == "SUCCEEDED"
    crashed = feedback(trace_id, "crash")
    assert len(crashed) == 1
    assert crashed[0].error is not None
    assert crashed[0].error.error_code == "SCORER_CRASHED"
    assert "LOCALSCORERS_MAX_ATTEMPTS" in (crashed[0].error.error_message or "")
    assert [f.value for f in feedback(trace_id, "always_true")] == [True]


def test_closing_gives_the_claims_attempt_back(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A claim counts an attempt; a claim given back by a process that closes normally
    # did not crash anything, so the attempt is returned with it.
    monkeypatch.setenv("LOCALSCORERS_EXIT_WAIT_SECONDS", "0.1")
    helpers.Hang(name="hang", cap_seconds=60).register().start()
    trace_id = localscorers.log_trace(inputs=1, outputs=1)
    wait_until(lambda: helpers.calls("hang") == 1)
    assert statuses(db)[(trace_id, "hang")] == ("PENDING", 1)
    _context.shutdown()
    assert statuses(db)[(trace_id, "hang")] == ("PENDING", 0)


# -- a scorer that leaves non-daemon threads ----------------------------------------------------


APP = (
    "import sys\n"
    "import localscorers\n"
    "from tests import scorer_helpers_online as helpers\n"
    "localscorers.set_tracking_uri(sys.argv[1])\n"
    "helpers.start_thread.register().start()\n"
    "trace_id = localscorers.log_trace(inputs=1, outputs=1)\n"
    "assert localscorers.flush(timeout=30)\n"
    "print(trace_id, flush=True)\n"
)


def test_threads_a_scorer_starts_do_not_keep_the_app_alive(db: Path) -> None:
    child = subprocess.run(
        [sys.executable, "-c", APP, str(db)],
        env=helpers.subprocess_env(),
        cwd=helpers.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,  # the old code waited an hour for the scorer's thread
        check=False,
    )
    assert child.returncode == 0, child.stderr
    assert [f.value for f in feedback(child.stdout.strip(), "start_thread")] == [True]


def test_threads_a_scorer_starts_do_not_keep_worker_drain_alive(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALSCORERS_MONITOR", "off")
    helpers.start_thread.register().start()
    trace_id = localscorers.log_trace(inputs=1, outputs=1)
    worker = subprocess.run(
        helpers.worker_command(db),
        env=helpers.subprocess_env(),
        cwd=helpers.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert worker.returncode == 0, worker.stderr
    assert [f.value for f in feedback(trace_id, "start_thread")] == [True]


# -- waking up and claiming ---------------------------------------------------------------------


def test_the_change_watch_sees_commits_of_other_connections(db: Path) -> None:
    watch = _context.current().storage.watch()
    assert watch.supported
    assert watch.changed() is True  # the first look
    assert watch.changed() is False
    with sqlite3.connect(db) as other:
        other.execute("UPDATE counters SET value = value + 1 WHERE name = 'scorers'")
    other.close()
    assert watch.changed() is True
    assert watch.changed() is False
    watch.close()


def test_a_claim_reads_the_oldest_rows_without_sorting_the_backlog(db: Path) -> None:
    # A claim's cost must not grow with the backlog: SQLite must read the index in id
    # order (no "TEMP B-TREE FOR ORDER BY") for the rows never retried, which are
    # nearly all of a backlog.
    database = _context.current().db
    fresh, _due = ledger._claimable(now=1, limit=32, saturated=[("0", "busy")])
    with database.read() as conn:
        sql = str(fresh.compile(conn, compile_kwargs={"literal_binds": True}))
        plan = " ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
    assert "ix_evaluations_pending" in plan
    assert "TEMP B-TREE" not in plan


# -- settings from the environment --------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "floor"),
    [
        ("MAX_WORKERS", "0", "1"),
        ("MAX_ATTEMPTS", "four", "1"),
        ("SCORER_TIMEOUT", "-1", "0.001"),
        ("LEASE_SECONDS", "0", "0.1"),
        ("BACKOFF_SECONDS", "-0.5", "0"),
    ],
)
def test_a_worker_refuses_a_setting_that_is_not_a_valid_number(
    db: Path, variable: str, value: str, floor: str
) -> None:
    worker = run_worker(db, **{variable: value})
    assert worker.returncode != 0
    assert f"LOCALSCORERS_{variable} must be a number >= {floor}, got {value!r}." in worker.stderr


def test_a_worker_reads_its_settings_from_the_environment(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALSCORERS_MONITOR", "off")  # only the worker scores
    # Two attempts, then the evaluation is recorded as failed: MAX_ATTEMPTS was read.
    helpers.Flaky(name="flaky", failures=5).register().start()
    trace_id = localscorers.log_trace(inputs=1, outputs=1)
    worker = run_worker(db, MAX_ATTEMPTS="2", BACKOFF_SECONDS="0")
    assert worker.returncode in (0, 1), worker.stderr
    assert statuses(db)[(trace_id, "flaky")] == ("FAILED", 2)
