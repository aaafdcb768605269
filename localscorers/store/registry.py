"""The scorer registry: versions, lifecycle state, history, and the active-scorer cache.

Rows only: this module knows nothing of ``Scorer`` objects (``scorers.py`` builds them
from what is stored here), which keeps the import graph pointing one way.

Every lifecycle change is one write transaction that also appends a history row
(``scorer_events``, read by ``explain``) and bumps the ``scorers`` counter, which
every process compares against before trusting its cache of active scorers.
"""

from __future__ import annotations

import builtins
import threading
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa

from localscorers import _clock
from localscorers.exceptions import (
    ConfigurationError,
    InvalidTransitionError,
    ScorerLimitError,
    ScorerNotFoundError,
)
from localscorers.filters import parser
from localscorers.models import DEFAULT_SESSION_IDLE_SECONDS, ScorerStatus
from localscorers.store import bulk, dialect, schema
from localscorers.store.scorer_state import (
    ActiveScorer,
    ScorerState,
    definition_hash,
    state_from_row,
    validate_name,
)
from localscorers.store.sessions import takes_session_column

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from localscorers.store.database import Database

__all__ = ["MAX_SCORERS_PER_EXPERIMENT", "ScorerRegistry"]

MAX_SCORERS_PER_EXPERIMENT = 20

# Which current states each call accepts, and what to tell the user otherwise.
_ALLOWED: dict[str, frozenset[ScorerStatus]] = {
    "start": frozenset({ScorerStatus.REGISTERED, ScorerStatus.STOPPED, ScorerStatus.ACTIVE}),
    "update": frozenset({ScorerStatus.ACTIVE}),
    "stop": frozenset({ScorerStatus.REGISTERED, ScorerStatus.STOPPED, ScorerStatus.ACTIVE}),
}
_HINTS: dict[tuple[str, ScorerStatus], str] = {
    ("update", ScorerStatus.REGISTERED): "Use start(sampling_config=...) to activate it.",
    ("update", ScorerStatus.STOPPED): "Use start(sampling_config=...) to activate it again.",
}
_UNREGISTERED_HINT = "Call register() first."


class ScorerRegistry:
    """Persist scorer versions and lifecycle state in one database.

    Args:
        db: the database to use.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache_lock = threading.Lock()
        self._cache_counter: int | None = None
        self._cache: dict[str, list[ActiveScorer]] = {}

    # -- reads -------------------------------------------------------------------

    def get(self, experiment_id: str, name: str, *, version: int | None = None) -> ScorerState:
        """Return the name's state with the given version's (default: latest) definition.

        Raises:
            ScorerNotFoundError: no such name, or no such version of it.
        """
        with self._db.read() as conn:
            return self._get(conn, experiment_id, name, version=version)

    def find(self, experiment_id: str, name: str) -> ScorerState | None:
        """Return the name's latest state, or None when it is not registered."""
        with self._db.read() as conn:
            return self._find(conn, experiment_id, name)

    def list(self, experiment_id: str) -> builtins.list[ScorerState]:
        """Return every registered scorer of the experiment, latest versions, by name."""
        s, v = schema.scorers, schema.scorer_versions
        query = (
            sa.select(s, v.c.definition, v.c.description, v.c.takes_session)
            .join(
                v,
                sa.and_(
                    v.c.experiment_id == s.c.experiment_id,
                    v.c.name == s.c.name,
                    v.c.version == s.c.version,
                ),
            )
            .where(s.c.experiment_id == experiment_id)
            .order_by(s.c.name)
        )
        with self._db.read() as conn:
            return [state_from_row(row._mapping, row.version) for row in conn.execute(query)]

    def versions(self, experiment_id: str, name: str) -> builtins.list[ScorerState]:
        """Return every stored version of the name, oldest first, with its current state.

        Raises:
            ScorerNotFoundError: no scorer of that name is registered.
        """
        v = schema.scorer_versions
        with self._db.read() as conn:
            current = self._get(conn, experiment_id, name)
            numbers = conn.execute(
                sa.select(v.c.version)
                .where(v.c.experiment_id == experiment_id, v.c.name == name)
                .order_by(v.c.version)
            ).scalars()
            return [self._get(conn, experiment_id, name, version=n) for n in numbers] or [current]

    def history(self, experiment_id: str, name: str) -> builtins.list[dict[str, Any]]:
        """Return the name's lifecycle events, oldest first (what ``explain`` reads)."""
        e = schema.scorer_events
        query = (
            sa.select(e)
            .where(e.c.experiment_id == experiment_id, e.c.name == name)
            .order_by(e.c.at_ms, e.c.id)
        )
        with self._db.read() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def change_counter(self) -> int:
        """Return the lifecycle change counter (bumped by every register/start/stop/...)."""
        with self._db.read() as conn:
            return int(
                conn.execute(
                    sa.select(schema.counters.c.value).where(schema.counters.c.name == "scorers")
                ).scalar_one()
            )

    def active_for(self, conn: Connection, experiment_id: str) -> builtins.list[ActiveScorer]:
        """Return the experiment's ACTIVE scorers, from cache while nothing changed.

        Costs one primary-key read of the change counter per call; the scorers
        themselves are re-read only after some process changed a lifecycle.
        """
        counter_query = bulk.compiled_select(conn, "scorer_counter", _counter_query)
        counter = counter_query.fetchall(conn, {})[0][0]
        with self._cache_lock:
            if counter != self._cache_counter:
                self._cache = {}
                self._cache_counter = counter
            cached = self._cache.get(experiment_id)
        if cached is not None:
            return cached
        s = schema.scorers
        # Session scorers never: the idle scan enqueues them (``sessions.enqueue_idle``).
        wanted = (s.c.status == ScorerStatus.ACTIVE.value) & (takes_session_column() == sa.false())
        rows = conn.execute(
            sa.select(s.c.name, s.c.version, s.c.sample_rate, s.c.filter_string)
            .where(s.c.experiment_id == experiment_id, wanted)
            .order_by(s.c.name)
        ).all()
        active = [
            ActiveScorer(
                name=row.name,
                version=row.version,
                sample_rate=row.sample_rate,
                filter_string=row.filter_string,
                filter_expr=parser.parse(row.filter_string) if row.filter_string else None,
            )
            for row in rows
        ]
        with self._cache_lock:
            if self._cache_counter == counter:
                self._cache[experiment_id] = active
        return active

    # -- writes ------------------------------------------------------------------

    def register(
        self,
        experiment_id: str,
        name: str,
        *,
        definition: dict[str, Any],
        description: str | None,
        takes_session: bool = False,
    ) -> ScorerState:
        """Register a definition under a name: new name, same version, or version N+1.

        Raises:
            ScorerLimitError: the experiment already has the maximum number of names.
        """
        validate_name(name)
        digest = definition_hash(definition, description)
        with self._db.write() as conn:
            dialect.of(conn).serialize(conn, "localscorers.registry")  # PostgreSQL: one at a time
            now = _clock.now_ms()  # under the write lock: see TraceStore.write_traces
            current = self._find(conn, experiment_id, name)
            if current is None:
                version = self._add_name(conn, experiment_id, name, now)
            elif self._latest_hash(conn, experiment_id, name, current.latest_version) == digest:
                return current
            else:
                version = current.latest_version + 1
                s = schema.scorers
                conn.execute(
                    sa.update(s)
                    .where(s.c.experiment_id == experiment_id, s.c.name == name)
                    .values(version=version, updated_ms=now)
                )
            conn.execute(
                sa.insert(schema.scorer_versions).values(
                    experiment_id=experiment_id,
                    name=name,
                    version=version,
                    description=description,
                    definition=definition,
                    definition_hash=digest,
                    created_ms=now,
                    takes_session=takes_session,
                )
            )
            self._changed(conn, experiment_id, name, now)
            return self._get(conn, experiment_id, name)

    @staticmethod
    def _add_name(conn: Connection, experiment_id: str, name: str, now: int) -> int:
        """Insert a new name, REGISTERED at version 1, within the experiment's limit.

        Raises:
            ScorerLimitError: the experiment already has the maximum number of names.
        """
        s = schema.scorers
        count = conn.execute(
            sa.select(sa.func.count()).where(s.c.experiment_id == experiment_id)
        ).scalar_one()
        if count >= MAX_SCORERS_PER_EXPERIMENT:
            raise ScorerLimitError(
                f"Experiment {experiment_id!r} already has {count} scorers, the "
                f"maximum; cannot register {name!r}. Delete one with "
                "delete_scorer(name=...) first."
            )
        conn.execute(
            sa.insert(s).values(
                experiment_id=experiment_id,
                name=name,
                version=1,
                status=ScorerStatus.REGISTERED.value,
                sample_rate=0.0,
                filter_string=None,
                created_ms=now,
                updated_ms=now,
            )
        )
        return 1

    @staticmethod
    def _latest_hash(conn: Connection, experiment_id: str, name: str, version: int) -> str:
        """Return the definition hash of a stored version."""
        v = schema.scorer_versions
        return str(
            conn.execute(
                sa.select(v.c.definition_hash).where(
                    v.c.experiment_id == experiment_id, v.c.name == name, v.c.version == version
                )
            ).scalar_one()
        )

    def transition(
        self,
        experiment_id: str,
        name: str,
        *,
        action: str,
        sample_rate: float = 0.0,
        filter_string: str | None = None,
        session_idle_seconds: float = DEFAULT_SESSION_IDLE_SECONDS,
    ) -> ScorerState:
        """Apply ``start`` / ``update`` / ``stop`` to a registered name.

        Raises:
            InvalidTransitionError: the current state does not allow the call.
        """
        target = ScorerStatus.STOPPED if action == "stop" else ScorerStatus.ACTIVE
        s = schema.scorers
        with self._db.write() as conn:
            dialect.of(conn).serialize(conn, "localscorers.registry")  # PostgreSQL: one at a time
            now = _clock.now_ms()  # under the write lock: see TraceStore.write_traces
            current = self._find(conn, experiment_id, name)
            if current is None:
                raise InvalidTransitionError(
                    name=name,
                    current=ScorerStatus.UNREGISTERED.value,
                    action=action,
                    hint=_UNREGISTERED_HINT,
                )
            if current.status not in _ALLOWED[action]:
                raise InvalidTransitionError(
                    name=name,
                    current=current.status.value,
                    action=action,
                    hint=_HINTS.get((action, current.status), ""),
                )
            conn.execute(
                sa.update(s)
                .where(s.c.experiment_id == experiment_id, s.c.name == name)
                .values(
                    status=target.value,
                    sample_rate=sample_rate if target is ScorerStatus.ACTIVE else 0.0,
                    filter_string=filter_string if target is ScorerStatus.ACTIVE else None,
                    session_idle_seconds=session_idle_seconds,
                    updated_ms=now,
                )
            )
            self._changed(conn, experiment_id, name, now)
            return self._get(conn, experiment_id, name)

    def delete(
        self, experiment_id: str, name: str, *, version: int | Literal["all"] | None = None
    ) -> None:
        """Delete one version, or (no version, or ``"all"``) the name with every version.

        ``version="all"`` is the form MLflow's tracking backend requires for "every
        version"; None means the same here. Feedback the scorer wrote stays on the traces.

        Raises:
            ScorerNotFoundError: no such name or version.
            ConfigurationError: ``version`` is neither an int, ``"all"`` nor None.
        """
        if version == "all":
            version = None
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            raise ConfigurationError(
                f"version must be a version number, 'all' or None (every version), got {version!r}."
            )
        s, v = schema.scorers, schema.scorer_versions
        with self._db.write() as conn:
            dialect.of(conn).serialize(conn, "localscorers.registry")  # PostgreSQL: one at a time
            now = _clock.now_ms()
            current = self._get(conn, experiment_id, name, version=version)
            versions = sa.and_(v.c.experiment_id == experiment_id, v.c.name == name)
            if version is not None:
                conn.execute(sa.delete(v).where(versions, v.c.version == version))
                remaining = conn.execute(sa.select(sa.func.max(v.c.version)).where(versions))
                latest = remaining.scalar_one_or_none()
                if latest is not None:
                    if version == current.latest_version:
                        conn.execute(
                            sa.update(s)
                            .where(s.c.experiment_id == experiment_id, s.c.name == name)
                            .values(version=latest, updated_ms=now)
                        )
                    self._changed(conn, experiment_id, name, now)
                    return
            conn.execute(sa.delete(v).where(versions))
            conn.execute(sa.delete(s).where(s.c.experiment_id == experiment_id, s.c.name == name))
            conn.execute(
                sa.delete(schema.scorer_events).where(
                    schema.scorer_events.c.experiment_id == experiment_id,
                    schema.scorer_events.c.name == name,
                )
            )
            self._bump_counter(conn)

    # -- helpers -----------------------------------------------------------------

    def _find(self, conn: Connection, experiment_id: str, name: str) -> ScorerState | None:
        try:
            return self._get(conn, experiment_id, name)
        except ScorerNotFoundError:
            return None

    def _get(
        self, conn: Connection, experiment_id: str, name: str, *, version: int | None = None
    ) -> ScorerState:
        s, v = schema.scorers, schema.scorer_versions
        state = conn.execute(
            sa.select(s).where(s.c.experiment_id == experiment_id, s.c.name == name)
        ).first()
        if state is None:
            raise ScorerNotFoundError(
                f"No scorer named {name!r} is registered in experiment {experiment_id!r}. "
                "Use list_scorers() to see the registered names, or register() it first."
            )
        wanted = state.version if version is None else version
        row = conn.execute(
            sa.select(v.c.definition, v.c.description, v.c.takes_session).where(
                v.c.experiment_id == experiment_id, v.c.name == name, v.c.version == wanted
            )
        ).first()
        if row is None:
            raise ScorerNotFoundError(
                f"Scorer {name!r} in experiment {experiment_id!r} has no version {version}; "
                f"the latest is {state.version}."
            )
        return state_from_row({**state._mapping, **row._mapping}, wanted)

    def _changed(self, conn: Connection, experiment_id: str, name: str, now: int) -> None:
        state = self._get(conn, experiment_id, name)
        conn.execute(
            sa.insert(schema.scorer_events).values(
                experiment_id=experiment_id,
                name=name,
                version=state.latest_version,
                status=state.status.value,
                sample_rate=state.sample_rate,
                filter_string=state.filter_string,
                at_ms=now,
            )
        )
        self._bump_counter(conn)

    @staticmethod
    def _bump_counter(conn: Connection) -> None:
        c = schema.counters
        conn.execute(sa.update(c).where(c.c.name == "scorers").values(value=c.c.value + 1))


def _counter_query() -> sa.Select[tuple[int]]:
    counters = schema.counters
    return sa.select(counters.c.value).where(counters.c.name == "scorers")
