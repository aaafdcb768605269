"""A server killed with SIGKILL between two halves of a trace loses nothing it acknowledged."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

import localscorers
from localscorers.exceptions import TraceNotFoundError
from tests.otlp_helpers import (
    json_body,
    json_span,
    post_json,
    start_server,
    stop,
    subprocess_env,
    wait_until,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")

T0 = 1_700_000_000_000_000_000
WHOLE = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"  # its root comes after the crash
ORPHAN = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"  # its root never comes
ROOT, CHILD, GRANDCHILD = "1111111111111111", "2222222222222222", "3333333333333333"


def exists(trace_id: str) -> bool:
    try:
        localscorers.get_trace(trace_id)
    except TraceNotFoundError:
        return False
    return True


@pytest.mark.timeout(300)  # three server starts (or two app runs) on a busy machine
def test_sigkill_between_two_halves_of_a_trace_loses_nothing(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALSCORERS_MONITOR", "off")
    env = subprocess_env(db_path)
    first_half = json_body(
        json_span(WHOLE, CHILD, "llm", parent=ROOT, start=T0 + 1),
        json_span(WHOLE, GRANDCHILD, "tool", parent=CHILD, start=T0 + 2),
        json_span(ORPHAN, CHILD, "lonely", parent=ROOT, start=T0 + 3),
    )
    server, url = start_server(db_path, env, "--trace-timeout", "3600")
    try:
        assert post_json(url, first_half).status_code == 200  # acknowledged
        os.kill(server.pid, signal.SIGKILL)
        server.wait(30)
    finally:
        stop(server)
    assert server.returncode == -signal.SIGKILL

    server, url = start_server(db_path, env, "--trace-timeout", "3600")
    try:
        root = json_span(WHOLE, ROOT, "agent", start=T0, attributes={"output.value": "done"})
        assert post_json(url, json_body(root)).status_code == 200
    finally:
        stop(server)
    localscorers.set_tracking_uri(db_path)
    assert not exists(f"tr-{ORPHAN}")  # still waiting for its root

    # Back with a short grace period: the orphan is written from what was acknowledged.
    server, url = start_server(db_path, env, "--trace-timeout", "0.5")
    try:
        wait_until(lambda: exists(f"tr-{ORPHAN}"))
    finally:
        stop(server)
    whole = localscorers.get_trace(f"tr-{WHOLE}")
    assert [s.name for s in whole.data.spans] == ["agent", "llm", "tool"]
    assert whole.data.response == "done"
    orphan = localscorers.get_trace(f"tr-{ORPHAN}")
    assert [s.name for s in orphan.data.spans] == ["lonely"]
    assert orphan.info.metadata["localscorers.otlp.missing_root"] == ROOT
