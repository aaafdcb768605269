"""``POST /v1/traces``: OTLP/HTTP trace ingestion, and the sweeper of its grace period.

The endpoint takes what OpenTelemetry's OTLP/HTTP exporters send: a protobuf
(``application/x-protobuf``) or JSON (``application/json``) ``ExportTraceServiceRequest``,
optionally gzip-compressed. It answers 200 with an ``ExportTraceServiceResponse`` in the
request's encoding (with ``partial_success`` when some spans were rejected) only after
the spans are committed to the pending spans table, so an acknowledged span survives a
crash. Bad input gets a one-line reason: 400 malformed, 401 missing token, 404 unknown
experiment, 413 too large, 415 unsupported content type or encoding; 503 when the
database stayed busy (OTLP clients retry that one).
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import zlib
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.routing import Route

from localscorers import _context
from localscorers.exceptions import DatabaseBusyError, LocalScorersError, NotFoundError
from localscorers.ingest import otlp

if TYPE_CHECKING:
    from collections.abc import Mapping

    from starlette.requests import Request
    from starlette.routing import BaseRoute

    from localscorers.server.settings import ServerSettings

__all__ = ["EXPERIMENT_HEADER", "MLFLOW_EXPERIMENT_HEADER", "Sweeper", "assembler", "routes"]

logger = logging.getLogger(__name__)

#: The header MLflow's exporter names the experiment id in.
MLFLOW_EXPERIMENT_HEADER = "x-mlflow-experiment-id"
#: Our header naming the experiment by name (created if new).
EXPERIMENT_HEADER = "x-localscorers-experiment"
_PROTOBUF_TYPES = frozenset({"application/x-protobuf", "application/protobuf"})
_JSON_TYPE = "application/json"


class _Rejected(Exception):
    """A request refused with an HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def assembler(settings: ServerSettings) -> otlp.Assembler:
    """Return an assembler over the current database with the server's grace period."""
    runtime = _context.current()
    return otlp.Assembler(
        runtime.storage.pending_spans(),
        trace_timeout_seconds=settings.trace_timeout_seconds,
    )


def routes(settings: ServerSettings) -> list[BaseRoute]:
    """Return the ingestion routes."""

    async def export(request: Request) -> Response:
        media_type = _media_type(request)
        as_json = media_type == _JSON_TYPE
        try:
            decoded = await _decode(request, settings)
            experiment_id = await run_in_threadpool(_experiment_id, request.headers)
            await run_in_threadpool(
                assembler(settings).receive, decoded.spans, experiment_id=experiment_id
            )
        except _Rejected as rejected:
            return _error(rejected.status, rejected.message, media_type=media_type)
        except DatabaseBusyError as exc:
            return _error(503, str(exc), media_type=media_type)
        except NotFoundError as exc:
            return _error(404, str(exc), media_type=media_type)
        except LocalScorersError as exc:
            return _error(400, str(exc), media_type=media_type)
        return Response(
            otlp.response_body(decoded, as_json=as_json),
            media_type=_JSON_TYPE if as_json else "application/x-protobuf",
        )

    return [Route("/v1/traces", export, methods=["POST"])]


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


# HTTP status -> the gRPC code of the google.rpc.Status body OTLP/HTTP answers failures with.
_GRPC_CODES = {400: 3, 401: 16, 404: 5, 413: 8, 415: 3, 503: 14}


def _error(status: int, message: str, *, media_type: str) -> Response:
    """The refusal in the request's encoding: google.rpc.Status as OTLP says, else text."""
    text = " ".join(message.split())
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    code = _GRPC_CODES.get(status, 2)  # 2: UNKNOWN
    if media_type == _JSON_TYPE:
        body = json.dumps({"code": code, "message": text}).encode()
        return Response(body, status, headers=headers, media_type=_JSON_TYPE)
    if media_type in _PROTOBUF_TYPES:
        return Response(
            _status_protobuf(code, text), status, headers=headers, media_type=media_type
        )
    # Not an OTLP client (a browser, curl): the reason as text.
    return Response(text + "\n", status, headers=headers, media_type="text/plain")


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _status_protobuf(code: int, message: str) -> bytes:
    """Encode ``google.rpc.Status{code, message}``: field 1 varint, field 2 string.

    Two fields by hand rather than a dependency on googleapis-common-protos.
    """
    text = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text


async def _decode(request: Request, settings: ServerSettings) -> otlp.Decoded:
    if settings.token is not None:
        _check_token(request.headers.get("authorization", ""), settings.token)
    media_type = _media_type(request)
    if media_type not in _PROTOBUF_TYPES and media_type != _JSON_TYPE:
        raise _Rejected(
            415,
            f"Content-Type {media_type or '(none)'!r} is not supported: send OTLP as "
            "application/x-protobuf or application/json.",
        )
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity", "gzip"):
        raise _Rejected(
            415, f"Content-Encoding {encoding!r} is not supported: send gzip or no encoding."
        )
    body = await _body(request, settings.max_body_bytes)
    if encoding == "gzip":
        body = _gunzip(body, settings.max_body_bytes)
    if media_type == _JSON_TYPE:
        return await run_in_threadpool(otlp.decode_json, body)
    return await run_in_threadpool(otlp.decode_protobuf, body)


def _check_token(header: str, token: str) -> None:
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        raise _Rejected(
            401,
            "This server requires 'Authorization: Bearer <token>' with the token in "
            "LOCALSCORERS_SERVER_TOKEN; for OpenTelemetry exporters set "
            "OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer%20<token>.",
        )


def _too_large(limit: int) -> _Rejected:
    return _Rejected(
        413,
        f"The request body is larger than {limit} bytes; export smaller batches "
        "(OTEL_BSP_MAX_EXPORT_BATCH_SIZE) or raise the server's --max-body-mb.",
    )


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _gunzip(body: bytes, limit: int) -> bytes:
    # Bounded: a small gzip bomb must not expand past the body limit in memory.
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise _Rejected(400, f"The body is not valid gzip ({exc}).") from exc
    if len(data) > limit or inflater.unconsumed_tail:
        raise _too_large(limit)
    if not inflater.eof:
        raise _Rejected(400, "The gzip body is truncated.")
    return data


def _experiment_id(headers: Mapping[str, str]) -> str:
    """The experiment: MLflow's id header, else ours by name (created if new), else the active."""
    store = _context.current().store
    given = headers.get(MLFLOW_EXPERIMENT_HEADER, "").strip()
    if given:
        if store.get_experiment(given) is None:
            raise NotFoundError(
                f"No experiment has id {given!r} (header {MLFLOW_EXPERIMENT_HEADER}). Send an "
                f"existing id, or name the experiment with the {EXPERIMENT_HEADER} header "
                "(created if new)."
            )
        return given
    name = headers.get(EXPERIMENT_HEADER, "").strip()
    if name:
        return store.create_experiment(name).experiment_id
    return _context.resolve_experiment_id(None)


class Sweeper:
    """A daemon thread that writes traces whose root arrived or whose grace period passed.

    It sweeps once at start, so spans acknowledged before a crash are assembled as soon
    as the server is back, then about four times per grace period (at most every second).
    """

    def __init__(self, settings: ServerSettings) -> None:
        self._settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="localscorers-otlp-sweeper", daemon=True
        )
        self.interval = min(1.0, max(0.05, settings.trace_timeout_seconds / 4))

    def start(self) -> None:
        """Start sweeping."""
        self._thread.start()

    def close(self) -> None:
        """Stop sweeping and wait for the current sweep to end."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while True:
            try:
                written = assembler(self._settings).sweep()
                if written:
                    logger.info("assembled %s traces from pending spans", len(written))
            except Exception:  # the sweeper must outlive any one failure
                # A busy database or a bad row: the spans stay pending; try again next time.
                logger.exception("sweeping pending OTLP spans failed; retrying")
            if self._stop.wait(self.interval):
                return
