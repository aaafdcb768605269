"""The SQL of a backfill job: choosing the pairs of a page of traces, and writing results.

A page is read in ``(request_time_ms, trace_id)`` order through a keyset cursor with,
as extra columns, every scorer's filter and the id of the scorer version's current
evaluation, so one statement decides which pairs run, which are skipped and which a
rescore replaces. Sampling uses the online formula, so a backfill at a scorer's own
rate picks exactly the traces online scoring would have.

Results are written with the driver's ``executemany``: evaluation rows with
``ON CONFLICT DO NOTHING`` (the partial unique index on (trace, scorer, version) is
what makes reruns and races idempotent), then the feedback of the rows that were
really inserted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import sqlalchemy as sa

from localscorers import sampling
from localscorers.evaluation.execution import Plain
from localscorers.filters import parser
from localscorers.models import EvaluationStatus, Feedback, TraceStatus
from localscorers.store import bulk, filter_sql, schema
from localscorers.store.ledger import ledger_insert
from localscorers.store.rows import (
    assessment_row,
    encode_json,
    in_chunks,
    insert_encoded,
    plain_base,
    plain_row,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from localscorers.store.database import Database

__all__ = [
    "COUNT_KEYS",
    "LeaseLostError",
    "PageRow",
    "Plan",
    "Result",
    "ScorerSpec",
    "update_job",
    "write_results",
]

COUNT_KEYS = ("total", "processed", "succeeded", "failed", "skipped")
_PENDING = EvaluationStatus.PENDING.value
_FAILED = EvaluationStatus.FAILED.value
_SUCCEEDED = EvaluationStatus.SUCCEEDED.value


@dataclass(frozen=True)
class ScorerSpec:
    """One scorer of a job (name, version, rate, filter), frozen into the job row."""

    name: str
    version: int
    sample_rate: float
    filter_string: str | None = None


class LeaseLostError(Exception):
    """Another holder took the job over (our lease had expired): drop what we hold."""


def update_job(conn: Connection, job_id: str, owner: str, values: dict[str, Any]) -> bool:
    """Update the job only while ``owner`` holds its lease; tell whether it did."""
    j = schema.backfill_jobs
    result = conn.execute(
        sa.update(j).where(j.c.job_id == job_id, j.c.lease_owner == owner).values(**values)
    )
    return bool(result.rowcount)


@dataclass
class PageRow:
    """One trace of a page: the scorers to run, those skipped, and the rows replaced."""

    trace_id: str
    time_ms: int
    inputs: Any = None
    outputs: Any = None
    run: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    replaces: dict[int, int] = field(default_factory=dict)


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
        query = sa.select(*columns).where(
            t.c.experiment_id == self.experiment_id,
            # Online scoring never enqueues unfinished traces; neither does a backfill.
            t.c.status != TraceStatus.IN_PROGRESS.value,
        )
        if self.start_ms is not None:
            query = query.where(t.c.request_time_ms >= self.start_ms)
        if self.end_ms is not None:
            query = query.where(t.c.request_time_ms < self.end_ms)
        return query

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
        t = schema.traces
        query = self._query(payload=payload, existing=existing)
        if after is not None:
            key = sa.tuple_(t.c.request_time_ms, t.c.trace_id)
            query = query.where(key > sa.tuple_(sa.literal(after[0]), sa.literal(after[1])))
        query = query.order_by(t.c.request_time_ms, t.c.trace_id).limit(limit)
        first_flag = 4 if payload else 2
        first_found = first_flag + self._flags if existing else None
        return [
            self._decide(row, payload=payload, first_flag=first_flag, first_found=first_found)
            for row in conn.execute(query)
        ]

    def _decide(
        self, row: Sequence[Any], *, payload: bool, first_flag: int, first_found: int | None
    ) -> PageRow:
        decided = PageRow(row[0], row[1], *(row[2:4] if payload else ()))
        flag = first_flag
        for index, spec in enumerate(self.specs):
            matched = None
            if self._filters[index] is not None:
                matched = bool(row[flag])
                flag += 1
            # The query keeps unfinished traces out, and a job runs its scorers whatever
            # their status now: their rates were frozen into it.
            decision = sampling.decide(
                row[0],
                spec.name,
                active=True,
                filter_matched=matched,
                sample_rate=spec.sample_rate,
            )
            if decision is not sampling.Decision.EVALUATE:
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
        if not check_existing and all(s.sample_rate >= 1.0 for s in self.specs):
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


class Result(NamedTuple):
    """A finished pair: the feedback, or the plain value the scorer returned."""

    trace_id: str
    scorer: int
    outcome: list[Feedback] | Plain
    attempts: int
    replaces: int | None


def _written_query() -> sa.Select[tuple[int, str, str]]:
    e = schema.evaluations
    return sa.select(e.c.id, e.c.trace_id, e.c.scorer_name).where(
        e.c.id > sa.bindparam("before"), e.c.origin == sa.bindparam("origin")
    )


def _supersede(conn: Connection, olds: list[tuple[int, str]]) -> dict[int, dict[str, str]]:
    """Retire replaced evaluations and their feedback; map each to {name: assessment id}."""
    e, a = schema.evaluations, schema.assessments
    replaced: dict[int, dict[str, str]] = {}
    for chunk in in_chunks(olds):
        ids = [old for old, _ in chunk]
        conn.execute(
            sa.update(e).where(e.c.id.in_(ids), e.c.status != _PENDING).values(superseded=True)
        )
        # The trace ids let SQLite use ix_assessments_trace (evaluation_id has no index).
        rows = conn.execute(
            sa.select(a.c.assessment_id, a.c.evaluation_id, a.c.name).where(
                a.c.trace_id.in_([t for _, t in chunk]),
                a.c.evaluation_id.in_(ids),
                a.c.valid.is_(True),
            )
        ).all()
        for assessment_id, evaluation_id, name in rows:
            replaced.setdefault(evaluation_id, {}).setdefault(name, assessment_id)
        for part in in_chunks([r[0] for r in rows]):
            conn.execute(sa.update(a).where(a.c.assessment_id.in_(part)).values(valid=False))
    return replaced


def write_results(
    conn: Connection,
    plan: Plan,
    results: list[Result],
    *,
    origin: str,
    now: int,
    counts: list[dict[str, Any]],
) -> None:
    """Write evaluations and feedback for finished pairs, inside the caller's transaction.

    A pair that online scoring (or another job) wrote since its page was read keeps
    that row: it is counted as skipped and its result dropped. ``counts`` (one dict
    per scorer) is updated in place.
    """
    e = schema.evaluations
    before = conn.execute(sa.select(sa.func.max(e.c.id))).scalar_one() or 0
    olds = [(r.replaces, r.trace_id) for r in results if r.replaces is not None]
    replaced = _supersede(conn, olds) if olds else {}
    base = {
        "id": None,
        "experiment_id": plan.experiment_id,
        "origin": origin,
        "enqueued_ms": now,
        "not_before_ms": 0,
        "lease_owner": None,
        "lease_expires_ms": None,
        "finished_ms": now,
        "superseded": False,
    }
    rows = []
    for result in results:
        spec, outcome = plan.specs[result.scorer], result.outcome
        failed = isinstance(outcome, list) and any(f.error is not None for f in outcome)
        row = base.copy()
        row["trace_id"] = result.trace_id
        row["scorer_name"] = spec.name
        row["scorer_version"] = spec.version
        row["status"] = _FAILED if failed else _SUCCEEDED
        row["attempts"] = result.attempts
        rows.append(row)
    ledger_insert(conn).executemany(conn, rows)
    # Rows with ids above ``before`` and our origin are exactly the ones just written:
    # this transaction holds the write lock (RETURNING would cost a statement per row).
    written = {
        (trace_id, name): evaluation_id
        for evaluation_id, trace_id, name in bulk.compiled_select(
            conn, "backfill:written", _written_query
        ).fetchall(conn, {"before": before, "origin": origin})
    }
    plain_bases = [plain_base(s.name, s.version, origin=origin, now=now) for s in plan.specs]
    feedback_rows = []
    for result, row in zip(results, rows, strict=True):
        spec, count = plan.specs[result.scorer], counts[result.scorer]
        count["processed"] += 1
        evaluation_id = written.get((result.trace_id, spec.name))
        if evaluation_id is None:
            count["skipped"] += 1
            continue
        count["failed" if row["status"] == _FAILED else "succeeded"] += 1
        previous = replaced.get(result.replaces, {}) if result.replaces is not None else {}
        if isinstance(result.outcome, tuple):
            feedback_rows.append(
                plain_row(
                    result.outcome[0],
                    plain_bases[result.scorer],
                    trace_id=result.trace_id,
                    evaluation_id=evaluation_id,
                )
            )
        else:
            made = [
                assessment_row(
                    item,
                    trace_id=result.trace_id,
                    origin=origin,
                    now_ms=now,
                    evaluation_id=evaluation_id,
                    scorer_name=spec.name,
                    scorer_version=spec.version,
                )
                for item in result.outcome
            ]
            feedback_rows.extend(encode_json(schema.assessments, made))
        if previous:
            # History: the new feedback names the one it replaces (same name, else any).
            fallback = next(iter(previous.values()))
            for feedback_row in feedback_rows[-len(result.outcome) :]:
                feedback_row["overrides"] = previous.get(feedback_row["name"], fallback)
    insert_encoded(conn, schema.assessments, feedback_rows)
