"""``localscorers.genai.judges``: ``mlflow.genai.judges``' names, re-exported."""

from localscorers.judges.builtin import make_judge

__all__ = ["make_judge"]
