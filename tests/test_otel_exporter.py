"""``localscorers.otel.SpanExporter``: the OpenTelemetry SDK writing straight into the store."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

import localscorers
from localscorers.exceptions import TraceNotFoundError
from localscorers.otel import SpanExporter
from tests.otlp_helpers import answered


def provider_with(exporter: SpanExporter, *, batch: bool = False) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": "bot"}))
    processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    return provider


def trace_id_of(span: object) -> str:
    return f"tr-{span.get_span_context().trace_id:032x}"  # type: ignore[attr-defined]


@pytest.mark.parametrize("batch", [False, True])
def test_spans_become_one_trace_when_the_root_ends(tracking: Path, batch: bool) -> None:
    provider = provider_with(SpanExporter(), batch=batch)
    tracer = provider.get_tracer("bot")
    with tracer.start_as_current_span("chat") as root:
        root.set_attribute("mlflow.spanType", json.dumps("AGENT"))
        root.set_attribute("mlflow.spanInputs", json.dumps({"messages": ["hi"]}))
        root.set_attribute("mlflow.spanOutputs", json.dumps({"reply": "hello"}))
        with tracer.start_as_current_span("search") as search:
            search.set_attribute("openinference.span.kind", "RETRIEVER")
            search.set_attribute("input.value", "hi")
            search.set_attribute("output.value", json.dumps([{"doc": 1}]))
            search.set_attribute("output.mime_type", "application/json")
            search.set_attribute("tags", ["a", "b"])
        with tracer.start_as_current_span("tool") as tool:
            tool.set_status(Status(StatusCode.ERROR, "timeout"))
        trace_id = trace_id_of(root)
        if not batch:  # children are exported as they end, before their root
            with pytest.raises(TraceNotFoundError):
                localscorers.get_trace(trace_id)
    provider.shutdown()
    trace = localscorers.get_trace(trace_id)
    assert trace.info.name == "chat"
    assert trace.info.status == "OK"
    assert trace.data.request == {"messages": ["hi"]}
    assert trace.data.response == {"reply": "hello"}
    assert trace.info.metadata["service.name"] == "bot"
    spans = {s.name: s for s in trace.data.spans}
    assert spans["chat"].span_type == "AGENT"
    assert spans["search"].span_type == "RETRIEVER"
    assert spans["search"].outputs == [{"doc": 1}]
    assert spans["search"].attributes["tags"] == ["a", "b"]
    assert spans["tool"].status == "ERROR"
    assert spans["tool"].status_message == "timeout"


def test_shutdown_writes_traces_whose_root_never_ended(tracking: Path) -> None:
    provider = provider_with(SpanExporter())
    tracer = provider.get_tracer("bot")
    root = tracer.start_span("never ends")
    with tracer.start_as_current_span("step", context=otel_trace.set_span_in_context(root)) as step:
        step.set_attribute("gen_ai.operation.name", "execute_tool")
        step.set_attribute("gen_ai.tool.call.arguments", json.dumps({"x": 1}))
        step.set_attribute("gen_ai.tool.call.result", json.dumps({"y": 2}))
    trace_id = trace_id_of(step)
    with pytest.raises(TraceNotFoundError):
        localscorers.get_trace(trace_id)
    provider.shutdown()
    trace = localscorers.get_trace(trace_id)
    assert trace.info.name == "step"
    assert trace.data.request == {"x": 1}
    assert trace.data.response == {"y": 2}
    assert trace.data.spans[0].span_type == "TOOL"
    assert trace.info.metadata["localscorers.otlp.missing_root"] == (
        f"{root.get_span_context().span_id:016x}"
    )


def test_traces_go_to_the_chosen_experiment_and_are_scored_online(tracking: Path) -> None:
    experiment = localscorers.set_experiment("otel")
    answered.register(name="answered").start()
    localscorers.set_experiment("elsewhere")
    provider = provider_with(SpanExporter(experiment_id=experiment.experiment_id))
    with provider.get_tracer("bot").start_as_current_span("q") as root:
        root.set_attribute("output.value", "yes")
        trace_id = trace_id_of(root)
    provider.shutdown()
    assert localscorers.flush(timeout=30)
    trace = localscorers.get_trace(trace_id)
    assert trace.info.experiment_id == experiment.experiment_id
    assert [(f.name, f.value) for f in trace.info.assessments] == [("answered", True)]


def test_an_unknown_experiment_fails_the_export_and_logs_why(
    tracking: Path, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = SpanExporter(experiment_id="404")
    provider = provider_with(exporter)
    with (
        caplog.at_level(logging.ERROR, logger="localscorers.otel"),
        provider.get_tracer("bot").start_as_current_span("lost"),
    ):
        pass
    provider.shutdown()
    assert "could not store 1 exported spans" in caplog.text
    assert "No experiment has id '404'" in caplog.text
