"""Judges on a local Ollama server, through its native ``/api/chat``.

Why the native API rather than Ollama's OpenAI-compatible ``/v1``: ``/api/chat``
takes the answer's JSON schema as ``format`` (Ollama 0.5 and later constrain decoding
to it), caps the answer with ``options.num_predict``, reports tokens as
``prompt_eval_count`` / ``eval_count``, and has done so across Ollama versions; older
servers that know only ``format: "json"`` answer HTTP 400 to a schema, and the request
is retried with ``"json"``, then without ``format`` (remembered per host, as for
OpenAI-compatible endpoints).

The host is ``OLLAMA_HOST`` (``host:port`` or a URL; default ``http://127.0.0.1:11434``),
or the judge's ``base_url=``.
"""

from __future__ import annotations

import os
import threading
from typing import Any
from urllib.parse import urlsplit

import httpx

from localscorers.judges import transport
from localscorers.judges.transport import ChatRequest, ChatResult, ModelRequestError

__all__ = ["DEFAULT_OLLAMA_HOST", "OllamaModel", "ollama_host"]

DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"
_PORT = 11434
_FORMATS = ("schema", "json", "none")

_lock = threading.Lock()
_formats: dict[str, str] = {}


def ollama_host() -> str:
    """The Ollama server from ``OLLAMA_HOST`` as a URL (default ``http://127.0.0.1:11434``)."""
    host = os.environ.get("OLLAMA_HOST", "").strip() or DEFAULT_OLLAMA_HOST
    if "://" not in host:
        host = f"http://{host}"
    parts = urlsplit(host)
    hostname = parts.hostname or "127.0.0.1"
    # OLLAMA_HOST is often the server's bind address; clients cannot connect to 0.0.0.0.
    if hostname in {"0.0.0.0", "::"}:  # noqa: S104 - mapped away from, never bound to
        hostname = "127.0.0.1"
    if ":" in hostname:
        hostname = f"[{hostname}]"
    return f"{parts.scheme}://{hostname}:{parts.port or _PORT}"


def _hint(status: int) -> str:
    if status == 404:
        return "Pull the model first ('ollama pull <model>') or check its name ('ollama list')."
    return "Fix the request or the judge's model settings; retrying will not help."


class OllamaModel:
    """A model served by Ollama.

    Args:
        model: the model name (``llama3.2:1b``).
        host: the server's root URL; a trailing ``/v1`` (the OpenAI-compatible API) is
            dropped, since the native API is used.
    """

    # How the user sets the endpoint, named when it cannot be reached.
    setting = "OLLAMA_HOST or base_url="

    def __init__(self, *, model: str, host: str) -> None:
        root = host.rstrip("/")
        self.model = model
        self.host = self.endpoint = root.removesuffix("/v1")
        self.model_id = f"ollama:/{model}"

    def __repr__(self) -> str:
        return f"OllamaModel({self.model_id!r}, host={self.host!r})"

    def complete(self, request: ChatRequest) -> ChatResult:
        """Ask ``/api/chat`` once (not streamed) and return the message.

        Raises:
            TransientError: HTTP 429 or 5xx, a timeout, or a connection failure.
            ModelRequestError: another HTTP 4xx (an unknown model is 404), or a bad answer.
        """
        options: dict[str, Any] = {"temperature": request.temperature}
        if request.max_tokens is not None:
            options["num_predict"] = request.max_tokens
        payload = {
            "model": self.model,
            "messages": request.messages,
            "stream": False,
            "options": options,
        }
        forms: dict[str, dict[str, Any]] = {"none": {}}
        if request.schema is not None:
            with _lock:
                known = _formats.get(self.host, _FORMATS[0])
            fields: dict[str, dict[str, Any]] = {
                "schema": {"format": request.schema},
                "json": {"format": "json"},
                "none": {},
            }
            forms = {form: fields[form] for form in _FORMATS[_FORMATS.index(known) :]}
        reply = transport.post_trying(self, "/api/chat", payload, forms, headers={}, hint=_hint)
        text, answer = self._check(reply.response)
        if request.schema is not None:
            with _lock:
                _formats[self.host] = reply.form
        tokens = (answer.get("prompt_eval_count"), answer.get("eval_count"))
        return reply.result(
            self, text, tokens, output_mode="none" if reply.form == "none" else "format"
        )

    def _check(self, response: httpx.Response) -> tuple[str, dict[str, Any]]:
        try:
            body = response.json()
            text = body["message"]["content"]
        except (ValueError, KeyError, TypeError):
            body, text = None, None
        if not isinstance(text, str) or not isinstance(body, dict):
            raise ModelRequestError(
                f"The server at {self.host} answered HTTP {response.status_code} but not like "
                f"Ollama's /api/chat: {response.text[: transport.ERROR_TEXT_LIMIT]!r}. Check "
                "OLLAMA_HOST (or base_url=): it is the server's root, e.g. "
                "http://127.0.0.1:11434.",
                status_code=response.status_code,
                error_code="JUDGE_BAD_RESPONSE",
            )
        return text, body
