"""The typed store interface: one factory builds every store; lazy packages export what they say."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

import localscorers
from localscorers.store import Store, open_store

LAZY_PACKAGES = ["localscorers.store", "localscorers.server", "localscorers.ingest"]


def test_open_store_builds_every_store_over_one_database(db_path: Path) -> None:
    store = open_store(db_path)
    try:
        assert isinstance(store, Store)
        experiment = store.traces.create_experiment("interface")
        assert store.traces.get_experiment_by_name("interface") == experiment
        assert store.registry.list(experiment.experiment_id) == []
        queue = store.queue(owner="test", lease_ms=1000)
        assert (queue.owner, queue.lease_ms, queue.max_attempts) == ("test", 1000, 4)
        assert queue.pending_count() == 0
        assert store.jobs().list() == []
        assert store.explain().header("tr-missing") is None
        assert store.pending_spans().due(idle_before_ms=0) == []
        watch = store.watch()
        assert watch.changed()  # the first look always says yes
        watch.close()
    finally:
        store.close()


def test_a_store_reads_what_the_public_api_wrote(db_path: Path) -> None:
    localscorers.set_tracking_uri(db_path)
    trace_id = localscorers.log_trace(inputs="q", outputs="a")
    localscorers.flush()
    store = open_store(db_path)
    try:
        assert store.traces.get_trace(trace_id).info.trace_id == trace_id
    finally:
        store.close()


def _type_checking_names(module_name: str) -> set[str]:
    """The names a package imports under ``if TYPE_CHECKING:`` (what mypy sees)."""
    tree = ast.parse(inspect.getsource(importlib.import_module(module_name)))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for statement in node.body:
                if isinstance(statement, ast.ImportFrom):
                    names.update(alias.asname or alias.name for alias in statement.names)
    return names


@pytest.mark.parametrize("module_name", LAZY_PACKAGES)
def test_a_lazy_package_exports_what_type_checkers_see(module_name: str) -> None:
    package = importlib.import_module(module_name)
    assert set(package.__all__) == _type_checking_names(module_name)
    for name in package.__all__:
        assert getattr(package, name) is not None


@pytest.mark.parametrize("module_name", LAZY_PACKAGES)
def test_an_unknown_name_of_a_lazy_package_is_an_attribute_error(module_name: str) -> None:
    package = importlib.import_module(module_name)
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        getattr(package, "no_such_name")  # noqa: B009 - the attribute is looked up on purpose
