"""localscorers: local-first production scorer lifecycle for GenAI traces, on SQLite.

The public API follows ``mlflow.genai.scorers`` production monitoring, so code written
for it ports by changing the import.
"""

import importlib
from typing import TYPE_CHECKING

# Exceptions are cheap (they import nothing) and users catch them: loaded eagerly.
from localscorers.exceptions import (
    BackfillTimeoutError,
    ConfigurationError,
    ConflictError,
    DatabaseBusyError,
    DatabaseCorruptError,
    DatabaseError,
    DatabaseMovedError,
    DatabaseNotFoundError,
    DatabaseReadOnlyError,
    DiskFullError,
    FilterSyntaxError,
    InvalidTransitionError,
    JobNotFoundError,
    JudgeModelWarning,
    LocalScorersError,
    MissingColumnsError,
    ModelNotConfiguredError,
    ModelRequestError,
    NotADatabaseError,
    NotFoundError,
    ProviderUnavailableError,
    SchemaVersionError,
    ScorerExecutionError,
    ScorerLimitError,
    ScorerLoadError,
    ScorerNotFoundError,
    StoreError,
    TraceImportError,
    TraceNotFoundError,
    TransactionError,
    TransientError,
    UnparseableAnswerError,
)

# Everything else loads on first use (PEP 562): ``import localscorers`` must stay fast
# (benchmarks/import_time.py), so SQLAlchemy, pydantic models, typer and rich load only
# when a name that needs them is touched. To export a name: add it to _LAZY_EXPORTS under
# its module, to the TYPE_CHECKING imports (for type checkers) and to __all__.
if TYPE_CHECKING:
    from localscorers import genai
    from localscorers.explanation import ExplainEntry, ExplainOutcome, Explanation, explain
    from localscorers.ingest.mlflow_json import import_traces
    from localscorers.jobs import (
        BackfillScorerConfig,
        backfill_scorers,
        cancel_backfill_job,
        get_backfill_job,
        list_backfill_jobs,
        wait_for_backfill_job,
    )
    from localscorers.judges.builtin import (
        Correctness,
        ExpectationsGuidelines,
        Guidelines,
        RelevanceToQuery,
        RetrievalGroundedness,
        RetrievalRelevance,
        RetrievalSufficiency,
        Safety,
        make_judge,
    )
    from localscorers.judges.session import ConversationCompleteness, UserFrustration
    from localscorers.models import (
        AssessmentError,
        AssessmentSource,
        AssessmentSourceType,
        BackfillJob,
        Expectation,
        Experiment,
        Feedback,
        JobStatus,
        ScorerSamplingConfig,
        ScorerStatus,
        Span,
        SpanStatus,
        Trace,
        TraceData,
        TraceInfo,
        TraceStatus,
    )
    from localscorers.offline_evaluation import EvaluationResult, evaluate
    from localscorers.report import ReportBucket, ScorerReport, TimeBucket, scorer_report
    from localscorers.scorers import (
        FunctionScorer,
        Scorer,
        delete_scorer,
        get_scorer,
        list_scorer_versions,
        list_scorers,
        scorer,
    )
    from localscorers.tracing import (
        get_current_active_span,
        start_span,
        trace,
        update_current_trace,
    )
    from localscorers.tracking import (
        flush,
        get_experiment_by_name,
        get_trace,
        get_tracking_uri,
        log_expectation,
        log_feedback,
        log_trace,
        search_experiments,
        search_traces,
        set_experiment,
        set_tracking_uri,
    )

__version__ = "0.1.0"

__all__ = [
    "AssessmentError",
    "AssessmentSource",
    "AssessmentSourceType",
    "BackfillJob",
    "BackfillScorerConfig",
    "BackfillTimeoutError",
    "ConfigurationError",
    "ConflictError",
    "ConversationCompleteness",
    "Correctness",
    "DatabaseBusyError",
    "DatabaseCorruptError",
    "DatabaseError",
    "DatabaseMovedError",
    "DatabaseNotFoundError",
    "DatabaseReadOnlyError",
    "DiskFullError",
    "EvaluationResult",
    "Expectation",
    "ExpectationsGuidelines",
    "Experiment",
    "ExplainEntry",
    "ExplainOutcome",
    "Explanation",
    "Feedback",
    "FilterSyntaxError",
    "FunctionScorer",
    "Guidelines",
    "InvalidTransitionError",
    "JobNotFoundError",
    "JobStatus",
    "JudgeModelWarning",
    "LocalScorersError",
    "MissingColumnsError",
    "ModelNotConfiguredError",
    "ModelRequestError",
    "NotADatabaseError",
    "NotFoundError",
    "ProviderUnavailableError",
    "RelevanceToQuery",
    "ReportBucket",
    "RetrievalGroundedness",
    "RetrievalRelevance",
    "RetrievalSufficiency",
    "Safety",
    "SchemaVersionError",
    "Scorer",
    "ScorerExecutionError",
    "ScorerLimitError",
    "ScorerLoadError",
    "ScorerNotFoundError",
    "ScorerReport",
    "ScorerSamplingConfig",
    "ScorerStatus",
    "Span",
    "SpanStatus",
    "StoreError",
    "TimeBucket",
    "Trace",
    "TraceData",
    "TraceImportError",
    "TraceInfo",
    "TraceNotFoundError",
    "TraceStatus",
    "TransactionError",
    "TransientError",
    "UnparseableAnswerError",
    "UserFrustration",
    "backfill_scorers",
    "cancel_backfill_job",
    "delete_scorer",
    "evaluate",
    "explain",
    "flush",
    "genai",
    "get_backfill_job",
    "get_current_active_span",
    "get_experiment_by_name",
    "get_scorer",
    "get_trace",
    "get_tracking_uri",
    "import_traces",
    "list_backfill_jobs",
    "list_scorer_versions",
    "list_scorers",
    "log_expectation",
    "log_feedback",
    "log_trace",
    "make_judge",
    "scorer",
    "scorer_report",
    "search_experiments",
    "search_traces",
    "set_experiment",
    "set_tracking_uri",
    "start_span",
    "trace",
    "update_current_trace",
    "wait_for_backfill_job",
]


_LAZY_EXPORTS: dict[str, tuple[str, ...]] = {
    "localscorers.offline_evaluation": ("EvaluationResult", "evaluate"),
    "localscorers.explanation": (
        "ExplainEntry",
        "ExplainOutcome",
        "Explanation",
        "explain",
    ),
    "localscorers.ingest.mlflow_json": ("import_traces",),
    "localscorers.jobs": (
        "BackfillScorerConfig",
        "backfill_scorers",
        "cancel_backfill_job",
        "get_backfill_job",
        "list_backfill_jobs",
        "wait_for_backfill_job",
    ),
    "localscorers.judges.builtin": (
        "Correctness",
        "ExpectationsGuidelines",
        "Guidelines",
        "RelevanceToQuery",
        "RetrievalGroundedness",
        "RetrievalRelevance",
        "RetrievalSufficiency",
        "Safety",
        "make_judge",
    ),
    "localscorers.judges.session": ("ConversationCompleteness", "UserFrustration"),
    "localscorers.models": (
        "AssessmentError",
        "AssessmentSource",
        "AssessmentSourceType",
        "BackfillJob",
        "Expectation",
        "Experiment",
        "Feedback",
        "JobStatus",
        "ScorerSamplingConfig",
        "ScorerStatus",
        "Span",
        "SpanStatus",
        "Trace",
        "TraceData",
        "TraceInfo",
        "TraceStatus",
    ),
    "localscorers.report": (
        "ReportBucket",
        "ScorerReport",
        "TimeBucket",
        "scorer_report",
    ),
    "localscorers.scorers": (
        "FunctionScorer",
        "Scorer",
        "delete_scorer",
        "get_scorer",
        "list_scorer_versions",
        "list_scorers",
        "scorer",
    ),
    "localscorers.tracing": (
        "get_current_active_span",
        "start_span",
        "trace",
        "update_current_trace",
    ),
    "localscorers.tracking": (
        "flush",
        "get_experiment_by_name",
        "get_trace",
        "get_tracking_uri",
        "log_expectation",
        "log_feedback",
        "log_trace",
        "search_experiments",
        "search_traces",
        "set_experiment",
        "set_tracking_uri",
    ),
}
# Subpackages exported by name (``localscorers.genai``), also imported on first use.
_LAZY_SUBMODULES = frozenset({"genai"})
_LAZY = {name: module for module, names in _LAZY_EXPORTS.items() for name in names}


def __getattr__(name: str) -> object:
    """Import a public name's module on first access and cache the name here."""
    module = _LAZY.get(name)
    if module is not None:
        value: object = getattr(importlib.import_module(module), name)
    elif name in _LAZY_SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """List the public names too, loaded or not (for ``dir()`` and completion)."""
    return sorted({*globals(), *__all__})
