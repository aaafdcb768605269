"""``POST /v1/traces``: OTLP/HTTP trace ingestion (owned by the OTLP work, issue 17)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from localscorers.server.settings import ServerSettings

__all__ = ["routes"]


def routes(settings: ServerSettings) -> list[BaseRoute]:
    """Return the ingestion routes."""
    del settings
    return []
