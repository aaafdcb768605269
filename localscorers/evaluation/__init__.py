"""Running scorers: the scheduler shared by online scoring and backfill, and scorer calls."""

# The names this package exports: ``X as X`` marks each public (mypy, ruff), no __all__.
from localscorers.evaluation.aggregations import aggregate as aggregate
from localscorers.evaluation.backfill import Execution as Execution
from localscorers.evaluation.execution import EvaluationContext as EvaluationContext
from localscorers.evaluation.execution import evaluation_context as evaluation_context
from localscorers.evaluation.execution import to_feedback as to_feedback
from localscorers.evaluation.jobs import JobRunner as JobRunner
from localscorers.evaluation.jobs import part_traces_from_env as part_traces_from_env
from localscorers.evaluation.online import Runner as Runner
from localscorers.evaluation.pool import DaemonThreadPool as DaemonThreadPool
from localscorers.evaluation.serialization import check_source_trust as check_source_trust
from localscorers.evaluation.serialization import resolve_reference as resolve_reference
from localscorers.evaluation.settings import Settings as Settings
