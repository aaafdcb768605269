"""Turning scorer functions into stored definitions and back (DESIGN.md section 5).

An importable function is stored as a reference, ``module:qualname``. A function
defined in ``__main__``, a notebook or inside another function is stored as its
(dedented) source, together with what its body needs from its defining module:
the modules it uses (``import numpy as np`` becomes ``{"np": "numpy"}``), importable
functions and classes it calls, and simple constants. MLflow stores only the source
and so loses the imports; restoring here rebuilds them.

Source is code: it is never loaded from a database file that other users can write.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import os
import stat
import textwrap
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from localscorers.exceptions import ConfigurationError, ScorerLoadError

__all__ = [
    "SERIALIZATION_VERSION",
    "check_source_trust",
    "function_definition",
    "instantiate_class",
    "load_function",
    "resolve_reference",
]

SERIALIZATION_VERSION = 1
_CONSTANT_TYPES = (bool, int, float, str, type(None))


def resolve_reference(reference: str) -> object:
    """Import ``module:qualname`` and return the object.

    Raises:
        ScorerLoadError: the module or attribute cannot be found.
    """
    module_name, _, qualname = reference.partition(":")
    try:
        target: object = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ScorerLoadError(
            f"Cannot load scorer reference {reference!r}: {exc}. Make sure the module is "
            "importable in this process (installed, or on PYTHONPATH)."
        ) from exc
    return target


def _is_importable(func: Callable[..., Any]) -> bool:
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", "")
    if not module or module == "__main__" or "<locals>" in qualname or "<lambda>" in qualname:
        return False
    try:
        target = resolve_reference(f"{module}:{qualname}")
    except ScorerLoadError:
        return False
    # At module level the name is usually bound to the Scorer that @scorer made of func.
    return target is func or getattr(target, "func", None) is func


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _function_source(func: Callable[..., Any]) -> str:
    try:
        source = textwrap.dedent(inspect.getsource(func))
    except (OSError, TypeError) as exc:
        raise ConfigurationError(
            f"Cannot store scorer function {func.__qualname__!r}: it is not importable and "
            f"its source is unavailable ({exc}). Define it in a module or a file."
        ) from exc
    tree = ast.parse(source)
    node = tree.body[0] if tree.body else None
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        raise ConfigurationError(
            f"Cannot store scorer {func.__qualname__!r}: only functions defined with 'def' "
            "can be stored as source (a lambda cannot). Use a def."
        )
    # Drop decorator lines such as @scorer: restoring must give the plain function.
    return "\n".join(source.splitlines()[node.lineno - 1 :]) + "\n"


def _globals_needed(func: Callable[..., Any]) -> dict[str, dict[str, Any]]:
    imports: dict[str, str] = {}
    references: dict[str, str] = {}
    constants: dict[str, Any] = {}
    func_globals: dict[str, Any] = getattr(func, "__globals__", {})
    for name in sorted(_code_names(func.__code__)):
        if name not in func_globals or hasattr(builtins, name):
            continue
        value = func_globals[name]
        if isinstance(value, types.ModuleType):
            imports[name] = value.__name__
        elif isinstance(value, _CONSTANT_TYPES):
            constants[name] = value
        else:
            module = getattr(value, "__module__", None)
            qualname = getattr(value, "__qualname__", None)
            if module and qualname and module != "__main__" and "<locals>" not in qualname:
                references[name] = f"{module}:{qualname}"
    for name, cell in zip(func.__code__.co_freevars, func.__closure__ or (), strict=True):
        value = cell.cell_contents
        if not isinstance(value, _CONSTANT_TYPES):
            raise ConfigurationError(
                f"Cannot store scorer {func.__qualname__!r}: it closes over {name!r} "
                f"({type(value).__name__}), which cannot be restored in another process. "
                "Move the scorer to module level, or pass simple constants only."
            )
        constants[name] = value
    return {"imports": imports, "references": references, "constants": constants}


def function_definition(func: Callable[..., Any]) -> dict[str, Any]:
    """Return the stored definition of a scorer function: a reference, or its source.

    Raises:
        ConfigurationError: the function is neither importable nor has readable source.
    """
    if _is_importable(func):
        return {
            "serialization_version": SERIALIZATION_VERSION,
            "kind": "reference",
            "reference": f"{func.__module__}:{func.__qualname__}",
        }
    return {
        "serialization_version": SERIALIZATION_VERSION,
        "kind": "source",
        "function_name": func.__name__,
        "source": _function_source(func),
        **_globals_needed(func),
    }


def check_source_trust(db_path: Path | None) -> None:
    """Refuse to run source from a database file that other users can write.

    Raises:
        ScorerLoadError: the file is writable by its group or by others.
    """
    if db_path is None or os.name != "posix":
        return
    mode = db_path.stat().st_mode
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ScorerLoadError(
            f"Refusing to load scorer source code from {db_path}: the file is writable by "
            f"{'others' if mode & stat.S_IWOTH else 'its group'} (mode {stat.filemode(mode)}), "
            "so another user could have put code in it that would run as you. Fix the "
            f"permissions with: chmod go-w {db_path}"
        )


def load_function(definition: dict[str, Any], *, db_path: Path | None) -> Callable[..., Any]:
    """Rebuild a runnable function from its stored definition.

    Raises:
        ScorerLoadError: the definition is unknown, not importable, not trusted, or broken.
    """
    version = definition.get("serialization_version")
    if version != SERIALIZATION_VERSION:
        raise ScorerLoadError(
            f"Scorer definition has serialization version {version!r}; this localscorers "
            f"reads version {SERIALIZATION_VERSION}. Upgrade localscorers."
        )
    kind = definition.get("kind")
    if kind == "reference":
        target = resolve_reference(definition["reference"])
        func = getattr(target, "func", target)
        if not callable(func):
            raise ScorerLoadError(f"Scorer reference {definition['reference']!r} is not callable.")
        return func
    if kind != "source":
        raise ScorerLoadError(f"Unknown scorer definition kind {kind!r}.")
    check_source_trust(db_path)
    namespace: dict[str, Any] = {"__name__": "localscorers_restored", "__builtins__": builtins}
    try:
        for alias, module in definition.get("imports", {}).items():
            namespace[alias] = importlib.import_module(module)
        for alias, reference in definition.get("references", {}).items():
            namespace[alias] = resolve_reference(reference)
        namespace.update(definition.get("constants", {}))
        code = compile(definition["source"], f"<scorer {definition['function_name']}>", "exec")
        exec(code, namespace)  # noqa: S102 - trusted: check_source_trust passed above
    except ScorerLoadError:
        raise
    except Exception as exc:
        raise ScorerLoadError(
            f"Cannot restore scorer {definition.get('function_name')!r} from its stored "
            f"source: {type(exc).__name__}: {exc}"
        ) from exc
    func = namespace[definition["function_name"]]
    return getattr(func, "func", func)  # type: ignore[no-any-return]


def instantiate_class(definition: dict[str, Any], fields: dict[str, Any]) -> Any:  # noqa: ANN401
    """Build a class-based scorer from its stored reference and config.

    The class is imported by reference, so this module needs no import of ``scorers``.

    Raises:
        ScorerLoadError: the class cannot be imported or rejects its stored config.
    """
    cls = resolve_reference(definition["reference"])
    if not isinstance(cls, type) or not callable(cls):
        raise ScorerLoadError(
            f"Stored scorer {fields.get('name')!r} refers to {definition['reference']!r}, "
            "which is not a class."
        )
    try:
        return cls(**definition.get("config", {}), **fields)
    except Exception as exc:
        raise ScorerLoadError(
            f"Cannot rebuild scorer {fields.get('name')!r} from its stored config: {exc}"
        ) from exc
