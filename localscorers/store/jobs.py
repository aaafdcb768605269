"""Backfill job rows: creating, reading and cancelling jobs, and holding one under a lease.

A job freezes its scorers (name, version, rate, filter) when it is created. A runner
claims the oldest unfinished job under a lease (``claim_job``) and works it through a
``JobLease``: every write checks that the lease is still ours, and progress (feedback,
counts and the cursor) is committed in one transaction (STYLE.md rule 18), so a crash
loses only uncommitted work, which the next holder redoes.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from localscorers import _clock
from localscorers.exceptions import ConfigurationError, JobNotFoundError, LeaseLostError
from localscorers.models import BackfillJob, JobStatus
from localscorers.store import dialect, schema
from localscorers.store.backfill_pages import Plan, ScorerSpec
from localscorers.store.ledger import move_requests
from localscorers.store.results import Finished, insert_finished

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime

    from sqlalchemy.engine import Connection

    from localscorers.store.database import Database
    from localscorers.store.registry import ScorerRegistry
    from localscorers.store.traces import TraceStore

__all__ = [
    "COUNT_KEYS",
    "FINAL_STATUSES",
    "BackfillJobs",
    "ClaimedJob",
    "JobLease",
    "LeaseLostError",
    "Progress",
    "ScorerSpec",
    "claim_job",
    "unfinished_count",
]

COUNT_KEYS = ("total", "processed", "succeeded", "failed", "skipped")
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
        store: the trace store (kept for the callers' symmetry; jobs read traces by plan).
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
                    values |= _released(JobStatus.CANCELLED, now)
                conn.execute(sa.update(j).where(j.c.job_id == job_id).values(**values))
        return self.get(job_id)


def _released(status: JobStatus, now: int) -> dict[str, Any]:
    return {
        "status": status.value,
        "finished_ms": now,
        "lease_owner": None,
        "lease_expires_ms": None,
    }


def unfinished_count(db: Database) -> int:
    """Return how many jobs of the database (any experiment) are PENDING or RUNNING."""
    j = schema.backfill_jobs
    query = sa.select(sa.func.count()).where(j.c.status.in_(_UNFINISHED))
    with db.read() as conn:
        return int(conn.execute(query).scalar_one())


@dataclass(frozen=True)
class ClaimedJob:
    """A job as its holder claimed it: the frozen plan, the counts and where it stopped."""

    job_id: str
    experiment_id: str
    scorers: list[dict[str, Any]]
    start_ms: int | None
    end_ms: int | None
    rescore: bool
    cursor: tuple[int, str] | None
    # Claims since the cursor last moved, this one included: more than one means a
    # holder died (or stalled) before moving it.
    claims: int = 1
    # The pair a careful holder was running alone when it died, with its attempts.
    probe: dict[str, Any] | None = None

    @property
    def plan(self) -> Plan:
        """The plan frozen in the job."""
        return Plan.from_row(self)


def claim_job(db: Database, owner: str, lease_ms: int) -> ClaimedJob | None:
    """Lease the oldest unfinished job that nobody holds (or whose holder's lease expired).

    The claim counts itself in the job's ``claims`` in its own transaction, so a holder
    that dies mid-job (a scorer calling ``os._exit``, a native crash) has used it up.
    A job whose holder died after a cancel request is cancelled here instead.
    """
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
    with db.read() as conn:
        if conn.execute(claimable).first() is None:
            return None
    with db.write() as conn:
        # PostgreSQL: runners on other hosts skip a job being claimed here.
        claimable = dialect.of(conn).claim_rows(claimable)
        while (row := conn.execute(claimable).first()) is not None:
            where = j.c.job_id == row.job_id
            if row.cancel_requested:
                conn.execute(
                    sa.update(j).where(where).values(**_released(JobStatus.CANCELLED, now))
                )
                continue
            conn.execute(
                sa.update(j)
                .where(where)
                .values(
                    status=JobStatus.RUNNING.value,
                    lease_owner=owner,
                    lease_expires_ms=now + lease_ms,
                    started_ms=sa.func.coalesce(j.c.started_ms, now),
                    claims=j.c.claims + 1,
                )
            )
            row = conn.execute(sa.select(j).where(where)).one()
            cursor = (
                None if row.cursor_trace_id is None else (row.cursor_time_ms, row.cursor_trace_id)
            )
            return ClaimedJob(
                row.job_id,
                row.experiment_id,
                [dict(s) for s in row.scorers],
                row.start_ms,
                row.end_ms,
                bool(row.rescore),
                cursor,
                claims=row.claims,
                probe=dict(row.probe) if row.probe else None,
            )
    return None


@dataclass(frozen=True)
class Progress:
    """What a holder commits: finished pairs, counts, the new cursor and maybe an end."""

    results: Sequence[Finished]
    counts: list[dict[str, Any]]
    cursor: tuple[int, str] | None
    status: JobStatus | None = None
    release: bool = False


class JobLease:
    """Writes to one job while ``owner`` holds its lease; each raises ``LeaseLostError`` if not.

    Args:
        db: the database.
        job: the claimed job.
        owner: the lease owner id.
        lease_ms: how long the lease lasts without renewal.
    """

    def __init__(self, db: Database, job: ClaimedJob, *, owner: str, lease_ms: int) -> None:
        self._db = db
        self.job = job
        self.owner = owner
        self.lease_ms = lease_ms
        self.origin = f"backfill:{job.job_id}"
        # The job row's probe as this holder last saw or wrote it, and whether it wrote it.
        self._probe = job.probe
        self._probe_ours = False

    def _update(self, conn: Connection, values: dict[str, Any]) -> None:
        j = schema.backfill_jobs
        result = conn.execute(
            sa.update(j)
            .where(j.c.job_id == self.job.job_id, j.c.lease_owner == self.owner)
            .values(**values)
        )
        if not result.rowcount:
            raise LeaseLostError

    def update(self, values: dict[str, Any]) -> None:
        """Set columns of the job row."""
        with self._db.write() as conn:
            self._update(conn, values)

    def probe(self, trace_id: str, scorer_name: str, attempts: int) -> None:
        """Record, before running it alone, the pair whose call might kill this process.

        ``attempts`` counts this call: a holder that dies in it leaves the count behind
        for the next one, which fails the pair once the count reaches the limit.
        """
        probe = {"trace_id": trace_id, "scorer": scorer_name, "attempts": attempts}
        self.update({"probe": probe, "lease_expires_ms": _clock.now_ms() + self.lease_ms})
        self._probe, self._probe_ours = probe, True

    def renew(self) -> None:
        """Extend the lease."""
        self.update({"lease_expires_ms": _clock.now_ms() + self.lease_ms})

    def cancel_requested(self) -> bool:
        """Tell whether someone asked the job to stop."""
        j = schema.backfill_jobs
        with self._db.read() as conn:
            row = conn.execute(
                sa.select(j.c.cancel_requested, j.c.lease_owner).where(
                    j.c.job_id == self.job.job_id
                )
            ).first()
        if row is None or row.lease_owner != self.owner:
            raise LeaseLostError
        return bool(row.cancel_requested)

    def commit(
        self, progress: Progress, *, on_written: Callable[[Finished, str | None], None]
    ) -> None:
        """Write finished pairs with the counts and the cursor, in one transaction.

        ``on_written(result, status or None)`` updates the counts as rows are written.
        """
        now = _clock.now_ms()
        with self._db.write() as conn:
            if progress.results:
                insert_finished(
                    conn,
                    progress.results,
                    experiment_id=self.job.experiment_id,
                    origin=self.origin,
                    now=now,
                    on_written=on_written,
                )
            self._update(conn, self._values(progress, now))

    def _values(self, progress: Progress, now: int) -> dict[str, Any]:
        values: dict[str, Any] = {"scorers": progress.counts}
        for key in COUNT_KEYS[1:]:
            values[key] = sum(s[key] for s in progress.counts)
        if progress.cursor is not None:
            values["cursor_time_ms"], values["cursor_trace_id"] = progress.cursor
            # Past the pairs that were running: no holder has died at the new cursor.
            values |= {"claims": 0, "probe": sa.null()}  # SQL NULL, not JSON null
            self._probe, self._probe_ours = None, False
        elif progress.release:
            values |= self._given_back()
        status = progress.status
        if status is JobStatus.SUCCEEDED:
            # The total counted at the start misses traces logged into the range since.
            values["total"] = values["processed"]
        if status is not None:
            values |= {"status": status.value, "finished_ms": now}
        elif progress.release:
            # Nobody runs it now: PENDING until a runner (here or elsewhere) resumes it.
            values["status"] = JobStatus.PENDING.value
        held = status is None and not progress.release
        values["lease_expires_ms"] = now + self.lease_ms if held else None
        if not held:
            values["lease_owner"] = None
        return values

    def _given_back(self) -> dict[str, Any]:
        """Return this claim's attempts when letting go normally: this holder did not die."""
        j = schema.backfill_jobs
        values: dict[str, Any] = {"claims": sa.case((j.c.claims > 0, j.c.claims - 1), else_=0)}
        if self._probe is not None and self._probe_ours:
            attempts = int(self._probe["attempts"]) - 1
            values["probe"] = {**self._probe, "attempts": attempts} if attempts > 0 else sa.null()
        return values

    def fail(self, error: str) -> None:
        """Record that the job failed (for infrastructure errors, not scorer errors)."""
        values = {**_released(JobStatus.FAILED, _clock.now_ms()), "error": error}
        with self._db.write() as conn:
            self._update(conn, values)
