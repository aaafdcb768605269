"""``localscorers demo``: the whole production-monitoring story on a small simulated app.

It runs on the current database in its own experiment (``localscorers-demo``), offline
and in seconds: a support bot traced with ``@trace`` logs traffic, code scorers and an
LLM judge (whose "model" is a deterministic local function) are registered, started
with a filter and a sample rate, score live traffic, are updated and stopped, score
earlier traffic through a backfill, and the demo ends with ``explain`` and the report.

The app, the scorers and the judge model live in ``demo_app.py`` (importable by
reference, so a ``localscorers worker`` in another process runs the same scorers). The
story is told with the CLI's own tables (``explain``, ``report``), so what it shows is
what users get.
"""

from __future__ import annotations

import random
import shlex
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from localscorers import _clock, _context
from localscorers.cli.common import Column, rows_table
from localscorers.cli.demo_app import (
    QUESTIONS,
    answer_length,
    cites_source,
    helpfulness,
    is_concise,
    support_bot,
)
from localscorers.cli.report import render_report
from localscorers.cli.scorers import scorers_table
from localscorers.cli.traces import explanation_table
from localscorers.exceptions import BackfillTimeoutError, ConfigurationError
from localscorers.explanation import ExplainOutcome, explain
from localscorers.jobs import (
    BackfillScorerConfig,
    backfill_scorers,
    wait_for_backfill_job,
)
from localscorers.models import Feedback, JobStatus, ScorerSamplingConfig
from localscorers.report import ScorerReport, scorer_report
from localscorers.scorers import list_scorers
from localscorers.store.uris import default_tracking_uri, normalize_uri
from localscorers.tracking import flush, get_experiment_by_name, search_traces, set_experiment

if TYPE_CHECKING:
    from rich.console import RenderableType

    from localscorers.models import Experiment, Trace
    from localscorers.scorers import Scorer

__all__ = [
    "DEMO_EXPERIMENT",
    "DemoResult",
    "fresh_experiment_name",
    "run_demo",
]

DEMO_EXPERIMENT = "localscorers-demo"
_SEED = 20250131
_FLUSH_DEADLINE_S = 30.0
_BACKFILL_DEADLINE_S = 60.0
_FINAL_JOB_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


# -- the story --------------------------------------------------------------------------------


@dataclass
class DemoResult:
    """What the demo did, for scripts and tests.

    Attributes:
        experiment_id: the demo experiment's id.
        traces: traces logged by this run.
        evaluations: scorer evaluations finished during the run (online and backfill).
        backfill_job_id: the backfill job over the earlier traffic.
        explained_trace_id: the filtered-out trace shown with ``explain``.
        reports: the final report.
    """

    experiment_id: str
    traces: int = 0
    evaluations: int = 0
    backfill_job_id: str | None = None
    explained_trace_id: str | None = None
    reports: list[ScorerReport] = field(default_factory=list)


class _Story:
    """The demo's steps, narrated on one console."""

    def __init__(self, console: Console, *, experiment_name: str) -> None:
        self.out = console
        self.experiment_name = experiment_name
        self.rng = random.Random(_SEED)  # noqa: S311 - simulated traffic, not cryptography
        self.step = 0
        self.started = time.monotonic()
        self.result = DemoResult(experiment_id="")

    def heading(self, title: str, text: str) -> None:
        self.step += 1
        self.out.print()
        self.out.rule(f"[bold cyan]{self.step}. {title}", align="left")
        self.out.print(text, highlight=False)

    def traffic(self, count: int, *, label: str) -> None:
        """Send ``count`` questions through the bot."""
        failed = 0
        with self.progress() as progress:
            task = progress.add_task(label, total=count)
            for _ in range(count):
                question = self.rng.choice(QUESTIONS)
                env = "prod" if self.rng.random() < 0.7 else "staging"
                user = f"user-{self.rng.randint(1, 25):02d}"
                try:
                    support_bot(question, user=user, env=env)
                except RuntimeError:
                    failed += 1  # recorded as an ERROR trace; a real app would answer politely
                progress.advance(task)
        self.result.traces += count
        self.out.print(f"  {count} calls traced ({failed} failed with an ERROR status).")

    def progress(self) -> Progress:
        return Progress(
            TextColumn("  {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.out,
        )

    def wait_for_online(self) -> None:
        if not _context.monitor_enabled():
            self.out.print(
                "  [yellow]LOCALSCORERS_MONITOR is off: evaluations wait for a "
                "'localscorers worker' process.[/]"
            )
        deadline = time.monotonic() + _FLUSH_DEADLINE_S
        pending = self._pending()
        with self.progress() as progress:
            task = progress.add_task("online evaluations", total=max(pending, 1))
            # flush(timeout) is the wait: it returns as soon as the work is done.
            while not flush(timeout=0.2) and time.monotonic() < deadline:
                progress.update(task, completed=pending - self._pending())
            left = self._pending()
            progress.update(task, completed=max(pending - left, 0 if left else 1))
        if left:
            self.out.print(f"  [yellow]{left} evaluations are still pending.[/]")

    def _pending(self) -> int:
        return sum(r.pending for r in scorer_report())

    def scorers_table(self) -> RenderableType:
        return scorers_table(
            list_scorers(),
            title="Registered scorers",
            last=(Column("description", min_width=20), _first_line),
            status=lambda status: status.value,
            width=self.out.width,
        )


def _first_line(scorer: Scorer) -> str:
    return (scorer.description or "").split("\n", 1)[0]


def _is_empty(experiment_id: str) -> bool:
    return not search_traces(experiment_ids=[experiment_id], max_results=1) and not list_scorers(
        experiment_id=experiment_id
    )


def fresh_experiment_name(base: str = DEMO_EXPERIMENT) -> str:
    """Return ``base``, or ``base-2``, ``base-3``...: the first name with no traces or scorers.

    Each demo run tells its story in an experiment of its own, so a rerun neither doubles
    the numbers of the last one nor explains a trace against another run's scorers.
    """
    candidate, number = base, 1
    while True:
        existing = get_experiment_by_name(candidate)
        if existing is None or _is_empty(existing.experiment_id):
            return candidate
        number += 1
        candidate = f"{base}-{number}"


def run_demo(
    *, console: Console | None = None, experiment_name: str | None = None, traces: int = 200
) -> DemoResult:
    """Run the guided demo on the current database and narrate it.

    Args:
        console: where to narrate (default: a new rich console on stdout).
        experiment_name: the experiment to use; it must be new or empty. By default
            ``localscorers-demo``, or the first of ``localscorers-demo-2``, ``-3``... that
            is, so each run starts afresh.
        traces: how many calls the simulated app makes (at least 20).

    Returns:
        A summary of what happened.

    Raises:
        ConfigurationError: ``traces`` is below 20, or ``experiment_name`` already holds
            traces or scorers.
    """
    story = _Story(console or Console(), experiment_name=_experiment_for(experiment_name, traces))
    experiment = _opening(story)
    demo_start = _clock.now_ms()
    earlier = traces * 5 // 10
    live = traces * 4 // 10
    after = traces - earlier - live
    story.heading(
        "Earlier traffic",
        "The support bot is decorated with @trace: every call becomes a trace with a "
        "CHAIN root span, a RETRIEVER span and an LLM span, tagged env=prod|staging. "
        "No scorer is running yet.",
    )
    story.traffic(earlier, label="earlier traffic")
    live_start = _clock.now_ms()
    active = _register_and_start(story)
    _live_traffic(story, live)
    _update_and_stop(story, active)
    after_start = _clock.now_ms()
    story.traffic(after, label="more traffic")
    story.wait_for_online()
    _backfill(story, start_ms=demo_start, end_ms=live_start)
    _explain(story, start_ms=live_start, end_ms=after_start)
    _report(story, experiment=experiment.name, since_ms=demo_start)
    _closing(story)
    return story.result


def _experiment_for(experiment_name: str | None, traces: int) -> str:
    """The demo's experiment: the one named if it is new or empty, else a fresh one."""
    if traces < 20:
        raise ConfigurationError(
            f"The demo needs at least 20 traces to tell its story, got {traces}."
        )
    if experiment_name is None:
        return fresh_experiment_name()
    existing = get_experiment_by_name(experiment_name)
    if existing is not None and not _is_empty(existing.experiment_id):
        raise ConfigurationError(
            f"Experiment {experiment_name!r} already holds traces or scorers. The demo "
            "needs a new or empty experiment: pass another --demo-experiment NAME, or "
            "omit it to get a fresh one."
        )
    return experiment_name


def _opening(story: _Story) -> Experiment:
    story.out.print(
        Panel.fit(
            "[bold]localscorers demo[/]: production scorers on a simulated support bot\n"
            f"database   {escape(_context.get_tracking_uri())}\n"
            f"experiment {escape(story.experiment_name)}",
            border_style="cyan",
        )
    )
    experiment = set_experiment(story.experiment_name)
    story.result.experiment_id = experiment.experiment_id
    return experiment


def _live_traffic(story: _Story, count: int) -> None:
    story.heading(
        "Live traffic, scored online",
        "New traces get a pending evaluation per matching, sampled scorer in the same "
        "transaction; the in-process monitor scores them on a thread pool.",
    )
    story.traffic(count, label="live traffic")
    story.wait_for_online()
    scored = search_traces(filter_string="feedback.is_concise IS NOT NULL", max_results=5)
    story.out.print(_feedback_table(scored, width=story.out.width))


def _report(story: _Story, *, experiment: str, since_ms: int) -> None:
    story.heading("Report", "Per scorer: evaluations, pass rate or mean, and errors over time.")
    since = _clock.datetime_from_ms(since_ms)
    reports = scorer_report(since=since)
    render_report(reports, out=story.out, experiment=experiment, since=since)
    story.result.reports = reports
    story.result.evaluations = sum(r.evaluations for r in reports)


def _feedback_table(traces: list[Trace], *, width: int) -> RenderableType:
    columns = [
        Column("trace id", key=True),
        Column("env", min_width=7),
        Column("online feedback", min_width=20),
    ]
    rows = []
    for item in traces:
        feedback = sorted(
            (a.name or "", "error" if a.error else repr(a.value))
            for a in item.info.assessments
            if isinstance(a, Feedback)
        )
        rows.append(
            [
                item.info.trace_id,
                escape(item.info.tags.get("env", "")),
                escape(", ".join(f"{name}={value}" for name, value in feedback)),
            ]
        )
    return rows_table("Latest scored traces", columns, rows, width=width)


def _register_and_start(story: _Story) -> dict[str, Scorer]:
    story.heading(
        "Register and start scorers",
        "Three code scorers and an LLM judge. [bold]cites_source[/] only looks at "
        "production traffic (a filter); [bold]answer_length[/] samples half the traces.",
    )
    active = {
        "is_concise": is_concise.register().start(),
        "cites_source": cites_source.register().start(
            sampling_config=ScorerSamplingConfig(filter_string="tags.env = 'prod'")
        ),
        "answer_length": answer_length.register().start(
            sampling_config=ScorerSamplingConfig(sample_rate=0.5)
        ),
        "helpfulness": helpfulness.register().start(),
    }
    story.out.print(story.scorers_table())
    return active


def _update_and_stop(story: _Story, active: dict[str, Scorer]) -> None:
    story.heading(
        "Update one scorer, stop another",
        "answer_length now scores every successful trace (update replaces the whole "
        "config); cites_source is stopped: it stays registered, but scores nothing new.",
    )
    active["answer_length"] = active["answer_length"].update(
        sampling_config=ScorerSamplingConfig(sample_rate=1.0, filter_string="trace.status = 'OK'")
    )
    active["cites_source"] = active["cites_source"].stop()
    story.out.print(story.scorers_table())


def _backfill(story: _Story, *, start_ms: int, end_ms: int) -> None:
    story.heading(
        "Backfill the earlier traffic",
        "The traces logged before the scorers started are scored by a durable backfill "
        "job, resumable after a crash. The stopped cites_source is given an explicit rate.",
    )
    configs = [
        BackfillScorerConfig("is_concise"),
        BackfillScorerConfig("helpfulness"),
        BackfillScorerConfig("cites_source", sample_rate=1.0),
    ]
    job_id = backfill_scorers(
        scorers=configs,
        start_time=_clock.datetime_from_ms(start_ms),
        end_time=_clock.datetime_from_ms(end_ms),
    )
    story.result.backfill_job_id = job_id
    deadline = time.monotonic() + _BACKFILL_DEADLINE_S
    with story.progress() as progress:
        task = progress.add_task(f"backfill {job_id[:11]}", total=None)
        while True:
            # The bounded wait doubles as the poll interval; it hands back the job as it stands.
            try:
                job = wait_for_backfill_job(job_id, timeout=0.2)
            except BackfillTimeoutError as timeout:
                job = timeout.job
            progress.update(task, total=job.total or None, completed=job.processed)
            if job.status in _FINAL_JOB_STATUSES or time.monotonic() > deadline:
                break
    story.out.print(
        f"  Job {job.status}: {job.processed} processed, {job.succeeded} succeeded, "
        f"{job.failed} failed, {job.skipped} skipped."
    )


def _explain(story: _Story, *, start_ms: int, end_ms: int) -> None:
    story.heading(
        "Why was this trace not scored?",
        "explain(trace_id) replays each scorer's config at the time the trace was "
        "logged: filter, then sample, then the evaluation's outcome.",
    )
    # The live traffic, while cites_source was active with its tags.env = 'prod' filter.
    window = f"trace.timestamp_ms >= {start_ms} AND trace.timestamp_ms < {end_ms}"
    candidates = search_traces(filter_string=f"tags.env = 'staging' AND {window}", max_results=20)
    chosen = _pick_filtered_out(candidates)
    if chosen is None:
        story.out.print("  No staging trace in the live traffic this time.")
        return
    story.result.explained_trace_id = chosen.info.trace_id
    story.out.print(explanation_table(explain(chosen.info.trace_id), width=story.out.width))


def _pick_filtered_out(candidates: list[Trace]) -> Trace | None:
    # Prefer a trace that shows two reasons at once: filtered out and sampled out.
    best: Trace | None = None
    for candidate in candidates:
        outcomes = {e.outcome for e in explain(candidate.info.trace_id)}
        if ExplainOutcome.FILTERED_OUT in outcomes:
            if ExplainOutcome.SAMPLED_OUT in outcomes:
                return candidate
            best = best or candidate
    return best


def _closing(story: _Story) -> None:
    elapsed = time.monotonic() - story.started
    uri = _context.get_tracking_uri()
    default = uri == normalize_uri(default_tracking_uri())
    story.out.print()
    story.out.rule("[bold green]Done", align="left")
    story.out.print(
        f"{story.result.traces} traces, {story.result.evaluations} evaluations in "
        f"{elapsed:.1f} s. Explore with:",
        highlight=False,
    )
    database = "" if default else f" --db {shlex.quote(uri.removeprefix('sqlite:///'))}"
    prefix = f"localscorers{database} -e {shlex.quote(story.experiment_name)}"
    for command in (
        "scorers list",
        "traces search --filter \"feedback.helpfulness = 'false'\"",
        f"explain {story.result.explained_trace_id or 'TRACE_ID'}",
        "report --since 1h",
    ):
        story.out.print(f"  {escape(prefix)} {escape(command)}", highlight=False, soft_wrap=True)
