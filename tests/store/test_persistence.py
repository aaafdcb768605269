"""Scorers registered in one process are restored and run in another (DESIGN.md section 5)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import localscorers
from localscorers import ScorerLoadError


def run_python(code: str, env: dict[str, str], cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def run_script(path: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_importable_scorer_is_stored_by_reference_and_restored(
    db_path: Path, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    run_python(
        """
        from tests.scorer_helpers import is_short
        is_short.register()
        """,
        subprocess_env,
        cwd=tmp_path,
    )
    localscorers.set_tracking_uri(db_path)
    restored = localscorers.get_scorer(name="is_short")
    assert restored.definition()["kind"] == "reference"
    assert restored.definition()["reference"] == "tests.scorer_helpers:is_short"
    assert restored(outputs="short") is True
    out = run_python(
        """
        import localscorers
        s = localscorers.get_scorer(name="is_short")
        print(s(outputs="a" * 50), s.version, s.status)
        """,
        subprocess_env,
        cwd=tmp_path,
    )
    assert out.split() == ["False", "1", "REGISTERED"]


MAIN_SCRIPT = '''
import re as regex
import json
from tests.scorer_helpers import plain_length
import localscorers

THRESHOLD = 3

@localscorers.scorer(name="digits")
def count_digits(outputs):
    """Counts digits with a module imported under an alias."""
    found = regex.findall(r"\\d", str(outputs))
    return json.dumps({"n": len(found), "long": plain_length(outputs) > THRESHOLD})

def build_nested():
    @localscorers.scorer(name="nested")
    def nested(outputs):
        return regex.sub(r"\\s+", " ", outputs).strip()
    return nested

registered = count_digits.register()
build_nested().register()
print(registered.definition()["kind"])
'''


def test_main_defined_scorer_keeps_its_module_imports_in_a_new_process(
    db_path: Path, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    script = tmp_path / "app.py"
    script.write_text(MAIN_SCRIPT)
    assert run_script(script, subprocess_env).strip() == "source"
    out = run_python(
        """
        import localscorers
        digits = localscorers.get_scorer(name="digits")
        nested = localscorers.get_scorer(name="nested")
        print(digits(outputs="a1b22"))
        print(repr(nested(outputs="  x   y ")))
        print(digits.description)
        """,
        subprocess_env,
        cwd=tmp_path,
    )
    lines = out.splitlines()
    assert lines[0] == '{"n": 3, "long": true}'
    assert lines[1] == "'x y'"
    assert lines[2] == "Counts digits with a module imported under an alias."


def test_source_is_refused_from_a_group_or_world_writable_database(
    db_path: Path, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    script = tmp_path / "app.py"
    script.write_text(MAIN_SCRIPT)
    run_script(script, subprocess_env)
    db_path.chmod(0o666)
    localscorers.set_tracking_uri(db_path)
    digits = localscorers.get_scorer(name="digits")  # listing never runs stored code
    with pytest.raises(ScorerLoadError, match=r"writable by others.*chmod go-w") as info:
        digits(outputs="1")
    assert str(db_path) in str(info.value)
    db_path.chmod(0o620)
    with pytest.raises(ScorerLoadError, match="writable by its group"):
        localscorers.get_scorer(name="digits")(outputs="1")
    # SQLite gives the -wal and -shm files the database's mode: all of them need fixing.
    for path in (db_path, *(db_path.with_name(db_path.name + s) for s in ("-wal", "-shm"))):
        if path.exists():
            path.chmod(0o600)
    assert localscorers.get_scorer(name="digits")(outputs="1") == '{"n": 1, "long": false}'


def test_refused_source_becomes_an_error_feedback_online(
    db_path: Path, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    script = tmp_path / "app.py"
    script.write_text(MAIN_SCRIPT)
    run_script(script, subprocess_env)
    db_path.chmod(0o666)
    localscorers.set_tracking_uri(db_path)
    localscorers.get_scorer(name="digits").start()
    trace_id = localscorers.log_trace(inputs="q", outputs="a1")
    assert localscorers.flush(timeout=30)
    [feedback] = localscorers.get_trace(trace_id).info.assessments
    assert isinstance(feedback, localscorers.Feedback)
    assert feedback.name == "digits"
    assert feedback.error is not None
    assert feedback.error.error_code == "SCORER_LOAD_ERROR"
    assert "chmod go-w" in (feedback.error.error_message or "")


def test_missing_module_is_a_clear_load_error(tracking: Path) -> None:
    from localscorers import _context

    runtime = _context.current()
    runtime.registry.register(
        "0",
        "ghost",
        definition={"serialization_version": 1, "kind": "reference", "reference": "no_such_mod:f"},
        description=None,
    )
    ghost = localscorers.get_scorer(name="ghost")
    with pytest.raises(
        ScorerLoadError, match=r"Cannot load scorer reference 'no_such_mod:f'.*importable"
    ):
        ghost(outputs="x")


def test_a_reference_stored_by_the_previous_layout_still_loads(tracking: Path) -> None:
    # Databases written before the package was split into rooms name the demo's scorers
    # and its judge model "localscorers.demo:..."; they must keep loading.
    import sqlite3

    from localscorers.cli import is_concise
    from localscorers.evaluation import resolve_reference

    is_concise.register(name="concise")
    localscorers.set_tracking_uri(tracking.parent / "other.db")  # close the first database
    with sqlite3.connect(tracking) as conn:
        conn.execute(
            "UPDATE scorer_versions SET definition = replace(definition, "
            "'localscorers.cli.demo_app', 'localscorers.demo')"
        )
        (definition,) = conn.execute("SELECT definition FROM scorer_versions").fetchone()
    assert "localscorers.demo:is_concise" in definition
    localscorers.set_tracking_uri(tracking)

    restored = localscorers.get_scorer(name="concise")

    assert restored(outputs="short") is True
    from localscorers.cli import demo_judge_model

    assert resolve_reference("localscorers.demo:demo_judge_model") is demo_judge_model
