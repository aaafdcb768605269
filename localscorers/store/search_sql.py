"""Plan a trace search: which rows to start from, so a page costs the same at any size.

A search wants the newest page of matches. Three plans exist for a condition that an
index can pick out (``search_probes``: names, statuses, durations, tags, metadata,
span names, types, statuses and attributes, feedback and expectations):

- **scan**: walk the experiment's traces newest first (``ix_traces_experiment_time``)
  and check each through a correlated ``EXISTS`` on its own rows (~3 us a trace at
  1M): it stops after a page, so it is cheap when matches are common (``tags.env =
  'prod'``, ``span.type = 'LLM'``) and reads every trace when they are rare;
- **drive**: start from the index of the condition's value, look the few matching
  traces up by primary key and sort them (~10 us a candidate at 1M, random reads):
  cheap when the value is rare, a read of most of the table when it is common;
- **members**: read the matching trace ids from that index into a temporary set, then
  walk the time index newest first keeping the traces in the set (a lookup in memory,
  no row read: ~0.9 us a trace): the cheapest between the two.

SQLite cannot tell them apart (its statistics, when there are any, hold averages per
index, not per value), so :func:`plan_search` counts each required, indexable
condition in the searched experiments, up to ``_MANY`` rows: the rarest drives at most
``_FEW``, or is the member set at most ``_MANY``; above, everything is checked per
trace. Both bounds are set at 100k traces and grow with the square root of the
traces (where each pair of plans costs the same). Measured with
``benchmarks/filters.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from localscorers.filters import Comparison, Entity, Expr, Field, Op
from localscorers.store import deferred_indexes, filter_sql, schema, search_probes
from localscorers.store.comparison_sql import Unindexed
from localscorers.store.filter_sql import SpanGroup

__all__ = ["SearchPlan", "plan_search", "reads_deferred", "reads_text", "search_query"]

_traces = schema.traces
_KEY_VALUE_TABLES: Final = {Entity.TAG: schema.trace_tags, Entity.METADATA: schema.trace_metadata}
# At 100k traces, a required condition met by at most _FEW rows of the searched
# experiments drives the search, by at most _MANY it is the member set (see the module
# docstring). Per plan, a page at c matches of N traces costs about 10c (drive),
# 0.5c + 90N/c (members: ~0.9 us a trace walked) and 300N/c (scan) microseconds,
# measured at 1M traces on a loaded 2-core machine: they cross near 3 sqrt(N) and
# 20 sqrt(N), so both bounds grow with sqrt(N) above 100k.
_FEW: Final = 1000
_MANY: Final = 7000
_AT: Final = 100_000
_END_TIME: Final = Field(Entity.TRACE, "end_time_ms")
_DURATION: Final = Field(Entity.TRACE, "execution_time_ms")
_NAME: Final = Field(Entity.TRACE, "name")
_ASSESSMENTS: Final = (Entity.FEEDBACK, Entity.EXPECTATION)


@dataclass(frozen=True)
class SearchPlan:
    """A search filter compiled for the values it names.

    ``candidates``, when set, selects trace ids: those of the rarest required
    condition; ``members`` tells how to use them: as a set the newest-first walk keeps
    traces from (True), or as the traces to start from (False).
    """

    condition: sa.ColumnElement[bool]
    candidates: sa.Select[Any] | sa.CompoundSelect[Any] | None
    members: bool = False


def _bounds(conn: Connection) -> tuple[int, int]:
    """The drive and member-set bounds for this database (see ``_FEW`` and ``_MANY``).

    The table's size is its largest rowid: one index seek, where a count reads it all.
    """
    if conn.dialect.name != "sqlite":
        return _FEW, _MANY
    largest = conn.exec_driver_sql("SELECT max(rowid) FROM traces").scalar() or 0
    scale = math.sqrt(max(1.0, largest / _AT))
    return int(_FEW * scale), int(_MANY * scale)


def _count(
    conn: Connection, probe: search_probes.Probe, experiment_ids: Sequence[str], most: int
) -> int:
    """Count the probe's rows in the searched experiments, up to ``most + 1``.

    First over the whole index range (no table reads): a value that rare everywhere is
    rare here. Only a value common overall, in a database where other experiments hold
    traces, is counted again in the searched experiments (one trace lookup per row): a
    value common in another experiment may be rare in this one.
    """
    constant = _constant(probe)
    overall = _limited_count(conn, constant, most)
    if overall <= most or not _others_have_traces(conn, experiment_ids):
        return overall
    ids = probe.subquery()
    here = (
        sa.select(ids.c.trace_id)
        .select_from(ids.join(_traces, _traces.c.trace_id == ids.c.trace_id))
        .where(_traces.c.experiment_id.in_(list(experiment_ids)))
    )
    return _limited_count(conn, here, most)


def _constant(probe: search_probes.Probe) -> search_probes.Probe:
    """The probe selecting a constant: a count then reads its index alone, never rows."""
    if isinstance(probe, sa.Select):
        return probe.with_only_columns(sa.literal(1))
    selects = [s for s in probe.selects if isinstance(s, sa.Select)]
    if probe.keyword.value == "UNION ALL" and len(selects) == len(probe.selects):
        return sa.union_all(*(s.with_only_columns(sa.literal(1)) for s in selects))
    return probe


def _limited_count(conn: Connection, query: search_probes.Probe, most: int) -> int:
    rows = query.limit(most + 1).subquery()
    return int(conn.execute(sa.select(sa.func.count()).select_from(rows)).scalar_one())


def _others_have_traces(conn: Connection, experiment_ids: Sequence[str]) -> bool:
    e = schema.experiments
    others = sa.select(e.c.experiment_id).where(e.c.experiment_id.not_in(list(experiment_ids)))
    first = sa.select(_traces.c.trace_id).where(_traces.c.experiment_id.in_(others)).limit(1)
    return conn.execute(first).first() is not None


def _drive(
    part: Comparison | SpanGroup, probe: search_probes.Probe, *, deferred: bool
) -> search_probes.Probe:
    """The candidates of the driving part: its probe, or the exact assessment matches."""
    if isinstance(part, Comparison) and part.field.entity in _ASSESSMENTS:
        exact = search_probes.assessment_candidates(part, exact=True, deferred=deferred)
        assert exact is not None  # noqa: S101 - it had a probe
        return exact
    return probe


def _time_bounds(parts: Sequence[object]) -> list[sa.ColumnElement[bool]]:
    """``request_time_ms`` bounds implied by required ``trace.end_time_ms`` ranges.

    end = start + duration and durations are never negative, so ``end < x`` (or
    ``<=``, ``=``) needs ``start <= x``: a range of the time index the scan walks,
    where the sum itself is no index's (an end time before every trace read them all).
    """
    start = _traces.c.request_time_ms
    return [
        start <= p.value
        for p in parts
        if isinstance(p, Comparison)
        and p.field == _END_TIME
        and p.op in (Op.EQ, Op.LT, Op.LE)
        and isinstance(p.value, int | float)
    ]


def plan_search(conn: Connection, expr: Expr, experiment_ids: Sequence[str]) -> SearchPlan:
    """Compile a search filter, choosing the condition to start from by counting.

    Each required part (an operand of the top-level ``AND``) that one index range can
    count (``search_probes``) is counted in the searched experiments, up to the
    member-set bound. The rarest supplies the candidates (driving at most the drive
    bound, a member set above); tag and metadata equalities counted above it are
    checked per trace (correlated), as are spans and assessments always. A candidate
    set that is exactly the part's matches is not checked again.
    """
    terms = conn.dialect.name == "sqlite"
    few, many = _bounds(conn)
    parts = filter_sql.conjuncts(expr)
    deferred, text = deferred_indexes.available(conn) if reads_deferred(expr) else (False, False)
    counts: dict[Comparison | SpanGroup, tuple[int, search_probes.Probe]] = {}
    for part in parts:
        if not isinstance(part, Comparison | SpanGroup):
            continue
        for probe in search_probes.probes(
            part, experiment_ids, terms=terms, text=text, deferred=deferred
        ):
            n = _count(conn, probe, experiment_ids, many)
            if part not in counts or n < counts[part][0]:
                counts[part] = (n, probe)
            if n == 0:
                break
    usable = [p for p, (n, _) in counts.items() if n <= many]
    driver = min(usable, key=lambda p: counts[p][0]) if usable else None
    candidates = None if driver is None else _drive(driver, counts[driver][1], deferred=deferred)
    members = driver is not None and counts[driver][0] > few
    # Checked per trace (correlated): tag / metadata values too common to drive; a
    # rarer one stays an IN over its index, which the candidates are then checked by.
    common = frozenset(
        p
        for p, (n, _) in counts.items()
        if n > few and isinstance(p, Comparison) and p.field.entity in _KEY_VALUE_TABLES
    )
    # An exact driver's candidates are its matches: checking it again per candidate
    # was one more random index read each (a third of a rare page at 1M traces).
    checked = [p for p in parts if not (p is driver and _exact(p, deferred=deferred))]
    conditions = [filter_sql.compile_filter(p, exists_for=common) for p in checked]
    if driver is None or members:
        conditions += _time_bounds(parts)
    condition = sa.and_(*conditions) if conditions else sa.true()
    return SearchPlan(condition, candidates, members)


def _exact(part: Comparison | SpanGroup, *, deferred: bool) -> bool:
    """Whether the part's probe selects exactly its matches (not a superset).

    Comparisons' probes do, and so do those of one span comparison (``ix_spans_*``,
    ``span_terms``); a group's (one of its comparisons) select a superset, and so do
    the deferred indexes' (trigrams, traces newer than the index, no validity).
    """
    if deferred and _deferred(part):
        return False
    return isinstance(part, Comparison) or len(part.comparisons) == 1


def reads_deferred(expr: Expr) -> bool:
    """Whether a search for ``expr`` may start from a deferred index (a required part)."""
    return any(_deferred(p) for p in filter_sql.conjuncts(expr))


def reads_text(expr: Expr) -> bool:
    """Whether a search for ``expr`` may start from the text index (a content part)."""
    return any(
        isinstance(p, SpanGroup)
        and any(c.field.entity is Entity.SPAN and c.field.key == "content" for c in p.comparisons)
        for p in filter_sql.conjuncts(expr)
    )


def _deferred(part: object) -> bool:
    """Whether a deferred index may serve the part: content, a name, a duration, a value."""
    if isinstance(part, Comparison):
        return part.field in (_DURATION, _NAME) or part.field.entity in _ASSESSMENTS
    return isinstance(part, SpanGroup) and any(
        c.field.entity is Entity.SPAN and c.field.key in ("content", "name")
        for c in part.comparisons
    )


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
    if plan is not None and plan.candidates is not None and not plan.members:
        # An expression is not indexed: SQLite then starts from the candidates' primary
        # keys (0.2 ms for 100) instead of walking the experiment's time index.
        experiment = sa.cast(t.c.experiment_id, sa.String)
    query = sa.select(t.c.trace_id).where(experiment.in_(list(experiment_ids)))
    if plan is not None:
        if plan.candidates is not None:
            # Members: +trace_id, so the walk stays on the time index and each trace
            # is looked up in the candidates' temporary set, before the other checks.
            trace_id = Unindexed(t.c.trace_id) if plan.members else t.c.trace_id
            query = query.where(trace_id.in_(plan.candidates))
        query = query.where(plan.condition)
    query = query.order_by(*order)
    if limit is not None:
        query = query.limit(limit)
    if offset:
        query = query.offset(offset)
    return query
