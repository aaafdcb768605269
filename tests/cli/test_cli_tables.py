"""Tables at any width >= 60: ids whole on one line, long text folded, no character dropped.

Also: ``import localscorers`` loads none of the CLI's or the store's heavy dependencies.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import localscorers
from tests.conftest import REPO_ROOT

LONG_TAG = "a-rather-long-tag-value-that-will-never-fit-in-one-narrow-column-of-the-table"


@localscorers.scorer
def is_concise(outputs: Any) -> bool:
    return len(outputs) < 40


@localscorers.scorer
def verdict_text(outputs: Any) -> str:
    return "the answer repeats the question instead of answering it, word for word"


@pytest.fixture
def table_db(tmp_path: Path) -> Path:
    db = tmp_path / "tables.db"
    localscorers.set_tracking_uri(db)
    localscorers.set_experiment("wide")
    is_concise.register().start()
    verdict_text.register().start()
    for index in range(3):
        localscorers.log_trace(
            inputs={"q": index},
            outputs="short" if index else "a much longer answer than the others, by far",
            name="a_long_trace_name_for_the_table",
            tags={"env": "prod", "note": LONG_TAG},
        )
    assert localscorers.flush(timeout=30)
    localscorers.backfill_scorers(scorers=["is_concise"], rescore=True)
    return db


def _run(db: Path, columns: int, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALSCORERS_")}
    env.update(PYTHONPATH=str(REPO_ROOT), COLUMNS=str(columns), LOCALSCORERS_MONITOR="off")
    completed = subprocess.run(
        [sys.executable, "-m", "localscorers", "--db", str(db), "-e", "wide", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    return completed.stdout


def _contains_in_order(text: str, value: str) -> bool:
    # Folded cells interleave with their neighbours line by line, but keep their own order.
    rest = iter("".join(text.split()))
    return all(char in rest for char in "".join(value.split()))


@pytest.mark.parametrize("columns", [60, 80, 120])
def test_traces_table_keeps_ids_and_every_character(table_db: Path, columns: int) -> None:
    traces = localscorers.search_traces()
    out = _run(table_db, columns, "traces", "search")
    assert "…" not in out
    lines = out.splitlines()
    assert all(len(line.rstrip()) <= columns for line in lines)
    for trace in traces:
        assert any(trace.info.trace_id in line for line in lines), trace.info.trace_id
        assert _contains_in_order(out, LONG_TAG)
        assert _contains_in_order(out, "a_long_trace_name_for_the_table")
        assert _contains_in_order(out, "is_concise=true") or _contains_in_order(
            out, "is_concise=false"
        )


@pytest.mark.parametrize("columns", [60, 80, 120])
def test_jobs_and_scorers_tables_keep_ids(table_db: Path, columns: int) -> None:
    [job] = localscorers.list_backfill_jobs()
    jobs_out = _run(table_db, columns, "jobs", "list")
    assert any(job.job_id in line for line in jobs_out.splitlines())
    assert "…" not in jobs_out
    scorers_out = _run(table_db, columns, "scorers", "list")
    for name in ("is_concise", "verdict_text"):
        assert any(name in line for line in scorers_out.splitlines())
    assert _contains_in_order(scorers_out, "tests.cli.test_cli_tables:verdict_text")
    assert "…" not in scorers_out


def test_json_is_not_affected_by_the_width(table_db: Path) -> None:
    narrow = json.loads(_run(table_db, 60, "traces", "search", "--json"))
    wide = json.loads(_run(table_db, 200, "traces", "search", "--json"))
    assert narrow == wide
    assert narrow[0]["info"]["tags"]["note"] == LONG_TAG


def test_import_loads_nothing_heavy() -> None:
    code = (
        "import sys, localscorers; "
        "print(sorted(m for m in ('sqlalchemy', 'sqlmodel', 'pydantic', 'typer', 'rich') "
        "if m in sys.modules))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        timeout=60,
        check=True,
    )
    assert completed.stdout.strip() == "[]"
    # The lazy names still resolve, and importing a submodule hides no function: no public
    # function shares its module's name (explain lives in localscorers.explanation).
    import localscorers.explanation
    import localscorers.offline_evaluation

    assert callable(localscorers.explain)
    assert callable(localscorers.evaluate)
    assert all(hasattr(localscorers, name) for name in vars(localscorers)["__all__"])
