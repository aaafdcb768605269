"""The SQL of a backfill job's plan: choosing the (trace, scorer) pairs of a page of traces.

A page is read in ``(request_time_ms, trace_id)`` order through a keyset cursor with,
as extra columns, every scorer's filter and the id of the scorer version's current
evaluation, so one statement decides which pairs run, which are skipped and which a
rescore replaces. Sampling uses the online formula, so a backfill at a scorer's own
rate picks exactly the traces online scoring would have.
(Results are written by ``results.insert_finished``.)

A session-level scorer (``takes_session``) runs once per session, on the session's last
trace (the revision online scoring would score), when that trace falls in the range;
its sample is drawn by session id, as online.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from localscorers import sampling
from localscorers.filters import parser
from localscorers.models import EvaluationStatus, TraceStatus
from localscorers.store import bulk, codec, filter_sql, schema
from localscorers.store.sessions import SESSION_KEY

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from localscorers.store.database import Database

__all__ = ["PageRow", "Plan", "ScorerSpec"]

_PENDING = EvaluationStatus.PENDING.value
_PAGE_STATEMENTS_KEPT = 64  # compiled page queries kept (a few per job)
_page_statements: dict[tuple[Any, ...], bulk.CompiledStatement | None] = {}


@dataclass(frozen=True)
class ScorerSpec:
    """One scorer of a job (name, version, rate, filter), frozen into the job row."""

    name: str
    version: int
    sample_rate: float
    filter_string: str | None = None


@dataclass(slots=True)  # one per trace of a page
class PageRow:
    """One trace of a page: the scorers to run, those skipped, and the rows replaced."""

    trace_id: str
    time_ms: int
    inputs: Any = None
    outputs: Any = None
    run: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    replaces: dict[int, int] = field(default_factory=dict)
    session_id: str | None = None  # read only when the job has session scorers


class Plan:
    """A job's frozen scorers, compiled to select the (trace, scorer) pairs of a page."""

    def __init__(
        self,
        experiment_id: str,
        specs: Sequence[ScorerSpec],
        *,
        start_ms: int | None,
        end_ms: int | None,
        rescore: bool,
    ) -> None:
        self.experiment_id = experiment_id
        self.specs = tuple(specs)
        self.start_ms, self.end_ms, self.rescore = start_ms, end_ms, rescore
        self._filters = [
            filter_sql.compile_filter(parser.parse(s.filter_string), correlated=True)
            if s.filter_string
            else None
            for s in self.specs
        ]
        self._flags = sum(f is not None for f in self._filters)
        self.sessions: frozenset[int] | None = None  # session scorers' indexes, once read
        # A part's key range (lower, upper] (store.job_parts); None: open on that side.
        self.lower: tuple[int, str] | None = None
        self.upper: tuple[int, str] | None = None

    def within(self, lower: tuple[int, str] | None, upper: tuple[int, str] | None) -> Plan:
        """Restrict the plan to the traces keyed above ``lower`` and up to ``upper``."""
        self.lower, self.upper = lower, upper
        return self

    def read_sessions(self, conn: Connection) -> frozenset[int]:
        """Read (once) which of the job's scorer versions are session-level."""
        if self.sessions is None:
            v = schema.scorer_versions
            rows = conn.execute(
                sa.select(v.c.name, v.c.version).where(
                    v.c.experiment_id == self.experiment_id, v.c.takes_session == sa.true()
                )
            ).all()
            flagged = {(row.name, row.version) for row in rows}
            self.sessions = frozenset(
                i for i, s in enumerate(self.specs) if (s.name, s.version) in flagged
            )
        return self.sessions

    @classmethod
    def from_row(cls, row: Any) -> Plan:  # noqa: ANN401 - a Row of backfill_jobs
        """Rebuild the plan frozen in a job row."""
        specs = [
            ScorerSpec(s["name"], s["version"], s["sample_rate"], s.get("filter_string"))
            for s in row.scorers
        ]
        return cls(
            row.experiment_id,
            specs,
            start_ms=row.start_ms,
            end_ms=row.end_ms,
            rescore=bool(row.rescore),
        )

    def _query(self, *, payload: bool, existing: bool) -> sa.Select[Any]:
        t, e = schema.traces, schema.evaluations
        columns: list[Any] = [t.c.trace_id, t.c.request_time_ms]
        if payload:
            columns += [t.c.inputs, t.c.outputs]
        columns += [sa.case((f, 1), else_=0) for f in self._filters if f is not None]
        if existing:
            # One indexed lookup per scorer (ux_evaluations_current makes it unique): the
            # current evaluation's id if it SUCCEEDED, its id negated if it FAILED (it
            # runs again), 0 while it is PENDING.
            columns += [
                sa.select(
                    sa.case(
                        (e.c.status == _PENDING, 0),
                        (e.c.status == EvaluationStatus.FAILED.value, -e.c.id),
                        else_=e.c.id,
                    )
                )
                .where(
                    e.c.trace_id == t.c.trace_id,
                    e.c.scorer_name == spec.name,
                    e.c.scorer_version == spec.version,
                    e.c.superseded == sa.false(),
                )
                .correlate(t)
                .scalar_subquery()
                for spec in self.specs
            ]
        if self.sessions:
            columns += _session_columns(t)
        query = sa.select(*columns).where(
            t.c.experiment_id == self.experiment_id,
            # Online scoring never enqueues unfinished traces; neither does a backfill.
            t.c.status != TraceStatus.IN_PROGRESS.value,
        )
        if self.start_ms is not None:
            query = query.where(t.c.request_time_ms >= self.start_ms)
        if self.end_ms is not None:
            query = query.where(t.c.request_time_ms < self.end_ms)
        key = sa.tuple_(t.c.request_time_ms, t.c.trace_id)
        # Bound parameters, not literals: the parts of a job then share one compiled page
        # query (``_page_statement``), given their bounds at each execution.
        if self.lower is not None:
            lower_ms, lower_id = self.lower
            query = query.where(
                key
                > sa.tuple_(sa.bindparam("lower_ms", lower_ms), sa.bindparam("lower_id", lower_id))
            )
        if self.upper is not None:
            upper_ms, upper_id = self.upper
            query = query.where(
                key
                <= sa.tuple_(sa.bindparam("upper_ms", upper_ms), sa.bindparam("upper_id", upper_id))
            )
        return query

    def boundaries(
        self, conn: Connection, *, min_traces: int, max_parts: int
    ) -> list[tuple[int, str]]:
        """Split the range into parts: the keys ending all parts but the last (open) one.

        Parts hold about ``max(min_traces, traces / max_parts)`` traces each
        (``store.job_parts``); one index range scan per boundary, no trace row read.
        """
        t = schema.traces
        key = sa.tuple_(t.c.request_time_ms, t.c.trace_id)
        keys = self._query(payload=False, existing=False).with_only_columns(
            t.c.request_time_ms, t.c.trace_id
        )
        traces = conn.execute(sa.select(sa.func.count()).select_from(keys.subquery())).scalar_one()
        every = max(1, min_traces, -(-traces // max_parts))
        base = keys.order_by(t.c.request_time_ms, t.c.trace_id).offset(every - 1).limit(1)
        found: list[tuple[int, str]] = []
        while len(found) < -(-traces // every) - 1:
            query = base
            if found:
                query = query.where(key > sa.tuple_(*map(sa.literal, found[-1])))
            row = conn.execute(query).first()
            if row is None:
                break
            found.append((int(row[0]), str(row[1])))
        return found

    def page(
        self,
        conn: Connection,
        after: tuple[int, str] | None,
        limit: int,
        *,
        payload: bool,
        existing: bool,
    ) -> list[PageRow]:
        """Read up to ``limit`` traces after the cursor and decide each scorer's fate."""
        self.read_sessions(conn)
        statement = self._page_statement(conn, payload=payload, existing=existing, after=after)
        params: dict[str, Any] = {"page_limit": limit}
        if after is not None:
            params["after_ms"], params["after_id"] = after
        if self.lower is not None:
            params["lower_ms"], params["lower_id"] = self.lower
        if self.upper is not None:
            params["upper_ms"], params["upper_id"] = self.upper
        if statement is None:
            rows: Sequence[Sequence[Any]] = conn.execute(
                self._page_query(payload=payload, existing=existing, after=after), params
            ).all()
        else:
            rows = statement.fetchall(conn, params)
            if payload:  # the driver's rows hold the JSON text
                # loads_column: json.loads's own checks were 3/4 of decoding a page.
                loads = codec.loads_column
                rows = [(r[0], r[1], loads(r[2]), loads(r[3]), *r[4:]) for r in rows]
        first_flag = 4 if payload else 2
        first_found = first_flag + self._flags if existing else None
        return [
            self._decide(row, payload=payload, first_flag=first_flag, first_found=first_found)
            for row in rows
        ]

    def _page_query(
        self, *, payload: bool, existing: bool, after: tuple[int, str] | None
    ) -> sa.Select[Any]:
        t = schema.traces
        query = self._query(payload=payload, existing=existing)
        if after is not None:
            key = sa.tuple_(t.c.request_time_ms, t.c.trace_id)
            query = query.where(key > sa.tuple_(sa.bindparam("after_ms"), sa.bindparam("after_id")))
        limit = sa.bindparam("page_limit", type_=sa.Integer)
        return query.order_by(t.c.request_time_ms, t.c.trace_id).limit(limit)

    def _page_statement(
        self, conn: Connection, *, payload: bool, existing: bool, after: tuple[int, str] | None
    ) -> bulk.CompiledStatement | None:
        """The page query compiled once per job and run through the driver (None: not here).

        Building, compiling and processing it through SQLAlchemy each page cost about
        as much as reading the page; compiling it per part, a tenth of a part's work.
        A filter whose SQL SQLAlchemy expands per execution (an ``IN`` list) keeps the
        regular path.
        """
        key: tuple[Any, ...] = (conn.dialect.name, conn.dialect.driver, self.experiment_id)
        key += (self.specs, self.start_ms, self.end_ms, self.rescore, self.sessions)
        key += (payload, existing, after is not None, self.lower is None, self.upper is None)
        if key not in _page_statements:
            if len(_page_statements) >= _PAGE_STATEMENTS_KEPT:
                _page_statements.clear()
            query = self._page_query(payload=payload, existing=existing, after=after)
            statement = bulk.CompiledStatement(query, conn.dialect)
            _page_statements[key] = None if "POSTCOMPILE" in statement.sql else statement
        return _page_statements[key]

    def _decide(
        self, row: Sequence[Any], *, payload: bool, first_flag: int, first_found: int | None
    ) -> PageRow:
        decided = PageRow(row[0], row[1], *(row[2:4] if payload else ()))
        last_of_session = False
        if self.sessions:
            decided.session_id, last_of_session = row[-2], bool(row[-1])
        flag = first_flag
        for index, spec in enumerate(self.specs):
            matched = None
            if self._filters[index] is not None:
                matched = bool(row[flag])
                flag += 1
            sampled_id = row[0]
            if index in (self.sessions or ()):
                if decided.session_id is None or not last_of_session:
                    continue  # a session is scored once, on its last trace
                sampled_id = decided.session_id
            # The query keeps unfinished traces out, and a job runs its scorers whatever
            # their status now: their rates were frozen into it. Without a filter, at a
            # rate of 1 (most backfills), that decision is EVALUATE: no call per pair.
            if (matched is not None or spec.sample_rate < 1.0) and sampling.decide(
                sampled_id,
                spec.name,
                active=True,
                filter_matched=matched,
                sample_rate=spec.sample_rate,
            ) is not sampling.Decision.EVALUATE:
                continue
            found = None if first_found is None else row[first_found + index]
            if found is None:
                decided.run.append(index)
            elif found == 0 or (found > 0 and not self.rescore):
                # A pending evaluation is left to whoever holds it, even with rescore:
                # superseding it under that worker would leave two current rows. Only a
                # SUCCEEDED evaluation counts as scored: a FAILED one (found < 0) runs again.
                decided.skipped.append(index)
            else:
                decided.run.append(index)
                decided.replaces[index] = abs(found)
        return decided

    def count(
        self,
        db: Database,
        *,
        check_existing: bool,
        page: int = 2000,
        on_page: Callable[[], None] | None = None,
    ) -> list[int]:
        """Count, per scorer, the pairs the job selects (minus the skipped ones if asked).

        ``on_page`` runs after each page (a job renews its lease there).
        """
        with db.read() as conn:
            sessions = self.read_sessions(conn)
        if not check_existing and not sessions and all(s.sample_rate >= 1.0 for s in self.specs):
            # Nothing to hash: one aggregate query instead of a pass over every trace.
            columns = [
                sa.func.count()
                if f is None
                else sa.func.coalesce(sa.func.sum(sa.case((f, 1), else_=0)), 0)
                for f in self._filters
            ]
            query = self._query(payload=False, existing=False).with_only_columns(*columns)
            with db.read() as conn:
                return [int(n) for n in conn.execute(query).one()]
        counts = [0] * len(self.specs)
        after: tuple[int, str] | None = None
        while True:
            with db.read() as conn:
                rows = self.page(conn, after, page, payload=False, existing=check_existing)
            for row in rows:
                for index in row.run:
                    counts[index] += 1
            if len(rows) < page:
                return counts
            if on_page is not None:
                on_page()
            after = (rows[-1].time_ms, rows[-1].trace_id)


def _session_columns(t: sa.Table) -> list[Any]:
    """The trace's session id, and whether it is the session's last trace (time order)."""
    m, m2 = schema.trace_metadata, schema.trace_metadata.alias("later_session")
    t2 = t.alias("later")
    session = (
        sa.select(m.c.value)
        .where(m.c.trace_id == t.c.trace_id, m.c.key == SESSION_KEY)
        .correlate(t)
        .scalar_subquery()
    )
    later = (
        sa.exists()
        .where(
            m2.c.key == SESSION_KEY,
            m2.c.value == session,
            t2.c.trace_id == m2.c.trace_id,
            t2.c.experiment_id == t.c.experiment_id,
            sa.tuple_(t2.c.request_time_ms, t2.c.trace_id)
            > sa.tuple_(t.c.request_time_ms, t.c.trace_id),
        )
        .correlate(t)
    )
    return [session, sa.case((later, 0), else_=1)]
