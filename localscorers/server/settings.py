"""What ``localscorers server`` was started with, shared by its route modules."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ServerSettings"]


@dataclass(frozen=True)
class ServerSettings:
    """What ``localscorers server`` was started with."""

    host: str = "127.0.0.1"
    port: int = 5000
    allow_remote: bool = False
    token: str | None = None
    run_workers: bool = True
    trace_timeout_seconds: float = 60.0
    max_body_bytes: int = 16 * 1024 * 1024
