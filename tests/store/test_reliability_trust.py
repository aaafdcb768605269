"""Stored scorer source is code: refused unless no other user could have written it (issue 12).

The check covers the database file, its -wal and -shm files and its directory. Several
tests need to make files owned by another user, which only root can do.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

import localscorers
from localscorers import ScorerLoadError
from localscorers.evaluation import check_source_trust

needs_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown to another user needs root"
)
OTHER_UID = 65534  # "nobody"


def register_source_scorer() -> localscorers.Scorer:
    @localscorers.scorer(name="shout")
    def shout(outputs: str) -> bool:
        return str(outputs).isupper()

    registered = shout.register()
    assert registered.definition()["kind"] == "source"
    return registered


def sidecar(db_path: Path, suffix: str) -> Path:
    return db_path.with_name(db_path.name + suffix)


@pytest.fixture
def trusted_db(tmp_path: Path) -> Path:
    """A database with a source scorer, in a directory only we can write."""
    directory = tmp_path / "private"
    directory.mkdir(mode=0o700)
    db_path = directory / "scorers.db"
    localscorers.set_tracking_uri(db_path)
    register_source_scorer()
    return db_path


def test_world_writable_wal_file_refuses_stored_source(trusted_db: Path) -> None:
    # A connection is open, so SQLite's -wal and -shm files exist next to the database.
    wal = sidecar(trusted_db, "-wal")
    assert wal.exists()
    wal.chmod(0o666)
    restored = localscorers.get_scorer(name="shout")  # listing never runs stored code
    with pytest.raises(ScorerLoadError, match=r"-wal is writable by others.*chmod go-w") as info:
        restored(outputs="HI")
    assert str(wal) in str(info.value)
    wal.chmod(0o600)
    assert localscorers.get_scorer(name="shout")(outputs="HI") is True


def test_group_writable_shm_file_refuses_stored_source(trusted_db: Path) -> None:
    shm = sidecar(trusted_db, "-shm")
    assert shm.exists()
    shm.chmod(0o660)
    with pytest.raises(ScorerLoadError, match=r"-shm is writable by its group"):
        localscorers.get_scorer(name="shout")(outputs="HI")


def test_world_writable_directory_refuses_stored_source(trusted_db: Path) -> None:
    trusted_db.parent.chmod(0o777)
    with pytest.raises(
        ScorerLoadError, match=r"directory .*private is writable by others.*chmod go-w"
    ):
        localscorers.get_scorer(name="shout")(outputs="HI")


def test_sticky_shared_directory_is_accepted_when_the_files_pass(trusted_db: Path) -> None:
    trusted_db.parent.chmod(0o1777)  # like /tmp
    assert localscorers.get_scorer(name="shout")(outputs="HI") is True


def test_the_fix_names_every_loose_file_at_once(tmp_path: Path) -> None:
    db_path = tmp_path / "loose.db"
    sqlite3.connect(db_path).close()
    wal = sidecar(db_path, "-wal")
    wal.write_bytes(b"")
    for path in (db_path, wal):
        path.chmod(0o666)
    with pytest.raises(ScorerLoadError) as info:
        check_source_trust(db_path)
    assert f"chmod go-w {db_path} {wal}" in str(info.value)


@needs_root
def test_database_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    db_path = tmp_path / "theirs.db"
    sqlite3.connect(db_path).close()
    db_path.chmod(0o644)
    os.chown(db_path, OTHER_UID, OTHER_UID)
    with pytest.raises(ScorerLoadError, match=rf"owned by user id {OTHER_UID}.*not by you"):
        check_source_trust(db_path)


@needs_root
def test_wal_planted_by_another_user_is_refused(tmp_path: Path) -> None:
    # The attack of issue 12: another user writes a -wal file (here read-only to
    # others, so only its owner betrays it) that rewrites a stored scorer's source.
    db_path = tmp_path / "mine.db"
    sqlite3.connect(db_path).close()
    db_path.chmod(0o600)
    wal = sidecar(db_path, "-wal")
    wal.write_bytes(b"")
    wal.chmod(0o644)
    os.chown(wal, OTHER_UID, OTHER_UID)
    with pytest.raises(ScorerLoadError, match=r"-wal is owned by user id"):
        check_source_trust(db_path)


@needs_root
def test_directory_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "theirs"
    directory.mkdir(mode=0o755)
    db_path = directory / "x.db"
    sqlite3.connect(db_path).close()
    db_path.chmod(0o600)
    os.chown(directory, OTHER_UID, OTHER_UID)
    with pytest.raises(ScorerLoadError, match=r"theirs is owned by user id"):
        check_source_trust(db_path)


def test_a_private_database_passes(tmp_path: Path) -> None:
    directory = tmp_path / "ok"
    directory.mkdir(mode=0o755)
    db_path = directory / "x.db"
    sqlite3.connect(db_path).close()
    db_path.chmod(0o644)
    check_source_trust(db_path)


@needs_root
def test_hot_journal_planted_by_another_user_is_refused(tmp_path: Path) -> None:
    db_path = tmp_path / "mine.db"
    sqlite3.connect(db_path).close()
    db_path.chmod(0o600)
    journal = sidecar(db_path, "-journal")
    journal.write_bytes(b"")
    os.chown(journal, OTHER_UID, OTHER_UID)
    with pytest.raises(ScorerLoadError, match=r"-journal is owned by user id"):
        check_source_trust(db_path)
