"""A cheap check for "did anything commit to the database since I last looked?".

An idle evaluator must notice work that another process commits within milliseconds,
but asking for work means a claim (a write transaction that the application's
commits queue behind). SQLite's ``PRAGMA data_version`` answers the question on one
connection kept for it, without a transaction, in microseconds: its value changes
whenever another connection commits. Where it does not exist (an in-memory database
shares one connection; PostgreSQL), ``changed`` always says yes and the caller falls
back to polling.
"""

from __future__ import annotations

import contextlib
import sqlite3
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from localscorers.store.database import Database

__all__ = ["ChangeWatch"]


class ChangeWatch:
    """Watch one database for commits made by other connections.

    Not thread-safe: one thread (the evaluator's dispatcher) asks.

    Args:
        db: the database to watch.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self.supported = db.path is not None and not db.is_postgres
        self._raw: Any = None  # a DBAPI connection, kept for the pragma
        self._last: int | None = None

    def changed(self) -> bool:
        """Tell whether another connection committed since the last call (True the first time)."""
        if not self.supported:
            return True
        try:
            if self._raw is None:
                # Autocommit (the store's connect hook sets isolation_level None): the
                # pragma opens no transaction, so it never holds back a checkpoint.
                self._raw = self._db.engine.raw_connection()
            row = self._raw.cursor().execute("PRAGMA data_version").fetchone()
        except sqlite3.Error:
            # The claim that follows reports what is wrong, as a typed error.
            self.close()
            return True
        version = int(row[0])
        changed = version != self._last
        self._last = version
        return changed

    def close(self) -> None:
        """Give the watching connection back."""
        raw, self._raw = self._raw, None
        self._last = None
        if raw is not None:
            # A connection to a database being closed: nothing left to give back.
            with contextlib.suppress(sqlite3.Error):
                raw.close()
