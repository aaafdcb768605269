"""Indexes filled after commit, in batches: trace text, names, durations, values (SQLite).

Two kinds of filter had no index a search could start from, so a value few traces hold
made a search read the whole experiment, and a third cost every commit (issue 16):

- ``span.content LIKE '%x%'`` (and ``trace.text``, its MLflow alias) compares the whole
  text of every span: 0.3-0.7 s a page at 100k traces, 2-5 s at 1M. ``text_index`` is
  an FTS5 trigram index of each trace's text (its name, inputs and outputs, and every
  span's name, type, inputs, outputs and attributes) as one document. A LIKE or ILIKE
  pattern's literal runs of three or more characters become trigrams, and the
  documents holding all of them are the candidates.
- ``trace.execution_time_ms`` ranges walk the time index: ~90 ms at 1M traces for a
  range no trace is in. ``trace_durations`` holds (experiment, duration, trace).
- ``trace.name`` (and ``span.name`` for a root kept in its trace row) had an index on
  ``traces`` (``ix_traces_root_name``), one of the four B-trees a trace's commit wrote:
  10 % of a minimal ``log_trace``. ``trace_names`` holds (name, experiment, trace).
- ``feedback.<name>`` / ``expectation.<name>`` values had ``ix_assessments_name_value``,
  the most scattered of the four B-trees a feedback row wrote: 9 % of a trivial
  backfill. ``assessment_values`` holds (name, kind, value_num, value_str, trace), with
  a watermark over ``assessments``; a rescore's old, invalid row stays there (the search
  checks validity). Session-level feedback still comes from ``ix_assessments_session``.

Both only narrow a search: it still checks the filter on each candidate, so they may
hold more than the traces (a trace's old document after it gained spans, a deleted
trace's rows) but never less.

**Nothing is indexed at commit.** The ingest bound (issue 16: a trace's commit within
2x of a raw one-row write) leaves no room for a full-text index per commit, and a
duration or a name index cost a minimal ``log_trace`` 9-10 % each. So they catch up
afterwards (:func:`catch_up`): a search with such a filter first indexes what is new
when more than ``CATCH_UP_AFTER`` traces or spans wait, and reads the newer traces
directly. Names and durations cost ~3 us a trace, and any such search brings them up
to date; text costs ~25 us a trace and only a content search builds it (a 100k-trace
database's first content search takes about 2.5 s, once), with watermarks of its own.
"New" is a rowid watermark over ``traces`` and over ``spans``: their rows are
only ever inserted (a trace's later spans are new span rows) or deleted, and a row gets
a rowid above every row before it, unless the highest rows were deleted: triggers lower
the watermark then, so a reused rowid is indexed again. ``VACUUM`` keeps the rowids of
these tables (measured on SQLite 3.40, though SQLite does not promise it).

``detail='none'``: the text index keeps which documents hold a trigram, not where (a
third of the size); the check of the filter on each candidate does the rest. The
tokenizer folds case, so a case-sensitive LIKE gets a few more candidates, never fewer.
A SQLite built without FTS5 or older than 3.34 (no trigram tokenizer) has no text
index: content filters then read the spans, as on PostgreSQL, which has neither index.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, OperationalError

from localscorers.exceptions import LocalScorersError
from localscorers.filters import Comparison, Op
from localscorers.store import schema
from localscorers.store.comparison_sql import predicate

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from localscorers.store.database import Database

__all__ = [
    "CATCH_UP_AFTER",
    "available",
    "catch_up",
    "content_candidates",
    "create",
    "duration_candidates",
    "name_candidates",
    "newer_assessments",
    "refresh_text",
    "refresh_values",
    "trigrams",
]

logger = logging.getLogger(__name__)

# More new traces (or spans) than this and a search indexes them first; fewer are read
# directly (each is a candidate, checked by the filter: ~10 us).
CATCH_UP_AFTER = 1000
_BATCH: Final = 20_000  # traces a catch-up transaction indexes (~0.5 s of the write lock)
_MOST_TRIGRAMS: Final = 24  # more narrow no further and cost a doclist each
_DURATION_OPS: Final = frozenset({Op.EQ, Op.IN, Op.LT, Op.LE, Op.GT, Op.GE})

# Lightweight clauses for the queries; the DDL below is what creates the tables.
text_index_docs = sa.table("text_index_docs", sa.column("doc"), sa.column("trace_id"))
trace_names = sa.table(
    "trace_names", sa.column("name"), sa.column("experiment_id"), sa.column("trace_id")
)
trace_durations = sa.table(
    "trace_durations", sa.column("experiment_id"), sa.column("duration"), sa.column("trace_id")
)
assessment_values = sa.table(
    "assessment_values",
    *(sa.column(c) for c in ("name", "kind", "value_num", "value_str", "trace_id")),
)
deferred_index_state = sa.table(
    "deferred_index_state",
    *(sa.column(c) for c in ("value_upto", "assessment_upto", "trace_upto", "span_upto")),
)
_fts = sa.table("text_index", sa.column("rowid"), sa.column("text_index"))

_FTS_DDL: Final = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS text_index USING fts5("
    "body, tokenize = 'trigram', content = '', detail = 'none')"
)


def _lower_on_delete(table: str, *columns: str) -> str:
    # A deleted row above every remaining one frees its rowid for the next insert: the
    # watermark comes down to the highest remaining row, so that insert is indexed.
    top = f"coalesce((SELECT max(rowid) FROM {table}), 0)"
    lowered = ", ".join(f"{column} = min({column}, {top})" for column in columns)
    return (
        f"CREATE TRIGGER IF NOT EXISTS deferred_index_{table}_deleted "
        f"AFTER DELETE ON {table} WHEN OLD.rowid > {top} BEGIN "
        f"UPDATE deferred_index_state SET {lowered}; END"
    )


_DDL: Final = (
    "CREATE TABLE IF NOT EXISTS text_index_docs (doc INTEGER PRIMARY KEY, trace_id TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS trace_names (name TEXT NOT NULL, experiment_id TEXT NOT NULL, "
    "trace_id TEXT NOT NULL, PRIMARY KEY (name, experiment_id, trace_id)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS trace_durations (experiment_id TEXT NOT NULL, "
    "duration INTEGER NOT NULL, trace_id TEXT NOT NULL, "
    "PRIMARY KEY (experiment_id, duration, trace_id)) WITHOUT ROWID",
    # Rows, not a key: value_num and value_str may be NULL. A feedback's value as
    # ix_assessments_name_value held it, without its validity (the search checks it).
    "CREATE TABLE IF NOT EXISTS assessment_values (name TEXT NOT NULL, kind TEXT NOT NULL, "
    "value_num REAL, value_str TEXT, trace_id TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS ix_assessment_values "
    "ON assessment_values (name, kind, value_num, value_str, trace_id)",
    # value_upto: the traces in trace_names and trace_durations; assessment_upto: the
    # assessments in assessment_values; trace_upto and span_upto: the traces and spans
    # in text_index (a content search alone builds it).
    "CREATE TABLE IF NOT EXISTS deferred_index_state (id INTEGER PRIMARY KEY CHECK (id = 1), "
    "value_upto INTEGER NOT NULL, assessment_upto INTEGER NOT NULL, "
    "trace_upto INTEGER NOT NULL, span_upto INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO deferred_index_state "
    "(id, value_upto, assessment_upto, trace_upto, span_upto) VALUES (1, 0, 0, 0, 0)",
    _lower_on_delete("traces", "value_upto", "trace_upto"),
    _lower_on_delete("spans", "span_upto"),
    _lower_on_delete("assessments", "assessment_upto"),
)

# One trace's document: every text a content comparison reads (filter_sql's
# _span_predicate and _root_predicate), one per line.
_SPAN_TEXT: Final = (
    "coalesce(s.name, '') || char(10) || coalesce(s.span_type, '') || char(10) || "
    "coalesce(s.inputs, '') || char(10) || coalesce(s.outputs, '') || char(10) || "
    "coalesce(s.attributes, '')"
)
_DOCUMENT: Final = (
    "coalesce(t.name, '') || char(10) || coalesce(t.inputs, '') || char(10) || "
    "coalesce(t.outputs, '') || char(10) || coalesce((SELECT group_concat("
    + _SPAN_TEXT
    + ", char(10)) FROM spans AS s WHERE s.trace_id = t.trace_id), '')"
)


def create(conn: Connection) -> None:
    """Create the indexes, their bookkeeping and triggers, empty (SQLite).

    Nothing is indexed here: the first search that can use them after
    :data:`CATCH_UP_AFTER` traces does (:func:`catch_up`). Without FTS5 (or its trigram
    tokenizer) there is no text index, and a warning says so. Whatever an earlier build
    of this step left (a development database) is dropped first, so every index covers
    exactly what its watermark says.
    """
    for old in ("text_index", "text_index_docs", "trace_names", "trace_durations",
                "assessment_values", "deferred_index_state"):  # fmt: skip
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {old}")
    for table in ("traces", "spans", "assessments"):
        conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS deferred_index_{table}_deleted")
    try:
        conn.exec_driver_sql(_FTS_DDL)
    except OperationalError as exc:
        logger.warning(
            "localscorers: this SQLite (%s) cannot build a trigram index (%s); "
            "span.content filters will read every span",
            sqlite3.sqlite_version,
            exc.orig,
        )
    for statement in _DDL:
        conn.exec_driver_sql(statement)


def available(conn: Connection) -> tuple[bool, bool]:
    """Whether this database has the duration index, and the text index (SQLite)."""
    if conn.dialect.name != "sqlite":
        return False, False
    found = conn.exec_driver_sql(
        "SELECT name FROM sqlite_master WHERE type = 'table' "
        "AND name IN ('deferred_index_state', 'text_index')"
    )
    names = {row[0] for row in found}
    return "deferred_index_state" in names, "text_index" in names


def trigrams(comparison: Comparison) -> list[str] | None:
    """The trigrams every text the comparison accepts contains (None: it has none).

    LIKE / ILIKE only: their literal runs between ``%`` and ``_`` must appear whole
    (no ESCAPE clause is ever compiled, so a backslash is a plain character).
    """
    if comparison.op not in (Op.LIKE, Op.ILIKE) or not isinstance(comparison.value, str):
        return None
    found: dict[str, None] = {}  # in order of appearance, without repeats
    for run in re.split(r"[%_]", comparison.value):
        for start in range(len(run) - 2):
            found.setdefault(run[start : start + 3])
    if not found:
        return None
    grams = list(found)
    if len(grams) > _MOST_TRIGRAMS:  # spread over the whole pattern
        step = len(grams) / _MOST_TRIGRAMS
        grams = [grams[int(i * step)] for i in range(_MOST_TRIGRAMS)]
    return grams


def _match(grams: list[str]) -> str:
    """An FTS5 query: every trigram, each as a quoted string (quotes doubled)."""
    return " AND ".join('"' + gram.replace('"', '""') + '"' for gram in grams)


def content_candidates(comparison: Comparison) -> sa.CompoundSelect[Any] | None:
    """Ids of traces that may satisfy a content comparison: a superset, never fewer.

    The indexed documents holding the pattern's trigrams, and the traces newer than
    the index or with newer spans. None: the comparison has no trigram (``LIKE
    '%ab%'``, ``RLIKE``), so the spans must be read.
    """
    grams = trigrams(comparison)
    if grams is None:
        return None
    docs = text_index_docs
    # A join, not ``doc IN (...)``: SQLite would first collect every matching document,
    # where a count up to a bound (search_sql) stops early walking the index.
    indexed = (
        sa.select(docs.c.trace_id)
        .select_from(_fts.join(docs, docs.c.doc == _fts.c.rowid))
        .where(_fts.c.text_index.op("MATCH")(_match(grams)))
    )
    return sa.union_all(indexed, *_newer(text=True))


def duration_candidates(
    comparison: Comparison, experiment_ids: Sequence[str]
) -> sa.CompoundSelect[Any] | None:
    """Ids of traces that may satisfy a ``trace.execution_time_ms`` comparison (a superset).

    None: not a range or an equality (``!=``, ``NOT IN``, ``IS NULL`` hold for nearly
    every trace, or for the few no index holds).
    """
    if comparison.op not in _DURATION_OPS:
        return None
    d = trace_durations
    indexed = sa.select(d.c.trace_id).where(
        d.c.experiment_id.in_(list(experiment_ids)),
        predicate(d.c.duration, comparison.op, comparison.value),
    )
    return sa.union_all(indexed, *_newer(text=False))


def name_candidates(
    comparison: Comparison, experiment_ids: Sequence[str]
) -> sa.CompoundSelect[Any]:
    """Ids of traces whose name may satisfy ``=``, ``IN`` or ``LIKE 'prefix%'`` (a superset).

    A root span kept in its trace row has the trace's name, so this serves ``span.name``
    for those roots too.
    """
    n = trace_names
    indexed = sa.select(n.c.trace_id).where(
        predicate(n.c.name, comparison.op, comparison.value),
        n.c.experiment_id.in_(list(experiment_ids)),
    )
    return sa.union_all(indexed, *_newer(text=False))


def newer_assessments() -> sa.Select[Any]:
    """The traces of assessments above ``assessment_values``' watermark (read directly)."""
    a = schema.assessments
    upto = sa.select(deferred_index_state.c.assessment_upto).scalar_subquery()
    return (
        sa.select(a.c.trace_id).select_from(a).where(sa.literal_column("assessments.rowid") > upto)
    )


def _newer(*, text: bool) -> list[sa.Select[Any]]:
    """The traces above an index's watermark (and, for ``text``, those with newer spans)."""
    state = deferred_index_state
    upto = {
        "traces": sa.select(state.c.trace_upto if text else state.c.value_upto).scalar_subquery(),
        "spans": sa.select(state.c.span_upto).scalar_subquery(),
    }
    tables = [schema.traces, schema.spans] if text else [schema.traces]
    # select_from: the rowid is a bare column, and a count selects only a constant.
    return [
        sa.select(table.c.trace_id)
        .select_from(table)
        .where(sa.literal_column(f"{table.name}.rowid") > upto[table.name])
        for table in tables
    ]


def _waiting(conn: Connection) -> tuple[int, int, int]:
    """Rows above the watermarks: traces or assessments for the values; traces, spans (text)."""
    row = conn.exec_driver_sql(
        "SELECT max(t.top - value_upto, "
        "coalesce((SELECT max(rowid) FROM assessments), 0) - assessment_upto), "
        "t.top - trace_upto, coalesce((SELECT max(rowid) FROM spans), 0) - span_upto "
        "FROM deferred_index_state, (SELECT coalesce(max(rowid), 0) AS top FROM traces) AS t "
        "WHERE id = 1"
    ).one()
    return int(row[0]), int(row[1]), int(row[2])


def refresh_values(conn: Connection, *, batch: int = _BATCH) -> tuple[int, bool]:
    """Add up to ``batch`` new traces to the name and duration indexes, in ``conn``.

    Run inside a write transaction. Returns how many traces were indexed and whether
    the indexes have caught up.
    """
    upto_before = conn.exec_driver_sql(
        "SELECT value_upto FROM deferred_index_state WHERE id = 1"
    ).scalar_one()
    top = conn.exec_driver_sql("SELECT coalesce(max(rowid), 0) FROM traces").scalar_one()
    upto = min(top, upto_before + batch)
    params = {"after": upto_before, "upto": upto}
    # OR IGNORE: a deleted trace's rows stay; its id may come back with the same values.
    # In key order: a B-tree filled in order writes each page once (0.7 -> 0.3 s at 100k).
    for table, columns, column in (
        ("trace_names", "name, experiment_id, trace_id", "name"),
        (
            "trace_durations",
            "experiment_id, execution_duration_ms, trace_id",
            "execution_duration_ms",
        ),
    ):
        conn.execute(
            sa.text(
                f"INSERT OR IGNORE INTO {table} SELECT {columns} FROM traces "
                f"WHERE rowid > :after AND rowid <= :upto AND {column} IS NOT NULL "
                f"ORDER BY {columns}"
            ),
            params,
        )
    conn.execute(sa.text("UPDATE deferred_index_state SET value_upto = :upto"), params)
    assessments_done = _refresh_assessments(conn, batch=2 * batch)
    return upto - upto_before, upto >= top and assessments_done


def _refresh_assessments(conn: Connection, *, batch: int) -> bool:
    """Add up to ``batch`` new assessments to ``assessment_values``; True once caught up."""
    after = conn.exec_driver_sql(
        "SELECT assessment_upto FROM deferred_index_state WHERE id = 1"
    ).scalar_one()
    top = conn.exec_driver_sql("SELECT coalesce(max(rowid), 0) FROM assessments").scalar_one()
    upto = min(top, after + batch)
    columns = "name, kind, value_num, value_str, trace_id"
    conn.execute(
        sa.text(
            f"INSERT INTO assessment_values ({columns}) SELECT {columns} FROM assessments "
            f"WHERE rowid > :after AND rowid <= :upto ORDER BY {columns}"
        ),
        {"after": after, "upto": upto},
    )
    conn.execute(sa.text("UPDATE deferred_index_state SET assessment_upto = :upto"), {"upto": upto})
    return bool(upto >= top)


def refresh_text(conn: Connection, *, batch: int = _BATCH) -> tuple[int, bool]:
    """Index the text of up to ``batch`` new traces, and of traces that gained spans.

    Run inside a write transaction. Returns how many new traces were indexed and
    whether the index has caught up.
    """
    trace_upto, span_upto = conn.exec_driver_sql(
        "SELECT trace_upto, span_upto FROM deferred_index_state WHERE id = 1"
    ).one()
    top = conn.exec_driver_sql("SELECT coalesce(max(rowid), 0) FROM traces").scalar_one()
    span_top = conn.exec_driver_sql("SELECT coalesce(max(rowid), 0) FROM spans").scalar_one()
    upto = min(top, trace_upto + batch)
    params = {"trace_upto": trace_upto, "upto": upto, "span_upto": span_upto}
    _index_text(conn, params, gained=trace_upto > 0 and span_top > span_upto)
    conn.execute(
        sa.text("UPDATE deferred_index_state SET trace_upto = :upto, span_upto = :span_top"),
        {"upto": upto, "span_top": span_top},
    )
    return upto - trace_upto, upto >= top


def _index_text(conn: Connection, params: dict[str, int], *, gained: bool) -> None:
    """Write the documents of the new traces, and again of older ones that gained spans.

    An older trace's old document stays (a superset). Spans of traces above ``upto``
    go with their trace's document in a later batch.
    """
    after = conn.exec_driver_sql("SELECT coalesce(max(doc), 0) FROM text_index_docs").scalar_one()
    older = (
        " UNION SELECT t.trace_id FROM spans AS s JOIN traces AS t ON t.trace_id = s.trace_id"
        " WHERE s.rowid > :span_upto AND t.rowid <= :trace_upto"
    )
    conn.execute(
        sa.text(
            "INSERT INTO text_index_docs (trace_id) SELECT trace_id FROM traces "
            "WHERE rowid > :trace_upto AND rowid <= :upto" + (older if gained else "")
        ),
        params,
    )
    conn.execute(
        sa.text(
            "INSERT INTO text_index (rowid, body) SELECT d.doc, "
            + _DOCUMENT
            + " FROM text_index_docs AS d JOIN traces AS t ON t.trace_id = d.trace_id"
            " WHERE d.doc > :after"
        ),
        {"after": after},
    )


def catch_up(db: Database, *, text: bool, after: int | None = None) -> int:
    """Index what is new when more than ``after`` traces or spans wait; return how many.

    A search calls it before reading: the name and duration indexes always (cheap,
    ~3 us a trace), the text index only for a content filter (~25 us a trace). It gives
    up quietly (the search then reads the new traces directly) when the database cannot
    be written: read-only, busy, full.

    Args:
        db: the database.
        text: also catch the text index up.
        after: how many new traces or spans may wait (None: ``CATCH_UP_AFTER``).
    """
    after = CATCH_UP_AFTER if after is None else after
    total = 0
    try:
        with db.read() as conn:
            values, has_text = available(conn)
            if not values:
                return 0
            waiting, text_traces, text_spans = _waiting(conn)
        steps = [refresh_values] if waiting > after else []
        if text and has_text and (text_traces > after or text_spans > after):
            steps.append(refresh_text)
            if text_traces > 10 * _BATCH:
                logger.warning(
                    "localscorers: indexing the text of about %d traces for span.content "
                    "searches (once; about 25 s per million traces)",
                    text_traces,
                )
        for step in steps:
            done, taken = False, 0
            while not done:
                with db.write() as conn:
                    indexed, done = step(conn)
                taken += indexed
            total = max(total, taken)
    except (LocalScorersError, DBAPIError) as exc:
        logger.info("localscorers: the deferred indexes could not catch up (%s)", exc)
    return total
