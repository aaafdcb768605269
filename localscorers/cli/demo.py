"""``localscorers demo``: the guided end-to-end run (see ``story.py`` and ``demo_app.py``)."""

from __future__ import annotations

from typing import Annotated

import typer

from localscorers.cli.common import console, prepare
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
            str | None,
            typer.Option(
                "--demo-experiment",
                help="A new or empty experiment for the demo (default: a fresh "
                f"{DEMO_EXPERIMENT}, {DEMO_EXPERIMENT}-2, ...).",
            ),
        ] = None,
    ) -> None:
        """Run the whole story offline: trace an app, score it online, backfill, explain, report.

        Uses the current database (--db; by default the user data directory) and an
        experiment of its own, a fresh one each run, so reruns tell the same story.
        """
        prepare(write=True)
        run_demo(console=console, experiment_name=experiment_name, traces=traces)
