"""``localscorers worker``: the evaluator as a process of its own."""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType
from typing import Annotated

import typer

from localscorers import _context
from localscorers.cli.common import err_console
from localscorers.evaluation.jobs import JobRunner
from localscorers.evaluation.online import Runner, Settings

__all__ = ["register", "run_worker"]


def run_worker(*, drain: bool, max_workers: int | None, stop: threading.Event) -> int:
    """Run the evaluator over the current database until ``stop`` is set (or, draining, idle).

    Returns:
        The number of evaluations this worker completed.
    """
    runtime = _context.current()
    settings = Settings.from_env()
    if max_workers is not None:
        settings = Settings(**{**settings.__dict__, "max_workers": max_workers})
    runner = Runner(runtime.db, runtime.store, runtime.registry, settings=settings)
    runner.start()
    jobs = JobRunner(runtime.db, runtime.store, runtime.registry, settings=settings)
    jobs.start()
    try:
        while not stop.is_set():
            if drain and not runner.queue.has_pending() and jobs.unfinished_count() == 0:
                break
            # Pending rows held by a dead process's lease wait for it to expire, then we claim them.
            stop.wait(0.1)
    finally:
        jobs.close(wait=settings.lease_seconds)
        runner.close(wait=settings.lease_seconds)
    return runner.completed


def register(app: typer.Typer) -> None:
    """Add the ``worker`` command to the app."""

    @app.command()
    def worker(
        drain: Annotated[
            bool,
            typer.Option(
                "--drain",
                help="Exit 0 once no work is pending (waits for dead processes' leases to expire).",
            ),
        ] = False,
        max_workers: Annotated[
            int | None, typer.Option("--max-workers", min=1, help="Scorer calls at once.")
        ] = None,
    ) -> None:
        """Evaluate pending online work and backfill jobs of every experiment of the database."""
        stop = threading.Event()

        def _on_signal(_signum: int, _frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        started = time.monotonic()
        done = run_worker(drain=drain, max_workers=max_workers, stop=stop)
        err_console.print(
            f"worker: {done} evaluations in {time.monotonic() - started:.1f} s "
            f"({_context.get_tracking_uri()})"
        )
