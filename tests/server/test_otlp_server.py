"""POST /v1/traces against real clients: the OpenTelemetry SDK's OTLP exporter and JSON bodies.

The app runs on uvicorn in a thread on a free loopback port, over the test's database.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
from pathlib import Path

import httpx
import pytest
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import localscorers
from localscorers import ScorerSamplingConfig
from localscorers.exceptions import TraceNotFoundError
from localscorers.server import ServerSettings
from localscorers.store import deferred_indexes
from tests.otlp_helpers import answered, json_body, json_span, post_json, serve, wait_until

TRACE = "5b8efff798038103d269b633813fc60c"
ROOT, CHILD, GRANDCHILD = "eee19b7ec3c1b174", "eee19b7ec3c1b173", "eee19b7ec3c1b172"
T0 = 1_700_000_000_000_000_000


def message(response: httpx.Response) -> str:
    """The reason of a refusal: a google.rpc.Status for OTLP requests, else text."""
    if response.headers["content-type"] == "application/json":
        return str(response.json()["message"])
    if response.headers["content-type"] == "application/x-protobuf":
        return Status.FromString(response.content).message
    return response.text


def trace_exists(trace_id: str) -> bool:
    try:
        localscorers.get_trace(trace_id)
    except TraceNotFoundError:
        return False
    return True


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_the_sdk_exporter_delivers_whole_traces(tracking: Path, compression: Compression) -> None:
    with serve() as url:
        provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
        exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces", compression=compression)
        provider.add_span_processor(BatchSpanProcessor(exporter))
        tracer = provider.get_tracer("shop.app")
        with tracer.start_as_current_span("answer") as root:
            root.set_attribute("openinference.span.kind", "CHAIN")
            root.set_attribute("input.value", json.dumps({"question": "What is 2+2?"}))
            root.set_attribute("input.mime_type", "application/json")
            root.set_attribute("session.id", "s-1")
            root.set_attribute("user.id", "u-7")
            with tracer.start_as_current_span("retrieve") as retrieve:
                retrieve.set_attribute("openinference.span.kind", "RETRIEVER")
                retrieve.set_attribute("input.value", "2+2")
            with tracer.start_as_current_span("chat gpt-x") as llm:
                llm.set_attribute("gen_ai.operation.name", "chat")
                llm.set_attribute("gen_ai.request.model", "gpt-x")
                llm.set_attribute("gen_ai.usage.input_tokens", 12)
                llm.set_attribute("gen_ai.usage.output_tokens", 3)
                llm.set_attribute("custom.flag", True)
            root.set_attribute("output.value", "4")
            trace_id = f"tr-{root.get_span_context().trace_id:032x}"
        assert provider.force_flush(10_000)
        provider.shutdown()
        trace = localscorers.get_trace(trace_id)
    assert trace.info.name == "answer"
    assert trace.data.request == {"question": "What is 2+2?"}
    assert trace.data.response == "4"
    assert trace.info.metadata["mlflow.trace.session"] == "s-1"
    assert trace.info.metadata["mlflow.trace.user"] == "u-7"
    assert trace.info.metadata["service.name"] == "shop"
    assert json.loads(trace.info.metadata["mlflow.trace.tokenUsage"]) == {
        "input_tokens": 12,
        "output_tokens": 3,
        "total_tokens": 15,
    }
    spans = {s.name: s for s in trace.data.spans}
    assert set(spans) == {"answer", "retrieve", "chat gpt-x"}
    assert spans["answer"].parent_id is None
    assert spans["retrieve"].parent_id == spans["answer"].span_id
    assert spans["retrieve"].span_type == "RETRIEVER"
    assert spans["retrieve"].inputs == "2+2"
    chat = spans["chat gpt-x"]
    assert chat.span_type == "CHAT_MODEL"
    assert chat.attributes["mlflow.llm.model"] == "gpt-x"
    assert chat.attributes["custom.flag"] is True
    assert chat.attributes["mlflow.chat.tokenUsage"]["total_tokens"] == 15


def test_a_trace_sent_in_two_requests_is_written_when_its_root_arrives(tracking: Path) -> None:
    child = json_span(TRACE, CHILD, "llm", parent=ROOT, start=T0 + 10)
    grandchild = json_span(TRACE, GRANDCHILD, "tool", parent=CHILD, start=T0 + 20)
    root = json_span(
        TRACE,
        ROOT,
        "agent",
        start=T0,
        end=T0 + 2_000_000_000,
        attributes={
            "mlflow.spanType": json.dumps("AGENT"),
            "mlflow.spanInputs": json.dumps({"q": "hi"}),
            "mlflow.spanOutputs": json.dumps("hello"),
        },
    )
    with serve() as url:
        first = post_json(url, json_body(child, grandchild))
        assert first.status_code == 200
        assert first.headers["content-type"] == "application/json"
        assert first.json() == {}
        assert not trace_exists(f"tr-{TRACE}")
        assert post_json(url, json_body(root)).status_code == 200
        trace = localscorers.get_trace(f"tr-{TRACE}")
    assert [s.name for s in trace.data.spans] == ["agent", "llm", "tool"]
    assert trace.data.spans[0].span_type == "AGENT"
    assert trace.data.request == {"q": "hi"}
    assert trace.data.response == "hello"
    assert trace.info.execution_duration_ms == 2000
    assert trace.info.request_time.timestamp() == T0 / 1e9
    assert "mlflow.spanType" not in trace.data.spans[0].attributes


def test_a_trace_whose_root_never_comes_is_written_after_the_grace_period(
    tracking: Path,
) -> None:
    early = json_span(TRACE, CHILD, "first", parent=ROOT, start=T0 + 5, error=True)
    late = json_span(TRACE, GRANDCHILD, "second", parent=ROOT, start=T0 + 9)
    with serve(ServerSettings(trace_timeout_seconds=0.3)) as url:
        assert post_json(url, json_body(late, early)).status_code == 200
        wait_until(lambda: trace_exists(f"tr-{TRACE}"))
        trace = localscorers.get_trace(f"tr-{TRACE}")
    assert trace.info.name == "first"  # the earliest span stands in for the root
    assert trace.info.status == "ERROR"
    assert trace.info.metadata["localscorers.otlp.missing_root"] == ROOT
    assert trace.data.spans[0].parent_id is None
    assert trace.data.spans[1].parent_id == ROOT


def test_a_retried_request_and_a_late_span_are_kept_once(tracking: Path) -> None:
    child = json_span(TRACE, CHILD, "child", parent=ROOT, start=T0 + 1)
    body = json_body(json_span(TRACE, ROOT, "root", start=T0), child)
    with serve() as url:
        assert post_json(url, json_body(child)).status_code == 200  # waits for its root
        assert post_json(url, json_body(child)).status_code == 200  # the client retried
        assert post_json(url, body).status_code == 200  # the root, and the child again
        assert post_json(url, body).status_code == 200  # the client retried
        late = json_span(TRACE, GRANDCHILD, "late", parent=CHILD, start=T0 + 2)
        assert post_json(url, json_body(late)).status_code == 200
        assert post_json(url, json_body(late)).status_code == 200
    trace = localscorers.get_trace(f"tr-{TRACE}")
    assert [s.name for s in trace.data.spans] == ["root", "child", "late"]


def test_a_late_spans_text_is_found_once_the_trace_was_indexed(
    tracking: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every content search first indexes what is new (store.deferred_indexes): the late span
    # must reach the index as part of its trace's document written again.
    monkeypatch.setattr(deferred_indexes, "CATCH_UP_AFTER", 0)
    content = "span.content LIKE '%zebra crossing%'"
    body = json_body(json_span(TRACE, ROOT, "root", start=T0), json_span(TRACE, CHILD, "child",
                     parent=ROOT, start=T0 + 1))  # fmt: skip
    with serve() as url:
        assert post_json(url, body).status_code == 200
        assert localscorers.search_traces(filter_string=content) == []  # indexed now
        late = json_span(TRACE, GRANDCHILD, "zebra crossing", parent=CHILD, start=T0 + 2)
        assert post_json(url, json_body(late)).status_code == 200
    found = localscorers.search_traces(filter_string=content)
    assert [t.info.trace_id for t in found] == [f"tr-{TRACE}"]
    with sqlite3.connect(tracking) as conn:  # read from the index, not as a new span
        state = conn.execute("SELECT span_upto FROM deferred_index_state").fetchone()
        assert state == conn.execute("SELECT max(rowid) FROM spans").fetchone()


def test_invalid_spans_are_rejected_with_partial_success(tracking: Path) -> None:
    good = json_span(TRACE, ROOT, "good")
    bad_trace = json_span("0" * 32, CHILD, "zero trace id")
    bad_span = json_span(TRACE, "abc", "short span id", parent=ROOT)
    with serve() as url:
        response = post_json(url, json_body(good, bad_trace, bad_span))
        request = ExportTraceServiceRequest()
        request.ParseFromString(b"")
        protobuf = httpx.post(
            f"{url}/v1/traces",
            content=request.SerializeToString(),
            headers={"Content-Type": "application/x-protobuf"},
        )
    assert response.status_code == 200
    partial = response.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "2"
    assert "zero trace id" in partial["errorMessage"]
    assert "short span id" in partial["errorMessage"]
    assert [s.name for s in localscorers.get_trace(f"tr-{TRACE}").data.spans] == ["good"]
    assert protobuf.status_code == 200
    assert protobuf.headers["content-type"] == "application/x-protobuf"
    answer = ExportTraceServiceResponse()
    answer.ParseFromString(protobuf.content)
    assert not answer.HasField("partial_success")


def test_bad_requests_get_a_clear_4xx(tracking: Path) -> None:
    body = json_body(json_span(TRACE, ROOT, "root"))
    bomb = gzip.compress(b"{" + b" " * 200_000 + b"}")
    with serve(ServerSettings(max_body_bytes=100_000)) as url:
        traces = f"{url}/v1/traces"
        cases = [
            (httpx.post(traces, content=body, headers={"Content-Type": "text/plain"}), 415),
            (
                post_json(url, body, **{"Content-Encoding": "br"}),
                415,
            ),
            (post_json(url, b"{not json"), 400),
            (post_json(url, b"[1, 2]"), 400),
            (post_json(url, b'{"resourceSpans": 7}'), 400),
            (
                httpx.post(
                    traces,
                    content=b"\xff\xff\xff",
                    headers={"Content-Type": "application/x-protobuf"},
                ),
                400,
            ),
            (post_json(url, b"not gzip", **{"Content-Encoding": "gzip"}), 400),
            (post_json(url, b"x" * 100_001), 413),
            (post_json(url, bomb, **{"Content-Encoding": "gzip"}), 413),
        ]
        messages = [(response.status_code, message(response)) for response, _ in cases]
    assert [status for status, _ in messages] == [expected for _, expected in cases]
    assert "Content-Type 'text/plain' is not supported" in messages[0][1]
    assert "application/x-protobuf or application/json" in messages[0][1]
    assert "Content-Encoding 'br' is not supported" in messages[1][1]
    assert "not JSON" in messages[2][1]
    assert "must be an object" in messages[3][1]
    assert "not an OTLP JSON trace request" in messages[4][1]
    assert "not an OTLP protobuf ExportTraceServiceRequest" in messages[5][1]
    assert "not valid gzip" in messages[6][1]
    assert "larger than 100000 bytes" in messages[7][1]
    assert "larger than 100000 bytes" in messages[8][1]
    # OTLP clients get a google.rpc.Status with the gRPC code; others plain text.
    assert cases[7][0].json()["code"] == 8  # RESOURCE_EXHAUSTED
    assert Status.FromString(cases[5][0].content).code == 3  # INVALID_ARGUMENT
    assert cases[0][0].headers["content-type"].startswith("text/plain")


def test_a_token_is_required_when_set(tracking: Path) -> None:
    body = json_body(json_span(TRACE, ROOT, "root"))
    with serve(ServerSettings(token="s3cret")) as url:  # noqa: S106 - a test token
        missing = httpx.post(
            f"{url}/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"}
        )
        wrong = post_json(url, body, Authorization="Bearer nope")
        right = post_json(url, body, Authorization="Bearer s3cret")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer <token>" in message(missing)
    assert Status.FromString(missing.content).code == 16  # UNAUTHENTICATED
    assert wrong.status_code == 401
    assert right.status_code == 200
    assert trace_exists(f"tr-{TRACE}")


def test_the_experiment_comes_from_the_headers_else_the_active_one(tracking: Path) -> None:
    named = localscorers.set_experiment("by-id")
    active = localscorers.set_experiment("active")

    def body(n: int) -> bytes:
        return json_body(json_span(f"{n:032x}", ROOT, f"t{n}"))

    with serve() as url:
        by_id = post_json(url, body(1), **{"x-mlflow-experiment-id": named.experiment_id})
        by_name = post_json(url, body(2), **{"x-localscorers-experiment": "created by header"})
        default = post_json(url, body(3))
        unknown = post_json(url, body(4), **{"x-mlflow-experiment-id": "999"})
    assert (by_id.status_code, by_name.status_code, default.status_code) == (200, 200, 200)
    created = localscorers.get_experiment_by_name("created by header")
    assert created is not None
    assert localscorers.get_trace(f"tr-{1:032x}").info.experiment_id == named.experiment_id
    assert localscorers.get_trace(f"tr-{2:032x}").info.experiment_id == created.experiment_id
    assert localscorers.get_trace(f"tr-{3:032x}").info.experiment_id == active.experiment_id
    assert unknown.status_code == 404
    assert "No experiment has id '999'" in unknown.json()["message"]
    assert not trace_exists(f"tr-{4:032x}")


def test_received_traces_are_scored_online(tracking: Path) -> None:
    answered.register(name="answered").start(sampling_config=ScorerSamplingConfig(sample_rate=1.0))
    root = json_span(TRACE, ROOT, "root", attributes={"output.value": "fine"})
    with serve() as url:
        assert post_json(url, json_body(root)).status_code == 200
        assert localscorers.flush(timeout=30)
    feedback = localscorers.get_trace(f"tr-{TRACE}").info.assessments
    assert [(f.name, f.value) for f in feedback] == [("answered", True)]


def test_a_large_batch_of_traces_in_two_requests(tracking: Path) -> None:
    ids = [f"{n + 1:032x}" for n in range(600)]  # more than one IN (...) chunk of ids
    children = [json_span(t, CHILD, "child", parent=ROOT, start=T0 + 1) for t in ids]
    roots = [json_span(t, ROOT, "root", start=T0) for t in ids]
    with serve() as url:
        assert post_json(url, json_body(*children)).status_code == 200
        assert post_json(url, json_body(*roots)).status_code == 200
    traces = localscorers.search_traces()
    assert len(traces) == 600
    assert {len(t.data.spans) for t in traces} == {2}
