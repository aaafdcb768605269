"""What ``scorers list``, ``jobs list`` and ``traces search`` say when they find nothing.

The three share one way of answering: JSON on stdout (the hint, if any, on stderr), a
table, or a line saying nothing was found, pointing at the experiment that has some.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import localscorers
from localscorers.cli import app, run


@localscorers.scorer
def words(outputs: Any) -> int:
    return len(str(outputs).split())


@pytest.fixture
def other_db(tracking: Path) -> Path:
    """Experiment 'other' holds a scorer, a trace and a backfill job; 'Default' holds nothing."""
    localscorers.set_experiment("other")
    words.register()
    localscorers.log_trace(inputs={"q": "a"}, outputs="an answer", tags={"env": "prod"})
    config = localscorers.BackfillScorerConfig("words", sample_rate=1.0)
    job_id = localscorers.backfill_scorers(scorers=[config])
    localscorers.wait_for_backfill_job(job_id, timeout=30)
    return tracking


def _run(db: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[str, str]:
    capsys.readouterr()
    assert run(app, ["--db", str(db), *argv]) == 0
    captured = capsys.readouterr()
    return " ".join(captured.out.split()), " ".join(captured.err.split())


@pytest.mark.parametrize(
    ("command", "what", "count"),
    [
        (["scorers", "list"], "scorers", "1"),
        (["jobs", "list"], "backfill jobs", "1"),
        (["traces", "search"], "traces", "1"),
    ],
)
def test_an_empty_default_points_at_the_experiment_with_content(
    other_db: Path, capsys: pytest.CaptureFixture[str], command: list[str], what: str, count: str
) -> None:
    hint = f"experiment 'Default' has no {what}; 'other' has {count}: use -e other"
    out, err = _run(other_db, capsys, *command)
    assert hint in out
    assert err == ""
    out, err = _run(other_db, capsys, *command, "--json")
    assert json.loads(out) == []
    assert hint in err


def test_the_hint_is_left_out_when_it_does_not_apply(
    other_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A filter that matches nothing says nothing about the other experiments.
    out, err = _run(other_db, capsys, "traces", "search", "--filter", "tags.env = 'prod'")
    assert out == "No traces match in experiment 'Default'."
    assert err == ""
    # -e names the experiment: the user asked about this one only.
    localscorers.set_experiment("empty")
    for command, line in (
        (["scorers", "list"], "No scorers are registered in experiment 'empty'."),
        (["jobs", "list"], "No backfill jobs in experiment 'empty'."),
        (["traces", "search"], "No traces match in experiment 'empty'."),
    ):
        assert _run(other_db, capsys, "-e", "empty", *command) == (line, "")


def test_found_items_are_listed(other_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = _run(other_db, capsys, "-e", "other", "jobs", "list")
    assert "1 backfill job(s) of experiment 'other'" in out
    out, _ = _run(other_db, capsys, "-e", "other", "jobs", "list", "--json")
    assert [job["status"] for job in json.loads(out)] == ["SUCCEEDED"]
    out, _ = _run(other_db, capsys, "-e", "other", "scorers", "list")
    assert "Scorers of experiment 'other'" in out
    assert "words" in out
