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

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import sqlalchemy as sa

from localscorers.models import (
    AssessmentError,
    AssessmentSource,
    AssessmentSourceType,
    EvaluationStatus,
    Feedback,
)
from localscorers.store import bulk, codec, dialect, schema
from localscorers.store.rows import (
    assessment_row,
    encode_json,
    in_chunks,
    insert_encoded,
    plain_base,
    plain_row,
    value_forms,
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
    "plain_columns",
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


# The columns a backfill binds per row; every other column of its ledger and feedback
# rows is the same for a whole (scorer, version, origin) group, written into the
# statement's text instead (``_constant``). Measured: binding the 20 columns of an
# assessment row cost more than the row's four B-tree inserts (benchmarks/backfill.py).
_LEDGER_VALUES = ("trace_id", "status", "attempts", "now")
_PLAIN_VALUES = ("assessment_id", "trace_id", "evaluation_id", "value", "value_str",
                 "value_num", "now")  # fmt: skip
_STATEMENTS_KEPT = 256  # compiled group statements kept (a few per running job)
_statements: dict[tuple[Any, ...], bulk.CompiledStatement] = {}


def _constant(conn: Connection, value: object) -> sa.ColumnElement[Any]:
    """``value`` written into the SQL text, as the dialect renders a literal (quoted, escaped)."""
    rendered = sa.literal(value).compile(
        dialect=conn.dialect, compile_kwargs={"literal_binds": True}
    )
    return sa.literal_column(str(rendered))


def _group_statement(
    conn: Connection, key: tuple[Any, ...], build: Callable[[], sa.Insert]
) -> bulk.CompiledStatement:
    full = (conn.dialect.name, conn.dialect.driver, *key)
    found = _statements.get(full)
    if found is None:
        if len(_statements) >= _STATEMENTS_KEPT:
            _statements.clear()
        found = _statements[full] = bulk.CompiledStatement(build(), conn.dialect)
    return found


def _ledger_statement(
    conn: Connection, where: _Origin, name: str, version: int
) -> bulk.CompiledStatement:
    """The insert-or-ignore of one scorer version's finished evaluations (``_LEDGER_VALUES``)."""

    def build() -> sa.Insert:
        e = schema.evaluations
        now: sa.BindParameter[int] = sa.bindparam("now")
        values: dict[str, Any] = {
            "trace_id": sa.bindparam("trace_id"),
            "experiment_id": _constant(conn, where.experiment_id),
            "scorer_name": _constant(conn, name),
            "scorer_version": _constant(conn, version),
            "origin": _constant(conn, where.origin),
            "status": sa.bindparam("status"),
            "attempts": sa.bindparam("attempts"),
            "enqueued_ms": now,
            "not_before_ms": _constant(conn, 0),
            "lease_owner": sa.null(),
            "lease_expires_ms": sa.null(),
            "finished_ms": now,
            "superseded": sa.false(),
        }
        insert: sa.Insert = dialect.of(conn).insert_ignore(e).values(values)
        return insert

    key = ("ledger", where.experiment_id, where.origin, name, version)
    return _group_statement(conn, key, build)


def _plain_statement(
    conn: Connection, origin: str, name: str, version: int
) -> bulk.CompiledStatement:
    """The insert of one scorer version's plain-value feedback rows (``_PLAIN_VALUES``).

    The columns left out (rationale, error, metadata, overrides, session) are NULL.
    """

    def build() -> sa.Insert:
        values: dict[str, Any] = {
            "assessment_id": sa.bindparam("assessment_id"),
            "trace_id": sa.bindparam("trace_id"),
            "evaluation_id": sa.bindparam("evaluation_id"),
            "kind": _constant(conn, "FEEDBACK"),
            "name": _constant(conn, name),
            "value": sa.bindparam("value"),
            "value_str": sa.bindparam("value_str"),
            "value_num": sa.bindparam("value_num"),
            "source_type": _constant(conn, "CODE"),
            "source_id": _constant(conn, name),
            "scorer_name": _constant(conn, name),
            "scorer_version": _constant(conn, version),
            "origin": _constant(conn, origin),
            "created_ms": sa.bindparam("now"),
            "valid": sa.true(),
        }
        return sa.insert(schema.assessments).values(values)

    return _group_statement(conn, ("plain", origin, name, version), build)


def plain_columns(value: object) -> tuple[str, str | None, float | None]:
    """Return (value JSON, value_str, value_num) of a plain scorer value, as ``plain_row`` does.

    ``tests/evaluation/test_backfill.py`` checks that both match ``assessment_row``.
    """
    if isinstance(value, bool):
        return ("true", "true", 1.0) if value else ("false", "false", 0.0)
    if type(value) is str and len(value) > 64:  # the cap's env read costs more than these
        value = cast("str", codec.capped(value, limit=codec.max_feedback_bytes()))
        encoded = codec.dumps(value)
    elif type(value) is int and -(2**63) <= value < 2**63:
        encoded = str(value)
    else:
        encoded = codec.dumps(value)
    value_str, value_num = value_forms(value)
    return encoded, value_str, value_num


def _groups(results: Sequence[Finished]) -> dict[tuple[str, int], list[int]]:
    """Positions of the results, by (scorer name, version), in order."""
    groups: dict[tuple[str, int], list[int]] = {}
    for position, result in enumerate(results):
        key = (result.scorer_name, result.scorer_version)
        found = groups.get(key)
        if found is None:
            groups[key] = [position]
        else:
            found.append(position)
    return groups


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
    row was not written (the result is dropped). Rows go one statement per scorer
    version, its constant columns in the statement's text.
    """
    olds = [(r.replaces, r.trace_id) for r in results if r.replaces is not None]
    replaced = _supersede(conn, olds) if olds else {}
    statuses = [final_status(r.result) for r in results]
    groups = _groups(results)
    where = _Origin(experiment_id, origin, now)
    written = _insert_ledger(conn, results, statuses, groups, where)
    builder = FeedbackRows(now)
    feedback_rows: list[dict[str, Any]] = []
    for (name, version), positions in groups.items():
        plain: list[tuple[Any, ...]] = []
        ids = iter(_assessment_ids(len(positions)))
        for i in positions:
            result = results[i]
            evaluation_id = written.get((result.trace_id, name))
            on_written(result, None if evaluation_id is None else statuses[i])
            if evaluation_id is None:
                continue
            value = result.result
            if isinstance(value, tuple) and result.replaces is None:
                row = (next(ids), result.trace_id, evaluation_id, *plain_columns(value[0]), now)
                plain.append(row)
                continue
            old = replaced.get(result.replaces) if result.replaces is not None else None
            feedback_rows.extend(
                builder.build(
                    value,
                    trace_id=result.trace_id,
                    scorer_name=name,
                    scorer_version=version,
                    origin=origin,
                    evaluation_id=evaluation_id,
                    replaced=old,
                )
            )
        _plain_statement(conn, origin, name, version).executemany_values(conn, _PLAIN_VALUES, plain)
    insert_encoded(conn, schema.assessments, feedback_rows)


def _insert_ledger(
    conn: Connection,
    results: Sequence[Finished],
    statuses: Sequence[str],
    groups: dict[tuple[str, int], list[int]],
    where: _Origin,
) -> dict[tuple[str, str], int]:
    """Write the ledger rows of ``results``; return their ids by (trace id, scorer name).

    A pair another writer holds already is not written, so it has no id here.
    """
    e = schema.evaluations
    largest = sa.select(sa.func.max(e.c.id))
    before = conn.execute(largest).scalar_one() or 0
    written = 0
    order: list[tuple[str, str]] = []
    for (name, version), positions in groups.items():
        written += _ledger_statement(conn, where, name, version).executemany_values(
            conn,
            _LEDGER_VALUES,
            [(results[i].trace_id, statuses[i], results[i].attempts, where.now) for i in positions],
        )
        order.extend((results[i].trace_id, name) for i in positions)
    if (
        dialect.of(conn).CONSECUTIVE_IDS
        and written == len(order)
        and conn.execute(largest).scalar_one() == before + written
    ):
        # Every row was written, with the ids after ``before`` in order: reading them
        # back was a tenth of a backfill commit (issue 16).
        return dict(zip(order, range(before + 1, before + written + 1), strict=True))
    # Rows with ids above ``before`` and our origin are exactly the ones just written:
    # this transaction holds the write lock (RETURNING would cost a statement per row).
    return {
        (trace_id, name): evaluation_id
        for evaluation_id, trace_id, name in bulk.compiled_select(
            conn, "backfill:written", _written_query
        ).fetchall(conn, {"before": before, "origin": where.origin})
    }


def _assessment_ids(count: int) -> list[str]:
    """Return ``count`` fresh assessment ids (``a-`` + ``new_id_hex()``) from one urandom call.

    Same shape (the time in milliseconds, then 80 random bits): a ``getrandom``
    system call per id was a tenth of a backfill commit.
    """
    stamp = f"a-{time.time_ns() // 1_000_000:012x}"
    noise = os.urandom(10 * count).hex()
    return [stamp + noise[20 * i : 20 * i + 20] for i in range(count)]


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
