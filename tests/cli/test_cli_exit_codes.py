"""The exit code a command asks for (typer.Exit) is the process's exit code."""

from __future__ import annotations

import typer

from localscorers.cli import run


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.command()
    def fail() -> None:
        raise typer.Exit(3)

    @app.command()
    def succeed() -> None:
        """Do nothing."""

    return app


def test_a_commands_exit_code_is_returned() -> None:
    # click returns (rather than raises) an Exit's code outside standalone mode; it was
    # dropped, so 'backfill --wait' on a failed job and 'worker --drain' exited 0.
    assert run(_app(), ["fail"]) == 3
    assert run(_app(), ["succeed"]) == 0
