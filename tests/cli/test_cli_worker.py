"""``localscorers worker``: status lines while it runs, ``--quiet`` for none."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import REPO_ROOT

MODULE = """
import time

import localscorers


@localscorers.scorer
def slow_check(outputs):
    time.sleep(0.05)
    if outputs == "bad":
        raise ValueError("cannot score this one")
    return True
"""

SETUP = """
import sys

import localscorers
from slow_scorers import slow_check

localscorers.set_tracking_uri(sys.argv[1])
slow_check.register().start()
for index in range(int(sys.argv[2])):
    localscorers.log_trace(inputs={"i": index}, outputs="bad" if index % 10 == 0 else "ok")
"""


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALSCORERS_")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(REPO_ROOT)])
    env["LOCALSCORERS_MONITOR"] = "off"  # the worker does all the scoring
    env["LOCALSCORERS_MAX_ATTEMPTS"] = "1"
    return env


def _setup(tmp_path: Path, db: Path, traces: int) -> None:
    (tmp_path / "slow_scorers.py").write_text(textwrap.dedent(MODULE))
    (tmp_path / "setup_db.py").write_text(textwrap.dedent(SETUP))
    subprocess.run(
        [sys.executable, "setup_db.py", str(db), str(traces)],
        cwd=tmp_path,
        env=_env(tmp_path),
        check=True,
        timeout=60,
    )


def _worker(tmp_path: Path, db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "localscorers", "--db", str(db), "worker", "--drain", *args],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_worker_prints_status_lines_and_a_summary(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    _setup(tmp_path, db, traces=60)
    result = _worker(tmp_path, db, "--max-workers", "2", "--status-every", "0.2")
    assert result.returncode == 0, result.stderr
    status = [line for line in result.stderr.splitlines() if " done (" in line]
    assert len(status) >= 2, result.stderr
    assert all("pending" in line and "/s" in line for line in status)
    assert status[-1].startswith("worker: 60 done (6 failed), 0 pending"), status[-1]


def test_worker_quiet_prints_nothing(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    _setup(tmp_path, db, traces=10)
    result = _worker(tmp_path, db, "--quiet", "--status-every", "0.1")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
