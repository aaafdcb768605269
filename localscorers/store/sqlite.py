"""Everything SQLite-specific lives here: pragmas, BEGIN modes, REGEXP, upserts.

The rest of the package speaks portable SQLAlchemy, so the same store can later
run on PostgreSQL (where claims would use ``FOR UPDATE SKIP LOCKED``).
"""

from __future__ import annotations

import random
import sqlite3
import time
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import re2
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import sqlite as sqlite_dialect

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.pool import ConnectionPoolEntry

__all__ = [
    "BEGIN_OPTION",
    "CONSECUTIVE_IDS",
    "begin_raw",
    "checkpoint_passive",
    "claim_rows",
    "commit_raw",
    "compile_regex",
    "connect_checkpointer",
    "error_kind",
    "execute_many",
    "get_user_version",
    "insert_ignore",
    "install_sqlite_hooks",
    "is_locked_error",
    "lock_migrations",
    "lock_rows",
    "serialize",
    "set_user_version",
]

# Execution option read by the "begin" hook: "IMMEDIATE" for writers, "DEFERRED" for readers.
BEGIN_OPTION = "localscorers_begin"


# RE2 matches in time linear in the text, whatever the pattern: "(a+)+$" against a
# long output cannot stall the commit whose transaction evaluates a sampling filter
# (issue 12: Python's re took 7.7 s there, holding the write lock; another process's
# log_trace then failed with DatabaseBusyError). So RLIKE may run under the write lock.
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a bad pattern is our FilterSyntaxError, not stderr noise


@lru_cache(maxsize=256)
def compile_regex(pattern: str) -> Any:  # noqa: ANN401 - google-re2 ships no types
    """Compile an RLIKE pattern with RE2 (linear time); cached per pattern.

    Raises:
        re2.error: RE2 cannot run the pattern (a backreference, a lookaround, a
            repetition over 1000, bad syntax); the filter parser turns it into a
            ``FilterSyntaxError`` before any SQL runs.
    """
    return re2.compile(pattern, options=_RE2_OPTIONS)


def _regexp(pattern: str | None, value: object) -> bool | None:
    # SQLite calls REGEXP(pattern, value) for "value REGEXP pattern".
    if pattern is None or value is None:
        return None
    try:
        compiled = compile_regex(pattern)
    except re2.error:
        return False  # the parser refuses such patterns; a stored old filter matches nothing
    return compiled.search(str(value)) is not None


def install_sqlite_hooks(
    engine: Engine, *, busy_timeout: float, wal: bool, writer: bool = False
) -> None:
    """Set the connection recipe of STYLE.md rule 13 on a pysqlite engine.

    Every connection gets WAL (file databases), ``synchronous=NORMAL``,
    ``foreign_keys=ON``, a busy timeout and a REGEXP function; transactions are
    begun by us, ``BEGIN IMMEDIATE`` for writers so two writers queue on the busy
    timeout instead of failing on a lock upgrade.

    With ``writer`` (the engine of a thread's own write connection, which runs only
    ``BEGIN IMMEDIATE`` transactions) the busy timeout is 0 once and for all: the
    transaction's only wait, taking the write lock, is :func:`_begin_immediate`'s
    loop, so the two ``PRAGMA busy_timeout`` around every other writer's BEGIN go.
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
        if writer:
            cursor.execute("PRAGMA busy_timeout = 0")
        cursor.close()
        dbapi_conn.create_function("REGEXP", 2, _regexp, deterministic=True)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if writer and conn.connection.dbapi_connection.in_transaction:  # type: ignore[union-attr]
            return  # begun on the driver connection by begin_raw: SQLAlchemy joins it
        mode = conn.get_execution_options().get(BEGIN_OPTION, "DEFERRED")
        if mode == "IMMEDIATE" and wal:
            _begin_immediate(conn, busy_timeout=busy_timeout, toggle=not writer)
        else:
            conn.exec_driver_sql(f"BEGIN {mode}")


def _begin_immediate(conn: Connection, *, busy_timeout: float, toggle: bool = True) -> None:
    """Take the write lock, retrying every fraction of a millisecond until the timeout.

    SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25... ms between tries, so
    under steady contention between two processes (an application logging traces and
    a worker writing feedback, each holding the lock well under a millisecond) the
    waiter keeps oversleeping while the other takes the lock again. In WAL mode taking
    the write lock is the only wait a writer has, so we do it here with short, jittered
    sleeps; the connection's busy timeout still covers everything else (``toggle``: set
    it to 0 for the BEGIN and back after; a writer connection keeps 0 throughout).
    """
    raw = conn.connection.dbapi_connection
    assert raw is not None  # noqa: S101 - a checked-out connection has its DBAPI connection
    if toggle:
        raw.execute("PRAGMA busy_timeout = 0")
    try:
        begin_raw(raw, busy_timeout=busy_timeout)
    finally:
        if toggle:
            raw.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")


def begin_raw(raw: Any, *, busy_timeout: float) -> None:  # noqa: ANN401 - a DBAPI connection
    """``BEGIN IMMEDIATE`` on a driver connection (or cursor) whose busy timeout is 0, retrying.

    Raises:
        sqlalchemy.exc.OperationalError: the lock stayed taken past ``busy_timeout``
            seconds, or the database refused (as SQLAlchemy would raise it).
    """
    try:
        raw.execute("BEGIN IMMEDIATE")  # the lock is free nearly always: no clock read
    except sqlite3.OperationalError as exc:
        if not is_locked_error(exc):
            raise sa.exc.OperationalError("BEGIN IMMEDIATE", None, exc) from exc
        _retry_begin(raw, deadline=time.monotonic() + busy_timeout)


def commit_raw(cursor: Any) -> None:  # noqa: ANN401 - a DBAPI cursor
    """COMMIT on a driver cursor; a driver error comes out as SQLAlchemy's would.

    ``execute("COMMIT")`` reuses the driver's cached statement, where the driver
    connection's ``commit()`` prepares it anew each time.

    Raises:
        sqlalchemy.exc.DBAPIError: the commit failed (disk full, I/O error...).
    """
    try:
        cursor.execute("COMMIT")
    except sqlite3.Error as exc:
        raise sa.exc.DBAPIError.instance("COMMIT", None, exc, sqlite3.Error) from exc


def execute_many(cursor: Any, sql: str, params: list[Any]) -> None:  # noqa: ANN401 - DBAPI
    """Run an INSERT for each parameter tuple on a driver cursor (one row: ``execute``).

    Raises:
        sqlalchemy.exc.DBAPIError: the driver failed, as SQLAlchemy would raise it
            (``IntegrityError`` for a duplicate key, ``OperationalError``...).
    """
    try:
        if len(params) == 1:
            cursor.execute(sql, params[0])
        else:
            cursor.executemany(sql, params)
    except sqlite3.Error as exc:
        raise sa.exc.DBAPIError.instance(sql, None, exc, sqlite3.Error) from exc


def _retry_begin(raw: Any, *, deadline: float) -> None:  # noqa: ANN401 - a DBAPI connection
    delay = 0.0001
    while True:
        time.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter only
        delay = min(delay * 1.5, 0.002)
        try:
            raw.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if not is_locked_error(exc) or time.monotonic() >= deadline:
                raise sa.exc.OperationalError("BEGIN IMMEDIATE", None, exc) from exc
        else:
            return


_ERROR_KINDS = {
    "SQLITE_FULL": "full",
    "SQLITE_READONLY": "readonly",
    "SQLITE_CANTOPEN": "cantopen",
    "SQLITE_NOTADB": "notadb",
    "SQLITE_CORRUPT": "corrupt",
    "SQLITE_IOERR": "ioerr",
    "SQLITE_PERM": "readonly",
    "SQLITE_AUTH": "readonly",
}
_ERROR_TEXTS = (
    ("database or disk is full", "full"),
    ("readonly database", "readonly"),
    ("unable to open database", "cantopen"),
    ("file is not a database", "notadb"),
    ("disk image is malformed", "corrupt"),
    ("disk i/o error", "ioerr"),
)


def error_kind(exc: BaseException) -> str | None:
    """Classify a driver error about the database file itself, or None for other errors.

    Returns one of ``"full"``, ``"readonly"``, ``"cantopen"``, ``"notadb"``,
    ``"corrupt"`` and ``"ioerr"``, from SQLite's primary result code when the driver
    reports it (Python 3.11+), else from SQLite's message.
    """
    orig = getattr(exc, "orig", None) or exc
    name = str(getattr(orig, "sqlite_errorname", "") or "")
    primary = "_".join(name.split("_")[:2])
    if primary in _ERROR_KINDS:
        return _ERROR_KINDS[primary]
    text = str(orig).lower()
    return next((kind for fragment, kind in _ERROR_TEXTS if fragment in text), None)


def is_locked_error(exc: BaseException) -> bool:
    """Tell whether a driver error means another writer held the database too long."""
    text = str(exc).lower()
    return "database is locked" in text or "database is busy" in text


def insert_ignore(table: sa.Table) -> Any:  # noqa: ANN401 - dialect insert types differ
    """Return an INSERT that silently skips rows violating a unique constraint."""
    return sqlite_dialect.insert(table).on_conflict_do_nothing()


# An INSERT that gives no id gets one more than the table's largest (an INTEGER PRIMARY
# KEY without AUTOINCREMENT, below 2**63): rows a writer inserts into a table nobody
# else can write meanwhile have the ids following the largest, in insertion order.
# (PostgreSQL's sequences are shared by concurrent writers and skip values.)
CONSECUTIVE_IDS = True


def set_user_version(conn: Connection, version: int) -> None:
    """Record the schema version (SQLite keeps it in the file header)."""
    conn.exec_driver_sql(f"PRAGMA user_version = {int(version)}")


def get_user_version(conn: Connection) -> int:
    """Read the schema version recorded by :func:`set_user_version`."""
    value = conn.exec_driver_sql("PRAGMA user_version").scalar()
    return int(value or 0)


def claim_rows(query: sa.Select[Any]) -> sa.Select[Any]:
    """Return a claim's query as is: ``BEGIN IMMEDIATE`` already made the claim exclusive."""
    return query


def lock_rows(query: sa.Select[Any]) -> sa.Select[Any]:
    """Return the query as is: a SQLite writer holds the whole database already."""
    return query


def serialize(conn: Connection, name: str) -> None:
    """Nothing to do: a SQLite write transaction is alone already."""
    del conn, name


def lock_migrations(conn: Connection) -> None:
    """Nothing to do: a migration's ``BEGIN IMMEDIATE`` holds the write lock."""
    del conn


def connect_checkpointer(path: Path) -> sqlite3.Connection:
    """Open the connection a background checkpointer uses (``store.checkpoints``).

    Never waiting on a lock (PASSIVE checkpoints skip what is busy) and syncing as the
    writers do (``synchronous=NORMAL``: the checkpoint syncs the file it writes). A
    file that is gone is not created again (``mode=rw``).

    Raises:
        sqlite3.Error: the file cannot be opened.
    """
    uri = f"{path.resolve().as_uri()}?mode=rw"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 0")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def checkpoint_passive(conn: sqlite3.Connection) -> None:
    """Copy the WAL's committed pages into the database file, waiting for nobody."""
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
