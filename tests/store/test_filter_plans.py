"""Every filter field's search plan, pinned with EXPLAIN QUERY PLAN (issue 16).

A search counts each required condition in its own index (``search_probes``) and then
drives from a rare one's traces, keeps a medium one's traces as a member set while it
walks the time index, or walks the time index checking a common one per trace. These
tests pin the index each field reads in each case, and that every plan finds the same
traces; ``benchmarks/filters.py`` times them at 100k and 1M traces.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import localscorers
from localscorers import _context
from localscorers.filters import parse
from localscorers.models import Span
from localscorers.store import Database, compile_order_by, deferred_indexes, search_sql, span_terms

TIME_SCAN = "ix_traces_experiment_time (experiment_id=?)"
FROM_CANDIDATES = "SEARCH traces USING INDEX sqlite_autoindex_traces_1 (trace_id=?)"
TERMS = "SEARCH span_terms USING PRIMARY KEY (key=? AND value=?)"
SPANS_OF_TRACE = "sqlite_autoindex_spans_1 (trace_id=?)"
NAMES = "SEARCH trace_names USING PRIMARY KEY"  # store.deferred_indexes
DURATIONS = "SEARCH trace_durations USING PRIMARY KEY"
TRACES = 12


def _spans(i: int) -> list[Span]:
    spans = [
        Span(span_id="r", name="agent", span_type="CHAIN", start_time_ns=1),
        Span(span_id="l", parent_id="r", name="llm", span_type="LLM", start_time_ns=2,
             attributes={"model": "rare" if i == 0 else "common", "n": 5, "ok": True,
                         "long": "x" * 300}),
    ]  # fmt: skip
    if i == 0:
        spans.append(Span(span_id="e", name="tool", status="ERROR", start_time_ns=3))
    return spans


@pytest.fixture(scope="module")
def plans_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("field-plans") / "plans.db"
    localscorers.set_tracking_uri(path)
    for i in range(TRACES):
        trace_id = localscorers.log_trace(
            inputs=i,
            outputs=i,
            name="rare" if i == 0 else "common",
            status="ERROR" if i == 0 else "OK",
            request_time=1_000_000 + i,
            execution_duration_ms=10 + i,
            spans=_spans(i),
            tags={"env": "rare" if i == 0 else "common"},
            client_request_id=f"req-{i}",
        )
        localscorers.log_feedback(trace_id=trace_id, name="score", value=i / TRACES)
        localscorers.log_feedback(
            trace_id=trace_id, name="quality", value="rare" if i == 0 else "common"
        )
    database = Database(path)
    try:  # what a search does once 1,000 traces wait: fill the deferred indexes
        deferred_indexes.catch_up(database, text=True, after=0)
    finally:
        database.close()
    yield path
    _context.reset()


def _plan(conn: sa.Connection, filter_string: str) -> str:
    query = search_sql.search_query(
        conn,
        experiment_ids=["0"],
        expr=parse(filter_string),
        order=compile_order_by(None),
        limit=100,
    )
    compiled = query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
    rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}").all()
    return "\n".join(str(row[-1]) for row in rows)


# (filter, what the plan must read, what it must not): 1 trace is rare, 11 common.
PLANS: list[tuple[str, list[str], list[str]]] = [
    # trace fields
    ("trace.name = 'rare'", [f"{NAMES} (name=? AND experiment_id=?)"], []),
    ("trace.name = 'none'", [f"{NAMES} (name=? AND experiment_id=?)"], []),
    ("trace.name = 'common'", [TIME_SCAN], [NAMES]),
    ("trace.name LIKE 'ra%'", [f"{NAMES} (name>? AND name<?)"], []),
    ("trace.name LIKE '%ra'", [TIME_SCAN], [NAMES]),
    ("trace.status = 'ERROR'", ["ix_traces_status (experiment_id=? AND status=?)"], []),
    ("trace.status != 'OK'", ["ix_traces_status (experiment_id=? AND status=?)"], []),
    ("trace.status = 'IN_PROGRESS'", ["ix_traces_status (experiment_id=? AND status=?)"], []),
    ("trace.status = 'OK'", [TIME_SCAN], ["ix_traces_status"]),
    ("trace.timestamp_ms < 5", ["(experiment_id=? AND request_time_ms<?)"], []),
    ("trace.end_time_ms < 5", ["(experiment_id=? AND request_time_ms<?)"], []),
    # durations, names and text: store.deferred_indexes (filled after commit)
    ("trace.execution_time_ms > 100", [f"{DURATIONS} (experiment_id=? AND duration>?)"], []),
    ("trace.execution_time_ms > 10", [TIME_SCAN], ["trace_durations"]),
    ("trace.execution_time_ms != 100", [TIME_SCAN], ["trace_durations"]),
    ("trace.client_request_id = 'req-3'", ["ix_traces_client_request_id"], []),
    # tags and metadata: a rare value's traces come from the index alone (covering)
    ("tags.env = 'rare'", ["COVERING INDEX ix_trace_tags_key_value (key=? AND value=?)"], []),
    ("tags.env IN ('rare', 'none')", ["ix_trace_tags_key_value (key=? AND value=?)"], []),
    ("tags.nokey IS NOT NULL", ["ix_trace_tags_key_value (key=?)"], []),
    ("tags.env LIKE 'ra%'", ["ix_trace_tags_key_value (key=? AND value>? AND value<?)"], []),
    ("tags.env = 'common'", [TIME_SCAN, "trace_tags"], ["ix_trace_tags_key_value"]),
    # spans
    ("span.name = 'tool'", ["COVERING INDEX ix_spans_name (name=?)", FROM_CANDIDATES], []),
    ("span.type = 'LLM'", [TIME_SCAN, SPANS_OF_TRACE], ["ix_spans_type"]),
    ("span.name LIKE 'to%'", ["ix_spans_name (name>? AND name<?)", FROM_CANDIDATES], []),
    ("span.attributes.model LIKE 'ra%'", [TIME_SCAN, SPANS_OF_TRACE], ["span_terms"]),
    ("span.status = 'ERROR'", [TERMS, "ix_traces_status", FROM_CANDIDATES], [SPANS_OF_TRACE]),
    ("span.status = 'OK'", [TIME_SCAN, SPANS_OF_TRACE], ["span_terms"]),
    # one span comparison's span_terms rows are exactly its traces: not checked again
    ("span.attributes.model = 'rare'", [TERMS, FROM_CANDIDATES], [SPANS_OF_TRACE]),
    ("span.attributes.model = 'common'", [TIME_SCAN, SPANS_OF_TRACE], ["span_terms"]),
    ("span.attributes.model = 'y' AND span.name = 'llm'", [TERMS], []),
    # a long value or an object's text is not in span_terms: checked per trace
    (f"span.attributes.long = '{'x' * 300}'", [TIME_SCAN, SPANS_OF_TRACE], ["span_terms"]),
    ("span.attributes.model = '{}'", [TIME_SCAN], ["span_terms"]),
    ("span.content LIKE '%rare%'", ["SCAN text_index VIRTUAL TABLE", FROM_CANDIDATES], []),
    ("span.content LIKE '%common%'", [TIME_SCAN, SPANS_OF_TRACE], ["text_index"]),
    ("span.content LIKE '%ra%'", [TIME_SCAN, SPANS_OF_TRACE], ["text_index"]),  # no trigram
    # feedback: strings under value_num IS NULL, numbers by range
    ("feedback.quality = 'rare'", ["(name=? AND kind=? AND value_num=? AND value_str=?"], []),
    (
        "feedback.score > 0.95",
        ["ix_assessment_values (name=? AND kind=? AND value_num>?)"],
        [],
    ),
    ("feedback.score >= 0", [TIME_SCAN, "ix_assessments_trace"], ["name_value"]),
    ("feedback.quality IS NULL", [TIME_SCAN], ["name_value"]),
]


@pytest.mark.parametrize(("filter_string", "used", "unused"), PLANS, ids=[p[0] for p in PLANS])
def test_each_field_reads_its_index(
    plans_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    filter_string: str,
    used: list[str],
    unused: list[str],
) -> None:
    monkeypatch.setattr(search_sql, "_FEW", 2)
    monkeypatch.setattr(search_sql, "_MANY", 2)
    database = Database(plans_path)
    try:
        with database.read() as conn:
            plan = _plan(conn, filter_string)
    finally:
        database.close()
    for needed in used:
        assert needed in plan, plan
    for avoided in unused:
        assert avoided not in plan, plan


def test_a_medium_value_is_a_member_set_of_the_time_walk(
    plans_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 11 common traces: above _FEW, at most _MANY. The walk stays on the time index
    # (+trace_id) and looks each trace up in the set read from the tag index; the tag
    # is not checked again per trace (the set is exactly its matches).
    monkeypatch.setattr(search_sql, "_FEW", 2)
    monkeypatch.setattr(search_sql, "_MANY", 50)
    database = Database(plans_path)
    try:
        with database.read() as conn:
            plan = _plan(conn, "tags.env = 'common'")
    finally:
        database.close()
    assert TIME_SCAN in plan, plan
    assert "LIST SUBQUERY" in plan, plan
    assert "COVERING INDEX ix_trace_tags_key_value (key=? AND value=?)" in plan, plan
    assert "CORRELATED" not in plan, plan
    assert FROM_CANDIDATES not in plan, plan


EXPECTED = [
    ("trace.name = 'rare'", 1),
    ("trace.status = 'ERROR'", 1),
    ("trace.status != 'OK'", 1),
    ("trace.status = 'OK'", TRACES - 1),
    ("trace.end_time_ms < 1000020", 5),  # 1_000_010 + 2i
    ("tags.env IN ('rare', 'none')", 1),
    ("tags.env = 'common'", TRACES - 1),
    ("tags.env LIKE 'ra%'", 1),
    ("tags.env LIKE 'Ra%'", 0),  # LIKE is case-sensitive, as in MLflow
    ("trace.name LIKE 'ra%'", 1),
    ("span.name LIKE 'to%'", 1),
    ("span.name LIKE 'ag%'", TRACES),
    ("span.attributes.model LIKE 'ra%'", 1),
    ("span.status = 'ERROR'", 1),
    ("span.status = 'error'", 1),
    ("span.attributes.model = 'rare'", 1),
    ("span.attributes.n = '5'", TRACES),
    ("span.attributes.ok = '1'", TRACES),
    (f"span.attributes.long = '{'x' * 300}'", TRACES),
    ("span.attributes.model = 'rare' AND span.name = 'agent'", 0),
    ("span.attributes.model = 'rare' AND span.name = 'llm'", 1),
    ("feedback.quality = 'rare'", 1),
    ("feedback.score > 0.9", 1),
    ("feedback.score < 0.5", 6),
    ("feedback.score = '0.0'", 1),
]


@pytest.mark.parametrize(("few", "many"), [(0, 0), (2, 2), (0, 50), (50, 50)])
def test_every_plan_finds_the_same_traces(
    plans_path: Path, monkeypatch: pytest.MonkeyPatch, few: int, many: int
) -> None:
    monkeypatch.setattr(search_sql, "_FEW", few)
    monkeypatch.setattr(search_sql, "_MANY", many)
    localscorers.set_tracking_uri(plans_path)
    for filter_string, count in EXPECTED:
        found = localscorers.search_traces(filter_string=filter_string)
        assert len(found) == count, filter_string


def test_a_root_kept_in_its_trace_row_is_found_by_its_status(tmp_path: Path) -> None:
    # log_trace's synthesized root span is no spans row: span_terms never sees it, and
    # span.status reads it from the trace's status (ix_traces_status).
    localscorers.set_tracking_uri(tmp_path / "roots.db")
    failed = localscorers.log_trace(inputs=1, outputs=None, status="ERROR")
    localscorers.log_trace(inputs=2, outputs=2)
    found = localscorers.search_traces(filter_string="span.status = 'ERROR'")
    assert [t.info.trace_id for t in found] == [failed]


def test_the_migration_indexes_the_spans_already_stored(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    localscorers.set_tracking_uri(path)
    rare = localscorers.log_trace(inputs=1, outputs=1, spans=_spans(0))
    localscorers.log_trace(inputs=2, outputs=2, spans=_spans(1))
    _context.reset()
    # As a database from before m0011: no span_terms, one version earlier.
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER span_terms_insert")
        conn.execute("DROP TRIGGER span_terms_update")
        conn.execute("DROP TRIGGER span_terms_delete")
        conn.execute("DROP TRIGGER span_terms_merge")
        conn.execute("DROP TABLE span_terms")
        conn.execute("DROP TABLE span_terms_new")
        conn.execute("PRAGMA user_version = 10")  # m0011 and later run again
    localscorers.set_tracking_uri(path)
    found = localscorers.search_traces(filter_string="span.attributes.model = 'rare'")
    assert [t.info.trace_id for t in found] == [rare]
    with sqlite3.connect(path) as conn:
        terms = conn.execute("SELECT key, value FROM span_terms WHERE trace_id = ?", (rare,))
        assert set(terms) == {("s", "OK"), ("s", "ERROR"), ("a.model", "rare"),
                              ("a.n", "5"), ("a.ok", "1")}  # fmt: skip
    assert localscorers.search_traces(filter_string="feedback.x = 1") == []


def test_span_terms_follow_a_span_that_changes_or_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No code updates or deletes one span today; if any does, searches stay exact.
    monkeypatch.setattr(search_sql, "_FEW", 1000)  # always drive from span_terms
    path = tmp_path / "changes.db"
    localscorers.set_tracking_uri(path)
    first = localscorers.log_trace(inputs=1, outputs=1, spans=_spans(0))
    second = localscorers.log_trace(inputs=2, outputs=2, spans=_spans(0))

    def found(filter_string: str) -> set[str]:
        return {t.info.trace_id for t in localscorers.search_traces(filter_string=filter_string)}

    assert found("span.attributes.model = 'rare'") == {first, second}
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE spans SET attributes = json_set(attributes, '$.model', 'new') "
            "WHERE trace_id = ? AND span_id = 'l'",
            (first,),
        )
        conn.execute("DELETE FROM spans WHERE trace_id = ? AND span_id = 'e'", (second,))
    assert found("span.attributes.model = 'rare'") == {second}
    assert found("span.attributes.model = 'new'") == {first}
    assert found("span.status = 'ERROR'") == {first}
    assert found("span.status = 'OK'") == {first, second}


def test_the_buffer_moves_into_span_terms_in_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A commit appends its spans' terms to span_terms_new; every MERGE_EVERY rows move
    # into span_terms at once. Searches read both, so a trace is found either side.
    monkeypatch.setattr(search_sql, "_FEW", 1000)  # always drive from span_terms
    path = tmp_path / "buffer.db"
    localscorers.set_tracking_uri(path)
    localscorers.log_trace(inputs=0, outputs=0)
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER span_terms_merge")
        conn.execute(span_terms.merge_trigger(10))
    ids = [localscorers.log_trace(inputs=i, outputs=i, spans=_spans(i)) for i in range(7)]
    with sqlite3.connect(path) as conn:
        buffered = conn.execute("SELECT count(*) FROM span_terms_new").fetchone()[0]
        merged = conn.execute("SELECT count(DISTINCT trace_id) FROM span_terms").fetchone()[0]
    assert 0 < buffered < 10
    assert merged >= 5
    found = localscorers.search_traces(filter_string="span.attributes.model = 'common'")
    assert {t.info.trace_id for t in found} == set(ids[1:])
    errors = localscorers.search_traces(filter_string="span.status = 'ERROR'")
    assert [t.info.trace_id for t in errors] == [ids[0]]
