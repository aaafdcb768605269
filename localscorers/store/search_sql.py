"""Plan a trace search: which rows to start from, so a page costs the same at any size.

A search wants the newest page of matches. Two plans exist for every condition that
reads other tables (tags, metadata, spans, assessments):

- scan the experiment's traces newest first (``ix_traces_experiment_time``) and check
  each one through a correlated ``EXISTS`` on its own rows: it stops after a page, so
  it is cheap when matches are common (``tags.env = 'prod'``, ``span.type = 'LLM'``)
  and reads every trace when they are rare;
- start from the index of the condition's value (``ix_trace_tags_key_value``,
  ``ix_spans_name``, ``ix_spans_type``, ``ix_assessments_name_value``), look the few
  traces up by primary key and sort them: cheap when the value is rare, and a read of
  most of the table when it is common.

SQLite cannot tell the two apart (its statistics, when there are any, hold averages
per index, not per value), so :func:`plan_search` counts each required, indexable
condition in the searched experiments, up to ``_FEW`` rows: the rarest at most
``_FEW`` drives the search and everything else is checked per trace. Measured at 100k
traces with ``benchmarks/filters.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from localscorers.filters import Comparison, Entity, Expr, Field, Op
from localscorers.store import filter_sql, schema
from localscorers.store.filter_sql import SpanGroup

__all__ = ["SearchPlan", "plan_search", "search_query"]

_traces = schema.traces
_KEY_VALUE_TABLES: Final = {Entity.TAG: schema.trace_tags, Entity.METADATA: schema.trace_metadata}
# A required condition met by at most this many rows of the searched experiments drives
# the search. A page from the candidates costs one primary-key lookup per candidate and
# a sort (~2 ms per 1,000); above it, the newest-first scan meets a page of matches
# within ~100 x (traces / matches) traces.
_FEW: Final = 2000
_INDEXED_SPAN_KEYS: Final = frozenset({"name", "type"})
_CLIENT_REQUEST_ID: Final = Field(Entity.TRACE, "client_request_id")
# Conditions most traces meet: never a good place to start.
_NEGATIVE_OPS: Final = frozenset({Op.IS_NULL, Op.NE, Op.NOT_IN})


@dataclass(frozen=True)
class SearchPlan:
    """A search filter compiled for the values it names.

    ``candidates``, when set, selects the only trace ids that can match: those of the
    rarest required condition.
    """

    condition: sa.ColumnElement[bool]
    candidates: sa.Select[Any] | sa.CompoundSelect[Any] | None


def _probe(part: object) -> sa.Select[Any] | sa.CompoundSelect[Any] | None:
    """What to count for a required part, reading one index range only; None: not indexed."""
    if not isinstance(part, Comparison | SpanGroup):
        return None
    if isinstance(part, SpanGroup):
        return _span_probe(part)
    entity, op = part.field.entity, part.op
    if part.field == _CLIENT_REQUEST_ID and op in (Op.EQ, Op.IN):
        # The application's request id: usually one trace, from its own index.
        return sa.select(_traces.c.trace_id).where(filter_sql.compile_filter(part))
    if entity in _KEY_VALUE_TABLES and op is Op.EQ:
        table = _KEY_VALUE_TABLES[entity]
        return filter_sql.key_value_traces(table, part.field.key, op, part.value)
    if entity in (Entity.FEEDBACK, Entity.EXPECTATION) and op not in _NEGATIVE_OPS:
        return _assessment_probe(part)
    return None


def _span_probe(group: SpanGroup) -> sa.Select[Any] | sa.CompoundSelect[Any] | None:
    for comparison in group.comparisons:
        indexed = comparison.field.entity is Entity.SPAN and comparison.op in (Op.EQ, Op.IN)
        if indexed and comparison.field.key in _INDEXED_SPAN_KEYS:
            return filter_sql.span_traces(SpanGroup((comparison,)))
    return None


def _assessment_probe(comparison: Comparison) -> sa.Select[Any]:
    a = schema.assessments
    query = sa.select(a.c.trace_id).where(a.c.name == comparison.field.key)
    values = comparison.value if isinstance(comparison.value, tuple) else (comparison.value,)
    if comparison.op in (Op.EQ, Op.IN) and isinstance(values[0], str):
        query = query.where(a.c.value_str.in_(list(values)))
    return query


def _drive(part: Comparison | SpanGroup) -> sa.Select[Any] | sa.CompoundSelect[Any]:
    """The ids of the traces that satisfy the whole part, starting from its index."""
    if isinstance(part, SpanGroup):
        return filter_sql.span_traces(part)
    if part.field == _CLIENT_REQUEST_ID:
        return sa.select(_traces.c.trace_id).where(filter_sql.compile_filter(part))
    if part.field.entity in _KEY_VALUE_TABLES:
        table = _KEY_VALUE_TABLES[part.field.entity]
        return filter_sql.key_value_traces(table, part.field.key, part.op, part.value)
    return filter_sql.assessment_traces(part)


def _count(
    conn: Connection, probe: sa.Select[Any] | sa.CompoundSelect[Any], experiment_ids: Sequence[str]
) -> int:
    """Count the probe's rows in the searched experiments, up to ``_FEW + 1``.

    First over the whole index range (no table reads): a value that rare everywhere is
    rare here. Only a value common overall, in a database where other experiments hold
    traces, is counted again in the searched experiments (one trace lookup per row): a
    value common in another experiment may be rare in this one.
    """
    # Selecting a constant, the count reads the index alone, never the table's rows.
    constant = probe.with_only_columns(sa.literal(1)) if isinstance(probe, sa.Select) else probe
    overall = _limited_count(conn, constant)
    if overall <= _FEW or not _others_have_traces(conn, experiment_ids):
        return overall
    ids = probe.subquery()
    here = (
        sa.select(ids.c.trace_id)
        .select_from(ids.join(_traces, _traces.c.trace_id == ids.c.trace_id))
        .where(_traces.c.experiment_id.in_(list(experiment_ids)))
    )
    return _limited_count(conn, here)


def _limited_count(conn: Connection, query: sa.Select[Any] | sa.CompoundSelect[Any]) -> int:
    rows = query.limit(_FEW + 1).subquery()
    return int(conn.execute(sa.select(sa.func.count()).select_from(rows)).scalar_one())


def _others_have_traces(conn: Connection, experiment_ids: Sequence[str]) -> bool:
    e = schema.experiments
    others = sa.select(e.c.experiment_id).where(e.c.experiment_id.not_in(list(experiment_ids)))
    first = sa.select(_traces.c.trace_id).where(_traces.c.experiment_id.in_(others)).limit(1)
    return conn.execute(first).first() is not None


def plan_search(conn: Connection, expr: Expr, experiment_ids: Sequence[str]) -> SearchPlan:
    """Compile a search filter, choosing the condition to start from by counting.

    Each required part (an operand of the top-level ``AND``) that one index range can
    count (a tag or metadata equality, a span group with a name or type equality, a
    feedback or expectation that exists or has a string value) is counted in the
    searched experiments, up to ``_FEW`` rows. The rarest at most ``_FEW`` supplies the
    candidates; tag and metadata equalities counted above it are checked per trace
    (correlated), as are spans and assessments always.
    """
    counts: dict[Comparison | SpanGroup, int] = {}
    for part in filter_sql.conjuncts(expr):
        probe = _probe(part)
        if probe is not None and isinstance(part, Comparison | SpanGroup):
            counts[part] = _count(conn, probe, experiment_ids)
    rare = [p for p, n in counts.items() if n <= _FEW]
    driver = min(rare, key=counts.__getitem__) if rare else None
    candidates = None if driver is None else _drive(driver)
    # Checked per trace: common tag / metadata values, and the driving one (its
    # candidates are few, each checked through its primary key).
    common = frozenset(
        p
        for p, n in counts.items()
        if (n > _FEW or p is driver)
        and isinstance(p, Comparison)
        and p.field.entity in _KEY_VALUE_TABLES
    )
    return SearchPlan(filter_sql.compile_filter(expr, exists_for=common), candidates)


def search_query(
    conn: Connection,
    *,
    experiment_ids: Sequence[str],
    expr: Expr | None,
    order: Sequence[sa.ColumnElement[Any]],
    limit: int | None = None,
    offset: int = 0,
) -> sa.Select[Any]:
    """The ``SELECT trace_id`` of a search, planned for its filter.

    Args:
        conn: where to count the filter's values (see :func:`plan_search`).
        experiment_ids: the experiments searched.
        expr: the parsed filter, or None for every trace.
        order: ORDER BY clauses from ``order_sql.compile_order_by``.
        limit: at most this many ids (None: all).
        offset: skip this many first (a page token's position).

    Returns:
        The query; run it for the ids in order.
    """
    t = _traces
    plan = None if expr is None else plan_search(conn, expr, experiment_ids)
    experiment: sa.ColumnElement[Any] = t.c.experiment_id
    if plan is not None and plan.candidates is not None:
        # An expression is not indexed: SQLite then starts from the candidates' primary
        # keys (0.2 ms for 100) instead of walking the experiment's time index for
        # matches (15-25 ms over 100k traces).
        experiment = sa.cast(t.c.experiment_id, sa.String)
    query = sa.select(t.c.trace_id).where(experiment.in_(list(experiment_ids)))
    if plan is not None:
        query = query.where(plan.condition)
        if plan.candidates is not None:
            query = query.where(t.c.trace_id.in_(plan.candidates))
    query = query.order_by(*order)
    if limit is not None:
        query = query.limit(limit)
    if offset:
        query = query.offset(offset)
    return query
