"""Tracing through the public API: @trace, start_span, update_current_trace, on SQLite files."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn

import pytest

import localscorers
from localscorers import ConfigurationError, Span, Trace, TraceStatus, _context


@pytest.fixture(autouse=True)
def tracking_db(store_uri: str) -> str:
    """Every test here runs on each backend (SQLite, then PostgreSQL)."""
    localscorers.set_tracking_uri(store_uri)
    return store_uri


def only_trace() -> Trace:
    traces = localscorers.search_traces()
    assert len(traces) == 1, [t.info.name for t in traces]
    return traces[0]


def spans_by_name(trace: Trace) -> dict[str, Span]:
    spans = {s.name: s for s in trace.data.spans}
    assert len(spans) == len(trace.data.spans), "span names are unique in these tests"
    return spans


# -- the decorator -----------------------------------------------------------------


def test_trace_records_arguments_return_value_and_timing() -> None:
    @localscorers.trace
    def answer(question: str, context: str = "none", *, temperature: float = 0.0) -> dict[str, str]:
        return {"answer": question.upper(), "context": context}

    before = datetime.now(UTC).replace(microsecond=0)
    assert answer("why", temperature=0.5) == {"answer": "WHY", "context": "none"}

    trace = only_trace()
    assert re.fullmatch(r"tr-[0-9a-f]{32}", trace.info.trace_id)
    assert trace.info.name == "answer"
    assert trace.info.status == "OK"
    assert trace.info.experiment_id == "0"
    assert trace.info.request_time >= before
    assert trace.info.execution_duration_ms is not None
    assert trace.info.execution_duration_ms >= 0
    assert trace.data.request == {"question": "why", "context": "none", "temperature": 0.5}
    assert trace.data.response == {"answer": "WHY", "context": "none"}
    (root,) = trace.data.spans
    assert root.parent_id is None
    assert re.fullmatch(r"[0-9a-f]{16}", root.span_id)
    assert root.span_type == "UNKNOWN"
    assert root.inputs == trace.data.request
    assert root.outputs == trace.data.response
    assert root.end_time_ns is not None
    assert root.end_time_ns >= root.start_time_ns
    assert root.start_time_ns // 1_000_000 == int(trace.info.request_time.timestamp() * 1000)


def test_trace_and_feedback_ids_are_unique_and_start_with_their_time() -> None:
    # Ids shaped like MLflow's (tr- and 32 hex digits) but time-ordered like a UUIDv7,
    # so that they append to the id indexes instead of landing at random pages.
    before_ms = time.time_ns() // 1_000_000
    trace_ids = [localscorers.log_trace(inputs=i, outputs=i) for i in range(200)]
    feedback = localscorers.log_feedback(trace_id=trace_ids[0], name="ok", value=True)
    after_ms = time.time_ns() // 1_000_000
    assert len(set(trace_ids)) == len(trace_ids)
    for trace_id in trace_ids:
        assert re.fullmatch(r"tr-[0-9a-f]{32}", trace_id)
    stamps = [int(trace_id[3:15], 16) for trace_id in trace_ids]
    assert stamps == sorted(stamps)
    assert before_ms <= stamps[0]
    assert stamps[-1] <= after_ms
    assert feedback.assessment_id is not None
    assert re.fullmatch(r"a-[0-9a-f]{32}", feedback.assessment_id)
    assert stamps[-1] <= int(feedback.assessment_id[2:14], 16) <= after_ms


def test_trace_options_name_type_and_attributes() -> None:
    @localscorers.trace(name="lookup", span_type="RETRIEVER", attributes={"index": "docs", "k": 3})
    def search(query: str) -> list[str]:
        return [query]

    search("q")
    (span,) = only_trace().data.spans
    assert span.name == "lookup"
    assert span.span_type == "RETRIEVER"
    assert span.attributes == {"index": "docs", "k": 3}
    assert only_trace().info.name == "lookup"


def test_methods_leave_out_self_and_cls() -> None:
    class Agent:
        @localscorers.trace
        def run(self, question: str) -> str:
            return question

        @classmethod
        @localscorers.trace
        def build(cls, size: int = 2) -> int:
            return size

    Agent().run("q")
    Agent.build()
    requests = sorted(str(t.data.request) for t in localscorers.search_traces())
    assert requests == ["{'question': 'q'}", "{'size': 2}"]


def test_values_are_snapshotted_when_set() -> None:
    @localscorers.trace
    def grow(items: list[str]) -> list[str]:
        items.append("added inside")
        return items

    data = ["original"]
    grow(data)
    data.append("added after")
    trace = only_trace()
    # MLflow records inputs when the call starts: the mutation inside the call is not seen.
    assert trace.data.request == {"items": ["original"]}
    assert trace.data.response == ["original", "added inside"]


def test_unencodable_values_do_not_break_the_call() -> None:
    class Stubborn:
        def __str__(self) -> str:
            raise RuntimeError("no str for you")

    circular: list[object] = []
    circular.append(circular)

    @localscorers.trace
    def call(thing: object, loop: object) -> str:
        return "done"

    assert call(Stubborn(), circular) == "done"
    # Stored as a marker with the type and a safe repr (issue 12); the rest is kept.
    request = only_trace().data.request
    assert request["thing"]["type"].endswith("Stubborn")
    assert request["loop"] == [
        {
            "__localscorers_unencodable__": "circular reference",
            "type": "list",
            "repr": "[[[[[...]]]]]",
        }
    ]


def test_trace_goes_to_the_active_experiment() -> None:
    experiment = localscorers.set_experiment("tracing")

    @localscorers.trace
    def call() -> int:
        return 1

    call()
    (trace,) = localscorers.search_traces(experiment_ids=[experiment.experiment_id])
    assert trace.info.experiment_id == experiment.experiment_id


@localscorers.scorer
def is_short(outputs: Any) -> bool:
    return len(outputs) < 10


def test_a_traced_call_is_scored_online_by_an_active_scorer() -> None:
    is_short.register(name="is_short").start()

    @localscorers.trace
    def reply(text: str) -> str:
        return text * 2

    reply("hi")
    assert localscorers.flush(timeout=30)
    (feedback,) = only_trace().info.assessments
    assert (feedback.name, feedback.value, feedback.origin) == ("is_short", True, "online")


# -- nesting -------------------------------------------------------------------------


def test_nested_spans_form_one_trace_with_parent_links() -> None:
    @localscorers.trace(span_type="RETRIEVER")
    def retrieve(query: str) -> list[str]:
        return ["doc"]

    @localscorers.trace(span_type="LLM")
    def generate(prompt: str) -> str:
        with localscorers.start_span("tokenize", inputs={"text": prompt}) as span:
            span.set_outputs(["tok"])
        return "text"

    @localscorers.trace(span_type="CHAIN")
    def pipeline(question: str) -> str:
        return generate(str(retrieve(question)))

    pipeline("q")
    trace = only_trace()
    spans = spans_by_name(trace)
    assert set(spans) == {"pipeline", "retrieve", "generate", "tokenize"}
    assert spans["pipeline"].parent_id is None
    assert spans["retrieve"].parent_id == spans["pipeline"].span_id
    assert spans["generate"].parent_id == spans["pipeline"].span_id
    assert spans["tokenize"].parent_id == spans["generate"].span_id
    assert spans["retrieve"].span_type == "RETRIEVER"
    assert spans["tokenize"].inputs == {"text": "['doc']"}
    assert spans["tokenize"].outputs == ["tok"]
    assert trace.info.name == "pipeline"
    assert len({s.span_id for s in trace.data.spans}) == 4


def test_the_trace_is_written_once_when_the_root_span_ends() -> None:
    with localscorers.start_span("root") as root:
        with localscorers.start_span("child"):
            pass
        with localscorers.start_span("child2"):
            pass
        assert localscorers.search_traces() == []  # children ending writes nothing
    [written] = localscorers.search_traces()
    assert written.info.trace_id == root.trace_id
    assert sorted(s.name for s in written.data.spans) == ["child", "child2", "root"]


def test_start_span_as_root_sets_the_traces_inputs_outputs_and_status() -> None:
    with localscorers.start_span("handler", span_type="AGENT", inputs={"q": "hi"}) as span:
        span.set_outputs({"a": "hello"})
        span.set_attributes({"model": "local", "tokens": 5})
        span.set_attribute("temperature", 0.1)
        span.set_status("ERROR", message="judged wrong")
        assert span.name == "handler"
        assert span.parent_id is None
        assert span.span_type == "AGENT"
    trace = localscorers.get_trace(span.trace_id)
    assert trace.info.name == "handler"
    assert trace.info.status == "ERROR"
    assert trace.data.request == {"q": "hi"}
    assert trace.data.response == {"a": "hello"}
    (stored,) = trace.data.spans
    assert stored.span_id == span.span_id
    assert stored.attributes == {"model": "local", "tokens": 5, "temperature": 0.1}
    assert stored.status == "ERROR"
    assert stored.status_message == "judged wrong"


def test_get_current_active_span() -> None:
    assert localscorers.get_current_active_span() is None
    with localscorers.start_span("outer") as outer:
        assert localscorers.get_current_active_span() is outer
        with localscorers.start_span("inner") as inner:
            assert localscorers.get_current_active_span() is inner
            assert inner.trace_id == outer.trace_id
        assert localscorers.get_current_active_span() is outer
    assert localscorers.get_current_active_span() is None


# -- errors --------------------------------------------------------------------------


def test_an_exception_is_recorded_and_reraised_unchanged() -> None:
    error = ValueError("bad input")

    @localscorers.trace
    def fail(x: int) -> NoReturn:
        raise error

    with pytest.raises(ValueError, match="bad input") as raised:
        fail(1)
    assert raised.value is error

    trace = only_trace()
    assert trace.info.status == "ERROR"
    (span,) = trace.data.spans
    assert span.status == "ERROR"
    assert span.status_message == "ValueError: bad input"
    assert trace.data.response is None
    (event,) = span.events
    assert event["name"] == "exception"
    assert event["attributes"]["exception.type"] == "ValueError"
    assert event["attributes"]["exception.message"] == "bad input"
    assert "Traceback" in event["attributes"]["exception.stacktrace"]
    assert "raise error" in event["attributes"]["exception.stacktrace"]
    assert isinstance(event["time_unix_nano"], int)


def test_an_error_caught_inside_leaves_the_trace_ok() -> None:
    @localscorers.trace
    def flaky() -> NoReturn:
        raise KeyError("missing")

    @localscorers.trace
    def robust() -> str:
        try:
            flaky()
        except KeyError:
            return "fallback"

    assert robust() == "fallback"
    trace = only_trace()
    spans = spans_by_name(trace)
    assert trace.info.status == "OK"
    assert spans["flaky"].status == "ERROR"
    assert spans["robust"].status == "OK"


def test_an_exception_in_a_start_span_block_is_recorded_and_reraised() -> None:
    with pytest.raises(ZeroDivisionError), localscorers.start_span("divide") as span:
        _ = 1 / 0
    trace = localscorers.get_trace(span.trace_id)
    assert trace.info.status == "ERROR"
    assert trace.data.spans[0].events[0]["attributes"]["exception.type"] == "ZeroDivisionError"


def test_a_failed_write_is_logged_and_the_result_still_returned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A real failure of the database (not a patched method): a trigger aborts every insert.
    db = _context.current().db
    with db.write() as conn:
        if db.is_postgres:
            conn.exec_driver_sql(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql "
                "AS $$ BEGIN RAISE EXCEPTION 'disk full' USING ERRCODE = 'check_violation'; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON traces "
                "FOR EACH ROW EXECUTE FUNCTION refuse()"
            )
        else:
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON traces "
                "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
            )

    @localscorers.trace
    def compute(x: int) -> int:
        return x * 2

    @localscorers.trace
    def fail() -> NoReturn:
        raise LookupError("user error")

    with caplog.at_level(logging.ERROR, logger="localscorers.tracing"):
        assert compute(21) == 42
        with pytest.raises(LookupError, match="user error"):
            fail()
    failures = [r for r in caplog.records if r.name == "localscorers.tracing"]
    assert len(failures) == 2
    errors = [r.exc_info[1] if r.exc_info else None for r in failures]
    assert all(isinstance(e, localscorers.ConflictError) for e in errors)
    assert all("disk full" in str(e) for e in errors)
    with db.write() as conn:
        conn.exec_driver_sql("DROP TRIGGER refuse" + (" ON traces" if db.is_postgres else ""))
    assert localscorers.search_traces() == []


# -- update_current_trace ------------------------------------------------------------


def test_update_current_trace_tags_and_metadata_land_on_the_trace() -> None:
    @localscorers.trace
    def child() -> None:
        localscorers.update_current_trace(tags={"stage": "child", "attempt": 2})

    @localscorers.trace
    def handler(user: str) -> str:
        localscorers.update_current_trace(
            tags={"env": "prod", "stage": "root"},
            metadata={"mlflow.trace.session": "s1", "mlflow.trace.user": user},
        )
        child()
        return "ok"

    handler("alice")
    trace = only_trace()
    # A key set twice keeps the later value; non-strings are stored as JSON text.
    assert trace.info.tags == {"env": "prod", "stage": "child", "attempt": "2"}
    assert trace.info.metadata == {"mlflow.trace.session": "s1", "mlflow.trace.user": "alice"}


def test_update_current_trace_outside_a_trace_raises() -> None:
    with pytest.raises(ConfigurationError, match=r"outside an active trace.*@trace"):
        localscorers.update_current_trace(tags={"a": "b"})


def test_update_current_trace_refuses_bad_tags() -> None:
    with localscorers.start_span("root"):
        with pytest.raises(ConfigurationError, match="tags must be a dict"):
            localscorers.update_current_trace(tags=["a"])  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="metadata keys must be non-empty strings"):
            localscorers.update_current_trace(metadata={"": "x"})


# -- threads and asyncio -------------------------------------------------------------


def test_a_plain_thread_starts_its_own_trace() -> None:
    @localscorers.trace
    def work(n: int) -> int:
        return n

    with localscorers.start_span("main") as main:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    traces = localscorers.search_traces()
    assert sorted(str(t.info.name) for t in traces) == ["main", "work", "work"]
    for trace in traces:
        assert len(trace.data.spans) == 1
        assert trace.data.spans[0].parent_id is None
    assert len({t.info.trace_id for t in traces}) == 3
    assert main.trace_id in {t.info.trace_id for t in traces}


def test_copy_context_run_joins_the_parents_trace() -> None:
    @localscorers.trace
    def work(n: int) -> int:
        return n * 10

    with localscorers.start_span("main") as main:
        context = contextvars.copy_context()
        thread = threading.Thread(target=context.run, args=(work, 4))
        thread.start()
        thread.join()

    trace = only_trace()
    spans = spans_by_name(trace)
    assert spans["work"].parent_id == main.span_id
    assert spans["work"].outputs == 40


def test_concurrent_threads_keep_their_traces_apart() -> None:
    count = 8
    barrier = threading.Barrier(count)

    @localscorers.trace
    def leaf(worker: int) -> int:
        return worker

    @localscorers.trace
    def root(worker: int) -> int:
        barrier.wait()
        leaf(worker)
        barrier.wait()
        return worker

    threads = [threading.Thread(target=root, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    traces = localscorers.search_traces()
    assert len(traces) == count
    for trace in traces:
        spans = spans_by_name(trace)
        assert spans["leaf"].parent_id == spans["root"].span_id
        assert spans["leaf"].inputs == trace.data.request == {"worker": trace.data.response}


def test_asyncio_tasks_join_the_trace_they_were_created_in() -> None:
    @localscorers.trace
    async def fetch(n: int) -> int:
        await asyncio.sleep(0)
        return n + 1

    @localscorers.trace
    async def gather_all() -> Sequence[int]:
        return await asyncio.gather(fetch(1), fetch(2))

    assert asyncio.run(gather_all()) == [2, 3]
    trace = only_trace()
    assert trace.info.name == "gather_all"
    assert trace.data.response == [2, 3]
    root = next(s for s in trace.data.spans if s.parent_id is None)
    children = [s for s in trace.data.spans if s.parent_id is not None]
    assert sorted(s.outputs for s in children) == [2, 3]
    assert all(s.parent_id == root.span_id for s in children)


def test_asyncio_tasks_outside_a_span_start_their_own_traces() -> None:
    @localscorers.trace
    async def handle(n: int) -> int:
        inner = asyncio.create_task(step(n))
        return await inner

    @localscorers.trace
    async def step(n: int) -> int:
        await asyncio.sleep(0)
        return n

    async def main() -> Sequence[int]:
        return await asyncio.gather(handle(1), handle(2))

    assert asyncio.run(main()) == [1, 2]
    traces = localscorers.search_traces()
    assert len(traces) == 2
    for trace in traces:
        spans = spans_by_name(trace)
        assert spans["step"].parent_id == spans["handle"].span_id
        assert spans["step"].outputs == trace.data.response


def test_an_async_exception_is_recorded_and_reraised() -> None:
    @localscorers.trace
    async def fail() -> NoReturn:
        await asyncio.sleep(0)
        raise TimeoutError("slow")

    with pytest.raises(TimeoutError, match="slow"):
        asyncio.run(fail())
    assert only_trace().info.status == "ERROR"


def test_a_span_still_open_when_the_root_ends_is_kept_in_progress(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started, release = threading.Event(), threading.Event()

    def slow() -> None:
        with localscorers.start_span("slow"):
            started.set()
            release.wait(timeout=30)

    with localscorers.start_span("root"):
        thread = threading.Thread(target=contextvars.copy_context().run, args=(slow,))
        thread.start()
        started.wait(timeout=30)
    with caplog.at_level(logging.WARNING, logger="localscorers.tracing"):
        release.set()
        thread.join()

    spans = spans_by_name(only_trace())
    assert spans["slow"].status == "IN_PROGRESS"
    assert spans["slow"].end_time_ns is None
    assert spans["root"].status == "OK"
    assert "ended after its root span" in caplog.text


def test_a_span_started_after_its_parents_trace_was_written_gets_its_own_trace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def late() -> None:
        with localscorers.start_span("late"):
            pass

    with localscorers.start_span("root"):
        context = contextvars.copy_context()
    with caplog.at_level(logging.WARNING, logger="localscorers.tracing"):
        context.run(late)
    assert "started after its parent's trace" in caplog.text
    traces = {t.info.name: t for t in localscorers.search_traces()}
    assert set(traces) == {"root", "late"}
    assert traces["late"].data.spans[0].parent_id is None


# -- generators ----------------------------------------------------------------------


def test_a_generator_span_covers_the_iteration_and_collects_the_items() -> None:
    @localscorers.trace(span_type="LLM")
    def stream(n: int) -> Iterator[str]:
        for i in range(n):
            with localscorers.start_span(f"chunk-{i}"):
                pass
            yield f"token{i}"

    # The consumer's code between items runs outside the generator's span.
    seen = [(item, localscorers.get_current_active_span()) for item in stream(3)]
    assert seen == [("token0", None), ("token1", None), ("token2", None)]

    trace = only_trace()
    spans = spans_by_name(trace)
    assert trace.info.name == "stream"
    assert trace.data.request == {"n": 3}
    assert trace.data.response == ["token0", "token1", "token2"]
    assert spans["stream"].span_type == "LLM"
    for i in range(3):
        assert spans[f"chunk-{i}"].parent_id == spans["stream"].span_id


def test_a_generator_stopped_early_ends_normally() -> None:
    @localscorers.trace
    def numbers() -> Iterator[int]:
        yield from range(100)

    for number in numbers():
        if number == 2:
            break
    trace = only_trace()
    assert trace.info.status == "OK"
    assert trace.data.response == [0, 1, 2]


def test_a_generator_error_is_recorded_and_reraised() -> None:
    @localscorers.trace
    def broken() -> Iterator[int]:
        yield 1
        raise RuntimeError("stream broke")

    received: list[int] = []
    with pytest.raises(RuntimeError, match="stream broke"):
        received.extend(broken())
    trace = only_trace()
    assert trace.info.status == "ERROR"
    assert trace.data.response == [1]


def test_a_generator_keeps_send_throw_and_its_return_value() -> None:
    @localscorers.trace
    def echo() -> Generator[str, str, str]:
        received = yield "ready"
        try:
            yield f"got {received}"
        except KeyError:
            yield "handled"
        return "finished"

    gen = echo()
    assert next(gen) == "ready"
    assert gen.send("ping") == "got ping"
    assert gen.throw(KeyError("k")) == "handled"
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert stop.value.value == "finished"
    trace = only_trace()
    assert trace.info.status == "OK"
    assert trace.data.response == ["ready", "got ping", "handled"]


def test_an_async_generator_span_covers_the_iteration_and_collects_the_items() -> None:
    @localscorers.trace(span_type="LLM")
    async def stream(n: int) -> AsyncIterator[str]:
        for i in range(n):
            await asyncio.sleep(0)
            with localscorers.start_span(f"chunk-{i}"):
                pass
            yield f"token{i}"

    async def consume() -> list[tuple[str, object]]:
        # The consumer's code between items runs outside the generator's span.
        return [(item, localscorers.get_current_active_span()) async for item in stream(3)]

    assert asyncio.run(consume()) == [("token0", None), ("token1", None), ("token2", None)]
    trace = only_trace()
    spans = spans_by_name(trace)
    assert trace.info.name == "stream"
    assert trace.info.status == "OK"
    assert trace.data.request == {"n": 3}
    assert trace.data.response == ["token0", "token1", "token2"]
    assert spans["stream"].span_type == "LLM"
    for i in range(3):
        assert spans[f"chunk-{i}"].parent_id == spans["stream"].span_id


def test_an_async_generator_closed_early_ends_normally() -> None:
    @localscorers.trace
    async def numbers() -> AsyncGenerator[int]:
        for number in range(100):
            yield number

    async def first_three() -> list[int]:
        gen = numbers()
        taken = [await anext(gen) for _ in range(3)]
        await gen.aclose()
        return taken

    assert asyncio.run(first_three()) == [0, 1, 2]
    trace = only_trace()
    assert trace.info.status == "OK"
    assert trace.data.response == [0, 1, 2]


def test_an_async_generator_error_is_recorded_and_reraised() -> None:
    @localscorers.trace
    async def broken() -> AsyncIterator[int]:
        yield 1
        raise RuntimeError("stream broke")

    async def consume(received: list[int]) -> None:
        async for item in broken():
            # Item by item (not extend): what arrived before the error must be kept.
            received.append(item)  # noqa: PERF401

    received: list[int] = []
    with pytest.raises(RuntimeError, match="stream broke"):
        asyncio.run(consume(received))
    assert received == [1]
    trace = only_trace()
    assert trace.info.status == "ERROR"
    assert trace.data.response == [1]


def test_an_async_generator_keeps_asend_and_athrow() -> None:
    @localscorers.trace
    async def echo() -> AsyncGenerator[str, str]:
        received = yield "ready"
        try:
            yield f"got {received}"
        except KeyError:
            yield "handled"

    async def talk() -> list[str]:
        gen = echo()
        said = [await anext(gen), await gen.asend("ping"), await gen.athrow(KeyError("k"))]
        with pytest.raises(StopAsyncIteration):
            await anext(gen)
        return said

    assert asyncio.run(talk()) == ["ready", "got ping", "handled"]
    trace = only_trace()
    assert trace.info.status == "OK"
    assert trace.data.response == ["ready", "got ping", "handled"]


# -- bad arguments -------------------------------------------------------------------


def test_bad_arguments_raise_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="span name must be a non-blank string"):
        localscorers.trace(name="  ")
    with pytest.raises(ConfigurationError, match="span_type must be a non-empty string"):
        localscorers.trace(span_type=3)  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match="attributes must be a dict"):
        localscorers.trace(attributes=[("a", 1)])  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match="decorates functions"):
        localscorers.trace("not a function")  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match="span name must be a non-blank string"):
        localscorers.start_span("").__enter__()
    with localscorers.start_span("root") as span:
        with pytest.raises(ConfigurationError, match="'OK' or 'ERROR'"):
            span.set_status("MAYBE")
        with pytest.raises(ConfigurationError, match="attributes keys must be non-empty"):
            span.set_attribute("", 1)
    assert localscorers.get_trace(span.trace_id).info.status == TraceStatus.OK


def test_changes_after_a_span_ended_are_ignored_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with localscorers.start_span("root") as span:
        span.set_outputs("final")
    with caplog.at_level(logging.WARNING, logger="localscorers.tracing"):
        span.set_outputs("too late")
    assert "already ended" in caplog.text
    assert localscorers.get_trace(span.trace_id).data.response == "final"


def test_trace_ids_made_by_one_process_grow_in_the_order_they_are_made() -> None:
    # Many traces share a millisecond here: their ids still keep the order of the calls.
    ids = [localscorers.log_trace(inputs=i, outputs=i) for i in range(300)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
