"""Built-in LLM judges, their prompts and the model providers they call (DESIGN.md section 14)."""

from localscorers.judges.builtin import (
    Correctness,
    ExpectationsGuidelines,
    Guidelines,
    InstructionsJudge,
    Judge,
    RelevanceToQuery,
    RetrievalGroundedness,
    RetrievalRelevance,
    RetrievalSufficiency,
    Safety,
    get_all_scorers,
    make_judge,
)
from localscorers.judges.session import ConversationCompleteness, UserFrustration

__all__ = [
    "ConversationCompleteness",
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
    "UserFrustration",
    "get_all_scorers",
    "make_judge",
]
