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

The cache is bounded, by age and by size: an entry older than
``LOCALSCORERS_JUDGE_CACHE_MAX_AGE_DAYS`` (default 30) is never served, and the table
is pruned every few hundred writes (and by ``localscorers cache prune``) down to those
days and to the newest ``LOCALSCORERS_JUDGE_CACHE_MAX_ENTRIES`` (default 50,000)
answers. ``0`` lifts either bound.

The cache is an optimization: a database error while reading or writing it is logged
and the judge carries on as if the entry were absent.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from localscorers import _clock
from localscorers.exceptions import ConfigurationError, StoreError
from localscorers.store import dialect, schema

if TYPE_CHECKING:
    from localscorers.evaluation.execution import EvaluationContext
    from localscorers.store.database import Database

__all__ = [
    "CacheBounds",
    "CachedAnswer",
    "PruneResult",
    "bounds",
    "cache_enabled",
    "cache_key",
    "get",
    "prune",
    "put",
]

logger = logging.getLogger(__name__)

_KEY_VERSION = 1
_DAY_MS = 86_400_000
_DEFAULT_MAX_AGE_DAYS = 30.0
_DEFAULT_MAX_ENTRIES = 50_000
# Writes between automatic prunes, per process (the first write of a process prunes too).
_PRUNE_EVERY = 500
_writes = itertools.count()


@dataclass(frozen=True)
class CacheBounds:
    """How much the judge cache may hold.

    Attributes:
        max_age_days: entries older than this are not served and are pruned (None: no bound).
        max_entries: the newest entries kept by a prune (None: no bound).
    """

    max_age_days: float | None = _DEFAULT_MAX_AGE_DAYS
    max_entries: int | None = _DEFAULT_MAX_ENTRIES


@dataclass(frozen=True)
class PruneResult:
    """What a prune did: entries removed for their age, for the size bound, and left."""

    expired: int
    evicted: int
    remaining: int


def _setting(name: str, default: float, *, integer: bool) -> float | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = -1
    if value < 0:
        kind = "a whole number" if integer else "a number"
        raise ConfigurationError(f"{name} must be {kind} >= 0 (0 lifts the bound), got {raw!r}.")
    return value or None


def bounds() -> CacheBounds:
    """The bounds set by ``LOCALSCORERS_JUDGE_CACHE_MAX_AGE_DAYS`` and ``..._MAX_ENTRIES``.

    Raises:
        ConfigurationError: a setting is not a number >= 0.
    """
    age = _setting("LOCALSCORERS_JUDGE_CACHE_MAX_AGE_DAYS", _DEFAULT_MAX_AGE_DAYS, integer=False)
    size = _setting("LOCALSCORERS_JUDGE_CACHE_MAX_ENTRIES", _DEFAULT_MAX_ENTRIES, integer=True)
    return CacheBounds(max_age_days=age, max_entries=None if size is None else int(size))


def _oldest_served_ms(limits: CacheBounds, now_ms: int) -> int | None:
    if limits.max_age_days is None:
        return None
    return now_ms - int(limits.max_age_days * _DAY_MS)


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
    query = sa.select(table.c.model, table.c.response, table.c.usage).where(
        table.c.cache_key == key
    )
    try:
        oldest = _oldest_served_ms(bounds(), _clock.now_ms())
        if oldest is not None:
            query = query.where(table.c.created_ms >= oldest)
        with db.read() as conn:
            row = conn.execute(query).first()
    except (StoreError, SQLAlchemyError, ConfigurationError) as exc:
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
            conn.execute(dialect.of(conn).insert_ignore(schema.judge_cache).values(**row))
        if next(_writes) % _PRUNE_EVERY == 0:
            prune(db)
    except (StoreError, SQLAlchemyError, ConfigurationError) as exc:
        logger.warning("Judge cache write or prune failed; the answer may not be cached: %s", exc)


def prune(db: Database, limits: CacheBounds | None = None) -> PruneResult:
    """Delete entries older than the age bound, then the oldest beyond the size bound.

    Args:
        db: the database.
        limits: the bounds (default: from the environment, see :func:`bounds`).

    Raises:
        ConfigurationError: a bound setting is invalid.
        StoreError: the database failed.
    """
    limits = limits or bounds()
    table = schema.judge_cache
    expired = evicted = 0
    with db.write() as conn:
        oldest = _oldest_served_ms(limits, _clock.now_ms())
        if oldest is not None:
            expired = conn.execute(sa.delete(table).where(table.c.created_ms < oldest)).rowcount
        if limits.max_entries is not None:
            # The creation time of the newest entry beyond the bound: it and older ones go.
            cutoff = conn.execute(
                sa.select(table.c.created_ms)
                .order_by(table.c.created_ms.desc())
                .offset(limits.max_entries)
                .limit(1)
            ).scalar()
            if cutoff is not None:
                evicted = conn.execute(
                    sa.delete(table).where(table.c.created_ms <= cutoff)
                ).rowcount
        remaining = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
    return PruneResult(expired=int(expired), evicted=int(evicted), remaining=int(remaining))
