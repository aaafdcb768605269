"""Online session scoring: finding idle sessions, and running session scorers on claims.

A session scorer (one taking ``session``) is never enqueued when a trace commits. The
online runner calls ``SessionScoring.scan_if_due`` on its steps (and ``scan`` before a
flush): every ACTIVE session scorer is enqueued on each session silent for its
``session_idle_seconds``, sampled by session id, as a PENDING ledger row on the
session's last trace (``store.sessions.enqueue_idle``). The row is claimed and
completed like any other, so exactly-once per (session, scorer version, revision)
holds through the same leases. A claimed row runs the scorer on the session's traces up
to the claimed trace, in time order; its feedback carries ``mlflow.trace.session``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from localscorers import _clock
from localscorers.evaluation.execution import ALL_PARAMETERS, LoadedScorer
from localscorers.store.sessions import (
    SESSION_KEY,
    SessionScorer,
    enqueue_idle,
    session_scorers,
    session_traces,
)

if TYPE_CHECKING:
    from localscorers.models import Feedback, Trace
    from localscorers.store import Claim, Connection, Database, Registry, Traces

__all__ = ["SessionItem", "SessionScoring", "load_items", "runnable", "session_call", "stamp"]

# How often a runner looks for sessions that went quiet: a tenth of the shortest idle
# window, within these bounds (a scan reads every session of the experiment), and every
# _UNUSED_SCAN_SECONDS for a scorer started by another process when none is active.
_SCAN_SECONDS = (0.25, 5.0)
_UNUSED_SCAN_SECONDS = 1.0
# A later scan looks back this far before the previous one's cutoff: a trace stamped
# just before a scan may commit just after it (or come from a clock slightly behind).
_LOOKBACK_MS = 60_000

logger = logging.getLogger(__name__)

ScorerKey = tuple[str, str, int]  # (experiment id, scorer name, version)


@dataclass(frozen=True)
class SessionItem:
    """What the scheduler hands a session scorer: the last trace, with the whole session.

    It stands in for the claimed (last) trace; ``session`` holds the session's traces
    up to it, in time order.
    """

    info: Any
    data: Any
    expectations: dict[str, Any]
    session: tuple[Trace, ...]
    session_id: str | None


def session_call(call: Callable[..., Any]) -> Callable[..., Any]:
    """Adapt a session scorer to the scheduler, which calls scorers on one trace."""

    def on_session(*, trace: SessionItem, **_: Any) -> Any:  # noqa: ANN401 - the scorer's value
        return call(session=list(trace.session))

    return on_session


class SessionScoring:
    """A runner's session scoring: the idle scan, the session loads, the feedback stamp.

    Args:
        db: the database.
        store: loads the sessions' traces.
        registry: its change counter says when to re-read the session scorers.
    """

    def __init__(self, db: Database, store: Traces, registry: Registry) -> None:
        self._db = db
        self._store = store
        self._registry = registry
        self._lock = threading.Lock()
        self._counter: int | None = None
        self._scorers: list[SessionScorer] = []
        self._floors: dict[ScorerKey, int] = {}
        # Per scorer: session id -> newest commit when last decided (enqueue_idle).
        self._decided: dict[ScorerKey, dict[str, int]] = {}
        self._next_scan = 0.0
        self.keys: set[ScorerKey] = set()  # the session scorer versions claims were seen for
        self.items: dict[str, Trace] = {}  # SessionItems by claimed trace id
        self._session_ids: dict[int, str] = {}  # by claim id, until its outcome

    # -- finding idle sessions -------------------------------------------------------

    def scan_if_due(self) -> int:
        """Run ``scan`` when the last one is old enough; return how many rows it enqueued."""
        if time.monotonic() < self._next_scan:
            return 0
        try:
            return self.scan()
        except Exception:
            # The runner's step goes on to its claims: a failing scan must not stop
            # trace-level scoring. It is tried again after the longest pause.
            logger.exception("localscorers: the session scan failed; retrying later")
            self._next_scan = time.monotonic() + _SCAN_SECONDS[1]
            return 0

    def scan(self) -> int:
        """Enqueue every ACTIVE session scorer on its idle, sampled, unscored sessions."""
        with self._lock:
            counter = self._registry.change_counter()
            if counter != self._counter:
                self._scorers = session_scorers(self._db)
                self._counter = counter
                self._decided.clear()  # a new rate or filter decides differently
            low, high = _SCAN_SECONDS
            shortest = min((s.idle_ms / 10_000 for s in self._scorers), default=None)
            pause = _UNUSED_SCAN_SECONDS if shortest is None else min(max(shortest, low), high)
            self._next_scan = time.monotonic() + pause
            enqueued = 0
            for scorer in self._scorers:
                key = (scorer.experiment_id, scorer.name, scorer.version)
                now = _clock.now_ms()
                floor = self._floors.get(key, 0)
                decided = self._decided.setdefault(key, {})
                enqueued += enqueue_idle(
                    self._db, scorer, now_ms=now, floor_ms=floor, decided=decided
                )
                floor = self._floors[key] = max(floor, now - scorer.idle_ms - _LOOKBACK_MS)
                self._decided[key] = {k: ms for k, ms in decided.items() if ms >= floor}
            return enqueued

    # -- running claims --------------------------------------------------------------

    def wrap(self, key: ScorerKey, loaded: LoadedScorer) -> LoadedScorer:
        """Return a session scorer version (``key``) made runnable on ``SessionItem`` s."""
        self.keys.add(key)
        return runnable(loaded)

    def load(self, claims: Sequence[Claim]) -> None:
        """Load the sessions of the claims (each up to its claimed trace) as ``SessionItem`` s.

        A claim whose trace was deleted gets no item (the runner retires it).
        """
        wanted = [i for i in dict.fromkeys(c.trace_id for c in claims) if i not in self.items]
        if wanted:
            with self._db.read() as conn:
                self.items.update(load_items(conn, self._store, wanted))
        for claim in claims:
            found = cast("SessionItem | None", self.items.get(claim.trace_id))
            if found is not None and found.session_id is not None:
                self._session_ids[claim.id] = found.session_id

    def forget_scorers(self) -> None:
        """Forget which versions are session scorers (a version number can be reused)."""
        self.keys.clear()

    def keep(self, trace_ids: Collection[str]) -> None:
        """Forget the loaded sessions but those of ``trace_ids`` (claims still waiting)."""
        self.items = {k: v for k, v in self.items.items() if k in trace_ids}

    def stamp(self, claim: Claim, feedback: Sequence[Feedback]) -> list[Feedback]:
        """Name the session in the feedback's metadata, so filters match the whole session."""
        session_id = self._session_ids.pop(claim.id, None)
        if session_id is None:
            return list(feedback)
        return stamp(feedback, session_id)


def stamp(feedback: Sequence[Feedback], session_id: str) -> list[Feedback]:
    """Return the feedback with ``mlflow.trace.session`` in its metadata."""
    extra = {SESSION_KEY: session_id}
    return [f.model_copy(update={"metadata": {**(f.metadata or {}), **extra}}) for f in feedback]


def load_items(conn: Connection, store: Traces, trace_ids: Sequence[str]) -> dict[str, Trace]:
    """Return a ``SessionItem`` per trace: the trace with its session up to it, in time order.

    A deleted trace gets none; a trace outside any session is a session of its own.
    """
    sessions = {trace_id: session_traces(conn, trace_id) for trace_id in trace_ids}
    ids = list(dict.fromkeys(i for _sid, upto, _state in sessions.values() for i in upto))
    loaded = {t.info.trace_id: t for t in store.load_traces(conn, ids)}
    items: dict[str, Trace] = {}
    for trace_id, (session_id, upto, _state) in sessions.items():
        last = loaded.get(trace_id)
        if last is not None:
            turns = tuple(loaded[i] for i in upto if i in loaded)
            item = SessionItem(last.info, last.data, last.expectations, turns, session_id)
            items[trace_id] = cast("Trace", item)
    return items


def runnable(loaded: LoadedScorer) -> LoadedScorer:
    """Return a session scorer version made runnable on ``SessionItem`` s."""
    if loaded.call is None:
        return loaded  # it failed to load: evaluate() records the error
    return LoadedScorer(
        loaded.name,
        loaded.version,
        session_call(loaded.call),
        None,
        loaded.timeout_seconds,
        loaded.max_concurrency,
        ALL_PARAMETERS,
    )
