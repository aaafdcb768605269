"""Compile filter ASTs (``filters``) into SQLAlchemy boolean expressions over ``traces``.

Every comparison yields a definite true or false, never SQL NULL: a comparison on
a missing value (a trace without a name, a tag that is not there) is false, so
``NOT`` always means "the opposite" and ``NOT trace.name = 'a'`` holds for a trace
without a name. Filter text only ever reaches SQL as bound parameters: keys and
values become ``BindParameter`` objects, never SQL text.

Spans: the span comparisons joined by ``AND`` (at one level, or through nested
``AND``) must hold on one and the same span, as in MLflow, which compiles all the span
clauses of a filter into one subquery: ``span.name = 'search' AND span.status = 'OK'``
wants a span named search that is OK. A span comparison alone, or under ``OR`` or
``NOT``, holds when any span matches it, and ``NOT`` negates that: ``NOT span.status =
'OK'`` means "no span is OK". So ``(span.name = 'a' OR span.type = 'LLM')`` is "some
span is named a or is an LLM span", which is the same as either reading.

Feedback: ``feedback.<name>`` also matches feedback on another trace of the same
session that carries ``mlflow.trace.session`` in its metadata (session-level feedback,
as in MLflow), ``IS NULL`` included.

Every span and assessment condition here is a correlated ``EXISTS`` that reads the
trace's own rows through the index that starts with ``trace_id``: the other columns
are wrapped in :class:`~localscorers.store.comparison_sql.Unindexed` so that SQLite
cannot prefer the low-selectivity ``ix_spans_type`` or ``ix_assessments_name_value``
index, which made every trace read every matching span of every other trace (issue 16:
9.9 s for a page at 100k traces). The trace's name, status and duration are Unindexed
too. Searches that need only a few traces start from those indexes instead, once,
through ``search_sql.plan_search`` and ``search_probes``.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Final, assert_never

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from localscorers.exceptions import TraceNotFoundError
from localscorers.filters import (
    And,
    Comparison,
    Entity,
    Expr,
    Not,
    Op,
    Or,
    Scalar,
    Value,
)
from localscorers.store import schema
from localscorers.store.comparison_sql import Unindexed, definite, predicate, uppercased

__all__ = [
    "ASSESSMENT_KINDS",
    "SESSION_KEY",
    "SPAN_ENTITIES",
    "SpanGroup",
    "assessment_predicates",
    "compile_filter",
    "conjuncts",
    "key_value_traces",
    "matches_for_trace",
    "span_traces",
]

_traces = schema.traces
_spans = schema.spans
_assessments = schema.assessments
_metadata = schema.trace_metadata

# The metadata key naming a trace's session; feedback carrying it covers the session.
SESSION_KEY: Final = "mlflow.trace.session"
SPAN_ENTITIES: Final = frozenset({Entity.SPAN, Entity.SPAN_ATTRIBUTE})
# Statuses are stored upper-case; MLflow users write 'OK' but also 'ok'.
_UPPERCASED_OPS: Final = frozenset({Op.EQ, Op.NE, Op.IN, Op.NOT_IN, Op.LIKE})
ASSESSMENT_KINDS: Final = {Entity.FEEDBACK: "FEEDBACK", Entity.EXPECTATION: "EXPECTATION"}
_KEY_VALUE_TABLES: Final = {Entity.TAG: schema.trace_tags, Entity.METADATA: schema.trace_metadata}


def trace_column(key: str) -> sa.ColumnElement[Any]:
    """Return the ``traces`` column (or expression) a ``trace.<key>`` field reads."""
    if key == "end_time_ms":
        return _traces.c.request_time_ms + _traces.c.execution_duration_ms
    columns: dict[str, sa.ColumnElement[Any]] = {
        "status": _traces.c.status,
        "name": _traces.c.name,
        "trace_id": _traces.c.trace_id,
        "experiment_id": _traces.c.experiment_id,
        "timestamp_ms": _traces.c.request_time_ms,
        "execution_time_ms": _traces.c.execution_duration_ms,
        "client_request_id": _traces.c.client_request_id,
    }
    return columns[key]


# Compared as Unindexed: ix_traces_root_name and ix_traces_status_duration serve a
# search only through its candidates (search_probes), when the value is rare; in the
# newest-first scan of a common one they would be a sort of most of the experiment.
_SCANNED_KEYS: Final = frozenset({"name", "status", "execution_time_ms"})


def _trace_condition(key: str, op: Op, value: Value) -> sa.ColumnElement[bool]:
    column = trace_column(key)
    if key in _SCANNED_KEYS:
        column = Unindexed(column)
    if op in (Op.IS_NULL, Op.IS_NOT_NULL):
        return predicate(column, op, None)
    if key == "status" and op in _UPPERCASED_OPS:
        value = uppercased(value)
    return definite(column, predicate(column, op, value))


def key_value_traces(table: sa.Table, key: str, op: Op, value: Value) -> sa.Select[Any]:
    """The ids of traces whose tag / metadata ``key`` satisfies ``op value`` (index-first)."""
    matching = sa.select(table.c.trace_id).where(table.c.key == key)
    if op not in (Op.IS_NULL, Op.IS_NOT_NULL):
        matching = matching.where(predicate(table.c.value, op, value))
    return matching


def _key_value_condition(
    table: sa.Table, key: str, op: Op, value: Value, *, correlated: bool
) -> sa.ColumnElement[bool]:
    """Tags and metadata: ``IS NULL`` means "no such key"; everything else needs the key.

    Searching many traces, ``trace_id IN (SELECT ... WHERE key = ? AND value ...)`` lets
    the database start from the (key, value) index, which suits rare values; for common
    ones, and evaluated per row of a few traces (the commit-time check, a backfill
    page), the correlated EXISTS is the cheap form: it never reads other traces'
    entries (its (trace_id, key) primary key is unique, so SQLite always prefers it).
    ``search_sql.plan_search`` picks per comparison.
    """
    if not correlated:
        matching = key_value_traces(table, key, Op.IS_NOT_NULL if op is Op.IS_NULL else op, value)
        if op is Op.IS_NULL:
            return _traces.c.trace_id.not_in(matching)
        return _traces.c.trace_id.in_(matching)
    entry = (
        sa.select(sa.literal(1))
        .where(table.c.trace_id == _traces.c.trace_id, table.c.key == key)
        .correlate(_traces)
    )
    if op is Op.IS_NULL:
        return ~entry.exists()
    if op is Op.IS_NOT_NULL:
        return entry.exists()
    return entry.where(predicate(table.c.value, op, value)).exists()


def _span_attribute(key: str) -> sa.ColumnElement[Any]:
    """The attribute's value as text: strings as-is, numbers as digits, objects as JSON.

    SQLite's JSON_EXTRACT turns JSON true / false into 1 / 0, so a boolean attribute
    reads as '1' / '0' there (PostgreSQL's ``->>`` gives 'true' / 'false').
    """
    # SQLAlchemy builds the SQLite path '$."<key>"', and SQLite (3.40) compares that
    # label with the key as written in the stored JSON text, where '\\' and control
    # characters are escaped: escape the key the same way (ensure_ascii=False, as
    # codec.dumps writes it). The parser refuses keys holding '"', which no SQLite path
    # label can express. PostgreSQL's ->> takes the raw key; move this to a dialect then.
    json_key = json.dumps(key, ensure_ascii=False)[1:-1]
    value: sa.ColumnElement[Any] = _spans.c.attributes[json_key].as_string()
    return value


@dataclass(frozen=True, slots=True)
class SpanGroup:
    """Span comparisons that must all hold on one span (those joined by ``AND``)."""

    comparisons: tuple[Comparison, ...]


def _span_column(name: str, *, indexed: bool) -> sa.ColumnElement[Any]:
    column: sa.ColumnElement[Any] = _spans.c[name]
    return column if indexed else Unindexed(column)


def _span_predicate(comparison: Comparison, *, indexed: bool) -> sa.ColumnElement[bool]:
    """One comparison on one span row (``indexed``: name and type may use their index)."""
    field, op, value = comparison.field, comparison.op, comparison.value
    if field.entity is Entity.SPAN_ATTRIBUTE:
        return predicate(_span_attribute(field.key), op, value)
    if field.key == "content":
        # MLflow's span content is the whole span: its name and type are text too.
        texts = [_span_column("name", indexed=indexed), _span_column("span_type", indexed=indexed)]
        texts += [sa.cast(_spans.c[n], sa.Text) for n in ("inputs", "outputs", "attributes")]
        return sa.or_(*(predicate(text, op, value) for text in texts))
    column = _span_column({"type": "span_type"}.get(field.key, field.key), indexed=indexed)
    if field.key == "status" and op in _UPPERCASED_OPS:
        value = uppercased(value)
    return predicate(column, op, value)


def _root_predicate(comparison: Comparison) -> sa.ColumnElement[bool] | None:
    """One comparison on a root span kept in its trace row (``traces.root_span_id``).

    Such a root has the trace's name, status, inputs and outputs, and no type or
    attributes. None: the comparison can never hold on it.
    """
    field, op, value = comparison.field, comparison.op, comparison.value
    if field.entity is Entity.SPAN_ATTRIBUTE or field.key == "type":
        # A NULL column: only IS NULL holds (as on a spans row without a type).
        return sa.true() if op is Op.IS_NULL else None
    if field.key == "content":
        texts = [
            _traces.c.name,
            sa.cast(_traces.c.inputs, sa.Text),
            sa.cast(_traces.c.outputs, sa.Text),
            sa.literal("{}"),  # its attributes, as a spans row stores none
        ]
        return sa.or_(*(predicate(text, op, value) for text in texts))
    if field.key == "status" and op in _UPPERCASED_OPS:
        value = uppercased(value)
    column = _traces.c.status if field.key == "status" else _traces.c.name
    return predicate(column, op, value)


def _root_condition(group: SpanGroup) -> sa.ColumnElement[bool] | None:
    """The group on the trace's root kept in its row, or None when it cannot hold there."""
    predicates = [_root_predicate(c) for c in group.comparisons]
    if any(p is None for p in predicates):
        return None
    return sa.and_(_traces.c.root_span_id.is_not(None), *(p for p in predicates if p is not None))


def span_traces(group: SpanGroup, *, roots: bool = True) -> sa.Select[Any] | sa.CompoundSelect[Any]:
    """The ids of traces with a span satisfying the whole group, from the span indexes.

    With (``roots``) the traces whose root, kept in the trace row, satisfies it (from
    ``ix_traces_root_name`` for a name, on PostgreSQL; SQLite reads a root's name from
    ``deferred_indexes``).
    """
    predicates = (_span_predicate(c, indexed=True) for c in group.comparisons)
    stored = sa.select(_spans.c.trace_id).where(*predicates)
    root = _root_condition(group) if roots else None
    if root is None:
        return stored
    return sa.union_all(stored, sa.select(_traces.c.trace_id).where(root))


def _span_condition(group: SpanGroup) -> sa.ColumnElement[bool]:
    """True when one span of the trace satisfies every comparison of the group."""
    predicates = (_span_predicate(c, indexed=False) for c in group.comparisons)
    stored = (
        sa.select(sa.literal(1))
        .where(_spans.c.trace_id == _traces.c.trace_id, *predicates)
        .correlate(_traces)
        .exists()
    )
    root = _root_condition(group)
    if root is None:
        return stored
    # COALESCE: a NULL input or output makes a content comparison NULL, never a match.
    return sa.or_(stored, sa.func.coalesce(root, sa.false()))


def _is_number(value: Value) -> bool:
    first: Scalar | None = value[0] if isinstance(value, tuple) else value
    return isinstance(first, int | float)


def assessment_predicates(
    comparison: Comparison, *, indexed: bool = True
) -> list[sa.ColumnElement[bool]]:
    """Valid feedback / expectations of that name (and value); numbers compare ``value_num``."""
    field, op, value = comparison.field, comparison.op, comparison.value
    name: sa.ColumnElement[Any] = _assessments.c.name
    if not indexed:
        name = Unindexed(name)
    predicates = [
        name == field.key,
        _assessments.c.kind == ASSESSMENT_KINDS[field.entity],
        _assessments.c.valid == sa.true(),
    ]
    if op not in (Op.IS_NULL, Op.IS_NOT_NULL):
        column = _assessments.c.value_num if _is_number(value) else _assessments.c.value_str
        predicates.append(predicate(column, op, value))
    return predicates


def _assessment_condition(comparison: Comparison) -> sa.ColumnElement[bool]:
    """A valid matching assessment on the trace, or (feedback) on its session."""
    predicates = assessment_predicates(comparison, indexed=False)
    found: sa.ColumnElement[bool] = (
        sa.select(sa.literal(1))
        .where(_assessments.c.trace_id == _traces.c.trace_id, *predicates)
        .correlate(_traces)
        .exists()
    )
    if comparison.field.entity is Entity.FEEDBACK:
        session = (
            sa.select(sa.literal(1))
            .select_from(_metadata)
            .join(_assessments, _assessments.c.session_id == _metadata.c.value)
            .where(
                _metadata.c.trace_id == _traces.c.trace_id,
                _metadata.c.key == SESSION_KEY,
                *predicates,
            )
            .correlate(_traces)
            .exists()
        )
        found = sa.or_(found, session)
    return ~found if comparison.op is Op.IS_NULL else found


def _compile_comparison(comparison: Comparison, *, correlated: bool) -> sa.ColumnElement[bool]:
    field, op, value = comparison.field, comparison.op, comparison.value
    entity = field.entity
    if entity is Entity.TRACE:
        return _trace_condition(field.key, op, value)
    if entity in _KEY_VALUE_TABLES:
        table = _KEY_VALUE_TABLES[entity]
        return _key_value_condition(table, field.key, op, value, correlated=correlated)
    if entity in SPAN_ENTITIES:
        return _span_condition(SpanGroup((comparison,)))
    return _assessment_condition(comparison)


def _flattened(expr: And) -> list[Expr]:
    operands: list[Expr] = []
    for operand in expr.operands:
        operands.extend(_flattened(operand) if isinstance(operand, And) else [operand])
    return operands


def conjuncts(expr: Expr) -> list[Comparison | SpanGroup | Expr]:
    """Split a filter into what must all hold: its ``AND`` operands, spans grouped.

    The span comparisons among them become one :class:`SpanGroup` (at the position of
    the first), which a single span must satisfy.
    """
    operands = _flattened(expr) if isinstance(expr, And) else [expr]
    spans = tuple(
        o for o in operands if isinstance(o, Comparison) and o.field.entity in SPAN_ENTITIES
    )
    result: list[Comparison | SpanGroup | Expr] = []
    for operand in operands:
        if isinstance(operand, Comparison) and operand.field.entity in SPAN_ENTITIES:
            if operand is spans[0]:
                result.append(SpanGroup(spans))
            continue
        result.append(operand)
    return result


def compile_filter(
    expr: Expr | SpanGroup,
    *,
    correlated: bool = False,
    exists_for: Collection[Comparison] = (),
) -> sa.ColumnElement[bool]:
    """Compile a parsed filter into a boolean SQL expression over ``traces``.

    The result is meant for the WHERE clause (or the columns) of a SELECT whose FROM
    holds ``schema.traces``: span and assessment conditions are ``EXISTS`` subqueries
    correlated to it that read only the trace's own rows; tag and metadata conditions
    are ``IN`` subqueries that start from their (key, value) index, or correlated
    ``EXISTS`` with ``correlated=True``.

    Args:
        expr: an AST from :func:`localscorers.filters.parse` (or a span group).
        correlated: compile for evaluation row by row over a few traces (one trace at
            commit time, a backfill page) rather than for searching many.
        exists_for: tag / metadata comparisons to compile as correlated ``EXISTS``
            anyway (a search for a value many traces have: see ``plan_search``).

    Returns:
        A boolean column expression that is never NULL.

    Raises:
        AssertionError: ``expr`` is not a filter AST (a programming error, not bad input:
            user text is checked by ``parse``).
    """
    if isinstance(expr, SpanGroup):
        return _span_condition(expr)
    if isinstance(expr, Comparison):
        return _compile_comparison(expr, correlated=correlated or expr in exists_for)
    if isinstance(expr, And):
        parts = conjuncts(expr)
        return sa.and_(
            *(compile_filter(o, correlated=correlated, exists_for=exists_for) for o in parts)
        )
    if isinstance(expr, Or):
        return sa.or_(
            *(
                compile_filter(o, correlated=correlated, exists_for=exists_for)
                for o in expr.operands
            )
        )
    if isinstance(expr, Not):
        return sa.not_(compile_filter(expr.operand, correlated=correlated, exists_for=exists_for))
    assert_never(expr)


def matches_for_trace(conn: Connection, trace_id: str, exprs: Sequence[Expr]) -> list[bool]:
    """Evaluate several filters against one trace in a single SELECT.

    Runs ``SELECT <f1>, <f2>, ... FROM traces WHERE trace_id = :id`` on ``conn``, so
    it sees the caller's open transaction (the store calls it while committing the
    trace, to decide which scorers' filters match).

    Args:
        conn: an open connection, usually inside a write transaction.
        trace_id: the trace to test.
        exprs: parsed filters.

    Returns:
        One bool per filter, in order.

    Raises:
        TraceNotFoundError: no trace has that id.
    """
    if not exprs:
        return []
    columns = [
        sa.case((compile_filter(expr, correlated=True), 1), else_=0).label(f"f{i}")
        for i, expr in enumerate(exprs)
    ]
    query = sa.select(*columns).select_from(_traces).where(_traces.c.trace_id == trace_id)
    row = conn.execute(query).one_or_none()
    if row is None:
        raise TraceNotFoundError(
            f"No trace has id {trace_id!r}, so no filter can be tested against it. "
            "Check the id, or log the trace before testing filters."
        )
    return [bool(value) for value in row]
