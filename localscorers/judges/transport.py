"""What every HTTP judge provider shares: settings, errors, limits, the pooled client.

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
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from localscorers.exceptions import (
    ConfigurationError,
    ModelNotConfiguredError,
    ModelRequestError,
    ProviderUnavailableError,
    TransientError,
)

__all__ = [
    "ERROR_TEXT_LIMIT",
    "ChatRequest",
    "ChatResult",
    "HttpModel",
    "Limits",
    "ModelNotConfiguredError",
    "ModelRequestError",
    "ProviderUnavailableError",
    "RateLimiter",
    "Reply",
    "limited",
    "limits_for",
    "max_tokens",
    "parse_retry_after",
    "post_json",
    "post_trying",
    "raise_for_status",
    "server_message",
    "timeout_seconds",
    "token_counts",
]

_DEFAULT_TIMEOUT = 60.0
_DEFAULT_CONCURRENCY = 4
_DEFAULT_MAX_TOKENS = 512
ERROR_TEXT_LIMIT = 500


@dataclass(frozen=True)
class ChatRequest:
    """One question to a judge model.

    Attributes:
        messages: the chat, as ``{"role": ..., "content": ...}`` dicts.
        temperature: the sampling temperature.
        max_tokens: the cap on the answer; None sends none.
        schema: the JSON schema of the answer, asked for as structured output where
            the server can; None asks for free text.
    """

    messages: list[dict[str, str]]
    temperature: float = 0.0
    max_tokens: int | None = None
    schema: dict[str, Any] | None = None


@dataclass(frozen=True)
class ChatResult:
    """One answer of a judge model.

    Attributes:
        text: the assistant message's text (for a structured answer, its JSON).
        usage: token counts the server reported, as ``prompt_tokens`` (in),
            ``completion_tokens`` (out) and ``total_tokens``; empty when it reported none.
        latency_ms: time spent waiting for the answer (not for a concurrency slot).
        model_id: the model URI, e.g. ``openai:/llama3``.
        output_mode: how structured output was asked for: ``json_schema``,
            ``json_object``, ``tool`` (Anthropic), ``format`` (Ollama) or ``none``.
    """

    text: str
    usage: dict[str, int]
    latency_ms: float
    model_id: str
    output_mode: str = "none"


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


def timeout_seconds() -> float:
    """Seconds one judge HTTP call may take (``LOCALSCORERS_JUDGE_TIMEOUT``, default 60)."""
    return _env_positive("LOCALSCORERS_JUDGE_TIMEOUT", _DEFAULT_TIMEOUT) or _DEFAULT_TIMEOUT


def max_tokens() -> int:
    """The cap on a judge's answer (``LOCALSCORERS_JUDGE_MAX_TOKENS``, default 512).

    Raises:
        ConfigurationError: the setting is not a positive integer.
    """
    raw = os.environ.get("LOCALSCORERS_JUDGE_MAX_TOKENS", "").strip()
    if not raw:
        return _DEFAULT_MAX_TOKENS
    if not raw.isdigit() or int(raw) <= 0:
        raise ConfigurationError(
            f"LOCALSCORERS_JUDGE_MAX_TOKENS must be a positive integer, got {raw!r}; a "
            "verdict with a short rationale needs about 100 to 300 tokens."
        )
    return int(raw)


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
class Limits:
    """The concurrency slots and request spacing of one (endpoint, model) pair."""

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
_limits: dict[tuple[str, str], Limits] = {}


def limits_for(base_url: str, model: str) -> Limits:
    """Return the shared limits of one (endpoint, model) pair, following the settings."""
    concurrency = int(_env_positive("LOCALSCORERS_JUDGE_CONCURRENCY", _DEFAULT_CONCURRENCY) or 1)
    rpm = _env_positive("LOCALSCORERS_JUDGE_RPM", None)
    key = (base_url, model)
    with _limits_lock:
        limits = _limits.get(key)
        # Settings changed (tests, or a long-lived worker re-reading its env): start afresh.
        if limits is None or (limits.concurrency, limits.rpm) != (concurrency, rpm):
            limits = Limits(concurrency=concurrency, rpm=rpm)
            _limits[key] = limits
        return limits


@contextmanager
def limited(base_url: str, model: str) -> Iterator[None]:
    """Hold a concurrency slot of (endpoint, model), after waiting for its request spacing."""
    limits = limits_for(base_url, model)
    with limits.semaphore:
        if limits.limiter is not None:
            limits.limiter.acquire()
        yield


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


def post_json(
    url: str,
    payload: dict[str, Any],
    *,
    headers: dict[str, str],
    model_id: str,
    where: str,
    setting: str,
) -> httpx.Response:
    """POST JSON; turn timeouts and connection failures into :class:`TransientError`.

    Args:
        url: the full URL.
        payload: the JSON body.
        headers: extra headers.
        model_id: the model URI, for messages.
        where: the endpoint, for messages.
        setting: how the user sets the endpoint (``base_url= or OPENAI_BASE_URL``).

    Raises:
        TransientError: a timeout (``JUDGE_TIMEOUT``) or connection failure.
        ConfigurationError: ``LOCALSCORERS_JUDGE_TIMEOUT`` is invalid.
    """
    timeout = timeout_seconds()
    try:
        return _client.get().post(url, json=payload, headers=headers, timeout=timeout)
    except httpx.TimeoutException as exc:
        raise TransientError(
            f"The judge model {model_id} at {where} did not answer within {timeout:g} s "
            f"({type(exc).__name__}). Raise LOCALSCORERS_JUDGE_TIMEOUT, lower "
            "LOCALSCORERS_JUDGE_MAX_TOKENS, or use a faster model.",
            error_code="JUDGE_TIMEOUT",
        ) from exc
    except httpx.TransportError as exc:
        raise TransientError(
            f"Cannot reach the judge model {model_id} at {where}: {exc}. Is the server "
            f"running, and is the address ({setting}) right?",
            error_code="JUDGE_CONNECTION_ERROR",
        ) from exc


class HttpModel(Protocol):
    """A model behind an HTTP API, as :func:`post_trying` reaches, limits and names it.

    Attributes:
        model: the model name; with ``endpoint``, the key of the concurrency limit.
        model_id: the model URI, for messages.
        endpoint: the API root the request paths are appended to.
        setting: how the user sets the endpoint, for messages (``ANTHROPIC_BASE_URL``).
    """

    model: str
    model_id: str
    endpoint: str
    setting: str


@dataclass(frozen=True)
class Reply:
    """What :func:`post_trying` got back.

    Attributes:
        response: the successful response.
        form: the structured-output form it answered.
        latency_ms: time spent waiting for answers (not for a concurrency slot).
    """

    response: httpx.Response
    form: str
    latency_ms: float

    def result(
        self,
        server: HttpModel,
        text: str,
        tokens: tuple[object, object],
        *,
        output_mode: str | None = None,
    ) -> ChatResult:
        """The answer as a ``ChatResult``, ``tokens`` being the server's (in, out) counts.

        Args:
            server: the model that answered.
            text: the answer's text.
            tokens: the tokens of the prompt and of the answer, as the server counted them.
            output_mode: what to report as the output mode (default: ``form``).
        """
        return ChatResult(
            text=text,
            usage=token_counts(*tokens),
            latency_ms=self.latency_ms,
            model_id=server.model_id,
            output_mode=self.form if output_mode is None else output_mode,
        )


def _bad_request(response: httpx.Response) -> bool:
    return response.status_code == 400


def post_trying(
    server: HttpModel,
    path: str,
    payload: dict[str, Any],
    forms: Mapping[str, Mapping[str, Any]],
    *,
    headers: dict[str, str],
    hint: Callable[[int], str],
    refused: Callable[[httpx.Response], bool] = _bad_request,
) -> Reply:
    """POST a request in the strongest structured-output form the server accepts.

    Servers differ in how they take an answer's schema, so a provider lists the forms
    it can ask in, strongest first, each with the fields it adds to the request. While
    the server refuses a form, the request is sent again in the next one; the answer to
    the last form is raised for its error status (:func:`raise_for_status`) or returned.
    One concurrency slot of (endpoint, model) is held throughout.

    Args:
        server: the model and where it runs.
        path: the request path after the endpoint (``/v1/messages``).
        payload: the JSON body without structured-output fields.
        forms: at least one form, as its name and the fields it adds to ``payload``.
        headers: extra headers.
        hint: says what to do about an HTTP 4xx status, in the ``ModelRequestError``.
        refused: tells whether a response refuses the form asked in (default: HTTP 400).

    Returns:
        The successful response, the form it answered, and the time spent waiting.

    Raises:
        TransientError: a timeout (``JUDGE_TIMEOUT``), a connection failure, or HTTP
            429 or 5xx.
        ModelRequestError: another HTTP 4xx.
        ConfigurationError: ``LOCALSCORERS_JUDGE_TIMEOUT`` is invalid.
    """
    last = list(forms)[-1]
    latency_ms = 0.0
    with limited(server.endpoint, server.model):
        for form, fields in forms.items():
            started = time.monotonic()
            response = post_json(
                f"{server.endpoint}{path}",
                {**payload, **fields},
                headers=headers,
                model_id=server.model_id,
                where=server.endpoint,
                setting=server.setting,
            )
            latency_ms += (time.monotonic() - started) * 1000
            if form == last or not refused(response):
                break
    raise_for_status(response, model_id=server.model_id, where=server.endpoint, hint=hint)
    return Reply(response, form, latency_ms)


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


def server_message(response: httpx.Response) -> str:
    """The error message a server put in its answer, else its text, shortened."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body.get("message")))
        if isinstance(error, dict):
            error = error.get("message", error)
        if error is not None:
            return str(error)[:ERROR_TEXT_LIMIT]
    text = response.text.strip()
    return text[:ERROR_TEXT_LIMIT] if text else response.reason_phrase


def raise_for_status(
    response: httpx.Response, *, model_id: str, where: str, hint: Callable[[int], str]
) -> None:
    """Raise for an HTTP error answer: transient for 429 / 5xx, else ModelRequestError.

    Raises:
        TransientError: HTTP 429 (``JUDGE_RATE_LIMITED``), 5xx or Anthropic's 529
            (``JUDGE_SERVER_ERROR``).
        ModelRequestError: another HTTP 4xx; ``hint(status)`` says what to do.
    """
    status = response.status_code
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if status == 429:
        raise TransientError(
            f"The judge model {model_id} at {where} is rate limiting us "
            f"(HTTP 429): {server_message(response)}",
            retry_after=retry_after,
            error_code="JUDGE_RATE_LIMITED",
        )
    if status >= 500:
        raise TransientError(
            f"The judge model's server at {where} failed (HTTP {status}): "
            f"{server_message(response)}",
            retry_after=retry_after,
            error_code="JUDGE_SERVER_ERROR",
        )
    if status >= 400:
        raise ModelRequestError(
            f"The judge model's server at {where} refused the request for {model_id} "
            f"(HTTP {status}): {server_message(response)}. {hint(status)}",
            status_code=status,
        )


def token_counts(prompt: object, completion: object) -> dict[str, int]:
    """Usage in our names, from whatever the server called them (missing ones left out)."""
    usage: dict[str, int] = {}
    for key, value in (("prompt_tokens", prompt), ("completion_tokens", completion)):
        if isinstance(value, int | float) and not isinstance(value, bool):
            usage[key] = int(value)
    if len(usage) == 2:
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return usage
