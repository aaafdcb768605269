"""Judges against fake model servers on 127.0.0.1 that behave like the real kinds.

A small base model (prose unless decoding is constrained; endless without max_tokens),
a server that rejects response_format with HTTP 400, llama-cpp-python's json_object-only
server, the Anthropic Messages API and Ollama's native API.
"""

from __future__ import annotations

import functools
import importlib.machinery
import sys
import types
from pathlib import Path
from typing import Any, Literal

import pytest

import localscorers
from localscorers import (
    ConfigurationError,
    Correctness,
    Guidelines,
    ModelRequestError,
    RelevanceToQuery,
    Safety,
    TransientError,
    make_judge,
)
from localscorers.cli import app, run
from localscorers.judges import ChatRequest, resolve_model
from localscorers.judges import openai as openai_provider
from tests.judges.test_judges import (
    ANSWER,
    QUESTION,
    clear_judge_env,
    error_of,
    feedback_of,
    message_of,
    metadata_of,
    source_of,
)
from tests.judges.test_judges_fakes import (
    Answer,
    Call,
    anthropic_messages,
    json_object_only,
    json_object_only_500,
    ollama_chat,
    rejects_response_format,
    serve,
    small_base_model,
)


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_judge_env(monkeypatch)
    # Endpoint capabilities are remembered per process; every test starts unknown.
    openai_provider.forget_endpoint_modes()


# -- a small base model -----------------------------------------------------------------------


def test_small_model_answers_every_builtin_judge_through_structured_output() -> None:
    with serve(small_base_model) as server:
        base_url = f"{server.url}/v1"
        judges = [
            Safety(model="openai:/gemma3-270m", base_url=base_url),
            RelevanceToQuery(model="openai:/gemma3-270m", base_url=base_url),
            Guidelines(guidelines=["Be brief."], model="openai:/gemma3-270m", base_url=base_url),
            Correctness(model="openai:/gemma3-270m", base_url=base_url),
        ]
        expectations = {"expected_response": "Paris"}
        results = [j(inputs=QUESTION, outputs=ANSWER, expectations=expectations) for j in judges]
    assert [r.error for r in results] == [None] * 4
    assert [r.value for r in results] == ["yes"] * 4
    for call in server.calls:
        assert call.body["max_tokens"] == 512
        assert call.body["response_format"]["type"] == "json_schema"
    first = results[0]
    assert first.rationale == "The response is fine."
    metadata = metadata_of(first)
    assert (metadata["prompt_tokens"], metadata["completion_tokens"]) == (40, 9)
    assert metadata["total_tokens"] == 49
    assert metadata["output_mode"] == "json_schema"
    assert isinstance(metadata["latency_ms"], int)


def test_max_tokens_setting_caps_the_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALSCORERS_JUDGE_MAX_TOKENS", "160")
    with serve(small_base_model) as server:
        Safety(model="openai:/m", base_url=f"{server.url}/v1")(outputs="hi")
    assert server.calls[0].body["max_tokens"] == 160


@pytest.mark.parametrize("raw", ["0", "-5", "lots", "1.5"])
def test_invalid_max_tokens_setting(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("LOCALSCORERS_JUDGE_MAX_TOKENS", raw)
    with pytest.raises(
        ConfigurationError, match="LOCALSCORERS_JUDGE_MAX_TOKENS must be a positive"
    ):
        Safety(model="openai:/m", base_url="http://127.0.0.1:9/v1")(outputs="hi")


def test_prose_without_a_verdict_is_unparseable_with_the_raw_answer() -> None:
    # A server that drops response_format silently: the small model's prose comes back.
    def ignores_format(call: Call) -> Answer:
        body = dict(call.body)
        body.pop("response_format", None)
        return small_base_model(Call(call.path, call.headers, body))

    with serve(ignores_format) as server:
        feedback = Safety(model="openai:/m", base_url=f"{server.url}/v1")(outputs="hi")
    assert error_of(feedback).error_code == "JUDGE_RESPONSE_UNPARSEABLE"
    assert "Sure! Let me think" in message_of(feedback)
    assert metadata_of(feedback)["completion_tokens"] == 9


def test_online_scoring_with_a_small_model_is_quick_and_parsed(tracking: Path) -> None:
    with serve(small_base_model) as server:
        Safety(name="safety", model="openai:/m", base_url=f"{server.url}/v1").register().start()
        ids = [localscorers.log_trace(inputs=QUESTION, outputs=ANSWER) for _ in range(3)]
        assert localscorers.flush(timeout=30)
    for trace_id in ids:
        [feedback] = feedback_of(trace_id, "safety")
        assert (feedback.value, feedback.error) == ("yes", None)
        assert metadata_of(feedback)["completion_tokens"] == 9
    [report] = localscorers.scorer_report()
    assert (report.prompt_tokens, report.completion_tokens) == (3 * 40, 3 * 9)


# -- servers that refuse response_format ------------------------------------------------------


def test_http_400_falls_back_to_json_object_then_none_and_is_remembered() -> None:
    with serve(rejects_response_format("Yes.")) as server:
        judge = Safety(model="openai:/m", base_url=f"{server.url}/v1")
        first = judge(outputs="hi")
        second = judge(outputs="hello")
    forms = [c.body.get("response_format", {}).get("type") for c in server.calls]
    assert forms == ["json_schema", "json_object", None, None]
    assert all(c.body["max_tokens"] == 512 for c in server.calls)
    # The verdict in prose is the last resort.
    assert (first.value, second.value) == ("yes", "yes")
    assert first.rationale == "Yes."
    assert metadata_of(first)["output_mode"] == "none"
    assert openai_provider.endpoint_mode(f"{server.url}/v1") == "none"


def test_json_object_with_schema_for_llama_cpp_python() -> None:
    with serve(json_object_only) as server:
        judge = make_judge(
            name="tone",
            instructions="Is {{ outputs }} polite?",
            model="openai:/m",
            base_url=f"{server.url}/v1",
            feedback_value_type=Literal["polite", "rude"],
        )
        assert judge(outputs="Thanks!").value == "polite"
        assert judge(outputs="Go away").value == "polite"
    assert [c.body["response_format"]["type"] for c in server.calls] == [
        "json_schema",
        "json_object",
        "json_object",
    ]
    schema = server.calls[1].body["response_format"]["schema"]
    assert schema["properties"]["result"] == {"enum": ["polite", "rude"]}


def test_an_http_500_about_response_format_falls_back_as_llama_cpp_python_needs() -> None:
    # Measured against a real llama-cpp-python 0.3.36 server: it answers a json_schema
    # response_format with HTTP 500 (its request validation), not 400 or 422.
    with serve(json_object_only_500) as server:
        base_url = f"{server.url}/v1"
        first = Safety(model="openai:/m", base_url=base_url)(outputs="hi")
        second = Safety(model="openai:/m", base_url=base_url)(outputs="hello")
    assert (first.value, second.value) == ("yes", "yes")
    assert [c.body["response_format"]["type"] for c in server.calls] == [
        "json_schema",
        "json_object",
        "json_object",
    ]
    assert openai_provider.endpoint_mode(base_url) == "json_object"


def test_a_400_that_is_not_about_response_format_is_reported_and_not_remembered() -> None:
    def always_400(call: Call) -> Answer:
        return Answer(400, {"error": {"message": "context length exceeded"}})

    with serve(always_400) as server:
        base_url = f"{server.url}/v1"
        with pytest.raises(ModelRequestError, match="context length exceeded") as info:
            Safety(model="openai:/m", base_url=base_url)(outputs="hi")
    assert info.value.status_code == 400
    assert len(server.calls) == 3
    assert openai_provider.endpoint_mode(base_url) == "json_schema"


@pytest.mark.parametrize(
    ("answer", "value"),
    [
        ("No, it is rude.", "no"),
        ("FAIL", "no"),
        ("Verdict: pass", "yes"),
        ("The answer is yes.", "yes"),
        ("The response is safe, and it passes: true.", "yes"),
    ],
)
def test_prose_verdicts(answer: str, value: str) -> None:
    with serve(rejects_response_format(answer)) as server:
        assert Safety(model="openai:/m", base_url=f"{server.url}/v1")(outputs="x").value == value


@pytest.mark.parametrize("answer", ["Yes and no.", "It depends.", '{"rationale": "cut off'])
def test_ambiguous_prose_stays_unparseable(answer: str) -> None:
    with serve(rejects_response_format(answer)) as server:
        feedback = Safety(model="openai:/m", base_url=f"{server.url}/v1")(outputs="x")
    assert error_of(feedback).error_code == "JUDGE_RESPONSE_UNPARSEABLE"


# -- Anthropic ---------------------------------------------------------------------------------


def test_anthropic_messages_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    with serve(anthropic_messages) as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        feedback = Safety(model="anthropic:/claude-3-5-haiku-latest")(outputs="hello")
    assert (feedback.value, feedback.rationale, feedback.error) == ("yes", "Safe text.", None)
    assert source_of(feedback).source_id == "anthropic:/claude-3-5-haiku-latest"
    metadata = metadata_of(feedback)
    assert (metadata["prompt_tokens"], metadata["completion_tokens"]) == (120, 25)
    assert metadata["output_mode"] == "tool"
    [call] = server.calls
    assert call.body["model"] == "claude-3-5-haiku-latest"
    assert call.body["max_tokens"] == 512
    assert call.body["tool_choice"] == {"type": "tool", "name": "judge_answer"}
    assert "JSON object" in call.body["system"]
    assert [m["role"] for m in call.body["messages"]] == ["user"]


def test_anthropic_without_tools_falls_back_to_text(monkeypatch: pytest.MonkeyPatch) -> None:
    behave = functools.partial(anthropic_messages, tools=False)
    with serve(behave) as server:
        judge = Safety(model="anthropic:/claude", base_url=server.url + "/v1")
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
        assert judge(outputs="hello").value == "no"
        assert judge(outputs="again").value == "no"
    assert ["tools" in c.body for c in server.calls] == [True, False, False]


def test_anthropic_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "wrong")
    with (
        serve(anthropic_messages) as server,
        pytest.raises(ModelRequestError, match="ANTHROPIC_API_KEY") as info,
    ):
        Safety(model="anthropic:/claude", base_url=server.url)(outputs="x")
    assert info.value.status_code == 401
    assert "invalid x-api-key" in str(info.value)

    def overloaded(call: Call) -> Answer:
        error = {"type": "overloaded_error", "message": "Overloaded"}
        return Answer(529, {"type": "error", "error": error})

    with serve(overloaded) as server:
        model = resolve_model("anthropic:/claude", base_url=server.url)
        with pytest.raises(TransientError, match="Overloaded") as transient:
            model.complete(
                ChatRequest([{"role": "user", "content": "x"}], temperature=0, max_tokens=10)
            )
    assert transient.value.error_code == "JUDGE_SERVER_ERROR"


def test_anthropic_without_a_key_is_an_error_feedback() -> None:
    feedback = Safety(model="anthropic:/claude-3-5-haiku-latest")(outputs="x")
    assert error_of(feedback).error_code == "JUDGE_API_KEY_MISSING"
    assert "ANTHROPIC_API_KEY" in message_of(feedback)


# -- Ollama ------------------------------------------------------------------------------------


def test_ollama_native_chat_with_a_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(ollama_chat) as server:
        monkeypatch.setenv("OLLAMA_HOST", server.url.removeprefix("http://"))
        feedback = RelevanceToQuery(model="ollama:/llama3.2:1b")(inputs=QUESTION, outputs=ANSWER)
    assert (feedback.value, feedback.rationale) == ("yes", "fine")
    metadata = metadata_of(feedback)
    assert (metadata["prompt_tokens"], metadata["completion_tokens"]) == (33, 12)
    [call] = server.calls
    assert call.body["format"]["properties"]["result"]["enum"] == ["yes", "no"]
    assert call.body["options"] == {"temperature": 0.0, "num_predict": 512}
    assert call.body["stream"] is False


def test_old_ollama_gets_json_format_then_it_is_remembered() -> None:
    with serve(functools.partial(ollama_chat, schemas=False)) as server:
        judge = Safety(model="ollama:/llama3.2:1b", base_url=server.url)
        assert judge(outputs="a").value == "yes"
        assert judge(outputs="b").value == "yes"
    assert [c.body.get("format") for c in server.calls][1:] == ["json", "json"]


def test_ollama_unknown_model_says_to_pull_it() -> None:
    with (
        serve(ollama_chat) as server,
        pytest.raises(ModelRequestError, match="ollama pull") as info,
    ):
        Safety(model="ollama:/nope", base_url=server.url)(outputs="a")
    assert "model 'nope' not found" in str(info.value)


# -- any provider at construction, errors at evaluation ---------------------------------------


@pytest.mark.parametrize(
    "model", ["anthropic:/claude-3-5-sonnet", "bedrock:/anthropic.claude-v2", "vertex_ai:/gemini"]
)
def test_any_provider_uri_is_accepted_at_construction(tracking: Path, model: str) -> None:
    judge = Safety(name="safe", model=model).register()
    stored = localscorers.get_scorer(name="safe")
    assert isinstance(stored, Safety)
    assert stored.model == model
    assert isinstance(judge, Safety)
    assert judge.model == model


def test_litellm_not_installed_is_an_error_feedback_at_evaluation(
    tracking: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "litellm", None)  # makes the import fail
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    [direct] = [Safety(model="bedrock:/claude")(outputs="x")]
    assert error_of(direct).error_code == "JUDGE_PROVIDER_NOT_INSTALLED"
    assert "pip install 'localscorers[litellm]'" in message_of(direct)
    Safety(name="safe", model="bedrock:/claude").register().start()
    trace_id = localscorers.log_trace(inputs=QUESTION, outputs=ANSWER)
    assert localscorers.flush(timeout=30)
    [feedback] = feedback_of(trace_id, "safe")
    assert error_of(feedback).error_code == "JUDGE_PROVIDER_NOT_INSTALLED"


def test_litellm_is_called_with_the_provider_model_and_schema(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[dict[str, Any]] = []

    def completion(**kwargs: Any) -> Any:
        seen.append(kwargs)
        message = types.SimpleNamespace(content='{"rationale": "ok", "result": "no"}')
        usage = types.SimpleNamespace(prompt_tokens=5, completion_tokens=3)
        return types.SimpleNamespace(choices=[types.SimpleNamespace(message=message)], usage=usage)

    fake = types.ModuleType("litellm")
    fake.__spec__ = importlib.machinery.ModuleSpec("litellm", None)
    fake.completion = completion  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "litellm", fake)
    feedback = Safety(model="bedrock:/anthropic.claude-v2")(outputs="x")
    assert (feedback.value, metadata_of(feedback)["total_tokens"]) == ("no", 8)
    assert seen[0]["model"] == "bedrock/anthropic.claude-v2"
    assert seen[0]["max_tokens"] == 512
    assert seen[0]["response_format"]["type"] == "json_schema"


# -- the warning at start() --------------------------------------------------------------------


def test_starting_a_judge_without_a_model_warns(
    tracking: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    judge = Safety(name="safe").register()
    with pytest.warns(localscorers.JudgeModelWarning) as record:
        judge.start()
    message = str(record[0].message)
    assert "'safe'" in message
    assert "JUDGE_MODEL_NOT_CONFIGURED" in message
    assert "model=" in message
    assert "LOCALSCORERS_JUDGE_MODEL" in message
    assert issubclass(localscorers.JudgeModelWarning, UserWarning)
    # No warning with a model, or with the default model set.
    Safety(name="configured", model="openai:/m").register().start()
    monkeypatch.setenv("LOCALSCORERS_JUDGE_MODEL", "openai:/m")
    judge.stop().start()


def test_scorers_get_shows_the_judge_model(
    tracking: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Safety(name="safe", model="ollama:/llama3.2:1b", base_url="http://127.0.0.1:11434").register()
    Safety(name="bare").register()
    assert run(app, ["--db", str(tracking), "scorers", "get", "safe"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "judge model ollama:/llama3.2:1b at http://127.0.0.1:11434" in out
    assert run(app, ["--db", str(tracking), "scorers", "get", "bare"]) == 0
    assert "judge model none (LOCALSCORERS_JUDGE_MODEL" in " ".join(capsys.readouterr().out.split())
