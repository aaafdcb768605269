"""Judge models: one small protocol over OpenAI-compatible chat endpoints and Python callables.

Model strings follow MLflow's ``<provider>:/<model>`` form:

- ``openai:/<model>``: any OpenAI-compatible ``/chat/completions`` endpoint, at
  ``base_url``, else ``OPENAI_BASE_URL``, else ``https://api.openai.com/v1``. A local
  llama.cpp, vLLM or LM Studio server works with ``OPENAI_BASE_URL=http://localhost:8080/v1``.
  ``OPENAI_API_KEY`` is sent as a Bearer token when set (local servers need none).
- ``ollama:/<model>``: the OpenAI-compatible endpoint of Ollama (``OLLAMA_HOST``, default
  ``http://localhost:11434``, plus ``/v1``).
- ``python:/<module>:<qualname>``: an importable function ``(messages) -> str``. A judge
  given such a function as ``model=`` is stored this way.
- A Python callable ``(messages) -> str`` is itself a model.
- None: ``LOCALSCORERS_JUDGE_MODEL``, else :class:`ModelNotConfiguredError`.

HTTP 429, 5xx, timeouts and connection failures raise :class:`TransientError`, which the
evaluator retries with backoff; other 4xx answers raise :class:`ModelRequestError` with
the server's message. Requests to one (endpoint, model) pair share a concurrency limit
(``LOCALSCORERS_JUDGE_CONCURRENCY``, default 4) and an optional requests-per-minute
limit (``LOCALSCORERS_JUDGE_RPM``), process-wide: the limits protect one server, whichever
judge instance is calling it.
"""

from __future__ import annotations

import atexit
import email.utils
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from localscorers.evaluation import serialization
from localscorers.exceptions import ConfigurationError, LocalScorersError, TransientError

__all__ = [
    "DEFAULT_OLLAMA_HOST",
    "DEFAULT_OPENAI_BASE_URL",
    "CallableModel",
    "ChatModel",
    "ChatResult",
    "ModelNotConfiguredError",
    "ModelRequestError",
    "OpenAICompatibleModel",
    "RateLimiter",
    "check_model",
    "describe_model",
    "model_reference",
    "parse_retry_after",
    "resolve_model",
]

DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"
DEFAULT_OLLAMA_HOST = "http://localhost:11434"
_OLLAMA_PORT = 11434
_DEFAULT_TIMEOUT = 60.0
_DEFAULT_CONCURRENCY = 4
_SCHEMES = ("openai", "ollama", "python")
_ERROR_TEXT_LIMIT = 500

# A model given to a judge: a model URI, a function (messages) -> str, or None.
ModelSpec = str | Callable[[list[dict[str, str]]], str] | None


class ModelNotConfiguredError(ConfigurationError):
    """No judge model was given and ``LOCALSCORERS_JUDGE_MODEL`` is not set."""

    error_code = "JUDGE_MODEL_NOT_CONFIGURED"

    def __init__(self) -> None:
        super().__init__(
            "No judge model is configured. Pass model= to the judge (for example "
            "model='openai:/llama3'), or set LOCALSCORERS_JUDGE_MODEL, e.g. "
            "LOCALSCORERS_JUDGE_MODEL=openai:/llama3 with "
            "OPENAI_BASE_URL=http://localhost:8080/v1 for a local llama.cpp or vLLM "
            "server, or LOCALSCORERS_JUDGE_MODEL=ollama:/llama3 for Ollama."
        )


class ModelRequestError(LocalScorersError):
    """The judge model's server refused the request (an HTTP 4xx other than 429).

    Retrying would get the same answer, so the evaluator records it at once.

    Attributes:
        status_code: the HTTP status, or None when the answer was not chat-completions JSON.
        error_code: the code recorded on the error feedback.
    """

    def __init__(
        self, message: str, *, status_code: int | None, error_code: str = "JUDGE_REQUEST_REJECTED"
    ) -> None:
        self.status_code = status_code
        self.error_code = error_code
        super().__init__(message)


@dataclass(frozen=True)
class ChatResult:
    """One answer of a judge model.

    Attributes:
        text: the assistant message's text.
        usage: token counts the server reported (``prompt_tokens``, ``completion_tokens``,
            ``total_tokens``); empty when it reported none.
        latency_ms: time spent waiting for the answer (not for a concurrency slot).
        model_id: the model URI, e.g. ``openai:/llama3``.
    """

    text: str
    usage: dict[str, int]
    latency_ms: float
    model_id: str


class ChatModel(Protocol):
    """A chat model a judge can ask.

    Attributes:
        model_id: the model URI, recorded as the feedback's source.
        endpoint: where it runs (a base URL, or ``""`` for local callables); part of the
            judge cache key, because one model name on two servers may be two models.
    """

    model_id: str
    endpoint: str

    def complete(
        self, messages: list[dict[str, str]], *, temperature: float, max_tokens: int | None
    ) -> ChatResult:
        """Answer a chat.

        Raises:
            TransientError: a failure worth retrying (timeouts, HTTP 429 / 5xx).
            ModelRequestError: the server refused the request.
        """
        ...


# -- settings -------------------------------------------------------------------------


def _env_positive(name: str, default: float | None) -> float | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise ConfigurationError(f"{name} must be a positive number, got {raw!r}.")
    return value


def _timeout_seconds() -> float:
    return _env_positive("LOCALSCORERS_JUDGE_TIMEOUT", _DEFAULT_TIMEOUT) or _DEFAULT_TIMEOUT


# -- rate and concurrency limits ----------------------------------------------------------


class RateLimiter:
    """Spaces request starts at least ``60 / rpm`` seconds apart; thread-safe.

    Even spacing rather than a per-minute bucket: a burst of backfill calls would
    otherwise hit a small local server all at once at the top of each minute.

    Args:
        rpm: requests per minute.
        clock: a monotonic clock in seconds.
        sleep: how to wait.
    """

    def __init__(
        self,
        rpm: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rpm = rpm
        self._interval = 60.0 / rpm
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_start: float | None = None

    def acquire(self) -> float:
        """Wait for this caller's turn; return the seconds waited."""
        with self._lock:
            now = self._clock()
            start = now if self._next_start is None else max(now, self._next_start)
            self._next_start = start + self._interval
        wait = start - now
        if wait > 0:
            self._sleep(wait)
        return wait


@dataclass
class _Limits:
    concurrency: int
    rpm: float | None
    semaphore: threading.BoundedSemaphore = field(init=False)
    limiter: RateLimiter | None = field(init=False)

    def __post_init__(self) -> None:
        self.semaphore = threading.BoundedSemaphore(self.concurrency)
        self.limiter = RateLimiter(self.rpm) if self.rpm else None


# Process-wide on purpose: the limits protect one server, and every judge instance
# (each evaluation may rebuild its scorer) must share them.
_limits_lock = threading.Lock()
_limits: dict[tuple[str, str], _Limits] = {}


def _limits_for(base_url: str, model: str) -> _Limits:
    concurrency = int(_env_positive("LOCALSCORERS_JUDGE_CONCURRENCY", _DEFAULT_CONCURRENCY) or 1)
    rpm = _env_positive("LOCALSCORERS_JUDGE_RPM", None)
    key = (base_url, model)
    with _limits_lock:
        limits = _limits.get(key)
        # Settings changed (tests, or a long-lived worker re-reading its env): start afresh.
        if limits is None or (limits.concurrency, limits.rpm) != (concurrency, rpm):
            limits = _Limits(concurrency=concurrency, rpm=rpm)
            _limits[key] = limits
        return limits


# -- the HTTP client ----------------------------------------------------------------------


class _SharedClient:
    """One pooled ``httpx.Client`` per process, rebuilt after a fork."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._pid = 0

    def get(self) -> httpx.Client:
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                # A forked child must not share the parent's sockets; drop them unclosed.
                self._client = httpx.Client(follow_redirects=False)
                self._pid = os.getpid()
            return self._client

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None and self._pid == os.getpid():
            client.close()


_client = _SharedClient()
atexit.register(_client.close)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Return the seconds a ``Retry-After`` header asks for (delta seconds or an HTTP date)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _server_message(response: httpx.Response) -> str:
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body.get("message")))
        if isinstance(error, dict):
            error = error.get("message", error)
        if error is not None:
            return str(error)[:_ERROR_TEXT_LIMIT]
    text = response.text.strip()
    return text[:_ERROR_TEXT_LIMIT] if text else response.reason_phrase


def _usage(body: dict[str, Any]) -> dict[str, int]:
    usage = body.get("usage")
    if not isinstance(usage, dict):
        return {}
    return {
        key: int(usage[key])
        for key in ("prompt_tokens", "completion_tokens", "total_tokens")
        if isinstance(usage.get(key), int | float) and not isinstance(usage.get(key), bool)
    }


def _message_text(content: object) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        # Some servers answer with content parts: [{"type": "text", "text": "..."}].
        parts = [p.get("text") for p in content if isinstance(p, dict)]
        texts = [p for p in parts if isinstance(p, str)]
        return "".join(texts) if texts else None
    return None


class OpenAICompatibleModel:
    """A model behind an OpenAI-compatible ``/chat/completions`` endpoint.

    Args:
        model: the model name the server knows (``llama3``, ``gpt-4o-mini``).
        base_url: the API root, usually ending in ``/v1``.
        api_key: sent as ``Authorization: Bearer``; None sends no header.
        scheme: the provider in the model URI (``openai`` or ``ollama``).
    """

    def __init__(
        self, *, model: str, base_url: str, api_key: str | None = None, scheme: str = "openai"
    ) -> None:
        self.model = model
        self.base_url = self.endpoint = base_url.rstrip("/")
        self.api_key = api_key
        self.model_id = f"{scheme}:/{model}"

    def __repr__(self) -> str:
        return f"OpenAICompatibleModel({self.model_id!r}, base_url={self.base_url!r})"

    def complete(
        self, messages: list[dict[str, str]], *, temperature: float, max_tokens: int | None
    ) -> ChatResult:
        """Send one chat-completions request and return the first choice's text.

        Raises:
            TransientError: HTTP 429 or 5xx, a timeout, or a connection failure.
            ModelRequestError: another HTTP 4xx, or an answer that is not chat-completions JSON.
            ConfigurationError: a ``LOCALSCORERS_JUDGE_*`` setting is invalid.
        """
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": temperature,
        }
        if max_tokens is not None:
            payload["max_tokens"] = max_tokens
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        timeout = _timeout_seconds()
        limits = _limits_for(self.base_url, self.model)
        with limits.semaphore:
            if limits.limiter is not None:
                limits.limiter.acquire()
            started = time.monotonic()
            response = self._post(payload, headers=headers, timeout=timeout)
            latency_ms = (time.monotonic() - started) * 1000
        text, body = self._check(response)
        return ChatResult(
            text=text, usage=_usage(body), latency_ms=latency_ms, model_id=self.model_id
        )

    def _post(
        self, payload: dict[str, Any], *, headers: dict[str, str], timeout: float
    ) -> httpx.Response:
        url = f"{self.base_url}/chat/completions"
        try:
            return _client.get().post(url, json=payload, headers=headers, timeout=timeout)
        except httpx.TimeoutException as exc:
            raise TransientError(
                f"The judge model {self.model_id} at {self.base_url} did not answer within "
                f"{timeout:g} s ({type(exc).__name__}). Raise LOCALSCORERS_JUDGE_TIMEOUT or "
                "use a faster model.",
                error_code="JUDGE_TIMEOUT",
            ) from exc
        except httpx.TransportError as exc:
            raise TransientError(
                f"Cannot reach the judge model {self.model_id} at {self.base_url}: {exc}. "
                "Is the server running, and is the base URL (base_url= or OPENAI_BASE_URL) right?",
                error_code="JUDGE_CONNECTION_ERROR",
            ) from exc

    def _check(self, response: httpx.Response) -> tuple[str, dict[str, Any]]:
        status = response.status_code
        if status == 429:
            raise TransientError(
                f"The judge model {self.model_id} at {self.base_url} is rate limiting us "
                f"(HTTP 429): {_server_message(response)}",
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
                error_code="JUDGE_RATE_LIMITED",
            )
        if status >= 500:
            raise TransientError(
                f"The judge model's server at {self.base_url} failed (HTTP {status}): "
                f"{_server_message(response)}",
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
                error_code="JUDGE_SERVER_ERROR",
            )
        if status >= 400:
            raise ModelRequestError(
                f"The judge model's server at {self.base_url} refused the request for "
                f"{self.model_id} (HTTP {status}): {_server_message(response)}. "
                f"{_hint(status)}",
                status_code=status,
            )
        try:
            body = response.json()
            text = _message_text(body["choices"][0]["message"].get("content"))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            text = None
            body = None
        if text is None or not isinstance(body, dict):
            raise ModelRequestError(
                f"The server at {self.base_url} answered HTTP {status} but not with a "
                f"chat-completions message: {response.text[:_ERROR_TEXT_LIMIT]!r}. Check that "
                "the base URL points at an OpenAI-compatible API (it usually ends in /v1).",
                status_code=status,
                error_code="JUDGE_BAD_RESPONSE",
            )
        return text, body


def _hint(status: int) -> str:
    if status in {401, 403}:
        return "Set OPENAI_API_KEY to a key this server accepts."
    if status == 404:
        return (
            "Check the model name and that the base URL is the API root (it usually ends in /v1)."
        )
    return "Fix the request or the judge's model settings; retrying will not help."


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

    def complete(
        self, messages: list[dict[str, str]], *, temperature: float, max_tokens: int | None
    ) -> ChatResult:
        """Call the function; ``temperature`` and ``max_tokens`` are not passed on.

        Raises:
            ModelRequestError: the function returned something other than a string.
        """
        del temperature, max_tokens  # a plain function has no sampling parameters
        started = time.monotonic()
        text = self.func(messages)
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


def _split_uri(model: str) -> tuple[str, str]:
    scheme, sep, name = model.strip().partition(":/")
    if not sep or scheme not in _SCHEMES or not name.strip("/"):
        raise ConfigurationError(
            f"Unsupported judge model {model!r}. Use 'openai:/<model>' for any "
            "OpenAI-compatible server (set base_url= or OPENAI_BASE_URL for a local one), "
            "'ollama:/<model>' for Ollama, or 'python:/<module>:<function>'."
        )
    return scheme, name.strip()


def check_model(model: object) -> None:
    """Validate a judge's ``model=`` without contacting anything.

    Raises:
        ConfigurationError: the model is neither a supported URI, a callable, nor None.
    """
    if model is None or (callable(model) and not isinstance(model, str)):
        return
    if not isinstance(model, str):
        raise ConfigurationError(
            f"model must be a model URI such as 'openai:/llama3', a function "
            f"(messages) -> str, or None; got {model!r}."
        )
    scheme, name = _split_uri(model)
    if scheme == "python" and ":" not in name:
        raise ConfigurationError(
            f"Judge model {model!r} must name a function as 'python:/<module>:<qualname>'."
        )


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


def _ollama_base_url() -> str:
    host = os.environ.get("OLLAMA_HOST", "").strip() or DEFAULT_OLLAMA_HOST
    if "://" not in host:
        host = f"http://{host}"
    parts = urlsplit(host)
    hostname = parts.hostname or "localhost"
    # OLLAMA_HOST is often the server's bind address; clients cannot connect to 0.0.0.0.
    if hostname in {"0.0.0.0", "::"}:  # noqa: S104 - mapped away from, never bound to
        hostname = "localhost"
    if ":" in hostname:
        hostname = f"[{hostname}]"
    return f"{parts.scheme}://{hostname}:{parts.port or _OLLAMA_PORT}/v1"


def resolve_model(model: ModelSpec, *, base_url: str | None = None) -> ChatModel:
    """Turn a judge's ``model=`` into a :class:`ChatModel`.

    Args:
        model: a model URI, a function ``(messages) -> str``, or None for
            ``LOCALSCORERS_JUDGE_MODEL``.
        base_url: the endpoint of ``openai:/`` and ``ollama:/`` models, overriding the
            environment.

    Raises:
        ModelNotConfiguredError: model is None and ``LOCALSCORERS_JUDGE_MODEL`` is not set.
        ConfigurationError: the model URI is not supported.
        ScorerLoadError: a ``python:/`` model cannot be imported.
    """
    if model is None:
        model = os.environ.get("LOCALSCORERS_JUDGE_MODEL", "").strip() or None
        if model is None:
            raise ModelNotConfiguredError
    check_model(model)
    if not isinstance(model, str):
        return CallableModel(model)
    scheme, name = _split_uri(model)
    if scheme == "python":
        func = serialization.resolve_reference(name)
        if not callable(func):
            raise ConfigurationError(f"Judge model {model!r} does not name a function.")
        return CallableModel(func, model_id=f"python:/{name}")
    if scheme == "ollama":
        return OpenAICompatibleModel(
            model=name, base_url=base_url or _ollama_base_url(), scheme="ollama"
        )
    endpoint = base_url or os.environ.get("OPENAI_BASE_URL", "").strip() or DEFAULT_OPENAI_BASE_URL
    api_key = os.environ.get("OPENAI_API_KEY", "").strip() or None
    return OpenAICompatibleModel(model=name, base_url=endpoint, api_key=api_key, scheme="openai")
