"""Optional: the same ingest / search / feedback work through localscorers and through MLflow.

Runs only when ``mlflow`` is importable (``pip install mlflow``); otherwise it says so and
exits 0. Both libraries write to a SQLite file in a temporary directory, with the same
simulated application traced by each one's ``@trace`` decorator:

- ingest: N traced calls, each with a nested span and tags (MLflow's async trace
  logging is flushed before the clock stops, so both measure durable writes);
- search: a tag filter over those traces, repeated;
- feedback: one code feedback written per trace (what a scorer's result costs to store).

Ratios are ``MLflow seconds / localscorers seconds``: above 1.0, localscorers is faster.
Never a CI dependency.

Usage::

    python benchmarks/compare_mlflow.py [--traces N]
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import localscorers
from localscorers import tracing

console = Console()
SEARCH_REPEATS = 5
PHASES = ("ingest", "search", "feedback")


def _optional_mlflow() -> Any:
    # mlflow is large and optional; importing it by name keeps this script importable
    # (and run.py's discovery harmless) on machines without it.
    try:
        return importlib.import_module("mlflow")
    except ImportError:
        return None


def _timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def _questions(count: int) -> list[tuple[str, str]]:
    return [
        (f"question {i}: how do I reset my password?", "prod" if i % 3 else "dev")
        for i in range(count)
    ]


def run_localscorers(workdir: Path, count: int) -> dict[str, float]:
    """Time the three phases with localscorers; return seconds per phase."""
    localscorers.set_tracking_uri(workdir / "localscorers.db")
    localscorers.set_experiment("compare")

    @tracing.trace(span_type="RETRIEVER")
    def retrieve(question: str) -> list[str]:
        return [f"doc for {question[:12]}"]

    @tracing.trace
    def app(question: str, env: str) -> str:
        tracing.update_current_trace(tags={"env": env})
        return f"answer from {retrieve(question)[0]}"

    def ingest() -> None:
        for question, env in _questions(count):
            app(question, env)

    def search() -> list[str]:
        found: list[localscorers.Trace] = []
        for _ in range(SEARCH_REPEATS):
            found = localscorers.search_traces(filter_string="tags.env = 'prod'", max_results=None)
        return [t.info.trace_id for t in found]

    seconds: dict[str, float] = {}
    seconds["ingest"], _ = _timed(ingest)
    seconds["search"], trace_ids = _timed(search)
    source = localscorers.AssessmentSource(source_type="CODE", source_id="bench")

    def feedback() -> None:
        for trace_id in trace_ids:
            localscorers.log_feedback(
                trace_id=trace_id, name="length_ok", value=True, source=source
            )

    seconds["feedback"], _ = _timed(feedback)
    return seconds


def run_mlflow(mlflow: Any, workdir: Path, count: int) -> dict[str, float]:
    """Time the three phases with MLflow on SQLite; return seconds per phase."""
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    mlflow.set_experiment("compare")

    @mlflow.trace(span_type="RETRIEVER")
    def retrieve(question: str) -> list[str]:
        return [f"doc for {question[:12]}"]

    @mlflow.trace
    def app(question: str, env: str) -> str:
        mlflow.update_current_trace(tags={"env": env})
        return f"answer from {retrieve(question)[0]}"

    def ingest() -> None:
        for question, env in _questions(count):
            app(question, env)
        flush = getattr(mlflow, "flush_trace_async_logging", None)
        if callable(flush):
            flush()

    def search() -> list[str]:
        found: Any = []
        for _ in range(SEARCH_REPEATS):
            try:
                found = mlflow.search_traces(
                    filter_string="tags.env = 'prod'", max_results=count, return_type="list"
                )
            except TypeError:  # MLflow 2.x: no return_type, a DataFrame with request_id
                frame = mlflow.search_traces(filter_string="tags.env = 'prod'", max_results=count)
                found = list(frame["request_id"])
        return [getattr(getattr(t, "info", None), "trace_id", t) for t in found]

    seconds: dict[str, float] = {}
    seconds["ingest"], _ = _timed(ingest)
    seconds["search"], trace_ids = _timed(search)
    entities = importlib.import_module("mlflow.entities")
    source = entities.AssessmentSource(source_type="CODE", source_id="bench")

    def feedback() -> None:
        for trace_id in trace_ids:
            mlflow.log_feedback(trace_id=trace_id, name="length_ok", value=True, source=source)

    seconds["feedback"], _ = _timed(feedback)
    return seconds


def _safely(label: str, action: Callable[[], dict[str, float]]) -> dict[str, float]:
    try:
        return action()
    except Exception as exc:  # report the API mismatch and keep the other library's figures
        console.print(f"[red]{label} failed:[/] {type(exc).__name__}: {exc}")
        return {}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the comparison; return rows in the benchmarks/README.md format (no floors)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--traces", type=int, default=300, help="traced calls per library")
    args = parser.parse_args(argv)
    mlflow = _optional_mlflow()
    if mlflow is None:
        console.print("MLflow is not installed (pip install mlflow); nothing to compare.")
        return []
    with tempfile.TemporaryDirectory(prefix="localscorers-vs-mlflow-") as tmp:
        workdir = Path(tmp)
        ours = _safely("localscorers", lambda: run_localscorers(workdir, args.traces))
        theirs = _safely("MLflow", lambda: run_mlflow(mlflow, workdir, args.traces))
        localscorers.set_tracking_uri(workdir / "closed.db")  # release the file before cleanup
    table = Table(title=f"localscorers vs MLflow {mlflow.__version__} ({args.traces} traces)")
    for column in ("phase", "localscorers (s)", "MLflow (s)", "MLflow / localscorers"):
        table.add_column(column, justify="left" if column == "phase" else "right")
    rows = []
    for phase in PHASES:
        mine, other = ours.get(phase), theirs.get(phase)
        ratio = other / mine if mine and other else None
        table.add_row(
            phase,
            f"{mine:.3f}" if mine is not None else "n/a",
            f"{other:.3f}" if other is not None else "n/a",
            f"{ratio:.1f}x" if ratio is not None else "n/a",
        )
        rows.append(
            {
                "benchmark": "compare_mlflow",
                "figure": f"{phase}: MLflow time / localscorers time",
                "value": ratio,
                "floor": None,
                "ratio": None,
                "target": "> 1 means localscorers is faster",
                "ok": True,
            }
        )
    console.print(table)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
