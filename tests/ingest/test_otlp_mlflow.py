"""A real MLflow-traced app (mlflow-tracing) exporting over OTLP to ``localscorers server``.

mlflow-tracing 3.x exports OTLP when ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set; its
default protocol is gRPC, so ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/protobuf`` is set
too. ``MLFLOW_TRACKING_URI`` is set because mlflow-tracing 3.17 without one tries to look
for a local ``mlruns`` store, which needs ``sqlparse`` (not one of its dependencies), and
then records nothing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import localscorers
from localscorers.exceptions import TraceNotFoundError
from tests.otlp_helpers import answered, start_server, stop, subprocess_env, wait_until

pytest.importorskip("mlflow")

APP = """
import sys

import mlflow


@mlflow.trace(span_type="CHAIN")
def answer(question):
    if sys.argv[1] == "tags":
        # mlflow-tracing 3.17 then drops the root span from the export.
        mlflow.update_current_trace(tags={"env": "prod"})
    print(mlflow.get_current_active_span().trace_id)
    return lookup(question) + "!"


@mlflow.trace(span_type="RETRIEVER")
def lookup(question):
    return "four"


answer("What is 2+2?")
"""


def run_app(tmp_path: Path, url: str, mode: str) -> str:
    script = tmp_path / "app.py"
    script.write_text(APP)
    env = subprocess_env(tmp_path / "unused.db")
    env.update(
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"{url}/v1/traces",
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="http/protobuf",
        MLFLOW_TRACKING_URI=url,
    )
    done = subprocess.run(
        [sys.executable, str(script), mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def exists(trace_id: str) -> bool:
    try:
        localscorers.get_trace(trace_id)
    except TraceNotFoundError:
        return False
    return True


@pytest.mark.timeout(300)  # three server starts (or two app runs) on a busy machine
def test_an_mlflow_traced_app_is_received_and_scored(
    db_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALSCORERS_MONITOR", "off")  # the server scores, not this process
    localscorers.set_tracking_uri(db_path)
    answered.register(name="answered").start()
    server, url = start_server(db_path, subprocess_env(db_path), "--trace-timeout", "1")
    try:
        whole = run_app(tmp_path, url, "plain")
        rootless = run_app(tmp_path, url, "tags")
        wait_until(lambda: exists(whole) and exists(rootless))
        assert localscorers.flush(timeout=60)
    finally:
        stop(server)
    trace = localscorers.get_trace(whole)
    assert trace.info.name == "answer"
    assert trace.data.request == {"question": "What is 2+2?"}
    assert trace.data.response == "four!"
    spans = {s.name: s for s in trace.data.spans}
    assert spans["answer"].span_type == "CHAIN"
    assert spans["lookup"].span_type == "RETRIEVER"
    assert spans["lookup"].inputs == {"question": "What is 2+2?"}
    assert spans["lookup"].outputs == "four"
    assert spans["lookup"].parent_id == spans["answer"].span_id
    assert [(f.name, f.value) for f in trace.info.assessments] == [("answered", True)]
    # Its root never came: the earliest span stands in, after the grace period.
    partial = localscorers.get_trace(rootless)
    assert [s.name for s in partial.data.spans] == ["lookup"]
    assert "localscorers.otlp.missing_root" in partial.info.metadata
    assert [(f.name, f.value) for f in partial.info.assessments] == [("answered", True)]
