"""Traces read back are the models validation would build, field for field (issue 16).

The read path builds models from stored rows without validating them again
(``store/trace_reads.py``). These tests compare every model it returns with the one
the validated converters of ``store/rows.py`` build from SQLAlchemy's rows: values,
types (statuses are enums), the order repr shows, and ``model_fields_set``. A field
added to a model without the read path knowing fails here.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import BaseModel

import localscorers
from localscorers import (
    AssessmentError,
    AssessmentSource,
    AssessmentSourceType,
    Expectation,
    Feedback,
    Span,
    SpanStatus,
    Trace,
    TraceStatus,
    _clock,
    _context,
)
from localscorers.models import TraceData, TraceInfo
from localscorers.store import codec, rows, schema
from localscorers.store.rows import TraceRecord


def _reference(trace_id: str) -> Trace:
    """The trace as read before issue 16: SQLAlchemy rows, every model validated."""
    t, s, a = schema.traces, schema.spans, schema.assessments
    with _context.current().db.read() as conn:
        row = conn.execute(sa.select(t).where(t.c.trace_id == trace_id)).one()._mapping
        tags, metadata = (
            dict(rows.grouped(conn, table, [trace_id]).get(trace_id, ()))
            for table in (schema.trace_tags, schema.trace_metadata)
        )
        spans = [
            rows.span_model(r._mapping)
            for r in conn.execute(
                sa.select(s)
                .where(s.c.trace_id == trace_id)
                .order_by(s.c.start_time_ns, s.c.span_id)
            )
        ]
        assessments = [
            rows.assessment_model(r._mapping)
            for r in conn.execute(
                sa.select(a)
                .where(a.c.trace_id == trace_id)
                .order_by(a.c.created_ms, a.c.assessment_id)
            )
        ]
    if row["root_span_id"] is not None:
        spans.insert(0, rows.root_span(row))
    info = TraceInfo(
        trace_id=trace_id,
        experiment_id=row["experiment_id"],
        request_time=_clock.datetime_from_ms(row["request_time_ms"]),
        execution_duration_ms=row["execution_duration_ms"],
        status=TraceStatus(row["status"]),
        name=row["name"],
        tags=tags,
        metadata=metadata,
        assessments=assessments,
        client_request_id=row["client_request_id"],
    )
    data = TraceData(spans=spans, request=row["inputs"], response=row["outputs"])
    return Trace(info=info, data=data)


def _same_models(loaded: Any, expected: Any) -> None:
    assert type(loaded) is type(expected)
    if isinstance(loaded, BaseModel):
        assert loaded.model_fields_set == expected.model_fields_set
        assert list(loaded.__dict__) == list(expected.__dict__)  # repr and iteration order
        for name in type(loaded).model_fields:
            _same_models(getattr(loaded, name), getattr(expected, name))
    elif isinstance(loaded, list):
        assert len(loaded) == len(expected)
        for a, b in zip(loaded, expected, strict=True):
            _same_models(a, b)
    elif isinstance(loaded, float) and math.isnan(loaded):
        assert math.isnan(expected)
    else:
        assert loaded == expected
        assert repr(loaded) == repr(expected)


def _check(trace: Trace) -> None:
    expected = _reference(trace.info.trace_id)
    _same_models(trace, expected)
    assert trace == expected
    assert trace.model_dump_json(exclude_unset=True) == expected.model_dump_json(exclude_unset=True)


def _log_varied() -> list[str]:
    """Traces with every kind of stored value a read turns back into models."""
    plain = localscorers.log_trace(inputs=42, outputs=float("nan"), name="root only")
    spans = [
        Span(span_id="r", name="agent", span_type="CHAIN", start_time_ns=1_000,
             end_time_ns=9_000, inputs={"q": "hi"}, outputs=["a", 1, None]),
        Span(span_id="u", parent_id="r", name="unset", status=SpanStatus.UNSET,
             start_time_ns=2_000, attributes={"model": "m", "n": 1.5},
             events=[{"name": "e", "attributes": {"k": "v"}}]),
        Span(span_id="e", parent_id="r", name="failed", status=TraceStatus.ERROR,
             status_message="boom", start_time_ns=3_000),
        Span(span_id="p", parent_id="r", name="open", status=TraceStatus.IN_PROGRESS,
             start_time_ns=3_000),
    ]  # fmt: skip
    full = localscorers.log_trace(
        inputs={"q": "hi"},
        outputs="text",
        name="agent",
        status="ERROR",
        execution_duration_ms=8,
        tags={"env": "prod", "a": "1"},
        metadata={"user": "u1", "mlflow.trace.session": "s1"},
        spans=spans,
        client_request_id="req-1",
    )
    first = localscorers.log_feedback(
        trace_id=full, name="quality", value={"label": "yes", "score": 0.5},
        rationale="why", metadata={"k": [1, 2]},
        source=AssessmentSource(source_type=AssessmentSourceType.HUMAN, source_id="me"),
    )  # fmt: skip
    localscorers.log_feedback(trace_id=full, name="quality", value=7, overrides=first.assessment_id)
    localscorers.log_feedback(trace_id=full, name="flag", value=True)
    localscorers.log_expectation(trace_id=full, name="answer", value="42")
    failed = TraceRecord(
        trace_id="tr-failed",
        experiment_id="0",
        status=TraceStatus.OK,
        request_time_ms=1_700_000_000_000,
        inputs=None,
        outputs=None,
        assessments=[
            Feedback(name="judge", error=AssessmentError(error_code="E", error_message="m")),
            Expectation(name="facts", value=["a", "b"]),
        ],
    )
    _context.current().store.write_traces([failed], enqueue=False)
    return [plain, full, "tr-failed"]


def test_traces_read_back_are_the_validated_models(contract_tracking: str) -> None:
    ids = _log_varied()
    for trace_id in ids:
        _check(localscorers.get_trace(trace_id))
    found = localscorers.search_traces(max_results=10)
    assert sorted(t.info.trace_id for t in found) == sorted(ids)
    for trace in found:
        _check(trace)
    full = localscorers.get_trace(ids[1])
    assert [s.status for s in full.data.spans] == ["OK", "UNSET", "ERROR", "IN_PROGRESS"]
    assert type(full.data.spans[0].status) is TraceStatus
    assert type(full.data.spans[1].status) is SpanStatus
    assert [a.valid for a in full.info.assessments] == [False, True, True, True]
    assert full.info.assessments[1].value == 7
    plain = localscorers.get_trace(ids[0])
    assert plain.data.request == 42
    assert plain.data.spans[0].inputs == 42  # the root span kept in the trace row


def test_load_traces_keeps_the_order_given_across_chunks(tracking: object) -> None:
    records = [
        TraceRecord(
            trace_id=f"tr-{i:04d}",
            experiment_id="0",
            status=TraceStatus.OK,
            request_time_ms=1_700_000_000_000 + i,
            inputs={"i": i},
            outputs=i,
            tags={"n": str(i)},
        )
        for i in range(530)
    ]
    store = _context.current().store
    store.write_traces(records, enqueue=False)
    wanted = [f"tr-{i:04d}" for i in reversed(range(530))]
    wanted.insert(3, "tr-missing")
    with _context.current().db.read() as conn:
        loaded = store.load_traces(conn, wanted)
        few = store.load_traces(conn, ["tr-0007", "tr-missing", "tr-0002"])
    assert [t.info.trace_id for t in loaded] == [w for w in wanted if w != "tr-missing"]
    assert [t.info.tags for t in loaded[:2]] == [{"n": "529"}, {"n": "528"}]
    assert [t.data.response for t in few] == [7, 2]
    _check(loaded[0])


@pytest.mark.parametrize(
    "text",
    ["1", "-2.5e3", '"x"', "null", "true", '{"a":[1,{"b":null}]}', " [1] ", "[1]\n", "{}"],
)
def test_loads_column_decodes_as_json_loads(text: str) -> None:
    assert codec.loads_column(text) == json.loads(text)


@pytest.mark.parametrize("text", ["", "nul", "[1,]", "1 2", "{'a': 1}"])
def test_loads_column_refuses_what_json_loads_refuses(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        codec.loads_column(text)


def test_loads_column_keeps_numbers_and_none() -> None:
    # SQLite's JSON columns have NUMERIC affinity: a number's JSON text reads as the number.
    assert codec.loads_column(None) is None
    assert codec.loads_column(3) == 3
    assert codec.loads_column(2.5) == 2.5
    assert codec.loads_column(b'{"a":1}') == {"a": 1}
