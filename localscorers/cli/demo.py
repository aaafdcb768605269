"""``localscorers demo``: the guided end-to-end run (see ``localscorers.demo``)."""

from __future__ import annotations

from typing import Annotated

import typer

from localscorers.cli.common import console
from localscorers.cli.story import DEMO_EXPERIMENT, run_demo

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command to the app."""

    @app.command("demo")
    def demo_command(
        traces: Annotated[
            int, typer.Option("--traces", "-n", min=20, help="Calls the simulated app makes.")
        ] = 200,
        experiment_name: Annotated[
            str, typer.Option("--demo-experiment", help="Experiment the demo uses (and resets).")
        ] = DEMO_EXPERIMENT,
    ) -> None:
        """Run the whole story offline: trace an app, score it online, backfill, explain, report.

        Uses the current database (--db; by default the user data directory) and its own
        experiment, whose scorers it deletes first so it can run again.
        """
        run_demo(console=console, experiment_name=experiment_name, traces=traces)
