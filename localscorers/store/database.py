"""The database handle: engine, connection recipe, transactions.

One :class:`Database` per SQLite file (or per in-memory database). Writers take
``BEGIN IMMEDIATE`` and, inside one process, a lock: SQLite allows one writer at a
time anyway, and queueing in-process is cheaper than spinning on the busy timeout.
Across processes the busy timeout does the queueing; if it runs out the caller gets
:class:`DatabaseBusyError`, never a raw "database is locked".
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from types import TracebackType

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import StaticPool

from localscorers.exceptions import (
    ConfigurationError,
    DatabaseBusyError,
    DatabaseCorruptError,
    DatabaseError,
    DatabaseMovedError,
    DatabaseNotFoundError,
    DatabaseReadOnlyError,
    DiskFullError,
    NotADatabaseError,
    TransactionError,
)
from localscorers.store import codec, dialect, migrations, sqlite
from localscorers.store.uris import MEMORY_URI, normalize_uri
from localscorers.store.writers import Writer, Writers

# ``Connection`` is re-exported so code outside store/ can type the connection a
# ``Database.read()`` or ``write()`` block hands it without importing SQLAlchemy.
__all__ = ["Connection", "Database"]

logger = logging.getLogger(__name__)

_ERRORS: dict[str, type[DatabaseError]] = {
    "full": DiskFullError,
    "readonly": DatabaseReadOnlyError,
    "notadb": NotADatabaseError,
    "corrupt": DatabaseCorruptError,
}
# Background threads (the evaluator, the backfill runner) that meet a full disk wait
# this long before their next write, doubling up to the maximum, instead of retrying
# (and logging a traceback) every poll.
_FULL_BACKOFF_START = 1.0
_FULL_BACKOFF_MAX = 60.0
_BACKGROUND_PREFIX = "localscorers"

_DEFAULT_BUSY_TIMEOUT = 60.0


def _busy_timeout_from_env() -> float:
    raw = os.environ.get("LOCALSCORERS_BUSY_TIMEOUT")
    if raw is None:
        return _DEFAULT_BUSY_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ConfigurationError(
            f"LOCALSCORERS_BUSY_TIMEOUT must be a positive number of seconds, got {raw!r}."
        )
    return value


class Database:
    """A SQLite database opened with the localscorers recipe and migrated to the newest schema.

    Args:
        uri: ``sqlite:///path``, a plain path, or ``sqlite:///:memory:``.
        busy_timeout: seconds a writer waits for another process's write lock.

    Raises:
        SchemaVersionError: the file was written by a newer localscorers.
        ConfigurationError: the URI is not a SQLite URI.
        DatabaseError: the file cannot be opened: missing directory, read-only, not a
            database, corrupt, disk full (a subclass says which, with the path and fix).
    """

    def __init__(self, uri: str | os.PathLike[str], *, busy_timeout: float | None = None) -> None:
        self.uri = normalize_uri(uri)
        self.busy_timeout = busy_timeout if busy_timeout is not None else _busy_timeout_from_env()
        self.is_memory = self.uri == MEMORY_URI
        # PostgreSQL: many writers at once (row locks, not a file lock), no file to watch.
        self.is_postgres = dialect.is_postgres_uri(self.uri)
        self.path: Path | None = (
            None
            if self.is_memory or self.is_postgres
            else Path(self.uri.removeprefix("sqlite:///"))
        )
        self._lock = threading.RLock()
        self._local = threading.local()
        self._pid = os.getpid()
        self._identity: tuple[int, int] | None = None
        self._full_since: float | None = None
        self._full_retry_at = 0.0
        self._full_backoff = _FULL_BACKOFF_START
        self.engine = self._create_engine()
        # Each thread's own write connection (file databases; see ``write(dedicated=)``).
        self._writers = Writers(self.uri, self.busy_timeout)
        try:
            with self._translate_errors("open"):
                migrations.migrate(self.engine, path=self._display())
        except BaseException:
            self.engine.dispose()
            raise
        self._identity = self._file_identity()

    def _display(self) -> str:
        """The database as messages name it: its path, or its URI without a password."""
        if self.is_postgres:
            return str(dialect.module("postgresql").display_uri(self.uri))
        return str(self.path) if self.path is not None else ":memory:"

    def _create_engine(self) -> sa.Engine:
        if self.is_postgres:
            engine: sa.Engine = dialect.module("postgresql").create_engine(self.uri)
            return engine
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except PermissionError as exc:
                raise DatabaseReadOnlyError(path=str(self.path), detail=str(exc)) from exc
            except OSError as exc:
                raise DatabaseNotFoundError(path=str(self.path), detail=str(exc)) from exc
        connect_args = {"check_same_thread": False, "timeout": self.busy_timeout}
        if self.is_memory:
            # One shared connection serves every thread; self._lock serializes its use.
            engine = sa.create_engine(
                "sqlite://",
                connect_args=connect_args,
                poolclass=StaticPool,
                json_serializer=codec.dumps,
            )
        else:
            engine = sa.create_engine(
                self.uri,
                connect_args=connect_args,
                json_serializer=codec.dumps,
                pool_size=8,
                max_overflow=32,
            )
        sqlite.install_sqlite_hooks(engine, busy_timeout=self.busy_timeout, wal=not self.is_memory)
        return engine

    def _open_writer(self) -> Writer | None:
        with self._translate_errors("write"):
            return self._writers.open()

    def writer_of(self, conn: Connection) -> Writer | None:
        """This thread's own write connection's state when ``conn`` is that connection.

        Only there does ``PRAGMA data_version`` compare across transactions: it is
        per connection, and changes when any other connection commits.
        """
        return self._writers.owns(conn)

    def _file_identity(self) -> tuple[int, int] | None:
        """The (device, inode) of the database file, or None when it has no file."""
        if self.path is None:
            return None
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return None
        return info.st_dev, info.st_ino

    def _check_identity(self) -> None:
        """Refuse to write when the file at our path is no longer the one we opened.

        SQLite keeps writing to a deleted file's inode (and to a replaced file's old
        one) through the open descriptors, so without this every later write would
        "succeed" into a file no path leads to. One ``stat`` per write transaction.

        Raises:
            DatabaseMovedError: the file was deleted or replaced.
        """
        if self._identity is None or self.path is None:
            return
        now = self._file_identity()
        if now != self._identity:
            detail = "the file is gone" if now is None else "another file is at its path now"
            raise DatabaseMovedError(path=str(self.path), detail=detail)

    def moved(self) -> bool:
        """Tell whether the database file was deleted or replaced since it was opened."""
        return self._identity is not None and self._file_identity() != self._identity

    def _check_fork(self) -> None:
        # A forked child must not reuse the parent's SQLite connections (diskcache does the same).
        if os.getpid() != self._pid:
            self.engine.dispose(close=False)
            self._writers.abandon()  # the parent's: never closed here
            self._writers = Writers(self.uri, self.busy_timeout)
            self._lock = threading.RLock()
            self._local = threading.local()
            self._pid = os.getpid()

    def write(self, *, dedicated: bool = False) -> AbstractContextManager[Connection]:
        """Open a write transaction (``BEGIN IMMEDIATE``); commit on success, roll back on error.

        Nested calls in one thread join the outer transaction.

        Args:
            dedicated: run it on this thread's own write connection (SQLite files
                only; elsewhere ignored): the per-trace hot path (``store.writers``).

        Raises:
            DatabaseBusyError: another process held the write lock past the busy timeout.
            DatabaseMovedError: the file was deleted or replaced since it was opened.
            DatabaseError: the disk is full, or the file is read-only or damaged.
        """
        if dedicated and self.path is not None:
            self._check_fork()
            if getattr(self._local, "write_conn", None) is None:
                writer = self._writers.current() or self._open_writer()
                if writer is not None:
                    return _WriterTransaction(self, writer)
        return self._pooled_write()

    @contextmanager
    def _pooled_write(self) -> Iterator[Connection]:
        self._check_fork()
        local = self._local
        outer: Connection | None = getattr(local, "write_conn", None)
        if outer is not None:
            yield outer
            return
        self._wait_if_full()
        # SQLite has one writer: queue in-process. PostgreSQL writers run side by side.
        guard = nullcontext() if self.is_postgres else self._lock
        with guard, self._translate_errors("write"), self.engine.connect() as conn:
            conn.execution_options(**{sqlite.BEGIN_OPTION: "IMMEDIATE"})
            local.write_conn = conn
            try:
                with conn.begin():
                    self._check_identity()
                    yield conn
            finally:
                local.write_conn = None
        if self._full_since is not None:
            self._full_cleared()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """Open a read transaction: one consistent snapshot for several queries.

        Inside a write transaction of the same thread, reads see that transaction.

        Raises:
            DatabaseBusyError: the database could not be read within the busy timeout.
            DatabaseError: the file is missing, unreadable or damaged.
        """
        self._check_fork()
        outer: Connection | None = getattr(self._local, "write_conn", None)
        if outer is not None:
            yield outer
            return
        # The in-memory database is one shared connection: readers must queue too.
        guard = self._lock if self.is_memory else nullcontext()
        with guard, self._translate_errors("read"), self.engine.connect() as conn:
            if self.is_postgres:
                # One snapshot for every query of the read, as a SQLite read transaction
                # gives (READ COMMITTED takes one per statement); reads never conflict.
                conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    def in_transaction(self) -> bool:
        """Tell whether this thread holds an open write transaction."""
        return getattr(self._local, "write_conn", None) is not None

    @contextmanager
    def _translate_errors(self, what: str) -> Iterator[None]:
        """Turn driver errors about the database file into our typed errors (``from exc``).

        Raises:
            DatabaseBusyError: another process held the write lock past the busy timeout.
            DatabaseError: the file is missing, read-only, full, corrupt, not a database,
                or was moved (a subclass says which).
        """
        try:
            yield
        except DBAPIError as exc:
            error = self._translated(exc, what)
            if error is None:
                raise
            raise error from exc

    def _translated(self, exc: DBAPIError, what: str) -> DatabaseBusyError | DatabaseError | None:
        """The typed error a driver error becomes (None: raise it as it is)."""
        if dialect.of(self.engine).is_locked_error(exc):
            return DatabaseBusyError(timeout=self.busy_timeout, detail=f"during a {what}")
        error = self._typed_error(exc)
        if isinstance(error, DiskFullError):
            self._full_noted(error)
        return error

    def _typed_error(self, exc: DBAPIError) -> DatabaseError | None:
        kind = dialect.of(self.engine).error_kind(exc)
        if kind is None:
            return None
        path = self._display()
        detail = str(exc.orig)  # SQLite's message only: never the SQL text
        if self.moved():
            return DatabaseMovedError(path=path, detail=detail)
        if kind in _ERRORS:
            return _ERRORS[kind](path=path, detail=detail)
        if kind == "cantopen" and self.path is not None:
            return _cannot_open(self.path, detail)
        return DatabaseError(path=path, detail=detail)

    def _full_noted(self, error: DiskFullError) -> None:
        """Log a full disk once (not per retry) and make background writers back off."""
        now = time.monotonic()
        with self._lock:
            if self._full_since is None:
                self._full_since = now
                logger.error(
                    "%s Background scoring pauses and retries with backoff (up to %g s); "
                    "traces logged meanwhile raise DiskFullError.",
                    error,
                    _FULL_BACKOFF_MAX,
                )
            if _is_background():
                self._full_retry_at = now + self._full_backoff
                self._full_backoff = min(self._full_backoff * 2, _FULL_BACKOFF_MAX)

    def _wait_if_full(self) -> None:
        # Only localscorers' own threads wait: the application's writes fail at once.
        if self._full_since is None or not _is_background():
            return
        pause = self._full_retry_at - time.monotonic()
        if pause > 0:
            time.sleep(pause)

    def _full_cleared(self) -> None:
        with self._lock:
            if self._full_since is None:
                return
            logger.warning(
                "The database %s accepts writes again after %.0f s of a full disk.",
                self.path,
                time.monotonic() - self._full_since,
            )
            self._full_since = None
            self._full_retry_at = 0.0
            self._full_backoff = _FULL_BACKOFF_START

    def close(self) -> None:
        """Close every pooled connection.

        Raises:
            TransactionError: called from inside one of this database's transactions.
        """
        if self.in_transaction():
            raise TransactionError(
                "Cannot close the database inside one of its write transactions; "
                "close it after the transaction ends."
            )
        self._writers.close()
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Database({self.uri!r})"


class _WriterTransaction:
    """``Database.write(dedicated=True)`` on the thread's own connection.

    A class, not a generator: entering and leaving it is once per trace.
    """

    __slots__ = ("_db", "_writer")

    def __init__(self, db: Database, writer: Writer) -> None:
        self._db = db
        self._writer = writer

    def __enter__(self) -> Connection:
        db, writer = self._db, self._writer
        if db._full_since is not None:
            db._wait_if_full()
        db._lock.acquire()
        try:
            writer.begin(db.busy_timeout)
            try:
                db._check_identity()
            except BaseException:
                writer.rollback()
                raise
        except BaseException as exc:
            db._lock.release()
            error = db._translated(exc, "write") if isinstance(exc, DBAPIError) else None
            if error is None:
                raise
            raise error from exc
        db._local.write_conn = writer.conn
        return writer.conn

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, _: TracebackType | None
    ) -> None:
        db, writer = self._db, self._writer
        try:
            if kind is None:
                try:
                    writer.commit()
                except BaseException:
                    writer.rollback()
                    raise
            else:
                writer.rollback()
        except DBAPIError as failed:
            error = db._translated(failed, "write")
            if error is None:
                raise
            raise error from failed
        finally:
            db._local.write_conn = None
            db._lock.release()
        error = db._translated(exc, "write") if isinstance(exc, DBAPIError) else None
        if error is not None:
            raise error from exc
        if kind is None and db._full_since is not None:
            db._full_cleared()


def _cannot_open(path: Path, detail: str) -> DatabaseError:
    """SQLite's "unable to open database file": say whether it is missing or read-only."""
    directory = path.parent
    if not directory.is_dir():
        return DatabaseNotFoundError(path=str(path), detail=f"{directory} does not exist")
    writable = os.access(directory, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))
    if not writable:
        return DatabaseReadOnlyError(path=str(path), detail=detail)
    return DatabaseNotFoundError(path=str(path), detail=detail)


def _is_background() -> bool:
    return threading.current_thread().name.startswith(_BACKGROUND_PREFIX)
