"""The one ASGI app behind ``localscorers server``: OTLP ingestion and the web UI.

Routes come from their own modules (``otlp`` for ``POST /v1/traces``, ``ui`` for the
pages); this module only assembles them with the settings both share.
"""

from __future__ import annotations

from starlette.applications import Starlette

from localscorers.server import otlp, ui
from localscorers.server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]


def create_app(settings: ServerSettings | None = None) -> Starlette:
    """Build the ASGI app: OTLP routes first, then the UI's."""
    settings = settings or ServerSettings()
    app = Starlette(routes=[*otlp.routes(settings), *ui.routes(settings)])
    app.state.settings = settings
    return app
