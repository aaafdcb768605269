"""The UI's actions (POST, CSRF-checked by the guard): start, update, stop, backfill, cancel.

Each action calls the public API exactly as a user's code would
(``get_scorer(...).start(sampling_config=ScorerSamplingConfig(...))``,
``backfill_scorers``, ``cancel_backfill_job``), so it applies the same validation and
shows the same messages. Form text is handed over as typed when it is not a number,
so the API itself rejects it with its own words. A success redirects (303) to a page
that shows the new state; an error re-renders the scorer's page with the message in
place and the submitted values kept.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.responses import RedirectResponse

from localscorers.exceptions import LocalScorersError, ScorerLoadError
from localscorers.jobs import BackfillScorerConfig, backfill_scorers, cancel_backfill_job
from localscorers.models import ScorerSamplingConfig
from localscorers.scorers import Scorer, get_scorer
from localscorers.server.ui_pages import experiment_or_404

if TYPE_CHECKING:
    from collections.abc import Mapping

    from starlette.requests import Request
    from starlette.responses import Response

    from localscorers.server.ui_pages import Pages

__all__ = ["Actions"]


def _number(text: str | None) -> Any:  # noqa: ANN401 - a float, None, or the text itself
    """Return the field as a float, None when blank, or the text as typed (for the API)."""
    if text is None or not text.strip():
        return None
    try:
        return float(text)
    except ValueError:
        return text.strip()


def _time(text: str | None) -> Any:  # noqa: ANN401 - a datetime, None, or the text itself
    """Return a ``datetime-local`` field (UTC) as a datetime, None when blank, else the text."""
    if text is None or not text.strip():
        return None
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        return text.strip()


def _scorer(experiment_id: str, name: str) -> Scorer:
    """Return the registered scorer to act on.

    A class scorer whose class cannot be imported in the server still has a state to
    change: the base ``Scorer`` carrying its name goes through the same lifecycle calls.

    Raises:
        ScorerNotFoundError: no scorer of that name is registered.
    """
    try:
        return get_scorer(name=name, experiment_id=experiment_id)
    except ScorerLoadError:
        return Scorer(name=name)


class Actions:
    """The POST handlers; each takes the request and its form fields."""

    def __init__(self, pages: Pages) -> None:
        self.pages = pages

    def lifecycle(self, request: Request, form: Mapping[str, str]) -> Response:
        """Start, update or stop a scorer (the action is the path's last segment)."""
        experiment = experiment_or_404(request.path_params["experiment_id"])
        action = request.path_params["action"]
        name = form.get("name", "")
        eid = experiment.experiment_id
        try:
            target = _scorer(eid, name)
            if action == "stop":
                target.stop(experiment_id=eid)
            else:
                config = self._sampling_config(form)
                if action == "start":
                    target.start(experiment_id=eid, sampling_config=config)
                else:
                    target.update(experiment_id=eid, sampling_config=config)
        except LocalScorersError as exc:
            return self.pages.scorer_page(
                request, experiment, name, error=str(exc), values=form, status=400
            )
        query = urlencode({"name": name, "done": action})
        return RedirectResponse(f"/experiments/{eid}/scorer?{query}", status_code=303)

    @staticmethod
    def _sampling_config(form: Mapping[str, str]) -> ScorerSamplingConfig:
        rate = _number(form.get("sample_rate"))
        filter_string = form.get("filter_string") or None
        if rate is None:
            return ScorerSamplingConfig(filter_string=filter_string)
        return ScorerSamplingConfig(sample_rate=rate, filter_string=filter_string)

    def backfill(self, request: Request, form: Mapping[str, str]) -> Response:
        """Create a backfill job for one scorer (or, with ``dry_run``, count its traces)."""
        experiment = experiment_or_404(request.path_params["experiment_id"])
        eid = experiment.experiment_id
        name = form.get("name", "")
        dry_run = form.get("dry_run") == "1"
        try:
            config = BackfillScorerConfig(name, sample_rate=_number(form.get("backfill_rate")))
            arguments: dict[str, Any] = {
                "experiment_id": eid,
                "scorers": [config],
                "start_time": _time(form.get("start_time")),
                "end_time": _time(form.get("end_time")),
                "rescore": form.get("rescore") == "1",
            }
            if dry_run:
                counts = backfill_scorers(**arguments, dry_run=True)
            else:
                job_id = backfill_scorers(**arguments)
        except LocalScorersError as exc:
            return self.pages.scorer_page(
                request, experiment, name, error=str(exc), values=form, status=400
            )
        if dry_run:
            total = sum(counts.values())
            message = f"Dry run: a backfill would evaluate {total} trace(s); no job was created."
            return self.pages.scorer_page(request, experiment, name, message=message, values=form)
        return RedirectResponse(
            f"/experiments/{eid}/jobs?{urlencode({'created': job_id})}", status_code=303
        )

    def cancel(self, request: Request, form: Mapping[str, str]) -> Response:
        """Cancel a backfill job (waits up to 5 seconds for a running one to stop)."""
        job = cancel_backfill_job(form.get("job_id", ""))
        query = urlencode({"cancelled": job.job_id})
        return RedirectResponse(f"/experiments/{job.experiment_id}/jobs?{query}", status_code=303)
