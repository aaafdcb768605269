"""The web UI at ``/`` (DESIGN.md section 16): server-rendered pages with vendored htmx.

Pages (GET): ``/`` experiments; ``/experiments/{id}/scorers`` the scorers with their
numbers over a window and a chart; ``/experiments/{id}/scorer?name=`` one scorer with
its actions; ``/experiments/{id}/traces`` traces with a filter box and paging;
``/trace?id=`` one trace; ``/experiments/{id}/jobs`` backfill jobs. Actions (POST,
CSRF-protected): start / update / stop, backfill, cancel. Names and trace ids travel
in query strings or form fields, never in paths, since they may hold any character.

The modules behind it: ``ui_security`` (token, CSRF, headers), ``ui_pages`` (GET),
``ui_actions`` (POST), ``ui_views`` (templates and what they show).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from localscorers.server.ui_actions import Actions
from localscorers.server.ui_pages import Pages
from localscorers.server.ui_security import Guard
from localscorers.server.ui_views import Renderer, environment

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from localscorers.server.settings import ServerSettings

__all__ = ["STATIC", "routes"]

STATIC = Path(__file__).parent / "static"


def routes(settings: ServerSettings) -> list[BaseRoute]:
    """Return the UI routes; each app gets its own CSRF secret."""
    renderer = Renderer(environment())
    guard = Guard(settings, refuse=renderer.refusal)
    renderer.csrf = guard.csrf_token
    pages = Pages(renderer)
    actions = Actions(pages)
    experiment = "/experiments/{experiment_id}"
    return [
        Route("/", guard.protect(pages.experiments), name="ui-experiments"),
        Route(f"{experiment}/scorers", guard.protect(pages.scorers), name="ui-scorers"),
        Route(f"{experiment}/scorer", guard.protect(pages.scorer), name="ui-scorer"),
        Route(
            f"{experiment}/scorer/{{action:str}}",
            guard.protect(_lifecycle_or_backfill(actions), action=True),
            methods=["POST"],
            name="ui-scorer-action",
        ),
        Route(f"{experiment}/traces", guard.protect(pages.traces), name="ui-traces"),
        Route("/trace", guard.protect(pages.trace), name="ui-trace"),
        Route(f"{experiment}/jobs", guard.protect(pages.jobs), name="ui-jobs"),
        Route(
            "/jobs/cancel",
            guard.protect(actions.cancel, action=True),
            methods=["POST"],
            name="ui-job-cancel",
        ),
        Mount("/static", app=StaticFiles(directory=STATIC), name="ui-static"),
    ]


def _lifecycle_or_backfill(
    actions: Actions,
) -> Callable[[Request, Mapping[str, str]], Response]:
    def handle(request: Request, form: Mapping[str, str]) -> Response:
        action = request.path_params["action"]
        if action == "backfill":
            return actions.backfill(request, form)
        if action in {"start", "update", "stop"}:
            return actions.lifecycle(request, form)
        return PlainTextResponse(
            f"Unknown action {action!r}: use start, update, stop or backfill.", status_code=404
        )

    return handle
