"""Shared pieces of the command line: global options, opening the database, errors, output.

Commands never open the database implicitly: each one calls :func:`prepare`, saying
whether it writes. Read commands refuse a missing database or an unknown experiment
rather than creating them, so a typo in ``--db`` or ``-e`` is an error, not an empty
result in a new file.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from localscorers import __version__, _context, tracking
from localscorers.cli.messages import one_line
from localscorers.exceptions import (
    ConfigurationError,
    LocalScorersError,
    NotFoundError,
)
from localscorers.models import Experiment
from localscorers.store import codec
from localscorers.store.dialect import display_uri, is_postgres_uri
from localscorers.store.uris import MEMORY_URI, default_tracking_uri, holds_schema, normalize_uri

__all__ = [
    "OPTIONS",
    "Column",
    "CommandContext",
    "GlobalOptions",
    "add_global_options",
    "console",
    "elsewhere_hint",
    "env_flag",
    "err_console",
    "hoist_global_options",
    "prepare",
    "print_json",
    "rows_table",
    "run",
]

console = Console()
err_console = Console(stderr=True)


@dataclass
class GlobalOptions:
    """What ``--db`` and ``--experiment`` asked for; nothing is opened until a command runs."""

    db: str | None = None
    experiment: str | None = None


OPTIONS = GlobalOptions()


@dataclass(frozen=True)
class CommandContext:
    """The database and experiment a command works on.

    Attributes:
        runtime: the open database (store, registry).
        experiment: the experiment selected by ``-e`` (or ``Default``).
        explicit: whether ``-e`` named it.
    """

    runtime: _context.Runtime
    experiment: Experiment
    explicit: bool

    @property
    def experiment_id(self) -> str:
        """The selected experiment's id."""
        return self.experiment.experiment_id

    def label(self) -> str:
        """The experiment as users name it: ``experiment 'Default'``."""
        return f"experiment {self.experiment.name!r}"


def _show_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"localscorers {__version__}\n")
        raise typer.Exit


def add_global_options(app: typer.Typer) -> None:
    """Add ``--db``, ``--experiment`` and ``--version`` to the top-level command."""

    @app.callback()
    def _options(
        db: Annotated[
            str | None,
            typer.Option(
                "--db",
                envvar="LOCALSCORERS_TRACKING_URI",
                help="Database: sqlite:///path, a file path, or sqlite:///:memory:.",
            ),
        ] = None,
        experiment: Annotated[
            str | None,
            typer.Option(
                "--experiment",
                "-e",
                help="Experiment name (default: 'Default'); see 'localscorers experiments list'.",
            ),
        ] = None,
        version: Annotated[
            bool,
            typer.Option(
                "--version",
                is_eager=True,
                callback=_show_version,
                help="Print the version and exit.",
            ),
        ] = False,
    ) -> None:
        del version  # handled by its eager callback
        OPTIONS.db = db
        OPTIONS.experiment = experiment


def _requested_uri() -> tuple[str, str]:
    """Return the URI to use and how the user gave it (for messages)."""
    raw = OPTIONS.db if OPTIONS.db is not None else None
    if raw is None:
        return normalize_uri(default_tracking_uri()), "the default database"
    text = raw.strip()
    # normalize_uri would read "sqlite:///" as the current directory: name the mistake.
    if text in {"sqlite:///", "sqlite://", "sqlite:"}:
        raise ConfigurationError(
            f"--db {raw!r} names no file. Write --db sqlite:///path/to/file.db, a file path, "
            "or sqlite:///:memory:."
        )
    return normalize_uri(text), f"--db {raw}"


def _create_directory(path: Path) -> None:
    fix = "Pass --db with a path in a writable directory (or set LOCALSCORERS_TRACKING_URI)."
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(
            f"Cannot create the database {path}: cannot create the directory {path.parent} "
            f"({exc.strerror or exc}). {fix}"
        ) from exc
    try:
        # A writable directory is what SQLite needs (the file, then its -wal and -shm).
        tempfile.TemporaryFile(dir=path.parent).close()
    except OSError as exc:
        raise ConfigurationError(
            f"Cannot create the database {path}: the directory {path.parent} is not "
            f"writable ({exc.strerror or exc}). {fix}"
        ) from exc


def _check_path(path: Path, *, given: str, write: bool) -> None:
    if path.is_dir():
        raise ConfigurationError(
            f"The database path {path} is a directory. Pass --db with a file path, "
            f"e.g. --db {shlex.quote(str(path / 'localscorers.db'))}."
        )
    if path.exists():
        return
    if write:
        _create_directory(path)
        return
    create = (
        "localscorers demo"
        if given == "the default database"
        else (f"localscorers --db {shlex.quote(str(path))} demo")
    )
    source = " (the default database)" if given == "the default database" else ""
    raise NotFoundError(
        f"No database at {path}{source}: nothing has been recorded there. Check the path "
        f"(--db or LOCALSCORERS_TRACKING_URI), or create one with sample data: '{create}'."
    )


def _open(uri: str, path: Path | None) -> _context.Runtime:
    _context.set_tracking_uri(uri)
    try:
        return _context.current()
    except LocalScorersError:
        raise
    except Exception as exc:
        # The store names its own failures (DatabaseError and subclasses); anything else
        # raised while opening still means "this path is not a usable database".
        where = path if path is not None else uri
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigurationError(
            f"Cannot open the database {where}: {first}. Pass --db with another path "
            "(or set LOCALSCORERS_TRACKING_URI)."
        ) from exc


def prepare(*, write: bool = False, create_experiment: bool = False) -> CommandContext:
    """Open the database of ``--db`` and select the experiment of ``-e`` for a command.

    Args:
        write: the command writes: a missing database file is created.
        create_experiment: a missing experiment is created (``register-builtin``).

    Raises:
        ConfigurationError: the path is unusable (not writable, a directory, no file).
        NotFoundError: a read command named a missing database or experiment.
    """
    uri, given = _requested_uri()
    # No file to check for a PostgreSQL server: connecting says what is wrong.
    on_server = is_postgres_uri(uri)
    path = None if uri == MEMORY_URI or on_server else Path(uri.removeprefix("sqlite:///"))
    if path is not None:
        _check_path(path, given=given, write=write)
    elif on_server and not write and not holds_schema(uri):
        # As a missing SQLite file: a read command creates no tables on the server.
        shown = display_uri(uri)
        raise NotFoundError(
            f"No localscorers database at {shown}: the PostgreSQL database (or the schema "
            "its search_path names) has no localscorers tables, so nothing has been "
            "recorded there. Check --db (or LOCALSCORERS_TRACKING_URI), or create the "
            f"tables with sample data: 'localscorers --db {shlex.quote(shown)} demo'."
        )
    runtime = _open(uri, path)
    name = OPTIONS.experiment
    if name is None:
        experiment = runtime.store.get_experiment(_context.DEFAULT_EXPERIMENT_ID)
    elif create_experiment:
        experiment = tracking.set_experiment(name)
    else:
        experiment = runtime.store.get_experiment_by_name(name)
    if experiment is None:
        known = ", ".join(repr(e.name) for e in runtime.store.list_experiments()) or "none"
        raise NotFoundError(
            f"No experiment named {name!r} in {path or uri} (experiments: {known}). "
            "Check -e; 'localscorers experiments list' shows them."
        )
    _context.set_active_experiment(experiment.experiment_id)
    return CommandContext(runtime=runtime, experiment=experiment, explicit=name is not None)


def elsewhere_hint(
    ctx: CommandContext, what: str, count: Callable[[str], int], *, cap: int | None = None
) -> str | None:
    """Say where the data is when the default experiment is empty and another is not.

    Args:
        ctx: the command's context.
        what: the plural noun counted ("scorers").
        count: how many an experiment (by id) has.
        cap: ``count`` stops at this many; the hint then says "100+".

    Returns:
        e.g. "experiment 'Default' has no scorers; 'demo' has 4: use -e demo", or None
        when ``-e`` was given or no other experiment has any.
    """
    if ctx.explicit:
        return None
    found = [
        (n, e)
        for e in ctx.runtime.store.list_experiments()
        if e.experiment_id != ctx.experiment_id and (n := count(e.experiment_id)) > 0
    ]
    if not found:
        return None
    found.sort(key=lambda item: -item[0])
    best_count, best = found[0]
    shown = f"{cap}+" if cap is not None and best_count >= cap else str(best_count)
    hint = (
        f"{ctx.label()} has no {what}; {best.name!r} has {shown}: use -e {shlex.quote(best.name)}"
    )
    if len(found) > 1:
        hint += f" (or see the {len(found)} others with 'localscorers experiments list')"
    return hint


@dataclass(frozen=True)
class Column:
    """A column of :func:`rows_table`.

    Attributes:
        header: the column's title.
        min_width: below this width the table gives way to one block per row.
        key: an id users copy into other commands: never wrapped or cropped.
        justify: ``"left"`` or ``"right"``.
    """

    header: str
    min_width: int = 8
    key: bool = False
    justify: str = "left"


def rows_table(
    title: str, columns: list[Column], rows: list[list[str]], *, width: int | None = None
) -> RenderableType:
    """Lay out rows (cells in rich markup) as a table, or as blocks when the table would not fit.

    A rich table squeezed below the sum of its columns' minimum widths crops cells and
    drops whole columns. Instead, below that width each row becomes a block: its key
    cells on one line, then one ``header: value`` line per other cell, wrapped (folded)
    but never cut. Key cells (ids) are never wrapped in either layout.
    """
    available = console.width if width is None else width
    keys = [
        max((Text.from_markup(r[i]).cell_len for r in rows), default=0) for i in range(len(columns))
    ]
    needed = sum(
        max(keys[i], len(c.header)) if c.key else c.min_width for i, c in enumerate(columns)
    ) + 2 * len(columns)
    if needed <= available:
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
        for index, column in enumerate(columns):
            if column.key:
                table.add_column(column.header, no_wrap=True, min_width=keys[index], justify="left")
            else:
                table.add_column(
                    column.header,
                    overflow="fold",
                    min_width=min(column.min_width, max(keys[index], len(column.header))),
                    justify="right" if column.justify == "right" else "left",
                )
        for row in rows:
            table.add_row(*row)
        return table
    blocks: list[RenderableType] = [Text.from_markup(f"[italic]{title}[/]")]
    for row in rows:
        head = "  ".join(row[i] for i, c in enumerate(columns) if c.key)
        blocks.append(Text.from_markup(f"[bold]{head}[/]" if head else ""))
        for index, column in enumerate(columns):
            if not column.key and row[index]:
                blocks.append(Text.from_markup(f"  [dim]{escape(column.header)}:[/] {row[index]}"))
    return Group(*blocks)


def print_json(value: Any) -> None:  # noqa: ANN401 - anything JSON-able
    """Print a value as indented JSON on stdout."""
    sys.stdout.write(json.dumps(json.loads(codec.dumps(value)), indent=2) + "\n")


_GLOBAL_OPTIONS = ("--db", "--experiment", "-e")


def hoist_global_options(argv: list[str]) -> list[str]:
    """Move ``--db`` / ``--experiment`` to the front so they work after any subcommand too."""
    front: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        name, sep, _ = arg.partition("=")
        if name in _GLOBAL_OPTIONS and sep:
            front.append(arg)
        elif arg in _GLOBAL_OPTIONS and index + 1 < len(argv):
            front.extend(argv[index : index + 2])
            index += 1
        else:
            rest.append(arg)
        index += 1
    return front + rest


def _print_error(message: str) -> None:
    # One line whatever the terminal width, and the message printed literally:
    # "pip install 'localscorers[plot]'" must not lose its brackets to rich markup.
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)


def run(app: typer.Typer, argv: list[str] | None = None) -> int:
    """Run the app; turn our errors into a one-line message and exit code 1."""
    args = hoist_global_options(sys.argv[1:] if argv is None else argv)
    OPTIONS.db = OPTIONS.experiment = None
    try:
        # Outside standalone mode click returns the code of a typer.Exit(code) raised by
        # a command instead of exiting with it.
        returned = app(args=args, prog_name="localscorers", standalone_mode=False)
    except LocalScorersError as exc:
        _print_error(one_line(exc))
        return 1
    except OSError as exc:
        # A file the user named (--png, an import) that cannot be written or read.
        where = f": {exc.filename}" if exc.filename else ""
        _print_error(f"{exc.strerror or exc}{where}")
        return 1
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        return 1
    except Exception as exc:
        handled = _click_exit_code(exc)
        if handled is not None:
            return handled
        raise
    return returned if isinstance(returned, int) else 0


def _click_exit_code(exc: Exception) -> int | None:
    # click raises UsageError / BadParameter subclasses with exit_code 2 in non-standalone mode.
    show = getattr(exc, "show", None)
    code = getattr(exc, "exit_code", None)
    if callable(show) and isinstance(code, int):
        show()
        return code
    return None


def env_flag(name: str) -> bool:
    """Tell whether an environment flag is set to a true value."""
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}
