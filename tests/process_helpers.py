"""Child processes for the crash and multi-process tests: start, wait for, run a worker."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import scorer_helpers_online as helpers

DEADLINE = 60.0
WORKER_DEADLINE = 90.0  # a drain over PostgreSQL with leases to wait out


def spawn(
    started: list[subprocess.Popen[str]], command: list[str], **env: str
) -> subprocess.Popen[str]:
    """Start a child with the test environment; the ``processes`` fixture reaps it."""
    process = subprocess.Popen(
        command,
        env=helpers.subprocess_env(**env),
        cwd=helpers.REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    started.append(process)
    return process


def wait_until(condition: Callable[[], bool], *, timeout: float = DEADLINE) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.02)


def run_worker(db: Path | str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``localscorers worker --drain`` over ``db`` to its end and return how it ended."""
    return subprocess.run(
        helpers.worker_command(db),
        env=helpers.subprocess_env(**env),
        cwd=helpers.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=WORKER_DEADLINE,
        check=False,
    )
