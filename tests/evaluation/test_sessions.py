"""Session-level scorers in evaluate(), and the session judges with callable models."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import localscorers
from localscorers import (
    ConversationCompleteness,
    Feedback,
    Trace,
    UserFrustration,
    evaluate,
    scorer,
)
from localscorers.judges import render_conversation


@pytest.fixture
def tracking(contract_tracking: str) -> str:
    """This module's tests run on each backend (SQLite, then PostgreSQL)."""
    return contract_tracking


SESSION = "mlflow.trace.session"
START = datetime(2026, 1, 1, tzinfo=UTC)


def turn(session: str | None, minute: int, question: str, answer: str) -> Trace:
    """Log one turn of a conversation and return it as stored."""
    metadata = {SESSION: session} if session else {}
    trace_id = localscorers.log_trace(
        inputs={"question": question},
        outputs=answer,
        request_time=START + timedelta(minutes=minute),
        metadata=metadata,
    )
    return localscorers.get_trace(trace_id)


def feedback_on(trace_id: str, name: str) -> list[Feedback]:
    trace = localscorers.get_trace(trace_id)
    return [a for a in trace.info.assessments if isinstance(a, Feedback) and a.name == name]


class Recorder:
    """A session scorer that records the sessions it was given."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.lock = threading.Lock()

        @scorer(name="turns")
        def turns(session: list[Trace]) -> int:
            with self.lock:
                self.calls.append([t.data.request["question"] for t in session])
            return len(session)

        self.scorer = turns


def test_a_session_scorer_gets_each_session_in_time_order(tracking: Path) -> None:
    # Logged out of order: the scorer must see each session by request time.
    traces = [
        turn("a", 2, "a3", "x"),
        turn("b", 0, "b1", "x"),
        turn("a", 0, "a1", "x"),
        turn(None, 1, "alone", "x"),
        turn("a", 1, "a2", "x"),
    ]
    recorder = Recorder()

    result = evaluate(data=traces, scorers=[recorder.scorer])

    assert sorted(recorder.calls) == [["a1", "a2", "a3"], ["b1"]]
    assert result.metrics == {"turns/mean": 2.0, "turns/error_count": 0.0}
    last_of_a = result.trace_ids[0]  # the copy of "a3"
    [feedback] = feedback_on(last_of_a, "turns")
    assert feedback.value == 3
    assert feedback.metadata == {SESSION: "a"}
    assert [f.value for f in feedback_on(result.trace_ids[1], "turns")] == [1]  # "b1"
    for trace_id in result.trace_ids[2:]:  # "a1", "alone", "a2"
        assert feedback_on(trace_id, "turns") == []


def test_trace_and_session_scorers_run_together(tracking: Path) -> None:
    traces = [turn("s", minute, f"q{minute}", "a") for minute in range(3)]
    recorder = Recorder()

    @scorer
    def answered(outputs: Any) -> bool:
        return bool(outputs)

    result = evaluate(data=traces, scorers=[answered, recorder.scorer])

    assert result.metrics["answered/pass_rate"] == 1.0
    assert recorder.calls == [["q0", "q1", "q2"]]
    assert list(result.result_df["session_id"]) == ["s", "s", "s"]
    assert list(result.result_df["turns/value"].isna()) == [True, True, False]


def test_dict_rows_form_sessions_through_their_metadata(tracking: Path) -> None:
    rows = [
        {"inputs": {"question": f"q{n}"}, "outputs": "a", "metadata": {SESSION: "chat-1"}}
        for n in range(4)
    ]
    recorder = Recorder()

    evaluate(data=rows, scorers=[recorder.scorer])

    assert recorder.calls == [["q0", "q1", "q2", "q3"]]  # the data's order breaks time ties


def test_a_rerun_scores_each_session_once(tracking: Path) -> None:
    traces = [turn("s", minute, f"q{minute}", "a") for minute in range(2)]
    recorder = Recorder()

    evaluate(data=traces, scorers=[recorder.scorer], evaluation_id="chat-eval")
    evaluate(data=traces, scorers=[recorder.scorer], evaluation_id="chat-eval")

    assert recorder.calls == [["q0", "q1"]]


@given(
    turns=st.lists(
        st.tuples(st.sampled_from(["s1", "s2", "s3", None]), st.integers(0, 50)),
        min_size=1,
        max_size=12,
    )
)
def test_property_one_call_per_session_with_all_its_turns_in_order(
    turns: list[tuple[str | None, int]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    localscorers.set_tracking_uri(tmp_path_factory.mktemp("db") / "db.sqlite")
    traces = []
    for index, (session, minute) in enumerate(turns):
        trace_id = localscorers.log_trace(
            inputs={"question": f"{session}-{index}"},
            outputs=str(minute),
            metadata={SESSION: session} if session else {},
            request_time=START + timedelta(minutes=minute),
        )
        traces.append(localscorers.get_trace(trace_id))
    recorder = Recorder()

    evaluate(data=traces, scorers=[recorder.scorer])

    expected: dict[str, list[tuple[int, int, str]]] = {}
    for index, (session, minute) in enumerate(turns):
        if session:
            expected.setdefault(session, []).append((minute, index, f"{session}-{index}"))
    assert sorted(recorder.calls) == sorted(
        [question for _, _, question in sorted(group)] for group in expected.values()
    )


# -- the judges ------------------------------------------------------------------------------


class FakeModel:
    """A judge model: records the prompts, answers with the given text."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.prompts: list[list[dict[str, str]]] = []

    def __call__(self, messages: list[dict[str, str]]) -> str:
        self.prompts.append(messages)
        return self.answer


def test_conversation_completeness_reads_the_whole_conversation(tracking: Path) -> None:
    traces = [
        turn("s", 0, "Book a table for two", "Done, 8pm."),
        turn("s", 1, "Also a taxi please", "Which time?"),
    ]
    model = FakeModel('{"rationale": "The taxi was never booked.", "result": "no"}')

    result = evaluate(data=traces, scorers=[ConversationCompleteness(model=model)])

    assert result.metrics["conversation_completeness/pass_rate"] == 0.0
    [prompt] = model.prompts
    text = prompt[1]["content"]
    assert text.index("Book a table") < text.index("Also a taxi") < text.index("Which time?")
    [feedback] = feedback_on(result.trace_ids[1], "conversation_completeness")
    assert feedback.value == "no"
    assert feedback.rationale == "The taxi was never booked."
    assert feedback.metadata is not None
    assert feedback.metadata[SESSION] == "s"


@pytest.mark.parametrize(
    ("answer", "label"),
    [
        ("none", "none"),
        ("resolved", "resolved"),
        ("Unresolved.", "unresolved"),
        ("frustration_not_resolved", "unresolved"),
        ("no_frustration", "none"),
    ],
)
def test_user_frustration_labels(tracking: Path, answer: str, label: str) -> None:
    session = [turn("s", 0, "WHY is this still broken??", "Sorry, try again.")]
    judge = UserFrustration(model=FakeModel(f'{{"rationale": "r", "result": "{answer}"}}'))

    feedback = judge(session=session)

    assert feedback.name == "user_frustration"
    assert feedback.value == label


def test_a_session_judge_reports_what_it_misses(tracking: Path) -> None:
    judge = ConversationCompleteness(model=FakeModel('{"rationale": "r", "result": "yes"}'))

    missing = judge(inputs="hi", outputs="hello")

    assert missing.error is not None
    assert missing.error.error_code == "JUDGE_INPUT_MISSING"
    assert "session" in (missing.error.error_message or "")


def test_an_unreadable_frustration_label_is_error_feedback(tracking: Path) -> None:
    session = [turn("s", 0, "hi", "hello")]
    judge = UserFrustration(model=FakeModel('{"rationale": "r", "result": "angry"}'))

    feedback = judge(session=session)

    assert feedback.error is not None
    assert feedback.error.error_code == "JUDGE_RESPONSE_UNPARSEABLE"


def test_chat_shaped_turns_are_rendered_as_messages(tracking: Path) -> None:
    trace_id = localscorers.log_trace(
        inputs={
            "messages": [
                {"role": "system", "content": "be nice"},
                {"role": "user", "content": "What is 2+2?"},
            ]
        },
        outputs={"choices": [{"message": {"role": "assistant", "content": "4"}}]},
    )

    text = render_conversation([localscorers.get_trace(trace_id)])

    assert "<user>\nWhat is 2+2?\n</user>" in text
    assert "<assistant>\n4\n</assistant>" in text
    assert "be nice" not in text


def test_session_judges_register_and_restore(tracking: Path) -> None:
    registered = UserFrustration().register()

    restored = localscorers.get_scorer(name="user_frustration")

    assert registered.version == 1
    assert isinstance(restored, UserFrustration)


def test_predict_fn_plays_each_session_in_the_datas_order(tracking: Path) -> None:
    rows = [
        {"inputs": {"question": f"{chat}-{n}"}, "metadata": {SESSION: chat}}
        for n in range(5)
        for chat in ("x", "y")
    ]
    recorder = Recorder()

    def app(question: str) -> str:
        return question.upper()

    result = evaluate(data=rows, scorers=[recorder.scorer], predict_fn=app)

    assert sorted(recorder.calls) == [
        [f"x-{n}" for n in range(5)],
        [f"y-{n}" for n in range(5)],
    ]
    assert localscorers.get_trace(result.trace_ids[0]).data.response == "X-0"
