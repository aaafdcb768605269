"""Built-in LLM judges and ``make_judge``, as in ``mlflow.genai.scorers`` (DESIGN.md section 5).

Each judge is a frozen ``Scorer`` whose pydantic fields are its configuration, so it
registers, versions and restores like any class-based scorer. It reads what it needs
from the arguments or, when they are missing, from the trace; asks its model for JSON
``{"rationale": ..., "result": ...}`` (as structured output, see :mod:`.base`); and
returns ``Feedback`` with the verdict (``"yes"`` / ``"no"`` for the built-ins, the
declared type for ``make_judge``), the rationale, and the call's tokens and latency.

A judge's ``model`` may be a function ``(messages) -> str``. Registering such a judge
stores the function as ``python:/<module>:<qualname>``; a lambda, closure or function
from ``__main__`` cannot be found by another process and is refused at register time.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from localscorers.exceptions import ConfigurationError
from localscorers.judges import answers, prompts
from localscorers.judges.base import Judge, Material
from localscorers.judges.prompts import Document, retrieved_context
from localscorers.models import Feedback
from localscorers.store.scorer_state import validate_name

if TYPE_CHECKING:
    from localscorers.models import Span

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
    "get_all_scorers",
    "make_judge",
]


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

    def _evaluate(self, material: Material) -> Feedback:
        if material.outputs is None:
            return self._missing("outputs (or a trace with a response)")
        return self._ask(prompts.safety_messages(material.outputs), read=prompts.to_yes_no)


class _ResponseJudge(Judge[Feedback]):
    """A yes/no judge of a response to its request: it needs both, and maybe an expectation."""

    def _evaluate(self, material: Material) -> Feedback:
        if material.inputs is None or material.outputs is None:
            return self._missing(_BOTH)
        messages = self._messages(material)
        if isinstance(messages, str):
            return self._missing(messages)
        return self._ask(messages, read=prompts.to_yes_no)

    def _messages(self, material: Material) -> list[dict[str, str]] | str:
        """Return the prompt, or what else the judge needs (an expectation it lacks)."""
        raise NotImplementedError(f"{type(self).__name__} must implement _messages.")


class _ExpectationsJudge(_ResponseJudge):
    """A response judge that also reads the expectations logged with the trace."""

    required_columns: ClassVar[frozenset[str]] = frozenset({"inputs", "outputs", "expectations"})


class Guidelines(_ResponseJudge):
    """Does the response follow every one of the given guidelines?

    Attributes:
        guidelines: one guideline or a list of them, in plain language.
    """

    name: str = "guidelines"
    description: str | None = "Does the response follow the guidelines?"
    guidelines: str | list[str]

    def _messages(self, material: Material) -> list[dict[str, str]] | str:
        return prompts.guidelines_messages(
            _guideline_list(self.guidelines), material.inputs, material.outputs
        )


class ExpectationsGuidelines(_ExpectationsJudge):
    """Does the response follow the guidelines logged with it as the expectation ``guidelines``?"""

    name: str = "expectations_guidelines"
    description: str | None = "Does the response follow the guidelines in its expectations?"

    def _messages(self, material: Material) -> list[dict[str, str]] | str:
        guidelines = material.expectations.get("guidelines")
        if not guidelines:
            return "the expectation 'guidelines' (log it with log_expectation(name='guidelines'))"
        return prompts.guidelines_messages(
            _guideline_list(guidelines), material.inputs, material.outputs
        )


class RelevanceToQuery(_ResponseJudge):
    """Does the response address the request, without drifting to other topics?"""

    name: str = "relevance_to_query"
    description: str | None = "Does the response address the user's request?"

    def _messages(self, material: Material) -> list[dict[str, str]] | str:
        return prompts.relevance_to_query_messages(material.inputs, material.outputs)


class Correctness(_ExpectationsJudge):
    """Is the response correct, judged against ``expected_facts`` or ``expected_response``?"""

    name: str = "correctness"
    description: str | None = "Is the response correct against the expected facts or response?"

    def _messages(self, material: Material) -> list[dict[str, str]] | str:
        facts = material.expectations.get("expected_facts")
        reference = material.expectations.get("expected_response")
        if facts is None and reference is None:
            return _GROUND_TRUTH
        return prompts.correctness_messages(
            material.inputs, material.outputs, expected_facts=facts, expected_response=reference
        )


class _RetrievalJudge(Judge[list[Feedback]]):
    """A judge of retrieved documents: always returns a list, as MLflow's do."""

    # The documents come from the trace's RETRIEVER spans.
    required_columns: ClassVar[frozenset[str]] = frozenset({"inputs", "trace"})

    def _failed(self, feedback: Feedback) -> list[Feedback]:
        return [feedback]

    def _evaluate(self, material: Material) -> list[Feedback]:
        contexts = retrieved_context(material.trace) if material.trace is not None else []
        if not contexts:
            return [self._missing(_NO_RETRIEVER)]
        return self._judge_spans(material, contexts)

    def _judge_spans(
        self, material: Material, contexts: list[tuple[Span, list[Document]]]
    ) -> list[Feedback]:
        """Judge the documents of the trace's retriever spans (there is at least one)."""
        raise NotImplementedError(f"{type(self).__name__} must implement _judge_spans.")

    def _ask_per_span(
        self,
        contexts: list[tuple[Span, list[Document]]],
        messages: Callable[[list[Document]], list[dict[str, str]]],
    ) -> list[Feedback]:
        """Ask one yes/no question per retriever span; its feedback names the span."""
        return [
            self._ask(
                messages(documents), read=prompts.to_yes_no, metadata={"span_id": span.span_id}
            )
            for span, documents in contexts
        ]


class RetrievalGroundedness(_RetrievalJudge):
    """Is the response supported by the retrieved documents? One feedback per retriever span."""

    name: str = "retrieval_groundedness"
    description: str | None = "Is the response grounded in the retrieved context?"

    def _judge_spans(
        self, material: Material, contexts: list[tuple[Span, list[Document]]]
    ) -> list[Feedback]:
        if material.outputs is None:
            return [self._missing("outputs (or a trace with a response)")]
        return self._ask_per_span(
            contexts,
            lambda documents: prompts.retrieval_groundedness_messages(
                material.inputs, material.outputs, documents
            ),
        )


class RetrievalRelevance(_RetrievalJudge):
    """Is each retrieved document relevant to the request?

    For each retriever span it returns ``<name>/precision`` (the share of relevant
    documents) followed by one ``<name>`` feedback per document, as MLflow does.
    """

    name: str = "retrieval_relevance"
    description: str | None = "Is each retrieved document relevant to the request?"

    def _judge_spans(
        self, material: Material, contexts: list[tuple[Span, list[Document]]]
    ) -> list[Feedback]:
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

    required_columns: ClassVar[frozenset[str]] = frozenset({"inputs", "trace", "expectations"})

    name: str = "retrieval_sufficiency"
    description: str | None = "Does the retrieved context hold all the expected information?"

    def _judge_spans(
        self, material: Material, contexts: list[tuple[Span, list[Document]]]
    ) -> list[Feedback]:
        facts = material.expectations.get("expected_facts")
        reference = material.expectations.get("expected_response")
        if facts is None and reference is None:
            return [self._missing(_GROUND_TRUTH)]
        return self._ask_per_span(
            contexts,
            lambda documents: prompts.retrieval_sufficiency_messages(
                material.inputs, documents, expected_facts=facts, expected_response=reference
            ),
        )


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

    def _evaluate(self, material: Material) -> Feedback:
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
        kind = self.feedback_value_type
        return self._ask(
            messages,
            read=lambda r: prompts.to_value(r, kind, choices),
            result=answers.result_schema(kind, choices),
            verdicts=answers.verdict_words(kind, choices),
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


def get_all_scorers() -> list[Judge[Any]]:
    """Return one of each built-in judge that needs no argument, as MLflow's function does.

    ``Guidelines`` (it needs its guidelines) and ``make_judge`` judges are left out. The
    judges have no model: they use ``LOCALSCORERS_JUDGE_MODEL`` when they run.
    """
    return [
        RetrievalRelevance(),
        RetrievalSufficiency(),
        RetrievalGroundedness(),
        RelevanceToQuery(),
        Safety(),
        Correctness(),
        ExpectationsGuidelines(),
    ]
