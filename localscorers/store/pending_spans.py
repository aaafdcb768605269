"""OTLP spans acknowledged but not yet assembled into a trace (the ``pending_spans`` table).

A trace's spans may arrive in several requests, children usually before their root.
Each request is stored in one transaction before it is acknowledged, so a crash of the
receiver loses nothing it acknowledged: a trace whose root span is in the request is
written whole (with its spans that were waiting here, which are deleted), the other
spans wait here. A trace whose root never comes is assembled from its rows once no span
of it arrived for the grace period, written and its rows deleted in one transaction, so
a trace is never written twice nor lost between the two.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from localscorers import _clock
from localscorers.models import Span
from localscorers.store import rows, schema

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from localscorers.store.database import Database
    from localscorers.store.interface import Traces
    from localscorers.store.rows import TraceRecord

__all__ = ["PendingSpan", "PendingSpans", "Received"]


@dataclass(frozen=True)
class PendingSpan:
    """One received span, mapped, waiting for the rest of its trace."""

    trace_id: str
    experiment_id: str
    span: Span
    resource: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Received:
    """What :meth:`PendingSpans.receive` did with a batch of spans."""

    #: Traces written now: their root span was in the batch.
    written: list[str]
    #: Spans stored to wait for their trace's root span.
    pending: int
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

    def __init__(self, db: Database, traces: Traces) -> None:
        self._db = db
        self._traces = traces

    def receive(
        self, spans: Sequence[PendingSpan], build: Callable[[list[PendingSpan]], TraceRecord]
    ) -> Received:
        """Store a batch of received spans in one transaction: once this returns, it is durable.

        A trace whose root span is in the batch is written now, with the spans of it that
        were waiting (and its online evaluations); the other spans wait in the table. A
        span of a trace already written is added to that trace's spans; a span already
        stored is ignored.

        Args:
            spans: the batch.
            build: makes a trace record from a whole trace's spans.
        """
        if not spans:
            return Received(written=[], pending=0, appended=0, duplicates=0)
        now = _clock.now_ms()
        with self._db.write() as conn:
            existing = _existing_traces(conn, sorted({s.trace_id for s in spans}))
            appended = _append_late(conn, [s for s in spans if s.trace_id in existing])
            early = _unique(s for s in spans if s.trace_id not in existing)
            rooted = {s.trace_id for s in early if s.span.parent_id is None}
            waiting = _load(conn, sorted(rooted))
            whole: dict[str, list[PendingSpan]] = {t: list(waiting.get(t, ())) for t in rooted}
            for s in early:
                if s.trace_id in rooted:
                    whole[s.trace_id].append(s)
            whole = {t: _unique(group) for t, group in sorted(whole.items())}
            records = [build(group) for group in whole.values()]
            enqueued = self._traces.write_traces(records)  # joins this transaction
            _delete(conn, sorted(waiting))
            known = _pending_keys(conn, sorted({s.trace_id for s in early} - rooted))
            new_rows = [
                _pending_row(s, now)
                for s in early
                if s.trace_id not in rooted and (s.trace_id, s.span.span_id) not in known
            ]
            if new_rows:
                conn.execute(sa.insert(schema.pending_spans), new_rows)
        self._notify(enqueued)
        # Spans of the batch now in a written trace (a waiting copy wins over a repeat).
        stored = sum(len(whole[t]) - len(waiting.get(t, ())) for t in whole)
        return Received(
            written=[r.trace_id for r in records],
            pending=len(new_rows),
            appended=appended,
            duplicates=len(spans) - appended - stored - len(new_rows),
        )

    def _notify(self, enqueued: int) -> None:
        # write_traces told the monitor before our commit; tell it again now it can see them.
        if enqueued and self._traces.on_enqueued is not None:
            self._traces.on_enqueued(enqueued)

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
                _delete(conn, list(groups))
                written.extend(r.trace_id for r in records)
        self._notify(enqueued)
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


def _unique(spans: Iterable[PendingSpan]) -> list[PendingSpan]:
    """The spans without repeats of one (trace, span id): the first one stays."""
    seen: dict[tuple[str, str], PendingSpan] = {}
    for s in spans:
        seen.setdefault((s.trace_id, s.span.span_id), s)
    return list(seen.values())


def _delete(conn: Connection, trace_ids: Sequence[str]) -> None:
    p = schema.pending_spans
    for chunk in rows.in_chunks(list(trace_ids)):
        conn.execute(sa.delete(p).where(p.c.trace_id.in_(chunk)))


def _append_late(conn: Connection, spans: Sequence[PendingSpan]) -> int:
    """Add spans to traces already written, skipping span ids those traces already hold."""
    if not spans:
        return 0
    s, t = schema.spans, schema.traces
    have: set[tuple[str, str]] = set()
    for chunk in rows.in_chunks(sorted({p.trace_id for p in spans})):
        query = sa.select(s.c.trace_id, s.c.span_id).where(s.c.trace_id.in_(chunk))
        have.update((r[0], r[1]) for r in conn.execute(query))
        # A root kept in its trace row (traces.root_span_id) is held too.
        roots = sa.select(t.c.trace_id, t.c.root_span_id).where(
            t.c.trace_id.in_(chunk), t.c.root_span_id.is_not(None)
        )
        have.update((r[0], r[1]) for r in conn.execute(roots))
    new = {
        (p.trace_id, p.span.span_id): rows.span_row(p.trace_id, p.span)
        for p in spans
        if (p.trace_id, p.span.span_id) not in have
    }
    rows.insert_rows(conn, schema.spans, list(new.values()))
    return len(new)


def _load(conn: Connection, trace_ids: Sequence[str]) -> dict[str, list[PendingSpan]]:
    p = schema.pending_spans
    groups: dict[str, list[PendingSpan]] = {}
    for chunk in rows.in_chunks(list(trace_ids)):
        query = (
            sa.select(p.c.trace_id, p.c.experiment_id, p.c.payload)
            .where(p.c.trace_id.in_(chunk))
            .order_by(p.c.trace_id, p.c.start_time_ns, p.c.span_id)
        )
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
