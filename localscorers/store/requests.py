"""The compact queue a commit writes, and moving it into the evaluation ledger.

A trace commit writes its online evaluations as ONE ``evaluation_requests`` row (the
scorers chosen, as a JSON list): five ``evaluations`` rows with their unique index
cost several times more on the application's hot path. Claims (``ledger``) and
backfills move requests into ``evaluations`` rows, oldest first.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from localscorers import sampling
from localscorers.models import EvaluationStatus, TraceStatus
from localscorers.store import bulk, codec, filter_sql, schema
from localscorers.store.results import ledger_insert

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from localscorers.store.database import Database
    from localscorers.store.rows import TraceRecord
    from localscorers.store.scorer_state import ActiveScorer

__all__ = [
    "Requests",
    "by_experiment",
    "move",
    "move_requests",
    "pending_requests",
    "read_requests",
    "requested_counts",
    "requests_for",
]

_PENDING = EvaluationStatus.PENDING.value


def _oldest_requests() -> sa.Select[Any]:
    r = schema.evaluation_requests
    return (
        sa.select(r.c.id, r.c.trace_id, r.c.experiment_id, r.c.scorers, r.c.enqueued_ms)
        .order_by(r.c.id)
        .limit(sa.bindparam("limit"))
    )


def pending_requests(conn: Connection, trace_id: str) -> list[tuple[str, int]]:
    """Return the (scorer name, version) pairs of a trace's requests not yet in the ledger.

    Scans ``evaluation_requests`` (it has no index on ``trace_id``: it holds only the
    backlog, and the hot path pays for every index). For explain, not for hot paths.
    """
    r = schema.evaluation_requests
    scorers = conn.execute(sa.select(r.c.scorers).where(r.c.trace_id == trace_id)).scalars()
    return [(str(name), int(version)) for pairs in scorers for name, version in pairs]


def requested_counts(conn: Connection, experiment_id: str) -> dict[str, int]:
    """Count an experiment's requested evaluations not yet in the ledger, per scorer name."""
    r = schema.evaluation_requests
    counts: dict[str, int] = {}
    for pairs in conn.execute(
        sa.select(r.c.scorers).where(r.c.experiment_id == experiment_id)
    ).scalars():
        for name, _version in pairs:
            counts[name] = counts.get(name, 0) + 1
    return counts


def move_requests(db: Database, *, batch: int = 2000) -> int:
    """Move every request into the ledger, unleased, ``batch`` requests per transaction.

    A backfill calls this before it reads traces, so that online work already committed
    shows as PENDING there (and is left to online scoring) instead of being invisible.
    Returns how many requests were moved.
    """
    moved = 0
    while True:
        requests = read_requests(db, batch)
        if requests is None:
            return moved
        with db.write() as conn:
            move(conn, requests)
        moved += len(requests.rows)
        if len(requests.rows) < batch:
            return moved


@dataclass(frozen=True)
class Requests:
    """The oldest requests, read before the write lock, with their ledger rows built."""

    last_id: int
    rows: list[list[dict[str, Any]]]  # per request, oldest first
    ids: tuple[int, ...] = ()  # the requests' ids, in the order of ``rows``


def read_requests(db: Database, limit: int) -> Requests | None:
    """Read the oldest ``limit`` requests and build their ledger rows (None: no request)."""
    # Outside the write lock: decoding and building rows there made the application's
    # commits wait for it.
    with db.read() as conn:
        found = bulk.compiled_select(conn, "evaluations:requests", _oldest_requests).fetchall(
            conn, {"limit": limit}
        )
    if not found:
        return None
    rows = [
        [
            {
                "id": None,
                "trace_id": trace_id,
                "experiment_id": experiment_id,
                "scorer_name": name,
                "scorer_version": version,
                "origin": "online",
                "status": _PENDING,
                "attempts": 0,
                "enqueued_ms": enqueued_ms,
                "not_before_ms": 0,
                "lease_owner": None,
                "lease_expires_ms": None,
                "finished_ms": None,
                "superseded": False,
            }
            for name, version in codec.loads(scorers)
        ]
        for _id, trace_id, experiment_id, scorers, enqueued_ms in found
    ]
    return Requests(found[-1][0], rows, tuple(row[0] for row in found))


def _delete_returning(conn: Connection, requests: Requests) -> list[list[dict[str, Any]]]:
    """Delete the requests read, returning the rows of those that were still there.

    PostgreSQL has many writers and ids commit out of order, so "the newest
    ``rowcount``" does not name what was deleted: ``RETURNING`` does. A request another
    mover deleted first is waited for (its row lock) and then not returned.
    """
    r = schema.evaluation_requests
    gone = set(
        conn.execute(sa.delete(r).where(r.c.id.in_(list(requests.ids))).returning(r.c.id)).scalars()
    )
    return [rows for i, rows in zip(requests.ids, requests.rows, strict=True) if i in gone]


def move(
    conn: Connection,
    requests: Requests,
    *,
    take: int = 0,
    owner: str | None = None,
    expires: int | None = None,
    saturated: Collection[tuple[str, str]] = (),
) -> int:
    """Move requests read by ``read_requests`` into ``evaluations``; lease up to ``take`` rows.

    Runs inside the write lock. Another process may have moved some of them since they
    were read: every move deletes the oldest requests and ids only grow (AUTOINCREMENT),
    so the ones still there are the newest ``rowcount`` of ours. Insert-or-ignore: a
    pair a backfill wrote meanwhile keeps its row, so the unique index still makes each
    (trace, scorer, version) one evaluation. Returns how many rows were leased to ``owner``.
    """
    r = schema.evaluation_requests
    if conn.dialect.name == "postgresql":
        still_there = _delete_returning(conn, requests)
    else:
        deleted = conn.execute(sa.delete(r).where(r.c.id <= requests.last_id)).rowcount
        still_there = requests.rows[max(0, len(requests.rows) - deleted) :] if deleted else []
    rows: list[dict[str, Any]] = []
    taken = 0
    for request_rows in still_there:
        for row in request_rows:
            if taken < take and (row["experiment_id"], row["scorer_name"]) not in saturated:
                row["lease_owner"], row["lease_expires_ms"] = owner, expires
                row["attempts"] = 1  # counted when claimed (see Claim)
                taken += 1
            rows.append(row)
    ledger_insert(conn).executemany(conn, rows)
    return taken


# -- what a trace commit writes -----------------------------------------------------


def by_experiment(
    records: Sequence[TraceRecord],
) -> Iterable[tuple[str, Sequence[TraceRecord]]]:
    """Group traces by experiment (one trace, the hot path: no dict)."""
    if len(records) == 1:  # the hot path: one trace per commit
        return ((records[0].experiment_id, records),)
    grouped: dict[str, list[TraceRecord]] = {}
    for r in records:
        grouped.setdefault(r.experiment_id, []).append(r)
    return grouped.items()


def requests_for(
    conn: Connection,
    experiment_id: str,
    group: Sequence[TraceRecord],
    active: list[ActiveScorer],
    now: int,
) -> list[dict[str, Any]]:
    """The ``evaluation_requests`` rows of these traces: the scorers each one deserves."""
    requests: list[dict[str, Any]] = []
    filtered = [a for a in active if a.filter_expr is not None]
    for r in group:
        finished = r.status is not TraceStatus.IN_PROGRESS
        # One SELECT evaluates every active filter against the just-written trace
        # (not for an unfinished trace: it is never scored, whatever they say).
        matched = (
            filter_sql.matches_for_trace(
                conn, r.trace_id, [a.filter_expr for a in filtered if a.filter_expr]
            )
            if filtered and finished
            else []
        )
        passes = dict(zip((a.name for a in filtered), matched, strict=False))
        chosen = [
            [a.name, a.version]
            for a in active
            if sampling.decide(
                r.trace_id,
                a.name,
                active=True,
                filter_matched=passes.get(a.name),
                sample_rate=a.sample_rate,
                finished=finished,
            )
            is sampling.Decision.EVALUATE
        ]
        if chosen:
            requests.append(
                {
                    "id": None,
                    "trace_id": r.trace_id,
                    "experiment_id": experiment_id,
                    "scorers": chosen,
                    "count": len(chosen),
                    "enqueued_ms": now,
                }
            )
    return requests
