"""What ``localscorers server`` was started with, shared by its route modules."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ServerSettings"]


@dataclass(frozen=True)
class ServerSettings:
    """What ``localscorers server`` was started with.

    Attributes:
        host: the address it binds (loopback unless ``allow_remote``).
        port: the TCP port.
        allow_remote: binding a non-loopback address was explicitly allowed.
        token: when set, ``POST /v1/traces`` requires ``Authorization: Bearer <token>``
            (from ``LOCALSCORERS_SERVER_TOKEN``).
        run_workers: run the online evaluator and backfill jobs in the server process.
        trace_timeout_seconds: how long a trace whose root span has not arrived waits
            for more spans (from its newest span's arrival) before it is written anyway.
        max_body_bytes: the largest request body accepted, after gzip decompression too.
    """

    host: str = "127.0.0.1"
    port: int = 5000
    allow_remote: bool = False
    token: str | None = None
    run_workers: bool = True
    trace_timeout_seconds: float = 60.0
    max_body_bytes: int = 16 * 1024 * 1024
