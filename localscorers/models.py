"""Frozen value objects returned by the public API.

Everything here is a pydantic v2 model with ``frozen=True``: values returned by
localscorers never change under the caller. Statuses are ``StrEnum`` with
upper-case values, so ``trace.info.status == "OK"`` holds.
"""

from __future__ import annotations

import math
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from localscorers.exceptions import ConfigurationError
from localscorers.filters import parser
from localscorers.store.codec import safe_repr

__all__ = [
    "DEFAULT_SESSION_IDLE_SECONDS",
    "Assessment",
    "AssessmentError",
    "AssessmentSource",
    "AssessmentSourceType",
    "BackfillJob",
    "EvaluationStatus",
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
    "check_sampling_config",
    "validate_filter_string",
    "validate_idle_seconds",
    "validate_sample_rate",
]

# A session is scored online after this long without a new trace (DESIGN.md section 15).
DEFAULT_SESSION_IDLE_SECONDS = 300.0
_MAX_IDLE_SECONDS = 1e9  # about 31 years: milliseconds of it stay a 64-bit integer


class TraceStatus(StrEnum):
    """Outcome of a traced call."""

    OK = "OK"
    ERROR = "ERROR"
    IN_PROGRESS = "IN_PROGRESS"


class SpanStatus(StrEnum):
    """A span's status: OpenTelemetry's codes (``UNSET`` included) and ``IN_PROGRESS``.

    ``Span.status`` holds a ``TraceStatus`` for OK, ERROR and IN_PROGRESS (so
    ``span.status is TraceStatus.OK`` holds as before) and ``SpanStatus.UNSET`` for a
    span that ended without setting one; ``span.status = 'OK'`` filters do not match it.
    """

    OK = "OK"
    ERROR = "ERROR"
    UNSET = "UNSET"
    IN_PROGRESS = "IN_PROGRESS"


class ScorerStatus(StrEnum):
    """Where a scorer stands in its lifecycle (DESIGN.md section 5)."""

    UNREGISTERED = "UNREGISTERED"
    REGISTERED = "REGISTERED"
    ACTIVE = "ACTIVE"
    STOPPED = "STOPPED"
    DELETED = "DELETED"


class JobStatus(StrEnum):
    """State of a backfill job."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class EvaluationStatus(StrEnum):
    """State of one (trace, scorer, version) evaluation."""

    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class AssessmentSourceType(StrEnum):
    """Who produced an assessment."""

    CODE = "CODE"
    LLM_JUDGE = "LLM_JUDGE"
    HUMAN = "HUMAN"


class Experiment(BaseModel):
    """A named group of traces and scorers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    experiment_id: str
    name: str
    creation_time: datetime


class AssessmentSource(BaseModel):
    """Who or what produced an assessment, as in MLflow."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source_type: AssessmentSourceType = AssessmentSourceType.CODE
    source_id: str = "default"


class AssessmentError(BaseModel):
    """Why a scorer could not produce a value: error code, message and stack trace."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    error_code: str
    error_message: str | None = None
    stack_trace: str | None = None


class Assessment(BaseModel):
    """Fields shared by feedback and expectations.

    The fields after ``source`` are set by the store when the assessment is read
    back; leave them at their defaults when creating one.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = None
    value: Any = None
    rationale: str | None = None
    metadata: dict[str, Any] | None = None
    source: AssessmentSource | None = None
    assessment_id: str | None = None
    trace_id: str | None = None
    create_time: datetime | None = None
    scorer_name: str | None = None
    scorer_version: int | None = None
    origin: str | None = None
    valid: bool = True
    overrides: str | None = None

    def __init__(self, name: str | None = None, value: Any = None, /, **data: Any) -> None:  # noqa: ANN401
        if name is not None:
            data["name"] = name
        if value is not None:
            data["value"] = value
        super().__init__(**data)


class Feedback(Assessment):
    """A judgement of a trace: a value, or an ``error`` when the scorer failed.

    ``origin`` tells where it came from: ``"online"``, ``"backfill:<job id>"``,
    ``"manual"`` or ``"import"``.
    """

    error: AssessmentError | None = None


class Expectation(Assessment):
    """Ground truth attached to a trace (imported or logged), read by scorers."""


class Span(BaseModel):
    """One timed operation inside a trace."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    span_id: str
    parent_id: str | None = None
    name: str
    span_type: str | None = None
    # TraceStatus first: OK / ERROR / IN_PROGRESS stay TraceStatus members.
    status: TraceStatus | SpanStatus = Field(default=TraceStatus.OK, union_mode="left_to_right")
    status_message: str | None = None
    start_time_ns: int
    end_time_ns: int | None = None
    inputs: Any = None
    outputs: Any = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    events: list[dict[str, Any]] = Field(default_factory=list)


class TraceInfo(BaseModel):
    """What is known about a trace apart from its spans."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    trace_id: str
    experiment_id: str
    request_time: datetime
    execution_duration_ms: int | None = None
    status: TraceStatus
    name: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    metadata: dict[str, str] = Field(default_factory=dict)
    assessments: list[Feedback | Expectation] = Field(default_factory=list)
    client_request_id: str | None = None


class TraceData(BaseModel):
    """The trace's spans and its deserialized inputs (``request``) and outputs (``response``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    spans: list[Span] = Field(default_factory=list)
    request: Any = None
    response: Any = None


class Trace(BaseModel):
    """A recorded call of the user's application."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    info: TraceInfo
    data: TraceData

    @property
    def expectations(self) -> dict[str, Any]:
        """Return the valid expectations on the trace, by name."""
        return {
            a.name: a.value
            for a in self.info.assessments
            if isinstance(a, Expectation) and a.valid and a.name is not None
        }


class ScorerSamplingConfig(BaseModel):
    """How much of the traffic a scorer sees: a rate and an optional trace filter.

    Validated on construction: ``sample_rate`` must be a number in ``[0, 1]``
    (NaN is refused) and ``filter_string`` must parse. ``session_idle_seconds`` is
    for session-level scorers (a ``session`` parameter): a session is scored online
    once no trace of it has arrived for that long, and again after it grows.

    Raises:
        FilterSyntaxError: the filter string does not parse.
        ConfigurationError: the rate is out of range or not a number, or
            ``session_idle_seconds`` is not a positive number.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    sample_rate: float = 1.0
    filter_string: str | None = None
    session_idle_seconds: float = DEFAULT_SESSION_IDLE_SECONDS

    def __init__(
        self,
        sample_rate: float = 1.0,
        filter_string: str | None = None,
        session_idle_seconds: float = DEFAULT_SESSION_IDLE_SECONDS,
    ) -> None:
        # Checked here rather than in pydantic validators: those would wrap our errors
        # in pydantic's ValidationError, and callers catch FilterSyntaxError.
        super().__init__(
            sample_rate=validate_sample_rate(sample_rate),
            filter_string=validate_filter_string(filter_string),
            session_idle_seconds=validate_idle_seconds(session_idle_seconds),
        )


def validate_idle_seconds(value: object) -> float:
    """Return ``session_idle_seconds`` as a float, or raise if it is not a positive number.

    Raises:
        ConfigurationError: the value is not a number above 0 (and at most 1e9).
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(
            f"session_idle_seconds must be a number of seconds above 0, got {safe_repr(value)}."
        )
    seconds = float(value) if isinstance(value, float) or abs(value) <= 10**12 else math.inf
    if math.isnan(seconds) or not 0 < seconds <= _MAX_IDLE_SECONDS:
        raise ConfigurationError(
            f"session_idle_seconds must be seconds above 0 and at most {_MAX_IDLE_SECONDS:g}, got "
            f"{safe_repr(value)}. Use e.g. 300 to score a session after 5 minutes of silence."
        )
    return seconds


def check_sampling_config(config: object, *, action: str) -> ScorerSamplingConfig:
    """Return the config given to ``start`` or ``update``, or raise if it cannot be used.

    Raises:
        ConfigurationError: it is not a ``ScorerSamplingConfig``, or its rate is 0 (that
            is ``stop()``).
    """
    if not isinstance(config, ScorerSamplingConfig):
        raise ConfigurationError(
            f"sampling_config must be a ScorerSamplingConfig, got {type(config).__name__}. "
            "Pass sampling_config=ScorerSamplingConfig(sample_rate=0.5)."
        )
    if config.sample_rate == 0.0:
        raise ConfigurationError(
            f"{action}() needs a sample_rate above 0, got 0.0. To stop scoring, call stop()."
        )
    return config


def validate_sample_rate(value: object) -> float:
    """Return the rate as a float, or raise if it is not a number in [0, 1].

    Raises:
        ConfigurationError: the rate is out of range, NaN, or not a number.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(
            f"sample_rate must be a number between 0.0 and 1.0, got {safe_repr(value)}."
        )
    rate = float(value) if isinstance(value, float) or abs(value) <= 1 else 2.0  # no overflow
    if math.isnan(rate) or not 0.0 <= rate <= 1.0:
        raise ConfigurationError(
            f"sample_rate must be between 0.0 and 1.0, got {safe_repr(value)}. "
            "Use 1.0 to score every trace, or stop() to score none."
        )
    return rate


def validate_filter_string(value: object) -> str | None:
    """Return the filter (None when blank), or raise if it does not parse.

    Raises:
        FilterSyntaxError: the filter does not parse.
        ConfigurationError: the filter is not a string.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigurationError(f"filter_string must be a string or None, got {safe_repr(value)}.")
    if not value.strip():
        return None
    parser.parse(value)
    return value


class BackfillJob(BaseModel):
    """A snapshot of a backfill job's state and progress."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str
    experiment_id: str
    status: JobStatus
    scorers: list[dict[str, Any]]
    start_time: datetime | None = None
    end_time: datetime | None = None
    rescore: bool = False
    total: int = 0
    processed: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
