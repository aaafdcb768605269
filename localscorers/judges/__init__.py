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
from localscorers.judges.session import ConversationCompleteness as ConversationCompleteness
from localscorers.judges.session import UserFrustration as UserFrustration
