"""The HTTP server (extra ``localscorers[server]``): OTLP ingestion and the web UI.

The names are loaded on first use (PEP 562): the command line reads ``ServerSettings``
without the extra installed, and only ``create_app`` and the UI need Starlette and Jinja.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from localscorers.store import exports_on_first_use

if TYPE_CHECKING:
    from localscorers.server.app import create_app as create_app
    from localscorers.server.settings import ServerSettings as ServerSettings
    from localscorers.server.ui import STATIC as STATIC
    from localscorers.server.ui_pages import TracesCursor as TracesCursor
    from localscorers.server.ui_views import TEMPLATES as TEMPLATES
    from localscorers.server.ui_views import chart as chart
    from localscorers.server.ui_views import chips as chips
    from localscorers.server.ui_views import environment as environment
    from localscorers.server.ui_views import pretty as pretty
    from localscorers.server.ui_views import span_tree as span_tree


if not TYPE_CHECKING:
    # Type checkers skip this: they go by the ``X as X`` imports above.
    __all__, __getattr__ = exports_on_first_use(
        __name__,
        {
            "app": ("create_app",),
            "settings": ("ServerSettings",),
            "ui": ("STATIC",),
            "ui_pages": ("TracesCursor",),
            "ui_views": ("TEMPLATES", "chart", "chips", "environment", "pretty", "span_tree"),
        },
    )
