"""``localscorers worker``: the evaluator as a process of its own."""

from __future__ import annotations

import dataclasses
import signal
import threading
import time
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from localscorers import _context
from localscorers.cli.common import err_console, prepare
from localscorers.evaluation.jobs import JobRunner
from localscorers.evaluation.online import Runner, Settings
from localscorers.report import scorer_report

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["STATUS_SECONDS", "WorkerStatus", "register", "run_worker"]

# How often the worker says what it is doing: often enough to see it is alive,
# rarely enough that its status reads (a report per experiment) cost nothing.
STATUS_SECONDS = 5.0


@dataclass(frozen=True)
class WorkerStatus:
    """What a worker has done so far: the numbers of its status line."""

    done: int
    failed: int
    pending: int
    jobs: int
    elapsed: float
    # Why work is left pending: scorers whose calls hang past their timeout.
    blocked: tuple[str, ...] = ()

    def line(self) -> str:
        """Return the one-line status, e.g. ``worker: 120 done (3 failed), 80 pending, 24/s``."""
        rate = self.done / self.elapsed if self.elapsed > 0 else 0.0
        jobs = f", {self.jobs} backfill job(s) unfinished" if self.jobs else ""
        return (
            f"worker: {self.done} done ({self.failed} failed), {self.pending} pending, "
            f"{rate:.1f}/s{jobs}"
        )


def _status(
    runtime: _context.Runtime, jobs: JobRunner, *, since_ms: int, started: float
) -> WorkerStatus:
    # Counted from the database, so evaluations of backfill jobs and of other workers on
    # the same file show too: the line says how the queue moves, not just this process.
    done = failed = 0
    for experiment in runtime.store.list_experiments():
        for report in scorer_report(experiment_id=experiment.experiment_id, since=since_ms):
            done += report.evaluations
            failed += report.errors
    pending = runtime.storage.queue(owner="status", lease_ms=0).pending_count()
    return WorkerStatus(
        done=done,
        failed=failed,
        pending=pending,
        jobs=jobs.unfinished_count(),
        elapsed=time.monotonic() - started,
    )


def run_worker(
    *,
    drain: bool,
    max_workers: int | None,
    stop: threading.Event,
    on_status: Callable[[WorkerStatus], None] | None = None,
    status_seconds: float = STATUS_SECONDS,
) -> WorkerStatus:
    """Run the evaluator over the current database until ``stop`` is set (or, draining, idle).

    Args:
        drain: exit once nothing is pending (after dead processes' leases expire).
        max_workers: scorer calls at once (default: the settings').
        stop: set it to stop the worker.
        on_status: called every ``status_seconds`` with the status so far.
        status_seconds: how often ``on_status`` is called.

    Returns:
        The final status (evaluations done and failed since the worker started).
    """
    runtime = _context.current()
    settings = Settings.from_env()
    if max_workers is not None:
        settings = Settings(**{**settings.__dict__, "max_workers": max_workers})
    since_ms = int(time.time() * 1000)
    started = time.monotonic()
    runner = Runner(runtime.storage, settings=settings)
    runner.start()
    jobs = JobRunner(runtime.storage, settings=settings)
    jobs.start()
    next_status = started + status_seconds
    blocked: tuple[str, ...] = ()
    try:
        while not stop.is_set():
            if drain and _drained(runner, jobs):
                blocked = (*runner.blocked.values(), *jobs.blocked().values())
                break
            if on_status is not None and time.monotonic() >= next_status:
                next_status = time.monotonic() + status_seconds
                on_status(_status(runtime, jobs, since_ms=since_ms, started=started))
            # Pending rows held by a dead process's lease wait for it to expire, then we claim them.
            stop.wait(0.1)
    finally:
        # Blocked scorers' calls may never return: do not wait a lease for them.
        jobs.close(wait=0 if blocked else settings.lease_seconds)
        runner.close(wait=0 if blocked else settings.lease_seconds)
    status = _status(runtime, jobs, since_ms=since_ms, started=started)
    return dataclasses.replace(status, blocked=blocked)


def _drained(runner: Runner, jobs: JobRunner) -> bool:
    """Nothing left to do but work that waits for scorer calls hung past their timeouts."""
    stuck_jobs = 1 if jobs.blocked() else 0
    return runner.drained() and jobs.unfinished_count() == stuck_jobs


def _say(status: WorkerStatus) -> None:
    err_console.print(status.line(), highlight=False, soft_wrap=True)


def _stop_on_signals() -> threading.Event:
    """Return an event that SIGTERM and SIGINT (Ctrl-C) set."""
    stop = threading.Event()

    def _on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    return stop


def _worker_command(
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
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="No status lines, no summary (errors still show)."),
    ] = False,
    status_every: Annotated[
        float,
        typer.Option("--status-every", min=0.1, help="Seconds between status lines on stderr."),
    ] = STATUS_SECONDS,
) -> None:
    """Evaluate pending online work and backfill jobs of every experiment of the database.

    Every few seconds a status line on stderr says how many evaluations are done
    (and failed), how many are pending, and the rate.
    """
    prepare(write=True)
    stop = _stop_on_signals()
    if not quiet:
        err_console.print(
            f"worker: evaluating {_context.get_tracking_uri()} (Ctrl-C stops; work in "
            "progress is released to other workers)",
            highlight=False,
            soft_wrap=True,
        )
    final = run_worker(
        drain=drain,
        max_workers=max_workers,
        stop=stop,
        on_status=None if quiet else _say,
        status_seconds=status_every,
    )
    if not quiet:
        _say(final)
    for reason in final.blocked:
        err_console.print(f"worker: work left pending: {reason}", highlight=False, soft_wrap=True)
    if final.blocked:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the ``worker`` command to the app."""
    app.command("worker")(_worker_command)
