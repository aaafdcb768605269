"""OTLP trace requests into traces: decoding, trace assembly and the grace period.

Shared by the server's ``POST /v1/traces`` and by ``localscorers.otel.SpanExporter``:
both turn spans into :class:`~localscorers.ingest.conventions.RawSpan`, then an
:class:`Assembler` maps them (``conventions``), buffers them durably in the pending
spans table, and writes each trace once its root span has arrived, or once no span of
it arrived for the grace period (then the earliest span without its parent is the root).

Trace ids are ``"tr-"`` followed by the OpenTelemetry trace id in hex, as MLflow names
the traces it exports, so an id printed by the app finds its trace here.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from localscorers import _clock
from localscorers.exceptions import ConfigurationError
from localscorers.ingest import conventions
from localscorers.ingest.conventions import RawSpan
from localscorers.models import TraceStatus
from localscorers.store.pending_spans import PendingSpan
from localscorers.store.rows import TraceRecord

if TYPE_CHECKING:
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

    from localscorers.store import SpanBuffer

__all__ = [
    "MISSING_ROOT_KEY",
    "Assembler",
    "Decoded",
    "build_record",
    "decode_json",
    "decode_protobuf",
    "response_body",
    "trace_id_of",
]

#: Trace metadata set on a trace written without its root span: the root's missing id.
MISSING_ROOT_KEY = "localscorers.otlp.missing_root"
_SESSION_METADATA = "mlflow.trace.session"
_USER_METADATA = "mlflow.trace.user"
_TOKEN_USAGE_METADATA = "mlflow.trace.tokenUsage"  # noqa: S105 - a key, not a secret
_HEX_ID = re.compile(r"[0-9a-fA-F]{16}|[0-9a-fA-F]{32}")
_ID_KEYS = ("traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id")
_MAX_ERRORS = 5  # messages kept for the partial-success answer


@dataclass(frozen=True)
class Decoded:
    """The spans of one OTLP request, and those rejected with why."""

    spans: list[RawSpan]
    rejected: int
    errors: list[str]


def trace_id_of(otel_trace_id: str) -> str:
    """Return our trace id for an OpenTelemetry trace id (32 hex digits)."""
    return f"tr-{otel_trace_id.lower()}"


# -- decoding --------------------------------------------------------------------------


def decode_protobuf(body: bytes) -> Decoded:
    """Decode an OTLP/HTTP protobuf ``ExportTraceServiceRequest``.

    Raises:
        ConfigurationError: the body is not such a message.
    """
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise ConfigurationError(
            f"The body is not an OTLP protobuf ExportTraceServiceRequest ({exc}). "
            "Send Content-Type: application/json for OTLP JSON."
        ) from exc
    return _spans_of(request)


def decode_json(body: bytes) -> Decoded:
    """Decode an OTLP/HTTP JSON ``ExportTraceServiceRequest`` (ids in hex, as OTLP says).

    Raises:
        ConfigurationError: the body is not such a document.
    """
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"The body is not JSON: {exc}.") from exc
    if not isinstance(document, dict):
        raise ConfigurationError(
            "An OTLP JSON body must be an object with 'resourceSpans', got "
            f"{type(document).__name__}."
        )
    _ids_to_base64(document)
    try:
        request = json_format.ParseDict(
            document, ExportTraceServiceRequest(), ignore_unknown_fields=True
        )
    except json_format.ParseError as exc:
        raise ConfigurationError(f"The body is not an OTLP JSON trace request: {exc}.") from exc
    return _spans_of(request)


def response_body(decoded: Decoded, *, as_json: bool) -> bytes:
    """Return the ``ExportTraceServiceResponse``, with partial success when spans were rejected."""
    response = ExportTraceServiceResponse()
    if decoded.rejected:
        response.partial_success.rejected_spans = decoded.rejected
        response.partial_success.error_message = "; ".join(decoded.errors)
    if as_json:
        return json.dumps(json_format.MessageToDict(response)).encode()
    serialized: bytes = response.SerializeToString()
    return serialized


def _ids_to_base64(document: dict[str, Any]) -> None:
    """OTLP JSON writes ids in hex where protobuf JSON expects base64: convert in place."""
    for resource_spans in _dicts(document.get("resourceSpans", document.get("resource_spans"))):
        scopes = resource_spans.get("scopeSpans", resource_spans.get("scope_spans"))
        for scope_spans in _dicts(scopes):
            for span in _dicts(scope_spans.get("spans")):
                _convert_ids(span)
                for item in (*_dicts(span.get("links")),):
                    _convert_ids(item)


def _dicts(value: object) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _convert_ids(item: dict[str, Any]) -> None:
    for key in _ID_KEYS:
        value = item.get(key)
        if isinstance(value, str) and _HEX_ID.fullmatch(value):
            item[key] = base64.b64encode(binascii.unhexlify(value)).decode()


def _value(value: AnyValue) -> Any:  # noqa: ANN401 - attribute values are untyped
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return getattr(value, kind)


def _attributes(values: Sequence[KeyValue]) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in values}


def _problem(span: ProtoSpan) -> str | None:
    if len(span.trace_id) != 16 or not any(span.trace_id):
        return f"span {span.name!r} has trace id {span.trace_id.hex()!r}, not 16 non-zero bytes"
    if len(span.span_id) != 8 or not any(span.span_id):
        return f"span {span.name!r} has span id {span.span_id.hex()!r}, not 8 non-zero bytes"
    if span.parent_span_id and len(span.parent_span_id) != 8:
        return f"span {span.name!r} has parent span id {span.parent_span_id.hex()!r}, not 8 bytes"
    if span.start_time_unix_nano == 0:
        return f"span {span.name!r} ({span.span_id.hex()}) has no start time"
    return None


def _spans_of(request: ExportTraceServiceRequest) -> Decoded:
    spans: list[RawSpan] = []
    errors: list[str] = []
    rejected = 0
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope.name or None
            for span in scope_spans.spans:
                problem = _problem(span)
                if problem is not None:
                    rejected += 1
                    if len(errors) < _MAX_ERRORS:
                        errors.append(problem)
                    continue
                parent = span.parent_span_id.hex() if any(span.parent_span_id) else None
                spans.append(
                    RawSpan(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=parent,
                        name=span.name or "(unnamed)",
                        start_time_ns=span.start_time_unix_nano,
                        end_time_ns=span.end_time_unix_nano or None,
                        attributes=_attributes(span.attributes),
                        events=[
                            {
                                "name": event.name,
                                "time_unix_nano": event.time_unix_nano or None,
                                "attributes": _attributes(event.attributes),
                            }
                            for event in span.events
                        ],
                        status_code=int(span.status.code),
                        status_message=span.status.message or None,
                        resource=resource,
                        scope=scope,
                    )
                )
    return Decoded(spans=spans, rejected=rejected, errors=errors)


# -- assembly --------------------------------------------------------------------------


def _text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _trace_context(
    root: PendingSpan, others: Sequence[PendingSpan]
) -> tuple[dict[str, str], dict[str, str]]:
    """Tags and metadata: resource attributes, then the root's, then session and user ids."""
    attributes = root.span.attributes
    metadata = {key: _text(value) for key, value in root.resource.items()}
    custom = conventions.decoded(attributes.get("metadata"))  # OpenInference
    if isinstance(custom, dict):
        metadata.update({str(k): _text(v) for k, v in custom.items()})
    prefix = "langfuse.trace.metadata."
    metadata.update(
        {k.removeprefix(prefix): _text(v) for k, v in attributes.items() if k.startswith(prefix)}
    )
    tags: dict[str, str] = {}
    for key in ("tag.tags", "langfuse.trace.tags"):
        listed = conventions.decoded(attributes.get(key))
        if isinstance(listed, list):
            tags.update({str(tag): "true" for tag in listed})
    # The root's attributes first, then the other spans' in time order, then the resource:
    # OpenInference sets session.id on every span of the context, MLflow on none.
    sources: list[Mapping[str, Any]] = [attributes, *(p.span.attributes for p in others)]
    sources.append(root.resource)
    for target, keys in (
        (_SESSION_METADATA, conventions.SESSION_KEYS),
        (_USER_METADATA, conventions.USER_KEYS),
    ):
        found = next(
            (v for v in (conventions.first_value(s, keys) for s in sources) if v is not None), None
        )
        if found is not None:
            metadata[target] = found
    usage = _total_usage([root, *others])
    if usage is not None:
        metadata[_TOKEN_USAGE_METADATA] = json.dumps(usage)
    return tags, metadata


def _total_usage(spans: Sequence[PendingSpan]) -> dict[str, int] | None:
    total: dict[str, int] = {}
    for pending in spans:
        usage = pending.span.attributes.get(conventions.TOKEN_USAGE_KEY)
        if isinstance(usage, dict):
            for key, value in usage.items():
                if isinstance(value, int) and not isinstance(value, bool):
                    total[key] = total.get(key, 0) + value
    return total or None


def build_record(spans: Sequence[PendingSpan]) -> TraceRecord:
    """Assemble one trace from its spans.

    The root is the span without a parent; without one (it never arrived), the earliest
    span whose parent is missing becomes the root, and the trace's metadata
    ``localscorers.otlp.missing_root`` names the parent that never came.
    """
    ids = {p.span.span_id for p in spans}
    roots = [p for p in spans if p.span.parent_id is None]
    candidates = roots or [p for p in spans if p.span.parent_id not in ids] or list(spans)
    root = min(candidates, key=lambda p: (p.span.start_time_ns, p.span.span_id))
    others = sorted(
        (p for p in spans if p is not root), key=lambda p: (p.span.start_time_ns, p.span.span_id)
    )
    tags, metadata = _trace_context(root, others)
    root_span = root.span
    if root_span.parent_id is not None:
        metadata[MISSING_ROOT_KEY] = root_span.parent_id
        root_span = root_span.model_copy(update={"parent_id": None})
    duration = (
        None
        if root_span.end_time_ns is None
        else max(0, (root_span.end_time_ns - root_span.start_time_ns) // 1_000_000)
    )
    return TraceRecord(
        trace_id=root.trace_id,
        experiment_id=root.experiment_id,
        status=TraceStatus.ERROR if root_span.status is TraceStatus.ERROR else TraceStatus.OK,
        request_time_ms=root_span.start_time_ns // 1_000_000,
        inputs=root_span.inputs,
        outputs=root_span.outputs,
        name=root_span.name,
        execution_duration_ms=duration,
        tags=tags,
        metadata=metadata,
        spans=[root_span, *(p.span for p in others)],
    )


class Assembler:
    """Turns received spans into traces through the durable pending spans table.

    Args:
        pending: the pending spans of the database.
        trace_timeout_seconds: how long a trace without its root span waits for more
            spans (counted from its newest span's arrival) before it is written anyway.
    """

    def __init__(self, pending: SpanBuffer, *, trace_timeout_seconds: float = 60.0) -> None:
        self._pending = pending
        self._timeout_ms = max(0, round(trace_timeout_seconds * 1000))

    def receive(self, spans: Sequence[RawSpan], *, experiment_id: str) -> list[str]:
        """Store spans durably, then write the traces whose root has arrived.

        Once this returns the spans are committed: acknowledging the request is safe.

        Returns:
            The ids of the traces written now.
        """
        mapped = [
            PendingSpan(
                trace_id=trace_id_of(raw.trace_id),
                experiment_id=experiment_id,
                span=conventions.map_span(raw),
                resource=raw.resource,
            )
            for raw in spans
        ]
        return self._pending.receive(mapped, build_record).written

    def sweep(self, *, now_ms: int | None = None) -> list[str]:
        """Write every trace whose root is pending or whose grace period has passed."""
        now = _clock.now_ms() if now_ms is None else now_ms
        due = self._pending.due(idle_before_ms=now - self._timeout_ms)
        return self._pending.commit(due, build_record)

    def flush(self, trace_ids: Sequence[str]) -> list[str]:
        """Write these traces now, with or without their root span."""
        return self._pending.commit(list(trace_ids), build_record)
