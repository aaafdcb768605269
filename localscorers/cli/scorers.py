"""``localscorers scorers``: list, get, register-builtin, start, update, stop and delete.

The lifecycle commands work on the registry's stored state, not on rebuilt ``Scorer``
objects: stopping or listing a scorer must work from a shell even when the scorer's
own module is not importable there (a class scorer of the application, say). They
apply the same checks as ``Scorer.start`` / ``update`` / ``stop``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Protocol, TypeVar

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from localscorers import judges
from localscorers.cli.common import Column, console, prepare, print_json, rows_table
from localscorers.cli.shared import JsonOption, Listing, command_group, print_listing
from localscorers.exceptions import ConfigurationError
from localscorers.models import DEFAULT_SESSION_IDLE_SECONDS, ScorerSamplingConfig, ScorerStatus
from localscorers.store.scorer_state import validate_name

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from rich.console import RenderableType

    from localscorers.scorers import Scorer
    from localscorers.store.scorer_state import ScorerState

__all__ = [
    "BUILTIN_JUDGES",
    "ListedScorer",
    "register",
    "scorer_state_dict",
    "scorers_table",
    "status_style",
]

NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The scorer's registered name.")]
RateOption = Annotated[
    float,
    typer.Option("--sample-rate", "-r", min=0.0, max=1.0, help="Fraction of traces to score."),
]
FilterOption = Annotated[
    str | None,
    typer.Option("--filter", "-f", help="Only score traces matching this filter string."),
]
IdleOption = Annotated[
    float | None,
    typer.Option(
        "--session-idle-seconds",
        help="A session-level scorer scores a session once it has been idle this long "
        "(default 300).",
    ),
]

_STATUS_STYLES = {
    ScorerStatus.ACTIVE: "bold green",
    ScorerStatus.REGISTERED: "cyan",
    ScorerStatus.STOPPED: "yellow",
    ScorerStatus.DELETED: "red",
    ScorerStatus.UNREGISTERED: "dim",
}


def _builtin(name: str) -> Callable[..., Scorer]:
    factory: Callable[..., Scorer] = getattr(judges, name)
    return factory


# KIND names accepted by ``register-builtin``: the judges of DESIGN.md section 5.
BUILTIN_JUDGES: dict[str, Callable[..., Scorer]] = {
    name: _builtin(name)
    for name in (
        "Safety",
        "Guidelines",
        "ExpectationsGuidelines",
        "RelevanceToQuery",
        "Correctness",
        "RetrievalGroundedness",
        "RetrievalRelevance",
        "RetrievalSufficiency",
        "make_judge",
    )
}


# The options of register-builtin.
KindArgument = Annotated[
    str, typer.Argument(metavar="KIND", help=f"The judge: one of {', '.join(BUILTIN_JUDGES)}.")
]
ModelOption = Annotated[
    str | None, typer.Option("--model", "-m", help="Judge model, e.g. openai:/gpt-4o-mini.")
]
GuidelineOption = Annotated[
    list[str] | None, typer.Option("--guideline", "-g", help="A guideline (repeat for several).")
]
InstructionsOption = Annotated[
    str | None, typer.Option("--instructions", help="make_judge's instructions.")
]


def status_style(status: ScorerStatus | str) -> str:
    """Return the status as rich markup, coloured by state."""
    value = ScorerStatus(status)
    return f"[{_STATUS_STYLES[value]}]{value.value}[/]"


def scorer_state_dict(state: ScorerState, *, definition: bool = False) -> dict[str, Any]:
    """Return a scorer's stored state as a JSON-able dict (``--json`` output)."""
    stored = state.definition
    result: dict[str, Any] = {
        "name": state.name,
        "experiment_id": state.experiment_id,
        "version": state.version,
        "latest_version": state.latest_version,
        "status": state.status.value,
        "sample_rate": state.sample_rate,
        "filter_string": state.filter_string,
        "session_idle_seconds": state.session_idle_seconds,
        "takes_session": state.takes_session,
        "description": state.description,
        "kind": stored.get("kind"),
        "reference": stored.get("reference"),
    }
    if definition:
        result["definition"] = stored
    return result


def _where(state: ScorerState) -> str:
    stored = state.definition
    if stored.get("kind") == "source":
        return f"source of {stored.get('function_name', '?')}()"
    return str(stored.get("reference", stored.get("kind", "?")))


def _judge_model(state: ScorerState) -> str | None:
    """The model of an LLM judge (and where it runs), or None for other scorers."""
    stored = state.definition
    config = stored.get("config")
    reference = str(stored.get("reference", ""))
    if not reference.startswith("localscorers.judges.") or not isinstance(config, dict):
        return None
    model = config.get("model")
    if model is None:
        return "none (LOCALSCORERS_JUDGE_MODEL where it runs; else its evaluations fail)"
    base_url = config.get("base_url")
    return f"{model} at {base_url}" if base_url else str(model)


class ListedScorer(Protocol):
    """What a scorers table shows of a scorer: a ``Scorer`` or a stored ``ScorerState``."""

    @property
    def name(self) -> str: ...  # noqa: D102 - the attributes of Scorer and ScorerState
    @property
    def version(self) -> int | None: ...  # noqa: D102
    @property
    def status(self) -> ScorerStatus: ...  # noqa: D102
    @property
    def sample_rate(self) -> float: ...  # noqa: D102
    @property
    def filter_string(self) -> str | None: ...  # noqa: D102


_Listed = TypeVar("_Listed", bound=ListedScorer)


def scorers_table(
    items: Sequence[_Listed],
    *,
    title: str,
    last: tuple[Column, Callable[[_Listed], str]],
    status: Callable[[ScorerStatus], str] = status_style,
    width: int | None = None,
) -> RenderableType:
    """Return scorers as a table: name, version, status, sample rate, filter and one more.

    Args:
        items: the scorers.
        title: the table's title.
        last: the last column and its text (plain, escaped here) for a scorer.
        status: the status cell (rich markup); coloured by state by default.
        width: the width to fit (default: the console's).
    """
    # Names are what users type back ('scorers get NAME'): never wrapped or cropped.
    column, cell = last
    columns = [
        Column("name", key=True),
        Column("version", min_width=7, justify="right"),
        Column("status", min_width=10),
        Column("sample rate", min_width=6, justify="right"),
        Column("filter", min_width=12),
        column,
    ]
    rows = [
        [
            escape(item.name),
            str(item.version),
            status(item.status),
            f"{item.sample_rate:g}",
            escape(item.filter_string or ""),
            escape(cell(item)),
        ]
        for item in items
    ]
    return rows_table(title, columns, rows, width=width)


def _show_state(state: ScorerState, *, as_json: bool, verb: str) -> None:
    if as_json:
        print_json(scorer_state_dict(state))
        return
    detail = f"version {state.version}, sample rate {state.sample_rate:g}"
    if state.filter_string:
        detail += f", filter {state.filter_string!r}"
    if state.takes_session:
        detail += f", session idle {state.session_idle_seconds:g} s"
    console.print(
        f"Scorer [bold]{state.name}[/] {verb}: {status_style(state.status)} ({detail})",
        highlight=False,
    )


def _active_config(
    rate: float, filter_string: str | None, idle_seconds: float | None, *, action: str
) -> ScorerSamplingConfig:
    config = ScorerSamplingConfig(
        sample_rate=rate,
        filter_string=filter_string,
        session_idle_seconds=DEFAULT_SESSION_IDLE_SECONDS if idle_seconds is None else idle_seconds,
    )
    if config.sample_rate == 0.0:
        raise ConfigurationError(
            f"{action} needs a --sample-rate above 0, got 0. To stop scoring, run "
            "'localscorers scorers stop NAME'."
        )
    return config


_DONE = {"start": "started", "update": "updated"}


def _activate(
    name: str,
    rate: float,
    filter_string: str | None,
    idle_seconds: float | None,
    *,
    action: str,
    as_json: bool,
) -> None:
    """Start or update a scorer with the options given, then show its new state."""
    # start and update differ only in which states the registry accepts them from.
    config = _active_config(rate, filter_string, idle_seconds, action=action)
    ctx = prepare(write=True)
    state = ctx.runtime.registry.transition(
        ctx.experiment_id,
        validate_name(name),
        action=action,
        sample_rate=config.sample_rate,
        filter_string=config.filter_string,
        session_idle_seconds=config.session_idle_seconds,
    )
    _show_state(state, as_json=as_json, verb=_DONE[action])


def _list_command(as_json: JsonOption = False) -> None:
    """List the registered scorers of the experiment (latest versions)."""
    ctx = prepare()
    registry = ctx.runtime.registry
    listing = Listing(
        "scorers",
        f"No scorers are registered in {ctx.label()}.",
        lambda experiment_id: len(registry.list(experiment_id)),
    )
    print_listing(
        ctx,
        registry.list(ctx.experiment_id),
        listing,
        as_json=as_json,
        to_json=scorer_state_dict,
        table=lambda states: scorers_table(
            states,
            title=f"Scorers of {ctx.label()}",
            last=(Column("defined by", min_width=16), _where),
        ),
    )


def _get_command(
    name: NameArgument,
    version: Annotated[
        int | None, typer.Option("--version", "-v", min=1, help="A version (default: latest).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show one scorer: its state and stored definition."""
    ctx = prepare()
    state = ctx.runtime.registry.get(ctx.experiment_id, validate_name(name), version=version)
    if as_json:
        print_json(scorer_state_dict(state, definition=True))
        return
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for key, value in (
        ("name", state.name),
        ("experiment", f"{ctx.experiment.name} (id {state.experiment_id})"),
        ("version", f"{state.version} (latest {state.latest_version})"),
        ("status", status_style(state.status)),
        ("sample rate", f"{state.sample_rate:g}"),
        ("filter", state.filter_string or "-"),
        ("description", state.description or "-"),
        ("defined by", _where(state)),
    ):
        grid.add_row(key, value)
    if state.takes_session:
        grid.add_row("session idle", f"{state.session_idle_seconds:g} s")
    judge_model = _judge_model(state)
    if judge_model is not None:
        grid.add_row("judge model", judge_model)
    console.print(grid)
    source = state.definition.get("source")
    if source:
        console.print("[bold]source[/]")
        console.print(source, highlight=False, markup=False)


def _register_builtin_command(
    *,
    kind: KindArgument,
    name: Annotated[str, typer.Option("--name", "-n", help="Name to register it under.")],
    model: ModelOption = None,
    guidelines: GuidelineOption = None,
    instructions: InstructionsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Register a built-in LLM judge (or make_judge) under a name."""
    factory = _judge_factory(kind)
    arguments: dict[str, Any] = {"name": validate_name(name)}
    if model is not None:
        arguments["model"] = model
    if guidelines:
        arguments["guidelines"] = list(guidelines)
    if instructions is not None:
        arguments["instructions"] = instructions
    judge = _build_judge(kind, factory, arguments)
    ctx = prepare(write=True, create_experiment=True)
    registered = judge.register(experiment_id=ctx.experiment_id)
    state = ctx.runtime.registry.get(ctx.experiment_id, registered.name)
    _show_state(state, as_json=as_json, verb="registered")


def _start_command(
    name: NameArgument,
    sample_rate: RateOption = 1.0,
    filter_string: FilterOption = None,
    idle_seconds: IdleOption = None,
    as_json: JsonOption = False,
) -> None:
    """Start scoring new traces (REGISTERED, STOPPED or ACTIVE -> ACTIVE)."""
    _activate(name, sample_rate, filter_string, idle_seconds, action="start", as_json=as_json)


def _update_command(
    name: NameArgument,
    sample_rate: RateOption,
    filter_string: FilterOption = None,
    idle_seconds: IdleOption = None,
    as_json: JsonOption = False,
) -> None:
    """Replace an ACTIVE scorer's sampling config (what is not repeated is reset)."""
    _activate(name, sample_rate, filter_string, idle_seconds, action="update", as_json=as_json)


def _stop_command(name: NameArgument, as_json: JsonOption = False) -> None:
    """Stop scoring new traces; the scorer stays registered."""
    ctx = prepare(write=True)
    state = ctx.runtime.registry.transition(ctx.experiment_id, validate_name(name), action="stop")
    _show_state(state, as_json=as_json, verb="stopped")


def _delete_command(
    name: NameArgument,
    version: Annotated[
        int | None,
        typer.Option("--version", "-v", min=1, help="Delete one version (default: all)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Delete a scorer (every version, or one); the feedback it wrote stays."""
    ctx = prepare(write=True)
    ctx.runtime.registry.delete(ctx.experiment_id, validate_name(name), version=version)
    if as_json:
        print_json(
            {"name": name, "experiment_id": ctx.experiment_id, "version": version, "deleted": True}
        )
        return
    what = f"version {version} of scorer" if version is not None else "scorer"
    console.print(f"Deleted {what} [bold]{name}[/].", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the ``scorers`` command group to the app."""
    group = command_group(
        app, "scorers", "List, inspect and manage the experiment's registered scorers."
    )
    group.command("list")(_list_command)
    group.command("get")(_get_command)
    group.command("register-builtin")(_register_builtin_command)
    group.command("start")(_start_command)
    group.command("update")(_update_command)
    group.command("stop")(_stop_command)
    group.command("delete")(_delete_command)


def _build_judge(kind: str, factory: Callable[..., Scorer], arguments: dict[str, Any]) -> Scorer:
    _check_judge_arguments(kind, arguments)
    try:
        return factory(**arguments)
    except (TypeError, ValidationError) as exc:
        # The checks above cover the known judges; this keeps a judge whose options
        # change from surfacing as a traceback.
        raise ConfigurationError(
            f"{kind} does not accept these options: {exc}. See "
            "'localscorers scorers register-builtin --help'."
        ) from exc


def _judge_factory(kind: str) -> Callable[..., Scorer]:
    lookup = {key.lower(): value for key, value in BUILTIN_JUDGES.items()}
    factory = lookup.get(kind.lower().replace("-", "_"))
    if factory is None:
        raise typer.BadParameter(
            f"unknown judge {kind!r}; choose one of {', '.join(BUILTIN_JUDGES)}.",
            param_hint="KIND",
        )
    return factory


def _check_judge_arguments(kind: str, arguments: dict[str, Any]) -> None:
    normalized = kind.lower().replace("-", "_")
    if normalized == "make_judge" and "instructions" not in arguments:
        raise typer.BadParameter("make_judge needs --instructions TEXT.", param_hint="KIND")
    if normalized == "guidelines" and "guidelines" not in arguments:
        raise typer.BadParameter(
            "Guidelines needs at least one --guideline TEXT.", param_hint="KIND"
        )
    if "instructions" in arguments and normalized != "make_judge":
        raise typer.BadParameter("--instructions applies to make_judge only.", param_hint="KIND")
    if "guidelines" in arguments and normalized != "guidelines":
        raise typer.BadParameter("--guideline applies to Guidelines only.", param_hint="KIND")
