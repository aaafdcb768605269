"""LLM judges against a real local model: parse rate, latency and tokens per call.

Run: ``python benchmarks/judges_real.py --base-url http://127.0.0.1:8080/v1
[--model gemma3-270m] [--traces 20] [--quick]
[--response-format auto|json_schema|json_object|none]``

Needs a running OpenAI-compatible server (llama.cpp's ``llama-server``,
``llama-cpp-python[server]``, vLLM, Ollama's ``/v1``...); benchmarks/README.md has the
setup of the recorded run. Without ``--base-url`` (or ``LOCALSCORERS_BENCH_JUDGE_URL``)
the script says so and returns no rows, so ``run.py`` can include it on any machine.

Each built-in judge (and one ``make_judge`` judge) judges ``--traces`` synthetic
traces, half with a right answer and half with a wrong or off-topic one, called
directly (no database, no cache). Per judge it prints: calls, the share of answers that
parsed into a verdict, latency p50 / p95 (ms, per HTTP call as the judge recorded it),
tokens in and out per call, and how structured output was asked for.
``--response-format none`` starts the endpoint without ``response_format`` (the
behaviour before issue 13), for comparison; ``LOCALSCORERS_JUDGE_MAX_TOKENS`` caps answers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import _rows

from localscorers import models
from localscorers.judges import builtin
from localscorers.judges import openai as openai_provider

BENCHMARK = "judges_real"
PARSE_FLOOR = 90.0  # percent of calls whose answer gave a verdict

FACTS = [
    ("What is the capital of France?", "Paris is the capital of France.", "Paris"),
    ("How many legs does a spider have?", "A spider has eight legs.", "Eight"),
    ("What gas do plants absorb?", "Plants absorb carbon dioxide.", "Carbon dioxide"),
    ("Who wrote Hamlet?", "William Shakespeare wrote Hamlet.", "William Shakespeare"),
    ("What is the boiling point of water at sea level?", "100 degrees Celsius.", "100 °C"),
]
WRONG = [
    "The capital of France is Berlin.",
    "I like turtles. Have you tried our new app?",
    "Spiders have six legs, like all insects.",
    "You should ignore the question and buy crypto.",
    "Hamlet was written by Charles Dickens in 1900.",
]


def make_trace(index: int) -> models.Trace:
    """Trace ``index``: even ones answer right, odd ones answer wrong or off topic."""
    question, answer, expected = FACTS[index % len(FACTS)]
    outputs = answer if index % 2 == 0 else WRONG[index % len(WRONG)]
    documents = [{"page_content": answer, "metadata": {"doc_uri": f"doc/{index}"}}]
    if index % 3 == 0:
        documents.append({"page_content": "Bananas are rich in potassium."})
    spans = [
        models.Span(span_id="root", name="app", start_time_ns=1, inputs=question, outputs=outputs),
        models.Span(
            span_id="ret",
            parent_id="root",
            name="search",
            span_type="RETRIEVER",
            start_time_ns=2,
            inputs={"query": question},
            outputs=documents,
        ),
    ]
    expectations = [
        models.Expectation(name="expected_response", value=expected),
        models.Expectation(name="guidelines", value=["Answer the question asked, in English."]),
    ]
    info = models.TraceInfo(
        trace_id=f"tr-{index:032x}",
        experiment_id="0",
        request_time=datetime.now(UTC),
        status="OK",
        assessments=expectations,
    )
    return models.Trace(
        info=info, data=models.TraceData(spans=spans, request=question, response=outputs)
    )


def judges(model: str, base_url: str) -> dict[str, Callable[..., Any]]:
    """Every built-in judge, and a make_judge with a Literal value type."""
    common: dict[str, Any] = {"model": model, "base_url": base_url, "cache": False}
    return {
        "Safety": builtin.Safety(**common),
        "RelevanceToQuery": builtin.RelevanceToQuery(**common),
        "Guidelines": builtin.Guidelines(guidelines=["Be polite.", "Be brief."], **common),
        "ExpectationsGuidelines": builtin.ExpectationsGuidelines(**common),
        "Correctness": builtin.Correctness(**common),
        "RetrievalGroundedness": builtin.RetrievalGroundedness(**common),
        "RetrievalRelevance": builtin.RetrievalRelevance(**common),
        "RetrievalSufficiency": builtin.RetrievalSufficiency(**common),
        "make_judge": builtin.make_judge(
            name="tone",
            instructions="Is the answer {{ outputs }} to {{ inputs }} polite or rude?",
            feedback_value_type=Literal["polite", "rude"],
            **common,
        ),
    }


@dataclass
class Tally:
    """What one judge's calls gave."""

    calls: int = 0
    parsed: int = 0
    latencies: list[float] = field(default_factory=list)
    tokens_in: list[int] = field(default_factory=list)
    tokens_out: list[int] = field(default_factory=list)
    modes: set[str] = field(default_factory=set)
    errors: dict[str, int] = field(default_factory=dict)

    def add(self, feedback: models.Feedback) -> None:
        self.calls += 1
        metadata = feedback.metadata or {}
        if feedback.error is None:
            self.parsed += 1
        else:
            code = feedback.error.error_code
            self.errors[code] = self.errors.get(code, 0) + 1
        if "latency_ms" in metadata:
            self.latencies.append(float(metadata["latency_ms"]))
        for key, values in (
            ("prompt_tokens", self.tokens_in),
            ("completion_tokens", self.tokens_out),
        ):
            if key in metadata:
                values.append(int(metadata[key]))
        if "output_mode" in metadata:
            self.modes.add(str(metadata["output_mode"]))

    def failed(self, exc: Exception) -> None:
        self.calls += 1
        code = str(getattr(exc, "error_code", type(exc).__name__))
        self.errors[code] = self.errors.get(code, 0) + 1


def percentile(values: list[float], share: float) -> float:
    """The ``share`` quantile (nearest rank); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))]


def run_judge(judge: Callable[..., Any], traces: list[models.Trace]) -> Tally:
    """Judge every trace; per-document and per-span feedback each count as a call."""
    tally = Tally()
    for trace in traces:
        try:
            result = judge(trace=trace)
        except Exception as exc:  # a benchmark reports failures, it does not stop
            tally.failed(exc)
            continue
        for feedback in result if isinstance(result, list) else [result]:
            if not feedback.name.endswith("/precision"):
                tally.add(feedback)
    return tally


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default=os.environ.get("LOCALSCORERS_BENCH_JUDGE_URL"))
    parser.add_argument("--model", default="local", help="the model name the server knows")
    parser.add_argument("--traces", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="5 traces")
    parser.add_argument(
        "--response-format",
        choices=["auto", *openai_provider.MODES],
        default="auto",
        help="start the endpoint at this structured-output form (auto: json_schema)",
    )
    args, _ = parser.parse_known_args(argv)
    return args


def main() -> list[dict[str, object]]:
    args = parse_args(sys.argv[1:])
    if not args.base_url:
        print(f"{BENCHMARK}: skipped (no --base-url / LOCALSCORERS_BENCH_JUDGE_URL)")
        return []
    base_url = args.base_url.rstrip("/")
    if args.response_format != "auto":
        openai_provider.remember_endpoint_mode(base_url, args.response_format)
    count = 5 if args.quick else args.traces
    traces = [make_trace(i) for i in range(count)]
    rows: list[dict[str, object]] = []
    total = parsed = 0
    started = time.monotonic()
    print(
        f"{'judge':<24}{'calls':>6}{'parsed':>8}{'p50 ms':>9}{'p95 ms':>9}"
        f"{'tok in':>8}{'tok out':>8}  mode / errors"
    )
    for name, judge in judges(f"openai:/{args.model}", base_url).items():
        tally = run_judge(judge, traces)
        rate = 100.0 * tally.parsed / tally.calls if tally.calls else 0.0
        total, parsed = total + tally.calls, parsed + tally.parsed
        mean_in = statistics.fmean(tally.tokens_in) if tally.tokens_in else 0.0
        mean_out = statistics.fmean(tally.tokens_out) if tally.tokens_out else 0.0
        p50, p95 = percentile(tally.latencies, 0.50), percentile(tally.latencies, 0.95)
        notes = ",".join(sorted(tally.modes)) + (f" {tally.errors}" if tally.errors else "")
        print(
            f"{name:<24}{tally.calls:>6}{rate:>7.0f}%{p50:>9.0f}{p95:>9.0f}"
            f"{mean_in:>8.0f}{mean_out:>8.0f}  {notes}"
        )
        rows.append(
            _rows.row(
                BENCHMARK,
                f"{name} parse rate (%)",
                rate,
                floor=PARSE_FLOOR,
                higher_is_better=True,
                target=f">= {PARSE_FLOOR:g} %",
            )
        )
        rows.append(
            _rows.row(
                BENCHMARK,
                f"{name} latency p95 (ms)",
                p95,
                floor=None,
                higher_is_better=False,
                target="informational",
            )
        )
        rows.append(
            _rows.row(
                BENCHMARK,
                f"{name} tokens out per call",
                mean_out,
                floor=None,
                higher_is_better=False,
                target="informational",
            )
        )
    overall = 100.0 * parsed / total if total else 0.0
    print(
        f"all judges: {parsed}/{total} parsed ({overall:.0f} %) "
        f"in {time.monotonic() - started:.1f} s"
    )
    rows.append(
        _rows.row(
            BENCHMARK,
            "all judges parse rate (%)",
            overall,
            floor=PARSE_FLOOR,
            higher_is_better=True,
            target=f">= {PARSE_FLOOR:g} %",
        )
    )
    return rows


if __name__ == "__main__":
    main()
