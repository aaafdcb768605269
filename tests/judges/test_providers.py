"""Judge model resolution and the OpenAI-compatible client, against a real local server."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from localscorers import ConfigurationError, ScorerLoadError, TransientError
from localscorers.exceptions import (
    ModelNotConfiguredError,
    ModelRequestError,
    ProviderUnavailableError,
)
from localscorers.judges import (
    CallableModel,
    ChatModel,
    ChatRequest,
    ChatResult,
    OpenAICompatibleModel,
    RateLimiter,
    model_reference,
    parse_retry_after,
    resolve_model,
    transport,
)
from tests.judges.test_judges import FakeLLM, Reply, always_yes, clear_judge_env, fake_llm_server


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    with fake_llm_server() as fake:
        yield fake


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_judge_env(monkeypatch)


MESSAGES = [{"role": "system", "content": "judge"}, {"role": "user", "content": "hi"}]


def ask(model: ChatModel) -> ChatResult:
    return model.complete(ChatRequest(MESSAGES, temperature=0.0, max_tokens=None))


# -- resolving model URIs ---------------------------------------------------------------------


def test_openai_default_endpoint() -> None:
    model = resolve_model("openai:/gpt-4o-mini")
    assert isinstance(model, OpenAICompatibleModel)
    assert (model.model, model.endpoint, model.model_id) == (
        "gpt-4o-mini",
        "https://api.openai.com/v1",
        "openai:/gpt-4o-mini",
    )
    assert model.api_key is None


def test_openai_endpoint_from_environment_and_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:8080/v1/")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local")
    model = resolve_model("openai:/llama3")
    assert isinstance(model, OpenAICompatibleModel)
    assert (model.endpoint, model.api_key) == ("http://localhost:8080/v1", "sk-local")
    assert (
        resolve_model("openai:/llama3", base_url="http://gpu:8000/v1").endpoint
        == "http://gpu:8000/v1"
    )


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (None, "http://127.0.0.1:11434"),
        ("0.0.0.0:12345", "http://127.0.0.1:12345"),
        ("https://ollama.internal", "https://ollama.internal:11434"),
    ],
)
def test_ollama_endpoint(monkeypatch: pytest.MonkeyPatch, host: str | None, expected: str) -> None:
    if host is not None:
        monkeypatch.setenv("OLLAMA_HOST", host)
    model = resolve_model("ollama:/llama3")
    assert (model.endpoint, model.model_id) == (expected, "ollama:/llama3")


def test_no_model_uses_the_environment_or_says_how_to_configure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ModelNotConfiguredError, match="LOCALSCORERS_JUDGE_MODEL") as info:
        resolve_model(None)
    assert info.value.error_code == "JUDGE_MODEL_NOT_CONFIGURED"
    monkeypatch.setenv("LOCALSCORERS_JUDGE_MODEL", "ollama:/qwen3")
    assert resolve_model(None).model_id == "ollama:/qwen3"


@pytest.mark.parametrize("model", ["llama3", "openai:/", "python:/nocolon"])
def test_malformed_model_uris_are_refused_when_resolved(model: str) -> None:
    with pytest.raises(ProviderUnavailableError, match="model") as info:
        resolve_model(model)
    assert info.value.error_code == "JUDGE_MODEL_INVALID"
    assert isinstance(info.value, ConfigurationError)


def test_a_model_that_is_neither_a_uri_nor_a_callable_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"got 3\.5"):
        resolve_model(3.5)  # type: ignore[arg-type]


def test_provider_models_resolve_without_contacting_anything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant")
    anthropic = resolve_model("anthropic:/claude-3-5-haiku-latest")
    assert (anthropic.model_id, anthropic.endpoint) == (
        "anthropic:/claude-3-5-haiku-latest",
        "https://api.anthropic.com",
    )
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9999/v1")
    assert resolve_model("anthropic:/c").endpoint == "http://127.0.0.1:9999"
    ollama = resolve_model("ollama:/llama3.2:1b", base_url="http://127.0.0.1:11434/v1")
    assert (ollama.model_id, ollama.endpoint) == ("ollama:/llama3.2:1b", "http://127.0.0.1:11434")


def test_python_reference_and_callables() -> None:
    model = resolve_model("python:/tests.judges.test_judges:always_yes")
    assert isinstance(model, CallableModel)
    assert model.model_id == "python:/tests.judges.test_judges:always_yes"
    assert "yes" in ask(model).text
    with pytest.raises(ScorerLoadError):
        resolve_model("python:/tests.judges.test_judges:no_such_function")
    with pytest.raises(ModelRequestError, match="returned int"):
        ask(resolve_model(lambda messages: 42))  # type: ignore[arg-type, return-value]


def test_model_reference() -> None:
    assert model_reference("openai:/x") == "openai:/x"
    assert model_reference(None) is None
    assert model_reference(always_yes) == "python:/tests.judges.test_judges:always_yes"
    with pytest.raises(ConfigurationError, match="module level"):
        model_reference(lambda messages: "")


# -- the HTTP client --------------------------------------------------------------------------


def test_request_body_usage_and_api_key(llm: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    result = resolve_model("openai:/m", base_url=llm.base_url).complete(
        ChatRequest(MESSAGES, temperature=0.0, max_tokens=64)
    )
    assert result.text == '{"rationale": "Looks right.", "result": "yes"}'
    assert result.usage == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    assert result.latency_ms >= 0
    request = llm.requests[0]
    assert request["headers"]["authorization"] == "Bearer sk-test"
    assert request["body"] == {
        "model": "m",
        "messages": MESSAGES,
        "temperature": 0.0,
        "max_tokens": 64,
    }


def test_no_api_key_sends_no_authorization_and_missing_usage_is_empty(llm: FakeLLM) -> None:
    llm.default = Reply("ok", usage=None)
    result = ask(resolve_model("openai:/m", base_url=llm.base_url))
    assert "authorization" not in llm.requests[0]["headers"]
    assert "max_tokens" not in llm.requests[0]["body"]
    assert result.usage == {}


@pytest.mark.parametrize(
    ("reply", "code", "retry_after"),
    [
        (Reply("busy", status=429, headers={"Retry-After": "7"}), "JUDGE_RATE_LIMITED", 7.0),
        (Reply("overloaded", status=503), "JUDGE_SERVER_ERROR", None),
    ],
)
def test_transient_http_errors(
    llm: FakeLLM, reply: Reply, code: str, retry_after: float | None
) -> None:
    llm.default = reply
    with pytest.raises(TransientError) as info:
        ask(resolve_model("openai:/m", base_url=llm.base_url))
    assert (info.value.error_code, info.value.retry_after) == (code, retry_after)
    assert reply.content in str(info.value)


@pytest.mark.parametrize(
    ("status", "hint"), [(400, "retrying will not help"), (401, "OPENAI_API_KEY"), (404, "/v1")]
)
def test_other_client_errors_are_permanent_with_the_servers_message(
    llm: FakeLLM, status: int, hint: str
) -> None:
    llm.default = Reply("model 'm' not found", status=status)
    with pytest.raises(ModelRequestError) as info:
        ask(resolve_model("openai:/m", base_url=llm.base_url))
    assert info.value.status_code == status
    assert info.value.error_code == "JUDGE_REQUEST_REJECTED"
    assert "model 'm' not found" in str(info.value)
    assert hint in str(info.value)


def test_answer_that_is_not_chat_completions_is_rejected(llm: FakeLLM) -> None:
    llm.default = Reply(raw=b"<html>hello</html>")
    with pytest.raises(ModelRequestError, match="/v1") as info:
        ask(resolve_model("openai:/m", base_url=llm.base_url))
    assert info.value.error_code == "JUDGE_BAD_RESPONSE"


def test_timeout_is_transient(llm: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALSCORERS_JUDGE_TIMEOUT", "0.2")
    llm.default = Reply(hang=True)
    with pytest.raises(TransientError, match=r"0\.2 s") as info:
        ask(resolve_model("openai:/m", base_url=llm.base_url))
    assert info.value.error_code == "JUDGE_TIMEOUT"


def test_invalid_timeout_setting(llm: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALSCORERS_JUDGE_TIMEOUT", "soon")
    with pytest.raises(ConfigurationError, match="LOCALSCORERS_JUDGE_TIMEOUT"):
        ask(resolve_model("openai:/m", base_url=llm.base_url))


def test_connection_refused_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(TransientError, match="Is the server running") as info:
        ask(resolve_model("openai:/m", base_url=f"http://127.0.0.1:{port}/v1"))
    assert info.value.error_code == "JUDGE_CONNECTION_ERROR"


def test_concurrency_limit_is_per_endpoint_and_model(
    llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALSCORERS_JUDGE_CONCURRENCY", "1")
    llm.default = Reply(hang=True)
    model = resolve_model("openai:/m", base_url=llm.base_url)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            ask(model)
        except TransientError as exc:
            errors.append(exc)

    monkeypatch.setenv("LOCALSCORERS_JUDGE_TIMEOUT", "30")
    first = threading.Thread(target=call)
    first.start()
    limits = transport.limits_for(llm.base_url, "m")
    assert llm.received.wait(timeout=10)  # the first call reached the server
    assert not limits.semaphore.acquire(blocking=False)  # the one slot is taken
    other = transport.limits_for(llm.base_url, "other-model")
    assert other.semaphore.acquire(blocking=False)  # another model has its own
    other.semaphore.release()
    llm.release.set()
    first.join(timeout=40)
    assert limits.semaphore.acquire(blocking=False)
    limits.semaphore.release()
    assert len(errors) == 1  # the hung request ended in an error, not in a hang


# -- small pieces -----------------------------------------------------------------------------


def test_rate_limiter_spaces_requests_evenly() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(60, clock=lambda: now[0], sleep=sleep)
    assert [limiter.acquire() for _ in range(3)] == [0.0, 1.0, 1.0]
    now[0] += 5  # idle time is not banked into a burst beyond one request
    assert limiter.acquire() == 0.0
    assert limiter.acquire() == 1.0
    assert slept == [1.0, 1.0, 1.0]


def test_rpm_setting_applies_a_limiter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALSCORERS_JUDGE_RPM", "120")
    limits = transport.limits_for("http://example.invalid/v1", "m")
    assert limits.limiter is not None
    assert limits.limiter.rpm == 120
    monkeypatch.delenv("LOCALSCORERS_JUDGE_RPM")
    assert transport.limits_for("http://example.invalid/v1", "m").limiter is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("3", 3.0),
        ("1.5", 1.5),
        ("-4", 0.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert parse_retry_after(header, now=now) == expected
