"""Offline evaluation (``localscorers.evaluate``): rows to traces, scorer calls, feedback.

Every row of an evaluation is a trace in the store carrying the metadata
``localscorers.evaluation_id`` and ``localscorers.evaluation_row`` (its index in the
data), and online scoring off, so production monitors leave it alone. Scorer calls run
on a ``DaemonThreadPool`` with production's settings (``Settings.from_env``): per-call
timeout, transient-error retries with backoff, per-scorer concurrency limits. Each
call's feedback is written as soon as it finishes, with origin ``evaluate:<id>``. That
is the durability contract: a crash loses no finished feedback, and a second run with
the same evaluation id finds its traces by their metadata and skips every (trace,
scorer) pair that already has feedback of that origin.

Session-level scorers (a ``session`` parameter) get the time-ordered traces of one
session (metadata ``mlflow.trace.session``); their feedback goes on the session's
last trace, with the session id in its metadata.
"""

from __future__ import annotations

import heapq
import inspect
import itertools
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from localscorers import tracing
from localscorers.evaluation.execution import (
    ALL_PARAMETERS,
    EvaluationContext,
    LoadedScorer,
    error_feedback,
    evaluation_context,
    to_feedback,
)
from localscorers.evaluation.execution import evaluate as evaluate_on_trace
from localscorers.evaluation.pool import DaemonThreadPool
from localscorers.exceptions import TransientError
from localscorers.models import Feedback

if TYPE_CHECKING:
    from localscorers.evaluation.online import Settings
    from localscorers.models import Trace
    from localscorers.store.traces import TraceStore

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
    "run_units",
    "sessions_of",
    "signature_parameters",
    "write_feedback",
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


def evaluation_filter(evaluation_id: str) -> str:
    """Return the ``search_traces`` filter of an evaluation's traces (the id is validated)."""
    return f"metadata.`{EVALUATION_ID_KEY}` = '{evaluation_id}'"


def evaluation_traces(
    store: TraceStore, *, experiment_id: str, evaluation_id: str
) -> dict[int, Trace]:
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
    A call that raises is recorded as an ``ERROR`` trace and still scored, as MLflow does.
    """
    name = getattr(predict_fn, "__name__", None) or type(predict_fn).__name__

    def call(row: PredictRow) -> None:
        with tracing.start_root_span(
            name,
            experiment_id=experiment_id,
            inputs=row.inputs,
            tags=row.tags,
            metadata=row.metadata,
            online_scoring=False,
        ) as span:
            span.set_outputs(predict_fn(**row.inputs))

    pool = DaemonThreadPool(max_workers, thread_name_prefix="localscorers-predict")
    try:
        futures = [pool.submit(call, row) for row in rows]
        for future in futures:
            error = future.exception()
            if error is not None:
                logger.warning("predict_fn raised %r; its trace is recorded as ERROR.", error)
            advance()
    finally:
        pool.shutdown(wait=False)


def signature_parameters(func: Callable[..., Any]) -> frozenset[str]:
    """Return a callable's parameter names (none when it has no signature)."""
    try:
        return frozenset(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return frozenset()


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


def _scored(trace: Trace, scorer_name: str, origin: str) -> bool:
    return any(
        isinstance(a, Feedback) and a.origin == origin and a.scorer_name == scorer_name
        for a in trace.info.assessments
    )


def plan_units(
    traces: Sequence[Trace], scorers: Sequence[OfflineScorer], *, origin: str
) -> tuple[list[Unit], int]:
    """Return the calls still to make, and how many were skipped as already scored.

    Trace-level scorers get one call per trace; session scorers one per session, on
    the traces of this evaluation only. A pair whose target trace already has feedback
    of ``origin`` from the scorer is skipped: that is how a rerun resumes.
    """
    sessions = sessions_of(traces)
    units: list[Unit] = []
    skipped = 0
    for scorer in scorers:
        if scorer.session:
            candidates = [
                Unit(scorer, group[-1], tuple(group), session_id)
                for session_id, group in sessions.items()
            ]
        else:
            candidates = [Unit(scorer, trace) for trace in traces]
        for unit in candidates:
            if _scored(unit.trace, scorer.name, origin):
                skipped += 1
            else:
                units.append(unit)
    return units, skipped


def write_feedback(
    store: TraceStore, unit: Unit, feedback: Sequence[Feedback], *, origin: str
) -> None:
    """Attach one call's feedback to its trace, with the scorer's provenance.

    Written through the store's assessment path (``TraceStore.log_assessment``), one
    row per feedback. Session feedback carries the session id as ``mlflow.trace.session``.
    """
    for item in feedback:
        update: dict[str, Any] = {
            "origin": origin,
            "scorer_name": unit.scorer.name,
            "scorer_version": unit.scorer.version,
        }
        if unit.session_id is not None:
            update["metadata"] = {**(item.metadata or {}), SESSION_KEY: unit.session_id}
        store.log_assessment(unit.trace.info.trace_id, item.model_copy(update=update))


def _call(unit: Unit, context: EvaluationContext) -> list[Feedback] | TransientError:
    """Run one unit; a scorer's exception becomes error feedback, a transient one is returned."""
    scorer = unit.scorer
    if unit.session is None:
        loaded = LoadedScorer(
            scorer.name,
            scorer.version or 0,
            scorer.call,
            None,
            scorer.timeout_seconds,
            scorer.max_concurrency,
            ALL_PARAMETERS,
        )
        try:
            return evaluate_on_trace(loaded, unit.trace, context)
        except TransientError as exc:
            return exc
    try:
        with evaluation_context(context):
            result = scorer.call(session=list(unit.session))
    except TransientError as exc:
        return exc
    except BaseException as exc:  # noqa: BLE001 - a scorer's exception is data (STYLE.md 22)
        return [error_feedback(exc, name=scorer.name)]
    return to_feedback(result, name=scorer.name)


@dataclass
class _Running:
    unit: Unit
    started: float | None = None  # set by the worker thread when the call begins
    deadline: float = field(default=float("inf"))


def _backoff(settings: Settings, attempts: int, exc: TransientError) -> float:
    base = min(settings.backoff_max_seconds, settings.backoff_seconds * (2**attempts))
    delay = base * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security
    return float(max(delay, exc.retry_after)) if exc.retry_after is not None else delay


class _Scheduler:
    """Run units on the pool under production's limits; hand each result to ``done``.

    Only the calling thread writes (through ``done``), so feedback writes never
    contend with each other. A call past its timeout is recorded as ``SCORER_TIMEOUT``
    and abandoned: a Python call cannot be killed, so its thread is left behind (a
    daemon) and later calls go to a fresh pool, never queued behind it.
    """

    def __init__(
        self,
        settings: Settings,
        context: EvaluationContext,
        done: Callable[[Unit, list[Feedback]], None],
    ) -> None:
        self._settings = settings
        self._context = context
        self._done = done
        self._pool = self._new_pool()
        self._ready: dict[str, deque[Unit]] = {}
        self._delayed: list[tuple[float, int, Unit]] = []
        self._order = itertools.count()
        self._running: dict[Future[list[Feedback] | TransientError], _Running] = {}
        self._per_scorer: dict[str, int] = {}

    def _new_pool(self) -> DaemonThreadPool:
        return DaemonThreadPool(
            self._settings.max_workers, thread_name_prefix="localscorers-evaluate"
        )

    def run(self, units: Iterable[Unit]) -> None:
        for unit in units:
            self._ready.setdefault(unit.scorer.name, deque()).append(unit)
        try:
            while any(self._ready.values()) or self._delayed or self._running:
                now = time.monotonic()
                while self._delayed and self._delayed[0][0] <= now:
                    unit = heapq.heappop(self._delayed)[2]
                    self._ready.setdefault(unit.scorer.name, deque()).append(unit)
                self._submit()
                finished, _ = wait(
                    list(self._running),
                    timeout=self._wait_seconds(now),
                    return_when=FIRST_COMPLETED,
                )
                for future in finished:
                    self._finish(future)
                self._expire(time.monotonic())
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _submit(self) -> None:
        submitted = True
        while submitted and len(self._running) < self._settings.max_workers:
            submitted = False
            for name, queue in self._ready.items():
                if not queue or len(self._running) >= self._settings.max_workers:
                    continue
                limit = queue[0].scorer.max_concurrency
                if limit is not None and self._per_scorer.get(name, 0) >= limit:
                    continue
                running = _Running(queue.popleft())
                future = self._pool.submit(self._work, running)
                self._running[future] = running
                self._per_scorer[name] = self._per_scorer.get(name, 0) + 1
                submitted = True

    def _work(self, running: _Running) -> list[Feedback] | TransientError:
        running.started = time.monotonic()
        running.deadline = running.started + running.unit.scorer.timeout_seconds
        return _call(running.unit, self._context)

    def _wait_seconds(self, now: float) -> float:
        wake = [r.deadline for r in self._running.values()]
        if self._delayed:
            wake.append(self._delayed[0][0])
        # Calls not started yet have no deadline: look again soon.
        return max(0.0, min([now + 0.25, *wake]) - now)

    def _release(self, future: Future[list[Feedback] | TransientError]) -> Unit:
        unit = self._running.pop(future).unit
        self._per_scorer[unit.scorer.name] -= 1
        return unit

    def _finish(self, future: Future[list[Feedback] | TransientError]) -> None:
        unit = self._release(future)
        result = future.result()  # _call returns its failures; it never raises
        if isinstance(result, TransientError):
            if unit.attempts + 1 < self._settings.max_attempts:
                retry_at = time.monotonic() + _backoff(self._settings, unit.attempts, result)
                retried = replace(unit, attempts=unit.attempts + 1)
                heapq.heappush(self._delayed, (retry_at, next(self._order), retried))
                return
            result = [error_feedback(result, name=unit.scorer.name)]
        self._done(unit, result)

    def _expire(self, now: float) -> None:
        late = [f for f, r in self._running.items() if r.deadline < now and not f.done()]
        if not late:
            return
        for future in late:
            unit = self._release(future)
            seconds = unit.scorer.timeout_seconds
            timeout = TimeoutError(
                f"Scorer {unit.scorer.name!r} did not finish within {seconds:g} seconds; "
                "raise timeout_seconds on the scorer or LOCALSCORERS_SCORER_TIMEOUT."
            )
            self._done(
                unit, [error_feedback(timeout, name=unit.scorer.name, error_code="SCORER_TIMEOUT")]
            )
        # The late calls hold their threads: new work goes to a pool with every thread free.
        self._pool.shutdown(wait=False)
        self._pool = self._new_pool()


def run_units(
    units: Sequence[Unit],
    *,
    settings: Settings,
    context: EvaluationContext,
    done: Callable[[Unit, list[Feedback]], None],
) -> None:
    """Run every unit on a daemon pool with production's timeouts, retries and limits.

    ``done`` is called on the calling thread with each unit's final feedback (error
    feedback for failures and timeouts), as soon as it is known.
    """
    _Scheduler(settings, context, done).run(units)
