"""Storage: URIs, the connection recipe, migrations, schema versions, the private registry."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel

import localscorers
from localscorers import ConfigurationError, SchemaVersionError, TransactionError, _context
from localscorers.store import (
    MEMORY_URI,
    MIGRATIONS,
    Database,
    migrate,
    move_requests,
    normalize_uri,
    schema,
    sqlite,
)
from tests import scorer_helpers


def test_uri_forms_normalize(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    assert normalize_uri(path) == f"sqlite:///{path}"
    assert normalize_uri(str(path)) == f"sqlite:///{path}"
    assert normalize_uri(f"sqlite:///{path}") == f"sqlite:///{path}"
    assert normalize_uri("sqlite:///:memory:") == MEMORY_URI
    assert normalize_uri(":memory:") == MEMORY_URI


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("", "The tracking URI is empty"),
        ("mysql://localhost/db", "Unsupported tracking URI 'mysql://localhost/db'"),
        ("http://example.invalid", "stores data in SQLite or PostgreSQL"),
    ],
)
def test_bad_uris_are_configuration_errors(uri: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        localscorers.set_tracking_uri(uri)


def test_default_database_lives_under_the_user_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOCALSCORERS_TRACKING_URI")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    expected = tmp_path / "data" / "localscorers" / "localscorers.db"
    assert localscorers.get_tracking_uri() == f"sqlite:///{expected}"
    localscorers.log_trace(inputs="q", outputs="a")
    assert expected.exists()


def test_environment_variable_selects_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "env.db"
    monkeypatch.setenv("LOCALSCORERS_TRACKING_URI", str(target))
    assert localscorers.get_tracking_uri() == f"sqlite:///{target}"
    localscorers.log_trace(inputs="q", outputs="a")
    assert target.exists()


def test_set_tracking_uri_can_be_called_many_times_and_everything_follows(tmp_path: Path) -> None:
    first, second = tmp_path / "one.db", tmp_path / "two.db"
    localscorers.set_tracking_uri(first)
    localscorers.scorer(scorer_helpers.plain_true).register(name="x").start()
    one = localscorers.log_trace(inputs="q", outputs="a")
    assert localscorers.flush(timeout=30)
    localscorers.set_tracking_uri(second)
    assert localscorers.list_scorers() == []
    assert localscorers.search_traces() == []
    two = localscorers.log_trace(inputs="q", outputs="a")
    assert localscorers.flush(timeout=30)
    assert localscorers.get_trace(two).info.assessments == []  # no scorer in this database
    localscorers.set_tracking_uri(first)
    assert [s.name for s in localscorers.list_scorers()] == ["x"]
    assert len(localscorers.get_trace(one).info.assessments) == 1
    assert localscorers.get_tracking_uri() == f"sqlite:///{first}"


def test_set_tracking_uri_resets_the_active_experiment(tmp_path: Path) -> None:
    localscorers.set_tracking_uri(tmp_path / "one.db")
    localscorers.set_experiment("mine")
    localscorers.set_tracking_uri(tmp_path / "two.db")
    trace_id = localscorers.log_trace(inputs="q", outputs="a")
    assert localscorers.get_trace(trace_id).info.experiment_id == "0"


def test_memory_database_is_shared_by_all_threads() -> None:
    localscorers.set_tracking_uri("sqlite:///:memory:")
    ids: list[str] = []
    barrier = threading.Barrier(8)

    def log() -> None:
        barrier.wait()
        ids.extend(localscorers.log_trace(inputs="q", outputs="a") for _ in range(10))

    threads = [threading.Thread(target=log) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(localscorers.search_traces()) == 80
    assert {t.info.trace_id for t in localscorers.search_traces()} == set(ids)


def test_connection_recipe(db_path: Path) -> None:
    db = Database(db_path)
    with db.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == int(db.busy_timeout * 1000)
    db.close()


def test_tables_live_on_a_private_registry() -> None:
    assert "traces" not in SQLModel.metadata.tables
    assert "traces" in schema.METADATA.tables


def test_writes_nest_and_roll_back_together(db_path: Path) -> None:
    db = Database(db_path)
    e = schema.experiments

    def write_then_fail() -> None:
        with db.write() as outer:
            outer.execute(sa.insert(e).values(experiment_id="9", name="nine", created_ms=1))
            with db.write() as inner:
                assert inner is outer
                inner.execute(sa.insert(e).values(experiment_id="10", name="ten", created_ms=1))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        write_then_fail()
    with db.read() as conn:
        assert conn.execute(sa.select(e.c.name).order_by(e.c.name)).scalars().all() == ["Default"]
    db.close()


def test_close_inside_a_transaction_is_refused(db_path: Path) -> None:
    db = Database(db_path)
    with db.write(), pytest.raises(TransactionError, match="inside one of its write transactions"):
        db.close()
    db.close()


def test_schema_version_is_recorded(db_path: Path) -> None:
    Database(db_path).close()
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


def test_newer_database_is_refused_with_a_clear_message(db_path: Path) -> None:
    Database(db_path).close()
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(
        SchemaVersionError,
        match=rf"has schema version 99, but this localscorers expects version {len(MIGRATIONS)} "
        r"or lower.*Upgrade localscorers",
    ) as info:
        Database(db_path)
    assert (info.value.found, info.value.expected) == (99, len(MIGRATIONS))
    localscorers.set_tracking_uri(db_path)
    with pytest.raises(SchemaVersionError):
        localscorers.list_scorers()


def test_failing_migration_rolls_back(db_path: Path) -> None:
    # Ported from sqlite-utils' test_failing_migration_rolls_back.
    db = Database(db_path)

    def add_table(conn: sa.Connection) -> None:
        conn.exec_driver_sql("CREATE TABLE added (id INTEGER)")

    def fails_halfway(conn: sa.Connection) -> None:
        conn.exec_driver_sql("CREATE TABLE half_done (id INTEGER)")
        conn.exec_driver_sql("INSERT INTO experiments VALUES ('5', 'five', 1)")
        raise RuntimeError("migration 3 failed")

    with pytest.raises(RuntimeError, match="migration 3 failed"):
        migrate(
            db.engine,
            path=str(db_path),
            migrations=[*MIGRATIONS, add_table, fails_halfway],
        )
    with db.read() as conn:
        assert sqlite.get_user_version(conn) == len(MIGRATIONS) + 1
        tables = set(sa.inspect(conn).get_table_names())
        experiments = conn.execute(sa.select(schema.experiments.c.name)).scalars().all()
    assert "added" in tables
    assert "half_done" not in tables
    assert experiments == ["Default"]
    db.close()


def test_older_database_is_migrated_on_open(db_path: Path) -> None:
    db = Database(db_path)
    calls: list[int] = []

    def record(conn: sa.Connection) -> None:
        calls.append(1)

    newest = len(MIGRATIONS) + 1
    assert migrate(db.engine, path=str(db_path), migrations=[*MIGRATIONS, record]) == newest
    assert migrate(db.engine, path=str(db_path), migrations=[*MIGRATIONS, record]) == newest
    assert calls == [1]
    db.close()


def test_version_1_database_with_pending_work_is_migrated_and_scored(
    tracking: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A database last written by schema version 1: online work pending in the ledger,
    # no evaluation_requests table (version 2 added it).
    monkeypatch.setenv("LOCALSCORERS_MONITOR", "off")
    scorer_helpers.is_short.register().start(
        sampling_config=localscorers.ScorerSamplingConfig(sample_rate=1.0)
    )
    ids = [localscorers.log_trace(inputs="q", outputs="a" * (i * 15)) for i in range(3)]
    assert move_requests(_context.current().db) == 3
    _context.reset()
    with sqlite3.connect(tracking) as conn:
        conn.execute("DROP TABLE evaluation_requests")
        conn.execute("PRAGMA user_version = 1")
    conn.close()

    monkeypatch.setenv("LOCALSCORERS_MONITOR", "on")
    localscorers.set_tracking_uri(tracking)
    assert localscorers.flush(timeout=30)
    with sqlite3.connect(tracking) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert conn.execute("SELECT count(*) FROM evaluation_requests").fetchone()[0] == 0
    conn.close()
    for trace_id in ids:
        assessments = localscorers.get_trace(trace_id).info.assessments
        assert [(a.name, a.origin) for a in assessments] == [("is_short", "online")]
    values = [localscorers.get_trace(i).info.assessments[0].value for i in ids]
    assert values == [True, True, False]


def test_default_experiment_exists(tracking: Path) -> None:
    default = _context.current().store.get_experiment("0")
    assert default is not None
    assert default.name == "Default"
    assert localscorers.get_experiment_by_name("Default") == default


def test_set_experiment_creates_and_selects(tracking: Path) -> None:
    created = localscorers.set_experiment("chatbot")
    assert created.name == "chatbot"
    assert localscorers.set_experiment("chatbot") == created
    assert localscorers.get_experiment_by_name("chatbot") == created
    assert localscorers.get_experiment_by_name("missing") is None
    trace_id = localscorers.log_trace(inputs="q", outputs="a")
    assert localscorers.get_trace(trace_id).info.experiment_id == created.experiment_id
    assert localscorers.set_experiment(experiment_id="0").name == "Default"


def test_set_experiment_errors(tracking: Path) -> None:
    with pytest.raises(ConfigurationError, match="exactly one of name"):
        localscorers.set_experiment()
    with pytest.raises(ConfigurationError, match="non-blank string"):
        localscorers.set_experiment("  ")
    with pytest.raises(localscorers.NotFoundError, match="No experiment has id '42'"):
        localscorers.set_experiment(experiment_id="42")
    with pytest.raises(LookupError, match="No experiment has id '42'"):
        localscorers.log_trace(inputs="q", outputs="a", experiment_id="42")


def test_an_experiment_found_once_is_remembered_per_database(tmp_path: Path) -> None:
    localscorers.set_tracking_uri(tmp_path / "a.db")
    first = localscorers.set_experiment("first").experiment_id
    localscorers.set_experiment(experiment_id="0")
    ids = [localscorers.log_trace(inputs=i, outputs=i, experiment_id=first) for i in range(3)]
    assert {localscorers.get_trace(t).info.experiment_id for t in ids} == {first}
    # Another database does not know the ids the first one had.
    localscorers.set_tracking_uri(tmp_path / "b.db")
    with pytest.raises(localscorers.NotFoundError, match=f"No experiment has id '{first}'"):
        localscorers.log_trace(inputs="q", outputs="a", experiment_id=first)
    assert localscorers.set_experiment("only").experiment_id == first  # ids restart per file
    localscorers.log_trace(inputs="q", outputs="a", experiment_id=first)
    assert len(localscorers.search_traces(experiment_ids=[first])) == 1


def test_a_writer_blocked_past_the_busy_timeout_gets_database_busy_error(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALSCORERS_BUSY_TIMEOUT", "0.2")
    localscorers.set_tracking_uri(db_path)
    localscorers.log_trace(inputs="q", outputs="a")  # open and migrate first
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process's long write transaction
    try:
        with pytest.raises(
            localscorers.DatabaseBusyError,
            match=r"locked by another writer for more than 0.2 s.*LOCALSCORERS_BUSY_TIMEOUT",
        ) as info:
            localscorers.log_trace(inputs="q", outputs="a")
        assert info.value.timeout == 0.2
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    localscorers.log_trace(inputs="q", outputs="a")
    assert len(localscorers.search_traces()) == 2


def test_busy_timeout_setting_is_validated(monkeypatch: pytest.MonkeyPatch, db_path: Path) -> None:
    monkeypatch.setenv("LOCALSCORERS_BUSY_TIMEOUT", "soon")
    with pytest.raises(
        ConfigurationError,
        match="LOCALSCORERS_BUSY_TIMEOUT must be a positive number of seconds, got 'soon'",
    ):
        Database(db_path)
