"""Read-only commands on an EMPTY PostgreSQL database create nothing there (issue 18).

As with a missing SQLite file (``test_cli_errors``), a read command says that nothing
has been recorded at that URI and how to create it, in one line, and leaves the schema
exactly as empty as it found it: no tables, no schema version.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.conftest import REPO_ROOT

READ_COMMANDS = [
    ["experiments", "list"],
    ["traces", "search"],
    ["traces", "get", "tr-1"],
    ["scorers", "list"],
    ["scorers", "get", "x"],
    ["jobs", "list"],
    ["jobs", "get", "bf-1"],
    ["explain", "tr-1"],
    ["report"],
]


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALSCORERS_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["HOME"] = str(tmp_path / "home")
    return subprocess.run(
        [sys.executable, "-m", "localscorers", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        check=False,
    )


def _tables(uri: str) -> list[str]:
    with psycopg.connect(uri) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        ).fetchall()
    return [row[0] for row in rows]


@pytest.mark.parametrize("command", READ_COMMANDS, ids="-".join)
def test_read_commands_create_nothing_on_an_empty_postgres(
    postgres_uri: str, tmp_path: Path, command: list[str]
) -> None:
    result = _cli(tmp_path, "--db", postgres_uri, *command)
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: No localscorers database at postgresql://")
    assert "no localscorers tables" in lines[0]
    assert "demo" in lines[0]
    assert "Traceback" not in result.stderr
    assert _tables(postgres_uri) == []
    assert not (tmp_path / "home").exists()  # no SQLite fallback created either


def test_a_write_command_then_creates_the_tables(postgres_uri: str, tmp_path: Path) -> None:
    result = _cli(tmp_path, "--db", postgres_uri, "demo", "-n", "20")
    assert result.returncode == 0, result.stderr
    assert "localscorers_schema" in _tables(postgres_uri)
    listed = _cli(tmp_path, "--db", postgres_uri, "experiments", "list")
    assert listed.returncode == 0, listed.stderr
