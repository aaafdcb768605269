"""Scorers: ``@scorer`` and the registry's scorer functions (DESIGN.md section 5).

The ``Scorer`` model itself (how it is called, stored and restored, and its lifecycle:
``register`` / ``start`` / ``update`` / ``stop`` / ``delete``) is in
:mod:`localscorers.evaluation.scorer_base`; it is public here. A ``Scorer`` never
changes after construction: each lifecycle call writes to the registry and returns a
new instance carrying the stored state; the receiver stays as it was.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Literal, overload

from localscorers import _context
from localscorers.evaluation import aggregations as _aggregations
from localscorers.evaluation.aggregations import Aggregation
from localscorers.evaluation.scorer_base import (
    SCORER_PARAMETERS,
    FunctionScorer,
    Scorer,
    scorer_from_state,
)
from localscorers.exceptions import ConfigurationError
from localscorers.store.scorer_state import validate_name

__all__ = [
    "SCORER_PARAMETERS",
    "FunctionScorer",
    "Scorer",
    "delete_scorer",
    "get_scorer",
    "list_scorer_versions",
    "list_scorers",
    "scorer",
    "scorer_from_state",
]


def _make_function_scorer(
    func: Callable[..., Any],
    *,
    name: str | None,
    description: str | None,
    timeout_seconds: float | None,
    max_concurrency: int | None,
    aggregations: list[Aggregation] | None,
) -> FunctionScorer:
    if not callable(func):
        raise ConfigurationError(f"@scorer decorates a function, got {func!r}.")
    signature = inspect.signature(func)
    extra = [p for p in signature.parameters if p not in SCORER_PARAMETERS]
    if extra:
        raise ConfigurationError(
            f"Scorer function {func.__qualname__!r} has parameters {extra}; a scorer may "
            f"only take a subset of {list(SCORER_PARAMETERS)}, which are passed by name."
        )
    scorer_name = validate_name(func.__name__ if name is None else name)
    if timeout_seconds is not None and not (
        isinstance(timeout_seconds, int | float) and timeout_seconds > 0
    ):
        raise ConfigurationError(
            f"timeout_seconds must be a positive number of seconds, got {timeout_seconds!r}."
        )
    if max_concurrency is not None and not (
        isinstance(max_concurrency, int) and max_concurrency >= 1
    ):
        raise ConfigurationError(
            f"max_concurrency must be a positive integer, got {max_concurrency!r}."
        )
    return FunctionScorer(
        name=scorer_name,
        description=description or inspect.getdoc(func),
        func=func,
        timeout_seconds=timeout_seconds,
        max_concurrency=max_concurrency,
        aggregations=_aggregations.check_aggregations(aggregations),
    )


@overload
def scorer(func: Callable[..., Any], /) -> FunctionScorer: ...
@overload
def scorer(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_seconds: float | None = None,
    max_concurrency: int | None = None,
    aggregations: list[Aggregation] | None = None,
) -> Callable[[Callable[..., Any]], FunctionScorer]: ...
def scorer(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_seconds: float | None = None,
    max_concurrency: int | None = None,
    aggregations: list[Aggregation] | None = None,
) -> FunctionScorer | Callable[[Callable[..., Any]], FunctionScorer]:
    """Turn a function into a ``Scorer``; use bare (``@scorer``) or as ``@scorer(name=...)``.

    The function's parameters must be a subset of ``inputs, outputs, expectations,
    trace``. It may return a bool, number, string, ``Feedback`` or list of ``Feedback``.

    Args:
        func: the function (when used bare).
        name: the scorer's name (default: the function's name).
        description: what it checks (default: the function's docstring).
        timeout_seconds: per-call timeout in production; a call running longer is
            recorded as a ``SCORER_TIMEOUT`` error feedback.
        max_concurrency: at most this many calls of this scorer run at once.
        aggregations: how ``evaluate`` and the report summarize its values: names among
            ``"mean"``, ``"min"``, ``"max"``, ``"median"``, ``"variance"``, ``"p90"``,
            or functions of a list of floats (not registrable: stored by name only).

    Raises:
        ConfigurationError: the function takes other parameters, the name is blank,
            an option is out of range, or an aggregation is unknown.
    """

    def decorate(inner: Callable[..., Any]) -> FunctionScorer:
        return _make_function_scorer(
            inner,
            name=name,
            description=description,
            timeout_seconds=timeout_seconds,
            max_concurrency=max_concurrency,
            aggregations=aggregations,
        )

    return decorate if func is None else decorate(func)


def list_scorers(*, experiment_id: str | None = None) -> list[Scorer]:
    """Return the registered scorers of the experiment (latest versions, by name)."""
    runtime = _context.current()
    experiment = _context.resolve_experiment_id(experiment_id)
    return [
        scorer_from_state(state, db_path=runtime.db.path)
        for state in runtime.registry.list(experiment)
    ]


def get_scorer(
    *, name: str, experiment_id: str | None = None, version: int | None = None
) -> Scorer:
    """Return a registered scorer by name (latest version unless ``version`` is given).

    Raises:
        ScorerNotFoundError: no such name or version.
    """
    runtime = _context.current()
    experiment = _context.resolve_experiment_id(experiment_id)
    state = runtime.registry.get(experiment, validate_name(name), version=version)
    return scorer_from_state(state, db_path=runtime.db.path)


def list_scorer_versions(
    *, name: str, experiment_id: str | None = None
) -> list[tuple[Scorer, int]]:
    """Return every registered version of a scorer as ``(scorer, version)``, oldest first.

    As MLflow's ``list_scorer_versions``; each scorer carries the name's current
    lifecycle state (status, rate, filter) with that version's definition.

    Raises:
        ScorerNotFoundError: no scorer of that name is registered.
    """
    runtime = _context.current()
    experiment = _context.resolve_experiment_id(experiment_id)
    states = runtime.registry.versions(experiment, validate_name(name))
    return [(scorer_from_state(s, db_path=runtime.db.path), s.version) for s in states]


def delete_scorer(
    *, name: str, experiment_id: str | None = None, version: int | Literal["all"] | None = None
) -> None:
    """Delete a scorer: one version, or every version and its config (None or ``"all"``).

    Raises:
        ScorerNotFoundError: no such name or version.
        ConfigurationError: ``version`` is neither an int, ``"all"`` nor None.
    """
    runtime = _context.current()
    experiment = _context.resolve_experiment_id(experiment_id)
    runtime.registry.delete(experiment, validate_name(name), version=version)
