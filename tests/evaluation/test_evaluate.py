"""evaluate(): rows to traces, scorers on the pool, feedback, metrics, resume, errors."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import localscorers
from localscorers import (
    ConfigurationError,
    Correctness,
    EvaluationResult,
    Feedback,
    ScorerNotFoundError,
    ScorerSamplingConfig,
    TransientError,
    evaluate,
    scorer,
)

YES = '{"rationale": "Matches the expected facts.", "result": "yes"}'
NO = '{"rationale": "Misses a fact.", "result": "no"}'
pd = pytest.importorskip("pandas")
ID_FILTER = "metadata.`localscorers.evaluation_id` = '{}'"

DATA = [
    {"inputs": {"q": "2+2"}, "outputs": "4", "expectations": {"expected_response": "4"}},
    {"inputs": {"q": "3+3"}, "outputs": "7", "expectations": {"expected_response": "6"}},
    {"inputs": {"q": "1+1"}, "outputs": "2", "expectations": {"expected_response": "2"}},
]


@scorer
def exact(outputs: Any, expectations: dict[str, Any]) -> bool:
    return bool(outputs == expectations.get("expected_response"))


@scorer
def length(outputs: Any) -> int:
    return len(str(outputs))


@scorer(aggregations=["min", "max", "p90"])
def spread(outputs: Any) -> float:
    return float(outputs)


@scorer
def broken(outputs: Any) -> bool:
    raise RuntimeError(f"cannot judge {outputs}")


def feedback_on(trace_id: str, name: str) -> list[Feedback]:
    trace = localscorers.get_trace(trace_id)
    return [a for a in trace.info.assessments if isinstance(a, Feedback) and a.name == name]


def test_rows_become_traces_with_feedback_and_metrics(tracking: Path) -> None:
    result = evaluate(data=DATA, scorers=[exact, length, broken])

    assert isinstance(result, EvaluationResult)
    assert result.metrics == {
        "exact/mean": pytest.approx(2 / 3),
        "exact/pass_rate": pytest.approx(2 / 3),
        "exact/error_count": 0.0,
        "length/mean": 1.0,
        "length/error_count": 0.0,
        "broken/error_count": 3.0,
    }
    assert len(result.trace_ids) == 3
    first = localscorers.get_trace(result.trace_ids[0])
    assert first.data.request == {"q": "2+2"}
    assert first.data.response == "4"
    assert first.expectations == {"expected_response": "4"}
    assert first.info.metadata["localscorers.evaluation_id"] == result.evaluation_id
    assert first.info.metadata["localscorers.online_scoring"] == "off"
    [verdict] = feedback_on(result.trace_ids[1], "exact")
    assert verdict.value is False
    assert verdict.origin == f"evaluate:{result.evaluation_id}"
    assert verdict.scorer_name == "exact"
    [error] = feedback_on(result.trace_ids[0], "broken")
    assert error.error is not None
    assert "cannot judge 4" in (error.error.error_message or "")


def test_search_traces_finds_the_evaluation_by_its_id(tracking: Path) -> None:
    first = evaluate(data=DATA, scorers=[exact])
    evaluate(data=DATA[:1], scorers=[exact])

    found = localscorers.search_traces(filter_string=ID_FILTER.format(first.evaluation_id))

    assert sorted(t.info.trace_id for t in found) == sorted(first.trace_ids)
    assert first.run_id == first.evaluation_id


def test_result_df_has_one_row_per_data_row(tracking: Path) -> None:
    result = evaluate(data=DATA, scorers=[exact, broken])

    frame = result.result_df
    assert list(frame["trace_id"]) == result.trace_ids
    assert list(frame["exact/value"]) == [True, False, True]
    assert list(frame["inputs"]) == [row["inputs"] for row in DATA]
    assert frame["broken/error"].str.contains("cannot judge").all()
    assert "evaluation" in str(result)
    assert "exact/pass_rate" in str(result)


def test_a_scorers_aggregations_replace_the_default_mean(tracking: Path) -> None:
    result = evaluate(data=DATA, scorers=[spread])

    assert result.metrics["spread/min"] == 2.0
    assert result.metrics["spread/max"] == 7.0
    assert result.metrics["spread/p90"] == pytest.approx(6.4)
    assert "spread/mean" not in result.metrics


def test_a_dataframe_is_read_like_a_list_of_dicts(tracking: Path) -> None:
    frame = pd.DataFrame(
        {"inputs": [{"q": "a"}, {"q": "b"}], "outputs": ["A", "b"], "expectations": [None, None]}
    )

    @scorer
    def upper(outputs: Any) -> bool:
        return str(outputs).isupper()

    result = evaluate(data=frame, scorers=[upper])

    assert result.metrics["upper/pass_rate"] == 0.5
    assert localscorers.get_trace(result.trace_ids[1]).data.response == "b"


def test_traces_as_data_are_copied_into_the_evaluation(tracking: Path) -> None:
    original = localscorers.log_trace(
        inputs={"q": "hi"},
        outputs="hello",
        tags={"env": "dev"},
        metadata={"mlflow.trace.session": "s1"},
    )
    trace = localscorers.get_trace(original)

    result = evaluate(data=[trace], scorers=[length])

    [copy_id] = result.trace_ids
    assert copy_id != original
    copy = localscorers.get_trace(copy_id)
    assert copy.data.response == "hello"
    assert copy.info.tags["env"] == "dev"
    assert copy.info.metadata["mlflow.trace.session"] == "s1"
    assert [s.name for s in copy.data.spans] == [s.name for s in trace.data.spans]
    assert feedback_on(original, "length") == []


def test_predict_fn_outputs_come_from_a_traced_call(tracking: Path) -> None:
    @localscorers.trace(span_type="RETRIEVER")
    def retrieve(q: str) -> list[str]:
        return [f"doc about {q}"]

    def app(q: str) -> str:
        retrieve(q)
        return {"2+2": "4", "3+3": "6"}.get(q, "?")

    result = evaluate(data=DATA, scorers=[exact], predict_fn=app)

    assert result.metrics["exact/pass_rate"] == pytest.approx(2 / 3)
    trace = localscorers.get_trace(result.trace_ids[1])
    assert trace.data.request == {"q": "3+3"}
    assert trace.data.response == "6"
    assert trace.expectations == {"expected_response": "6"}
    assert sorted(s.name for s in trace.data.spans) == ["app", "retrieve"]
    assert trace.info.metadata["localscorers.evaluation_row"] == "1"


def test_a_failing_predict_fn_is_an_error_trace_that_is_still_scored(tracking: Path) -> None:
    def app(q: str) -> str:
        raise ValueError("model down")

    result = evaluate(data=DATA[:1], scorers=[length], predict_fn=app)

    trace = localscorers.get_trace(result.trace_ids[0])
    assert trace.info.status == "ERROR"
    assert [f.value for f in feedback_on(trace.info.trace_id, "length")] == [4]  # "None"


def test_a_judge_with_a_callable_model_runs_like_in_production(tracking: Path) -> None:
    answers = iter([YES, NO, YES])
    lock = threading.Lock()

    def model(messages: list[dict[str, str]]) -> str:
        with lock:
            return next(answers)

    result = evaluate(data=DATA, scorers=[Correctness(model=model)])

    assert result.metrics["correctness/pass_rate"] == pytest.approx(2 / 3)
    [feedback] = feedback_on(result.trace_ids[0], "correctness")
    assert feedback.source is not None
    assert feedback.source.source_type == "LLM_JUDGE"
    assert feedback.rationale


def test_evaluation_traces_are_not_scored_by_active_online_scorers(tracking: Path) -> None:
    localscorers.set_experiment("prod")
    length.register().start(sampling_config=ScorerSamplingConfig(sample_rate=1.0))

    result = evaluate(data=DATA, scorers=[exact])
    localscorers.flush(timeout=30)

    for trace_id in result.trace_ids:
        assert feedback_on(trace_id, "length") == []


def test_scorers_given_by_registered_name(tracking: Path) -> None:
    length.register()

    result = evaluate(data=DATA, scorers=["length"])

    assert result.metrics["length/mean"] == 1.0
    assert feedback_on(result.trace_ids[0], "length")[0].scorer_version == 1


def test_rerunning_an_evaluation_id_skips_what_is_done(tracking: Path) -> None:
    calls: list[Any] = []

    @scorer
    def counted(outputs: Any) -> int:
        calls.append(outputs)
        return 1

    first = evaluate(data=DATA, scorers=[counted], evaluation_id="run-1")
    again = evaluate(data=DATA, scorers=[counted, exact], evaluation_id="run-1")

    assert len(calls) == 3
    assert again.trace_ids == first.trace_ids
    assert again.metrics["counted/mean"] == 1.0
    assert again.metrics["exact/pass_rate"] == pytest.approx(2 / 3)
    assert len(localscorers.search_traces(filter_string=ID_FILTER.format("run-1"))) == 3


def test_a_crash_loses_no_finished_feedback_and_a_rerun_resumes(
    tracking: Path, tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    log = tmp_path / "calls.txt"
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, sys, time
            import localscorers

            CRASH = sys.argv[1] == "crash"
            ID_FILTER = "metadata.`localscorers.evaluation_id` = 'durable'"


            def written():
                traces = localscorers.search_traces(filter_string=ID_FILTER)
                return sum(len(t.info.assessments) - 1 for t in traces)  # less the expectation


            @localscorers.scorer
            def careful(inputs):
                if CRASH and inputs["n"] == 5:
                    # Die mid-evaluation once the five calls before are committed.
                    deadline = time.monotonic() + 30
                    while written() < 5 and time.monotonic() < deadline:
                        time.sleep(0.01)
                    os._exit(3)
                with open({str(log)!r}, "a") as f:
                    f.write(f"{{sys.argv[1]}} {{inputs['n']}}\\n")
                return inputs["n"]


            data = [
                {{"inputs": {{"n": n}}, "outputs": n, "expectations": {{"n": n}}}}
                for n in range(10)
            ]
            result = localscorers.evaluate(data=data, scorers=[careful], evaluation_id="durable")
            print(result.metrics["careful/mean"])
            """
        )
    )
    env = {**subprocess_env, "LOCALSCORERS_MAX_WORKERS": "1"}
    crashed = subprocess.run(
        [sys.executable, str(script), "crash"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert crashed.returncode == 3, crashed.stderr
    before = localscorers.search_traces(filter_string=ID_FILTER.format("durable"))
    scored_before = {
        t.info.metadata["localscorers.evaluation_row"]
        for t in before
        if any(isinstance(a, Feedback) for a in t.info.assessments)
    }
    assert scored_before == {"0", "1", "2", "3", "4"}  # finished before the crash: kept

    resumed = subprocess.run(
        [sys.executable, str(script), "resume"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert resumed.returncode == 0, resumed.stderr
    assert float(resumed.stdout.strip()) == 4.5
    calls = [line.split() for line in log.read_text().splitlines()]
    assert sorted(n for run, n in calls if run == "resume") == ["5", "6", "7", "8", "9"]
    traces = localscorers.search_traces(filter_string=ID_FILTER.format("durable"))
    assert len(traces) == 10
    for trace in traces:
        assert len([a for a in trace.info.assessments if isinstance(a, Feedback)]) == 1


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def test_a_call_past_its_timeout_is_recorded_and_abandoned(
    tracking: Path, release: threading.Event
) -> None:
    @scorer(timeout_seconds=0.2)
    def stuck(outputs: Any) -> bool:
        release.wait()
        return True

    result = evaluate(data=DATA, scorers=[stuck, exact])

    assert result.metrics["stuck/error_count"] == 3.0
    assert result.metrics["exact/pass_rate"] == pytest.approx(2 / 3)
    [feedback] = feedback_on(result.trace_ids[0], "stuck")
    assert feedback.error is not None
    assert feedback.error.error_code == "SCORER_TIMEOUT"


def test_transient_errors_are_retried(tracking: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALSCORERS_BACKOFF_SECONDS", "0")
    attempts: dict[str, int] = {}
    lock = threading.Lock()

    @scorer
    def flaky(outputs: Any) -> str:
        with lock:
            attempts[outputs] = attempts.get(outputs, 0) + 1
            if attempts[outputs] < 3:
                raise TransientError("HTTP 503")
        return "ok"

    @scorer
    def hopeless(outputs: Any) -> str:
        raise TransientError("HTTP 429", error_code="RATE_LIMITED")

    result = evaluate(data=DATA, scorers=[flaky, hopeless])

    assert attempts == {"4": 3, "7": 3, "2": 3}
    assert [f.value for f in feedback_on(result.trace_ids[0], "flaky")] == ["ok"]
    [gave_up] = feedback_on(result.trace_ids[0], "hopeless")
    assert gave_up.error is not None
    assert gave_up.error.error_code == "RATE_LIMITED"


def test_max_concurrency_is_respected(tracking: Path) -> None:
    running = 0
    most = 0
    lock = threading.Lock()

    @scorer(max_concurrency=2)
    def limited(outputs: Any) -> bool:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        with lock:
            running -= 1
        return True

    evaluate(data=DATA * 10, scorers=[limited])

    assert 1 <= most <= 2


def test_importing_the_module_keeps_the_function(tracking: Path) -> None:
    import localscorers.offline_evaluation

    result = localscorers.evaluate(data=DATA[:1], scorers=[length])

    assert result.metrics["length/mean"] == 1.0
    assert localscorers.offline_evaluation.evaluate is localscorers.evaluate


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("rows.jsonl", "data must be a list of dicts"),
        ({"inputs": 1}, "data must be a list of dicts"),
        ([], "data is empty"),
        ([42], "Row 0 is a int"),
        ([{"inputs": {}, "output": "x"}], "unknown keys ['output']"),
        ([{"inputs": {}, "expectations": ["a"]}], "'expectations' must be a dict"),
        ([{"inputs": {}, "trace": "tr-1"}], "'trace' must be a Trace"),
        ([{"inputs": {}, "metadata": "x"}], "'metadata' must be a dict"),
    ],
)
def test_bad_data_is_a_configuration_error(tracking: Path, data: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=None) as info:
        evaluate(data=data, scorers=[length])
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"scorers": length}, ConfigurationError, "scorers must be a non-empty list"),
        ({"scorers": []}, ConfigurationError, "scorers must be a non-empty list"),
        ({"scorers": [len]}, ConfigurationError, "scorers must hold Scorer objects"),
        ({"scorers": [length, length]}, ConfigurationError, "Two scorers are named 'length'"),
        ({"scorers": ["nope"]}, ScorerNotFoundError, "nope"),
        ({"evaluation_id": "a b"}, ConfigurationError, "evaluation_id must be"),
        ({"evaluation_id": "x'--"}, ConfigurationError, "evaluation_id must be"),
        ({"predict_fn": 3}, ConfigurationError, "predict_fn must be callable"),
    ],
)
def test_bad_arguments_are_errors_that_say_the_fix(
    tracking: Path, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    arguments: dict[str, Any] = {"data": DATA, "scorers": [length], **kwargs}
    with pytest.raises(error) as info:
        evaluate(**arguments)
    assert message in str(info.value)


def test_predict_fn_needs_dict_inputs(tracking: Path) -> None:
    with pytest.raises(ConfigurationError, match="'inputs' must be a dict"):
        evaluate(data=[{"inputs": "2+2"}], scorers=[length], predict_fn=lambda q: q)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_progress_bar_is_drawn_only_on_a_terminal(
    tracking: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)

    result = evaluate(data=DATA, scorers=[length])

    assert result.metrics["length/mean"] == 1.0
    assert "evaluating" in terminal.getvalue()


def test_mlflow_style_names_reach_evaluate_and_the_session_judges(tracking: Path) -> None:
    import localscorers as mlflow

    result = mlflow.genai.evaluate(data=DATA[:1], scorers=[length])

    assert isinstance(result, mlflow.genai.EvaluationResult)
    assert mlflow.genai.scorers.ConversationCompleteness is localscorers.ConversationCompleteness
    assert mlflow.genai.scorers.UserFrustration is localscorers.UserFrustration


def test_the_report_covers_one_evaluation_and_production_leaves_it_out(tracking: Path) -> None:
    length.register().start()
    localscorers.log_trace(inputs={"q": "prod"}, outputs="in production")
    localscorers.flush(timeout=30)

    result = evaluate(data=DATA, scorers=[exact, broken])
    reports = {
        r.scorer_name: r for r in localscorers.scorer_report(evaluation_id=result.evaluation_id)
    }
    production = {r.scorer_name: r for r in localscorers.scorer_report()}

    assert set(reports) == {"exact", "broken"}
    assert reports["exact"].evaluations == 3
    assert reports["exact"].pass_rate == pytest.approx(2 / 3)
    assert reports["broken"].errors == 3
    assert set(production) == {"length"}
    assert production["length"].evaluations == 1


def test_two_runs_of_one_evaluation_at_once_keep_one_trace_and_result_per_row(
    tracking: Path,
) -> None:
    start = threading.Barrier(2)
    results: list[EvaluationResult] = []

    def run() -> None:
        start.wait()
        results.append(evaluate(data=DATA * 5, scorers=[exact, length], evaluation_id="twice"))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(results) == 2
    assert results[0].trace_ids == results[1].trace_ids
    traces = localscorers.search_traces(filter_string=ID_FILTER.format("twice"))
    assert len(traces) == 15
    for trace in traces:
        names = sorted(str(a.name) for a in trace.info.assessments if isinstance(a, Feedback))
        assert names == ["exact", "length"]


def test_one_evaluation_id_in_two_experiments_is_two_evaluations(tracking: Path) -> None:
    first = localscorers.set_experiment("a").experiment_id
    second = localscorers.set_experiment("b").experiment_id

    in_a = evaluate(data=DATA, scorers=[length], experiment_id=first, evaluation_id="same")
    in_b = evaluate(data=DATA, scorers=[length], experiment_id=second, evaluation_id="same")

    assert set(in_a.trace_ids).isdisjoint(in_b.trace_ids)
    assert localscorers.get_trace(in_b.trace_ids[0]).info.experiment_id == second


def test_raise_on_error_names_the_scorer_and_the_trace(tracking: Path) -> None:
    @localscorers.scorer
    def broken(outputs: Any) -> bool:
        raise RuntimeError(f"cannot judge {outputs!r}")

    with pytest.raises(localscorers.ScorerExecutionError) as caught:
        localscorers.evaluate(data=DATA[:1], scorers=[broken], raise_on_error=True)

    assert caught.value.scorer == "broken"
    assert caught.value.trace_id.startswith("tr-")
    assert "RuntimeError" in str(caught.value)
    assert "cannot judge" in str(caught.value)
    # Without it, the failure is counted, not raised; the feedback was written either way.
    result = localscorers.evaluate(data=DATA[:1], scorers=[broken])
    assert result.metrics["broken/error_count"] == 1.0


def test_evaluate_draws_a_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    # stderr is a pseudo-terminal here, as in an interactive shell: the bar is drawn.
    script = textwrap.dedent(
        f"""
        import localscorers
        localscorers.set_tracking_uri({str(tmp_path / "bar.db")!r})

        @localscorers.scorer
        def nonempty(outputs):
            return bool(outputs)

        result = localscorers.evaluate(
            data=[{{"inputs": i, "outputs": str(i)}} for i in range(20)], scorers=[nonempty]
        )
        print("metrics", result.metrics)
        """
    )
    controller, terminal = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-c", script],
            stdout=subprocess.PIPE,
            stderr=terminal,
            env={**os.environ, "TERM": "xterm"},  # rich draws nothing on a dumb terminal
            text=True,
            timeout=120,
            check=False,
        )
        os.close(terminal)
        drawn = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal side is closed: everything was read
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(controller)
    assert done.returncode == 0, drawn.decode(errors="replace")
    assert "'nonempty/mean': 1.0" in done.stdout
    assert b"evaluating" in drawn
