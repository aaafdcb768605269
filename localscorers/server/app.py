"""The one ASGI app behind ``localscorers server``: OTLP ingestion and the web UI.

Routes come from their own modules (``otlp`` for ``POST /v1/traces``, ``ui`` for the
pages); this module only assembles them with the settings both share, and runs what
lives as long as the app: the sweeper that writes traces whose root never came, and
(with ``run_workers``) the in-process evaluator and backfill job runner.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette

from localscorers import _context
from localscorers.server import otlp, ui
from localscorers.server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]


def create_app(settings: ServerSettings | None = None) -> Starlette:
    """Build the ASGI app: OTLP routes first, then the UI's."""
    settings = settings or ServerSettings()

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        if settings.run_workers:
            # Starts the online evaluator and the backfill job runner of the database.
            _context.current().runner()
        sweeper = otlp.Sweeper(settings)
        sweeper.start()
        try:
            yield
        finally:
            sweeper.close()

    app = Starlette(routes=[*otlp.routes(settings), *ui.routes(settings)], lifespan=lifespan)
    app.state.settings = settings
    return app
