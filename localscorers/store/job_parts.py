"""Backfill job parts: a job's key ranges, claimed by many workers at once (issue 18).

The first claim of a job PLANS it: under the job row's lease it counts the job's
pairs (the total shown while it runs) and splits its traces by key
``(request_time_ms, trace_id)`` into parts of about ``part_traces`` traces (at most
``MAX_PARTS``), then, in one transaction, writes the parts, takes part 0 and lets go of
the job row. Every later claim takes the oldest job's first free part (a holder that
died: once its lease expired) with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
workers on many hosts share one job. Each part walks its range by its own cursor,
committed with the feedback it covers (``store.jobs.JobLease``).

Locks are always taken job row first, then part rows, and a claim never waits for a
lock: the transaction that ends a part locks the job row, ends the part and, when no
part is left, ends the job (SUCCEEDED, FAILED or CANCELLED) with the summed counts, so
two parts ending at once on two hosts cannot both miss being the last.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from localscorers import _clock
from localscorers.models import JobStatus
from localscorers.store import dialect, schema
from localscorers.store.backfill_pages import Plan

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.engine import Connection

    from localscorers.store.database import Database

__all__ = [
    "COUNT_KEYS",
    "DEFAULT_PART_TRACES",
    "FINAL_STATUSES",
    "MAX_PARTS",
    "ClaimedJob",
    "cancel_parts",
    "claim_job",
    "claim_next_part",
    "end_job_if_done",
    "lock_job",
    "part_counts",
    "released",
]

COUNT_KEYS = ("total", "processed", "succeeded", "failed", "skipped")
FINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
UNFINISHED = (JobStatus.PENDING.value, JobStatus.RUNNING.value)
# Parts of at least this many traces; a big job gets MAX_PARTS parts, so 4 (or 8)
# workers finish within a part of one another, and a part's start (loading the
# scorers, filling a window) stays small beside its run. 2,000 (was 500): a part of
# 625 traces fit in one window, so each ended in a commit of its own and a drained
# pool; 20k x 2 trivial scorers took 0.84-0.92 s instead of 0.95-0.99 s (issue 16).
DEFAULT_PART_TRACES = 2000
MAX_PARTS = 32


@dataclass(frozen=True)
class ClaimedJob:
    """A part of a job as its holder claimed it: the frozen plan, counts and cursor."""

    job_id: str
    experiment_id: str
    scorers: list[dict[str, Any]]  # the job's scorers with this part's counts
    start_ms: int | None
    end_ms: int | None
    rescore: bool
    cursor: tuple[int, str] | None
    # Claims since the cursor last moved, this one included: more than one means a
    # holder died (or stalled) before moving it.
    claims: int = 1
    # The pair a careful holder was running alone when it died, with its attempts.
    probe: dict[str, Any] | None = None
    part_no: int = 0
    lower: tuple[int, str] | None = None
    upper: tuple[int, str] | None = None

    @property
    def plan(self) -> Plan:
        """The plan frozen in the job, restricted to this part's key range."""
        return Plan.from_row(self).within(self.lower, self.upper)


def _key(time_ms: int | None, trace_id: str | None) -> tuple[int, str] | None:
    return None if trace_id is None or time_ms is None else (int(time_ms), trace_id)


def released(status: JobStatus, now: int) -> dict[str, Any]:
    """The values that end a job or a part in ``status`` and give its lease back."""
    return {
        "status": status.value,
        "finished_ms": now,
        "lease_owner": None,
        "lease_expires_ms": None,
    }


def lock_job(conn: Connection, job_id: str) -> Any:  # noqa: ANN401 - a Row of backfill_jobs
    """Lock the job row until the transaction ends (waiting for other holders); return it."""
    j = schema.backfill_jobs
    query = dialect.of(conn).lock_rows(sa.select(j).where(j.c.job_id == job_id))
    return conn.execute(query).first()


def part_counts(conn: Connection, job_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """Return, per job that has parts, its scorers' counts summed over its parts."""
    p = schema.backfill_job_parts
    ids = list(job_ids)
    summed: dict[str, list[dict[str, Any]]] = {}
    if not ids:
        return summed
    for row in conn.execute(sa.select(p.c.job_id, p.c.scorers).where(p.c.job_id.in_(ids))):
        counts = summed.setdefault(
            row.job_id, [dict.fromkeys(COUNT_KEYS[1:], 0) for _ in row.scorers]
        )
        for total, part in zip(counts, row.scorers, strict=True):
            for key in COUNT_KEYS[1:]:
                total[key] += int(part.get(key) or 0)
    return summed


def end_job_if_done(conn: Connection, job: Any, now: int) -> JobStatus | None:  # noqa: ANN401
    """End the job when none of its parts is left; return its final status, or None.

    The caller holds the job row's lock (``lock_job``) and has ended its part in this
    transaction: whoever ends the last part sees every other part ended.
    """
    p, j = schema.backfill_job_parts, schema.backfill_jobs
    parts = conn.execute(
        sa.select(p.c.status, p.c.error).where(p.c.job_id == job.job_id).order_by(p.c.part_no)
    ).all()
    if not parts or any(part.status in UNFINISHED for part in parts):
        return None
    ended = {JobStatus(part.status) for part in parts}
    status = next(
        (s for s in (JobStatus.CANCELLED, JobStatus.FAILED) if s in ended), JobStatus.SUCCEEDED
    )
    sums = part_counts(conn, [job.job_id])[job.job_id]
    scorers = [{**spec, **counts} for spec, counts in zip(job.scorers, sums, strict=True)]
    if status is JobStatus.SUCCEEDED:
        # The total counted when the job was planned misses traces logged into it since.
        for spec in scorers:
            spec["total"] = spec["processed"]
    values: dict[str, Any] = {**released(status, now), "scorers": scorers}
    for key in COUNT_KEYS[1:]:
        values[key] = sum(s[key] for s in scorers)
    if status is JobStatus.SUCCEEDED:
        values["total"] = values["processed"]
    values["error"] = next((part.error for part in parts if part.error), None)
    conn.execute(sa.update(j).where(j.c.job_id == job.job_id).values(**values))
    return status


def cancel_parts(conn: Connection, job: Any, now: int) -> None:  # noqa: ANN401 - a job Row
    """Cancel the job's parts nobody holds, and the job once no part is left.

    The caller holds the job row's lock. Parts being claimed right now are skipped: their
    new holder sees the job's cancel request within a fraction of a second.
    """
    p = schema.backfill_job_parts
    free = dialect.of(conn).claim_rows(
        sa.select(p.c.part_no).where(
            p.c.job_id == job.job_id,
            p.c.status.in_(UNFINISHED),
            sa.or_(p.c.lease_owner.is_(None), p.c.lease_expires_ms < now),
        )
    )
    numbers = [row.part_no for row in conn.execute(free)]
    if numbers:
        conn.execute(
            sa.update(p)
            .where(p.c.job_id == job.job_id, p.c.part_no.in_(numbers))
            .values(**released(JobStatus.CANCELLED, now))
        )
    end_job_if_done(conn, job, now)


def _has_parts(job_id: Any) -> Any:  # noqa: ANN401 - SQL expressions
    p = schema.backfill_job_parts
    return sa.exists().where(p.c.job_id == job_id)


@functools.cache
def _queries() -> tuple[sa.Select[Any], sa.Select[Any], sa.Select[Any], sa.Select[Any]]:
    """The jobs to plan, the parts to claim (rows; any), the cancelled jobs with parts to end.

    Built once (building them was a third of a claim's time), with the time as the
    parameter ``now``.
    """
    j, p = schema.backfill_jobs, schema.backfill_job_parts
    now: sa.BindParameter[int] = sa.bindparam("now")
    free_job = sa.or_(j.c.lease_owner.is_(None), j.c.lease_expires_ms < now)
    to_plan = (
        sa.select(j)
        .where(j.c.status.in_(UNFINISHED), free_job, ~_has_parts(j.c.job_id))
        .order_by(j.c.created_ms, j.c.job_id)
        .limit(1)
    )
    live_jobs = sa.select(j.c.job_id).where(
        j.c.status.in_(UNFINISHED), j.c.cancel_requested == sa.false()
    )
    free_part = sa.and_(
        p.c.status.in_(UNFINISHED),
        sa.or_(p.c.lease_owner.is_(None), p.c.lease_expires_ms < now),
    )
    to_claim = (
        sa.select(p)
        .where(free_part, p.c.job_id.in_(live_jobs))
        .order_by(p.c.created_ms, p.c.job_id, p.c.part_no)
        .limit(1)
    )
    cancelled = sa.select(p.c.job_id).where(
        free_part,
        p.c.job_id.in_(
            sa.select(j.c.job_id).where(
                j.c.status.in_(UNFINISHED), j.c.cancel_requested == sa.true()
            )
        ),
    )
    return to_plan, to_claim, to_claim.with_only_columns(sa.literal(1)), cancelled.limit(1)


def claim_job(
    db: Database,
    owner: str,
    lease_ms: int,
    *,
    part_traces: int = DEFAULT_PART_TRACES,
    on_page: Callable[[], None] | None = None,
) -> ClaimedJob | None:
    """Lease the next part of work: plan the oldest unplanned job, else take a free part.

    A claim counts itself in the part's ``claims`` in its own transaction, so a holder
    that dies mid-part (a scorer calling ``os._exit``, a native crash) has used it up.
    Parts of a cancelled job whose holder died are cancelled here instead.

    Args:
        db: the database.
        owner: the lease owner id.
        lease_ms: how long the lease lasts without renewal.
        part_traces: the fewest traces a part of a big job holds.
        on_page: called while a job's pairs are counted (a holder renews other leases).
    """
    to_plan, _, any_part, cancelled = _queries()
    now = {"now": _clock.now_ms()}
    # Look with a read first: an idle runner must not take the write lock every poll.
    with db.read() as conn:
        plan_row = conn.execute(to_plan, now).first()
        part_row = None if plan_row else conn.execute(any_part, now).first()
        stale = conn.execute(cancelled, now).first()
    if stale is not None:
        _end_cancelled(db, stale.job_id)
    if plan_row is not None:
        planned = _plan(db, owner, lease_ms, part_traces=part_traces, on_page=on_page)
        if planned is not None:
            return planned
    elif part_row is None:
        return None
    return _claim_part(db, owner, lease_ms)


def _end_cancelled(db: Database, job_id: str) -> None:
    now = _clock.now_ms()
    with db.write() as conn:
        job = lock_job(conn, job_id)
        if job is not None and job.status in UNFINISHED:
            cancel_parts(conn, job, now)


def _first_free(conn: Connection, query: sa.Select[Any], now: int) -> Any:  # noqa: ANN401 - a Row
    """Return the first row of a claim query (``_queries``) free at ``now`` (None: none)."""
    # PostgreSQL: workers on other hosts skip a row being claimed here.
    return conn.execute(dialect.of(conn).claim_rows(query), {"now": now}).first()


def _claim_part(db: Database, owner: str, lease_ms: int) -> ClaimedJob | None:
    p, j = schema.backfill_job_parts, schema.backfill_jobs
    now = _clock.now_ms()
    with db.write() as conn:
        row = _first_free(conn, _queries()[1], now)
        if row is None:
            return None
        where = sa.and_(p.c.job_id == row.job_id, p.c.part_no == row.part_no)
        conn.execute(
            sa.update(p)
            .where(where)
            .values(**_taken(p, owner, now, lease_ms), claims=p.c.claims + 1)
        )
        part = conn.execute(sa.select(p).where(where)).one()
        job = conn.execute(sa.select(j).where(j.c.job_id == row.job_id)).one()
    if job.status == JobStatus.PENDING.value:
        # Its own transaction: a claim never waits for a job row's lock (see the module).
        with db.write() as conn:
            conn.execute(
                sa.update(j)
                .where(j.c.job_id == job.job_id, j.c.status == JobStatus.PENDING.value)
                .values(status=JobStatus.RUNNING.value)
            )
    return _claimed(job, part)


def claim_next_part(
    conn: Connection,
    job: Any,  # noqa: ANN401 - a Row of backfill_jobs, locked by the caller (lock_job)
    owner: str,
    lease_ms: int,
    now: int,
) -> ClaimedJob | None:
    """Take the job's next free part in the transaction that ended the holder's last one.

    A runner then goes on with the job without a claim of its own: a fresh claim (a
    read to look, its own write transaction, a new scheduler learning the scorers'
    speed again) per part was a tenth of a 20,000-trace backfill's time (issue 16).
    The caller holds the job row's lock, so job row then part row, as everywhere.
    """
    p = schema.backfill_job_parts
    if job is None or job.cancel_requested or job.status not in UNFINISHED:
        return None
    query = dialect.of(conn).claim_rows(_queries()[1].where(p.c.job_id == sa.bindparam("job_id")))
    row = conn.execute(query, {"now": now, "job_id": job.job_id}).first()
    if row is None:
        return None
    where = sa.and_(p.c.job_id == row.job_id, p.c.part_no == row.part_no)
    conn.execute(
        sa.update(p).where(where).values(**_taken(p, owner, now, lease_ms), claims=p.c.claims + 1)
    )
    return _claimed(job, conn.execute(sa.select(p).where(where)).one())


def _claimed(job: Any, part: Any) -> ClaimedJob:  # noqa: ANN401 - Rows
    return ClaimedJob(
        job.job_id,
        job.experiment_id,
        [dict(s) for s in part.scorers],
        job.start_ms,
        job.end_ms,
        bool(job.rescore),
        _key(part.cursor_time_ms, part.cursor_trace_id),
        claims=part.claims,
        probe=dict(part.probe) if part.probe else None,
        part_no=part.part_no,
        lower=_key(part.lower_time_ms, part.lower_trace_id),
        upper=_key(part.upper_time_ms, part.upper_trace_id),
    )


def _plan(
    db: Database,
    owner: str,
    lease_ms: int,
    *,
    part_traces: int,
    on_page: Callable[[], None] | None,
) -> ClaimedJob | None:
    """Lease an unplanned job's row, count and split it, write its parts, take part 0."""
    j = schema.backfill_jobs
    now = _clock.now_ms()
    with db.write() as conn:
        job = _first_free(conn, _queries()[0], now)
        if job is None:
            return None
        where = j.c.job_id == job.job_id
        if job.cancel_requested:
            conn.execute(sa.update(j).where(where).values(**released(JobStatus.CANCELLED, now)))
            return None
        conn.execute(sa.update(j).where(where).values(**_taken(j, owner, now, lease_ms)))

    def renew() -> None:
        with db.write() as conn:
            conn.execute(
                sa.update(j)
                .where(where, j.c.lease_owner == owner)
                .values(lease_expires_ms=_clock.now_ms() + lease_ms)
            )
        if on_page is not None:
            on_page()

    plan = Plan.from_row(job)
    totals = plan.count(db, check_existing=False, on_page=renew)
    with db.read() as conn:
        bounds = plan.boundaries(conn, min_traces=part_traces, max_parts=MAX_PARTS)
    return _write_parts(db, job, owner, lease_ms, totals=totals, bounds=bounds)


def _write_parts(
    db: Database,
    job: Any,  # noqa: ANN401 - a Row of backfill_jobs
    owner: str,
    lease_ms: int,
    *,
    totals: list[int],
    bounds: list[tuple[int, str]],
) -> ClaimedJob | None:
    """Write the parts between ``bounds``, part 0 ours, and let go of the job row."""
    j, p = schema.backfill_jobs, schema.backfill_job_parts
    now = _clock.now_ms()
    with db.write() as conn:
        current = lock_job(conn, job.job_id)
        parts = conn.execute(sa.select(_has_parts(job.job_id))).scalar()
        if current is None or current.lease_owner != owner or parts:
            return None  # our lease expired and another planner took the job over
        if current.cancel_requested:
            values = released(JobStatus.CANCELLED, now)
            conn.execute(sa.update(j).where(j.c.job_id == job.job_id).values(**values))
            return None
        conn.execute(sa.insert(p), _part_rows(job, bounds))
        scorers = [{**s, "total": n} for s, n in zip(job.scorers, totals, strict=True)]
        conn.execute(
            sa.update(j)
            .where(j.c.job_id == job.job_id)
            .values(total=sum(totals), scorers=scorers, lease_owner=None, lease_expires_ms=None)
        )
        first = sa.and_(p.c.job_id == job.job_id, p.c.part_no == 0)
        conn.execute(sa.update(p).where(first).values(**_taken(p, owner, now, lease_ms), claims=1))
        return _claimed(current, conn.execute(sa.select(p).where(first)).one())


def _part_rows(
    job: Any,  # noqa: ANN401 - a Row of backfill_jobs
    bounds: list[tuple[int, str]],
) -> list[dict[str, Any]]:
    """The PENDING parts of a job between ``bounds`` (the first and last are open)."""
    zero = [{**s, **dict.fromkeys(COUNT_KEYS, 0)} for s in job.scorers]
    edges: list[tuple[int, str] | None] = [None, *bounds, None]
    return [
        {
            "job_id": job.job_id,
            "part_no": number,
            "created_ms": job.created_ms,
            "status": JobStatus.PENDING.value,
            "lower_time_ms": lower[0] if lower else None,
            "lower_trace_id": lower[1] if lower else None,
            "upper_time_ms": upper[0] if upper else None,
            "upper_trace_id": upper[1] if upper else None,
            # A part's walk starts at its lower bound.
            "cursor_time_ms": lower[0] if lower else None,
            "cursor_trace_id": lower[1] if lower else None,
            "scorers": zero,
            "claims": 0,
        }
        for number, (lower, upper) in enumerate(itertools.pairwise(edges))
    ]


def _taken(table: sa.Table, owner: str, now: int, lease_ms: int) -> dict[str, Any]:
    """The values that make a job or a part RUNNING under ``owner``'s lease."""
    return {
        "status": JobStatus.RUNNING.value,
        "lease_owner": owner,
        "lease_expires_ms": now + lease_ms,
        "started_ms": sa.func.coalesce(table.c.started_ms, now),
    }
