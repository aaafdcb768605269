"""The one writer from scorer outcomes to the ledger and the feedback rows.

Online scoring and backfill jobs finish evaluations the same way: a final status
(``FAILED`` when any feedback carries an error, else ``SUCCEEDED``) and the feedback
rows, named after the scorer version and stamped with the evaluation's origin, in the
transaction that retires the evaluation. They differ only in where the evaluation row
comes from: an online claim already has its row (leased to us), a backfill writes it
with the result (``ON CONFLICT DO NOTHING``: the partial unique index on
(trace, scorer, version) keeps reruns and races to one current row).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import sqlalchemy as sa

from localscorers.models import (
    AssessmentError,
    AssessmentSource,
    AssessmentSourceType,
    EvaluationStatus,
    Feedback,
)
from localscorers.store import bulk, dialect, schema
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

__all__ = [
    "FeedbackRows",
    "Finished",
    "Plain",
    "crash_feedback",
    "fail_crashed",
    "final_status",
    "insert_finished",
    "ledger_insert",
]

# A scorer's plain return value (bool, number or string) in a 1-tuple, not yet Feedback:
# written as the feedback ``to_feedback`` would make of it, without building it.
Plain = tuple[bool | int | float | str]

_PENDING = EvaluationStatus.PENDING.value
_SUCCEEDED = EvaluationStatus.SUCCEEDED.value
_FAILED = EvaluationStatus.FAILED.value


def final_status(result: Sequence[Feedback] | Plain) -> str:
    """Return the status an evaluation ends with: FAILED when any feedback has an error."""
    if isinstance(result, tuple):
        return _SUCCEEDED
    return _FAILED if any(f.error is not None for f in result) else _SUCCEEDED


class FeedbackRows:
    """Build the feedback rows of finished evaluations, JSON-encoded, for one write.

    Args:
        now: the write's time, in epoch milliseconds.
    """

    def __init__(self, now: int) -> None:
        self.now = now
        self._bases: dict[tuple[str, int, str], dict[str, Any]] = {}

    def build(
        self,
        result: Sequence[Feedback] | Plain,
        *,
        trace_id: str,
        scorer_name: str,
        scorer_version: int,
        origin: str,
        evaluation_id: int,
        replaced: dict[str, str] | None = None,
    ) -> Sequence[dict[str, Any]]:
        """Return the rows of one evaluation's result.

        ``replaced`` maps feedback names to the assessments a rescore replaces: each new
        row names the one it overrides (same name, else any), keeping history.
        """
        if isinstance(result, tuple):
            key = (scorer_name, scorer_version, origin)
            base = self._bases.get(key)
            if base is None:
                base = self._bases[key] = plain_base(
                    scorer_name, scorer_version, origin=origin, now=self.now
                )
            made = [plain_row(result[0], base, trace_id=trace_id, evaluation_id=evaluation_id)]
        else:
            rows = [
                assessment_row(
                    item,
                    trace_id=trace_id,
                    origin=origin,
                    now_ms=self.now,
                    evaluation_id=evaluation_id,
                    scorer_name=scorer_name,
                    scorer_version=scorer_version,
                )
                for item in result
            ]
            made = list(encode_json(schema.assessments, rows))
        if replaced:
            fallback = next(iter(replaced.values()))
            for row in made:
                row["overrides"] = replaced.get(row["name"], fallback)
        return made


def _insert_ignore(conn: Connection) -> Callable[[], sa.Insert]:
    def build() -> sa.Insert:
        e = schema.evaluations
        # The id is left to the database (PostgreSQL refuses an explicit NULL id).
        values: dict[str, Any] = {c.name: sa.bindparam(c.name) for c in e.c if c is not e.c.id}
        insert: sa.Insert = dialect.of(conn).insert_ignore(e).values(values)
        return insert

    return build


def ledger_insert(conn: Connection) -> bulk.CompiledStatement:
    """Return the compiled insert-or-ignore of ``evaluations`` rows (all columns but the id).

    A row whose (trace, scorer, version) already has a current evaluation is skipped:
    the unique index decides, so online moves and backfills never make a second one.
    """
    return bulk.compiled_select(conn, "evaluations:insert-ignore", _insert_ignore(conn))


class Finished(NamedTuple):
    """An evaluation finished outside the ledger (by a backfill), to be written with its row.

    ``replaces`` is the id of the current evaluation a rescore supersedes.
    """

    trace_id: str
    scorer_name: str
    scorer_version: int
    result: Sequence[Feedback] | Plain
    attempts: int
    replaces: int | None = None


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


@dataclass(frozen=True)
class _Origin:
    experiment_id: str
    origin: str
    now: int


def _ledger_rows(where: _Origin, results: Sequence[Finished]) -> list[dict[str, Any]]:
    base = {
        "id": None,
        "experiment_id": where.experiment_id,
        "origin": where.origin,
        "enqueued_ms": where.now,
        "not_before_ms": 0,
        "lease_owner": None,
        "lease_expires_ms": None,
        "finished_ms": where.now,
        "superseded": False,
    }
    rows = []
    for result in results:
        row = base.copy()
        row["trace_id"] = result.trace_id
        row["scorer_name"] = result.scorer_name
        row["scorer_version"] = result.scorer_version
        row["status"] = final_status(result.result)
        row["attempts"] = result.attempts
        rows.append(row)
    return rows


def insert_finished(
    conn: Connection,
    results: Sequence[Finished],
    *,
    experiment_id: str,
    origin: str,
    now: int,
    on_written: Callable[[Finished, str | None], None],
) -> None:
    """Write evaluations finished outside the ledger, with their feedback, in ``conn``.

    A pair that online scoring (or another job) wrote since it was read keeps that row:
    ``on_written`` is called for each result with its final status, or None when its
    row was not written (the result is dropped).
    """
    e = schema.evaluations
    before = conn.execute(sa.select(sa.func.max(e.c.id))).scalar_one() or 0
    olds = [(r.replaces, r.trace_id) for r in results if r.replaces is not None]
    replaced = _supersede(conn, olds) if olds else {}
    rows = _ledger_rows(_Origin(experiment_id, origin, now), results)
    ledger_insert(conn).executemany(conn, rows)
    # Rows with ids above ``before`` and our origin are exactly the ones just written:
    # this transaction holds the write lock (RETURNING would cost a statement per row).
    written = {
        (trace_id, name): evaluation_id
        for evaluation_id, trace_id, name in bulk.compiled_select(
            conn, "backfill:written", _written_query
        ).fetchall(conn, {"before": before, "origin": origin})
    }
    builder = FeedbackRows(now)
    feedback_rows: list[dict[str, Any]] = []
    for result, row in zip(results, rows, strict=True):
        evaluation_id = written.get((result.trace_id, result.scorer_name))
        if evaluation_id is None:
            on_written(result, None)
            continue
        on_written(result, row["status"])
        feedback_rows.extend(
            builder.build(
                result.result,
                trace_id=result.trace_id,
                scorer_name=result.scorer_name,
                scorer_version=result.scorer_version,
                origin=origin,
                evaluation_id=evaluation_id,
                replaced=replaced.get(result.replaces) if result.replaces is not None else None,
            )
        )
    insert_encoded(conn, schema.assessments, feedback_rows)


def crash_feedback(name: str, attempts: int) -> Feedback:
    """The feedback of a pair whose calls killed ``attempts`` processes: ``SCORER_CRASHED``."""
    message = (
        f"Scorer {name!r} was claimed {attempts} times and each time its process ended "
        "before the call returned (a crash, os._exit, a native fault or a kill); giving up "
        f"after LOCALSCORERS_MAX_ATTEMPTS={attempts}. Fix the scorer, or raise "
        "LOCALSCORERS_MAX_ATTEMPTS if the processes were killed for another reason."
    )
    return Feedback(
        name=name,
        source=AssessmentSource(source_type=AssessmentSourceType.CODE, source_id=name),
        error=AssessmentError(error_code="SCORER_CRASHED", error_message=message),
    )


def fail_crashed(conn: Connection, rows: Sequence[Any], now: int) -> None:
    """Retire evaluations whose every claim died, as FAILED with ``SCORER_CRASHED``."""
    e = schema.evaluations
    conn.execute(
        sa.update(e)
        .where(e.c.id.in_([r.id for r in rows]), e.c.status == _PENDING)
        .values(status=_FAILED, finished_ms=now, lease_owner=None, lease_expires_ms=None)
    )
    builder = FeedbackRows(now)
    feedback = [
        row
        for r in rows
        for row in builder.build(
            [crash_feedback(r.scorer_name, r.attempts)],
            trace_id=r.trace_id,
            scorer_name=r.scorer_name,
            scorer_version=r.scorer_version,
            origin=r.origin,
            evaluation_id=r.id,
        )
    ]
    insert_encoded(conn, schema.assessments, feedback)
