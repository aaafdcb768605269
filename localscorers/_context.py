"""Process-wide state behind the module-level API: the current database and experiment.

The stores come from one factory (``store.open_store``, typed by the Protocols of
``store.interface``) and the core classes (``Runner``, ``JobRunner``) take them as
arguments. Only this module holds globals, because MLflow's API
(``set_tracking_uri``, ``set_experiment``) is global. Switching the tracking URI closes
the previous database's monitor (its unfinished work stays durably pending) so that
everything (caches, the monitor, ``flush``) follows the database currently set.
"""

from __future__ import annotations

import atexit
import os
import shlex
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from localscorers.evaluation import jobs as backfill_module
from localscorers.evaluation import online as runner_module
from localscorers.exceptions import ConfigurationError, NotFoundError
from localscorers.store import default_tracking_uri, normalize_uri, open_store

if TYPE_CHECKING:
    from localscorers.store import Database, Registry, Store, Traces

__all__ = [
    "DEFAULT_EXPERIMENT_ID",
    "PendingWork",
    "Runtime",
    "current",
    "existing",
    "get_tracking_uri",
    "reset",
    "resolve_experiment_id",
    "set_active_experiment",
    "set_tracking_uri",
    "shutdown",
]

DEFAULT_EXPERIMENT_ID = "0"


class Runtime:
    """Everything bound to one database: store, registry and (lazily) the monitor."""

    def __init__(self, uri: str) -> None:
        self.storage: Store = open_store(
            uri, on_enqueued=self._on_enqueued, on_session_trace=self._on_session_trace
        )
        self.db: Database = self.storage.db
        self.registry: Registry = self.storage.registry
        self.store: Traces = self.storage.traces
        self._runner: runner_module.Runner | None = None
        self._job_runner: backfill_module.JobRunner | None = None
        self._runner_lock = threading.Lock()
        self._next_session_check = 0.0
        # Experiments are never deleted, so an id found once is not looked up again
        # (log_trace(experiment_id=...) paid a read transaction per trace for it).
        # Whatever comes to delete experiments must forget them here.
        self.known_experiment_ids: set[str] = set()

    @property
    def uri(self) -> str:
        """The database URI."""
        return self.db.uri

    def runner(self) -> runner_module.Runner:
        """Return this database's in-process monitor, starting it on first use."""
        with self._runner_lock:
            started = self._runner is None
            if self._runner is None:
                self._runner = runner_module.Runner(
                    self.storage, settings=runner_module.Settings.from_env()
                )
                self._runner.start()
            runner = self._runner
        if started:
            # Backfill jobs run wherever the evaluator runs, so a job whose process died
            # resumes in the next process that scores traces.
            self.job_runner()
        return runner

    def job_runner(self) -> backfill_module.JobRunner:
        """Return this database's in-process backfill job runner, starting it on first use."""
        with self._runner_lock:
            if self._job_runner is None:
                self._job_runner = backfill_module.JobRunner(
                    self.storage, settings=runner_module.Settings.from_env()
                )
                self._job_runner.start()
            return self._job_runner

    def existing_runner(self) -> runner_module.Runner | None:
        """Return the monitor if it was started, without starting it."""
        return self._runner

    def _on_enqueued(self, count: int) -> None:
        if monitor_enabled():
            self.runner().notify(count)

    def _on_session_trace(self) -> None:
        # Session scorers are enqueued by the monitor's idle scan, never by a commit, so a
        # process whose only active scorers take sessions must start its monitor here.
        # Whether one is active is read at most once a second (a commit is a hot path).
        if self._runner is not None or not monitor_enabled():
            return
        now = time.monotonic()
        if now < self._next_session_check:
            return
        self._next_session_check = now + 1.0
        if self.store.session_scorers_active():
            self.runner()

    def close(self, *, wait: float, finish: bool = False) -> PendingWork | None:
        """Stop the monitor (waiting up to ``wait`` seconds) and close the database.

        Args:
            wait: seconds to wait for running evaluations (and, with ``finish``, pending ones).
            finish: at exit: first give pending online work ``wait`` seconds to complete,
                then count what is left.

        Returns:
            With ``finish``, the work still pending if this process was evaluating, else None.
        """
        with self._runner_lock:
            active, self._runner = self._runner, None
            jobs, self._job_runner = self._job_runner, None
        deadline = time.monotonic() + wait
        if finish and active is not None:
            active.flush(timeout=wait)
        remaining = max(0.0, deadline - time.monotonic())
        if jobs is not None:
            jobs.close(wait=remaining)
        if active is not None:
            active.close(wait=remaining)
        left = None
        if finish and (active is not None or jobs is not None):
            left = PendingWork(
                evaluations=self.storage.queue(owner="exit", lease_ms=0).pending_count(),
                jobs=jobs.unfinished_count() if jobs is not None else 0,
            )
        self.db.close()
        return left


@dataclass(frozen=True)
class PendingWork:
    """What a process leaves undone at exit: online evaluations and unfinished backfill jobs."""

    evaluations: int
    jobs: int

    def message(self, uri: str, *, waited: float) -> str | None:
        """Return the one-line exit notice, or None when nothing is pending."""
        if not self.evaluations and not self.jobs:
            return None
        parts = []
        if self.evaluations:
            parts.append(f"{self.evaluations} online evaluation(s)")
        if self.jobs:
            parts.append(f"{self.jobs} backfill job(s)")
        hints = []
        if self.evaluations:
            hints.append("localscorers.flush()")
        if self.jobs:
            hints.append("localscorers.wait_for_backfill_job(job_id)")
        wait_hint = " and ".join(hints)
        where = (
            "" if uri == _default_uri() else f" --db {shlex.quote(uri.removeprefix('sqlite:///'))}"
        )
        return (
            f"localscorers: exiting with {' and '.join(parts)} still pending after waiting "
            f"{waited:g} s (LOCALSCORERS_EXIT_WAIT_SECONDS); they stay queued: finish them with "
            f"'localscorers worker --drain{where}' (in a script, end with {wait_hint})."
        )


def monitor_enabled() -> bool:
    """Tell whether online evaluation runs in this process (``LOCALSCORERS_MONITOR``)."""
    return os.environ.get("LOCALSCORERS_MONITOR", "on").strip().lower() not in {
        "off",
        "0",
        "false",
        "no",
    }


_lock = threading.RLock()
_uri_override: str | None = None
_runtime: Runtime | None = None
_active_experiment_id = DEFAULT_EXPERIMENT_ID


def get_tracking_uri() -> str:
    """Return the database URI in use: set_tracking_uri(), else the environment, else default."""
    with _lock:
        if _uri_override is not None:
            return _uri_override
    env = os.environ.get("LOCALSCORERS_TRACKING_URI", "").strip()
    return normalize_uri(env) if env else normalize_uri(default_tracking_uri())


def set_tracking_uri(uri: str | os.PathLike[str]) -> None:
    """Use another database from now on; may be called any number of times.

    Raises:
        ConfigurationError: the URI is not a SQLite URI or path.
    """
    global _uri_override  # noqa: PLW0603 - the one deliberate global of the module-level API
    normalized = normalize_uri(uri)
    with _lock:
        _uri_override = normalized
        _switch_if_needed(normalized)


def _switch_if_needed(uri: str) -> None:
    global _runtime, _active_experiment_id  # noqa: PLW0603
    if _runtime is not None and _runtime.uri != uri:
        old, _runtime = _runtime, None
        _active_experiment_id = DEFAULT_EXPERIMENT_ID
        old.close(wait=_exit_wait())


def current() -> Runtime:
    """Return the runtime of the current tracking URI, opening the database on first use.

    Raises:
        SchemaVersionError: the database was written by a newer localscorers.
    """
    global _runtime  # noqa: PLW0603
    uri = get_tracking_uri()
    with _lock:
        _switch_if_needed(uri)
        if _runtime is None:
            _runtime = Runtime(uri)
        return _runtime


def existing() -> Runtime | None:
    """Return the runtime if a database is open, without opening one."""
    with _lock:
        return _runtime


def set_active_experiment(experiment_id: str) -> None:
    """Make an experiment (already known to exist) the active one."""
    global _active_experiment_id  # noqa: PLW0603
    with _lock:
        _active_experiment_id = experiment_id


def resolve_experiment_id(experiment_id: object) -> str:
    """Return the given experiment id after checking it exists, or the active one.

    Raises:
        ConfigurationError: the id is neither a string nor an int.
        NotFoundError: no experiment has that id.
    """
    runtime = current()
    if experiment_id is None:
        with _lock:
            return _active_experiment_id
    if isinstance(experiment_id, bool) or not isinstance(experiment_id, str | int):
        raise ConfigurationError(
            f"experiment_id must be an experiment id string such as '0', got "
            f"{type(experiment_id).__name__}. Pass the id, or None for the active experiment."
        )
    experiment_id = str(experiment_id)
    if experiment_id in runtime.known_experiment_ids:
        return experiment_id
    if runtime.store.get_experiment(experiment_id) is None:
        raise NotFoundError(
            f"No experiment has id {experiment_id!r}. Create one with "
            "set_experiment(name) or pick an id from the existing experiments."
        )
    runtime.known_experiment_ids.add(experiment_id)
    return experiment_id


def _default_uri() -> str:
    return normalize_uri(default_tracking_uri())


def _exit_wait() -> float:
    raw = os.environ.get("LOCALSCORERS_EXIT_WAIT_SECONDS", "2")
    try:
        return max(0.0, float(raw))
    except ValueError:
        return 2.0


def shutdown() -> None:
    """Stop the monitor, waiting briefly; unfinished work stays durably pending."""
    global _runtime
    with _lock:
        old, _runtime = _runtime, None
    if old is not None:
        old.close(wait=_exit_wait())


def _shutdown_at_exit() -> None:
    # At exit, pending online work gets LOCALSCORERS_EXIT_WAIT_SECONDS to finish; what is
    # left stays durably queued, and the user is told so rather than finding it undone later.
    global _runtime
    with _lock:
        old, _runtime = _runtime, None
    if old is None or old.db.is_memory:
        if old is not None:
            old.close(wait=_exit_wait())
        return
    wait = _exit_wait()
    left = old.close(wait=wait, finish=True)
    notice = left.message(old.uri, waited=wait) if left is not None else None
    if notice is not None:
        sys.stderr.write(notice + "\n")
        sys.stderr.flush()


def reset() -> None:
    """Forget the tracking URI and active experiment and stop the monitor (tests use it)."""
    global _uri_override, _active_experiment_id  # noqa: PLW0603
    shutdown()
    with _lock:
        _uri_override = None
        _active_experiment_id = DEFAULT_EXPERIMENT_ID


atexit.register(_shutdown_at_exit)
