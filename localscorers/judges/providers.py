"""Judge models: ``<provider>:/<model>`` URIs and Python callables behind one protocol.

Model strings follow MLflow's ``<provider>:/<model>`` form:

- ``openai:/<model>``: any OpenAI-compatible ``/chat/completions`` endpoint, at
  ``base_url``, else ``OPENAI_BASE_URL``, else ``https://api.openai.com/v1``. A local
  llama.cpp, vLLM or LM Studio server works with ``OPENAI_BASE_URL=http://localhost:8080/v1``.
  ``OPENAI_API_KEY`` is sent as a Bearer token when set (local servers need none).
  See :mod:`localscorers.judges.openai` for structured output.
- ``ollama:/<model>``: Ollama's native ``/api/chat`` at ``OLLAMA_HOST`` (default
  ``http://127.0.0.1:11434``) or ``base_url``.
- ``anthropic:/<model>``: the Messages API at ``ANTHROPIC_BASE_URL`` (default
  ``https://api.anthropic.com``) with ``ANTHROPIC_API_KEY``.
- ``python:/<module>:<qualname>``: an importable function ``(messages) -> str``. A judge
  given such a function as ``model=`` is stored this way.
- any other ``<provider>:/<model>``: through litellm (the ``litellm`` extra).
- A Python callable ``(messages) -> str`` is itself a model.
- None: ``LOCALSCORERS_JUDGE_MODEL``, else :class:`ModelNotConfiguredError`.

Building a judge checks only that a string looks like ``<provider>:/<model>``. Whether
the provider can be used (litellm installed, an API key set) is found out when the judge
runs, and is an error feedback then (:class:`ProviderUnavailableError`): code written
for MLflow that names a hosted model can still register its judges.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from typing import Protocol

from localscorers.evaluation import serialization
from localscorers.exceptions import ConfigurationError
from localscorers.judges import litellm as litellm_provider
from localscorers.judges import transport
from localscorers.judges.anthropic import DEFAULT_ANTHROPIC_BASE_URL, AnthropicModel
from localscorers.judges.ollama import DEFAULT_OLLAMA_HOST, OllamaModel, ollama_host
from localscorers.judges.openai import OpenAICompatibleModel
from localscorers.judges.transport import (
    ChatRequest,
    ChatResult,
    ModelNotConfiguredError,
    ModelRequestError,
    ProviderUnavailableError,
    RateLimiter,
    parse_retry_after,
)

__all__ = [
    "DEFAULT_OLLAMA_HOST",
    "DEFAULT_OPENAI_BASE_URL",
    "CallableModel",
    "ChatModel",
    "ChatRequest",
    "ChatResult",
    "ModelNotConfiguredError",
    "ModelRequestError",
    "OpenAICompatibleModel",
    "ProviderUnavailableError",
    "RateLimiter",
    "check_model",
    "describe_model",
    "model_reference",
    "parse_retry_after",
    "resolve_model",
]

DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"
_URI = re.compile(r"^([A-Za-z][A-Za-z0-9_.\-]*):/(.*\S.*)$")
_limits_for = transport.limits_for  # kept for tests that inspect the shared limits

# A model given to a judge: a model URI, a function (messages) -> str, or None.
ModelSpec = str | Callable[[list[dict[str, str]]], str] | None


class ChatModel(Protocol):
    """A chat model a judge can ask.

    Attributes:
        model_id: the model URI, recorded as the feedback's source.
        endpoint: where it runs (a base URL, or ``""`` for local callables); part of the
            judge cache key, because one model name on two servers may be two models.
    """

    model_id: str
    endpoint: str

    def complete(self, request: ChatRequest) -> ChatResult:
        """Answer a chat, constrained to ``schema`` (a JSON schema) where the server can.

        Raises:
            TransientError: a failure worth retrying (timeouts, HTTP 429 / 5xx).
            ModelRequestError: the server refused the request.
        """
        ...


class CallableModel:
    """A Python function ``(messages) -> str`` used as a judge model.

    Args:
        func: the function; it gets the chat messages and returns the answer text.
        model_id: how feedback names it (``python:/module:qualname`` by default).
    """

    def __init__(
        self, func: Callable[[list[dict[str, str]]], str], *, model_id: str | None = None
    ) -> None:
        self.func = func
        self.model_id = model_id or describe_model(func)
        self.endpoint = ""

    def complete(self, request: ChatRequest) -> ChatResult:
        """Call the function; the sampling parameters and the schema are not passed on.

        Raises:
            ModelRequestError: the function returned something other than a string.
        """
        # A plain function has no sampling parameters: only the messages are passed on.
        started = time.monotonic()
        text = self.func(request.messages)
        latency_ms = (time.monotonic() - started) * 1000
        if not isinstance(text, str):
            raise ModelRequestError(
                f"The judge model function {self.model_id} returned "
                f"{type(text).__name__}, not the answer text (str).",
                status_code=None,
                error_code="JUDGE_BAD_RESPONSE",
            )
        return ChatResult(text=text, usage={}, latency_ms=latency_ms, model_id=self.model_id)


# -- model URIs -----------------------------------------------------------------------------


def _split_uri(model: str) -> tuple[str, str] | None:
    match = _URI.match(model.strip())
    if match is None:
        return None
    return match.group(1).lower(), match.group(2).strip().strip("/")


def _uri_problem(model: str) -> str | None:
    parts = _split_uri(model)
    if parts is None or not parts[1]:
        return (
            f"Unsupported judge model {model!r}: a model is written '<provider>:/<model>', "
            "e.g. 'openai:/llama3' for any OpenAI-compatible server (set base_url= or "
            "OPENAI_BASE_URL for a local one), 'ollama:/llama3', "
            "'anthropic:/claude-3-5-haiku-latest', or 'python:/<module>:<function>'."
        )
    if parts[0] == "python" and ":" not in parts[1]:
        return f"Judge model {model!r} must name a function as 'python:/<module>:<qualname>'."
    return None


def check_model(model: object) -> None:
    """Validate a judge's ``model=`` without contacting or importing anything.

    Any ``<provider>:/<model>`` is accepted: whether that provider can be used is
    found out when the judge runs.

    Raises:
        ConfigurationError: the model is neither such a URI, a callable, nor None.
    """
    if model is None or (callable(model) and not isinstance(model, str)):
        return
    if not isinstance(model, str):
        raise ConfigurationError(
            f"model must be a model URI such as 'openai:/llama3', a function "
            f"(messages) -> str, or None; got {model!r}."
        )
    problem = _uri_problem(model)
    if problem is not None:
        raise ConfigurationError(problem)


def describe_model(model: ModelSpec) -> str:
    """Return a model's URI for display and provenance (``unconfigured`` for None)."""
    if model is None:
        return os.environ.get("LOCALSCORERS_JUDGE_MODEL", "").strip() or "unconfigured"
    if isinstance(model, str):
        return model.strip()
    module = getattr(model, "__module__", None) or "?"
    qualname = getattr(model, "__qualname__", None) or type(model).__qualname__
    return f"python:/{module}:{qualname}"


def model_reference(model: ModelSpec) -> str | None:
    """Return how a judge's model is stored: the URI, or ``python:/module:qualname``.

    Raises:
        ConfigurationError: the model is a function that cannot be imported by reference
            (a lambda, a closure, or one defined in ``__main__``).
    """
    if model is None or isinstance(model, str):
        return model
    module = getattr(model, "__module__", None)
    qualname = getattr(model, "__qualname__", "")
    reference = f"{module}:{qualname}"
    importable = bool(module) and module != "__main__" and "<" not in qualname
    if importable:
        try:
            importable = serialization.resolve_reference(reference) is model
        except ConfigurationError:
            importable = False
    if not importable:
        raise ConfigurationError(
            f"Cannot register a judge whose model is the function {qualname or model!r}: "
            "another process could not find it again. Define the function at module level "
            "in an importable module (it is then stored as 'python:/<module>:<qualname>'), "
            "or pass a model URI such as model='openai:/llama3'."
        )
    return f"python:/{reference}"


def _env(name: str) -> str | None:
    return os.environ.get(name, "").strip() or None


def _anthropic(name: str, base_url: str | None) -> AnthropicModel:
    endpoint = base_url or _env("ANTHROPIC_BASE_URL") or DEFAULT_ANTHROPIC_BASE_URL
    api_key = _env("ANTHROPIC_API_KEY")
    if api_key is None and endpoint.rstrip("/") == DEFAULT_ANTHROPIC_BASE_URL:
        raise ProviderUnavailableError(
            f"The judge model anthropic:/{name} needs an API key: set ANTHROPIC_API_KEY "
            "(or ANTHROPIC_BASE_URL to an Anthropic-compatible server that needs none).",
            error_code="JUDGE_API_KEY_MISSING",
        )
    return AnthropicModel(model=name, base_url=endpoint, api_key=api_key)


def resolve_model(model: ModelSpec, *, base_url: str | None = None) -> ChatModel:
    """Turn a judge's ``model=`` into a :class:`ChatModel` (nothing is contacted yet).

    Args:
        model: a model URI, a function ``(messages) -> str``, or None for
            ``LOCALSCORERS_JUDGE_MODEL``.
        base_url: the endpoint of the model's server, overriding the environment.

    Raises:
        ModelNotConfiguredError: model is None and ``LOCALSCORERS_JUDGE_MODEL`` is not set.
        ProviderUnavailableError: the model cannot be used here: a malformed URI,
            litellm not installed for its provider, or no Anthropic API key.
        ConfigurationError: model is neither a string, a callable nor None.
        ScorerLoadError: a ``python:/`` model cannot be imported.
    """
    if model is None:
        model = _env("LOCALSCORERS_JUDGE_MODEL")
        if model is None:
            raise ModelNotConfiguredError
    if not isinstance(model, str):
        check_model(model)
        return CallableModel(model)
    problem = _uri_problem(model)
    parts = _split_uri(model)
    if problem is not None or parts is None:
        raise ProviderUnavailableError(problem or model, error_code="JUDGE_MODEL_INVALID")
    scheme, name = parts
    if scheme == "python":
        func = serialization.resolve_reference(name)
        if not callable(func):
            raise ConfigurationError(f"Judge model {model!r} does not name a function.")
        return CallableModel(func, model_id=f"python:/{name}")
    if scheme == "openai":
        endpoint = base_url or _env("OPENAI_BASE_URL") or DEFAULT_OPENAI_BASE_URL
        return OpenAICompatibleModel(model=name, base_url=endpoint, api_key=_env("OPENAI_API_KEY"))
    if scheme == "ollama":
        return OllamaModel(model=name, host=base_url or ollama_host())
    if scheme == "anthropic":
        return _anthropic(name, base_url)
    if not litellm_provider.litellm_installed():
        raise litellm_provider.not_installed(f"{scheme}:/{name}")
    return litellm_provider.LiteLLMModel(provider=scheme, model=name, base_url=base_url)
