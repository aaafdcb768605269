"""Backfill job rows: creating, reading and cancelling jobs, and holding a part under a lease.

A job freezes its scorers (name, version, rate, filter) when it is created. Runners
claim its parts (key ranges, ``store.job_parts.claim_job``) under a lease, several at
once, and work each through a ``JobLease``: every write checks that the lease is still
ours, and progress (feedback, counts and the part's cursor) is committed in one
transaction (STYLE.md rule 18), so a crash loses only uncommitted work, which the next
holder redoes. A job's counts are the sums over its parts.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Unpack

import sqlalchemy as sa

from localscorers import _clock
from localscorers.exceptions import ConfigurationError, JobNotFoundError, LeaseLostError
from localscorers.models import BackfillJob, JobStatus
from localscorers.store import schema
from localscorers.store.backfill_pages import Plan, ScorerSpec
from localscorers.store.job_parts import (
    COUNT_KEYS,
    FINAL_STATUSES,
    UNFINISHED,
    ClaimedJob,
    cancel_parts,
    claim_job,
    claim_next_part,
    end_job_if_done,
    lock_job,
    part_counts,
    released,
)
from localscorers.store.ledger import move_requests
from localscorers.store.results import Finished, insert_finished

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime

    from sqlalchemy.engine import Connection

    from localscorers.store.database import Database
    from localscorers.store.interface import JobWindow, Registry, Traces

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


def _datetime(ms: int | None) -> datetime | None:
    return None if ms is None else _clock.datetime_from_ms(ms)


def _job_model(
    row: Any,  # noqa: ANN401 - a Row of backfill_jobs
    sums: dict[str, list[dict[str, Any]]],
) -> BackfillJob:
    scorers = list(row.scorers)
    counts = {key: getattr(row, key) for key in COUNT_KEYS[1:]}
    if row.job_id in sums and row.status in UNFINISHED:
        # Running: the parts hold the counts (an ended job's row has their sums).
        scorers = [{**s, **n} for s, n in zip(scorers, sums[row.job_id], strict=True)]
        counts = {key: sum(s[key] for s in scorers) for key in COUNT_KEYS[1:]}
    return BackfillJob(
        job_id=row.job_id,
        experiment_id=row.experiment_id,
        status=JobStatus(row.status),
        scorers=scorers,
        start_time=_datetime(row.start_ms),
        end_time=_datetime(row.end_ms),
        rescore=bool(row.rescore),
        total=row.total,
        **counts,
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

    def __init__(self, db: Database, store: Traces, registry: Registry) -> None:
        self._db = db
        self._store = store
        self._registry = registry

    def _plan(self, experiment_id: str, specs: Sequence[ScorerSpec], window: JobWindow) -> Plan:
        """Check a job's scorers and window (``start_ms``, ``end_ms``, ``rescore``); plan it."""
        start_ms, end_ms = window.get("start_ms"), window.get("end_ms")
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
        rescore = window.get("rescore", False)
        return Plan(experiment_id, specs, start_ms=start_ms, end_ms=end_ms, rescore=rescore)

    def create(
        self, experiment_id: str, specs: Sequence[ScorerSpec], **window: Unpack[JobWindow]
    ) -> str:
        """Write a PENDING job and return its id; a ``JobRunner`` picks it up.

        Args:
            experiment_id: the experiment whose traces the job scores.
            specs: the scorers, frozen into the job.
            window: ``start_ms`` and ``end_ms`` (None: open on that side), the request
                times ``[start, end)`` covered; ``rescore`` (default False) scores again
                the traces already scored by the same scorer version.

        Raises:
            ConfigurationError: no scorers, a scorer listed twice, or start >= end.
            ScorerNotFoundError: a scorer version does not exist.
            FilterSyntaxError: a scorer's filter does not parse.
        """
        plan = self._plan(experiment_id, specs, window)
        job_id = f"bf-{uuid.uuid4().hex}"
        frozen = [{**asdict(s), **dict.fromkeys(COUNT_KEYS, 0), "total": None} for s in specs]
        with self._db.write() as conn:
            conn.execute(
                sa.insert(schema.backfill_jobs).values(
                    job_id=job_id,
                    experiment_id=experiment_id,
                    status=JobStatus.PENDING.value,
                    scorers=frozen,
                    start_ms=plan.start_ms,
                    end_ms=plan.end_ms,
                    rescore=plan.rescore,
                    created_ms=_clock.now_ms(),
                )
            )
        return job_id

    def dry_run(
        self, experiment_id: str, specs: Sequence[ScorerSpec], **window: Unpack[JobWindow]
    ) -> dict[str, int]:
        """Return, per scorer name, how many traces a job would evaluate; create no job.

        (It does move online work committed so far from its compact queue into the
        ledger, as a job would, so that pending online work is recognized.)

        Traces already scored by the same version are not counted (unless ``rescore``),
        exactly as a job would skip them.

        Args:
            experiment_id: the experiment, as for ``create``.
            specs: the scorers, as for ``create``.
            window: the traces covered, as for ``create``.

        Raises:
            ConfigurationError: no scorers, a scorer listed twice, or start >= end.
            ScorerNotFoundError: a scorer version does not exist.
            FilterSyntaxError: a scorer's filter does not parse.
        """
        plan = self._plan(experiment_id, specs, window)
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
            sums = part_counts(conn, [job_id])
        if row is None:
            raise JobNotFoundError(
                f"No backfill job has id {job_id!r}. List the jobs with list_backfill_jobs() "
                "or 'localscorers jobs list', and check the tracking URI."
            )
        return _job_model(row, sums)

    def list(self, experiment_id: str | None = None) -> list[BackfillJob]:
        """Return the jobs of one experiment (None: of all), newest first."""
        j = schema.backfill_jobs
        query = sa.select(j).order_by(j.c.created_ms.desc(), j.c.job_id.desc())
        if experiment_id is not None:
            query = query.where(j.c.experiment_id == experiment_id)
        with self._db.read() as conn:
            rows = conn.execute(query).all()
            sums = part_counts(conn, [r.job_id for r in rows if r.status in UNFINISHED])
        return [_job_model(row, sums) for row in rows]

    def cancel(self, job_id: str) -> BackfillJob:
        """Ask a job to stop, keeping what it wrote; a finished job is returned unchanged.

        A pending job, or one whose holders died or let go, is CANCELLED at once; the
        holders of its running parts stop within a fraction of a second, and the last
        one to stop ends the job.

        Raises:
            JobNotFoundError: no job has that id.
        """
        j = schema.backfill_jobs
        now = _clock.now_ms()
        with self._db.write() as conn:
            row = lock_job(conn, job_id)
            if row is not None and JobStatus(row.status) not in FINAL_STATUSES:
                where = j.c.job_id == job_id
                conn.execute(sa.update(j).where(where).values(cancel_requested=True))
                if part_counts(conn, [job_id]):
                    cancel_parts(conn, row, now)
                elif row.lease_owner is None or (row.lease_expires_ms or 0) < now:
                    # Not planned yet, and nobody planning it.
                    conn.execute(
                        sa.update(j).where(where).values(**released(JobStatus.CANCELLED, now))
                    )
        return self.get(job_id)


def unfinished_count(db: Database) -> int:
    """Return how many jobs of the database (any experiment) are PENDING or RUNNING."""
    j = schema.backfill_jobs
    query = sa.select(sa.func.count()).where(j.c.status.in_(UNFINISHED))
    with db.read() as conn:
        return int(conn.execute(query).scalar_one())


@dataclass(frozen=True)
class Progress:
    """What a holder commits: finished pairs, counts, the new cursor and maybe an end."""

    results: Sequence[Finished]
    counts: list[dict[str, Any]]
    cursor: tuple[int, str] | None
    status: JobStatus | None = None
    release: bool = False
    # With a SUCCEEDED status: take the job's next free part in the same transaction.
    next_part: bool = False


class JobLease:
    """Writes to a part of a job while ``owner`` holds it; each raises ``LeaseLostError`` if not.

    Args:
        db: the database.
        job: the claimed part of a job.
        owner: the lease owner id.
        lease_ms: how long the lease lasts without renewal.
    """

    def __init__(self, db: Database, job: ClaimedJob, *, owner: str, lease_ms: int) -> None:
        self._db = db
        self.job = job
        self.owner = owner
        self.lease_ms = lease_ms
        self.origin = f"backfill:{job.job_id}"
        # The part's probe as this holder last saw or wrote it, and whether it wrote it.
        self._probe = job.probe
        self._probe_ours = False

    def _update(self, conn: Connection, values: dict[str, Any]) -> None:
        p = schema.backfill_job_parts
        result = conn.execute(
            sa.update(p)
            .where(
                p.c.job_id == self.job.job_id,
                p.c.part_no == self.job.part_no,
                p.c.lease_owner == self.owner,
            )
            .values(**values)
        )
        if not result.rowcount:
            raise LeaseLostError

    def update(self, values: dict[str, Any]) -> None:
        """Set columns of the part's row."""
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
        j, p = schema.backfill_jobs, schema.backfill_job_parts
        query = sa.select(j.c.cancel_requested, p.c.lease_owner).where(
            p.c.job_id == self.job.job_id,
            p.c.part_no == self.job.part_no,
            j.c.job_id == p.c.job_id,
        )
        with self._db.read() as conn:
            row = conn.execute(query).first()
        if row is None or row.lease_owner != self.owner:
            raise LeaseLostError
        return bool(row.cancel_requested)

    def commit(
        self, progress: Progress, *, on_written: Callable[[Finished, str | None], None]
    ) -> ClaimedJob | None:
        """Write finished pairs with the counts and the cursor, in one transaction.

        ``on_written(result, status or None)`` updates the counts as rows are written.
        A part that ends ends its job too when it was the last one; else, when
        ``progress.next_part`` asks, the job's next free part is claimed and returned.
        """
        now = _clock.now_ms()
        with self._db.write() as conn:
            # Job row first, then the part (store.job_parts): the last part to end sees
            # every other part ended.
            job = lock_job(conn, self.job.job_id) if progress.status or progress.release else None
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
            if job is not None and progress.status is not None:
                if end_job_if_done(conn, job, now) is None and progress.next_part:
                    return claim_next_part(conn, job, self.owner, self.lease_ms, now)
            elif job is not None:
                _pause_if_unheld(conn, job, now)
        return None

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
            values["total"] = values["processed"]
        if status is not None:
            values |= {"status": status.value, "finished_ms": now}
        elif progress.release:
            # Nobody runs the part now: PENDING until a runner (here or elsewhere) resumes it.
            values["status"] = JobStatus.PENDING.value
        held = status is None and not progress.release
        values["lease_expires_ms"] = now + self.lease_ms if held else None
        if not held:
            values["lease_owner"] = None
        return values

    def _given_back(self) -> dict[str, Any]:
        """Return this claim's attempts when letting go normally: this holder did not die."""
        p = schema.backfill_job_parts
        values: dict[str, Any] = {"claims": sa.case((p.c.claims > 0, p.c.claims - 1), else_=0)}
        if self._probe is not None and self._probe_ours:
            attempts = int(self._probe["attempts"]) - 1
            values["probe"] = {**self._probe, "attempts": attempts} if attempts > 0 else sa.null()
        return values

    def fail(self, error: str) -> None:
        """Record that the part failed (for infrastructure errors, not scorer errors).

        The job ends FAILED, with this error, when its last part ends.
        """
        now = _clock.now_ms()
        values = {**released(JobStatus.FAILED, now), "error": error}
        with self._db.write() as conn:
            job = lock_job(conn, self.job.job_id)
            self._update(conn, values)
            end_job_if_done(conn, job, now)


def _pause_if_unheld(conn: Connection, job: Any, now: int) -> None:  # noqa: ANN401 - a Row
    """Show a job that nobody works on now as PENDING (a runner resumes it)."""
    j, p = schema.backfill_jobs, schema.backfill_job_parts
    held = conn.execute(
        sa.select(sa.literal(1)).where(
            p.c.job_id == job.job_id,
            p.c.status.in_(UNFINISHED),
            p.c.lease_owner.is_not(None),
            p.c.lease_expires_ms >= now,
        )
    ).first()
    if held is None:
        conn.execute(
            sa.update(j)
            .where(j.c.job_id == job.job_id, j.c.status == JobStatus.RUNNING.value)
            .values(status=JobStatus.PENDING.value)
        )
