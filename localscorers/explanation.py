"""``explain(trace_id)``: why each scorer of the experiment did or did not score a trace.

The answer is reconstructed from durable facts only (read by ``store/explain_facts.py``):
the evaluation ledger (pending, succeeded, failed), and otherwise the scorer's lifecycle
history at the moment the trace was committed, replayed through the same filter and the
same decision (``sampling.decide``) the enqueue path used.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from localscorers import _clock, _context, sampling
from localscorers.exceptions import ConfigurationError, TraceNotFoundError
from localscorers.models import EvaluationStatus, ScorerStatus
from localscorers.store.explain_facts import ConfigFact, EvaluationFact, TraceFacts
from localscorers.store.sessions import SessionFacts, SessionState, session_facts

if TYPE_CHECKING:
    from localscorers.store import ExplainReader

__all__ = ["ExplainEntry", "ExplainOutcome", "Explanation", "explain"]


class ExplainOutcome(StrEnum):
    """What happened between a trace and one scorer."""

    FILTERED_OUT = "FILTERED_OUT"
    SAMPLED_OUT = "SAMPLED_OUT"
    NOT_ACTIVE = "NOT_ACTIVE"
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    # A session scorer waits for the session to go quiet (``session_idle_seconds``).
    SESSION_NOT_IDLE = "SESSION_NOT_IDLE"

    @property
    def words(self) -> str:
        """The outcome as people say it: ``"filtered out"``, ``"session not idle yet"``, ..."""
        if self is ExplainOutcome.SESSION_NOT_IDLE:
            return "session not idle yet"
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
    if not isinstance(trace_id, str):
        raise ConfigurationError(
            f"trace_id must be a trace id string such as 'tr-...', got {type(trace_id).__name__}."
        )
    runtime = _context.current()
    store = runtime.storage.explain()
    header = store.header(trace_id)
    if header is None:
        raise TraceNotFoundError(
            f"No trace has id {trace_id!r}. Check the id, or the tracking URI "
            "(get_tracking_uri()) if the trace was logged to another database."
        )
    states = runtime.registry.list(header.experiment_id)
    names = [state.name for state in states]
    facts = store.facts(header, names)
    entries = []
    for state in states:
        entry = _entry(facts, state.name)
        if state.takes_session and entry.outcome is not ExplainOutcome.PENDING:
            entry = _session_entry(store, facts, state.name) or entry
        entries.append(entry)
    return Explanation(trace_id, entries)


def _session_entry(store: ExplainReader, facts: TraceFacts, name: str) -> ExplainEntry | None:
    """Explain a session-level scorer: it scores sessions, on their last trace, once idle.

    None when the trace has its own evaluation (it was the last trace of a revision).
    """
    if name in facts.evaluations:
        return None
    header = facts.header
    found = session_facts(_context.current().db, header.trace_id, header.experiment_id, name)
    if found.session_id is None or found.state is None:
        return ExplainEntry(
            name,
            ExplainOutcome.NOT_ACTIVE,
            "a session-level scorer, and this trace belongs to no session (no metadata "
            "mlflow.trace.session)",
        )
    last = found.state.last_trace_id
    if last != header.trace_id:
        last_header = store.header(last)
        assert last_header is not None  # noqa: S101 - read as the session's last trace
        last_facts = store.facts(last_header, [name])
        on_last = _session_entry(store, last_facts, name) or _entry(last_facts, name)
        return ExplainEntry(
            name,
            on_last.outcome,
            f"session {found.session_id!r} is scored on its last trace {last}: {on_last.detail}",
        )
    return _idle_entry(name, found, found.state, found.session_id)


def _idle_entry(
    name: str, found: SessionFacts, state: SessionState, session_id: str
) -> ExplainEntry:
    """Explain the session's last trace, which has no evaluation of the scorer yet."""
    scorer = found.scorer
    if scorer is None:
        return ExplainEntry(
            name,
            ExplainOutcome.NOT_ACTIVE,
            "not active now; a session-level scorer scores sessions online only while active "
            "(run a backfill to score past sessions)",
        )
    quiet = (_clock.now_ms() - state.last_ingested_ms) / 1000
    idle = scorer.idle_ms / 1000
    if quiet < idle:
        return ExplainEntry(
            name,
            ExplainOutcome.SESSION_NOT_IDLE,
            f"session not idle yet: session {session_id!r} last received a trace {quiet:.1f} s "
            f"ago; it is scored after session_idle_seconds={idle:g} s of silence",
        )
    if not sampling.is_sampled(session_id, name, scorer.sample_rate):
        fraction = sampling.sample_fraction(session_id, name)
        return ExplainEntry(
            name,
            ExplainOutcome.SAMPLED_OUT,
            f"session {session_id!r}: sample position {fraction:.4f} >= sample_rate "
            f"{scorer.sample_rate:g} (sampling v1, by session id)",
        )
    if found.filter_matched is False:
        return ExplainEntry(
            name,
            ExplainOutcome.FILTERED_OUT,
            f"the session's last trace does not match filter: {scorer.filter_string}",
        )
    if state.last_ingested_ms < scorer.active_since_ms:
        return ExplainEntry(
            name,
            ExplainOutcome.NOT_ACTIVE,
            "the session went quiet before this scorer version was started; run a backfill "
            "to score it",
        )
    return ExplainEntry(
        name,
        ExplainOutcome.PENDING,
        f"session {session_id!r} is idle; the next session scan of a running monitor or "
        "worker enqueues it",
    )


def _entry(facts: TraceFacts, name: str) -> ExplainEntry:
    evaluation = facts.evaluations.get(name)
    requested = facts.requested.get(name, [])
    # A request for a version already in the ledger will be dropped when it is moved.
    if requested and (evaluation is None or max(requested) > evaluation.scorer_version):
        return ExplainEntry(
            name,
            ExplainOutcome.PENDING,
            f"waiting to be evaluated (version {max(requested)}, online)",
        )
    if evaluation is not None:
        return _from_evaluation(name, evaluation)
    return _from_history(facts, name)


def _from_history(facts: TraceFacts, name: str) -> ExplainEntry:
    # Replays the enqueue decision with the config in force when the trace was committed.
    # Every config in force during the trace's millisecond is a candidate; the trace got
    # no evaluation, so the candidate that explains why is the one that held.
    for config in facts.configs.get(name, [None]):
        entry = _replay(facts, name, config)
        if entry is not None:
            return entry
    if facts.online_scoring_off:
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


def _replay(facts: TraceFacts, name: str, config: ConfigFact | None) -> ExplainEntry | None:
    """Return why this config enqueued nothing for the trace, or None if it would have."""
    if config is None:
        return ExplainEntry(
            name, ExplainOutcome.NOT_ACTIVE, "not registered yet when the trace was logged"
        )
    trace_id = facts.header.trace_id
    decision = sampling.decide(
        trace_id,
        name,
        active=config.status == ScorerStatus.ACTIVE.value,
        filter_matched=config.filter_matched,
        sample_rate=config.sample_rate,
        finished=facts.header.status != "IN_PROGRESS",
    )
    if decision is sampling.Decision.EVALUATE:
        return None
    return ExplainEntry(name, *_reason(decision, trace_id, name, config))


def _reason(
    decision: sampling.Decision, trace_id: str, name: str, config: ConfigFact
) -> tuple[ExplainOutcome, str]:
    """Say in explain's words why the decision was not to evaluate."""
    if decision is sampling.Decision.NOT_ACTIVE:
        return ExplainOutcome.NOT_ACTIVE, f"{config.status} when the trace was logged"
    if decision is sampling.Decision.FILTERED_OUT:
        return (
            ExplainOutcome.FILTERED_OUT,
            f"trace does not match filter: {config.filter_string}",
        )
    if decision is sampling.Decision.SAMPLED_OUT:
        fraction = sampling.sample_fraction(trace_id, name)
        return (
            ExplainOutcome.SAMPLED_OUT,
            f"sample position {fraction:.4f} >= sample_rate {config.sample_rate:g} (sampling v1)",
        )
    return ExplainOutcome.NOT_ACTIVE, "trace is IN_PROGRESS; only finished traces are scored"


def _from_evaluation(name: str, evaluation: EvaluationFact) -> ExplainEntry:
    where = f"version {evaluation.scorer_version}, {evaluation.origin}"
    if evaluation.status == EvaluationStatus.PENDING.value:
        retries = f", {evaluation.attempts} attempt(s) so far" if evaluation.attempts else ""
        return ExplainEntry(
            name, ExplainOutcome.PENDING, f"waiting to be evaluated ({where}{retries})"
        )
    if evaluation.status == EvaluationStatus.FAILED.value:
        errors = [error for _name, _value, error in evaluation.feedback if error]
        first = errors[0] if errors else {}
        message = f"{first.get('error_code', 'ERROR')}: {first.get('error_message') or ''}".strip()
        return ExplainEntry(name, ExplainOutcome.FAILED, f"{message} ({where})")
    values = ", ".join(f"{n}={v!r}" for n, v, _error in evaluation.feedback) or "no feedback"
    return ExplainEntry(name, ExplainOutcome.SUCCEEDED, f"{values} ({where})")
