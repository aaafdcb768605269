"""``localscorers server``: binding rules, the token, and workers on or off, as real processes."""

from __future__ import annotations

import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest

import localscorers
from localscorers.cli import is_loopback, settings_for
from localscorers.exceptions import ConfigurationError
from tests.otlp_helpers import (
    answered,
    json_body,
    json_span,
    post_json,
    start_server,
    stop,
    subprocess_env,
)
from tests.process_helpers import run_worker

TRACE = "0af7651916cd43dd8448eb211c80319c"
ROOT = "b7ad6b7169203331"


def cli(db_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "localscorers", "--db", str(db_path), "server", *args],
        env=subprocess_env(db_path, **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),  # noqa: S104 - only checked, never bound
        ("192.168.1.20", False),
        ("example.com", False),
    ],
)
def test_loopback_addresses(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


def test_a_remote_address_needs_allow_remote_and_a_token(db_path: Path) -> None:
    refused = cli(db_path, "--host", "0.0.0.0")  # noqa: S104 - refused before binding
    no_token = cli(db_path, "--host", "0.0.0.0", "--allow-remote")  # noqa: S104
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1
    assert "Refusing to bind '0.0.0.0'" in refused.stderr
    assert "--allow-remote and set LOCALSCORERS_SERVER_TOKEN" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert no_token.returncode == 1
    assert no_token.stderr.count("\n") == 1
    assert "--allow-remote needs a token: set LOCALSCORERS_SERVER_TOKEN" in no_token.stderr


def test_settings_for_a_remote_address_with_a_token() -> None:
    token = "t0k3n"  # noqa: S105 - a test token
    check = partial(settings_for, workers=False, trace_timeout=5.0, max_body_mb=1.0, token=token)
    settings = check("0.0.0.0", 8080, allow_remote=True)  # noqa: S104 - never bound
    assert settings.token == token
    assert settings.max_body_bytes == 1024 * 1024
    assert not settings.run_workers
    with pytest.raises(ConfigurationError, match=r"Refusing to bind '10\.0\.0\.1'"):
        check("10.0.0.1", 1, allow_remote=False)


def test_the_token_applies_on_loopback_too(db_path: Path) -> None:
    env = subprocess_env(db_path, LOCALSCORERS_SERVER_TOKEN="abc")  # noqa: S106 - a test token
    process, url = start_server(db_path, env)
    try:
        body = json_body(json_span(TRACE, ROOT, "root"))
        denied = post_json(url, body)
        allowed = post_json(url, body, Authorization="Bearer abc")
    finally:
        stop(process)
    assert denied.status_code == 401
    assert allowed.status_code == 200


def test_with_workers_the_server_scores_and_without_them_a_worker_does(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No evaluator in the test process: flush() waits for the server's.
    monkeypatch.setenv("LOCALSCORERS_MONITOR", "off")
    localscorers.set_tracking_uri(db_path)
    answered.register(name="answered").start()
    env = subprocess_env(db_path)
    for workers, trace in (("--workers", "1" * 32), ("--no-workers", "2" * 32)):
        process, url = start_server(db_path, env, workers)
        try:
            root = json_span(trace, ROOT, "root", attributes={"output.value": "ok"})
            assert post_json(url, json_body(root)).status_code == 200
            if workers == "--workers":
                assert localscorers.flush(timeout=30)
        finally:
            stop(process)
    scored = localscorers.get_trace(f"tr-{'1' * 32}").info.assessments
    assert [(f.name, f.value) for f in scored] == [("answered", True)]
    assert localscorers.get_trace(f"tr-{'2' * 32}").info.assessments == []
    drained = run_worker(db_path)
    assert drained.returncode == 0, drained.stderr
    later = localscorers.get_trace(f"tr-{'2' * 32}").info.assessments
    assert [(f.name, f.value) for f in later] == [("answered", True)]
