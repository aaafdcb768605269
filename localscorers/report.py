"""``scorer_report``: how each scorer of an experiment is doing, aggregated in SQL.

The numbers come from the evaluation ledger and the feedback it wrote, grouped by
scorer in the database (``store/reports.py``), never by loading traces.

Only current evaluations count (``superseded = false``): after a rescore, the
replaced evaluation and its feedback are history, not part of today's numbers.
Manual and imported feedback is not a scorer's work and is left out.
"""

from __future__ import annotations

import importlib
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from localscorers import _clock, _context
from localscorers.evaluation.aggregations import aggregate
from localscorers.exceptions import ConfigurationError
from localscorers.models import ScorerStatus
from localscorers.store.reports import ReportRows

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import ModuleType

    from localscorers.store.scorer_state import ScorerState


__all__ = ["ReportBucket", "ScorerReport", "TimeBucket", "save_report_chart", "scorer_report"]

_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS
# Up to two days of data reads best hour by hour; beyond that, day by day.
_HOURLY_SPAN_MS = 2 * _DAY_MS

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class TimeBucket(StrEnum):
    """The width of the time buckets of ``ScorerReport.buckets``."""

    HOUR = "HOUR"
    DAY = "DAY"

    @property
    def milliseconds(self) -> int:
        """The bucket width in milliseconds."""
        return _HOUR_MS if self is TimeBucket.HOUR else _DAY_MS


class ReportBucket(BaseModel):
    """Evaluations and errors of one scorer finished within one time bucket.

    Attributes:
        start: the bucket's start (aware UTC).
        evaluations: evaluations finished in the bucket.
        errors: how many of them failed.
    """

    model_config = _FROZEN

    start: datetime
    evaluations: int
    errors: int


class ScorerReport(BaseModel):
    """One scorer's production numbers.

    Attributes:
        scorer_name: the scorer's registered name.
        status: its lifecycle state; ``DELETED`` when the name is gone but its feedback stays.
        version: the current registered version (None when deleted).
        sample_rate: the active rate (0.0 when not active).
        filter_string: the active filter, if any.
        evaluations: finished evaluations (succeeded + errors).
        succeeded: evaluations that produced a value.
        errors: evaluations that recorded an error instead.
        pending: evaluations waiting to run (not limited by ``since``).
        last_evaluation: when the newest evaluation finished.
        bool_values: boolean feedback values among the succeeded evaluations.
        passed: how many of those were true.
        pass_rate: ``passed / bool_values``, or None without boolean feedback.
        numeric_values: numeric (non-boolean) feedback values.
        mean_value: the mean of the numeric values, or None without any.
        aggregations: the scorer's own ``@scorer(aggregations=[...])`` over its values
            (booleans and ``"yes"`` / ``"no"`` as 1 / 0, as MLflow), e.g.
            ``{"median": 3.0, "p90": 7.2}``; empty when it declares none.
        other_values: string or structured feedback values.
        prompt_tokens: tokens sent to an LLM judge's model (its feedback's metadata),
            summed over the evaluations counted here; 0 for code scorers.
        completion_tokens: tokens the model answered with, summed likewise.
        bucket: the width of ``buckets``.
        buckets: evaluations and errors per time bucket, oldest first (empty buckets left out).
    """

    model_config = _FROZEN

    scorer_name: str
    status: ScorerStatus
    version: int | None = None
    sample_rate: float = 0.0
    filter_string: str | None = None
    evaluations: int = 0
    succeeded: int = 0
    errors: int = 0
    pending: int = 0
    last_evaluation: datetime | None = None
    bool_values: int = 0
    passed: int = 0
    pass_rate: float | None = None
    numeric_values: int = 0
    mean_value: float | None = None
    aggregations: dict[str, float] = Field(default_factory=dict)
    other_values: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    bucket: TimeBucket = TimeBucket.HOUR
    buckets: list[ReportBucket] = Field(default_factory=list)

    @property
    def error_rate(self) -> float | None:
        """Errors as a fraction of finished evaluations, or None when there are none."""
        return self.errors / self.evaluations if self.evaluations else None


def scorer_report(
    *,
    experiment_id: str | None = None,
    since: datetime | int | float | None = None,
    bucket: TimeBucket | str | None = None,
    evaluation_id: str | None = None,
) -> list[ScorerReport]:
    """Summarize each scorer of an experiment: evaluations, pass rate or mean, errors over time.

    Every registered scorer gets an entry, and so does every deleted scorer whose
    feedback is still on the experiment's traces (with ``evaluation_id``: every scorer
    the evaluation ran). Entries are ordered by name.

    Args:
        experiment_id: the experiment (default: the active one).
        since: only evaluations finished at or after this time (a datetime, naive
            meaning UTC, or epoch milliseconds); pending work is always counted.
        bucket: ``"HOUR"`` or ``"DAY"`` buckets for errors over time; by default hours
            when the data spans two days or less, days otherwise.
        evaluation_id: report one offline evaluation (``evaluate``) instead, with an
            entry per scorer it ran. Production reports leave evaluations out.

    Returns:
        One ``ScorerReport`` per scorer.

    Raises:
        ConfigurationError: ``since`` is not a time, or ``bucket`` is not HOUR or DAY.
        NotFoundError: no experiment has that id.
    """
    since_ms = _clock.to_epoch_ms(since, argument="since")
    width = _bucket(bucket)
    runtime = _context.current()
    experiment = _context.resolve_experiment_id(experiment_id)
    states = {state.name: state for state in runtime.registry.list(experiment)}
    chosen: list[TimeBucket] = []

    def width_ms(counts: dict[str, dict[str, Any]]) -> int:
        chosen.append(width or _auto_bucket(counts, since_ms))
        return chosen[0].milliseconds

    origin = None if evaluation_id is None else f"evaluate:{evaluation_id}"
    aggregated = [name for name, state in states.items() if state.definition.get("aggregations")]
    rows = runtime.storage.reports().read(
        experiment, since_ms=since_ms, width_ms=width_ms, origin=origin, aggregated=aggregated
    )
    listed = set(rows.counts) if origin else set(states) | set(rows.counts) | set(rows.requested)
    names = sorted(listed)
    return [_scorer_entry(name, states.get(name), rows, chosen[0]) for name in names]


def _scorer_entry(
    name: str, state: ScorerState | None, rows: ReportRows, width: TimeBucket
) -> ScorerReport:
    count = rows.counts.get(name, {})
    value = rows.values.get(name, {})
    bool_values = int(value.get("n_bool") or 0)
    numeric_values = int(value.get("n_num") or 0)
    passed = int(value.get("n_true") or 0)
    last = count.get("last_ms")
    return ScorerReport(
        scorer_name=name,
        status=state.status if state else ScorerStatus.DELETED,
        version=state.version if state else None,
        sample_rate=state.sample_rate if state else 0.0,
        filter_string=state.filter_string if state else None,
        evaluations=int(count.get("succeeded") or 0) + int(count.get("failed") or 0),
        succeeded=int(count.get("succeeded") or 0),
        errors=int(count.get("failed") or 0),
        pending=int(count.get("pending") or 0) + rows.requested.get(name, 0),
        bool_values=bool_values,
        passed=passed,
        numeric_values=numeric_values,
        other_values=int(value.get("n_other") or 0),
        pass_rate=passed / bool_values if bool_values else None,
        mean_value=float(value["sum_num"]) / numeric_values if numeric_values else None,
        aggregations=(
            aggregate(rows.all_values.get(name, []), state.definition["aggregations"])
            if state is not None and state.definition.get("aggregations")
            else {}
        ),
        last_evaluation=_clock.datetime_from_ms(int(last)) if last is not None else None,
        prompt_tokens=rows.tokens.get(name, {}).get("prompt_tokens", 0),
        completion_tokens=rows.tokens.get(name, {}).get("completion_tokens", 0),
        bucket=width,
        buckets=[
            ReportBucket(
                start=_clock.datetime_from_ms(b.start_ms),
                evaluations=b.evaluations,
                errors=b.errors,
            )
            for b in rows.buckets.get(name, [])
        ],
    )


def _bucket(value: TimeBucket | str | None) -> TimeBucket | None:
    if value is None:
        return None
    try:
        return TimeBucket(str(value).upper())
    except ValueError:
        raise ConfigurationError(
            f"bucket must be one of {[b.value for b in TimeBucket]} or None (automatic), "
            f"got {value!r}."
        ) from None


def _auto_bucket(counts: dict[str, dict[str, Any]], since_ms: int | None) -> TimeBucket:
    firsts = [c["first_ms"] for c in counts.values() if c.get("first_ms") is not None]
    start = since_ms if since_ms is not None else min(firsts, default=None)
    if start is None:
        return TimeBucket.HOUR
    return TimeBucket.HOUR if _clock.now_ms() - start <= _HOURLY_SPAN_MS else TimeBucket.DAY


def _pyplot() -> ModuleType:
    # matplotlib is the optional "plot" extra: most users never draw a chart, and it is
    # a heavy import. Loading it by name here, rather than with an import statement in
    # the function, keeps STYLE.md rule 2 and still turns its absence into a clear error.
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError as exc:
        raise ConfigurationError(
            "Drawing the report needs matplotlib, which is not installed. Install it with "
            "'pip install matplotlib' (the 'plot' extra of localscorers), or leave out --png."
        ) from exc
    matplotlib.use("Agg")  # draw to files only; never open a window or need a display
    return importlib.import_module("matplotlib.pyplot")


def save_report_chart(reports: Sequence[ScorerReport], path: str | Path) -> Path:
    """Draw the report as a PNG: each scorer's pass rate (or mean), and its errors over time.

    The left panel shows pass rates of boolean scorers as bars (0-100 %) and the mean
    of numeric scorers as a label; the right panel shows errors per time bucket, one
    bar per scorer, for the latest buckets.

    Args:
        reports: what ``scorer_report`` returned.
        path: the PNG file to write.

    Returns:
        The path written.

    Raises:
        ConfigurationError: matplotlib (the ``plot`` extra) is not installed.
    """
    plt = _pyplot()
    target = Path(path)
    figure, (results, errors) = plt.subplots(1, 2, figsize=(11, 0.9 + 0.45 * max(len(reports), 4)))
    names = [r.scorer_name for r in reports]
    rates = [100 * (r.pass_rate or 0.0) for r in reports]
    results.barh(names, rates, color="#4c72b0")
    results.set_xlim(0, 100)
    results.set_xlabel("pass rate (%)")
    results.invert_yaxis()
    for row, report in enumerate(reports):
        if report.pass_rate is not None:
            label = f"{report.pass_rate:.0%}"
        elif report.mean_value is not None:
            label = f"mean {report.mean_value:.3g}"
        else:
            label = "no values"
        results.text(1, row, label, va="center", color="black")
    results.set_title("results")
    _draw_errors(errors, reports)
    figure.tight_layout()
    figure.savefig(target, dpi=100)
    plt.close(figure)
    return target


def _draw_errors(axes: Any, reports: Sequence[ScorerReport]) -> None:  # noqa: ANN401 - matplotlib
    with_data = [r for r in reports if r.buckets]
    width = reports[0].bucket if reports else TimeBucket.HOUR
    axes.set_title(f"errors per {width.value.lower()} (UTC)")
    if not with_data:
        axes.text(0.5, 0.5, "no evaluations", ha="center", va="center", transform=axes.transAxes)
        return
    # Bucket starts as category labels: a time axis would stretch one bucket over years.
    starts = sorted({b.start for r in with_data for b in r.buckets})[-12:]
    fmt = "%m-%d %H:00" if width is TimeBucket.HOUR else "%Y-%m-%d"
    bar = 0.8 / len(with_data)
    for index, report in enumerate(with_data):
        counts = {b.start: b.errors for b in report.buckets}
        axes.bar(
            [position + index * bar for position in range(len(starts))],
            [counts.get(start, 0) for start in starts],
            width=bar,
            label=report.scorer_name,
        )
    axes.set_xticks([p + 0.4 - bar / 2 for p in range(len(starts))])
    axes.set_xticklabels([s.strftime(fmt) for s in starts], rotation=30, ha="right")
    axes.legend(loc="upper left", fontsize="small")
