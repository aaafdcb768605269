"""The module-level tracking API: databases, experiments, traces and feedback.

These functions act on the current tracking URI and the active experiment, like
MLflow's. They validate their arguments and delegate to ``TraceStore``; a trace's
arguments are checked into a record by :mod:`localscorers.ingest.records`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, TypedDict, Unpack, overload

from localscorers import _clock, _context
from localscorers._spans import checked_text
from localscorers.exceptions import ConfigurationError, DatabaseMovedError, NotFoundError
from localscorers.ingest.records import build_record, checked_experiment_id
from localscorers.models import (
    AssessmentSource,
    Expectation,
    Experiment,
    Feedback,
    Span,
    Trace,
)
from localscorers.store import codec, paging
from localscorers.store.codec import safe_repr
from localscorers.store.paging import PagedList
from localscorers.store.uris import normalize_uri

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

#: Experiment names are at most this long (as scorer names).
MAX_EXPERIMENT_NAME_LENGTH = 256


def set_tracking_uri(uri: str | os.PathLike[str]) -> None:
    """Use another database from now on; may be called any number of times.

    Calling it again with the current URI after the file was deleted or replaced
    (``DatabaseMovedError``) opens the file now at that path.

    Raises:
        ConfigurationError: the URI is not a string or path, or not a SQLite URI or path.
    """
    if not isinstance(uri, str | os.PathLike):
        raise ConfigurationError(
            f"set_tracking_uri() takes a 'sqlite:///path' URI or a file path, got {safe_repr(uri)}."
        )
    normalized = normalize_uri(uri)
    if normalized == _context.get_tracking_uri() and _context.current().db.moved():
        _context.shutdown()  # forget the handle on the old file; the next call opens anew
    _context.set_tracking_uri(normalized)


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
    checked_text(
        name, argument="experiment name", max_length=MAX_EXPERIMENT_NAME_LENGTH, optional=True
    )
    store = _context.current().store
    if experiment_id is not None:
        experiment = store.get_experiment(str(checked_experiment_id(experiment_id)))
        if experiment is None:
            raise NotFoundError(
                f"No experiment has id {safe_repr(experiment_id)}. Use set_experiment(name='...') "
                "to create one."
            )
    else:
        assert name is not None  # noqa: S101 - checked above
        experiment = store.create_experiment(name)
    _context.set_active_experiment(experiment.experiment_id)
    return experiment


def get_experiment_by_name(name: str) -> Experiment | None:
    """Return the experiment with that name, or None.

    Raises:
        ConfigurationError: the name is not a string.
    """
    if not isinstance(name, str):
        raise ConfigurationError(f"An experiment name must be a string, got {safe_repr(name)}.")
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
            f"max_results must be a positive integer or None, got {safe_repr(max_results)}."
        )
    found = _context.current().store.list_experiments()
    return found if max_results is None else found[:max_results]


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
    client_request_id: str | None = None,
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
        client_request_id: the application's own id for the request (MLflow's
            ``TraceInfo.client_request_id``), searchable as ``trace.client_request_id``.

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
        client_request_id=client_request_id,
    )
    _context.current().store.write_traces([record])
    return record.trace_id


def get_trace(trace_id: str) -> Trace:
    """Return a trace with its spans and assessments.

    Raises:
        TraceNotFoundError: no trace has that id.
        ConfigurationError: the id is not a string.
    """
    if not isinstance(trace_id, str):
        raise ConfigurationError(
            f"trace_id must be a string such as 'tr-...', got {safe_repr(trace_id)}."
        )
    return _context.current().store.get_trace(trace_id)


class _SearchArguments(TypedDict, total=False):
    """The arguments of ``search_traces`` but ``return_type``: its overloads share them."""

    experiment_ids: Sequence[str] | None
    filter_string: str | None
    order_by: Sequence[str] | None
    max_results: int | None
    page_token: str | None


# return_type decides what is returned: a page of traces, or a DataFrame.
@overload
def search_traces(
    *, return_type: Literal["list"] = "list", **arguments: Unpack[_SearchArguments]
) -> PagedList[Trace]: ...
@overload
def search_traces(
    *, return_type: Literal["pandas"], **arguments: Unpack[_SearchArguments]
) -> Any: ...  # noqa: ANN401 - a pandas.DataFrame (pandas is optional)
def search_traces(
    *,
    experiment_ids: Sequence[str] | None = None,
    filter_string: str | None = None,
    order_by: Sequence[str] | None = None,
    max_results: int | None = None,
    page_token: str | None = None,
    return_type: Literal["list", "pandas"] = "list",
) -> PagedList[Trace] | Any:
    """Return the traces matching a filter (DESIGN.md section 4), newest first by default.

    The result is a list of ``Trace`` (our default; MLflow's ``mlflow.search_traces``
    defaults to a DataFrame) whose ``.token`` is the next page's token, or None when
    this page is the last, as MLflow's ``PagedList``. With ``return_type="pandas"`` it is
    a DataFrame with MLflow's columns (``trace_id``, ``trace``, ``client_request_id``,
    ``state``, ``request_time``, ``execution_duration``, ``request``, ``response``,
    ``trace_metadata``, ``tags``, ``spans``, ``assessments``).

    Args:
        experiment_ids: where to search (default: the active experiment).
        filter_string: e.g. ``"tags.env = 'prod' AND trace.status = 'ERROR'"``.
        order_by: e.g. ``["timestamp_ms DESC"]``.
        max_results: at most this many (a page); None returns every match.
        page_token: the ``.token`` of the previous page, to get the next one.
        return_type: ``"list"`` (default) or ``"pandas"``.

    Raises:
        FilterSyntaxError: the filter does not parse.
        ConfigurationError: ``experiment_ids``, ``filter_string``, ``order_by``,
            ``max_results``, ``page_token`` or ``return_type`` is invalid, or pandas is
            not installed for ``return_type="pandas"``.
    """
    _check_search_arguments(experiment_ids, filter_string, order_by, max_results)
    if return_type not in ("list", "pandas"):
        raise ConfigurationError(
            f"return_type must be 'list' or 'pandas', got {safe_repr(return_type)}."
        )
    ids = (
        [_context.resolve_experiment_id(None)]
        if experiment_ids is None
        else [_context.resolve_experiment_id(checked_experiment_id(e)) for e in experiment_ids]
    )
    traces, following = _context.current().store.search_page(
        experiment_ids=ids,
        filter_string=filter_string,
        order_by=order_by,
        max_results=max_results,
        offset=paging.decode_page_token(page_token),
    )
    if return_type == "pandas":
        return _data_frame(traces)
    return PagedList(traces, paging.encode_page_token(following))


def _data_frame(traces: list[Trace]) -> Any:  # noqa: ANN401 - a pandas.DataFrame
    """The DataFrame MLflow's ``search_traces`` returns, one row per trace."""
    try:
        import pandas as pd  # type: ignore[import-untyped]  # noqa: PLC0415 - optional extra
    except ImportError as exc:
        raise ConfigurationError(
            "search_traces(return_type='pandas') needs pandas: pip install pandas, or use "
            "return_type='list' (the default)."
        ) from exc
    rows = [
        {
            "trace_id": t.info.trace_id,
            "trace": t,
            "client_request_id": t.info.client_request_id,
            "state": t.info.status.value,
            "request_time": _clock.ms_from_datetime(t.info.request_time),
            "execution_duration": t.info.execution_duration_ms,
            "request": t.data.request,
            "response": t.data.response,
            "trace_metadata": dict(t.info.metadata),
            "tags": dict(t.info.tags),
            "spans": [span.model_dump(mode="json") for span in t.data.spans],
            "assessments": [a.model_dump(mode="json") for a in t.info.assessments],
        }
        for t in traces
    ]
    return pd.DataFrame(rows, columns=_FRAME_COLUMNS)


_FRAME_COLUMNS = [
    "trace_id",
    "trace",
    "client_request_id",
    "state",
    "request_time",
    "execution_duration",
    "request",
    "response",
    "trace_metadata",
    "tags",
    "spans",
    "assessments",
]


def _check_search_arguments(
    experiment_ids: object, filter_string: object, order_by: object, max_results: object
) -> None:
    # A bare string would be iterated character by character: "12" is not ["1", "2"].
    for argument, value in (("experiment_ids", experiment_ids), ("order_by", order_by)):
        if value is not None and (
            isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence)
        ):
            raise ConfigurationError(
                f"{argument} must be a list of strings or None, got {safe_repr(value)}; "
                f"write {argument}=[{safe_repr(value)}] for one."
            )
    if order_by is not None and not all(isinstance(o, str) for o in order_by):  # type: ignore[attr-defined]
        raise ConfigurationError(f"order_by must be a list of strings, got {safe_repr(order_by)}.")
    if max_results is not None and (
        isinstance(max_results, bool)
        or not isinstance(max_results, int)
        or not 1 <= max_results <= 2**62
    ):
        raise ConfigurationError(
            "max_results must be a positive integer up to 2**62 or None (all), got "
            f"{safe_repr(max_results)}."
        )
    if filter_string is not None and not isinstance(filter_string, str):
        raise ConfigurationError(
            f"filter_string must be a string or None, got {safe_repr(filter_string)}; "
            "e.g. filter_string=\"tags.env = 'prod'\"."
        )


def _source(source: AssessmentSource | None) -> AssessmentSource:
    if source is None:
        return AssessmentSource(source_type="HUMAN", source_id=os.environ.get("USER", "unknown"))
    if not isinstance(source, AssessmentSource):
        raise ConfigurationError(f"source must be an AssessmentSource, got {safe_repr(source)}.")
    return source


def _assessment_name(name: object) -> str:
    checked = checked_text(name, argument="An assessment name")
    assert checked is not None  # noqa: S101 - not optional
    return checked


def _assessment_fields(
    trace_id: object, value: object, metadata: object, rationale: object = None
) -> dict[str, Any]:
    """The checked, storable fields of a manual assessment (values over the cap cut)."""
    if not isinstance(trace_id, str):
        raise ConfigurationError(
            f"trace_id must be a string such as 'tr-...', got {safe_repr(trace_id)}."
        )
    if metadata is not None and not isinstance(metadata, Mapping):
        raise ConfigurationError(f"metadata must be a dict or None, got {safe_repr(metadata)}.")
    if rationale is not None and not isinstance(rationale, str):
        raise ConfigurationError(f"rationale must be a string or None, got {safe_repr(rationale)}.")
    limit = codec.max_feedback_bytes()
    return {
        "value": codec.capped(codec.jsonable(value), limit=limit),
        "metadata": None if metadata is None else codec.jsonable(dict(metadata)),
        "rationale": None
        if rationale is None
        else codec.capped(codec.safe_text(rationale), limit=limit),
    }


def log_feedback(
    *,
    trace_id: str,
    name: str,
    value: Any,  # noqa: ANN401 - any JSON-able value
    rationale: str | None = None,
    source: AssessmentSource | None = None,
    metadata: dict[str, Any] | None = None,
    overrides: str | None = None,
) -> Feedback:
    """Attach human or manual feedback to a trace and return it as stored.

    With ``overrides=<assessment_id>`` the new feedback supersedes that one (as MLflow's
    ``override_feedback``): the old one stays in ``info.assessments`` with
    ``valid=False``, as history, and filters see only the new one.

    Raises:
    The value is stored as JSON (see the README on NaN and values JSON cannot hold); a
    value or rationale larger than ``LOCALSCORERS_MAX_FEEDBACK_BYTES`` (1 MB) is stored
    cut to that size, ending with ``"... [truncated by localscorers: N bytes, limit L]"``.

    Raises:
        TraceNotFoundError: no trace has that id.
        ConfigurationError: the name is blank, the source is not an ``AssessmentSource``,
            or the trace id, rationale, metadata or overrides has the wrong type.
        NotFoundError: ``overrides`` names no assessment of that trace.
    """
    if overrides is not None and not isinstance(overrides, str):
        raise ConfigurationError(
            "overrides must be the assessment_id of a feedback on the trace, got "
            f"{safe_repr(overrides)}."
        )
    feedback = Feedback(
        name=_assessment_name(name),
        source=_source(source),
        origin="manual",
        overrides=overrides,
        **_assessment_fields(trace_id, value, metadata, rationale),
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
        ConfigurationError: the name is blank, or the trace id or metadata has the wrong type.
    """
    expectation = Expectation(
        name=_assessment_name(name),
        source=_source(source),
        origin="manual",
        **_assessment_fields(trace_id, value, metadata),
    )
    stored = _context.current().store.log_assessment(trace_id, expectation)
    assert isinstance(stored, Expectation)  # noqa: S101
    return stored


def flush(timeout: float | None = None) -> bool:
    """Wait until the online evaluations pending now are done; False if ``timeout`` ran out.

    With ``LOCALSCORERS_MONITOR=off`` this waits for a ``localscorers worker`` to do them.

    Raises:
        ConfigurationError: ``timeout`` is not None or a non-negative number of seconds.
        DatabaseMovedError: the database file was deleted or replaced since it was opened.
    """
    timeout = codec.plain_scalar(timeout)  # type: ignore[assignment]
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or math.isnan(timeout)
        or timeout < 0
    ):
        raise ConfigurationError(
            "flush(timeout=...) takes None (wait for all) or seconds >= 0, got "
            f"{safe_repr(timeout)}."
        )
    if timeout is not None and math.isinf(timeout):
        timeout = None
    runtime = _context.current()
    if runtime.db.moved():
        # The pending work lives in a file no path leads to: it can never be finished.
        raise DatabaseMovedError(
            path=str(runtime.db.path), detail="its pending evaluations cannot be finished"
        )
    if _context.monitor_enabled():
        return runtime.runner().flush(timeout)
    queue = runtime.storage.queue(owner="flush", lease_ms=0)
    watermark = queue.watermark()
    deadline = None if timeout is None else time.monotonic() + timeout
    while queue.has_pending(since=watermark):
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
