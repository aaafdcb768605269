"""The demo's simulated application, its scorers and its judge's local "model".

A support bot traced with ``@trace`` (a retriever and a very predictable "LLM"), three
code scorers and an LLM judge whose model is a deterministic local function. They are
module-level functions of this module so that a ``localscorers worker`` in another
process can import the same scorers by reference (``localscorers.cli.demo_app:is_concise``);
``story.py`` tells the demo with them.
"""

from __future__ import annotations

import json
import re
from typing import Any

from localscorers.judges.builtin import make_judge
from localscorers.models import Feedback
from localscorers.scorers import scorer
from localscorers.tracing import trace, update_current_trace

__all__ = [
    "QUESTIONS",
    "answer_length",
    "cites_source",
    "demo_judge_model",
    "generate",
    "helpfulness",
    "is_concise",
    "retrieve",
    "support_bot",
]

# -- the simulated application: a support bot with a retriever and a "model" ------------------

_KNOWLEDGE_BASE: dict[str, list[tuple[str, str]]] = {
    "refund": [
        ("refund-policy", "Refunds are issued to the original payment method within 5 days."),
        ("refund-form", "Start a refund from Orders > Request refund."),
    ],
    "shipping": [
        ("shipping-times", "Standard shipping takes 3-5 business days."),
        ("tracking", "Every order has a tracking link in its confirmation email."),
    ],
    "password": [("password-reset", "Reset your password from the sign-in page.")],
    "billing": [
        ("double-charge", "A second charge is an authorization hold and drops within 3 days."),
        ("invoices", "Invoices are under Account > Billing."),
    ],
}
QUESTIONS = [
    "How do I get a refund for my order?",
    "When will my refund arrive?",
    "How long does shipping take?",
    "Where is my tracking number?",
    "I forgot my password",
    "Why was I charged twice?",
    "Where can I download my invoices?",
    "Can I pay with seashells?",
    "What is the meaning of life?",
    "Please explain shipping, refunds and billing in full detail",
    "The app crashed while I was paying",
]


@trace(span_type="RETRIEVER")
def retrieve(query: str) -> list[dict[str, str]]:
    """Return the knowledge-base documents whose topic the query mentions."""
    words = query.lower()
    return [
        {"doc_id": doc_id, "text": text}
        for topic, docs in _KNOWLEDGE_BASE.items()
        if topic in words or (topic == "billing" and "charged" in words)
        for doc_id, text in docs
    ]


@trace(span_type="LLM")
def generate(question: str, documents: list[dict[str, str]]) -> str:
    """Answer from the documents, like a (very predictable) language model.

    Raises:
        RuntimeError: the question mentions a crash (the simulated model times out).
    """
    if "crash" in question.lower():
        raise RuntimeError("upstream model timed out after 30 s")
    if not documents:
        return "I don't know, sorry. Let me connect you with a human agent."
    cited = " ".join(f"{d['text']} [doc:{d['doc_id']}]" for d in documents)
    if "full detail" in question.lower():
        return f"Here is everything we know. {cited} " + "Let me know if that helps! " * 3
    return cited


@trace(name="support_bot", span_type="CHAIN")
def support_bot(question: str, *, user: str, env: str) -> str:
    """Answer a customer question: retrieve documents, then generate an answer."""
    update_current_trace(
        tags={"env": env, "app_version": "1.4.2"},
        metadata={"user": user, "mlflow.trace.session": f"session-{user}"},
    )
    return generate(question, retrieve(question))


# -- scorers: module-level, so any process can import them by reference -----------------------


@scorer
def is_concise(outputs: Any) -> bool:  # noqa: ANN401 - whatever the app returned
    """The answer fits in 200 characters."""
    return isinstance(outputs, str) and len(outputs) <= 200


@scorer
def cites_source(outputs: Any) -> Feedback:  # noqa: ANN401
    """The answer cites a knowledge-base document ([doc:...]).

    Raises:
        TypeError: the trace has no answer (the app failed), recorded as error feedback.
    """
    if not isinstance(outputs, str):
        raise TypeError("the trace has no answer to check: the app failed before answering")
    cited = re.findall(r"\[doc:([\w-]+)\]", outputs)
    rationale = f"cites {', '.join(cited)}" if cited else "no [doc:...] citation"
    return Feedback(value=bool(cited), rationale=rationale)


@scorer
def answer_length(outputs: Any) -> int:  # noqa: ANN401
    """The answer's length in words (a numeric scorer: the report shows its mean)."""
    return len(outputs.split()) if isinstance(outputs, str) else 0


def demo_judge_model(messages: list[dict[str, str]]) -> str:
    """A deterministic stand-in for an LLM: judges helpfulness without any network.

    It receives the judge's chat messages and answers in the judge's JSON format:
    unhelpful when the answer gives up or is missing, helpful otherwise.
    """
    prompt = messages[-1]["content"] if messages else ""
    if "I don't know" in prompt:
        verdict, why = False, "the bot gave up and handed over to a human"
    elif "Let me know if that helps! Let me know" in prompt:
        verdict, why = False, "the answer repeats itself"
    else:
        verdict, why = True, "the answer addresses the question with documented facts"
    return json.dumps({"rationale": why, "result": verdict})


helpfulness = make_judge(
    name="helpfulness",
    instructions=(
        "A customer asked {{ inputs }} and the support bot answered {{ outputs }}. "
        "Is the answer helpful to the customer?"
    ),
    model=demo_judge_model,
    feedback_value_type=bool,
    description="LLM judge (a local deterministic model): is the answer helpful?",
)
