"""The UI's pages (GET): experiments, scorers, one scorer, traces, one trace, backfill jobs.

Every page reads through the public API (``scorer_report``, ``search_traces``,
``get_trace``, ``explain``, ``list_backfill_jobs``) or the store's typed interface
(experiments, a scorer's stored definition); no SQL lives in ``server/``. Handlers
are plain functions run in a worker thread by the guard, and always pass
``experiment_id`` explicitly: the process's active experiment is never touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from localscorers import _context
from localscorers.exceptions import FilterSyntaxError, NotFoundError
from localscorers.explanation import explain
from localscorers.jobs import list_backfill_jobs
from localscorers.models import Expectation, Feedback, JobStatus, validate_filter_string
from localscorers.report import scorer_report
from localscorers.server import ui_views
from localscorers.tracking import get_trace, search_experiments, search_traces

if TYPE_CHECKING:
    from collections.abc import Mapping

    from starlette.requests import Request
    from starlette.responses import Response

    from localscorers.models import Experiment, Trace
    from localscorers.report import ScorerReport
    from localscorers.store.scorer_state import ScorerState

__all__ = ["PAGE_SIZE", "Pages", "TracesCursor"]

PAGE_SIZE = 25
_FINAL_JOBS = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


def experiment_or_404(experiment_id: str) -> Experiment:
    """Return the experiment with that id.

    Raises:
        NotFoundError: no experiment has that id.
    """
    experiment = _context.current().store.get_experiment(experiment_id)
    if experiment is None:
        raise NotFoundError(
            f"No experiment has id {experiment_id!r}. Pick one from the experiments page (/)."
        )
    return experiment


@dataclass(frozen=True)
class TracesCursor:
    """Where a page of traces (newest first) starts: at or before ``before_ms``.

    Traces are ordered by request time (newest first), then trace id. The next page is
    the traces at or before the last one's time, after skipping the ``skip`` traces of
    exactly that time already shown: a keyset, so deep pages cost what the first does.
    """

    before_ms: int
    skip: int

    @classmethod
    def parse(cls, text: str | None) -> TracesCursor | None:
        """Read ``"<ms>.<skip>"``; anything else means the first page."""
        before, _, skip = (text or "").partition(".")
        if not (before.isdigit() and skip.isdigit()):
            return None
        return cls(int(before), int(skip))

    def __str__(self) -> str:
        return f"{self.before_ms}.{self.skip}"


def traces_page(
    experiment_id: str, filter_string: str | None, cursor: TracesCursor | None
) -> tuple[list[Trace], TracesCursor | None]:
    """Return one page of traces and the cursor of the next (None on the last page).

    Raises:
        FilterSyntaxError: the filter does not parse (positions refer to the user's text).
    """
    user_filter = validate_filter_string(filter_string)
    combined, skip = user_filter, 0
    if cursor is not None:
        bound = f"trace.timestamp_ms <= {cursor.before_ms}"
        combined = f"({user_filter}) AND {bound}" if user_filter else bound
        skip = cursor.skip
    found = search_traces(
        experiment_ids=[experiment_id],
        filter_string=combined,
        max_results=skip + PAGE_SIZE + 1,
    )[skip:]
    page = found[:PAGE_SIZE]
    if len(found) <= PAGE_SIZE:
        return page, None
    last_ms = ui_views.epoch_ms(page[-1].info.request_time)
    same = sum(1 for t in page if ui_views.epoch_ms(t.info.request_time) == last_ms)
    if cursor is not None and cursor.before_ms == last_ms:
        same += cursor.skip
    return page, TracesCursor(last_ms, same)


@dataclass(frozen=True)
class ReportWindow:
    """An experiment's scorer reports over the window a page asks for (``?window=``)."""

    label: str
    since: datetime | None
    now: datetime
    reports: list[ScorerReport]

    @classmethod
    def of(cls, request: Request, experiment_id: str) -> ReportWindow:
        """Read the reports over the request's window (an unknown label: the default)."""
        window = request.query_params.get("window", "")
        label = window if window in ui_views.WINDOWS else ui_views.DEFAULT_WINDOW
        length, bucket = ui_views.WINDOWS[label]
        now = datetime.now(UTC)
        since = None if length is None else now - length
        reports = scorer_report(experiment_id=experiment_id, since=since, bucket=bucket)
        return cls(label, since, now, reports)

    def chart(self, report: ScorerReport) -> ui_views.Chart:
        """Draw one scorer's report over this window."""
        return ui_views.chart(report, since=self.since, now=self.now)

    def page_values(self) -> dict[str, Any]:
        """What a scorers page's template needs of the window: its label and the choices."""
        return {"window": self.label, "windows": list(ui_views.WINDOWS), "section": "scorers"}


class Pages:
    """The GET handlers; each takes the request and an (empty) form."""

    def __init__(self, renderer: ui_views.Renderer) -> None:
        self.renderer = renderer

    def experiments(self, request: Request, form: Mapping[str, str]) -> Response:
        """Every experiment, with its scorers counted by status."""
        del form
        runtime = _context.current()
        rows = []
        for experiment in search_experiments():
            states = runtime.registry.list(experiment.experiment_id)
            active = sum(1 for s in states if s.status == "ACTIVE")
            rows.append({"experiment": experiment, "scorers": len(states), "active": active})
        return self.renderer.page(request, "experiments.html", rows=rows)

    def scorers(self, request: Request, form: Mapping[str, str]) -> Response:
        """The experiment's scorers: state, numbers over the chosen window, a chart."""
        del form
        experiment = experiment_or_404(request.path_params["experiment_id"])
        shown = ReportWindow.of(request, experiment.experiment_id)
        rows = [(r, shown.chart(r)) for r in shown.reports]
        return self.renderer.page(
            request, "scorers.html", experiment=experiment, rows=rows, **shown.page_values()
        )

    def scorer(self, request: Request, form: Mapping[str, str]) -> Response:
        """One scorer: its state, numbers, stored definition and the action forms."""
        del form
        experiment = experiment_or_404(request.path_params["experiment_id"])
        name = request.query_params.get("name", "")
        done = request.query_params.get("done")
        message = _DONE_MESSAGES.get(done or "")
        return self.scorer_page(request, experiment, name, message=message)

    def scorer_page(
        self,
        request: Request,
        experiment: Experiment,
        name: str,
        *,
        message: str | None = None,
        error: str | None = None,
        values: Mapping[str, str] | None = None,
        status: int = 200,
    ) -> Response:
        """Render a scorer's page, with an action's outcome and the values it was given.

        Raises:
            ScorerNotFoundError: no scorer of that name is registered.
        """
        registry = _context.current().registry
        state = registry.get(experiment.experiment_id, name)
        shown = ReportWindow.of(request, experiment.experiment_id)
        report = next((r for r in shown.reports if r.scorer_name == state.name), None)
        definition = dict(state.definition)
        source = definition.pop("source", None)
        return self.renderer.page(
            request,
            "scorer.html",
            status=status,
            experiment=experiment,
            state=state,
            report=report,
            chart=None if report is None else shown.chart(report),
            source=source,
            definition=definition,
            message=message,
            error=error,
            values=_form_values(state, values),
            feedback_filter=_feedback_filter(state.name),
            **shown.page_values(),
        )

    def traces(self, request: Request, form: Mapping[str, str]) -> Response:
        """A page of the experiment's traces matching the filter, with feedback chips."""
        del form
        experiment = experiment_or_404(request.path_params["experiment_id"])
        filter_string = request.query_params.get("filter", "")
        cursor = TracesCursor.parse(request.query_params.get("after"))
        page_number = request.query_params.get("page", "1")
        page = int(page_number) if page_number.isdigit() and int(page_number) > 0 else 1
        error: FilterSyntaxError | None = None
        traces: list[Trace] = []
        next_cursor = None
        try:
            traces, next_cursor = traces_page(experiment.experiment_id, filter_string, cursor)
        except FilterSyntaxError as exc:
            error = exc
        template = "traces_results.html" if _is_htmx(request) else "traces.html"
        return self.renderer.page(
            request,
            template,
            status=400 if error is not None and not _is_htmx(request) else 200,
            experiment=experiment,
            filter_string=filter_string,
            error=error,
            rows=[(t, ui_views.chips(t.info.assessments)) for t in traces],
            next_cursor=None if next_cursor is None else str(next_cursor),
            page=page,
            first_page=cursor is None,
            section="traces",
        )

    def trace(self, request: Request, form: Mapping[str, str]) -> Response:
        """One trace: its spans as a tree, inputs and outputs, feedback and ``explain``."""
        del form
        trace = get_trace(request.query_params.get("id", ""))
        experiment = experiment_or_404(trace.info.experiment_id)
        assessments = trace.info.assessments
        return self.renderer.page(
            request,
            "trace.html",
            experiment=experiment,
            trace=trace,
            roots=ui_views.span_tree(trace.data.spans),
            feedback=[a for a in assessments if isinstance(a, Feedback)],
            expectations=[a for a in assessments if isinstance(a, Expectation)],
            explanation=explain(trace.info.trace_id),
            section="traces",
        )

    def jobs(self, request: Request, form: Mapping[str, str]) -> Response:
        """The experiment's backfill jobs; the table polls itself while one is running."""
        del form
        experiment = experiment_or_404(request.path_params["experiment_id"])
        jobs = list_backfill_jobs(experiment_id=experiment.experiment_id)
        created = request.query_params.get("created")
        cancelled = request.query_params.get("cancelled")
        return self.renderer.page(
            request,
            "jobs_table.html" if _is_htmx(request) else "jobs.html",
            experiment=experiment,
            jobs=jobs,
            live=any(job.status not in _FINAL_JOBS for job in jobs),
            created=created,
            cancelled=cancelled,
            final=_FINAL_JOBS,
            section="jobs",
        )


_DONE_MESSAGES = {
    "start": "Started.",
    "update": "Updated.",
    "stop": "Stopped.",
}


def _feedback_filter(name: str) -> str | None:
    """Return the filter for traces with this scorer's feedback (None if not expressible)."""
    return None if "`" in name else f"feedback.`{name}` IS NOT NULL"


def _is_htmx(request: Request) -> bool:
    # A history restore (back button after a pushed URL) wants the whole page.
    return (
        request.headers.get("hx-request") == "true"
        and request.headers.get("hx-history-restore-request") != "true"
    )


def _form_values(state: ScorerState, values: Mapping[str, str] | None) -> dict[str, str]:
    """Return the action forms' values: what was just submitted, else the current config."""
    current = {
        "sample_rate": f"{state.sample_rate:g}" if state.sample_rate else "1",
        "filter_string": state.filter_string or "",
        "backfill_rate": "",
        "start_time": "",
        "end_time": "",
        "rescore": "",
    }
    if values:
        current.update({key: value for key, value in values.items() if key in current})
    return current
