"""A cache of judge-model answers in the ``judge_cache`` table.

The key is the sha256 of everything that decides the answer: the model URI, its
endpoint, the full messages and the sampling parameters. Change a judge's guidelines
or model and the prompt or model changes, so the key does too.

When it is used: on by default for backfills (re-scoring history with an unchanged
judge should not pay for the same answers twice), off by default online (new traffic
rarely repeats, and a stale answer there would hide a model change). A judge's
``cache=`` and the evaluation's ``use_judge_cache`` override that default; an explicit
False from either wins over an explicit True, because someone asked for fresh answers.
Judges called directly, outside an evaluation, never use it (there may be no database).

The cache is an optimization: a database error while reading or writing it is logged
and the judge carries on as if the entry were absent.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from localscorers import _clock
from localscorers.exceptions import StoreError
from localscorers.store import schema, sqlite

if TYPE_CHECKING:
    from localscorers.evaluation.execution import EvaluationContext
    from localscorers.store.database import Database

__all__ = ["CachedAnswer", "cache_enabled", "cache_key", "get", "put"]

logger = logging.getLogger(__name__)

_KEY_VERSION = 1


@dataclass(frozen=True)
class CachedAnswer:
    """A stored answer: the model's raw text and the usage of the call that produced it."""

    model: str
    response: str
    usage: dict[str, int]


def cache_enabled(context: EvaluationContext | None, *, judge_setting: bool | None) -> bool:
    """Decide whether a judge call may use the cache (see the module docstring)."""
    if context is None:
        return False
    explicit = [s for s in (judge_setting, context.use_judge_cache) if s is not None]
    if explicit:
        return all(explicit)
    return context.origin.startswith("backfill:")


def cache_key(
    *,
    model_id: str,
    endpoint: str,
    messages: list[dict[str, str]],
    parameters: dict[str, Any],
) -> str:
    """Return the sha256 hex digest identifying one judge request."""
    canonical = json.dumps(
        {
            "v": _KEY_VERSION,
            "model": model_id,
            "endpoint": endpoint,
            "messages": messages,
            "parameters": parameters,
        },
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def get(db: Database, key: str) -> CachedAnswer | None:
    """Return the cached answer for ``key``, or None (also when the database fails)."""
    table = schema.judge_cache
    try:
        with db.read() as conn:
            row = conn.execute(
                sa.select(table.c.model, table.c.response, table.c.usage).where(
                    table.c.cache_key == key
                )
            ).first()
    except (StoreError, SQLAlchemyError) as exc:
        logger.warning("Judge cache read failed; asking the model instead: %s", exc)
        return None
    if row is None:
        return None
    usage = row.usage if isinstance(row.usage, dict) else {}
    return CachedAnswer(model=row.model, response=row.response, usage=dict(usage))


def put(db: Database, key: str, *, model: str, response: str, usage: dict[str, int]) -> None:
    """Store an answer unless one is already stored under ``key`` (the first one wins)."""
    row = {
        "cache_key": key,
        "model": model,
        "response": response,
        "usage": usage,
        "created_ms": _clock.now_ms(),
    }
    try:
        with db.write() as conn:
            conn.execute(sqlite.insert_ignore(schema.judge_cache).values(**row))
    except (StoreError, SQLAlchemyError) as exc:
        logger.warning("Judge cache write failed; the answer is not cached: %s", exc)
