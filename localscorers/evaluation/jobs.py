"""Backfill jobs: score stored traces durably, resumably and exactly once (DESIGN.md section 9).

``BackfillJobs`` creates, reads and cancels job rows; a job freezes its scorers (name,
version, rate, filter) when it is created. ``JobRunner`` claims jobs under a lease
(renewed while it runs; a dead holder's job is taken over once the lease expires) and
runs them one at a time with ``_backfill_run.Execution``, which walks the traces by a
keyset cursor and commits each finished prefix with the cursor in one transaction.

This module sits below ``_context`` in the import graph: it never imports the public
API (``scorers``, ``tracking``, ``jobs``) or the command line.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from localscorers import _clock
from localscorers.evaluation.backfill import Execution
from localscorers.evaluation.pool import DaemonThreadPool
from localscorers.exceptions import ConfigurationError, JobNotFoundError
from localscorers.models import BackfillJob, JobStatus
from localscorers.store import schema
from localscorers.store.backfill_pages import (
    COUNT_KEYS,
    LeaseLostError,
    Plan,
    ScorerSpec,
    update_job,
)
from localscorers.store.ledger import move_requests, new_owner_id

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from localscorers.evaluation.online import Settings
    from localscorers.store.database import Database
    from localscorers.store.registry import ScorerRegistry
    from localscorers.store.traces import TraceStore

__all__ = ["FINAL_STATUSES", "BackfillJobs", "JobRunner", "ScorerSpec"]

logger = logging.getLogger(__name__)

FINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
_UNFINISHED = (JobStatus.PENDING.value, JobStatus.RUNNING.value)


def _datetime(ms: int | None) -> datetime | None:
    return None if ms is None else _clock.datetime_from_ms(ms)


def _job_model(row: Any) -> BackfillJob:  # noqa: ANN401 - a Row of backfill_jobs
    return BackfillJob(
        job_id=row.job_id,
        experiment_id=row.experiment_id,
        status=JobStatus(row.status),
        scorers=list(row.scorers),
        start_time=_datetime(row.start_ms),
        end_time=_datetime(row.end_ms),
        rescore=bool(row.rescore),
        total=row.total,
        processed=row.processed,
        succeeded=row.succeeded,
        failed=row.failed,
        skipped=row.skipped,
        created_at=_clock.datetime_from_ms(row.created_ms),
        started_at=_datetime(row.started_ms),
        finished_at=_datetime(row.finished_ms),
        error=row.error,
    )


class BackfillJobs:
    """Create, count, read and cancel the backfill jobs of one database.

    Args:
        db: the database.
        store: the trace store (runners load whole traces through it).
        registry: checks that the frozen scorer versions exist.
    """

    def __init__(self, db: Database, store: TraceStore, registry: ScorerRegistry) -> None:
        self._db = db
        self._store = store
        self._registry = registry

    def _plan(
        self,
        experiment_id: str,
        specs: Sequence[ScorerSpec],
        *,
        start_ms: int | None,
        end_ms: int | None,
        rescore: bool,
    ) -> Plan:
        names = [s.name for s in specs]
        if not names:
            raise ConfigurationError("A backfill needs at least one scorer; got an empty list.")
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigurationError(
                f"Scorer {twice[0]!r} is listed more than once; list each scorer once."
            )
        if start_ms is not None and end_ms is not None and start_ms >= end_ms:
            raise ConfigurationError(
                f"start_time ({start_ms} ms) must be before end_time ({end_ms} ms): the "
                "range is [start_time, end_time)."
            )
        for spec in specs:
            self._registry.get(experiment_id, spec.name, version=spec.version)
        return Plan(experiment_id, specs, start_ms=start_ms, end_ms=end_ms, rescore=rescore)

    def create(
        self,
        experiment_id: str,
        specs: Sequence[ScorerSpec],
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        rescore: bool = False,
    ) -> str:
        """Write a PENDING job and return its id; a ``JobRunner`` picks it up.

        Raises:
            ConfigurationError: no scorers, a scorer listed twice, or start >= end.
            ScorerNotFoundError: a scorer version does not exist.
            FilterSyntaxError: a scorer's filter does not parse.
        """
        self._plan(experiment_id, specs, start_ms=start_ms, end_ms=end_ms, rescore=rescore)
        job_id = f"bf-{uuid.uuid4().hex}"
        frozen = [{**asdict(s), **dict.fromkeys(COUNT_KEYS, 0), "total": None} for s in specs]
        with self._db.write() as conn:
            conn.execute(
                sa.insert(schema.backfill_jobs).values(
                    job_id=job_id,
                    experiment_id=experiment_id,
                    status=JobStatus.PENDING.value,
                    scorers=frozen,
                    start_ms=start_ms,
                    end_ms=end_ms,
                    rescore=rescore,
                    created_ms=_clock.now_ms(),
                )
            )
        return job_id

    def dry_run(
        self,
        experiment_id: str,
        specs: Sequence[ScorerSpec],
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        rescore: bool = False,
    ) -> dict[str, int]:
        """Return, per scorer name, how many traces a job would evaluate; create no job.

        (It does move online work committed so far from its compact queue into the
        ledger, as a job would, so that pending online work is recognized.)

        Traces already scored by the same version are not counted (unless ``rescore``),
        exactly as a job would skip them.

        Raises:
            ConfigurationError: no scorers, a scorer listed twice, or start >= end.
            ScorerNotFoundError: a scorer version does not exist.
            FilterSyntaxError: a scorer's filter does not parse.
        """
        plan = self._plan(experiment_id, specs, start_ms=start_ms, end_ms=end_ms, rescore=rescore)
        move_requests(self._db)  # online work committed so far counts as pending
        counts = plan.count(self._db, check_existing=True)
        return {spec.name: count for spec, count in zip(specs, counts, strict=True)}

    def get(self, job_id: str) -> BackfillJob:
        """Return a snapshot of the job.

        Raises:
            JobNotFoundError: no job has that id.
        """
        j = schema.backfill_jobs
        with self._db.read() as conn:
            row = conn.execute(sa.select(j).where(j.c.job_id == job_id)).first()
        if row is None:
            raise JobNotFoundError(
                f"No backfill job has id {job_id!r}. List the jobs with list_backfill_jobs() "
                "or 'localscorers jobs list', and check the tracking URI."
            )
        return _job_model(row)

    def list(self, experiment_id: str | None = None) -> list[BackfillJob]:
        """Return the jobs of one experiment (None: of all), newest first."""
        j = schema.backfill_jobs
        query = sa.select(j).order_by(j.c.created_ms.desc(), j.c.job_id.desc())
        if experiment_id is not None:
            query = query.where(j.c.experiment_id == experiment_id)
        with self._db.read() as conn:
            return [_job_model(row) for row in conn.execute(query)]

    def cancel(self, job_id: str) -> BackfillJob:
        """Ask a job to stop, keeping what it wrote; a finished job is returned unchanged.

        A pending job, or one whose holder died or let go, is CANCELLED at once; a
        running one is stopped by its holder within a fraction of a second.

        Raises:
            JobNotFoundError: no job has that id.
        """
        j = schema.backfill_jobs
        now = _clock.now_ms()
        with self._db.write() as conn:
            row = conn.execute(sa.select(j).where(j.c.job_id == job_id)).first()
            if row is not None and JobStatus(row.status) not in FINAL_STATUSES:
                values: dict[str, Any] = {"cancel_requested": True}
                if row.lease_owner is None or (row.lease_expires_ms or 0) < now:
                    values |= {
                        "status": JobStatus.CANCELLED.value,
                        "finished_ms": now,
                        "lease_owner": None,
                        "lease_expires_ms": None,
                    }
                conn.execute(sa.update(j).where(j.c.job_id == job_id).values(**values))
        return self.get(job_id)


class JobRunner:
    """Claim the backfill jobs of one database under a lease and run them, one at a time.

    Jobs run oldest first; another process's runner may run another job meanwhile.

    Args:
        db: the database.
        store: loads whole traces for scorers that take ``trace``.
        registry: reads the frozen scorer versions.
        settings: pool size, lease, retries, timeouts and page size (``batch_size``).
        owner: lease owner id (a fresh one by default).
    """

    def __init__(
        self,
        db: Database,
        store: TraceStore,
        registry: ScorerRegistry,
        *,
        settings: Settings,
        owner: str | None = None,
    ) -> None:
        self.db = db
        self.store = store
        self.registry = registry
        self.settings = settings
        self.owner = owner or new_owner_id()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.close_wait = 2.0
        self.executor = DaemonThreadPool(
            max_workers=settings.max_workers, thread_name_prefix="localscorers-backfill"
        )
        self._thread: threading.Thread | None = None
        self._finished = threading.Condition()

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

    def unfinished_count(self) -> int:
        """Return how many jobs of the database (any experiment) are PENDING or RUNNING."""
        j = schema.backfill_jobs
        query = sa.select(sa.func.count()).where(j.c.status.in_(_UNFINISHED))
        with self.db.read() as conn:
            return int(conn.execute(query).scalar_one())

    def wait_finished(self, timeout: float) -> None:
        """Sleep until this runner is done with a job, or for ``timeout`` seconds."""
        with self._finished:
            self._finished.wait(timeout)

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                row = self._claim()
            except Exception:
                logger.exception("localscorers backfill: claiming a job failed; retrying")
                row = None
            if row is not None:
                self._run(row)
                continue
            self.wake.wait(self.settings.poll_seconds)
            self.wake.clear()

    def _claim(self) -> Any:  # noqa: ANN401 - a Row of backfill_jobs, or None
        j = schema.backfill_jobs
        now = _clock.now_ms()
        claimable = (
            sa.select(j)
            .where(
                j.c.status.in_(_UNFINISHED),
                sa.or_(j.c.lease_owner.is_(None), j.c.lease_expires_ms < now),
            )
            .order_by(j.c.created_ms, j.c.job_id)
            .limit(1)
        )
        # Look with a read first: an idle runner must not take the write lock every poll.
        with self.db.read() as conn:
            if conn.execute(claimable).first() is None:
                return None
        with self.db.write() as conn:
            while (row := conn.execute(claimable).first()) is not None:
                where = j.c.job_id == row.job_id
                if row.cancel_requested:
                    # Its holder died after the cancel request: finish the cancel here.
                    conn.execute(
                        sa.update(j)
                        .where(where)
                        .values(
                            status=JobStatus.CANCELLED.value,
                            finished_ms=now,
                            lease_owner=None,
                            lease_expires_ms=None,
                        )
                    )
                    continue
                conn.execute(
                    sa.update(j)
                    .where(where)
                    .values(
                        status=JobStatus.RUNNING.value,
                        lease_owner=self.owner,
                        lease_expires_ms=now + int(self.settings.lease_seconds * 1000),
                        started_ms=sa.func.coalesce(j.c.started_ms, now),
                    )
                )
                return conn.execute(sa.select(j).where(where)).one()
        return None

    def _run(self, row: Any) -> None:  # noqa: ANN401 - a Row of backfill_jobs
        execution = Execution(self, row)
        try:
            execution.run()
        except LeaseLostError:
            logger.warning(
                "localscorers backfill: job %s was taken over by another process", row.job_id
            )
        except Exception as exc:
            if self.stopping.is_set():
                # Closing (the pool may be shut down already): the lease lapses and the
                # next process resumes the job from its cursor.
                logger.warning("localscorers backfill: job %s interrupted by close", row.job_id)
            else:
                # Scorer errors are feedback; what reaches here is infrastructure.
                logger.exception("localscorers backfill: job %s failed", row.job_id)
                self._fail(row.job_id, exc)
        finally:
            execution.halt.set()
            with self._finished:
                self._finished.notify_all()

    def _fail(self, job_id: str, exc: Exception) -> None:
        values = {
            "status": JobStatus.FAILED.value,
            "error": f"{type(exc).__name__}: {exc}",
            "finished_ms": _clock.now_ms(),
            "lease_owner": None,
            "lease_expires_ms": None,
        }
        try:
            with self.db.write() as conn:
                update_job(conn, job_id, self.owner, values)
        except Exception:
            # The lease lapses and another process resumes the job later.
            logger.exception("localscorers backfill: could not record that %s failed", job_id)
