"""Spans of an MLflow trace document: ids, status, times, events and attributes.

Span attribute values are JSON-encoded strings (span type ``LLM`` is stored as the five
characters ``"LLM"``). They are decoded, and ``mlflow.spanType``, ``mlflow.spanInputs``
and ``mlflow.spanOutputs`` become the span's type, inputs and outputs. Span ids are
stored as 16 lower-case hex digits whatever encoding the file used, so parent links
survive.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from localscorers.ingest.mlflow_values import (
    InvalidTrace,
    as_list,
    decode_json_text,
    kind_of,
    nanos,
)
from localscorers.models import Span, SpanStatus, TraceStatus

__all__ = ["check_span_ids", "parse_span", "root_span"]

_HEX_SPAN_ID = re.compile(r"(?:0[xX])?([0-9a-fA-F]{16})")
# Span status codes: MLflow's own names and the OTLP protobuf names (early 3.x dumps).
# UNSET is kept as written (a real status, as in OpenTelemetry); no status at all means
# OK once the span ended, as MLflow marks a span that ends without an error.
_SPAN_CODES: dict[str, TraceStatus | SpanStatus | None] = {
    "OK": TraceStatus.OK,
    "STATUS_CODE_OK": TraceStatus.OK,
    "ERROR": TraceStatus.ERROR,
    "STATUS_CODE_ERROR": TraceStatus.ERROR,
    "UNSET": SpanStatus.UNSET,
    "STATUS_CODE_UNSET": SpanStatus.UNSET,
    "": None,
}
_SPAN_TYPE_KEY = "mlflow.spanType"
_SPAN_INPUTS_KEY = "mlflow.spanInputs"
_SPAN_OUTPUTS_KEY = "mlflow.spanOutputs"


def _span_id(value: object, what: str) -> str:
    """Span ids as 16 lower-case hex digits, from hex, 0x-hex or base64 (protobuf JSON)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:016x}"
    if not isinstance(value, str) or not value.strip():
        raise InvalidTrace(f"{what} must be a non-empty string, got {value!r}")
    match = _HEX_SPAN_ID.fullmatch(value)
    if match:
        return match.group(1).lower()
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return value  # an id in a scheme we do not know: kept as written
    return raw.hex() if len(raw) == 8 else value


def _span_status(
    span: dict[str, Any], *, ended: bool, where: str
) -> tuple[TraceStatus | SpanStatus, str | None]:
    status = span.get("status")
    if isinstance(status, dict):
        code, message = status.get("code"), status.get("message") or status.get("description")
    elif isinstance(status, str):
        code, message = status, None
    else:
        code, message = span.get("status_code"), span.get("status_message")
    key = "" if code is None else str(code).upper()
    if key not in _SPAN_CODES:
        raise InvalidTrace(f"{where} has status code {code!r}; expected OK, ERROR or UNSET")
    value = _SPAN_CODES[key]
    if not ended:
        value = TraceStatus.IN_PROGRESS if value in (None, SpanStatus.UNSET) else value
    elif value is None:
        value = TraceStatus.OK
    return value, message if isinstance(message, str) and message else None


def _event(event: object, where: str) -> dict[str, Any]:
    if not isinstance(event, dict) or not isinstance(event.get("name"), str):
        raise InvalidTrace(f"{where} must be an object with a 'name', got {event!r}")
    attributes = event.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise InvalidTrace(f"{where}.attributes must be an object, got {kind_of(attributes)}")
    time_ns = event.get("time_unix_nano", event.get("timestamp"))
    return {
        "name": event["name"],
        "time_unix_nano": nanos(time_ns, f"{where}.time_unix_nano", required=False),
        "attributes": attributes,
    }


def parse_span(raw: object, *, index: int) -> Span:
    """Read the ``index``-th span of ``data.spans`` (MLflow 2 or 3) into a Span.

    Raises:
        InvalidTrace: the span is not one MLflow writes.
    """
    where = f"span #{index}"
    if not isinstance(raw, dict):
        raise InvalidTrace(f"{where} must be an object, got {kind_of(raw)}")
    context = raw.get("context")
    if not isinstance(context, dict):  # MLflow 2 nests the span's ids in "context"
        context = {}
    span_id = _span_id(raw.get("span_id", context.get("span_id")), f"{where} span_id")
    where = f"span #{index} ({span_id})"
    parent = raw.get("parent_span_id", raw.get("parent_id"))
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidTrace(f"{where} needs a non-empty 'name', got {name!r}")
    start = nanos(
        raw.get("start_time_unix_nano", raw.get("start_time")),
        f"{where} start_time_unix_nano",
        required=True,
    )
    end = nanos(
        raw.get("end_time_unix_nano", raw.get("end_time")),
        f"{where} end_time_unix_nano",
        required=False,
    )
    status, message = _span_status(raw, ended=end is not None, where=where)
    attributes = raw.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise InvalidTrace(f"{where} attributes must be an object, got {kind_of(attributes)}")
    decoded = {str(k): decode_json_text(v) for k, v in attributes.items()}
    span_type = decoded.pop(_SPAN_TYPE_KEY, None)
    return Span(
        span_id=span_id,
        parent_id=_span_id(parent, f"{where} parent_span_id") if parent else None,
        name=name,
        span_type=None if span_type is None else str(span_type),
        status=status,
        status_message=message,
        start_time_ns=start,
        end_time_ns=end,
        inputs=decoded.pop(_SPAN_INPUTS_KEY, None),
        outputs=decoded.pop(_SPAN_OUTPUTS_KEY, None),
        attributes=decoded,
        events=[
            _event(e, f"{where} event #{i}")
            for i, e in enumerate(as_list(raw.get("events"), f"{where} events"), 1)
        ],
    )


def check_span_ids(spans: list[Span]) -> None:
    """Refuse a trace in which two spans share an id."""
    seen: set[str] = set()
    for span in spans:
        if span.span_id in seen:
            raise InvalidTrace(f"two spans have id {span.span_id}; span ids are unique in a trace")
        seen.add(span.span_id)


def root_span(spans: list[Span]) -> Span | None:
    """The span without a parent; in a partial export, the earliest whose parent is missing."""
    ids = {s.span_id for s in spans}
    roots = [s for s in spans if s.parent_id is None] or [
        s for s in spans if s.parent_id not in ids
    ]
    return min(roots, key=lambda s: s.start_time_ns, default=None)
