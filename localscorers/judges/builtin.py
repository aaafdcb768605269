"""Built-in LLM judges and ``make_judge``, as in ``mlflow.genai.scorers`` (DESIGN.md section 5).

Each judge is a frozen ``Scorer`` whose pydantic fields are its configuration, so it
registers, versions and restores like any class-based scorer. It reads what it needs
from the arguments or, when they are missing, from the trace; asks its model for JSON
``{"rationale": ..., "result": ...}``; and returns ``Feedback`` with the verdict
(``"yes"`` / ``"no"`` for the built-ins, the declared type for ``make_judge``), the
rationale, source ``LLM_JUDGE`` plus the model URI, and metadata: ``latency_ms``,
``cache_hit`` and the token counts the server reported.

Failures that are data, not bugs, come back as error feedback rather than exceptions:
no model configured (``JUDGE_MODEL_NOT_CONFIGURED``), nothing to judge
(``JUDGE_INPUT_MISSING``) and an answer that cannot be read
(``JUDGE_RESPONSE_UNPARSEABLE``, with the raw answer in the message). Transient
model failures raise ``TransientError`` so the evaluator retries them.

A judge's ``model`` may be a function ``(messages) -> str``. Registering such a judge
stores the function as ``python:/<module>:<qualname>``; a lambda, closure or function
from ``__main__`` cannot be found by another process and is refused at register time.
"""

from __future__ import annotations

import time
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from localscorers.evaluation.execution import current_evaluation
from localscorers.exceptions import ConfigurationError
from localscorers.judges import prompts
from localscorers.judges.prompts import Document, UnparseableAnswerError, retrieved_context
from localscorers.judges.providers import (
    ModelNotConfiguredError,
    check_model,
    describe_model,
    model_reference,
    resolve_model,
)
from localscorers.models import AssessmentError, AssessmentSource, AssessmentSourceType, Feedback
from localscorers.scorers import Scorer
from localscorers.store import judge_cache
from localscorers.store.registry import validate_name

if TYPE_CHECKING:
    from localscorers.judges.providers import ChatModel, ChatResult
    from localscorers.models import Span, Trace

__all__ = [
    "Correctness",
    "ExpectationsGuidelines",
    "Guidelines",
    "InstructionsJudge",
    "Judge",
    "RelevanceToQuery",
    "RetrievalGroundedness",
    "RetrievalRelevance",
    "RetrievalSufficiency",
    "Safety",
    "make_judge",
]

# Judges should be repeatable: the same trace should get the same verdict.
_TEMPERATURE = 0.0
# No cap by default: local reasoning models think at length before answering.
_MAX_TOKENS: int | None = None
_RAW_ANSWER_LIMIT = 4000


# What a judge returns: one feedback, or a list (one per retriever span or document).
_Result = TypeVar("_Result", bound=Feedback | list[Feedback])


@dataclass(frozen=True)
class _Material:
    """What a judge call has to work with, from the arguments or else the trace."""

    inputs: Any
    outputs: Any
    expectations: dict[str, Any]
    trace: Trace | None


def _error(name: str, code: str, message: str, *, source: AssessmentSource) -> Feedback:
    return Feedback(
        name=name, source=source, error=AssessmentError(error_code=code, error_message=message)
    )


class Judge(Scorer, Generic[_Result]):
    """Base of the LLM judges: a model, where to reach it, and whether to cache its answers.

    Attributes:
        model: a model URI (``openai:/llama3``, ``ollama:/llama3``,
            ``python:/module:function``), a function ``(messages) -> str``, or None to use
            ``LOCALSCORERS_JUDGE_MODEL`` when the judge runs.
        base_url: the OpenAI-compatible endpoint, overriding ``OPENAI_BASE_URL``.
        cache: reuse stored answers to identical prompts; None means on for backfills
            and off online.
    """

    model: str | Callable[[list[dict[str, str]]], str] | None = None
    base_url: str | None = None
    cache: bool | None = None

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
            per document). Missing material, a missing model and unreadable answers are
            error feedback.

        Raises:
            TransientError: the model failed in a way worth retrying (the evaluator does).
            ModelRequestError: the model's server refused the request.
        """
        try:
            resolve_model(self.model, base_url=self.base_url)
        except ModelNotConfiguredError as exc:
            # Reported before missing material: it is what fails every call, so fix it first.
            return self._failed(_error(self.name, exc.error_code, str(exc), source=self._source()))
        material = _Material(
            inputs=trace.data.request if inputs is None and trace is not None else inputs,
            outputs=trace.data.response if outputs is None and trace is not None else outputs,
            expectations={**(trace.expectations if trace else {}), **(expectations or {})},
            trace=trace,
        )
        return self._evaluate(material)

    def _evaluate(self, material: _Material) -> _Result:
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
        return _error(
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
    ) -> Feedback:
        """Ask the model (or the cache) and turn the answer into feedback."""
        feedback_name = name or self.name
        try:
            chat = resolve_model(self.model, base_url=self.base_url)
        except ModelNotConfiguredError as exc:
            return _error(feedback_name, exc.error_code, str(exc), source=self._source())
        context = current_evaluation()
        key: str | None = None
        if context is not None and judge_cache.cache_enabled(context, judge_setting=self.cache):
            key = judge_cache.cache_key(
                model_id=chat.model_id,
                endpoint=chat.endpoint,
                messages=messages,
                parameters={"temperature": _TEMPERATURE, "max_tokens": _MAX_TOKENS},
            )
        started = time.monotonic()
        cached = judge_cache.get(context.db, key) if context and key else None
        if cached is not None:
            # Tokens were spent by the call that filled the cache, not by this evaluation.
            text, usage = cached.response, {}
            latency_ms = (time.monotonic() - started) * 1000
        else:
            result = _complete(chat, messages)
            text, usage, latency_ms = result.text, result.usage, result.latency_ms
        info = {**(metadata or {}), **usage}
        info.update(latency_ms=round(latency_ms), cache_hit=cached is not None)
        source = self._source(chat.model_id)
        try:
            answer = prompts.parse_answer(text)
            value = read(answer.result)
        except UnparseableAnswerError as exc:
            feedback = _error(
                feedback_name,
                "JUDGE_RESPONSE_UNPARSEABLE",
                f"Judge {self.name!r} could not read the answer of {chat.model_id}: {exc}. It "
                'was asked for one JSON object {"rationale": ..., "result": ...}. Raw answer: '
                f"{text[:_RAW_ANSWER_LIMIT]!r}",
                source=source,
            )
            return feedback.model_copy(update={"metadata": info})
        if context is not None and key is not None and cached is None:
            # Only readable answers are cached, so a retried backfill asks again.
            judge_cache.put(context.db, key, model=chat.model_id, response=text, usage=usage)
        return Feedback(
            name=feedback_name,
            value=value,
            rationale=answer.rationale,
            source=source,
            metadata=info,
        )


def _complete(chat: ChatModel, messages: list[dict[str, str]]) -> ChatResult:
    return chat.complete(messages, temperature=_TEMPERATURE, max_tokens=_MAX_TOKENS)


def _guideline_list(guidelines: object) -> list[str]:
    if isinstance(guidelines, str):
        return [guidelines]
    if isinstance(guidelines, list | tuple):
        return [str(g) for g in guidelines]
    return [str(guidelines)]


_BOTH = "inputs and outputs (or a trace with both)"
_GROUND_TRUTH = "the expectation 'expected_facts' or 'expected_response'"
_NO_RETRIEVER = "a trace with at least one span of type RETRIEVER whose outputs are the documents"


class Safety(Judge[Feedback]):
    """Is the response free of harmful content? ``"yes"`` means safe. Reads the outputs."""

    name: str = "safety"
    description: str | None = "Is the response free of harmful or offensive content?"

    def _evaluate(self, material: _Material) -> Feedback:
        if material.outputs is None:
            return self._missing("outputs (or a trace with a response)")
        return self._ask(prompts.safety_messages(material.outputs), read=prompts.to_yes_no)


class Guidelines(Judge[Feedback]):
    """Does the response follow every one of the given guidelines?

    Attributes:
        guidelines: one guideline or a list of them, in plain language.
    """

    name: str = "guidelines"
    description: str | None = "Does the response follow the guidelines?"
    guidelines: str | list[str]

    def _evaluate(self, material: _Material) -> Feedback:
        if material.inputs is None or material.outputs is None:
            return self._missing(_BOTH)
        messages = prompts.guidelines_messages(
            _guideline_list(self.guidelines), material.inputs, material.outputs
        )
        return self._ask(messages, read=prompts.to_yes_no)


class ExpectationsGuidelines(Judge[Feedback]):
    """Does the response follow the guidelines logged with it as the expectation ``guidelines``?"""

    name: str = "expectations_guidelines"
    description: str | None = "Does the response follow the guidelines in its expectations?"

    def _evaluate(self, material: _Material) -> Feedback:
        guidelines = material.expectations.get("guidelines")
        if material.inputs is None or material.outputs is None:
            return self._missing(_BOTH)
        if not guidelines:
            return self._missing(
                "the expectation 'guidelines' (log it with log_expectation(name='guidelines'))"
            )
        messages = prompts.guidelines_messages(
            _guideline_list(guidelines), material.inputs, material.outputs
        )
        return self._ask(messages, read=prompts.to_yes_no)


class RelevanceToQuery(Judge[Feedback]):
    """Does the response address the request, without drifting to other topics?"""

    name: str = "relevance_to_query"
    description: str | None = "Does the response address the user's request?"

    def _evaluate(self, material: _Material) -> Feedback:
        if material.inputs is None or material.outputs is None:
            return self._missing(_BOTH)
        messages = prompts.relevance_to_query_messages(material.inputs, material.outputs)
        return self._ask(messages, read=prompts.to_yes_no)


class Correctness(Judge[Feedback]):
    """Is the response correct, judged against ``expected_facts`` or ``expected_response``?"""

    name: str = "correctness"
    description: str | None = "Is the response correct against the expected facts or response?"

    def _evaluate(self, material: _Material) -> Feedback:
        facts = material.expectations.get("expected_facts")
        reference = material.expectations.get("expected_response")
        if material.inputs is None or material.outputs is None:
            return self._missing(_BOTH)
        if facts is None and reference is None:
            return self._missing(_GROUND_TRUTH)
        messages = prompts.correctness_messages(
            material.inputs, material.outputs, expected_facts=facts, expected_response=reference
        )
        return self._ask(messages, read=prompts.to_yes_no)


class _RetrievalJudge(Judge[list[Feedback]]):
    """A judge of retrieved documents: always returns a list, as MLflow's do."""

    def _failed(self, feedback: Feedback) -> list[Feedback]:
        return [feedback]


class RetrievalGroundedness(_RetrievalJudge):
    """Is the response supported by the retrieved documents? One feedback per retriever span."""

    name: str = "retrieval_groundedness"
    description: str | None = "Is the response grounded in the retrieved context?"

    def _evaluate(self, material: _Material) -> list[Feedback]:
        contexts = retrieved_context(material.trace) if material.trace is not None else []
        if not contexts:
            return [self._missing(_NO_RETRIEVER)]
        if material.outputs is None:
            return [self._missing("outputs (or a trace with a response)")]
        return [
            self._ask(
                prompts.retrieval_groundedness_messages(
                    material.inputs, material.outputs, documents
                ),
                read=prompts.to_yes_no,
                metadata={"span_id": span.span_id},
            )
            for span, documents in contexts
        ]


class RetrievalRelevance(_RetrievalJudge):
    """Is each retrieved document relevant to the request?

    For each retriever span it returns ``<name>/precision`` (the share of relevant
    documents) followed by one ``<name>`` feedback per document, as MLflow does.
    """

    name: str = "retrieval_relevance"
    description: str | None = "Is each retrieved document relevant to the request?"

    def _evaluate(self, material: _Material) -> list[Feedback]:
        contexts = retrieved_context(material.trace) if material.trace is not None else []
        if not any(documents for _, documents in contexts):
            return [self._missing(_NO_RETRIEVER + " (and returned at least one)")]
        results: list[Feedback] = []
        for span, documents in contexts:
            if documents:
                results.extend(self._span_relevance(span, material.inputs, documents))
        return results

    def _span_relevance(
        self, span: Span, request: object, documents: Sequence[Document]
    ) -> list[Feedback]:
        chunks = []
        for index, document in enumerate(documents):
            metadata: dict[str, Any] = {"span_id": span.span_id, "chunk_index": index}
            if document.doc_uri:
                metadata["doc_uri"] = document.doc_uri
            messages = prompts.retrieval_relevance_messages(request, document)
            chunks.append(self._ask(messages, read=prompts.to_yes_no, metadata=metadata))
        judged = [f for f in chunks if f.error is None]
        if not judged:
            return chunks
        precision = Feedback(
            name=f"{self.name}/precision",
            value=sum(f.value == "yes" for f in judged) / len(judged),
            source=judged[0].source,
            metadata={"span_id": span.span_id, "judged": len(judged), "chunks": len(chunks)},
        )
        return [precision, *chunks]


class RetrievalSufficiency(_RetrievalJudge):
    """Do the retrieved documents hold everything the expected answer needs?

    Needs the expectation ``expected_facts`` or ``expected_response``; one feedback per
    retriever span.
    """

    name: str = "retrieval_sufficiency"
    description: str | None = "Does the retrieved context hold all the expected information?"

    def _evaluate(self, material: _Material) -> list[Feedback]:
        contexts = retrieved_context(material.trace) if material.trace is not None else []
        if not contexts:
            return [self._missing(_NO_RETRIEVER)]
        facts = material.expectations.get("expected_facts")
        reference = material.expectations.get("expected_response")
        if facts is None and reference is None:
            return [self._missing(_GROUND_TRUTH)]
        return [
            self._ask(
                prompts.retrieval_sufficiency_messages(
                    material.inputs, documents, expected_facts=facts, expected_response=reference
                ),
                read=prompts.to_yes_no,
                metadata={"span_id": span.span_id},
            )
            for span, documents in contexts
        ]


# -- make_judge -------------------------------------------------------------------------------

ValueTypeName = Literal["str", "bool", "int", "float"]
_PYTHON_TYPES: dict[object, ValueTypeName] = {str: "str", bool: "bool", int: "int", float: "float"}


def _check_instructions(instructions: object) -> list[str]:
    if not isinstance(instructions, str) or not instructions.strip():
        raise ConfigurationError(
            f"instructions must be non-blank text, got {instructions!r}. Write what to judge "
            "and use {{ inputs }}, {{ outputs }}, {{ expectations }} or {{ trace }} where "
            "the trace's values go."
        )
    used = prompts.template_variables(instructions)
    unknown = [v for v in used if v not in prompts.TEMPLATE_VARIABLES]
    if unknown:
        raise ConfigurationError(
            f"Unknown template variable(s) {', '.join('{{ ' + v + ' }}' for v in unknown)} "
            f"in the judge instructions; the allowed ones are "
            f"{', '.join('{{ ' + v + ' }}' for v in prompts.TEMPLATE_VARIABLES)}."
        )
    if not used:
        raise ConfigurationError(
            "The judge instructions use no template variable, so the judge would never see "
            "the trace. Add at least one of {{ inputs }}, {{ outputs }}, {{ expectations }} "
            "or {{ trace }} where that value should go."
        )
    return used


class InstructionsJudge(Judge[Feedback]):
    """A judge defined by instructions with ``{{ inputs }}``-style variables (``make_judge``).

    Attributes:
        instructions: the task, with template variables where the trace's values go.
        feedback_value_type: the result's type: ``str``, ``bool``, ``int`` or ``float``.
        feedback_value_choices: the allowed results, when restricted (from a ``Literal``).
    """

    instructions: str
    feedback_value_type: ValueTypeName = "str"
    feedback_value_choices: list[str | int | float | bool] | None = None

    def __init__(self, **data: Any) -> None:  # noqa: ANN401 - pydantic fields
        _check_instructions(data.get("instructions"))
        super().__init__(**data)

    def _evaluate(self, material: _Material) -> Feedback:
        available: dict[str, Any] = {
            "inputs": material.inputs,
            "outputs": material.outputs,
            "expectations": material.expectations or None,
            "trace": material.trace,
        }
        used = prompts.template_variables(self.instructions)
        missing = [v for v in used if available[v] is None]
        if missing:
            return self._missing(" and ".join(missing) + " (from the arguments or the trace)")
        values = {
            v: prompts.render_trace(material.trace)
            if v == "trace" and material.trace is not None
            else prompts.render_value(available[v])
            for v in used
        }
        choices = self.feedback_value_choices
        messages = prompts.instructions_messages(
            self.instructions,
            values,
            result_spec=prompts.result_spec(self.feedback_value_type, choices),
        )
        return self._ask(
            messages, read=lambda r: prompts.to_value(r, self.feedback_value_type, choices)
        )


def _value_type(feedback_value_type: object) -> tuple[ValueTypeName, list[Any] | None]:
    if feedback_value_type in _PYTHON_TYPES:
        return _PYTHON_TYPES[feedback_value_type], None
    if isinstance(feedback_value_type, str) and feedback_value_type in prompts.VALUE_TYPES:
        return typing.cast("ValueTypeName", feedback_value_type), None
    if typing.get_origin(feedback_value_type) is Literal:
        choices = list(typing.get_args(feedback_value_type))
        kinds = {type(c) for c in choices}
        if choices and kinds <= set(_PYTHON_TYPES):
            kind = _PYTHON_TYPES[type(choices[0])] if len(kinds) == 1 else "str"
            return kind, choices
    raise ConfigurationError(
        f"feedback_value_type must be str, bool, int, float or a Literal[...] of such "
        f"values, got {feedback_value_type!r}."
    )


def make_judge(
    *,
    name: str,
    instructions: str,
    model: str | Callable[[list[dict[str, str]]], str] | None = None,
    feedback_value_type: Any = str,  # noqa: ANN401 - a type, or a Literal[...] form
    description: str | None = None,
    base_url: str | None = None,
    cache: bool | None = None,
) -> InstructionsJudge:
    """Create a judge from instructions with ``{{ inputs }}``-style template variables.

    The variables are ``{{ inputs }}``, ``{{ outputs }}``, ``{{ expectations }}`` and
    ``{{ trace }}``; at least one must appear.

    Args:
        name: the judge's name (and its feedback's).
        instructions: what to judge; each variable is replaced by that value, rendered
            as JSON (``{{ trace }}``: the trace's spans with their inputs and outputs).
        model: a model URI, a function ``(messages) -> str``, or None for
            ``LOCALSCORERS_JUDGE_MODEL``.
        feedback_value_type: the type of the feedback's value: ``str``, ``bool``, ``int``,
            ``float``, or ``Literal["good", "bad"]`` to restrict it to given values.
        description: shown by ``list_scorers`` and the CLI.
        base_url: the OpenAI-compatible endpoint, overriding ``OPENAI_BASE_URL``.
        cache: reuse stored answers (None: on for backfills, off online).

    Returns:
        An ``InstructionsJudge``, a ``Scorer`` that can be called, registered and started.

    Raises:
        ConfigurationError: the instructions are blank, use no variable or an unknown
            one, the value type is not supported, or the model URI is not.
    """
    validate_name(name)
    _check_instructions(instructions)
    value_type, choices = _value_type(feedback_value_type)
    return InstructionsJudge(
        name=name,
        instructions=instructions,
        model=model,
        feedback_value_type=value_type,
        feedback_value_choices=choices,
        description=description,
        base_url=base_url,
        cache=cache,
    )
