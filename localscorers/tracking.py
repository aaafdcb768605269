"""The module-level tracking API: databases, experiments, traces and feedback.

These functions act on the current tracking URI and the active experiment, like
MLflow's. They validate their arguments and delegate to ``TraceStore``.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from localscorers import _clock, _context
from localscorers.exceptions import ConfigurationError, NotFoundError
from localscorers.models import (
    AssessmentSource,
    Expectation,
    Experiment,
    Feedback,
    Span,
    Trace,
    TraceStatus,
)
from localscorers.store import codec
from localscorers.store.ledger import EvaluationQueue
from localscorers.store.rows import TraceRecord, new_trace_id

__all__ = [
    "flush",
    "get_experiment_by_name",
    "get_trace",
    "get_tracking_uri",
    "log_expectation",
    "log_feedback",
    "log_trace",
    "search_experiments",
    "search_traces",
    "set_experiment",
    "set_tracking_uri",
]

get_tracking_uri = _context.get_tracking_uri
set_tracking_uri = _context.set_tracking_uri


def set_experiment(name: str | None = None, *, experiment_id: str | None = None) -> Experiment:
    """Make an experiment active, creating it by name when it does not exist.

    Raises:
        ConfigurationError: not exactly one of ``name`` and ``experiment_id``, or a blank name.
        NotFoundError: no experiment has that id.
    """
    if (name is None) == (experiment_id is None):
        raise ConfigurationError(
            "set_experiment() takes exactly one of name='...' or experiment_id='...'."
        )
    store = _context.current().store
    if experiment_id is not None:
        experiment = store.get_experiment(str(experiment_id))
        if experiment is None:
            raise NotFoundError(
                f"No experiment has id {experiment_id!r}. Use set_experiment(name='...') "
                "to create one."
            )
    else:
        assert name is not None  # noqa: S101 - checked above
        experiment = store.create_experiment(name)
    _context.set_active_experiment(experiment.experiment_id)
    return experiment


def get_experiment_by_name(name: str) -> Experiment | None:
    """Return the experiment with that name, or None."""
    return _context.current().store.get_experiment_by_name(name)


def search_experiments(*, max_results: int | None = None) -> list[Experiment]:
    """Return the database's experiments, oldest first (``"Default"``, id ``"0"``, among them).

    Args:
        max_results: at most this many; None returns them all.

    Raises:
        ConfigurationError: ``max_results`` is not a positive integer.
    """
    if max_results is not None and (
        isinstance(max_results, bool) or not isinstance(max_results, int) or max_results < 1
    ):
        raise ConfigurationError(
            f"max_results must be a positive integer or None, got {max_results!r}."
        )
    found = _context.current().store.list_experiments()
    return found if max_results is None else found[:max_results]


def _status(value: object) -> TraceStatus:
    try:
        return TraceStatus(str(value).upper())
    except ValueError:
        raise ConfigurationError(
            f"status must be one of {[s.value for s in TraceStatus]}, got {value!r}."
        ) from None


def _string_map(value: Mapping[str, Any] | None, *, argument: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"{argument} must be a dict of strings, got {type(value).__name__}."
        )
    result = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            raise ConfigurationError(f"{argument} keys must be non-empty strings, got {key!r}.")
        result[key] = item if isinstance(item, str) else codec.dumps(item)
    return result


def _duration(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigurationError(
            f"execution_duration_ms must be a non-negative number of milliseconds, got {value!r}."
        )
    return int(value)


def _spans(value: Sequence[Span | Mapping[str, Any]] | None) -> list[Span]:
    if value is None:
        return []
    spans = []
    for item in value:
        if isinstance(item, Span):
            spans.append(item)
        elif isinstance(item, Mapping):
            spans.append(Span.model_validate(dict(item)))
        else:
            raise ConfigurationError(
                f"spans must hold Span objects or dicts with Span's fields, got {item!r}."
            )
    return spans


def _trace_id(value: object) -> str:
    if value is None:
        return new_trace_id()
    if not isinstance(value, str) or not value.strip() or len(value) > 256:
        raise ConfigurationError(
            f"trace_id must be a non-blank string of at most 256 characters, got {value!r}; "
            "omit it to get a fresh 'tr-' id."
        )
    return value


def build_record(
    *,
    inputs: Any,  # noqa: ANN401
    outputs: Any,  # noqa: ANN401
    name: str | None = None,
    status: str = "OK",
    request_time: datetime | int | float | None = None,
    execution_duration_ms: int | None = None,
    tags: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    spans: Sequence[Span | Mapping[str, Any]] | None = None,
    experiment_id: str | None = None,
    trace_id: str | None = None,
    assessments: Sequence[Feedback | Expectation] = (),
) -> TraceRecord:
    """Validate ``log_trace``'s arguments into a ``TraceRecord`` (tracing and imports use it too).

    Raises:
        ConfigurationError: an argument is invalid; the message names it.
        NotFoundError: ``experiment_id`` does not exist.
    """
    started_ms = _clock.to_epoch_ms(request_time, argument="request_time")
    request_ms = _clock.now_ms() if started_ms is None else started_ms
    trace_status = _status(status)
    duration = _duration(execution_duration_ms)
    span_list = _spans(spans)
    if not span_list:
        # Every trace has a root span, so span filters (span.name = ...) see log_trace'd traces.
        start_ns = request_ms * 1_000_000
        span_list = [
            Span(
                span_id=secrets.token_hex(8),
                name=name or "root",
                status=trace_status,
                start_time_ns=start_ns,
                end_time_ns=None if duration is None else start_ns + duration * 1_000_000,
                inputs=inputs,
                outputs=outputs,
            )
        ]
    return TraceRecord(
        trace_id=_trace_id(trace_id),
        experiment_id=_context.resolve_experiment_id(experiment_id),
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
    )


def log_trace(
    *,
    inputs: Any,  # noqa: ANN401 - the application's own inputs
    outputs: Any,  # noqa: ANN401 - the application's own outputs
    name: str | None = None,
    status: str = "OK",
    request_time: datetime | int | float | None = None,
    execution_duration_ms: int | None = None,
    tags: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    spans: Sequence[Span | Mapping[str, Any]] | None = None,
    experiment_id: str | None = None,
    trace_id: str | None = None,
) -> str:
    """Record a finished trace in one call and return its id.

    Active scorers of the experiment whose filter matches and whose sample includes
    the trace get a pending evaluation in the same transaction.

    Args:
        inputs: the call's inputs (any JSON-able value; others are stored as text).
        outputs: the call's outputs.
        name: the trace's name.
        status: ``"OK"``, ``"ERROR"`` or ``"IN_PROGRESS"``.
        request_time: when the call started: a datetime (naive means UTC) or epoch ms.
        execution_duration_ms: how long it took.
        tags: string tags; non-string values are stored as JSON text.
        metadata: string metadata; non-string values are stored as JSON text.
        spans: the trace's spans (``Span`` or dicts); by default one root span.
        experiment_id: where to log it (default: the active experiment).
        trace_id: keep an existing id (imports); by default a fresh ``tr-`` id.

    Raises:
        ConfigurationError: an argument is invalid; the message names it.
        NotFoundError: the experiment does not exist.
        ConflictError: a trace with that id already exists.
    """
    record = build_record(
        inputs=inputs,
        outputs=outputs,
        name=name,
        status=status,
        request_time=request_time,
        execution_duration_ms=execution_duration_ms,
        tags=tags,
        metadata=metadata,
        spans=spans,
        experiment_id=experiment_id,
        trace_id=trace_id,
    )
    _context.current().store.write_traces([record])
    return record.trace_id


def get_trace(trace_id: str) -> Trace:
    """Return a trace with its spans and assessments.

    Raises:
        TraceNotFoundError: no trace has that id.
    """
    return _context.current().store.get_trace(trace_id)


def search_traces(
    *,
    experiment_ids: Sequence[str] | None = None,
    filter_string: str | None = None,
    order_by: Sequence[str] | None = None,
    max_results: int | None = None,
) -> list[Trace]:
    """Return the traces matching a filter (DESIGN.md section 4), newest first by default.

    Args:
        experiment_ids: where to search (default: the active experiment).
        filter_string: e.g. ``"tags.env = 'prod' AND trace.status = 'ERROR'"``.
        order_by: e.g. ``["timestamp_ms DESC"]``.
        max_results: at most this many; None returns every match.

    Raises:
        FilterSyntaxError: the filter does not parse.
        ConfigurationError: ``order_by`` or ``max_results`` is invalid.
    """
    ids = (
        [_context.resolve_experiment_id(None)]
        if experiment_ids is None
        else [_context.resolve_experiment_id(str(e)) for e in experiment_ids]
    )
    return _context.current().store.search_traces(
        experiment_ids=ids, filter_string=filter_string, order_by=order_by, max_results=max_results
    )


def _source(source: AssessmentSource | None) -> AssessmentSource:
    if source is None:
        return AssessmentSource(source_type="HUMAN", source_id=os.environ.get("USER", "unknown"))
    if not isinstance(source, AssessmentSource):
        raise ConfigurationError(f"source must be an AssessmentSource, got {source!r}.")
    return source


def _assessment_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError(f"An assessment name must be a non-blank string, got {name!r}.")
    return name


def log_feedback(
    *,
    trace_id: str,
    name: str,
    value: Any,  # noqa: ANN401 - any JSON-able value
    rationale: str | None = None,
    source: AssessmentSource | None = None,
    metadata: dict[str, Any] | None = None,
) -> Feedback:
    """Attach human or manual feedback to a trace and return it as stored.

    Raises:
        TraceNotFoundError: no trace has that id.
        ConfigurationError: the name is blank or the source is not an ``AssessmentSource``.
    """
    feedback = Feedback(
        name=_assessment_name(name),
        value=codec.jsonable(value),
        rationale=rationale,
        source=_source(source),
        metadata=metadata,
        origin="manual",
    )
    stored = _context.current().store.log_assessment(trace_id, feedback)
    assert isinstance(stored, Feedback)  # noqa: S101 - the store returns what it was given
    return stored


def log_expectation(
    *,
    trace_id: str,
    name: str,
    value: Any,  # noqa: ANN401 - any JSON-able value
    source: AssessmentSource | None = None,
    metadata: dict[str, Any] | None = None,
) -> Expectation:
    """Attach ground truth to a trace; scorers receive it as ``expectations[name]``.

    Raises:
        TraceNotFoundError: no trace has that id.
        ConfigurationError: the name is blank.
    """
    expectation = Expectation(
        name=_assessment_name(name),
        value=codec.jsonable(value),
        source=_source(source),
        metadata=metadata,
        origin="manual",
    )
    stored = _context.current().store.log_assessment(trace_id, expectation)
    assert isinstance(stored, Expectation)  # noqa: S101
    return stored


def flush(timeout: float | None = None) -> bool:
    """Wait until the online evaluations pending now are done; False if ``timeout`` ran out.

    With ``LOCALSCORERS_MONITOR=off`` this waits for a ``localscorers worker`` to do them.
    """
    runtime = _context.current()
    if _context.monitor_enabled():
        return runtime.runner().flush(timeout)
    queue = EvaluationQueue(runtime.db, owner="flush", lease_ms=0)
    watermark = queue.watermark()
    deadline = None if timeout is None else time.monotonic() + timeout
    while queue.has_pending(since=watermark):
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
