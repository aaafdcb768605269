"""Everything that speaks SQL: engine, dialects, schema, migrations and the typed stores.

The rest of the package reaches storage through the Protocols of ``store.interface``
(``Traces``, ``Registry``, ``Ledger``, ``Jobs``, ...) and gets them from one factory,
:func:`open_store`; the names below are the store's public face, the modules behind them
its internals.

The names are loaded on first use (PEP 562): ``models`` imports ``store.codec``, which
runs this file first, and importing the stores here eagerly would import ``models``
back while it is half-initialized.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from localscorers.store.backfill_pages import ScorerSpec as ScorerSpec
    from localscorers.store.database import Connection as Connection
    from localscorers.store.database import Database as Database
    from localscorers.store.filter_sql import compile_filter as compile_filter
    from localscorers.store.filter_sql import matches_for_trace as matches_for_trace
    from localscorers.store.interface import ExplainReader as ExplainReader
    from localscorers.store.interface import Jobs as Jobs
    from localscorers.store.interface import Lease as Lease
    from localscorers.store.interface import Ledger as Ledger
    from localscorers.store.interface import Registry as Registry
    from localscorers.store.interface import ReportReader as ReportReader
    from localscorers.store.interface import SpanBuffer as SpanBuffer
    from localscorers.store.interface import Store as Store
    from localscorers.store.interface import Traces as Traces
    from localscorers.store.interface import Watch as Watch
    from localscorers.store.interface import open_store as open_store
    from localscorers.store.job_parts import ClaimedJob as ClaimedJob
    from localscorers.store.job_parts import claim_job as claim_job
    from localscorers.store.jobs import Progress as Progress
    from localscorers.store.jobs import unfinished_count as unfinished_count
    from localscorers.store.ledger import Claim as Claim
    from localscorers.store.ledger import Outcome as Outcome
    from localscorers.store.ledger import Watermark as Watermark
    from localscorers.store.ledger import move_requests as move_requests
    from localscorers.store.ledger import new_owner_id as new_owner_id
    from localscorers.store.migrations import MIGRATIONS as MIGRATIONS
    from localscorers.store.migrations import migrate as migrate
    from localscorers.store.order_sql import compile_order_by as compile_order_by
    from localscorers.store.paging import PagedList as PagedList
    from localscorers.store.results import Finished as Finished
    from localscorers.store.results import plain_columns as plain_columns
    from localscorers.store.rows import TraceRecord as TraceRecord
    from localscorers.store.rows import assessment_row as assessment_row
    from localscorers.store.rows import plain_base as plain_base
    from localscorers.store.rows import plain_row as plain_row
    from localscorers.store.scorer_state import ActiveScorer as ActiveScorer
    from localscorers.store.scorer_state import ScorerState as ScorerState
    from localscorers.store.scorer_state import validate_name as validate_name
    from localscorers.store.uris import MEMORY_URI as MEMORY_URI
    from localscorers.store.uris import default_tracking_uri as default_tracking_uri
    from localscorers.store.uris import normalize_uri as normalize_uri


def exports_on_first_use(
    package: str, modules: Mapping[str, Iterable[str]]
) -> tuple[tuple[str, ...], Callable[[str], object]]:
    """Return a package's ``__all__`` and a ``__getattr__`` (PEP 562) importing names on first use.

    For packages whose names cannot be imported when the package is: here, an import
    cycle; in ``server`` and ``ingest``, optional extras.

    Args:
        package: the package's ``__name__``.
        modules: each submodule of ``package`` and the public names it defines.
    """
    home = {name: module for module, names in modules.items() for name in names}

    def load(name: str) -> object:
        if name not in home:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{home[name]}"), name)

    return tuple(sorted(home)), load


if not TYPE_CHECKING:
    # Type checkers skip this: they go by the ``X as X`` imports above.
    __all__, __getattr__ = exports_on_first_use(
        __name__,
        {
            "backfill_pages": ("ScorerSpec",),
            "database": ("Connection", "Database"),
            "filter_sql": ("compile_filter", "matches_for_trace"),
            "interface": (
                "ExplainReader",
                "Jobs",
                "Lease",
                "Ledger",
                "Registry",
                "ReportReader",
                "SpanBuffer",
                "Store",
                "Traces",
                "Watch",
                "open_store",
            ),
            "job_parts": ("ClaimedJob", "claim_job"),
            "jobs": ("Progress", "unfinished_count"),
            "ledger": ("Claim", "Outcome", "Watermark", "move_requests", "new_owner_id"),
            "migrations": ("MIGRATIONS", "migrate"),
            "order_sql": ("compile_order_by",),
            "paging": ("PagedList",),
            "results": ("Finished", "plain_columns"),
            "rows": ("TraceRecord", "assessment_row", "plain_base", "plain_row"),
            "scorer_state": ("ActiveScorer", "ScorerState", "validate_name"),
            "uris": ("MEMORY_URI", "default_tracking_uri", "normalize_uri"),
        },
    )
