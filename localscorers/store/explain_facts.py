"""The durable facts ``explain(trace_id)`` reasons over, read in one transaction.

``explain`` (``localscorers/explanation.py``) decides nothing from SQL itself: it asks
this module for the trace's header, the evaluations and requests the ledger holds for
it, its feedback, and, for each scorer with neither, the lifecycle configs in force when
the trace was committed, each with its filter already tested against the trace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from localscorers.filters import parser
from localscorers.models import ScorerStatus
from localscorers.store import filter_sql, requests, schema
from localscorers.store.rows import ONLINE_SCORING_KEY

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.engine import Connection

    from localscorers.store.database import Database

__all__ = ["ConfigFact", "EvaluationFact", "ExplainStore", "TraceFacts", "TraceHeader"]


@dataclass(frozen=True)
class TraceHeader:
    """What explain needs of the trace row."""

    trace_id: str
    experiment_id: str
    ingested_ms: int
    status: str


@dataclass(frozen=True)
class EvaluationFact:
    """A scorer's current evaluation of the trace, with the feedback it wrote."""

    id: int
    status: str
    scorer_version: int
    origin: str
    attempts: int
    feedback: list[tuple[str, Any, dict[str, Any] | None]]


@dataclass(frozen=True)
class ConfigFact:
    """A lifecycle config in force when the trace was committed."""

    status: str
    sample_rate: float
    filter_string: str | None
    # None when the filter was not tested (no filter, or the scorer was not active).
    filter_matched: bool | None


@dataclass(frozen=True)
class TraceFacts:
    """Everything explain reads about one trace, per scorer name."""

    header: TraceHeader
    online_scoring_off: bool
    requested: dict[str, list[int]]
    evaluations: dict[str, EvaluationFact]
    # Latest first; None stands for "not registered yet" (DESIGN.md section 7).
    configs: dict[str, list[ConfigFact | None]]


class ExplainStore:
    """Read-only queries behind ``explain``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def header(self, trace_id: str) -> TraceHeader | None:
        """Return the trace's experiment, commit time and status, or None if it is unknown."""
        t = schema.traces
        with self._db.read() as conn:
            row = conn.execute(
                sa.select(t.c.experiment_id, t.c.ingested_ms, t.c.status).where(
                    t.c.trace_id == trace_id
                )
            ).first()
        if row is None:
            return None
        return TraceHeader(trace_id, row.experiment_id, int(row.ingested_ms), row.status)

    def facts(self, header: TraceHeader, names: Sequence[str]) -> TraceFacts:
        """Read the facts about the trace for each named scorer, in one transaction."""
        trace_id = header.trace_id
        with self._db.read() as conn:
            requested: dict[str, list[int]] = {}
            for name, version in requests.pending_requests(conn, trace_id):
                requested.setdefault(name, []).append(version)
            evaluations = {}
            configs = {}
            for name in names:
                found = _latest_evaluation(conn, trace_id, name)
                if found is not None:
                    evaluations[name] = found
                elif name not in requested:
                    configs[name] = _configs_at(conn, header, name)
            off = _online_scoring_off(conn, trace_id)
        return TraceFacts(header, off, requested, evaluations, configs)


def _online_scoring_off(conn: Connection, trace_id: str) -> bool:
    m = schema.trace_metadata
    value = conn.execute(
        sa.select(m.c.value).where(m.c.trace_id == trace_id, m.c.key == ONLINE_SCORING_KEY)
    ).scalar()
    return value == "off"


def _latest_evaluation(conn: Connection, trace_id: str, name: str) -> EvaluationFact | None:
    e, a = schema.evaluations, schema.assessments
    row = conn.execute(
        sa.select(e.c.id, e.c.status, e.c.scorer_version, e.c.origin, e.c.attempts)
        .where(e.c.trace_id == trace_id, e.c.scorer_name == name, e.c.superseded == sa.false())
        .order_by(e.c.scorer_version.desc(), e.c.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    feedback = conn.execute(
        sa.select(a.c.name, a.c.value, a.c.error).where(a.c.evaluation_id == row.id)
    ).all()
    return EvaluationFact(
        id=int(row.id),
        status=row.status,
        scorer_version=int(row.scorer_version),
        origin=row.origin,
        attempts=int(row.attempts or 0),
        feedback=[(f.name, f.value, f.error) for f in feedback],
    )


def _configs_at(conn: Connection, header: TraceHeader, name: str) -> list[ConfigFact | None]:
    """Return the configs in force during the trace's commit millisecond, latest first.

    Those set during that millisecond, then the one in force before it (None when the
    name was not registered yet). Commits and lifecycle events are stamped in
    milliseconds, so a stop() and a start() can share the trace's millisecond.
    """
    e = schema.scorer_events
    columns = (e.c.status, e.c.sample_rate, e.c.filter_string)
    mine = sa.and_(e.c.experiment_id == header.experiment_id, e.c.name == name)
    at_ms = header.ingested_ms
    during = conn.execute(
        sa.select(*columns).where(mine, e.c.at_ms == at_ms).order_by(e.c.id.desc())
    ).all()
    before = conn.execute(
        sa.select(*columns)
        .where(mine, e.c.at_ms < at_ms)
        .order_by(e.c.at_ms.desc(), e.c.id.desc())
        .limit(1)
    ).first()
    rows = [*during, before]
    return [None if row is None else _config(conn, header.trace_id, row) for row in rows]


def _config(conn: Connection, trace_id: str, row: Any) -> ConfigFact:  # noqa: ANN401 - a Row
    active = row.status == ScorerStatus.ACTIVE.value
    matched = (
        filter_sql.matches_for_trace(conn, trace_id, [parser.parse(row.filter_string)])[0]
        if row.filter_string and active
        else None
    )
    return ConfigFact(row.status, float(row.sample_rate), row.filter_string, matched)
