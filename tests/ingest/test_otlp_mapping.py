"""Attribute conventions onto spans and traces: MLflow, OpenInference, OTel GenAI, OpenLLMetry.

Spans go through ``localscorers.otel.SpanExporter``, the same mapping and assembly as
``POST /v1/traces``; the protobuf decoding is checked with the OTLP classes directly.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

import localscorers
from localscorers.exceptions import ConfigurationError
from localscorers.ingest import decode_json, decode_protobuf
from localscorers.models import Trace
from localscorers.otel import SpanExporter
from tests.otlp_helpers import json_body, json_span

Attrs = dict[str, Any]


def traced(
    root_attrs: Attrs,
    *children: tuple[str, Attrs],
    resource: Attrs | None = None,
    events: Callable[[Any], None] | None = None,
) -> Trace:
    """Record a root span with children through the SDK and return the trace written."""
    provider = TracerProvider(resource=Resource.create(resource or {}))
    provider.add_span_processor(SimpleSpanProcessor(SpanExporter()))
    tracer = provider.get_tracer("mapping")
    with tracer.start_as_current_span("root", attributes=root_attrs) as root:
        for name, attrs in children:
            with tracer.start_as_current_span(name, attributes=attrs) as child:
                if events is not None:
                    events(child)
        trace_id = f"tr-{root.get_span_context().trace_id:032x}"
    provider.shutdown()
    return localscorers.get_trace(trace_id)


def child(trace: Trace, name: str = "child") -> Any:
    return next(s for s in trace.data.spans if s.name == name)


def test_mlflow_attributes_are_json_decoded(tracking: Path) -> None:
    trace = traced(
        {
            "mlflow.spanType": json.dumps("CHAIN"),
            "mlflow.spanInputs": json.dumps({"q": "hi"}),
            "mlflow.spanOutputs": json.dumps(["a", 1]),
            "mlflow.spanFunctionName": json.dumps("answer"),
            "mlflow.chat.tokenUsage": json.dumps({"input_tokens": 3, "output_tokens": 4}),
        }
    )
    root = trace.data.spans[0]
    assert (root.span_type, root.inputs, root.outputs) == ("CHAIN", {"q": "hi"}, ["a", 1])
    assert root.attributes["mlflow.spanFunctionName"] == "answer"
    assert "mlflow.spanInputs" not in root.attributes
    assert json.loads(trace.info.metadata["mlflow.trace.tokenUsage"]) == {
        "input_tokens": 3,
        "output_tokens": 4,
    }


def test_openinference_attributes(tracking: Path) -> None:
    trace = traced(
        {
            "openinference.span.kind": "AGENT",
            "input.value": "plain text",
            "output.value": json.dumps({"answer": 4}),
            "output.mime_type": "application/json",
            "metadata": json.dumps({"tenant": "acme", "tier": 2}),
            "tag.tags": ["beta", "eu"],
        },
        (
            "child",
            {
                "openinference.span.kind": "LLM",
                "llm.model_name": "llama-3",
                "llm.token_count.prompt": 10,
                "llm.token_count.completion": 5,
                "llm.token_count.total": 15,
                "input.value": '{"looks": "like json"}',
                "session.id": "sess-42",
                "user.id": "alice",
            },
        ),
    )
    root, llm = trace.data.spans[0], child(trace)
    assert (root.span_type, root.inputs, root.outputs) == ("AGENT", "plain text", {"answer": 4})
    assert trace.info.metadata["tenant"] == "acme"
    assert trace.info.metadata["tier"] == "2"
    assert trace.info.tags == {"beta": "true", "eu": "true"}
    # session.id and user.id set on a child span reach the trace's metadata.
    assert trace.info.metadata["mlflow.trace.session"] == "sess-42"
    assert trace.info.metadata["mlflow.trace.user"] == "alice"
    assert llm.span_type == "LLM"
    assert llm.inputs == {"looks": "like json"}  # no mime type, but JSON-shaped
    assert llm.attributes["mlflow.llm.model"] == "llama-3"
    assert llm.attributes["mlflow.chat.tokenUsage"] == {
        "input_tokens": 10,
        "output_tokens": 5,
        "total_tokens": 15,
    }
    assert llm.attributes["llm.token_count.total"] == 15  # kept as it came


def test_genai_attributes_and_events(tracking: Path) -> None:
    def add_events(span: Any) -> None:
        span.add_event("gen_ai.system.message", {"content": "be brief"})
        span.add_event("gen_ai.user.message", {"content": "hi"})
        span.add_event("gen_ai.choice", {"index": 0, "message": "hello"})

    trace = traced(
        {"gen_ai.conversation.id": "conv-1", "enduser.id": "bob"},
        (
            "child",
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.response.model": "gpt-4o-2024",
                "gen_ai.usage.input_tokens": 7,
                "gen_ai.usage.output_tokens": 2,
            },
        ),
        (
            "messages",
            {
                "gen_ai.operation.name": "text_completion",
                "gen_ai.input.messages": json.dumps([{"role": "user", "content": "x"}]),
                "gen_ai.output.messages": json.dumps([{"role": "assistant", "content": "y"}]),
            },
        ),
        (
            "indexed",
            {
                "gen_ai.system": "openai",
                "gen_ai.prompt.0.role": "user",
                "gen_ai.prompt.0.content": "first",
                "gen_ai.prompt.1.role": "user",
                "gen_ai.prompt.1.content": "second",
                "gen_ai.completion.0.content": "done",
            },
        ),
        ("embed", {"gen_ai.operation.name": "embeddings"}),
        ("agent", {"gen_ai.operation.name": "invoke_agent"}),
        events=add_events,
    )
    chat = child(trace)
    assert chat.span_type == "CHAT_MODEL"
    assert chat.attributes["mlflow.llm.model"] == "gpt-4o-2024"
    assert chat.attributes["mlflow.chat.tokenUsage"]["total_tokens"] == 9
    assert chat.inputs == [
        {"content": "be brief", "role": "system"},
        {"content": "hi", "role": "user"},
    ]
    assert chat.outputs == {"index": 0, "message": "hello", "role": "choice"}
    messages = child(trace, "messages")
    assert messages.span_type == "LLM"
    assert messages.inputs == [{"role": "user", "content": "x"}]
    assert messages.outputs == [{"role": "assistant", "content": "y"}]
    indexed = child(trace, "indexed")
    assert indexed.span_type == "LLM"
    assert indexed.inputs == [
        {"role": "user", "content": "first"},
        {"role": "user", "content": "second"},
    ]
    assert indexed.outputs == [{"content": "done"}]
    assert child(trace, "embed").span_type == "EMBEDDING"
    assert child(trace, "agent").span_type == "AGENT"
    assert trace.info.metadata["mlflow.trace.session"] == "conv-1"
    assert trace.info.metadata["mlflow.trace.user"] == "bob"


def test_openllmetry_attributes_and_unknown_spans(tracking: Path) -> None:
    trace = traced(
        {
            "traceloop.span.kind": "workflow",
            "traceloop.entity.input": json.dumps({"inputs": {"city": "Paris"}}),
            "traceloop.entity.output": json.dumps({"outputs": "sunny"}),
            "traceloop.association.properties.session_id": "tl-s",
        },
        ("child", {"llm.request.type": "chat", "llm.usage.total_tokens": 8}),
        ("plain", {"http.method": "GET"}),
        resource={"service.name": "weather", "user.id": "from-resource"},
    )
    root = trace.data.spans[0]
    assert root.span_type == "CHAIN"
    assert root.inputs == {"inputs": {"city": "Paris"}}
    assert trace.data.response == {"outputs": "sunny"}
    assert trace.info.metadata["mlflow.trace.session"] == "tl-s"
    assert trace.info.metadata["mlflow.trace.user"] == "from-resource"
    assert trace.info.metadata["service.name"] == "weather"
    assert child(trace).span_type == "CHAT_MODEL"
    assert child(trace).attributes["mlflow.chat.tokenUsage"]["total_tokens"] == 8
    plain = child(trace, "plain")
    assert (plain.span_type, plain.inputs, plain.outputs) == ("UNKNOWN", None, None)
    assert plain.attributes["http.method"] == "GET"


def test_protobuf_and_json_bodies_decode_alike() -> None:
    body = json_body(
        json_span("ab" * 16, "cd" * 8, "root", attributes={"n": 3, "ok": True, "f": 0.5}),
        json_span("ab" * 16, "ef" * 8, "child", parent="cd" * 8, attributes={"l": ["x", 1]}),
    )
    from_json = decode_json(body)
    from_protobuf = decode_protobuf(_as_protobuf(body))
    assert from_json == from_protobuf
    root, second = from_json.spans
    assert root.attributes == {"n": 3, "ok": True, "f": 0.5}
    assert second.attributes == {"l": ["x", 1]}
    assert second.parent_id == "cd" * 8
    assert root.resource == {"service.name": "app"}


def _as_protobuf(body: bytes) -> bytes:
    """The same request as protobuf: protobuf JSON wants ids in base64, OTLP JSON in hex."""
    document = json.loads(body)
    for resource_spans in document["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    message = json_format.ParseDict(document, ExportTraceServiceRequest())
    return message.SerializeToString()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\x00\x01", "not JSON"),
        (b'"text"', "must be an object with 'resourceSpans', got str"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": 5}]}]}]}', "not an OTLP JSON"),
    ],
)
def test_malformed_json_bodies_say_why(body: bytes, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        decode_json(body)


def test_a_malformed_protobuf_body_says_why() -> None:
    with pytest.raises(ConfigurationError, match="not an OTLP protobuf ExportTraceServiceRequest"):
        decode_protobuf(b"\x0a\xff\xff\xff\xff")
