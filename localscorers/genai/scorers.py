"""``localscorers.genai.scorers``: ``mlflow.genai.scorers``' names, re-exported."""

from localscorers.jobs import BackfillScorerConfig, backfill_scorers
from localscorers.judges.builtin import (
    Correctness,
    ExpectationsGuidelines,
    Guidelines,
    RelevanceToQuery,
    RetrievalGroundedness,
    RetrievalRelevance,
    RetrievalSufficiency,
    Safety,
    get_all_scorers,
)
from localscorers.judges.session import ConversationCompleteness, UserFrustration
from localscorers.models import ScorerSamplingConfig
from localscorers.scorers import (
    Scorer,
    delete_scorer,
    get_scorer,
    list_scorer_versions,
    list_scorers,
    scorer,
)

__all__ = [
    "BackfillScorerConfig",
    "ConversationCompleteness",
    "Correctness",
    "ExpectationsGuidelines",
    "Guidelines",
    "RelevanceToQuery",
    "RetrievalGroundedness",
    "RetrievalRelevance",
    "RetrievalSufficiency",
    "Safety",
    "Scorer",
    "ScorerSamplingConfig",
    "UserFrustration",
    "backfill_scorers",
    "delete_scorer",
    "get_all_scorers",
    "get_scorer",
    "list_scorer_versions",
    "list_scorers",
    "scorer",
]
