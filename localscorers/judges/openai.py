"""Judges over any OpenAI-compatible ``/chat/completions`` endpoint, with structured output.

Small local models (a 270M-parameter model behind llama.cpp, say) rarely answer in the
JSON a judge asks for when merely told to, and without a cap some ramble for thousands
of tokens. So every request carries ``max_tokens`` and, when the judge has an answer
schema, ``response_format``; servers then constrain decoding to that schema.

Servers differ in what ``response_format`` they take. The request starts with
``{"type": "json_schema", ...}`` (OpenAI, vLLM, llama.cpp's server, Ollama, LM Studio);
an HTTP 400 (or 422, a validation error) is retried with
``{"type": "json_object", "schema": ...}`` (llama-cpp-python's server takes only this
form, and constrains to the schema given), then without ``response_format``. The form
that worked is remembered per endpoint for the life of the process, so later calls go
straight to it. A 400 that persists without ``response_format`` is about something else
and is raised; nothing is remembered then.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx

from localscorers.judges import transport
from localscorers.judges.transport import ChatRequest, ChatResult, ModelRequestError

__all__ = [
    "MODES",
    "OpenAICompatibleModel",
    "endpoint_mode",
    "forget_endpoint_modes",
    "remember_endpoint_mode",
    "response_format",
]

# Structured-output forms, strongest first.
MODES = ("json_schema", "json_object", "none")
# Statuses meaning "this request body is not accepted" (FastAPI servers answer 422).
_REJECTED = frozenset({400, 422})


def _refused_format(response: httpx.Response) -> bool:
    """Tell whether the server refused the request's ``response_format``.

    HTTP 400 or 422 from a server that does not know a form. llama-cpp-python 0.3 answers
    its own request-validation error (``'json_schema'`` is not ``'text'`` or
    ``'json_object'``) with HTTP 500, so a 5xx that names ``response_format`` counts too;
    any other 5xx stays a transient error to retry.
    """
    if response.status_code in _REJECTED:
        return True
    return response.status_code >= 500 and "response_format" in response.text


_modes_lock = threading.Lock()
_modes: dict[str, str] = {}


def endpoint_mode(base_url: str) -> str:
    """The structured-output form an endpoint is known to accept (``json_schema`` if unknown)."""
    with _modes_lock:
        return _modes.get(base_url.rstrip("/"), MODES[0])


def remember_endpoint_mode(base_url: str, mode: str) -> None:
    """Record the structured-output form an endpoint accepts (``MODES``)."""
    with _modes_lock:
        _modes[base_url.rstrip("/")] = mode


def forget_endpoint_modes() -> None:
    """Forget what every endpoint accepts (a server was upgraded; tests)."""
    with _modes_lock:
        _modes.clear()


def response_format(mode: str, schema: dict[str, Any]) -> dict[str, Any] | None:
    """The ``response_format`` of one structured-output form (None for ``none``)."""
    if mode == "json_schema":
        return {
            "type": "json_schema",
            "json_schema": {"name": "judge_answer", "strict": True, "schema": schema},
        }
    if mode == "json_object":
        return {"type": "json_object", "schema": schema}
    return None


def _format_fields(mode: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The request fields asking for structured output in one form (none for ``none``)."""
    form = response_format(mode, schema)
    return {} if form is None else {"response_format": form}


def _message_text(content: object) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        # Some servers answer with content parts: [{"type": "text", "text": "..."}].
        parts = [p.get("text") for p in content if isinstance(p, dict)]
        texts = [p for p in parts if isinstance(p, str)]
        return "".join(texts) if texts else None
    return None


def _hint(status: int) -> str:
    if status in {401, 403}:
        return "Set OPENAI_API_KEY to a key this server accepts."
    if status == 404:
        return (
            "Check the model name and that the base URL is the API root (it usually ends in /v1)."
        )
    return "Fix the request or the judge's model settings; retrying will not help."


class OpenAICompatibleModel:
    """A model behind an OpenAI-compatible ``/chat/completions`` endpoint.

    Args:
        model: the model name the server knows (``llama3``, ``gpt-4o-mini``).
        base_url: the API root, usually ending in ``/v1``.
        api_key: sent as ``Authorization: Bearer``; None sends no header.
        scheme: the provider in the model URI.
    """

    # How the user sets the endpoint, named when it cannot be reached.
    setting = "base_url= or OPENAI_BASE_URL"

    def __init__(
        self, *, model: str, base_url: str, api_key: str | None = None, scheme: str = "openai"
    ) -> None:
        self.model = model
        self.base_url = self.endpoint = base_url.rstrip("/")
        self.api_key = api_key
        self.model_id = f"{scheme}:/{model}"

    def __repr__(self) -> str:
        return f"OpenAICompatibleModel({self.model_id!r}, base_url={self.base_url!r})"

    def complete(self, request: ChatRequest) -> ChatResult:
        """Send one chat-completions request and return the first choice's text.

        Args:
            request: the chat, the sampling temperature, the cap on the answer (None
                sends none) and the JSON schema of the answer, asked for as structured output.

        Raises:
            TransientError: HTTP 429 or 5xx, a timeout, or a connection failure.
            ModelRequestError: another HTTP 4xx, or an answer that is not chat-completions JSON.
            ConfigurationError: a ``LOCALSCORERS_JUDGE_*`` setting is invalid.
        """
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": request.messages,
            "temperature": request.temperature,
        }
        if request.max_tokens is not None:
            payload["max_tokens"] = request.max_tokens
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        forms: dict[str, dict[str, Any]] = {"none": {}}
        if request.schema is not None:
            weaker = MODES[MODES.index(endpoint_mode(self.base_url)) :]
            forms = {form: _format_fields(form, request.schema) for form in weaker}
        reply = transport.post_trying(
            self,
            "/chat/completions",
            payload,
            forms,
            headers=headers,
            hint=_hint,
            refused=_refused_format,
        )
        text, answer = self._check(reply.response)
        if request.schema is not None and reply.form != endpoint_mode(self.base_url):
            remember_endpoint_mode(self.base_url, reply.form)
        usage = answer.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        tokens = (usage.get("prompt_tokens"), usage.get("completion_tokens"))
        return reply.result(self, text, tokens)

    def _check(self, response: httpx.Response) -> tuple[str, dict[str, Any]]:
        try:
            body = response.json()
            text = _message_text(body["choices"][0]["message"].get("content"))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            text = None
            body = None
        if text is None or not isinstance(body, dict):
            shown = response.text[: transport.ERROR_TEXT_LIMIT]
            raise ModelRequestError(
                f"The server at {self.base_url} answered HTTP {response.status_code} but not "
                f"with a chat-completions message: {shown!r}. "
                "Check that the base URL points at an OpenAI-compatible API (it usually ends "
                "in /v1).",
                status_code=response.status_code,
                error_code="JUDGE_BAD_RESPONSE",
            )
        return text, body
