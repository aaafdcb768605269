"""The summary of an offline evaluation: metrics, the result table, the progress bar."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import Progress

from localscorers.evaluation.aggregations import aggregate, as_number
from localscorers.evaluation.offline import SESSION_KEY
from localscorers.models import Feedback, Trace

__all__ = ["ProgressBar", "feedback_by_scorer", "metrics", "progress", "result_frame"]


class ProgressBar:
    """A progress bar on stderr when it is a terminal; otherwise nothing is drawn."""

    def __init__(self, progress: Progress | None, total: int) -> None:
        self._total = total
        # The bar and its task, when one is drawn.
        self._drawn = (progress, progress.add_task("evaluating", total=total)) if progress else None

    def advance(self) -> None:
        """Count one step done."""
        if self._drawn is not None:
            progress, task = self._drawn
            progress.advance(task)

    def grow(self, count: int) -> None:
        """Add ``count`` steps to the total."""
        self._total += count
        if self._drawn is not None:
            progress, task = self._drawn
            progress.update(task, total=self._total)


@contextmanager
def progress(total: int) -> Iterator[ProgressBar]:
    """Yield a progress bar drawn on stderr when it is a terminal (else a silent one)."""
    if not sys.stderr.isatty():
        yield ProgressBar(None, total)
        return
    with Progress(console=Console(stderr=True), transient=True) as progress:
        yield ProgressBar(progress, total)


def feedback_by_scorer(traces: Sequence[Trace], origin: str) -> dict[str, list[Feedback]]:
    """Return the feedback of ``origin`` on the traces, by scorer name."""
    by_scorer: dict[str, list[Feedback]] = {}
    for trace in traces:
        for item in trace.info.assessments:
            if isinstance(item, Feedback) and item.origin == origin and item.scorer_name:
                by_scorer.setdefault(item.scorer_name, []).append(item)
    return by_scorer


def metrics(
    feedback: Mapping[str, list[Feedback]], aggregations: Mapping[str, Any]
) -> dict[str, float]:
    """Summarize each scorer's feedback per feedback name, as MLflow's evaluate does.

    ``<name>/<aggregation>`` for the scorer's aggregations (default: the mean; booleans
    and ``"yes"`` / ``"no"`` count as 1 / 0), ``<name>/pass_rate`` when the values are
    booleans or yes / no, and ``<scorer>/error_count``.
    """
    metrics: dict[str, float] = {}
    for scorer_name, chosen in aggregations.items():
        items = feedback.get(scorer_name, [])
        metrics[f"{scorer_name}/error_count"] = float(sum(f.error is not None for f in items))
        values: dict[str, list[Any]] = {}
        for item in items:
            if item.error is None and item.name is not None:
                values.setdefault(item.name, []).append(item.value)
        for name, found in values.items():
            metrics.update({f"{name}/{k}": v for k, v in aggregate(found, chosen).items()})
            passes = [as_number(v) or 0.0 for v in found if _is_verdict(v)]
            if passes:
                metrics[f"{name}/pass_rate"] = sum(passes) / len(passes)
    return metrics


def _is_verdict(value: object) -> bool:
    return isinstance(value, bool) or (isinstance(value, str) and value.lower() in ("yes", "no"))


def result_frame(traces: Sequence[Trace], origin: str) -> Any:  # noqa: ANN401 - a pandas DataFrame
    """Return one DataFrame row per trace with its feedback of ``origin``; None without pandas."""
    try:
        # By name: pandas is an optional extra without type stubs here.
        pandas = importlib.import_module("pandas")
    except ImportError:
        return None
    records = []
    for trace in traces:
        record: dict[str, Any] = {
            "trace_id": trace.info.trace_id,
            "inputs": trace.data.request,
            "outputs": trace.data.response,
            "expectations": trace.expectations,
            "session_id": trace.info.metadata.get(SESSION_KEY),
        }
        for item in trace.info.assessments:
            if isinstance(item, Feedback) and item.origin == origin and item.name:
                record[f"{item.name}/value"] = item.value
                record[f"{item.name}/rationale"] = item.rationale
                record[f"{item.name}/error"] = item.error.error_message if item.error else None
        records.append(record)
    return pandas.DataFrame.from_records(records)
