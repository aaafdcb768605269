"""What the UI's templates show, prepared from public API values: no I/O here.

The Jinja2 environment (autoescaping everything), its filters, the scorers' chart
geometry (an inline SVG drawn by the template), span trees and feedback chips.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.responses import HTMLResponse

from localscorers.models import Feedback
from localscorers.report import TimeBucket
from localscorers.tracking import get_tracking_uri

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from starlette.requests import Request

    from localscorers.models import Span
    from localscorers.report import ScorerReport

__all__ = [
    "DEFAULT_WINDOW",
    "WINDOWS",
    "Chart",
    "Chip",
    "Renderer",
    "SpanNode",
    "chart",
    "chips",
    "environment",
    "epoch_ms",
    "pretty",
    "span_tree",
]

TEMPLATES = Path(__file__).parent / "templates"

# The scorers page's windows: label -> (length, bucket width). "all" has no start.
WINDOWS: dict[str, tuple[timedelta | None, TimeBucket | None]] = {
    "1h": (timedelta(hours=1), TimeBucket.HOUR),
    "24h": (timedelta(hours=24), TimeBucket.HOUR),
    "7d": (timedelta(days=7), TimeBucket.DAY),
    "30d": (timedelta(days=30), TimeBucket.DAY),
    "all": (None, None),
}
DEFAULT_WINDOW = "24h"
_MAX_TEXT = 20_000
_CHART_WIDTH = 160
_CHART_HEIGHT = 36
_MAX_BARS = 48


def environment() -> Environment:
    """Return the templates' environment: autoescape on for every template, strict names."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["pretty"] = pretty
    env.filters["preview"] = preview
    env.filters["percent"] = percent
    return env


def when(value: datetime | None) -> str:
    """Format a time as UTC to the second, or a dash."""
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def epoch_ms(value: datetime) -> int:
    """Return an aware datetime as epoch milliseconds."""
    return round(value.timestamp() * 1000)


def pretty(value: Any) -> str:  # noqa: ANN401 - any logged value
    """Return a value as indented JSON (strings as they are), cut at 20,000 characters."""
    text = (
        value
        if isinstance(value, str)
        else json.dumps(value, indent=2, ensure_ascii=False, default=str)
    )
    if len(text) > _MAX_TEXT:
        return f"{text[:_MAX_TEXT]}\n... ({len(text) - _MAX_TEXT} more characters)"
    return text


def preview(value: Any, limit: int = 80) -> str:  # noqa: ANN401 - any logged value
    """Return a value on one line, cut to ``limit`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def percent(value: float | None) -> str:
    """Format a fraction as a percentage, or a dash."""
    return "-" if value is None else f"{value:.1%}"


@dataclass(frozen=True)
class Bar:
    """One bucket of the chart: total evaluations and the errors among them."""

    x: float
    width: float
    height: float
    error_height: float
    label: str


@dataclass(frozen=True)
class Chart:
    """An evaluations-over-time bar chart, in SVG user units."""

    width: int
    height: int
    bars: list[Bar]
    peak: int


def chart(report: ScorerReport, *, since: datetime | None, now: datetime) -> Chart:
    """Lay out a scorer's evaluations (and errors) per bucket from ``since`` to now.

    Empty buckets, which the report leaves out, are drawn as gaps; at most the last
    48 buckets are shown.
    """
    width_ms = report.bucket.milliseconds
    counts = {epoch_ms(b.start) // width_ms: b for b in report.buckets}
    last = epoch_ms(now) // width_ms
    first = epoch_ms(since) // width_ms if since is not None else min(counts, default=last)
    first = max(first, last - _MAX_BARS + 1)
    slots = range(first, last + 1)
    peak = max((b.evaluations for b in report.buckets), default=0)
    step = _CHART_WIDTH / len(slots)
    bars = []
    for position, slot in enumerate(slots):
        bucket = counts.get(slot)
        if bucket is None or peak == 0:
            continue
        start = datetime.fromtimestamp(slot * width_ms / 1000, tz=UTC)
        label = (
            f"{start:%Y-%m-%d %H:00}" if report.bucket is TimeBucket.HOUR else f"{start:%Y-%m-%d}"
        )
        bars.append(
            Bar(
                x=round(position * step + step * 0.1, 2),
                width=round(max(step * 0.8, 1.0), 2),
                height=round(_CHART_HEIGHT * bucket.evaluations / peak, 2),
                error_height=round(_CHART_HEIGHT * bucket.errors / peak, 2),
                label=f"{label} UTC: {bucket.evaluations} evaluations, {bucket.errors} errors",
            )
        )
    return Chart(width=_CHART_WIDTH, height=_CHART_HEIGHT, bars=bars, peak=peak)


@dataclass
class SpanNode:
    """A span with its children, for the trace page's tree."""

    span: Span
    children: list[SpanNode] = field(default_factory=list)

    @property
    def duration_ms(self) -> float | None:
        """How long the span took, in milliseconds (None while open)."""
        if self.span.end_time_ns is None:
            return None
        return (self.span.end_time_ns - self.span.start_time_ns) / 1_000_000


def span_tree(spans: Sequence[Span]) -> list[SpanNode]:
    """Arrange spans into trees by ``parent_id``, children in start order.

    A span whose parent is not in the trace becomes a root, so nothing is hidden.
    """
    nodes = {span.span_id: SpanNode(span) for span in spans}
    roots = []
    for span in sorted(spans, key=lambda s: (s.start_time_ns, s.span_id)):
        node = nodes[span.span_id]
        parent = nodes.get(span.parent_id) if span.parent_id else None
        if parent is None or parent is node:
            roots.append(node)
        else:
            parent.children.append(node)
    return roots


@dataclass(frozen=True)
class Chip:
    """One feedback value on the traces page: its text, colour class and tooltip."""

    text: str
    kind: str
    title: str


def chips(assessments: Sequence[Any]) -> list[Chip]:
    """Return a chip per valid feedback of a trace (errors included), by name."""
    result = []
    for item in assessments:
        if not isinstance(item, Feedback) or not item.valid:
            continue
        name = item.name or "?"
        if item.error is not None:
            result.append(
                Chip(f"{name}: error", "error", item.error.error_message or item.error.error_code)
            )
            continue
        kind = ("pass" if item.value else "fail") if isinstance(item.value, bool) else "value"
        result.append(Chip(f"{name}: {preview(item.value, 24)}", kind, item.rationale or ""))
    return sorted(result, key=lambda chip: chip.text)


class Renderer:
    """Renders templates into responses, adding what every page needs.

    Attributes:
        env: the templates' environment.
        csrf: returns the CSRF token for a request's forms (set by the UI's guard).
    """

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.csrf: Callable[[Request], str] = _no_csrf

    def page(
        self,
        request: Request,
        template: str,
        *,
        status: int = 200,
        **context: Any,  # noqa: ANN401
    ) -> HTMLResponse:
        """Render ``template`` with ``context`` plus the CSRF token and the tracking URI."""
        html = self.env.get_template(template).render(
            csrf_token=self.csrf(request),
            tracking_uri=get_tracking_uri(),
            htmx=request.headers.get("hx-request") == "true",
            **context,
        )
        return HTMLResponse(html, status_code=status)

    def refusal(self, request: Request, status: int, title: str, message: str) -> HTMLResponse:
        """Render an error page: what went wrong and what to do."""
        return self.page(request, "error.html", status=status, title=title, message=message)


def _no_csrf(request: Request) -> str:
    del request
    return ""
