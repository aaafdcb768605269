"""Running one claimed backfill job: the window, the thread pool and the prefix commits.

The window holds the next few pages of traces in cursor order (``store.backfill_pages.Plan``
reads them). Their pairs are queued per scorer and handed to the pool in chunks of
one scorer over several traces, sized from the scorer's measured speed. The oldest
traces whose pairs are all done form a prefix, written in ONE transaction with the
counts and the cursor (STYLE.md rule 18), at least every half second, guarded by the
job's lease: a crash loses only uncommitted work, which the next holder redoes.

A holder that finds the job claimed more than once since its cursor last moved (a
holder died mid-window: a scorer calling ``os._exit``, a native crash) goes carefully
through the next window: one trace per commit and one pair at a time, each recorded in
the job's ``probe`` before it runs. A pair that killed ``LOCALSCORERS_MAX_ATTEMPTS``
holders is written FAILED with ``SCORER_CRASHED`` instead of run again, so the job ends
and the trace's other scorers are unaffected.

``backfill.JobRunner`` owns the thread and the pool and hands them to ``Execution``.
"""

from __future__ import annotations

import gc
import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

from localscorers.evaluation.execution import EvaluationContext, light_trace, load_scorer
from localscorers.evaluation.scheduler import Pacing, Result, Scheduler, settle_transient
from localscorers.evaluation.sessions import SessionItem, load_items, runnable, stamp
from localscorers.exceptions import TransientError
from localscorers.models import EvaluationStatus, Feedback, JobStatus, Trace
from localscorers.store.jobs import ClaimedJob, Progress
from localscorers.store.ledger import move_requests
from localscorers.store.results import Finished, crash_feedback

if TYPE_CHECKING:
    from localscorers.evaluation.execution import LoadedScorer
    from localscorers.evaluation.pool import DaemonThreadPool
    from localscorers.evaluation.settings import Settings
    from localscorers.store import Database, Registry, Store, Traces
    from localscorers.store.backfill_pages import PageRow
    from localscorers.store.checkpoints import Checkpointer
    from localscorers.store.results import Plain

__all__ = ["Execution", "Host"]

_WINDOW_PAGES = 8  # pages of traces held at once: memory is O(this), not O(job)
_COMMIT_SECONDS = 0.5  # a finished prefix waits at most this long (DESIGN: at least once a second)
_SETTLE_SECONDS = 0.05  # how long the dispatcher waits for running chunks before writing
_CHECK_SECONDS = 0.25  # how often a running job looks for a cancel request
# Pool tasks of about 50 ms, so slow scorers still spread out; compute-bound scorers run
# one task at a time. A trivial scorer's task may take a whole window's pairs: each task
# costs a hand-off to the pool and back (512 a task was 4 % slower, issue 16).
_PACING = Pacing(task_seconds=0.05, max_chunk=4096, first_chunk=4, serialize_cpu_bound=True)
_FAILED = EvaluationStatus.FAILED.value

logger = logging.getLogger(__name__)


class Host(Protocol):
    """What an execution needs from the runner that claimed the job."""

    storage: Store
    db: Database
    store: Traces
    registry: Registry
    settings: Settings
    owner: str
    executor: DaemonThreadPool
    checkpointer: Checkpointer
    wake: threading.Event
    stopping: threading.Event
    close_wait: float
    #: The scorers loaded for a job (and which take sessions), by job id.
    loaded_scorers: dict[str, tuple[list[LoadedScorer], set[int]]]


@dataclass(eq=False, slots=True)  # slots: one per trace, built and read in hot loops
class _Slot:
    """One trace of the window, in cursor order, with its pairs' results."""

    trace_id: str
    time_ms: int
    remaining: int
    skipped: list[int]
    replaces: dict[int, int]
    results: list[tuple[int, list[Feedback] | Plain, int]] = field(default_factory=list)


@dataclass(eq=False, slots=True)  # one per (trace, scorer) pair
class _Work:
    slot: _Slot
    trace: Trace
    attempts: int = 0


class Execution:
    """One claimed job, run to its end, to a cancel, or to the runner's close.

    ``run`` raises ``LeaseLostError`` when another process took the job over, and
    lets infrastructure errors (a deleted scorer version, a database that stays
    locked) out for the runner to fail the job with.
    """

    def __init__(self, host: Host, job: ClaimedJob) -> None:
        self.host = host
        self.settings = host.settings
        self.db = host.db
        self.job_id = job.job_id
        self.plan = job.plan
        self.specs = self.plan.specs
        self.index = {spec.name: index for index, spec in enumerate(self.specs)}
        self.page_size = max(1, self.settings.batch_size)
        self.window = self.page_size * _WINDOW_PAGES
        self.scheduler = Scheduler(host.executor, self.settings, _PACING, wake=host.wake)
        self.halt = self.scheduler.halt
        self.slots: deque[_Slot] = deque()
        self.queues: list[deque[_Work]] = [deque() for _ in self.specs]
        self.retries: list[tuple[float, int, int, _Work]] = []
        self.sequence = itertools.count()
        self.loaded: list[LoadedScorer] = []
        self.session_specs: set[int] = set()  # indexes of session-level scorers
        # Scorers whose remaining work waits only for their own hung calls, and why.
        self.blocked: dict[Hashable, str] = {}
        self._begin_part(job)
        self.context = EvaluationContext(db=self.db, origin=self.lease.origin)

    def _begin_part(self, job: ClaimedJob) -> None:
        """Take up a claimed part (lease, key range, counts, cursor); see ``_run``."""
        self.lease = self.host.storage.lease(
            job, owner=self.host.owner, lease_ms=int(self.settings.lease_seconds * 1000)
        )
        # The next part of the job reuses the plan (its compiled filters), on its key range.
        self.plan = self.plan.within(job.lower, job.upper)
        self.counts = [dict(s) for s in job.scorers]
        self.read_cursor = job.cursor
        self.exhausted = False
        self.last_commit = self.last_renew = self.last_check = time.monotonic()
        # Traces still to go carefully (one pair at a time) because a holder died.
        self.careful = self.window if job.claims > 1 or job.probe is not None else 0
        self.claimed_probe = job.probe
        if self.careful:
            logger.warning(
                "localscorers backfill: job %s was resumed after its holder died (claim %d); "
                "running its next %d traces one scorer call at a time",
                job.job_id,
                job.claims,
                self.careful,
            )

    # -- setup and the loop --------------------------------------------------------------

    def _load_scorers(self) -> None:
        # The parts of one job run the same frozen versions: a runner loads them once a
        # job, not once a part (a 20,000-trace job has 32 parts).
        known = self.host.loaded_scorers.get(self.job_id)
        if known is not None:
            self.loaded, self.session_specs = list(known[0]), set(known[1])
            return
        for spec in self.specs:
            # A version deleted since the job was created fails the job (not each trace).
            state = self.host.registry.get(self.plan.experiment_id, spec.name, version=spec.version)
            loaded = load_scorer(state, db_path=self.db.path)
            # A session scorer runs on its sessions' last traces, with the whole session.
            self.loaded.append(runnable(loaded) if state.takes_session else loaded)
            if state.takes_session:
                self.session_specs.add(len(self.loaded) - 1)
        self.host.loaded_scorers.clear()  # only the current job's are kept
        self.host.loaded_scorers[self.job_id] = (list(self.loaded), set(self.session_specs))

    def run(self) -> None:
        """Run the job until it succeeds, is cancelled, or the runner closes."""
        # Every object alive now (the application's, the libraries') moves out of the
        # collector's sight for the job: a job allocates steadily, and each full
        # collection would traverse all of them again. Measured: the cyclic GC took
        # 19-22 % of a trivial backfill's wall time, 5 % after the freeze. The job's own
        # objects are still collected; unfreeze hands the rest back when it ends.
        gc.freeze()
        try:
            self._run()
        finally:
            gc.unfreeze()

    def _count_totals(self) -> None:
        if any(s.get("total") is None for s in self.counts):
            totals = self.plan.count(self.db, check_existing=False, on_page=self._renew_if_due)
            for spec, total in zip(self.counts, totals, strict=True):
                spec["total"] = total
            self.lease.update({"total": sum(totals), "scorers": self.counts})

    def _run(self) -> None:
        self._load_scorers()
        self._count_totals()
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
            self.blocked = self._blocked()
            self._settle()
            if self.exhausted and self._ready() == len(self.slots):
                # The last results and the end in one transaction, not two (a part's
                # second write transaction was a tenth of a 625-trace part's cost),
                # and the job's next part taken in it too.
                following = self._commit(JobStatus.SUCCEEDED, next_part=True)
                if following is None:
                    return
                self._begin_part(following)
                self._count_totals()
                continue
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
        if self.scheduler.running:
            self.scheduler.settle(_SETTLE_SECONDS)
            self._collect()

    def _renew_if_due(self) -> None:
        if time.monotonic() - self.last_renew >= self.settings.lease_seconds / 3:
            self.lease.renew()
            self.last_renew = time.monotonic()

    def _cancel_requested(self) -> bool:
        now = time.monotonic()
        if now - self.last_check < _CHECK_SECONDS:
            return False
        self.last_check = now
        return self.lease.cancel_requested()

    def _stop(self, status: JobStatus | None, *, grace: float) -> None:
        """Stop at the next trace boundary, keep what finished, then finish or release."""
        self.halt.set()
        deadline = time.monotonic() + grace
        while self.scheduler.running and time.monotonic() < deadline:
            self.host.wake.wait(0.02)
            self.host.wake.clear()
            self._collect()
        self._collect()
        self._commit(status, release=True)

    # -- reading the window ----------------------------------------------------------------

    def _fill(self) -> None:
        moved = False
        while not self.exhausted and len(self.slots) < (1 if self.careful else self.window):
            size = 1 if self.careful else self.page_size
            if not moved:
                # Online work committed before these pages are read shows as pending there.
                move_requests(self.db)
                moved = True
            with self.db.read() as conn:
                rows = self.plan.page(conn, self.read_cursor, size, payload=True, existing=True)
                traces = self._traces(conn, rows)
                specs = self.session_specs
                wanted = [r.trace_id for r in rows if specs and specs.intersection(r.run)]
                sessions = load_items(conn, self.host.store, wanted) if wanted else {}
            queues = self.queues
            for row in rows:
                slot = _Slot(row.trace_id, row.time_ms, len(row.run), row.skipped, row.replaces)
                self.slots.append(slot)
                for index in row.run:
                    by_id = sessions if index in specs else traces
                    queues[index].append(_Work(slot, by_id[row.trace_id]))
            if rows:
                self.read_cursor = (rows[-1].time_ms, rows[-1].trace_id)
            self.exhausted = len(rows) < size

    def _traces(self, conn: Any, rows: list[PageRow]) -> dict[str, Trace]:  # noqa: ANN401
        full = {i for i, loaded in enumerate(self.loaded) if "trace" in loaded.parameters}
        found = {
            t.info.trace_id: t
            for t in self.host.store.load_traces(
                conn, [r.trace_id for r in rows if full and full.intersection(r.run)]
            )
        }
        wants = {i for i, loaded in enumerate(self.loaded) if "expectations" in loaded.parameters}
        wanted = [
            r.trace_id
            for r in rows
            if wants and r.trace_id not in found and wants.intersection(r.run)
        ]
        expectations = self.host.store.load_expectations(conn, wanted) if wanted else {}
        for row in rows:
            if row.run and row.trace_id not in found:
                found[row.trace_id] = light_trace(
                    row.inputs, row.outputs, expectations.get(row.trace_id, {})
                )
        return found

    # -- the scheduler ---------------------------------------------------------------------

    def _start(self, scorer: int, items: list[_Work]) -> None:
        self.scheduler.start(
            scorer, self.loaded[scorer], [(work, work.trace) for work in items], self.context
        )

    def _submit(self) -> None:
        if self.halt.is_set():
            return
        if self.careful:
            self._submit_alone()
            return
        capacity = self.scheduler.capacity()
        now = time.monotonic()
        while capacity > 0 and self.retries and self.retries[0][0] <= now:
            scorer = self.retries[0][2]
            if self.scheduler.saturated(scorer, self.loaded[scorer]):
                break
            _, _, scorer, work = heapq.heappop(self.retries)
            self._start(scorer, [work])
            capacity -= 1
        progressed = True
        while capacity > 0 and progressed:
            progressed = False
            for scorer, queue in enumerate(self.queues):
                if (
                    capacity > 0
                    and queue
                    and not self.scheduler.saturated(scorer, self.loaded[scorer])
                ):
                    size = min(self.scheduler.chunk_size(scorer), len(queue))
                    self._start(scorer, [queue.popleft() for _ in range(size)])
                    capacity -= 1
                    progressed = True

    def _submit_alone(self) -> None:
        """Run one pair at a time, recorded in the job's probe first (a holder died)."""
        while not self.scheduler.running:
            picked = self._next_alone()
            if picked is None:
                return
            scorer, work = picked
            name = self.specs[scorer].name
            probe = self.claimed_probe
            tried = 0
            if probe is not None and (probe["trace_id"], probe["scorer"]) == (
                work.slot.trace_id,
                name,
            ):
                tried = int(probe["attempts"])
            if tried >= self.settings.max_attempts:
                logger.error(
                    "localscorers backfill: scorer %r killed %d processes on trace %s; "
                    "recording SCORER_CRASHED",
                    name,
                    tried,
                    work.slot.trace_id,
                )
                work.slot.results.append((scorer, [crash_feedback(name, tried)], tried))
                work.slot.remaining -= 1
                continue
            self.lease.probe(work.slot.trace_id, name, tried + 1)
            self.last_renew = time.monotonic()
            self._start(scorer, [work])

    def _next_alone(self) -> tuple[int, _Work] | None:
        if self.retries and self.retries[0][0] <= time.monotonic():
            _, _, scorer, work = heapq.heappop(self.retries)
            return scorer, work
        for scorer, queue in enumerate(self.queues):
            if queue:
                return scorer, queue.popleft()
        return None

    def _blocked(self) -> dict[Hashable, str]:
        """Return why the job cannot go on, when all that is left waits for hung calls."""
        reasons = self.scheduler.blocked()
        if not reasons or None in reasons:
            return reasons
        waiting = {index for index, queue in enumerate(self.queues) if queue}
        waiting.update(scorer for _due, _n, scorer, _work in self.retries)
        running = {task.key for task in self.scheduler.running}
        if waiting and waiting | running <= set(reasons):
            return {key: reasons[key] for key in waiting}
        return {}

    def _collect(self) -> None:
        collected = self.scheduler.collect()
        for key, work, outcome in collected.done:
            if type(outcome) is tuple:
                # A plain value (a trivial scorer's): final, no session to stamp.
                work.attempts += 1
                slot = work.slot
                slot.results.append((key, outcome, work.attempts))
                slot.remaining -= 1
            else:
                self._record(cast("int", key), work, outcome)
        if self.halt.is_set():
            return  # left undone: whoever resumes the job runs them
        # Items a timed-out chunk had not reached go back to the front of their queue.
        for key, work, _trace in reversed(collected.unstarted):
            self.queues[cast("int", key)].appendleft(work)

    def _record(self, scorer: int, work: _Work, outcome: Result) -> None:
        work.attempts += 1
        if isinstance(outcome, TransientError):
            if self.halt.is_set():
                return  # left undone: whoever resumes the job tries it again
            settled = settle_transient(
                outcome,
                name=self.specs[scorer].name,
                attempts=work.attempts,
                settings=self.settings,
            )
            if not isinstance(settled, list):
                due = time.monotonic() + settled
                heapq.heappush(self.retries, (due, next(self.sequence), scorer, work))
                return
            outcome = settled
        session_id = getattr(work.trace, "session_id", None)
        if isinstance(outcome, list) and isinstance(work.trace, SessionItem) and session_id:
            outcome = stamp(outcome, session_id)
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
        if self.careful or (ready == len(self.slots) and self.exhausted):
            return True
        return ready >= self.window // 2 or time.monotonic() - self.last_commit >= _COMMIT_SECONDS

    def _commit(
        self, status: JobStatus | None, *, release: bool = False, next_part: bool = False
    ) -> ClaimedJob | None:
        """Write the finished prefix of the window with counts and cursor, in one transaction.

        With ``next_part``, return the job's next part when this commit took it.
        """
        prefix = [self.slots.popleft() for _ in range(self._ready())]
        self.careful = max(0, self.careful - len(prefix))
        results: list[Finished] = []
        for slot in prefix:
            for index in slot.skipped:
                self.counts[index]["skipped"] += 1
                self.counts[index]["processed"] += 1
            results.extend(
                Finished(
                    slot.trace_id,
                    self.specs[index].name,
                    self.specs[index].version,
                    outcome,
                    attempts,
                    slot.replaces.get(index),
                )
                for index, outcome, attempts in slot.results
            )
        cursor = (prefix[-1].time_ms, prefix[-1].trace_id) if prefix else None
        progress = Progress(
            results, self.counts, cursor, status=status, release=release, next_part=next_part
        )
        following = self.lease.commit(progress, on_written=self._count)
        self.host.checkpointer.nudge()
        self.last_commit = self.last_renew = time.monotonic()
        return following

    def _count(self, result: Finished, status: str | None) -> None:
        # A pair written meanwhile by online scoring or another job counts as skipped.
        count = self.counts[self.index[result.scorer_name]]
        count["processed"] += 1
        if status is None:
            count["skipped"] += 1
        else:
            count["failed" if status == _FAILED else "succeeded"] += 1
