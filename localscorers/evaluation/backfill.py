"""Running one claimed backfill job: the window, the thread pool and the prefix commits.

The window holds the next few pages of traces in cursor order (``_backfill_sql.Plan``
reads them). Their pairs are queued per scorer and handed to the pool in chunks of
one scorer over several traces, sized from the scorer's measured speed. The oldest
traces whose pairs are all done form a prefix, written in ONE transaction with the
counts and the cursor (STYLE.md rule 18), at least every half second, guarded by the
job's lease: a crash loses only uncommitted work, which the next holder redoes.

``backfill.JobRunner`` owns the thread and the pool and hands them to ``Execution``.
"""

from __future__ import annotations

import heapq
import itertools
import random
import threading
import time
from collections import deque
from concurrent.futures import Future
from concurrent.futures import wait as wait_for_futures
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa

from localscorers import _clock
from localscorers.evaluation.execution import (
    EvaluationContext,
    call_plain,
    error_feedback,
    evaluate,
    evaluation_context,
    light_trace,
    load_scorer,
)
from localscorers.evaluation.pool import DaemonThreadPool
from localscorers.exceptions import TransientError
from localscorers.models import Feedback, JobStatus, Trace
from localscorers.store import schema
from localscorers.store.backfill_pages import (
    COUNT_KEYS,
    LeaseLostError,
    Plan,
    Result,
    update_job,
    write_results,
)
from localscorers.store.ledger import move_requests

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from localscorers.evaluation.execution import LoadedScorer, Plain
    from localscorers.evaluation.online import Settings
    from localscorers.store.backfill_pages import PageRow
    from localscorers.store.database import Database
    from localscorers.store.registry import ScorerRegistry
    from localscorers.store.traces import TraceStore

__all__ = ["Execution", "Host"]

_WINDOW_PAGES = 8  # pages of traces held at once: memory is O(this), not O(job)
_COMMIT_SECONDS = 0.5  # a finished prefix waits at most this long (DESIGN: at least once a second)
_CHUNK_SECONDS = 0.05  # target duration of one pool task, so slow scorers still spread out
_SETTLE_SECONDS = 0.05  # how long the dispatcher waits for running chunks before writing
_CHECK_SECONDS = 0.25  # how often a running job looks for a cancel request

_Outcome = list[Feedback] | TransientError | tuple[bool | int | float | str]


class Host(Protocol):
    """What an execution needs from the runner that claimed the job."""

    db: Database
    store: TraceStore
    registry: ScorerRegistry
    settings: Settings
    owner: str
    executor: DaemonThreadPool
    wake: threading.Event
    stopping: threading.Event
    close_wait: float


@dataclass(eq=False)
class _Slot:
    """One trace of the window, in cursor order, with its pairs' results."""

    trace_id: str
    time_ms: int
    remaining: int
    skipped: list[int]
    replaces: dict[int, int]
    results: list[tuple[int, list[Feedback] | Plain, int]] = field(default_factory=list)


@dataclass(eq=False)
class _Work:
    slot: _Slot
    trace: Trace
    attempts: int = 0


@dataclass(eq=False)
class _Chunk:
    """One pool task: one scorer over several traces; results are read as they arrive."""

    scorer: int
    items: list[_Work]
    lock: threading.Lock = field(default_factory=threading.Lock)
    results: list[tuple[_Work, _Outcome, float]] = field(default_factory=list)
    consumed: int = 0
    current: int = -1
    started: float | None = None
    abandoned: bool = False
    future: Future[None] | None = None
    cpu_share: float | None = None  # thread CPU time / wall time, set when the task ends

    def begin(self, index: int, *, halted: bool) -> float | None:
        """Mark item ``index`` as started; None when the chunk was abandoned or halted."""
        with self.lock:
            if self.abandoned or halted:
                return None
            self.current, self.started = index, time.monotonic()
            return self.started

    def deliver(self, work: _Work, outcome: _Outcome, elapsed: float) -> bool:
        """Publish a result; False when the chunk was abandoned (the result is dropped)."""
        with self.lock:
            if self.abandoned:
                return False
            self.results.append((work, outcome, elapsed))
            self.started = None
            return True


def _evaluate(loaded: LoadedScorer, trace: Trace, context: EvaluationContext) -> _Outcome:
    try:
        return evaluate(loaded, trace, context)
    except TransientError as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - evaluate() lets only TransientError out
        return [error_feedback(exc, name=loaded.name)]


class Execution:
    """One claimed job, run to its end, to a cancel, or to the runner's close.

    ``run`` raises ``LeaseLostError`` when another process took the job over, and
    lets infrastructure errors (a deleted scorer version, a database that stays
    locked) out for the runner to fail the job with.
    """

    def __init__(self, host: Host, row: Any) -> None:  # noqa: ANN401 - a job Row
        self.host = host
        self.settings = host.settings
        self.db = host.db
        self.job_id: str = row.job_id
        self.plan = Plan.from_row(row)
        self.specs = self.plan.specs
        self.counts: list[dict[str, Any]] = [dict(s) for s in row.scorers]
        cursor = None if row.cursor_trace_id is None else (row.cursor_time_ms, row.cursor_trace_id)
        self.read_cursor: tuple[int, str] | None = cursor
        self.page_size = max(1, self.settings.batch_size)
        self.window = self.page_size * _WINDOW_PAGES
        self.origin = f"backfill:{self.job_id}"
        self.context = EvaluationContext(db=self.db, origin=self.origin)
        self.halt = threading.Event()
        self.slots: deque[_Slot] = deque()
        self.queues: list[deque[_Work]] = [deque() for _ in self.specs]
        self.running: list[_Chunk] = []
        self.hung: list[_Chunk] = []
        self.retries: list[tuple[float, int, int, _Work]] = []
        self.sequence = itertools.count()
        self.ewma: list[float | None] = [None] * len(self.specs)
        self.cpu_bound = [False] * len(self.specs)
        self.exhausted = False
        self.last_commit = self.last_renew = self.last_check = time.monotonic()
        self.loaded: list[LoadedScorer] = []
        self.direct: list[bool] = []
        self.full: list[bool] = []
        self.wants_expectations: list[bool] = []
        self.timeouts: list[float] = []

    # -- setup and the loop --------------------------------------------------------------

    def _load_scorers(self) -> None:
        for spec in self.specs:
            # A version deleted since the job was created fails the job (not each trace).
            state = self.host.registry.get(self.plan.experiment_id, spec.name, version=spec.version)
            loaded = load_scorer(state, db_path=self.db.path)
            self.loaded.append(loaded)
            self.full.append("trace" in loaded.parameters)
            self.direct.append(loaded.direct)
            self.wants_expectations.append("expectations" in loaded.parameters)
            self.timeouts.append(loaded.timeout_seconds or self.settings.default_timeout_seconds)

    def run(self) -> None:
        """Run the job until it succeeds, is cancelled, or the runner closes."""
        self._load_scorers()
        if any(s.get("total") is None for s in self.counts):
            totals = self.plan.count(self.db, check_existing=False, on_page=self._renew_if_due)
            for spec, total in zip(self.counts, totals, strict=True):
                spec["total"] = total
            self._update({"total": sum(totals), "scorers": self.counts})
        while True:
            if self.host.stopping.is_set():
                self._stop(None, grace=self.host.close_wait)
                return
            if self._cancel_requested():
                self._stop(JobStatus.CANCELLED, grace=1.0)
                return
            self._fill()
            self._collect()
            self._submit()
            self._settle()
            if self.exhausted and not self.slots:
                self._commit(JobStatus.SUCCEEDED)
                return
            if self._commit_due():
                self._commit(None)
                continue  # the window has room again: refill at once
            self._renew_if_due()
            # Finishing chunks set ``wake``; the timeout covers retries and cancel checks.
            self.host.wake.wait(0.05)
            self.host.wake.clear()

    def _settle(self) -> None:
        """Let running chunks finish (briefly) before this thread touches the database.

        A dispatcher writing while pool threads run Python fights them for the GIL at
        every SQLite call, which made trivial scorers a third slower. Scorers slower
        than ``_SETTLE_SECONDS`` mostly wait on I/O, so the dispatcher goes on.
        """
        if self.running:
            futures = [c.future for c in self.running if c.future is not None]
            wait_for_futures(futures, timeout=_SETTLE_SECONDS)
            self._collect()

    def _renew_if_due(self) -> None:
        if time.monotonic() - self.last_renew >= self.settings.lease_seconds / 3:
            lease = int(self.settings.lease_seconds * 1000)
            self._update({"lease_expires_ms": _clock.now_ms() + lease})
            self.last_renew = time.monotonic()

    def _update(self, values: dict[str, Any]) -> None:
        with self.db.write() as conn:
            if not update_job(conn, self.job_id, self.host.owner, values):
                raise LeaseLostError

    def _cancel_requested(self) -> bool:
        now = time.monotonic()
        if now - self.last_check < _CHECK_SECONDS:
            return False
        self.last_check = now
        j = schema.backfill_jobs
        with self.db.read() as conn:
            row = conn.execute(
                sa.select(j.c.cancel_requested, j.c.lease_owner).where(j.c.job_id == self.job_id)
            ).first()
        if row is None or row.lease_owner != self.host.owner:
            raise LeaseLostError
        return bool(row.cancel_requested)

    def _stop(self, status: JobStatus | None, *, grace: float) -> None:
        """Stop at the next trace boundary, keep what finished, then finish or release."""
        self.halt.set()
        deadline = time.monotonic() + grace
        while self.running and time.monotonic() < deadline:
            self.host.wake.wait(0.02)
            self.host.wake.clear()
            self._collect()
        self._collect()
        self._commit(status, release=True)

    # -- reading the window ----------------------------------------------------------------

    def _fill(self) -> None:
        while not self.exhausted and len(self.slots) < self.window:
            # Online work committed before this page is read shows as pending there.
            move_requests(self.db)
            with self.db.read() as conn:
                rows = self.plan.page(
                    conn, self.read_cursor, self.page_size, payload=True, existing=True
                )
                traces = self._traces(conn, rows)
            for row in rows:
                slot = _Slot(row.trace_id, row.time_ms, len(row.run), row.skipped, row.replaces)
                self.slots.append(slot)
                for index in row.run:
                    self.queues[index].append(_Work(slot, traces[row.trace_id]))
            if rows:
                self.read_cursor = (rows[-1].time_ms, rows[-1].trace_id)
            self.exhausted = len(rows) < self.page_size

    def _traces(self, conn: Connection, rows: list[PageRow]) -> dict[str, Trace]:
        full_ids = [r.trace_id for r in rows if any(self.full[i] for i in r.run)]
        found = {t.info.trace_id: t for t in self.host.store.load_traces(conn, full_ids)}
        wanted = [
            r.trace_id
            for r in rows
            if r.trace_id not in found and any(self.wants_expectations[i] for i in r.run)
        ]
        expectations = self.host.store.load_expectations(conn, wanted) if wanted else {}
        for row in rows:
            if row.run and row.trace_id not in found:
                found[row.trace_id] = light_trace(
                    row.inputs, row.outputs, expectations.get(row.trace_id, {})
                )
        return found

    # -- the pool --------------------------------------------------------------------------

    def _run_chunk(self, chunk: _Chunk) -> None:
        loaded = self.loaded[chunk.scorer]
        direct = loaded.call if self.direct[chunk.scorer] else None
        cpu, wall = time.thread_time(), time.monotonic()
        try:
            # evaluate() sets the context per call too; the direct path relies on this one.
            with evaluation_context(self.context):
                for index, work in enumerate(chunk.items):
                    started = chunk.begin(index, halted=self.halt.is_set())
                    if started is None:
                        return
                    outcome = (
                        call_plain(direct, loaded.name, work.trace)
                        if direct is not None
                        else _evaluate(loaded, work.trace, self.context)
                    )
                    if not chunk.deliver(work, outcome, time.monotonic() - started):
                        return
        finally:
            chunk.cpu_share = (time.thread_time() - cpu) / max(time.monotonic() - wall, 1e-9)

    def _chunk_size(self, scorer: int) -> int:
        mean = self.ewma[scorer]
        return 4 if mean is None else max(1, min(512, int(_CHUNK_SECONDS / max(mean, 1e-6))))

    def _saturated(self, scorer: int) -> bool:
        busy = (*self.running, *self.hung)  # hung calls still hold their threads
        limit = self.loaded[scorer].max_concurrency
        if limit is not None and sum(c.scorer == scorer for c in busy) >= limit:
            return True
        # Scorers that compute (rather than wait on I/O) gain nothing from threads under
        # the GIL, and several of them at once thrash it: run them one chunk at a time.
        return self.cpu_bound[scorer] and any(self.cpu_bound[c.scorer] for c in self.running)

    def _start(self, scorer: int, items: list[_Work]) -> None:
        chunk = _Chunk(scorer, items)
        chunk.future = self.host.executor.submit(self._run_chunk, chunk)
        chunk.future.add_done_callback(lambda _f: self.host.wake.set())
        self.running.append(chunk)

    def _submit(self) -> None:
        if self.halt.is_set():
            return
        self.hung = [c for c in self.hung if c.future is not None and not c.future.done()]
        capacity = self.settings.max_workers - len(self.running) - len(self.hung)
        now = time.monotonic()
        while capacity > 0 and self.retries and self.retries[0][0] <= now:
            if self._saturated(self.retries[0][2]):
                break
            _, _, scorer, work = heapq.heappop(self.retries)
            self._start(scorer, [work])
            capacity -= 1
        progressed = True
        while capacity > 0 and progressed:
            progressed = False
            for scorer, queue in enumerate(self.queues):
                if capacity > 0 and queue and not self._saturated(scorer):
                    size = min(self._chunk_size(scorer), len(queue))
                    self._start(scorer, [queue.popleft() for _ in range(size)])
                    capacity -= 1
                    progressed = True

    def _collect(self) -> None:
        now = time.monotonic()
        still: list[_Chunk] = []
        for chunk in self.running:
            assert chunk.future is not None  # noqa: S101 - set by _start
            done = chunk.future.done()  # read first: a done task has appended everything
            with chunk.lock:
                fresh = chunk.results[chunk.consumed :]
                chunk.consumed = len(chunk.results)
                started = chunk.started
                timeout = self.timeouts[chunk.scorer]
                hung = not done and started is not None and now - started > timeout
                chunk.abandoned = hung
            for work, outcome, elapsed in fresh:
                self._record(chunk.scorer, work, outcome, elapsed)
            if done and chunk.cpu_share is not None and len(chunk.items) > 1:
                self.cpu_bound[chunk.scorer] = chunk.cpu_share > 0.5
            if hung:
                self._timed_out(chunk)
            elif not done:
                still.append(chunk)
            elif chunk.consumed < len(chunk.items) and not self.halt.is_set():
                # Every scorer failure becomes a result, so a task that stopped early is
                # a bug here: fail the job rather than wait forever for its traces.
                raise RuntimeError(f"a backfill task stopped early: {chunk.future.exception()!r}")
        self.running = still

    def _timed_out(self, chunk: _Chunk) -> None:
        # A Python call cannot be killed: record the timeout, requeue the chunk's rest,
        # and ignore the late result (runner.Runner does the same).
        name = self.specs[chunk.scorer].name
        error = TimeoutError(
            f"Scorer {name!r} did not finish within {self.timeouts[chunk.scorer]:g} s; raise "
            "timeout_seconds on the scorer or LOCALSCORERS_SCORER_TIMEOUT."
        )
        work = chunk.items[chunk.current]
        work.attempts += 1
        feedback = [error_feedback(error, name=name, error_code="SCORER_TIMEOUT")]
        self._done(chunk.scorer, work, feedback)
        self.queues[chunk.scorer].extendleft(reversed(chunk.items[chunk.current + 1 :]))
        self.hung.append(chunk)

    def _record(self, scorer: int, work: _Work, outcome: _Outcome, elapsed: float) -> None:
        mean = self.ewma[scorer]
        self.ewma[scorer] = elapsed if mean is None else 0.8 * mean + 0.2 * elapsed
        work.attempts += 1
        if isinstance(outcome, TransientError):
            if self.halt.is_set():
                return  # left undone: whoever resumes the job tries it again
            if work.attempts < self.settings.max_attempts:
                base = min(
                    self.settings.backoff_max_seconds,
                    self.settings.backoff_seconds * 2 ** (work.attempts - 1),
                )
                delay = base * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security
                due = time.monotonic() + max(delay, outcome.retry_after or 0.0)
                heapq.heappush(self.retries, (due, next(self.sequence), scorer, work))
                return
            outcome = [error_feedback(outcome, name=self.specs[scorer].name)]
        self._done(scorer, work, outcome)

    @staticmethod
    def _done(scorer: int, work: _Work, outcome: list[Feedback] | Plain) -> None:
        work.slot.results.append((scorer, outcome, work.attempts))
        work.slot.remaining -= 1

    # -- writing ---------------------------------------------------------------------------

    def _ready(self) -> int:
        count = 0
        for slot in self.slots:
            if slot.remaining:
                break
            count += 1
        return count

    def _commit_due(self) -> bool:
        ready = self._ready()
        if not ready:
            return False
        if ready == len(self.slots) and self.exhausted:
            return True
        return ready >= self.window // 2 or time.monotonic() - self.last_commit >= _COMMIT_SECONDS

    def _commit(self, status: JobStatus | None, *, release: bool = False) -> None:
        """Write the finished prefix of the window with counts and cursor, in one transaction."""
        prefix = [self.slots.popleft() for _ in range(self._ready())]
        results: list[Result] = []
        for slot in prefix:
            for index in slot.skipped:
                self.counts[index]["skipped"] += 1
                self.counts[index]["processed"] += 1
            results.extend(
                Result(slot.trace_id, index, outcome, attempts, slot.replaces.get(index))
                for index, outcome, attempts in slot.results
            )
        now = _clock.now_ms()
        with self.db.write() as conn:
            if results:
                write_results(
                    conn, self.plan, results, origin=self.origin, now=now, counts=self.counts
                )
            values: dict[str, Any] = {"scorers": self.counts}
            for key in COUNT_KEYS[1:]:
                values[key] = sum(s[key] for s in self.counts)
            if prefix:
                values["cursor_time_ms"] = prefix[-1].time_ms
                values["cursor_trace_id"] = prefix[-1].trace_id
            if status is JobStatus.SUCCEEDED:
                # The total counted at the start misses traces logged into the range since.
                values["total"] = values["processed"]
            if status is not None:
                values |= {"status": status.value, "finished_ms": now}
            elif release:
                # Nobody runs it now: PENDING until a runner (here or elsewhere) resumes it.
                values["status"] = JobStatus.PENDING.value
            held = status is None and not release
            lease = now + int(self.settings.lease_seconds * 1000)
            values["lease_expires_ms"] = lease if held else None
            if not held:
                values["lease_owner"] = None
            if not update_job(conn, self.job_id, self.host.owner, values):
                raise LeaseLostError
        self.last_commit = self.last_renew = time.monotonic()
