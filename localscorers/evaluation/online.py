"""The evaluator: claims pending evaluations and runs scorers on a thread pool.

One dispatcher thread per ``Runner`` claims work (leased), loads the traces and the
scorer versions, hands calls to the scheduler (``scheduler.Scheduler``, shared with
backfill jobs) and writes results back in batches, one transaction per batch. Scorer
calls never touch the database; only the dispatcher writes, so writes stay few and short.

The same class runs in-process (the monitor, started lazily when a commit enqueues
work) and as ``localscorers worker`` in a process of its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Hashable
from typing import TYPE_CHECKING, cast

from localscorers import _clock
from localscorers.evaluation.execution import (
    EvaluationContext,
    LoadedScorer,
    error_feedback,
    light_trace,
    load_scorer,
)
from localscorers.evaluation.pool import DaemonThreadPool
from localscorers.evaluation.scheduler import (
    Pacing,
    Result,
    Scheduler,
    new_pool,
    settle_transient,
    wait_for_change,
)
from localscorers.evaluation.sessions import SessionScoring
from localscorers.evaluation.settings import Settings
from localscorers.exceptions import DiskFullError, ScorerNotFoundError, TransientError
from localscorers.store import Outcome, new_owner_id

if TYPE_CHECKING:
    from localscorers.models import Trace
    from localscorers.store import Claim, Store, Watermark

__all__ = ["Runner", "Settings"]

logger = logging.getLogger(__name__)

_WRITE_INTERVAL = 0.02  # seconds a finished call's result may wait to be written with others
_CLAIM_INTERVAL = 0.02  # seconds between claims while the queue keeps running dry
# Pool tasks of about 5 ms: short, so a claim's calls spread over the threads at once.
_PACING = Pacing(task_seconds=0.005, max_chunk=32, first_chunk=1, prefetch=True)


class Runner:
    """Evaluate pending (trace, scorer) pairs of one database on a thread pool.

    Args:
        storage: the database's stores: the ledger to claim from, the traces of the
            claimed evaluations and the scorer versions to run.
        settings: evaluator settings.
        owner: lease owner id (a fresh one by default).
    """

    def __init__(
        self, storage: Store, *, settings: Settings | None = None, owner: str | None = None
    ) -> None:
        self.settings = settings or Settings()
        self._db = storage.db
        self._store = storage.traces
        self._registry = storage.registry
        self.queue = storage.queue(
            owner=owner or new_owner_id(),
            lease_ms=int(self.settings.lease_seconds * 1000),
            max_attempts=self.settings.max_attempts,
        )
        self._wake = threading.Event()
        self._watch = storage.watch()
        self._stopping = threading.Event()
        self._progress = threading.Condition()
        self._thread: threading.Thread | None = None
        self._executor: DaemonThreadPool | None = None
        self._scheduler: Scheduler | None = None
        self._backlog: list[Claim] = []
        # Claims taken over from a holder that died, running alone (see Claim.suspect).
        self._suspects: set[int] = set()
        # Scorers that wait only for their own calls hung past their timeout, and why.
        self.blocked: dict[Hashable, str] = {}
        self._done: list[Outcome] = []
        # Traces of the claims waiting in the backlog, loaded once: reloading the whole
        # backlog on every dispatch made a long backlog cost O(n) reads per call started.
        self._traces: dict[str, Trace] = {}
        self._light: dict[str, Trace] = {}  # light_trace stand-ins, for scorers not reading it
        self._scorers: dict[tuple[str, str, int], LoadedScorer] = {}
        # Session scorers: enqueued by an idle scan, run on whole sessions (sessions.py).
        self._sessions = SessionScoring(self._db, self._store, self._registry)
        self._scorer_counter: int | None = None
        self._last_renew = time.monotonic()
        self._last_write = time.monotonic()
        self._next_claim = 0.0
        self._close_wait = 2.0
        self.completed = 0

    # -- control -------------------------------------------------------------------

    def start(self) -> None:
        """Start the dispatcher thread and the pool (idempotent)."""
        if self._thread is not None:
            return
        self._executor = new_pool(self.settings, thread_name_prefix="localscorers")
        self._scheduler = Scheduler(self._executor, self.settings, _PACING, wake=self._wake)
        self._thread = threading.Thread(
            target=self._loop, name="localscorers-dispatcher", daemon=True
        )
        self._thread.start()

    def notify(self, count: int = 1) -> None:
        """Tell the dispatcher new work was enqueued."""
        if count:
            self._wake.set()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every evaluation pending now is done.

        Returns:
            False when ``timeout`` ran out, or when all that is left waits for scorer
            calls hung past their timeouts (``blocked`` says which; they are logged).
        """
        self._sessions.scan()  # sessions idle now are pending now
        watermark = self.queue.watermark()
        deadline = None if timeout is None else time.monotonic() + timeout
        self._wake.set()
        while self.queue.has_pending(since=watermark):
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            if self._only_blocked_left(watermark):
                return False  # it waits on calls that may never return (logged with why)
            with self._progress:
                # Woken by our own completions; the cap covers work done by other processes.
                self._progress.wait(timeout=0.05 if remaining is None else min(0.05, remaining))
        return True

    def close(self, *, wait: float = 2.0) -> None:
        """Stop claiming, wait up to ``wait`` seconds for running calls, release the rest.

        Work not finished stays durably pending for the next process or worker.
        """
        if self._thread is None:
            return
        self._close_wait = wait
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout=wait + self.settings.poll_seconds + 5)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._thread = None

    # -- the dispatcher loop ---------------------------------------------------------

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._step()
            except DiskFullError:
                # The database logged it once and makes our next write wait (backoff);
                # a traceback per retry would only fill the log of a full disk.
                self._stopping.wait(self.settings.poll_seconds)
            except Exception:
                logger.exception("localscorers evaluator step failed; retrying")
                self._stopping.wait(self.settings.poll_seconds)
            pause = self._next_claim - time.monotonic()
            if pause > 0 and self._wake.is_set():
                # Work was announced moments after a claim that emptied the queue: let more
                # gather, so one claim (a write transaction) serves many commits. Waking for
                # each commit made the application wait on our write lock for every trace.
                self._stopping.wait(pause)
            if self._running():
                self._wake.wait(timeout=0.01)
            else:
                self._idle()
            self._wake.clear()
        self._finish()
        self._watch.close()

    def _idle(self) -> None:
        """Wait for work: a notify, a commit by another process, or the poll interval."""
        wait_for_change(
            self._watch,
            self._wake,
            self._stopping,
            self.settings.poll_seconds,
            not_before=self._next_claim,
        )

    def _running(self) -> bool:
        return self._scheduler is not None and bool(self._scheduler.running)

    def _step(self) -> None:
        assert self._scheduler is not None  # noqa: S101 - start() ran
        self._collect()
        self._note_blocked()
        self._renew_if_due()
        self._sessions.scan_if_due()
        capacity = self._scheduler.capacity()
        if capacity > 0 and not self._suspects:
            # Claims waiting for a scorer at its concurrency limit are not work we can
            # start: counting them blocked every scorer behind a slow max_concurrency=1 one.
            blocked = self._saturated(with_backlog=False)
            ready = sum(1 for c in self._backlog if (c.experiment_id, c.scorer_name) not in blocked)
            if ready < capacity:
                # Enough for every free thread to run a whole chunk of a fast scorer, since
                # each claim (and its trace load and its completion) is a transaction;
                # slow scorers keep claims small, so other workers can share the queue.
                wanted = min(self.settings.batch_size, capacity * self._claim_chunk())
                claimed = self.queue.claim(wanted, saturated=self._saturated(with_backlog=True))
                if claimed:
                    self._forget_changed_scorers()
                self._backlog.extend(claimed)
                self._suspects.update(c.id for c in claimed if c.suspect)
                if len(claimed) < wanted and not self._suspects:
                    self._next_claim = time.monotonic() + _CLAIM_INTERVAL
            if self._backlog:
                self._dispatch(capacity)
        # After dispatching, so that new calls run while the results are written.
        self._write_done(force=False)

    def _note_blocked(self) -> None:
        assert self._scheduler is not None  # noqa: S101 - start() ran
        blocked = self._scheduler.blocked()
        for key, reason in blocked.items():
            if key not in self.blocked:
                logger.warning("localscorers: %s", reason)
        self.blocked = blocked

    def _only_blocked_left(self, watermark: Watermark) -> bool:
        blocked = self.blocked
        if not blocked:
            return False
        if None in blocked:
            return True
        keys = [cast("tuple[str, str]", key) for key in blocked]
        return not self.queue.has_pending(since=watermark, excluding=keys)

    def drained(self) -> bool:
        """Tell whether nothing is pending but the work of scorers blocked by hung calls.

        What ``worker --drain`` waits for: work that waits on calls that may never
        return must not keep it running forever (``blocked`` says why it waits).
        """
        blocked = self.blocked
        if None in blocked:
            return True
        keys = [cast("tuple[str, str]", key) for key in blocked]
        self._sessions.scan_if_due()  # sessions that went quiet are pending too
        return not self.queue.has_pending(excluding=keys)

    def _finish(self) -> None:
        assert self._scheduler is not None  # noqa: S101 - start() ran
        self._collect()
        self._write_done()
        # Give running calls the grace period close() was given; what remains stays pending.
        if self._scheduler.running:
            self._scheduler.settle(self._close_wait)
            self._collect()
        self._write_done()
        self.queue.release()

    def _forget_changed_scorers(self) -> None:
        # Versions are immutable, but delete + register can reuse a version number.
        counter = self._registry.change_counter()
        if counter != self._scorer_counter:
            self._scorers.clear()
            self._sessions.forget_scorers()
            self._scorer_counter = counter

    def _saturated(self, *, with_backlog: bool) -> set[tuple[str, str]]:
        # Scorers at their limit, counting calls running and, with_backlog, claims waiting.
        assert self._scheduler is not None  # noqa: S101 - start() ran
        waiting: dict[tuple[str, str], int] = {}
        for claim in self._backlog if with_backlog else ():
            key = (claim.experiment_id, claim.scorer_name)
            waiting[key] = waiting.get(key, 0) + 1
        saturated = set()
        for (experiment_id, name, _version), loaded in self._scorers.items():
            key = (experiment_id, name)
            if self._scheduler.saturated(key, loaded, waiting=waiting.get(key, 0)):
                saturated.add(key)
        return saturated

    def _dispatch(self, capacity: int) -> None:
        assert self._scheduler is not None  # noqa: S101 - start() ran
        claims, self._backlog = self._backlog, []
        # Scorers first: they say which claims need a whole trace and which a light one.
        claims = [claim for claim in claims if self._loaded(claim) is not None]
        self._load_traces(claims)
        context = EvaluationContext(db=self._db, origin="online")
        chunks: dict[tuple[str, str, int], list[Claim]] = {}
        for claim in claims:
            if claim.trace_id not in self._traces_for(claim):
                continue  # a deleted trace: already turned into an outcome
            chunks.setdefault(
                (claim.experiment_id, claim.scorer_name, claim.scorer_version), []
            ).append(claim)
        for (experiment_id, name, version), ready in chunks.items():
            key = (experiment_id, name)
            loaded = self._scorers[(experiment_id, name, version)]
            size = self._scheduler.chunk_size(key)
            traces = self._traces_for(ready[0])
            for offset in range(0, len(ready), size):
                if capacity <= 0 or self._scheduler.saturated(key, loaded):
                    self._backlog.extend(ready[offset:])
                    break
                chunk = ready[offset : offset + size]
                items = [(claim, traces[claim.trace_id]) for claim in chunk]
                self._scheduler.start(key, loaded, items, context)
                capacity -= 1
        waiting = {claim.trace_id for claim in self._backlog}
        self._traces = {k: v for k, v in self._traces.items() if k in waiting}
        self._light = {k: v for k, v in self._light.items() if k in waiting}
        self._sessions.keep(waiting)

    def _claim_chunk(self) -> int:
        # The chunk size of the fastest scorer seen, at least 4 (the old fixed claim size).
        assert self._scheduler is not None  # noqa: S101 - start() ran
        return max(4, self._scheduler.fastest_chunk() or 4)

    def _traces_for(self, claim: Claim) -> dict[str, Trace]:
        key = (claim.experiment_id, claim.scorer_name, claim.scorer_version)
        if key in self._sessions.keys:
            return self._sessions.items  # the session up to the claimed trace
        loaded = self._scorers.get(key)
        return self._traces if loaded is None or "trace" in loaded.parameters else self._light

    def _load_traces(self, claims: list[Claim]) -> None:
        """Load what the claims' scorers read: whole traces, or inputs/outputs/expectations.

        A function scorer without a ``trace`` parameter gets a light stand-in: building
        whole traces (spans, tags, pydantic models) was a fifth of the evaluator's time
        with trivial scorers, on the same core as the application in-process.
        """
        whole = [c.trace_id for c in claims if self._traces_for(c) is self._traces]
        whole = [i for i in dict.fromkeys(whole) if i not in self._traces]
        light = [c.trace_id for c in claims if self._traces_for(c) is self._light]
        light = [i for i in dict.fromkeys(light) if i not in self._light]
        self._sessions.load([c for c in claims if self._traces_for(c) is self._sessions.items])
        if whole or light:
            with self._db.read() as conn:
                self._traces.update(
                    (t.info.trace_id, t) for t in self._store.load_traces(conn, whole)
                )
                payloads = self._store.load_payloads(conn, light)
                expectations = self._store.load_expectations(conn, list(payloads))
            self._light.update(
                (trace_id, light_trace(inputs, outputs, expectations.get(trace_id, {})))
                for trace_id, (inputs, outputs) in payloads.items()
            )
        for claim in claims:
            if claim.trace_id not in self._traces_for(claim):
                # Deleted trace: nothing to score, but the row must not stay pending forever.
                self._done.append(Outcome(claim, feedback=()))

    def _loaded(self, claim: Claim) -> LoadedScorer | None:
        key = (claim.experiment_id, claim.scorer_name, claim.scorer_version)
        cached = self._scorers.get(key)
        if cached is not None:
            return cached
        try:
            state = self._registry.get(
                claim.experiment_id, claim.scorer_name, version=claim.scorer_version
            )
        except ScorerNotFoundError as exc:
            self._done.append(
                Outcome(
                    claim,
                    feedback=[
                        error_feedback(exc, name=claim.scorer_name, error_code="SCORER_NOT_FOUND")
                    ],
                )
            )
            return None
        loaded = load_scorer(state, db_path=self._db.path)
        if state.takes_session:
            loaded = self._sessions.wrap(key, loaded)
        self._scorers[key] = loaded
        return loaded

    def _collect(self) -> None:
        assert self._scheduler is not None  # noqa: S101 - start() ran
        collected = self._scheduler.collect()
        self._done.extend(self._outcome(done.token, done.result) for done in collected.done)
        if self._suspects and any(o.claim.id in self._suspects for o in self._done):
            self._write_done()  # at once: if the next suspect kills us, this result stays
        # Claims a timed-out task had not reached are still ours: back to the backlog.
        self._backlog.extend(token for _key, token, _trace in collected.unstarted)

    def _outcome(self, claim: Claim, result: Result) -> Outcome:
        if isinstance(result, tuple):
            return Outcome(claim, plain=result)
        if not isinstance(result, TransientError):
            return Outcome(claim, feedback=self._sessions.stamp(claim, result))
        # The claim counted this attempt already.
        settled = settle_transient(
            result, name=claim.scorer_name, attempts=claim.attempts, settings=self.settings
        )
        if isinstance(settled, list):
            return Outcome(claim, feedback=settled)
        return Outcome(claim, retry_at_ms=_clock.now_ms() + int(settled * 1000))

    def _write_done(self, *, force: bool = True) -> None:
        if not self._done:
            return
        now = time.monotonic()
        if (
            not force
            and self._running()
            and len(self._done) < self.settings.batch_size
            and now - self._last_write < _WRITE_INTERVAL
        ):
            # One write transaction per finished call made the evaluator spend most of its
            # time committing; while calls are running, results are written in batches.
            return
        self._last_write = now
        done, self._done = self._done, []
        written = self.queue.complete(done)
        self._suspects.difference_update(o.claim.id for o in done)
        self.completed += written
        with self._progress:
            self._progress.notify_all()
        if any(o.retry_at_ms is not None for o in done):
            self._wake.set()

    def _renew_if_due(self) -> None:
        now = time.monotonic()
        if now - self._last_renew >= self.settings.lease_seconds / 3:
            self._last_renew = now
            if self._running() or self._backlog:
                self.queue.renew()
