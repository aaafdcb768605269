"""``span_terms``: which traces have a span with a given status or attribute value (SQLite).

``span.status`` and ``span.attributes.<key>`` filters have no column index to start
from: a rare value made a search read every trace's spans (0.15-0.4 s a page at 100k
traces, seconds at 1M; issue 16). This table holds, per trace, each distinct span
status (key ``s``) and each distinct short scalar attribute value (key ``a.<key>``), as
``(key, value, trace_id)`` in a ``WITHOUT ROWID`` table (the table is its own index).
A trigger on ``spans`` fills it, so every door that writes spans (``log_trace``,
tracing, OTLP, imports) keeps it whole without code of its own.

Terms land first in ``span_terms_new``, a plain table a commit appends to (one page),
and every ``MERGE_EVERY`` of them move into ``span_terms`` in one sorted batch (a
trigger on the buffer): written one commit at a time, a span's terms scattered over
as many index pages as it has distinct values, which made a trace with three spans
and six attributes 1.65x as costly to commit; through the buffer, ~1.3x. A search
reads both (the buffer is short: a scan of it costs well under a millisecond).

It is exact for the values it is asked about (triggers on insert, update and delete
keep it so), so one span status or attribute comparison is answered from it alone;
:func:`indexable` says which values those are (scalars of at most ``MAX_TEXT``
characters, not JSON objects or arrays, keys without escapes).

``value`` is the attribute as the filter reads it, ``CAST(json_extract(...) AS
TEXT)`` (numbers as their digits, true / false as 1 / 0), in a TEXT column, so
``value = ?`` compares (a number converted to text) as the filter's comparison does.

PostgreSQL has no such table: its planner estimates per value from its statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from localscorers.filters import Scalar

__all__ = [
    "MAX_TEXT",
    "MERGE_EVERY",
    "create",
    "indexable",
    "merge_trigger",
    "span_terms",
    "span_terms_new",
    "traces_with",
]

# Longer strings (prompts, documents) are not indexed: they would bloat the table, and a
# filter compares them with LIKE, which no index serves anyway.
MAX_TEXT: Final = 200
MERGE_EVERY: Final = 4096
STATUS_KEY: Final = "s"
ATTRIBUTE_PREFIX: Final = "a."

# Their own MetaData: METADATA.create_all (m0001, PostgreSQL) never creates them.
_metadata = sa.MetaData()
span_terms = sa.Table(
    "span_terms",
    _metadata,
    sa.Column("key", sa.String, primary_key=True),
    # Untyped binds: the column's TEXT affinity converts a number as the filter's CAST.
    sa.Column("value", sa.types.NullType, primary_key=True),
    sa.Column("trace_id", sa.String, primary_key=True),
)
span_terms_new = sa.Table(
    "span_terms_new",
    _metadata,
    sa.Column("key", sa.String),
    sa.Column("value", sa.types.NullType),
    sa.Column("trace_id", sa.String),
)

# What one span row ({span}) adds: its status, and its short scalar attribute values.
_STATUS_TERM: Final = f"SELECT '{STATUS_KEY}', {{span}}.status, {{span}}.trace_id"
_ATTRIBUTE_TERMS: Final = f"""
SELECT '{ATTRIBUTE_PREFIX}' || j.key, CAST(j.value AS TEXT), {{span}}.trace_id
FROM {{source}}json_each(CASE WHEN json_valid({{span}}.attributes)
                    AND json_type({{span}}.attributes) = 'object'
               THEN {{span}}.attributes END) AS j
WHERE j.type IN ('text', 'integer', 'real', 'true', 'false')
  AND (j.type <> 'text' OR length(j.value) <= {MAX_TEXT})
"""
_TERMS_OF_SPAN: Final = (
    _STATUS_TERM + " UNION ALL " + _ATTRIBUTE_TERMS.format(span="{span}", source="")
)


def merge_trigger(every: int) -> str:
    """The trigger that moves the buffer into ``span_terms`` once it holds ``every`` rows.

    Emptied, the buffer numbers its rows from 1 again. OR IGNORE: a trace's second span
    with the same status or value adds nothing.
    """
    return (
        "CREATE TRIGGER IF NOT EXISTS span_terms_merge AFTER INSERT ON span_terms_new "
        f"WHEN NEW.rowid >= {int(every)} BEGIN "
        "INSERT OR IGNORE INTO span_terms (key, value, trace_id) "
        "SELECT key, value, trace_id FROM span_terms_new ORDER BY key, value, trace_id; "
        "DELETE FROM span_terms_new; END"
    )


# A span row ({span}) that goes or changes: its terms go, then the terms of its trace's
# spans are written again (another span of the trace may hold the same value). Every
# statement seeks the primary key or spans' (trace_id, span_id): no scan.
_FORGET: Final = (
    f"DELETE FROM span_terms WHERE key = '{STATUS_KEY}' AND value = {{span}}.status "
    "AND trace_id = {span}.trace_id; "
    "DELETE FROM span_terms_new WHERE trace_id = {span}.trace_id; "
    "DELETE FROM span_terms WHERE (key, value, trace_id) IN ("
    + _ATTRIBUTE_TERMS.format(span="{span}", source="")
    + "); INSERT OR IGNORE INTO span_terms (key, value, trace_id) "
    + _STATUS_TERM.format(span="spans")
    + " FROM spans WHERE spans.trace_id = {span}.trace_id UNION ALL "
    + _ATTRIBUTE_TERMS.format(span="spans", source="spans, ")
    + " AND spans.trace_id = {span}.trace_id; "
)

_DDL: Final = (
    "CREATE TABLE IF NOT EXISTS span_terms (key TEXT NOT NULL, value TEXT NOT NULL, "
    "trace_id TEXT NOT NULL, PRIMARY KEY (key, value, trace_id)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS span_terms_new (key TEXT NOT NULL, value TEXT NOT NULL, "
    "trace_id TEXT NOT NULL)",
    "CREATE TRIGGER IF NOT EXISTS span_terms_insert AFTER INSERT ON spans BEGIN "
    "INSERT INTO span_terms_new (key, value, trace_id) "
    + _TERMS_OF_SPAN.format(span="NEW")
    + "; END",
    merge_trigger(MERGE_EVERY),
    # No code updates or deletes single spans today (a trace's go with it, by cascade):
    # these keep the table exact if any ever does, so a search need not check again.
    "CREATE TRIGGER IF NOT EXISTS span_terms_update AFTER UPDATE ON spans BEGIN "
    + _FORGET.format(span="OLD")
    + "INSERT OR IGNORE INTO span_terms (key, value, trace_id) "
    + _TERMS_OF_SPAN.format(span="NEW")
    + "; END",
    "CREATE TRIGGER IF NOT EXISTS span_terms_delete AFTER DELETE ON spans BEGIN "
    + _FORGET.format(span="OLD")
    + "END",
)


def create(conn: Connection) -> None:
    """Create the table and its triggers, and index the spans already stored (SQLite)."""
    for statement in _DDL:
        conn.exec_driver_sql(statement)
    statuses = _STATUS_TERM.format(span="spans") + " FROM spans"
    attributes = _ATTRIBUTE_TERMS.format(span="spans", source="spans, ")
    conn.exec_driver_sql(
        f"INSERT OR IGNORE INTO span_terms (key, value, trace_id) {statuses} UNION ALL {attributes}"
    )


def _plain_key(key: str) -> bool:
    # json_each gives the key as written in the JSON text: escaped characters differ.
    return all(ch != "\\" and ord(ch) >= 0x20 for ch in key)


def indexable(values: Sequence[Scalar]) -> bool:
    """Whether ``span_terms`` holds every span value that can equal one of ``values``."""
    for value in values:
        if isinstance(value, str) and (len(value) > MAX_TEXT or value.startswith(("{", "["))):
            return False
    return True


def traces_with(key: str | None, values: Sequence[Scalar]) -> list[sa.Select[Any]] | None:
    """The ids of traces with a stored span whose status or attribute is in ``values``.

    Two selects, of the index and of its buffer (a trace may be in both: a superset of
    ids, never a missing one). ``key`` None: the span status. None when the tables
    cannot answer completely.
    """
    if key is not None and not _plain_key(key):
        return None
    if not indexable(values):
        return None
    term = STATUS_KEY if key is None else ATTRIBUTE_PREFIX + key
    return [
        sa.select(t.c.trace_id).where(t.c.key == term, t.c.value.in_(list(values)))
        for t in (span_terms, span_terms_new)
    ]
