"""Shared pieces of the command line: global options, error handling, output helpers."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from localscorers import _context, tracking
from localscorers.exceptions import LocalScorersError
from localscorers.store import codec

__all__ = [
    "add_global_options",
    "console",
    "env_flag",
    "err_console",
    "hoist_global_options",
    "print_json",
    "run",
]

console = Console()
err_console = Console(stderr=True)


def add_global_options(app: typer.Typer) -> None:
    """Add ``--db`` and ``--experiment`` to the top-level command."""

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
            typer.Option("--experiment", "-e", help="Experiment name (created if missing)."),
        ] = None,
    ) -> None:
        if db:
            _context.set_tracking_uri(db)
        if experiment:
            tracking.set_experiment(experiment)


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


def run(app: typer.Typer, argv: list[str] | None = None) -> int:
    """Run the app; turn our errors into a one-line message and exit code 1."""
    args = hoist_global_options(sys.argv[1:] if argv is None else argv)
    try:
        app(args=args, prog_name="localscorers", standalone_mode=False)
    except LocalScorersError as exc:
        # One line whatever the terminal width, and the message printed literally:
        # "pip install 'localscorers[plot]'" must not lose its brackets to rich markup.
        message = " ".join(str(exc).split())
        err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
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
    return 0


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
