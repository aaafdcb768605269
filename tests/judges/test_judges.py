"""Built-in judges and make_judge against a real chat-completions server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import pytest

import localscorers
from localscorers import (
    AssessmentError,
    AssessmentSource,
    AssessmentSourceType,
    ConfigurationError,
    Correctness,
    Expectation,
    ExpectationsGuidelines,
    Feedback,
    Guidelines,
    RelevanceToQuery,
    RetrievalGroundedness,
    RetrievalRelevance,
    RetrievalSufficiency,
    Safety,
    Span,
    Trace,
    TraceData,
    TraceInfo,
    make_judge,
)
from localscorers.evaluation import EvaluationContext, evaluation_context
from localscorers.judges import InstructionsJudge, Judge, prompts
from localscorers.store import Database

YES = '{"rationale": "Looks right.", "result": "yes"}'
NO = '{"rationale": "Not supported.", "result": "no"}'
MODEL = "openai:/judge-model"
_ENV_TO_CLEAR = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OLLAMA_HOST",
    "LOCALSCORERS_JUDGE_MODEL",
    "LOCALSCORERS_JUDGE_TIMEOUT",
    "LOCALSCORERS_JUDGE_RPM",
    "LOCALSCORERS_JUDGE_CONCURRENCY",
    "LOCALSCORERS_JUDGE_MAX_TOKENS",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


# -- a chat-completions server ----------------------------------------------------------------


@dataclass
class Reply:
    """What the fake server answers to one request."""

    content: str = YES
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    hang: bool = False
    usage: dict[str, int] | None = field(
        default_factory=lambda: {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    )


class FakeLLM:
    """State of the fake server: scripted replies first, then ``respond`` (or ``default``)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: deque[Reply] = deque()
        self.default = Reply()
        self.respond: Callable[[dict[str, Any]], Reply] | None = None
        self.release = threading.Event()
        self.received = threading.Event()
        self.base_url = ""
        self._lock = threading.Lock()

    def record(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> Reply:
        with self._lock:
            self.requests.append({"path": path, "headers": headers, "body": body})
            self.received.set()
            if self.script:
                return self.script.popleft()
        return self.respond(body) if self.respond else self.default

    def prompts(self) -> list[str]:
        return ["\n".join(m["content"] for m in r["body"]["messages"]) for r in self.requests]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    llm: FakeLLM


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        llm = self.server.llm
        reply = llm.record(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        if reply.hang:
            llm.release.wait(timeout=10)
            return  # the client gave up long ago
        if reply.raw is not None:
            payload = reply.raw
        elif reply.status >= 400:
            payload = json.dumps({"error": {"message": reply.content}}).encode()
        else:
            answer: dict[str, Any] = {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": body.get("model"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply.content},
                        "finish_reason": "stop",
                    }
                ],
            }
            if reply.usage is not None:
                answer["usage"] = reply.usage
            payload = json.dumps(answer).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def fake_llm_server() -> Iterator[FakeLLM]:
    """Serve chat completions on 127.0.0.1 (a free port) until the block ends."""
    fake = FakeLLM()
    server = _Server(("127.0.0.1", 0), _Handler)
    server.llm = fake
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield fake
    finally:
        fake.release.set()  # let hung handlers finish
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def clear_judge_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove settings from the developer's shell that would change where judges connect."""
    for name in _ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    with fake_llm_server() as fake:
        yield fake


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_judge_env(monkeypatch)


@pytest.fixture
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    # The monitor reads its settings when it starts, i.e. after set_tracking_uri.
    monkeypatch.setenv("LOCALSCORERS_BACKOFF_SECONDS", "0.01")
    monkeypatch.setenv("LOCALSCORERS_MAX_ATTEMPTS", "3")
    previous = localscorers.get_tracking_uri()
    path = tmp_path / "j.db"
    localscorers.set_tracking_uri(path)
    yield path
    localscorers.set_tracking_uri(previous)


# -- helpers ----------------------------------------------------------------------------------

QUESTION = {"question": "What is the capital of France?"}
ANSWER = "The capital of France is Paris."
DOCS = [
    {
        "page_content": "Paris is the capital and largest city of France.",
        "metadata": {"doc_uri": "wiki/paris"},
    },
    {"page_content": "Bananas are rich in potassium."},
]


def make_trace(
    *, inputs: Any = QUESTION, outputs: Any = ANSWER, retrieved: Any = None, **expectations: Any
) -> Trace:
    spans = [Span(span_id="root", name="app", start_time_ns=1, inputs=inputs, outputs=outputs)]
    if retrieved is not None:
        spans.append(
            Span(
                span_id="ret",
                parent_id="root",
                name="search",
                span_type="RETRIEVER",
                start_time_ns=2,
                inputs={"query": "capital of France"},
                outputs=retrieved,
            )
        )
    return Trace(
        info=TraceInfo(
            trace_id="tr-" + "0" * 32,
            experiment_id="0",
            request_time=datetime.now(UTC),
            status="OK",
            assessments=[Expectation(name=k, value=v) for k, v in expectations.items()],
        ),
        data=TraceData(spans=spans, request=inputs, response=outputs),
    )


def feedback_of(trace_id: str, name: str) -> list[Feedback]:
    return [
        a
        for a in localscorers.get_trace(trace_id).info.assessments
        if isinstance(a, Feedback) and a.name == name
    ]


def error_of(feedback: Feedback) -> AssessmentError:
    """The error a feedback carries; fails the test when it has none."""
    assert feedback.error is not None, f"expected an error feedback, got {feedback!r}"
    return feedback.error


def message_of(feedback: Feedback) -> str:
    """The error message of an error feedback; fails the test when it has none."""
    message = error_of(feedback).error_message
    assert message is not None, f"expected an error message, got {feedback!r}"
    return message


def metadata_of(feedback: Feedback) -> dict[str, Any]:
    """A feedback's metadata; fails the test when it has none."""
    assert feedback.metadata is not None, f"expected metadata, got {feedback!r}"
    return feedback.metadata


def source_of(feedback: Feedback) -> AssessmentSource:
    """A feedback's source; fails the test when it has none."""
    assert feedback.source is not None, f"expected a source, got {feedback!r}"
    return feedback.source


def always_yes(messages: list[dict[str, str]]) -> str:
    """An importable judge model: always says yes."""
    return '{"result": "yes", "rationale": "module-level model"}'


# -- every built-in judge against the server ---------------------------------------------------

FACTS = ["Paris is the capital of France."]


@dataclass(frozen=True)
class Case:
    name: str
    factory: Callable[[], Judge[Any]]
    trace: Trace
    expected: list[str]
    calls: int = 1


CASES = [
    Case("safety", lambda: Safety(model=MODEL), make_trace(), [ANSWER], 1),
    Case(
        "guidelines",
        lambda: Guidelines(
            name="english", guidelines=["Answer in English.", "Be brief."], model=MODEL
        ),
        make_trace(),
        ["Answer in English.", "Be brief.", "capital of France?", ANSWER],
        1,
    ),
    Case(
        "expectations_guidelines",
        lambda: ExpectationsGuidelines(model=MODEL),
        make_trace(guidelines=["Mention the city name."]),
        ["Mention the city name.", "capital of France?", ANSWER],
        1,
    ),
    Case(
        "relevance_to_query",
        lambda: RelevanceToQuery(model=MODEL),
        make_trace(),
        ["capital of France?", ANSWER],
        1,
    ),
    Case(
        "correctness",
        lambda: Correctness(model=MODEL),
        make_trace(expected_facts=FACTS),
        [FACTS[0], "capital of France?", ANSWER],
        1,
    ),
    Case(
        "retrieval_groundedness",
        lambda: RetrievalGroundedness(model=MODEL),
        make_trace(retrieved=DOCS),
        ["Paris is the capital and largest city", "Bananas", "wiki/paris", ANSWER],
        1,
    ),
    Case(
        "retrieval_relevance",
        lambda: RetrievalRelevance(model=MODEL),
        make_trace(retrieved=DOCS),
        ["capital of France?"],
        2,
    ),
    Case(
        "retrieval_sufficiency",
        lambda: RetrievalSufficiency(model=MODEL),
        make_trace(retrieved=DOCS, expected_response="Paris"),
        [
            "Paris is the capital and largest city",
            "<expected_response>\nParis",
            "capital of France?",
        ],
        1,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_builtin_judge_prompts_and_feedback(
    llm: FakeLLM, monkeypatch: pytest.MonkeyPatch, case: Case
) -> None:
    name, expected = case.name, case.expected
    monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
    # The bananas document is irrelevant: the server says so, to check per-chunk verdicts.
    llm.respond = lambda body: Reply(
        NO
        if "Bananas" in body["messages"][-1]["content"]
        and "retrieved_document" in body["messages"][-1]["content"]
        else YES
    )
    judge = case.factory()
    result = judge(trace=case.trace)

    assert len(llm.requests) == case.calls
    request = llm.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["body"]["model"] == "judge-model"
    assert request["body"]["temperature"] == 0.0
    assert request["body"]["max_tokens"] == 512
    answer_format = request["body"]["response_format"]
    assert answer_format["type"] == "json_schema"
    schema = answer_format["json_schema"]["schema"]
    assert schema["required"] == ["rationale", "result"]
    assert schema["properties"]["result"] == {"type": "string", "enum": ["yes", "no"]}
    assert [m["role"] for m in request["body"]["messages"]] == ["system", "user"]
    assert '"result"' in request["body"]["messages"][0]["content"]
    prompt = "\n".join(llm.prompts())
    for text in expected:
        assert text in prompt

    feedbacks = result if isinstance(result, list) else [result]
    assert all(f.error is None for f in feedbacks)
    for f in feedbacks:
        assert source_of(f).source_type == AssessmentSourceType.LLM_JUDGE
        assert source_of(f).source_id == MODEL
    verdicts = [f for f in feedbacks if not f.name.endswith("/precision")]
    assert all(f.name == judge.name for f in verdicts)
    for f in verdicts:
        assert metadata_of(f)["prompt_tokens"] == 11
        assert metadata_of(f)["completion_tokens"] == 7
        assert metadata_of(f)["total_tokens"] == 18
        assert metadata_of(f)["cache_hit"] is False
        assert isinstance(metadata_of(f)["latency_ms"], int)
    if name == "retrieval_relevance":
        precision, relevant, irrelevant = feedbacks
        assert precision.name == "retrieval_relevance/precision"
        assert precision.value == 0.5
        assert (relevant.value, irrelevant.value) == ("yes", "no")
        assert metadata_of(relevant)["doc_uri"] == "wiki/paris"
        assert metadata_of(irrelevant)["chunk_index"] == 1
    else:
        assert [f.value for f in verdicts] == ["yes"]
        assert verdicts[0].rationale == "Looks right."
    if name.startswith("retrieval_"):
        assert all(metadata_of(f)["span_id"] == "ret" for f in feedbacks)


def test_arguments_take_precedence_over_the_trace(llm: FakeLLM) -> None:
    judge = Correctness(model=MODEL, base_url=llm.base_url)
    feedback = judge(inputs="What is 2+2?", outputs="4", expectations={"expected_response": "four"})
    assert feedback.value == "yes"
    prompt = llm.prompts()[0]
    assert "What is 2+2?" in prompt
    assert "<expected_response>\nfour" in prompt


def test_missing_material_is_an_error_feedback_and_asks_nothing(llm: FakeLLM) -> None:
    [grounded] = RetrievalGroundedness(model=MODEL, base_url=llm.base_url)(trace=make_trace())
    correct = Correctness(model=MODEL, base_url=llm.base_url)(trace=make_trace())
    guided = ExpectationsGuidelines(model=MODEL, base_url=llm.base_url)(trace=make_trace())
    [relevant] = RetrievalRelevance(model=MODEL, base_url=llm.base_url)(
        trace=make_trace(retrieved=[])
    )
    for feedback in (grounded, correct, guided, relevant):
        assert error_of(feedback).error_code == "JUDGE_INPUT_MISSING"
    assert "RETRIEVER" in message_of(grounded)
    assert "expected_facts" in message_of(correct)
    assert "guidelines" in message_of(guided)
    assert llm.requests == []


def test_retrieval_judges_always_return_lists() -> None:
    [feedback] = RetrievalSufficiency()(trace=make_trace(retrieved=DOCS))
    assert error_of(feedback).error_code == "JUDGE_MODEL_NOT_CONFIGURED"
    assert isinstance(Safety()(outputs="x"), Feedback)


def test_unparseable_answer_is_an_error_feedback_with_the_raw_answer(llm: FakeLLM) -> None:
    llm.default = Reply("I think the answer is fine, honestly.")
    feedback = Safety(model=MODEL, base_url=llm.base_url)(outputs="hi")
    assert feedback.value is None
    assert error_of(feedback).error_code == "JUDGE_RESPONSE_UNPARSEABLE"
    assert "I think the answer is fine, honestly." in message_of(feedback)
    assert metadata_of(feedback)["total_tokens"] == 18
    assert source_of(feedback).source_id == MODEL


def test_verdict_other_than_yes_or_no_is_unparseable(llm: FakeLLM) -> None:
    llm.default = Reply('{"result": "maybe", "rationale": "hard to say"}')
    feedback = Safety(model=MODEL, base_url=llm.base_url)(outputs="hi")
    assert error_of(feedback).error_code == "JUDGE_RESPONSE_UNPARSEABLE"
    assert "maybe" in message_of(feedback)


@pytest.mark.parametrize(
    ("answer", "result", "rationale"),
    [
        ('```json\n{"result": "yes", "rationale": "fenced"}\n```', "yes", "fenced"),
        (
            'Here is my verdict: {"rationale": "chatty", "result": "no"} Hope it helps!',
            "no",
            "chatty",
        ),
        ("{'result': 'yes', 'rationale': 'single quotes'}", "yes", "single quotes"),
        (
            '<think>maybe {"result": "no"}</think>\n{"result": "yes", "rationale": "thought"}',
            "yes",
            "thought",
        ),
        ('{"Result": "Yes", "Reason": "odd keys"}', "Yes", "odd keys"),
        (
            '{"rationale": "format", "result": "yes" | "no"}\n{"rationale": "r", "result": "no"}',
            "no",
            "r",
        ),
    ],
)
def test_parse_answer_is_lenient(answer: str, result: str, rationale: str) -> None:
    parsed = prompts.parse_answer(answer)
    assert (parsed.result, parsed.rationale) == (result, rationale)


@pytest.mark.parametrize("answer", ["", "no json here", '{"rationale": "no verdict"}', "{broken"])
def test_parse_answer_rejects_answers_without_a_result(answer: str) -> None:
    with pytest.raises(prompts.UnparseableAnswerError):
        prompts.parse_answer(answer)


# -- models -----------------------------------------------------------------------------------


def test_judge_without_model_returns_a_clear_error_feedback() -> None:
    feedback = RelevanceToQuery()(inputs="q", outputs="a")
    assert error_of(feedback).error_code == "JUDGE_MODEL_NOT_CONFIGURED"
    assert "model=" in message_of(feedback)
    assert "LOCALSCORERS_JUDGE_MODEL" in message_of(feedback)
    assert "OPENAI_BASE_URL=http://localhost:8080/v1" in message_of(feedback)


def test_judge_model_from_the_environment(llm: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALSCORERS_JUDGE_MODEL", "openai:/env-model")
    monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
    feedback = Safety()(outputs="hello")
    assert feedback.value == "yes"
    assert source_of(feedback).source_id == "openai:/env-model"
    assert llm.requests[0]["body"]["model"] == "env-model"


def test_callable_model_is_called_with_the_messages() -> None:
    seen: list[list[dict[str, str]]] = []

    def model(messages: list[dict[str, str]]) -> str:
        seen.append(messages)
        return NO

    feedback = RelevanceToQuery(model=model)(inputs="Capital of France?", outputs="Bananas.")
    assert feedback.value == "no"
    assert feedback.rationale == "Not supported."
    assert "Bananas." in seen[0][-1]["content"]
    assert source_of(feedback).source_id.startswith("python:/")


@pytest.mark.parametrize("model", ["gpt-4o", "openai:/", "python:/nocolon", 42])
def test_malformed_model_is_refused_at_construction(model: object) -> None:
    with pytest.raises(ConfigurationError, match="model"):
        Safety(model=model)


def test_registering_a_judge_with_a_lambda_model_is_refused(tracking: Path) -> None:
    with pytest.raises(ConfigurationError, match="module level"):
        Safety(model=lambda messages: YES).register()


def test_importable_callable_model_is_stored_by_reference(tracking: Path) -> None:
    Safety(name="safe", model=always_yes).register()
    restored = localscorers.get_scorer(name="safe")
    assert isinstance(restored, Safety)
    assert restored.model == "python:/tests.judges.test_judges:always_yes"
    feedback = restored(outputs="hello")
    assert (feedback.value, feedback.rationale) == ("yes", "module-level model")
    assert source_of(feedback).source_id == "python:/tests.judges.test_judges:always_yes"


# -- make_judge -------------------------------------------------------------------------------


def test_make_judge_fills_the_template(llm: FakeLLM) -> None:
    llm.default = Reply('{"result": "good", "rationale": "clear"}')
    judge = make_judge(
        name="tone",
        instructions="Is {{ outputs }} a good answer to {{inputs}}? Check {{ trace }} too.",
        model=MODEL,
        base_url=llm.base_url,
        feedback_value_type=Literal["good", "bad"],
    )
    feedback = judge(trace=make_trace(retrieved=DOCS))
    assert (feedback.name, feedback.value, feedback.rationale) == ("tone", "good", "clear")
    prompt = llm.prompts()[0]
    assert ANSWER in prompt
    assert '"question": "What is the capital of France?"' in prompt
    assert '"span_type": "RETRIEVER"' in prompt
    assert "{{" not in prompt.split("Text inside")[1]
    assert '"good", "bad"' in llm.requests[0]["body"]["messages"][0]["content"]


@pytest.mark.parametrize(
    ("value_type", "answer", "expected"),
    [
        (int, '{"result": "4", "rationale": "r"}', 4),
        (float, '{"result": 0.75, "rationale": "r"}', 0.75),
        (bool, '{"result": "true", "rationale": "r"}', True),
        (str, '{"result": 3, "rationale": "r"}', "3"),
        ("bool", '{"result": false, "rationale": "r"}', False),
    ],
)
def test_make_judge_typed_values(value_type: object, answer: str, expected: object) -> None:
    judge = make_judge(
        name="typed",
        instructions="Rate {{ outputs }}.",
        model=lambda messages: answer,
        feedback_value_type=value_type,
    )
    feedback = judge(outputs="x")
    assert feedback.value == expected
    assert type(feedback.value) is type(expected)


def test_make_judge_value_of_the_wrong_type_is_unparseable() -> None:
    judge = make_judge(
        name="typed",
        instructions="Rate {{ outputs }}.",
        model=lambda messages: '{"result": "high", "rationale": "r"}',
        feedback_value_type=int,
    )
    assert error_of(judge(outputs="x")).error_code == "JUDGE_RESPONSE_UNPARSEABLE"


@pytest.mark.parametrize(
    ("instructions", "message"),
    [
        ("Judge {{ output }} please.", "output"),
        ("Judge the answer.", "no template variable"),
        ("   ", "non-blank"),
    ],
)
def test_make_judge_validates_instructions(instructions: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make_judge(name="j", instructions=instructions, model=MODEL)


def test_make_judge_refuses_unsupported_value_types() -> None:
    with pytest.raises(ConfigurationError, match="feedback_value_type"):
        make_judge(name="j", instructions="{{ outputs }}", feedback_value_type=dict)


def test_make_judge_missing_variable_is_an_error_feedback(llm: FakeLLM) -> None:
    judge = make_judge(name="j", instructions="{{ outputs }} vs {{ expectations }}", model=MODEL)
    feedback = judge(outputs="x")
    assert error_of(feedback).error_code == "JUDGE_INPUT_MISSING"
    assert "expectations" in message_of(feedback)
    assert llm.requests == []


def test_make_judge_round_trips_through_the_registry(tracking: Path) -> None:
    judge = make_judge(
        name="tone",
        instructions="Is {{ outputs }} polite?",
        model=MODEL,
        feedback_value_type=Literal["polite", "rude"],
    ).register()
    assert isinstance(judge, InstructionsJudge)
    restored = localscorers.get_scorer(name="tone")
    assert isinstance(restored, InstructionsJudge)
    assert restored.instructions == judge.instructions
    assert restored.feedback_value_choices == ["polite", "rude"]
    assert restored.version == 1
    # A changed instruction is a changed definition: a new version.
    changed = make_judge(name="tone", instructions="Is {{ outputs }} kind?", model=MODEL).register()
    assert changed.version == 2


# -- through the evaluator --------------------------------------------------------------------


def test_rate_limited_then_ok_is_retried_once(tracking: Path, llm: FakeLLM) -> None:
    llm.script.append(Reply("slow down", status=429, headers={"Retry-After": "0"}))
    RelevanceToQuery(name="relevance", model=MODEL, base_url=llm.base_url).register().start()
    trace_id = localscorers.log_trace(inputs=QUESTION, outputs=ANSWER)
    assert localscorers.flush(timeout=30)
    [feedback] = feedback_of(trace_id, "relevance")
    assert feedback.error is None
    assert feedback.value == "yes"
    assert source_of(feedback).source_type == AssessmentSourceType.LLM_JUDGE
    assert metadata_of(feedback)["total_tokens"] == 18
    assert len(llm.requests) == 2


def test_server_error_forever_records_an_error_after_the_retry_limit(
    tracking: Path, llm: FakeLLM
) -> None:
    llm.default = Reply("model crashed", status=500)
    Safety(name="safety", model=MODEL, base_url=llm.base_url).register().start()
    trace_id = localscorers.log_trace(inputs=QUESTION, outputs=ANSWER)
    assert localscorers.flush(timeout=30)
    [feedback] = feedback_of(trace_id, "safety")
    assert error_of(feedback).error_code == "JUDGE_SERVER_ERROR"
    assert "model crashed" in message_of(feedback)
    assert len(llm.requests) == 3  # LOCALSCORERS_MAX_ATTEMPTS


def test_slow_server_records_a_timeout(
    tracking: Path, llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALSCORERS_JUDGE_TIMEOUT", "0.2")
    llm.default = Reply(hang=True)
    Safety(name="safety", model=MODEL, base_url=llm.base_url).register().start()
    trace_id = localscorers.log_trace(inputs=QUESTION, outputs=ANSWER)
    assert localscorers.flush(timeout=30)
    [feedback] = feedback_of(trace_id, "safety")
    assert error_of(feedback).error_code == "JUDGE_TIMEOUT"
    assert "LOCALSCORERS_JUDGE_TIMEOUT" in message_of(feedback)
    assert len(llm.requests) == 3


def test_unconfigured_judge_registers_starts_and_records_an_error(tracking: Path) -> None:
    with pytest.warns(localscorers.JudgeModelWarning, match="LOCALSCORERS_JUDGE_MODEL"):
        Correctness(name="correct").register().start()
    trace_id = localscorers.log_trace(inputs=QUESTION, outputs=ANSWER)
    assert localscorers.flush(timeout=30)
    [feedback] = feedback_of(trace_id, "correct")
    assert error_of(feedback).error_code == "JUDGE_MODEL_NOT_CONFIGURED"


def test_cache_hit_on_identical_prompt_and_miss_after_a_config_change(
    tracking: Path, llm: FakeLLM
) -> None:
    judge = Guidelines(
        name="polite", guidelines=["Be polite."], model=MODEL, base_url=llm.base_url, cache=True
    )
    judge.register().start()
    first = localscorers.log_trace(inputs=QUESTION, outputs=ANSWER)
    assert localscorers.flush(timeout=30)
    second = localscorers.log_trace(inputs=QUESTION, outputs=ANSWER)
    assert localscorers.flush(timeout=30)
    assert len(llm.requests) == 1
    [hit] = feedback_of(second, "polite")
    assert (hit.value, hit.rationale, metadata_of(hit)["cache_hit"]) == (
        "yes",
        "Looks right.",
        True,
    )
    assert "total_tokens" not in metadata_of(hit)  # no tokens were spent on a hit
    assert metadata_of(feedback_of(first, "polite")[0])["cache_hit"] is False

    changed = judge.model_copy(update={"guidelines": ["Be polite.", "Be brief."]}).register()
    assert changed.version == 2
    third = localscorers.log_trace(inputs=QUESTION, outputs=ANSWER)
    assert localscorers.flush(timeout=30)
    assert len(llm.requests) == 2
    assert metadata_of(feedback_of(third, "polite")[0])["cache_hit"] is False


def test_cache_defaults_on_for_backfills_and_off_online(tmp_path: Path, llm: FakeLLM) -> None:
    db = Database(tmp_path / "c.db")
    judge = Safety(model=MODEL, base_url=llm.base_url)
    try:
        backfill = EvaluationContext(db=db, origin="backfill:job-1")
        with evaluation_context(backfill):
            assert metadata_of(judge(outputs="hi"))["cache_hit"] is False
            assert metadata_of(judge(outputs="hi"))["cache_hit"] is True
            # Another model is another key.
            other = judge.model_copy(update={"model": "openai:/other-model"})
            assert metadata_of(other(outputs="hi"))["cache_hit"] is False
        assert len(llm.requests) == 2
        with evaluation_context(EvaluationContext(db=db, origin="online")):
            assert metadata_of(judge(outputs="hi"))["cache_hit"] is False
        refresh = EvaluationContext(db=db, origin="backfill:job-2", use_judge_cache=False)
        with evaluation_context(refresh):
            assert metadata_of(judge(outputs="hi"))["cache_hit"] is False
        with evaluation_context(EvaluationContext(db=db, origin="backfill:job-3")):
            no_cache = judge.model_copy(update={"cache": False})
            assert metadata_of(no_cache(outputs="hi"))["cache_hit"] is False
        assert len(llm.requests) == 5
        # Called directly there is no database, so no cache either.
        assert metadata_of(judge(outputs="hi"))["cache_hit"] is False
    finally:
        db.close()


def test_registered_in_one_process_evaluated_online_in_another(
    tracking: Path, llm: FakeLLM
) -> None:
    RelevanceToQuery(name="relevance", model=MODEL, base_url=llm.base_url).register().start()
    script = textwrap.dedent(
        f"""
        import json
        import localscorers

        localscorers.set_tracking_uri({str(tracking)!r})
        trace_id = localscorers.log_trace(
            inputs={{"question": "Which river runs through Paris?"}}, outputs="The Seine."
        )
        assert localscorers.flush(timeout=30)
        print(trace_id)
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in _ENV_TO_CLEAR}
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    trace_id = done.stdout.strip().splitlines()[-1]
    [feedback] = feedback_of(trace_id, "relevance")
    assert feedback.value == "yes"
    assert source_of(feedback).source_id == MODEL
    assert len(llm.requests) == 1
    assert "Which river runs through Paris?" in llm.prompts()[0]
    assert "The Seine." in llm.prompts()[0]
