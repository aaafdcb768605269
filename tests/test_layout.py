"""The package's layout (issue 11, DESIGN.md section 12), checked on the source.

One room per concept: subpackages for the store, filters, evaluation, judges, ingest,
the command line and the server; only ``store/`` speaks SQL; imports point one way.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "localscorers"
SUBPACKAGES = ("cli", "evaluation", "filters", "ingest", "judges", "server", "store", "testing")
# Imported inside a function, on purpose: optional extras, and what must not load with
# the library (the pytest plugin loads in every pytest session of a project that has
# localscorers installed).
LAZY_IMPORTS = {
    "pandas": "the [pandas] extra",
    "uvicorn": "the [server] extra",
    "localscorers.server.app": "needs the [server] extra",
    "psycopg.types.string": "the [postgres] extra",
    "localscorers.testing.helpers": "the pytest plugin loads the library only for a fixture",
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(statements: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """The imports a module runs when it is imported (not those for type checkers)."""
    for statement in statements:
        if isinstance(statement, ast.Import | ast.ImportFrom):
            yield statement
        elif isinstance(statement, ast.If) and not _type_checking_only(statement):
            yield from _runtime_imports(statement.body)
            yield from _runtime_imports(statement.orelse)
        elif isinstance(statement, ast.Try):
            for block in (statement.body, statement.orelse, statement.finalbody):
                yield from _runtime_imports(block)
            for handler in statement.handlers:
                yield from _runtime_imports(handler.body)


def _imported_modules(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    submodules = [f"{base}.{alias.name}" for alias in node.names]
    # `from package import module` imports the module, not the package's re-exports.
    if all(name in MODULES for name in submodules):
        return submodules
    return [base, *[name for name in submodules if name in MODULES]]


def _import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        graph[name] = {
            target
            for node in _runtime_imports(tree.body)
            for target in _imported_modules(node)
            if target in MODULES and target != name
        }
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_subpackages_are_there_and_the_top_level_stays_small() -> None:
    for name in SUBPACKAGES:
        assert (PACKAGE / name / "__init__.py").is_file(), name
    top_level = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top_level) <= 16, top_level


def test_no_module_is_over_600_lines() -> None:
    lines = {name: path.read_text(encoding="utf-8").count("\n") for name, path in MODULES.items()}
    assert {name: count for name, count in lines.items() if count > 600} == {}


def test_only_the_store_imports_sqlalchemy_or_sqlmodel() -> None:
    outside = []
    for name, path in MODULES.items():
        if name.startswith("localscorers.store"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                roots = {module.split(".")[0] for module in _imported_modules(node)}
                if roots & {"sqlalchemy", "sqlmodel"}:
                    outside.append(f"{name}:{node.lineno}")
    assert outside == []


def test_imports_point_one_way() -> None:
    graph = _import_graph()
    assert _cycles(graph) == []
    # The errors are the root of everything: they import nothing of ours at run time.
    assert graph["localscorers.exceptions"] == set()


def test_the_cycle_check_sees_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_functions_import_only_extras_and_what_must_load_late() -> None:
    inside = []
    for name, path in MODULES.items():
        for function in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    inside += [
                        f"{name}: {module}"
                        for module in _imported_modules(node)
                        if module not in LAZY_IMPORTS
                    ]
    assert inside == []
