"""Trace records built from a caller's arguments: the checks ``log_trace`` makes.

``log_trace``, ``@trace`` (tracing), offline evaluation and ``import_traces`` all build
their :class:`~localscorers.store.rows.TraceRecord` here, so a trace is checked the same
way whichever door it comes in by.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from localscorers import _clock, _context
from localscorers._spans import checked_text, duration_ms, epoch_ms, string_entries
from localscorers._spans import span_list as span_list_of
from localscorers.exceptions import ConfigurationError
from localscorers.models import Expectation, Feedback, Span, TraceStatus
from localscorers.store.codec import safe_repr
from localscorers.store.rows import TraceRecord, new_trace_id

__all__ = ["build_record", "checked_experiment_id"]


_STATUSES = {status.value: status for status in TraceStatus}


def _status(value: object) -> TraceStatus:
    if isinstance(value, str):
        found = _STATUSES.get(value) or _STATUSES.get(value.upper())
        if found is not None:
            return found
    raise ConfigurationError(
        f"status must be one of {[s.value for s in TraceStatus]}, got {safe_repr(value)}."
    )


def _string_map(value: Mapping[str, Any] | None, *, argument: str) -> dict[str, str]:
    # Non-string values are stored as JSON text; lone surrogates are escaped.
    return string_entries(value, argument=argument)


def _trace_id(value: object) -> str:
    if value is None:
        return new_trace_id()
    if not isinstance(value, str) or not value.strip() or len(value) > 256:
        raise ConfigurationError(
            "trace_id must be a non-blank string of at most 256 characters, got "
            f"{safe_repr(value)}; "
            "omit it to get a fresh 'tr-' id."
        )
    checked_text(value, argument="trace_id")
    return value


def checked_experiment_id(value: object) -> str | None:
    """An experiment id as given (a string, or an int made a string); None stays None.

    Raises:
        ConfigurationError: anything else.
    """
    if value is None or (isinstance(value, str) and value):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63:
        return str(value)
    raise ConfigurationError(
        f"experiment_id must be an experiment's id (a string such as '1'), got {safe_repr(value)}."
    )


def build_record(
    *,
    trace_id: str | None = None,
    experiment_id: str | None = None,
    status: str = "OK",
    request_time: datetime | int | float | None = None,
    inputs: Any,  # noqa: ANN401
    outputs: Any,  # noqa: ANN401
    name: str | None = None,
    execution_duration_ms: int | None = None,
    tags: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    spans: Sequence[Span | Mapping[str, Any]] | None = None,
    assessments: Sequence[Feedback | Expectation] = (),
    client_request_id: str | None = None,
) -> TraceRecord:
    """Validate ``log_trace``'s arguments into a ``TraceRecord`` (tracing and imports use it too).

    The arguments come in the order of the record's fields they fill.

    Raises:
        ConfigurationError: an argument is invalid; the message names it.
        NotFoundError: ``experiment_id`` does not exist.
    """
    started_ms = epoch_ms(request_time, argument="request_time")
    request_ms = _clock.now_ms() if started_ms is None else started_ms
    trace_status = _status(status)
    duration = duration_ms(execution_duration_ms, start_ms=request_ms)
    checked_text(name, argument="name", optional=True)
    span_list = span_list_of(spans)
    root_span_id = None
    if not span_list and name is not None:
        # Every trace has a root span, so span filters (span.name = ...) see log_trace'd
        # traces. A named one is the trace itself: the trace row stores it, with no Span
        # built (TraceRecord.root_span_id; the hot path of issue 16).
        root_span_id = secrets.token_hex(8)
    elif not span_list:
        span_list = [_root_span(request_ms, duration, trace_status, inputs, outputs)]
    return TraceRecord(
        trace_id=_trace_id(trace_id),
        experiment_id=_context.resolve_experiment_id(checked_experiment_id(experiment_id)),
        status=trace_status,
        request_time_ms=request_ms,
        inputs=inputs,
        outputs=outputs,
        name=name,
        execution_duration_ms=duration,
        tags=_string_map(tags, argument="tags"),
        metadata=_string_map(metadata, argument="metadata"),
        spans=span_list,
        assessments=assessments,
        client_request_id=checked_text(
            client_request_id, argument="client_request_id", optional=True
        ),
        root_span_id=root_span_id,
    )


def _root_span(
    request_ms: int,
    duration: int | None,
    status: TraceStatus,
    inputs: Any,  # noqa: ANN401
    outputs: Any,  # noqa: ANN401
) -> Span:
    """The root span of a trace logged with neither spans nor a name."""
    start_ns = request_ms * 1_000_000
    return Span(
        span_id=secrets.token_hex(8),
        name="root",
        status=status,
        start_time_ns=start_ns,
        end_time_ns=None if duration is None else start_ns + duration * 1_000_000,
        inputs=inputs,
        outputs=outputs,
    )
