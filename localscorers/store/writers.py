"""Each thread's own SQLite write connection, and the transaction that runs on it.

This is the per-trace hot path (``log_trace`` and ``@trace`` commit one transaction
per trace; issue 16): no pool checkout and reset per transaction, a busy timeout of 0
set once (``sqlite.install_sqlite_hooks(writer=True)``: the only wait, taking the write
lock, is ``sqlite.begin_raw``'s loop), and BEGIN, COMMIT and the trace's statements sent
to one driver cursor kept open, past SQLAlchemy's transaction bookkeeping. A statement
run through SQLAlchemy meanwhile joins the transaction (the writer's begin hook sees
it open).
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from localscorers.store import codec, sqlite

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

__all__ = ["MAX_WRITERS", "Writer", "Writers"]

#: Threads with their own write connection at once; the others use pooled connections
#: (a thread per request must not mean a file descriptor each).
MAX_WRITERS = 16


class Writer:
    """One thread's write connection, its driver connection and a cursor kept open."""

    __slots__ = ("conn", "cursor", "raw")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        raw = conn.connection.dbapi_connection
        assert raw is not None  # noqa: S101 - a connected Connection has its DBAPI connection
        self.raw: Any = raw
        self.cursor: Any = raw.cursor()

    def usable(self) -> bool:
        """Tell whether the connection is still open on the same driver connection."""
        return not self.conn.closed and self.conn.connection.dbapi_connection is self.raw

    def begin(self, busy_timeout: float) -> None:
        """``BEGIN IMMEDIATE`` on the cursor, retrying while another process writes.

        Raises:
            sqlalchemy.exc.OperationalError: the lock stayed taken past ``busy_timeout``.
        """
        sqlite.begin_raw(self.cursor, busy_timeout=busy_timeout)

    def commit(self) -> None:
        """COMMIT on the cursor (the driver's own commit prepares it anew each time).

        Raises:
            sqlalchemy.exc.DBAPIError: the commit failed (disk full, I/O error...).
        """
        sqlite.commit_raw(self.cursor)
        if self.conn.in_transaction():
            self.conn.commit()  # SQLAlchemy's own record of a statement it ran: no SQL left

    def rollback(self) -> None:
        """Roll back the driver's transaction and SQLAlchemy's record of it."""
        self.raw.rollback()
        if self.conn.in_transaction():
            self.conn.rollback()


class Writers:
    """The write connections of one SQLite file's threads, opened on first use.

    Args:
        uri: the SQLite URI.
        busy_timeout: seconds a writer waits for another process's write lock.
    """

    def __init__(self, uri: str, busy_timeout: float) -> None:
        self._uri = uri
        self._busy_timeout = busy_timeout
        self._engine: sa.Engine | None = None
        self._lock = threading.Lock()
        self._local = threading.local()
        #: The open connections, by id: a thread's entry goes when the thread ends.
        self.connections: dict[int, Connection] = {}

    def current(self) -> Writer | None:
        """This thread's writer if it has one open, else None (nothing is opened)."""
        writer: Writer | None = getattr(self._local, "writer", None)
        return writer if writer is not None and writer.usable() else None

    def open(self) -> Writer | None:
        """This thread's writer, opened now if needed; None once ``MAX_WRITERS`` are open.

        Raises:
            sqlalchemy.exc.DBAPIError: the file cannot be opened.
        """
        writer = self.current()
        if writer is not None:
            return writer
        with self._lock:
            if len(self.connections) >= MAX_WRITERS:
                return None
            if self._engine is None:
                self._engine = sa.create_engine(
                    self._uri,
                    connect_args={"check_same_thread": False, "timeout": self._busy_timeout},
                    json_serializer=codec.dumps,
                    poolclass=NullPool,
                )
                sqlite.install_sqlite_hooks(
                    self._engine, busy_timeout=self._busy_timeout, wal=True, writer=True
                )
            conn = self._engine.connect()
            conn.execution_options(**{sqlite.BEGIN_OPTION: "IMMEDIATE"})
            self.connections[id(conn)] = conn
        writer = self._local.writer = Writer(conn)
        self._local.owner = _ThreadOwner(conn, self.connections)
        return writer

    def owns(self, conn: Connection) -> Writer | None:
        """This thread's writer when ``conn`` is its connection, else None."""
        writer: Writer | None = getattr(self._local, "writer", None)
        return writer if writer is not None and writer.conn is conn else None

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            connections = list(self.connections.values())
            self.connections.clear()  # in place: the threads' owners must not close them again
            for conn in connections:
                conn.close()
            if self._engine is not None:
                self._engine.dispose()

    def abandon(self) -> None:
        """Forget the connections without closing them (a forked child: they are the parent's)."""
        if self._engine is not None:
            self._engine.dispose(close=False)


class _ThreadOwner:
    """Held in a thread's locals: closes its write connection when the thread ends."""

    def __init__(self, conn: Connection, connections: dict[int, Connection]) -> None:
        self.conn = conn
        self.connections = connections

    def __del__(self) -> None:
        # The thread's locals die with it, wherever the last reference goes.
        if self.connections.pop(id(self.conn), None) is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
