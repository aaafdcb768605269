"""The SQL behind ``scorer_report``: per-scorer counts, values and time buckets.

Everything is grouped by scorer in the database, never by loading traces: a report over
a million evaluations costs three ``GROUP BY`` queries. Only current evaluations count
(``superseded = false``), and only feedback a scorer wrote (manual and imported feedback
has no evaluation row).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from localscorers.models import EvaluationStatus
from localscorers.store import schema
from localscorers.store.ledger import requested_counts

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from localscorers.store.database import Database

__all__ = ["BucketRow", "ReportRows", "ReportStore"]

_SUCCEEDED = EvaluationStatus.SUCCEEDED.value
_FAILED = EvaluationStatus.FAILED.value
_PENDING = EvaluationStatus.PENDING.value


@dataclass(frozen=True)
class BucketRow:
    """One scorer's finished evaluations in one time bucket."""

    start_ms: int
    evaluations: int
    errors: int


@dataclass(frozen=True)
class ReportRows:
    """What one report reads, per scorer name, in one read transaction."""

    counts: dict[str, dict[str, Any]]
    requested: dict[str, int]
    values: dict[str, dict[str, Any]]
    width_ms: int
    buckets: dict[str, list[BucketRow]]
    tokens: dict[str, dict[str, int]]
    # Every feedback value of the scorers named in ``read(aggregated=...)``.
    all_values: dict[str, list[Any]]


class ReportStore:
    """Read-only report queries over the evaluation ledger and its feedback."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def read(
        self,
        experiment_id: str,
        *,
        since_ms: int | None,
        width_ms: Callable[[dict[str, dict[str, Any]]], int],
        origin: str | None = None,
        aggregated: Collection[str] = (),
    ) -> ReportRows:
        """Read counts, values and buckets of one experiment's scorers.

        Args:
            experiment_id: the experiment.
            since_ms: only evaluations finished at or after this time (None: all).
            width_ms: chooses the bucket width from the counts (the report picks hours
                or days from the time the data spans).
            origin: only the evaluations of this origin (``evaluate:<id>``, one offline
                evaluation); None: production's (online and backfills), not evaluate's.
            aggregated: scorers whose every value is also read (for their aggregations).
        """
        scope = _Scope(experiment_id, since_ms, origin)
        with self._db.read() as conn:
            counts = _counts(conn, scope)
            requested = requested_counts(conn, experiment_id) if origin is None else {}
            values = _values(conn, scope)
            width = width_ms(counts)
            buckets = _buckets(conn, scope, width)
            tokens = _tokens(conn, scope)
            all_values = {name: _all_values(conn, scope, name) for name in aggregated}
        return ReportRows(counts, requested, values, width, buckets, tokens, all_values)


def _finished_since(since_ms: int | None) -> sa.ColumnElement[bool]:
    e = schema.evaluations
    if since_ms is None:
        return e.c.finished_ms.is_not(None)
    return e.c.finished_ms >= since_ms


# Offline evaluations (``localscorers.evaluate()``) write ledger rows with this origin prefix.
_EVALUATE_PREFIX = "evaluate:"


@dataclass(frozen=True)
class _Scope:
    """Which evaluations a report covers: an experiment's, production's or one evaluation's."""

    experiment_id: str
    since_ms: int | None
    origin: str | None

    def where(self) -> sa.ColumnElement[bool]:
        e = schema.evaluations
        origin = (
            sa.not_(e.c.origin.startswith(_EVALUATE_PREFIX, autoescape=True))
            if self.origin is None
            else e.c.origin == self.origin
        )
        return sa.and_(
            e.c.experiment_id == self.experiment_id, e.c.superseded == sa.false(), origin
        )


def _counts(conn: Connection, scope: _Scope) -> dict[str, dict[str, Any]]:
    e = schema.evaluations

    def status_count(status: str) -> sa.ColumnElement[Any]:
        return sa.func.sum(sa.case((e.c.status == status, 1), else_=0))

    query = (
        sa.select(
            e.c.scorer_name,
            status_count(_SUCCEEDED).label("succeeded"),
            status_count(_FAILED).label("failed"),
            status_count(_PENDING).label("pending"),
            sa.func.min(e.c.finished_ms).label("first_ms"),
            sa.func.max(e.c.finished_ms).label("last_ms"),
        )
        .where(scope.where(), sa.or_(e.c.status == _PENDING, _finished_since(scope.since_ms)))
        .group_by(e.c.scorer_name)
    )
    return {row.scorer_name: dict(row._mapping) for row in conn.execute(query)}


def _values(conn: Connection, scope: _Scope) -> dict[str, dict[str, Any]]:
    e, a = schema.evaluations, schema.assessments
    # The store keeps each value's string and numeric forms; a boolean is the one
    # whose string form is 'true' / 'false' and that also has a numeric form.
    is_bool = sa.and_(a.c.value_num.is_not(None), a.c.value_str.in_(["true", "false"]))
    is_num = sa.and_(a.c.value_num.is_not(None), sa.not_(is_bool))
    is_other = sa.and_(a.c.value_num.is_(None), a.c.value_str.is_not(None))

    def count_where(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[Any]:
        return sa.func.sum(sa.case((condition, 1), else_=0))

    query = (
        sa.select(
            e.c.scorer_name,
            count_where(is_bool).label("n_bool"),
            count_where(sa.and_(is_bool, a.c.value_num == 1)).label("n_true"),
            count_where(is_num).label("n_num"),
            sa.func.sum(sa.case((is_num, a.c.value_num), else_=None)).label("sum_num"),
            count_where(is_other).label("n_other"),
        )
        .select_from(e.join(a, a.c.evaluation_id == e.c.id))
        .where(
            scope.where(),
            e.c.status == _SUCCEEDED,
            _finished_since(scope.since_ms),
            a.c.kind == "FEEDBACK",
            a.c.valid.is_(True),
        )
        .group_by(e.c.scorer_name)
    )
    return {row.scorer_name: dict(row._mapping) for row in conn.execute(query)}


def _all_values(conn: Connection, scope: _Scope, scorer_name: str) -> list[Any]:
    """One scorer's feedback values: the numeric form, else the text (``"yes"``)."""
    e, a = schema.evaluations, schema.assessments
    query = (
        sa.select(a.c.value_num, a.c.value_str)
        .select_from(e.join(a, a.c.evaluation_id == e.c.id))
        .where(
            scope.where(),
            e.c.scorer_name == scorer_name,
            e.c.status == _SUCCEEDED,
            _finished_since(scope.since_ms),
            a.c.kind == "FEEDBACK",
            a.c.valid.is_(True),
        )
    )
    return [num if num is not None else text for num, text in conn.execute(query)]


def _tokens(conn: Connection, scope: _Scope) -> dict[str, dict[str, int]]:
    """Tokens in and out that LLM judges reported in their feedback's metadata.

    Failed evaluations count too (an unreadable answer still cost its tokens); answers
    served from the judge cache carry no token counts, so they add nothing.
    """
    e, a = schema.evaluations, schema.assessments
    query = (
        sa.select(
            e.c.scorer_name,
            sa.func.sum(a.c.meta["prompt_tokens"].as_integer()).label("prompt_tokens"),
            sa.func.sum(a.c.meta["completion_tokens"].as_integer()).label("completion_tokens"),
        )
        .select_from(e.join(a, a.c.evaluation_id == e.c.id))
        .where(
            scope.where(),
            e.c.status.in_([_SUCCEEDED, _FAILED]),
            _finished_since(scope.since_ms),
            a.c.source_type == "LLM_JUDGE",
        )
        .group_by(e.c.scorer_name)
    )
    return {
        row.scorer_name: {
            "prompt_tokens": int(row.prompt_tokens or 0),
            "completion_tokens": int(row.completion_tokens or 0),
        }
        for row in conn.execute(query)
    }


def _buckets(conn: Connection, scope: _Scope, width_ms: int) -> dict[str, list[BucketRow]]:
    e = schema.evaluations
    # Floor division of integers is portable SQL (SQLAlchemy renders it per dialect).
    index = (e.c.finished_ms // width_ms).label("bucket")
    query = (
        sa.select(
            e.c.scorer_name,
            index,
            sa.func.count().label("evaluations"),
            sa.func.sum(sa.case((e.c.status == _FAILED, 1), else_=0)).label("errors"),
        )
        .where(
            scope.where(), e.c.status.in_([_SUCCEEDED, _FAILED]), _finished_since(scope.since_ms)
        )
        .group_by(e.c.scorer_name, index)
        .order_by(e.c.scorer_name, index)
    )
    result: dict[str, list[BucketRow]] = {}
    for row in conn.execute(query):
        result.setdefault(row.scorer_name, []).append(
            BucketRow(
                start_ms=int(row.bucket) * width_ms,
                evaluations=int(row.evaluations),
                errors=int(row.errors or 0),
            )
        )
    return result
