"""Shared fixtures: every test gets its own database and a clean process state."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, settings

import localscorers
from localscorers import _context

settings.register_profile(
    "dev", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci",
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated_process_state(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Point the default database at a temporary file and reset the module-level state.

    Nothing a test does reaches the user's real data directory, and no monitor thread or
    open database outlives its test.
    """
    fallback = tmp_path_factory.mktemp("default-db") / "localscorers.db"
    monkeypatch.setenv("LOCALSCORERS_TRACKING_URI", f"sqlite:///{fallback}")
    _context.reset()
    yield
    _context.reset()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A database file path in the test's temporary directory."""
    return tmp_path / "localscorers.db"


@pytest.fixture
def tracking(db_path: Path) -> Path:
    """Use a fresh database file for the test; return its path."""
    localscorers.set_tracking_uri(db_path)
    return db_path


@pytest.fixture
def subprocess_env(db_path: Path) -> dict[str, str]:
    """Environment for child processes: the repo importable, the test database selected."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["LOCALSCORERS_TRACKING_URI"] = f"sqlite:///{db_path}"
    return env


# The store contract: tests taking ``store_uri`` (or ``contract_tracking``) run once per
# backend. PostgreSQL needs LOCALSCORERS_TEST_POSTGRES_URI (.ci/run starts a server and
# sets it); without it those runs are skipped, saying why.
POSTGRES_ENV = "LOCALSCORERS_TEST_POSTGRES_URI"
BACKENDS = ("sqlite", "postgres")


def pytest_report_header() -> str:
    """Say at the top of every run whether the PostgreSQL half of the contract runs."""
    if os.environ.get(POSTGRES_ENV):
        return f"PostgreSQL store tests: on ({POSTGRES_ENV} is set)"
    return f"PostgreSQL store tests: SKIPPED ({POSTGRES_ENV} is not set; .ci/run sets it)"


def postgres_base_uri() -> str:
    """Return the test server's URI, or skip the test with the reason."""
    uri = os.environ.get(POSTGRES_ENV)
    if not uri:
        pytest.skip(f"{POSTGRES_ENV} is not set: no PostgreSQL server for this test")
    return uri


def fresh_postgres_schema(base: str) -> str:
    """Create an empty schema on the test server; return a URI whose search_path is it."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    joiner = "&" if "?" in base else "?"
    return f"{base}{joiner}options={quote(f'-csearch_path={name}')}"


@pytest.fixture(params=BACKENDS)
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database URI: a SQLite file, then a PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'localscorers.db'}"
    return fresh_postgres_schema(postgres_base_uri())


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Children started by a test; any still running at the end are killed."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate()


@pytest.fixture
def postgres_uri() -> str:
    """A fresh PostgreSQL schema's URI, for tests of PostgreSQL-only behaviour."""
    return fresh_postgres_schema(postgres_base_uri())


@pytest.fixture
def contract_tracking(store_uri: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Use a fresh database of each backend for the test (child processes too); return its URI."""
    monkeypatch.setenv("LOCALSCORERS_TRACKING_URI", store_uri)
    localscorers.set_tracking_uri(store_uri)
    return store_uri
