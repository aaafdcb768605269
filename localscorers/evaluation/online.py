"""The evaluator: claims pending evaluations and runs scorers on a thread pool.

One dispatcher thread per ``Runner`` claims work (leased), loads the traces and the
scorer versions, hands calls to a thread pool (``_pool.DaemonThreadPool``) and writes
results back in batches, one transaction per batch. Scorer calls never touch the
database; only the dispatcher writes, so writes stay few and short.

The same class runs in-process (the monitor, started lazily when a commit enqueues
work) and as ``localscorers worker`` in a process of its own.
"""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
from concurrent.futures import Future
from concurrent.futures import wait as wait_for_futures
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from localscorers import _clock
from localscorers.evaluation.execution import (
    EvaluationContext,
    LoadedScorer,
    Plain,
    call_plain,
    error_feedback,
    evaluate,
    evaluation_context,
    light_trace,
    load_scorer,
)
from localscorers.evaluation.pool import DaemonThreadPool
from localscorers.exceptions import ConfigurationError, ScorerNotFoundError, TransientError
from localscorers.store.ledger import Claim, EvaluationQueue, Outcome, new_owner_id

if TYPE_CHECKING:
    from localscorers.models import Feedback, Trace
    from localscorers.store.database import Database
    from localscorers.store.registry import ScorerRegistry
    from localscorers.store.traces import TraceStore

__all__ = ["Runner", "Settings"]

logger = logging.getLogger(__name__)

_WRITE_INTERVAL = 0.02  # seconds a finished call's result may wait to be written with others
_CLAIM_INTERVAL = 0.02  # seconds between claims while the queue keeps running dry


def _env_number(name: str, default: float, *, minimum: float) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise ConfigurationError(f"{name} must be a number >= {minimum:g}, got {raw!r}.")
    return value


@dataclass(frozen=True)
class Settings:
    """Evaluator settings; ``from_env`` reads the ``LOCALSCORERS_*`` variables.

    Attributes:
        max_workers: scorer calls running at once (``LOCALSCORERS_MAX_WORKERS``).
        lease_seconds: how long a claim lasts without renewal (``LOCALSCORERS_LEASE_SECONDS``).
        max_attempts: tries of a transiently failing evaluation before it is recorded as failed.
        backoff_seconds: first retry delay; doubled per attempt, with jitter.
        backoff_max_seconds: the cap on a retry delay.
        default_timeout_seconds: per-call timeout for scorers that set none
            (``LOCALSCORERS_SCORER_TIMEOUT``).
        poll_seconds: how often an idle runner looks for work written by other processes.
    """

    max_workers: int = 8
    lease_seconds: float = 60.0
    max_attempts: int = 4
    backoff_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    default_timeout_seconds: float = 300.0
    poll_seconds: float = 0.5
    batch_size: int = field(default=256)

    @classmethod
    def from_env(cls) -> Settings:
        """Read settings from the environment, with the defaults above.

        Raises:
            ConfigurationError: a variable is not a valid number.
        """
        return cls(
            max_workers=int(_env_number("LOCALSCORERS_MAX_WORKERS", 8, minimum=1)),
            lease_seconds=_env_number("LOCALSCORERS_LEASE_SECONDS", 60.0, minimum=0.1),
            default_timeout_seconds=_env_number(
                "LOCALSCORERS_SCORER_TIMEOUT", 300.0, minimum=0.001
            ),
            max_attempts=int(_env_number("LOCALSCORERS_MAX_ATTEMPTS", 4, minimum=1)),
            backoff_seconds=_env_number("LOCALSCORERS_BACKOFF_SECONDS", 0.5, minimum=0.0),
        )


_TASK_SECONDS = 0.005  # aim for pool tasks this long: fast scorers get claims in chunks
_MAX_CHUNK = 32


@dataclass
class _Task:
    """One pool task: one scorer over a chunk of claims, called one after another.

    A task per (trace, scorer) pair cost more in submitting, waking and handing the GIL
    around than a trivial scorer costs to run; a chunk amortizes that. The worker records
    each result and when each call started, under ``lock``, so a timeout still applies
    to each call: finished results are kept, the call that overran is recorded as
    ``SCORER_TIMEOUT``, and the claims it had not reached go back to the backlog.
    """

    claims: list[Claim]
    key: tuple[str, str]
    timeout: float
    future: Future[None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    results: list[list[Feedback] | TransientError | Plain] = field(default_factory=list)
    # Infinity until a pool thread starts the task: waiting in the executor's queue
    # must not count against a call's timeout.
    call_started: float = math.inf
    first_started: float = math.inf
    abandoned: bool = False


def _run_chunk(
    task: _Task, loaded: LoadedScorer, traces: list[Trace], context: EvaluationContext
) -> None:
    # A direct scorer (a function that takes no trace) is called without evaluate()'s
    # per-call wrapping, its plain results kept plain (see call_plain).
    with task.lock:
        task.first_started = task.call_started = time.monotonic()
    with evaluation_context(context):
        for trace in traces:
            result: list[Feedback] | TransientError | Plain
            if loaded.direct and loaded.call is not None:
                result = call_plain(loaded.call, loaded.name, trace)
            else:
                try:
                    result = evaluate(loaded, trace, context)
                except TransientError as exc:
                    result = exc
            with task.lock:
                if task.abandoned:
                    return  # the dispatcher gave up on this call; its result is not ours to write
                task.results.append(result)
                task.call_started = time.monotonic()


class Runner:
    """Evaluate pending (trace, scorer) pairs of one database on a thread pool.

    Args:
        db: the database.
        store: reads traces for the claimed evaluations.
        registry: reads the scorer versions to run.
        settings: evaluator settings.
        owner: lease owner id (a fresh one by default).
    """

    def __init__(
        self,
        db: Database,
        store: TraceStore,
        registry: ScorerRegistry,
        *,
        settings: Settings | None = None,
        owner: str | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self._db = db
        self._store = store
        self._registry = registry
        self.queue = EvaluationQueue(
            db, owner=owner or new_owner_id(), lease_ms=int(self.settings.lease_seconds * 1000)
        )
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._progress = threading.Condition()
        self._thread: threading.Thread | None = None
        self._executor: DaemonThreadPool | None = None
        self._backlog: list[Claim] = []
        self._running: list[_Task] = []
        # Calls past their timeout: recorded as SCORER_TIMEOUT, but a Python call cannot be
        # killed, so each still holds a pool thread (and a slot of its scorer's limit)
        # until it returns. Counting them keeps later calls from queueing behind them with
        # their own timeouts already running.
        self._abandoned: list[_Task] = []
        self._done: list[Outcome] = []
        # Traces of the claims waiting in the backlog, loaded once: reloading the whole
        # backlog on every dispatch made a long backlog cost O(n) reads per call started.
        self._traces: dict[str, Trace] = {}
        self._light: dict[str, Trace] = {}  # light_trace stand-ins, for scorers not reading it
        self._scorers: dict[tuple[str, str, int], LoadedScorer] = {}
        # Seconds per call, per scorer, smoothed: sizes the chunks of fast scorers.
        self._call_seconds: dict[tuple[str, str], float] = {}
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
        self._executor = DaemonThreadPool(
            max_workers=self.settings.max_workers, thread_name_prefix="localscorers"
        )
        self._thread = threading.Thread(
            target=self._loop, name="localscorers-dispatcher", daemon=True
        )
        self._thread.start()

    def notify(self, count: int = 1) -> None:
        """Tell the dispatcher new work was enqueued."""
        if count:
            self._wake.set()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every evaluation pending now is done; return False on timeout."""
        watermark = self.queue.watermark()
        deadline = None if timeout is None else time.monotonic() + timeout
        self._wake.set()
        while self.queue.has_pending(since=watermark):
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
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
            except Exception:
                logger.exception("localscorers evaluator step failed; retrying")
                self._stopping.wait(self.settings.poll_seconds)
            pause = self._next_claim - time.monotonic()
            if pause > 0 and self._wake.is_set():
                # Work was announced moments after a claim that emptied the queue: let more
                # gather, so one claim (a write transaction) serves many commits. Waking for
                # each commit made the application wait on our write lock for every trace.
                self._stopping.wait(pause)
            wait = 0.01 if self._running else self.settings.poll_seconds
            self._wake.wait(timeout=wait)
            self._wake.clear()
        self._finish()

    def _step(self) -> None:
        self._collect()
        self._renew_if_due()
        self._abandoned = [t for t in self._abandoned if t.future is None or not t.future.done()]
        # A few tasks beyond the thread count wait in the executor's queue, so a thread
        # that finishes a call starts the next at once instead of idling until this loop
        # wakes (slow 20 ms scorers lost ~15% of their parallel throughput to that gap).
        prefetch = max(1, self.settings.max_workers // 4)
        capacity = self.settings.max_workers + prefetch - len(self._running) - len(self._abandoned)
        if capacity > 0:
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
                if len(claimed) < wanted:
                    self._next_claim = time.monotonic() + _CLAIM_INTERVAL
            if self._backlog:
                self._dispatch(capacity)
        # After dispatching, so that new calls run while the results are written.
        self._write_done(force=False)

    def _finish(self) -> None:
        self._collect()
        self._write_done()
        # Give running calls the grace period close() was given; what remains stays pending.
        # (Future.exception(timeout) raised TimeoutError here, which killed this thread
        # before release() and left the claims leased to a monitor that was gone.)
        if self._running:
            futures = [task.future for task in self._running if task.future is not None]
            wait_for_futures(futures, timeout=self._close_wait)
            self._collect()
        self._write_done()
        self.queue.release()

    def _forget_changed_scorers(self) -> None:
        # Versions are immutable, but delete + register can reuse a version number.
        counter = self._registry.change_counter()
        if counter != self._scorer_counter:
            self._scorers.clear()
            self._scorer_counter = counter

    def _saturated(self, *, with_backlog: bool) -> set[tuple[str, str]]:
        # Scorers at their limit, counting calls running and, with_backlog, claims waiting.
        counts: dict[tuple[str, str], int] = {}
        for task in (*self._running, *self._abandoned):
            counts[task.key] = counts.get(task.key, 0) + 1
        for claim in self._backlog if with_backlog else ():
            key = (claim.experiment_id, claim.scorer_name)
            counts[key] = counts.get(key, 0) + 1
        saturated = set()
        for (experiment_id, name), count in counts.items():
            loaded = next(
                (s for k, s in self._scorers.items() if k[0] == experiment_id and k[1] == name),
                None,
            )
            if loaded is not None and loaded.max_concurrency and count >= loaded.max_concurrency:
                saturated.add((experiment_id, name))
        return saturated

    def _dispatch(self, capacity: int) -> None:
        assert self._executor is not None  # noqa: S101 - start() ran
        claims, self._backlog = self._backlog, []
        # Scorers first: they say which claims need a whole trace and which a light one.
        claims = [claim for claim in claims if self._loaded(claim) is not None]
        self._load_traces(claims)
        running: dict[tuple[str, str], int] = {}
        for task in (*self._running, *self._abandoned):
            running[task.key] = running.get(task.key, 0) + 1
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
            size = self._chunk_size(key)
            for offset in range(0, len(ready), size):
                limit = loaded.max_concurrency
                if capacity <= 0 or (limit is not None and running.get(key, 0) >= limit):
                    self._backlog.extend(ready[offset:])
                    break
                chunk = ready[offset : offset + size]
                timeout = loaded.timeout_seconds or self.settings.default_timeout_seconds
                task = _Task(chunk, key, timeout)
                traces = self._traces_for(chunk[0])
                chunk_traces = [traces[c.trace_id] for c in chunk]
                task.future = self._executor.submit(_run_chunk, task, loaded, chunk_traces, context)
                task.future.add_done_callback(lambda _f: self._wake.set())
                self._running.append(task)
                running[key] = running.get(key, 0) + 1
                capacity -= 1
        waiting = {claim.trace_id for claim in self._backlog}
        self._traces = {k: v for k, v in self._traces.items() if k in waiting}
        self._light = {k: v for k, v in self._light.items() if k in waiting}

    def _claim_chunk(self) -> int:
        # The chunk size of the fastest scorer seen, at least 4 (the old fixed claim size).
        fastest = min(self._call_seconds.values(), default=None)
        if fastest is None:
            return 4
        return max(4, min(_MAX_CHUNK, int(_TASK_SECONDS / max(fastest, 1e-6))))

    def _chunk_size(self, key: tuple[str, str]) -> int:
        seconds = self._call_seconds.get(key)
        if seconds is None:
            return 1  # unknown speed: one call, then we know
        return max(1, min(_MAX_CHUNK, int(_TASK_SECONDS / max(seconds, 1e-6))))

    def _traces_for(self, claim: Claim) -> dict[str, Trace]:
        loaded = self._scorers.get((claim.experiment_id, claim.scorer_name, claim.scorer_version))
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
        self._scorers[key] = loaded
        return loaded

    def _collect(self) -> None:
        now = time.monotonic()
        still: list[_Task] = []
        for task in self._running:
            assert task.future is not None  # noqa: S101 - set when submitted
            if task.future.done():
                self._finish_task(task, now)
                continue
            with task.lock:
                overran = now - task.call_started > task.timeout
                if overran:
                    task.abandoned = True
                    results = list(task.results)
            if not overran:
                still.append(task)
                continue
            # A Python call cannot be killed: record the timeout and ignore its late result.
            finished, late = task.claims[: len(results)], task.claims[len(results)]
            self._done.extend(self._outcome(c, r) for c, r in zip(finished, results, strict=True))
            timeout = TimeoutError(
                f"Scorer {late.scorer_name!r} did not finish within its timeout; "
                "raise timeout_seconds on the scorer or LOCALSCORERS_SCORER_TIMEOUT."
            )
            self._done.append(
                Outcome(
                    late,
                    feedback=[
                        error_feedback(timeout, name=late.scorer_name, error_code="SCORER_TIMEOUT")
                    ],
                )
            )
            self._backlog.extend(task.claims[len(results) + 1 :])  # not started: still ours
            self._call_seconds[task.key] = task.timeout
            self._abandoned.append(task)
        self._running = still

    def _finish_task(self, task: _Task, now: float) -> None:
        assert task.future is not None  # noqa: S101 - set when submitted
        error = task.future.exception()
        results = task.results
        self._done.extend(self._outcome(c, r) for c, r in zip(task.claims, results, strict=False))
        if error is not None or len(results) < len(task.claims):
            # The chunk itself failed (not a scorer: evaluate() turns those into data).
            failure = error or RuntimeError("the scorer task stopped early")
            self._done.extend(
                Outcome(c, feedback=[error_feedback(failure, name=c.scorer_name)])
                for c in task.claims[len(results) :]
            )
            return
        per_call = (now - task.first_started) / len(task.claims)
        previous = self._call_seconds.get(task.key)
        self._call_seconds[task.key] = (
            per_call if previous is None else 0.7 * previous + 0.3 * per_call
        )

    def _outcome(self, claim: Claim, result: list[Feedback] | TransientError | Plain) -> Outcome:
        if isinstance(result, tuple):
            return Outcome(claim, plain=result)
        if not isinstance(result, TransientError):
            return Outcome(claim, feedback=result)
        if claim.attempts + 1 < self.settings.max_attempts:
            return Outcome(claim, retry_at_ms=_clock.now_ms() + self._backoff_ms(claim, result))
        return Outcome(claim, feedback=[error_feedback(result, name=claim.scorer_name)])

    def _backoff_ms(self, claim: Claim, exc: TransientError) -> int:
        base = min(
            self.settings.backoff_max_seconds,
            self.settings.backoff_seconds * (2**claim.attempts),
        )
        delay = base * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security
        if exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        return int(delay * 1000)

    def _write_done(self, *, force: bool = True) -> None:
        if not self._done:
            return
        now = time.monotonic()
        if (
            not force
            and self._running
            and len(self._done) < self.settings.batch_size
            and now - self._last_write < _WRITE_INTERVAL
        ):
            # One write transaction per finished call made the evaluator spend most of its
            # time committing; while calls are running, results are written in batches.
            return
        self._last_write = now
        done, self._done = self._done, []
        written = self.queue.complete(done)
        self.completed += written
        with self._progress:
            self._progress.notify_all()
        if any(o.retry_at_ms is not None for o in done):
            self._wake.set()

    def _renew_if_due(self) -> None:
        now = time.monotonic()
        if now - self._last_renew >= self.settings.lease_seconds / 3:
            self._last_renew = now
            if self._running or self._backlog:
                self.queue.renew()
