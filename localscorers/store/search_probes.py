"""Where a required filter condition can start a search: one index range per condition.

A *probe* selects the ids of traces that can satisfy a condition (a superset: the
search still checks the whole filter on each), reading one index, so that
:mod:`~localscorers.store.search_sql` can count it cheaply and, when it is rare,
start from it. Every field of the grammar that an equality, ``IN`` or range can pick
out has one (issue 16):

- ``trace.name`` (``trace_names`` on SQLite, ``ix_traces_root_name`` on PostgreSQL),
  ``trace.status`` other than OK
  (``ix_traces_status``, partial), ``client_request_id``;
- ``tags`` / ``metadata`` (``ix_trace_*_key_value``);
- ``span.name`` / ``span.type`` (``ix_spans_*``), ``span.status`` and
  ``span.attributes.<key>`` (``span_terms``, SQLite), with the roots kept in trace rows;
- ``feedback`` / ``expectation`` (``ix_assessments_name_value``: name, kind,
  value_num, value_str, valid, trace_id: the exact matches from the index alone).
- on SQLite, ``span.content`` ``LIKE`` / ``ILIKE`` with a literal run of three
  characters or more, and ``trace.execution_time_ms`` ranges (``deferred_indexes``:
  indexes filled after commit, like ``trace_names``; a superset, with the traces newer
  than them).

For ``=`` and ``IN``, and on SQLite ``LIKE 'prefix%'`` of a trace name, a tag or
metadata value, a span name or type. Negations (``!=``, ``NOT IN``, ``IS NULL``; but
``trace.status != 'OK'``), other patterns (``LIKE '%x'``, ``ILIKE``, ``RLIKE``),
``trace.status = 'OK'`` has none:
those are met by scanning the traces newest first (the time index covers status, name
and duration, so that scan reads no row for them). An index for each would cost every
trace's commit a B-tree write (a (status, duration) index: ~9 % of a minimal
``log_trace``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

import sqlalchemy as sa

from localscorers.filters import Comparison, Entity, Field, Op, Scalar, Value
from localscorers.models import TraceStatus
from localscorers.store import deferred_indexes, filter_sql, schema, span_terms
from localscorers.store.comparison_sql import Unindexed, predicate, uppercased
from localscorers.store.filter_sql import SpanGroup

__all__ = ["Probe", "assessment_candidates", "probes"]

Probe = sa.Select[Any] | sa.CompoundSelect[Any]

_traces = schema.traces
_assessments = schema.assessments
_KEY_VALUE_TABLES: Final = {Entity.TAG: schema.trace_tags, Entity.METADATA: schema.trace_metadata}
_STATUSES: Final = tuple(s.value for s in TraceStatus)
OK: Final = TraceStatus.OK.value
_RANGE_OPS: Final = frozenset({Op.EQ, Op.IN, Op.LT, Op.LE, Op.GT, Op.GE})
_CLIENT_REQUEST_ID: Final = Field(Entity.TRACE, "client_request_id")


def _values(value: Value) -> list[Scalar]:
    if value is None:
        return []
    return list(value) if isinstance(value, tuple) else [value]


def _in_experiments(experiment_ids: Sequence[str]) -> sa.ColumnElement[bool]:
    return _traces.c.experiment_id.in_(list(experiment_ids))


def _statuses(op: Op, value: Value) -> list[str] | None:
    """The trace statuses a status comparison accepts (None: not an equality kind)."""
    wanted = [str(v) for v in _values(uppercased(value))]
    if op in (Op.EQ, Op.IN):
        return wanted
    if op in (Op.NE, Op.NOT_IN):  # statuses are a closed set: the others
        return [s for s in _STATUSES if s not in wanted]
    return None


def _status_in(statuses: Sequence[str]) -> list[sa.ColumnElement[bool]]:
    """``status IN (...)``, with the partial ``ix_traces_status``'s term if it holds them.

    SQLite uses a partial index only for a query that repeats its WHERE term.
    """
    t = _traces
    terms: list[sa.ColumnElement[bool]] = [t.c.status.in_(list(statuses))]
    if OK not in statuses:
        terms.append(t.c.status != sa.literal_column(f"'{OK}'"))
    return terms


def _seekable(op: Op, value: Value, *, terms: bool) -> bool:
    """Whether an index range holds exactly the column values the comparison accepts.

    ``=`` and ``IN``; on SQLite also ``LIKE 'prefix%'``, which its LIKE optimization
    reads as a range (``case_sensitive_like`` is on, as MLflow's LIKE is case-sensitive).
    """
    if op in (Op.EQ, Op.IN):
        return True
    return terms and op is Op.LIKE and isinstance(value, str) and value[:1] not in ("", "%", "_")


def _deferred_probe(comparison: Comparison, experiment_ids: Sequence[str]) -> Probe | None:
    """A trace duration or name comparison's probe from ``deferred_indexes`` (SQLite)."""
    key, op, value = comparison.field.key, comparison.op, comparison.value
    if key == "execution_time_ms":
        return deferred_indexes.duration_candidates(comparison, experiment_ids)
    if key == "name" and _seekable(op, value, terms=True):
        return deferred_indexes.name_candidates(comparison, experiment_ids)
    return None


def _trace_probe(
    comparison: Comparison, experiment_ids: Sequence[str], *, terms: bool
) -> Probe | None:
    key, op, value = comparison.field.key, comparison.op, comparison.value
    t = _traces
    if key == "name" and _seekable(op, value, terms=terms):  # PostgreSQL: the traces index
        name = predicate(t.c.name, op, value)
        experiment: sa.ColumnElement[Any] = t.c.experiment_id
        if op is Op.LIKE:
            # Else SQLite prefers the time index's experiment equality to the name range.
            experiment = Unindexed(experiment)
        return sa.select(t.c.trace_id).where(name, experiment.in_(list(experiment_ids)))
    if key == "status":
        statuses = _statuses(op, value)
        if statuses is None or OK in statuses:
            return None  # OK traces are not indexed: nearly every trace is OK
        return sa.select(t.c.trace_id).where(_in_experiments(experiment_ids), *_status_in(statuses))
    if comparison.field == _CLIENT_REQUEST_ID and op in (Op.EQ, Op.IN):
        return sa.select(t.c.trace_id).where(predicate(t.c.client_request_id, op, value))
    return None


def _root_status_probe(op: Op, value: Value, experiment_ids: Sequence[str]) -> Probe:
    """Roots kept in their trace row have the trace's status."""
    t = _traces
    statuses = [str(v) for v in _values(uppercased(value))]
    return sa.select(t.c.trace_id).where(
        _in_experiments(experiment_ids), *_status_in(statuses), t.c.root_span_id.is_not(None)
    )


def _span_probes(
    group: SpanGroup, experiment_ids: Sequence[str], *, terms: bool, text: bool, deferred: bool
) -> list[Probe]:
    """One probe per comparison of the group that an index can answer."""
    found: list[Probe] = []
    for comparison in group.comparisons:
        field, op, value = comparison.field, comparison.op, comparison.value
        if text and field.key == "content" and field.entity is Entity.SPAN:
            content = deferred_indexes.content_candidates(comparison)
            if content is not None:
                found.append(content)
            continue
        if not _seekable(op, value, terms=terms):
            continue
        if deferred and field.entity is Entity.SPAN and field.key == "name":
            # Roots kept in the trace row have the trace's name: from trace_names.
            named = filter_sql.span_traces(SpanGroup((comparison,)), roots=False)
            roots = deferred_indexes.name_candidates(comparison, experiment_ids)
            assert isinstance(named, sa.Select)  # noqa: S101 - roots=False: one select
            found.append(sa.union_all(named, *roots.selects))
        elif field.entity is Entity.SPAN and field.key in ("name", "type"):
            found.append(filter_sql.span_traces(SpanGroup((comparison,))))
        elif op is Op.LIKE:
            continue  # a long attribute value is not in span_terms: a prefix may match it
        elif terms and field.entity is Entity.SPAN and field.key == "status":
            stored = span_terms.traces_with(None, _values(uppercased(value)))
            if stored is not None:
                found.append(sa.union_all(*stored, _root_status_probe(op, value, experiment_ids)))
        elif terms and field.entity is Entity.SPAN_ATTRIBUTE:
            stored = span_terms.traces_with(field.key, _values(value))
            if stored is not None:
                found.append(sa.union_all(*stored))  # roots kept in the row have none
    return found


def _number(text: str) -> float | None:
    """The ``value_num`` a value whose ``value_str`` is ``text`` can have."""
    if text in ("true", "false"):
        return 1.0 if text == "true" else 0.0
    try:
        number = float(text)
    except ValueError:
        return None
    return None if math.isnan(number) else number  # SQLite stores NaN as NULL


def _assessment_ranges(
    comparison: Comparison, a: sa.TableClause
) -> list[list[sa.ColumnElement[bool]]] | None:
    """Index ranges of (name, kind, value_num, value_str) holding every possible match.

    In ``a``: ``assessments`` or ``deferred_indexes.assessment_values``. A string is
    stored with ``value_num`` NULL, or (a number or boolean) with the number its text
    reads as; a number is compared by ``value_num``. None: only the name narrows it (a
    pattern), or nothing does (a negation).
    """
    op, value = comparison.op, comparison.value
    kind = filter_sql.ASSESSMENT_KINDS[comparison.field.entity]
    name = sa.and_(a.c.name == comparison.field.key, a.c.kind == kind)
    if op is Op.IS_NULL:
        return None  # the traces without one: no index holds absence
    if op is Op.IS_NOT_NULL:
        return [[name]]
    values = _values(value)
    if op not in _RANGE_OPS:
        return [[name]] if op in (Op.LIKE, Op.ILIKE, Op.RLIKE) else None
    if not isinstance(values[0], str):
        return [[name, predicate(a.c.value_num, op, value)]]
    if op not in (Op.EQ, Op.IN):
        return [[name]]
    texts = [str(v) for v in values]
    ranges = [[name, a.c.value_num.is_(None), a.c.value_str.in_(texts)]]
    numbers = sorted({n for n in map(_number, texts) if n is not None})
    if numbers:
        ranges.append([name, a.c.value_num.in_(numbers), a.c.value_str.in_(texts)])
    return ranges


def assessment_candidates(
    comparison: Comparison, *, exact: bool, deferred: bool = False
) -> Probe | None:
    """The traces with a matching assessment, from ``ix_assessments_name_value``.

    ``exact``: also check kind, validity and the value, and add (feedback) the traces
    of sessions whose session-level feedback matches: the drive. Otherwise the probe
    counted to choose one. ``deferred`` (SQLite): from ``assessment_values`` and the
    assessments newer than it instead, a superset whatever ``exact`` says.
    """
    a = _assessments
    ranges = _assessment_ranges(comparison, a)
    if ranges is None:
        return None
    checks = filter_sql.assessment_predicates(comparison) if exact else []
    if deferred:
        values = deferred_indexes.assessment_values
        value_ranges = _assessment_ranges(comparison, values) or []
        direct = [sa.select(values.c.trace_id).where(*terms) for terms in value_ranges]
        direct.append(deferred_indexes.newer_assessments())
    else:
        direct = [sa.select(a.c.trace_id).where(*terms, *checks) for terms in ranges]
    if not exact or comparison.field.entity is not Entity.FEEDBACK:
        return direct[0] if len(direct) == 1 else sa.union_all(*direct)
    # The sessions whose session-level feedback matches (ix_assessments_session holds
    # only those), then their traces (ix_trace_metadata_key_value): as a join, SQLite
    # could start from every trace's session entry instead (17 ms at 100k traces).
    m = schema.trace_metadata
    sessions = [
        sa.select(m.c.trace_id).where(
            m.c.key == filter_sql.SESSION_KEY,
            m.c.value.in_(
                sa.select(a.c.session_id).where(a.c.session_id.is_not(None), *terms, *checks)
            ),
        )
        for terms in ranges
    ]
    return sa.union(*direct, *sessions)


def probes(
    part: object,
    experiment_ids: Sequence[str],
    *,
    terms: bool,
    text: bool = False,
    deferred: bool = False,
) -> list[Probe]:
    """The probes of a required part of a filter (empty: none, scan for it).

    Args:
        part: a comparison, a span group or another expression.
        experiment_ids: the experiments searched (trace probes read only theirs).
        terms: whether ``span_terms`` exists (SQLite).
        text: whether ``deferred_indexes``' text index exists (SQLite with FTS5).
        deferred: whether its name and duration indexes exist (SQLite).
    """
    if isinstance(part, SpanGroup):
        return _span_probes(part, experiment_ids, terms=terms, text=text, deferred=deferred)
    if not isinstance(part, Comparison):
        return []
    entity, op = part.field.entity, part.op
    found: Probe | None = None
    if entity is Entity.TRACE:
        found = _deferred_probe(part, experiment_ids) if deferred else None
        if found is None:
            found = _trace_probe(part, experiment_ids, terms=terms)
    elif entity in _KEY_VALUE_TABLES and (
        op is Op.IS_NOT_NULL or _seekable(op, part.value, terms=terms)
    ):
        table = _KEY_VALUE_TABLES[entity]
        found = filter_sql.key_value_traces(table, part.field.key, op, part.value)
    elif entity in (Entity.FEEDBACK, Entity.EXPECTATION):
        found = assessment_candidates(part, exact=False, deferred=deferred)
    return [] if found is None else [found]
