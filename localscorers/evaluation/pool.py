"""A thread pool whose threads do not hold the process open at exit.

``concurrent.futures.ThreadPoolExecutor`` joins every one of its threads when the
interpreter exits, before ``atexit`` handlers run. A scorer call that never returns (a
judge stuck on a socket) would then keep the application from exiting, and
``LOCALSCORERS_EXIT_WAIT_SECONDS`` could not cut the wait short: our atexit handler runs
only after that join. This pool is the same ``Executor`` with daemon threads; a call
still running at exit is abandoned, and its evaluation stays durably pending (the
runner releases its claim, or its lease expires).

A call the caller gave up on (past its timeout) cannot be killed either. ``abandon``
stops counting its thread against ``max_workers``, so a replacement starts and the
pool keeps its capacity; at most ``max_abandoned`` threads are replaced that way (a
thread per stuck call is memory), and an abandoned thread ends when its call returns.

A scorer may start threads of its own, and a thread started with ``daemon=False``
would hold the process open at exit (Python joins those before ``atexit`` handlers
run), and ``localscorers worker --drain`` with it. While a pool exists, a thread
started from a pool thread is made a daemon before it starts (``Thread.start`` is
wrapped for that, and changes nothing for threads started anywhere else).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

__all__ = ["DaemonThreadPool"]

_P = ParamSpec("_P")
_T = TypeVar("_T")

_WorkItem = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]

_pool_thread = threading.local()  # ``running`` is set in our threads while they run calls
_original_start = threading.Thread.start


def _start(self: threading.Thread) -> None:
    if getattr(_pool_thread, "running", False) and not self.daemon:
        # Started by a scorer call: the thread must not keep the process alive at exit.
        self.daemon = True
    _original_start(self)


def _daemonize_scorer_threads() -> None:
    if threading.Thread.start is not _start:
        threading.Thread.start = _start  # type: ignore[method-assign]


class DaemonThreadPool(Executor):
    """Run calls on up to ``max_workers`` daemon threads, started as work arrives.

    Args:
        max_workers: the most threads running calls at once (at least 1).
        thread_name_prefix: threads are named ``<prefix>_<n>``.
        max_abandoned: the most abandoned threads (stuck calls) replaced at once.

    Raises:
        ValueError: ``max_workers`` is less than 1.
    """

    def __init__(
        self, max_workers: int, *, thread_name_prefix: str, max_abandoned: int = 0
    ) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers}.")
        self._max_workers = max_workers
        self._max_abandoned = max_abandoned
        self._prefix = thread_name_prefix
        self._queue: queue.SimpleQueue[_WorkItem | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []  # counted against max_workers
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._shutdown = False
        self._started = 0  # for thread names
        self._running: dict[Future[Any], threading.Thread] = {}
        self._abandoned: set[Future[Any]] = set()
        _daemonize_scorer_threads()

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]:
        """Schedule ``fn(*args, **kwargs)`` and return its future.

        Raises:
            RuntimeError: the pool was shut down.
        """
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            future: Future[_T] = Future()
            self._queue.put((future, fn, args, kwargs))
            # A thread waiting for work takes it; otherwise start one, up to the limit.
            if not self._idle.acquire(blocking=False) and len(self._threads) < self._max_workers:
                self._start_thread()
        return future

    def _start_thread(self) -> None:
        thread = threading.Thread(
            target=self._work, name=f"{self._prefix}_{self._started}", daemon=True
        )
        self._started += 1
        thread.start()
        self._threads.append(thread)

    def abandon(self, future: Future[Any]) -> bool:
        """Stop counting the thread running ``future`` against ``max_workers``.

        Returns:
            Whether its thread was replaced (False once ``max_abandoned`` are, or when
            the call already returned).
        """
        with self._lock:
            thread = self._running.get(future)
            if thread is None or future in self._abandoned:
                return False
            if len(self._abandoned) >= self._max_abandoned or self._shutdown:
                return False
            self._abandoned.add(future)
            self._threads.remove(thread)
            if not self._queue.empty():
                self._start_thread()  # queued work would otherwise wait for a free thread
            return True

    @property
    def abandoned(self) -> int:
        """How many abandoned threads (stuck calls) are still running."""
        with self._lock:
            return len(self._abandoned)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:  # noqa: FBT001, FBT002 - Executor's signature
        """Stop taking work; optionally cancel queued calls and wait for running ones."""
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                while True:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None:
                        item[0].cancel()
            for _ in self._threads:
                self._queue.put(None)  # one stop signal per thread, after the queued work
            threads = list(self._threads)
        if wait:
            for thread in threads:
                thread.join()

    def _work(self) -> None:
        _pool_thread.running = True
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args, kwargs = item
            with self._lock:  # before the future says it runs: abandon() may follow at once
                self._running[future] = threading.current_thread()
            if not future.set_running_or_notify_cancel():
                with self._lock:
                    del self._running[future]
            else:
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:  # noqa: BLE001 - delivered through the future
                    future.set_exception(exc)
                else:
                    future.set_result(result)
                with self._lock:
                    del self._running[future]
                    if future in self._abandoned:
                        # Replaced while stuck: this thread is one too many now.
                        self._abandoned.discard(future)
                        return
            del future, fn, args, kwargs, item  # do not keep the last call's objects alive
            self._idle.release()
