"""Checkpointing a SQLite file's write-ahead log on a thread of its own, while a writer runs.

A SQLite writer checkpoints the WAL itself (copies its pages into the database file
and syncs it) in the commit that takes it past 1,000 pages. A backfill writes that
much every few commits, so a few of its commits took 15 ms instead of 2 and the
checkpoints were a tenth of its time (issue 16). Nudged after each commit, a
``Checkpointer`` runs a PASSIVE checkpoint (it waits for no reader or writer) on its
own connection and thread: the copying and the sync overlap the writer's work (the
driver lets go of the GIL meanwhile), and the writer's own checkpoint finds the log
copied already. Durability is the same either way: a commit is in the WAL before it
returns. PostgreSQL and in-memory databases have nothing to checkpoint.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from typing import TYPE_CHECKING

from localscorers.store import sqlite

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["Checkpointer"]

logger = logging.getLogger(__name__)


class Checkpointer:
    """Checkpoint one database file's WAL on a daemon thread each time it is nudged.

    Args:
        path: the SQLite file (None: nothing to checkpoint, ``nudge`` does nothing).
    """

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._wanted = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def nudge(self) -> None:
        """Ask for a checkpoint soon (the thread starts on the first nudge)."""
        if self._path is None or self._closing.is_set():
            return
        if self._thread is None or self._pid != os.getpid():
            # A forked child has the object but not the thread: it starts its own.
            self._pid = os.getpid()
            self._thread = threading.Thread(
                target=self._loop, name="localscorers-checkpoint", daemon=True
            )
            self._thread.start()
        self._wanted.set()

    def close(self) -> None:
        """Stop the thread (after the checkpoint it may be running) and close its connection."""
        self._closing.set()
        self._wanted.set()
        if self._thread is not None and self._pid == os.getpid():
            self._thread.join(timeout=5)
        self._thread = None

    def _loop(self) -> None:
        assert self._path is not None  # noqa: S101 - nudge starts no thread without a file
        try:
            conn = sqlite.connect_checkpointer(self._path)
        except sqlite3.Error as exc:
            logger.debug("localscorers: no background checkpoints for %s: %s", self._path, exc)
            return
        try:
            while True:
                self._wanted.wait()
                self._wanted.clear()
                if self._closing.is_set():
                    return
                try:
                    sqlite.checkpoint_passive(conn)
                except sqlite3.Error as exc:
                    # Not an error for anyone: the writers' own checkpoints still run.
                    logger.debug("localscorers: background checkpoint skipped: %s", exc)
        finally:
            conn.close()
