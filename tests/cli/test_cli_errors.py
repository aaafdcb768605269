"""A newcomer's mistakes through the real console script: one line on stderr, exit 1.

Each case runs ``python -m localscorers`` in a fresh directory, as a user would, and
checks that the message names the path (or experiment) and the command that fixes it,
that no traceback is printed, and that nothing was created by a read command.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALSCORERS_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["HOME"] = str(tmp_path / "home")
    env.pop("XDG_DATA_HOME", None)
    env.update(extra)
    return env


def _python(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(tmp_path, **env),
        timeout=60,
        check=False,
    )


def _cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return _python(tmp_path, "-m", "localscorers", *args, **env)


# A user's script on tmp_path/x.db; a slow scorer and some traffic for it.
_HEADER = """
import time
import localscorers

localscorers.set_tracking_uri({db!r})
"""
_SLOW_SCORER = """
@localscorers.scorer
def slow(outputs):
    time.sleep(0.2)
    return True
"""
_TRAFFIC = """
for index in range(40):
    localscorers.log_trace(inputs={"i": index}, outputs="ok")
"""


def _script(tmp_path: Path, name: str, *parts: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a script made of ``parts`` after the header, as a user would."""
    script = tmp_path / name
    header = _HEADER.format(db=str(tmp_path / "x.db"))
    script.write_text("".join(textwrap.dedent(part) for part in (header, *parts)))
    return _python(tmp_path, str(script), **env)


def _one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("db", "needle"),
    [
        ("/proc/nope/x.db", "/proc/nope"),
        ("/sys/x.db", "/sys"),
    ],
)
def test_unwritable_database_path(tmp_path: Path, db: str, needle: str) -> None:
    result = _cli(tmp_path, "--db", db, "scorers", "register-builtin", "Safety", "-n", "safe")
    _one_line_error(result, needle, "--db")


def test_unwritable_database_path_for_the_worker_and_demo(tmp_path: Path) -> None:
    _one_line_error(_cli(tmp_path, "--db", "/proc/nope/x.db", "worker", "--drain"), "/proc/nope")
    _one_line_error(_cli(tmp_path, "--db", "/sys/x.db", "demo", "-n", "20"), "/sys")


def test_empty_sqlite_uri(tmp_path: Path) -> None:
    _one_line_error(_cli(tmp_path, "--db", "sqlite:///", "scorers", "list"), "sqlite:///", "--db")
    _one_line_error(_cli(tmp_path, "--db", "sqlite:///", "demo"), "names no file")


def test_database_path_is_a_directory(tmp_path: Path) -> None:
    _one_line_error(_cli(tmp_path, "--db", str(tmp_path), "traces", "search"), "is a directory")


def test_default_path_under_a_read_only_home(tmp_path: Path) -> None:
    # /sys refuses new directories even to root: a HOME there is read-only for everyone.
    result = _cli(tmp_path, "scorers", "register-builtin", "Safety", "-n", "s", HOME="/sys/nohome")
    _one_line_error(result, "/sys/nohome/.local/share/localscorers", "--db")
    result = _cli(tmp_path, "scorers", "list", HOME="/sys/nohome")
    _one_line_error(result, "the default database", "localscorers demo")


def test_read_only_directory(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes to read-only directories; /sys covers the read-only case")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        result = _cli(tmp_path, "--db", str(folder / "x.db"), "worker", "--drain")
        _one_line_error(result, str(folder), "not writable")
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize(
    "command",
    [
        ["scorers", "list"],
        ["scorers", "get", "x"],
        ["traces", "search"],
        ["traces", "get", "tr-1"],
        ["jobs", "list"],
        ["jobs", "get", "bf-1"],
        ["explain", "tr-1"],
        ["report"],
        ["experiments", "list"],
    ],
)
def test_read_commands_never_create_a_database(tmp_path: Path, command: list[str]) -> None:
    db = tmp_path / "typo" / "dir" / "x.db"
    result = _cli(tmp_path, "--db", str(db), *command)
    _one_line_error(result, f"No database at {db}", "demo")
    assert not (tmp_path / "typo").exists()


def test_unknown_experiment_is_named(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    assert _cli(tmp_path, "--db", str(db), "demo", "-n", "20").returncode == 0
    for command in (["scorers", "list"], ["traces", "search"], ["jobs", "list"], ["report"]):
        result = _cli(tmp_path, "--db", str(db), "-e", "typo", *command)
        _one_line_error(result, "'typo'", "localscorers experiments list")
    listed = _cli(tmp_path, "--db", str(db), "experiments", "list")
    assert "localscorers-demo" in listed.stdout
    assert "typo" not in listed.stdout
    # After the demo, the default experiment says where the data is.
    hint = _cli(tmp_path, "--db", str(db), "scorers", "list")
    assert hint.returncode == 0
    assert "'localscorers-demo' has 4: use -e localscorers-demo" in " ".join(hint.stdout.split())


def test_errors_name_commands_and_experiment_names(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    assert _cli(tmp_path, "--db", str(db), "demo", "-n", "20").returncode == 0
    line = _one_line_error(
        _cli(tmp_path, "--db", str(db), "-e", "localscorers-demo", "scorers", "get", "nope"),
        "'localscorers scorers list'",
        "experiment 'localscorers-demo'",
    )
    assert "()" not in line
    line = _one_line_error(
        _cli(tmp_path, "--db", str(db), "-e", "localscorers-demo", "backfill", "-s", "nope"),
        "'localscorers scorers list'",
    )
    assert "()" not in line
    line = _one_line_error(
        _cli(tmp_path, "--db", str(db), "jobs", "get", "bf-nope"), "'localscorers jobs list'"
    )
    assert "()" not in line


def test_filter_error_keeps_its_position_on_one_line(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    assert _cli(tmp_path, "--db", str(db), "demo", "-n", "20").returncode == 0
    result = _cli(
        tmp_path,
        "--db",
        str(db),
        "-e",
        "localscorers-demo",
        "traces",
        "search",
        "-f",
        "tags.env = 'prod' AN",
    )
    _one_line_error(result, "position 18", "tags.env = 'prod' >>>AN")


def test_png_in_a_missing_directory(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    assert _cli(tmp_path, "--db", str(db), "demo", "-n", "20").returncode == 0
    result = _cli(tmp_path, "--db", str(db), "report", "--png", "/no-such-dir/c.png")
    _one_line_error(result, "/no-such-dir", "mkdir -p")


def test_version_and_help_without_bool(tmp_path: Path) -> None:
    version = _cli(tmp_path, "--version")
    assert version.returncode == 0
    assert version.stdout.startswith("localscorers ")
    for command in ([], ["worker"], ["backfill"], ["traces", "search"], ["report"]):
        shown = _cli(tmp_path, *command, "--help")
        assert shown.returncode == 0
        assert "<bool>" not in shown.stdout
    assert "--quiet" in _cli(tmp_path, "worker", "--help").stdout


def test_exit_with_pending_work_says_so(tmp_path: Path) -> None:
    result = _script(
        tmp_path,
        "app.py",
        _SLOW_SCORER,
        "slow.register().start()\n",
        _TRAFFIC,
        LOCALSCORERS_EXIT_WAIT_SECONDS="0.3",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "online evaluation(s) still pending" in lines[0]
    assert f"localscorers worker --drain --db {tmp_path / 'x.db'}" in lines[0]
    drained = _cli(tmp_path, "--db", str(tmp_path / "x.db"), "worker", "--drain", "--quiet")
    assert drained.returncode == 0, drained.stderr
    assert drained.stderr == ""


def test_exit_with_a_pending_backfill_job_says_so(tmp_path: Path) -> None:
    backfill = """
    localscorers.backfill_scorers(
        scorers=[localscorers.BackfillScorerConfig("slow", sample_rate=1.0)]
    )
    """
    result = _script(
        tmp_path,
        "job.py",
        _SLOW_SCORER,
        "slow.register()\n",
        _TRAFFIC,
        backfill,
        LOCALSCORERS_EXIT_WAIT_SECONDS="0.2",
    )
    assert result.returncode == 0, result.stderr
    assert "1 backfill job(s)" in result.stderr
    assert "localscorers worker --drain" in result.stderr


def test_flushed_script_exits_quietly(tmp_path: Path) -> None:
    body = """
    @localscorers.scorer
    def fast(outputs):
        return True

    fast.register().start()
    localscorers.log_trace(inputs={}, outputs="ok")
    assert localscorers.flush(timeout=30)
    """
    result = _script(tmp_path, "quiet.py", body)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
