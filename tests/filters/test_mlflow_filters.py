"""MLflow's trace-search behaviour: same-span clauses, sessions, ids, paging, overrides.

Each test states what MLflow's tracking store does (``mlflow/store/tracking/
sqlalchemy_store.py`` and ``tests/store/tracking/test_sqlalchemy_store.py``) and checks
localscorers does the same, through the public API on a real SQLite file.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

import localscorers
from localscorers import (
    ConfigurationError,
    NotFoundError,
    ScorerSamplingConfig,
    SpanStatus,
    TraceNotFoundError,
    TraceStatus,
)
from localscorers.store import PagedList
from tests import scorer_helpers


@pytest.fixture
def tracking(contract_tracking: str) -> str:
    """This module's store tests run on each backend (SQLite, then PostgreSQL)."""
    return contract_tracking


def _span(span_id: str, name: str, **fields: object) -> dict[str, object]:
    return {"span_id": span_id, "name": name, "start_time_ns": 1, **fields}


def _ids(filter_string: str) -> set[str]:
    return {t.info.trace_id for t in localscorers.search_traces(filter_string=filter_string)}


def test_span_clauses_joined_by_and_match_one_span(tracking: Path) -> None:
    # MLflow: search_web is ERROR and another span is OK: not a match for both clauses.
    mixed = localscorers.log_trace(
        inputs="q",
        outputs="a",
        spans=[
            _span("a", "search_web", span_type="RETRIEVER", status="ERROR"),
            _span("b", "llm", span_type="LLM", status="OK"),
        ],
    )
    ok = localscorers.log_trace(
        inputs="q",
        outputs="a",
        spans=[_span("c", "search_web", span_type="RETRIEVER", status="OK")],
    )
    assert _ids("span.name = 'search_web' AND span.status = 'OK'") == {ok}
    assert _ids("span.name = 'search_web' AND span.status = 'ERROR'") == {mixed}
    assert _ids("span.type = 'LLM' AND span.name = 'search_web'") == set()
    # One clause: any span. OR across span clauses: any span matching either.
    assert _ids("span.status = 'OK'") == {mixed, ok}
    assert _ids("span.type = 'LLM' OR span.status = 'ERROR'") == {mixed}
    # NOT negates the trace-level condition: no span is OK.
    assert _ids("NOT span.status = 'OK'") == set()
    assert _ids("span.name = 'search_web' AND NOT span.status = 'ERROR'") == {ok}


def test_same_span_rule_also_decides_what_a_scorer_samples(tracking: Path) -> None:
    # The same grammar drives sampling: a scorer filtered on one span's name and status
    # must not score a trace whose span of that name failed.
    scorer = scorer_helpers.is_short.register(name="short").start(
        sampling_config=ScorerSamplingConfig(
            filter_string="span.name = 'search_web' AND span.status = 'OK'"
        )
    )
    excluded = localscorers.log_trace(
        inputs="q",
        outputs="a",
        spans=[_span("a", "search_web", status="ERROR"), _span("b", "llm", status="OK")],
    )
    included = localscorers.log_trace(
        inputs="q", outputs="a", spans=[_span("c", "search_web", status="OK")]
    )
    localscorers.flush()
    scored = {
        t.info.trace_id
        for t in localscorers.search_traces(filter_string="feedback.short IS NOT NULL")
    }
    assert scored == {included}
    assert excluded not in scored
    assert scorer.filter_string is not None


def test_trace_text_matches_span_names_and_types(tracking: Path) -> None:
    # MLflow's trace.text searches the whole span: its name and type too.
    named = localscorers.log_trace(
        inputs="q", outputs="a", spans=[_span("a", "vector_lookup", span_type="RETRIEVER")]
    )
    localscorers.log_trace(inputs="q", outputs="a", spans=[_span("b", "llm", span_type="LLM")])
    assert _ids("trace.text LIKE '%vector_lookup%'") == {named}
    assert _ids("trace.text LIKE '%RETRIEVER%'") == {named}
    assert _ids("span.content ILIKE '%retriever%'") == {named}


def test_session_feedback_covers_every_trace_of_the_session(tracking: Path) -> None:
    session = {"mlflow.trace.session": "s1"}
    first = localscorers.log_trace(inputs=1, outputs=1, metadata=session, request_time=1000)
    last = localscorers.log_trace(inputs=2, outputs=2, metadata=session, request_time=2000)
    other = localscorers.log_trace(
        inputs=3, outputs=3, metadata={"mlflow.trace.session": "s2"}, request_time=3000
    )
    lone = localscorers.log_trace(inputs=4, outputs=4, request_time=4000)
    localscorers.log_feedback(
        trace_id=last, name="frustration", value="no", metadata={"mlflow.trace.session": "s1"}
    )
    localscorers.log_feedback(trace_id=other, name="frustration", value="yes")
    assert _ids("feedback.frustration = 'no'") == {first, last}
    assert _ids("feedback.frustration IS NOT NULL") == {first, last, other}
    assert _ids("feedback.frustration IS NULL") == {lone}
    assert _ids("feedback.frustration = 'no' AND trace.timestamp_ms < 1500") == {first}
    assert _ids("NOT feedback.frustration = 'no'") == {other, lone}


def test_client_request_id_is_stored_returned_and_searchable(tracking: Path) -> None:
    trace_id = localscorers.log_trace(inputs=1, outputs=1, client_request_id="req-42")
    localscorers.log_trace(inputs=2, outputs=2)
    assert localscorers.get_trace(trace_id).info.client_request_id == "req-42"
    assert _ids("trace.client_request_id = 'req-42'") == {trace_id}
    assert _ids("client_request_id LIKE 'req-%'") == {trace_id}
    assert len(_ids("trace.client_request_id IS NULL")) == 1
    with pytest.raises(ConfigurationError, match="client_request_id must be a non-blank"):
        localscorers.log_trace(inputs=1, outputs=1, client_request_id="  ")


def test_page_token_walks_every_match_once(tracking: Path) -> None:
    made = [
        localscorers.log_trace(inputs=i, outputs=i, request_time=1000 + i, tags={"k": "v"})
        for i in range(7)
    ]
    pages: list[list[str]] = []
    token = None
    while True:
        page = localscorers.search_traces(
            filter_string="tags.k = 'v'", max_results=3, page_token=token
        )
        assert isinstance(page, PagedList)
        pages.append([t.info.trace_id for t in page])
        token = page.token
        if token is None:
            break
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [i for p in pages for i in p] == list(reversed(made))  # newest first
    # max_results=None is still every match, with no further page.
    everything = localscorers.search_traces()
    assert (len(everything), everything.token) == (7, None)
    # A page that ends exactly at the last match has no next token.
    assert localscorers.search_traces(max_results=7).token is None
    # MLflow's token format: base64 of {"offset": N}.
    first = localscorers.search_traces(max_results=2)
    assert first.token is not None
    assert json.loads(base64.b64decode(first.token)) == {"offset": 2}


@pytest.mark.parametrize("token", ["not a token", base64.b64encode(b'{"offset": -1}').decode()])
def test_invalid_page_token(tracking: Path, token: str) -> None:
    with pytest.raises(ConfigurationError, match=r"Invalid page_token .*next_page_token"):
        localscorers.search_traces(page_token=token)


def test_return_type_pandas_has_mlflows_columns(tracking: Path) -> None:
    trace_id = localscorers.log_trace(
        inputs={"q": 1}, outputs="a", tags={"t": "1"}, client_request_id="r1"
    )
    localscorers.log_feedback(trace_id=trace_id, name="ok", value=True)
    frame = localscorers.search_traces(return_type="pandas")
    assert list(frame.columns) == [
        "trace_id", "trace", "client_request_id", "state", "request_time",
        "execution_duration", "request", "response", "trace_metadata", "tags",
        "spans", "assessments",
    ]  # fmt: skip
    row = frame.iloc[0]
    assert (row.trace_id, row.client_request_id, row.state) == (trace_id, "r1", "OK")
    assert row.request == {"q": 1}
    assert row.tags == {"t": "1"}
    assert row.trace.info.trace_id == trace_id
    assert [a["name"] for a in row.assessments] == ["ok"]
    assert isinstance(localscorers.search_traces(return_type="list"), list)
    with pytest.raises(ConfigurationError, match="return_type must be 'list' or 'pandas'"):
        localscorers.search_traces(return_type="polars")  # type: ignore[call-overload]


def test_log_feedback_overrides_keeps_the_old_one_as_history(tracking: Path) -> None:
    trace_id = localscorers.log_trace(inputs=1, outputs=1)
    old = localscorers.log_feedback(trace_id=trace_id, name="quality", value="bad")
    assert old.assessment_id is not None
    new = localscorers.log_feedback(
        trace_id=trace_id, name="quality", value="good", overrides=old.assessment_id
    )
    assert new.overrides == old.assessment_id
    stored = {a.assessment_id: a for a in localscorers.get_trace(trace_id).info.assessments}
    assert stored[old.assessment_id].valid is False
    assert stored[new.assessment_id].valid is True
    assert _ids("feedback.quality = 'good'") == {trace_id}
    assert _ids("feedback.quality = 'bad'") == set()
    with pytest.raises(NotFoundError, match="has no assessment 'a-missing' to override"):
        localscorers.log_feedback(trace_id=trace_id, name="q", value=1, overrides="a-missing")
    with pytest.raises(ConfigurationError, match="overrides must be the assessment_id"):
        localscorers.log_feedback(trace_id=trace_id, name="q", value=1, overrides=5)  # type: ignore[arg-type]
    with pytest.raises(TraceNotFoundError):
        localscorers.log_feedback(trace_id="tr-x", name="q", value=1, overrides="a-1")


def test_span_status_unset_is_stored_and_is_not_ok(tracking: Path) -> None:
    # OpenTelemetry's UNSET is a status of its own: stored as UNSET, not matched by OK.
    trace_id = localscorers.log_trace(
        inputs=1, outputs=1, spans=[_span("a", "root", status="UNSET")]
    )
    [span] = localscorers.get_trace(trace_id).data.spans
    assert span.status is SpanStatus.UNSET
    assert localscorers.get_trace(trace_id).info.status is TraceStatus.OK
    assert _ids("span.status = 'UNSET'") == {trace_id}
    assert _ids("span.status = 'OK'") == set()
    assert _ids("span.status = 'unset'") == {trace_id}
    with pytest.raises(ConfigurationError, match=r"spans\[0\] is not a valid span"):
        localscorers.log_trace(inputs=1, outputs=1, spans=[_span("a", "root", status="MAYBE")])
