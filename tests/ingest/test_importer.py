"""import_traces on MLflow trace JSON (hand-written from MLflow's format) into SQLite files."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import localscorers
from localscorers import (
    AssessmentSourceType,
    ConfigurationError,
    Expectation,
    ExplainOutcome,
    Feedback,
    NotFoundError,
    Span,
    Trace,
)
from tests import scorer_helpers

DATA = Path(__file__).parent.parent / "data" / "mlflow_traces"
RAG = "tr-8b5f3e1c2a9d4f6b8e0c1d2a3b4c5d6e"
ERRORED = "tr-0c4e7a9b1d3f5a7c9e1b3d5f7a9c1e3b"
LEGACY = "tr-5d7f9b1c3e5a7c9b1d3f5a7c9e1b3d5f"
CHAT = "tr-11111111111111111111111111111111"
RUNNING = "tr-22222222222222222222222222222222"
BATCH_ONE = "tr-33333333333333333333333333333333"
BATCH_TWO = "tr-44444444444444444444444444444444"


@pytest.fixture(autouse=True)
def tracking_db(tmp_path: Path) -> Path:
    localscorers.set_tracking_uri(tmp_path / "t.db")
    return tmp_path / "t.db"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def spans_by_name(trace: Trace) -> dict[str, Span]:
    return {s.name: s for s in trace.data.spans}


def write(path: Path, content: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def minimal_trace(trace_id: str = "tr-" + "a" * 32, **info: Any) -> dict[str, Any]:
    return {
        "info": {"trace_id": trace_id, "request_time": "2025-01-01T00:00:00Z", **info},
        "data": {
            "spans": [
                {
                    "span_id": "00000000000000aa",
                    "name": "root",
                    "start_time_unix_nano": 1735689600000000000,
                    "end_time_unix_nano": 1735689600001000000,
                    "status": {"code": "OK"},
                    "attributes": {},
                }
            ]
        },
    }


# -- what survives an import ---------------------------------------------------------


def test_a_single_trace_keeps_ids_times_tags_metadata_and_io() -> None:
    assert localscorers.import_traces(DATA / "single_trace.json") == [RAG]

    trace = localscorers.get_trace(RAG)
    info = trace.info
    assert info.experiment_id == "0"  # MLflow's experiment id 417 means nothing here
    assert info.request_time == utc("2025-03-14T09:26:53.589+00:00")
    assert info.execution_duration_ms == 1530
    assert info.status == "OK"
    assert info.name == "rag_pipeline"
    assert info.tags == {"mlflow.traceName": "rag_pipeline", "mlflow.user": "alice", "env": "prod"}
    assert info.metadata["mlflow.trace.session"] == "s1"
    assert info.metadata["mlflow.sourceRun"] == "run-123"
    assert info.metadata["mlflow.traceInputs"] == '{"question": "What is MLflow?"}'
    assert trace.data.request == {"question": "What is MLflow?"}
    assert trace.data.response == "MLflow is an open source platform."


def test_a_single_trace_keeps_its_spans_and_decodes_attributes() -> None:
    localscorers.import_traces(DATA / "single_trace.json")
    spans = spans_by_name(localscorers.get_trace(RAG))
    assert set(spans) == {"rag_pipeline", "retrieve_docs", "ChatOpenAI"}

    root, retriever, llm = spans["rag_pipeline"], spans["retrieve_docs"], spans["ChatOpenAI"]
    assert root.span_id == "6f1a8c2e4b7d9031"
    assert root.parent_id is None
    assert retriever.parent_id == llm.parent_id == root.span_id
    assert (root.span_type, retriever.span_type, llm.span_type) == (
        "CHAIN",
        "RETRIEVER",
        "CHAT_MODEL",
    )
    assert retriever.start_time_ns == 1741944413600000000
    assert retriever.end_time_ns == 1741944413900000000
    assert retriever.status == "OK"
    assert retriever.inputs == {"query": "What is MLflow?", "k": 2}
    assert retriever.outputs[0]["metadata"]["doc_uri"] == "docs/intro.md"
    # The JSON-encoded values are decoded; type, inputs and outputs move to their fields.
    assert retriever.attributes == {
        "mlflow.traceRequestId": RAG,
        "retriever.index": "docs-v2",
        "retriever.top_k": 2,
    }
    assert llm.attributes["mlflow.chat.tokenUsage"] == {
        "input_tokens": 12,
        "output_tokens": 9,
        "total_tokens": 21,
    }
    assert llm.attributes["invocation_params"] == {"model": "gpt-4o-mini", "temperature": 0.0}
    assert llm.events == [
        {
            "name": "retry",
            "time_unix_nano": 1741944414000000000,
            "attributes": {"attempt": 1, "reason": "timeout"},
        }
    ]


def test_a_single_trace_keeps_its_assessments() -> None:
    localscorers.import_traces(DATA / "single_trace.json")
    trace = localscorers.get_trace(RAG)
    assessments = {a.name: a for a in trace.info.assessments}
    assert set(assessments) == {"relevance", "groundedness", "expected_facts"}

    relevance = assessments["relevance"]
    assert isinstance(relevance, Feedback)
    assert relevance.value == "yes"
    assert relevance.rationale == "The answer addresses the question."
    assert relevance.source is not None
    assert relevance.source.source_type == AssessmentSourceType.LLM_JUDGE
    assert relevance.source.source_id == "openai:/gpt-4o-mini"
    assert relevance.assessment_id == "a-1f2e3d4c5b6a79880716253443526170"
    assert relevance.create_time == utc("2025-03-14T09:30:00.123+00:00")
    assert relevance.metadata == {"mlflow.assessment.sourceRunId": "run-123"}
    assert relevance.trace_id == RAG
    assert relevance.origin == "import"

    failed = assessments["groundedness"]
    assert isinstance(failed, Feedback)
    assert failed.value is None
    assert failed.error is not None
    assert failed.error.error_code == "RATE_LIMIT_EXCEEDED"
    assert failed.error.error_message == "429 Too Many Requests"
    assert failed.error.stack_trace is not None
    assert failed.error.stack_trace.startswith("Traceback")

    expected = assessments["expected_facts"]
    assert isinstance(expected, Expectation)
    assert expected.value == ["open source", "ML lifecycle"]
    assert expected.source is not None
    assert expected.source.source_type == AssessmentSourceType.HUMAN
    assert trace.expectations == {"expected_facts": ["open source", "ML lifecycle"]}


def test_a_list_file_reads_early_mlflow3_and_mlflow2_shapes() -> None:
    assert localscorers.import_traces(DATA / "list_of_traces.json") == [ERRORED, LEGACY]

    # MLflow 3.0 dumped the span protobuf: base64 ids, 64-bit integers as strings,
    # OTLP status codes. Ids become hex so the parent link still holds.
    errored = localscorers.get_trace(ERRORED)
    assert errored.info.status == "ERROR"
    assert errored.info.request_time == utc("2025-03-14T10:00:00+00:00")
    assert errored.info.execution_duration_ms == 250
    spans = spans_by_name(errored)
    assert spans["answer"].span_id == "6f1a8c2e4b7d9031"
    assert spans["search_tool"].parent_id == "6f1a8c2e4b7d9031"
    assert spans["answer"].status == "ERROR"
    assert spans["answer"].status_message == "TimeoutError: LLM call timed out"
    assert spans["answer"].start_time_ns == 1741946400000000000
    assert spans["answer"].events[0]["attributes"]["exception.type"] == "TimeoutError"
    assert spans["search_tool"].span_type == "TOOL"
    assert spans["search_tool"].outputs == ["because"]
    # The root span has inputs but no outputs: the request is its inputs.
    assert errored.data.request == {"question": "Why?"}
    assert errored.data.response is None

    # MLflow 2: request_id, timestamp_ms, execution_time_ms, status, request_metadata,
    # and spans with context.span_id in 0x-hex.
    legacy = localscorers.get_trace(LEGACY)
    assert legacy.info.request_time == utc("2025-03-15T08:00:00.250+00:00")
    assert legacy.info.execution_duration_ms == 480
    assert legacy.info.status == "OK"
    assert legacy.info.name == "square"
    assert legacy.info.metadata["mlflow.trace_schema.version"] == "2"
    assert legacy.data.request == {"x": 2}
    assert legacy.data.response == 4
    (span,) = legacy.data.spans
    assert span.span_id == "1a2b3c4d5e6f7081"
    assert span.end_time_ns == 1742025600730000000


def test_a_jsonl_file_reads_one_trace_per_line_and_skips_blank_lines() -> None:
    assert localscorers.import_traces(DATA / "traces.jsonl") == [CHAT, RUNNING]
    chat = localscorers.get_trace(CHAT)
    assert chat.data.response == "hello"
    assert chat.info.execution_duration_ms == 12

    running = localscorers.get_trace(RUNNING)
    assert running.info.status == "IN_PROGRESS"
    assert running.info.request_time == utc("2025-03-16T12:00:00.500+00:00")
    assert running.info.execution_duration_ms is None
    (span,) = running.data.spans
    assert span.status == "IN_PROGRESS"  # UNSET and never ended
    assert span.end_time_ns is None


def test_a_directory_is_read_recursively_in_sorted_order() -> None:
    assert localscorers.import_traces(DATA / "batch") == [BATCH_TWO, BATCH_ONE]
    everything = localscorers.import_traces(DATA)
    assert everything == [BATCH_TWO, BATCH_ONE, ERRORED, LEGACY, RAG, CHAT, RUNNING]
    assert len(localscorers.search_traces()) == 7


def test_reimporting_is_idempotent_and_returns_every_id() -> None:
    first = localscorers.import_traces(DATA / "single_trace.json")
    again = localscorers.import_traces(str(DATA / "single_trace.json"))
    assert again == first == [RAG]
    (trace,) = localscorers.search_traces()
    assert len(trace.info.assessments) == 3
    assert len(trace.data.spans) == 3


def test_a_trace_appearing_twice_in_one_import_is_imported_once(tmp_path: Path) -> None:
    source = json.loads((DATA / "single_trace.json").read_text())
    path = write(tmp_path / "dupes.json", [source, source])
    assert localscorers.import_traces(path) == [RAG]
    assert len(localscorers.search_traces()) == 1


def test_traces_go_to_the_given_or_the_active_experiment() -> None:
    imports = localscorers.set_experiment("imports")
    localscorers.import_traces(DATA / "traces.jsonl")
    assert {t.info.experiment_id for t in localscorers.search_traces()} == {imports.experiment_id}

    localscorers.import_traces(DATA / "single_trace.json", experiment_id="0")
    assert localscorers.get_trace(RAG).info.experiment_id == "0"

    with pytest.raises(NotFoundError, match="'417'"):
        localscorers.import_traces(DATA / "batch", experiment_id="417")


def test_imported_traces_are_scored_online_unless_asked_not_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALSCORERS_MONITOR", "off")  # evaluations stay visible as pending
    localscorers.set_tracking_uri(tmp_path / "scored.db")
    scorer_helpers.is_short.register().start()
    first = minimal_trace("tr-" + "1" * 32)
    second = minimal_trace("tr-" + "2" * 32)
    write(tmp_path / "a.json", first)
    write(tmp_path / "b.json", second)

    (scored,) = localscorers.import_traces(tmp_path / "a.json")
    (unscored,) = localscorers.import_traces(tmp_path / "b.json", online_scoring=False)

    assert [e.outcome for e in localscorers.explain(scored)] == [ExplainOutcome.PENDING]
    (entry,) = localscorers.explain(unscored)
    assert entry.outcome == ExplainOutcome.NOT_ACTIVE
    assert "online scoring was off for this trace" in entry.detail
    assert "online_scoring=False" in entry.detail
    assert localscorers.get_trace(unscored).info.metadata["localscorers.online_scoring"] == ("off")
    assert "localscorers.online_scoring" not in localscorers.get_trace(scored).info.metadata
    (report,) = localscorers.scorer_report()
    assert report.pending == 1


def test_other_accepted_shapes(tmp_path: Path) -> None:
    as_string = json.dumps(minimal_trace("tr-" + "b" * 32))
    wrapped = {"traces": [minimal_trace("tr-" + "c" * 32), as_string]}
    rest_style = minimal_trace(
        "tr-" + "d" * 32,
        tags=[{"key": "env", "value": "dev"}],
        execution_duration="1.5s",
        state="STATE_UNSPECIFIED",
    )
    ids = localscorers.import_traces(write(tmp_path / "in" / "a.json", wrapped))
    ids += localscorers.import_traces(write(tmp_path / "in" / "b.ndjson", json.dumps(rest_style)))
    assert ids == ["tr-" + "c" * 32, "tr-" + "b" * 32, "tr-" + "d" * 32]
    rest = localscorers.get_trace("tr-" + "d" * 32)
    assert rest.info.tags == {"env": "dev"}
    assert rest.info.execution_duration_ms == 1500
    assert rest.info.status == "OK"  # unspecified: taken from the root span
    assert rest.info.name == "root"


# -- bad input -----------------------------------------------------------------------


def test_a_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"nowhere\.json does not exist"):
        localscorers.import_traces(tmp_path / "nowhere.json")


def test_an_unknown_extension_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "traces.txt", "{}")
    with pytest.raises(ConfigurationError, match=r"traces\.txt is not a \.json or \.jsonl file"):
        localscorers.import_traces(path)


def test_a_directory_without_trace_files_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "empty" / "notes.txt", "nothing here")
    with pytest.raises(ConfigurationError, match=r"holds no \.json or \.jsonl files"):
        localscorers.import_traces(tmp_path / "empty")


def test_invalid_json_names_the_file_and_position(tmp_path: Path) -> None:
    path = write(tmp_path / "broken.json", '{"info": {"trace_id": ')
    with pytest.raises(ConfigurationError, match=r"broken\.json is not valid JSON: .* line 1"):
        localscorers.import_traces(path)


def test_a_bad_jsonl_line_names_the_file_and_line(tmp_path: Path) -> None:
    good = json.dumps(minimal_trace())
    path = write(tmp_path / "t.jsonl", f"{good}\n{{not json\n")
    with pytest.raises(ConfigurationError, match=r"t\.jsonl line 2 is not valid JSON"):
        localscorers.import_traces(path)

    path = write(tmp_path / "u.jsonl", f"{good}\n\n[1, 2]\n")
    with pytest.raises(ConfigurationError, match=r"u\.jsonl line 3: expected MLflow's trace JSON"):
        localscorers.import_traces(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.pop("info"), r"expected MLflow's trace JSON.*got keys \['data'\]"),
        (lambda t: t["info"].pop("trace_id"), r"info\.trace_id \(or info\.request_id\)"),
        (lambda t: t["info"].update(state="DONE"), r"info\.state is 'DONE'"),
        (lambda t: t["info"].update(request_time="yesterday"), r"info\.request_time must be"),
        (lambda t: t["info"].update(execution_duration_ms="soon"), "execution_duration_ms"),
        (lambda t: t["data"].update(spans={}), r"data\.spans must be a list"),
        (
            lambda t: t["data"]["spans"][0].pop("start_time_unix_nano"),
            r"span #1 \(00000000000000aa\) start_time_unix_nano is missing",
        ),
        (
            lambda t: t["data"]["spans"][0].update(status={"code": "MAYBE"}),
            "status code 'MAYBE'",
        ),
        (
            lambda t: t["data"]["spans"].append(dict(t["data"]["spans"][0])),
            "two spans have id 00000000000000aa",
        ),
        (
            lambda t: t["info"].update(assessments=[{"assessment_name": "x", "source": {}}]),
            r"assessment #1 \('x'\) has neither 'feedback' nor 'expectation'",
        ),
        (
            lambda t: t["info"].update(
                assessments=[
                    {
                        "assessment_name": "x",
                        "feedback": {"value": 1},
                        "source": {"source_type": "BOT"},
                    }
                ]
            ),
            "source_type is 'BOT'",
        ),
    ],
)
def test_a_bad_trace_names_the_file_the_trace_and_the_problem(
    tmp_path: Path, change: Callable[[dict[str, Any]], object], message: str
) -> None:
    trace = minimal_trace()
    change(trace)
    path = write(tmp_path / "bad.json", [minimal_trace("tr-" + "f" * 32), trace])
    with pytest.raises(ConfigurationError, match=r"Cannot import .*bad\.json trace #2: ") as raised:
        localscorers.import_traces(path)
    assert raised.match(message)


def test_a_bad_file_in_a_directory_imports_nothing(tmp_path: Path) -> None:
    shutil.copytree(DATA / "batch", tmp_path / "dir")
    write(tmp_path / "dir" / "z_broken.jsonl", "{}\n")
    with pytest.raises(ConfigurationError, match=r"z_broken\.jsonl line 1"):
        localscorers.import_traces(tmp_path / "dir")
    assert localscorers.search_traces() == []


# -- search on imported traces (the filter language is its own module) ----------------


@pytest.mark.parametrize(
    ("filter_string", "expected"),
    [
        ("span.type = 'RETRIEVER'", {RAG}),
        ("span.type = 'TOOL'", {ERRORED}),
        ("tags.env = 'prod'", {RAG, LEGACY}),
        ("metadata.`mlflow.trace.session` = 's1'", {RAG, CHAT}),
        ("span.attributes.`retriever.index` = 'docs-v2'", {RAG}),
        ("span.name = 'ChatOpenAI'", {RAG}),
        ("trace.status = 'ERROR'", {ERRORED}),
        ("feedback.relevance = 'yes'", {RAG}),
        ("trace.name = 'batch_one'", {BATCH_ONE}),
    ],
)
def test_search_traces_answers_on_imported_traces(filter_string: str, expected: set[str]) -> None:
    localscorers.import_traces(DATA)
    found = {t.info.trace_id for t in localscorers.search_traces(filter_string=filter_string)}
    assert found == expected
