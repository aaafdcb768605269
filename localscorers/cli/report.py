"""``localscorers report``: each scorer's evaluations, results and errors over time."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from localscorers.cli.common import Column, console, err_console, prepare, print_json, rows_table
from localscorers.cli.scorers import status_style
from localscorers.cli.shared import JsonOption
from localscorers.exceptions import ConfigurationError
from localscorers.report import ReportBucket, TimeBucket, save_report_chart, scorer_report

if TYPE_CHECKING:
    from collections.abc import Sequence

    from rich.console import Console, RenderableType

    from localscorers.report import ScorerReport

__all__ = ["parse_since", "register", "render_report"]

_RELATIVE = re.compile(r"^\s*(?P<amount>\d+(?:\.\d+)?)\s*(?P<unit>[mhdw])\s*$", re.IGNORECASE)
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# Enough columns of "errors over time" to read a trend without wrapping a terminal.
_MAX_BUCKET_ROWS = 12


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """Parse ``--since``: an ISO 8601 time (naive means UTC) or a span back from now (``24h``).

    Raises:
        typer.BadParameter: neither form (a usage error, exit code 2).
    """
    relative = _RELATIVE.match(text)
    if relative:
        amount = float(relative["amount"])
        span = timedelta(**{_UNITS[relative["unit"].lower()]: amount})
        return (now or datetime.now(UTC)) - span
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not a time: use ISO 8601 (2025-01-31 or 2025-01-31T12:00:00Z) "
            "or a span back from now such as 30m, 24h, 7d, 2w.",
            param_hint="--since",
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _result(report: ScorerReport) -> str:
    parts = []
    if report.pass_rate is not None:
        parts.append(f"{report.pass_rate:.1%} pass")
    if report.mean_value is not None:
        parts.append(f"mean {report.mean_value:.3g}")
    if report.other_values:
        parts.append(f"{report.other_values} text")
    return ", ".join(parts) or "-"


def _errors(report: ScorerReport) -> str:
    if report.error_rate is None:
        return "-"
    style = "red" if report.errors else "green"
    return f"[{style}]{report.errors} ({report.error_rate:.1%})[/]"


def _summary_table(
    reports: Sequence[ScorerReport], *, title: str, width: int | None
) -> RenderableType:
    columns = [
        Column("scorer", key=True),
        Column("status", min_width=10),
        Column("evals", min_width=6, justify="right"),
        Column("result", min_width=10),
        Column("errors", min_width=8, justify="right"),
        Column("last (UTC)", min_width=11),
    ]
    rows = []
    for report in reports:
        last = report.last_evaluation
        rows.append(
            [
                escape(report.scorer_name),
                status_style(report.status),
                str(report.evaluations)
                + (f" [cyan]+{report.pending} pending[/]" if report.pending else ""),
                _result(report),
                _errors(report),
                last.strftime("%m-%d %H:%M") if last else "-",
            ]
        )
    return rows_table(title, columns, rows, width=width)


def _bucket_cell(bucket: ReportBucket | None) -> str:
    if bucket is None:
        return "[dim]-[/]"
    style = "red" if bucket.errors else "green"
    return f"[{style}]{bucket.errors}[/]/{bucket.evaluations}"


def _bucket_table(reports: Sequence[ScorerReport], *, width: int) -> RenderableType | None:
    with_data = [r for r in reports if r.buckets]
    if not with_data:
        return None
    size = with_data[0].bucket
    starts = sorted({b.start for r in with_data for b in r.buckets})[-_MAX_BUCKET_ROWS:]
    fmt = "%Y-%m-%d %H:00" if size is TimeBucket.HOUR else "%Y-%m-%d"
    title = f"Errors / evaluations per {size.value.lower()} (UTC, latest {len(starts)})"
    cells = {(r.scorer_name, b.start): b for r in with_data for b in r.buckets}
    # One column per scorer needs room for each; otherwise one block per scorer.
    needed = 18 + sum(min(max(len(r.scorer_name), 6), 10) + 2 for r in with_data)
    if needed > width:
        columns = [Column("scorer", key=True)] + [Column(s.strftime(fmt)) for s in starts]
        rows = [
            [escape(r.scorer_name)] + [_bucket_cell(cells.get((r.scorer_name, s))) for s in starts]
            for r in with_data
        ]
        return rows_table(title, columns, rows, width=0)
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column(size.value.lower(), no_wrap=True)
    for report in with_data:
        table.add_column(escape(report.scorer_name), justify="right", overflow="fold")
    for start in starts:
        row = [start.strftime(fmt)]
        row.extend(_bucket_cell(cells.get((report.scorer_name, start))) for report in with_data)
        table.add_row(*row)
    return table


def render_report(
    reports: Sequence[ScorerReport], *, out: Console, experiment: str, since: datetime | None
) -> None:
    """Print the report as rich tables (the demo prints it the same way)."""
    window = f" since {since.strftime('%Y-%m-%d %H:%M:%S')} UTC" if since is not None else ""
    if not reports:
        out.print(
            f"Experiment {experiment!r} has no scorers and no scorer feedback{window}.",
            highlight=False,
        )
        return
    title = f"Scorers of experiment {experiment!r}{window}"
    out.print(_summary_table(reports, title=title, width=out.width))
    buckets = _bucket_table(reports, width=out.width)
    if buckets is not None:
        out.print(buckets)


def _check_png(png: Path) -> None:
    # Checked before any work, so a typo in the path costs nothing and says which path.
    folder = png.expanduser().parent
    if not folder.is_dir():
        raise ConfigurationError(
            f"--png {png}: the directory {folder} does not exist. Create it (mkdir -p "
            f"{folder}) or pass --png with a path in an existing directory."
        )
    if not os.access(folder, os.W_OK):
        raise ConfigurationError(
            f"--png {png}: the directory {folder} is not writable. Pass --png with a path "
            "in a writable directory."
        )


def _report_json(reports: Sequence[ScorerReport]) -> list[dict[str, Any]]:
    return [{**r.model_dump(mode="json"), "error_rate": r.error_rate} for r in reports]


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to the app."""

    @app.command("report")
    def report_command(
        since: Annotated[
            str | None,
            typer.Option(
                "--since",
                "-s",
                help="Only evaluations finished since: ISO time (UTC if naive) or 30m/24h/7d.",
            ),
        ] = None,
        bucket: Annotated[
            str | None,
            typer.Option("--bucket", help="Errors over time per 'hour' or 'day' (default: auto)."),
        ] = None,
        png: Annotated[
            Path | None,
            typer.Option(
                "--png", dir_okay=False, help="Also draw a chart to this PNG (needs matplotlib)."
            ),
        ] = None,
        as_json: JsonOption = False,
        evaluation_id: Annotated[
            str | None,
            typer.Option("--evaluation-id", help="Report one offline evaluation instead."),
        ] = None,
    ) -> None:
        """Per scorer: evaluations, pass rate or mean value, errors, and errors over time."""
        since_time = parse_since(since) if since is not None else None
        if bucket is not None and bucket.upper() not in TimeBucket.__members__:
            raise typer.BadParameter(f"{bucket!r}: use 'hour' or 'day'.", param_hint="--bucket")
        if png is not None:
            _check_png(png)
        ctx = prepare()
        experiment = ctx.experiment.name
        reports = scorer_report(
            experiment_id=ctx.experiment_id,
            since=since_time,
            bucket=bucket,
            evaluation_id=evaluation_id,
        )
        # The chart first: if matplotlib is missing, the error is the only output.
        written = save_report_chart(reports, png) if png is not None else None
        if as_json:
            print_json(_report_json(reports))
        else:
            render_report(reports, out=console, experiment=experiment, since=since_time)
        if written is not None:
            (err_console if as_json else console).print(f"Chart written to {written}")
