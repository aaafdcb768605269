"""Offline evaluation (``localscorers.evaluate()``): rows to traces, scorer calls, feedback.

Every row of an evaluation is a trace in the store carrying the metadata
``localscorers.evaluation_id`` and ``localscorers.evaluation_row`` (its index in the
data), and online scoring off, so production monitors leave it alone. Scorer calls run
on the scheduler online scoring and backfills share (``scheduler.Scheduler``), with
production's settings (``Settings.from_env``): per-call timeout, transient-error
retries with one backoff rule, per-scorer concurrency limits. Finished calls are
written as they are collected, as backfills write theirs (``results.insert_finished``:
the ledger row, origin ``evaluate:<id>``, and the feedback in one transaction). That is
the durability contract: a crash loses no committed feedback, and a second run with the
same evaluation id finds its traces by their metadata and skips every (trace, scorer)
pair the ledger shows finished.

Session-level scorers (a ``session`` parameter) get the time-ordered traces of one
session (metadata ``mlflow.trace.session``); their feedback goes on the session's
last trace, with the session id in its metadata.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from localscorers import tracing
from localscorers.evaluation.execution import (
    ALL_PARAMETERS,
    EvaluationContext,
    LoadedScorer,
    to_feedback,
)
from localscorers.evaluation.pool import DaemonThreadPool
from localscorers.evaluation.scheduler import Pacing, Scheduler, settle_transient
from localscorers.evaluation.settings import Settings
from localscorers.exceptions import TransientError
from localscorers.store.offline import Finished, write_finished

if TYPE_CHECKING:
    from localscorers.models import Feedback, Trace
    from localscorers.store import Database, Traces

__all__ = [
    "EVALUATION_ID_KEY",
    "ROW_KEY",
    "SESSION_KEY",
    "OfflineScorer",
    "PredictRow",
    "Unit",
    "evaluation_filter",
    "evaluation_traces",
    "plan_units",
    "predict_rows",
    "row_trace_id",
    "run_units",
    "sessions_of",
    "write_results",
]

logger = logging.getLogger(__name__)

EVALUATION_ID_KEY = "localscorers.evaluation_id"
ROW_KEY = "localscorers.evaluation_row"
SESSION_KEY = "mlflow.trace.session"


@dataclass(frozen=True)
class OfflineScorer:
    """A scorer as an evaluation runs it.

    Attributes:
        name: the feedback's scorer name.
        version: the registered version, or None for an unregistered scorer.
        call: the scorer itself, called with keyword arguments.
        session: whether it takes ``session`` (one call per session).
        timeout_seconds: the per-call timeout.
        max_concurrency: at most this many calls at once (None: no limit).
    """

    name: str
    version: int | None
    call: Callable[..., Any]
    session: bool
    timeout_seconds: float
    max_concurrency: int | None


@dataclass(frozen=True)
class Unit:
    """One scorer call: a trace-level call on ``trace``, or a session call on ``session``.

    ``trace`` is where the feedback goes: the session's last trace for a session call.
    """

    scorer: OfflineScorer
    trace: Trace
    session: tuple[Trace, ...] | None = None
    session_id: str | None = None
    attempts: int = 0


def row_trace_id(experiment_id: str, evaluation_id: str, index: int) -> str:
    """Return the trace id of one row of an evaluation: the same in every run.

    Writing a row twice (a rerun, or two processes resuming one evaluation) then hits
    the trace's primary key instead of making a second trace of the row.
    """
    digest = hashlib.sha256(f"{experiment_id}\0{evaluation_id}\0{index}".encode())
    return f"tr-{digest.hexdigest()[:32]}"


def evaluation_filter(evaluation_id: str) -> str:
    """Return the ``search_traces`` filter of an evaluation's traces (the id is validated)."""
    return f"metadata.`{EVALUATION_ID_KEY}` = '{evaluation_id}'"


def evaluation_traces(store: Traces, *, experiment_id: str, evaluation_id: str) -> dict[int, Trace]:
    """Return the traces already logged for an evaluation, by row index (the oldest wins)."""
    found = store.search_traces(
        experiment_ids=[experiment_id],
        filter_string=evaluation_filter(evaluation_id),
        order_by=["timestamp_ms ASC"],
    )
    by_row: dict[int, Trace] = {}
    for trace in found:
        raw = trace.info.metadata.get(ROW_KEY, "")
        if raw.isdigit():
            by_row.setdefault(int(raw), trace)
    return by_row


@dataclass(frozen=True)
class PredictRow:
    """One ``predict_fn`` call: its keyword arguments and the trace's tags and metadata."""

    inputs: dict[str, Any]
    tags: dict[str, str]
    metadata: dict[str, str]
    trace_id: str


def predict_rows(
    rows: Sequence[PredictRow],
    predict_fn: Callable[..., Any],
    *,
    experiment_id: str,
    max_workers: int,
    advance: Callable[[], None],
) -> None:
    """Call ``predict_fn(**inputs)`` for each row, each call recorded as a trace.

    The calls run on daemon threads, each in a fresh context, so every call is a
    trace of its own (spans it opens, through ``@trace`` or ``start_span``, join it).
    The turns of one session (metadata ``mlflow.trace.session``) run one after another
    in the data's order, as a conversation would, so their times follow that order.
    A call that raises is recorded as an ``ERROR`` trace and still scored, as MLflow does.
    """
    name = getattr(predict_fn, "__name__", None) or type(predict_fn).__name__

    def call(turns: list[PredictRow]) -> list[BaseException | None]:
        errors: list[BaseException | None] = []
        for row in turns:
            try:
                with tracing.start_root_span(
                    name,
                    experiment_id=experiment_id,
                    inputs=row.inputs,
                    tags=row.tags,
                    metadata=row.metadata,
                    online_scoring=False,
                    trace_id=row.trace_id,
                ) as span:
                    span.set_outputs(predict_fn(**row.inputs))
            except Exception as exc:  # noqa: BLE001 - recorded in the trace; reported below
                errors.append(exc)
            else:
                errors.append(None)
        return errors

    groups: dict[str, list[PredictRow]] = {}
    for index, row in enumerate(rows):
        groups.setdefault(row.metadata.get(SESSION_KEY) or f"\0{index}", []).append(row)
    pool = DaemonThreadPool(max_workers, thread_name_prefix="localscorers-predict")
    try:
        futures = [pool.submit(call, turns) for turns in groups.values()]
        for future in futures:
            for error in future.result():
                if error is not None:
                    logger.warning("predict_fn raised %r; its trace is recorded as ERROR.", error)
                advance()
    finally:
        pool.shutdown(wait=False)


def sessions_of(traces: Iterable[Trace]) -> dict[str, list[Trace]]:
    """Group traces by ``mlflow.trace.session``, each session in time order (then row, id)."""
    sessions: dict[str, list[Trace]] = {}
    for trace in traces:
        session_id = trace.info.metadata.get(SESSION_KEY)
        if session_id:
            sessions.setdefault(session_id, []).append(trace)
    for group in sessions.values():
        group.sort(key=_turn_order)
    return sessions


def _turn_order(trace: Trace) -> tuple[Any, int, str]:
    # Rows logged in one batch can share a millisecond: the data's order breaks the tie.
    row = trace.info.metadata.get(ROW_KEY, "")
    return trace.info.request_time, int(row) if row.isdigit() else -1, trace.info.trace_id


def plan_units(
    traces: Sequence[Trace], scorers: Sequence[OfflineScorer], *, done: set[tuple[str, str]]
) -> list[Unit]:
    """Return the calls still to make.

    Trace-level scorers get one call per trace; session scorers one per session, on
    the traces of this evaluation only. A pair in ``done`` (trace id, scorer name),
    already finished by this evaluation, is left out: that is how a rerun resumes.
    """
    sessions = sessions_of(traces)
    units: list[Unit] = []
    for scorer in scorers:
        if scorer.session:
            candidates = [
                Unit(scorer, group[-1], tuple(group), session_id)
                for session_id, group in sessions.items()
            ]
        else:
            candidates = [Unit(scorer, trace) for trace in traces]
        units.extend(u for u in candidates if (u.trace.info.trace_id, scorer.name) not in done)
    return units


def write_results(
    db: Database,
    finished: Sequence[tuple[Unit, list[Feedback]]],
    *,
    experiment_id: str,
    origin: str,
) -> None:
    """Write finished calls with their ledger rows and feedback, in one transaction.

    Through the completion path backfills use (``results.insert_finished``): feedback
    stamped with the scorer and ``origin``; a session call's feedback carries the
    session id as ``mlflow.trace.session``. A pair already written (another process
    resuming the same evaluation) keeps its first result.
    """
    results = []
    for unit, feedback in finished:
        stamped = feedback
        if unit.session_id is not None:
            session = {SESSION_KEY: unit.session_id}
            stamped = [
                f.model_copy(update={"metadata": {**(f.metadata or {}), **session}})
                for f in feedback
            ]
        results.append(
            Finished(
                trace_id=unit.trace.info.trace_id,
                scorer_name=unit.scorer.name,
                scorer_version=unit.scorer.version or 0,
                result=stamped,
                attempts=1,
            )
        )
    write_finished(db, results, experiment_id=experiment_id, origin=origin)


def _session_call(call: Callable[..., Any], sessions: dict[str, list[Trace]]) -> Callable[..., Any]:
    """Adapt a session scorer to the scheduler, which calls scorers on one trace.

    The trace it is given is the session's last; the scorer gets the whole session.
    """

    def on_last_trace(*, trace: Trace, **_: Any) -> Any:  # noqa: ANN401 - the scorer's value
        return call(session=list(sessions[trace.info.trace_id]))

    return on_last_trace


def _loaded(scorer: OfflineScorer, units: Sequence[Unit]) -> LoadedScorer:
    call = scorer.call
    if scorer.session:
        call = _session_call(call, {u.trace.info.trace_id: list(u.session or ()) for u in units})
    return LoadedScorer(
        scorer.name,
        scorer.version or 0,
        call,
        None,
        scorer.timeout_seconds,
        scorer.max_concurrency,
        ALL_PARAMETERS,
    )


@dataclass
class _Item:
    """A unit on its way through the scheduler (the scheduler's token)."""

    unit: Unit
    tries: int = 0


# Evaluations are interactive: chunks short enough that the progress bar moves.
_PACING = Pacing(task_seconds=0.02, max_chunk=64, first_chunk=1, prefetch=True)
_POLL_SECONDS = 0.25  # collect at least this often, so timeouts are noticed


class _Driver:
    """Feed units to the shared ``Scheduler`` and hand each final result to ``done``.

    Transient errors are retried with the scheduler's backoff rule (``settle_transient``).
    When every thread is held by a call past its timeout, the next calls go to a new
    pool: they must not wait forever behind a call that cannot be killed.
    """

    def __init__(
        self,
        units: Sequence[Unit],
        settings: Settings,
        context: EvaluationContext,
        done: Callable[[list[tuple[Unit, list[Feedback]]]], None],
    ) -> None:
        self._settings = settings
        self._context = context
        self._done = done
        self._wake = threading.Event()
        self._pools: list[DaemonThreadPool] = []
        self._scheduler = self._new_scheduler()
        by_scorer: dict[str, list[Unit]] = {}
        for unit in units:
            by_scorer.setdefault(unit.scorer.name, []).append(unit)
        self._loaded = {name: _loaded(group[0].scorer, group) for name, group in by_scorer.items()}
        self._queues = {
            name: deque((_Item(u), u.trace) for u in group) for name, group in by_scorer.items()
        }
        self._delayed: list[tuple[float, int, _Item]] = []
        self._order = itertools.count()
        self._outstanding = len(units)

    def _new_scheduler(self) -> Scheduler:
        pool = DaemonThreadPool(self._settings.max_workers, thread_name_prefix="localscorers-eval")
        self._pools.append(pool)
        return Scheduler(pool, self._settings, _PACING, wake=self._wake)

    def run(self) -> None:
        try:
            while self._outstanding:
                self._release_due()
                self._start()
                self._wake.wait(timeout=self._wait_seconds())
                self._wake.clear()
                self._collect()
        finally:
            self._scheduler.halt.set()
            for pool in self._pools:
                pool.shutdown(wait=False, cancel_futures=True)

    def _release_due(self) -> None:
        now = time.monotonic()
        while self._delayed and self._delayed[0][0] <= now:
            item = heapq.heappop(self._delayed)[2]
            self._queues[item.unit.scorer.name].append((item, item.unit.trace))

    def _start(self) -> None:
        scheduler = self._scheduler
        if not scheduler.running and scheduler.hung and scheduler.capacity() <= 0:
            self._scheduler = scheduler = self._new_scheduler()
        for name, queue in self._queues.items():
            loaded = self._loaded[name]
            while queue and scheduler.capacity() > 0 and not scheduler.saturated(name, loaded):
                size = min(len(queue), scheduler.chunk_size(name))
                chunk = [queue.popleft() for _ in range(size)]
                scheduler.start(name, loaded, chunk, self._context)

    def _wait_seconds(self) -> float:
        if not self._delayed:
            return _POLL_SECONDS
        return max(0.0, min(_POLL_SECONDS, self._delayed[0][0] - time.monotonic()))

    def _collect(self) -> None:
        collected = self._scheduler.collect()
        finished: list[tuple[Unit, list[Feedback]]] = []
        for key, token, trace in collected.unstarted:
            self._queues[str(key)].appendleft((token, trace))
        for done in collected.done:
            item: _Item = done.token
            item.tries += 1
            result = done.result
            if isinstance(result, TransientError):
                settled = settle_transient(
                    result, name=item.unit.scorer.name, attempts=item.tries, settings=self._settings
                )
                if isinstance(settled, float):
                    retry_at = time.monotonic() + settled
                    heapq.heappush(self._delayed, (retry_at, next(self._order), item))
                    continue
                result = settled
            if isinstance(result, tuple):  # a plain value (the scheduler's fast path)
                result = to_feedback(result[0], name=item.unit.scorer.name)
            finished.append((item.unit, result))
        if finished:
            self._outstanding -= len(finished)
            self._done(finished)


def run_units(
    units: Sequence[Unit],
    *,
    settings: Settings,
    context: EvaluationContext,
    done: Callable[[list[tuple[Unit, list[Feedback]]]], None],
) -> None:
    """Run every unit on the shared scheduler, with production's timeouts, retries, limits.

    ``done`` is called on the calling thread with batches of (unit, final feedback):
    error feedback for failures, timeouts and retries that ran out, as soon as known.
    """
    if units:
        _Driver(units, settings, context, done).run()
