"""Fuzz the public API's arguments: only LocalScorersError subclasses may escape (issue 12).

Every argument is drawn from hostile values (NaN, infinities, huge and 64-bit-edge ints,
lone surrogates, NUL, circular and deep structures, tuple keys, objects whose ``__str__``
raises, numpy scalars, wrong types) mixed with valid ones, so that each call gets far
enough to meet the checks behind the first one.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import localscorers
from localscorers import LocalScorersError

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class BadStr:
    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no eq")

    __hash__ = object.__hash__


def circular() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


def deep(depth: int) -> list[Any]:
    root: list[Any] = []
    current = root
    for _ in range(depth):
        current.append([])
        current = current[0]
    return root


any_text = st.text(st.characters(exclude_categories=()), max_size=20)
edge_ints = st.sampled_from([0, -1, 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1])
edge_floats = st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e308, 5e-324, 1.5])
specials = st.sampled_from(
    [
        "special:circular",
        "special:deep",
        "special:bigint",
        "special:badstr",
        "special:numpy",
        "special:tuplekeys",
        "special:datetime",
        "special:year9999",
        "special:bytes",
        "special:nul",
    ]
)


def materialize(value: Any) -> Any:
    if isinstance(value, list):
        return [materialize(v) for v in value]
    if isinstance(value, dict):
        return {k: materialize(v) for k, v in value.items()}
    if not isinstance(value, str) or value not in SPECIAL_VALUES:
        return value
    return SPECIAL_VALUES[value]()


SPECIAL_VALUES: dict[str, Callable[[], Any]] = {
    "special:circular": circular,
    "special:deep": lambda: deep(1500),
    "special:bigint": lambda: 10**5000,
    "special:badstr": BadStr,
    "special:numpy": lambda: np.float32("nan"),
    "special:tuplekeys": lambda: {(1, 2): 3},
    "special:datetime": lambda: datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=5))),
    "special:year9999": lambda: datetime(9999, 12, 31),
    "special:bytes": lambda: b"\xff\x00",
    "special:nul": lambda: "a\x00b",
}


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    edge_ints,
    st.floats(),
    edge_floats,
    any_text,
    specials,
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(any_text, children, max_size=4)
    ),
    max_leaves=12,
).map(materialize)


def maybe(valid: Any) -> st.SearchStrategy[Any]:
    """Half the time a valid value, else anything."""
    return st.one_of(st.just(valid), values)


def call(function: Any, **kwargs: Any) -> None:
    with contextlib.suppress(LocalScorersError):
        function(**kwargs)


@FUZZ
@given(
    inputs=values,
    outputs=values,
    name=maybe(None),
    status=maybe("OK"),
    request_time=maybe(None),
    duration=maybe(None),
    tags=maybe(None),
    metadata=maybe(None),
    spans=st.one_of(
        st.just(None),
        values,
        st.lists(
            st.fixed_dictionaries(
                {"span_id": maybe("ab" * 8), "name": maybe("s"), "start_time_ns": maybe(10**18)},
                optional={"end_time_ns": values, "attributes": values, "inputs": values},
            ),
            max_size=3,
        ),
    ),
    experiment_id=maybe(None),
    trace_id=maybe(None),
)
def test_log_trace_fuzz(tracking: Path, **kwargs: Any) -> None:
    kwargs["execution_duration_ms"] = kwargs.pop("duration")
    call(localscorers.log_trace, **kwargs)


@FUZZ
@given(
    name=maybe("human"),
    value=values,
    rationale=maybe(None),
    source=maybe(None),
    metadata=maybe(None),
    trace_id=maybe("known"),
)
def test_log_feedback_fuzz(tracking: Path, trace_id: Any, **kwargs: Any) -> None:
    if trace_id == "known":
        trace_id = localscorers.log_trace(inputs="q", outputs="a")
    call(localscorers.log_feedback, trace_id=trace_id, **kwargs)
    call(
        localscorers.log_expectation, trace_id=trace_id, name=kwargs["name"], value=kwargs["value"]
    )


@FUZZ
@given(
    experiment_ids=maybe(None),
    filter_string=st.one_of(values, any_text, st.just("span.content RLIKE '(a+)+$'")),
    order_by=maybe(None),
    max_results=maybe(None),
)
def test_search_traces_fuzz(tracking: Path, **kwargs: Any) -> None:
    call(localscorers.search_traces, **kwargs)


@FUZZ
@given(trace_id=values, name=values)
def test_lookups_fuzz(tracking: Path, trace_id: Any, name: Any) -> None:
    call(localscorers.get_trace, trace_id=trace_id)
    call(localscorers.get_experiment_by_name, name=name)


@FUZZ
@given(name=maybe("fuzzed"), experiment_id=maybe(None))
def test_set_experiment_fuzz(tracking: Path, name: Any, experiment_id: Any) -> None:
    call(localscorers.set_experiment, name=name, experiment_id=experiment_id)


@FUZZ
@given(sample_rate=maybe(0.5), filter_string=st.one_of(values, any_text))
def test_sampling_config_fuzz(sample_rate: Any, filter_string: Any) -> None:
    call(localscorers.ScorerSamplingConfig, sample_rate=sample_rate, filter_string=filter_string)


@FUZZ
@given(timeout=st.one_of(values, st.floats(min_value=0, max_value=0.05)))
def test_flush_fuzz(tracking: Path, timeout: Any) -> None:
    if isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout > 1:
        timeout = 0.01  # valid and long: nothing is pending, but keep the run quick
    call(localscorers.flush, timeout=timeout)


@FUZZ
@given(uri=st.one_of(values.filter(lambda v: not isinstance(v, str)), st.sampled_from(["", " "])))
def test_set_tracking_uri_fuzz(tracking: Path, uri: Any) -> None:
    call(localscorers.set_tracking_uri, uri=uri)


documents = st.one_of(
    values,
    st.fixed_dictionaries(
        {
            "info": st.one_of(
                values,
                st.fixed_dictionaries(
                    {"trace_id": maybe("tr-" + "1" * 32)},
                    optional={
                        "request_time": values,
                        "execution_duration_ms": values,
                        "state": values,
                        "tags": values,
                        "trace_metadata": values,
                        "assessments": values,
                    },
                ),
            ),
            "data": st.one_of(
                values,
                st.fixed_dictionaries(
                    {
                        "spans": st.lists(
                            st.fixed_dictionaries(
                                {
                                    "span_id": maybe("ab" * 8),
                                    "name": maybe("s"),
                                    "start_time_unix_nano": maybe(10**18),
                                },
                                optional={"attributes": values, "status": values},
                            ),
                            max_size=2,
                        )
                    }
                ),
            ),
        }
    ),
)


def to_json(document: Any) -> str:
    try:
        return json.dumps(document)
    except (TypeError, ValueError, RecursionError):
        return json.dumps(str(type(document)))


@FUZZ
@given(document=documents, raw=st.one_of(st.none(), any_text))
def test_import_traces_fuzz(
    tracking: Path,
    tmp_path_factory: pytest.TempPathFactory,
    document: Any,
    raw: str | None,
) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / "t.jsonl"
    text = raw if raw is not None else to_json(document)
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    call(localscorers.import_traces, path=path)


@FUZZ
@given(path=values, experiment_id=maybe(None), online_scoring=maybe(True))
def test_import_traces_arguments_fuzz(
    tracking: Path,
    path: Any,
    experiment_id: Any,
    online_scoring: Any,
) -> None:
    if isinstance(path, str):
        path = tracking.parent / "no-such-dir" / "x.json"  # never read the working directory
    call(
        localscorers.import_traces,
        path=path,
        experiment_id=experiment_id,
        online_scoring=online_scoring,
    )
