"""The ``localscorers`` command line (typer + rich).

Exit codes: 0 ok, 1 a user error (one line, no traceback), 2 usage. Command groups
live in their own ``_cli_*`` modules and register themselves on ``app`` here.
"""

from __future__ import annotations

import sys

import typer

from localscorers import (
    _cli_common,
    _cli_demo,
    _cli_jobs,
    _cli_report,
    _cli_scorers,
    _cli_traces,
    _cli_worker,
)

__all__ = ["app", "main"]

app = typer.Typer(
    name="localscorers",
    help="Local-first scorer lifecycle for GenAI traces, on SQLite.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_cli_common.add_global_options(app)
_cli_worker.register(app)
_cli_scorers.register(app)
_cli_traces.register(app)
_cli_report.register(app)
_cli_demo.register(app)
_cli_jobs.register(app)


def main() -> None:
    """Run the command line; user errors print one line and exit 1."""
    sys.exit(_cli_common.run(app))
