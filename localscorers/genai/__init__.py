"""``localscorers.genai``: the ``mlflow.genai`` namespace, so attribute-style code ports.

``import localscorers as mlflow`` then ``mlflow.genai.scorers.Safety(...)``,
``mlflow.genai.scorer``, ``from mlflow.genai import ScorerSamplingConfig`` all resolve
to the same objects as the top-level names: this package only re-exports.
"""

# The names this package exports: ``X as X`` marks each public (mypy, ruff), no __all__.
from localscorers.genai import judges as judges
from localscorers.genai import scorers as scorers
from localscorers.genai.judges import make_judge as make_judge
from localscorers.genai.scorers import Scorer as Scorer
from localscorers.genai.scorers import ScorerSamplingConfig as ScorerSamplingConfig
from localscorers.genai.scorers import delete_scorer as delete_scorer
from localscorers.genai.scorers import get_scorer as get_scorer
from localscorers.genai.scorers import list_scorer_versions as list_scorer_versions
from localscorers.genai.scorers import list_scorers as list_scorers
from localscorers.genai.scorers import scorer as scorer
from localscorers.offline_evaluation import EvaluationResult as EvaluationResult
from localscorers.offline_evaluation import evaluate as evaluate
