"""The database handle: engine, connection recipe, transactions, tracking URIs.

One :class:`Database` per SQLite file (or per in-memory database). Writers take
``BEGIN IMMEDIATE`` and, inside one process, a lock: SQLite allows one writer at a
time anyway, and queueing in-process is cheaper than spinning on the busy timeout.
Across processes the busy timeout does the queueing; if it runs out the caller gets
:class:`DatabaseBusyError`, never a raw "database is locked".
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import platformdirs
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import StaticPool

from localscorers.exceptions import ConfigurationError, DatabaseBusyError, TransactionError
from localscorers.store import codec, migrations, sqlite

__all__ = ["MEMORY_URI", "Database", "default_tracking_uri", "normalize_uri"]

MEMORY_URI = "sqlite:///:memory:"
_DEFAULT_BUSY_TIMEOUT = 60.0


def default_tracking_uri() -> str:
    """Return the URI of the default database under the user's data directory."""
    path = platformdirs.user_data_path("localscorers") / "localscorers.db"
    return f"sqlite:///{path}"


def normalize_uri(uri: str | os.PathLike[str]) -> str:
    """Turn a ``sqlite:///`` URI or a filesystem path into a canonical ``sqlite:///`` URI.

    Raises:
        ConfigurationError: the URI is empty or names a database other than SQLite.
    """
    text = os.fspath(uri).strip()
    if not text:
        raise ConfigurationError(
            "The tracking URI is empty. Pass 'sqlite:///path/to/file.db', a file path, "
            "or 'sqlite:///:memory:'."
        )
    if text in {":memory:", MEMORY_URI}:
        return MEMORY_URI
    if text.startswith("sqlite:///"):
        path = text.removeprefix("sqlite:///")
    elif "://" in text:
        raise ConfigurationError(
            f"Unsupported tracking URI {text!r}: localscorers stores data in SQLite. "
            "Use 'sqlite:///path/to/file.db', a file path, or 'sqlite:///:memory:'."
        )
    else:
        path = text
    return f"sqlite:///{Path(path).expanduser().resolve()}"


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
    """

    def __init__(self, uri: str | os.PathLike[str], *, busy_timeout: float | None = None) -> None:
        self.uri = normalize_uri(uri)
        self.busy_timeout = busy_timeout if busy_timeout is not None else _busy_timeout_from_env()
        self.is_memory = self.uri == MEMORY_URI
        self.path: Path | None = (
            None if self.is_memory else Path(self.uri.removeprefix("sqlite:///"))
        )
        self._lock = threading.RLock()
        self._local = threading.local()
        self._pid = os.getpid()
        self.engine = self._create_engine()
        migrations.migrate(self.engine, path=str(self.path or ":memory:"))

    def _create_engine(self) -> sa.Engine:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
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

    def _check_fork(self) -> None:
        # A forked child must not reuse the parent's SQLite connections (diskcache does the same).
        if os.getpid() != self._pid:
            self.engine.dispose(close=False)
            self._lock = threading.RLock()
            self._local = threading.local()
            self._pid = os.getpid()

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """Open a write transaction (``BEGIN IMMEDIATE``); commit on success, roll back on error.

        Nested calls in one thread join the outer transaction.

        Raises:
            DatabaseBusyError: another process held the write lock past the busy timeout.
        """
        self._check_fork()
        outer: Connection | None = getattr(self._local, "write_conn", None)
        if outer is not None:
            yield outer
            return
        with self._lock, self._translate_busy("write"), self.engine.connect() as conn:
            conn.execution_options(**{sqlite.BEGIN_OPTION: "IMMEDIATE"})
            self._local.write_conn = conn
            try:
                with conn.begin():
                    yield conn
            finally:
                self._local.write_conn = None

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """Open a read transaction: one consistent snapshot for several queries.

        Inside a write transaction of the same thread, reads see that transaction.

        Raises:
            DatabaseBusyError: the database could not be read within the busy timeout.
        """
        self._check_fork()
        outer: Connection | None = getattr(self._local, "write_conn", None)
        if outer is not None:
            yield outer
            return
        # The in-memory database is one shared connection: readers must queue too.
        guard = self._lock if self.is_memory else nullcontext()
        with guard, self._translate_busy("read"), self.engine.connect() as conn, conn.begin():
            yield conn

    def in_transaction(self) -> bool:
        """Tell whether this thread holds an open write transaction."""
        return getattr(self._local, "write_conn", None) is not None

    @contextmanager
    def _translate_busy(self, what: str) -> Iterator[None]:
        try:
            yield
        except OperationalError as exc:
            if sqlite.is_locked_error(exc):
                raise DatabaseBusyError(
                    timeout=self.busy_timeout, detail=f"during a {what}"
                ) from exc
            raise

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
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Database({self.uri!r})"
