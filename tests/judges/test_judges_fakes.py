"""Fake model servers on 127.0.0.1 for the judge tests: no network, real HTTP.

Each server is an ``http.server`` on a thread with a free port; a ``behave`` function
decides the answer of each request (``Call`` -> ``Answer``), and every request is kept.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Call:
    """One request the server received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Answer:
    """What to send back."""

    status: int = 200
    body: Any = None
    hang: bool = False


@dataclass
class FakeServer:
    """A running fake: its root URL and the requests it got."""

    behave: Callable[[Call], Answer]
    url: str = ""
    calls: list[Call] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


class _Http(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeServer


class _Handler(BaseHTTPRequestHandler):
    server: _Http

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        call = Call(self.path, {k.lower(): v for k, v in self.headers.items()}, json.loads(raw))
        fake = self.server.fake
        fake.calls.append(call)
        answer = fake.behave(call)
        if answer.hang:
            fake.release.wait(timeout=10)
            return
        payload = json.dumps(answer.body).encode()
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve(behave: Callable[[Call], Answer]) -> Iterator[FakeServer]:
    """Run a fake server until the block ends."""
    fake = FakeServer(behave)
    server = _Http(("127.0.0.1", 0), _Handler)
    server.fake = fake
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        fake.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# -- behaviours -------------------------------------------------------------------------------

PROSE = (
    "Sure! Let me think about this response. It seems to talk about the capital of "
    "France, which is a city in Europe. Many people visit Paris every year"
)


def chat_completion(content: str, *, prompt_tokens: int = 40, completion_tokens: int = 9) -> Any:
    """An OpenAI chat-completions answer."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def schema_of(body: dict[str, Any]) -> dict[str, Any] | None:
    """The answer schema a request asked for, in any of the response_format forms."""
    form = body.get("response_format")
    if not isinstance(form, dict):
        return None
    schema: dict[str, Any] | None
    if form.get("type") == "json_schema":
        schema = form["json_schema"]["schema"]
    else:
        schema = form.get("schema")
    return schema


def verdict_for(schema: dict[str, Any] | None) -> Any:
    """A valid result under a result schema (the first choice, or a value of its type)."""
    result = (schema or {}).get("properties", {}).get("result", {})
    if "enum" in result:
        return result["enum"][0]
    return {"boolean": True, "integer": 4, "number": 0.5}.get(result.get("type", ""), "yes")


def small_base_model(call: Call) -> Answer:
    """Like a tiny model: JSON only when decoding is constrained; endless without a cap.

    With ``response_format`` it answers the schema's JSON. Without it, it rambles in
    prose with no verdict. Without ``max_tokens`` it never finishes (the request hangs
    until the client gives up), as a small model generating thousands of tokens does.
    """
    body = call.body
    if "max_tokens" not in body:
        return Answer(hang=True)
    schema = schema_of(body)
    if schema is not None:
        content = json.dumps({"rationale": "The response is fine.", "result": verdict_for(schema)})
        return Answer(body=chat_completion(content))
    words = PROSE.split()
    return Answer(body=chat_completion(" ".join(words[: body["max_tokens"]])))


def rejects_response_format(verdict: str = "Yes.") -> Callable[[Call], Answer]:
    """A server that answers HTTP 400 to any response_format, and prose otherwise."""

    def behave(call: Call) -> Answer:
        if "response_format" in call.body:
            return Answer(
                400, {"error": {"message": "Unrecognized request argument: response_format"}}
            )
        return Answer(body=chat_completion(verdict))

    return behave


def json_object_only(call: Call) -> Answer:
    """Like llama-cpp-python's server: only ``{"type": "json_object", "schema": ...}``.

    Any other ``response_format`` fails its request validation (HTTP 422).
    """
    form = call.body.get("response_format")
    if isinstance(form, dict) and form.get("type") != "json_object":
        return Answer(422, {"detail": [{"msg": "Input should be 'text' or 'json_object'"}]})
    schema = schema_of(call.body)
    content = json.dumps({"rationale": "ok", "result": verdict_for(schema)})
    return Answer(body=chat_completion(content))


def json_object_only_500(call: Call) -> Answer:
    """llama-cpp-python 0.3.36 as it really answers: its validation error is an HTTP 500."""
    form = call.body.get("response_format")
    if isinstance(form, dict) and form.get("type") != "json_object":
        detail = (
            "1 validation error: {'type': 'literal_error', 'loc': ('body', 'response_format', "
            "'type'), 'msg': \"Input should be 'text' or 'json_object'\"}"
        )
        return Answer(500, {"error": {"message": detail, "type": "internal_server_error"}})
    return json_object_only(call)


def anthropic_messages(  # noqa: PLR0911 - one return per refusal, as the API has
    call: Call, *, key: str = "sk-ant-test", tools: bool = True
) -> Answer:
    """Like the Anthropic Messages API: auth, version header, system field, forced tool."""
    if call.path != "/v1/messages":
        return Answer(404, {"type": "error", "error": {"type": "not_found_error", "message": "no"}})
    if call.headers.get("x-api-key") != key:
        return Answer(
            401,
            {
                "type": "error",
                "error": {"type": "authentication_error", "message": "invalid x-api-key"},
            },
        )
    body = call.body
    if call.headers.get("anthropic-version") != "2023-06-01" or "max_tokens" not in body:
        return Answer(
            400, {"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}}
        )
    if any(m["role"] == "system" for m in body["messages"]):
        return Answer(
            400,
            {"type": "error", "error": {"type": "invalid_request_error", "message": "system role"}},
        )
    usage = {"input_tokens": 120, "output_tokens": 25}
    if "tools" in body:
        if not tools:
            return Answer(
                400,
                {"type": "error", "error": {"type": "invalid_request_error", "message": "tools"}},
            )
        tool = body["tools"][0]
        content = [
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": tool["name"],
                "input": {"rationale": "Safe text.", "result": verdict_for(tool["input_schema"])},
            }
        ]
        return Answer(
            body={"type": "message", "role": "assistant", "content": content, "usage": usage}
        )
    text = [{"type": "text", "text": '{"rationale": "plain", "result": "no"}'}]
    return Answer(body={"type": "message", "role": "assistant", "content": text, "usage": usage})


def ollama_chat(call: Call, *, schemas: bool = True) -> Answer:
    """Like Ollama's /api/chat: format=<schema> (0.5+) or "json"; unknown models are 404."""
    if call.path != "/api/chat":
        return Answer(404, {"error": "404 page not found"})
    body = call.body
    if body.get("model") != "llama3.2:1b":
        return Answer(404, {"error": f"model '{body.get('model')}' not found"})
    fmt = body.get("format")
    if isinstance(fmt, dict) and not schemas:
        return Answer(400, {"error": 'invalid format: expected "json"'})
    if fmt is None:
        content = "Yes."
    else:
        schema = fmt if isinstance(fmt, dict) else None
        content = json.dumps({"rationale": "fine", "result": verdict_for(schema)})
    return Answer(
        body={
            "model": body["model"],
            "message": {"role": "assistant", "content": content},
            "done": True,
            "prompt_eval_count": 33,
            "eval_count": 12,
        }
    )
