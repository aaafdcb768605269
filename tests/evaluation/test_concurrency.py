"""Many threads and several processes on one WAL file: no lock errors, consistent state."""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import os
import threading
from pathlib import Path

import localscorers
from localscorers import ScorerSamplingConfig, ScorerStatus, scorer
from tests import scorer_helpers

THREADS = 8
ROUNDS = 15


def test_threads_register_and_update_concurrently(tracking: Path) -> None:
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            barrier.wait()
            own = scorer(scorer_helpers.plain_length).register(name=f"t{index}")
            shared = scorer(scorer_helpers.plain_length).register(name="shared")
            for round_ in range(ROUNDS):
                own = own.start(
                    sampling_config=ScorerSamplingConfig(sample_rate=(round_ + 1) / ROUNDS)
                )
                shared.start(sampling_config=ScorerSamplingConfig(sample_rate=0.5))
                localscorers.log_trace(inputs={"i": index}, outputs=str(round_))
            own.stop()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    listed = {s.name: s for s in localscorers.list_scorers()}
    assert set(listed) == {f"t{i}" for i in range(THREADS)} | {"shared"}
    assert all(listed[f"t{i}"].status == ScorerStatus.STOPPED for i in range(THREADS))
    assert listed["shared"].status == ScorerStatus.ACTIVE
    assert listed["shared"].version == 1
    assert len(localscorers.search_traces()) == THREADS * ROUNDS
    assert localscorers.flush(timeout=60)


def _process_work(db_path: str, index: int, start: multiprocessing.synchronize.Event) -> None:
    os.environ["LOCALSCORERS_MONITOR"] = "off"
    localscorers.set_tracking_uri(db_path)
    start.wait()
    own = scorer(scorer_helpers.plain_length).register(name=f"p{index}")
    for round_ in range(ROUNDS):
        own = own.start(sampling_config=ScorerSamplingConfig(sample_rate=0.5))
        own = own.update(sampling_config=ScorerSamplingConfig(sample_rate=1.0))
        scorer(scorer_helpers.plain_true).register(name="shared")
        localscorers.log_trace(inputs={"p": index}, outputs=str(round_), tags={"p": str(index)})
    own.stop()


def test_processes_register_update_and_log_concurrently(db_path: Path) -> None:
    localscorers.set_tracking_uri(db_path)
    localscorers.list_scorers()  # create and migrate the file first
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    processes = [
        context.Process(target=_process_work, args=(str(db_path), index, start))
        for index in range(4)
    ]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0, 0, 0, 0]
    listed = {s.name: s for s in localscorers.list_scorers()}
    assert set(listed) == {"p0", "p1", "p2", "p3", "shared"}
    assert all(listed[f"p{i}"].status == ScorerStatus.STOPPED for i in range(4))
    assert listed["shared"].version == 1
    traces = localscorers.search_traces()
    assert len(traces) == 4 * ROUNDS
    for index in range(4):
        assert len(localscorers.search_traces(filter_string=f"tags.p = '{index}'")) == ROUNDS
