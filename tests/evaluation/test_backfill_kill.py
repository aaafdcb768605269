"""A backfill process SIGKILLed mid-job is finished by ``localscorers worker --drain``.

The job must end SUCCEEDED with every trace of its range scored exactly once: the
killed process's uncommitted work is redone from the cursor, never written twice.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import localscorers
from localscorers import _context
from tests import backfill_helpers as helpers

REPO_ROOT = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000_000
INSIDE, OUTSIDE = 300, 20

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(
        LOCALSCORERS_MONITOR="off",
        LOCALSCORERS_LEASE_SECONDS="1",
        LOCALSCORERS_MAX_WORKERS="2",
        LOCALSCORERS_EXIT_WAIT_SECONDS="0",
    )
    env.pop("LOCALSCORERS_TRACKING_URI", None)
    return env


def _poll(condition: object, *, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        time.sleep(0.01)


def test_sigkill_mid_backfill_then_worker_drain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALSCORERS_MONITOR", "off")
    db = tmp_path / "kill.db"
    localscorers.set_tracking_uri(db)
    inside = [
        localscorers.log_trace(inputs={"i": i}, outputs="x" * i, request_time=T0 + i)
        for i in range(INSIDE)
    ]
    for i in range(OUTSIDE):  # older than the range: must stay unscored
        localscorers.log_trace(inputs={"i": i}, outputs="y", request_time=T0 - 10_000 - i)
    helpers.slow_length.register()
    _context.reset()  # close the database: only the subprocesses run jobs

    ready = tmp_path / "job-id"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.backfill_helpers", str(db), str(ready), str(T0)],
        cwd=REPO_ROOT,
        env=_env(),
    )
    try:
        _poll(lambda: ready.exists() and ready.read_text())
        job_id = ready.read_text()
        localscorers.set_tracking_uri(db)
        _poll(lambda: localscorers.get_backfill_job(job_id).processed > 0)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    killed = localscorers.get_backfill_job(job_id)
    assert killed.status == "RUNNING"
    assert 0 < killed.processed < INSIDE
    _context.reset()

    worker = subprocess.run(
        [sys.executable, "-m", "localscorers", "--db", str(db), "worker", "--drain"],
        cwd=REPO_ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert worker.returncode == 0, worker.stderr

    localscorers.set_tracking_uri(db)
    job = localscorers.get_backfill_job(job_id)
    assert (job.status, job.total, job.processed, job.succeeded) == ("SUCCEEDED",) + (INSIDE,) * 3
    conn = sqlite3.connect(db)
    try:
        feedback = conn.execute(
            "SELECT trace_id, count(*) FROM assessments WHERE name = 'slow_length' "
            "AND origin = ? GROUP BY trace_id",
            (f"backfill:{job_id}",),
        ).fetchall()
        evaluations = conn.execute(
            "SELECT count(*), count(DISTINCT trace_id) FROM evaluations WHERE origin = ?",
            (f"backfill:{job_id}",),
        ).fetchone()
    finally:
        conn.close()
    assert sorted(trace_id for trace_id, _ in feedback) == sorted(inside)
    assert {count for _, count in feedback} == {1}
    assert evaluations == (INSIDE, INSIDE)
