"""The SQL of session-level scoring: finding idle sessions, and reading a session's traces.

A session is the traces of one experiment sharing the metadata ``mlflow.trace.session``,
in time order (``request_time_ms``, then trace id). A session scorer evaluates a
session REVISION, named by its last trace: the ledger row is the ordinary
(trace, scorer, version) row with trace = that last trace, so a new turn (a new last
trace) makes the session due again, and exactly-once holds through the normal claim
and complete path.

Online, nothing is enqueued when a trace commits. ``enqueue_idle`` (run by the online
runner's steps) finds sessions silent for ``session_idle_seconds`` (by ``ingested_ms``,
the commit time) whose last trace has no current row for the scorer version, samples
them by session id, and inserts PENDING rows with insert-or-ignore.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from localscorers import sampling
from localscorers.filters import parser
from localscorers.models import EvaluationStatus, ScorerStatus, TraceStatus
from localscorers.store import filter_sql, schema
from localscorers.store.results import ledger_insert
from localscorers.store.rows import ONLINE_SCORING_KEY, in_chunks

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from localscorers.store.database import Database

__all__ = [
    "SESSION_KEY",
    "SessionFacts",
    "SessionScorer",
    "SessionState",
    "enqueue_idle",
    "idle_candidates",
    "session_facts",
    "session_of",
    "session_scorers",
    "session_traces",
    "takes_session_column",
]

SESSION_KEY = "mlflow.trace.session"
_PENDING = EvaluationStatus.PENDING.value


@dataclass(frozen=True)
class SessionScorer:
    """An ACTIVE session-level scorer, as the session scan needs it.

    ``active_since_ms`` is when this version became active (the start of its current
    ACTIVE stretch): sessions silent since before then are not scored online, as
    traces committed before ``start()`` are not.
    """

    experiment_id: str
    name: str
    version: int
    sample_rate: float
    filter_string: str | None
    idle_ms: int
    active_since_ms: int


@dataclass(frozen=True)
class SessionState:
    """One session of an experiment: its last trace and its newest commit time."""

    session_id: str
    last_trace_id: str
    last_ingested_ms: int
    last_status: str


def takes_session_column() -> sa.ScalarSelect[Any]:
    """The current version's ``takes_session``, correlated to a ``scorers`` row."""
    s, v = schema.scorers, schema.scorer_versions
    return (
        sa.select(v.c.takes_session)
        .where(
            v.c.experiment_id == s.c.experiment_id,
            v.c.name == s.c.name,
            v.c.version == s.c.version,
        )
        .correlate(s)
        .scalar_subquery()
    )


def session_scorers(db: Database) -> list[SessionScorer]:
    """Return every ACTIVE session-level scorer of the database."""
    s, e = schema.scorers, schema.scorer_events
    query = (
        sa.select(
            s.c.experiment_id,
            s.c.name,
            s.c.version,
            s.c.sample_rate,
            s.c.filter_string,
            s.c.session_idle_seconds,
        )
        .where(s.c.status == ScorerStatus.ACTIVE.value, takes_session_column() == sa.true())
        .order_by(s.c.experiment_id, s.c.name)
    )
    found = []
    with db.read() as conn:
        for row in conn.execute(query).all():
            events = conn.execute(
                sa.select(e.c.status, e.c.version, e.c.at_ms)
                .where(e.c.experiment_id == row.experiment_id, e.c.name == row.name)
                .order_by(e.c.at_ms.desc(), e.c.id.desc())
            ).all()
            since = 0
            for event in events:  # newest first: back to where this version became active
                if event.status != ScorerStatus.ACTIVE.value or event.version != row.version:
                    break
                since = int(event.at_ms)
            found.append(
                SessionScorer(
                    row.experiment_id,
                    row.name,
                    int(row.version),
                    float(row.sample_rate),
                    row.filter_string,
                    round(float(row.session_idle_seconds) * 1000),
                    since,
                )
            )
    return found


def _scored_online(t: sa.Table) -> sa.ColumnElement[bool]:
    """Traces written with online scoring on (``evaluate`` rows and imports are off)."""
    m = schema.trace_metadata.alias("online_scoring")  # the outer query reads the table too
    return ~sa.exists().where(
        m.c.trace_id == t.c.trace_id, m.c.key == ONLINE_SCORING_KEY, m.c.value == "off"
    )


def _sessions(
    conn: Connection, experiment_id: str, session_ids: Sequence[str]
) -> dict[str, SessionState]:
    """Return the state of the given sessions (their last trace, their newest commit)."""
    t, m = schema.traces, schema.trace_metadata
    states: dict[str, SessionState] = {}
    newest: dict[str, int] = {}
    for chunk in in_chunks(list(session_ids)):
        rows = conn.execute(
            sa.select(m.c.value, t.c.trace_id, t.c.ingested_ms, t.c.status)
            .join(t, t.c.trace_id == m.c.trace_id)
            .where(m.c.key == SESSION_KEY, m.c.value.in_(chunk), t.c.experiment_id == experiment_id)
            .order_by(m.c.value, t.c.request_time_ms, t.c.trace_id)
        ).all()
        for session_id, trace_id, ingested_ms, status in rows:
            newest[session_id] = max(newest.get(session_id, 0), int(ingested_ms))
            states[session_id] = SessionState(session_id, trace_id, newest[session_id], status)
    return states


def idle_candidates(
    conn: Connection, scorer: SessionScorer, *, now_ms: int, floor_ms: int
) -> dict[str, int]:
    """Return the sessions silent since ``now_ms - idle``, active since ``floor_ms``.

    Each with its newest commit time (traces scored online only).

    Sessions whose newest commit is before ``floor_ms`` were decided by an earlier scan
    (or predate the scorer); the caller keeps that floor moving up. The sessions with a
    commit since the floor are found first, so a scan reads the recent traces and their
    sessions, not every session of the experiment.
    """
    t, m = schema.traces, schema.trace_metadata
    floor = max(floor_ms, scorer.active_since_ms)
    recent = (
        sa.select(m.c.value)
        .join(t, t.c.trace_id == m.c.trace_id)
        .where(
            m.c.key == SESSION_KEY,
            t.c.experiment_id == scorer.experiment_id,
            t.c.ingested_ms >= floor,
        )
        .distinct()
    )
    ids = [str(v) for v in conn.execute(recent).scalars() if v]
    newest = sa.func.max(t.c.ingested_ms)
    found: dict[str, int] = {}
    for chunk in in_chunks(ids):
        query = (
            sa.select(m.c.value, newest)
            .join(t, t.c.trace_id == m.c.trace_id)
            .where(
                m.c.key == SESSION_KEY,
                m.c.value.in_(chunk),
                t.c.experiment_id == scorer.experiment_id,
                _scored_online(t),
            )
            .group_by(m.c.value)
            .having(newest <= now_ms - scorer.idle_ms)
        )
        found.update((str(v), int(ms)) for v, ms in conn.execute(query))
    return found


def _without_current(conn: Connection, scorer: SessionScorer, trace_ids: Iterable[str]) -> set[str]:
    """Return the traces among ``trace_ids`` with no current row for the scorer version."""
    e = schema.evaluations
    ids = list(trace_ids)
    have: set[str] = set()
    for chunk in in_chunks(ids):
        have.update(
            conn.execute(
                sa.select(e.c.trace_id).where(
                    e.c.trace_id.in_(chunk),
                    e.c.scorer_name == scorer.name,
                    e.c.scorer_version == scorer.version,
                    e.c.superseded == sa.false(),
                )
            ).scalars()
        )
    return {i for i in ids if i not in have}


def enqueue_idle(
    db: Database,
    scorer: SessionScorer,
    *,
    now_ms: int,
    floor_ms: int = 0,
    decided: dict[str, int] | None = None,
) -> int:
    """Enqueue the scorer on every idle, sampled session whose last trace it has not scored.

    Candidates are found with a read; the write transaction checks again that each
    session is still idle (no trace committed since the read) before inserting its row,
    so a session still receiving traces within the idle window is never enqueued.
    ``decided`` (session id -> newest commit when decided: enqueued, scored already,
    sampled or filtered out) lets later scans skip sessions that have not changed since;
    it is updated. Returns how many PENDING rows were inserted.
    """
    memo: dict[str, int] = {} if decided is None else decided
    with db.read() as conn:
        found = idle_candidates(conn, scorer, now_ms=now_ms, floor_ms=floor_ms)
        found = {sid: ms for sid, ms in found.items() if memo.get(sid) != ms}
        candidates = []
        for session_id, newest in found.items():
            if sampling.is_sampled(session_id, scorer.name, scorer.sample_rate):
                candidates.append(session_id)
            else:
                memo[session_id] = newest
        if not candidates:
            return 0
        states = _sessions(conn, scorer.experiment_id, candidates)
        due = [s for s in states.values() if s.last_status != TraceStatus.IN_PROGRESS.value]
        matching = _matching(conn, scorer, due)
        fresh = _without_current(conn, scorer, (s.last_trace_id for s in matching))
        matched = {s.session_id for s in matching}
        for state in due:
            if state.session_id not in matched or state.last_trace_id not in fresh:
                memo[state.session_id] = found[state.session_id]
        due = [s for s in matching if s.last_trace_id in fresh]
    if not due:
        return 0
    with db.write() as conn:
        now_states = _sessions(conn, scorer.experiment_id, [s.session_id for s in due])
        rows = [
            _pending_row(scorer, state.last_trace_id, now_ms)
            for state in due
            if now_states.get(state.session_id) == state
            and state.last_ingested_ms <= now_ms - scorer.idle_ms
        ]
        if rows:
            ledger_insert(conn).executemany(conn, rows)
    for state in due:
        if now_states.get(state.session_id) == state:
            memo[state.session_id] = found[state.session_id]
    return len(rows)


def _matching(
    conn: Connection, scorer: SessionScorer, states: list[SessionState]
) -> list[SessionState]:
    """Keep the sessions whose last trace matches the scorer's filter (all without one)."""
    if not scorer.filter_string:
        return states
    expr = parser.parse(scorer.filter_string)
    return [s for s in states if filter_sql.matches_for_trace(conn, s.last_trace_id, [expr])[0]]


def _pending_row(scorer: SessionScorer, trace_id: str, now_ms: int) -> dict[str, Any]:
    return {
        "trace_id": trace_id,
        "experiment_id": scorer.experiment_id,
        "scorer_name": scorer.name,
        "scorer_version": scorer.version,
        "origin": "online",
        "status": _PENDING,
        "attempts": 0,
        "enqueued_ms": now_ms,
        "not_before_ms": 0,
        "lease_owner": None,
        "lease_expires_ms": None,
        "finished_ms": None,
        "superseded": False,
    }


def session_of(conn: Connection, trace_id: str) -> str | None:
    """Return the session id of a trace (its ``mlflow.trace.session``), if any."""
    m = schema.trace_metadata
    value = conn.execute(
        sa.select(m.c.value).where(m.c.trace_id == trace_id, m.c.key == SESSION_KEY)
    ).scalar()
    return str(value) if value else None


def session_traces(
    conn: Connection, trace_id: str
) -> tuple[str | None, list[str], SessionState | None]:
    """Return a trace's session: its id, its trace ids up to this trace, and its state now.

    The trace ids are in time order and end with ``trace_id`` (the revision it names);
    a trace outside any session is a session of its own (``[trace_id]``, no state).
    """
    session_id = session_of(conn, trace_id)
    if session_id is None:
        return None, [trace_id], None
    t, m = schema.traces, schema.trace_metadata
    experiment_id = conn.execute(
        sa.select(t.c.experiment_id).where(t.c.trace_id == trace_id)
    ).scalar_one()
    rows = conn.execute(
        sa.select(t.c.trace_id)
        .join(m, t.c.trace_id == m.c.trace_id)
        .where(m.c.key == SESSION_KEY, m.c.value == session_id, t.c.experiment_id == experiment_id)
        .order_by(t.c.request_time_ms, t.c.trace_id)
    ).scalars()
    ordered = [str(i) for i in rows]
    upto = ordered[: ordered.index(trace_id) + 1] if trace_id in ordered else [trace_id]
    state = _sessions(conn, experiment_id, [session_id]).get(session_id)
    return session_id, upto, state


@dataclass(frozen=True)
class SessionFacts:
    """What ``explain`` needs to say why a session scorer has not scored a trace.

    ``scorer`` is the ACTIVE session scorer of that name (None when it is not active).
    """

    session_id: str | None
    state: SessionState | None
    scorer: SessionScorer | None
    filter_matched: bool | None = None  # the last trace against the scorer's filter


def session_facts(db: Database, trace_id: str, experiment_id: str, name: str) -> SessionFacts:
    """Read the trace's session (its last trace, newest commit) and the scorer's config."""
    active = [s for s in session_scorers(db) if s.experiment_id == experiment_id and s.name == name]
    scorer = active[0] if active else None
    with db.read() as conn:
        session_id, _upto, state = session_traces(conn, trace_id)
        matched = None
        if scorer is not None and scorer.filter_string and state is not None:
            matched = bool(_matching(conn, scorer, [state]))
    return SessionFacts(session_id, state, scorer, matched)
