"""``localscorers.genai``: the ``mlflow.genai`` namespace, so attribute-style code ports.

``import localscorers as mlflow`` then ``mlflow.genai.scorers.Safety(...)``,
``mlflow.genai.scorer``, ``from mlflow.genai import ScorerSamplingConfig`` all resolve
to the same objects as the top-level names: this package only re-exports.
"""

from localscorers.genai import judges, scorers
from localscorers.genai.judges import make_judge
from localscorers.genai.scorers import (
    Scorer,
    ScorerSamplingConfig,
    delete_scorer,
    get_scorer,
    list_scorer_versions,
    list_scorers,
    scorer,
)
from localscorers.offline_evaluation import EvaluationResult, evaluate

__all__ = [
    "EvaluationResult",
    "Scorer",
    "ScorerSamplingConfig",
    "delete_scorer",
    "evaluate",
    "get_scorer",
    "judges",
    "list_scorer_versions",
    "list_scorers",
    "make_judge",
    "scorer",
    "scorers",
]
