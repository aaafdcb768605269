"""The base of every LLM judge: its model, asking it (or the cache), and reading the answer.

A judge asks its model for JSON ``{"rationale": ..., "result": ...}`` with the answer's
JSON schema as structured output and the answer capped at ``LOCALSCORERS_JUDGE_MAX_TOKENS``
(default 512), and returns ``Feedback`` with the verdict, the rationale, source
``LLM_JUDGE`` plus the model URI, and metadata: ``latency_ms``, ``cache_hit``, the
tokens in and out the server reported (``prompt_tokens``, ``completion_tokens``,
``total_tokens``) and ``output_mode`` (how structured output was asked for).

Failures that are data, not bugs, come back as error feedback rather than exceptions:
no model configured (``JUDGE_MODEL_NOT_CONFIGURED``), a provider that cannot be used
here (``JUDGE_PROVIDER_NOT_INSTALLED``, ``JUDGE_API_KEY_MISSING``, ``JUDGE_MODEL_INVALID``),
nothing to judge (``JUDGE_INPUT_MISSING``) and an answer that cannot be read
(``JUDGE_RESPONSE_UNPARSEABLE``, with the raw answer in the message). Transient model
failures raise ``TransientError`` so the evaluator retries them.
"""

from __future__ import annotations

import os
import time
import typing
import warnings
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from localscorers.evaluation.execution import current_evaluation
from localscorers.exceptions import JudgeModelWarning, MissingColumnsError
from localscorers.judges import answers, transport
from localscorers.judges.answers import UnparseableAnswerError
from localscorers.judges.providers import (
    check_model,
    describe_model,
    model_reference,
    resolve_model,
)
from localscorers.judges.transport import (
    ChatRequest,
    ModelNotConfiguredError,
    ProviderUnavailableError,
)
from localscorers.models import (
    AssessmentError,
    AssessmentSource,
    AssessmentSourceType,
    Feedback,
)
from localscorers.scorers import Scorer
from localscorers.store import judge_cache

if TYPE_CHECKING:
    from localscorers.judges.providers import ChatModel
    from localscorers.models import Trace

__all__ = ["Judge", "Material", "error_feedback"]

# Judges should be repeatable: the same trace should get the same verdict.
_TEMPERATURE = 0.0
_RAW_ANSWER_LIMIT = 4000

# What a judge returns: one feedback, or a list (one per retriever span or document).
_Result = TypeVar("_Result", bound=Feedback | list[Feedback])


@dataclass(frozen=True)
class Material:
    """What a judge call has to work with, from the arguments or else the trace."""

    inputs: Any
    outputs: Any
    expectations: dict[str, Any]
    trace: Trace | None


def error_feedback(name: str, code: str, message: str, *, source: AssessmentSource) -> Feedback:
    """An error feedback of a judge (no value)."""
    return Feedback(
        name=name, source=source, error=AssessmentError(error_code=code, error_message=message)
    )


class Judge(Scorer, Generic[_Result]):
    """Base of the LLM judges: a model, where to reach it, and whether to cache its answers.

    Attributes:
        model: a model URI (``openai:/llama3``, ``ollama:/llama3``,
            ``anthropic:/claude-3-5-haiku-latest``, ``python:/module:function``, or any
            ``<provider>:/<model>`` through litellm), a function ``(messages) -> str``, or
            None to use ``LOCALSCORERS_JUDGE_MODEL`` when the judge runs.
        base_url: the model server's address, overriding ``OPENAI_BASE_URL``,
            ``OLLAMA_HOST`` or ``ANTHROPIC_BASE_URL``.
        cache: reuse stored answers to identical prompts; None means on for backfills
            and off online.
    """

    # What a row must hold for this judge, as MLflow's built-in scorers declare it.
    required_columns: ClassVar[frozenset[str]] = frozenset({"inputs", "outputs"})

    model: str | Callable[[list[dict[str, str]]], str] | None = None
    base_url: str | None = None
    cache: bool | None = None

    def validate_columns(self, columns: Collection[str]) -> None:
        """Check that data with these columns has what the judge needs, as MLflow does.

        ``trace`` stands in for ``inputs`` and ``outputs`` (the judge reads them from it).

        Raises:
            MissingColumnsError: a required column is missing.
        """
        given = set(columns)
        if "trace" in given:
            given |= {"inputs", "outputs"}
        missing = set(self.required_columns) - given
        if missing:
            raise MissingColumnsError(self.name, missing)

    def __init__(self, **data: Any) -> None:  # noqa: ANN401 - pydantic fields
        # Checked here, not in a validator, so callers get ConfigurationError itself.
        check_model(data.get("model"))
        super().__init__(**data)

    def definition(self) -> dict[str, Any]:
        """Return the stored definition; a function model is stored by reference.

        Raises:
            ConfigurationError: the model is a function another process cannot import.
        """
        reference = model_reference(self.model)
        if reference is not self.model:
            return self.model_copy(update={"model": reference}).definition()
        return super().definition()

    def _starting(self, name: str | None) -> None:
        """Warn ``JudgeModelWarning`` when ``start`` finds no model for the judge to ask."""
        if self.model is None and not os.environ.get("LOCALSCORERS_JUDGE_MODEL", "").strip():
            warnings.warn(
                f"Judge {name or self.name!r} ({type(self).__name__}) has no model: every "
                "evaluation will record a JUDGE_MODEL_NOT_CONFIGURED error feedback. Give it "
                "one with model= (e.g. model='openai:/llama3' and base_url= or "
                "OPENAI_BASE_URL for a local server, or model='ollama:/llama3'), then "
                "register() it again; or set LOCALSCORERS_JUDGE_MODEL where it runs.",
                JudgeModelWarning,
                stacklevel=3,  # the caller of Scorer.start, which calls this
            )

    def __call__(
        self,
        *,
        inputs: Any = None,  # noqa: ANN401 - whatever the application logged
        outputs: Any = None,  # noqa: ANN401
        expectations: dict[str, Any] | None = None,
        trace: Trace | None = None,
    ) -> _Result:
        """Judge one call; values not given are read from the trace.

        Returns:
            The feedback; the retrieval judges return a list (one per retriever span, or
            per document). Missing material, a missing or unusable model and unreadable
            answers are error feedback.

        Raises:
            TransientError: the model failed in a way worth retrying (the evaluator does).
            ModelRequestError: the model's server refused the request.
        """
        try:
            resolve_model(self.model, base_url=self.base_url)
        except (ModelNotConfiguredError, ProviderUnavailableError) as exc:
            # Reported before missing material: it is what fails every call, so fix it first.
            feedback = error_feedback(self.name, exc.error_code, str(exc), source=self._source())
            return self._failed(feedback)
        material = Material(
            inputs=trace.data.request if inputs is None and trace is not None else inputs,
            outputs=trace.data.response if outputs is None and trace is not None else outputs,
            expectations={**(trace.expectations if trace else {}), **(expectations or {})},
            trace=trace,
        )
        return self._evaluate(material)

    def _evaluate(self, material: Material) -> _Result:
        raise NotImplementedError(f"{type(self).__name__} must implement _evaluate.")

    def _failed(self, feedback: Feedback) -> _Result:
        # Judges returning one Feedback; _RetrievalJudge overrides this to return a list.
        return typing.cast("_Result", feedback)

    def _source(self, model_id: str | None = None) -> AssessmentSource:
        return AssessmentSource(
            source_type=AssessmentSourceType.LLM_JUDGE,
            source_id=model_id or describe_model(self.model),
        )

    def _missing(self, what: str) -> Feedback:
        return error_feedback(
            self.name,
            "JUDGE_INPUT_MISSING",
            f"Judge {self.name!r} ({type(self).__name__}) needs {what}.",
            source=self._source(),
        )

    def _ask(
        self,
        messages: list[dict[str, str]],
        *,
        read: Callable[[object], Any],
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        result: Mapping[str, Any] = answers.YES_NO_SCHEMA,
        verdicts: Mapping[str, Any] = answers.YES_NO_VERDICTS,
    ) -> Feedback:
        """Ask the model (or the cache) and turn the answer into feedback.

        Args:
            messages: the chat.
            read: turns the answer's result into the feedback's value.
            name: the feedback's name (default: the judge's).
            metadata: extra metadata of the feedback.
            result: the JSON schema of the answer's result, for structured output.
            verdicts: prose words that may carry the verdict when no JSON comes back.
        """
        feedback_name = name or self.name
        try:
            chat = resolve_model(self.model, base_url=self.base_url)
        except (ModelNotConfiguredError, ProviderUnavailableError) as exc:
            return error_feedback(feedback_name, exc.error_code, str(exc), source=self._source())
        schema = answers.answer_schema(result)
        cap = transport.max_tokens()
        text, info, key = self._answer(chat, messages, schema=schema, cap=cap)
        info.update(metadata or {})
        source = self._source(chat.model_id)
        try:
            answer = answers.parse_answer(text, verdicts=verdicts)
            value = read(answer.result)
        except UnparseableAnswerError as exc:
            feedback = error_feedback(
                feedback_name,
                "JUDGE_RESPONSE_UNPARSEABLE",
                f"Judge {self.name!r} could not read the answer of {chat.model_id}: {exc}. It "
                'was asked for one JSON object {"rationale": ..., "result": ...}. Raw answer: '
                f"{text[:_RAW_ANSWER_LIMIT]!r}",
                source=source,
            )
            return feedback.model_copy(update={"metadata": info})
        context = current_evaluation()
        if context is not None and key is not None and not info["cache_hit"]:
            # Only readable answers are cached, so a retried backfill asks again.
            usage = {k: info[k] for k in _USAGE_KEYS if k in info}
            judge_cache.put(context.db, key, model=chat.model_id, response=text, usage=usage)
        return Feedback(
            name=feedback_name,
            value=value,
            rationale=answer.rationale,
            source=source,
            metadata=info,
        )

    def _answer(
        self,
        chat: ChatModel,
        messages: list[dict[str, str]],
        *,
        schema: dict[str, Any],
        cap: int,
    ) -> tuple[str, dict[str, Any], str | None]:
        """The answer text, its metadata and its cache key (None: no caching)."""
        context = current_evaluation()
        key: str | None = None
        if context is not None and judge_cache.cache_enabled(context, judge_setting=self.cache):
            key = judge_cache.cache_key(
                model_id=chat.model_id,
                endpoint=chat.endpoint,
                messages=messages,
                parameters={"temperature": _TEMPERATURE, "max_tokens": cap, "schema": schema},
            )
        started = time.monotonic()
        cached = judge_cache.get(context.db, key) if context and key else None
        if cached is not None:
            # Tokens were spent by the call that filled the cache, not by this evaluation.
            latency_ms = (time.monotonic() - started) * 1000
            info: dict[str, Any] = {"latency_ms": round(latency_ms), "cache_hit": True}
            return cached.response, info, key
        answer = chat.complete(
            ChatRequest(messages, temperature=_TEMPERATURE, max_tokens=cap, schema=schema)
        )
        info = {**answer.usage, "latency_ms": round(answer.latency_ms), "cache_hit": False}
        info["output_mode"] = answer.output_mode
        return answer.text, info, key


_USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")
