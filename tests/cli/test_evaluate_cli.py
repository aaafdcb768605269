"""``localscorers evaluate DATA.jsonl --scorer NAME...``, run in-process."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import localscorers
from localscorers.cli import app, run

ROWS = [
    {"inputs": {"q": "2+2"}, "outputs": "4", "expectations": {"answer": "4"}},
    {"inputs": {"q": "3+3"}, "outputs": "7", "expectations": {"answer": "6"}},
]


@localscorers.scorer
def right(outputs: Any, expectations: dict[str, Any]) -> bool:
    return bool(outputs == expectations["answer"])


@localscorers.scorer
def chars(outputs: Any) -> int:
    return len(str(outputs))


@dataclass
class Result:
    code: int
    out: str
    err: str


Invoke = Callable[..., Result]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "eval.db"
    localscorers.set_tracking_uri(path)
    localscorers.set_experiment("dev")
    right.register()
    chars.register()
    return path


@pytest.fixture
def rows_file(tmp_path: Path) -> Path:
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in ROWS) + "\n")
    return path


@pytest.fixture
def cli(db: Path, capsys: pytest.CaptureFixture[str]) -> Invoke:
    def invoke(*argv: str) -> Result:
        capsys.readouterr()
        code = run(app, ["--db", str(db), "-e", "dev", *argv])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


def test_evaluate_prints_a_summary_table(cli: Invoke, rows_file: Path) -> None:
    result = cli("evaluate", str(rows_file), "--scorer", "right", "--scorer", "chars")

    assert result.code == 0, result.err
    assert "right" in result.out
    assert "pass_rate" in result.out
    assert "50.0%" in result.out
    assert "localscorers.evaluation_id" in result.out


def test_evaluate_json_and_resume(cli: Invoke, rows_file: Path) -> None:
    first = cli("evaluate", str(rows_file), "-s", "right", "--json", "--evaluation-id", "e1")
    again = cli("evaluate", str(rows_file), "-s", "right", "--json", "--evaluation-id", "e1")

    assert first.code == 0, first.err
    body = json.loads(first.out)
    assert body["evaluation_id"] == "e1"
    assert body["metrics"] == {
        "right/mean": 0.5,
        "right/pass_rate": 0.5,
        "right/error_count": 0.0,
    }
    assert json.loads(again.out)["trace_ids"] == body["trace_ids"]
    experiment = localscorers.get_experiment_by_name("dev")
    assert experiment is not None
    assert body["experiment_id"] == experiment.experiment_id


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"inputs": {}}\nnot json\n', "line 2 is not JSON"),
        ("[1, 2]", "row 1 is int"),
        ("\n\n", "holds no rows"),
    ],
)
def test_bad_data_files_are_one_line_errors(
    cli: Invoke, tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)

    result = cli("evaluate", str(path), "--scorer", "right")

    assert result.code == 1
    assert message in " ".join(result.err.split())
    assert "Traceback" not in result.err


def test_missing_file_and_unknown_scorer_are_errors(cli: Invoke, rows_file: Path) -> None:
    missing = cli("evaluate", str(rows_file.with_name("nope.jsonl")), "--scorer", "right")
    unknown = cli("evaluate", str(rows_file), "--scorer", "nobody")

    assert missing.code == 1
    assert "Cannot read the data file" in missing.err
    assert unknown.code == 1
    assert "nobody" in unknown.err


def test_report_of_one_evaluation(cli: Invoke, rows_file: Path) -> None:
    cli("evaluate", str(rows_file), "-s", "right", "--evaluation-id", "e2")

    result = cli("report", "--evaluation-id", "e2", "--json")

    assert result.code == 0, result.err
    [entry] = json.loads(result.out)
    assert entry["scorer_name"] == "right"
    assert entry["evaluations"] == 2
