"""The in-memory span and trace state behind ``tracing``: ``LiveSpan`` and value helpers."""

from __future__ import annotations

import inspect
import logging
import math
import secrets
import threading
import time
import traceback
from collections.abc import AsyncGenerator, Callable, Generator, Mapping, Sequence
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from localscorers import _clock
from localscorers.exceptions import ConfigurationError
from localscorers.models import Span, TraceStatus
from localscorers.store import codec
from localscorers.store.codec import safe_repr

__all__ = [
    "DEFAULT_SPAN_TYPE",
    "MAX_EPOCH_MS",
    "MAX_EPOCH_NS",
    "ActiveTrace",
    "GeneratorFlow",
    "LiveSpan",
    "attribute_map",
    "bound_inputs",
    "checked_text",
    "duration_ms",
    "epoch_ms",
    "signature_of",
    "snapshot",
    "span_list",
    "string_entries",
]

logger = logging.getLogger("localscorers.tracing")

#: MLflow's span type for spans created without one (``SpanType.UNKNOWN``).
DEFAULT_SPAN_TYPE = "UNKNOWN"


def snapshot(value: object) -> Any:  # noqa: ANN401 - user values are untyped
    """Return the value as it will be stored, taken now so later mutation cannot leak in."""
    try:
        return codec.jsonable(value)
    except Exception:  # a value we cannot encode must not break the user's call
        if isinstance(value, Mapping):  # keep the arguments that do encode
            return {str(k): snapshot(v) for k, v in value.items()}
        logger.warning(
            "Could not encode a %s value for the trace; storing a placeholder.",
            type(value).__name__,
            exc_info=True,
        )
        return f"<unserializable {type(value).__name__}>"


def _status(value: object) -> TraceStatus:
    text = value.value if isinstance(value, TraceStatus) else str(value).upper()
    if text not in (TraceStatus.OK, TraceStatus.ERROR):
        raise ConfigurationError(
            f"A span status must be 'OK' or 'ERROR', got {safe_repr(value)}. "
            "Use 'ERROR' to mark a failed operation."
        )
    return TraceStatus(text)


def _key(key: object, *, argument: str) -> str:
    if not isinstance(key, str) or not key:
        raise ConfigurationError(
            f"{argument} keys must be non-empty strings, got {safe_repr(key)}."
        )
    problem = codec.text_problem(key)
    if problem is not None:
        raise ConfigurationError(f"{argument} keys {problem}.")
    return key


def _mapping(values: object, *, argument: str, expected: str) -> Mapping[str, Any]:
    """Return ``values`` (None: empty) if it is a mapping, else raise naming the argument."""
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise ConfigurationError(
            f"{argument} must be {expected}, got {type(values).__name__}: {safe_repr(values)}."
        )
    return values


def attribute_map(attributes: Mapping[str, Any] | None, *, argument: str) -> dict[str, Any]:
    checked = _mapping(attributes, argument=argument, expected="a dict")
    return {_key(k, argument=argument): snapshot(v) for k, v in checked.items()}


def string_entries(values: Mapping[str, Any] | None, *, argument: str) -> dict[str, str]:
    """Tags and metadata are strings; other values are stored as JSON text, as in log_trace."""
    checked = _mapping(values, argument=argument, expected="a dict of strings")
    return {
        _key(k, argument=argument): codec.safe_text(v) if isinstance(v, str) else codec.dumps(v)
        for k, v in checked.items()
    }


# -- argument checks shared by the public API (log_trace, tracing, import) --------------

#: Span times are stored as signed 64-bit nanoseconds: the last one is in April 2262.
MAX_EPOCH_NS = 2**63 - 1
MAX_EPOCH_MS = MAX_EPOCH_NS // 1_000_000


def checked_text(
    value: object, *, argument: str, max_length: int | None = None, optional: bool = False
) -> str | None:
    """Return a non-blank string that can be stored, or raise naming the argument.

    Raises:
        ConfigurationError: not a string, blank, too long, or holding a NUL or a lone
            surrogate.
    """
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{argument} must be a non-blank string, got {safe_repr(value)}.")
    problem = codec.text_problem(value, max_length=max_length)
    if problem is not None:
        raise ConfigurationError(f"{argument} {problem}.")
    return value


def epoch_ms(value: object, *, argument: str) -> int | None:
    """Normalize a time (a datetime, naive meaning UTC, or epoch ms) within 1970..2262.

    Raises:
        ConfigurationError: not a time, NaN or infinite, or outside what the store holds.
    """
    value = codec.plain_scalar(value)
    if value is None:
        return None
    if isinstance(value, datetime):
        ms = _clock.ms_from_datetime(value)
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(
            f"{argument} must be a datetime or epoch milliseconds, got {safe_repr(value)} "
            f"({type(value).__name__})."
        )
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigurationError(f"{argument} must be a finite number, got {safe_repr(value)}.")
    else:
        ms = int(value)
    if not 0 <= ms <= MAX_EPOCH_MS:
        raise ConfigurationError(
            f"{argument} must be between 1970-01-01 and 2262-04-11 (epoch milliseconds 0 to "
            f"{MAX_EPOCH_MS}), got {safe_repr(value)}."
        )
    return ms


def duration_ms(value: object, *, start_ms: int) -> int | None:
    """Normalize ``execution_duration_ms``: a finite, non-negative number of milliseconds.

    Raises:
        ConfigurationError: not a number, negative, NaN or infinite, or ending after 2262.
    """
    value = codec.plain_scalar(value)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (isinstance(value, float) and not math.isfinite(value))
        or value < 0
    ):
        raise ConfigurationError(
            "execution_duration_ms must be a non-negative number of milliseconds, got "
            f"{safe_repr(value)}."
        )
    if start_ms + value > MAX_EPOCH_MS:
        raise ConfigurationError(
            f"execution_duration_ms={safe_repr(value)} ends the trace after 2262-04-11, the "
            "last time "
            "the store holds. Pass the duration in milliseconds."
        )
    return int(value)


def _span_time(value: int | None, *, where: str) -> None:
    if value is not None and not 0 <= value <= MAX_EPOCH_NS:
        raise ConfigurationError(
            f"{where} must be epoch nanoseconds between 0 and {MAX_EPOCH_NS}, "
            f"got {safe_repr(value)}."
        )


def span_list(value: object) -> list[Span]:
    """Normalize ``spans``: a list of ``Span`` or of dicts with ``Span``'s fields.

    Raises:
        ConfigurationError: not a list, an item that is not a span, a missing or bad
            field, or a time outside the 64-bit nanoseconds the store holds.
    """
    if value is None:
        return []
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
        raise ConfigurationError(
            f"spans must be a list of Span objects or dicts, got {type(value).__name__}."
        )
    spans = []
    for index, item in enumerate(value):
        if isinstance(item, Span):
            span = item
        elif isinstance(item, Mapping):
            try:
                span = Span.model_validate(dict(item))
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or 'span'}: {e['msg']}"
                    for e in exc.errors()[:5]
                )
                raise ConfigurationError(
                    f"spans[{index}] is not a valid span ({problems}). A span needs span_id, "
                    "name and start_time_ns; see Span's fields."
                ) from None
        else:
            raise ConfigurationError(
                f"spans must hold Span objects or dicts with Span's fields, got {safe_repr(item)}."
            )
        for field_name in ("span_id", "name"):
            checked_text(getattr(span, field_name), argument=f"spans[{index}].{field_name}")
        _span_time(span.start_time_ns, where=f"spans[{index}].start_time_ns")
        _span_time(span.end_time_ns, where=f"spans[{index}].end_time_ns")
        spans.append(span)
    return spans


def signature_of(func: Callable[..., Any]) -> inspect.Signature | None:
    """The function's signature, or None when it has none (some builtins and C callables)."""
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):
        return None


def bound_inputs(
    signature: inspect.Signature | None, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """The call's arguments by parameter name, defaults applied, without ``self`` / ``cls``."""
    if signature is None:
        return {"args": list(args), "kwargs": kwargs}
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError:
        # The call itself will raise the same TypeError, which the span records.
        return {"args": list(args), "kwargs": kwargs}
    bound.apply_defaults()
    arguments = dict(bound.arguments)
    first = next(iter(signature.parameters), None)
    if first in ("self", "cls"):
        arguments.pop(first, None)
    return arguments


class ActiveTrace:
    """The in-memory state of one trace between its root span's start and end."""

    def __init__(self, trace_id: str, experiment_id: str | None) -> None:
        self.trace_id = trace_id
        self.experiment_id = experiment_id
        # Spans of one trace may start and end on several threads (copied contexts).
        self.lock = threading.Lock()
        self.open: dict[str, LiveSpan] = {}
        self.finished: list[Span] = []
        self.tags: dict[str, str] = {}
        self.metadata: dict[str, str] = {}
        self.committed = False


class LiveSpan:
    """A span being recorded: what ``start_span`` yields and ``get_current_active_span`` returns.

    Setters take effect until the span ends; after that they are ignored with a warning,
    because the span has already been added to its trace.
    """

    def __init__(
        self,
        *,
        active: ActiveTrace,
        name: str,
        span_type: str | None,
        parent_id: str | None,
    ) -> None:
        self._active = active
        self._span_id = secrets.token_hex(8)
        self._parent_id = parent_id
        self._name = name
        self._span_type = span_type or DEFAULT_SPAN_TYPE
        self._inputs: Any = None
        self._outputs: Any = None
        self._attributes: dict[str, Any] = {}
        self._events: list[dict[str, Any]] = []
        self._status = TraceStatus.OK
        self._status_message: str | None = None
        self._start_time_ns = time.time_ns()
        self._end_time_ns: int | None = None

    def __repr__(self) -> str:
        return (
            f"LiveSpan(name={self._name!r}, trace_id={self.trace_id!r}, "
            f"span_id={self._span_id!r}, parent_id={self._parent_id!r})"
        )

    @property
    def span_id(self) -> str:
        """The span's id (16 hex digits), unique within its trace."""
        return self._span_id

    @property
    def trace_id(self) -> str:
        """The id of the trace the span belongs to (``"tr-"`` + 32 hex digits)."""
        return self._active.trace_id

    @property
    def parent_id(self) -> str | None:
        """The parent span's id, or None for the root span."""
        return self._parent_id

    @property
    def name(self) -> str:
        """The span's name."""
        return self._name

    @property
    def span_type(self) -> str:
        """The span's type, e.g. ``"LLM"`` or ``"RETRIEVER"`` (default ``"UNKNOWN"``)."""
        return self._span_type

    def _writable(self, what: str) -> bool:
        if self._end_time_ns is None:
            return True
        logger.warning("Ignored %s on span %r: the span has already ended.", what, self._name)
        return False

    def set_inputs(self, inputs: Any) -> None:  # noqa: ANN401 - the application's own value
        """Set the span's inputs (for the root span, the trace's inputs)."""
        if self._writable("set_inputs"):
            self._inputs = snapshot(inputs)

    def set_outputs(self, outputs: Any) -> None:  # noqa: ANN401 - the application's own value
        """Set the span's outputs (for the root span, the trace's outputs)."""
        if self._writable("set_outputs"):
            self._outputs = snapshot(outputs)

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        """Add attributes to the span, replacing those with the same keys.

        Raises:
            ConfigurationError: ``attributes`` is not a dict with non-empty string keys.
        """
        values = attribute_map(attributes, argument="attributes")
        if self._writable("set_attributes"):
            self._attributes.update(values)

    def set_attribute(self, key: str, value: Any) -> None:  # noqa: ANN401 - any JSON-able value
        """Set one attribute of the span.

        Raises:
            ConfigurationError: the key is not a non-empty string.
        """
        self.set_attributes({key: value})

    def set_status(self, status: TraceStatus | str, *, message: str | None = None) -> None:
        """Mark the span ``"OK"`` or ``"ERROR"``; an ``ERROR`` root span makes the trace ``ERROR``.

        Raises:
            ConfigurationError: the status is neither ``OK`` nor ``ERROR``.
        """
        value = _status(status)
        if self._writable("set_status"):
            self._status = value
            self._status_message = message

    def add_event(
        self,
        name: str,
        *,
        attributes: Mapping[str, Any] | None = None,
        timestamp_ns: int | None = None,
    ) -> None:
        """Record an event on the span (stored like MLflow's: name, time_unix_nano, attributes).

        Raises:
            ConfigurationError: the name is not a non-empty string or the attributes are not a dict.
        """
        if not isinstance(name, str) or not name:
            raise ConfigurationError(
                f"An event name must be a non-empty string, got {safe_repr(name)}."
            )
        values = attribute_map(attributes, argument="event attributes")
        if self._writable("add_event"):
            self._events.append(
                {
                    "name": name,
                    "time_unix_nano": time.time_ns() if timestamp_ns is None else timestamp_ns,
                    "attributes": values,
                }
            )

    def record_exception(self, exception: BaseException) -> None:
        """Add an ``exception`` event (type, message, stack trace) and set the status to ERROR."""
        self.add_event(
            "exception",
            attributes={
                "exception.type": type(exception).__name__,
                "exception.message": str(exception),
                "exception.stacktrace": "".join(traceback.format_exception(exception)),
            },
        )
        self.set_status(TraceStatus.ERROR, message=f"{type(exception).__name__}: {exception}")

    def _to_span(self, *, end_time_ns: int | None) -> Span:
        return Span(
            span_id=self._span_id,
            parent_id=self._parent_id,
            name=self._name,
            span_type=self._span_type,
            status=self._status if end_time_ns is not None else TraceStatus.IN_PROGRESS,
            status_message=self._status_message,
            start_time_ns=self._start_time_ns,
            end_time_ns=end_time_ns,
            inputs=self._inputs,
            outputs=self._outputs,
            attributes=dict(self._attributes),
            events=list(self._events),
        )


class GeneratorFlow:
    """One traced generator's iteration: its items so far, what to send or throw in next.

    Args:
        span: the generator's span, current only while the generator's own code runs.
        current: the context variable holding the current span.
        close: ends the span (``tracing._close_span``).
    """

    def __init__(
        self,
        span: LiveSpan,
        current: ContextVar[LiveSpan | None],
        close: Callable[[LiveSpan, BaseException | None], None],
    ) -> None:
        self.span, self._current, self._close = span, current, close
        self.items: list[Any] = []
        self.sent: Any = None
        self.thrown: BaseException | None = None
        self.error: BaseException | None = None

    def step(self, inner: Generator[Any, Any, Any]) -> Any:  # noqa: ANN401 - the user's item
        """The generator's next item (StopIteration when it returned)."""
        token = self._current.set(self.span)
        try:
            return inner.send(self.sent) if self.thrown is None else inner.throw(self.thrown)
        finally:
            self._current.reset(token)

    async def astep(self, inner: AsyncGenerator[Any, Any]) -> Any:  # noqa: ANN401
        """The async generator's next item (StopAsyncIteration when it returned)."""
        token, thrown = self._current.set(self.span), self.thrown
        try:
            return await (inner.asend(self.sent) if thrown is None else inner.athrow(thrown))
        finally:
            self._current.reset(token)

    def kept(self, item: Any) -> Any:  # noqa: ANN401 - the user's item
        """Record an item the generator produced (an exception thrown in was delivered)."""
        self.thrown = None
        self.items.append(item)
        return item

    def failed(self, exc: BaseException) -> None:
        """The iteration ended by an exception (GeneratorExit: the consumer stopped early)."""
        self.error = None if isinstance(exc, GeneratorExit) else exc

    def end(self) -> None:
        """End the span, the items as its outputs."""
        self.span.set_outputs(self.items)
        self._close(self.span, self.error)
