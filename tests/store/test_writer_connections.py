"""Threads' own write connections (the log_trace hot path): bounded, closed with their thread."""

from __future__ import annotations

import gc
import threading
from pathlib import Path

import sqlalchemy as sa

from localscorers.store.database import Database
from localscorers.store.writers import MAX_WRITERS


def _write_then_wait(db: Database, ready: threading.Barrier, done: threading.Event) -> None:
    with db.write(dedicated=True) as conn:
        conn.execute(sa.text("SELECT 1"))
    ready.wait()
    done.wait()


def test_write_connections_are_bounded_and_closed_with_their_threads(db_path: Path) -> None:
    db = Database(db_path)
    try:
        count = MAX_WRITERS + 4
        ready, done = threading.Barrier(count + 1), threading.Event()
        threads = [
            threading.Thread(target=_write_then_wait, args=(db, ready, done)) for _ in range(count)
        ]
        for thread in threads:
            thread.start()
        ready.wait(timeout=60)
        # The threads past the bound wrote on pooled connections instead.
        assert len(db._writers.connections) == MAX_WRITERS
        done.set()
        for thread in threads:
            thread.join(timeout=60)
        gc.collect()
        assert db._writers.connections == {}
        with db.write(dedicated=True) as conn:  # this thread gets one again
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
        assert len(db._writers.connections) == 1
    finally:
        db.close()
    assert db._writers.connections == {}
