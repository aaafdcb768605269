"""``localscorers backfill`` and ``localscorers jobs list|get|cancel``.

``backfill`` without ``--wait`` creates the job and exits: the job then runs in
``localscorers worker`` (or the next process that runs the evaluator). With
``--wait`` it runs here, with a progress bar, and the exit code says how it ended.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from localscorers import jobs
from localscorers.cli.common import Column, console, err_console, prepare, print_json, rows_table
from localscorers.cli.shared import JsonOption, Listing, command_group, print_listing
from localscorers.exceptions import BackfillTimeoutError, ConfigurationError
from localscorers.models import JobStatus

if TYPE_CHECKING:
    from collections.abc import Sequence

    from rich.console import RenderableType

    from localscorers.models import BackfillJob

__all__ = ["job_table", "parse_scorer", "parse_time", "register"]

JobIdArgument = Annotated[str, typer.Argument(metavar="JOB_ID", help="A backfill job id.")]

_STATUS_STYLES = {
    JobStatus.PENDING: "cyan",
    JobStatus.RUNNING: "bold blue",
    JobStatus.SUCCEEDED: "bold green",
    JobStatus.FAILED: "bold red",
    JobStatus.CANCELLED: "yellow",
}
_POLL_SECONDS = 0.2


def parse_scorer(text: str) -> jobs.BackfillScorerConfig:
    """Parse ``--scorer NAME`` or ``--scorer NAME=RATE``.

    Raises:
        ConfigurationError: the rate after ``=`` is not a number in (0, 1], or the name
            is blank.
    """
    name, sep, rate = text.rpartition("=")
    if not sep:
        return jobs.BackfillScorerConfig(text)
    try:
        value = float(rate)
    except ValueError:
        raise ConfigurationError(
            f"--scorer {text!r}: the rate after '=' must be a number in (0, 1], "
            f"got {rate!r}. Write NAME or NAME=RATE, e.g. relevance=0.5."
        ) from None
    return jobs.BackfillScorerConfig(name, sample_rate=value)


def parse_time(text: str | None, *, option: str) -> datetime | int | None:
    """Parse an ISO 8601 time (naive means UTC) or epoch milliseconds.

    Raises:
        ConfigurationError: the text is neither.
    """
    if text is None:
        return None
    stripped = text.strip()
    if stripped.lstrip("-").isdigit():
        return int(stripped)
    try:
        return datetime.fromisoformat(stripped)
    except ValueError:
        raise ConfigurationError(
            f"{option} {text!r} is not a time: use ISO 8601 such as 2025-01-31T12:00:00 "
            "(naive means UTC; add +02:00 or Z for a zone) or epoch milliseconds."
        ) from None


def _status(status: JobStatus) -> str:
    return f"[{_STATUS_STYLES[status]}]{status.value}[/]"


def _when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def _scorers(job: BackfillJob) -> str:
    return ", ".join(f"{s['name']} v{s['version']} @{s['sample_rate']:g}" for s in job.scorers)


def _progress(job: BackfillJob) -> str:
    return f"{job.processed}/{job.total}" if job.started_at is not None else "-"


def job_table(
    items: Sequence[BackfillJob], *, title: str, width: int | None = None
) -> RenderableType:
    """Return a table with one row per job (ids never wrapped; blocks on narrow terminals)."""
    columns = [
        Column("job id", key=True),
        Column("status", min_width=9),
        Column("scorers", min_width=16),
        Column("done", min_width=7, justify="right"),
        Column("ok", min_width=4, justify="right"),
        Column("failed", min_width=6, justify="right"),
        Column("skipped", min_width=7, justify="right"),
        Column("created", min_width=10),
    ]
    rows = [
        [
            job.job_id,
            _status(job.status),
            escape(_scorers(job)),
            _progress(job),
            str(job.succeeded),
            str(job.failed),
            str(job.skipped),
            _when(job.created_at),
        ]
        for job in items
    ]
    return rows_table(title, columns, rows, width=width)


def _show(job: BackfillJob) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    window = f"[{_when(job.start_time) or 'beginning'}, {_when(job.end_time) or 'now'})"
    for key, value in (
        ("job id", job.job_id),
        ("experiment", job.experiment_id),
        ("status", _status(job.status)),
        ("range", window),
        ("rescore", "yes" if job.rescore else "no"),
        ("progress", f"{_progress(job)} pairs"),
        ("created", _when(job.created_at)),
        ("started", _when(job.started_at)),
        ("finished", _when(job.finished_at)),
    ):
        grid.add_row(key, value)
    if job.error:
        grid.add_row("error", f"[red]{job.error}[/]")
    console.print(grid)
    columns = [
        Column("name", key=True),
        Column("version", min_width=7, justify="right"),
        Column("rate", min_width=4, justify="right"),
        Column("filter", min_width=12),
        Column("done", min_width=7, justify="right"),
        Column("ok", min_width=4, justify="right"),
        Column("failed", min_width=6, justify="right"),
        Column("skipped", min_width=7, justify="right"),
    ]
    rows = []
    for s in job.scorers:
        done = f"{s.get('processed', 0)}/{s['total']}" if s.get("total") is not None else "-"
        rows.append(
            [
                escape(s["name"]),
                str(s["version"]),
                f"{s['sample_rate']:g}",
                escape(s.get("filter_string") or ""),
                done,
                *(str(s.get(key, 0)) for key in ("succeeded", "failed", "skipped")),
            ]
        )
    console.print(rows_table("scorers", columns, rows))


def _job_json(job: BackfillJob) -> dict[str, Any]:
    return job.model_dump(mode="json")


def _follow(job_id: str) -> BackfillJob:
    """Wait for the job with a progress bar (done/total, rate, ETA) on stderr."""
    columns = (
        TextColumn("[bold]backfill[/] {task.fields[status]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    job = jobs.get_backfill_job(job_id)
    started = time.monotonic()
    with Progress(*columns, console=err_console, transient=False) as progress:
        task = progress.add_task("backfill", total=None, status=job.status.value, rate="")
        while job.status not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED):
            try:
                job = jobs.wait_for_backfill_job(job_id, timeout=_POLL_SECONDS)
            except BackfillTimeoutError as exc:
                job = exc.job
            elapsed = max(time.monotonic() - started, 1e-6)
            progress.update(
                task,
                total=job.total or None,
                completed=job.processed,
                status=job.status.value,
                rate=f"{job.processed / elapsed:,.0f} pairs/s",
            )
    return job


def _dry_run(configs: list[jobs.BackfillScorerConfig], *, as_json: bool, **window: Any) -> None:  # noqa: ANN401
    counts = jobs.backfill_scorers(scorers=configs, dry_run=True, **window)
    if as_json:
        print_json(counts)
        return
    table = Table(title="dry run: nothing written", title_justify="left")
    table.add_column("scorer")
    table.add_column("traces to evaluate", justify="right")
    for name, count in counts.items():
        table.add_row(name, f"{count:,}")
    console.print(table)


def _run(job_id: str, *, wait: bool, as_json: bool) -> None:
    if not wait:
        if as_json:
            print_json(_job_json(jobs.get_backfill_job(job_id)))
            return
        console.print(f"Created backfill job [bold]{job_id}[/].")
        err_console.print(
            "[dim]It runs in 'localscorers worker' (or any process running the evaluator); "
            f"pass --wait to run it here. Follow it with 'localscorers jobs get {job_id}'.[/]"
        )
        return
    try:
        job = jobs.wait_for_backfill_job(job_id) if as_json else _follow(job_id)
    except KeyboardInterrupt:
        err_console.print(
            f"Stopped waiting. Job {job_id} resumes in 'localscorers worker' or the next "
            "process running the evaluator; cancel it with 'localscorers jobs cancel "
            f"{job_id}'."
        )
        raise typer.Exit(130) from None
    if as_json:
        print_json(_job_json(job))
    else:
        _show(job)
    if job.status is not JobStatus.SUCCEEDED:
        raise typer.Exit(1)


def _time_option(name: str, bound: str) -> Any:  # noqa: ANN401 - typer's OptionInfo
    return typer.Option(name, help=f"First request time {bound} (ISO 8601 or epoch ms).")


def _backfill_command(
    *,
    scorer: Annotated[
        list[str],
        typer.Option(
            "--scorer",
            "-s",
            metavar="NAME[=RATE]",
            help="A registered scorer, optionally with a sample rate (repeatable). "
            "Without a rate the scorer's active rate is used.",
        ),
    ],
    start: Annotated[str | None, _time_option("--start", "included")] = None,
    end: Annotated[str | None, _time_option("--end", "excluded")] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Run the job here and wait, with a progress bar.")
    ] = False,
    rescore: Annotated[
        bool,
        typer.Option("--rescore", help="Score again traces already scored (keeps history)."),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Only count the traces each scorer would evaluate."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Score traces already logged with registered scorers, as a durable job."""
    prepare(write=True)
    configs = [parse_scorer(text) for text in scorer]
    window: dict[str, Any] = {
        "start_time": parse_time(start, option="--start"),
        "end_time": parse_time(end, option="--end"),
        "rescore": rescore,
    }
    if dry_run:
        _dry_run(configs, as_json=as_json, **window)
        return
    _run(jobs.backfill_scorers(scorers=configs, **window), wait=wait, as_json=as_json)


def _list_command(as_json: JsonOption = False) -> None:
    """List the experiment's backfill jobs, newest first."""
    ctx = prepare()
    found = jobs.list_backfill_jobs()
    listing = Listing(
        "backfill jobs",
        f"No backfill jobs in {ctx.label()}.",
        lambda experiment_id: len(jobs.list_backfill_jobs(experiment_id=experiment_id)),
    )
    title = f"{len(found)} backfill job(s) of {ctx.label()}"
    print_listing(
        ctx,
        found,
        listing,
        as_json=as_json,
        to_json=_job_json,
        table=lambda items: job_table(items, title=title),
    )


def _get_command(job_id: JobIdArgument, as_json: JsonOption = False) -> None:
    """Show one backfill job: status, progress per scorer, times and error."""
    prepare()
    _print_job(jobs.get_backfill_job(job_id), as_json=as_json)


def _cancel_command(job_id: JobIdArgument, as_json: JsonOption = False) -> None:
    """Cancel a backfill job; the feedback it already wrote stays."""
    prepare(write=True)
    _print_job(jobs.cancel_backfill_job(job_id), as_json=as_json)


def _print_job(job: BackfillJob, *, as_json: bool) -> None:
    if as_json:
        print_json(_job_json(job))
    else:
        _show(job)


def register(app: typer.Typer) -> None:
    """Add the ``backfill`` command and the ``jobs`` command group to the app."""
    app.command("backfill")(_backfill_command)
    group = command_group(app, "jobs", "List, show and cancel backfill jobs.")
    group.command("list")(_list_command)
    group.command("get")(_get_command)
    group.command("cancel")(_cancel_command)
