"""Record the application's calls as traces: ``@trace``, ``start_span`` and friends.

This mirrors MLflow's fluent tracing API without OpenTelemetry: spans live in memory
while the call runs, the current span is a ``contextvars.ContextVar``, and the trace is
written with one ``TraceStore.write_traces`` call when its root span ends. So every
thread and asyncio task has its own current span: a task created inside a span joins
its trace (tasks copy the context), a plain new thread starts a trace of its own, and
work run through ``contextvars.copy_context().run`` joins the copying thread's trace.

Recording never breaks the traced code, and never drops a trace silently: a trace the
store refuses (a full disk, a deleted database file) is appended to a fallback file that
``import_traces`` reads, and an error says where (``localscorers.ingest.unwritten``); the
function's result is returned as usual. Exceptions raised by the user's own code
propagate unchanged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import logging
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterator, Mapping
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar, cast, overload

from localscorers import _context
from localscorers._spans import (
    ActiveTrace,
    GeneratorFlow,
    LiveSpan,
    attribute_map,
    bound_inputs,
    checked_text,
    signature_of,
    string_entries,
)
from localscorers.exceptions import ConfigurationError
from localscorers.ingest.records import build_record
from localscorers.ingest.unwritten import save_unwritten
from localscorers.models import Span, TraceStatus
from localscorers.store.codec import safe_repr
from localscorers.store.rows import new_trace_id

__all__ = [
    "LiveSpan",
    "get_current_active_span",
    "start_root_span",
    "start_span",
    "trace",
    "update_current_trace",
]

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


_CURRENT: ContextVar[LiveSpan | None] = ContextVar("localscorers_current_span", default=None)
# Traces being recorded by start_root_span(online_scoring=False), until they are written.
_ONLINE_SCORING_OFF: set[str] = set()
_OFF_LOCK = threading.Lock()


def _active_experiment() -> str | None:
    try:
        return _context.resolve_experiment_id(None)
    except Exception:  # resolved again, and any error logged, at commit
        logger.debug("Could not resolve the active experiment at trace start.", exc_info=True)
        return None


def _open_span(
    name: str,
    *,
    span_type: str | None,
    inputs: Any,  # noqa: ANN401 - the application's own value
    attributes: Mapping[str, Any] | None,
) -> LiveSpan:
    parent = _CURRENT.get()
    if parent is not None and parent._active.committed:
        # A copied context can outlive its trace (a thread still running after the root
        # ended): keep the work as a trace of its own rather than dropping it.
        logger.warning(
            "Span %r started after its parent's trace %s was written; recording it as a new "
            "trace. End the parent span after the work it waits for.",
            name,
            parent.trace_id,
        )
        parent = None
    active = ActiveTrace(new_trace_id(), _active_experiment()) if parent is None else parent._active
    span = LiveSpan(
        active=active,
        name=name,
        span_type=span_type,
        parent_id=None if parent is None else parent.span_id,
    )
    if inputs is not None:
        span.set_inputs(inputs)
    if attributes:
        span.set_attributes(attributes)
    with active.lock:
        active.open[span.span_id] = span
    return span


def _close_span(span: LiveSpan, error: BaseException | None) -> None:
    """End the span; when it is the root, write the trace. Never raises."""
    try:
        if error is not None:
            span.record_exception(error)
        end = max(time.time_ns(), span._start_time_ns)
        frozen = span._to_span(end_time_ns=end)
        span._end_time_ns = end
        active = span._active
        with active.lock:
            if active.committed:
                logger.warning(
                    "Span %r of trace %s ended after its root span; the trace was already "
                    "written with it in progress.",
                    span.name,
                    active.trace_id,
                )
                return
            active.open.pop(span.span_id, None)
            active.finished.append(frozen)
            if span.parent_id is not None:
                return
            active.committed = True
            spans = active.finished + [s._to_span(end_time_ns=None) for s in active.open.values()]
            tags, metadata = dict(active.tags), dict(active.metadata)
        try:
            _write(active, frozen, spans, tags, metadata)
        except Exception as exc:  # noqa: BLE001 - the call must not see it: kept aside, logged
            save_unwritten(active.trace_id, spans, tags, metadata, error=exc)
    except Exception:
        logger.exception(
            "localscorers could not record span %r; the call is unaffected.", span.name
        )


def _write(
    active: ActiveTrace,
    root: Span,
    spans: list[Span],
    tags: dict[str, str],
    metadata: dict[str, str],
) -> None:
    end_ns = root.end_time_ns or root.start_time_ns
    record = build_record(
        inputs=root.inputs,
        outputs=root.outputs,
        name=root.name,
        status=TraceStatus.ERROR if root.status is TraceStatus.ERROR else TraceStatus.OK,
        request_time=root.start_time_ns // 1_000_000,
        execution_duration_ms=end_ns // 1_000_000 - root.start_time_ns // 1_000_000,
        tags=tags,
        metadata=metadata,
        spans=spans,
        trace_id=active.trace_id,
    )
    if active.experiment_id is not None:
        # Resolved when the trace started (the active experiment, or start_root_span's):
        # build_record would check it again with a read transaction, half of a commit's
        # cost; the foreign key still refuses an experiment that is not there.
        record = dataclasses.replace(record, experiment_id=active.experiment_id)
    with _OFF_LOCK:
        online = active.trace_id not in _ONLINE_SCORING_OFF
        _ONLINE_SCORING_OFF.discard(active.trace_id)
    _context.current().store.write_traces([record], enqueue=online)


@contextlib.contextmanager
def _activate(span: LiveSpan) -> Iterator[LiveSpan]:
    """Make the span current for the block, record its exception, then end it."""
    token = _CURRENT.set(span)
    error: BaseException | None = None
    try:
        yield span
    except BaseException as exc:
        error = exc
        raise
    finally:
        _CURRENT.reset(token)
        _close_span(span, error)


def _check_options(name: object, span_type: object, *, name_optional: bool = False) -> None:
    if not (name is None and name_optional):
        # A name the store refuses (NUL) would send every trace to the unwritten file.
        checked_text(name, argument="A span name")
    if span_type is not None and (not isinstance(span_type, str) or not span_type):
        raise ConfigurationError(
            "span_type must be a non-empty string such as 'LLM' or 'RETRIEVER', got "
            f"{safe_repr(span_type)}."
        )


@contextlib.contextmanager
def start_span(
    name: str = "span",
    *,
    span_type: str | None = None,
    inputs: Any = None,  # noqa: ANN401 - the application's own value
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[LiveSpan]:
    """Record a block of code as a span; outside any span it starts a new trace.

    The span is the current span inside the ``with`` block, so spans started there
    (directly, through ``@trace`` or in asyncio tasks) become its children. When the
    block raises, the span gets status ``ERROR`` and an ``exception`` event, and the
    exception propagates unchanged. When the root span ends, the trace is written.

    Example::

        with start_span("retrieve", span_type="RETRIEVER", inputs={"q": q}) as span:
            docs = search(q)
            span.set_outputs(docs)

    Args:
        name: the span's name (for a root span, the trace's name).
        span_type: e.g. ``"LLM"``, ``"RETRIEVER"``, ``"TOOL"``; default ``"UNKNOWN"``.
        inputs: the span's inputs; ``span.set_inputs`` can set them later.
        attributes: initial attributes.

    Yields:
        The :class:`LiveSpan`, current inside the block.

    Raises:
        ConfigurationError: a blank name, a bad span type, or attributes that are not a dict.
    """
    _check_options(name, span_type)
    span = _open_span(name, span_type=span_type, inputs=inputs, attributes=attributes)
    with _activate(span):
        yield span


@contextlib.contextmanager
def start_root_span(
    name: str,
    *,
    experiment_id: str,
    inputs: Any = None,  # noqa: ANN401 - the application's own value
    tags: Mapping[str, str] | None = None,
    metadata: Mapping[str, str] | None = None,
    online_scoring: bool = True,
    trace_id: str | None = None,
) -> Iterator[LiveSpan]:
    """Record a block as a new trace in a given experiment, even inside another span.

    ``evaluate`` records each ``predict_fn`` call with it: the trace goes to the
    evaluation's experiment with its metadata and the row's own ``trace_id`` (so a
    second writer of the same row conflicts instead of duplicating it), and with
    ``online_scoring=False`` no active scorer is asked to score it (the evaluation
    runs its own scorers).

    Raises:
        ConfigurationError: a blank name.
    """
    _check_options(name, None)
    active = ActiveTrace(trace_id or new_trace_id(), experiment_id)
    active.tags.update(string_entries(tags, argument="tags"))
    active.metadata.update(string_entries(metadata, argument="metadata"))
    if not online_scoring:
        with _OFF_LOCK:
            _ONLINE_SCORING_OFF.add(active.trace_id)
    span = LiveSpan(active=active, name=name, span_type=None, parent_id=None)
    if inputs is not None:
        span.set_inputs(inputs)
    with active.lock:
        active.open[span.span_id] = span
    with _activate(span):
        yield span


def get_current_active_span() -> LiveSpan | None:
    """Return the span running in this thread or task, or None outside any span."""
    span = _CURRENT.get()
    if span is None or span._end_time_ns is not None:
        return None
    return span


def update_current_trace(
    *,
    tags: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Add tags and metadata to the trace being recorded; they are written with it.

    Non-string values are stored as JSON text. A key set twice keeps the later value.

    Raises:
        ConfigurationError: called outside an active trace, or tags / metadata that are
            not dicts with non-empty string keys.
    """
    tag_entries = string_entries(tags, argument="tags")
    meta_entries = string_entries(metadata, argument="metadata")
    span = get_current_active_span()
    if span is None:
        raise ConfigurationError(
            "update_current_trace() was called outside an active trace. Call it inside a "
            "function decorated with @trace or inside a 'with start_span(...)' block."
        )
    active = span._active
    with active.lock:
        active.tags.update(tag_entries)
        active.metadata.update(meta_entries)


@overload
def trace(func: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def trace(
    func: None = None,
    /,
    *,
    name: str | None = None,
    span_type: str | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def trace(
    func: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    span_type: str | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Record every call of a function as a span (a trace when called outside any span).

    Use bare (``@trace``) or with options (``@trace(name=..., span_type=..., attributes=...)``).
    The span's inputs are the call's arguments by parameter name (defaults applied,
    ``self`` / ``cls`` left out) and its outputs the return value. For a generator
    function the span covers the iteration and its outputs are the yielded items as a
    list; ``async def`` functions and async generators work the same way. An exception
    sets the span's status to ``ERROR``, adds an ``exception`` event and propagates
    unchanged.

    Args:
        func: the function, when used bare.
        name: the span's name (default: the function's ``__name__``).
        span_type: e.g. ``"LLM"``, ``"RETRIEVER"``, ``"TOOL"``; default ``"UNKNOWN"``.
        attributes: attributes set on every span of the function.

    Returns:
        The wrapped function, or a decorator when called with options.

    Raises:
        ConfigurationError: the target is not callable, or an option is invalid.
    """
    _check_options(name, span_type, name_optional=True)
    fixed_attributes = attribute_map(attributes, argument="attributes")

    def decorate(target: Callable[P, R]) -> Callable[P, R]:
        if not callable(target):
            raise ConfigurationError(f"@trace decorates functions, got {safe_repr(target)}.")
        span_name = name or getattr(target, "__name__", None) or type(target).__name__
        signature = signature_of(target)

        def scope(args: tuple[Any, ...], kwargs: dict[str, Any]) -> LiveSpan:
            return _open_span(
                span_name,
                span_type=span_type,
                inputs=bound_inputs(signature, args, kwargs),
                attributes=fixed_attributes,
            )

        if inspect.isasyncgenfunction(target):
            return cast("Callable[P, R]", _wrap_async_generator(target, scope))
        if inspect.isgeneratorfunction(target):
            return cast("Callable[P, R]", _wrap_generator(target, scope))
        if inspect.iscoroutinefunction(target):
            return cast("Callable[P, R]", _wrap_coroutine(target, scope))
        return _wrap_function(target, scope)

    return decorate if func is None else decorate(func)


_Opener = Callable[[tuple[Any, ...], dict[str, Any]], LiveSpan]


def _wrap_function(target: Callable[P, R], opener: _Opener) -> Callable[P, R]:
    @functools.wraps(target)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with _activate(opener(args, kwargs)) as span:
            result = target(*args, **kwargs)
            span.set_outputs(result)
        return result

    return wrapper


def _wrap_coroutine(target: Callable[..., Awaitable[Any]], opener: _Opener) -> Callable[..., Any]:
    @functools.wraps(target)
    async def wrapper(*args: object, **kwargs: object) -> Any:  # noqa: ANN401 - the user's value
        with _activate(opener(args, kwargs)) as span:
            result = await target(*args, **kwargs)
            span.set_outputs(result)
        return result

    return wrapper


@contextlib.contextmanager
def _iterating(span: LiveSpan) -> Iterator[GeneratorFlow]:
    """The iteration of a traced generator, sync or async: the span ends when it does.

    An exception that ends the iteration is the span's error, except ``GeneratorExit``
    (the consumer stopped early), which ends it normally; the items are its outputs.
    """
    flow = GeneratorFlow(span, _CURRENT, _close_span)
    try:
        yield flow
    except BaseException as exc:
        flow.failed(exc)
        raise
    finally:
        flow.end()


def _wrap_generator(
    target: Callable[..., Generator[Any, Any, Any]], opener: _Opener
) -> Callable[..., Generator[Any, Any, Any]]:
    # The span covers the iteration and collects the items as its outputs; values and
    # exceptions sent in are forwarded (as ``yield from`` would), and a consumer that
    # stops early (break, close()) ends the span normally.
    @functools.wraps(target)
    def wrapper(*args: object, **kwargs: object) -> Generator[Any, Any, Any]:
        # Runs on the first next(): like MLflow, the span starts when iteration does.
        with _iterating(opener(args, kwargs)) as flow:
            inner = target(*args, **kwargs)
            while True:
                try:
                    item = flow.kept(flow.step(inner))
                except StopIteration as stop:
                    return stop.value
                try:
                    flow.sent = yield item
                except GeneratorExit:
                    inner.close()
                    raise
                except BaseException as exc:  # noqa: BLE001 - forwarded like yield from
                    flow.thrown = exc

    return wrapper


def _wrap_async_generator(
    target: Callable[..., AsyncGenerator[Any, Any]], opener: _Opener
) -> Callable[..., AsyncGenerator[Any, Any]]:
    # _wrap_generator's contract for ``async def ... yield`` (streamed LLM responses).
    @functools.wraps(target)
    async def wrapper(*args: object, **kwargs: object) -> AsyncGenerator[Any, Any]:
        with _iterating(opener(args, kwargs)) as flow:
            inner = target(*args, **kwargs)
            while True:
                try:
                    item = flow.kept(await flow.astep(inner))
                except StopAsyncIteration:
                    return
                try:
                    flow.sent = yield item
                except GeneratorExit:
                    await inner.aclose()
                    raise
                except BaseException as exc:  # noqa: BLE001 - forwarded like the sync wrapper
                    flow.thrown = exc

    return wrapper
