"""The SQL tables, declared with SQLModel on a private registry.

The registry is our own (STYLE.md rule 16): a user's ``SQLModel.metadata.create_all()``
never touches these tables, and ours never touches theirs. Hot paths use the Core
``Table`` objects exported at the bottom (``traces``, ``spans``, ...); the ORM classes
serve the cold paths (registry, experiments).

Time columns hold epoch milliseconds (``*_ms``) so ordering and range filters are
plain integer comparisons on every database.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

__all__ = [
    "METADATA",
    "POSTGRESQL_WHERE",
    "BackfillJobPartRow",
    "BackfillJobRow",
    "CounterRow",
    "ExperimentRow",
    "ScorerEventRow",
    "ScorerStateRow",
    "ScorerVersionRow",
    "assessments",
    "backfill_job_parts",
    "backfill_jobs",
    "counters",
    "evaluation_requests",
    "evaluations",
    "experiments",
    "judge_cache",
    "pending_spans",
    "scorer_events",
    "scorer_versions",
    "scorers",
    "spans",
    "trace_metadata",
    "trace_tags",
    "traces",
]


class _Base(SQLModel, registry=registry()):
    pass


def _json_column(*, nullable: bool = True) -> Any:  # noqa: ANN401 - SQLModel's Field is untyped
    return Field(default=None, sa_column=sa.Column(sa.JSON, nullable=nullable))


# A partial index's PostgreSQL condition waits in the index's ``info`` under this key
# until store/postgres.py (imported for a PostgreSQL URI only) attaches it: naming
# ``postgresql_where`` here would import SQLAlchemy's PostgreSQL dialect (about 20 ms)
# in every process that opens a SQLite file.
POSTGRESQL_WHERE = "postgresql_where"


def _partial_index(name: str, *columns: str, where: str, unique: bool = False) -> sa.Index:
    """An index of the rows ``where`` holds for, on SQLite and PostgreSQL alike."""
    condition = sa.text(where)
    return sa.Index(
        name, *columns, unique=unique, sqlite_where=condition, info={POSTGRESQL_WHERE: condition}
    )


def _not_null_index(name: str, column: str) -> sa.Index:
    """An index of a mostly-NULL column without the NULLs: ``column = ?`` still uses it.

    Both SQLite and PostgreSQL use a ``WHERE column IS NOT NULL`` index for any
    comparison of the column (``=``, ``IN``, a join), which implies NOT NULL.
    """
    return _partial_index(name, column, where=f"{column} IS NOT NULL")


class ExperimentRow(_Base, table=True):
    """An experiment: a namespace for traces and scorers."""

    __tablename__ = "experiments"

    experiment_id: str = Field(primary_key=True)
    name: str = Field(sa_column=sa.Column(sa.String, unique=True, nullable=False))
    created_ms: int


class CounterRow(_Base, table=True):
    """Named counters; ``scorers`` is bumped by every lifecycle change.

    Processes compare it with the value behind their cache of active scorers, so a
    ``start()`` in one process reaches the enqueue path of every other.
    """

    __tablename__ = "counters"

    name: str = Field(primary_key=True)
    value: int = 0


class ScorerStateRow(_Base, table=True):
    """The current lifecycle state of one scorer name in one experiment."""

    __tablename__ = "scorers"

    experiment_id: str = Field(primary_key=True, foreign_key="experiments.experiment_id")
    name: str = Field(primary_key=True)
    version: int
    status: str
    sample_rate: float = 0.0
    filter_string: str | None = None
    created_ms: int
    updated_ms: int
    # Session-level scorers: a session is due once silent this long (m0006).
    session_idle_seconds: float = Field(
        default=300.0,
        sa_column=sa.Column(sa.Float, nullable=False, server_default=sa.text("300")),
    )


class ScorerVersionRow(_Base, table=True):
    """One immutable version of a scorer's definition."""

    __tablename__ = "scorer_versions"
    __table_args__ = (sa.UniqueConstraint("experiment_id", "name", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    experiment_id: str = Field(foreign_key="experiments.experiment_id")
    name: str
    version: int
    description: str | None = None
    definition: dict[str, Any] = _json_column(nullable=False)
    definition_hash: str
    created_ms: int
    # Whether the scorer takes ``session`` (m0006): online scoring knows without loading it.
    takes_session: bool = Field(
        default=False,
        sa_column=sa.Column(sa.Boolean, nullable=False, server_default=sa.false()),
    )


class ScorerEventRow(_Base, table=True):
    """History of lifecycle changes, so ``explain`` knows the config in force at any time."""

    __tablename__ = "scorer_events"
    __table_args__ = (sa.Index("ix_scorer_events_lookup", "experiment_id", "name", "at_ms"),)

    id: int | None = Field(default=None, primary_key=True)
    experiment_id: str
    name: str
    version: int
    status: str
    sample_rate: float
    filter_string: str | None = None
    at_ms: int


class TraceRow(_Base, table=True):
    """One trace; ``inputs`` / ``outputs`` are the root call's, as JSON."""

    __tablename__ = "traces"
    __table_args__ = (
        # The trace attributes filters compare ride along (m0005): a filter on status,
        # name or duration scans this index alone, never the rows (issue 16).
        sa.Index(
            "ix_traces_experiment_time",
            "experiment_id",
            "request_time_ms",
            "trace_id",
            "status",
            "name",
            "execution_duration_ms",
        ),
        # Partial (m0007): most traces have no client_request_id, and an entry per NULL
        # was one more page written by every trace's commit (issue 16).
        _not_null_index("ix_traces_client_request_id", "client_request_id"),
        # Every trace's name (m0011; m0008 held only the roots kept in the row, the
        # same entries for log_trace's traces): a rare or absent trace.name is counted
        # and found here, and span.name filters find the roots that have no spans row.
        # trace_id makes it covering: a search reads its candidates from it alone.
        sa.Index("ix_traces_root_name", "name", "experiment_id", "trace_id"),
        # trace.status (m0011), partial: only the traces that are not OK, which a
        # search for an error or unfinished status counts and reads here instead of
        # walking every trace; an OK trace (nearly all) writes no entry (issue 16: a
        # full (status, duration) index cost ~30 % of a minimal log_trace).
        _partial_index(
            "ix_traces_status", "experiment_id", "status", "trace_id", where="status <> 'OK'"
        ),
    )

    trace_id: str = Field(primary_key=True)
    experiment_id: str = Field(foreign_key="experiments.experiment_id")
    name: str | None = None
    status: str
    request_time_ms: int
    execution_duration_ms: int | None = None
    inputs: Any = _json_column()
    outputs: Any = _json_column()
    ingested_ms: int
    # MLflow's TraceInfo.client_request_id: the application's own id for the request.
    client_request_id: str | None = None
    # Set when the trace's only span is the root log_trace synthesizes from the trace
    # itself (same name, status, times, inputs and outputs): that span is not stored as
    # a spans row but read back from this one (issue 16: it was half of a commit's pages).
    root_span_id: str | None = None


class _TraceEntry(_Base):
    """A key and its value attached to a trace, deleted with it: a tag or a metadata entry."""

    trace_id: str = Field(primary_key=True, foreign_key="traces.trace_id", ondelete="CASCADE")
    key: str = Field(primary_key=True)
    value: str


class TraceTagRow(_TraceEntry, table=True):
    """A tag of a trace."""

    __tablename__ = "trace_tags"
    # trace_id (m0011): a search reads the traces of a rare value from the index alone.
    __table_args__ = (sa.Index("ix_trace_tags_key_value", "key", "value", "trace_id"),)


class TraceMetadataRow(_TraceEntry, table=True):
    """A metadata entry of a trace (MLflow's ``request_metadata``)."""

    __tablename__ = "trace_metadata"
    # trace_id (m0011): a search reads the traces of a rare value from the index alone.
    __table_args__ = (sa.Index("ix_trace_metadata_key_value", "key", "value", "trace_id"),)


class SpanRow(_Base, table=True):
    """A span of a trace."""

    __tablename__ = "spans"
    __table_args__ = (
        # With trace_id (m0011): a search reads a rare name's or type's traces from the
        # index alone.
        sa.Index("ix_spans_name", "name", "trace_id"),
        # Partial (m0007): a root span, as log_trace writes it, has no type.
        _partial_index("ix_spans_type", "span_type", "trace_id", where="span_type IS NOT NULL"),
    )

    trace_id: str = Field(
        sa_column=sa.Column(
            sa.String, sa.ForeignKey("traces.trace_id", ondelete="CASCADE"), primary_key=True
        )
    )
    span_id: str = Field(primary_key=True)
    parent_id: str | None = None
    name: str
    span_type: str | None = None
    status: str
    status_message: str | None = None
    start_time_ns: int
    end_time_ns: int | None = None
    inputs: Any = _json_column()
    outputs: Any = _json_column()
    attributes: Any = _json_column()
    events: Any = _json_column()


class AssessmentRow(_Base, table=True):
    """Feedback or an expectation on a trace.

    ``value_str`` / ``value_num`` are the value's string and numeric forms, kept so
    filters compare them with indexes and without JSON functions. ``valid`` is false
    once a rescore has replaced the row; the row stays as history.
    """

    __tablename__ = "assessments"
    __table_args__ = (
        sa.Index("ix_assessments_trace", "trace_id"),
        # (name, kind, value_num, value_str, valid, trace_id) since m0011: a string
        # value is found under value_num IS NULL (or its number), a numeric range under
        # value_num, and the traces read from the index alone (issue 16).
        sa.Index(
            "ix_assessments_name_value",
            "name",
            "kind",
            "value_num",
            "value_str",
            "valid",
            "trace_id",
        ),
        # Partial (m0007): only session-level feedback has a session.
        _not_null_index("ix_assessments_session", "session_id"),
    )

    assessment_id: str = Field(primary_key=True)
    trace_id: str = Field(
        sa_column=sa.Column(
            sa.String, sa.ForeignKey("traces.trace_id", ondelete="CASCADE"), nullable=False
        )
    )
    evaluation_id: int | None = None
    kind: str
    name: str
    value: Any = _json_column()
    value_str: str | None = None
    value_num: float | None = None
    rationale: str | None = None
    error: Any = _json_column()
    meta: Any = _json_column()
    source_type: str
    source_id: str
    scorer_name: str | None = None
    scorer_version: int | None = None
    origin: str
    created_ms: int
    valid: bool = True
    overrides: str | None = None
    # The metadata's mlflow.trace.session: session-level feedback covers every trace
    # of that session in feedback.<name> filters (as in MLflow).
    session_id: str | None = None


class EvaluationRow(_Base, table=True):
    """One (trace, scorer, version) evaluation: the work queue and its ledger.

    A row is written PENDING in the trace's own transaction (online) or by a backfill
    batch, claimed with a lease, and moved to SUCCEEDED / FAILED in the same
    transaction that writes its feedback. The partial unique index is what makes
    "exactly one feedback per (trace, scorer, version)" hold whatever crashes;
    a rescore marks the old row ``superseded`` first.
    """

    __tablename__ = "evaluations"
    __table_args__ = (
        sa.Index(
            "ux_evaluations_current",
            "trace_id",
            "scorer_name",
            "scorer_version",
            unique=True,
            sqlite_where=sa.text("superseded = 0"),
            info={POSTGRESQL_WHERE: sa.text("superseded = false")},
        ),
        _partial_index(
            "ix_evaluations_pending", "status", "not_before_ms", where="status = 'PENDING'"
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    trace_id: str = Field(
        sa_column=sa.Column(
            sa.String, sa.ForeignKey("traces.trace_id", ondelete="CASCADE"), nullable=False
        )
    )
    experiment_id: str
    scorer_name: str
    scorer_version: int
    origin: str
    status: str
    attempts: int = 0
    enqueued_ms: int
    not_before_ms: int = 0
    lease_owner: str | None = None
    lease_expires_ms: int | None = None
    finished_ms: int | None = None
    superseded: bool = False


class EvaluationRequestRow(_Base, table=True):
    """A committed trace's online evaluations, not yet moved into ``evaluations``.

    One row per trace, written in the trace's transaction with the (scorer, version)
    pairs whose filter matched and whose sample was in (``scorers``, a JSON list of
    ``[name, version]``; ``count`` is its length). It has no index but its rowid and no
    foreign key: a trace commit with scorers active costs one cheap row here, where
    five ``evaluations`` rows with their unique index cost ~100 us (issue 4's 1.3x
    budget). A claim moves requests into ``evaluations`` (insert-or-ignore on the
    unique index, so exactly-once still holds) and deletes them in one transaction.
    """

    __tablename__ = "evaluation_requests"
    # Ids are never reused (SQLite would restart at 1 once the table is empty), so an
    # id taken as a watermark by flush() stays below every later request.
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    trace_id: str
    experiment_id: str
    scorers: Any = _json_column(nullable=False)
    count: int
    enqueued_ms: int


class _JobProgress(_Base):
    """What a backfill job and each of its parts track alike: state, cursor, counts, lease.

    A part runs exactly as a whole job once did (m0010), so the columns are one list.
    """

    status: str
    cursor_time_ms: int | None = None
    cursor_trace_id: str | None = None
    total: int = 0
    processed: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    started_ms: int | None = None
    finished_ms: int | None = None
    error: str | None = None
    lease_owner: str | None = None
    lease_expires_ms: int | None = None


class BackfillJobRow(_JobProgress, table=True):
    """A durable backfill job with its keyset cursor ``(cursor_time_ms, cursor_trace_id)``."""

    __tablename__ = "backfill_jobs"

    job_id: str = Field(primary_key=True)
    experiment_id: str = Field(foreign_key="experiments.experiment_id")
    scorers: Any = _json_column(nullable=False)
    start_ms: int | None = None
    end_ms: int | None = None
    rescore: bool = False
    created_ms: int
    cancel_requested: bool = False
    # Claims since the cursor last moved (m0009): more than one means a holder died.
    claims: int = Field(
        default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default=sa.text("0"))
    )
    # The pair a careful holder runs alone ({"trace_id", "scorer", "attempts"}, m0009).
    probe: Any = _json_column()


class BackfillJobPartRow(_JobProgress, table=True):
    """One key range of a backfill job, run by one holder at a time under a lease (m0010).

    A job is split into parts when it is first claimed: part ``n`` covers the traces
    whose key ``(request_time_ms, trace_id)`` is above ``lower`` and at most ``upper``
    (no bound: open), walked by its own cursor. Workers claim parts, so several work on
    one job; the job ends in the transaction that ends its last part.
    """

    __tablename__ = "backfill_job_parts"

    job_id: str = Field(primary_key=True, foreign_key="backfill_jobs.job_id")
    part_no: int = Field(primary_key=True)
    created_ms: int  # the job's: parts are claimed oldest job first
    lower_time_ms: int | None = None
    lower_trace_id: str | None = None
    upper_time_ms: int | None = None
    upper_trace_id: str | None = None
    # The job's scorers with this part's counts (as backfill_jobs.scorers).
    scorers: Any = _json_column(nullable=False)
    claims: int = 0
    probe: Any = _json_column()


class JudgeCacheRow(_Base, table=True):
    """A cached judge model answer, keyed by a hash of (model, prompt, parameters)."""

    __tablename__ = "judge_cache"

    cache_key: str = Field(primary_key=True)
    model: str
    response: str
    usage: Any = _json_column()
    created_ms: int


class PendingSpanRow(_Base, table=True):
    """A span received over OTLP whose trace is not committed yet (issue 17).

    A request is acknowledged only once its spans are committed here, so a crash loses
    nothing acknowledged. The trace is assembled from these rows when its root span
    arrives, or after the grace period, and the rows are deleted in that transaction.
    ``payload`` holds the mapped span and its resource attributes.
    """

    __tablename__ = "pending_spans"
    __table_args__ = (sa.Index("ix_pending_spans_received", "received_ms"),)

    trace_id: str = Field(primary_key=True)
    span_id: str = Field(primary_key=True)
    experiment_id: str
    is_root: bool = False
    start_time_ns: int
    received_ms: int
    payload: Any = _json_column(nullable=False)


METADATA: sa.MetaData = _Base.metadata


def _table(model: type[SQLModel]) -> sa.Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, sa.Table)  # noqa: S101 - SQLModel always builds a Table
    return table


experiments = _table(ExperimentRow)
counters = _table(CounterRow)
scorers = _table(ScorerStateRow)
scorer_versions = _table(ScorerVersionRow)
scorer_events = _table(ScorerEventRow)
traces = _table(TraceRow)
trace_tags = _table(TraceTagRow)
trace_metadata = _table(TraceMetadataRow)
spans = _table(SpanRow)
assessments = _table(AssessmentRow)
evaluations = _table(EvaluationRow)
evaluation_requests = _table(EvaluationRequestRow)
backfill_jobs = _table(BackfillJobRow)
backfill_job_parts = _table(BackfillJobPartRow)
judge_cache = _table(JudgeCacheRow)
pending_spans = _table(PendingSpanRow)
