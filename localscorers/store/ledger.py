"""The evaluation ledger: pending work, leases, and exactly-once completion.

Every (trace, scorer, version) evaluation is one ``evaluations`` row. A trace commit
writes its online evaluations as one ``evaluation_requests`` row (cheap on the hot
path); a claim moves requests into ``evaluations`` rows, leasing those it takes, in one
transaction. Workers claim rows with a lease; completion writes the feedback and
retires the row in one transaction, and only while the lease is still ours. A worker
that died loses its lease when it expires and the row is claimed again, so each row
ends with exactly one set of feedback whatever crashes.

On SQLite, ``BEGIN IMMEDIATE`` makes a claim exclusive. On PostgreSQL the same claim
selects with ``FOR UPDATE SKIP LOCKED`` (``dialect.claim_rows``), so claimers on many
hosts take different rows, and completion locks its rows (``FOR UPDATE``) before it
checks that the lease is still ours.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from localscorers import _clock
from localscorers.models import EvaluationStatus, Feedback
from localscorers.store import bulk, dialect, schema
from localscorers.store.requests import (
    Requests,
    move,
    move_requests,
    pending_requests,
    read_requests,
    requested_counts,
)
from localscorers.store.results import FeedbackRows, Plain, fail_crashed, final_status
from localscorers.store.rows import insert_encoded

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from localscorers.store.database import Database

__all__ = [
    "Claim",
    "EvaluationQueue",
    "Outcome",
    "Watermark",
    "move_requests",
    "new_owner_id",
    "pending_requests",
    "requested_counts",
]

_PENDING = EvaluationStatus.PENDING.value
_E = schema.evaluations
# In the order of Claim's fields.
_CLAIM_COLUMNS = (
    _E.c.id,
    _E.c.trace_id,
    _E.c.experiment_id,
    _E.c.scorer_name,
    _E.c.scorer_version,
    _E.c.origin,
    _E.c.attempts,
)


def new_owner_id() -> str:
    """Return a lease owner id unique to this process and instance."""
    return f"{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class Claim:
    """A pending evaluation leased to us.

    ``attempts`` counts this claim: an attempt is counted when a call is claimed, so a
    process that dies mid-call has used one up. ``suspect`` marks a claim taken over
    from a holder that died (its lease expired): it is claimed alone, so that if the
    scorer kills the process again, no other evaluation pays an attempt for it.
    """

    id: int
    trace_id: str
    experiment_id: str
    scorer_name: str
    scorer_version: int
    origin: str
    attempts: int
    suspect: bool = False


@dataclass(frozen=True)
class Outcome:
    """What became of a claim: feedback to write, or a retry time for a transient failure.

    ``plain`` holds a scorer's plain return value (a bool, number or string in a
    1-tuple), written as the feedback ``to_feedback`` would make of it, without building it.
    """

    claim: Claim
    feedback: Sequence[Feedback] = ()
    retry_at_ms: int | None = None
    plain: Plain | None = None


@dataclass
class Watermark:
    """The newest request and evaluation when a wait began (see ``has_pending``).

    Requests up to ``request_id`` become evaluations with ids above ``evaluation_id``,
    so once they are all moved, ``evaluation_id`` is raised to cover them.
    """

    request_id: int
    evaluation_id: int


def _unleased(*columns: str) -> Callable[[], sa.Update]:
    """Build ``UPDATE evaluations SET <columns>, no lease WHERE id = :b_id`` (for _bulk)."""

    def build() -> sa.Update:
        e = schema.evaluations
        values: dict[str, Any] = {name: sa.bindparam(name) for name in columns}
        return (
            sa.update(e)
            .where(e.c.id == sa.bindparam("b_id"))
            .values(**values, lease_owner=sa.null(), lease_expires_ms=sa.null())
        )

    return build


_finish = _unleased("status", "attempts", "finished_ms")  # a final outcome
_retry = _unleased("attempts", "not_before_ms")  # a transient failure, tried again later


def _taken_since() -> sa.Select[Any]:
    e = schema.evaluations
    return (
        sa.select(*_CLAIM_COLUMNS)
        .where(e.c.id > sa.bindparam("before"), e.c.lease_owner == sa.bindparam("owner"))
        .order_by(e.c.id)
    )


def _claimable(
    now: int, limit: int, saturated: Collection[tuple[str, str]]
) -> tuple[sa.Select[Any], sa.Select[Any]]:
    """Select the claimable rows, oldest first, as two index reads that sort no backlog.

    ``ix_evaluations_pending`` is (status, not_before_ms): rows never retried
    (``not_before_ms = 0``) come out of it in id order, so a claim reads the oldest
    ones at a cost flat in the backlog's size; due retries (a few) are read apart.
    One query over both sorted the whole backlog for every claim.
    """
    e = schema.evaluations
    conditions = [
        e.c.status == _PENDING,
        e.c.superseded == sa.false(),
        sa.or_(e.c.lease_owner.is_(None), e.c.lease_expires_ms < now),
        *(
            sa.not_(sa.and_(e.c.experiment_id == exp, e.c.scorer_name == name))
            for exp, name in saturated
        ),
    ]
    columns = (*_CLAIM_COLUMNS, e.c.lease_owner)
    fresh = sa.select(*columns).where(*conditions, e.c.not_before_ms == 0)
    due = sa.select(*columns).where(*conditions, e.c.not_before_ms > 0, e.c.not_before_ms <= now)
    return fresh.order_by(e.c.id).limit(limit), due.order_by(e.c.id).limit(limit)


def _oldest(conn: Connection, queries: Sequence[sa.Select[Any]], limit: int) -> list[Any]:
    rows = [row for query in queries for row in conn.execute(query)]
    return sorted(rows, key=lambda row: row.id)[:limit]


class EvaluationQueue:
    """Claim and complete evaluations under leases held by ``owner``.

    Args:
        db: the database.
        owner: this holder's lease id.
        lease_ms: how long a claim stays ours without renewal.
        max_attempts: claims of one evaluation before it is FAILED with ``SCORER_CRASHED``
            (``LOCALSCORERS_MAX_ATTEMPTS``).
    """

    def __init__(self, db: Database, *, owner: str, lease_ms: int, max_attempts: int = 4) -> None:
        self._db = db
        self.owner = owner
        self.lease_ms = lease_ms
        self.max_attempts = max_attempts

    def claim(self, limit: int, *, saturated: Collection[tuple[str, str]] = ()) -> list[Claim]:
        """Lease up to ``limit`` pending evaluations that are due and free (or whose lease expired).

        Evaluations already in the ledger come first; then the oldest requests are moved
        into it, and the rows we can take are written already leased to us.
        ``saturated`` lists (experiment_id, scorer_name) pairs at their concurrency limit.
        """
        if limit <= 0:
            return []
        e = schema.evaluations
        now = _clock.now_ms()
        requests = read_requests(self._db, limit)
        queries = _claimable(now, limit, saturated)
        if requests is None:
            # Look with a read first: an idle worker woken by another process's commit
            # must not take the write lock (the application's commits wait for it) for
            # nothing.
            with self._db.read() as conn:
                if not _oldest(conn, queries, limit):
                    return []
        with self._db.write() as conn:
            queries = tuple(dialect.of(conn).claim_rows(query) for query in queries)
            rows = self._take_over(conn, _oldest(conn, queries, limit), now)
            if rows:
                conn.execute(
                    sa.update(e)
                    .where(e.c.id.in_([r.id for r in rows]))
                    .values(
                        lease_owner=self.owner,
                        lease_expires_ms=now + self.lease_ms,
                        attempts=e.c.attempts + 1,
                    )
                )
            claims = [
                Claim(
                    row.id,
                    row.trace_id,
                    row.experiment_id,
                    row.scorer_name,
                    row.scorer_version,
                    row.origin,
                    row.attempts + 1,
                    suspect=row.lease_owner is not None,
                )
                for row in rows
            ]
            if claims and claims[0].suspect:
                return claims  # alone: see Claim
            if requests is not None and len(claims) < limit:
                claims += self._move_requests(conn, requests, now, limit - len(claims), saturated)
        return claims

    def _take_over(self, conn: Connection, rows: Sequence[Any], now: int) -> Sequence[Any]:
        """Fail the rows whose claims all died; return the rows to lease.

        A row still leased (to a holder whose lease expired) was claimed by a process
        that died, or stalled, mid-call. After ``max_attempts`` such claims it is FAILED
        with ``SCORER_CRASHED``; otherwise only the oldest is taken, alone.
        """
        crashed = [r for r in rows if r.attempts >= self.max_attempts]
        if crashed:
            fail_crashed(conn, crashed, now)
        rows = [r for r in rows if r.attempts < self.max_attempts]
        orphans = [r for r in rows if r.lease_owner is not None]
        return orphans[:1] if orphans else rows

    def _move_requests(
        self,
        conn: Connection,
        requests: Requests,
        now: int,
        limit: int,
        saturated: Collection[tuple[str, str]],
    ) -> list[Claim]:
        """Move the requests into the ledger, taking up to ``limit`` of their rows.

        Rows above ``before`` leased to us are exactly the ones just taken, since this
        transaction holds the write lock.
        """
        e = schema.evaluations
        before = conn.execute(sa.select(sa.func.max(e.c.id))).scalar_one() or 0
        taken = move(
            conn,
            requests,
            take=limit,
            owner=self.owner,
            expires=now + self.lease_ms,
            saturated=saturated,
        )
        if not taken:
            return []
        taken_rows = bulk.compiled_select(conn, "evaluations:taken", _taken_since).fetchall(
            conn, {"before": before, "owner": self.owner}
        )
        return [Claim(*row) for row in taken_rows]

    def renew(self) -> int:
        """Extend every lease we hold; return how many."""
        e = schema.evaluations
        with self._db.write() as conn:
            result = conn.execute(
                sa.update(e)
                .where(e.c.lease_owner == self.owner, e.c.status == _PENDING)
                .values(lease_expires_ms=_clock.now_ms() + self.lease_ms)
            )
        return int(result.rowcount)

    def release(self, claims: Sequence[Claim] | None = None) -> None:
        """Give back claims (default: all of ours) so another worker can take them at once."""
        e = schema.evaluations
        query = sa.update(e).where(e.c.lease_owner == self.owner, e.c.status == _PENDING)
        if claims is not None:
            if not claims:
                return
            query = query.where(e.c.id.in_([c.id for c in claims]))
        with self._db.write() as conn:
            # Given back, not crashed: the attempt counted at the claim is returned too.
            conn.execute(
                query.values(
                    lease_owner=None,
                    lease_expires_ms=None,
                    attempts=sa.case((e.c.attempts > 0, e.c.attempts - 1), else_=0),
                )
            )

    def complete(self, outcomes: Sequence[Outcome]) -> int:
        """Write feedback and retire claims, or schedule retries, in one transaction.

        Only claims still leased to us are written: one whose lease was taken over is
        dropped, since the new holder will write it. Returns how many were written.
        """
        if not outcomes:
            return 0
        e = schema.evaluations
        now = _clock.now_ms()
        # Rows are built before the write lock is taken: the application's commits wait
        # for it, and Python work inside it (JSON, uuids) was most of its hold time.
        finals: dict[int, dict[str, Any]] = {}
        retries: dict[int, dict[str, Any]] = {}
        feedback: dict[int, Sequence[dict[str, Any]]] = {}
        builder = FeedbackRows(now)
        for outcome in outcomes:
            claim = outcome.claim
            if outcome.retry_at_ms is not None:
                retries[claim.id] = {
                    "b_id": claim.id,
                    "attempts": claim.attempts,
                    "not_before_ms": outcome.retry_at_ms,
                }
                continue
            result = outcome.plain if outcome.plain is not None else outcome.feedback
            finals[claim.id] = {
                "b_id": claim.id,
                "status": final_status(result),
                "attempts": claim.attempts,
                "finished_ms": now,
            }
            feedback[claim.id] = builder.build(
                result,
                trace_id=claim.trace_id,
                scorer_name=claim.scorer_name,
                scorer_version=claim.scorer_version,
                origin=claim.origin,
                evaluation_id=claim.id,
            )
        ids = [o.claim.id for o in outcomes]
        with self._db.write() as conn:
            # Locked until we commit: a takeover cannot slip in between check and write.
            mine = sa.select(e.c.id).where(
                e.c.id.in_(ids), e.c.lease_owner == self.owner, e.c.status == _PENDING
            )
            ours = set(conn.execute(dialect.of(conn).lock_rows(mine)).scalars())
            final_rows = [row for i, row in finals.items() if i in ours]
            retry_rows = [row for i, row in retries.items() if i in ours]
            bulk.compiled_select(conn, "evaluations:finish", _finish).executemany(conn, final_rows)
            bulk.compiled_select(conn, "evaluations:retry", _retry).executemany(conn, retry_rows)
            insert_encoded(
                conn,
                schema.assessments,
                [row for i, rows in feedback.items() if i in ours for row in rows],
            )
        return len(final_rows) + len(retry_rows)

    def pending_count(self) -> int:
        """Count pending evaluations: those in the ledger and those still requested."""
        e, r = schema.evaluations, schema.evaluation_requests
        with self._db.read() as conn:
            in_ledger = conn.execute(
                sa.select(sa.func.count()).where(
                    e.c.status == _PENDING, e.c.superseded == sa.false()
                )
            ).scalar_one()
            requested = conn.execute(sa.select(sa.func.sum(r.c.count))).scalar_one()
        return int(in_ledger) + int(requested or 0)

    def watermark(self) -> Watermark:
        """Mark the work pending now, for ``has_pending(since=...)``."""
        e, r = schema.evaluations, schema.evaluation_requests
        with self._db.read() as conn:
            request_id = conn.execute(sa.select(sa.func.max(r.c.id))).scalar_one()
            evaluation_id = conn.execute(sa.select(sa.func.max(e.c.id))).scalar_one()
        return Watermark(int(request_id or 0), int(evaluation_id or 0))

    def has_pending(
        self,
        since: Watermark | None = None,
        *,
        excluding: Collection[tuple[str, str]] = (),
    ) -> bool:
        """Tell whether any evaluation is still pending (of those marked by ``since``).

        ``excluding`` lists (experiment_id, scorer_name) pairs whose evaluations in the
        ledger do not count (requests always do: nobody has decided them yet).

        What waiting loops should ask: it stops at the first pending row, where
        ``pending_count`` reads all of them (milliseconds for a backlog of 20,000).
        Updates ``since`` once its requests have all been moved into the ledger.
        """
        e, r = schema.evaluations, schema.evaluation_requests
        requests = sa.select(r.c.id)
        if since is not None:
            requests = requests.where(r.c.id <= since.request_id)
        query = sa.select(e.c.id).where(
            e.c.status == _PENDING,
            e.c.superseded == sa.false(),
            *(
                sa.not_(sa.and_(e.c.experiment_id == exp, e.c.scorer_name == name))
                for exp, name in excluding
            ),
        )
        with self._db.read() as conn:
            # One read transaction, so the requests and the ledger are seen at one instant.
            if conn.execute(requests.limit(1)).first() is not None:
                return True
            if since is not None:
                if since.request_id:
                    # Every marked request is in the ledger now, under some id up to the max.
                    since.evaluation_id = int(
                        conn.execute(sa.select(sa.func.max(e.c.id))).scalar_one() or 0
                    )
                    since.request_id = 0
                query = query.where(e.c.id <= since.evaluation_id)
            return conn.execute(query.limit(1)).first() is not None
