"""The database file misbehaving: typed errors, no silent loss (issue 12)."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest

import localscorers
from localscorers import (
    DatabaseCorruptError,
    DatabaseMovedError,
    DatabaseNotFoundError,
    DatabaseReadOnlyError,
    DiskFullError,
    FilterSyntaxError,
    NotADatabaseError,
    ScorerSamplingConfig,
    StoreError,
)
from localscorers.ingest import UNWRITTEN_FILE
from localscorers.store import Database

not_root = pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write read-only files"
)


def test_deleted_database_file_raises_instead_of_losing_traces(tracking: Path) -> None:
    localscorers.log_trace(inputs="q", outputs="a")
    tracking.unlink()
    # Issue 12: 6,000 traces went into the unlinked file with no error at all.
    with pytest.raises(DatabaseMovedError, match="deleted or replaced") as info:
        localscorers.log_trace(inputs="q", outputs="a")
    assert str(tracking) in str(info.value)
    assert "set_tracking_uri" in str(info.value)
    with pytest.raises(DatabaseMovedError):
        localscorers.flush(timeout=5)  # was True, with everything lost
    localscorers.set_tracking_uri(tracking)  # the fix the message gives: a fresh file
    trace_id = localscorers.log_trace(inputs="q", outputs="again")
    assert [t.info.trace_id for t in localscorers.search_traces()] == [trace_id]


def test_replaced_database_file_raises(tracking: Path, tmp_path: Path) -> None:
    localscorers.log_trace(inputs="q", outputs="a")
    other = tmp_path / "other.db"
    Database(other).close()
    os.replace(other, tracking)
    with pytest.raises(DatabaseMovedError, match="another file is at its path"):
        localscorers.log_trace(inputs="q", outputs="a")


def test_traced_call_keeps_a_trace_the_store_refused(
    tracking: Path, caplog: pytest.LogCaptureFixture
) -> None:
    @localscorers.trace
    def answer(question: str) -> str:
        return question.upper()

    answer("warm")  # the database is open
    tracking.unlink()
    with caplog.at_level(logging.ERROR, logger="localscorers.tracing"):
        assert answer("kept") == "KEPT"  # the application never sees the failure
    fallback = tracking.parent / UNWRITTEN_FILE
    assert fallback.exists()
    [record] = [r for r in caplog.records if "could not write trace" in r.getMessage()]
    assert str(fallback) in record.getMessage()
    assert "import_traces" in record.getMessage()
    localscorers.set_tracking_uri(tracking)
    [trace_id] = localscorers.import_traces(fallback)
    restored = localscorers.get_trace(trace_id)
    assert restored.data.request == {"question": "kept"}
    assert restored.data.response == "KEPT"


def test_not_a_database_file(tmp_path: Path) -> None:
    junk = tmp_path / "notes.db"
    junk.write_text("these are my notes, not a database\n" * 200)
    localscorers.set_tracking_uri(junk)
    with pytest.raises(NotADatabaseError, match="is not a SQLite database") as info:
        localscorers.log_trace(inputs="q", outputs="a")
    assert str(junk) in str(info.value)
    assert isinstance(info.value, DatabaseCorruptError)
    assert isinstance(info.value.__cause__, Exception)  # raised from the driver's error


def test_corrupt_database_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.db"
    localscorers.set_tracking_uri(path)
    for _ in range(20):
        localscorers.log_trace(inputs="q" * 2000, outputs="a" * 2000)
    localscorers.set_tracking_uri(tmp_path / "elsewhere.db")  # closes the file
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    page = 4096
    data[page:] = b"\xff" * (len(data) - page)  # keep the header page, smash the rest
    path.write_bytes(bytes(data))
    localscorers.set_tracking_uri(path)
    with pytest.raises(DatabaseCorruptError, match=r"is corrupt.*backup") as info:
        localscorers.search_traces()
    assert str(path) in str(info.value)


def test_parent_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DatabaseNotFoundError, match=r"cannot be created.*mkdir") as info:
        Database(blocker / "sub" / "x.db")
    assert "file/sub/x.db" in str(info.value)


def write_with_query_only(db: Database) -> None:
    with db.write() as conn:
        conn.exec_driver_sql("PRAGMA query_only = ON")
        conn.exec_driver_sql("CREATE TABLE t (x)")


def test_write_refused_by_sqlite_is_read_only_error(tmp_path: Path) -> None:
    db = Database(tmp_path / "x.db")
    try:
        with pytest.raises(DatabaseReadOnlyError, match="read-only") as info:
            write_with_query_only(db)
        assert "CREATE TABLE" not in str(info.value)  # never the SQL text
    finally:
        db.close()  # drops the connection left query-only


@not_root
def test_read_only_file_and_directory(tmp_path: Path) -> None:
    localscorers.set_tracking_uri(tmp_path / "ro" / "x.db")
    localscorers.log_trace(inputs="q", outputs="a")
    localscorers.set_tracking_uri(tmp_path / "other.db")
    (tmp_path / "ro" / "x.db").chmod(0o444)
    localscorers.set_tracking_uri(tmp_path / "ro" / "x.db")
    with pytest.raises(DatabaseReadOnlyError, match="read-only"):
        localscorers.log_trace(inputs="q", outputs="a")
    (tmp_path / "ro2").mkdir(mode=0o555)
    localscorers.set_tracking_uri(tmp_path / "ro2" / "x.db")
    with pytest.raises(DatabaseReadOnlyError):
        localscorers.log_trace(inputs="q", outputs="a")


def fill_up(db: Database) -> None:
    with db.write() as conn:
        conn.exec_driver_sql("PRAGMA max_page_count = 1")  # the disk is "full"
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS big (x TEXT)")
        conn.exec_driver_sql("INSERT INTO big VALUES (?)", ("x" * 100_000,))


def test_full_disk_is_disk_full_error_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = Database(tmp_path / "x.db", busy_timeout=5)
    try:
        with caplog.at_level(logging.ERROR, logger="localscorers.store.database"):
            for _ in range(3):
                with pytest.raises(DiskFullError, match="full") as info:
                    fill_up(db)
        assert str(tmp_path / "x.db") in str(info.value)
        assert isinstance(info.value, StoreError)
        assert len([r for r in caplog.records if "full" in r.getMessage()]) == 1
    finally:
        db.close()


def test_background_writers_back_off_on_a_full_disk(tmp_path: Path) -> None:
    db = Database(tmp_path / "x.db", busy_timeout=5)
    outcomes: list[float] = []

    def background() -> None:
        for _ in range(2):
            started = time.monotonic()
            with pytest.raises(DiskFullError):
                fill_up(db)
            outcomes.append(time.monotonic() - started)

    worker = threading.Thread(target=background, name="localscorers-test-writer")
    worker.start()
    worker.join(timeout=30)
    try:
        assert len(outcomes) == 2
        assert outcomes[1] >= 0.9  # waited out the first backoff before trying again
        started = time.monotonic()
        with pytest.raises(DiskFullError):
            fill_up(db)  # the application's own thread never waits
        assert time.monotonic() - started < 0.9
    finally:
        db.close()


def test_rlike_runs_in_linear_time_inside_the_commit(tracking: Path) -> None:
    @localscorers.scorer
    def anything(outputs: str) -> bool:
        return True

    # Issue 12: with Python's re, 27 characters took 7.7 s under the write lock.
    anything.register().start(
        sampling_config=ScorerSamplingConfig(filter_string="span.content RLIKE '(a+)+$'")
    )
    started = time.monotonic()
    localscorers.log_trace(inputs="q", outputs="a" * 60 + "!")
    assert time.monotonic() - started < 5
    hits = localscorers.search_traces(filter_string="span.content RLIKE '(a+)+!'")
    assert len(hits) == 1


@pytest.mark.parametrize("pattern", [r"(a)\1", "(?=a)b", "(?<!x)y"])
def test_patterns_re2_cannot_run_are_filter_syntax_errors(pattern: str) -> None:
    with pytest.raises(FilterSyntaxError, match="RE2") as info:
        ScorerSamplingConfig(filter_string=f"span.content RLIKE '{pattern}'")
    assert "backreferences or lookarounds" in str(info.value)


def test_database_copied_elsewhere_keeps_working(tracking: Path, tmp_path: Path) -> None:
    # The identity check follows the file, not the path's text: a copy opened anew is fine.
    localscorers.log_trace(inputs="q", outputs="a")
    copy = tmp_path / "copy.db"
    localscorers.set_tracking_uri(tmp_path / "elsewhere.db")
    shutil.copy(tracking, copy)
    localscorers.set_tracking_uri(copy)
    localscorers.log_trace(inputs="q", outputs="b")
    assert len(localscorers.search_traces()) == 2
