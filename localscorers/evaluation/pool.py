"""A thread pool whose threads do not hold the process open at exit.

``concurrent.futures.ThreadPoolExecutor`` joins every one of its threads when the
interpreter exits, before ``atexit`` handlers run. A scorer call that never returns (a
judge stuck on a socket) would then keep the application from exiting, and
``LOCALSCORERS_EXIT_WAIT_SECONDS`` could not cut the wait short: our atexit handler runs
only after that join. This pool is the same ``Executor`` with daemon threads; a call
still running at exit is abandoned, and its evaluation stays durably pending (the
runner releases its claim, or its lease expires).
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


class DaemonThreadPool(Executor):
    """Run calls on up to ``max_workers`` daemon threads, started as work arrives.

    Args:
        max_workers: the most threads running calls at once (at least 1).
        thread_name_prefix: threads are named ``<prefix>_<n>``.

    Raises:
        ValueError: ``max_workers`` is less than 1.
    """

    def __init__(self, max_workers: int, *, thread_name_prefix: str) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers}.")
        self._max_workers = max_workers
        self._prefix = thread_name_prefix
        self._queue: queue.SimpleQueue[_WorkItem | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._shutdown = False

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
                thread = threading.Thread(
                    target=self._work, name=f"{self._prefix}_{len(self._threads)}", daemon=True
                )
                thread.start()
                self._threads.append(thread)
        return future

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
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args, kwargs = item
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:  # noqa: BLE001 - delivered through the future
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del future, fn, args, kwargs, item  # do not keep the last call's objects alive
            self._idle.release()
