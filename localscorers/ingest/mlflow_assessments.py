"""Assessments of an MLflow trace document: feedback and expectations, with their source."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from localscorers import _clock
from localscorers.ingest.mlflow_values import InvalidTrace, epoch_ms, kind_of
from localscorers.models import (
    AssessmentError,
    AssessmentSource,
    AssessmentSourceType,
    Expectation,
    Feedback,
)
from localscorers.store.rows import TraceRecord

__all__ = ["check_assessment_ids", "parse_assessment"]

_SOURCE_TYPES = {
    "HUMAN": AssessmentSourceType.HUMAN,
    "LLM_JUDGE": AssessmentSourceType.LLM_JUDGE,
    "AI_JUDGE": AssessmentSourceType.LLM_JUDGE,  # MLflow's deprecated alias
    "CODE": AssessmentSourceType.CODE,
}


def _source(raw: object, where: str) -> AssessmentSource:
    if raw is None:
        return AssessmentSource()
    if not isinstance(raw, dict):
        raise InvalidTrace(f"{where}.source must be an object, got {kind_of(raw)}")
    kind = str(raw.get("source_type") or "SOURCE_TYPE_UNSPECIFIED").upper()
    source_id = raw.get("source_id")
    source_id = source_id if isinstance(source_id, str) and source_id else "default"
    if kind == "SOURCE_TYPE_UNSPECIFIED":
        return AssessmentSource(source_id=source_id)
    if kind not in _SOURCE_TYPES:
        raise InvalidTrace(
            f"{where}.source.source_type is {raw.get('source_type')!r}; expected HUMAN, "
            "LLM_JUDGE or CODE"
        )
    return AssessmentSource(source_type=_SOURCE_TYPES[kind], source_id=source_id)


def _error(raw: object, where: str) -> AssessmentError | None:
    if not raw:
        return None
    if not isinstance(raw, dict):
        raise InvalidTrace(f"{where}.error must be an object, got {kind_of(raw)}")
    return AssessmentError(
        error_code=str(raw.get("error_code") or "UNKNOWN_ERROR"),
        error_message=raw.get("error_message"),
        stack_trace=raw.get("stack_trace"),
    )


def _expectation_value(raw: Mapping[str, Any], where: str) -> Any:  # noqa: ANN401
    serialized = raw.get("serialized_value")
    if isinstance(serialized, dict) and isinstance(serialized.get("value"), str):
        try:
            return json.loads(serialized["value"])
        except (ValueError, RecursionError) as exc:
            raise InvalidTrace(
                f"{where}.expectation.serialized_value is not JSON ({str(exc)[:200]})",
                field=f"{where}.expectation.serialized_value",
            ) from exc
    return raw.get("value")


def parse_assessment(raw: object, *, index: int) -> Feedback | Expectation:
    """Read the ``index``-th assessment of ``info.assessments`` as feedback or an expectation.

    Raises:
        InvalidTrace: the assessment is not one MLflow writes.
    """
    where = f"assessment #{index}"
    if not isinstance(raw, dict):
        raise InvalidTrace(f"{where} must be an object, got {kind_of(raw)}")
    name = raw.get("assessment_name", raw.get("name"))
    if not isinstance(name, str) or not name.strip():
        raise InvalidTrace(f"{where} needs a non-blank 'assessment_name', got {name!r}")
    where = f"assessment #{index} ({name!r})"
    metadata = raw.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidTrace(f"{where}.metadata must be an object, got {kind_of(metadata)}")
    created = epoch_ms(raw.get("create_time", raw.get("create_time_ms")), f"{where}.create_time")
    assessment_id = raw.get("assessment_id", raw.get("_assessment_id"))
    common: dict[str, Any] = {
        "name": name,
        "rationale": raw.get("rationale"),
        "metadata": metadata,
        "source": _source(raw.get("source"), where),
        "assessment_id": str(assessment_id) if assessment_id else None,
        "create_time": None if created is None else _clock.datetime_from_ms(created),
        "origin": "import",
        "valid": raw.get("valid") is not False,
        "overrides": raw.get("overrides"),
    }
    expectation = raw.get("expectation")
    if isinstance(expectation, dict):
        return Expectation(value=_expectation_value(expectation, where), **common)
    feedback = raw.get("feedback")
    if feedback is not None and not isinstance(feedback, dict):
        raise InvalidTrace(f"{where}.feedback must be an object, got {kind_of(feedback)}")
    if feedback is None and not raw.get("error"):
        raise InvalidTrace(f"{where} has neither 'feedback' nor 'expectation'")
    feedback = feedback or {}
    # MLflow 3 moved the error into the feedback; older exports have it on the assessment.
    error = _error(feedback.get("error") or raw.get("error"), where)
    return Feedback(value=feedback.get("value"), error=error, **common)


def check_assessment_ids(record: TraceRecord, seen: set[str]) -> None:
    """Refuse an assessment id already ``seen`` in this import; add the record's ids to it."""
    for assessment in record.assessments:
        if assessment.assessment_id is None:
            continue
        if assessment.assessment_id in seen:
            raise InvalidTrace(
                f"assessment id {assessment.assessment_id} appears twice in the import; "
                "assessment ids are unique"
            )
        seen.add(assessment.assessment_id)
