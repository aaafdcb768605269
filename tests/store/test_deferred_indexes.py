"""Searches from the indexes filled after commit (``store.deferred_indexes``, issue 16).

The trigram index of trace text (``span.content`` / ``trace.text``) and the duration
index only narrow a search: these tests check that a search finds exactly the traces a
full read finds, whether the traces are indexed, newer than the index, gained spans
after it, or took the rowid of a deleted trace; that a rare value's plan starts from
the index; and that a search still answers when the indexes cannot be written.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import localscorers
from localscorers import _context
from localscorers.filters import Comparison, parse
from localscorers.models import Span
from localscorers.store import Database, compile_order_by, deferred_indexes, search_sql

FROM_INDEX = "SCAN text_index VIRTUAL TABLE INDEX"
FROM_CANDIDATES = "SEARCH traces USING INDEX sqlite_autoindex_traces_1 (trace_id=?)"
TIME_SCAN = "ix_traces_experiment_time (experiment_id=?)"


@pytest.fixture
def catch_up_always(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every content search indexes what is new first (the default waits for 1,000)."""
    monkeypatch.setattr(deferred_indexes, "CATCH_UP_AFTER", 0)


@pytest.fixture
def small_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Search bounds as at 100k traces, scaled down: 1 match drives, 29 are too many to."""
    monkeypatch.setattr(search_sql, "_FEW", 2)
    monkeypatch.setattr(search_sql, "_MANY", 2)


@pytest.fixture
def catch_up_never(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deferred_indexes, "CATCH_UP_AFTER", 10**9)


def _found(filter_string: str) -> set[str]:
    return {t.info.trace_id for t in localscorers.search_traces(filter_string=filter_string)}


def _log(text: str, *, span_text: str = "", name: str = "step", spans: bool = True) -> str:
    if not spans:  # the root is kept in the trace row: no spans row
        return localscorers.log_trace(inputs={"in": text}, outputs=span_text, name=name)
    rows = [
        Span(span_id="r", name="root", start_time_ns=1, inputs={"in": text}),
        Span(span_id="c", parent_id="r", name=name, start_time_ns=2,
             attributes={"note": span_text}),
    ]  # fmt: skip
    return localscorers.log_trace(inputs={"in": text}, outputs="done", spans=rows)


def _state(path: Path) -> tuple[int, int]:
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT trace_upto, span_upto FROM deferred_index_state").fetchone()
    return int(row[0]), int(row[1])


def test_indexed_and_new_traces_are_both_found(tracking: Path, catch_up_always: None) -> None:
    old = _log("the parcel shipped today")
    _log("nothing to see")
    assert _found("span.content LIKE '%shipped%'") == {old}
    assert _state(tracking)[0] == 2  # the search indexed both traces
    new = _log("shipped again", name="courier")
    rowless = _log("shipped, no spans row", spans=False)
    deferred_indexes.CATCH_UP_AFTER = 10**9  # the new traces stay unindexed
    assert _found("span.content LIKE '%shipped%'") == {old, new, rowless}
    assert _found("trace.text ILIKE '%SHIPPED%'") == {old, new, rowless}
    assert _found("span.content LIKE '%cour_er%'") == {new}
    assert _found("span.content LIKE '%zebra%'") == set()
    assert _state(tracking)[0] == 2


def test_a_name_search_leaves_the_text_to_content_searches(
    tracking: Path, catch_up_always: None
) -> None:
    named = localscorers.log_trace(inputs=1, outputs=1, name="agent")
    assert _found("trace.name = 'agent'") == {named}
    with sqlite3.connect(tracking) as conn:  # names and durations, not text (25 us a trace)
        row = conn.execute("SELECT value_upto, trace_upto FROM deferred_index_state").fetchone()
    assert row == (1, 0)


def test_the_default_waits_for_many_new_traces(tracking: Path) -> None:
    _log("a little text")
    assert _found("span.content LIKE '%little%'")
    assert _state(tracking) == (0, 0)  # one trace: read directly, nothing indexed


def test_a_case_sensitive_like_gets_no_case_folded_matches(
    tracking: Path, catch_up_always: None
) -> None:
    # The index folds case (more candidates); the filter itself decides.
    lower = _log("order shipped")
    upper = _log("ORDER SHIPPED")
    assert _found("span.content LIKE '%shipped%'") == {lower}
    assert _found("span.content LIKE '%SHIPPED%'") == {upper}
    assert _found("span.content ILIKE '%Shipped%'") == {lower, upper}


def test_a_deleted_newest_trace_does_not_hide_the_next(
    tracking: Path, catch_up_always: None
) -> None:
    kept = _log("first zebra")
    gone = _log("second zebra")
    assert _found("span.content LIKE '%zebra%'") == {kept, gone}
    with sqlite3.connect(tracking) as conn:  # a retention script, say
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("DELETE FROM traces WHERE trace_id = ?", (gone,))
    assert _state(tracking)[0] == 1  # the freed rowid is below the index no more
    deferred_indexes.CATCH_UP_AFTER = 10**9
    reused = _log("third zebra")
    assert _found("span.content LIKE '%zebra%'") == {kept, reused}


def test_a_rare_substring_starts_from_the_index(tracking: Path, small_bounds: None) -> None:
    for i in range(30):
        _log("common words here" if i else "one rare zebra")
    rare, common = _plans(tracking, "span.content LIKE '%zebra%'", "span.content LIKE '%words%'")
    assert FROM_INDEX in rare, rare
    assert FROM_CANDIDATES in rare, rare
    assert FROM_INDEX not in common, common  # counted, then the time walk checks it
    assert TIME_SCAN in common, common


def _catch_up(path: Path) -> None:
    """Index every trace logged so far (a search would wait for 1,000)."""
    database = Database(path)
    try:
        deferred_indexes.catch_up(database, text=True, after=0)
    finally:
        database.close()


def _plans(path: Path, *filter_strings: str) -> list[str]:
    """Index the 30 traces logged, then return each filter's search plan."""
    database = Database(path)
    try:
        assert deferred_indexes.catch_up(database, text=True, after=0) == 30
        with database.read() as conn:
            return [_plan(conn, filter_string) for filter_string in filter_strings]
    finally:
        database.close()


def _plan(conn: sa.Connection, filter_string: str) -> str:
    query = search_sql.search_query(
        conn, experiment_ids=["0"], expr=parse(filter_string), order=compile_order_by(None)
    )
    compiled = query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
    rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}").all()
    return "\n".join(str(row[-1]) for row in rows)


def test_a_search_answers_while_another_process_holds_the_write_lock(
    tracking: Path, catch_up_always: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    wanted = _log("a parcel for the zebra")
    _context.reset()
    monkeypatch.setenv("LOCALSCORERS_BUSY_TIMEOUT", "0.2")
    localscorers.set_tracking_uri(tracking)
    holder = sqlite3.connect(tracking, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # the catch-up cannot write: the search reads
        assert _found("span.content LIKE '%zebra%'") == {wanted}
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert _state(tracking) == (0, 0)


def test_a_database_from_before_the_index_gets_it_at_open(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    localscorers.set_tracking_uri(path)
    wanted = _log("an old zebra")
    timed = localscorers.log_trace(inputs=1, outputs=1, execution_duration_ms=5)
    _context.reset()
    with sqlite3.connect(path) as conn:  # as m0011 left it
        for trigger in ("deferred_index_traces_deleted", "deferred_index_spans_deleted"):
            conn.execute(f"DROP TRIGGER {trigger}")
        for table in ("text_index", "text_index_docs", "trace_durations", "deferred_index_state"):
            conn.execute(f"DROP TABLE {table}")
        conn.execute("PRAGMA user_version = 11")
    localscorers.set_tracking_uri(path)
    deferred_indexes.CATCH_UP_AFTER = 0
    assert _found("span.content LIKE '%old zebra%'") == {wanted}
    assert _state(path) == (2, 3)  # indexed by that search (the unnamed root is a span row)
    assert _found("trace.execution_time_ms >= 0") == {timed}


def test_the_migration_run_again_starts_the_indexes_afresh(
    tracking: Path, catch_up_always: None
) -> None:
    named = localscorers.log_trace(inputs=1, outputs=1, name="agent zebra")
    assert _found("span.content LIKE '%zebra%'") == {named}  # indexed
    _context.reset()
    with sqlite3.connect(tracking) as conn:  # a build of m0012 without trace_names
        conn.execute("DELETE FROM trace_names")
        conn.execute("PRAGMA user_version = 11")
    localscorers.set_tracking_uri(tracking)
    assert _found("trace.name = 'agent zebra'") == {named}
    assert _found("span.content LIKE '%zebra%'") == {named}
    with sqlite3.connect(tracking) as conn:
        assert conn.execute("SELECT count(*) FROM text_index_docs").fetchone() == (1,)


def test_a_rare_duration_starts_from_the_index(tracking: Path, small_bounds: None) -> None:
    for i in range(30):
        localscorers.log_trace(inputs=i, outputs=i, execution_duration_ms=5000 if i == 7 else i)
    rare, absent, common = _plans(
        tracking,
        "trace.execution_time_ms > 1000",
        "trace.execution_time_ms > 9000",
        "trace.execution_time_ms < 1000",
    )
    durations = "trace_durations USING PRIMARY KEY (experiment_id=? AND duration>?)"
    assert durations in rare, rare
    assert FROM_CANDIDATES in rare, rare
    assert durations in absent, absent
    assert "trace_durations" not in common, common
    assert TIME_SCAN in common, common


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    durations=st.lists(st.integers(min_value=0, max_value=50) | st.none(), min_size=1,
                       max_size=10),
    op=st.sampled_from(["=", "<", "<=", ">", ">=", "!="]),
    value=st.integers(min_value=-1, max_value=51),
    indexed=st.integers(min_value=0, max_value=10),
)  # fmt: skip
def test_duration_search_finds_what_a_full_read_finds(
    durations: list[int | None], op: str, value: int, indexed: int
) -> None:
    compare = {
        "=": int.__eq__, "<": int.__lt__, "<=": int.__le__,
        ">": int.__gt__, ">=": int.__ge__, "!=": int.__ne__,
    }[op]  # fmt: skip
    with _database() as path:
        expected = set()
        for position, duration in enumerate(durations):
            status = "IN_PROGRESS" if duration is None else "OK"
            trace_id = localscorers.log_trace(
                inputs=position, outputs=position, execution_duration_ms=duration, status=status
            )
            if duration is not None and compare(duration, value):
                expected.add(trace_id)
            if position + 1 == indexed:
                _catch_up(path)
        assert _found(f"trace.execution_time_ms {op} {value}") == expected


_NAME_FILTERS: dict[str, Callable[[str | None], bool]] = {
    "= 'agent'": lambda name: name == "agent",
    "LIKE 'age%'": lambda name: name is not None and name.startswith("age"),
    "IN ('tool', 'agent')": lambda name: name in ("tool", "agent"),
    "= 'none'": lambda name: False,
}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    traces=st.lists(st.tuples(st.sampled_from(["agent", "agency", "tool", None]), st.booleans()),
                    min_size=1, max_size=8),
    comparison=st.sampled_from(sorted(_NAME_FILTERS)),
    field=st.sampled_from(["trace.name", "span.name"]),
    indexed=st.integers(min_value=0, max_value=8),
)  # fmt: skip
def test_name_search_finds_what_a_full_read_finds(
    traces: list[tuple[str | None, bool]], comparison: str, field: str, indexed: int
) -> None:
    # A trace logged with a name and no spans keeps its root in the trace row (no spans
    # row): span.name finds it through the name index; one given spans has span rows.
    matches = _NAME_FILTERS[comparison]
    with _database() as path:
        expected = set()
        for position, (name, with_spans) in enumerate(traces):
            spans = (
                [Span(span_id="r", name=name or "root", start_time_ns=1)] if with_spans else None
            )
            trace_id = localscorers.log_trace(inputs=1, outputs=1, name=name, spans=spans)
            span_name = name or "root"  # an unnamed trace's root span is named "root"
            if matches(name if field == "trace.name" else span_name):
                expected.add(trace_id)
            if position + 1 == indexed:
                _catch_up(path)
        assert _found(f"{field} {comparison}") == expected


_FEEDBACK_FILTERS: dict[str, Callable[[str, object], bool]] = {
    "feedback.label = 'yes'": lambda name, value: name == "label" and value == "yes",
    "feedback.label IN ('yes', 'no')": lambda name, value: (
        name == "label" and value in ("yes", "no")
    ),
    "feedback.label LIKE 'y%'": lambda name, value: name == "label" and str(value)[:1] == "y",
    "feedback.label IS NOT NULL": lambda name, value: name == "label",
    "feedback.score > 2": lambda name, value: name == "score" and int(str(value)) > 2,
    "feedback.score <= 1": lambda name, value: name == "score" and int(str(value)) <= 1,
    "feedback.score = 3": lambda name, value: name == "score" and value == 3,
}
_FEEDBACK = st.one_of(
    st.tuples(st.just("label"), st.sampled_from(["yes", "no", "maybe"])),
    st.tuples(st.just("score"), st.integers(min_value=0, max_value=5)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    traces=st.lists(st.lists(st.tuples(_FEEDBACK, st.booleans()), max_size=3), min_size=1,
                    max_size=6),
    comparison=st.sampled_from(sorted(_FEEDBACK_FILTERS)),
    indexed=st.integers(min_value=0, max_value=6),
)  # fmt: skip
def test_feedback_search_finds_what_a_full_read_finds(
    traces: list[list[tuple[tuple[str, object], bool]]], comparison: str, indexed: int
) -> None:
    # Each feedback may be overridden later (by a "maybe" / 0): the old one stays in
    # assessment_values but is no longer valid, so the search must not count it.
    matches = _FEEDBACK_FILTERS[comparison]
    with _database() as path:
        expected = set()
        for position, feedback in enumerate(traces):
            trace_id = localscorers.log_trace(inputs=position, outputs=position)
            for (name, first), overridden in feedback:
                logged = localscorers.log_feedback(trace_id=trace_id, name=name, value=first)
                value = ("maybe" if name == "label" else 0) if overridden else first
                if overridden:
                    localscorers.log_feedback(
                        trace_id=trace_id, name=name, value=value, overrides=logged.assessment_id
                    )
                if matches(name, value):
                    expected.add(trace_id)
            if position + 1 == indexed:
                _catch_up(path)
        assert _found(comparison) == expected


def test_patterns_without_three_literal_characters_have_no_trigrams() -> None:
    def grams(op: str, pattern: str) -> list[str] | None:
        comparison = parse(f"span.content {op} '{pattern}'")
        assert isinstance(comparison, Comparison)
        return deferred_indexes.trigrams(comparison)

    assert grams("LIKE", "%ab%") is None
    assert grams("LIKE", "%a_b%c%") is None
    assert grams("RLIKE", "zebra") is None
    assert grams("LIKE", "%zebra%") == ["zeb", "ebr", "bra"]
    assert grams("ILIKE", "ab_cde") == ["cde"]
    assert len(grams("LIKE", "x" * 10 + "".join(chr(97 + i) for i in range(26))) or []) == 24


# A search over random texts finds what a full read finds: the same pattern as an
# anchored RLIKE, which no index serves (LIKE is case-sensitive, ILIKE not), with the
# index caught up, left behind, or half and half.
_WORDS = st.text(alphabet="xyzXY ", min_size=0, max_size=12)
_PATTERNS = st.text(alphabet="xyzXY %_", min_size=1, max_size=6)


def _regex(pattern: str, *, fold: bool) -> str:
    body = "".join(".*" if ch == "%" else "." if ch == "_" else ch for ch in pattern)
    return ("(?is)" if fold else "(?s)") + "^" + body + "$"


@st.composite
def _cases(draw: st.DrawFn) -> tuple[list[tuple[str, str, bool]], str]:
    """Traces (root text, span text, with spans rows) and a pattern, often one they hold."""
    texts = draw(st.lists(st.tuples(_WORDS, _WORDS, st.booleans()), min_size=1, max_size=8))
    if draw(st.booleans()):
        return texts, draw(_PATTERNS)
    source = draw(st.sampled_from([text for trace in texts for text in trace[:2]]))
    start = draw(st.integers(min_value=0, max_value=len(source)))
    piece = source[start : start + draw(st.integers(min_value=0, max_value=6))]
    return texts, draw(st.sampled_from(["%{}%", "{}%", "%{}", "%{}_%"])).format(piece)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_cases(), fold=st.booleans(), indexed=st.integers(min_value=0, max_value=8))
def test_search_finds_what_a_full_read_finds(
    case: tuple[list[tuple[str, str, bool]], str], fold: bool, indexed: int
) -> None:
    texts, pattern = case
    with _database() as path:
        for position, (root_text, span_text, spans) in enumerate(texts):
            _log(root_text, span_text=span_text, spans=spans)
            if position + 1 == indexed:
                _catch_up(path)
        op = "ILIKE" if fold else "LIKE"
        got = _found(f"span.content {op} '{pattern}'")
        expected = _found(f"span.content RLIKE '{_regex(pattern, fold=fold)}'")
    assert got == expected


@pytest.fixture(autouse=True)
def _fresh_context() -> Iterator[None]:
    yield
    _context.reset()


class _database:
    """A fresh database file as the tracking URI, for one hypothesis example."""

    def __enter__(self) -> Path:
        self._dir = tempfile.TemporaryDirectory(prefix="text-index-")
        path = Path(self._dir.name) / "t.db"
        _context.reset()
        localscorers.set_tracking_uri(path)
        return path

    def __exit__(self, *exc: object) -> None:
        _context.reset()
        self._dir.cleanup()
