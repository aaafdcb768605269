"""``evaluate``: run scorers over a dataset in development, as production runs them.

As ``mlflow.genai.evaluate`` (DESIGN.md section 15): every row becomes a trace in the
store, every scorer runs on the thread pool with production's timeouts, retries and
judge settings, and the feedback is attached to the traces. The result summarizes it.
The machinery (pool, resume, session grouping) is in ``evaluation/offline.py``.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from localscorers import _context
from localscorers.evaluation import offline, summary
from localscorers.evaluation.execution import EvaluationContext
from localscorers.evaluation.settings import Settings
from localscorers.exceptions import ConfigurationError, ScorerExecutionError, StoreError
from localscorers.ingest.records import build_record
from localscorers.models import AssessmentSource, Expectation, Feedback, Trace
from localscorers.scorers import Scorer, get_scorer
from localscorers.store.codec import safe_repr
from localscorers.store.offline import done_pairs

__all__ = ["EvaluationResult", "evaluate"]

_ROW_KEYS = frozenset({"inputs", "outputs", "expectations", "trace", "tags", "metadata"})
_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
_OWN_KEYS = (offline.EVALUATION_ID_KEY, offline.ROW_KEY, "localscorers.online_scoring")
_WRITE_CHUNK = 500


@dataclass(frozen=True)
class EvaluationResult:
    """What ``evaluate`` returns.

    Attributes:
        evaluation_id: the id of this evaluation; its traces carry it as the metadata
            ``localscorers.evaluation_id`` and its feedback has origin ``evaluate:<id>``.
        experiment_id: where the traces were logged.
        metrics: per feedback name, the scorer's aggregations (default the mean;
            booleans and ``"yes"`` / ``"no"`` count as 1 / 0) as ``"<name>/mean"``,
            ``"<name>/p90"``...; ``"<name>/pass_rate"`` for booleans and yes / no; and
            ``"<scorer>/error_count"`` for every scorer.
        trace_ids: the trace of each row, in the order of the data.
        result_df: one row per data row (``trace_id``, ``inputs``, ``outputs``,
            ``expectations``, ``session_id``, then ``<name>/value``, ``<name>/rationale``,
            ``<name>/error`` per feedback name) when pandas is installed, else None.
    """

    evaluation_id: str
    experiment_id: str
    metrics: dict[str, float]
    trace_ids: list[str]
    result_df: Any = field(default=None, repr=False)

    @property
    def run_id(self) -> str:
        """MLflow's name for the evaluation's id."""
        return self.evaluation_id

    def __str__(self) -> str:
        """Return the metrics as a two-column table."""
        width = max((len(k) for k in self.metrics), default=6)
        lines = [f"evaluation {self.evaluation_id}: {len(self.trace_ids)} rows"]
        lines += [f"{name:<{width}}  {value:.4g}" for name, value in sorted(self.metrics.items())]
        return "\n".join(lines)


@dataclass(frozen=True)
class _Run:
    """One ``evaluate`` call: where its traces go, its id, and production's settings."""

    experiment_id: str
    evaluation_id: str
    settings: Settings

    @property
    def origin(self) -> str:
        """The origin of the evaluation's feedback."""
        return f"evaluate:{self.evaluation_id}"


@dataclass(frozen=True)
class _Row:
    index: int
    inputs: Any
    outputs: Any
    expectations: dict[str, Any]
    tags: dict[str, str]
    metadata: dict[str, str]
    source: Trace | None


def _missing(value: object) -> bool:
    # A DataFrame fills absent cells with NaN.
    return value is None or (isinstance(value, float) and math.isnan(value))


def _string_map(value: object, *, index: int, key: str) -> dict[str, str]:
    if _missing(value):
        return {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"Row {index}: {key!r} must be a dict of strings, got {type(value).__name__}."
        )
    return {str(k): v if isinstance(v, str) else str(v) for k, v in value.items()}


def _row(index: int, item: object) -> _Row:
    if isinstance(item, Trace):
        item = {"trace": item}
    if not isinstance(item, Mapping):
        raise ConfigurationError(
            f"Row {index} is a {type(item).__name__}; each row must be a dict with 'inputs' "
            "(and optionally 'outputs', 'expectations', 'tags', 'metadata') or a Trace."
        )
    unknown = sorted(set(map(str, item)) - _ROW_KEYS)
    if unknown:
        raise ConfigurationError(
            f"Row {index} has unknown keys {unknown}; use only {sorted(_ROW_KEYS)}."
        )
    source = None if _missing(item.get("trace")) else item["trace"]
    if source is not None and not isinstance(source, Trace):
        raise ConfigurationError(f"Row {index}: 'trace' must be a Trace, got {source!r:.80}.")
    expectations = item.get("expectations")
    if _missing(expectations):
        expectations = source.expectations if source is not None else {}
    if not isinstance(expectations, Mapping):
        raise ConfigurationError(
            f"Row {index}: 'expectations' must be a dict such as "
            f"{{'expected_response': '...'}}, got {type(expectations).__name__}."
        )
    inputs, outputs = item.get("inputs"), item.get("outputs")
    metadata = dict(source.info.metadata) if source is not None else {}
    metadata.update(_string_map(item.get("metadata"), index=index, key="metadata"))
    tags = dict(source.info.tags) if source is not None else {}
    tags.update(_string_map(item.get("tags"), index=index, key="tags"))
    return _Row(
        index=index,
        inputs=source.data.request if _missing(inputs) and source is not None else inputs,
        outputs=source.data.response if _missing(outputs) and source is not None else outputs,
        expectations=dict(expectations),
        tags=tags,
        metadata={k: v for k, v in metadata.items() if k not in _OWN_KEYS},
        source=source,
    )


def _rows(data: object) -> list[_Row]:
    if hasattr(data, "to_dict") and hasattr(data, "columns"):  # a pandas DataFrame
        data = data.to_dict(orient="records")
    if isinstance(data, str | bytes | Mapping) or not isinstance(data, Sequence):
        raise ConfigurationError(
            f"data must be a list of dicts, a list of Trace or a pandas DataFrame, got "
            f"{type(data).__name__}."
        )
    if not data:
        raise ConfigurationError("data is empty: give at least one row to evaluate.")
    return [_row(index, item) for index, item in enumerate(data)]


def _scorers(
    given: object, *, experiment_id: str, settings: Settings
) -> tuple[list[offline.OfflineScorer], dict[str, Any]]:
    if isinstance(given, Scorer | str) or not isinstance(given, Sequence) or not given:
        raise ConfigurationError(
            f"scorers must be a non-empty list of Scorer objects or registered names, got "
            f"{given!r:.200}."
        )
    resolved: list[offline.OfflineScorer] = []
    aggregations: dict[str, Any] = {}
    for entry in given:
        item = (
            get_scorer(name=entry, experiment_id=experiment_id) if isinstance(entry, str) else entry
        )
        if not isinstance(item, Scorer):
            raise ConfigurationError(
                f"scorers must hold Scorer objects (from @scorer or a built-in judge) or "
                f"registered names, got {safe_repr(item)}."
            )
        if item.name in aggregations:
            raise ConfigurationError(
                f"Two scorers are named {item.name!r}; give one another name= so their "
                "feedback can be told apart."
            )
        aggregations[item.name] = getattr(item, "aggregations", None)
        resolved.append(
            offline.OfflineScorer(
                name=item.name,
                version=item.version,
                call=item,
                session=item.is_session_level_scorer,
                timeout_seconds=item.timeout_seconds or settings.default_timeout_seconds,
                max_concurrency=item.max_concurrency,
            )
        )
    return resolved, aggregations


def _evaluation_id(value: object) -> str:
    if value is None:
        return uuid.uuid4().hex
    if not isinstance(value, str) or not _ID_PATTERN.fullmatch(value):
        raise ConfigurationError(
            f"evaluation_id must be 1 to 128 letters, digits, '_', '.', ':' or '-' (starting "
            f"with a letter or digit), got {value!r}. Omit it to get a fresh id."
        )
    return value


def _metadata(evaluation_id: str, index: int) -> dict[str, str]:
    return {
        offline.EVALUATION_ID_KEY: evaluation_id,
        offline.ROW_KEY: str(index),
        "localscorers.online_scoring": "off",
    }


def _expectations(row: _Row) -> list[Expectation]:
    source = AssessmentSource(source_type="HUMAN", source_id="evaluate")
    return [
        Expectation(name=str(name), value=value, source=source, origin="evaluate")
        for name, value in row.expectations.items()
    ]


def _log_rows(
    rows: Sequence[_Row], *, experiment_id: str, evaluation_id: str, advance: Callable[[], None]
) -> None:
    """Write the rows given with their outputs as traces, online scoring off."""
    store = _context.current().store
    records = []
    for row in rows:
        info = row.source.info if row.source is not None else None
        records.append(
            build_record(
                inputs=row.inputs,
                outputs=row.outputs,
                name=info.name if info else None,
                status=info.status if info else "OK",
                request_time=info.request_time if info else None,
                execution_duration_ms=info.execution_duration_ms if info else None,
                tags=row.tags,
                metadata={**row.metadata, **_metadata(evaluation_id, row.index)},
                spans=row.source.data.spans if row.source is not None else None,
                experiment_id=experiment_id,
                trace_id=offline.row_trace_id(experiment_id, evaluation_id, row.index),
                assessments=_expectations(row),
            )
        )
    for start in range(0, len(records), _WRITE_CHUNK):
        # Skipping rows already there: another process resuming this evaluation wrote them.
        store.write_traces(records[start : start + _WRITE_CHUNK], enqueue=False, skip_existing=True)
        for _ in records[start : start + _WRITE_CHUNK]:
            advance()


def _predict(
    rows: Sequence[_Row],
    predict_fn: Callable[..., Any],
    *,
    experiment_id: str,
    evaluation_id: str,
    settings: Settings,
    advance: Callable[[], None],
) -> None:
    """Call ``predict_fn`` on each row's inputs; each call is a trace, online scoring off."""
    for row in rows:
        if not isinstance(row.inputs, Mapping):
            raise ConfigurationError(
                f"Row {row.index}: with predict_fn, 'inputs' must be a dict of the function's "
                f"keyword arguments, got {type(row.inputs).__name__}."
            )
    offline.predict_rows(
        [
            offline.PredictRow(
                inputs=dict(row.inputs),
                tags=row.tags,
                metadata={**row.metadata, **_metadata(evaluation_id, row.index)},
                trace_id=offline.row_trace_id(experiment_id, evaluation_id, row.index),
            )
            for row in rows
        ],
        predict_fn,
        experiment_id=experiment_id,
        max_workers=settings.max_workers,
        advance=advance,
    )


def _add_expectations(rows: Sequence[_Row], traces: Sequence[Trace]) -> bool:
    """Log the expectations a row has and its trace lacks (predicted traces, or a crash).

    Returns whether any was logged.
    """
    store = _context.current().store
    added = False
    for row, trace in zip(rows, traces, strict=True):
        present = trace.expectations
        for expectation in _expectations(row):
            if expectation.name not in present:
                store.log_assessment(trace.info.trace_id, expectation)
                added = True
    return added


def evaluate(
    *,
    data: Any,  # noqa: ANN401 - a list of dicts or Traces, or a pandas DataFrame
    scorers: Sequence[Scorer | str],
    predict_fn: Callable[..., Any] | None = None,
    experiment_id: str | None = None,
    evaluation_id: str | None = None,
    raise_on_error: bool = False,
) -> EvaluationResult:
    """Run scorers over a dataset as production would, and attach their feedback.

    As ``mlflow.genai.evaluate``. Every row becomes a trace in the experiment, with the
    metadata ``localscorers.evaluation_id`` (so ``search_traces`` finds the evaluation
    with ``metadata.`localscorers.evaluation_id` = '<id>'``) and online scoring off.
    Scorers run on a thread pool with production's timeout, retries and judge
    settings; finished calls are committed as they are collected. A scorer with a
    ``session`` parameter runs once per session (metadata ``mlflow.trace.session``),
    on its traces in time order, and its feedback goes on the session's last trace.

    Args:
        data: a list of dicts (``inputs``, ``outputs``, ``expectations``, and optionally
            ``tags``, ``metadata``, ``trace``), a list of ``Trace`` (copied into the
            evaluation, keeping spans, tags and metadata), or a pandas DataFrame with
            those columns.
        scorers: ``Scorer`` objects (``@scorer`` functions, built-in judges) or names
            of scorers registered in the experiment.
        predict_fn: called as ``predict_fn(**inputs)`` for each row, inside a trace;
            its return value is the row's outputs (given outputs are then ignored).
        experiment_id: where to log the traces (default: the active experiment).
        evaluation_id: resume this evaluation: rows already logged and (trace, scorer)
            pairs already scored under this id are skipped. Default: a new id.
        raise_on_error: raise ``ScorerExecutionError`` for the first scorer that
            failed (after every call ran and all feedback was written), instead of
            only counting it in ``<scorer>/error_count``: for unit tests of scorers.

    Returns:
        An ``EvaluationResult`` with the metrics, the trace ids and ``result_df``.

    Raises:
        ConfigurationError: the data, a scorer, or the evaluation id is invalid.
        NotFoundError: the experiment, or a scorer given by name, does not exist.
        StoreError: a row's trace could not be written (run again with the same id).
        ScorerExecutionError: with ``raise_on_error=True``, a scorer failed on a row.
    """
    settings = Settings.from_env()
    identifier = _evaluation_id(evaluation_id)
    rows = _rows(data)
    experiment = _context.resolve_experiment_id(experiment_id)
    offline_scorers, aggregations = _scorers(scorers, experiment_id=experiment, settings=settings)
    if predict_fn is not None and not callable(predict_fn):
        raise ConfigurationError(f"predict_fn must be callable, got {predict_fn!r:.200}.")
    run = _Run(experiment_id=experiment, evaluation_id=identifier, settings=settings)
    with summary.progress(0) as bar:
        traces = _row_traces(rows, predict_fn, run, bar=bar)
        _score(traces, offline_scorers, run, bar=bar)
    return _result(rows, run, aggregations, raise_on_error=raise_on_error)


def _score(
    traces: Sequence[Trace],
    scorers: Sequence[offline.OfflineScorer],
    run: _Run,
    *,
    bar: summary.ProgressBar,
) -> None:
    """Run every (trace, scorer) pair not scored in this evaluation yet, writing as they end."""
    db = _context.current().db
    done_before = done_pairs(db, [t.info.trace_id for t in traces], origin=run.origin)
    units = offline.plan_units(traces, scorers, done=done_before)
    bar.grow(len(units))

    def done(finished: list[tuple[offline.Unit, list[Feedback]]]) -> None:
        offline.write_results(db, finished, experiment_id=run.experiment_id, origin=run.origin)
        for _ in finished:
            bar.advance()

    context = EvaluationContext(db=db, origin=run.origin)
    offline.run_units(units, settings=run.settings, context=context, done=done)


def _result(
    rows: Sequence[_Row], run: _Run, aggregations: dict[str, Any], *, raise_on_error: bool
) -> EvaluationResult:
    """Summarize the evaluation's feedback; raise its first error when asked to."""
    traces = _find(rows, experiment_id=run.experiment_id, evaluation_id=run.evaluation_id)
    feedback = summary.feedback_by_scorer(traces, run.origin)
    if raise_on_error:
        _raise_first_error(feedback)
    return EvaluationResult(
        evaluation_id=run.evaluation_id,
        experiment_id=run.experiment_id,
        metrics=summary.metrics(feedback, aggregations),
        trace_ids=[t.info.trace_id for t in traces],
        result_df=summary.result_frame(traces, run.origin),
    )


def _raise_first_error(feedback: dict[str, list[Feedback]]) -> None:
    for scorer_name in sorted(feedback):
        for item in feedback[scorer_name]:
            if item.error is not None:
                raise ScorerExecutionError(
                    scorer=scorer_name,
                    trace_id=item.trace_id or "?",
                    detail=f"{item.error.error_code}: {item.error.error_message}",
                )


def _find(rows: Sequence[_Row], *, experiment_id: str, evaluation_id: str) -> list[Trace]:
    """Return the trace of each row, in the data's order.

    Raises:
        StoreError: a row has no trace (its write failed; the log says why).
    """
    found = offline.evaluation_traces(
        _context.current().store, experiment_id=experiment_id, evaluation_id=evaluation_id
    )
    lost = [row.index for row in rows if row.index not in found]
    if lost:
        raise StoreError(
            f"Rows {lost[:10]} of evaluation {evaluation_id!r} have no trace: writing them "
            "failed (the log says why). Run evaluate() again with this evaluation_id to "
            "retry them."
        )
    return [found[row.index] for row in rows]


def _row_traces(
    rows: Sequence[_Row],
    predict_fn: Callable[..., Any] | None,
    run: _Run,
    *,
    bar: summary.ProgressBar,
) -> list[Trace]:
    """Log the rows not logged yet (calling ``predict_fn`` for them); return every row's trace."""
    experiment_id, evaluation_id = run.experiment_id, run.evaluation_id
    found = offline.evaluation_traces(
        _context.current().store, experiment_id=experiment_id, evaluation_id=evaluation_id
    )
    missing = [row for row in rows if row.index not in found]
    bar.grow(len(missing))
    if missing and predict_fn is not None:
        _predict(
            missing,
            predict_fn,
            experiment_id=experiment_id,
            evaluation_id=evaluation_id,
            settings=run.settings,
            advance=bar.advance,
        )
    elif missing:
        _log_rows(
            missing, experiment_id=experiment_id, evaluation_id=evaluation_id, advance=bar.advance
        )
    if not missing and predict_fn is None:
        return [found[row.index] for row in rows]
    traces = _find(rows, experiment_id=experiment_id, evaluation_id=evaluation_id)
    # Predicted traces get their expectations now; a crash may also have left some out.
    if _add_expectations(rows, traces):
        traces = _find(rows, experiment_id=experiment_id, evaluation_id=evaluation_id)
    return traces
