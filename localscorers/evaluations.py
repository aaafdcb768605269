"""The evaluation ledger: pending work, leases, and exactly-once completion.

Every (trace, scorer, version) evaluation is one ``evaluations`` row. Online rows are
written PENDING with the trace; workers claim them with a lease; completion writes the
feedback and retires the row in one transaction, and only while the lease is still
ours. A worker that died loses its lease when it expires and the row is claimed again,
so each row ends with exactly one set of feedback whatever crashes.

On SQLite, ``BEGIN IMMEDIATE`` makes a claim exclusive. On PostgreSQL the same claim
would select with ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from localscorers import _clock, _tables
from localscorers.models import EvaluationStatus, Feedback
from localscorers.store import assessment_row, insert_rows

if TYPE_CHECKING:
    from localscorers.db import Database

__all__ = ["Claim", "EvaluationQueue", "Outcome", "new_owner_id"]

_PENDING = EvaluationStatus.PENDING.value


def new_owner_id() -> str:
    """Return a lease owner id unique to this process and instance."""
    return f"{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class Claim:
    """A pending evaluation leased to us."""

    id: int
    trace_id: str
    experiment_id: str
    scorer_name: str
    scorer_version: int
    origin: str
    attempts: int


@dataclass(frozen=True)
class Outcome:
    """What became of a claim: feedback to write, or a retry time for a transient failure."""

    claim: Claim
    feedback: Sequence[Feedback] = ()
    retry_at_ms: int | None = None


class EvaluationQueue:
    """Claim and complete evaluations under leases held by ``owner``.

    Args:
        db: the database.
        owner: this holder's lease id.
        lease_ms: how long a claim stays ours without renewal.
    """

    def __init__(self, db: Database, *, owner: str, lease_ms: int) -> None:
        self._db = db
        self.owner = owner
        self.lease_ms = lease_ms

    def claim(self, limit: int, *, saturated: Collection[tuple[str, str]] = ()) -> list[Claim]:
        """Lease up to ``limit`` pending evaluations that are due and free (or whose lease expired).

        ``saturated`` lists (experiment_id, scorer_name) pairs at their concurrency limit.
        """
        if limit <= 0:
            return []
        e = _tables.evaluations
        now = _clock.now_ms()
        conditions = [
            e.c.status == _PENDING,
            e.c.superseded == sa.false(),
            e.c.not_before_ms <= now,
            sa.or_(e.c.lease_owner.is_(None), e.c.lease_expires_ms < now),
        ]
        conditions.extend(
            sa.not_(sa.and_(e.c.experiment_id == exp, e.c.scorer_name == name))
            for exp, name in saturated
        )
        query = (
            sa.select(
                e.c.id,
                e.c.trace_id,
                e.c.experiment_id,
                e.c.scorer_name,
                e.c.scorer_version,
                e.c.origin,
                e.c.attempts,
            )
            .where(*conditions)
            .order_by(e.c.id)
            .limit(limit)
        )
        with self._db.write() as conn:
            rows = conn.execute(query).all()
            if not rows:
                return []
            conn.execute(
                sa.update(e)
                .where(e.c.id.in_([r.id for r in rows]))
                .values(lease_owner=self.owner, lease_expires_ms=now + self.lease_ms)
            )
        return [Claim(*row) for row in rows]

    def renew(self) -> int:
        """Extend every lease we hold; return how many."""
        e = _tables.evaluations
        with self._db.write() as conn:
            result = conn.execute(
                sa.update(e)
                .where(e.c.lease_owner == self.owner, e.c.status == _PENDING)
                .values(lease_expires_ms=_clock.now_ms() + self.lease_ms)
            )
        return int(result.rowcount)

    def release(self, claims: Sequence[Claim] | None = None) -> None:
        """Give back claims (default: all of ours) so another worker can take them at once."""
        e = _tables.evaluations
        query = sa.update(e).where(e.c.lease_owner == self.owner, e.c.status == _PENDING)
        if claims is not None:
            if not claims:
                return
            query = query.where(e.c.id.in_([c.id for c in claims]))
        with self._db.write() as conn:
            conn.execute(query.values(lease_owner=None, lease_expires_ms=None))

    def complete(self, outcomes: Sequence[Outcome]) -> int:
        """Write feedback and retire claims, or schedule retries, in one transaction.

        Only claims still leased to us are written: one whose lease was taken over is
        dropped, since the new holder will write it. Returns how many were written.
        """
        if not outcomes:
            return 0
        e = _tables.evaluations
        now = _clock.now_ms()
        with self._db.write() as conn:
            ours = set(
                conn.execute(
                    sa.select(e.c.id).where(
                        e.c.id.in_([o.claim.id for o in outcomes]),
                        e.c.lease_owner == self.owner,
                        e.c.status == _PENDING,
                    )
                ).scalars()
            )
            finals: list[dict[str, Any]] = []
            retries: list[dict[str, Any]] = []
            feedback_rows: list[dict[str, Any]] = []
            for outcome in outcomes:
                claim = outcome.claim
                if claim.id not in ours:
                    continue
                if outcome.retry_at_ms is not None:
                    retries.append(
                        {
                            "b_id": claim.id,
                            "attempts": claim.attempts + 1,
                            "not_before_ms": outcome.retry_at_ms,
                        }
                    )
                    continue
                failed = any(f.error is not None for f in outcome.feedback)
                finals.append(
                    {
                        "b_id": claim.id,
                        "status": (
                            EvaluationStatus.FAILED if failed else EvaluationStatus.SUCCEEDED
                        ).value,
                        "attempts": claim.attempts + 1,
                        "finished_ms": now,
                    }
                )
                feedback_rows.extend(
                    assessment_row(
                        f,
                        trace_id=claim.trace_id,
                        origin=claim.origin,
                        now_ms=now,
                        evaluation_id=claim.id,
                        scorer_name=claim.scorer_name,
                        scorer_version=claim.scorer_version,
                    )
                    for f in outcome.feedback
                )
            where = e.c.id == sa.bindparam("b_id")
            if finals:
                conn.execute(
                    sa.update(e)
                    .where(where)
                    .values(
                        status=sa.bindparam("status"),
                        attempts=sa.bindparam("attempts"),
                        finished_ms=sa.bindparam("finished_ms"),
                        lease_owner=None,
                        lease_expires_ms=None,
                    ),
                    finals,
                )
            if retries:
                conn.execute(
                    sa.update(e)
                    .where(where)
                    .values(
                        attempts=sa.bindparam("attempts"),
                        not_before_ms=sa.bindparam("not_before_ms"),
                        lease_owner=None,
                        lease_expires_ms=None,
                    ),
                    retries,
                )
            insert_rows(conn, _tables.assessments, feedback_rows)
        return len(finals) + len(retries)

    def pending_count(self, *, up_to_id: int | None = None) -> int:
        """Count pending evaluations (optionally only those with id <= ``up_to_id``)."""
        e = _tables.evaluations
        query = sa.select(sa.func.count()).where(
            e.c.status == _PENDING, e.c.superseded == sa.false()
        )
        if up_to_id is not None:
            query = query.where(e.c.id <= up_to_id)
        with self._db.read() as conn:
            return int(conn.execute(query).scalar_one())

    def has_pending(self, *, up_to_id: int | None = None) -> bool:
        """Tell whether any evaluation (optionally with id <= ``up_to_id``) is still pending.

        What waiting loops should ask: it stops at the first pending row, where
        ``pending_count`` reads all of them (milliseconds for a backlog of 20,000).
        """
        e = _tables.evaluations
        query = sa.select(e.c.id).where(e.c.status == _PENDING, e.c.superseded == sa.false())
        if up_to_id is not None:
            query = query.where(e.c.id <= up_to_id)
        with self._db.read() as conn:
            return conn.execute(query.limit(1)).first() is not None

    def max_id(self) -> int:
        """Return the highest evaluation id written so far (0 when none)."""
        e = _tables.evaluations
        with self._db.read() as conn:
            return int(conn.execute(sa.select(sa.func.max(e.c.id))).scalar_one() or 0)
