"""Hostile trace files: checked before anything is written, typed errors (issue 12)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import localscorers
from localscorers import ConfigurationError, TraceImportError


def trace_doc(number: int, *, start_ns: Any = 1_700_000_000_000_000_000) -> dict[str, Any]:
    return {
        "info": {
            "trace_id": f"tr-{number:032x}",
            "request_time": "2025-01-31T12:00:00.000Z",
            "state": "OK",
        },
        "data": {
            "spans": [
                {
                    "span_id": f"{number:016x}",
                    "name": "root",
                    "start_time_unix_nano": start_ns,
                    "end_time_unix_nano": None,
                    "status": {"code": "OK"},
                    "attributes": {},
                }
            ]
        },
    }


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def good_lines(count: int) -> list[str]:
    return [json.dumps(trace_doc(n)) for n in range(1, count + 1)]


def assert_nothing_imported() -> None:
    assert localscorers.search_traces() == []


def test_span_time_2_pow_64_after_600_good_traces_imports_nothing(tracking: Path) -> None:
    # Issue 12: this raised a raw OverflowError after 500 traces were committed.
    lines = [*good_lines(600), json.dumps(trace_doc(601, start_ns=2**64))]
    path = write_lines(tracking.parent / "t.jsonl", lines)
    with pytest.raises(TraceImportError, match=r"line 601.*start_time_unix_nano") as info:
        localscorers.import_traces(path)
    error = info.value
    assert isinstance(error, ConfigurationError)
    assert (error.file, error.line) == (str(path), 601)
    assert error.field is not None
    assert "start_time_unix_nano" in error.field
    assert_nothing_imported()


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ('{"info": ' * 100_000 + "1" + "}" * 100_000, "nested too deeply"),
        ('{"info": {"trace_id": "tr-1", "request_time": ' + "9" * 5000 + "}}", "digits"),
        (json.dumps(trace_doc(7, start_ns=float("nan"))), "start_time_unix_nano"),
        (json.dumps(trace_doc(7, start_ns=float("inf"))), "start_time_unix_nano"),
        (json.dumps(trace_doc(7)).replace('"root"', '"bad \\ud800 name"'), "lone surrogate"),
        (
            json.dumps({**trace_doc(7), "info": {**trace_doc(7)["info"], "request_time": 1e400}}),
            "request_time",
        ),
        (
            json.dumps(
                {**trace_doc(7), "info": {**trace_doc(7)["info"], "execution_duration_ms": "NaN"}}
            ),
            "execution_duration_ms",
        ),
        (
            json.dumps({**trace_doc(7), "info": {**trace_doc(7)["info"], "tags": [{"key": [1]}]}}),
            "line 4",
        ),
    ],
    ids=[
        "deep",
        "huge-int",
        "nan-time",
        "inf-time",
        "surrogate",
        "inf-request-time",
        "nan-duration",
        "unhashable-tag-key",
    ],
)
def test_hostile_line_is_a_trace_import_error_naming_file_and_line(
    tracking: Path, bad_line: str, message: str
) -> None:
    path = write_lines(tracking.parent / "t.jsonl", [*good_lines(3), bad_line])
    with pytest.raises(TraceImportError, match=message) as info:
        localscorers.import_traces(path)
    assert info.value.file == str(path)
    assert info.value.line == 4
    assert str(path) in str(info.value)
    assert_nothing_imported()


def test_a_bad_second_file_imports_nothing_from_either(tracking: Path) -> None:
    folder = tracking.parent / "exports"
    folder.mkdir()
    write_lines(folder / "a.jsonl", good_lines(5))
    write_lines(folder / "b.jsonl", [json.dumps(trace_doc(9, start_ns=-5))])
    with pytest.raises(TraceImportError, match=r"b\.jsonl line 1"):
        localscorers.import_traces(folder)
    assert_nothing_imported()


def test_a_large_good_file_imports_whole(tracking: Path) -> None:
    path = write_lines(tracking.parent / "t.jsonl", good_lines(1200))
    ids = localscorers.import_traces(path)
    assert len(ids) == 1200
    assert len(localscorers.search_traces()) == 1200
    assert localscorers.import_traces(path) == ids  # again: skipped, same ids
