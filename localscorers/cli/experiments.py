"""``localscorers experiments list``: which experiments a database holds, and what is in them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from localscorers import jobs, tracking
from localscorers.cli.common import console, prepare, print_json
from localscorers.cli.shared import JsonOption, command_group

if TYPE_CHECKING:
    from localscorers.cli.common import CommandContext

__all__ = ["register"]

# Counting a busy experiment's traces exactly would read all of them; the table says "100+".
_TRACE_CAP = 100


def _rows(ctx: CommandContext) -> list[dict[str, Any]]:
    rows = []
    for experiment in tracking.search_experiments():
        experiment_id = experiment.experiment_id
        traces = len(tracking.search_traces(experiment_ids=[experiment_id], max_results=_TRACE_CAP))
        rows.append(
            {
                "experiment_id": experiment_id,
                "name": experiment.name,
                "creation_time": experiment.creation_time.isoformat(),
                "scorers": len(ctx.runtime.registry.list(experiment_id)),
                "traces": traces,
                "traces_capped": traces >= _TRACE_CAP,
                "backfill_jobs": len(jobs.list_backfill_jobs(experiment_id=experiment_id)),
            }
        )
    return rows


def _list_command(as_json: JsonOption = False) -> None:
    """List every experiment with its scorers, traces and backfill jobs."""
    ctx = prepare()
    rows = _rows(ctx)
    if as_json:
        print_json(rows)
        return
    table = Table(
        title=f"{len(rows)} experiment(s); use one with -e NAME",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("id", no_wrap=True)
    longest = max((len(row["name"]) for row in rows), default=4)
    table.add_column("name", no_wrap=True, min_width=min(longest, 40))
    for column in ("scorers", "traces", "jobs"):
        table.add_column(column, justify="right", overflow="fold")
    table.add_column("created (UTC)", overflow="fold")
    for row in rows:
        traces = f"{row['traces']}+" if row["traces_capped"] else str(row["traces"])
        table.add_row(
            row["experiment_id"],
            escape(row["name"]),
            str(row["scorers"]),
            traces,
            str(row["backfill_jobs"]),
            row["creation_time"][:19].replace("T", " "),
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add the ``experiments`` command group to the app."""
    group = command_group(
        app, "experiments", "List the database's experiments (pick one with -e NAME)."
    )
    group.command("list")(_list_command)
