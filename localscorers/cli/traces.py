"""``localscorers traces search|get`` and ``localscorers explain``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from localscorers import tracking
from localscorers.cli.common import Column, console, err_console, prepare, print_json, rows_table
from localscorers.cli.shared import JsonOption, Listing, command_group, print_listing
from localscorers.explanation import ExplainOutcome, explain
from localscorers.models import Feedback
from localscorers.store import codec

if TYPE_CHECKING:
    from collections.abc import Sequence

    from rich.console import RenderableType

    from localscorers.explanation import Explanation
    from localscorers.models import Span, Trace

__all__ = ["explanation_table", "register", "traces_table"]

TraceIdArgument = Annotated[str, typer.Argument(metavar="TRACE_ID", help="The trace id (tr-...).")]

# MLflow's search_traces returns 100 traces unless told otherwise; a terminal table of
# every trace of a busy experiment would be useless, so the CLI keeps that default.
DEFAULT_MAX_RESULTS = 100
_PREVIEW = 80
# Feedback values are folded, not cut, in the table: only a runaway value is shortened.
_FEEDBACK_PREVIEW = 500

_OUTCOME_STYLES = {
    ExplainOutcome.SUCCEEDED: "green",
    ExplainOutcome.FAILED: "bold red",
    ExplainOutcome.PENDING: "cyan",
    ExplainOutcome.FILTERED_OUT: "yellow",
    ExplainOutcome.SAMPLED_OUT: "magenta",
    ExplainOutcome.NOT_ACTIVE: "dim",
    ExplainOutcome.SESSION_NOT_IDLE: "cyan",
}
_TRACE_STATUS_STYLES = {"OK": "green", "ERROR": "bold red", "IN_PROGRESS": "cyan"}


def _preview(value: object, width: int = _PREVIEW) -> str:
    text = value if isinstance(value, str) else codec.dumps(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _feedback_summary(trace: Trace) -> str:
    parts = []
    for assessment in trace.info.assessments:
        if not isinstance(assessment, Feedback) or not assessment.valid:
            continue
        if assessment.error is not None:
            parts.append(f"[red]{escape(str(assessment.name))}=error[/]")
        else:
            value = _preview(assessment.value, _FEEDBACK_PREVIEW)
            parts.append(f"{escape(str(assessment.name))}={escape(value)}")
    return ", ".join(parts)


def _status(status: str) -> str:
    return f"[{_TRACE_STATUS_STYLES.get(status, 'white')}]{status}[/]"


def traces_table(traces: Sequence[Trace], *, width: int | None = None) -> RenderableType:
    """Return traces as a table (id, time, name, status, duration, tags, feedback).

    Ids are never wrapped or cropped, so they can be copied into ``explain``; on a
    terminal too narrow for the table each trace becomes a block instead.
    """
    columns = [
        Column("trace id", key=True),
        Column("time (UTC)", min_width=14),
        Column("name", min_width=8),
        Column("status", min_width=6),
        Column("ms", min_width=5, justify="right"),
        Column("tags", min_width=12),
        Column("feedback", min_width=16),
    ]
    rows = []
    for trace in traces:
        info = trace.info
        rows.append(
            [
                info.trace_id,
                info.request_time.strftime("%m-%d %H:%M:%S"),
                escape(info.name or ""),
                _status(info.status.value),
                "" if info.execution_duration_ms is None else str(info.execution_duration_ms),
                escape(", ".join(f"{k}={v}" for k, v in sorted(info.tags.items()))),
                _feedback_summary(trace),
            ]
        )
    return rows_table(f"{len(traces)} trace(s)", columns, rows, width=width)


def _span_label(span: Span) -> str:
    kind = f" [dim]{escape(span.span_type)}[/]" if span.span_type else ""
    duration = ""
    if span.end_time_ns is not None:
        duration = f" {(span.end_time_ns - span.start_time_ns) / 1e6:.1f} ms"
    return f"{escape(span.name)}{kind} {_status(span.status.value)}{duration}"


def _span_tree(trace: Trace) -> Tree:
    tree = Tree("[bold]spans[/]")
    spans = sorted(trace.data.spans, key=lambda s: s.start_time_ns)
    ids = {span.span_id for span in spans}
    nodes: dict[str, Tree] = {}
    # Parents start before their children, so one pass in start order builds the tree;
    # a span whose parent is missing (a partial import) hangs from the root.
    for span in spans:
        parent = nodes.get(span.parent_id or "") if span.parent_id in ids else None
        nodes[span.span_id] = (parent or tree).add(_span_label(span))
    return tree


def _assessments_table(trace: Trace, *, width: int | None = None) -> RenderableType:
    columns = [
        Column("name", key=True),
        Column("kind", min_width=11),
        Column("value", min_width=10),
        Column("source", min_width=12),
        Column("origin", min_width=8),
        Column("rationale / error", min_width=20),
    ]
    rows = []
    for assessment in trace.info.assessments:
        is_feedback = isinstance(assessment, Feedback)
        error = assessment.error if isinstance(assessment, Feedback) else None
        detail = (
            f"[red]{escape(error.error_code)}: {escape(error.error_message or '')}[/]"
            if error is not None
            else escape(assessment.rationale or "")
        )
        version = f" v{assessment.scorer_version}" if assessment.scorer_version else ""
        source = assessment.source.source_type.value if assessment.source else ""
        rows.append(
            [
                escape(str(assessment.name)) + ("" if assessment.valid else " [dim](replaced)[/]"),
                "feedback" if is_feedback else "expectation",
                "" if error is not None else escape(_preview(assessment.value)),
                f"{source}{version}",
                escape(assessment.origin or ""),
                detail,
            ]
        )
    return rows_table("assessments", columns, rows, width=width)


def _show_trace(trace: Trace, *, experiment: str) -> None:
    info = trace.info
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    rows: list[tuple[str, str]] = [
        ("trace id", info.trace_id),
        ("experiment", escape(experiment)),
        ("name", escape(info.name or "")),
        ("status", _status(info.status.value)),
        ("request time", info.request_time.isoformat()),
        (
            "duration",
            "-" if info.execution_duration_ms is None else f"{info.execution_duration_ms} ms",
        ),
        ("tags", escape(", ".join(f"{k}={v}" for k, v in sorted(info.tags.items())) or "-")),
        (
            "metadata",
            escape(", ".join(f"{k}={v}" for k, v in sorted(info.metadata.items())) or "-"),
        ),
        ("request", escape(_preview(trace.data.request, 200))),
        ("response", escape(_preview(trace.data.response, 200))),
    ]
    for key, value in rows:
        grid.add_row(key, value)
    console.print(grid)
    console.print(_span_tree(trace))
    if info.assessments:
        console.print(_assessments_table(trace))


def explanation_table(explanation: Explanation, *, width: int | None = None) -> RenderableType:
    """Return ``explain``'s answer as a table (the demo prints it too)."""
    columns = [
        Column("scorer", key=True),
        Column("outcome", min_width=12),
        Column("detail", min_width=24),
    ]
    rows = [
        [
            escape(entry.scorer_name),
            f"[{_OUTCOME_STYLES[entry.outcome]}]{entry.outcome.words}[/]",
            escape(entry.detail),
        ]
        for entry in explanation
    ]
    title = f"Why each scorer did or did not score {explanation.trace_id}"
    return rows_table(title, columns, rows, width=width)


def _explanation_json(explanation: Explanation) -> dict[str, Any]:
    return {
        "trace_id": explanation.trace_id,
        "entries": [
            {"scorer_name": e.scorer_name, "outcome": e.outcome.value, "detail": e.detail}
            for e in explanation
        ],
    }


_COUNT_CAP = 100


def _count_traces(experiment_id: str) -> int:
    return len(tracking.search_traces(experiment_ids=[experiment_id], max_results=_COUNT_CAP))


def _search_command(
    filter_string: Annotated[
        str | None,
        typer.Option("--filter", "-f", help="Filter string, e.g. \"tags.env = 'prod'\"."),
    ] = None,
    order_by: Annotated[
        list[str] | None,
        typer.Option("--order-by", "-o", help="Ordering, e.g. 'timestamp_ms DESC' (repeatable)."),
    ] = None,
    max_results: Annotated[
        int,
        typer.Option("--max-results", "-n", min=1, help="Return at most this many traces."),
    ] = DEFAULT_MAX_RESULTS,
    as_json: JsonOption = False,
) -> None:
    """Search the experiment's traces (newest first unless --order-by says otherwise)."""
    ctx = prepare()
    traces = tracking.search_traces(
        filter_string=filter_string, order_by=order_by or None, max_results=max_results
    )
    # A filter that matches nothing says nothing about the other experiments: no hint.
    count = None if filter_string else _count_traces
    listing = Listing("traces", f"No traces match in {ctx.label()}.", count, cap=_COUNT_CAP)
    print_listing(
        ctx,
        traces,
        listing,
        as_json=as_json,
        to_json=lambda trace: trace.model_dump(mode="json"),
        table=traces_table,
    )
    if len(traces) == max_results:
        err_console.print(
            f"[dim]Showing the first {max_results}; pass --max-results N for more.[/]"
        )


def _get_command(trace_id: TraceIdArgument, as_json: JsonOption = False) -> None:
    """Show one trace: its info, span tree and assessments."""
    ctx = prepare()
    trace = tracking.get_trace(trace_id)
    if as_json:
        print_json(trace.model_dump(mode="json"))
        return
    names = {e.experiment_id: e.name for e in ctx.runtime.store.list_experiments()}
    experiment_id = trace.info.experiment_id
    _show_trace(trace, experiment=f"{names.get(experiment_id, '?')} (id {experiment_id})")


def _explain_command(trace_id: TraceIdArgument, as_json: JsonOption = False) -> None:
    """Say why each scorer of the trace's experiment did or did not score it."""
    prepare()
    explanation = explain(trace_id)
    if as_json:
        print_json(_explanation_json(explanation))
    elif not explanation:
        console.print(str(explanation))
    else:
        console.print(explanation_table(explanation))


def register(app: typer.Typer) -> None:
    """Add the ``traces`` command group and the ``explain`` command to the app."""
    group = command_group(app, "traces", "Search and show the experiment's traces.")
    group.command("search")(_search_command)
    group.command("get")(_get_command)
    app.command("explain")(_explain_command)
