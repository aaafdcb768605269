"""The background WAL checkpointer a backfill nudges after its commits (issue 16)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import localscorers
from localscorers.store.checkpoints import Checkpointer


def in_file_alone(path: Path) -> int:
    """Count the traces the database file itself holds, ignoring its WAL."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?immutable=1", uri=True)
    try:
        tables = conn.execute("SELECT name FROM sqlite_master WHERE name = 'traces'").fetchall()
        if not tables:
            return 0  # even the schema is still in the WAL alone
        return int(conn.execute("SELECT count(*) FROM traces").fetchone()[0])
    finally:
        conn.close()


def test_a_nudge_copies_the_wal_into_the_file(localscorers_db: Any, tmp_path: Path) -> None:
    path = tmp_path / "localscorers.db"  # the plugin fixture's database
    localscorers.log_trace(inputs={"q": 1}, outputs="a")
    assert in_file_alone(path) == 0  # committed, but only in the WAL so far
    checkpointer = Checkpointer(path)
    try:
        checkpointer.nudge()
        deadline = time.monotonic() + 10
        while in_file_alone(path) == 0:
            assert time.monotonic() < deadline, "the WAL was not checkpointed"
            time.sleep(0.01)
    finally:
        checkpointer.close()
    assert len(localscorers.search_traces()) == 1  # nothing lost or doubled by the copy


def test_nothing_to_checkpoint_and_no_file_made(tmp_path: Path) -> None:
    idle = Checkpointer(None)  # PostgreSQL or in-memory
    idle.nudge()
    idle.close()
    missing = tmp_path / "gone.db"
    checkpointer = Checkpointer(missing)
    checkpointer.nudge()
    checkpointer.close()
    assert not missing.exists()  # a deleted database is not created again
    checkpointer.nudge()  # after close: ignored
