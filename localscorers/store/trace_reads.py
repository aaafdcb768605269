"""Whole traces read back: a page of ids to ``Trace`` models, a few queries a chunk.

Loading a page's 100 traces decided a search page's latency once the filter's own
query took a few milliseconds (issue 16: 12-25 ms of a 15-40 ms page at 100k traces).
So each table is read with one compile-once statement for the whole chunk of ids,
straight from the driver's cursor (no SQLAlchemy row processing), only the columns a
model needs; JSON columns are decoded by :func:`codec.loads_column`; and the models
are built from the values as they are, without validation: every row was validated
as a model when it was written (``Span``, ``Feedback``...) and the store wrote it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel

from localscorers import _clock
from localscorers.models import (
    AssessmentError,
    AssessmentSource,
    AssessmentSourceType,
    Expectation,
    Feedback,
    Span,
    SpanStatus,
    Trace,
    TraceData,
    TraceInfo,
    TraceStatus,
)
from localscorers.store import bulk, codec, schema
from localscorers.store.rows import in_chunks

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

__all__ = ["load_traces"]

_M = TypeVar("_M", bound=BaseModel)
_new_slot = object.__setattr__

# Statuses as the validated models hold them: TraceStatus first, as Span.status's
# left-to-right union picks it, and SpanStatus.UNSET.
_SPAN_STATUS: dict[str, TraceStatus | SpanStatus] = {
    **{s.value: s for s in SpanStatus},
    **{s.value: s for s in TraceStatus},
}
_TRACE_STATUS = {s.value: s for s in TraceStatus}
_SOURCE_TYPE = {s.value: s for s in AssessmentSourceType}

# The fields each converter passes, as ``model_fields_set`` of the validated model was.
_SPAN_FIELDS = frozenset(Span.model_fields)
_ROOT_SPAN_FIELDS = frozenset(
    ("span_id", "name", "status", "start_time_ns", "end_time_ns", "inputs", "outputs")
)
_EXPECTATION_FIELDS = frozenset(Expectation.model_fields)
_FEEDBACK_FIELDS = frozenset(Feedback.model_fields)
_SOURCE_FIELDS = frozenset(AssessmentSource.model_fields)
_INFO_FIELDS = frozenset(TraceInfo.model_fields)
_DATA_FIELDS = frozenset(TraceData.model_fields)
_TRACE_FIELDS = frozenset(Trace.model_fields)

# Size classes of the id lists: a statement is compiled once per table and class (the
# last id repeats to fill one), not once per page size.
_SIZES = (1, 4, 16, 32, 64, 128, 256, 512)


def _trusted(cls: type[_M], values: dict[str, Any], fields: frozenset[str]) -> _M:
    """A model of values the store itself validated, built as ``model_construct`` does.

    ``model_construct`` itself walks every field and its aliases in Python: slower than
    validating (6.3 against 4.6 us a span); this is 1.6 us. ``values`` holds every field
    in the order the model declares them (repr and iteration follow it), and ``fields``
    the names the validated model would count as set. tests/store/test_trace_reads.py
    compares both ways field by field. A fresh instance is filled here, never a model
    after it was built (STYLE rule 5 is about those).
    """
    model = cls.__new__(cls)
    _new_slot(model, "__dict__", values)
    _new_slot(model, "__pydantic_fields_set__", set(fields))
    _new_slot(model, "__pydantic_extra__", None)
    _new_slot(model, "__pydantic_private__", None)
    return model


def load_traces(conn: Connection, trace_ids: Sequence[str]) -> list[Trace]:
    """Load whole traces by id, in the given order (ids not found are left out).

    Raises:
        sqlalchemy.exc.DBAPIError: the driver failed, as SQLAlchemy would raise it.
    """
    result: list[Trace] = []
    for chunk in in_chunks(trace_ids):
        result.extend(_load_chunk(conn, chunk))
    return result


def _statement(conn: Connection, table: str, size: int) -> bulk.CompiledStatement:
    return bulk.compiled_select(conn, f"trace_reads:{table}:{size}", lambda: _build(table, size))


# The columns each read takes, in the order the converters unpack them, and its order.
_COLUMNS: dict[str, tuple[sa.Table, tuple[str, ...], tuple[str, ...]]] = {
    "traces": (
        schema.traces,
        ("trace_id", "experiment_id", "name", "status", "request_time_ms",
         "execution_duration_ms", "inputs", "outputs", "client_request_id", "root_span_id"),
        (),
    ),
    "spans": (
        schema.spans,
        ("trace_id", "span_id", "parent_id", "name", "span_type", "status", "status_message",
         "start_time_ns", "end_time_ns", "inputs", "outputs", "attributes", "events"),
        ("start_time_ns", "span_id"),
    ),
    "assessments": (
        schema.assessments,
        ("trace_id", "kind", "name", "value", "rationale", "meta", "source_type", "source_id",
         "assessment_id", "created_ms", "scorer_name", "scorer_version", "origin", "valid",
         "overrides", "error"),
        ("created_ms", "assessment_id"),
    ),
    "tags": (schema.trace_tags, ("trace_id", "key", "value"), ("key",)),
    "metadata": (schema.trace_metadata, ("trace_id", "key", "value"), ("key",)),
}  # fmt: skip


def _build(table: str, size: int) -> sa.Select[Any]:
    found, columns, order = _COLUMNS[table]
    ids: list[sa.BindParameter[str]] = [sa.bindparam(f"id{i}") for i in range(size)]
    return (
        sa.select(*(found.c[name] for name in columns))
        .where(found.c.trace_id.in_(ids))
        .order_by(*(found.c[name] for name in order))
    )


def _fetch(conn: Connection, table: str, ids: Sequence[str]) -> list[Any]:
    size = next(s for s in _SIZES if s >= len(ids))
    params = {f"id{i}": ids[min(i, len(ids) - 1)] for i in range(size)}
    return _statement(conn, table, size).fetchall(conn, params)


def _load_chunk(conn: Connection, ids: Sequence[str]) -> list[Trace]:
    found = {row[0]: row for row in _fetch(conn, "traces", ids)}
    if not found:
        return []
    tags = _entries(_fetch(conn, "tags", ids))
    metadata = _entries(_fetch(conn, "metadata", ids))
    spans = _spans(_fetch(conn, "spans", ids))
    assessments = _assessments(_fetch(conn, "assessments", ids))
    traces = []
    for trace_id in ids:
        row = found.get(trace_id)
        if row is None:
            continue
        (_, experiment_id, name, status, request_ms, duration, inputs, outputs, client_id,
         root_id) = row  # fmt: skip
        inputs, outputs = codec.loads_column(inputs), codec.loads_column(outputs)
        info = _trusted(TraceInfo, {
            "trace_id": trace_id,
            "experiment_id": experiment_id,
            "request_time": _clock.datetime_from_ms(request_ms),
            "execution_duration_ms": duration,
            "status": _TRACE_STATUS.get(status) or TraceStatus(status),
            "name": name,
            "tags": dict(tags.get(trace_id, ())),
            "metadata": dict(metadata.get(trace_id, ())),
            "assessments": list(assessments.get(trace_id, ())),
            "client_request_id": client_id,
        }, _INFO_FIELDS)  # fmt: skip
        trace_spans = list(spans.get(trace_id, ()))
        if root_id is not None:  # the root span is stored in the trace row
            trace_spans.insert(0, _root_span(row, inputs, outputs))
        data = _trusted(
            TraceData, {"spans": trace_spans, "request": inputs, "response": outputs}, _DATA_FIELDS
        )
        traces.append(_trusted(Trace, {"info": info, "data": data}, _TRACE_FIELDS))
    return traces


def _entries(found: list[Any]) -> dict[str, list[tuple[str, str]]]:
    grouped: dict[str, list[tuple[str, str]]] = {}
    for trace_id, key, value in found:
        grouped.setdefault(trace_id, []).append((key, value))
    return grouped


def _root_span(row: Sequence[Any], inputs: object, outputs: object) -> Span:
    """The root span a ``traces`` row with ``root_span_id`` stands for (``rows.root_span``)."""
    start_ns = row[4] * 1_000_000
    duration = row[5]
    return _trusted(Span, {
        "span_id": row[9],
        "parent_id": None,
        "name": row[2],
        "span_type": None,
        "status": _SPAN_STATUS.get(row[3]) or TraceStatus(row[3]),
        "status_message": None,
        "start_time_ns": start_ns,
        "end_time_ns": None if duration is None else start_ns + duration * 1_000_000,
        "inputs": inputs,
        "outputs": outputs,
        "attributes": {},
        "events": [],
    }, _ROOT_SPAN_FIELDS)  # fmt: skip


def _spans(found: list[Any]) -> dict[str, list[Span]]:
    loads = codec.loads_column
    spans: dict[str, list[Span]] = {}
    for (trace_id, span_id, parent_id, name, span_type, status, message, start_ns, end_ns,
         inputs, outputs, attributes, events) in found:  # fmt: skip
        span = _trusted(Span, {
            "span_id": span_id,
            "parent_id": parent_id,
            "name": name,
            "span_type": span_type,
            "status": _SPAN_STATUS.get(status) or TraceStatus(status),
            "status_message": message,
            "start_time_ns": start_ns,
            "end_time_ns": end_ns,
            "inputs": loads(inputs),
            "outputs": loads(outputs),
            "attributes": loads(attributes) or {},
            "events": loads(events) or [],
        }, _SPAN_FIELDS)  # fmt: skip
        spans.setdefault(trace_id, []).append(span)
    return spans


def _assessments(found: list[Any]) -> dict[str, list[Feedback | Expectation]]:
    loads = codec.loads_column
    grouped: dict[str, list[Feedback | Expectation]] = {}
    for (trace_id, kind, name, value, rationale, meta, source_type, source_id, assessment_id,
         created_ms, scorer_name, scorer_version, origin, valid, overrides,
         error) in found:  # fmt: skip
        source = _trusted(AssessmentSource, {
            "source_type": _SOURCE_TYPE.get(source_type) or AssessmentSourceType(source_type),
            "source_id": source_id,
        }, _SOURCE_FIELDS)  # fmt: skip
        values = {
            "name": name,
            "value": loads(value),
            "rationale": rationale,
            "metadata": loads(meta),
            "source": source,
            "assessment_id": assessment_id,
            "trace_id": trace_id,
            "create_time": _clock.datetime_from_ms(created_ms),
            "scorer_name": scorer_name,
            "scorer_version": scorer_version,
            "origin": origin,
            "valid": bool(valid),
            "overrides": overrides,
        }
        assessment: Feedback | Expectation
        if kind == "EXPECTATION":
            assessment = _trusted(Expectation, values, _EXPECTATION_FIELDS)
        else:
            # Rare, and a dict: validated as it always was.
            detail = loads(error)
            values["error"] = AssessmentError(**detail) if detail else None
            assessment = _trusted(Feedback, values, _FEEDBACK_FIELDS)
        grouped.setdefault(trace_id, []).append(assessment)
    return grouped
