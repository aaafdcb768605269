"""OTLP spans acknowledged but not yet assembled into a trace (the ``pending_spans`` table).

A trace's spans may arrive in several requests, children usually before their root.
Each request's spans are committed here before the request is acknowledged, so a crash
of the receiver loses nothing it acknowledged. A trace is assembled from its rows when
its root span is among them, or once no span of it arrived for the grace period; the
trace is written and its rows deleted in one transaction, so a trace is never written
twice nor lost between the two.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from localscorers import _clock
from localscorers.models import Span
from localscorers.store import rows, schema

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from localscorers.store.database import Database
    from localscorers.store.rows import TraceRecord
    from localscorers.store.traces import TraceStore

__all__ = ["AddResult", "PendingSpan", "PendingSpans"]


@dataclass(frozen=True)
class PendingSpan:
    """One received span, mapped, waiting for the rest of its trace."""

    trace_id: str
    experiment_id: str
    span: Span
    resource: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AddResult:
    """What :meth:`PendingSpans.add` did."""

    #: Traces that now have their root span pending: ready to assemble.
    rooted: list[str]
    #: Spans added to traces already written (they arrived after their trace's commit).
    appended: int
    #: Spans ignored because they were already stored (a client's retry).
    duplicates: int


class PendingSpans:
    """The durable buffer between receiving spans and writing their trace.

    Args:
        db: the database.
        traces: where assembled traces are written (with their online evaluations).
    """

    def __init__(self, db: Database, traces: TraceStore) -> None:
        self._db = db
        self._traces = traces

    def add(self, spans: Sequence[PendingSpan]) -> AddResult:
        """Store received spans in one transaction: once this returns, they are durable.

        A span of a trace already written is added to that trace's spans (it arrived
        after the trace was assembled); a span already stored is ignored.
        """
        if not spans:
            return AddResult(rooted=[], appended=0, duplicates=0)
        now = _clock.now_ms()
        trace_ids = sorted({s.trace_id for s in spans})
        with self._db.write() as conn:
            written = _existing_traces(conn, trace_ids)
            late = [s for s in spans if s.trace_id in written]
            early = [s for s in spans if s.trace_id not in written]
            appended = _append_late(conn, late)
            known = _pending_keys(conn, sorted({s.trace_id for s in early}))
            new_rows: dict[tuple[str, str], dict[str, Any]] = {}
            for s in early:
                key = (s.trace_id, s.span.span_id)
                if key not in known:
                    new_rows[key] = _pending_row(s, now)
            if new_rows:
                conn.execute(sa.insert(schema.pending_spans), list(new_rows.values()))
            rooted = _rooted(conn, sorted({s.trace_id for s in early}))
        return AddResult(
            rooted=rooted,
            appended=appended,
            duplicates=len(spans) - appended - len(new_rows),
        )

    def due(self, *, idle_before_ms: int) -> list[str]:
        """Return the traces ready to assemble, oldest first.

        Args:
            idle_before_ms: a trace with no root span pending is due once its newest
                span arrived before this time (the grace period has passed).
        """
        p = schema.pending_spans
        newest = sa.func.max(p.c.received_ms)
        query = (
            sa.select(p.c.trace_id)
            .group_by(p.c.trace_id)
            .having(
                sa.or_(sa.func.max(sa.cast(p.c.is_root, sa.Integer)) == 1, newest < idle_before_ms)
            )
            .order_by(sa.func.min(p.c.received_ms), p.c.trace_id)
        )
        with self._db.read() as conn:
            return list(conn.execute(query).scalars())

    def commit(
        self,
        trace_ids: Sequence[str],
        build: Callable[[list[PendingSpan]], TraceRecord],
    ) -> list[str]:
        """Assemble and write traces, deleting their pending spans in the same transaction.

        Args:
            trace_ids: the traces to assemble (a trace another process assembled
                meanwhile has no pending spans left and is skipped).
            build: makes the trace record from a trace's pending spans.

        Returns:
            The ids of the traces written.
        """
        if not trace_ids:
            return []
        written: list[str] = []
        enqueued = 0
        with self._db.write() as conn:
            for chunk in rows.in_chunks(list(trace_ids)):
                groups = _load(conn, chunk)
                existing = _existing_traces(conn, list(groups))
                records = [build(spans) for tid, spans in groups.items() if tid not in existing]
                _append_late(conn, [s for tid in existing for s in groups[tid]])
                # Nested: joins this transaction, so the trace, its online evaluations
                # and the deletion below commit together.
                enqueued += self._traces.write_traces(records)
                p = schema.pending_spans
                conn.execute(sa.delete(p).where(p.c.trace_id.in_(list(groups))))
                written.extend(r.trace_id for r in records)
        # write_traces told the monitor before our commit; tell it again now it can see them.
        if enqueued and self._traces.on_enqueued is not None:
            self._traces.on_enqueued(enqueued)
        return written


def _pending_row(s: PendingSpan, now: int) -> dict[str, Any]:
    return {
        "trace_id": s.trace_id,
        "span_id": s.span.span_id,
        "experiment_id": s.experiment_id,
        "is_root": s.span.parent_id is None,
        "start_time_ns": s.span.start_time_ns,
        "received_ms": now,
        "payload": {"span": s.span.model_dump(mode="json"), "resource": s.resource},
    }


def _existing_traces(conn: Connection, trace_ids: Sequence[str]) -> set[str]:
    t = schema.traces
    found: set[str] = set()
    for chunk in rows.in_chunks(list(trace_ids)):
        found.update(conn.execute(sa.select(t.c.trace_id).where(t.c.trace_id.in_(chunk))).scalars())
    return found


def _pending_keys(conn: Connection, trace_ids: Sequence[str]) -> set[tuple[str, str]]:
    p = schema.pending_spans
    found: set[tuple[str, str]] = set()
    for chunk in rows.in_chunks(list(trace_ids)):
        query = sa.select(p.c.trace_id, p.c.span_id).where(p.c.trace_id.in_(chunk))
        found.update((r[0], r[1]) for r in conn.execute(query))
    return found


def _rooted(conn: Connection, trace_ids: Sequence[str]) -> list[str]:
    p = schema.pending_spans
    found: list[str] = []
    for chunk in rows.in_chunks(list(trace_ids)):
        query = (
            sa.select(p.c.trace_id).where(p.c.trace_id.in_(chunk), p.c.is_root.is_(True)).distinct()
        )
        found.extend(conn.execute(query).scalars())
    return sorted(found)


def _append_late(conn: Connection, spans: Sequence[PendingSpan]) -> int:
    """Add spans to traces already written, skipping span ids those traces already hold."""
    if not spans:
        return 0
    s = schema.spans
    have: set[tuple[str, str]] = set()
    for chunk in rows.in_chunks(sorted({p.trace_id for p in spans})):
        query = sa.select(s.c.trace_id, s.c.span_id).where(s.c.trace_id.in_(chunk))
        have.update((r[0], r[1]) for r in conn.execute(query))
    new = {
        (p.trace_id, p.span.span_id): rows.span_row(p.trace_id, p.span)
        for p in spans
        if (p.trace_id, p.span.span_id) not in have
    }
    rows.insert_rows(conn, schema.spans, list(new.values()))
    return len(new)


def _load(conn: Connection, trace_ids: Sequence[str]) -> dict[str, list[PendingSpan]]:
    p = schema.pending_spans
    query = (
        sa.select(p.c.trace_id, p.c.experiment_id, p.c.payload)
        .where(p.c.trace_id.in_(list(trace_ids)))
        .order_by(p.c.trace_id, p.c.start_time_ns, p.c.span_id)
    )
    groups: dict[str, list[PendingSpan]] = {}
    for trace_id, experiment_id, payload in conn.execute(query):
        groups.setdefault(trace_id, []).append(
            PendingSpan(
                trace_id=trace_id,
                experiment_id=experiment_id,
                span=Span.model_validate(payload["span"]),
                resource=dict(payload.get("resource") or {}),
            )
        )
    return groups
