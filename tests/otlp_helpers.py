"""Helpers for the OTLP tests: a real uvicorn server, server processes, OTLP JSON bodies.

The scorer here is importable (``tests.otlp_helpers:answered``), so a server process
started with the repository on ``PYTHONPATH`` can run it online.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from localscorers import scorer
from localscorers.server import ServerSettings, create_app

DEADLINE = 60.0  # generous: CI machines and this one are shared


@scorer
def answered(outputs: Any) -> bool:
    """Whether the trace has outputs."""
    return outputs is not None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve(settings: ServerSettings | None = None) -> Iterator[str]:
    """Run the app on uvicorn in a thread on a free loopback port; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    settings = settings or ServerSettings()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(DEADLINE)
        sock.close()


def wait_until(condition: Callable[[], object], *, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def start_server(
    db_path: Path, env: dict[str, str], *args: str
) -> tuple[subprocess.Popen[str], str]:
    """Start ``localscorers server`` as a process on a free port; return it and its URL."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "localscorers",
            "--db",
            str(db_path),
            "server",
            "--port",
            str(port),
            *args,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"server exited: {process.communicate()}")
        try:
            httpx.post(f"{url}/v1/traces", content=b"")
        except httpx.TransportError:
            return False
        return True  # any answer (415, or 401 with a token) means it is serving

    wait_until(ready)
    return process, url


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def value(v: object) -> dict[str, Any]:
    """An OTLP JSON AnyValue."""
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, list):
        return {"arrayValue": {"values": [value(x) for x in v]}}
    return {"stringValue": str(v)}


def json_span(
    trace_id: str,
    span_id: str,
    name: str,
    *,
    parent: str | None = None,
    start: int = 1_700_000_000_000_000_000,
    end: int | None = None,
    attributes: dict[str, Any] | None = None,
    error: bool = False,
) -> dict[str, Any]:
    """One span of an OTLP JSON body (ids in hex, as OTLP JSON requires)."""
    span: dict[str, Any] = {
        "traceId": trace_id,
        "spanId": span_id,
        "name": name,
        "kind": 1,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(end if end is not None else start + 250_000_000),
        "attributes": [{"key": k, "value": value(v)} for k, v in (attributes or {}).items()],
        "status": {"code": 2, "message": "boom"} if error else {"code": 0},
    }
    if parent is not None:
        span["parentSpanId"] = parent
    return span


def json_body(*spans: dict[str, Any], resource: dict[str, Any] | None = None) -> bytes:
    """An OTLP JSON ExportTraceServiceRequest holding the spans."""
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [
                            {"key": k, "value": value(v)}
                            for k, v in (resource or {"service.name": "app"}).items()
                        ]
                    },
                    "scopeSpans": [{"scope": {"name": "test"}, "spans": list(spans)}],
                }
            ]
        }
    ).encode()


def post_json(url: str, body: bytes, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/traces",
        content=body,
        headers={"Content-Type": "application/json", **headers},
        timeout=DEADLINE,
    )


def subprocess_env(db_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    env["LOCALSCORERS_TRACKING_URI"] = f"sqlite:///{db_path}"
    env.update(extra)
    return env
