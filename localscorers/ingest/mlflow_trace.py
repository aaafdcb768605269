"""One MLflow trace document (``Trace.to_dict()``) read into a :class:`TraceRecord`.

Both generations of that JSON are read:

* MLflow 3: ``info`` holds ``trace_id``, ``trace_location``, ``request_time`` (an RFC 3339
  string), ``execution_duration_ms``, ``state``, ``trace_metadata``, ``tags`` and
  ``assessments``; spans have ``span_id`` / ``parent_span_id`` (hex, or base64 in the
  first 3.x releases, which dumped the span protobuf), ``start_time_unix_nano``,
  ``end_time_unix_nano``, ``status: {code, message}`` and ``events[].time_unix_nano``.
* MLflow 2: ``info`` holds ``request_id``, ``timestamp_ms``, ``execution_time_ms``,
  ``status`` and ``request_metadata``; spans have ``context.span_id`` (``0x``-hex),
  ``parent_id``, ``start_time``, ``end_time``, ``status_code`` and ``status_message``.

Spans are read by :mod:`~localscorers.ingest.mlflow_spans`, assessments by
:mod:`~localscorers.ingest.mlflow_assessments`; this module reads the trace around them
(id, status, request time, duration, inputs and outputs).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from localscorers.exceptions import ConfigurationError
from localscorers.ingest.mlflow_assessments import parse_assessment
from localscorers.ingest.mlflow_spans import check_span_ids, parse_span, root_span
from localscorers.ingest.mlflow_values import (
    InvalidTrace,
    as_list,
    decode_json_text,
    epoch_ms,
    kind_of,
    string_map,
)
from localscorers.ingest.records import build_record
from localscorers.models import Span, TraceStatus
from localscorers.store.rows import TraceRecord

__all__ = ["DOCUMENT_ERRORS", "record_from_document"]

_DURATION = re.compile(r"(-?\d+(?:\.\d+)?)s")

# MLflow's trace states (TraceState, MLflow 3) and statuses (TraceStatus, MLflow 2).
_TRACE_STATES: dict[str, TraceStatus | None] = {
    "OK": TraceStatus.OK,
    "ERROR": TraceStatus.ERROR,
    "IN_PROGRESS": TraceStatus.IN_PROGRESS,
    "STATE_UNSPECIFIED": None,
    "TRACE_STATUS_UNSPECIFIED": None,
    "UNSPECIFIED": None,
}
_TRACE_NAME_TAG = "mlflow.traceName"
_TRACE_INPUTS_KEY = "mlflow.traceInputs"
_TRACE_OUTPUTS_KEY = "mlflow.traceOutputs"

# Errors a hostile document can provoke while it is read (huge ints, deep nesting, odd
# types); each becomes a TraceImportError naming the file and line, never a raw error.
DOCUMENT_ERRORS = (
    InvalidTrace,
    ConfigurationError,
    ValidationError,
    TypeError,
    ValueError,
    OverflowError,
    RecursionError,
)


def record_from_document(document: object, *, experiment_id: str) -> TraceRecord:
    """Read one trace document (an object, or its JSON text) into a record for ``experiment_id``.

    Raises:
        InvalidTrace: the document is not MLflow trace JSON; other errors of
            ``DOCUMENT_ERRORS`` come from the checks a record's fields go through.
    """
    if isinstance(document, str):  # a Trace.to_json() string inside a list
        try:
            document = json.loads(document)
        except json.JSONDecodeError as exc:
            raise InvalidTrace(f"a string that is not trace JSON ({exc.msg})") from exc
    if not isinstance(document, dict) or not isinstance(document.get("info"), dict):
        raise InvalidTrace(
            "expected MLflow's trace JSON, an object with 'info' and 'data' "
            "(Trace.to_dict()), got "
            + (f"keys {sorted(document)}" if isinstance(document, dict) else kind_of(document))
        )
    info: dict[str, Any] = document["info"]
    data = document.get("data") or {}
    if not isinstance(data, dict):
        raise InvalidTrace(f"'data' must be an object with 'spans', got {kind_of(data)}")
    trace_id = info.get("trace_id", info.get("request_id"))
    if not isinstance(trace_id, str) or not trace_id.strip():
        raise InvalidTrace(f"info.trace_id (or info.request_id) must be a string, got {trace_id!r}")
    spans = [
        parse_span(s, index=i) for i, s in enumerate(as_list(data.get("spans"), "data.spans"), 1)
    ]
    check_span_ids(spans)
    root = root_span(spans)
    tags = string_map(info.get("tags"), "info.tags")
    metadata = string_map(
        info.get("trace_metadata", info.get("request_metadata")), "info.trace_metadata"
    )
    record = build_record(
        inputs=_trace_value(root, metadata, info, data, which="inputs"),
        outputs=_trace_value(root, metadata, info, data, which="outputs"),
        name=tags.get(_TRACE_NAME_TAG) or (root.name if root else None),
        status=_trace_status(info, root),
        request_time=_request_time_ms(info, root),
        execution_duration_ms=_duration_ms(info, root),
        tags=tags,
        metadata=metadata,
        spans=spans or None,
        trace_id=trace_id,
        assessments=[
            parse_assessment(a, index=i)
            for i, a in enumerate(as_list(info.get("assessments"), "info.assessments"), 1)
        ],
    )
    # build_record checks an explicit experiment id with one query per trace; the
    # target was checked once by import_traces.
    return dataclasses.replace(record, experiment_id=experiment_id)


def _trace_value(
    root: Span | None,
    metadata: Mapping[str, str],
    info: Mapping[str, Any],
    data: Mapping[str, Any],
    *,
    which: str,
) -> Any:  # noqa: ANN401 - the application's own value
    """The trace's inputs or outputs.

    The root span holds them whole; the metadata entry and the previews are copies MLflow
    may have truncated, so they only stand in when the root span has none.
    """
    if root is not None:
        own = root.inputs if which == "inputs" else root.outputs
        if own is not None:
            return own
    key, preview, legacy = (
        (_TRACE_INPUTS_KEY, "request_preview", "request")
        if which == "inputs"
        else (_TRACE_OUTPUTS_KEY, "response_preview", "response")
    )
    for candidate in (metadata.get(key), info.get(preview), data.get(legacy), info.get(legacy)):
        if candidate is not None:
            return decode_json_text(candidate)
    return None


def _derived_status(root: Span | None) -> TraceStatus:
    # A root span that ended UNSET (SpanStatus) leaves the trace OK.
    if root is None or not isinstance(root.status, TraceStatus):
        return TraceStatus.OK
    return root.status


def _trace_status(info: Mapping[str, Any], root: Span | None) -> TraceStatus:
    raw = info.get("state", info.get("status"))
    if raw is None:
        return _derived_status(root)
    key = str(raw).upper()
    if key not in _TRACE_STATES:
        raise InvalidTrace(
            f"info.state is {raw!r}; expected one of OK, ERROR, IN_PROGRESS, STATE_UNSPECIFIED"
        )
    return _TRACE_STATES[key] or _derived_status(root)


def _request_time_ms(info: Mapping[str, Any], root: Span | None) -> int:
    for key in ("request_time", "timestamp_ms"):
        ms = epoch_ms(info.get(key), f"info.{key}")
        if ms is not None:
            return ms
    if root is not None:
        return root.start_time_ns // 1_000_000
    raise InvalidTrace(
        "info has no request_time (MLflow 3) or timestamp_ms (MLflow 2) and no spans"
    )


def _duration_ms(info: Mapping[str, Any], root: Span | None) -> int | None:
    for key in ("execution_duration_ms", "execution_time_ms", "execution_duration"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, str):
            # A protobuf Duration in JSON: "1.500s".
            match = _DURATION.fullmatch(value.strip())
            if match is None:
                raise InvalidTrace(f"info.{key} must be milliseconds or like '1.5s', got {value!r}")
            return round(float(match.group(1)) * 1000)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise InvalidTrace(
                f"info.{key} must be a number of milliseconds, got {value!r:.80}",
                field=f"info.{key}",
            )
        return int(value)
    if root is not None and root.end_time_ns is not None:
        return max(0, (root.end_time_ns - root.start_time_ns) // 1_000_000)
    return None
