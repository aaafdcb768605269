"""The command line: scorers, traces, explain and report, in-process and as real processes.

In-process runs go through ``localscorers.cli.common.run``, the function the ``localscorers`` entry
point calls, so exit codes are the real ones: 0 ok, 1 a user error, 2 a usage error.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

import localscorers
from localscorers.cli import app, run


@localscorers.scorer
def is_long(outputs: Any) -> bool:
    return len(outputs) > 5


@localscorers.scorer
def word_total(outputs: Any) -> int:
    return len(outputs.split())


@localscorers.scorer
def turn_count(session: list[localscorers.Trace]) -> int:
    return len(session)


def is_long_v2(outputs: Any) -> bool:
    return len(outputs) > 10


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class Cli(Protocol):
    """The ``cli`` fixture: runs one command line in-process."""

    def __call__(self, *argv: str) -> Result: ...


@pytest.fixture
def cli_db(tmp_path: Path) -> Path:
    """A database with experiment 'cli': scorer is_long filtered to prod, word_total registered."""
    path = tmp_path / "cli.db"
    localscorers.set_tracking_uri(path)
    localscorers.set_experiment("cli")
    is_long.register().start(
        sampling_config=localscorers.ScorerSamplingConfig(filter_string="tags.env = 'prod'")
    )
    word_total.register()
    for index, (env, outputs) in enumerate(
        [("prod", "a fairly long answer"), ("prod", "tiny"), ("dev", "another long answer")]
    ):
        localscorers.log_trace(
            inputs={"question": f"q{index}"},
            outputs=outputs,
            name="bot",
            tags={"env": env},
            request_time=1_700_000_000_000 + index * 1000,
        )
    assert localscorers.flush(timeout=30)
    return path


@pytest.fixture
def cli(cli_db: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run the command line in-process against the fixture database and experiment."""

    def invoke(*argv: str) -> Result:
        capsys.readouterr()
        code = run(app, ["--db", str(cli_db), "--experiment", "cli", *argv])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


def _trace_ids(filter_string: str) -> list[str]:
    return [t.info.trace_id for t in localscorers.search_traces(filter_string=filter_string)]


def _assert_user_error(result: Result, fragment: str) -> None:
    assert result.code == 1, result
    assert result.out == ""
    assert result.err.startswith("error: ")
    assert fragment in " ".join(result.err.split())
    assert "Traceback" not in result.err


# -- scorers ---------------------------------------------------------------------------------


def test_scorers_list_json(cli: Cli) -> None:
    result = cli("scorers", "list", "--json")
    assert result.code == 0
    listed = {s["name"]: s for s in result.json()}
    assert set(listed) == {"is_long", "word_total"}
    assert listed["is_long"]["status"] == "ACTIVE"
    assert listed["is_long"]["filter_string"] == "tags.env = 'prod'"
    assert listed["is_long"]["sample_rate"] == 1.0
    assert listed["is_long"]["reference"] == "tests.cli.test_cli:is_long"
    assert listed["word_total"]["status"] == "REGISTERED"
    assert listed["word_total"]["version"] == 1


def test_scorers_list_table(cli: Cli) -> None:
    result = cli("scorers", "list")
    assert result.code == 0
    assert "is_long" in result.out
    assert "ACTIVE" in result.out
    assert "REGISTERED" in result.out


def test_scorers_list_empty_experiment(cli_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    localscorers.set_experiment("empty")
    code = run(app, ["--db", str(cli_db), "-e", "empty", "scorers", "list", "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out) == []
    assert run(app, ["--db", str(cli_db), "-e", "empty", "scorers", "list"]) == 0
    assert "No scorers are registered in experiment 'empty'" in capsys.readouterr().out


def test_read_commands_refuse_an_unknown_experiment(
    cli_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in (["scorers", "list"], ["traces", "search"], ["jobs", "list"], ["report"]):
        assert run(app, ["--db", str(cli_db), "-e", "typo", *command]) == 1
        err = capsys.readouterr().err
        assert "No experiment named 'typo'" in err
        assert "localscorers experiments list" in err
    assert localscorers.get_experiment_by_name("typo") is None


def test_default_experiment_points_at_the_one_with_content(
    cli_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(app, ["--db", str(cli_db), "scorers", "list"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "experiment 'Default' has no scorers; 'cli' has 2: use -e cli" in out
    assert run(app, ["--db", str(cli_db), "traces", "search"]) == 0
    assert "'cli' has 3: use -e cli" in " ".join(capsys.readouterr().out.split())
    assert run(app, ["--db", str(cli_db), "scorers", "list", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == []
    assert "use -e cli" in captured.err


def test_experiments_list(cli_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(app, ["--db", str(cli_db), "experiments", "list", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["cli"]["scorers"] == 2
    assert rows["cli"]["traces"] == 3
    assert rows["Default"]["traces"] == 0
    assert run(app, ["--db", str(cli_db), "experiments", "list"]) == 0
    assert "cli" in capsys.readouterr().out
    assert [e.name for e in localscorers.search_experiments()] == ["Default", "cli"]
    assert len(localscorers.search_experiments(max_results=1)) == 1
    with pytest.raises(localscorers.ConfigurationError, match="max_results"):
        localscorers.search_experiments(max_results=0)


def test_scorers_get_latest_and_older_version(cli: Cli) -> None:
    localscorers.scorer(name="is_long")(is_long_v2).register()
    latest = cli("scorers", "get", "is_long", "--json").json()
    first = cli("scorers", "get", "is_long", "--version", "1", "--json").json()
    assert (latest["version"], latest["latest_version"]) == (2, 2)
    assert (first["version"], first["latest_version"]) == (1, 2)
    assert first["definition"]["reference"] == "tests.cli.test_cli:is_long"
    assert latest["definition"]["reference"] == "tests.cli.test_cli:is_long_v2"
    shown = cli("scorers", "get", "is_long")
    assert shown.code == 0
    assert "tests.cli.test_cli:is_long_v2" in shown.out


def test_scorers_get_unknown_is_a_user_error(cli: Cli) -> None:
    _assert_user_error(cli("scorers", "get", "nope"), "No scorer named 'nope'")
    _assert_user_error(cli("scorers", "get", "is_long", "--version", "9"), "has no version 9")


def test_scorers_start_update_stop_round_trip(cli: Cli) -> None:
    started = cli("scorers", "start", "word_total", "--sample-rate", "0.25", "--json")
    assert started.code == 0
    assert started.json()["status"] == "ACTIVE"
    assert started.json()["sample_rate"] == 0.25
    assert localscorers.get_scorer(name="word_total").sample_rate == 0.25

    updated = cli("scorers", "update", "word_total", "-r", "0.5", "--filter", "tags.env = 'dev'")
    assert updated.code == 0
    assert "ACTIVE" in updated.out
    scorer = localscorers.get_scorer(name="word_total")
    assert (scorer.sample_rate, scorer.filter_string) == (0.5, "tags.env = 'dev'")

    # update replaces the whole config: a filter not repeated is cleared, as in MLflow.
    cli("scorers", "update", "word_total", "-r", "0.5")
    assert localscorers.get_scorer(name="word_total").filter_string is None

    stopped = cli("scorers", "stop", "word_total", "--json").json()
    assert (stopped["status"], stopped["sample_rate"]) == ("STOPPED", 0.0)
    assert localscorers.get_scorer(name="word_total").status == localscorers.ScorerStatus.STOPPED


def test_scorers_start_and_update_set_a_session_scorers_idle_time(cli: Cli) -> None:
    turn_count.register()
    started = cli("scorers", "start", "turn_count", "--session-idle-seconds", "60", "--json")
    assert started.code == 0
    assert (started.json()["takes_session"], started.json()["session_idle_seconds"]) == (True, 60)
    assert localscorers.get_scorer(name="turn_count").session_idle_seconds == 60
    assert "60 s" in cli("scorers", "get", "turn_count").out

    # update replaces the whole config: an idle time not repeated is the default again.
    updated = cli("scorers", "update", "turn_count", "-r", "1")
    assert "session idle 300 s" in " ".join(updated.out.split())
    assert localscorers.get_scorer(name="turn_count").session_idle_seconds == 300

    for bad in ("0", "-5", "nan"):
        _assert_user_error(
            cli("scorers", "update", "turn_count", "-r", "1", "--session-idle-seconds", bad),
            "--session-idle-seconds must be",
        )
    assert cli("scorers", "start", "turn_count", "--session-idle-seconds", "soon").code == 2


def test_scorers_lifecycle_errors_exit_1(cli: Cli) -> None:
    _assert_user_error(cli("scorers", "update", "word_total", "-r", "0.5"), "it is REGISTERED")
    _assert_user_error(cli("scorers", "start", "word_total", "-r", "0"), "scorers stop")
    _assert_user_error(cli("scorers", "start", "ghost"), "Cannot start scorer 'ghost'")
    _assert_user_error(
        cli("scorers", "start", "word_total", "--filter", "tags.env = "), "Invalid filter"
    )


def test_scorers_usage_errors_exit_2(cli: Cli) -> None:
    assert cli("scorers", "start", "word_total", "--sample-rate", "1.5").code == 2
    assert cli("scorers", "update", "word_total").code == 2  # --sample-rate is required
    assert cli("scorers", "get").code == 2
    assert cli("scorers", "frobnicate").code == 2
    assert cli("scorers", "delete", "is_long", "--version", "0").code == 2


def test_scorers_delete_one_version_then_all(cli: Cli) -> None:
    localscorers.scorer(name="is_long")(is_long_v2).register()
    deleted = cli("scorers", "delete", "is_long", "--version", "2", "--json")
    assert deleted.json() == {
        "name": "is_long",
        "experiment_id": deleted.json()["experiment_id"],
        "version": 2,
        "deleted": True,
    }
    assert localscorers.get_scorer(name="is_long").version == 1
    result = cli("scorers", "delete", "is_long")
    assert result.code == 0
    assert "Deleted scorer is_long" in result.out
    _assert_user_error(cli("scorers", "delete", "is_long"), "No scorer named 'is_long'")
    assert [s.name for s in localscorers.list_scorers()] == ["word_total"]


def test_register_builtin_judges(cli: Cli) -> None:
    safety = cli(*shlex.split("scorers register-builtin Safety --name safe -m openai:/m --json"))
    assert safety.code == 0, safety
    assert safety.json()["reference"] == "localscorers.judges.builtin:Safety"
    assert safety.json()["status"] == "REGISTERED"

    rules = cli(
        *shlex.split(
            "scorers register-builtin guidelines --name polite "
            "--guideline 'Be polite.' --guideline 'No jargon.'"
        )
    )
    assert rules.code == 0, rules
    stored = cli("scorers", "get", "polite", "--json").json()["definition"]
    assert stored["config"]["guidelines"] == ["Be polite.", "No jargon."]

    custom = cli(
        *shlex.split(
            "scorers register-builtin make_judge --name helpful "
            "--instructions 'Is {{ outputs }} helpful?' "
            "--model python:/localscorers.cli.demo_app:demo_judge_model --json"
        )
    )
    assert custom.code == 0, custom
    assert custom.json()["reference"] == "localscorers.judges.builtin:InstructionsJudge"
    judge = localscorers.get_scorer(name="helpful")
    assert judge.name == "helpful"
    assert judge(outputs="Reset it from the sign-in page.").value == "true"


@pytest.mark.parametrize(
    "command",
    [
        "Oracle --name x",  # not a judge
        "make_judge --name x",  # make_judge needs --instructions
        "Guidelines --name x",  # Guidelines needs --guideline
        "Safety --name x --instructions y",  # --instructions is make_judge's
        "Safety --name x --guideline y",  # --guideline is Guidelines'
        "Safety",  # --name is required
    ],
)
def test_register_builtin_usage_errors_exit_2(cli: Cli, command: str) -> None:
    assert cli("scorers", "register-builtin", *shlex.split(command)).code == 2


def test_register_builtin_user_errors_exit_1(cli: Cli) -> None:
    _assert_user_error(
        cli(*shlex.split("scorers register-builtin Safety --name x --model gpt-4")),
        "Unsupported judge model",
    )
    _assert_user_error(
        cli(*shlex.split("scorers register-builtin make_judge --name x --instructions hi")),
        "template variable",
    )


# -- traces and explain ----------------------------------------------------------------------


def test_traces_search_json_with_filter_order_and_limit(cli: Cli) -> None:
    everything = cli("traces", "search", "--json").json()
    assert len(everything) == 3
    assert [t["info"]["request_time"] for t in everything] == sorted(
        (t["info"]["request_time"] for t in everything), reverse=True
    )
    prod = cli("traces", "search", "--filter", "tags.env = 'prod'", "--json").json()
    assert {t["info"]["tags"]["env"] for t in prod} == {"prod"}
    assert len(prod) == 2
    oldest = cli("traces", "search", "--order-by", "timestamp_ms ASC", "-n", "1", "--json")
    assert oldest.code == 0
    assert [t["data"]["request"] for t in oldest.json()] == [{"question": "q0"}]
    assert "first 1" in oldest.err  # the limit was hit, said on stderr, JSON stays clean


def test_traces_search_table_and_empty(cli: Cli) -> None:
    table = cli("traces", "search")
    assert table.code == 0
    assert "3 trace(s)" in table.out
    assert "is_long" in table.out
    nothing = cli("traces", "search", "--filter", "tags.env = 'nowhere'")
    assert nothing.code == 0
    assert "No traces match" in nothing.out


def test_traces_search_bad_filter_is_a_user_error(cli: Cli) -> None:
    result = cli("traces", "search", "--filter", "tags.env ==== 'x'")
    assert result.code == 1
    assert result.err.startswith("error: Invalid filter")
    assert "Traceback" not in result.err
    assert cli("traces", "search", "--max-results", "0").code == 2


def test_traces_get(cli: Cli) -> None:
    (trace_id,) = _trace_ids("tags.env = 'prod' AND feedback.is_long = 'true'")
    got = cli("traces", "get", trace_id, "--json").json()
    assert got["info"]["trace_id"] == trace_id
    assert got["data"]["response"] == "a fairly long answer"
    assert [a["name"] for a in got["info"]["assessments"]] == ["is_long"]
    shown = cli("traces", "get", trace_id)
    assert shown.code == 0
    assert trace_id in shown.out
    assert "spans" in shown.out
    assert "assessments" in shown.out
    _assert_user_error(cli("traces", "get", "tr-missing"), "No trace has id 'tr-missing'")


def test_explain_json_and_table(cli: Cli) -> None:
    (dev,) = _trace_ids("tags.env = 'dev'")
    explained = cli("explain", dev, "--json").json()
    assert explained["trace_id"] == dev
    outcomes = {e["scorer_name"]: e["outcome"] for e in explained["entries"]}
    assert outcomes == {"is_long": "FILTERED_OUT", "word_total": "NOT_ACTIVE"}
    table = cli("explain", dev)
    assert table.code == 0
    assert "filtered out" in table.out
    assert "not active" in table.out
    _assert_user_error(cli("explain", "tr-missing"), "No trace has id")
    assert cli("explain").code == 2


def test_explain_without_scorers(cli_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    localscorers.set_experiment("bare")
    trace_id = localscorers.log_trace(inputs=1, outputs=2)
    assert run(app, ["--db", str(cli_db), "explain", trace_id]) == 0
    assert "no registered scorers" in " ".join(capsys.readouterr().out.split())


# -- report ----------------------------------------------------------------------------------


def test_report_json(cli: Cli) -> None:
    reports = {r["scorer_name"]: r for r in cli("report", "--json").json()}
    assert set(reports) == {"is_long", "word_total"}
    assert reports["is_long"]["evaluations"] == 2
    assert reports["is_long"]["pass_rate"] == 0.5
    assert reports["is_long"]["error_rate"] == 0.0
    assert reports["is_long"]["buckets"][0]["evaluations"] == 2
    assert reports["word_total"]["evaluations"] == 0
    assert reports["word_total"]["status"] == "REGISTERED"


def test_report_since_and_bucket(cli: Cli) -> None:
    future = cli("report", "--since", "2999-01-01", "--json").json()
    assert all(r["evaluations"] == 0 for r in future)
    recent = cli("report", "--since", "1h", "--bucket", "day", "--json").json()
    assert {r["bucket"] for r in recent} == {"DAY"}
    assert sum(r["evaluations"] for r in recent) == 2
    assert cli("report", "--since", "last tuesday").code == 2
    assert cli("report", "--bucket", "fortnight").code == 2


def test_report_table(cli: Cli) -> None:
    result = cli("report")
    assert result.code == 0
    assert "is_long" in result.out
    assert "50.0% pass" in result.out
    assert "Errors / evaluations per hour" in result.out


def test_report_png_without_matplotlib_is_a_user_error(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    _assert_user_error(cli("report", "--png", str(tmp_path / "r.png")), "needs matplotlib")


def test_unknown_command_is_a_usage_error(cli: Cli) -> None:
    assert cli("frobnicate").code == 2


# -- real processes --------------------------------------------------------------------------


def _process(cli_db: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    # Rich wraps stderr at 80 columns when it is not a terminal; a wide console keeps
    # the one-line error on one physical line so the test can count lines.
    env["COLUMNS"] = "300"
    return subprocess.run(
        [sys.executable, "-m", "localscorers", *argv, "--db", str(cli_db), "-e", "cli"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_process_scorers_list_and_user_error(cli_db: Path) -> None:
    listed = _process(cli_db, "scorers", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {s["name"] for s in json.loads(listed.stdout)} == {"is_long", "word_total"}

    missing = _process(cli_db, "scorers", "stop", "ghost")
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert len(missing.stderr.strip().splitlines()) == 1
    assert missing.stderr.startswith("error: Cannot stop scorer 'ghost'")
    assert "Traceback" not in missing.stderr

    usage = _process(cli_db, "scorers", "start", "word_total", "--sample-rate", "7")
    assert usage.returncode == 2
    assert "Traceback" not in usage.stderr


def test_process_traces_and_explain(cli_db: Path) -> None:
    searched = _process(cli_db, "traces", "search", "--filter", "tags.env = 'dev'", "--json")
    assert searched.returncode == 0, searched.stderr
    (trace,) = json.loads(searched.stdout)
    trace_id = trace["info"]["trace_id"]
    got = _process(cli_db, "traces", "get", trace_id, "--json")
    assert json.loads(got.stdout)["info"]["tags"] == {"env": "dev"}
    explained = _process(cli_db, "explain", trace_id, "--json")
    assert explained.returncode == 0, explained.stderr
    outcomes = {e["scorer_name"]: e["outcome"] for e in json.loads(explained.stdout)["entries"]}
    assert outcomes["is_long"] == "FILTERED_OUT"


def test_process_report(cli_db: Path) -> None:
    result = _process(cli_db, "report", "--json")
    assert result.returncode == 0, result.stderr
    reports = {r["scorer_name"]: r for r in json.loads(result.stdout)}
    assert reports["is_long"]["pass_rate"] == 0.5


def test_user_errors_print_one_literal_line(cli: Cli) -> None:
    # Brackets survive (no rich markup), and a multi-line message (a filter caret) is one line.
    result = cli("scorers", "get", "nope[plot]")
    assert result.code == 1
    assert result.err.startswith("error: No scorer named 'nope[plot]' is registered")
    assert len(result.err.strip().splitlines()) == 1
    bad_filter = cli("traces", "search", "--filter", "tags.env = ")
    assert bad_filter.code == 1
    assert len(bad_filter.err.strip().splitlines()) == 1
    assert "position" in bad_filter.err


@pytest.mark.parametrize(
    ("argv", "fix"),
    [
        (["scorers", "start", "nope"], "'localscorers scorers register-builtin'"),
        (["scorers", "update", "word_total", "-r", "0.5"], "'localscorers scorers start NAME'"),
        (["scorers", "start", "word_total", "-r", "0"], "'localscorers scorers stop NAME'"),
        (["backfill", "-s", "word_total"], "--scorer word_total=RATE"),
        (["backfill", "-s", "nope"], "'localscorers scorers list'"),
        (["explain", "tr-nope"], "--db"),
        (["jobs", "get", "bf-nope"], "'localscorers jobs list'"),
        (["scorers", "get", "nope"], "experiment 'cli'"),
    ],
)
def test_user_errors_name_commands_not_python_calls(cli: Cli, argv: list[str], fix: str) -> None:
    result = cli(*argv)
    assert result.code == 1
    [line] = result.err.strip().splitlines()
    assert fix in line
    assert "()" not in line
