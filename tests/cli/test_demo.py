"""``localscorers demo``: the guided story runs offline on a temporary database and can rerun."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

import localscorers
from localscorers.cli import app, run, story
from localscorers.jobs import get_backfill_job

STEPS = (
    "1. Earlier traffic",
    "2. Register and start scorers",
    "3. Live traffic, scored online",
    "4. Update one scorer, stop another",
    "5. Backfill the earlier traffic",
    "6. Why was this trace not scored?",
    "7. Report",
    "Done",
)


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_demo_command_runs_and_reruns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "story.db"

    assert run(app, ["--db", str(db), "demo", "--traces", "60"]) == 0
    first = _flat(capsys.readouterr().out)
    for step in STEPS:
        assert step in first
    assert "filtered out" in first
    assert "online evaluations" in first
    assert "Job SUCCEEDED" in first

    # A second run tells the story again in a fresh experiment: its numbers are its own.
    assert run(app, ["--db", str(db), "demo", "--traces", "40"]) == 0
    second = _flat(capsys.readouterr().out)
    assert "-e localscorers-demo-2" in second
    assert "40 traces" in second
    assert "7. Report" in second
    localscorers.set_tracking_uri(db)
    first_run = localscorers.get_experiment_by_name("localscorers-demo")
    second_run = localscorers.get_experiment_by_name("localscorers-demo-2")
    assert first_run is not None
    assert second_run is not None
    traces = localscorers.search_traces(experiment_ids=[second_run.experiment_id])
    assert len(traces) == 40
    # explain on a rerun: every scorer was registered before the trace was logged.
    for trace in traces[:5]:
        for entry in localscorers.explain(trace.info.trace_id):
            assert "not registered" not in entry.detail


def test_demo_refuses_an_experiment_with_content(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "story.db"
    assert run(app, ["--db", str(db), "demo", "-n", "20", "--demo-experiment", "mine"]) == 0
    capsys.readouterr()
    assert run(app, ["--db", str(db), "demo", "-n", "20", "--demo-experiment", "mine"]) == 1
    assert "already holds traces or scorers" in capsys.readouterr().err


def test_run_demo_result_and_state(tmp_path: Path) -> None:
    localscorers.set_tracking_uri(tmp_path / "story.db")
    out = StringIO()

    result = story.run_demo(console=Console(file=out, width=120), traces=80)

    assert result.traces == 80
    assert result.explained_trace_id is not None
    reports = {r.scorer_name: r for r in result.reports}
    assert set(reports) == {"answer_length", "cites_source", "helpfulness", "is_concise"}
    assert reports["cites_source"].status == localscorers.ScorerStatus.STOPPED
    assert reports["answer_length"].sample_rate == 1.0
    assert reports["answer_length"].mean_value is not None
    assert reports["is_concise"].pass_rate is not None
    # The app fails on some questions: cites_source records those as error feedback.
    assert reports["cites_source"].errors > 0
    assert all(r.pending == 0 for r in result.reports)
    assert result.evaluations == sum(r.evaluations for r in result.reports)
    assert result.backfill_job_id is not None
    job = get_backfill_job(result.backfill_job_id)
    assert job.status == "SUCCEEDED"
    assert job.processed > 0
    assert "Job SUCCEEDED" in out.getvalue()

    explained = {e.scorer_name: e.outcome for e in localscorers.explain(result.explained_trace_id)}
    assert explained["cites_source"] == localscorers.ExplainOutcome.FILTERED_OUT

    # Every scorer is stored by reference, so a worker in another process can run it.
    for scorer in localscorers.list_scorers():
        definition = scorer.definition()
        assert definition["kind"] in {"reference", "class"}, definition
        assert "localscorers" in definition["reference"]


def test_demo_needs_enough_traces(tmp_path: Path) -> None:
    localscorers.set_tracking_uri(tmp_path / "story.db")
    with pytest.raises(localscorers.ConfigurationError, match="at least 20"):
        story.run_demo(console=Console(file=StringIO()), traces=5)


def test_demo_as_a_process_under_30_seconds(tmp_path: Path) -> None:
    db = tmp_path / "process-story.db"
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "localscorers", "--db", str(db), "demo"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=60,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert completed.returncode == 0, completed.stderr
    output = _flat(completed.stdout)
    for step in STEPS:
        assert step in output
    assert "200 traces" in output
    assert "Traceback" not in completed.stderr
    assert elapsed < 30


@pytest.mark.parametrize("width", [60, 80, 120])
def test_demo_at_any_width_cuts_nothing(tmp_path: Path, width: int) -> None:
    localscorers.set_tracking_uri(tmp_path / "story.db")
    out = StringIO()
    result = story.run_demo(console=Console(file=out, width=width), traces=20)
    text = out.getvalue()
    assert "…" not in text
    lines = text.splitlines()
    for name in ("answer_length", "cites_source", "helpfulness", "is_concise"):
        assert any(name in line for line in lines), name
    explained = result.explained_trace_id
    assert explained is not None
    assert any(explained in line for line in lines)
    # The closing commands are printed unwrapped on purpose, to be copied whole.
    assert all(
        len(line.rstrip()) <= width for line in lines if not line.startswith("  localscorers")
    )
