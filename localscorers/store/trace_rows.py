"""The rows a trace commit inserts: built before the write lock, sent in it.

A trace, its tags, metadata and spans become dicts here, their JSON columns encoded,
then one statement per table inside the write transaction. On a thread's own SQLite
write connection the statements go straight to a driver cursor kept open (the hot
path of ``log_trace`` and ``@trace``; issue 16).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from localscorers.models import Span
from localscorers.store import bulk, codec, schema, sqlite
from localscorers.store.rows import (
    TraceRecord,
    assessment_row,
    insert_encoded,
    insert_rows,
    span_row,
)

if TYPE_CHECKING:
    import sqlalchemy as sa
    from sqlalchemy.engine import Connection

__all__ = ["TraceRows", "synthesized_root"]


# SQLite's INSERT text and the row-to-parameters getter, per table (the cursor path).
_SQLITE_INSERTS: dict[str, tuple[str, Callable[[dict[str, Any]], tuple[Any, ...]]]] = {}


def _sqlite_insert(
    conn: Connection, table: sa.Table
) -> tuple[str, Callable[[dict[str, Any]], tuple[Any, ...]]]:
    found = _SQLITE_INSERTS.get(table.name)
    if found is None:
        statement = bulk.compiled_insert(conn, table)
        keys = statement.keys
        # Every row carries every column: bind them in the statement's order, in C.
        getter = operator.itemgetter(*keys)
        bind = getter if len(keys) > 1 else (lambda row: (getter(row),))
        found = _SQLITE_INSERTS[table.name] = (statement.sql, bind)
    return found


def _json(value: object) -> str | None:
    return None if value is None else codec.dumps(value)


@dataclass
class TraceRows:
    """The rows of some traces, JSON-encoded, ready to insert but for their timestamps."""

    traces: Sequence[dict[str, Any]]
    tags: list[dict[str, Any]]
    metadata: list[dict[str, Any]]
    spans: Sequence[dict[str, Any]]

    @classmethod
    def of(cls, records: Sequence[TraceRecord]) -> TraceRows:
        """Build and JSON-encode the rows of these traces (before any lock is taken).

        The JSON columns are encoded by name, not by :func:`encode_json`'s walk over
        every column: this runs once per trace on the application's thread.
        """
        traces: list[dict[str, Any]] = []
        tags: list[dict[str, Any]] = []
        metadata: list[dict[str, Any]] = []
        spans: list[dict[str, Any]] = []
        for r in records:
            root_id = r.root_span_id
            if root_id is None and r.spans:
                root = synthesized_root(r)
                if root is not None:
                    root_id = root.span_id
                else:
                    spans.extend(span_row(r.trace_id, s, encoded=True) for s in r.spans)
            traces.append(
                {
                    "trace_id": r.trace_id,
                    "experiment_id": r.experiment_id,
                    "name": r.name,
                    "status": r.status.value,
                    "request_time_ms": r.request_time_ms,
                    "execution_duration_ms": r.execution_duration_ms,
                    "inputs": _json(r.inputs),
                    "outputs": _json(r.outputs),
                    "ingested_ms": None,
                    "client_request_id": r.client_request_id,
                    "root_span_id": root_id,
                }
            )
            if r.tags:
                tags.extend(
                    {"trace_id": r.trace_id, "key": k, "value": v} for k, v in r.tags.items()
                )
            if r.metadata:
                metadata.extend(
                    {"trace_id": r.trace_id, "key": k, "value": v} for k, v in r.metadata.items()
                )
        return cls(traces, tags, metadata, spans)

    def insert(
        self,
        conn: Connection,
        records: Sequence[TraceRecord],
        now: int,
        *,
        cursor: Any = None,  # noqa: ANN401 - a DBAPI cursor
    ) -> None:
        """Insert the rows, stamped ``now``, with the records' assessments (if any).

        Args:
            conn: the open write transaction.
            records: the records the rows were built from.
            now: the commit's time (``ingested_ms``).
            cursor: a SQLite driver cursor on ``conn``'s connection (its thread's own
                write connection), kept open across transactions: the statements go
                straight to it, without a cursor per statement (the hot path).
        """
        for row in self.traces:
            row["ingested_ms"] = now
        for table, table_rows in (
            (schema.traces, self.traces),
            (schema.trace_tags, self.tags),
            (schema.trace_metadata, self.metadata),
            (schema.spans, self.spans),
        ):
            if not table_rows:
                continue
            if cursor is None:
                insert_encoded(conn, table, table_rows)
            else:
                sql, bind = _sqlite_insert(conn, table)
                sqlite.execute_many(cursor, sql, [bind(row) for row in table_rows])
        assessments = [
            assessment_row(a, trace_id=r.trace_id, origin=a.origin or "import", now_ms=now)
            for r in records
            for a in r.assessments
        ]
        if assessments:
            insert_rows(conn, schema.assessments, assessments)


def synthesized_root(record: TraceRecord) -> Span | None:
    """Return the record's only span when the trace row alone can say all it holds.

    That is the root ``log_trace`` makes when given no spans: no parent, type,
    message, attributes or events; the trace's name, status and times; the very
    inputs and outputs of the trace. Such a span is stored as ``traces.root_span_id``
    and read back with :func:`root_span` (half the pages of a trace commit; issue 16).
    """
    if len(record.spans) != 1 or record.name is None:
        return None
    span = record.spans[0]
    start_ns = record.request_time_ms * 1_000_000
    duration = record.execution_duration_ms
    end_ns = None if duration is None else start_ns + duration * 1_000_000
    same = (
        span.parent_id is None
        and span.span_type is None
        and span.status_message is None
        and not span.attributes
        and not span.events
        and span.name == record.name
        and span.status == record.status
        and span.start_time_ns == start_ns
        and span.end_time_ns == end_ns
        and span.inputs is record.inputs  # the same objects: equal values may encode apart
        and span.outputs is record.outputs
    )
    return span if same else None
