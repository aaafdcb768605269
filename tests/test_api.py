"""The public surface: exports, docstrings, signatures, the error tree."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path
from typing import Any, assert_type

import pytest

import localscorers
from localscorers import PagedList, exceptions
from localscorers.models import Trace
from tests import scorer_helpers

# localscorers.__all__ is computed at run time (type checkers go by the ``X as X`` imports),
# so mypy types the attribute as object: read it from the module's namespace.
PUBLIC: tuple[str, ...] = vars(localscorers)["__all__"]


def test_all_is_sorted_and_every_name_imports_with_a_docstring() -> None:
    assert list(PUBLIC) == sorted(PUBLIC)
    for name in PUBLIC:
        value = getattr(localscorers, name)
        assert inspect.getdoc(value), f"{name} has no docstring"


@pytest.mark.parametrize("method", ["register", "start", "update", "stop", "delete"])
def test_lifecycle_methods_take_keyword_only_name_and_experiment(method: str) -> None:
    parameters = inspect.signature(getattr(localscorers.Scorer, method)).parameters
    assert parameters["name"].kind is inspect.Parameter.KEYWORD_ONLY
    assert parameters["name"].default is None
    assert parameters["experiment_id"].kind is inspect.Parameter.KEYWORD_ONLY
    assert parameters["experiment_id"].default is None
    positional = [
        p for p in parameters.values() if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    ]
    assert [p.name for p in positional] == ["self"]


def test_start_and_update_take_a_sampling_config() -> None:
    start = inspect.signature(localscorers.Scorer.start).parameters["sampling_config"]
    update = inspect.signature(localscorers.Scorer.update).parameters["sampling_config"]
    assert start.kind is update.kind is inspect.Parameter.KEYWORD_ONLY
    assert update.default is inspect.Parameter.empty  # MLflow requires it for update


@pytest.mark.parametrize(
    ("name", "builtin"),
    [
        ("ConfigurationError", ValueError),
        ("FilterSyntaxError", ValueError),
        ("ScorerLimitError", ValueError),
        ("InvalidTransitionError", ValueError),
        ("NotFoundError", LookupError),
        ("ScorerNotFoundError", LookupError),
        ("TraceNotFoundError", LookupError),
        ("JobNotFoundError", LookupError),
    ],
)
def test_errors_share_one_root_and_the_matching_builtin(name: str, builtin: type) -> None:
    error = getattr(localscorers, name)
    assert issubclass(error, localscorers.LocalScorersError)
    assert issubclass(error, builtin)


def test_every_exception_is_exported() -> None:
    for name in exceptions.__all__:
        assert getattr(localscorers, name) is getattr(exceptions, name)


def test_the_imports_type_checkers_read_match_the_names_loaded_on_first_use() -> None:
    # localscorers/__init__.py imports each lazy name for type checkers only (under
    # TYPE_CHECKING); at run time its _LAZY table loads it. Both must name the same
    # objects, and together with the exceptions make up __all__.
    tree = ast.parse(Path(localscorers.__file__).read_text(encoding="utf-8"))
    guarded = next(node for node in tree.body if isinstance(node, ast.If))
    imported: dict[str, str] = {}
    for node in guarded.body:
        assert isinstance(node, ast.ImportFrom), ast.unparse(node)
        assert node.module is not None
        for alias in node.names:
            assert alias.asname == alias.name, f"import {alias.name} as {alias.name}"
            imported[alias.name] = node.module
    assert sorted({*imported, *exceptions.__all__}) == list(PUBLIC)
    for name, module in imported.items():
        value = getattr(importlib.import_module(module), name)
        assert getattr(localscorers, name) is value, name


def test_statuses_are_upper_case_str_enums() -> None:
    assert localscorers.ScorerStatus.ACTIVE == "ACTIVE"
    assert localscorers.TraceStatus.OK == "OK"
    assert localscorers.JobStatus.SUCCEEDED == "SUCCEEDED"
    for enum in (localscorers.ScorerStatus, localscorers.TraceStatus, localscorers.JobStatus):
        assert all(member.value == member.name for member in enum)


def test_the_overloads_type_each_result_and_help_shows_every_argument(tracking: Path) -> None:
    # assert_type is checked by `mypy --strict tests` (CI) and returns its value here.
    localscorers.log_trace(inputs="q", outputs="a")
    scorer_helpers.is_short.register().start()
    page = assert_type(localscorers.search_traces(max_results=1), PagedList[Trace])
    assert isinstance(page, PagedList)
    assert len(page) == 1
    counts = assert_type(
        localscorers.backfill_scorers(scorers=["is_short"], dry_run=True), dict[str, int]
    )
    assert counts == {"is_short": 1}
    job_id = assert_type(localscorers.backfill_scorers(scorers=["is_short"]), str)
    assert localscorers.wait_for_backfill_job(job_id, timeout=60).status == "SUCCEEDED"
    frame: Any = localscorers.search_traces(return_type="pandas")
    assert len(frame) == 1
    # The overloads share their arguments through a TypedDict; help() shows the real ones.
    assert list(inspect.signature(localscorers.search_traces).parameters) == [
        "experiment_ids",
        "filter_string",
        "order_by",
        "max_results",
        "page_token",
        "return_type",
    ]
    assert list(inspect.signature(localscorers.backfill_scorers).parameters) == [
        "experiment_id",
        "scorers",
        "start_time",
        "end_time",
        "rescore",
        "dry_run",
    ]
