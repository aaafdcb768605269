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
# Our own modules that stored references may name but that moved (databases keep the
# name a scorer was registered under). localscorers.judges still re-exports the judges.
_MOVED_MODULES = {"localscorers.demo": "localscorers.cli.demo_app"}


def resolve_reference(reference: str) -> object:
    """Import ``module:qualname`` and return the object.

    Raises:
        ScorerLoadError: the module or attribute cannot be found.
    """
    module_name, _, qualname = reference.partition(":")
    module_name = _MOVED_MODULES.get(module_name, module_name)
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


def _who_may_write(info: os.stat_result) -> str | None:
    """Who other than the owner may write this file or directory, or None."""
    if info.st_mode & stat.S_IWOTH:
        return "others"
    if info.st_mode & stat.S_IWGRP:
        return "its group"
    return None


def _trust_problem(path: Path, *, is_directory: bool) -> str | None:
    """Why a file (or the directory holding it) lets another user change stored code."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return None  # a -wal or -shm file that does not exist holds nothing
    uid = os.getuid()
    if info.st_uid not in (uid, 0):
        return (
            f"{path} is owned by user id {info.st_uid}, not by you (user id {uid}) or root. "
            f"Only use a database you own: copy it (cp {path} <your own path>) or, if it is "
            f"yours, take it back with: chown {uid} {path}"
        )
    writers = _who_may_write(info)
    if writers is None:
        return None
    if is_directory and info.st_mode & stat.S_ISVTX:
        # Sticky (like /tmp): others may create files here but not replace ours, and
        # the files themselves were checked first.
        return None
    kind = "directory" if is_directory else "file"
    return (
        f"the {kind} {path} is writable by {writers} (mode {stat.filemode(info.st_mode)}). "
        f"Fix the permissions with: chmod go-w {path}"
    )


def check_source_trust(db_path: Path | None) -> None:
    """Refuse to run stored source unless no other user could have written it.

    Stored source runs as the current user, so every file that can change what SQLite
    reads must be trusted: the database file, its ``-wal`` file (SQLite reads pages
    from it first: a planted or writable WAL rewrites any row), ``-shm`` and ``-journal``
    files, and the directory holding them (whoever can write it can replace the files). Each must
    be owned by the current user or root and not writable by group or others; a sticky
    directory (such as /tmp) is accepted when the files pass.

    Raises:
        ScorerLoadError: a file or the directory fails the check; the message names it
            and the command that fixes it.
    """
    if db_path is None or os.name != "posix":
        return
    candidates = [(db_path, False)] + [
        (db_path.with_name(db_path.name + suffix), False)
        for suffix in ("-wal", "-shm", "-journal")  # a hot rollback journal is replayed too
    ]
    candidates.append((db_path.resolve().parent, True))
    problems = [
        (path, problem)
        for path, is_directory in candidates
        if (problem := _trust_problem(path, is_directory=is_directory)) is not None
    ]
    if problems:
        problem = problems[0][1]
        # SQLite gives the -wal and -shm files the database's mode: fix them together.
        loose = [str(p) for p, text in problems if "chmod go-w" in text]
        fix = f" (all of them: chmod go-w {' '.join(loose)})" if len(loose) > 1 else ""
        raise ScorerLoadError(
            f"Refusing to load scorer source code from the database {db_path}: {problem}"
            f"{fix}. Another user could have put code in it that would run as you."
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
