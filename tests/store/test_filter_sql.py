"""Filter strings against real SQLite files: a hand-made corpus, injection, and properties.

Everything goes through the public API (``log_trace``, ``log_feedback``,
``search_traces``) except ``matches_for_trace``, the store's commit-time hook, which
is called directly on a second ``Database`` opened on the same file.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite

import localscorers
from localscorers import _context
from localscorers.exceptions import ConfigurationError, FilterSyntaxError, TraceNotFoundError
from localscorers.filters import (
    And,
    Comparison,
    Entity,
    Expr,
    Field,
    Not,
    Op,
    Or,
    parse,
    render,
)
from localscorers.store import (
    Database,
    compile_filter,
    compile_order_by,
    deferred_indexes,
    matches_for_trace,
    schema,
    search_sql,
)
from tests.conftest import BACKENDS, fresh_postgres_schema, postgres_base_uri

T0 = 1_700_000_000_000
GPT = {"model": "gpt-4o"}


def span(span_id: str, name: str, span_type: str | None = "CHAIN", **extra: Any) -> dict[str, Any]:
    return {"span_id": span_id, "name": name, "span_type": span_type, "start_time_ns": 1, **extra}


# Twelve hand-made traces. The comments are what the table below relies on.
CORPUS: list[dict[str, Any]] = [
    {
        "trace_id": "t01", "name": "chat", "status": "OK", "at": 1000, "ms": 120,
        "tags": {"env": "prod", "team": "search"},
        "metadata": {"mlflow.trace.session": "s1", "user": "alice"},
        "spans": [
            span("r", "chat", inputs={"q": "hello world"}, outputs="hi there"),
            span("l", "llm", "LLM", parent_id="r", attributes={"model": "gpt-4o", "temp": 0.7}),
        ],
        "feedback": {"quality": "good", "score": 0.9},
    },
    {
        "trace_id": "t02", "name": "chat", "status": "ERROR", "at": 2000, "ms": 3000,
        "tags": {"env": "dev"}, "metadata": {"mlflow.trace.session": "s1"},
        "spans": [
            span("r", "chat", status="ERROR", inputs={"q": "broken"}),
            span("k", "retriever", "RETRIEVER", attributes={"k": 5}),
        ],
        "feedback": {"quality": "bad", "score": 0.2},
    },
    {
        "trace_id": "t03", "name": "Chat", "status": "OK", "at": 3000, "ms": 50,
        "tags": {"env": "prod"}, "spans": [span("r", "Chat", inputs={"q": "Hello"})],
        "expectations": {"answer": "42"},
    },
    {
        "trace_id": "t04", "name": "summarize", "status": "OK", "at": 4000, "ms": None,
        "tags": {"env": "staging"}, "metadata": {"user": "bob"},
        "spans": [span("r", "summarize"), span("l", "llm", "LLM", attributes={"model": "claude"})],
        "feedback": {"score": 1, "quality": "good"},
    },
    # No name, still running, no spans given: log_trace adds a root span named "root".
    {"trace_id": "t05", "name": None, "status": "IN_PROGRESS", "at": 5000, "ms": None},
    {
        "trace_id": "t06", "name": "chat", "status": "OK", "at": 6000, "ms": 800,
        "tags": {"env": "prod", "weird key.with dots": "v"},
        "metadata": {"mlflow.sourceRun": "run-1"},
        "spans": [span("r", "chat"), span("t", "search", "TOOL", inputs={"q": "it's 100% done"})],
        "feedback": {"correct": True},
    },
    {
        "trace_id": "t07", "name": "rag", "status": "OK", "at": 7000, "ms": 999,
        "tags": {"env": "prod", "quote'key": "x", "tick`key": "y"},
        "spans": [span("r", "rag"), span("l", "llm", "LLM", attributes={"model": "gpt-4o-mini"})],
        "feedback": {"correct": False},
    },
    {
        "trace_id": "t08", "name": "chat%", "status": "OK", "at": 8000, "ms": 10,
        "tags": {"env": "PROD"}, "spans": [span("r", "chat%")],
    },
    {
        "trace_id": "t09", "name": "it's", "status": "ERROR", "at": 9000, "ms": 5000,
        "tags": {"env": "dev", "note": "DROP TABLE traces; --"},
        "spans": [span("r", "it's", None, status="ERROR")],
    },
    {
        "trace_id": "t10", "name": "chat", "status": "OK", "at": 10000, "ms": 0,
        "metadata": {"user": "carol"},
        "spans": [span("r", "chat"), span("l", "llm", "LLM", attributes={**GPT, "a.b": "x"})],
    },
    {
        "trace_id": "t11", "name": "agent", "status": "OK", "at": 11000, "ms": 250,
        "spans": [
            span("r", "agent", "AGENT"),
            span("l", "llm", "LLM", status="ERROR", attributes=GPT),
        ],
        "feedback": {"quality": "good /* c */"},
    },
    {
        "trace_id": "t12", "name": "batch", "status": "OK", "at": 12000, "ms": 60000,
        "tags": {"env": "prod", "team": "ml"},
        "spans": [span("r", "batch", outputs={"summary": "Done"})],
        "feedback": {"score": 0.5}, "expectations": {"answer": "41"},
    },
]  # fmt: skip
ALL = {t["trace_id"] for t in CORPUS}


def log_corpus_trace(trace: dict[str, Any], *, experiment_id: str | None = None) -> str:
    trace_id = localscorers.log_trace(
        inputs={"q": "pending"} if trace.get("spans") is None else None,
        outputs=None,
        name=trace["name"],
        status=trace["status"],
        request_time=T0 + trace["at"],
        execution_duration_ms=trace["ms"],
        tags=trace.get("tags"),
        metadata=trace.get("metadata"),
        spans=trace.get("spans"),
        trace_id=trace["trace_id"],
        experiment_id=experiment_id,
    )
    for name, value in trace.get("feedback", {}).items():
        localscorers.log_feedback(trace_id=trace_id, name=name, value=value)
    for name, value in trace.get("expectations", {}).items():
        localscorers.log_expectation(trace_id=trace_id, name=name, value=value)
    return trace_id


@pytest.fixture(scope="module", params=BACKENDS)
def corpus_path(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The corpus, once per backend: a SQLite file, then a PostgreSQL schema."""
    if request.param == "sqlite":
        uri = f"sqlite:///{tmp_path_factory.mktemp('corpus') / 'corpus.db'}"
    else:
        uri = fresh_postgres_schema(postgres_base_uri())
    localscorers.set_tracking_uri(uri)
    for trace in CORPUS:
        log_corpus_trace(trace)
    return uri


@pytest.fixture
def corpus(corpus_path: str) -> str:
    localscorers.set_tracking_uri(corpus_path)
    return corpus_path


@pytest.fixture
def reader(corpus: Path) -> Iterator[Database]:
    database = Database(corpus)
    yield database
    database.close()


def ids(**kwargs: Any) -> list[str]:
    return [t.info.trace_id for t in localscorers.search_traces(**kwargs)]


def only(*names: str) -> set[str]:
    return {f"t{n}" for n in names}


CASES: list[tuple[str, set[str]]] = [
    # trace status (compared upper-case, as stored)
    ("trace.status = 'OK'", only("01", "03", "04", "06", "07", "08", "10", "11", "12")),
    ("status = 'error'", only("02", "09")),
    ("attributes.status != 'OK'", only("02", "05", "09")),
    ("trace.status IN ('ERROR', 'in_progress')", only("02", "05", "09")),
    ("trace.status NOT IN ('OK')", only("02", "05", "09")),
    # trace name: LIKE is case-sensitive, ILIKE is not, a missing name matches nothing
    ("trace.name = 'chat'", only("01", "02", "06", "10")),
    ("name LIKE 'chat%'", only("01", "02", "06", "08", "10")),
    ("name ILIKE 'CHAT'", only("01", "02", "03", "06", "10")),
    ("name RLIKE '^(chat|rag)$'", only("01", "02", "06", "07", "10")),
    ("name != 'chat'", only("03", "04", "07", "08", "09", "11", "12")),
    ("NOT name = 'chat'", only("03", "04", "05", "07", "08", "09", "11", "12")),
    ("name IS NULL", only("05")),
    ("name IS NOT NULL AND status = 'IN_PROGRESS'", set()),
    ("name = 'it''s'", only("09")),
    ('name = "it\'s"', only("09")),
    ("trace.request_id = 't03'", only("03")),
    # times
    (f"trace.timestamp_ms > {T0 + 6000}", only("07", "08", "09", "10", "11", "12")),
    (f"timestamp >= {T0 + 6000} AND timestamp_ms < {T0 + 8000}", only("06", "07")),
    ("trace.execution_time_ms > 900", only("02", "07", "09", "12")),
    ("execution_time_ms <= 50", only("03", "08", "10")),
    ("trace.execution_time_ms IS NULL", only("04", "05")),
    ("NOT trace.execution_time_ms > 100", only("03", "04", "05", "08", "10")),
    (f"trace.end_time_ms >= {T0 + 8010}", only("08", "09", "10", "11", "12")),
    (f"trace.end_time_ms = '{T0 + 1120}'", only("01")),
    ("execution_time_ms IN (0, 10.0, 7)", only("08", "10")),
    # tags: everything but IS NULL needs the tag to exist
    ("tags.env = 'prod'", only("01", "03", "06", "07", "12")),
    ("tag.env != 'prod'", only("02", "04", "08", "09")),
    ("tags.env IS NULL", only("05", "10", "11")),
    ("tags.team IS NOT NULL", only("01", "12")),
    ("tags.env ILIKE 'prod'", only("01", "03", "06", "07", "08", "12")),
    ("tags.env NOT IN ('prod', 'dev')", only("04", "08")),
    ("tags.`weird key.with dots` = 'v'", only("06")),
    ("tags.`quote'key` = 'x'", only("07")),
    ("tags.`tick``key` = 'y'", only("07")),
    ("tags.note = 'DROP TABLE traces; --'", only("09")),
    # metadata
    ("metadata.`mlflow.trace.session` = 's1'", only("01", "02")),
    ("request_metadata.user LIKE '%o%'", only("04", "10")),
    ("trace.run_id = 'run-1'", only("06")),
    ("metadata.user IS NULL", only("02", "03", "05", "06", "07", "08", "09", "11", "12")),
    # spans: true when any span matches
    ("span.name = 'llm'", only("01", "04", "07", "10", "11")),
    ("span.name = 'root'", only("05")),
    ("span.type = 'RETRIEVER'", only("02")),
    ("span.type IS NULL", only("05", "09")),
    ("span.status = 'error'", only("02", "09", "11")),
    ("NOT span.status = 'OK'", only("05", "09")),
    ("span.attributes.model = 'gpt-4o'", only("01", "10", "11")),
    ("span.attributes.model LIKE 'gpt-4o%'", only("01", "07", "10", "11")),
    ("span.attributes.model RLIKE '^cl'", only("04")),
    ("span.attributes.`a.b` = 'x'", only("10")),
    ("span.attributes.k = '5'", only("02")),
    ("span.attributes.temp = '0.7'", only("01")),
    ("span.attributes.model IS NOT NULL", only("01", "04", "07", "10", "11")),
    ("span.content LIKE '%hello%'", only("01")),
    ("span.content ILIKE '%hello%'", only("01", "03")),
    ("trace.text LIKE '%100%'", only("06")),
    # Content is the whole span, as in MLflow: t09's span is named "it's".
    ("span.content LIKE '%it''s%'", only("06", "09")),
    ("trace.text LIKE '%retriever%'", only("02")),
    ("trace.text LIKE '%RETRIEVER%'", only("02")),
    # span clauses joined by AND hold on one span (MLflow); OR / NOT read "any span"
    ("span.name = 'llm' AND span.status = 'ERROR'", only("11")),
    ("span.name = 'chat' AND span.type = 'LLM'", set()),
    ("span.type = 'LLM' AND span.attributes.model = 'gpt-4o'", only("01", "10", "11")),
    ("span.type = 'CHAIN' AND span.attributes.model = 'gpt-4o'", set()),
    ("span.name = 'llm' AND (span.status = 'ERROR')", only("11")),
    ("span.name = 'chat' AND tags.env = 'prod' AND span.status = 'OK'", only("01", "06")),
    ("span.name = 'llm' AND NOT span.status = 'ERROR'", only("01", "04", "07", "10")),
    ("span.name = 'chat' OR span.type = 'RETRIEVER'", only("01", "02", "06", "10")),
    ("(span.name = 'llm' OR span.name = 'chat') AND span.status = 'ERROR'", only("02", "11")),
    ("span.content RLIKE 'Do[n]e'", only("12")),
    # feedback and expectations: strings compare value_str, numbers value_num
    ("feedback.quality = 'good'", only("01", "04")),
    ("feedback.quality != 'good'", only("02", "11")),
    ("feedback.score > 0.5", only("01", "04")),
    ("feedback.score >= 0.5", only("01", "04", "12")),
    ("feedback.score = 1", only("04")),
    ("feedback.score = '1'", only("04")),
    ("feedback.correct = 'true'", only("06")),
    ("feedback.correct = 0", only("07")),
    ("feedback.score IS NULL", only("03", "05", "06", "07", "08", "09", "10", "11")),
    ("feedback.quality IN ('bad', 'good /* c */')", only("02", "11")),
    ("expectation.answer = '42'", only("03")),
    ("expectation.answer RLIKE '^4[12]$'", only("03", "12")),
    ("expectation.answer > 41", set()),
    ("feedback.answer IS NOT NULL", set()),
    # OR, NOT, parentheses
    ("tags.env = 'dev' OR feedback.score >= 0.9", only("01", "02", "04", "09")),
    ("NOT (tags.env = 'prod' OR tags.env IS NULL)", only("02", "04", "08", "09")),
    (
        "status = 'OK' AND (span.name = 'llm' OR span.type = 'TOOL') "
        "AND NOT feedback.quality = 'good'",
        only("06", "07", "10", "11"),
    ),
    ("name = 'chat' AND NOT (tags.env = 'prod') OR name = 'rag'", only("02", "07", "10")),
]


@pytest.mark.parametrize(("filter_string", "expected"), CASES, ids=[c[0] for c in CASES])
def test_corpus(reader: Database, filter_string: str, expected: set[str]) -> None:
    assert set(ids(filter_string=filter_string)) == expected
    # The commit-time path agrees with search, trace by trace.
    with reader.read() as conn:
        for trace_id in sorted(ALL):
            [matched] = matches_for_trace(conn, trace_id, [parse(filter_string)])
            assert matched == (trace_id in expected), trace_id


def test_matches_for_trace_evaluates_many_filters_at_once(reader: Database) -> None:
    exprs = [parse(text) for text, _ in CASES]
    with reader.read() as conn:
        for trace_id in sorted(ALL):
            assert matches_for_trace(conn, trace_id, exprs) == [
                trace_id in expected for _, expected in CASES
            ]
        assert matches_for_trace(conn, "t01", []) == []
        with pytest.raises(TraceNotFoundError, match="t99"):
            matches_for_trace(conn, "t99", exprs[:1])


INVALID: list[tuple[str, int, str]] = [
    ("status = 'OK' AND", 17, ""),
    ("tags.env == 'prod'", 10, "="),
    ("span.content = 'x'", 13, "="),
    ("feedback.score > 'high'", 17, "'high'"),
    ("name RLIKE '(unclosed'", 11, "'(unclosed'"),
    ("unknown = 'x'", 0, "unknown"),
    ("timestamp_ms > 'yesterday'", 15, "'yesterday'"),
]


@pytest.mark.parametrize(("filter_string", "position", "token"), INVALID)
def test_invalid_filters(corpus: Path, filter_string: str, position: int, token: str) -> None:
    with pytest.raises(FilterSyntaxError) as info:
        localscorers.search_traces(filter_string=filter_string)
    assert (info.value.position, info.value.token) == (position, token)


def test_blank_filter_means_everything(corpus: Path) -> None:
    assert set(ids(filter_string="")) == ALL
    assert set(ids(filter_string="   ")) == ALL
    assert set(ids()) == ALL


ODD_KEYS = {"a\\b": "1", "a\nb": "2", "é ü": "3", "a'b": "4", "$.x": "5", "a[0]": "6", "a.b": "7"}


def test_span_attribute_keys_with_odd_characters(tmp_path: Path) -> None:
    localscorers.set_tracking_uri(tmp_path / "odd.db")
    spans = [span("r", "root", attributes=ODD_KEYS), span("c", "child", attributes={"k": "v"})]
    trace_id = localscorers.log_trace(inputs=None, outputs=None, spans=spans)
    for key, value in ODD_KEYS.items():
        field = "span.attributes.`" + key.replace("`", "``") + "`"
        assert ids(filter_string=f"{field} = '{value}'") == [trace_id], key
        assert ids(filter_string=f"{field} = 'other'") == [], key
    assert ids(filter_string="span.attributes.`a` = '7'") == []
    assert ids(filter_string="span.attributes.k IS NULL") == [trace_id]  # the root lacks k


# --------------------------------------------------------------------------- order_by

NEWEST_FIRST = [f"t{n:02d}" for n in range(12, 0, -1)]


@pytest.mark.parametrize(
    ("order_by", "filter_string", "expected"),
    [
        (None, None, NEWEST_FIRST),
        ([], None, NEWEST_FIRST),
        (["timestamp_ms DESC"], None, NEWEST_FIRST),
        (["trace.timestamp ASC"], None, NEWEST_FIRST[::-1]),
        # Missing durations sort last either way; ties fall back to newest first.
        (
            ["trace.execution_time_ms DESC"],
            None,
            ["t12", "t09", "t02", "t07", "t06", "t11", "t01", "t03", "t08", "t10", "t05", "t04"],
        ),
        (
            ["execution_time_ms asc"],
            None,
            ["t10", "t08", "t03", "t01", "t11", "t06", "t07", "t02", "t09", "t12", "t05", "t04"],
        ),
        (["name", "timestamp_ms ASC"], "tags.env = 'prod'", ["t03", "t12", "t01", "t06", "t07"]),
        (["tags.env DESC"], "name = 'chat'", ["t06", "t01", "t02", "t10"]),
        (["`trace`.status DESC", "trace_id"], "name = 'chat'", ["t01", "t06", "t10", "t02"]),
        (["end_time_ms"], "tags.env = 'dev'", ["t02", "t09"]),
        (["experiment_id", "request_id DESC"], "tags.team IS NOT NULL", ["t12", "t01"]),
        (
            ["run_id DESC"],
            "trace.execution_time_ms > 700",
            ["t06", "t12", "t09", "t07", "t02"],
        ),
    ],
)
def test_order_by(
    corpus: Path, order_by: list[str] | None, filter_string: str | None, expected: list[str]
) -> None:
    assert ids(order_by=order_by, filter_string=filter_string) == expected


def test_order_by_with_max_results(corpus: Path) -> None:
    assert ids(order_by=["execution_time_ms DESC"], max_results=2) == ["t12", "t09"]


@pytest.mark.parametrize(
    ("order_by", "message"),
    [
        (["bogus"], "position 0: found 'bogus'"),
        (["timestamp_ms SIDEWAYS"], "position 13: found 'SIDEWAYS'"),
        (["  span.name DESC"], "position 2: found 'span.name'"),
        (["feedback.score"], "found 'feedback.score'"),
        (["timestamp_ms DESC DESC"], "position 13"),
        ([""], "found end of input"),
        ("timestamp_ms DESC", "must be a list of strings"),
        ([5], "list of strings"),
    ],
)
def test_order_by_errors(corpus: Path, order_by: Any, message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        localscorers.search_traces(order_by=order_by)
    assert message in str(info.value)
    assert "timestamp_ms DESC" in str(info.value) or order_by == [5]


@settings(max_examples=200, deadline=None)
@given(st.text() | st.sampled_from(["tags.`a\nb` DESC", "name\tasc", "`", "trace.", "x DESC"]))
def test_random_order_by_raises_only_configuration_errors(clause: str) -> None:
    error: ConfigurationError | None = None
    try:
        compile_order_by([clause])
    except ConfigurationError as exc:
        error = exc
    if error is not None:
        assert not isinstance(error, FilterSyntaxError)
        assert "order_by" in str(error)


# --------------------------------------------------------------------------- injection

INJECTIONS = [
    "name = 'x'' OR ''1''=''1'",
    "name = 'x\\'' OR 1=1 --'",
    "tags.env = 'prod''; DROP TABLE traces; --'",
    "tags.`env'; DROP TABLE traces; --` = 'x'",
    "tags.`env``; DROP TABLE traces; --` IS NOT NULL",
    "metadata.`\"; DROP TABLE trace_metadata; --` = 'x'",
    "span.attributes.`model'); DROP TABLE spans; --` = 'x'",
    "span.attributes.`$.model` = 'gpt-4o'",
    "span.content LIKE '%''); DROP TABLE spans; --%'",
    "feedback.`q' OR 1=1 --` = 'good'",
    "name IN ('a'', (SELECT 1))', 'b /* */', '-- c')",
    "name RLIKE '.*'' OR 1=1; DROP TABLE traces; --'",
]


@pytest.mark.parametrize("filter_string", INJECTIONS)
def test_injected_text_is_inert(corpus: Path, filter_string: str) -> None:
    assert ids(filter_string=filter_string) == []
    assert set(ids()) == ALL


@pytest.mark.parametrize(
    "filter_string",
    [
        "name = 'x'; DROP TABLE traces",
        "name = 'x' -- DROP TABLE traces",
        "name = 'x' /* DROP TABLE traces */",
        "name = 'x' OR 1=1",
        "`traces`.name = 'x'",
        "name = 'x\\' OR 1=1 --'",
    ],
)
def test_sql_outside_values_is_a_syntax_error(corpus: Path, filter_string: str) -> None:
    with pytest.raises(FilterSyntaxError):
        localscorers.search_traces(filter_string=filter_string)
    assert set(ids()) == ALL


def test_tables_survive_every_injection(reader: Database) -> None:
    for filter_string in INJECTIONS:
        localscorers.search_traces(filter_string=filter_string)
    with reader.read() as conn:
        tables = set(sa.inspect(conn).get_table_names())
        assert {"traces", "trace_tags", "trace_metadata", "spans", "assessments"} <= tables
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.traces)).scalar() == 12
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.spans)).scalar() == 19


@pytest.mark.parametrize(
    "filter_string",
    [
        "name = 'ZQX'",
        "tags.`ZQX` = 'ZQX'",
        "metadata.ZQX IS NULL",
        "span.attributes.ZQX LIKE '%ZQX%'",
        "span.content RLIKE 'ZQX'",
        "feedback.ZQX IN ('ZQX', 'ZQY')",
        "expectation.ZQX > 4242",
        "trace.timestamp_ms < 4242",
    ],
)
def test_filter_text_only_reaches_sql_as_parameters(filter_string: str) -> None:
    statement = sa.select(schema.traces.c.trace_id).where(compile_filter(parse(filter_string)))
    for dialect in (None, sqlite.dialect()):
        sql = str(statement.compile(dialect=dialect))
        assert "ZQX" not in sql
        assert "4242" not in sql


def test_compile_order_by_defaults() -> None:
    clauses = compile_order_by(None)
    rendered = [str(c.compile(dialect=sqlite.dialect())) for c in clauses]
    assert rendered == ["traces.request_time_ms DESC", "traces.trace_id ASC"]


# --------------------------------------------------------------------------- properties

# A small vocabulary, so random filters and random traces meet often.
NAMES = [None, "chat", "Chat", "rag", "a_b"]
TAG_KEYS = ["env", "team"]
TAG_VALUES = ["prod", "dev", "PROD", "x'y"]
META_KEYS = ["user", "mlflow.sourceRun"]
SPAN_NAMES = ["llm", "tool", "chat"]
SPAN_TYPES = [None, "LLM", "TOOL"]
MODELS = ["gpt-4o", "claude", "x"]
WORDS = ["hello", "Hello", "bye"]
QUALITIES = ["good", "bad"]
SCORES = [0, 0.5, 1, True, False]
PATTERNS = ["%a%", "c%", "%O%", "_hat", "%", "gpt%", "%e%"]
REGEXES = ["^c", "a$", "o", "^(llm|tool)$", "[A-Z]"]

random_spans = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.sampled_from(SPAN_NAMES),
            "span_type": st.sampled_from(SPAN_TYPES),
            "status": st.sampled_from(["OK", "ERROR"]),
            "attributes": st.dictionaries(
                st.sampled_from(["model", "a.b"]), st.sampled_from(MODELS)
            ),
            "inputs": st.sampled_from(WORDS).map(lambda w: {"q": w}),
        }
    ),
    min_size=1,
    max_size=3,
)
random_traces = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.sampled_from(NAMES),
            "status": st.sampled_from(["OK", "ERROR", "IN_PROGRESS"]),
            "at": st.integers(0, 4).map(lambda k: k * 1000),
            "ms": st.none() | st.integers(0, 3).map(lambda k: k * 500),
            "tags": st.dictionaries(st.sampled_from(TAG_KEYS), st.sampled_from(TAG_VALUES)),
            "metadata": st.dictionaries(st.sampled_from(META_KEYS), st.sampled_from(TAG_VALUES)),
            "spans": random_spans,
            "feedback": st.fixed_dictionaries(
                {},
                optional={"score": st.sampled_from(SCORES), "quality": st.sampled_from(QUALITIES)},
            ),
        }
    ),
    min_size=1,
    max_size=5,
)


def _string_comparisons(field: Field, values: list[str]) -> st.SearchStrategy[Comparison]:
    def build(op: Op, value: object) -> Comparison:
        return Comparison(field, op, value)  # type: ignore[arg-type]

    vals = st.sampled_from(values)
    return st.one_of(
        st.builds(build, st.sampled_from([Op.EQ, Op.NE]), vals),
        st.builds(
            build,
            st.sampled_from([Op.IN, Op.NOT_IN]),
            st.lists(vals, min_size=1, max_size=2).map(tuple),
        ),
        st.builds(build, st.sampled_from([Op.LIKE, Op.ILIKE]), st.sampled_from(PATTERNS)),
        st.builds(build, st.just(Op.RLIKE), st.sampled_from(REGEXES)),
        st.builds(build, st.sampled_from([Op.IS_NULL, Op.IS_NOT_NULL]), st.none()),
    )


def _number_comparisons(field: Field, values: Sequence[float]) -> st.SearchStrategy[Comparison]:
    ops = [Op.EQ, Op.NE, Op.LT, Op.LE, Op.GT, Op.GE]
    return st.one_of(
        st.builds(Comparison, st.just(field), st.sampled_from(ops), st.sampled_from(values)),
        st.builds(
            Comparison,
            st.just(field),
            st.sampled_from([Op.IS_NULL, Op.IS_NOT_NULL]),
            st.none(),
        ),
    )


times = [T0 + k * 500 for k in range(10)]
random_comparisons = st.one_of(
    _string_comparisons(Field(Entity.TRACE, "status"), ["OK", "ok", "ERROR", "IN_PROGRESS"]),
    _string_comparisons(Field(Entity.TRACE, "name"), [n for n in NAMES if n]),
    _number_comparisons(Field(Entity.TRACE, "timestamp_ms"), times),
    _number_comparisons(Field(Entity.TRACE, "execution_time_ms"), [0, 500, 750, 1500]),
    _number_comparisons(Field(Entity.TRACE, "end_time_ms"), times),
    *(_string_comparisons(Field(Entity.TAG, k), TAG_VALUES) for k in TAG_KEYS),
    *(_string_comparisons(Field(Entity.METADATA, k), TAG_VALUES) for k in META_KEYS),
    _string_comparisons(Field(Entity.SPAN, "name"), SPAN_NAMES),
    _string_comparisons(Field(Entity.SPAN, "type"), ["LLM", "TOOL"]),
    _string_comparisons(Field(Entity.SPAN, "status"), ["OK", "error"]),
    *(_string_comparisons(Field(Entity.SPAN_ATTRIBUTE, k), MODELS) for k in ("model", "a.b")),
    st.builds(
        Comparison,
        st.just(Field(Entity.SPAN, "content")),
        st.sampled_from([Op.LIKE, Op.ILIKE]),
        st.sampled_from(["%hello%", "%bye%", "%gpt%"]),
    ),
    _string_comparisons(Field(Entity.FEEDBACK, "quality"), QUALITIES),
    _number_comparisons(Field(Entity.FEEDBACK, "score"), [0, 0.5, 1]),
    _string_comparisons(Field(Entity.FEEDBACK, "score"), ["true", "0.5", "1"]),
)
random_filters: st.SearchStrategy[Expr] = st.recursive(
    random_comparisons,
    lambda children: st.one_of(
        st.lists(children, min_size=2, max_size=3).map(lambda xs: And(tuple(xs))),
        st.lists(children, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs))),
        children.map(Not),
    ),
    max_leaves=5,
)


@pytest.fixture(scope="module")
def random_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("random") / "random.db"


PLANNED = [
    "tags.env = 'prod'",
    "tags.env = 'dev'",
    "tags.env = 'nowhere'",
    "tags.env = 'prod' AND tags.team = 't1'",
    "tags.team = 't1' AND metadata.user = 'u3'",
    "metadata.user = 'u3' AND trace.status = 'ERROR'",
    "tags.env = 'dev' AND NOT tags.team = 't1'",
    "tags.env = 'prod' AND (tags.team = 't2' OR metadata.user = 'u1')",
    "tags.env = 'dev' OR tags.team = 't0'",
    "tags.env = 'prod' AND tags.env != 'dev' AND tags.team LIKE 't%'",
]


# (_FEW, _MANY): scan everything, drive the rare, member sets for all, drive all.
BOUNDS = [(0, 0), (3, 3), (0, 1000), (1000, 1000)]


@pytest.mark.parametrize(("few", "many"), BOUNDS)
def test_planned_searches_find_exactly_the_matching_traces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, few: int, many: int
) -> None:
    # plan_search counts each required tag/metadata equality: a value on at most _FEW
    # traces supplies the candidate ids, one on at most _MANY a member set, a commoner
    # one is checked per trace. Whatever the split, the matches must be the same;
    # another experiment's traces with the same tags must not leak in.
    monkeypatch.setattr(search_sql, "_FEW", few)
    monkeypatch.setattr(search_sql, "_MANY", many)
    localscorers.set_tracking_uri(tmp_path / "planned.db")
    other = localscorers.set_experiment("other")
    for i in range(5):
        localscorers.log_trace(inputs=i, outputs=i, tags={"env": "dev", "team": "t1"})
    mine = localscorers.set_experiment("mine")
    facts: dict[str, dict[str, Any]] = {}
    for i in range(24):
        tags = {"env": "dev" if i % 6 == 0 else "prod", "team": f"t{i % 3}"}
        metadata = {"user": f"u{i % 4}"}
        status = "ERROR" if i % 5 == 0 else "OK"
        trace_id = localscorers.log_trace(
            inputs=i, outputs=i, tags=tags, metadata=metadata, status=status
        )
        facts[trace_id] = {"tags": tags, "metadata": metadata, "status": status}
    assert other.experiment_id != mine.experiment_id

    def expected(text: str) -> set[str]:
        def holds(fact: dict[str, Any]) -> bool:
            env, team = fact["tags"]["env"], fact["tags"]["team"]
            user, status = fact["metadata"]["user"], fact["status"]
            verdicts: dict[str, bool] = {
                PLANNED[0]: env == "prod",
                PLANNED[1]: env == "dev",
                PLANNED[2]: False,
                PLANNED[3]: env == "prod" and team == "t1",
                PLANNED[4]: team == "t1" and user == "u3",
                PLANNED[5]: user == "u3" and status == "ERROR",
                PLANNED[6]: env == "dev" and team != "t1",
                PLANNED[7]: env == "prod" and (team == "t2" or user == "u1"),
                PLANNED[8]: env == "dev" or team == "t0",
                PLANNED[9]: env == "prod",
            }
            return verdicts[text]

        return {trace_id for trace_id, fact in facts.items() if holds(fact)}

    for text in PLANNED:
        found = ids(experiment_ids=[mine.experiment_id], filter_string=text)
        assert len(found) == len(set(found)), text
        assert set(found) == expected(text), text
        newest_first = ids(experiment_ids=[mine.experiment_id], filter_string=text, max_results=3)
        assert newest_first == found[:3], text


def test_a_value_common_elsewhere_but_rare_here_starts_from_its_candidates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search_sql, "_FEW", 3)
    monkeypatch.setattr(search_sql, "_MANY", 3)
    localscorers.set_tracking_uri(tmp_path / "elsewhere.db")
    localscorers.set_experiment("other")
    for i in range(10):
        localscorers.log_trace(inputs=i, outputs=i, tags={"env": "qa"})
    mine = localscorers.set_experiment("mine").experiment_id
    qa = {localscorers.log_trace(inputs=i, outputs=i, tags={"env": "qa"}) for i in range(2)}
    for i in range(5):
        localscorers.log_trace(inputs=i, outputs=i, tags={"env": "prod"})

    with _context.current().db.read() as conn:
        rare_here = search_sql.plan_search(conn, parse("tags.env = 'qa'"), [mine])
        common_here = search_sql.plan_search(conn, parse("tags.env = 'prod'"), [mine])
        assert rare_here.candidates is not None
        assert set(conn.execute(rare_here.candidates).scalars()) >= qa
    assert common_here.candidates is None
    assert set(ids(experiment_ids=[mine], filter_string="tags.env = 'qa'")) == qa
    assert len(ids(experiment_ids=[mine], filter_string="tags.env = 'prod'")) == 5


# plan_search compiles a required tag/metadata equality on at most _FEW traces as the
# candidates to start from, and one on more as a per-trace EXISTS: 0 forces the second
# everywhere, 1000 the first (these databases are small), 2 mixes them.
@pytest.mark.parametrize(("few", "many"), [(0, 0), (2, 2), (0, 1000), (1000, 1000)])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(traces=random_traces, filters=st.lists(random_filters, min_size=1, max_size=4))
def test_search_agrees_with_matches_for_trace_and_a_reference(
    random_path: Path, few: int, many: int, traces: list[dict[str, Any]], filters: list[Expr]
) -> None:
    # Not monkeypatch: @given refuses function-scoped fixtures (a hypothesis health check).
    saved = search_sql._FEW, search_sql._MANY
    search_sql._FEW, search_sql._MANY = few, many  # type: ignore[misc]
    try:
        _search_agrees(random_path, traces, filters)
    finally:
        search_sql._FEW, search_sql._MANY = saved  # type: ignore[misc]


def _search_agrees(random_path: Path, traces: list[dict[str, Any]], filters: list[Expr]) -> None:
    # Each example logs its traces into a fresh experiment of one database file.
    localscorers.set_tracking_uri(random_path)
    experiment = localscorers.set_experiment(f"random-{uuid.uuid4().hex}")
    trace_ids = []
    for number, trace in enumerate(traces):
        spans = [
            {**s, "span_id": f"s{i}", "start_time_ns": 1} for i, s in enumerate(trace["spans"])
        ]
        trace_ids.append(
            log_corpus_trace(
                {**trace, "spans": spans, "trace_id": f"{experiment.experiment_id}-{number}"},
                experiment_id=experiment.experiment_id,
            )
        )
    database = Database(random_path)
    try:
        with database.read() as conn:
            together = {tid: matches_for_trace(conn, tid, filters) for tid in trace_ids}
    finally:
        database.close()
    for index, expr in enumerate(filters):
        found = ids(experiment_ids=[experiment.experiment_id], filter_string=render(expr))
        by_trace = {tid for tid in trace_ids if together[tid][index]}
        assert set(found) == by_trace
        expected = {tid for tid, trace in zip(trace_ids, traces, strict=True) if holds(expr, trace)}
        assert by_trace == expected, render(expr)


# A Python reading of the filter semantics, for the random traces above.


def _like(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    parts = (".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _compare(op: Op, actual: Any, value: Any) -> bool:  # noqa: PLR0911
    if actual is None:
        return False
    if op is Op.LIKE:
        return _like(value, ignore_case=False).fullmatch(actual) is not None
    if op is Op.ILIKE:
        return _like(value, ignore_case=True).fullmatch(actual) is not None
    if op is Op.RLIKE:
        return re.search(value, actual) is not None
    if op is Op.IN:
        return actual in value
    if op is Op.NOT_IN:
        return actual not in value
    comparisons = {
        Op.EQ: "__eq__",
        Op.NE: "__ne__",
        Op.LT: "__lt__",
        Op.LE: "__le__",
        Op.GT: "__gt__",
        Op.GE: "__ge__",
    }
    return bool(getattr(actual, comparisons[op])(value))


def _one(op: Op, actual: Any, value: Any) -> bool:
    if op is Op.IS_NULL:
        return actual is None
    if op is Op.IS_NOT_NULL:
        return actual is not None
    return _compare(op, actual, value)


def _span_holds(comparison: Comparison, span: dict[str, Any]) -> bool:
    """One comparison on one span."""
    field, op, value = comparison.field, comparison.op, comparison.value
    if field.entity is Entity.SPAN_ATTRIBUTE:
        return _one(op, span["attributes"].get(field.key), value)
    if field.key == "content":
        # The whole span, as in MLflow: name and type are text too.
        texts = [span["name"], span["span_type"]]
        texts += [json.dumps(span[k], separators=(",", ":")) for k in ("inputs", "attributes")]
        return any(_compare(op, text, value) for text in texts if text is not None)
    key = {"name": "name", "type": "span_type", "status": "status"}[field.key]
    return _one(op, span[key], _upper(op, value) if key == "status" else value)


def _is_span(expr: Expr) -> bool:
    return isinstance(expr, Comparison) and expr.field.entity in (
        Entity.SPAN,
        Entity.SPAN_ATTRIBUTE,
    )


def _flat(expr: And) -> list[Expr]:
    return [o for e in expr.operands for o in (_flat(e) if isinstance(e, And) else [e])]


def _upper(op: Op, value: Any) -> Any:
    if op not in (Op.EQ, Op.NE, Op.IN, Op.NOT_IN, Op.LIKE):
        return value
    return tuple(v.upper() for v in value) if isinstance(value, tuple) else value.upper()


def _value_forms(value: Any) -> tuple[str, float | None]:
    if isinstance(value, bool):
        return ("true" if value else "false"), float(value)
    return str(value), (float(value) if isinstance(value, int | float) else None)


def holds(expr: Expr, trace: dict[str, Any]) -> bool:  # noqa: PLR0911
    if isinstance(expr, And):
        # Span comparisons joined by AND hold on one span; the rest on the trace.
        operands = _flat(expr)
        group = [e for e in operands if _is_span(e)]
        on_trace = all(holds(e, trace) for e in operands if not _is_span(e))
        on_span = not group or any(
            all(_span_holds(c, s) for c in group)  # type: ignore[arg-type]
            for s in trace["spans"]
        )
        return on_trace and on_span
    if isinstance(expr, Or):
        return any(holds(e, trace) for e in expr.operands)
    if isinstance(expr, Not):
        return not holds(expr.operand, trace)
    field, op, value = expr.field, expr.op, expr.value
    if field.entity is Entity.TRACE:
        at, ms = T0 + trace["at"], trace["ms"]
        actual = {
            "status": trace["status"],
            "name": trace["name"],
            "timestamp_ms": at,
            "execution_time_ms": ms,
            "end_time_ms": None if ms is None else at + ms,
        }[field.key]
        if op is Op.IS_NULL:
            return actual is None
        if op is Op.IS_NOT_NULL:
            return actual is not None
        return _compare(op, actual, _upper(op, value) if field.key == "status" else value)
    if field.entity in (Entity.TAG, Entity.METADATA):
        entries = trace["tags"] if field.entity is Entity.TAG else trace["metadata"]
        if op in (Op.IS_NULL, Op.IS_NOT_NULL):
            return (field.key in entries) == (op is Op.IS_NOT_NULL)
        return _compare(op, entries.get(field.key), value)
    if field.entity in (Entity.SPAN, Entity.SPAN_ATTRIBUTE):
        return any(_span_holds(expr, s) for s in trace["spans"])
    feedback = trace["feedback"]
    if op in (Op.IS_NULL, Op.IS_NOT_NULL):
        return (field.key in feedback) == (op is Op.IS_NOT_NULL)
    if field.key not in feedback:
        return False
    text, number = _value_forms(feedback[field.key])
    first = value[0] if isinstance(value, tuple) else value
    return _compare(op, text if isinstance(first, str) else number, value)


def test_reference_helpers_cover_the_corpus_grammar() -> None:
    # The reference agrees with the database on the hand-made corpus's simple cases too.
    trace = {
        "name": "chat", "status": "OK", "at": 0, "ms": None, "tags": {"env": "prod"},
        "metadata": {}, "spans": [{"name": "llm", "span_type": "LLM", "status": "OK",
        "attributes": {"model": "gpt-4o"}, "inputs": {"q": "hello"}}], "feedback": {"score": True},
    }  # fmt: skip
    assert holds(parse("name LIKE 'ch_t' AND tags.env = 'prod' AND NOT tags.x = 'y'"), trace)
    assert holds(parse("feedback.score = 1 AND feedback.score = 'true'"), trace)
    assert not holds(parse("trace.end_time_ms > 0 OR execution_time_ms IS NOT NULL"), trace)
    assert holds(parse("span.content LIKE '%hello%' AND span.status = 'ok'"), trace)


# -- Query plans (issue 16): the index each filter reads, pinned with EXPLAIN QUERY PLAN.
#
# A correlated EXISTS on spans or assessments must read the trace's own rows through
# the index that starts with trace_id: with ix_spans_type or ix_assessments_name_value
# instead, every trace read every matching row of every other trace (9.9 s for a page
# at 100k traces). A rare required value drives the search from its own index instead.

AUTO_SPANS = "SEARCH spans USING INDEX sqlite_autoindex_spans_1 (trace_id=?)"
BY_TRACE = "SEARCH assessments USING INDEX ix_assessments_trace (trace_id=?)"
BY_SESSION = "SEARCH assessments USING INDEX ix_assessments_session (session_id=?)"
TIME_SCAN = "ix_traces_experiment_time (experiment_id=?"
FROM_CANDIDATES = "SEARCH traces USING INDEX sqlite_autoindex_traces_1 (trace_id=?)"
TAG_ROW = "SEARCH trace_tags USING INDEX sqlite_autoindex_trace_tags_1 (trace_id=? AND key=?)"

PLANS: list[tuple[str, list[str], list[str]]] = [
    # (filter, what the plan must read, what it must not)
    ("trace.status = 'OK'", [TIME_SCAN], ["ix_traces_status"]),
    (
        "trace.status = 'ERROR'",
        ["ix_traces_status (experiment_id=? AND status=?)", FROM_CANDIDATES],
        [],
    ),
    ("trace.timestamp_ms > 5", ["(experiment_id=? AND request_time_ms>?)"], []),
    (
        "trace.client_request_id = 'r1'",
        ["ix_traces_client_request_id (client_request_id=?)"],
        [TIME_SCAN],
    ),
    ("tags.env = 'common'", [TIME_SCAN, TAG_ROW], ["ix_trace_tags_key_value"]),
    ("tags.env = 'rare'", ["ix_trace_tags_key_value (key=? AND value=?)", FROM_CANDIDATES], []),
    ("metadata.m = 'rare'", ["ix_trace_metadata_key_value (key=? AND value=?)"], []),
    ("span.type = 'LLM'", [TIME_SCAN, AUTO_SPANS], ["ix_spans_type"]),
    ("span.type = 'RETRIEVER'", ["ix_spans_type (span_type=?)", FROM_CANDIDATES], []),
    ("span.name = 'llm'", [TIME_SCAN, AUTO_SPANS], ["ix_spans_name"]),
    ("span.name = 'rare'", ["ix_spans_name (name=?)", FROM_CANDIDATES], []),
    # No span has them: span_terms counts 0 and supplies the (no) candidates.
    ("span.status = 'ERROR'", ["span_terms USING PRIMARY KEY (key=? AND value=?)"], []),
    (
        "span.attributes.model = 'x'",
        ["span_terms USING PRIMARY KEY (key=? AND value=?)", FROM_CANDIDATES],
        [AUTO_SPANS],
    ),
    ("span.content LIKE '%x%'", [AUTO_SPANS], ["ix_spans"]),
    ("span.name = 'llm' AND span.status = 'OK'", [TIME_SCAN, AUTO_SPANS], ["ix_spans"]),
    ("span.type = 'RETRIEVER' AND span.status = 'OK'", ["ix_spans_type", FROM_CANDIDATES], []),
    (
        "feedback.quality = 'yes'",
        [TIME_SCAN, BY_TRACE, BY_SESSION],
        ["ix_assessment_values"],
    ),
    (
        "feedback.quality = 'rare'",
        [
            "ix_assessment_values (name=? AND kind=? AND value_num=? AND value_str=?",
            FROM_CANDIDATES,
        ],
        [],
    ),
    ("feedback.score > 0.5", [TIME_SCAN, BY_TRACE], ["ix_assessment_values"]),
    ("feedback.quality IS NULL", [TIME_SCAN, BY_TRACE], ["ix_assessment_values"]),
    ("expectation.answer = '42'", [TIME_SCAN, BY_TRACE], ["ix_assessment_values"]),
]


@pytest.fixture(scope="module")
def plans_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plans") / "plans.db"
    localscorers.set_tracking_uri(path)
    for i in range(8):
        spans = [span("r", "chat"), span("l", "llm", "LLM")]
        if i == 0:
            spans.append(span("k", "rare", "RETRIEVER"))
        trace_id = localscorers.log_trace(
            inputs=i,
            outputs=i,
            spans=spans,
            tags={"env": "rare" if i == 0 else "common"},
            metadata={"m": "rare" if i == 0 else "common"},
        )
        localscorers.log_feedback(
            trace_id=trace_id, name="quality", value="rare" if i == 0 else "yes"
        )
        localscorers.log_feedback(trace_id=trace_id, name="score", value=i / 8)
        localscorers.log_expectation(trace_id=trace_id, name="answer", value="42")
    database = Database(path)
    deferred_indexes.catch_up(database, text=True, after=0)  # as a search does, 1,000 later
    database.close()
    return path


def _plan(conn: sa.Connection, query: Any) -> str:
    compiled = query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
    rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}").all()
    return "\n".join(str(row[-1]) for row in rows)


@pytest.mark.parametrize(("filter_string", "used", "unused"), PLANS, ids=[p[0] for p in PLANS])
def test_search_plan_pins_the_index(
    plans_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    filter_string: str,
    used: list[str],
    unused: list[str],
) -> None:
    # 1 of 8 traces is rare, 7 are common (above _FEW = 2).
    monkeypatch.setattr(search_sql, "_FEW", 2)
    monkeypatch.setattr(search_sql, "_MANY", 2)
    database = Database(plans_path)
    try:
        with database.read() as conn:
            query = search_sql.search_query(
                conn,
                experiment_ids=["0"],
                expr=parse(filter_string),
                order=compile_order_by(None),
                limit=100,
            )
            plan = _plan(conn, query)
    finally:
        database.close()
    for needed in used:
        assert needed in plan, plan
    for avoided in unused:
        assert avoided not in plan, plan


@pytest.mark.parametrize(
    "filter_string",
    [
        "span.type = 'LLM'",
        "span.name = 'llm' AND span.type = 'LLM'",
        "feedback.quality = 'yes'",
        "expectation.answer = '42'",
        "tags.env = 'common'",
    ],
)
def test_row_by_row_checks_read_only_the_traces_own_rows(
    plans_path: Path, filter_string: str
) -> None:
    # matches_for_trace (commit time) and backfill pages compile filters correlated.
    database = Database(plans_path)
    try:
        with database.read() as conn:
            condition = compile_filter(parse(filter_string), correlated=True)
            t = schema.traces
            query = sa.select(sa.case((condition, 1), else_=0)).where(t.c.trace_id == "x")
            plan = _plan(conn, query)
    finally:
        database.close()
    assert "ix_spans_" not in plan
    assert "ix_assessment_values" not in plan
    assert "ix_trace_tags_key_value" not in plan
    assert "trace_id=?" in plan
