"""Load traces exported by MLflow (``Trace.to_dict()`` / ``Trace.to_json()``) into the store.

Both generations of that JSON are read:

* MLflow 3: ``info`` holds ``trace_id``, ``trace_location``, ``request_time`` (an RFC 3339
  string), ``execution_duration_ms``, ``state``, ``trace_metadata``, ``tags`` and
  ``assessments``; spans have ``span_id`` / ``parent_span_id`` (hex, or base64 in the
  first 3.x releases, which dumped the span protobuf), ``start_time_unix_nano``,
  ``end_time_unix_nano``, ``status: {code, message}`` and ``events[].time_unix_nano``.
* MLflow 2: ``info`` holds ``request_id``, ``timestamp_ms``, ``execution_time_ms``,
  ``status`` and ``request_metadata``; spans have ``context.span_id`` (``0x``-hex),
  ``parent_id``, ``start_time``, ``end_time``, ``status_code`` and ``status_message``.

In both, span attribute values are JSON-encoded strings (span type ``LLM`` is stored as
the five characters ``"LLM"``). They are decoded, and ``mlflow.spanType``,
``mlflow.spanInputs`` and ``mlflow.spanOutputs`` become the span's type, inputs and
outputs. Span ids are stored as 16 lower-case hex digits whatever encoding the file
used, so parent links survive.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import logging
import math
import os
import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from localscorers import _clock, _context
from localscorers._spans import MAX_EPOCH_NS
from localscorers.exceptions import ConfigurationError, TraceImportError
from localscorers.models import (
    AssessmentError,
    AssessmentSource,
    AssessmentSourceType,
    Expectation,
    Feedback,
    Span,
    TraceStatus,
)
from localscorers.store import codec
from localscorers.store.rows import ONLINE_SCORING_KEY, TraceRecord
from localscorers.tracking import build_record

__all__ = ["import_traces"]

logger = logging.getLogger(__name__)

_JSON_SUFFIXES = frozenset({".json"})
_LINES_SUFFIXES = frozenset({".jsonl", ".ndjson"})
_CHUNK = 500  # traces per write transaction
_HEX_SPAN_ID = re.compile(r"(?:0[xX])?([0-9a-fA-F]{16})")
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
# Span status codes: MLflow's own names and the OTLP protobuf names (early 3.x dumps).
_SPAN_CODES: dict[str, TraceStatus | None] = {
    "OK": TraceStatus.OK,
    "STATUS_CODE_OK": TraceStatus.OK,
    "ERROR": TraceStatus.ERROR,
    "STATUS_CODE_ERROR": TraceStatus.ERROR,
    "UNSET": None,
    "STATUS_CODE_UNSET": None,
    "": None,
}
_SOURCE_TYPES = {
    "HUMAN": AssessmentSourceType.HUMAN,
    "LLM_JUDGE": AssessmentSourceType.LLM_JUDGE,
    "AI_JUDGE": AssessmentSourceType.LLM_JUDGE,  # MLflow's deprecated alias
    "CODE": AssessmentSourceType.CODE,
}
_SPAN_TYPE_KEY = "mlflow.spanType"
_SPAN_INPUTS_KEY = "mlflow.spanInputs"
_SPAN_OUTPUTS_KEY = "mlflow.spanOutputs"
_TRACE_NAME_TAG = "mlflow.traceName"
_TRACE_INPUTS_KEY = "mlflow.traceInputs"
_TRACE_OUTPUTS_KEY = "mlflow.traceOutputs"


class _Invalid(Exception):
    """What is wrong with one trace; import_traces adds the file and line.

    Attributes:
        field: the offending field, when one is to blame.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


# Errors a hostile document can provoke while it is read (huge ints, deep nesting, odd
# types); each becomes a TraceImportError naming the file and line, never a raw error.
_DOCUMENT_ERRORS = (
    _Invalid,
    ConfigurationError,
    ValidationError,
    TypeError,
    ValueError,
    OverflowError,
    RecursionError,
)


def import_traces(
    path: str | os.PathLike[str], *, experiment_id: str | None = None, online_scoring: bool = True
) -> list[str]:
    """Load traces exported by MLflow and return their ids, in file order.

    ``path`` is a ``.json`` file holding one trace (``Trace.to_dict()``) or a list of
    them, a ``.jsonl`` file with one trace per line, or a directory searched recursively
    for both (files in sorted path order). Trace ids, request times, durations, status,
    tags, metadata, spans and assessments are kept. MLflow's experiment ids mean nothing
    here, so every trace goes to ``experiment_id`` or the active experiment.

    Every file is read and checked before anything is written, so a bad file imports
    nothing; then each file is written in one transaction, so a failure while writing
    (a full disk) leaves each file imported whole or not at all, and running the same
    import again finishes it. Traces whose id is already in the database are skipped, which makes a
    re-import harmless: the returned list still holds every id of the input (each once,
    in file order), whether it was imported now or before. Imported traces that are not
    ``IN_PROGRESS`` get online evaluations from the experiment's active scorers, as
    traces logged now would; with ``online_scoring=False`` they get none (for a large
    history, where active LLM judges would each be called once per trace). Such traces
    carry the metadata ``localscorers.online_scoring = "off"``, which explain() reports;
    score them later with a backfill.

    Raises:
        ConfigurationError: the path does not exist, holds no trace files, or an
            argument has the wrong type.
        TraceImportError: a file is not valid MLflow trace JSON (a ``ConfigurationError``);
            the message and its ``file``, ``line`` (for JSON lines, else the trace's
            position) and ``field`` attributes say where, and what is wrong.
        NotFoundError: ``experiment_id`` does not exist.
    """
    if not isinstance(path, str | os.PathLike) or not isinstance(online_scoring, bool):
        raise ConfigurationError(
            "import_traces() takes a path (str or pathlib.Path) and online_scoring=True or "
            f"False, got path={codec.safe_repr(path)}, "
            f"online_scoring={codec.safe_repr(online_scoring)}."
        )
    if experiment_id is not None and not isinstance(experiment_id, str | int):
        raise ConfigurationError(
            f"experiment_id must be an experiment's id, got {codec.safe_repr(experiment_id)}."
        )
    files = _trace_files(Path(path))
    target = _context.resolve_experiment_id(experiment_id)
    by_file: list[list[TraceRecord]] = []
    ids: list[str] = []
    seen: set[str] = set()
    assessment_ids: set[str] = set()
    for file in files:
        records: list[TraceRecord] = []
        for line, where, document in _documents(file):
            try:
                _check_text(document, "trace")
                record = _record(document, experiment_id=target)
                if record.trace_id in seen:
                    logger.info("Skipping %s: trace %s appeared earlier.", where, record.trace_id)
                    continue
                _check_assessment_ids(record, assessment_ids)
            except _DOCUMENT_ERRORS as exc:
                field = getattr(exc, "field", None)
                raise TraceImportError(
                    f"Cannot import {where}: {exc}. Nothing of {file} was written; fix the "
                    "file and import it again.",
                    file=str(file),
                    line=line,
                    field=field,
                ) from exc
            seen.add(record.trace_id)
            ids.append(record.trace_id)
            records.append(record)
        by_file.append(records)
    store = _context.current().store
    # Everything was read and checked above; each file is then one transaction, so a
    # failure (a full disk) leaves whole files imported or not, and importing again
    # skips the traces already there.
    for records in by_file:
        marked = (
            records
            if online_scoring
            else [
                dataclasses.replace(r, metadata={**r.metadata, ONLINE_SCORING_KEY: "off"})
                for r in records
            ]
        )
        store.write_traces(marked, skip_existing=True, enqueue=online_scoring)
    return ids


def _check_text(value: object, where: str) -> None:
    """Refuse strings SQLite cannot store: lone surrogates, which JSON escapes can make."""
    if isinstance(value, str):
        if codec.safe_text(value) is not value:
            raise _Invalid(f"{where} holds a lone surrogate (not valid Unicode)", field=where)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, f"{where} key {codec.safe_text(str(key))!r}")
            _check_text(item, f"{where}.{codec.safe_text(str(key))}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_text(item, f"{where}[{index}]")


def _trace_files(path: Path) -> list[Path]:
    suffixes = _JSON_SUFFIXES | _LINES_SUFFIXES
    if not path.exists():
        raise ConfigurationError(
            f"{path} does not exist. Give a .json or .jsonl file of traces exported from "
            "MLflow, or a directory of them."
        )
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
        if not files:
            raise ConfigurationError(
                f"{path} holds no .json or .jsonl files. Export traces from MLflow with "
                "Trace.to_json() (one per line for .jsonl) into that directory."
            )
        return files
    if path.suffix.lower() not in suffixes:
        raise ConfigurationError(
            f"{path} is not a .json or .jsonl file (got {path.suffix or 'no extension'!r}). "
            "Rename it to say which format it holds."
        )
    return [path]


def _documents(file: Path) -> Iterator[tuple[int | None, str, Any]]:
    """Yield (line or position, where, parsed JSON) for every trace of a file."""
    try:
        if file.suffix.lower() in _LINES_SUFFIXES:
            with file.open(encoding="utf-8-sig") as lines:
                for number, line in enumerate(lines, start=1):
                    if line.strip():
                        where = f"{file} line {number}"
                        yield number, where, _parse(line, file=file, line=number)
            return
        document = _parse(file.read_text(encoding="utf-8-sig"), file=file, line=None)
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceImportError(f"Cannot read {file}: {exc}", file=str(file)) from exc
    if isinstance(document, dict) and isinstance(document.get("traces"), list):
        document = document["traces"]
    if isinstance(document, list):
        for index, item in enumerate(document, start=1):
            yield index, f"{file} trace #{index}", item
    else:
        yield None, str(file), document


def _parse(text: str, *, file: Path, line: int | None) -> Any:  # noqa: ANN401 - JSON
    where = str(file) if line is None else f"{file} line {line}"
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise TraceImportError(
            f"{where} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}. "
            "Export traces with MLflow's Trace.to_json().",
            file=str(file),
            line=line if line is not None else exc.lineno,
        ) from exc
    except (ValueError, RecursionError) as exc:
        # An integer of thousands of digits, or nesting deeper than Python's parser goes.
        problem = "is nested too deeply" if isinstance(exc, RecursionError) else f"has {exc}"
        raise TraceImportError(
            f"{where} {problem.split('; use sys.', maxsplit=1)[0]}: not a trace MLflow writes. "
            "Nothing of the file was written.",
            file=str(file),
            line=line,
        ) from exc


def _record(document: object, *, experiment_id: str) -> TraceRecord:
    if isinstance(document, str):  # a Trace.to_json() string inside a list
        try:
            document = json.loads(document)
        except json.JSONDecodeError as exc:
            raise _Invalid(f"a string that is not trace JSON ({exc.msg})") from exc
    if not isinstance(document, dict) or not isinstance(document.get("info"), dict):
        raise _Invalid(
            "expected MLflow's trace JSON, an object with 'info' and 'data' "
            "(Trace.to_dict()), got "
            + (f"keys {sorted(document)}" if isinstance(document, dict) else _kind(document))
        )
    info: dict[str, Any] = document["info"]
    data = document.get("data") or {}
    if not isinstance(data, dict):
        raise _Invalid(f"'data' must be an object with 'spans', got {_kind(data)}")
    trace_id = info.get("trace_id", info.get("request_id"))
    if not isinstance(trace_id, str) or not trace_id.strip():
        raise _Invalid(f"info.trace_id (or info.request_id) must be a string, got {trace_id!r}")
    spans = [_span(s, index=i) for i, s in enumerate(_list(data.get("spans"), "data.spans"), 1)]
    _check_span_ids(spans)
    root = _root(spans)
    tags = _string_map(info.get("tags"), "info.tags")
    metadata = _string_map(
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
            _assessment(a, index=i)
            for i, a in enumerate(_list(info.get("assessments"), "info.assessments"), 1)
        ],
    )
    # build_record checks an explicit experiment id with one query per trace; the
    # target was checked once by import_traces.
    return dataclasses.replace(record, experiment_id=experiment_id)


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _list(value: object, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Invalid(f"{what} must be a list, got {_kind(value)}")
    return value


def _string_map(value: object, what: str) -> dict[str, str]:
    """Tags and metadata: a JSON object, or the REST API's list of {key, value}."""
    if value is None:
        return {}
    if isinstance(value, list) and all(isinstance(e, dict) and "key" in e for e in value):
        value = {e["key"]: e.get("value") for e in value}
    if not isinstance(value, dict):
        raise _Invalid(f"{what} must be an object of strings, got {_kind(value)}")
    return {
        str(k): v if isinstance(v, str) else codec.dumps(v) for k, v in value.items() if k != ""
    }


def _decoded(value: object) -> Any:  # noqa: ANN401 - JSON is untyped
    """MLflow stores attribute values (and input previews) as JSON text; decode when it is."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        return value  # a plain string, a preview MLflow truncated, or text too odd to decode


def _nanos(value: object, what: str, *, required: bool) -> int | None:
    # The protobuf JSON of early 3.x releases writes 64-bit integers as strings.
    if isinstance(value, str) and value.strip().isdigit() and len(value) < 40:
        value = int(value)
    if value is None or value == 0:
        if required:
            raise _Invalid(f"{what} is missing", field=what)
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value <= MAX_EPOCH_NS
    ):
        raise _Invalid(
            f"{what} must be epoch nanoseconds between 0 and {MAX_EPOCH_NS}, got {value!r:.80}",
            field=what,
        )
    return int(value)


def _span_id(value: object, what: str) -> str:
    """Span ids as 16 lower-case hex digits, from hex, 0x-hex or base64 (protobuf JSON)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:016x}"
    if not isinstance(value, str) or not value.strip():
        raise _Invalid(f"{what} must be a non-empty string, got {value!r}")
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
) -> tuple[TraceStatus, str | None]:
    status = span.get("status")
    if isinstance(status, dict):
        code, message = status.get("code"), status.get("message") or status.get("description")
    elif isinstance(status, str):
        code, message = status, None
    else:
        code, message = span.get("status_code"), span.get("status_message")
    key = "" if code is None else str(code).upper()
    if key not in _SPAN_CODES:
        raise _Invalid(f"{where} has status code {code!r}; expected OK, ERROR or UNSET")
    value = _SPAN_CODES[key]
    if value is None:  # UNSET: MLflow marks a span OK when it ends without an error
        value = TraceStatus.OK if ended else TraceStatus.IN_PROGRESS
    return value, message if isinstance(message, str) and message else None


def _event(event: object, where: str) -> dict[str, Any]:
    if not isinstance(event, dict) or not isinstance(event.get("name"), str):
        raise _Invalid(f"{where} must be an object with a 'name', got {event!r}")
    attributes = event.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise _Invalid(f"{where}.attributes must be an object, got {_kind(attributes)}")
    time_ns = event.get("time_unix_nano", event.get("timestamp"))
    return {
        "name": event["name"],
        "time_unix_nano": _nanos(time_ns, f"{where}.time_unix_nano", required=False),
        "attributes": attributes,
    }


def _span(raw: object, *, index: int) -> Span:
    where = f"span #{index}"
    if not isinstance(raw, dict):
        raise _Invalid(f"{where} must be an object, got {_kind(raw)}")
    context = raw.get("context")
    if not isinstance(context, dict):  # MLflow 2 nests the span's ids in "context"
        context = {}
    span_id = _span_id(raw.get("span_id", context.get("span_id")), f"{where} span_id")
    where = f"span #{index} ({span_id})"
    parent = raw.get("parent_span_id", raw.get("parent_id"))
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise _Invalid(f"{where} needs a non-empty 'name', got {name!r}")
    start = _nanos(
        raw.get("start_time_unix_nano", raw.get("start_time")),
        f"{where} start_time_unix_nano",
        required=True,
    )
    end = _nanos(
        raw.get("end_time_unix_nano", raw.get("end_time")),
        f"{where} end_time_unix_nano",
        required=False,
    )
    status, message = _span_status(raw, ended=end is not None, where=where)
    attributes = raw.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise _Invalid(f"{where} attributes must be an object, got {_kind(attributes)}")
    decoded = {str(k): _decoded(v) for k, v in attributes.items()}
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
            for i, e in enumerate(_list(raw.get("events"), f"{where} events"), 1)
        ],
    )


def _check_span_ids(spans: list[Span]) -> None:
    seen: set[str] = set()
    for span in spans:
        if span.span_id in seen:
            raise _Invalid(f"two spans have id {span.span_id}; span ids are unique in a trace")
        seen.add(span.span_id)


def _root(spans: list[Span]) -> Span | None:
    """The span without a parent; in a partial export, the earliest whose parent is missing."""
    ids = {s.span_id for s in spans}
    roots = [s for s in spans if s.parent_id is None] or [
        s for s in spans if s.parent_id not in ids
    ]
    return min(roots, key=lambda s: s.start_time_ns, default=None)


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
            return _decoded(candidate)
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
        raise _Invalid(
            f"info.state is {raw!r}; expected one of OK, ERROR, IN_PROGRESS, STATE_UNSPECIFIED"
        )
    return _TRACE_STATES[key] or _derived_status(root)


def _epoch_ms(value: object, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit() and len(text) < 40:
            return int(text)
        try:
            return _clock.ms_from_datetime(datetime.fromisoformat(text))
        except ValueError:
            raise _Invalid(
                f"{what} must be an RFC 3339 time like '2025-01-31T12:00:00.123Z' or epoch "
                f"milliseconds, got {value!r}"
            ) from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _Invalid(f"{what} must be a time, got {value!r:.80}", field=what)
    return int(value)


def _request_time_ms(info: Mapping[str, Any], root: Span | None) -> int:
    for key in ("request_time", "timestamp_ms"):
        ms = _epoch_ms(info.get(key), f"info.{key}")
        if ms is not None:
            return ms
    if root is not None:
        return root.start_time_ns // 1_000_000
    raise _Invalid("info has no request_time (MLflow 3) or timestamp_ms (MLflow 2) and no spans")


def _duration_ms(info: Mapping[str, Any], root: Span | None) -> int | None:
    for key in ("execution_duration_ms", "execution_time_ms", "execution_duration"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, str):
            # A protobuf Duration in JSON: "1.500s".
            match = _DURATION.fullmatch(value.strip())
            if match is None:
                raise _Invalid(f"info.{key} must be milliseconds or like '1.5s', got {value!r}")
            return round(float(match.group(1)) * 1000)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise _Invalid(
                f"info.{key} must be a number of milliseconds, got {value!r:.80}",
                field=f"info.{key}",
            )
        return int(value)
    if root is not None and root.end_time_ns is not None:
        return max(0, (root.end_time_ns - root.start_time_ns) // 1_000_000)
    return None


def _source(raw: object, where: str) -> AssessmentSource:
    if raw is None:
        return AssessmentSource()
    if not isinstance(raw, dict):
        raise _Invalid(f"{where}.source must be an object, got {_kind(raw)}")
    kind = str(raw.get("source_type") or "SOURCE_TYPE_UNSPECIFIED").upper()
    source_id = raw.get("source_id")
    source_id = source_id if isinstance(source_id, str) and source_id else "default"
    if kind == "SOURCE_TYPE_UNSPECIFIED":
        return AssessmentSource(source_id=source_id)
    if kind not in _SOURCE_TYPES:
        raise _Invalid(
            f"{where}.source.source_type is {raw.get('source_type')!r}; expected HUMAN, "
            "LLM_JUDGE or CODE"
        )
    return AssessmentSource(source_type=_SOURCE_TYPES[kind], source_id=source_id)


def _error(raw: object, where: str) -> AssessmentError | None:
    if not raw:
        return None
    if not isinstance(raw, dict):
        raise _Invalid(f"{where}.error must be an object, got {_kind(raw)}")
    return AssessmentError(
        error_code=str(raw.get("error_code") or "UNKNOWN_ERROR"),
        error_message=raw.get("error_message"),
        stack_trace=raw.get("stack_trace"),
    )


def _expectation_value(raw: Mapping[str, Any], where: str) -> Any:  # noqa: ANN401
    serialized = raw.get("serialized_value")
    if isinstance(serialized, dict) and isinstance(serialized.get("value"), str):
        try:
            return json.loads(serialized["value"])
        except (ValueError, RecursionError) as exc:
            raise _Invalid(
                f"{where}.expectation.serialized_value is not JSON ({str(exc)[:200]})",
                field=f"{where}.expectation.serialized_value",
            ) from exc
    return raw.get("value")


def _assessment(raw: object, *, index: int) -> Feedback | Expectation:
    where = f"assessment #{index}"
    if not isinstance(raw, dict):
        raise _Invalid(f"{where} must be an object, got {_kind(raw)}")
    name = raw.get("assessment_name", raw.get("name"))
    if not isinstance(name, str) or not name.strip():
        raise _Invalid(f"{where} needs a non-blank 'assessment_name', got {name!r}")
    where = f"assessment #{index} ({name!r})"
    metadata = raw.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise _Invalid(f"{where}.metadata must be an object, got {_kind(metadata)}")
    created = _epoch_ms(raw.get("create_time", raw.get("create_time_ms")), f"{where}.create_time")
    assessment_id = raw.get("assessment_id", raw.get("_assessment_id"))
    common: dict[str, Any] = {
        "name": name,
        "rationale": raw.get("rationale"),
        "metadata": metadata,
        "source": _source(raw.get("source"), where),
        "assessment_id": str(assessment_id) if assessment_id else None,
        "create_time": None if created is None else _clock.datetime_from_ms(created),
        "origin": "import",
        "valid": raw.get("valid") is not False,
        "overrides": raw.get("overrides"),
    }
    expectation = raw.get("expectation")
    if isinstance(expectation, dict):
        return Expectation(value=_expectation_value(expectation, where), **common)
    feedback = raw.get("feedback")
    if feedback is not None and not isinstance(feedback, dict):
        raise _Invalid(f"{where}.feedback must be an object, got {_kind(feedback)}")
    if feedback is None and not raw.get("error"):
        raise _Invalid(f"{where} has neither 'feedback' nor 'expectation'")
    feedback = feedback or {}
    # MLflow 3 moved the error into the feedback; older exports have it on the assessment.
    error = _error(feedback.get("error") or raw.get("error"), where)
    return Feedback(value=feedback.get("value"), error=error, **common)


def _check_assessment_ids(record: TraceRecord, seen: set[str]) -> None:
    for assessment in record.assessments:
        if assessment.assessment_id is None:
            continue
        if assessment.assessment_id in seen:
            raise _Invalid(
                f"assessment id {assessment.assessment_id} appears twice in the import; "
                "assessment ids are unique"
            )
        seen.add(assessment.assessment_id)
