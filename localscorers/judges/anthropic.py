"""Judges on Anthropic's Messages API, over plain httpx (no SDK).

``POST {ANTHROPIC_BASE_URL}/v1/messages`` with ``x-api-key: $ANTHROPIC_API_KEY`` and
``anthropic-version: 2023-06-01``. System messages go to the top-level ``system``
field. Structured output is asked for the way the Messages API supports across
models: one tool whose ``input_schema`` is the judge's answer schema, with
``tool_choice`` forcing it, so the answer is the tool call's ``input``. A server that
answers HTTP 400 to tools (some Anthropic-compatible proxies) is asked again without
them, and that is remembered per endpoint.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx

from localscorers.judges import transport
from localscorers.judges.transport import ChatRequest, ChatResult, ModelRequestError

__all__ = ["ANTHROPIC_VERSION", "DEFAULT_ANTHROPIC_BASE_URL", "AnthropicModel"]

DEFAULT_ANTHROPIC_BASE_URL = "https://api.anthropic.com"
ANTHROPIC_VERSION = "2023-06-01"
_TOOL = "judge_answer"
# The Messages API requires max_tokens.
_FALLBACK_MAX_TOKENS = 512

_lock = threading.Lock()
_no_tools: set[str] = set()


def _hint(status: int) -> str:
    if status in {401, 403}:
        return "Set ANTHROPIC_API_KEY to a key this server accepts."
    if status == 404:
        return "Check the model name and ANTHROPIC_BASE_URL (the API root, without /v1)."
    return "Fix the request or the judge's model settings; retrying will not help."


def _split_system(messages: list[dict[str, str]]) -> tuple[str, list[dict[str, str]]]:
    system = "\n\n".join(m["content"] for m in messages if m.get("role") == "system")
    chat = [
        {"role": m.get("role", "user"), "content": m["content"]}
        for m in messages
        if m.get("role") != "system"
    ]
    return system, chat


def _tool_fields(schema: dict[str, Any]) -> dict[str, Any]:
    """The request fields forcing one tool call whose input is the judge's answer."""
    tool = {
        "name": _TOOL,
        "description": "Record the verdict and its rationale.",
        "input_schema": schema,
    }
    return {"tools": [tool], "tool_choice": {"type": "tool", "name": _TOOL}}


class AnthropicModel:
    """A model behind the Anthropic Messages API.

    Args:
        model: the model name (``claude-3-5-haiku-latest``).
        base_url: the API root (``https://api.anthropic.com``); a trailing ``/v1`` is dropped.
        api_key: sent as ``x-api-key``; None sends none (a local proxy may need none).
    """

    # How the user sets the endpoint, named when it cannot be reached.
    setting = "ANTHROPIC_BASE_URL"

    def __init__(self, *, model: str, base_url: str, api_key: str | None) -> None:
        self.model = model
        self.base_url = self.endpoint = base_url.rstrip("/").removesuffix("/v1")
        self.api_key = api_key
        self.model_id = f"anthropic:/{model}"

    def __repr__(self) -> str:
        return f"AnthropicModel({self.model_id!r}, base_url={self.base_url!r})"

    def _payload(
        self, messages: list[dict[str, str]], temperature: float, max_tokens: int | None
    ) -> dict[str, Any]:
        system, chat = _split_system(messages)
        payload: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens or _FALLBACK_MAX_TOKENS,
            "messages": chat,
            "temperature": temperature,
        }
        if system:
            payload["system"] = system
        return payload

    def complete(self, request: ChatRequest) -> ChatResult:
        """Send one Messages request; the answer is the forced tool call's input, as JSON.

        Raises:
            TransientError: HTTP 429, 5xx or 529 (overloaded), a timeout, or a
                connection failure.
            ModelRequestError: another HTTP 4xx, or an answer that is not a message.
        """
        payload = self._payload(request.messages, request.temperature, request.max_tokens)
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if self.api_key:
            headers["x-api-key"] = self.api_key
        with _lock:
            refuses_tools = self.base_url in _no_tools
        forms: dict[str, dict[str, Any]] = {"none": {}}
        if request.schema is not None and not refuses_tools:
            forms = {"tool": _tool_fields(request.schema), "none": {}}
        reply = transport.post_trying(
            self, "/v1/messages", payload, forms, headers=headers, hint=_hint
        )
        text, answer = self._check(reply.response)
        if request.schema is not None and reply.form == "none":
            with _lock:
                _no_tools.add(self.base_url)
        usage = answer.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        return reply.result(self, text, (usage.get("input_tokens"), usage.get("output_tokens")))

    def _check(self, response: httpx.Response) -> tuple[str, dict[str, Any]]:
        try:
            body = response.json()
            blocks = body["content"]
            texts: list[str] = []
            for block in blocks:
                if block.get("type") == "tool_use" and isinstance(block.get("input"), dict):
                    texts = [json.dumps(block["input"], ensure_ascii=False)]
                    break
                if block.get("type") == "text" and isinstance(block.get("text"), str):
                    texts.append(block["text"])
        except (ValueError, KeyError, TypeError, AttributeError):
            body, texts = None, []
        if not texts or not isinstance(body, dict):
            raise ModelRequestError(
                f"The server at {self.base_url} answered HTTP {response.status_code} but not "
                f"with a Messages API message: {response.text[: transport.ERROR_TEXT_LIMIT]!r}. "
                "Check ANTHROPIC_BASE_URL (the API root, e.g. https://api.anthropic.com).",
                status_code=response.status_code,
                error_code="JUDGE_BAD_RESPONSE",
            )
        return "".join(texts), body
