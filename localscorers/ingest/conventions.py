"""Span attribute conventions of instrumented apps, mapped onto our spans and traces.

Three conventions are read (the first that has a value wins, in this order):

* MLflow tracing: ``mlflow.spanType``, ``mlflow.spanInputs`` and ``mlflow.spanOutputs``.
  MLflow JSON-encodes every attribute value (the type ``LLM`` travels as ``"LLM"`` with
  its quotes), so the attributes of a span carrying any ``mlflow.`` key are decoded.
* OpenInference (Arize Phoenix, its instrumentors): ``openinference.span.kind``,
  ``input.value`` / ``output.value`` (with ``*.mime_type``), ``llm.model_name``,
  ``llm.token_count.*``, ``session.id``, ``user.id``, ``metadata``, ``tag.tags``.
* OpenTelemetry GenAI semantic conventions (and OpenLLMetry's older forms):
  ``gen_ai.operation.name``, ``gen_ai.input.messages`` / ``gen_ai.output.messages``,
  ``gen_ai.prompt`` / ``gen_ai.completion`` (also indexed, ``gen_ai.prompt.0.content``),
  ``gen_ai.tool.call.arguments`` / ``result``, ``gen_ai.request.model`` /
  ``gen_ai.response.model``, ``gen_ai.usage.*``, ``gen_ai.conversation.id``, and the
  ``gen_ai.*.message`` / ``gen_ai.choice`` events.

The attributes that became the span's type, inputs or outputs are removed from its
attributes; every other attribute is kept. The model and token usage are added in
MLflow's own keys (``mlflow.llm.model``, ``mlflow.chat.tokenUsage``), so the same
filters work whichever convention the app used.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from localscorers.models import Span, SpanStatus, TraceStatus

__all__ = [
    "MODEL_KEY",
    "SESSION_KEYS",
    "TOKEN_USAGE_KEY",
    "USER_KEYS",
    "RawSpan",
    "decoded",
    "first_value",
    "map_span",
]

MODEL_KEY = "mlflow.llm.model"
TOKEN_USAGE_KEY = "mlflow.chat.tokenUsage"  # noqa: S105 - a key, not a secret
#: Span or resource attributes that name the session (conversation), by convention.
SESSION_KEYS = (
    "mlflow.trace.session",
    "session.id",
    "gen_ai.conversation.id",
    "langfuse.session.id",
    "traceloop.association.properties.session_id",
)
#: Span or resource attributes that name the end user, by convention.
USER_KEYS = (
    "mlflow.trace.user",
    "user.id",
    "enduser.id",
    "langfuse.user.id",
    "traceloop.association.properties.user_id",
)

# OTLP status codes (opentelemetry.proto.trace.v1.Status.StatusCode).
# OTLP status codes: UNSET 0 stays UNSET (a real status, as in MLflow), OK 1, ERROR 2.
_STATUSES: dict[int, TraceStatus | SpanStatus] = {
    0: SpanStatus.UNSET,
    1: TraceStatus.OK,
    2: TraceStatus.ERROR,
}

# gen_ai.operation.name -> span type, as MLflow's GenAI translation maps them.
_GENAI_OPERATIONS = {
    "chat": "CHAT_MODEL",
    "text_completion": "LLM",
    "generate_content": "LLM",
    "embeddings": "EMBEDDING",
    "execute_tool": "TOOL",
    "invoke_agent": "AGENT",
    "create_agent": "AGENT",
}
_TRACELOOP_KINDS = {"workflow": "CHAIN", "task": "CHAIN", "agent": "AGENT", "tool": "TOOL"}
_TRACELOOP_REQUESTS = {"chat": "CHAT_MODEL", "completion": "LLM", "embedding": "EMBEDDING"}
_LLM_HINTS = ("gen_ai.system", "gen_ai.provider.name", "gen_ai.request.model", "llm.model_name")
_INDEXED = re.compile(r"^(gen_ai\.(?:prompt|completion))\.(\d+)\.(.+)$")
_INPUT_EVENTS = frozenset(
    {
        "gen_ai.system.message",
        "gen_ai.user.message",
        "gen_ai.assistant.message",
        "gen_ai.tool.message",
    }
)


@dataclass(frozen=True)
class RawSpan:
    """One OpenTelemetry span as received, before any convention is applied."""

    trace_id: str  # 32 lower-case hex digits
    span_id: str  # 16 lower-case hex digits
    parent_id: str | None
    name: str
    start_time_ns: int
    end_time_ns: int | None
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    status_code: int = 0  # UNSET 0, OK 1, ERROR 2
    status_message: str | None = None
    resource: dict[str, Any] = field(default_factory=dict)
    scope: str | None = None


def decoded(value: object) -> Any:  # noqa: ANN401 - JSON is untyped
    """Decode JSON text (how MLflow stores attribute values); other values as they are."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def first_value(attributes: Mapping[str, Any], keys: Sequence[str]) -> str | None:
    """Return the first non-empty value among ``keys``, as a string."""
    for key in keys:
        value = attributes.get(key)
        if value is not None and value != "":
            return value if isinstance(value, str) else json.dumps(value)
    return None


def map_span(raw: RawSpan) -> Span:
    """Map one received span onto a span of ours: type, inputs, outputs, model, usage."""
    attributes = dict(raw.attributes)
    if any(key.startswith("mlflow.") for key in attributes):
        attributes = {key: decoded(value) for key, value in attributes.items()}
    span_type = _span_type(attributes)
    inputs = _inputs(attributes, raw.events)
    outputs = _outputs(attributes, raw.events)
    model = first_value(
        attributes, (MODEL_KEY, "gen_ai.response.model", "gen_ai.request.model", "llm.model_name")
    )
    if model is not None:
        attributes[MODEL_KEY] = model
    usage = _token_usage(attributes)
    if usage is not None:
        attributes[TOKEN_USAGE_KEY] = usage
    if raw.scope:
        attributes.setdefault("otel.scope.name", raw.scope)
    return Span(
        span_id=raw.span_id,
        parent_id=raw.parent_id,
        name=raw.name,
        span_type=span_type,
        status=_STATUSES.get(raw.status_code, SpanStatus.UNSET),
        status_message=raw.status_message or None,
        start_time_ns=raw.start_time_ns,
        end_time_ns=raw.end_time_ns,
        inputs=inputs,
        outputs=outputs,
        attributes=attributes,
        events=raw.events,
    )


def _span_type(attributes: dict[str, Any]) -> str:  # noqa: PLR0911 - one return per convention
    mlflow_type = attributes.pop("mlflow.spanType", None)
    if isinstance(mlflow_type, str) and mlflow_type:
        return mlflow_type
    kind = attributes.get("openinference.span.kind")
    if isinstance(kind, str) and kind:
        return kind.upper()
    operation = attributes.get("gen_ai.operation.name")
    if isinstance(operation, str) and operation.lower() in _GENAI_OPERATIONS:
        return _GENAI_OPERATIONS[operation.lower()]
    request = attributes.get("llm.request.type")
    if isinstance(request, str) and request.lower() in _TRACELOOP_REQUESTS:
        return _TRACELOOP_REQUESTS[request.lower()]
    loop_kind = attributes.get("traceloop.span.kind")
    if isinstance(loop_kind, str) and loop_kind.lower() in _TRACELOOP_KINDS:
        return _TRACELOOP_KINDS[loop_kind.lower()]
    if any(key in attributes for key in _LLM_HINTS):
        return "LLM"
    return "UNKNOWN"


def _openinference_value(attributes: dict[str, Any], prefix: str) -> tuple[bool, Any]:
    if f"{prefix}.value" not in attributes:
        return False, None
    value = attributes.pop(f"{prefix}.value")
    mime = attributes.pop(f"{prefix}.mime_type", None)
    # OpenInference's default mime type is text/plain; JSON is decoded only when declared.
    if mime == "application/json" or (
        mime is None and isinstance(value, str) and value[:1] in ("{", "[")
    ):
        return True, decoded(value)
    return True, value


def _popped(attributes: dict[str, Any], keys: Sequence[str]) -> tuple[bool, Any]:
    for key in keys:
        if key in attributes:
            return True, decoded(attributes.pop(key))
    return False, None


def _indexed(attributes: dict[str, Any], prefix: str) -> list[dict[str, Any]] | None:
    """OpenLLMetry's ``gen_ai.prompt.0.role`` / ``gen_ai.prompt.0.content`` as messages."""
    messages: dict[int, dict[str, Any]] = {}
    for key in [k for k in attributes if k.startswith(prefix + ".")]:
        match = _INDEXED.match(key)
        if match and match.group(1) == prefix:
            messages.setdefault(int(match.group(2)), {})[match.group(3)] = attributes.pop(key)
    return [messages[i] for i in sorted(messages)] or None


def _event_messages(events: Sequence[Mapping[str, Any]], names: frozenset[str]) -> list[Any]:
    found = []
    for event in events:
        if event.get("name") in names:
            body = dict(event.get("attributes") or {})
            body.setdefault("role", str(event["name"]).split(".")[1])
            found.append(body)
    return found


@dataclass(frozen=True)
class _Side:
    """Where a span's inputs (or its outputs) may be, the first found winning."""

    mlflow_key: str  # mlflow.spanInputs
    openinference: str  # input: input.value with input.mime_type
    keys: tuple[str, ...]  # Traceloop's, then the GenAI conventions' own keys
    indexed: str  # OpenLLMetry's gen_ai.prompt.0.content...


_INPUTS = _Side(
    "mlflow.spanInputs",
    "input",
    (
        "traceloop.entity.input",
        "gen_ai.input.messages",
        "gen_ai.prompt",
        "gen_ai.tool.call.arguments",
    ),
    "gen_ai.prompt",
)
_OUTPUTS = _Side(
    "mlflow.spanOutputs",
    "output",
    (
        "traceloop.entity.output",
        "gen_ai.output.messages",
        "gen_ai.completion",
        "gen_ai.tool.call.result",
    ),
    "gen_ai.completion",
)


def _attribute_side(attributes: dict[str, Any], side: _Side) -> tuple[bool, Any]:
    # The tuple is built before the loop: every convention's keys are popped, so none of
    # them stays behind as a plain attribute.
    for found, value in (
        _popped(attributes, (side.mlflow_key,)),
        _openinference_value(attributes, side.openinference),
        _popped(attributes, side.keys),
    ):
        if found:
            return True, value
    indexed = _indexed(attributes, side.indexed)
    return indexed is not None, indexed


def _inputs(attributes: dict[str, Any], events: Sequence[Mapping[str, Any]]) -> Any:  # noqa: ANN401
    found, value = _attribute_side(attributes, _INPUTS)
    return value if found else _event_messages(events, _INPUT_EVENTS) or None


def _outputs(attributes: dict[str, Any], events: Sequence[Mapping[str, Any]]) -> Any:  # noqa: ANN401
    found, value = _attribute_side(attributes, _OUTPUTS)
    if found:
        return value
    choices = _event_messages(events, frozenset({"gen_ai.choice"}))
    return (choices[0] if len(choices) == 1 else choices) or None


def _count(attributes: Mapping[str, Any], keys: Sequence[str]) -> int | None:
    for key in keys:
        value = attributes.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            return int(value)
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
    return None


def _token_usage(attributes: Mapping[str, Any]) -> dict[str, int] | None:
    existing = attributes.get(TOKEN_USAGE_KEY)
    if isinstance(existing, dict):
        return existing
    prompt = _count(
        attributes,
        ("llm.token_count.prompt", "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"),
    )
    completion = _count(
        attributes,
        (
            "llm.token_count.completion",
            "gen_ai.usage.output_tokens",
            "gen_ai.usage.completion_tokens",
        ),
    )
    total = _count(attributes, ("llm.token_count.total", "llm.usage.total_tokens"))
    if prompt is None and completion is None and total is None:
        return None
    usage = {"input_tokens": prompt or 0, "output_tokens": completion or 0}
    usage["total_tokens"] = (
        total if total is not None else usage["input_tokens"] + usage["output_tokens"]
    )
    return usage
