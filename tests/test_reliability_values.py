"""Hostile values never lose a trace, and bad arguments are typed errors (issue 12)."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import localscorers
from localscorers import ConfigurationError, ScorerSamplingConfig
from localscorers.store import codec


class BadStr:
    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    def __repr__(self) -> str:
        raise RuntimeError("no repr either")


def circular() -> list[Any]:
    loop: list[Any] = [1]
    loop.append(loop)
    return loop


def deeply_nested(depth: int = 100_000) -> list[Any]:
    root: list[Any] = []
    current = root
    for _ in range(depth):
        inner: list[Any] = []
        current.append(inner)
        current = inner
    return root


HOSTILE: dict[str, Callable[[], Any]] = {
    "circular": circular,
    "tuple keys": lambda: {(1, 2): "x", "ok": 1},
    "lone surrogate": lambda: "a\udc80b",
    "surrogate key": lambda: {"k\ud800": 1},
    "100k-deep": deeply_nested,
    "5000-digit int": lambda: 10**5000,
    "raising __str__": BadStr,
    "nan and inf": lambda: {"x": [math.nan, math.inf, -math.inf]},
}


def test_nan_and_infinity_are_stored_as_strings() -> None:
    text = codec.dumps({"a": math.nan, "b": [math.inf, -math.inf], "c": np.float32("nan")})
    assert text == '{"a":"NaN","b":["Infinity","-Infinity"],"c":"NaN"}'


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_inputs_and_outputs_keep_the_trace(tracking: Path, kind: str) -> None:
    value = HOSTILE[kind]()
    trace_id = localscorers.log_trace(inputs={"v": value}, outputs=value)
    stored = localscorers.get_trace(trace_id)
    assert stored.info.trace_id == trace_id
    assert "v" in stored.data.request
    assert codec.dumps(stored.data.response)  # reads back as plain JSON


def test_unencodable_value_is_stored_as_its_repr_with_a_marker() -> None:
    [kept, marked] = codec.jsonable([1, "a\udc80"])
    assert kept == 1
    assert marked[codec.UNENCODABLE] == "lone surrogate"
    assert marked["repr"] == "'a\\udc80'"
    loop = codec.jsonable(circular())
    assert loop[1][codec.UNENCODABLE] == "circular reference"
    assert codec.jsonable(BadStr())["type"] == "BadStr"


def test_nan_span_attribute_with_an_attribute_filter_keeps_trace_and_search(
    tracking: Path,
) -> None:
    # Issue 12: NaN was written as bare NaN; SQLite's JSON functions then failed the
    # commit's filter evaluation, and the trace was lost.
    @localscorers.scorer
    def always(outputs: Any) -> bool:
        return True

    always.register().start(
        sampling_config=ScorerSamplingConfig(filter_string="span.attributes.model = 'gpt'")
    )
    spans = [
        {
            "span_id": "a" * 16,
            "name": "llm",
            "start_time_ns": 1_700_000_000_000_000_000,
            "attributes": {"score": math.nan, "other": math.inf, "model": "gpt"},
        }
    ]
    trace_id = localscorers.log_trace(inputs="q", outputs="a", spans=spans)
    [span] = localscorers.get_trace(trace_id).data.spans
    assert span.attributes == {"score": "NaN", "other": "Infinity", "model": "gpt"}
    assert localscorers.search_traces(filter_string="span.attributes.score = 'NaN'")
    assert localscorers.search_traces(filter_string="span.attributes.model = 'gpt'")
    assert localscorers.flush(timeout=30)
    [feedback] = localscorers.get_trace(trace_id).info.assessments
    assert feedback.value is True


def test_traced_function_with_nan_and_hostile_arguments_is_recorded(tracking: Path) -> None:
    @localscorers.trace
    def app(question: Any) -> dict[str, float]:
        return {"confidence": math.nan}

    app(circular())
    [found] = localscorers.search_traces()
    assert found.data.response == {"confidence": "NaN"}


@pytest.mark.parametrize(
    ("argument", "value", "message"),
    [
        ("request_time", math.nan, "finite"),
        ("request_time", math.inf, "finite"),
        ("request_time", 2**63, "between 1970-01-01 and 2262-04-11"),
        ("request_time", datetime(9999, 1, 1), "between 1970-01-01 and 2262-04-11"),
        ("request_time", "yesterday", "datetime or epoch milliseconds"),
        ("execution_duration_ms", math.nan, "non-negative number"),
        ("execution_duration_ms", math.inf, "non-negative number"),
        ("execution_duration_ms", 2**63, "after 2262-04-11"),
        ("name", 123, "name must be a non-blank string"),
        ("status", 3, "status must be one of"),
        ("trace_id", "tr-\x00", "NUL"),
        ("spans", [{"bogus": 1}], r"spans\[0\] is not a valid span"),
        ("spans", "not a list", "spans must be a list"),
        ("spans", [{"span_id": "s", "name": "n", "start_time_ns": 2**64}], "start_time_ns"),
        ("spans", [{"span_id": "s", "name": "n", "start_time_ns": math.nan}], "start_time_ns"),
        ("experiment_id", 1.5, "experiment_id must be"),
    ],
)
def test_bad_log_trace_arguments_raise_configuration_error(
    tracking: Path, argument: str, value: object, message: str
) -> None:
    arguments: dict[str, Any] = {argument: value}
    with pytest.raises(ConfigurationError, match=message) as info:
        localscorers.log_trace(inputs="q", outputs="a", **arguments)
    assert argument.split("_", maxsplit=1)[0] in str(info.value) or argument == "spans"


def test_bad_search_arguments_raise_configuration_error(tracking: Path) -> None:
    with pytest.raises(ConfigurationError, match="filter_string must be a string"):
        localscorers.search_traces(filter_string=123)  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match=r"experiment_ids must be a list.*\['12'\]"):
        localscorers.search_traces(experiment_ids="12")
    with pytest.raises(ConfigurationError, match="order_by must be a list"):
        localscorers.search_traces(order_by="timestamp_ms DESC")
    with pytest.raises(ConfigurationError, match="trace_id must be a string"):
        localscorers.get_trace(123)  # type: ignore[arg-type]


def test_bad_feedback_flush_and_uri_arguments_raise_configuration_error(tracking: Path) -> None:
    trace_id = localscorers.log_trace(inputs="q", outputs="a")
    with pytest.raises(ConfigurationError, match="rationale must be a string"):
        localscorers.log_feedback(trace_id=trace_id, name="x", value=1, rationale=123)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="metadata must be a dict"):
        localscorers.log_feedback(trace_id=trace_id, name="x", value=1, metadata=[1])  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"flush\(timeout=...\) takes None"):
        localscorers.flush(timeout="1")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="flush"):
        localscorers.flush(timeout=math.nan)
    with pytest.raises(ConfigurationError, match="set_tracking_uri"):
        localscorers.set_tracking_uri(None)  # type: ignore[arg-type]


def test_nul_and_length_limits_on_names(tracking: Path) -> None:
    with pytest.raises(ConfigurationError, match="NUL"):
        localscorers.set_experiment("exp\x00hidden")
    with pytest.raises(ConfigurationError, match="at most 256 characters"):
        localscorers.set_experiment("e" * 257)
    assert localscorers.set_experiment("e" * 256).name == "e" * 256

    @localscorers.scorer(name="ok")
    def named(outputs: Any) -> bool:
        return True

    with pytest.raises(ConfigurationError, match="NUL"):
        named.register(name="bad\x00name")


def test_feedback_over_the_size_cap_is_stored_truncated_with_a_marker(
    tracking: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALSCORERS_MAX_FEEDBACK_BYTES", "1000")
    trace_id = localscorers.log_trace(inputs="q", outputs="a")
    stored = localscorers.log_feedback(trace_id=trace_id, name="long", value="x" * 5000)
    assert isinstance(stored.value, str)
    assert stored.value.startswith("x" * 900)
    assert len(stored.value.encode()) <= 1000
    assert stored.value.endswith("[truncated by localscorers: 5000 bytes, limit 1000]")
    small = localscorers.log_feedback(trace_id=trace_id, name="short", value="y" * 10)
    assert small.value == "y" * 10
    with sqlite3.connect(tracking) as conn:
        longest = conn.execute("SELECT max(length(value)) FROM assessments").fetchone()[0]
    assert longest < 1100


def test_default_feedback_cap_is_one_megabyte(tracking: Path) -> None:
    trace_id = localscorers.log_trace(inputs="q", outputs="a")
    stored = localscorers.log_feedback(trace_id=trace_id, name="big", value="z" * 3_000_000)
    assert isinstance(stored.value, str)
    assert "truncated by localscorers: 3000000 bytes, limit 1000000" in stored.value


def test_numpy_scalars_are_accepted_as_their_python_values(tracking: Path) -> None:
    trace_id = localscorers.log_trace(
        inputs={"n": np.int64(3)},
        outputs=np.float32(0.5),
        request_time=np.int64(1_700_000_000_000),  # type: ignore[arg-type]
        execution_duration_ms=np.float64(12.0),  # type: ignore[arg-type]
    )
    stored = localscorers.get_trace(trace_id)
    assert stored.data.request == {"n": 3}
    assert stored.data.response == 0.5
    assert stored.info.execution_duration_ms == 12
    feedback = localscorers.log_feedback(trace_id=trace_id, name="ok", value=np.bool_(True))
    assert feedback.value is True
    assert localscorers.flush(timeout=np.float64(5.0))


def test_scorer_feedback_over_the_cap_and_numpy_results(
    tracking: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALSCORERS_MAX_FEEDBACK_BYTES", "2000")

    @localscorers.scorer
    def verbose(outputs: Any) -> str:
        return "w" * 50_000

    @localscorers.scorer
    def numpy_verdict(outputs: Any) -> Any:
        return np.bool_(True)

    @localscorers.scorer
    def wordy(outputs: Any) -> localscorers.Feedback:
        return localscorers.Feedback(value={"text": "v" * 9000}, rationale="r" * 9000)

    for scorer in (verbose, numpy_verdict, wordy):
        scorer.register().start()
    trace_id = localscorers.log_trace(inputs="q", outputs="a")
    assert localscorers.flush(timeout=30)
    found: dict[str, localscorers.Feedback] = {}
    for assessment in localscorers.get_trace(trace_id).info.assessments:
        assert isinstance(assessment, localscorers.Feedback)
        assert assessment.name is not None
        found[assessment.name] = assessment
    assert found["numpy_verdict"].value is True
    assert found["numpy_verdict"].error is None
    for name in ("verbose", "wordy"):
        assert found[name].error is None
        assert isinstance(found[name].value, str)
        assert found[name].value.endswith("limit 2000]")
    assert (found["wordy"].rationale or "").endswith("limit 2000]")


@pytest.mark.parametrize("bad", [math.nan, math.inf, 2**63])
def test_backfill_time_arguments_that_cannot_be_times(tracking: Path, bad: float) -> None:
    @localscorers.scorer
    def ok(outputs: Any) -> bool:
        return True

    ok.register().start()
    with pytest.raises(ConfigurationError, match="start_time must be epoch milliseconds"):
        localscorers.backfill_scorers(scorers=["ok"], start_time=bad)  # type: ignore[call-overload]


def test_backfill_with_an_attribute_filter_over_nan_attributes_succeeds(tracking: Path) -> None:
    # Issue 12: one row with a bare NaN made every backfill with this filter FAIL.
    spans = [
        {
            "span_id": "b" * 16,
            "name": "llm",
            "start_time_ns": 1_700_000_000_000_000_000,
            "attributes": {"score": math.nan, "model": "gpt"},
        }
    ]
    trace_id = localscorers.log_trace(inputs="q", outputs="a", spans=spans)

    @localscorers.scorer
    def later(outputs: Any) -> bool:
        return True

    later.register().start(
        sampling_config=ScorerSamplingConfig(filter_string="span.attributes.model = 'gpt'")
    )
    job = localscorers.wait_for_backfill_job(
        localscorers.backfill_scorers(scorers=["later"]), timeout=60
    )
    assert job.status == "SUCCEEDED", job.error
    assert job.succeeded == 1
    assert [a.name for a in localscorers.get_trace(trace_id).info.assessments] == ["later"]


def test_span_names_with_nul_are_refused_when_the_span_is_declared() -> None:
    with pytest.raises(ConfigurationError, match="NUL"):
        localscorers.trace(name="a\x00b")
    with pytest.raises(ConfigurationError, match="NUL"), localscorers.start_span("x\x00"):
        pass
