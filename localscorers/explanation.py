"""``explain(trace_id)``: why each scorer of the experiment did or did not score a trace.

The answer is reconstructed from durable facts only: the evaluation ledger (pending,
succeeded, failed), and otherwise the scorer's lifecycle history (``scorer_events``)
at the moment the trace was committed, replayed through the same filter and the same
sampling formula the enqueue path used.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from localscorers import _context, sampling
from localscorers.exceptions import TraceNotFoundError
from localscorers.filters import parser
from localscorers.models import EvaluationStatus, ScorerStatus
from localscorers.store import filter_sql, schema
from localscorers.store.ledger import pending_requests
from localscorers.store.rows import ONLINE_SCORING_KEY

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from localscorers.store.registry import ScorerState

__all__ = ["ExplainEntry", "ExplainOutcome", "Explanation", "explain"]


class ExplainOutcome(StrEnum):
    """What happened between a trace and one scorer."""

    FILTERED_OUT = "FILTERED_OUT"
    SAMPLED_OUT = "SAMPLED_OUT"
    NOT_ACTIVE = "NOT_ACTIVE"
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    @property
    def words(self) -> str:
        """The outcome as people say it: ``"filtered out"``, ``"sampled out"``, ..."""
        return self.value.lower().replace("_", " ")


@dataclass(frozen=True)
class ExplainEntry:
    """One scorer's answer: its name, the outcome, and the detail behind it."""

    scorer_name: str
    outcome: ExplainOutcome
    detail: str


class Explanation(list[ExplainEntry]):
    """The entries of ``explain``, one per scorer; ``str()`` is a readable table."""

    def __init__(self, trace_id: str, entries: list[ExplainEntry]) -> None:
        super().__init__(entries)
        self.trace_id = trace_id

    def __str__(self) -> str:
        if not self:
            return f"Trace {self.trace_id}: the experiment has no registered scorers."
        rows = [(e.scorer_name, e.outcome.words, e.detail) for e in self]
        width_name = max(len("scorer"), *(len(r[0]) for r in rows))
        width_outcome = max(len("outcome"), *(len(r[1]) for r in rows))
        lines = [
            f"Trace {self.trace_id}",
            f"{'scorer':<{width_name}}  {'outcome':<{width_outcome}}  detail",
            f"{'-' * width_name}  {'-' * width_outcome}  ------",
        ]
        lines.extend(f"{n:<{width_name}}  {o:<{width_outcome}}  {d}" for n, o, d in rows)
        return "\n".join(lines)


def explain(trace_id: str) -> Explanation:
    """Say, for each scorer of the trace's experiment, whether and why it scored the trace.

    Raises:
        TraceNotFoundError: no trace has that id.
    """
    runtime = _context.current()
    t = schema.traces
    with runtime.db.read() as conn:
        row = conn.execute(
            sa.select(t.c.experiment_id, t.c.ingested_ms, t.c.status).where(
                t.c.trace_id == trace_id
            )
        ).first()
        if row is None:
            raise TraceNotFoundError(
                f"No trace has id {trace_id!r}. Check the id, or the tracking URI "
                "(get_tracking_uri()) if the trace was logged to another database."
            )
        entries = [
            _entry(conn, trace_id, row.ingested_ms, row.status, state)
            for state in runtime.registry.list(row.experiment_id)
        ]
    return Explanation(trace_id, entries)


def _entry(
    conn: Connection, trace_id: str, ingested_ms: int, trace_status: str, state: ScorerState
) -> ExplainEntry:
    evaluation = _latest_evaluation(conn, trace_id, state.name)
    requested = [v for name, v in pending_requests(conn, trace_id) if name == state.name]
    # A request for a version already in the ledger will be dropped when it is moved.
    if requested and (evaluation is None or max(requested) > evaluation.scorer_version):
        return ExplainEntry(
            state.name,
            ExplainOutcome.PENDING,
            f"waiting to be evaluated (version {max(requested)}, online)",
        )
    if evaluation is not None:
        return _from_evaluation(conn, state.name, evaluation)
    return _from_history(conn, trace_id, ingested_ms, trace_status, state)


def _from_history(
    conn: Connection, trace_id: str, ingested_ms: int, trace_status: str, state: ScorerState
) -> ExplainEntry:
    # Replays the enqueue decision with the config in force when the trace was committed.
    # Commits and lifecycle events are stamped in milliseconds, so every config in force
    # during the trace's millisecond is a candidate (a stop() and a start() can share it);
    # the trace got no evaluation, so the candidate that explains why is the one that held.
    name = state.name
    for config in _configs_at(conn, state.experiment_id, name, ingested_ms):
        entry = _replay(conn, trace_id, trace_status, name, config)
        if entry is not None:
            return entry
    if _online_scoring_off(conn, trace_id):
        return ExplainEntry(
            name,
            ExplainOutcome.NOT_ACTIVE,
            "online scoring was off for this trace (imported with online_scoring=False); "
            "run a backfill to score it",
        )
    return ExplainEntry(
        name,
        ExplainOutcome.NOT_ACTIVE,
        "active and sampled, but no evaluation was recorded (the scorer changed while the "
        "trace was being committed); run a backfill to score it",
    )


def _online_scoring_off(conn: Connection, trace_id: str) -> bool:
    m = schema.trace_metadata
    value = conn.execute(
        sa.select(m.c.value).where(m.c.trace_id == trace_id, m.c.key == ONLINE_SCORING_KEY)
    ).scalar()
    return value == "off"


def _replay(
    conn: Connection, trace_id: str, trace_status: str, name: str, config: dict[str, Any] | None
) -> ExplainEntry | None:
    """Return why this config enqueued nothing for the trace, or None if it would have."""
    if config is None:
        return ExplainEntry(
            name, ExplainOutcome.NOT_ACTIVE, "not registered yet when the trace was logged"
        )
    filter_string = config["filter_string"]
    active = config["status"] == ScorerStatus.ACTIVE.value
    matched = (
        filter_sql.matches_for_trace(conn, trace_id, [parser.parse(filter_string)])[0]
        if filter_string and active
        else None
    )
    decision = sampling.decide(
        trace_id,
        name,
        active=active,
        filter_matched=matched,
        sample_rate=float(config["sample_rate"]),
        finished=trace_status != "IN_PROGRESS",
    )
    if decision is sampling.Decision.EVALUATE:
        return None
    return ExplainEntry(name, *_reason(decision, trace_id, name, config))


def _reason(
    decision: sampling.Decision, trace_id: str, name: str, config: dict[str, Any]
) -> tuple[ExplainOutcome, str]:
    """Say in explain's words why the decision was not to evaluate."""
    if decision is sampling.Decision.NOT_ACTIVE:
        return ExplainOutcome.NOT_ACTIVE, f"{config['status']} when the trace was logged"
    if decision is sampling.Decision.FILTERED_OUT:
        return (
            ExplainOutcome.FILTERED_OUT,
            f"trace does not match filter: {config['filter_string']}",
        )
    if decision is sampling.Decision.SAMPLED_OUT:
        fraction = sampling.sample_fraction(trace_id, name)
        rate = float(config["sample_rate"])
        return (
            ExplainOutcome.SAMPLED_OUT,
            f"sample position {fraction:.4f} >= sample_rate {rate:g} (sampling v1)",
        )
    return ExplainOutcome.NOT_ACTIVE, "trace is IN_PROGRESS; only finished traces are scored"


def _latest_evaluation(conn: Connection, trace_id: str, name: str) -> Any:  # noqa: ANN401 - a Row
    e = schema.evaluations
    return conn.execute(
        sa.select(e.c.id, e.c.status, e.c.scorer_version, e.c.origin, e.c.attempts)
        .where(e.c.trace_id == trace_id, e.c.scorer_name == name, e.c.superseded == sa.false())
        .order_by(e.c.scorer_version.desc(), e.c.id.desc())
        .limit(1)
    ).first()


def _from_evaluation(conn: Connection, name: str, evaluation: Any) -> ExplainEntry:  # noqa: ANN401
    where = f"version {evaluation.scorer_version}, {evaluation.origin}"
    if evaluation.status == EvaluationStatus.PENDING.value:
        retries = f", {evaluation.attempts} attempt(s) so far" if evaluation.attempts else ""
        return ExplainEntry(
            name, ExplainOutcome.PENDING, f"waiting to be evaluated ({where}{retries})"
        )
    a = schema.assessments
    feedback = conn.execute(
        sa.select(a.c.name, a.c.value, a.c.error).where(a.c.evaluation_id == evaluation.id)
    ).all()
    if evaluation.status == EvaluationStatus.FAILED.value:
        errors = [f["error"] for f in (r._mapping for r in feedback) if f["error"]]
        first = errors[0] if errors else {}
        message = f"{first.get('error_code', 'ERROR')}: {first.get('error_message') or ''}".strip()
        return ExplainEntry(name, ExplainOutcome.FAILED, f"{message} ({where})")
    values = ", ".join(f"{r.name}={r.value!r}" for r in feedback) or "no feedback"
    return ExplainEntry(name, ExplainOutcome.SUCCEEDED, f"{values} ({where})")


def _configs_at(
    conn: Connection, experiment_id: str, name: str, at_ms: int
) -> list[dict[str, Any] | None]:
    """Return the configs in force during millisecond ``at_ms``, latest first.

    Those set during that millisecond, then the one in force before it (None when the
    name was not registered yet).
    """
    e = schema.scorer_events
    columns = (e.c.status, e.c.sample_rate, e.c.filter_string)
    mine = sa.and_(e.c.experiment_id == experiment_id, e.c.name == name)
    during = conn.execute(
        sa.select(*columns).where(mine, e.c.at_ms == at_ms).order_by(e.c.id.desc())
    ).all()
    before = conn.execute(
        sa.select(*columns)
        .where(mine, e.c.at_ms < at_ms)
        .order_by(e.c.at_ms.desc(), e.c.id.desc())
        .limit(1)
    ).first()
    configs: list[dict[str, Any] | None] = [dict(row._mapping) for row in during]
    configs.append(None if before is None else dict(before._mapping))
    return configs
