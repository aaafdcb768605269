"""The public API end to end on each backend (``contract_tracking``: SQLite, then PostgreSQL).

Every test here runs twice and must behave the same on both: traces, every filter
field, the scorer lifecycle, online scoring with ``flush``, backfill, ``explain`` and
``report``. PostgreSQL runs need LOCALSCORERS_TEST_POSTGRES_URI and are skipped,
saying so, without it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

import localscorers
from localscorers import ScorerSamplingConfig
from localscorers.exceptions import ConfigurationError, SchemaVersionError
from localscorers.store import Database, dialect, migrations, normalize_uri, postgres
from tests.conftest import REPO_ROOT


@localscorers.scorer
def short(outputs: object) -> bool:
    """True when the answer is short."""
    return len(str(outputs)) < 40


def _log_corpus() -> dict[str, str]:
    """Log four traces that differ in every filterable field; return their ids by role."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    ids = {
        "chat": localscorers.log_trace(
            inputs={"q": "hello"},
            outputs={"a": "hi"},
            name="chat",
            request_time=t0,
            execution_duration_ms=100,
            tags={"env": "prod", "team.name": "core"},
            metadata={"mlflow.trace.session": "s1", "user": "ann"},
        ),
        "search": localscorers.log_trace(
            inputs={"q": "find"},
            outputs={"a": "x" * 60},
            name="Search",
            request_time=t0 + timedelta(minutes=1),
            execution_duration_ms=900,
            tags={"env": "dev"},
            status="ERROR",
        ),
    }
    with (
        localscorers.start_span(
            "agent", span_type="AGENT", inputs={"q": "tool"}, attributes={"model": "m-7"}
        ),
        localscorers.start_span("lookup", span_type="RETRIEVER", attributes={"k": 3}),
    ):
        pass
    ids["spans"] = localscorers.search_traces(filter_string="trace.name = 'agent'")[0].info.trace_id
    localscorers.log_feedback(trace_id=ids["chat"], name="helpful", value=True)
    return ids


def _found(filter_string: str) -> set[str]:
    return {t.info.trace_id for t in localscorers.search_traces(filter_string=filter_string)}


def test_traces_and_every_filter_field(contract_tracking: str) -> None:
    ids = _log_corpus()
    chat, search, spans = ids["chat"], ids["search"], ids["spans"]
    cases = {
        "trace.status = 'ERROR'": {search},
        "status = 'ok'": {chat, spans},
        "trace.name = 'chat'": {chat},
        "name LIKE 'Sea%'": {search},
        "name LIKE 'sea%'": set(),  # LIKE is case-sensitive on both backends
        "name ILIKE 'sea%'": {search},
        "name RLIKE '^(chat|Sea)'": {chat, search},
        "trace.execution_time_ms > 500": {search},
        "trace.timestamp_ms < 1767225630000": {chat},
        "trace.end_time_ms >= 1767225660900 AND trace.timestamp_ms < 1767225700000": {search},
        "tags.env = 'prod'": {chat},
        "tags.`team.name` = 'core'": {chat},
        "tags.env != 'prod'": {search},
        "tags.env IN ('prod', 'dev')": {chat, search},
        "tags.env NOT IN ('prod')": {search},
        "tags.env IS NULL": {spans},
        "metadata.user IS NOT NULL": {chat},
        "metadata.`mlflow.trace.session` = 's1'": {chat},
        "span.name = 'lookup'": {spans},
        "span.type = 'RETRIEVER' AND span.name = 'lookup'": {spans},
        "span.type = 'RETRIEVER' AND span.name = 'agent'": set(),
        "span.attributes.model = 'm-7'": {spans},
        "span.attributes.k = '3'": {spans},
        "span.attributes.model RLIKE 'm-[0-9]'": {spans},
        "span.content LIKE '%tool%'": {spans},
        "feedback.helpful = 'true'": {chat},
        "feedback.helpful IS NULL": {search, spans},
        "(tags.env = 'prod' OR trace.status = 'ERROR') AND NOT name = 'chat'": {search},
    }
    for filter_string, expected in cases.items():
        assert _found(filter_string) == expected, filter_string
    ordered = localscorers.search_traces(order_by=["trace.timestamp_ms DESC"], max_results=2)
    assert [t.info.trace_id for t in ordered][1] == search
    got = localscorers.get_trace(chat)
    assert got.info.tags == {"env": "prod", "team.name": "core"}
    assert got.data.request == {"q": "hello"}
    assert [a.name for a in got.info.assessments] == ["helpful"]


def test_scorer_lifecycle(contract_tracking: str) -> None:
    registered = short.register(name="short")
    assert registered.version == 1
    started = registered.start(sampling_config=ScorerSamplingConfig(sample_rate=0.5))
    assert started.sample_rate == 0.5
    updated = started.update(
        sampling_config=ScorerSamplingConfig(sample_rate=1.0, filter_string="name = 'chat'")
    )
    assert updated.filter_string == "name = 'chat'"
    assert updated.stop().sample_rate == 0.0
    assert [s.name for s in localscorers.list_scorers()] == ["short"]
    assert localscorers.get_scorer(name="short").status == "STOPPED"
    localscorers.delete_scorer(name="short")
    with pytest.raises(localscorers.ScorerNotFoundError, match="short"):
        localscorers.get_scorer(name="short")


def test_online_scoring_backfill_explain_and_report(contract_tracking: str) -> None:
    before = localscorers.log_trace(inputs={"q": 0}, outputs="early")
    short.register(name="short").start(
        sampling_config=ScorerSamplingConfig(filter_string="NOT name = 'skip'")
    )
    online = [localscorers.log_trace(inputs={"q": i}, outputs=f"a{i}") for i in range(5)]
    skipped = localscorers.log_trace(inputs={}, outputs="s", name="skip")
    localscorers.flush(timeout=60)
    for trace_id in online:
        values = [(a.name, a.value) for a in localscorers.get_trace(trace_id).info.assessments]
        assert values == [("short", True)]
    job = localscorers.wait_for_backfill_job(
        localscorers.backfill_scorers(scorers=["short"]), timeout=60
    )
    assert (job.status, job.succeeded, job.skipped) == ("SUCCEEDED", 1, 5)
    assert [a.value for a in localscorers.get_trace(before).info.assessments] == [True]
    entries = {e.scorer_name: e.outcome for e in localscorers.explain(skipped)}
    assert entries == {"short": "FILTERED_OUT"}
    [report] = localscorers.scorer_report()
    assert (report.scorer_name, report.evaluations, report.pass_rate) == ("short", 6, 1.0)


def test_a_newer_schema_is_refused(store_uri: str) -> None:
    db = Database(store_uri)
    with db.write() as conn:
        dialect.of(conn).set_user_version(conn, migrations.SCHEMA_VERSION + 1)
    db.close()
    with pytest.raises(SchemaVersionError, match="newer localscorers") as caught:
        Database(store_uri)
    assert caught.value.found == migrations.SCHEMA_VERSION + 1


def test_migrations_run_once_and_record_the_version(store_uri: str) -> None:
    first = Database(store_uri)
    first.close()
    again = Database(store_uri)  # already current: nothing to do, nothing fails
    with again.read() as conn:
        assert dialect.of(conn).get_user_version(conn) == migrations.SCHEMA_VERSION
    again.close()


def test_postgres_uris_are_accepted_and_others_refused() -> None:
    uri = "postgresql://u:secret@db.example:5432/scores"
    assert normalize_uri(uri) == uri
    assert normalize_uri("postgresql+psycopg://h/db") == "postgresql+psycopg://h/db"
    with pytest.raises(ConfigurationError, match="mysql://h/db") as caught:
        normalize_uri("mysql://h/db")
    assert "postgresql://user:password@host:5432/database" in str(caught.value)
    with pytest.raises(ConfigurationError, match="psycopg 3"):
        Database("postgresql+psycopg2://h/db")


def test_an_unreachable_server_is_a_database_error_without_the_password() -> None:
    uri = "postgresql://u:secret@127.0.0.1:9/nothing?connect_timeout=2"
    with pytest.raises(localscorers.DatabaseError) as caught:
        Database(uri)
    assert "secret" not in str(caught.value)
    assert "postgresql://u:***@127.0.0.1:9/nothing" in str(caught.value)


def test_sqlite_use_does_not_import_postgresql_support(tmp_path: object) -> None:
    code = (
        "import sys, localscorers\n"
        f"localscorers.set_tracking_uri({str(tmp_path)!r} + '/x.db')\n"
        "localscorers.log_trace(inputs=1, outputs=2)\n"
        "bad = [m for m in sys.modules if m.startswith('psycopg') "
        "or m in ('localscorers.store.postgres', 'sqlalchemy.dialects.postgresql')]\n"
        "print(bad)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "[]"


def test_the_environment_variable_selects_postgresql(postgres_uri: str) -> None:
    store_uri = postgres_uri
    code = (
        "import localscorers\n"
        "tid = localscorers.log_trace(inputs=1, outputs=2)\n"
        "print(localscorers.get_tracking_uri().split(':')[0], len(localscorers.search_traces()))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "LOCALSCORERS_TRACKING_URI": store_uri}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.split() == ["postgresql", "1"]


def _answer_length(outputs: object) -> int:
    return len(str(outputs))


def test_concurrent_registrations_get_distinct_versions(contract_tracking: str) -> None:
    # On PostgreSQL writers run side by side: registration reads then writes, so it is
    # serialized there (SQLite's single writer does it for free).
    def register(i: int) -> int | None:
        made = localscorers.scorer(name="length", description=f"variant {i}")(_answer_length)
        return made.register().version

    with ThreadPoolExecutor(max_workers=8) as pool:
        versions = list(pool.map(register, range(8)))
    assert sorted(v for v in versions if v is not None) == list(range(1, 9))
    assert localscorers.get_scorer(name="length").version == 8


def test_an_older_schema_is_migrated_on_open(store_uri: str) -> None:
    engine = (
        postgres.create_engine(store_uri)
        if store_uri.startswith("postgresql")
        else sa.create_engine(store_uri)
    )
    assert migrations.migrate(engine, path="test", migrations=migrations.MIGRATIONS[:2]) == 2
    engine.dispose()
    localscorers.set_tracking_uri(store_uri)
    trace_id = localscorers.log_trace(inputs=1, outputs=2, metadata={"mlflow.trace.session": "s"})
    assert localscorers.get_trace(trace_id).info.metadata == {"mlflow.trace.session": "s"}
    db = Database(store_uri)
    with db.read() as conn:
        assert dialect.of(conn).get_user_version(conn) == migrations.SCHEMA_VERSION
    db.close()


def test_a_lock_held_too_long_is_database_busy_error(postgres_uri: str) -> None:
    # SQLite's counterpart is in tests/store/test_db.py.
    store_uri = postgres_uri
    import psycopg

    localscorers.set_tracking_uri(store_uri)
    localscorers.log_trace(inputs=1, outputs=1)  # creates the tables
    impatient = store_uri + "%20-clock_timeout%3D200"  # appended to options=-csearch_path=...
    localscorers.set_tracking_uri(impatient)
    with psycopg.connect(impatient) as holder:
        holder.execute("LOCK TABLE traces IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(localscorers.DatabaseBusyError, match="locked by another writer"):
            localscorers.log_trace(inputs=2, outputs=2)
    assert localscorers.log_trace(inputs=3, outputs=3).startswith("tr-")


def test_two_concurrent_runs_of_one_evaluation_keep_one_trace_per_row(
    contract_tracking: str,
) -> None:
    data = [{"inputs": {"n": n}, "outputs": n} for n in range(20)]

    def run(_: int) -> object:
        return localscorers.evaluate(data=data, scorers=[short], evaluation_id="twice")

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(run, range(2)))
    rows = localscorers.search_traces(
        filter_string="metadata.`localscorers.evaluation_id` = 'twice'"
    )
    assert len(rows) == 20
