"""``SpanExporter``: OpenTelemetry spans straight into the store, in-process (no server).

For apps that already use ``opentelemetry-sdk`` (extra ``localscorers[otel]``)::

    provider.add_span_processor(SimpleSpanProcessor(localscorers.otel.SpanExporter()))

Spans go through the same mapping and assembly as ``POST /v1/traces`` of
``localscorers server``: MLflow, OpenInference and GenAI attributes become span types,
inputs and outputs; spans are buffered durably until their root span arrives, then the
trace is written (with its online evaluations) to the current tracking URI.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter as _OtelSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from localscorers import _context
from localscorers.exceptions import LocalScorersError
from localscorers.ingest.conventions import RawSpan
from localscorers.ingest.otlp import Assembler, trace_id_of

__all__ = ["SpanExporter"]

logger = logging.getLogger(__name__)


class SpanExporter(_OtelSpanExporter):
    """An OpenTelemetry span exporter that writes traces into the localscorers store.

    Use it with a ``SimpleSpanProcessor`` or ``BatchSpanProcessor``. A trace is written
    when its root span is exported; the spans exported before it wait in the database's
    pending spans table (durably, so a crash loses none). A trace whose root span never
    comes is written ``trace_timeout_seconds`` after its newest span, by the next export
    or a running ``localscorers server``, and at :meth:`shutdown` for the traces this
    exporter began.

    Args:
        experiment_id: where traces go (default: the active experiment at export time).
        trace_timeout_seconds: how long a trace without its root span waits for more spans.
    """

    def __init__(
        self, *, experiment_id: str | None = None, trace_timeout_seconds: float = 60.0
    ) -> None:
        self._experiment_id = experiment_id
        self._timeout = trace_timeout_seconds
        self._lock = threading.Lock()
        self._waiting: set[str] = set()  # traces with spans pending, begun by this exporter
        self._closed = False

    def _assembler(self) -> Assembler:
        runtime = _context.current()
        return Assembler(runtime.storage.pending_spans(), trace_timeout_seconds=self._timeout)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Write the spans; a trace whose root span is among them is written whole."""
        if self._closed:
            return SpanExportResult.FAILURE
        raws = [_raw_span(span) for span in spans if span.context is not None]
        try:
            experiment_id = _context.resolve_experiment_id(self._experiment_id)
            assembler = self._assembler()
            written = assembler.receive(raws, experiment_id=experiment_id)
            written += assembler.sweep()
        except LocalScorersError:
            logger.exception("localscorers could not store %s exported spans", len(raws))
            return SpanExportResult.FAILURE
        with self._lock:
            self._waiting.update(trace_id_of(raw.trace_id) for raw in raws)
            self._waiting.difference_update(written)
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing to flush: :meth:`export` writes before it returns."""
        del timeout_millis
        return True

    def shutdown(self) -> None:
        """Write the traces this exporter began whose root span never came."""
        with self._lock:
            self._closed = True
            waiting, self._waiting = sorted(self._waiting), set()
        if waiting:
            try:
                self._assembler().flush(waiting)
            except LocalScorersError:
                logger.exception("localscorers could not write %s pending traces", len(waiting))


def _plain(value: object) -> Any:  # noqa: ANN401 - attribute values are untyped
    """Attribute values as JSON holds them: the SDK's tuples become lists."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _attributes(values: Mapping[str, object] | None) -> dict[str, Any]:
    return {str(k): _plain(v) for k, v in (values or {}).items()}


def _raw_span(span: ReadableSpan) -> RawSpan:
    """Return the received form of an SDK span (what OTLP would have carried)."""
    context = span.context
    assert context is not None  # noqa: S101 - export() skips spans without one
    scope = span.instrumentation_scope
    return RawSpan(
        trace_id=f"{context.trace_id:032x}",
        span_id=f"{context.span_id:016x}",
        parent_id=None if span.parent is None else f"{span.parent.span_id:016x}",
        name=span.name or "(unnamed)",
        start_time_ns=span.start_time or 0,
        end_time_ns=span.end_time,
        attributes=_attributes(span.attributes),
        events=[
            {
                "name": event.name,
                "time_unix_nano": event.timestamp,
                "attributes": _attributes(event.attributes),
            }
            for event in span.events
        ],
        status_code=int(span.status.status_code.value),
        status_message=span.status.description,
        resource=_attributes(span.resource.attributes),
        scope=scope.name if scope is not None else None,
    )
