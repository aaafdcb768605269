"""Many hosts on one PostgreSQL database: ``localscorers worker`` processes stand in for hosts.

Workers claim online work and backfill jobs with ``SELECT ... FOR UPDATE SKIP LOCKED``;
exactly one feedback per (trace, scorer version) must hold whoever logs and whoever
scores; a SIGKILLed worker's claims are taken over after its lease; a backfill job
killed mid-way resumes from its cursor. Needs LOCALSCORERS_TEST_POSTGRES_URI.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import localscorers
from localscorers import Feedback, JobStatus
from tests import scorer_helpers_online as helpers
from tests.conftest import fresh_postgres_schema, postgres_base_uri
from tests.process_helpers import run_worker, spawn, wait_until

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX")

DEADLINE = 90.0


@pytest.fixture
def pg(monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh PostgreSQL schema as the tracking URI; this process never evaluates."""
    uri = fresh_postgres_schema(postgres_base_uri())
    monkeypatch.setenv("LOCALSCORERS_MONITOR", "off")
    localscorers.set_tracking_uri(uri)
    return uri


def feedback_by(origin_prefix: str) -> tuple[Counter[tuple[str, str]], dict[str, set[int]]]:
    """Count feedback per (trace, scorer) of an origin; collect the scoring pids per scorer."""
    counts: Counter[tuple[str, str]] = Counter()
    pids: dict[str, set[int]] = {}
    for trace in localscorers.search_traces():
        for a in trace.info.assessments:
            if isinstance(a, Feedback) and (a.origin or "").startswith(origin_prefix):
                counts[(trace.info.trace_id, a.scorer_name or "")] += 1
                if a.metadata and "pid" in a.metadata:
                    pids.setdefault(a.scorer_name or "", set()).add(a.metadata["pid"])
    return counts, pids


def test_workers_and_loggers_on_many_hosts_score_each_pair_once(
    pg: str, tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    helpers.always_true.register().start()
    helpers.Sleepy(name="sleepy", delay_seconds=0.02).register().start()
    gate = tmp_path / "go"
    per_app = 60
    workers = [
        spawn(processes, helpers.worker_command(pg, drain=False), LOCALSCORERS_MAX_WORKERS="4")
        for _ in range(3)
    ]
    apps = [
        spawn(processes, helpers.log_command(pg, per_app, str(gate)), LOCALSCORERS_MONITOR="off")
        for _ in range(3)
    ]
    gate.touch()
    for app in apps:
        out, err = app.communicate(timeout=DEADLINE)
        assert app.returncode == 0, err
        assert len(out.splitlines()) == per_app

    wait_until(
        lambda: localscorers.flush(timeout=0.5) or any(w.poll() is not None for w in workers)
    )
    for worker in workers:
        assert worker.poll() is None, worker.communicate()[1]
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        _, err = worker.communicate(timeout=DEADLINE)
        assert worker.returncode == 0, err

    logged = [t.info.trace_id for t in localscorers.search_traces()]
    counts, pids = feedback_by("online")
    assert len(logged) == 3 * per_app
    assert set(counts) == {(t, name) for t in logged for name in ("always_true", "sleepy")}
    assert set(counts.values()) == {1}
    assert len(pids["sleepy"]) >= 2  # the work was shared, not done by one host


def test_a_killed_workers_claims_are_taken_over_after_its_lease(
    pg: str, processes: list[subprocess.Popen[str]]
) -> None:
    helpers.Sleepy(name="sleepy", delay_seconds=0.25).register().start()
    logged = [localscorers.log_trace(inputs=i, outputs=i) for i in range(24)]
    lease = {"LOCALSCORERS_LEASE_SECONDS": "1.5", "LOCALSCORERS_MAX_WORKERS": "4"}

    first = spawn(processes, helpers.worker_command(pg, drain=False), **lease)
    wait_until(lambda: bool(feedback_by("online")[0]) or first.poll() is not None)
    assert first.poll() is None, first.communicate()[1]
    os.kill(first.pid, signal.SIGKILL)  # with calls running and claims leased
    first.wait(timeout=DEADLINE)
    done_by_first, _ = feedback_by("online")
    assert 0 < len(done_by_first) < len(logged)

    second = run_worker(pg, **lease)
    assert second.returncode == 0, second.stderr
    counts, pids = feedback_by("online")
    assert set(counts) == {(t, "sleepy") for t in logged}
    assert set(counts.values()) == {1}
    assert first.pid in pids["sleepy"]
    assert len(pids["sleepy"]) == 2


_CREATE_JOBS = """
import sys, localscorers
localscorers.set_tracking_uri(sys.argv[1])
for name in sys.argv[2:]:
    print(localscorers.backfill_scorers(scorers=[localscorers.BackfillScorerConfig(
        scorer=name, sample_rate=1.0)]), flush=True)
"""


def test_backfill_jobs_are_shared_between_workers_and_resume_from_their_cursor(
    pg: str, processes: list[subprocess.Popen[str]]
) -> None:
    logged = [localscorers.log_trace(inputs=i, outputs=i) for i in range(150)]
    names = ["slow_a", "slow_b"]
    for name in names:
        helpers.Sleepy(name=name, delay_seconds=0.02).register()
    env = {"LOCALSCORERS_LEASE_SECONDS": "1", "LOCALSCORERS_EXIT_WAIT_SECONDS": "0"}
    created = subprocess.run(
        [sys.executable, "-c", _CREATE_JOBS, pg, *names],
        env=helpers.subprocess_env(LOCALSCORERS_MONITOR="off", **env),
        cwd=helpers.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=True,
    )
    job_ids = created.stdout.split()
    assert len(job_ids) == 2

    victim, other = (spawn(processes, helpers.worker_command(pg, drain=False), **env) for _ in "ab")
    wait_until(lambda: all(localscorers.get_backfill_job(j).processed > 0 for j in job_ids))
    os.kill(victim.pid, signal.SIGKILL)  # mid-job: its job's lease is left to expire
    victim.wait(timeout=DEADLINE)
    wait_until(
        lambda: (
            all(localscorers.get_backfill_job(j).status == JobStatus.SUCCEEDED for j in job_ids)
            or other.poll() is not None
        )
    )
    assert other.poll() is None, other.communicate()[1]

    counts, pids = feedback_by("backfill:")
    assert set(counts) == {(t, name) for t in logged for name in names}
    assert set(counts.values()) == {1}
    assert victim.pid in set().union(*pids.values())  # both workers held a job
    assert other.pid in set().union(*pids.values())
    for job_id in job_ids:
        job = localscorers.get_backfill_job(job_id)
        assert (job.processed, job.succeeded, job.failed) == (150, 150, 0)
