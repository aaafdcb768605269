"""Compile filter ASTs (``filters``) into SQLAlchemy boolean expressions over ``_tables``.

Every comparison yields a definite true or false, never SQL NULL: a comparison on
a missing value (a trace without a name, a tag that is not there) is false, so
``NOT`` always means "the opposite" and ``NOT trace.name = 'a'`` holds for a trace
without a name. Spans and assessments are correlated ``EXISTS`` subqueries against
``traces``; tags and metadata are ``IN`` subqueries or correlated ``EXISTS``, whichever
reads fewer rows (``plan_search``). Filter text only ever reaches SQL as bound parameters:
keys and values become ``BindParameter`` objects, never SQL text.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Final, assert_never

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from localscorers.exceptions import ConfigurationError, FilterSyntaxError, TraceNotFoundError
from localscorers.filters.parser import (
    And,
    Comparison,
    Entity,
    Expr,
    Field,
    Not,
    Op,
    Or,
    Scalar,
    Value,
    parse_field,
)
from localscorers.store import schema

__all__ = ["SearchPlan", "compile_filter", "compile_order_by", "matches_for_trace", "plan_search"]

_traces = schema.traces
_spans = schema.spans
_assessments = schema.assessments

# Statuses are stored upper-case; MLflow users write 'OK' but also 'ok'.
_UPPERCASED_OPS: Final = frozenset({Op.EQ, Op.NE, Op.IN, Op.NOT_IN, Op.LIKE})
_ASSESSMENT_KINDS: Final = {Entity.FEEDBACK: "FEEDBACK", Entity.EXPECTATION: "EXPECTATION"}
_KEY_VALUE_TABLES: Final = {Entity.TAG: schema.trace_tags, Entity.METADATA: schema.trace_metadata}
# A required tag/metadata value on at most this many traces drives a search (plan_search).
# Its ids become bound parameters: SQLite before 3.32 allows 999 per statement.
_FEW: Final = 500
_ORDER_RE: Final = re.compile(
    r"\s*(?P<field>.*?)(?:\s+(?P<direction>asc|desc))?\s*", re.IGNORECASE | re.DOTALL
)
_EXPERIMENT_ID_RE: Final = re.compile(r"(?:(?:trace|attributes?)\.)?experiment_id", re.I)
_ORDER_FIELDS: Final = (
    "timestamp_ms, execution_time_ms, end_time_ms, status, name, trace_id, experiment_id, "
    "run_id, tags.<key> or metadata.<key>, optionally followed by ASC or DESC"
)


_Apply = Callable[[sa.ColumnElement[Any], Any], sa.ColumnElement[bool]]
_OPERATIONS: Final[dict[Op, _Apply]] = {
    Op.EQ: operator.eq,
    Op.NE: operator.ne,
    Op.LT: operator.lt,
    Op.LE: operator.le,
    Op.GT: operator.gt,
    Op.GE: operator.ge,
    Op.LIKE: lambda column, value: column.like(value),
    Op.ILIKE: lambda column, value: column.ilike(value),
    # SQLite: REGEXP is registered on every connection by _dialect (Python's re.search).
    Op.RLIKE: lambda column, value: column.regexp_match(value),
    Op.IN: lambda column, values: column.in_(list(values)),
    Op.NOT_IN: lambda column, values: column.not_in(list(values)),
    Op.IS_NULL: lambda column, _: column.is_(None),
    Op.IS_NOT_NULL: lambda column, _: column.is_not(None),
}


def _predicate(column: sa.ColumnElement[Any], op: Op, value: Value) -> sa.ColumnElement[bool]:
    """Apply ``op`` to a column; every value becomes a bound parameter."""
    return _OPERATIONS[op](column, value)


def _upper(value: Value) -> Value:
    if isinstance(value, str):
        return value.upper()
    if isinstance(value, tuple):
        return tuple(v.upper() if isinstance(v, str) else v for v in value)
    return value


def _definite(
    column: sa.ColumnElement[Any], condition: sa.ColumnElement[bool]
) -> sa.ColumnElement[bool]:
    # "x != 'a'" on a NULL x is NULL in SQL; "x IS NOT NULL AND ..." makes it false.
    return sa.and_(column.is_not(None), condition)


def _trace_column(key: str) -> sa.ColumnElement[Any]:
    if key == "end_time_ms":
        return _traces.c.request_time_ms + _traces.c.execution_duration_ms
    columns: dict[str, sa.ColumnElement[Any]] = {
        "status": _traces.c.status,
        "name": _traces.c.name,
        "trace_id": _traces.c.trace_id,
        "experiment_id": _traces.c.experiment_id,
        "timestamp_ms": _traces.c.request_time_ms,
        "execution_time_ms": _traces.c.execution_duration_ms,
    }
    return columns[key]


def _trace_condition(key: str, op: Op, value: Value) -> sa.ColumnElement[bool]:
    column = _trace_column(key)
    if op in (Op.IS_NULL, Op.IS_NOT_NULL):
        return _predicate(column, op, None)
    if key == "status" and op in _UPPERCASED_OPS:
        value = _upper(value)
    return _definite(column, _predicate(column, op, value))


def _key_value_condition(
    table: sa.Table, key: str, op: Op, value: Value, *, correlated: bool
) -> sa.ColumnElement[bool]:
    """Tags and metadata: ``IS NULL`` means "no such key"; everything else needs the key.

    Searching many traces, ``trace_id IN (SELECT ... WHERE key = ? AND value ...)`` lets
    the database start from the (key, value) index, which suits rare values; for common
    ones, and evaluated per row of a few traces (the commit-time check, a backfill
    page), the correlated EXISTS is the cheap form: it never reads other traces'
    entries. ``plan_search`` picks per comparison.
    """
    if not correlated:
        matching = sa.select(table.c.trace_id).where(table.c.key == key)
        if op is Op.IS_NULL:
            return _traces.c.trace_id.not_in(matching)
        if op is not Op.IS_NOT_NULL:
            matching = matching.where(_predicate(table.c.value, op, value))
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
    return entry.where(_predicate(table.c.value, op, value)).exists()


def _span_attribute(key: str) -> sa.ColumnElement[Any]:
    """The attribute's value as text: strings as-is, numbers as digits, objects as JSON.

    SQLite's JSON_EXTRACT turns JSON true / false into 1 / 0, so a boolean attribute
    reads as '1' / '0' there (PostgreSQL's ``->>`` gives 'true' / 'false').
    """
    # SQLAlchemy builds the SQLite path '$."<key>"', and SQLite (3.40) compares that
    # label with the key as written in the stored JSON text, where '\' and control
    # characters are escaped: escape the key the same way (ensure_ascii=False, as
    # _json.dumps writes it). The parser refuses keys holding '"', which no SQLite path
    # label can express. PostgreSQL's ->> takes the raw key; move this to _dialect then.
    json_key = json.dumps(key, ensure_ascii=False)[1:-1]
    value: sa.ColumnElement[Any] = _spans.c.attributes[json_key].as_string()
    return value


def _span_condition(field: Field, op: Op, value: Value) -> sa.ColumnElement[bool]:
    """True when at least one span of the trace matches."""
    if field.entity is Entity.SPAN_ATTRIBUTE:
        condition = _predicate(_span_attribute(field.key), op, value)
    elif field.key == "content":
        texts = (sa.cast(_spans.c[name], sa.Text) for name in ("inputs", "outputs", "attributes"))
        condition = sa.or_(*(_predicate(text, op, value) for text in texts))
    else:
        column = {"name": _spans.c.name, "type": _spans.c.span_type, "status": _spans.c.status}
        if field.key == "status" and op in _UPPERCASED_OPS:
            value = _upper(value)
        condition = _predicate(column[field.key], op, value)
    return (
        sa.select(sa.literal(1))
        .where(_spans.c.trace_id == _traces.c.trace_id, condition)
        .correlate(_traces)
        .exists()
    )


def _is_number(value: Value) -> bool:
    first: Scalar | None = value[0] if isinstance(value, tuple) else value
    return isinstance(first, int | float)


def _assessment_condition(field: Field, op: Op, value: Value) -> sa.ColumnElement[bool]:
    """Valid feedback / expectations of that name; numbers compare ``value_num``."""
    entry = (
        sa.select(sa.literal(1))
        .where(
            _assessments.c.trace_id == _traces.c.trace_id,
            _assessments.c.kind == _ASSESSMENT_KINDS[field.entity],
            _assessments.c.name == field.key,
            _assessments.c.valid == sa.true(),
        )
        .correlate(_traces)
    )
    if op is Op.IS_NULL:
        return ~entry.exists()
    if op is Op.IS_NOT_NULL:
        return entry.exists()
    column = _assessments.c.value_num if _is_number(value) else _assessments.c.value_str
    return entry.where(_predicate(column, op, value)).exists()


def _compile_comparison(comparison: Comparison, *, correlated: bool) -> sa.ColumnElement[bool]:
    field, op, value = comparison.field, comparison.op, comparison.value
    entity = field.entity
    if entity is Entity.TRACE:
        return _trace_condition(field.key, op, value)
    if entity is Entity.TAG:
        return _key_value_condition(schema.trace_tags, field.key, op, value, correlated=correlated)
    if entity is Entity.METADATA:
        return _key_value_condition(
            schema.trace_metadata, field.key, op, value, correlated=correlated
        )
    if entity in (Entity.SPAN, Entity.SPAN_ATTRIBUTE):
        return _span_condition(field, op, value)
    return _assessment_condition(field, op, value)


def compile_filter(
    expr: Expr, *, correlated: bool = False, exists_for: Collection[Comparison] = ()
) -> sa.ColumnElement[bool]:
    """Compile a parsed filter into a boolean SQL expression over ``traces``.

    The result is meant for the WHERE clause (or the columns) of a SELECT whose FROM
    holds ``schema.traces``: span and assessment conditions are ``EXISTS`` subqueries
    correlated to it; tag and metadata conditions are ``IN`` subqueries that start from
    their (key, value) index, or correlated ``EXISTS`` with ``correlated=True``.

    Args:
        expr: an AST from :func:`localscorers.filters.parse`.
        correlated: compile for evaluation row by row over a few traces (one trace at
            commit time, a backfill page) rather than for searching many.
        exists_for: comparisons to compile as correlated ``EXISTS`` anyway (a search
            for a value many traces have: see ``plan_search``).

    Returns:
        A boolean column expression that is never NULL.

    Raises:
        AssertionError: ``expr`` is not a filter AST (a programming error, not bad input:
            user text is checked by ``parse``).
    """
    if isinstance(expr, Comparison):
        return _compile_comparison(expr, correlated=correlated or expr in exists_for)
    if isinstance(expr, And):
        return sa.and_(
            *(
                compile_filter(o, correlated=correlated, exists_for=exists_for)
                for o in expr.operands
            )
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


@dataclass(frozen=True)
class SearchPlan:
    """A search filter compiled for the values it names.

    ``candidates``, when set, are the only trace ids that can match: the traces of the
    rarest tag or metadata value the filter requires.
    """

    condition: sa.ColumnElement[bool]
    candidates: list[str] | None


def plan_search(conn: Connection, expr: Expr, experiment_ids: Sequence[str]) -> SearchPlan:
    """Compile a search filter, choosing each required tag/metadata equality's form by count.

    A search wants the newest page of matches. Scanning traces newest first and checking
    each one's tag stops early when the value is common (``tags.env = 'prod'``: ~1 ms
    over 100k traces) but reads every trace when it is rare (~80 ms); starting from the
    (key, value) index is the reverse (a rare customer tag: ~1 ms; 'prod': ~25 ms to
    collect 50k ids). SQLite cannot tell the two apart (its statistics hold averages
    per index, not per value), so each equality ANDed at the top of the filter is
    counted in the searched experiments, up to ``_FEW`` entries: the rarest one at most
    ``_FEW`` supplies the candidate ids, and the common ones are checked per trace.
    """
    conjuncts = expr.operands if isinstance(expr, And) else (expr,)
    counts: dict[Comparison, int] = {}
    for conjunct in conjuncts:
        if (
            isinstance(conjunct, Comparison)
            and conjunct.op is Op.EQ
            and conjunct.field.entity in _KEY_VALUE_TABLES
        ):
            entries = _entries(conjunct, experiment_ids).limit(_FEW + 1).subquery()
            counts[conjunct] = conn.execute(
                sa.select(sa.func.count()).select_from(entries)
            ).scalar_one()
    rare = [c for c, n in counts.items() if n <= _FEW]
    candidates = None
    if rare:
        rarest = min(rare, key=counts.__getitem__)
        candidates = [str(row[0]) for row in conn.execute(_entries(rarest, experiment_ids))]
    common = frozenset(c for c, n in counts.items() if n > _FEW)
    return SearchPlan(compile_filter(expr, exists_for=common), candidates)


def _entries(comparison: Comparison, experiment_ids: Sequence[str]) -> sa.Select[Any]:
    # The searched experiments' traces with that value: a value common in another
    # experiment may be rare in this one.
    table = _KEY_VALUE_TABLES[comparison.field.entity]
    return (
        sa.select(table.c.trace_id)
        .join(_traces, _traces.c.trace_id == table.c.trace_id)
        .where(
            table.c.key == comparison.field.key,
            _predicate(table.c.value, comparison.op, comparison.value),
            _traces.c.experiment_id.in_(list(experiment_ids)),
        )
    )


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


def _order_error(clause: str, position: int, token: str, expected: str) -> ConfigurationError:
    shown = repr(token) if token else "end of input"
    return ConfigurationError(
        f"Invalid order_by clause at position {position}: found {shown}, expected {expected}.\n"
        f"  {clause}\n  {' ' * position}^\n"
        "Use a trace attribute with an optional ASC or DESC, e.g. 'timestamp_ms DESC'."
    )


def _order_column(clause: str) -> tuple[Field, bool, sa.ColumnElement[Any]]:
    match = _ORDER_RE.fullmatch(clause)
    assert match is not None  # noqa: S101 - the pattern matches every string
    text, start = match.group("field"), match.start("field")
    ascending = (match.group("direction") or "asc").lower() == "asc"
    if _EXPERIMENT_ID_RE.fullmatch(text):
        field = Field(Entity.TRACE, "experiment_id")
    else:
        try:
            field = parse_field(text)
        except FilterSyntaxError as exc:
            raise _order_error(clause, start + exc.position, exc.token, _ORDER_FIELDS) from exc
    if field.entity is Entity.TRACE:
        return field, ascending, _trace_column(field.key)
    if field.entity in (Entity.TAG, Entity.METADATA):
        table = schema.trace_tags if field.entity is Entity.TAG else schema.trace_metadata
        value = (
            sa.select(table.c.value)
            .where(table.c.trace_id == _traces.c.trace_id, table.c.key == field.key)
            .correlate(_traces)
            .scalar_subquery()
        )
        return field, ascending, value
    raise _order_error(clause, start, text, _ORDER_FIELDS)


def compile_order_by(order_by: Sequence[str] | None) -> list[sa.ColumnElement[Any]]:
    """Compile MLflow-style ``order_by`` entries into ORDER BY clauses over ``traces``.

    Each entry is a field (``timestamp_ms``, ``trace.execution_time_ms``, ``name``,
    ``status``, ``trace_id``, ``experiment_id``, ``run_id``, ``tags.<key>``,
    ``metadata.<key>`` and their MLflow aliases) with an optional ``ASC`` (default) or
    ``DESC``. Missing values sort last either way, as in MLflow. ``request_time_ms
    DESC`` and then ``trace_id`` are appended as tie-breakers unless already present,
    so the order is total and stable across calls.

    Args:
        order_by: the entries, or None for the default (newest first).

    Returns:
        Clauses for ``Select.order_by(*clauses)``.

    Raises:
        ConfigurationError: ``order_by`` is not a list of strings, or an entry does not
            parse or names a field that cannot be ordered by (the message points at it).
    """
    if order_by is None:
        order_by = []
    if isinstance(order_by, str) or not isinstance(order_by, Sequence):
        raise ConfigurationError(
            f"order_by must be a list of strings such as ['timestamp_ms DESC'], got {order_by!r}."
        )
    clauses: list[sa.ColumnElement[Any]] = []
    fields: set[Field] = set()
    for clause in order_by:
        if not isinstance(clause, str):
            raise ConfigurationError(
                f"Each order_by entry must be a str such as 'timestamp_ms DESC', got {clause!r}."
            )
        field, ascending, column = _order_column(clause)
        fields.add(field)
        clauses.append(sa.nulls_last(column.asc() if ascending else column.desc()))
    if Field(Entity.TRACE, "timestamp_ms") not in fields:
        clauses.append(_traces.c.request_time_ms.desc())
    if Field(Entity.TRACE, "trace_id") not in fields:
        clauses.append(_traces.c.trace_id.asc())
    return clauses
