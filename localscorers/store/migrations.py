"""Ordered schema migrations, recorded in ``PRAGMA user_version`` (STYLE.md rule 17).

On PostgreSQL the version is a row of ``localscorers_schema`` and migrations take an
advisory lock (``store.postgres``); the same steps run on both.

Each migration runs in one ``BEGIN IMMEDIATE`` transaction together with the
version bump, so a failure leaves the database exactly as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import sqlalchemy as sa

from localscorers import _clock
from localscorers.exceptions import SchemaVersionError
from localscorers.store import deferred_indexes, dialect, schema, span_terms, sqlite

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Migration", "migrate"]

logger = logging.getLogger(__name__)

Migration = Callable[["Connection"], None]


def m0001_initial(conn: Connection) -> None:
    """Create the version-1 tables and the default experiment ``"0"``.

    The tables are named one by one (not ``create_all``), so tables added by later
    migrations are not created here. Their definitions are still the live ones: before
    a later migration changes a column of one of these tables, replace this body with
    the frozen version-1 DDL, so a fresh database still passes through every step.
    """
    version_1 = (
        schema.experiments,
        schema.counters,
        schema.scorers,
        schema.scorer_versions,
        schema.scorer_events,
        schema.traces,
        schema.trace_tags,
        schema.trace_metadata,
        schema.spans,
        schema.assessments,
        schema.evaluations,
        schema.backfill_jobs,
        schema.judge_cache,
    )
    schema.METADATA.create_all(conn, tables=version_1)
    conn.execute(
        sa.insert(schema.experiments).values(
            experiment_id="0", name="Default", created_ms=_clock.now_ms()
        )
    )
    conn.execute(sa.insert(schema.counters).values(name="scorers", value=0))


def m0002_evaluation_requests(conn: Connection) -> None:
    """Add ``evaluation_requests``: a trace commit's online evaluations, one row per trace."""
    schema.evaluation_requests.create(conn)


def m0003_pending_spans(conn: Connection) -> None:
    """Add ``pending_spans``: OTLP spans acknowledged but not yet assembled into a trace.

    ``m0001_initial`` does not create it, but a database whose version was set back (as
    tests do) may hold it already.
    """
    schema.pending_spans.create(conn, checkfirst=True)


def m0004_client_request_id_and_session_feedback(conn: Connection) -> None:
    """Add ``traces.client_request_id`` and ``assessments.session_id``, with their indexes.

    ``m0001_initial`` creates its tables from the live definitions, so a database created
    by this version already has both columns: add each one only where it is missing.
    """
    added = (
        (schema.traces, "client_request_id", "ix_traces_client_request_id"),
        (schema.assessments, "session_id", "ix_assessments_session"),
    )
    for table, column, index in added:
        present = {c["name"] for c in sa.inspect(conn).get_columns(table.name)}
        if column not in present:
            conn.execute(sa.text(f'ALTER TABLE {table.name} ADD COLUMN "{column}" VARCHAR'))
        next(i for i in table.indexes if i.name == index).create(conn, checkfirst=True)
    # Existing session-level feedback: the session named in its metadata.
    a = schema.assessments
    conn.execute(
        sa.update(a)
        .where(a.c.meta.is_not(None), a.c.session_id.is_(None))
        .values(session_id=a.c.meta["mlflow.trace.session"].as_string())
    )


def m0005_covering_trace_time_index(conn: Connection) -> None:
    """Rebuild ``ix_traces_experiment_time`` with status, name and duration in it.

    A search newest first walks this index; with the compared attributes in it, a
    filter on them reads no table row: a page of a rare status or name at 100k traces
    went from 80-170 ms to 13-25 ms (``benchmarks/filters.py``).
    """
    index = next(i for i in schema.traces.indexes if i.name == "ix_traces_experiment_time")
    index.drop(conn, checkfirst=True)
    index.create(conn)


def m0006_session_scoring(conn: Connection) -> None:
    """Add ``scorers.session_idle_seconds`` and ``scorer_versions.takes_session``.

    Online session scoring reads both without loading a scorer. ``m0001_initial``
    creates its tables from the live definitions, so each column is added only where
    it is missing, with the DDL (type, default) of its live definition.
    """
    for table, column in (
        (schema.scorers, "session_idle_seconds"),
        (schema.scorer_versions, "takes_session"),
    ):
        present = {c["name"] for c in sa.inspect(conn).get_columns(table.name)}
        if column not in present:
            spec = sa.schema.CreateColumn(table.c[column]).compile(dialect=conn.dialect)
            conn.execute(sa.text(f"ALTER TABLE {table.name} ADD COLUMN {spec}"))


def m0007_partial_null_indexes(conn: Connection) -> None:
    """Rebuild three indexes of mostly-NULL columns without their NULL entries.

    ``ix_traces_client_request_id``, ``ix_spans_type`` and ``ix_assessments_session``
    held one entry per trace, root span and feedback row, nearly all NULL, which no
    filter reads (``x = ?`` implies ``x IS NOT NULL``): each was one more B-tree page
    in every trace commit or backfill batch (issue 16).
    """
    for table, name in (
        (schema.traces, "ix_traces_client_request_id"),
        (schema.spans, "ix_spans_type"),
        (schema.assessments, "ix_assessments_session"),
    ):
        index = next(i for i in table.indexes if i.name == name)
        index.drop(conn, checkfirst=True)
        index.create(conn)


def m0008_virtual_root_spans(conn: Connection) -> None:
    """Add ``traces.root_span_id`` and ``ix_traces_root_name``.

    A trace whose only span is the root ``log_trace`` synthesizes keeps that span's id
    here instead of a ``spans`` row (its other fields are the trace's own); span
    filters read such roots from the trace row. Existing spans rows stay as they are.
    """
    present = {c["name"] for c in sa.inspect(conn).get_columns("traces")}
    if "root_span_id" not in present:
        conn.execute(sa.text('ALTER TABLE traces ADD COLUMN "root_span_id" VARCHAR'))
    index = next(i for i in schema.traces.indexes if i.name == "ix_traces_root_name")
    index.create(conn, checkfirst=True)


def m0009_backfill_claims(conn: Connection) -> None:
    """Add ``backfill_jobs.claims`` and ``backfill_jobs.probe``.

    A claim counts itself in ``claims`` (reset when the cursor moves), so a job whose
    holders keep dying is resumed carefully, one pair at a time, with the pair under
    test in ``probe``; a pair that kills ``LOCALSCORERS_MAX_ATTEMPTS`` holders is
    FAILED with ``SCORER_CRASHED`` and the job goes on (issue 12).
    """
    present = {c["name"] for c in sa.inspect(conn).get_columns("backfill_jobs")}
    for column in ("claims", "probe"):
        if column not in present:
            spec = sa.schema.CreateColumn(schema.backfill_jobs.c[column]).compile(
                dialect=conn.dialect
            )
            conn.execute(sa.text(f"ALTER TABLE backfill_jobs ADD COLUMN {spec}"))


def m0010_backfill_job_parts(conn: Connection) -> None:
    """Add ``backfill_job_parts``: a job's key ranges, each claimed by one worker at a time.

    Several workers then run one job at once (issue 18). An unfinished job that has
    moved its cursor becomes ONE part at that cursor, with its counts, claims and lease,
    so it resumes where it stopped; one that has not is split when it is next claimed.
    """
    schema.backfill_job_parts.create(conn, checkfirst=True)
    j, p = schema.backfill_jobs, schema.backfill_job_parts
    started = conn.execute(
        sa.select(j).where(j.c.status.in_(("PENDING", "RUNNING")), j.c.cursor_trace_id.is_not(None))
    ).all()
    for row in started:
        conn.execute(
            sa.insert(p).values(
                job_id=row.job_id,
                part_no=0,
                created_ms=row.created_ms,
                status=row.status,
                cursor_time_ms=row.cursor_time_ms,
                cursor_trace_id=row.cursor_trace_id,
                scorers=row.scorers,
                total=row.total,
                processed=row.processed,
                succeeded=row.succeeded,
                failed=row.failed,
                skipped=row.skipped,
                started_ms=row.started_ms,
                lease_owner=row.lease_owner,
                lease_expires_ms=row.lease_expires_ms,
                claims=row.claims,
                probe=row.probe if row.probe else sa.null(),
            )
        )
        conn.execute(
            sa.update(j)
            .where(j.c.job_id == row.job_id)
            .values(lease_owner=None, lease_expires_ms=None)
        )


def m0011_search_indexes(conn: Connection) -> None:
    """Indexes that let every filter field start from its value (issue 16).

    ``ix_traces_root_name`` holds every trace's name (it held the roots kept in the
    row), ``ix_traces_status`` (the traces that are not OK) is new,
    ``ix_assessments_name_value`` becomes (name, kind, value_num, value_str, valid),
    and the value indexes of tags, metadata, span names and types and assessments end
    with ``trace_id`` (a rare value's traces are read from the index alone). On
    SQLite, ``span_terms`` indexes span statuses and attribute values, filled by a
    trigger on ``spans`` (``store.span_terms``).
    """
    rebuilt = (
        (schema.traces, "ix_traces_root_name"),
        (schema.traces, "ix_traces_status"),
        (schema.trace_tags, "ix_trace_tags_key_value"),
        (schema.trace_metadata, "ix_trace_metadata_key_value"),
        (schema.spans, "ix_spans_name"),
        (schema.spans, "ix_spans_type"),
        (schema.assessments, "ix_assessments_name_value"),
    )
    for table, name in rebuilt:
        index = next(i for i in table.indexes if i.name == name)
        index.drop(conn, checkfirst=True)
        index.create(conn)
    if conn.dialect.name == "sqlite":
        span_terms.create(conn)


def m0012_deferred_indexes(conn: Connection) -> None:
    """Indexes of trace text, names and durations, filled after commit (SQLite).

    Empty here: the first search that can use them fills them in batches
    (``store.deferred_indexes``), so opening a large database stays quick. There, trace
    names replace ``ix_traces_root_name``, a B-tree every trace's commit wrote (10 % of
    a minimal ``log_trace``), and assessment values ``ix_assessments_name_value``, the
    most scattered of a feedback row's four (9 % of a trivial backfill); PostgreSQL
    keeps both.
    """
    if conn.dialect.name == "sqlite":
        deferred_indexes.create(conn)
        conn.exec_driver_sql("DROP INDEX IF EXISTS ix_traces_root_name")
        conn.exec_driver_sql("DROP INDEX IF EXISTS ix_assessments_name_value")


MIGRATIONS: tuple[Migration, ...] = (
    m0001_initial,
    m0002_evaluation_requests,
    m0003_pending_spans,
    m0004_client_request_id_and_session_feedback,
    m0005_covering_trace_time_index,
    m0006_session_scoring,
    m0007_partial_null_indexes,
    m0008_virtual_root_spans,
    m0009_backfill_claims,
    m0010_backfill_job_parts,
    m0011_search_indexes,
    m0012_deferred_indexes,
)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(engine: Engine, *, path: str, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the database up to the newest schema version; return that version.

    Raises:
        SchemaVersionError: the database is newer than this code.
    """
    expected = len(migrations)
    # SQLite keeps the version in PRAGMA user_version, PostgreSQL in a one-row table.
    versions = dialect.of(engine)
    with engine.connect() as conn:
        found = versions.get_user_version(conn)
    if found > expected:
        raise SchemaVersionError(path=path, found=found, expected=expected)
    for index in range(found, expected):
        with engine.connect() as conn:
            conn.execution_options(**{sqlite.BEGIN_OPTION: "IMMEDIATE"})
            with conn.begin():
                versions.lock_migrations(conn)
                # Re-read inside the write lock: another process may have migrated meanwhile.
                current = versions.get_user_version(conn)
                if current > expected:
                    raise SchemaVersionError(path=path, found=current, expected=expected)
                if current > index:
                    continue
                migrations[index](conn)
                versions.set_user_version(conn, index + 1)
                logger.info("migrated %s to schema version %s", path, index + 1)
    return expected
