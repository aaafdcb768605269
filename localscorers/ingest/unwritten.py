"""Traces the store refused, kept aside as MLflow trace JSON for ``import_traces``.

``@trace`` must never break the application's call, and must never drop a trace
silently either. So when writing a finished trace fails (a full disk, a deleted or
read-only database file), the trace is appended to ``localscorers-unwritten-traces.jsonl``
in the database's directory (else the user data directory, else the temp directory),
fsynced, and an error is logged saying where it is and how to load it:
``localscorers.import_traces(path)``. ``log_trace`` raises instead: its caller asked.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import platformdirs

from localscorers import _context
from localscorers.models import Span, TraceStatus
from localscorers.store import codec
from localscorers.store.uris import MEMORY_URI

__all__ = ["UNWRITTEN_FILE", "save_unwritten"]

logger = logging.getLogger("localscorers.tracing")

UNWRITTEN_FILE = "localscorers-unwritten-traces.jsonl"


def _mlflow_span(span: Span) -> dict[str, Any]:
    attributes = {key: codec.dumps(value) for key, value in span.attributes.items()}
    for key, value in (
        ("mlflow.spanType", span.span_type),
        ("mlflow.spanInputs", span.inputs),
        ("mlflow.spanOutputs", span.outputs),
    ):
        if value is not None:
            attributes[key] = codec.dumps(value)
    code = "UNSET" if span.status is TraceStatus.IN_PROGRESS else span.status.value
    return {
        "span_id": span.span_id,
        "parent_span_id": span.parent_id,
        "name": span.name,
        "start_time_unix_nano": span.start_time_ns,
        "end_time_unix_nano": span.end_time_ns,
        "status": {"code": code, "message": span.status_message or ""},
        "attributes": attributes,
        "events": span.events,
    }


def _mlflow_trace(
    trace_id: str, spans: list[Span], tags: dict[str, str], metadata: dict[str, str]
) -> dict[str, Any]:
    """The trace as MLflow's trace JSON, which ``import_traces`` reads back."""
    root = next((s for s in spans if s.parent_id is None), spans[0])
    end = root.end_time_ns or root.start_time_ns
    return {
        "info": {
            "trace_id": trace_id,
            "request_time": root.start_time_ns // 1_000_000,
            "execution_duration_ms": end // 1_000_000 - root.start_time_ns // 1_000_000,
            "state": "ERROR" if root.status is TraceStatus.ERROR else "OK",
            "tags": tags,
            "trace_metadata": metadata,
        },
        "data": {"spans": [_mlflow_span(s) for s in spans]},
    }


def save_unwritten(
    trace_id: str,
    spans: list[Span],
    tags: dict[str, str],
    metadata: dict[str, str],
    *,
    error: BaseException,
) -> Path | None:
    """Append a trace the store refused to the fallback file and log an error; never raises.

    Returns:
        The file the trace was appended to, or None if no directory would take it.
    """
    try:
        line = json.dumps(_mlflow_trace(trace_id, spans, tags, metadata)) + "\n"
    except Exception:  # nothing we can keep: say so  # noqa: BLE001
        line = ""
    candidates = [
        _database_directory(),
        platformdirs.user_data_path("localscorers"),
        Path(tempfile.gettempdir()),
    ]
    for directory in candidates:
        if directory is None or not line:
            continue
        path = directory / UNWRITTEN_FILE
        try:
            directory.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(descriptor, "a", encoding="utf-8") as file:
                file.write(line)
                file.flush()
                os.fsync(file.fileno())
        except OSError:
            continue
        logger.error(
            "localscorers could not write trace %s to the database (%s: %s); the call is "
            "unaffected and the trace was saved to %s. Load it later with "
            "localscorers.import_traces(%r).",
            trace_id,
            type(error).__name__,
            error,
            path,
            str(path),
            exc_info=error,
        )
        return path
    logger.error(
        "localscorers could not write trace %s (%s: %s) nor save it to a file; it is lost.",
        trace_id,
        type(error).__name__,
        error,
        exc_info=error,
    )
    return None


def _database_directory() -> Path | None:
    try:
        uri = _context.get_tracking_uri()
    except Exception:  # an unusable setting: the other places remain  # noqa: BLE001
        return None
    if not uri.startswith("sqlite:///") or uri == MEMORY_URI:
        return None
    return Path(uri.removeprefix("sqlite:///")).parent
