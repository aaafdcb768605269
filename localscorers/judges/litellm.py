"""Judges on any other ``<provider>:/<model>`` through litellm (the ``litellm`` extra).

``bedrock:/anthropic.claude-3-haiku`` becomes litellm's ``bedrock/anthropic.claude-3-haiku``,
with litellm's own settings (each provider's environment variables). litellm is imported
only when such a judge runs; when it is not installed the evaluation records a
``JUDGE_PROVIDER_NOT_INSTALLED`` error feedback saying how to install it, and building or
registering the judge still works. Structured output is asked for with
``response_format`` (a JSON schema); a provider that refuses it (a bad-request error) is
asked again without it.
"""

from __future__ import annotations

import importlib
import importlib.util
import time
from types import ModuleType
from typing import Any

from localscorers.exceptions import TransientError
from localscorers.judges import transport
from localscorers.judges.openai import response_format
from localscorers.judges.transport import (
    ChatRequest,
    ChatResult,
    ModelRequestError,
    ProviderUnavailableError,
)

__all__ = ["LiteLLMModel", "litellm_installed", "not_installed"]


def litellm_installed() -> bool:
    """Whether litellm can be imported (without importing it: it is slow to import)."""
    return importlib.util.find_spec("litellm") is not None


def not_installed(model_id: str) -> ProviderUnavailableError:
    """The error of a judge whose provider needs litellm when litellm is missing."""
    return ProviderUnavailableError(
        f"The judge model {model_id} needs litellm, which is not installed. Install it "
        "with \"pip install 'localscorers[litellm]'\", or use a model localscorers speaks "
        "to directly: 'openai:/<model>' (any OpenAI-compatible server), 'ollama:/<model>' "
        "or 'anthropic:/<model>'.",
        error_code="JUDGE_PROVIDER_NOT_INSTALLED",
    )


def _load() -> ModuleType:
    return importlib.import_module("litellm")


def _translate(exc: Exception, model_id: str) -> Exception:
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    message = f"The judge model {model_id} (through litellm) failed: {name}: {exc}"
    if name == "Timeout" or status == 408:
        return TransientError(message, error_code="JUDGE_TIMEOUT")
    if status == 429:
        return TransientError(message, error_code="JUDGE_RATE_LIMITED")
    if name == "APIConnectionError" or (isinstance(status, int) and status >= 500):
        return TransientError(message, error_code="JUDGE_SERVER_ERROR")
    return ModelRequestError(message, status_code=status if isinstance(status, int) else None)


class LiteLLMModel:
    """A ``<provider>:/<model>`` model called through ``litellm.completion``.

    Args:
        provider: the provider (``bedrock``, ``vertex_ai``, ``mistral``...).
        model: the model name within it.
        base_url: passed to litellm as ``api_base`` when given.
    """

    def __init__(self, *, provider: str, model: str, base_url: str | None = None) -> None:
        self.provider = provider
        self.model = model
        self.base_url = base_url
        self.endpoint = base_url or f"litellm:{provider}"
        self.model_id = f"{provider}:/{model}"

    def __repr__(self) -> str:
        return f"LiteLLMModel({self.model_id!r})"

    def complete(self, request: ChatRequest) -> ChatResult:
        """Call ``litellm.completion`` once (twice if ``response_format`` is refused).

        Raises:
            ProviderUnavailableError: litellm is not installed.
            TransientError: a timeout, rate limit, connection failure or server error.
            ModelRequestError: another refusal, or an answer without text.
        """
        try:
            litellm = _load()
        except ImportError as exc:
            raise not_installed(self.model_id) from exc
        arguments: dict[str, Any] = {
            "model": f"{self.provider}/{self.model}",
            "messages": request.messages,
            "temperature": request.temperature,
            "timeout": transport.timeout_seconds(),
        }
        if request.max_tokens is not None:
            arguments["max_tokens"] = request.max_tokens
        if self.base_url:
            arguments["api_base"] = self.base_url
        forms = (
            [response_format("json_schema", request.schema), None]
            if request.schema is not None
            else [None]
        )
        started = time.monotonic()
        with transport.limited(self.endpoint, self.model):
            for index, form in enumerate(forms):
                call = dict(arguments, response_format=form) if form is not None else arguments
                try:
                    response = litellm.completion(**call)
                    break
                except Exception as exc:  # litellm's errors are a tree of its own
                    error = _translate(exc, self.model_id)
                    refused = isinstance(error, ModelRequestError) and error.status_code == 400
                    if not (refused and index + 1 < len(forms)):
                        raise error from exc
        latency_ms = (time.monotonic() - started) * 1000
        try:
            text = response.choices[0].message.content
            usage = getattr(response, "usage", None)
        except (AttributeError, IndexError, TypeError):
            text, usage = None, None
        if not isinstance(text, str):
            raise ModelRequestError(
                f"litellm returned no answer text for {self.model_id}: {response!r:.300}",
                status_code=None,
                error_code="JUDGE_BAD_RESPONSE",
            )
        return ChatResult(
            text=text,
            usage=transport.token_counts(
                getattr(usage, "prompt_tokens", None), getattr(usage, "completion_tokens", None)
            ),
            latency_ms=latency_ms,
            model_id=self.model_id,
            output_mode="json_schema" if index == 0 and request.schema is not None else "none",
        )
