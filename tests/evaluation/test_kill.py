"""Crash safety with real processes: SIGKILL applications and workers, then drain.

DESIGN.md section 7: a pending evaluation is written in the trace's own transaction,
claims are leased, and a crashed worker's claims are taken over after the lease, so
every (trace, scorer, version) is scored exactly once whatever is killed. Processes run
``sys.executable`` with the repository root on ``PYTHONPATH``; waits poll with deadlines.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import localscorers
from localscorers import ExplainOutcome, Feedback, ScorerSamplingConfig
from tests import scorer_helpers_online as helpers
from tests.process_helpers import run_worker, spawn, wait_until

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")

DEADLINE = 60.0


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A WAL database in tmp_path; this process never evaluates (workers do)."""
    monkeypatch.setenv("LOCALSCORERS_MONITOR", "off")
    path = tmp_path / "kill.db"
    localscorers.set_tracking_uri(path)
    return path


def drain(path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    result = run_worker(path, **env)
    assert result.returncode == 0, result.stderr
    assert "locked" not in result.stderr
    return result


def online_counts() -> tuple[list[str], Counter[tuple[str, str]]]:
    """Return every trace id of the experiment and the online feedback count per (trace, scorer)."""
    traces = localscorers.search_traces()
    counts: Counter[tuple[str, str]] = Counter()
    for trace in traces:
        for a in trace.info.assessments:
            if isinstance(a, Feedback) and a.origin == "online":
                counts[(trace.info.trace_id, a.scorer_name or "")] += 1
    return [t.info.trace_id for t in traces], counts


def fraction(trace_id: str, scorer_name: str) -> float:
    # Sampling v1 (tests/test_sampling.py pins the formula and its edge cases).
    digest = hashlib.sha256(f"{trace_id}\0{scorer_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def test_killed_application_loses_no_pending_evaluation(
    db: Path, processes: list[subprocess.Popen[str]]
) -> None:
    helpers.always_true.register().start()
    helpers.output_length.register().start(sampling_config=ScorerSamplingConfig(sample_rate=0.5))
    app = spawn(processes, helpers.log_command(db, 100_000), LOCALSCORERS_MONITOR="off")
    assert app.stdout is not None
    reported = 0
    while reported < 60:
        line = app.stdout.readline()
        assert line, app.stderr.read() if app.stderr else "application exited"
        reported = int(line.split()[0])
    os.kill(app.pid, signal.SIGKILL)  # while it is still logging
    app.wait(timeout=DEADLINE)
    assert app.returncode == -signal.SIGKILL

    logged, before = online_counts()
    assert len(logged) >= 60
    assert not before  # nothing evaluated the work yet
    assert all(
        e.outcome in {ExplainOutcome.PENDING, ExplainOutcome.SAMPLED_OUT}
        for e in localscorers.explain(logged[0])
    )

    drain(db)
    _, counts = online_counts()
    expected = {(t, "always_true") for t in logged} | {
        (t, "output_length") for t in logged if fraction(t, "output_length") < 0.5
    }
    assert set(counts) == expected
    assert set(counts.values()) == {1}


def test_a_killed_workers_claims_are_taken_over_after_the_lease(
    db: Path, processes: list[subprocess.Popen[str]]
) -> None:
    helpers.Sleepy(name="sleepy", delay_seconds=0.25).register().start()
    logged = [localscorers.log_trace(inputs=i, outputs=i) for i in range(24)]
    lease = {"LOCALSCORERS_LEASE_SECONDS": "1.5", "LOCALSCORERS_MAX_WORKERS": "4"}

    first = spawn(processes, helpers.worker_command(db, drain=False), **lease)
    wait_until(lambda: bool(online_counts()[1]) or first.poll() is not None)
    assert first.poll() is None, first.communicate()[1]
    os.kill(first.pid, signal.SIGKILL)  # with calls running and claims leased
    first.wait(timeout=DEADLINE)
    assert first.returncode == -signal.SIGKILL
    _, done_by_first = online_counts()
    assert 0 < len(done_by_first) < len(logged)
    left = [t for t in logged if (t, "sleepy") not in done_by_first]
    assert any(localscorers.explain(t)[0].outcome == ExplainOutcome.PENDING for t in left)

    drain(db, **lease)
    _, counts = online_counts()
    assert set(counts) == {(t, "sleepy") for t in logged}
    assert set(counts.values()) == {1}
    pids = {
        t.info.trace_id: a.metadata["pid"]
        for t in localscorers.search_traces()
        for a in t.info.assessments
        if isinstance(a, Feedback) and a.metadata
    }
    assert {pids[t] for t, _ in done_by_first} == {first.pid}
    assert first.pid not in {pids[t] for t in left}
    assert len({pids[t] for t in left}) == 1  # the second worker took over all the rest


def test_four_application_processes_and_a_worker_lose_and_duplicate_nothing(
    db: Path, tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    helpers.always_true.register().start()
    helpers.output_length.register().start()
    gate = tmp_path / "go"
    per_app = 100
    worker = spawn(processes, helpers.worker_command(db, drain=False), LOCALSCORERS_MAX_WORKERS="4")
    apps = [
        spawn(processes, helpers.log_command(db, per_app, str(gate)), LOCALSCORERS_MONITOR="off")
        for _ in range(4)
    ]
    gate.touch()
    for app in apps:
        out, err = app.communicate(timeout=DEADLINE)
        assert app.returncode == 0, err
        assert "locked" not in err.lower()
        assert len(out.splitlines()) == per_app

    # Monitor off: flush waits for the worker (stop early, with its errors, if it died).
    wait_until(lambda: localscorers.flush(timeout=0.5) or worker.poll() is not None)
    assert worker.poll() is None, worker.communicate()[1]
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=DEADLINE)
    assert worker.returncode == 0, err
    assert "locked" not in err.lower()

    logged, counts = online_counts()
    assert len(logged) == 4 * per_app
    assert set(counts) == {(t, name) for t in logged for name in ("always_true", "output_length")}
    assert set(counts.values()) == {1}


def test_a_lifecycle_change_in_another_process_applies_to_the_next_commit(
    db: Path, processes: list[subprocess.Popen[str]]
) -> None:
    # The application process caches its active scorers; the change counter must make
    # it see our stop() and start() from the very next trace it commits.
    stopping = helpers.always_true.register(name="stopping").start()
    starting = helpers.always_true.register(name="starting")
    app = spawn(processes, helpers.log_command(db, 100_000), LOCALSCORERS_MONITOR="off")
    assert app.stdout is not None
    order: list[str] = []

    def read_until(count: int) -> None:
        while len(order) < count:
            line = app.stdout.readline() if app.stdout else ""
            assert line, "application exited"
            order.append(line.split()[1])

    read_until(30)
    stopping.stop()
    starting.start()
    # Lines still in the pipe may predate start(); 300 more leave a wide margin.
    read_until(len(order) + 300)
    os.kill(app.pid, signal.SIGKILL)
    app.wait(timeout=DEADLINE)

    def evaluated(name: str) -> list[bool]:
        return [
            {e.scorer_name: e.outcome for e in localscorers.explain(t)}[name]
            == ExplainOutcome.PENDING
            for t in order
        ]

    stopped, started = evaluated("stopping"), evaluated("starting")
    # In commit order: "stopping" on a prefix, "starting" on a suffix, never both (a few
    # traces may fall between the two transactions and get neither).
    stop_at, start_at = stopped.index(False), started.index(True)
    assert 30 <= stop_at <= start_at < len(order)
    assert stopped == [True] * stop_at + [False] * (len(order) - stop_at)
    assert started == [False] * start_at + [True] * (len(order) - start_at)
