"""The daemon thread pool behind the evaluator: an Executor that never holds exit open."""

from __future__ import annotations

import threading

import pytest

from localscorers.evaluation import DaemonThreadPool

WAIT = 30.0


def test_results_and_exceptions_come_back_through_futures() -> None:
    pool = DaemonThreadPool(2, thread_name_prefix="t")
    assert pool.submit(pow, 2, 10).result(WAIT) == 1024
    assert list(pool.map(len, ["a", "bb", "ccc"], timeout=WAIT)) == [1, 2, 3]
    with pytest.raises(ZeroDivisionError):
        pool.submit(lambda: 1 / 0).result(WAIT)

    def leave() -> None:
        raise SystemExit(3)

    # A scorer calling sys.exit() must not kill the pool thread silently.
    assert isinstance(pool.submit(leave).exception(WAIT), SystemExit)
    assert pool.submit(str, 5).result(WAIT) == "5"
    pool.shutdown()


def test_threads_are_daemons_named_by_prefix_and_capped() -> None:
    pool = DaemonThreadPool(3, thread_name_prefix="capped")
    gate = threading.Event()
    started = threading.Semaphore(0)
    seen: set[tuple[str, bool]] = set()
    lock = threading.Lock()

    def hold() -> None:
        with lock:
            current = threading.current_thread()
            seen.add((current.name, current.daemon))
        started.release()
        gate.wait(WAIT)

    futures = [pool.submit(hold) for _ in range(5)]
    for _ in range(3):
        assert started.acquire(timeout=WAIT)
    # Three calls run; the other two wait for a thread rather than starting more.
    assert sum(f.running() for f in futures) == 3
    gate.set()
    for future in futures:
        future.result(WAIT)
    assert {daemon for _, daemon in seen} == {True}
    assert {name for name, _ in seen} <= {"capped_0", "capped_1", "capped_2"}
    pool.shutdown()


def test_shutdown_can_cancel_queued_calls_and_refuses_new_ones() -> None:
    pool = DaemonThreadPool(1, thread_name_prefix="t")
    gate = threading.Event()
    running = pool.submit(gate.wait, WAIT)
    queued = pool.submit(str, "never")
    pool.shutdown(wait=False, cancel_futures=True)
    assert queued.cancelled()
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        pool.submit(str, 1)
    gate.set()
    assert running.result(WAIT) is True
    pool.shutdown(wait=True)


def test_max_workers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_workers must be at least 1, got 0"):
        DaemonThreadPool(0, thread_name_prefix="t")
