"""Test helpers: a trace without a database, a scripted judge model, feedback assertions."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, overload

from localscorers import _clock, _context, models, tracking
from localscorers.models import Expectation, Feedback, Span, Trace, TraceStatus
from localscorers.store import codec

__all__ = ["FakeJudgeModel", "LocalScorersDB", "assert_feedback", "fake_judge_model", "make_trace"]

_DEFAULT_VERDICT = "yes"
_UNSET: Any = object()
_DEFAULT_RATIONALE = "fake_judge_model was told to answer this."
_FLUSH_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class LocalScorersDB:
    """The database of the ``localscorers_db`` fixture.

    Attributes:
        path: the SQLite file, in the test's ``tmp_path``.
        uri: its ``sqlite:///`` URI (the current tracking URI during the test).
    """

    path: Path
    uri: str

    def flush(self, timeout: float = _FLUSH_TIMEOUT_S) -> None:
        """Run the pending online evaluations to completion before returning.

        Raises:
            AssertionError: they did not finish within ``timeout`` seconds (a stuck scorer).
        """
        if not tracking.flush(timeout=timeout):
            raise AssertionError(
                f"Online evaluations were still pending after {timeout:g} s: a scorer hangs "
                "or LOCALSCORERS_MONITOR=off leaves them to a worker."
            )


def open_test_database(path: Path) -> LocalScorersDB:
    """Make a fresh database file the tracking URI, with the in-process monitor on."""
    _context.reset()
    tracking.set_tracking_uri(path)
    return LocalScorersDB(path=path, uri=tracking.get_tracking_uri())


def close_test_database() -> None:
    """Stop the monitor and forget the tracking URI set by :func:`open_test_database`."""
    _context.reset()


def _span(value: Span | Mapping[str, Any]) -> Span:
    if isinstance(value, Span):
        return value
    fields = dict(value)
    fields.setdefault("span_id", secrets.token_hex(8))
    fields.setdefault("start_time_ns", time.time_ns())
    return Span.model_validate(fields)


def make_trace(
    inputs: Any = None,  # noqa: ANN401 - the application's own inputs
    outputs: Any = None,  # noqa: ANN401 - the application's own outputs
    *,
    spans: Sequence[Span | Mapping[str, Any]] | None = None,
    expectations: Mapping[str, Any] | None = None,
    name: str | None = None,
    status: str = "OK",
    tags: Mapping[str, str] | None = None,
    metadata: Mapping[str, str] | None = None,
    request_time: datetime | int | None = None,
    execution_duration_ms: int | None = None,
    trace_id: str | None = None,
) -> Trace:
    """Build a ``Trace`` in memory, without a database, to call a scorer on directly.

    Args:
        inputs: the trace's inputs (``trace.data.request``).
        outputs: the trace's outputs (``trace.data.response``).
        spans: ``Span`` objects or dicts of Span fields (``span_id`` and ``start_time_ns``
            are filled in when missing); by default one root span with the inputs and outputs.
        expectations: ground truth by name, as ``log_expectation`` would attach it.
        name: the trace's name.
        status: ``"OK"``, ``"ERROR"`` or ``"IN_PROGRESS"``.
        tags: string tags.
        metadata: string metadata.
        request_time: a datetime (naive means UTC) or epoch ms; default now.
        execution_duration_ms: how long the call took.
        trace_id: default a fresh ``tr-`` id.

    Returns:
        The trace; scorers read it as they would a stored one.
    """
    started_ms = _clock.to_epoch_ms(request_time, argument="request_time")
    request_ms = _clock.now_ms() if started_ms is None else started_ms
    trace_status = TraceStatus(status.upper())
    root = _root_span(name, trace_status, request_ms, execution_duration_ms, inputs, outputs)
    info = models.TraceInfo(
        trace_id=trace_id or f"tr-{secrets.token_hex(16)}",
        experiment_id=_context.DEFAULT_EXPERIMENT_ID,
        request_time=_clock.datetime_from_ms(request_ms),
        execution_duration_ms=execution_duration_ms,
        status=trace_status,
        name=name,
        tags=dict(tags or {}),
        metadata=dict(metadata or {}),
        assessments=[
            Expectation(name=key, value=codec.jsonable(value))
            for key, value in (expectations or {}).items()
        ],
    )
    data = models.TraceData(
        spans=[_span(s) for s in spans or [root]],
        request=codec.jsonable(inputs),
        response=codec.jsonable(outputs),
    )
    return Trace(info=info, data=data)


def _root_span(  # noqa: PLR0917 - the root span's fields, in Span's order
    name: str | None,
    status: TraceStatus,
    request_ms: int,
    duration_ms: int | None,
    inputs: Any,  # noqa: ANN401 - the application's own inputs
    outputs: Any,  # noqa: ANN401 - the application's own outputs
) -> dict[str, Any]:
    """The span of a trace built without spans: the whole call, named after the trace."""
    start_ns = request_ms * 1_000_000
    return {
        "name": name or "root",
        "status": status,
        "start_time_ns": start_ns,
        "end_time_ns": start_ns + (duration_ms or 0) * 1_000_000,
        "inputs": codec.jsonable(inputs),
        "outputs": codec.jsonable(outputs),
    }


class FakeJudgeModel:
    """A judge model (a callable ``(messages) -> str``) that answers a chosen verdict.

    Deterministic and offline. Pass it as ``model=`` to ``make_judge`` or a built-in judge;
    registered judges store it by reference (``python:/localscorers.testing.helpers:
    fake_judge_model``), so the in-process monitor finds this same object and its verdict.

    Attributes:
        verdict: what the judge answers (``"yes"`` by default; ``True``/``False`` for
            ``make_judge(feedback_value_type=bool)``), or a function of the messages.
        rationale: the rationale it gives.
        calls: the chat messages of every call, oldest first.
    """

    def __init__(self) -> None:
        self.verdict: Any = _DEFAULT_VERDICT
        self.rationale = _DEFAULT_RATIONALE
        self.calls: list[list[dict[str, str]]] = []
        # The judge is stored by reference: these make this object its own reference.
        self.__module__ = __name__
        self.__qualname__ = "fake_judge_model"

    def returns(
        self,
        verdict: Any | Callable[[list[dict[str, str]]], Any],  # noqa: ANN401 - any verdict
        *,
        rationale: str | None = None,
    ) -> FakeJudgeModel:
        """Answer ``verdict`` from now on (a value, or a function of the messages); return self."""
        self.verdict = verdict
        if rationale is not None:
            self.rationale = rationale
        return self

    def reset(self) -> None:
        """Answer the default verdict again and forget the calls."""
        self.verdict = _DEFAULT_VERDICT
        self.rationale = _DEFAULT_RATIONALE
        self.calls.clear()

    @overload
    def __call__(self, messages: list[dict[str, str]], /) -> str: ...

    @overload
    def __call__(
        self,
        value: Any = ...,  # noqa: ANN401 - any verdict
        /,
        *,
        verdict: Any = ...,  # noqa: ANN401 - any verdict
        rationale: str | None = None,
    ) -> FakeJudgeModel: ...

    def __call__(
        self,
        messages: Any = _UNSET,
        /,
        *,
        verdict: Any = _UNSET,
        rationale: str | None = None,
    ) -> str | FakeJudgeModel:
        """Answer chat messages in the judges' JSON format, or set the verdict.

        ``model(messages)`` (what a judge does) returns ``{"result": verdict, "rationale":
        ...}`` as JSON. ``model("no")`` or ``model(verdict=False, rationale="...")`` is
        :meth:`returns`: it sets the verdict and returns the model.
        """
        if isinstance(messages, list):
            self.calls.append([dict(m) for m in messages])
            answer = self.verdict(messages) if callable(self.verdict) else self.verdict
            return json.dumps({"result": codec.jsonable(answer), "rationale": self.rationale})
        chosen = verdict if verdict is not _UNSET else messages
        if chosen is _UNSET:
            chosen = self.verdict
        return self.returns(chosen, rationale=rationale)


fake_judge_model = FakeJudgeModel()


def _feedback(trace_id: str, name: str) -> list[Feedback]:
    trace = tracking.get_trace(trace_id)
    return [
        a for a in trace.info.assessments if isinstance(a, Feedback) and a.name == name and a.valid
    ]


_ANY = object()


def assert_feedback(
    trace_id: str,
    name: str,
    value: Any = _ANY,  # noqa: ANN401 - any feedback value
    *,
    error: bool = False,
    flush: bool = True,
) -> Feedback:
    """Assert that a trace has feedback ``name`` (with ``value``, when given) and return it.

    Args:
        trace_id: the trace.
        name: the feedback's name (the scorer's name).
        value: the expected value; omitted, any value passes.
        error: expect the scorer to have failed (feedback with ``error`` set) instead.
        flush: first wait for pending online evaluations (``localscorers.flush``).

    Returns:
        The feedback.

    Raises:
        AssertionError: no such feedback, a different value, or an unexpected error.
    """
    if flush:
        tracking.flush(timeout=_FLUSH_TIMEOUT_S)
    found = _feedback(trace_id, name)
    if not found:
        names = sorted({a.name for a in tracking.get_trace(trace_id).info.assessments if a.name})
        raise AssertionError(
            f"Trace {trace_id} has no feedback named {name!r} (it has: {names or 'none'})."
        )
    feedback = found[-1]
    if error:
        if feedback.error is None:
            raise AssertionError(
                f"Feedback {name!r} on {trace_id} has value {feedback.value!r}, not an error."
            )
        return feedback
    if feedback.error is not None:
        raise AssertionError(
            f"Feedback {name!r} on {trace_id} is an error: {feedback.error.error_code}: "
            f"{feedback.error.error_message}"
        )
    if value is not _ANY and feedback.value != value:
        raise AssertionError(
            f"Feedback {name!r} on {trace_id} is {feedback.value!r}, expected {value!r}."
        )
    return feedback
