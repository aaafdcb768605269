"""Everything SQLite-specific lives here: pragmas, BEGIN modes, REGEXP, upserts.

The rest of the package speaks portable SQLAlchemy, so the same store can later
run on PostgreSQL (where claims would use ``FOR UPDATE SKIP LOCKED``).
"""

from __future__ import annotations

import random
import re
import sqlite3
import time
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import sqlite as sqlite_dialect

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.pool import ConnectionPoolEntry

__all__ = [
    "BEGIN_OPTION",
    "get_user_version",
    "insert_ignore",
    "install_sqlite_hooks",
    "is_locked_error",
    "set_user_version",
]

# Execution option read by the "begin" hook: "IMMEDIATE" for writers, "DEFERRED" for readers.
BEGIN_OPTION = "localscorers_begin"


@lru_cache(maxsize=256)
def _compiled_regex(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:
        return None


def _regexp(pattern: str | None, value: object) -> bool | None:
    # SQLite calls REGEXP(pattern, value) for "value REGEXP pattern".
    if pattern is None or value is None:
        return None
    compiled = _compiled_regex(pattern)
    return compiled is not None and compiled.search(str(value)) is not None


def install_sqlite_hooks(engine: Engine, *, busy_timeout: float, wal: bool) -> None:
    """Set the connection recipe of STYLE.md rule 13 on a pysqlite engine.

    Every connection gets WAL (file databases), ``synchronous=NORMAL``,
    ``foreign_keys=ON``, a busy timeout and a REGEXP function; transactions are
    begun by us, ``BEGIN IMMEDIATE`` for writers so two writers queue on the busy
    timeout instead of failing on a lock upgrade.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
        # Take transaction control away from pysqlite: it would BEGIN DEFERRED itself.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        if wal:
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        # MLflow's LIKE is case-sensitive (ILIKE is the insensitive one); SQLite's is not
        # by default. Without this, "name LIKE 'chat%'" would also match "Chat".
        cursor.execute("PRAGMA case_sensitive_like = ON")
        cursor.close()
        dbapi_conn.create_function("REGEXP", 2, _regexp, deterministic=True)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(BEGIN_OPTION, "DEFERRED")
        if mode == "IMMEDIATE" and wal:
            _begin_immediate(conn, busy_timeout=busy_timeout)
        else:
            conn.exec_driver_sql(f"BEGIN {mode}")


def _begin_immediate(conn: Connection, *, busy_timeout: float) -> None:
    """Take the write lock, retrying every fraction of a millisecond until the timeout.

    SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25... ms between tries, so
    under steady contention between two processes (an application logging traces and
    a worker writing feedback, each holding the lock well under a millisecond) the
    waiter keeps oversleeping while the other takes the lock again. In WAL mode taking
    the write lock is the only wait a writer has, so we do it here with short, jittered
    sleeps; the connection's busy timeout still covers everything else.
    """
    raw = conn.connection.dbapi_connection
    assert raw is not None  # noqa: S101 - a checked-out connection has its DBAPI connection
    deadline = time.monotonic() + busy_timeout
    delay = 0.0001
    raw.execute("PRAGMA busy_timeout = 0")
    try:
        while True:
            try:
                raw.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if not is_locked_error(exc) or time.monotonic() >= deadline:
                    raise sa.exc.OperationalError("BEGIN IMMEDIATE", None, exc) from exc
                time.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter only
                delay = min(delay * 1.5, 0.002)
            else:
                return
    finally:
        raw.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")


def is_locked_error(exc: BaseException) -> bool:
    """Tell whether a driver error means another writer held the database too long."""
    text = str(exc).lower()
    return "database is locked" in text or "database is busy" in text


def insert_ignore(table: sa.Table) -> Any:  # noqa: ANN401 - dialect insert types differ
    """Return an INSERT that silently skips rows violating a unique constraint."""
    return sqlite_dialect.insert(table).on_conflict_do_nothing()


def set_user_version(conn: Connection, version: int) -> None:
    """Record the schema version (SQLite keeps it in the file header)."""
    conn.exec_driver_sql(f"PRAGMA user_version = {int(version)}")


def get_user_version(conn: Connection) -> int:
    """Read the schema version recorded by :func:`set_user_version`."""
    value = conn.exec_driver_sql("PRAGMA user_version").scalar()
    return int(value or 0)
