"""localscorers: local-first production scorer lifecycle for GenAI traces, on SQLite.

The public API follows ``mlflow.genai.scorers`` production monitoring, so code written
for it ports by changing the import.
"""

import importlib
from typing import TYPE_CHECKING

from localscorers import exceptions

# Every public name is imported as ``X as X``, one a line: that marks it public for
# mypy (no_implicit_reexport) and for readers, so no __all__ has to repeat the names.
# Exceptions are cheap (they import nothing) and users catch them: loaded eagerly.
from localscorers.exceptions import BackfillTimeoutError as BackfillTimeoutError
from localscorers.exceptions import ConfigurationError as ConfigurationError
from localscorers.exceptions import ConflictError as ConflictError
from localscorers.exceptions import DatabaseBusyError as DatabaseBusyError
from localscorers.exceptions import DatabaseCorruptError as DatabaseCorruptError
from localscorers.exceptions import DatabaseError as DatabaseError
from localscorers.exceptions import DatabaseMovedError as DatabaseMovedError
from localscorers.exceptions import DatabaseNotFoundError as DatabaseNotFoundError
from localscorers.exceptions import DatabaseReadOnlyError as DatabaseReadOnlyError
from localscorers.exceptions import DiskFullError as DiskFullError
from localscorers.exceptions import FilterSyntaxError as FilterSyntaxError
from localscorers.exceptions import InvalidTransitionError as InvalidTransitionError
from localscorers.exceptions import JobNotFoundError as JobNotFoundError
from localscorers.exceptions import JudgeModelWarning as JudgeModelWarning
from localscorers.exceptions import LocalScorersError as LocalScorersError
from localscorers.exceptions import MissingColumnsError as MissingColumnsError
from localscorers.exceptions import ModelNotConfiguredError as ModelNotConfiguredError
from localscorers.exceptions import ModelRequestError as ModelRequestError
from localscorers.exceptions import NotADatabaseError as NotADatabaseError
from localscorers.exceptions import NotFoundError as NotFoundError
from localscorers.exceptions import ProviderUnavailableError as ProviderUnavailableError
from localscorers.exceptions import SchemaVersionError as SchemaVersionError
from localscorers.exceptions import ScorerExecutionError as ScorerExecutionError
from localscorers.exceptions import ScorerLimitError as ScorerLimitError
from localscorers.exceptions import ScorerLoadError as ScorerLoadError
from localscorers.exceptions import ScorerNotFoundError as ScorerNotFoundError
from localscorers.exceptions import StoreError as StoreError
from localscorers.exceptions import TraceImportError as TraceImportError
from localscorers.exceptions import TraceNotFoundError as TraceNotFoundError
from localscorers.exceptions import TransactionError as TransactionError
from localscorers.exceptions import TransientError as TransientError
from localscorers.exceptions import UnparseableAnswerError as UnparseableAnswerError

# Everything else loads on first use (PEP 562): ``import localscorers`` must stay fast
# (benchmarks/import_time.py), so SQLAlchemy, pydantic models, typer and rich load only
# when a name that needs them is touched. To export a name: add it to _LAZY with its
# module, and import it below for type checkers (tests/test_api.py checks they agree).
if TYPE_CHECKING:
    from localscorers import genai as genai
    from localscorers.explanation import ExplainEntry as ExplainEntry
    from localscorers.explanation import ExplainOutcome as ExplainOutcome
    from localscorers.explanation import Explanation as Explanation
    from localscorers.explanation import explain as explain
    from localscorers.ingest.mlflow_json import import_traces as import_traces
    from localscorers.jobs import BackfillScorerConfig as BackfillScorerConfig
    from localscorers.jobs import backfill_scorers as backfill_scorers
    from localscorers.jobs import cancel_backfill_job as cancel_backfill_job
    from localscorers.jobs import get_backfill_job as get_backfill_job
    from localscorers.jobs import list_backfill_jobs as list_backfill_jobs
    from localscorers.jobs import wait_for_backfill_job as wait_for_backfill_job
    from localscorers.judges.builtin import Correctness as Correctness
    from localscorers.judges.builtin import ExpectationsGuidelines as ExpectationsGuidelines
    from localscorers.judges.builtin import Guidelines as Guidelines
    from localscorers.judges.builtin import RelevanceToQuery as RelevanceToQuery
    from localscorers.judges.builtin import RetrievalGroundedness as RetrievalGroundedness
    from localscorers.judges.builtin import RetrievalRelevance as RetrievalRelevance
    from localscorers.judges.builtin import RetrievalSufficiency as RetrievalSufficiency
    from localscorers.judges.builtin import Safety as Safety
    from localscorers.judges.builtin import make_judge as make_judge
    from localscorers.judges.session import ConversationCompleteness as ConversationCompleteness
    from localscorers.judges.session import UserFrustration as UserFrustration
    from localscorers.models import AssessmentError as AssessmentError
    from localscorers.models import AssessmentSource as AssessmentSource
    from localscorers.models import AssessmentSourceType as AssessmentSourceType
    from localscorers.models import BackfillJob as BackfillJob
    from localscorers.models import Expectation as Expectation
    from localscorers.models import Experiment as Experiment
    from localscorers.models import Feedback as Feedback
    from localscorers.models import JobStatus as JobStatus
    from localscorers.models import ScorerSamplingConfig as ScorerSamplingConfig
    from localscorers.models import ScorerStatus as ScorerStatus
    from localscorers.models import Span as Span
    from localscorers.models import SpanStatus as SpanStatus
    from localscorers.models import Trace as Trace
    from localscorers.models import TraceData as TraceData
    from localscorers.models import TraceInfo as TraceInfo
    from localscorers.models import TraceStatus as TraceStatus
    from localscorers.offline_evaluation import EvaluationResult as EvaluationResult
    from localscorers.offline_evaluation import evaluate as evaluate
    from localscorers.report import ReportBucket as ReportBucket
    from localscorers.report import ScorerReport as ScorerReport
    from localscorers.report import TimeBucket as TimeBucket
    from localscorers.report import scorer_report as scorer_report
    from localscorers.scorers import FunctionScorer as FunctionScorer
    from localscorers.scorers import Scorer as Scorer
    from localscorers.scorers import delete_scorer as delete_scorer
    from localscorers.scorers import get_scorer as get_scorer
    from localscorers.scorers import list_scorer_versions as list_scorer_versions
    from localscorers.scorers import list_scorers as list_scorers
    from localscorers.scorers import scorer as scorer
    from localscorers.store.paging import PagedList as PagedList
    from localscorers.tracing import get_current_active_span as get_current_active_span
    from localscorers.tracing import start_span as start_span
    from localscorers.tracing import trace as trace
    from localscorers.tracing import update_current_trace as update_current_trace
    from localscorers.tracking import flush as flush
    from localscorers.tracking import get_experiment_by_name as get_experiment_by_name
    from localscorers.tracking import get_trace as get_trace
    from localscorers.tracking import get_tracking_uri as get_tracking_uri
    from localscorers.tracking import log_expectation as log_expectation
    from localscorers.tracking import log_feedback as log_feedback
    from localscorers.tracking import log_trace as log_trace
    from localscorers.tracking import search_experiments as search_experiments
    from localscorers.tracking import search_traces as search_traces
    from localscorers.tracking import set_experiment as set_experiment
    from localscorers.tracking import set_tracking_uri as set_tracking_uri

__version__ = "0.1.0"

# Each public name that loads on first use, and its module under this package.
_LAZY: dict[str, str] = {
    "AssessmentError": "models",
    "AssessmentSource": "models",
    "AssessmentSourceType": "models",
    "BackfillJob": "models",
    "BackfillScorerConfig": "jobs",
    "ConversationCompleteness": "judges.session",
    "Correctness": "judges.builtin",
    "EvaluationResult": "offline_evaluation",
    "Expectation": "models",
    "ExpectationsGuidelines": "judges.builtin",
    "Experiment": "models",
    "ExplainEntry": "explanation",
    "ExplainOutcome": "explanation",
    "Explanation": "explanation",
    "Feedback": "models",
    "FunctionScorer": "scorers",
    "Guidelines": "judges.builtin",
    "JobStatus": "models",
    "PagedList": "store.paging",
    "RelevanceToQuery": "judges.builtin",
    "ReportBucket": "report",
    "RetrievalGroundedness": "judges.builtin",
    "RetrievalRelevance": "judges.builtin",
    "RetrievalSufficiency": "judges.builtin",
    "Safety": "judges.builtin",
    "Scorer": "scorers",
    "ScorerReport": "report",
    "ScorerSamplingConfig": "models",
    "ScorerStatus": "models",
    "Span": "models",
    "SpanStatus": "models",
    "TimeBucket": "report",
    "Trace": "models",
    "TraceData": "models",
    "TraceInfo": "models",
    "TraceStatus": "models",
    "UserFrustration": "judges.session",
    "backfill_scorers": "jobs",
    "cancel_backfill_job": "jobs",
    "delete_scorer": "scorers",
    "evaluate": "offline_evaluation",
    "explain": "explanation",
    "flush": "tracking",
    "get_backfill_job": "jobs",
    "get_current_active_span": "tracing",
    "get_experiment_by_name": "tracking",
    "get_scorer": "scorers",
    "get_trace": "tracking",
    "get_tracking_uri": "tracking",
    "import_traces": "ingest.mlflow_json",
    "list_backfill_jobs": "jobs",
    "list_scorer_versions": "scorers",
    "list_scorers": "scorers",
    "log_expectation": "tracking",
    "log_feedback": "tracking",
    "log_trace": "tracking",
    "make_judge": "judges.builtin",
    "scorer": "scorers",
    "scorer_report": "report",
    "search_experiments": "tracking",
    "search_traces": "tracking",
    "set_experiment": "tracking",
    "set_tracking_uri": "tracking",
    "start_span": "tracing",
    "trace": "tracing",
    "update_current_trace": "tracing",
    "wait_for_backfill_job": "jobs",
}
# Subpackages exported by name (``localscorers.genai``), also imported on first use.
_LAZY_SUBMODULES = frozenset({"genai"})

# The public names, derived rather than listed a third time.
_PUBLIC = frozenset({*exceptions.__all__, *_LAZY, *_LAZY_SUBMODULES})
if not TYPE_CHECKING:
    # Type checkers skip this: a computed __all__ would hide every name from mypy, which
    # goes by the ``X as X`` imports above instead.
    __all__ = tuple(sorted(_PUBLIC))


def __getattr__(name: str) -> object:
    """Import a public name's module on first access and cache the name here."""
    module = _LAZY.get(name)
    if module is not None:
        value: object = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    elif name in _LAZY_SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """List the public names too, loaded or not (for ``dir()`` and completion)."""
    return sorted({*globals(), *_PUBLIC})
