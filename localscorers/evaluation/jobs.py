"""The backfill job runner: claims parts of jobs under a lease and runs them (DESIGN.md 9).

``JobRunner`` claims the next part of the oldest unfinished job
(``store.job_parts.claim_job``: a job is split into key ranges when first claimed, so
runners in several processes and hosts share one job; a dead holder's part is taken
over once its lease expires) and runs it with ``backfill.Execution``, which walks the
part's traces by a keyset cursor and commits each finished prefix with the cursor in
one transaction. Creating, reading and cancelling jobs is ``store.jobs.BackfillJobs``.

This module sits below ``_context`` in the import graph: it never imports the public
API (``scorers``, ``tracking``, ``jobs``) or the command line.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Hashable
from typing import TYPE_CHECKING

from localscorers.evaluation.backfill import Execution
from localscorers.evaluation.scheduler import new_pool, wait_for_change
from localscorers.exceptions import ConfigurationError, DiskFullError, LeaseLostError
from localscorers.store import claim_job, new_owner_id, unfinished_count
from localscorers.store.checkpoints import Checkpointer
from localscorers.store.job_parts import DEFAULT_PART_TRACES

if TYPE_CHECKING:
    from localscorers.evaluation.execution import LoadedScorer
    from localscorers.evaluation.settings import Settings
    from localscorers.store import ClaimedJob, Database, Lease, Registry, Store, Traces

__all__ = ["JobRunner"]

logger = logging.getLogger(__name__)

PART_TRACES_ENV = "LOCALSCORERS_BACKFILL_PART_TRACES"


def part_traces_from_env() -> int:
    """Read the fewest traces per part of a big job (``LOCALSCORERS_BACKFILL_PART_TRACES``).

    Raises:
        ConfigurationError: the value is not a whole number >= 1.
    """
    raw = os.environ.get(PART_TRACES_ENV, "").strip()
    if not raw:
        return DEFAULT_PART_TRACES
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigurationError(
            f"{PART_TRACES_ENV} must be a whole number of traces >= 1, got {raw!r}; "
            f"unset it for the default ({DEFAULT_PART_TRACES})."
        )
    return int(raw)


class JobRunner:
    """Claim the backfill jobs of one database under a lease and run them, one at a time.

    Jobs run oldest first; another process's runner may run another job meanwhile.

    Args:
        storage: the opened database's stores (``store.open_store``): the traces load
            whole traces for scorers that take ``trace``, the registry the frozen
            scorer versions, and its leases write the parts' progress.
        settings: pool size, lease, retries, timeouts and page size (``batch_size``).
        owner: lease owner id (a fresh one by default).
    """

    def __init__(self, storage: Store, *, settings: Settings, owner: str | None = None) -> None:
        self.storage = storage
        self.db: Database = storage.db
        self.store: Traces = storage.traces
        self.registry: Registry = storage.registry
        self.settings = settings
        self.owner = owner or new_owner_id()
        self.part_traces = part_traces_from_env()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.close_wait = 2.0
        self.loaded_scorers: dict[str, tuple[list[LoadedScorer], set[int]]] = {}
        self.executor = new_pool(settings, thread_name_prefix="localscorers-backfill")
        # A job's commits are nudges to checkpoint the WAL on another thread.
        self.checkpointer = Checkpointer(self.db.path)
        self._thread: threading.Thread | None = None
        self._finished = threading.Condition()
        self._current: Execution | None = None
        self._watch = storage.watch()

    def start(self) -> None:
        """Start the job thread (idempotent)."""
        if self._thread is None and not self.stopping.is_set():
            self._thread = threading.Thread(
                target=self._loop, name="localscorers-backfill", daemon=True
            )
            self._thread.start()

    def notify(self) -> None:
        """Tell the runner that a job was created."""
        self.wake.set()

    def close(self, *, wait: float) -> None:
        """Stop: commit what finishes within ``wait`` seconds, then release the job's lease.

        The unfinished rest stays RUNNING with no holder, so the next process that
        runs the evaluator (or ``localscorers worker``) resumes it at once.
        """
        self.close_wait = wait
        self.stopping.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout=wait + 5)
            self._thread = None
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.checkpointer.close()

    def unfinished_count(self) -> int:
        """Return how many jobs of the database (any experiment) are PENDING or RUNNING."""
        return unfinished_count(self.db)

    def blocked(self) -> dict[Hashable, str]:
        """Say why the running job cannot go on, when it waits only for hung scorer calls."""
        current = self._current
        return dict(current.blocked) if current is not None else {}

    def wait_finished(self, timeout: float) -> None:
        """Sleep until this runner is done with a job, or for ``timeout`` seconds."""
        with self._finished:
            self._finished.wait(timeout)

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                job = self._claim()
            except DiskFullError:
                job = None  # logged once by the database, which makes our next write wait
            except Exception:
                logger.exception("localscorers backfill: claiming a job failed; retrying")
                job = None
            if job is not None:
                self._run(job)
                continue
            wait_for_change(self._watch, self.wake, self.stopping, self.settings.poll_seconds)
            self.wake.clear()
        self._watch.close()

    def _claim(self) -> ClaimedJob | None:
        return claim_job(
            self.db,
            self.owner,
            int(self.settings.lease_seconds * 1000),
            part_traces=self.part_traces,
        )

    def _run(self, job: ClaimedJob) -> None:
        execution = self._current = Execution(self, job)
        try:
            execution.run()
        except LeaseLostError:
            logger.warning(
                "localscorers backfill: job %s was taken over by another process", job.job_id
            )
        except Exception as exc:
            if self.stopping.is_set():
                # Closing (the pool may be shut down already): the lease lapses and the
                # next process resumes the job from its cursor.
                logger.warning("localscorers backfill: job %s interrupted by close", job.job_id)
            else:
                # Scorer errors are feedback; what reaches here is infrastructure.
                logger.exception("localscorers backfill: job %s failed", job.job_id)
                self._fail(execution.lease, exc)
        finally:
            self._current = None
            execution.halt.set()
            with self._finished:
                self._finished.notify_all()

    @staticmethod
    def _fail(lease: Lease, exc: Exception) -> None:
        try:
            lease.fail(f"{type(exc).__name__}: {exc}")
        except LeaseLostError:
            pass  # another holder has it: it decides the job's end
        except Exception:
            # The lease lapses and another process resumes the job later.
            logger.exception(
                "localscorers backfill: could not record that %s failed", lease.job.job_id
            )
