"""The one scheduler of scorer calls, shared by online scoring and backfill jobs.

A caller (``online.Runner`` or ``backfill.Execution``) decides WHAT to run; the
scheduler decides how: it hands calls to the thread pool in chunks (one scorer over
several traces, sized from the scorer's measured speed, since a task per call cost
more in submitting and waking than a trivial scorer costs to run), keeps each scorer
within its concurrency limit, applies each call's timeout, and gives up on calls that
overran (a Python call cannot be killed: the call is recorded as ``SCORER_TIMEOUT``
and its late result ignored). Retries of transient errors use one backoff rule.

Each item of a chunk carries a caller's token (a claim, a backfill work item) that
comes back with its result.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Hashable
from concurrent.futures import Future
from concurrent.futures import wait as wait_for_futures
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from localscorers.evaluation.execution import (
    EvaluationContext,
    LoadedScorer,
    call_plain,
    error_feedback,
    evaluate,
    evaluation_context,
)
from localscorers.evaluation.pool import DaemonThreadPool
from localscorers.exceptions import TransientError
from localscorers.models import Feedback
from localscorers.store.results import Plain

if TYPE_CHECKING:
    from localscorers.evaluation.settings import Settings
    from localscorers.models import Trace
    from localscorers.store import Watch

__all__ = [
    "Done",
    "Pacing",
    "Result",
    "Scheduler",
    "backoff_seconds",
    "new_pool",
    "settle_transient",
    "wait_for_change",
]

# What one call gives: feedback, a plain value, or a transient error to retry.
Result = list[Feedback] | TransientError | Plain
_ABANDONED_PER_WORKER = 4
_WATCH_SECONDS = 0.01  # how often an idle runner looks for commits of other processes


def new_pool(settings: Settings, *, thread_name_prefix: str) -> DaemonThreadPool:
    """Return the pool a runner's scheduler runs calls on.

    Up to four stuck calls per worker thread are replaced by fresh threads: beyond
    that, each hung call keeps holding its thread (a thread per stuck call is memory).
    """
    return DaemonThreadPool(
        settings.max_workers,
        thread_name_prefix=thread_name_prefix,
        max_abandoned=_ABANDONED_PER_WORKER * settings.max_workers,
    )


def wait_for_change(
    watch: Watch,
    wake: threading.Event,
    stopping: threading.Event,
    poll_seconds: float,
    *,
    not_before: float = 0.0,
) -> None:
    """Wait for ``wake``, a commit by another connection, or ``poll_seconds`` (runners idle so).

    A commit is seen within ``_WATCH_SECONDS`` through ``ChangeWatch`` (one pragma, no
    transaction), so a worker takes up work tens of milliseconds after another process
    commits it instead of up to ``poll_seconds`` later. A commit is acted on no sooner
    than ``not_before`` (monotonic), so that one claim serves a burst of commits.
    """
    if not watch.supported:
        wake.wait(timeout=poll_seconds)
        return
    watch.changed()  # what the runner wrote itself just before is not news
    deadline = time.monotonic() + poll_seconds
    while not wake.is_set() and not stopping.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0 or wake.wait(timeout=min(_WATCH_SECONDS, remaining)):
            return
        if time.monotonic() >= not_before and watch.changed():
            return


def backoff_seconds(settings: Settings, failures: int, retry_after: float | None) -> float:
    """Return the delay before retry number ``failures``: doubling, capped, with jitter.

    A server's ``Retry-After`` (``retry_after``) is honoured when it asks for longer.
    """
    base: float = min(
        settings.backoff_max_seconds, settings.backoff_seconds * 2.0 ** (failures - 1)
    )
    delay = base * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security
    return max(delay, retry_after or 0.0)


def settle_transient(
    error: TransientError, *, name: str, attempts: int, settings: Settings
) -> float | list[Feedback]:
    """Decide a transient failure after ``attempts`` tries: a retry delay, or final feedback."""
    if attempts < settings.max_attempts:
        return backoff_seconds(settings, attempts, error.retry_after)
    return [error_feedback(error, name=name)]


@dataclass(frozen=True)
class Pacing:
    """How a caller wants its calls chunked.

    Attributes:
        task_seconds: aim for pool tasks this long (chunks of fast scorers grow to it).
        max_chunk: the most calls in one task.
        first_chunk: calls in a task before the scorer's speed is known.
        prefetch: keep a few tasks beyond the thread count queued, so a thread that
            finishes starts the next at once instead of idling until the caller wakes.
        serialize_cpu_bound: run scorers that compute (rather than wait on I/O) one
            task at a time: under the GIL several of them at once only thrash it.
    """

    task_seconds: float
    max_chunk: int
    first_chunk: int
    prefetch: bool = False
    serialize_cpu_bound: bool = False


class Done(NamedTuple):
    """A finished call: the scorer's key, the caller's token and what the call gave."""

    key: Hashable
    token: Any
    result: Result


@dataclass(eq=False)
class _Task:
    """One pool task: one scorer over a chunk of items, called one after another.

    The worker publishes each result and when each call started under ``lock``, so a
    timeout applies to each call, and finished results are read while the rest run.
    """

    key: Hashable
    loaded: LoadedScorer
    items: list[tuple[Any, Trace]]
    timeout: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    results: list[tuple[Any, Result, float]] = field(default_factory=list)
    consumed: int = 0
    current: int = -1
    # None until a pool thread starts a call: waiting in the queue is not running late.
    started: float | None = None
    abandoned: bool = False
    replaced: bool = False  # abandoned, and the pool started a thread in its place
    future: Future[None] | None = None
    cpu_share: float | None = None  # thread CPU time / wall time, set when the task ends

    def begin(self, index: int, *, halted: bool) -> float | None:
        """Mark item ``index`` as started; None when the task was abandoned or halted."""
        with self.lock:
            if self.abandoned or halted:
                return None
            self.current, self.started = index, time.monotonic()
            return self.started

    def deliver(
        self, token: object, result: Result, started: float, *, next_index: int | None, halted: bool
    ) -> float | None:
        """Publish a result, start ``next_index`` (one lock); None: stop (end, halt, abandoned)."""
        with self.lock:
            if self.abandoned:
                return None
            now = time.monotonic()
            self.results.append((token, result, now - started))
            if next_index is None or halted:
                self.started = None
                return None
            self.current, self.started = next_index, now
            return now


def _call(loaded: LoadedScorer, trace: Trace, context: EvaluationContext) -> Result:
    try:
        return evaluate(loaded, trace, context)
    except TransientError as exc:
        return exc


def _run(task: _Task, context: EvaluationContext, halt: threading.Event) -> None:
    cpu, wall = time.thread_time(), time.monotonic()
    loaded, name = task.loaded, task.loaded.name
    # A function taking no trace: no per-call wrapping, plain values kept plain.
    direct = loaded.call if loaded.direct else None
    items, last, index = task.items, len(task.items) - 1, 0
    try:
        # evaluate() sets the context per call too; the direct path relies on this one.
        with evaluation_context(context):
            started = task.begin(index, halted=halt.is_set()) if items else None
            while started is not None:
                token, trace = items[index]
                if direct is not None:
                    result = call_plain(direct, name, trace)
                else:
                    result = _call(loaded, trace, context)
                index += 1
                following = index if index <= last else None
                started = task.deliver(
                    token, result, started, next_index=following, halted=halt.is_set()
                )
    finally:
        task.cpu_share = (time.thread_time() - cpu) / max(time.monotonic() - wall, 1e-9)


class Collected(NamedTuple):
    """What ``Scheduler.collect`` found: finished calls, and items handed back unstarted."""

    done: list[Done]
    unstarted: list[tuple[Hashable, Any, Trace]]


class Scheduler:
    """Run scorer calls in chunks on a pool, within limits and timeouts.

    Args:
        executor: the pool the calls run on.
        settings: ``max_workers`` and the default timeout.
        pacing: how calls are chunked.
        wake: set whenever a task ends, so the caller can collect at once.
    """

    def __init__(
        self,
        executor: DaemonThreadPool,
        settings: Settings,
        pacing: Pacing,
        *,
        wake: threading.Event,
    ) -> None:
        self.executor = executor
        self.settings = settings
        self.pacing = pacing
        self.wake = wake
        self.halt = threading.Event()  # tasks stop at the next call (a backfill stopping)
        self.running: list[_Task] = []
        # Calls past their timeout: recorded as SCORER_TIMEOUT, but still running.
        self.hung: list[_Task] = []
        # Seconds per call, per scorer, smoothed: sizes the chunks of fast scorers.
        self._call_seconds: dict[Hashable, float] = {}
        self._cpu_bound: dict[Hashable, bool] = {}

    # -- capacity ------------------------------------------------------------------

    def _forget_returned(self) -> None:
        self.hung = [t for t in self.hung if t.future is None or not t.future.done()]

    def capacity(self) -> int:
        """Return how many more tasks may start now.

        A hung call whose thread the pool replaced holds no capacity; one it could not
        replace (past the pool's bound) still holds its thread.
        """
        self._forget_returned()
        prefetch = max(1, self.settings.max_workers // 4) if self.pacing.prefetch else 0
        holding = sum(not t.replaced for t in self.hung)
        return self.settings.max_workers + prefetch - len(self.running) - holding

    def busy(self, key: Hashable) -> int:
        """Return the tasks of one scorer running, hung ones included."""
        return sum(t.key == key for t in (*self.running, *self.hung))

    def _limit(self, key: Hashable, loaded: LoadedScorer) -> int | None:
        # A scorer with calls hung past their timeout is isolated: its hung calls count
        # against its own slots (its limit, at most max_workers), so a scorer whose calls
        # keep hanging ends up waiting alone while the others keep the pool.
        limit = loaded.max_concurrency
        if any(t.key == key for t in self.hung):
            return min(limit or self.settings.max_workers, self.settings.max_workers)
        return limit

    def saturated(self, key: Hashable, loaded: LoadedScorer, *, waiting: int = 0) -> bool:
        """Tell whether the scorer may start no more tasks now (with ``waiting`` more queued)."""
        limit = self._limit(key, loaded)
        if limit is not None and self.busy(key) + waiting >= limit:
            return True
        return (
            self.pacing.serialize_cpu_bound
            and self._cpu_bound.get(key, False)
            and any(self._cpu_bound.get(t.key, False) for t in self.running)
        )

    def chunk_size(self, key: Hashable) -> int:
        """Return how many calls of this scorer to put in one task."""
        seconds = self._call_seconds.get(key)
        if seconds is None:
            return self.pacing.first_chunk
        return max(
            1, min(self.pacing.max_chunk, int(self.pacing.task_seconds / max(seconds, 1e-6)))
        )

    def blocked(self) -> dict[Hashable, str]:
        """Say which scorers wait only for their own hung calls to return, and why.

        Their remaining work stays pending for that reason (``worker --drain`` says so
        and exits). When hung calls the pool could not replace hold every thread,
        every scorer is blocked (key None).
        """
        self._forget_returned()
        reasons: dict[Hashable, str] = {}
        for task in self.hung:
            if task.key in reasons or self._limit(task.key, task.loaded) is None:
                continue
            count = sum(t.key == task.key for t in self.hung)
            if count >= (self._limit(task.key, task.loaded) or 0):
                reasons[task.key] = (
                    f"scorer {task.loaded.name!r} has {count} call(s) still running past "
                    f"its timeout of {task.timeout:g} s; its other evaluations wait for them "
                    "to return. Fix the scorer (or raise its timeout_seconds), then run the "
                    "worker again."
                )
        if self.hung and self.capacity() <= 0 and not self.running:
            reasons[None] = (
                f"{len(self.hung)} scorer call(s) hang past their timeouts and hold every "
                "thread; restart the process after fixing the scorers."
            )
        return reasons

    def fastest_chunk(self) -> int | None:
        """Return the chunk size of the fastest scorer seen, or None before any finished."""
        if not self._call_seconds:
            return None
        return self.chunk_size(min(self._call_seconds, key=self._call_seconds.__getitem__))

    # -- running -------------------------------------------------------------------

    def start(
        self,
        key: Hashable,
        loaded: LoadedScorer,
        items: list[tuple[Any, Trace]],
        context: EvaluationContext,
    ) -> None:
        """Start one task: ``loaded`` over ``items`` (token, trace), one call after another."""
        timeout = loaded.timeout_seconds or self.settings.default_timeout_seconds
        task = _Task(key, loaded, items, timeout)
        task.future = self.executor.submit(_run, task, context, self.halt)
        task.future.add_done_callback(lambda _f: self.wake.set())
        self.running.append(task)

    def settle(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for every running task to end."""
        futures = [t.future for t in self.running if t.future is not None]
        if futures:
            wait_for_futures(futures, timeout=timeout)

    def collect(self) -> Collected:
        """Take the results published so far; give up on calls past their timeout."""
        collected = Collected([], [])
        now = time.monotonic()
        still: list[_Task] = []
        for task in self.running:
            assert task.future is not None  # noqa: S101 - set by start()
            done = task.future.done()  # read first: a done task has published everything
            with task.lock:
                fresh = task.results[task.consumed :]
                task.consumed = len(task.results)
                started = task.started
                hung = not done and started is not None and now - started > task.timeout
                task.abandoned = hung
            if fresh:
                self._measure(task.key, [elapsed for _, _, elapsed in fresh])
                key = task.key
                collected.done.extend([Done(key, token, result) for token, result, _ in fresh])
            if done and task.cpu_share is not None and len(task.items) > 1:
                self._cpu_bound[task.key] = task.cpu_share > 0.5
            if hung:
                self._timed_out(task, collected)
            elif not done:
                still.append(task)
            else:
                self._ended(task, collected)
        self.running = still
        return collected

    def _measure(self, key: Hashable, elapsed: list[float]) -> None:
        mean = self._call_seconds.get(key)
        for seconds in elapsed:  # smoothed call by call
            mean = seconds if mean is None else 0.8 * mean + 0.2 * seconds
        if mean is not None:
            self._call_seconds[key] = mean

    def _timed_out(self, task: _Task, collected: Collected) -> None:
        name = task.loaded.name
        error = TimeoutError(
            f"Scorer {name!r} did not finish within {task.timeout:g} s; raise "
            "timeout_seconds on the scorer or LOCALSCORERS_SCORER_TIMEOUT."
        )
        token = task.items[task.current][0]
        feedback = [error_feedback(error, name=name, error_code="SCORER_TIMEOUT")]
        collected.done.append(Done(task.key, token, feedback))
        collected.unstarted.extend(
            (task.key, token, trace) for token, trace in task.items[task.current + 1 :]
        )
        self._call_seconds[task.key] = task.timeout
        assert task.future is not None  # noqa: S101 - set by start()
        task.replaced = self.executor.abandon(task.future)
        self.hung.append(task)

    def _ended(self, task: _Task, collected: Collected) -> None:
        assert task.future is not None  # noqa: S101 - set by start()
        rest = task.items[task.consumed :]
        if not rest:
            return
        error = task.future.exception()
        if error is None and self.halt.is_set():
            collected.unstarted.extend((task.key, token, trace) for token, trace in rest)
            return
        # Scorer failures are results, so the task itself failed: say so for each item.
        failure = error or RuntimeError("the scorer task stopped early")
        collected.done.extend(
            Done(task.key, token, [error_feedback(failure, name=task.loaded.name)])
            for token, _ in rest
        )
