"""Built-in LLM judges, their prompts and the model providers they call (DESIGN.md section 14)."""

# The names this package exports: ``X as X`` marks each public (mypy, ruff), no __all__.
from localscorers.judges.builtin import Correctness as Correctness
from localscorers.judges.builtin import ExpectationsGuidelines as ExpectationsGuidelines
from localscorers.judges.builtin import Guidelines as Guidelines
from localscorers.judges.builtin import InstructionsJudge as InstructionsJudge
from localscorers.judges.builtin import Judge as Judge
from localscorers.judges.builtin import RelevanceToQuery as RelevanceToQuery
from localscorers.judges.builtin import RetrievalGroundedness as RetrievalGroundedness
from localscorers.judges.builtin import RetrievalRelevance as RetrievalRelevance
from localscorers.judges.builtin import RetrievalSufficiency as RetrievalSufficiency
from localscorers.judges.builtin import Safety as Safety
from localscorers.judges.builtin import get_all_scorers as get_all_scorers
from localscorers.judges.builtin import make_judge as make_judge
from localscorers.judges.providers import CallableModel as CallableModel
from localscorers.judges.providers import ChatModel as ChatModel
from localscorers.judges.providers import ChatRequest as ChatRequest
from localscorers.judges.providers import ChatResult as ChatResult
from localscorers.judges.providers import OpenAICompatibleModel as OpenAICompatibleModel
from localscorers.judges.providers import RateLimiter as RateLimiter
from localscorers.judges.providers import model_reference as model_reference
from localscorers.judges.providers import parse_retry_after as parse_retry_after
from localscorers.judges.providers import resolve_model as resolve_model
from localscorers.judges.session import ConversationCompleteness as ConversationCompleteness
from localscorers.judges.session import UserFrustration as UserFrustration
from localscorers.judges.session import render_conversation as render_conversation
