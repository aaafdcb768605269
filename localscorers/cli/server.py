"""``localscorers server``: OTLP ingestion and the web UI over the current database."""

from __future__ import annotations

import ipaddress
import os
from typing import Annotated

import typer

from localscorers.cli.common import err_console, prepare
from localscorers.exceptions import ConfigurationError
from localscorers.server.settings import ServerSettings

__all__ = ["TOKEN_ENV", "is_loopback", "register", "settings_for"]

#: The environment variable holding the token clients must send as ``Bearer``.
TOKEN_ENV = "LOCALSCORERS_SERVER_TOKEN"  # noqa: S105 - the variable's name, not a secret


def is_loopback(host: str) -> bool:
    """Tell whether ``host`` only accepts connections from this machine."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def settings_for(
    host: str,
    port: int,
    *,
    allow_remote: bool,
    workers: bool,
    trace_timeout: float,
    max_body_mb: float,
    token: str | None,
) -> ServerSettings:
    """Check the command's options and return the server's settings.

    Raises:
        ConfigurationError: a non-loopback address without ``--allow-remote`` and a token.
    """
    token = token or None
    if not is_loopback(host):
        if not allow_remote:
            raise ConfigurationError(
                f"Refusing to bind {host!r}: it is not a loopback address, so other "
                "machines could reach the server. Bind 127.0.0.1, or pass --allow-remote "
                f"and set {TOKEN_ENV}."
            )
        if token is None:
            raise ConfigurationError(
                f"--allow-remote needs a token: set {TOKEN_ENV} to a secret; clients then send "
                "'Authorization: Bearer <token>'."
            )
    return ServerSettings(
        host=host,
        port=port,
        allow_remote=allow_remote,
        token=token,
        run_workers=workers,
        trace_timeout_seconds=trace_timeout,
        max_body_bytes=max(1, round(max_body_mb * 1024 * 1024)),
    )


def _server_command(  # noqa: PLR0917 - typer passes options as parameters
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 5000,
    workers: Annotated[
        bool,
        typer.Option(
            "--workers/--no-workers",
            help="Score traces and run backfill jobs in this process "
            "(--no-workers: leave them to `localscorers worker`).",
        ),
    ] = True,
    trace_timeout: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Seconds a trace whose root span has not arrived waits for more spans "
            "before it is written with its earliest span as root.",
        ),
    ] = 60.0,
    max_body_mb: Annotated[
        float, typer.Option(min=0.001, help="Largest OTLP request body (MB, after gunzip).")
    ] = 16.0,
    allow_remote: Annotated[
        bool,
        typer.Option(
            "--allow-remote",
            help=f"Allow binding a non-loopback address (needs {TOKEN_ENV}).",
        ),
    ] = False,
) -> None:
    """Receive OpenTelemetry traces at POST /v1/traces, score them, and serve the web UI."""
    settings = settings_for(
        host,
        port,
        allow_remote=allow_remote,
        workers=workers,
        trace_timeout=trace_timeout,
        max_body_mb=max_body_mb,
        token=os.environ.get(TOKEN_ENV, "").strip(),
    )
    _serve(settings)


def _serve(settings: ServerSettings) -> None:
    try:  # the optional extra
        import uvicorn  # noqa: PLC0415

        from localscorers.server.app import create_app  # noqa: PLC0415
    except ImportError as exc:
        raise ConfigurationError(
            f"localscorers server needs the server extra ({exc.name} is missing): "
            "pip install 'localscorers[server]'."
        ) from exc
    if not settings.run_workers:
        # No evaluator in this process: traces stay pending for `localscorers worker`.
        os.environ["LOCALSCORERS_MONITOR"] = "off"
    # Opens (and migrates) the database now, so a bad --db fails before binding; -e
    # names the experiment that traces without an experiment header go to.
    context = prepare(write=True, create_experiment=True)
    host, port = settings.host, settings.port
    shown = f"[{host}]" if ":" in host else host
    err_console.print(
        f"localscorers server on http://{shown}:{port} (OTLP: POST /v1/traces), "
        f"database {context.runtime.uri}, {context.label()}, "
        f"workers {'on' if settings.run_workers else 'off'}",
        highlight=False,
        soft_wrap=True,
    )
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


def register(app: typer.Typer) -> None:
    """Add the ``server`` command to the app."""
    app.command("server")(_server_command)
