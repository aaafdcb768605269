"""The base of every scorer: ``Scorer``, ``FunctionScorer``, and rebuilding one from storage.

A ``Scorer`` is a frozen model: how it is called (``run``), what the registry stores of
it (``definition``), and its lifecycle (``register`` / ``start`` / ``update`` / ``stop`` /
``delete``), each of which writes to the registry and returns a new instance carrying
the stored state. ``scorer_from_state`` rebuilds one from what the registry stored. The
public names (and ``@scorer``, ``list_scorers``...) are in :mod:`localscorers.scorers`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from localscorers import _context
from localscorers.evaluation import aggregations as _aggregations
from localscorers.evaluation import serialization
from localscorers.evaluation.aggregations import Aggregation
from localscorers.evaluation.execution import run_feedback
from localscorers.exceptions import ConfigurationError, ScorerLoadError
from localscorers.models import (
    DEFAULT_SESSION_IDLE_SECONDS,
    Feedback,
    ScorerSamplingConfig,
    ScorerStatus,
    check_sampling_config,
)
from localscorers.store.scorer_state import ScorerState, validate_name

if TYPE_CHECKING:
    from localscorers.models import Trace

__all__ = ["SCORER_PARAMETERS", "FunctionScorer", "Scorer", "scorer_from_state"]

# ``session``: the time-ordered traces of one conversation (session-level scorers).
SCORER_PARAMETERS = ("inputs", "outputs", "expectations", "trace", "session")
_STATE_FIELDS = frozenset(
    {"version", "status", "sample_rate", "filter_string", "experiment_id", "session_idle_seconds"}
)


class Scorer(BaseModel):
    """Base of every scorer: a frozen model with a name and its registry state.

    Subclasses implement ``__call__(*, inputs, outputs, expectations, trace)``. Their
    pydantic fields are their configuration: a registered class-based scorer is
    stored as its class reference plus those fields.

    Attributes:
        name: the scorer's name; feedback it writes in production carries it.
        version: the registered version, or None when unregistered.
        status: the lifecycle state (``ScorerStatus``).
        sample_rate: the active rate; 0.0 whenever the scorer is not active.
        filter_string: the active trace filter, if any.
        session_idle_seconds: for a session scorer, the silence after which a session is
            scored online (``ScorerSamplingConfig.session_idle_seconds``).
        timeout_seconds: per-call timeout in production (None: ``LOCALSCORERS_SCORER_TIMEOUT``).
        max_concurrency: at most this many calls of this scorer at once (None: no limit).
        aggregations: how ``evaluate`` and the report summarize its values (MLflow's
            names ``"mean"``, ``"min"``, ``"max"``, ``"median"``, ``"variance"``,
            ``"p90"``, or functions); None means the mean.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True, extra="forbid")

    # The fields that describe the lifecycle rather than the scorer itself.
    state_fields: ClassVar[frozenset[str]] = _STATE_FIELDS

    name: str
    description: str | None = None
    version: int | None = None
    status: ScorerStatus = ScorerStatus.UNREGISTERED
    sample_rate: float = 0.0
    filter_string: str | None = None
    experiment_id: str | None = None
    session_idle_seconds: float = DEFAULT_SESSION_IDLE_SECONDS
    timeout_seconds: float | None = Field(default=None, gt=0)
    max_concurrency: int | None = Field(default=None, ge=1)
    aggregations: list[Aggregation] | None = None

    @property
    def _server_name(self) -> str | None:
        """The name this scorer is registered under, None when unregistered (as in MLflow)."""
        registered = self.version is not None and self.status not in (
            ScorerStatus.UNREGISTERED,
            ScorerStatus.DELETED,
        )
        return self.name if registered else None

    @property
    def _sampling_config(self) -> ScorerSamplingConfig | None:
        """The sampling config in force (rate 0 when stopped); None when unregistered."""
        if self._server_name is None:
            return None
        return ScorerSamplingConfig(
            sample_rate=self.sample_rate,
            filter_string=self.filter_string,
            session_idle_seconds=self.session_idle_seconds,
        )

    def run(
        self,
        *,
        inputs: Any = None,  # noqa: ANN401 - scorers accept whatever the app logged
        outputs: Any = None,  # noqa: ANN401
        expectations: dict[str, Any] | None = None,
        trace: Trace | None = None,
        session: list[Trace] | None = None,
    ) -> Feedback | list[Feedback] | None:
        """Call the scorer as MLflow's ``Scorer.run`` does and return ``Feedback``.

        Only the arguments the scorer declares are passed. A bare value becomes a
        ``Feedback`` named after the scorer; a ``Feedback`` without a name (or with
        MLflow's default name ``"feedback"``) takes the scorer's name; a list of
        ``Feedback`` keeps its names; ``None`` stays ``None``. Exceptions propagate.

        Raises:
            ConfigurationError: the scorer returned something else than a bool, number,
                string, ``Feedback``, list of ``Feedback`` or None.
        """
        values = (inputs, outputs, expectations, trace, session)
        result = _call_declared(self, self._declared_parameters(), values)
        return run_feedback(result, name=self.name)

    @property
    def is_session_level_scorer(self) -> bool:
        """Whether the scorer takes ``session`` (one conversation's traces), as in MLflow."""
        return "session" in self._declared_parameters()

    def _declared_parameters(self) -> frozenset[str]:
        return frozenset(inspect.signature(self.__call__).parameters)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
        """Score one call; subclasses implement this.

        A subclass declares, by keyword, the arguments it needs among ``inputs``,
        ``outputs``, ``expectations`` and ``trace`` (``session`` for a session-level
        scorer), and only those are passed. The loose signature here lets such a
        narrower ``__call__`` type-check as an override (mypy treats ``*args: Any,
        **kwargs: Any`` as "any signature").
        """
        raise NotImplementedError(f"{type(self).__name__} must implement __call__.")

    # -- stored definition ---------------------------------------------------------

    def definition(self) -> dict[str, Any]:
        """Return what the registry stores for this scorer (hashed for versioning).

        Raises:
            ConfigurationError: the scorer cannot be stored.
        """
        cls = type(self)
        reference = f"{cls.__module__}:{cls.__qualname__}"
        if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
            raise ConfigurationError(
                f"Cannot register scorer class {cls.__qualname__!r}: classes must be "
                "importable (defined at module level in an importable module), or use "
                "@scorer on a function instead."
            )
        config = self.model_dump(
            mode="json", exclude=set(_STATE_FIELDS) | {"name", "description", "aggregations"}
        )
        definition = {
            "serialization_version": serialization.SERIALIZATION_VERSION,
            "kind": "class",
            "reference": reference,
            "config": config,
        }
        return _with_aggregations(definition, self)

    # -- lifecycle -----------------------------------------------------------------

    def register(self, *, name: str | None = None, experiment_id: str | None = None) -> Scorer:
        """Register this scorer; return it as stored (``REGISTERED`` or the name's state).

        An identical definition keeps its version; a changed one becomes version N+1.

        Raises:
            ConfigurationError: the name is blank or too long, or the scorer cannot be stored.
            ScorerLimitError: the experiment already has 20 scorer names.
        """
        target = validate_name(self.name if name is None else name)
        runtime = _context.current()
        experiment = _context.resolve_experiment_id(experiment_id)
        state = runtime.registry.register(
            experiment,
            target,
            definition=self.definition(),
            description=self.description,
            takes_session=self.is_session_level_scorer,
        )
        return self._with_state(state)

    def start(
        self,
        *,
        name: str | None = None,
        experiment_id: str | None = None,
        sampling_config: ScorerSamplingConfig | None = None,
    ) -> Scorer:
        """Activate the scorer on new traces with a sample rate and optional filter.

        Warns:
            JudgeModelWarning: (LLM judges) the judge has no model to ask.

        Raises:
            ConfigurationError: the rate is 0 (use ``stop()``) or the config is not a
                ``ScorerSamplingConfig``.
            InvalidTransitionError: the scorer is not registered.
        """
        self._starting(name)
        config = check_sampling_config(sampling_config or ScorerSamplingConfig(), action="start")
        return self._transition("start", name, experiment_id, config)

    def _starting(self, name: str | None) -> None:
        """Warn first when ``start(name=name)`` activates a scorer that cannot work yet.

        Scorers have nothing to say; a judge without a model warns (``Judge._starting``).
        """

    def update(
        self,
        *,
        name: str | None = None,
        experiment_id: str | None = None,
        sampling_config: ScorerSamplingConfig,
    ) -> Scorer:
        """Replace an active scorer's sampling config (a filter not repeated is cleared).

        Raises:
            ConfigurationError: the rate is 0 (use ``stop()``).
            InvalidTransitionError: the scorer is not ACTIVE.
        """
        config = check_sampling_config(sampling_config, action="update")
        return self._transition("update", name, experiment_id, config)

    def stop(self, *, name: str | None = None, experiment_id: str | None = None) -> Scorer:
        """Stop scoring new traces; the scorer stays registered with rate 0.

        Raises:
            InvalidTransitionError: the scorer is not registered.
        """
        return self._transition("stop", name, experiment_id, None)

    def delete(self, *, name: str | None = None, experiment_id: str | None = None) -> Scorer:
        """Delete every version and the config of the name; return it as ``DELETED``.

        Feedback it wrote stays on the traces.

        Raises:
            ScorerNotFoundError: no scorer of that name is registered.
        """
        target = validate_name(self.name if name is None else name)
        experiment = _context.resolve_experiment_id(experiment_id)
        runtime = _context.current()
        runtime.registry.delete(experiment, target)
        base = self if target == self.name else self.model_copy(update={"name": target})
        return base.model_copy(
            update={
                "version": None,
                "status": ScorerStatus.DELETED,
                "sample_rate": 0.0,
                "filter_string": None,
                "experiment_id": experiment,
            }
        )

    def _transition(
        self,
        action: str,
        name: str | None,
        experiment_id: str | None,
        config: ScorerSamplingConfig | None,
    ) -> Scorer:
        target = validate_name(self.name if name is None else name)
        experiment = _context.resolve_experiment_id(experiment_id)
        runtime = _context.current()
        state = runtime.registry.transition(
            experiment,
            target,
            action=action,
            sample_rate=config.sample_rate if config else 0.0,
            filter_string=config.filter_string if config else None,
            session_idle_seconds=(
                config.session_idle_seconds if config else DEFAULT_SESSION_IDLE_SECONDS
            ),
        )
        if state.takes_session and config is not None and _context.monitor_enabled():
            # No commit enqueues a session scorer (the monitor's idle scan does), so the
            # in-process monitor is started here rather than by the next commit.
            runtime.runner()
        if target != self.name:
            return scorer_from_state(state, db_path=runtime.db.path)
        return self._with_state(state)

    def _with_state(self, state: ScorerState) -> Self:
        return self.model_copy(
            update={
                "name": state.name,
                "version": state.version,
                "status": state.status,
                "sample_rate": state.sample_rate,
                "filter_string": state.filter_string,
                "experiment_id": state.experiment_id,
                "session_idle_seconds": state.session_idle_seconds,
            }
        )


def _call_declared(
    func: Callable[..., Any], declared: Collection[str], values: tuple[Any, ...]
) -> Any:  # noqa: ANN401 - whatever the scorer returns
    """Call ``func`` with those scorer arguments it declares (``values`` as SCORER_PARAMETERS)."""
    given = zip(SCORER_PARAMETERS, values, strict=True)
    return func(**{key: value for key, value in given if key in declared})


def _with_aggregations(definition: dict[str, Any], scorer: Scorer) -> dict[str, Any]:
    # Only when set: definitions without aggregations hash as before (same versions).
    stored = _aggregations.stored_aggregations(scorer.name, scorer.aggregations)
    if stored is not None:
        definition["aggregations"] = stored
    return definition


class FunctionScorer(Scorer):
    """A scorer made from a function by ``@scorer``.

    Restored scorers load their function on first call, so listing scorers never
    runs stored code, and a scorer whose module is missing still lists fine.
    """

    func: Callable[..., Any] | None = Field(default=None, exclude=True, repr=False)
    stored_definition: dict[str, Any] | None = Field(default=None, repr=False)
    _db_path: Path | None = PrivateAttr(default=None)
    _loaded: Callable[..., Any] | None = PrivateAttr(default=None)

    def definition(self) -> dict[str, Any]:
        """Return the function's stored form: a ``module:qualname`` reference, or its source.

        Raises:
            ConfigurationError: the function is neither importable nor has readable source.
        """
        if self.func is not None:
            definition = serialization.function_definition(self.func)
            # Execution options are part of the definition: changing them is a new version.
            if self.timeout_seconds is not None:
                definition["timeout_seconds"] = self.timeout_seconds
            if self.max_concurrency is not None:
                definition["max_concurrency"] = self.max_concurrency
            return _with_aggregations(definition, self)
        if self.stored_definition is None:
            raise ConfigurationError(
                f"Scorer {self.name!r} has neither a function nor a definition."
            )
        return self.stored_definition

    @property
    def _original_func(self) -> Callable[..., Any]:
        """The decorated function, as MLflow's decorator scorers expose it."""
        return self.function()

    def function(self) -> Callable[..., Any]:
        """Return the scoring function, loading a restored one on first use.

        Raises:
            ScorerLoadError: the stored definition cannot be loaded here.
        """
        if self.func is not None:
            return self.func
        if self._loaded is None:
            if self.stored_definition is None:
                raise ScorerLoadError(f"Scorer {self.name!r} has no function to run.")
            self._loaded = serialization.load_function(
                self.stored_definition, db_path=self._db_path
            )
        return self._loaded

    def _declared_parameters(self) -> frozenset[str]:
        try:
            return frozenset(inspect.signature(self.function()).parameters)
        except (ScorerLoadError, TypeError, ValueError):  # cannot load: calling it says why
            return frozenset()

    def __call__(
        self,
        *,
        inputs: Any = None,  # noqa: ANN401
        outputs: Any = None,  # noqa: ANN401
        expectations: dict[str, Any] | None = None,
        trace: Trace | None = None,
        session: list[Trace] | None = None,
    ) -> Any:  # noqa: ANN401 - the function's own return value
        """Call the function with the arguments it declares; return its own value.

        Raises:
            ScorerLoadError: a restored function cannot be loaded here.
        """
        func = self.function()
        values = (inputs, outputs, expectations, trace, session)
        return _call_declared(func, inspect.signature(func).parameters, values)


def scorer_from_state(state: ScorerState, *, db_path: Path | None) -> Scorer:
    """Rebuild a ``Scorer`` from what the registry stored.

    Raises:
        ScorerLoadError: a class-based scorer's class cannot be imported.
    """
    definition = state.definition
    fields = {**state.scorer_fields(), "aggregations": definition.get("aggregations")}
    if definition.get("kind") == "class":
        restored_class = serialization.instantiate_class(definition, fields)
        if not isinstance(restored_class, Scorer):
            raise ScorerLoadError(
                f"Stored scorer {state.name!r} refers to {definition['reference']!r}, "
                "which is not a Scorer class."
            )
        return restored_class
    restored = FunctionScorer(
        **fields,
        stored_definition=definition,
        timeout_seconds=definition.get("timeout_seconds"),
        max_concurrency=definition.get("max_concurrency"),
    )
    restored._db_path = db_path
    return restored
