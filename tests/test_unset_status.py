"""Span status UNSET (OpenTelemetry's) survives imports and OTLP: it is not OK (issue 20)."""

from __future__ import annotations

import json
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

import localscorers
from localscorers.otel import SpanExporter


def _document(code: str | None, trace_id: str) -> dict[str, object]:
    span: dict[str, object] = {
        "span_id": "00000000000000aa",
        "name": "root",
        "start_time_unix_nano": 1735689600000000000,
        "end_time_unix_nano": 1735689600001000000,
        "attributes": {},
    }
    if code is not None:
        span["status"] = {"code": code}
    return {
        "info": {"trace_id": trace_id, "request_time": "2025-01-01T00:00:00Z"},
        "data": {"spans": [span]},
    }


def test_an_imported_unset_span_stays_unset_and_the_trace_is_ok(
    tracking: Path, tmp_path: Path
) -> None:
    unset, missing = tmp_path / "unset.json", tmp_path / "missing.json"
    unset.write_text(json.dumps(_document("UNSET", "tr-" + "b" * 32)))
    missing.write_text(json.dumps(_document(None, "tr-" + "c" * 32)))

    [trace_id] = localscorers.import_traces(unset)

    trace = localscorers.get_trace(trace_id)
    assert trace.info.status == "OK"
    assert [s.status for s in trace.data.spans] == ["UNSET"]
    assert localscorers.search_traces(filter_string="span.status = 'OK'") == []
    assert len(localscorers.search_traces(filter_string="span.status = 'UNSET'")) == 1
    # No status at all on an ended span is OK, as MLflow marks a span that ends cleanly.
    [other] = localscorers.import_traces(missing)
    assert [s.status for s in localscorers.get_trace(other).data.spans] == ["OK"]


def test_an_otlp_span_that_set_no_status_is_unset(tracking: Path) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(SpanExporter()))
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("root") as root:
        root.set_status(Status(StatusCode.OK))
        with tracer.start_as_current_span("plain"):
            pass
        trace_id = f"tr-{root.get_span_context().trace_id:032x}"
    provider.shutdown()

    statuses = {s.name: s.status for s in localscorers.get_trace(trace_id).data.spans}

    assert statuses == {"root": "OK", "plain": "UNSET"}
