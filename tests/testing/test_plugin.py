"""The pytest plugin as a user meets it: a test file in tmp_path, no conftest, entry point only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from localscorers.testing import FakeJudgeModel, make_trace

SAMPLE_TESTS = """
import localscorers
from localscorers import make_judge


@localscorers.scorer
def is_polite(outputs):
    return "please" in outputs.lower()


def test_scorer_on_a_trace_without_a_database(make_trace):
    trace = make_trace({"q": "hi"}, "Please wait", expectations={"tone": "polite"})
    assert trace.data.response == "Please wait"
    assert trace.expectations == {"tone": "polite"}
    assert is_polite(outputs=trace.data.response) is True


def test_online_scoring_in_a_fresh_database(localscorers_db, assert_feedback):
    assert localscorers_db.path.parent.exists()
    is_polite.register().start()
    polite = localscorers.log_trace(inputs={"q": "a"}, outputs="Please hold")
    rude = localscorers.log_trace(inputs={"q": "b"}, outputs="No")
    localscorers_db.flush()
    assert_feedback(polite, "is_polite", value=True)
    assert_feedback(rude, "is_polite", value=False)


def test_every_test_gets_its_own_database(localscorers_db):
    assert localscorers.list_scorers() == []
    assert localscorers.search_traces() == []


def test_judge_with_a_fake_model(localscorers_db, fake_judge_model, assert_feedback):
    judge = make_judge(
        name="helpful",
        instructions="Is {{ outputs }} helpful?",
        model=fake_judge_model,
        feedback_value_type=bool,
    )
    fake_judge_model.returns(False, rationale="too short")
    judge.register().start()
    trace_id = localscorers.log_trace(inputs={"q": "a"}, outputs="No")
    feedback = assert_feedback(trace_id, "helpful", value=False)
    assert feedback.rationale == "too short"
    assert fake_judge_model.calls


def test_assert_feedback_fails_with_a_clear_message(localscorers_db, assert_feedback):
    import pytest

    is_polite.register().start()
    trace_id = localscorers.log_trace(inputs={}, outputs="Please")
    with pytest.raises(AssertionError, match="is True, expected False"):
        assert_feedback(trace_id, "is_polite", value=False)
    with pytest.raises(AssertionError, match="no feedback named 'missing'"):
        assert_feedback(trace_id, "missing")
"""


def test_plugin_through_its_entry_point(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_sample.py").write_text(SAMPLE_TESTS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCALSCORERS_", "PYTEST_"))}
    env["HOME"] = str(tmp_path / "home")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_sample.py"],
        capture_output=True,
        text=True,
        cwd=project,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed" in result.stdout
    # Nothing was written outside tmp_path: no default database under HOME.
    assert not (tmp_path / "home").exists()


def test_make_trace_builds_spans_and_defaults() -> None:
    trace = make_trace(
        {"question": "q"},
        {"answer": "a"},
        spans=[{"name": "retrieve", "span_type": "RETRIEVER", "outputs": [{"doc": 1}]}],
        tags={"env": "prod"},
        status="error",
    )
    assert trace.info.trace_id.startswith("tr-")
    assert len(trace.info.trace_id) == 35
    assert trace.info.status == "ERROR"
    assert trace.info.tags == {"env": "prod"}
    assert trace.data.spans[0].name == "retrieve"
    assert trace.data.spans[0].span_id
    assert make_trace("in", "out").data.spans[0].outputs == "out"


def test_fake_judge_model_answers_in_the_judge_format() -> None:
    model = FakeJudgeModel()
    assert '"result": "yes"' in model([{"role": "user", "content": "hi"}])
    model.returns(len)
    assert '"result": 2' in model([{}, {}])
    model.reset()
    assert model.calls == []


def test_fake_judge_model_set_by_calling_it() -> None:
    model = FakeJudgeModel()
    assert model("no", rationale="rude") is model
    assert '"result": "no"' in model([{"role": "user", "content": "x"}])
    model(verdict=True)
    assert '"result": true' in model([])
    assert '"rationale": "rude"' in model([])


def test_builtin_judge_on_a_made_trace_with_the_fake_model() -> None:
    from localscorers import Guidelines
    from localscorers.testing import fake_judge_model

    try:
        judge = Guidelines(name="polite", guidelines=["Be polite"], model=fake_judge_model)
        trace = make_trace({"question": "Refund?"}, "Please see the refund form.")
        assert judge(trace=trace).value == "yes"
        fake_judge_model.returns("no", rationale="rude")
        feedback = judge(trace=trace)
        assert (feedback.value, feedback.rationale) == ("no", "rude")
        assert "Be polite" in str(fake_judge_model.calls[-1])
    finally:
        fake_judge_model.reset()
