"""Running one scorer on one trace and turning what it returns into feedback.

Shared by online evaluation and backfill jobs, through ``scheduler.py``. It
loads stored scorers through ``serialization`` only, never through ``scorers.py``,
so the evaluator sits below the public API in the import graph.
"""

from __future__ import annotations

import inspect
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from localscorers.evaluation import serialization
from localscorers.exceptions import ConfigurationError, ScorerLoadError, TransientError
from localscorers.models import AssessmentError, AssessmentSource, AssessmentSourceType, Feedback
from localscorers.store import codec
from localscorers.store.results import Plain

if TYPE_CHECKING:
    from localscorers.models import Trace
    from localscorers.store.database import Database
    from localscorers.store.scorer_state import ScorerState

__all__ = [
    "ALL_PARAMETERS",
    "EvaluationContext",
    "LoadedScorer",
    "Plain",
    "call_plain",
    "current_evaluation",
    "error_feedback",
    "evaluate",
    "evaluation_context",
    "light_trace",
    "load_scorer",
    "run_feedback",
    "to_feedback",
]


@dataclass(frozen=True)
class EvaluationContext:
    """What a scorer running in production may want to know (judges read it for the cache).

    Attributes:
        db: the database the trace lives in.
        origin: ``"online"`` or ``"backfill:<job id>"``.
        use_judge_cache: whether judges should reuse cached answers (None: their default).
    """

    db: Database
    origin: str
    use_judge_cache: bool | None = None


_current: ContextVar[EvaluationContext | None] = ContextVar("localscorers_evaluation", default=None)


def current_evaluation() -> EvaluationContext | None:
    """Return the context of the evaluation running in this thread, if any."""
    return _current.get()


@contextmanager
def evaluation_context(context: EvaluationContext) -> Iterator[None]:
    """Set the evaluation context for the duration of one scorer call."""
    token = _current.set(context)
    try:
        yield
    finally:
        _current.reset(token)


@dataclass(frozen=True)
class LoadedScorer:
    """A stored scorer version made runnable, or the reason it could not be."""

    name: str
    version: int
    call: Callable[..., Any] | None
    load_error: ScorerLoadError | None
    timeout_seconds: float | None
    max_concurrency: int | None
    # What it reads of a trace: a function's parameter names, all of them for a class
    # (none when it failed to load: evaluate() only records the error).
    parameters: frozenset[str] = frozenset()
    is_function: bool = False

    @property
    def direct(self) -> bool:
        """A function scorer that takes no ``trace``: ``call_plain`` and a ``light_trace`` do."""
        return self.call is not None and self.is_function and "trace" not in self.parameters


def _options(definition: dict[str, Any]) -> tuple[float | None, int | None]:
    source = (
        definition.get("config", definition) if definition.get("kind") == "class" else definition
    )
    timeout = source.get("timeout_seconds")
    limit = source.get("max_concurrency")
    return (float(timeout) if timeout else None), (int(limit) if limit else None)


# A function's call with what it takes of (inputs, outputs, expectations), by which it
# takes: named arguments, not a dict filtered per call (0.7 us of a 1 us trivial call).
_Filter = Callable[[Callable[..., Any]], Callable[..., Any]]
_PLAIN_FILTERS: dict[tuple[bool, bool, bool], _Filter] = {
    (False, False, False): lambda f: lambda inputs=None, outputs=None, expectations=None, **_: f(),
    (True, False, False): lambda f: (
        lambda inputs=None, outputs=None, expectations=None, **_: f(inputs=inputs)
    ),
    (False, True, False): lambda f: (
        lambda inputs=None, outputs=None, expectations=None, **_: f(outputs=outputs)
    ),
    (False, False, True): lambda f: (
        lambda inputs=None, outputs=None, expectations=None, **_: f(expectations=expectations)
    ),
    (True, True, False): lambda f: (
        lambda inputs=None, outputs=None, expectations=None, **_: f(inputs=inputs, outputs=outputs)
    ),
    (True, False, True): lambda f: (
        lambda inputs=None, outputs=None, expectations=None, **_: f(
            inputs=inputs, expectations=expectations
        )
    ),
    (False, True, True): lambda f: (
        lambda inputs=None, outputs=None, expectations=None, **_: f(
            outputs=outputs, expectations=expectations
        )
    ),
    (True, True, True): lambda f: (
        lambda inputs=None, outputs=None, expectations=None, **_: f(
            inputs=inputs, outputs=outputs, expectations=expectations
        )
    ),
}
_PLAIN_PARAMETERS = ("inputs", "outputs", "expectations")


def _keyword_filter(func: Callable[..., Any], wanted: frozenset[str]) -> Callable[..., Any]:
    """Call ``func`` with the keyword arguments it takes of those a caller gives."""
    if wanted <= frozenset(_PLAIN_PARAMETERS):
        # Every caller gives all three (and maybe trace): see evaluate() and call_plain().
        key = ("inputs" in wanted, "outputs" in wanted, "expectations" in wanted)
        return _PLAIN_FILTERS[key](func)

    def call(**given: Any) -> Any:  # noqa: ANN401 - whatever the user's function returns
        return func(**{key: value for key, value in given.items() if key in wanted})

    return call


ALL_PARAMETERS = frozenset({"inputs", "outputs", "expectations", "trace"})


def load_scorer(state: ScorerState, *, db_path: Path | None) -> LoadedScorer:
    """Make a stored scorer version runnable; a load failure is kept, not raised."""
    timeout, limit = _options(state.definition)
    fields = state.scorer_fields()
    try:
        if state.definition.get("kind") == "class":
            call: Callable[..., Any] = serialization.instantiate_class(state.definition, fields)
            wanted = ALL_PARAMETERS
        else:
            func = serialization.load_function(state.definition, db_path=db_path)
            wanted = frozenset(inspect.signature(func).parameters)
            call = _keyword_filter(func, wanted)
    except ScorerLoadError as exc:
        return LoadedScorer(state.name, state.version, None, exc, timeout, limit)
    is_function = state.definition.get("kind") != "class"
    return LoadedScorer(state.name, state.version, call, None, timeout, limit, wanted, is_function)


class _LightTrace:
    """``trace.data.request``, ``trace.data.response`` and ``trace.expectations``, in one object."""

    __slots__ = ("data", "expectations", "request", "response")

    def __init__(self, request: Any, response: Any, expectations: dict[str, Any]) -> None:  # noqa: ANN401
        self.request, self.response, self.expectations = request, response, expectations
        self.data = self  # one object per trace, not two (a backfill makes one per trace)


def light_trace(request: Any, response: Any, expectations: dict[str, Any]) -> Trace:  # noqa: ANN401
    """Stand in for a Trace for scorers that read only inputs, outputs and expectations.

    Such a scorer never sees this object. Building a real Trace (spans, tags, pydantic)
    was most of the cost of a trivial evaluation (benchmarks/backfill.py, online.py).
    """
    return cast("Trace", _LightTrace(request, response, expectations))


def _source(name: str) -> AssessmentSource:
    return AssessmentSource(source_type=AssessmentSourceType.CODE, source_id=name)


def to_feedback(result: object, *, name: str) -> list[Feedback]:
    """Normalize what a scorer returned into feedback named after the registered scorer.

    A single value or ``Feedback`` is named ``name``; feedback in a list keeps its own
    name (or gets ``name`` when it has none). A numpy scalar counts as its Python value.
    """
    result = codec.plain_scalar(result)
    if isinstance(result, Feedback):
        return [_complete(result, name=name, keep_name=False)]
    if isinstance(result, list) and result and all(isinstance(r, Feedback) for r in result):
        return [_complete(r, name=name, keep_name=True) for r in result]
    if isinstance(result, bool | int | float | str):
        return [Feedback(name=name, value=result, source=_source(name))]
    return [
        _invalid(
            name,
            f"Scorer {name!r} returned {type(result).__name__} ({result!r:.200}); a "
            "scorer must return a bool, number, string, Feedback or list of Feedback.",
        )
    ]


def run_feedback(result: object, *, name: str) -> Feedback | list[Feedback] | None:
    """Turn a scorer's return value into what ``Scorer.run`` returns, as MLflow does.

    A bare value becomes a ``Feedback`` named ``name``; a ``Feedback`` left at MLflow's
    default name (or none) takes ``name``; a list of ``Feedback`` keeps its names; None
    stays None.

    Raises:
        ConfigurationError: the value is none of bool, number, string, ``Feedback`` or
            list of ``Feedback``.
    """
    if result is None:
        return None
    if isinstance(result, Feedback):
        # MLflow renames only a Feedback left at its default name; a list keeps names.
        unnamed = result.name in (None, "feedback")
        return to_feedback(
            [result.model_copy(update={"name": None}) if unnamed else result], name=name
        )[0]
    valid_list = isinstance(result, list) and all(isinstance(r, Feedback) for r in result)
    if not (valid_list or isinstance(result, bool | int | float | str)):
        shown = (
            f"list[{type(result[0]).__name__}]"
            if isinstance(result, list) and result
            else type(result).__name__
        )
        raise ConfigurationError(
            f"{name} must return one of int, float, bool, str, Feedback, or "
            f"list[Feedback]. Got {shown}"
        )
    feedback = to_feedback(result, name=name)
    return feedback if isinstance(result, list) else feedback[0]


def _invalid(name: str, message: str) -> Feedback:
    return Feedback(
        name=name,
        source=_source(name),
        error=AssessmentError(error_code="INVALID_SCORER_RESULT", error_message=message),
    )


def _complete(feedback: Feedback, *, name: str, keep_name: bool) -> Feedback:
    # Feedback that cannot be stored must fail here, as this evaluation's error: the
    # batch it would be written with (other evaluations' feedback) must not fail with it.
    try:
        codec.dumps(feedback.value)
        codec.dumps(feedback.metadata)
    except (TypeError, ValueError) as exc:
        return _invalid(
            name, f"Scorer {name!r} returned a Feedback that cannot be stored as JSON: {exc}"
        )
    update: dict[str, Any] = {}
    if not keep_name or feedback.name is None:
        update["name"] = name
    if feedback.source is None:
        update["source"] = _source(name)
    if feedback.assessment_id is not None:
        # A stored identity (say, a Feedback the scorer reuses for every trace) would
        # collide with the unique assessment id; the store gives each row its own.
        update["assessment_id"] = None
    return feedback.model_copy(update=update) if update else feedback


def error_feedback(exc: BaseException, *, name: str, error_code: str | None = None) -> Feedback:
    """Return the feedback recording that a scorer failed: code, message, stack trace."""
    code = error_code or getattr(exc, "error_code", None) or type(exc).__name__
    stack = "".join(traceback.format_exception(exc))
    return Feedback(
        name=name,
        source=_source(name),
        error=AssessmentError(error_code=str(code), error_message=str(exc), stack_trace=stack),
    )


def call_plain(
    call: Callable[..., Any], name: str, trace: Trace
) -> list[Feedback] | TransientError | Plain:
    """``evaluate()`` for a function scorer taking no ``trace``; plain values stay plain.

    The caller holds the evaluation context (``evaluation_context``) around its calls.
    A bool, number or string comes back as a 1-tuple, for ``store.plain_row``: a
    pydantic Feedback per evaluation was a large share of a trivial scorer's cost. A
    transient error is returned, not raised, for the caller's retry policy.
    """
    try:
        result = call(
            inputs=trace.data.request, outputs=trace.data.response, expectations=trace.expectations
        )
    except TransientError as exc:
        return exc
    except BaseException as exc:  # noqa: BLE001 - as in evaluate(): a scorer's exception is data
        return [error_feedback(exc, name=name)]
    if isinstance(result, bool | int | float | str):
        return (result,)
    return to_feedback(result, name=name)


def evaluate(loaded: LoadedScorer, trace: Trace, context: EvaluationContext) -> list[Feedback]:
    """Run a loaded scorer on a trace; failures become error feedback.

    Raises:
        TransientError: the scorer asked to be retried; the caller decides whether to.
    """
    if loaded.call is None:
        assert loaded.load_error is not None  # noqa: S101 - LoadedScorer has one or the other
        return [error_feedback(loaded.load_error, name=loaded.name, error_code="SCORER_LOAD_ERROR")]
    try:
        with evaluation_context(context):
            result = loaded.call(
                inputs=trace.data.request,
                outputs=trace.data.response,
                expectations=trace.expectations,
                trace=trace,
            )
    except TransientError:
        raise
    # A scorer's exception is data (STYLE.md rule 22). SystemExit and KeyboardInterrupt
    # too: some libraries exit on a fatal error, and letting it out killed the dispatcher.
    except BaseException as exc:  # noqa: BLE001
        return [error_feedback(exc, name=loaded.name)]
    return to_feedback(result, name=loaded.name)
