"""The ``localscorers`` command line (typer + rich).

Exit codes: 0 ok, 1 a user error (one line, no traceback), 2 usage. Command groups
live in their own modules of ``cli/`` and register themselves on ``app`` here.
"""

from __future__ import annotations

import sys

import typer

from localscorers.cli import cache as cache_cli
from localscorers.cli import common
from localscorers.cli import demo as demo_cli
from localscorers.cli import evaluate as evaluate_cli
from localscorers.cli import experiments as experiments_cli
from localscorers.cli import jobs as jobs_cli
from localscorers.cli import report as report_cli
from localscorers.cli import scorers as scorers_cli
from localscorers.cli import server as server_cli
from localscorers.cli import traces as traces_cli
from localscorers.cli import worker as worker_cli

__all__ = ["app", "main"]

app = typer.Typer(
    name="localscorers",
    help="Local-first scorer lifecycle for GenAI traces, on SQLite.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: typer's rich help labels every flag "<bool>".
    rich_markup_mode=None,
)
common.add_global_options(app)
worker_cli.register(app)
scorers_cli.register(app)
traces_cli.register(app)
report_cli.register(app)
demo_cli.register(app)
jobs_cli.register(app)
experiments_cli.register(app)
evaluate_cli.register(app)
server_cli.register(app)
cache_cli.register(app)


def main() -> None:
    """Run the command line; user errors print one line and exit 1."""
    sys.exit(common.run(app))
