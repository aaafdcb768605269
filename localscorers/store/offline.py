"""The SQL of offline evaluation (``evaluate``): its finished calls and what it already did.

An evaluation's calls finish outside the ledger, like a backfill's: each result is
written with its ``evaluations`` row (origin ``evaluate:<id>``, final status) and its
feedback in one transaction, through ``results.insert_finished``. The partial unique
index on (trace, scorer, version) makes a rerun or a second process resuming the same
evaluation write each pair once; a row already there drops the late result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import sqlalchemy as sa

from localscorers import _clock
from localscorers.store import schema
from localscorers.store.results import Finished, insert_finished
from localscorers.store.rows import in_chunks

if TYPE_CHECKING:
    from localscorers.store.database import Database

__all__ = ["Finished", "done_pairs", "write_finished"]


def write_finished(
    db: Database, results: Sequence[Finished], *, experiment_id: str, origin: str
) -> list[Finished]:
    """Write finished calls with their ledger rows and feedback, in one transaction.

    Returns:
        The results written; a pair that already had a current evaluation is left out
        (its result dropped: exactly one feedback set per pair).
    """
    if not results:
        return []
    written: list[Finished] = []

    def on_written(result: Finished, status: str | None) -> None:
        if status is not None:
            written.append(result)

    with db.write() as conn:
        insert_finished(
            conn,
            results,
            experiment_id=experiment_id,
            origin=origin,
            now=_clock.now_ms(),
            on_written=on_written,
        )
    return written


def done_pairs(db: Database, trace_ids: Sequence[str], *, origin: str) -> set[tuple[str, str]]:
    """Return the (trace id, scorer name) pairs of these traces that ``origin`` finished."""
    e = schema.evaluations
    found: set[tuple[str, str]] = set()
    with db.read() as conn:
        # By trace id: the unique index on (trace, scorer, version) serves it.
        for chunk in in_chunks(list(trace_ids)):
            rows = conn.execute(
                sa.select(e.c.trace_id, e.c.scorer_name).where(
                    e.c.trace_id.in_(chunk),
                    e.c.origin == origin,
                    e.c.superseded == sa.false(),
                )
            ).all()
            found.update((str(trace_id), str(name)) for trace_id, name in rows)
    return found
