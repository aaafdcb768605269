"""``localscorers evaluate DATA.jsonl --scorer NAME...``: offline evaluation from a file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from localscorers.cli.common import console, prepare, print_json
from localscorers.exceptions import ConfigurationError
from localscorers.offline_evaluation import EvaluationResult, evaluate

__all__ = ["read_rows", "register", "summary_table"]


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Read evaluation rows: JSON lines (one object per line) or a JSON list of objects.

    Raises:
        ConfigurationError: the file is missing or unreadable, or a line is not a JSON object.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(
            f"Cannot read the data file {path}: {exc.strerror or exc}. Give a JSON-lines "
            'file with one row per line, such as {"inputs": {...}, "outputs": "..."}.'
        ) from exc
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"{path} is not valid JSON: {exc}.") from exc
        numbered = list(enumerate(rows, start=1)) if isinstance(rows, list) else []
    else:
        numbered = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                numbered.append((number, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise ConfigurationError(
                    f"{path}, line {number} is not JSON ({exc.msg}); each line must be one "
                    "row object."
                ) from exc
    for number, row in numbered:
        if not isinstance(row, dict):
            raise ConfigurationError(
                f"{path}, row {number} is {type(row).__name__}, not a JSON object with "
                "'inputs', 'outputs' and 'expectations'."
            )
    if not numbered:
        raise ConfigurationError(f"{path} holds no rows: write one JSON object per line.")
    return [row for _, row in numbered]


def summary_table(result: EvaluationResult) -> Table:
    """Render the metrics, one row per scorer feedback name and aggregation."""
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("feedback", style="bold", no_wrap=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in sorted(result.metrics):
        name, _, metric = key.rpartition("/")
        value = result.metrics[key]
        shown = f"{value:.1%}" if metric == "pass_rate" else f"{value:.4g}"
        if metric == "error_count":
            shown = f"[red]{value:.0f}[/]" if value else "0"
        table.add_row(escape(name), metric, shown)
    return table


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` to the app."""

    @app.command("evaluate")
    def evaluate_command(
        data: Annotated[
            Path, typer.Argument(metavar="DATA", help="JSON lines: one row object per line.")
        ],
        scorer: Annotated[
            list[str],
            typer.Option("--scorer", "-s", help="A registered scorer's name (repeatable)."),
        ],
        evaluation_id: Annotated[
            str | None,
            typer.Option("--evaluation-id", help="Resume this evaluation (default: a new one)."),
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Log each row as a trace, run the scorers on them, and print the metrics.

        Rows are objects with "inputs", "outputs" and "expectations" (and optionally
        "tags" and "metadata"; "metadata": {"mlflow.trace.session": "..."} groups rows
        into sessions for session-level scorers).
        """
        rows = read_rows(data)
        ctx = prepare(write=True, create_experiment=True)
        result = evaluate(
            data=rows,
            scorers=scorer,
            experiment_id=ctx.experiment.experiment_id,
            evaluation_id=evaluation_id,
        )
        if as_json:
            print_json(
                {
                    "evaluation_id": result.evaluation_id,
                    "experiment_id": result.experiment_id,
                    "metrics": result.metrics,
                    "trace_ids": result.trace_ids,
                }
            )
            return
        console.print(
            f"evaluation {result.evaluation_id}: {len(result.trace_ids)} rows in experiment "
            f"{escape(ctx.experiment.name)!r}",
            highlight=False,
            soft_wrap=True,
        )
        console.print(summary_table(result))
        search = f"metadata.`localscorers.evaluation_id` = '{result.evaluation_id}'"
        console.print(
            f'Its traces: localscorers traces search --filter "{escape(search)}"',
            highlight=False,
            soft_wrap=True,
        )
