"""The root span log_trace synthesizes is kept in the trace row, and still filterable (issue 16).

A trace logged without spans gets one root span made of the trace itself. It is not
written as a ``spans`` row (half the pages of a trace commit) but read back from
``traces.root_span_id``; every span filter still sees it, both ways a search runs
(from the span indexes for a rare name, per trace for a common one) and at commit
time (a scorer's sampling filter).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import localscorers
from localscorers.filters import parse
from localscorers.store import Database, matches_for_trace


def _span_rows(uri: str) -> int:
    db = Database(uri)
    try:
        with db.read() as conn:
            return int(conn.exec_driver_sql("SELECT count(*) FROM spans").scalar_one())
    finally:
        db.close()


@pytest.fixture
def three(contract_tracking: str) -> dict[str, str]:
    """An elided root (answer, OK), another (other, ERROR), and a trace with real spans."""
    return {
        "answer": localscorers.log_trace(
            inputs={"question": "hello"},
            outputs="order shipped",
            name="answer",
            execution_duration_ms=7,
            request_time=1_700_000_000_000,
        ),
        "other": localscorers.log_trace(
            inputs={"question": "x"}, outputs="y", name="other", status="ERROR"
        ),
        "spans": localscorers.log_trace(
            inputs={"question": "x"},
            outputs="y",
            name="agent",
            spans=[
                {
                    "span_id": "00000000000000aa",
                    "name": "llm",
                    "span_type": "LLM",
                    "start_time_ns": 1,
                    "attributes": {"model": "m"},
                }
            ],
        ),
    }


def test_root_span_reads_back_whole_without_a_spans_row(
    contract_tracking: str, three: dict[str, str]
) -> None:
    (span,) = localscorers.get_trace(three["answer"]).data.spans
    assert span.name == "answer"
    assert span.parent_id is None
    assert span.span_type is None
    assert span.status == "OK"
    assert span.start_time_ns == 1_700_000_000_000 * 1_000_000
    assert span.end_time_ns == span.start_time_ns + 7 * 1_000_000
    assert span.inputs == {"question": "hello"}
    assert span.outputs == "order shipped"
    assert span.attributes == {}
    assert span.events == []
    assert len(span.span_id) == 16
    # The same id every time it is read.
    assert localscorers.get_trace(three["answer"]).data.spans[0].span_id == span.span_id
    # Only the explicit span of the third trace is a spans row.
    assert _span_rows(contract_tracking) == 1
    (llm,) = localscorers.get_trace(three["spans"]).data.spans
    assert (llm.name, llm.span_type, llm.attributes) == ("llm", "LLM", {"model": "m"})


@pytest.mark.parametrize(
    ("filter_string", "expected"),
    [
        ("span.name = 'answer'", {"answer"}),
        ("span.name IN ('answer', 'nothing')", {"answer"}),
        ("span.name LIKE 'ans%'", {"answer"}),
        ("span.name != 'answer'", {"other", "spans"}),
        ("span.status = 'error'", {"other"}),
        ("span.status = 'OK'", {"answer", "spans"}),
        ("span.content LIKE '%shipped%'", {"answer"}),
        ("trace.text LIKE '%hello%'", {"answer"}),
        ("span.type IS NULL", {"answer", "other"}),
        ("span.type = 'LLM'", {"spans"}),
        ("span.attributes.model = 'm'", {"spans"}),
        ("span.name = 'answer' AND span.status = 'OK'", {"answer"}),
        ("span.name = 'answer' AND span.status = 'ERROR'", set()),
        ("span.name = 'answer' AND span.type = 'LLM'", set()),
        ("span.name = 'answer' OR span.name = 'llm'", {"answer", "spans"}),
    ],
)
def test_span_filters_match_the_root_kept_in_the_trace_row(
    three: dict[str, str], filter_string: str, expected: set[str]
) -> None:
    names = {trace_id: name for name, trace_id in three.items()}
    found = localscorers.search_traces(filter_string=filter_string)
    assert {names[t.info.trace_id] for t in found} == expected


def test_commit_time_filters_see_the_root(contract_tracking: str, three: dict[str, str]) -> None:
    filters = ["span.name = 'answer'", "span.status = 'ERROR'", "span.content LIKE '%hello%'"]
    db = Database(contract_tracking)
    try:
        with db.read() as conn:
            answer = matches_for_trace(conn, three["answer"], [parse(f) for f in filters])
            other = matches_for_trace(conn, three["other"], [parse(f) for f in filters])
    finally:
        db.close()
    assert answer == [True, False, True]
    assert other == [False, True, False]


def test_a_sampling_filter_on_the_root_span_enqueues(tracking: Path) -> None:
    def is_long(outputs: object) -> bool:
        return len(str(outputs)) > 3

    localscorers.scorer(is_long).register().start(
        sampling_config=localscorers.ScorerSamplingConfig(
            sample_rate=1.0, filter_string="span.name = 'answer'"
        )
    )
    chosen = localscorers.log_trace(inputs={"q": 1}, outputs="long enough", name="answer")
    skipped = localscorers.log_trace(inputs={"q": 1}, outputs="long enough", name="other")
    assert localscorers.flush(timeout=30)
    assert [f.name for f in localscorers.get_trace(chosen).info.assessments] == ["is_long"]
    assert localscorers.get_trace(skipped).info.assessments == []


def test_spans_that_say_more_than_the_trace_are_rows(tracking: Path) -> None:
    localscorers.log_trace(
        inputs={"q": 1},
        outputs="a",
        name="answer",
        spans=[
            {
                "span_id": "00000000000000bb",
                "name": "answer",
                "span_type": "LLM",
                "start_time_ns": 1,
            }
        ],
    )
    localscorers.log_trace(inputs={"q": 1}, outputs="a")  # unnamed: its root is named "root"
    assert _span_rows(f"sqlite:///{tracking}") == 2
    assert {s.name for t in localscorers.search_traces() for s in t.data.spans} == {
        "answer",
        "root",
    }
