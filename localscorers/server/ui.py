"""The web UI pages (owned by the UI work, issue 19)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from localscorers.server.settings import ServerSettings

__all__ = ["routes"]


def routes(settings: ServerSettings) -> list[BaseRoute]:
    """Return the UI routes."""
    del settings
    return []
