"""Traces, spans, assessments and experiments: the store behind the tracking API.

The write path is the hot path: one ``BEGIN IMMEDIATE`` transaction per call, one
``executemany`` per table, and, when scorers are active, the online evaluations the
trace deserves written in that same transaction (DESIGN.md section 7), so a crash can
lose neither the trace nor its pending scoring.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Unpack

import sqlalchemy as sa

from localscorers import _clock
from localscorers.exceptions import (
    ConfigurationError,
    ConflictError,
    NotFoundError,
    TraceNotFoundError,
)
from localscorers.filters import parser
from localscorers.models import Expectation, Experiment, Feedback, Trace
from localscorers.store import (
    deferred_indexes,
    dialect,
    order_sql,
    rows,
    schema,
    search_sql,
    trace_reads,
)
from localscorers.store.requests import by_experiment, requests_for
from localscorers.store.sessions import SESSION_KEY, session_scorers
from localscorers.store.trace_rows import TraceRows

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from localscorers.store.database import Database
    from localscorers.store.interface import Search
    from localscorers.store.registry import ScorerRegistry
    from localscorers.store.scorer_state import ActiveScorer
    from localscorers.store.writers import Writer

__all__ = ["TraceStore"]


class TraceStore:
    """Read and write traces, their spans and assessments, and experiments.

    Args:
        db: the database.
        registry: where the enqueue path finds the active scorers.
        on_enqueued: called (outside the transaction) with the number of online
            evaluations a commit enqueued, so the monitor can wake up.
        on_session_trace: called (outside the transaction) when a commit that enqueued
            nothing holds a trace of a session: session scorers are enqueued by the
            monitor's idle scan, so the process may need to start one.
    """

    def __init__(
        self,
        db: Database,
        registry: ScorerRegistry,
        *,
        on_enqueued: Callable[[int], None] | None = None,
        on_session_trace: Callable[[], None] | None = None,
    ) -> None:
        self._db = db
        self._registry = registry
        self.on_enqueued = on_enqueued
        self.on_session_trace = on_session_trace
        # Per thread: (write connection, its data_version, active scorers by experiment).
        self._seen = threading.local()

    # -- experiments ---------------------------------------------------------------

    def get_experiment(self, experiment_id: str) -> Experiment | None:
        """Return the experiment with that id, or None."""
        e = schema.experiments
        with self._db.read() as conn:
            row = conn.execute(sa.select(e).where(e.c.experiment_id == experiment_id)).first()
        return None if row is None else rows.experiment_model(row._mapping)

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        """Return the experiment with that name, or None."""
        e = schema.experiments
        with self._db.read() as conn:
            row = conn.execute(sa.select(e).where(e.c.name == name)).first()
        return None if row is None else rows.experiment_model(row._mapping)

    def create_experiment(self, name: str) -> Experiment:
        """Return the experiment named ``name``, creating it when missing.

        Raises:
            ConfigurationError: the name is blank.
        """
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(
                f"An experiment name must be a non-blank string, got {name!r}."
            )
        e = schema.experiments
        with self._db.write() as conn:
            row = conn.execute(sa.select(e).where(e.c.name == name)).first()
            if row is not None:
                return rows.experiment_model(row._mapping)
            ids = conn.execute(sa.select(e.c.experiment_id)).scalars().all()
            next_id = max((int(i) for i in ids if i.isdigit()), default=0) + 1
            now = _clock.now_ms()
            conn.execute(sa.insert(e).values(experiment_id=str(next_id), name=name, created_ms=now))
            return Experiment(
                experiment_id=str(next_id), name=name, creation_time=_clock.datetime_from_ms(now)
            )

    def list_experiments(self) -> list[Experiment]:
        """Return every experiment, by id."""
        e = schema.experiments
        with self._db.read() as conn:
            found = conn.execute(sa.select(e).order_by(e.c.created_ms, e.c.experiment_id)).all()
        return [rows.experiment_model(row._mapping) for row in found]

    # -- writing traces ------------------------------------------------------------

    def write_traces(
        self,
        records: Sequence[rows.TraceRecord],
        *,
        skip_existing: bool = False,
        enqueue: bool = True,
    ) -> int:
        """Write finished traces in one transaction with their online evaluations.

        With ``enqueue=False`` no online evaluation is written (the caller marks the
        traces with ``rows.ONLINE_SCORING_KEY`` so that explain() can say so).

        Returns:
            The number of online evaluations enqueued.

        Raises:
            ConflictError: a trace id already exists (and ``skip_existing`` is false).
        """
        if not records:
            return 0
        # Rows are built and JSON-encoded before the write lock: every other writer (a
        # worker writing feedback, other processes logging) waits while we hold it.
        trace_rows = None if skip_existing else TraceRows.of(records)
        with self._db.write(dedicated=True) as conn:
            # Taken under the write lock, so commit order and ingested_ms agree with the
            # lifecycle history explain() replays (a trace that waited for the lock must
            # not look older than a start() that committed before it).
            now = _clock.now_ms()
            if trace_rows is None:
                # PostgreSQL: two writers skipping existing ids (reruns of one evaluation)
                # must not both find an id missing and both insert it.
                dialect.of(conn).serialize(conn, "localscorers.traces.skip_existing")
                records = self._without_existing(conn, records)
                trace_rows = TraceRows.of(records)
            # This thread's own SQLite connection: statements go to a cursor kept open.
            writer = self._writer_state(conn)
            try:
                trace_rows.insert(conn, records, now, cursor=writer and writer.cursor)
            except sa.exc.IntegrityError as exc:
                raise ConflictError(
                    f"Cannot write traces {', '.join(r.trace_id for r in records[:5])}: "
                    f"{exc.orig}. If a trace with that id already exists, omit trace_id "
                    "to get a fresh one."
                ) from exc
            enqueued = self._enqueue(conn, writer, records, now) if enqueue else 0
        if enqueued and self.on_enqueued is not None:
            self.on_enqueued(enqueued)
        elif self.on_session_trace is not None and any(SESSION_KEY in r.metadata for r in records):
            self.on_session_trace()
        return enqueued

    def session_scorers_active(self) -> bool:
        """Tell whether any experiment of the database has an ACTIVE session scorer."""
        return bool(session_scorers(self._db))

    def _without_existing(
        self, conn: Connection, records: Sequence[rows.TraceRecord]
    ) -> list[rows.TraceRecord]:
        t = schema.traces
        ids = [r.trace_id for r in records]
        existing: set[str] = set()
        for chunk in rows.in_chunks(ids):
            existing.update(
                conn.execute(sa.select(t.c.trace_id).where(t.c.trace_id.in_(chunk))).scalars()
            )
        return [r for r in records if r.trace_id not in existing]

    def _writer_state(self, conn: Connection) -> _Seen | None:
        """This thread's write cursor and scorer cache when ``conn`` is its own connection."""
        writer = self._db.writer_of(conn)
        if writer is None:
            return None
        seen: _Seen | None = getattr(self._seen, "writer", None)
        if seen is None or seen.writer is not writer:
            seen = self._seen.writer = _Seen(writer)
        return seen

    def _active_for(
        self, conn: Connection, writer: _Seen | None, experiment_id: str
    ) -> list[ActiveScorer]:
        """The experiment's active scorers, unread while no other connection committed.

        On this thread's own write connection ``PRAGMA data_version`` (no table read)
        changes whenever any other connection commits; that connection itself never
        changes scorers. So while it stands still, the scorers read at the same value
        still hold, and the registry's change-counter read is skipped.
        """
        if writer is None:
            return self._registry.active_for(conn, experiment_id)
        version = writer.cursor.execute("PRAGMA data_version").fetchone()[0]
        if writer.version != version:
            writer.version, writer.active = version, {}
        active = writer.active.get(experiment_id)
        if active is None:
            active = writer.active[experiment_id] = self._registry.active_for(conn, experiment_id)
        return active

    def _enqueue(
        self,
        conn: Connection,
        writer: _Seen | None,
        records: Sequence[rows.TraceRecord],
        now: int,
    ) -> int:
        # One evaluation_requests row per trace: cheap enough for the hot path. A claim
        # turns it into one evaluations row per scorer (see store/requests.py).
        requests: list[dict[str, Any]] = []
        for experiment_id, group in by_experiment(records):
            active = self._active_for(conn, writer, experiment_id)
            if active:
                requests.extend(requests_for(conn, experiment_id, group, active, now))
        if not requests:
            return 0
        rows.insert_rows(conn, schema.evaluation_requests, requests)
        return sum(request["count"] for request in requests)

    # -- feedback ------------------------------------------------------------------

    def log_assessment(
        self, trace_id: str, assessment: Feedback | Expectation
    ) -> Feedback | Expectation:
        """Attach a manual feedback or expectation to a trace and return it as stored.

        With ``assessment.overrides`` set, the assessment of that id on the same trace
        is marked invalid in the same transaction (it stays, as history).

        Raises:
            TraceNotFoundError: no trace has that id.
            NotFoundError: the trace has no assessment with the overridden id.
        """
        now = _clock.now_ms()
        row = rows.assessment_row(
            assessment, trace_id=trace_id, origin=assessment.origin or "manual", now_ms=now
        )
        with self._db.write() as conn:
            self._require_trace(conn, trace_id)
            if assessment.overrides is not None:
                self._supersede(conn, trace_id, assessment.overrides)
            conn.execute(sa.insert(schema.assessments).values(**row))
            stored = conn.execute(
                sa.select(schema.assessments).where(
                    schema.assessments.c.assessment_id == row["assessment_id"]
                )
            ).one()
        return rows.assessment_model(stored._mapping)

    @staticmethod
    def _supersede(conn: Connection, trace_id: str, assessment_id: str) -> None:
        # MLflow's override: the old assessment stays, as history, no longer valid.
        a = schema.assessments
        done = conn.execute(
            sa.update(a)
            .where(a.c.assessment_id == assessment_id, a.c.trace_id == trace_id)
            .values(valid=False)
        )
        if done.rowcount == 0:
            raise NotFoundError(
                f"Trace {trace_id!r} has no assessment {assessment_id!r} to override. Pass "
                "the assessment_id of one of get_trace(trace_id).info.assessments."
            )

    @staticmethod
    def _require_trace(conn: Connection, trace_id: str) -> None:
        t = schema.traces
        if conn.execute(sa.select(t.c.trace_id).where(t.c.trace_id == trace_id)).first() is None:
            raise TraceNotFoundError(
                f"No trace has id {trace_id!r}. Check the id, or the tracking URI "
                "(get_tracking_uri()) if the trace was logged to another database."
            )

    # -- reading -------------------------------------------------------------------

    def get_trace(self, trace_id: str) -> Trace:
        """Return one trace with its spans and assessments.

        Raises:
            TraceNotFoundError: no trace has that id.
        """
        with self._db.read() as conn:
            found = self.load_traces(conn, [trace_id])
        if not found:
            raise TraceNotFoundError(
                f"No trace has id {trace_id!r}. Check the id, or the tracking URI "
                "(get_tracking_uri()) if the trace was logged to another database."
            )
        return found[0]

    def search_traces(
        self, *, experiment_ids: Sequence[str], **search: Unpack[Search]
    ) -> list[Trace]:
        """Return the traces of the experiments that match the filter, in order.

        Args:
            experiment_ids: the experiments searched.
            search: ``filter_string``, ``order_by`` and ``max_results``, as for
                ``search_page``, of which this is the first page.

        Raises:
            FilterSyntaxError: the filter does not parse.
            ConfigurationError: ``order_by`` does not parse, or ``max_results`` is not a
                positive integer.
        """
        traces, _ = self.search_page(experiment_ids=experiment_ids, **search)
        return traces

    def search_page(
        self,
        *,
        experiment_ids: Sequence[str],
        filter_string: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int | None = None,
        offset: int = 0,
    ) -> tuple[list[Trace], int | None]:
        """Return one page of matches and the offset of the next page (None: no more).

        Raises:
            FilterSyntaxError: the filter does not parse.
            ConfigurationError: ``order_by`` does not parse, or ``max_results`` is not a
                positive integer.
        """
        if max_results is not None and (
            isinstance(max_results, bool) or not isinstance(max_results, int) or max_results < 1
        ):
            raise ConfigurationError(
                f"max_results must be a positive integer or None (all), got {max_results!r}."
            )
        expr = parser.parse(filter_string) if filter_string and filter_string.strip() else None
        order = order_sql.compile_order_by(order_by)
        if expr is not None and search_sql.reads_deferred(expr):
            deferred_indexes.catch_up(self._db, text=search_sql.reads_text(expr))
        with self._db.read() as conn:
            # One row past the page tells whether another page follows.
            query = search_sql.search_query(
                conn,
                experiment_ids=experiment_ids,
                expr=expr,
                order=order,
                limit=None if max_results is None else max_results + 1,
                offset=offset,
            )
            ids = list(conn.execute(query).scalars())
            following = None
            if max_results is not None and len(ids) > max_results:
                ids, following = ids[:max_results], offset + max_results
            return self.load_traces(conn, ids), following

    @staticmethod
    def load_traces(conn: Connection, trace_ids: Sequence[str]) -> list[Trace]:
        """Load whole traces by id, in the given order, a few queries per chunk of ids."""
        return trace_reads.load_traces(conn, trace_ids)

    @staticmethod
    def load_payloads(conn: Connection, trace_ids: Sequence[str]) -> dict[str, tuple[Any, Any]]:
        """Return (inputs, outputs) by trace id: all a light evaluation reads of the row."""
        t = schema.traces
        found: dict[str, tuple[Any, Any]] = {}
        for chunk in rows.in_chunks(trace_ids):
            query = sa.select(t.c.trace_id, t.c.inputs, t.c.outputs).where(t.c.trace_id.in_(chunk))
            found.update((row[0], (row[1], row[2])) for row in conn.execute(query))
        return found

    @staticmethod
    def load_expectations(conn: Connection, trace_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Return what ``Trace.expectations`` would, by trace id: valid expectations by name."""
        a = schema.assessments
        grouped: dict[str, dict[str, Any]] = {}
        for chunk in rows.in_chunks(trace_ids):
            query = (
                sa.select(a.c.trace_id, a.c.name, a.c.value)
                .where(
                    a.c.trace_id.in_(chunk),
                    a.c.kind == "EXPECTATION",
                    a.c.valid.is_(True),
                )
                .order_by(a.c.created_ms, a.c.assessment_id)
            )
            for trace_id, name, value in conn.execute(query):
                grouped.setdefault(trace_id, {})[name] = value
        return grouped


class _Seen:
    """A thread's write connection (its cursor) and the scorers it last saw."""

    __slots__ = ("active", "cursor", "version", "writer")

    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        self.cursor = writer.cursor
        self.version: int | None = None  # PRAGMA data_version when ``active`` was read
        self.active: dict[str, list[ActiveScorer]] = {}
