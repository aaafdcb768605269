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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from localscorers.store.backfill_pages import ScorerSpec
    from localscorers.store.database import Connection, Database
    from localscorers.store.filter_sql import compile_filter, matches_for_trace
    from localscorers.store.interface import (
        ExplainReader,
        Jobs,
        Lease,
        Ledger,
        Registry,
        ReportReader,
        SpanBuffer,
        Store,
        Traces,
        Watch,
        open_store,
    )
    from localscorers.store.jobs import ClaimedJob, Progress, claim_job, unfinished_count
    from localscorers.store.ledger import Claim, Outcome, Watermark, move_requests, new_owner_id
    from localscorers.store.migrations import MIGRATIONS, migrate
    from localscorers.store.order_sql import compile_order_by
    from localscorers.store.paging import PagedList
    from localscorers.store.rows import TraceRecord, assessment_row, plain_base, plain_row
    from localscorers.store.scorer_state import ActiveScorer, ScorerState, validate_name
    from localscorers.store.uris import MEMORY_URI, default_tracking_uri, normalize_uri

# Each public name and the module that defines it.
_EXPORTS = {
    "ActiveScorer": "scorer_state",
    "Claim": "ledger",
    "ClaimedJob": "jobs",
    "Connection": "database",
    "Database": "database",
    "ExplainReader": "interface",
    "Jobs": "interface",
    "Lease": "interface",
    "Ledger": "interface",
    "MEMORY_URI": "uris",
    "MIGRATIONS": "migrations",
    "Outcome": "ledger",
    "PagedList": "paging",
    "Progress": "jobs",
    "Registry": "interface",
    "ReportReader": "interface",
    "ScorerSpec": "backfill_pages",
    "ScorerState": "scorer_state",
    "SpanBuffer": "interface",
    "Store": "interface",
    "TraceRecord": "rows",
    "Traces": "interface",
    "Watch": "interface",
    "Watermark": "ledger",
    "assessment_row": "rows",
    "claim_job": "jobs",
    "compile_filter": "filter_sql",
    "compile_order_by": "order_sql",
    "default_tracking_uri": "uris",
    "matches_for_trace": "filter_sql",
    "migrate": "migrations",
    "move_requests": "ledger",
    "new_owner_id": "ledger",
    "normalize_uri": "uris",
    "open_store": "interface",
    "plain_base": "rows",
    "plain_row": "rows",
    "unfinished_count": "jobs",
    "validate_name": "scorer_state",
}

__all__ = [
    "MEMORY_URI",
    "MIGRATIONS",
    "ActiveScorer",
    "Claim",
    "ClaimedJob",
    "Connection",
    "Database",
    "ExplainReader",
    "Jobs",
    "Lease",
    "Ledger",
    "Outcome",
    "PagedList",
    "Progress",
    "Registry",
    "ReportReader",
    "ScorerSpec",
    "ScorerState",
    "SpanBuffer",
    "Store",
    "TraceRecord",
    "Traces",
    "Watch",
    "Watermark",
    "assessment_row",
    "claim_job",
    "compile_filter",
    "compile_order_by",
    "default_tracking_uri",
    "matches_for_trace",
    "migrate",
    "move_requests",
    "new_owner_id",
    "normalize_uri",
    "open_store",
    "plain_base",
    "plain_row",
    "unfinished_count",
    "validate_name",
]

if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        """Import a public name from its module on first use (see the module docstring)."""
        if name not in _EXPORTS:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
