"""The store's typed interface: what the rest of the package may ask of storage.

The evaluation code, ``explain``, ``report``, the command line and the server reach
storage through these Protocols, never through the classes that implement them, and
get the implementations from one factory, :func:`open_store`. mypy checks that the
concrete classes satisfy the Protocols where the factory returns them, so a second
implementation (another backend, a fake) only has to match these signatures.

The Protocols name SQLAlchemy's ``Connection`` for the few reads that run inside a
caller's transaction (``Database.read()`` hands one out): callers pass it back
unopened, they never build SQL with it.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any, Literal, NotRequired, Protocol, TypedDict, Unpack

from localscorers.store.changes import ChangeWatch
from localscorers.store.database import Database
from localscorers.store.explain_facts import ExplainStore
from localscorers.store.jobs import BackfillJobs, JobLease
from localscorers.store.ledger import EvaluationQueue
from localscorers.store.pending_spans import PendingSpans
from localscorers.store.registry import ScorerRegistry
from localscorers.store.reports import ReportStore
from localscorers.store.traces import TraceStore

if TYPE_CHECKING:
    import os

    from sqlalchemy.engine import Connection

    from localscorers.models import BackfillJob, Expectation, Experiment, Feedback, Trace
    from localscorers.store.backfill_pages import ScorerSpec
    from localscorers.store.explain_facts import TraceFacts, TraceHeader
    from localscorers.store.jobs import ClaimedJob, Progress
    from localscorers.store.ledger import Claim, Outcome, Watermark
    from localscorers.store.pending_spans import PendingSpan, Received
    from localscorers.store.reports import ReportRows
    from localscorers.store.results import Finished
    from localscorers.store.rows import TraceRecord
    from localscorers.store.scorer_state import ActiveScorer, ScorerState

__all__ = [
    "Definition",
    "ExplainReader",
    "JobWindow",
    "Jobs",
    "Lease",
    "Ledger",
    "Registry",
    "ReportReader",
    "ReportScope",
    "Search",
    "SearchPage",
    "SpanBuffer",
    "Store",
    "Traces",
    "Transition",
    "Watch",
    "open_store",
]


class Search(TypedDict, total=False):
    """What a trace search selects and how it orders them (``Traces.search_traces``)."""

    filter_string: str | None
    order_by: Sequence[str] | None
    max_results: int | None


class SearchPage(Search, total=False):
    """A search and where its page starts (``Traces.search_page``)."""

    offset: int


class Definition(TypedDict):
    """What ``Registry.register`` stores of a scorer."""

    definition: dict[str, Any]
    description: str | None
    takes_session: NotRequired[bool]


class Transition(TypedDict):
    """A lifecycle change (``Registry.transition``): the action and its sampling."""

    action: str
    sample_rate: NotRequired[float]
    filter_string: NotRequired[str | None]
    session_idle_seconds: NotRequired[float]


class JobWindow(TypedDict, total=False):
    """The traces a backfill job covers: a commit-time range, and whether to score again."""

    start_ms: int | None
    end_ms: int | None
    rescore: bool


class ReportScope(TypedDict):
    """What a report reads: since when, its bucket width, one evaluation's rows, all values."""

    since_ms: int | None
    width_ms: Callable[[dict[str, dict[str, Any]]], int]
    origin: NotRequired[str | None]
    aggregated: NotRequired[Collection[str]]


class Traces(Protocol):
    """Traces, spans, assessments and experiments (``store.traces.TraceStore``)."""

    #: Told (outside the transaction) how many online evaluations a commit enqueued.
    on_enqueued: Callable[[int], None] | None

    def session_scorers_active(self) -> bool:
        """Tell whether any experiment of the database has an ACTIVE session scorer."""

    def get_experiment(self, experiment_id: str) -> Experiment | None:
        """Return the experiment with that id, or None."""

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        """Return the experiment with that name, or None."""

    def create_experiment(self, name: str) -> Experiment:
        """Create an experiment and return it."""

    def list_experiments(self) -> list[Experiment]:
        """Return every experiment."""

    def write_traces(
        self, records: Sequence[TraceRecord], *, skip_existing: bool = False, enqueue: bool = True
    ) -> int:
        """Write traces with their online evaluations in one transaction."""

    def log_assessment(
        self, trace_id: str, assessment: Feedback | Expectation
    ) -> Feedback | Expectation:
        """Attach feedback or an expectation to a trace."""

    def get_trace(self, trace_id: str) -> Trace:
        """Return one whole trace."""

    def search_traces(
        self, *, experiment_ids: Sequence[str], **search: Unpack[Search]
    ) -> list[Trace]:
        """Return the traces a filter string selects."""

    def search_page(
        self, *, experiment_ids: Sequence[str], **search: Unpack[SearchPage]
    ) -> tuple[list[Trace], int | None]:
        """Return one page of a search and the offset of the next (None at the end)."""

    def load_traces(self, conn: Connection, trace_ids: Sequence[str]) -> list[Trace]:
        """Load whole traces inside the caller's read transaction."""

    def load_payloads(
        self, conn: Connection, trace_ids: Sequence[str]
    ) -> dict[str, tuple[Any, Any]]:
        """Load only the inputs and outputs of traces."""

    def load_expectations(
        self, conn: Connection, trace_ids: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        """Load the expectations of traces, by trace id and name."""


class Registry(Protocol):
    """Registered scorers, their versions and lifecycle (``store.registry.ScorerRegistry``)."""

    def get(self, experiment_id: str, name: str, *, version: int | None = None) -> ScorerState:
        """Return a scorer version (the latest by default)."""

    def find(self, experiment_id: str, name: str) -> ScorerState | None:
        """Return the latest version of a scorer, or None."""

    def list(self, experiment_id: str) -> builtins.list[ScorerState]:
        """Return the latest version of every scorer of an experiment."""

    def versions(self, experiment_id: str, name: str) -> builtins.list[ScorerState]:
        """Return every version of a scorer."""

    def history(self, experiment_id: str, name: str) -> builtins.list[dict[str, Any]]:
        """Return the lifecycle events of a scorer."""

    def change_counter(self) -> int:
        """Return a number that changes whenever any scorer changes."""

    def active_for(self, conn: Connection, experiment_id: str) -> builtins.list[ActiveScorer]:
        """Return the active scorers of an experiment inside the caller's transaction."""

    def register(self, experiment_id: str, name: str, **scorer: Unpack[Definition]) -> ScorerState:
        """Register a scorer (a new version when its definition changed)."""

    def transition(
        self, experiment_id: str, name: str, **change: Unpack[Transition]
    ) -> ScorerState:
        """Start, update or stop a scorer."""

    def delete(
        self, experiment_id: str, name: str, *, version: int | Literal["all"] | None = None
    ) -> None:
        """Delete a scorer or some of its versions."""


class Ledger(Protocol):
    """Pending evaluations under leases (``store.ledger.EvaluationQueue``)."""

    owner: str
    lease_ms: int
    max_attempts: int

    def claim(self, limit: int, *, saturated: Collection[tuple[str, str]] = ()) -> list[Claim]:
        """Lease up to ``limit`` due evaluations."""

    def renew(self) -> int:
        """Extend our leases; return how many we hold."""

    def release(self, claims: Sequence[Claim] | None = None) -> None:
        """Give leases back (all of ours by default)."""

    def complete(self, outcomes: Sequence[Outcome]) -> int:
        """Write outcomes while the leases are ours; return how many were written."""

    def pending_count(self) -> int:
        """Return how many evaluations are pending."""

    def watermark(self) -> Watermark:
        """Return the newest request and evaluation now (see ``has_pending``)."""

    def has_pending(
        self, since: Watermark | None = None, *, excluding: Collection[tuple[str, str]] = ()
    ) -> bool:
        """Tell whether evaluations pending at ``since`` are still pending."""


class Jobs(Protocol):
    """Create, read and cancel backfill jobs (``store.jobs.BackfillJobs``)."""

    def create(
        self, experiment_id: str, specs: Sequence[ScorerSpec], **window: Unpack[JobWindow]
    ) -> str:
        """Create a job and return its id."""

    def dry_run(
        self, experiment_id: str, specs: Sequence[ScorerSpec], **window: Unpack[JobWindow]
    ) -> dict[str, int]:
        """Count what a job would evaluate, per scorer."""

    def get(self, job_id: str) -> BackfillJob:
        """Return one job."""

    def list(self, experiment_id: str | None = None) -> builtins.list[BackfillJob]:
        """Return the jobs, newest first."""

    def cancel(self, job_id: str) -> BackfillJob:
        """Ask a job to stop."""


class Lease(Protocol):
    """A claimed backfill job, written only while its lease is ours (``store.jobs.JobLease``)."""

    #: The claimed part of a job.
    job: ClaimedJob
    #: The lease holder's id.
    owner: str
    #: The origin of the feedback the job writes (``backfill:<job id>``).
    origin: str

    def update(self, values: dict[str, Any]) -> None:
        """Update the job's row."""

    def probe(self, trace_id: str, scorer_name: str, attempts: int) -> None:
        """Record the evaluation about to run alone (a suspected crasher)."""

    def renew(self) -> None:
        """Extend the lease."""

    def cancel_requested(self) -> bool:
        """Tell whether someone asked the job to stop."""

    def commit(
        self, progress: Progress, *, on_written: Callable[[Finished, str | None], None]
    ) -> ClaimedJob | None:
        """Commit feedback, counts and the cursor in one transaction (maybe taking a next part)."""

    def fail(self, error: str) -> None:
        """Mark the job FAILED."""


class ExplainReader(Protocol):
    """The durable facts ``explain`` reasons over (``store.explain_facts.ExplainStore``)."""

    def header(self, trace_id: str) -> TraceHeader | None:
        """Return what explain needs of the trace row, or None."""

    def facts(self, header: TraceHeader, names: Sequence[str]) -> TraceFacts:
        """Return the ledger rows, feedback and configs of the named scorers."""


class ReportReader(Protocol):
    """The grouped reads behind ``scorer_report`` (``store.reports.ReportStore``)."""

    def read(self, experiment_id: str, **scope: Unpack[ReportScope]) -> ReportRows:
        """Read the counts, values and buckets of a report."""


class SpanBuffer(Protocol):
    """Received OTLP spans waiting for their trace (``store.pending_spans.PendingSpans``)."""

    def receive(
        self, spans: Sequence[PendingSpan], build: Callable[[list[PendingSpan]], TraceRecord]
    ) -> Received:
        """Store a batch of spans durably, writing the traces whose root came."""

    def due(self, *, idle_before_ms: int) -> list[str]:
        """Return the traces ready to assemble."""

    def commit(
        self, trace_ids: Sequence[str], build: Callable[[list[PendingSpan]], TraceRecord]
    ) -> list[str]:
        """Assemble and write traces, deleting their pending spans."""


class Watch(Protocol):
    """Did anything commit since I last looked? (``store.changes.ChangeWatch``)."""

    #: False where the database cannot say (in memory, PostgreSQL): ``changed`` is always True.
    supported: bool

    def changed(self) -> bool:
        """Tell whether another connection committed since the last call."""

    def close(self) -> None:
        """Give the watching connection back."""


class Store:
    """One opened database and the stores over it, typed by their Protocols.

    Args:
        db: the opened database.
        on_enqueued: told how many online evaluations a trace commit enqueued.
        on_session_trace: told when a commit that enqueued nothing holds a session's trace.
    """

    def __init__(
        self,
        db: Database,
        *,
        on_enqueued: Callable[[int], None] | None = None,
        on_session_trace: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        registry = ScorerRegistry(db)
        #: Registered scorers.
        self.registry: Registry = registry
        #: Traces, spans, assessments and experiments.
        self.traces: Traces = TraceStore(
            db, registry, on_enqueued=on_enqueued, on_session_trace=on_session_trace
        )

    def queue(self, *, owner: str, lease_ms: int, max_attempts: int = 4) -> Ledger:
        """Return the evaluation ledger as seen by one lease holder.

        Args:
            owner: the holder's lease id.
            lease_ms: how long a claim stays ours without renewal.
            max_attempts: claims of one evaluation before it fails with ``SCORER_CRASHED``.
        """
        return EvaluationQueue(self.db, owner=owner, lease_ms=lease_ms, max_attempts=max_attempts)

    def jobs(self) -> Jobs:
        """Return the backfill jobs."""
        return BackfillJobs(self.db, self.traces, self.registry)

    def lease(self, job: ClaimedJob, *, owner: str, lease_ms: int) -> Lease:
        """Return the writer of a claimed backfill job, under ``owner``'s lease."""
        return JobLease(self.db, job, owner=owner, lease_ms=lease_ms)

    def explain(self) -> ExplainReader:
        """Return the reader of explain's facts."""
        return ExplainStore(self.db)

    def reports(self) -> ReportReader:
        """Return the reader of scorer reports."""
        return ReportStore(self.db)

    def pending_spans(self) -> SpanBuffer:
        """Return the buffer of received OTLP spans."""
        return PendingSpans(self.db, self.traces)

    def watch(self) -> Watch:
        """Return a new watch for commits by other connections (one thread asks it)."""
        return ChangeWatch(self.db)

    def close(self) -> None:
        """Close the database."""
        self.db.close()


def open_store(
    uri: str | os.PathLike[str],
    *,
    on_enqueued: Callable[[int], None] | None = None,
    on_session_trace: Callable[[], None] | None = None,
) -> Store:
    """Open a database (migrating it) and the stores over it.

    Args:
        uri: a tracking URI (``sqlite:///path``, ``postgresql://...``, ``:memory:``) or path.
        on_enqueued: told how many online evaluations a trace commit enqueued.
        on_session_trace: told when a commit that enqueued nothing holds a session's trace.

    Raises:
        ConfigurationError: the URI is not one localscorers can open.
        SchemaVersionError: the database was written by a newer localscorers.
    """
    return Store(Database(uri), on_enqueued=on_enqueued, on_session_trace=on_session_trace)
