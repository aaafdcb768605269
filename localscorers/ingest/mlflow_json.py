"""Load traces exported by MLflow (``Trace.to_dict()`` / ``Trace.to_json()``) into the store.

This module finds the files, parses their JSON and writes them, all or nothing per file;
:mod:`~localscorers.ingest.mlflow_trace` reads each trace document (both MLflow 2 and
MLflow 3 exports) into a record.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from localscorers import _context
from localscorers.exceptions import ConfigurationError, TraceImportError
from localscorers.ingest.mlflow_assessments import check_assessment_ids
from localscorers.ingest.mlflow_trace import DOCUMENT_ERRORS, record_from_document
from localscorers.ingest.mlflow_values import check_text
from localscorers.store import codec
from localscorers.store.rows import ONLINE_SCORING_KEY, TraceRecord

__all__ = ["import_traces"]

logger = logging.getLogger(__name__)

_JSON_SUFFIXES = frozenset({".json"})
_LINES_SUFFIXES = frozenset({".jsonl", ".ndjson"})


def import_traces(
    path: str | os.PathLike[str], *, experiment_id: str | None = None, online_scoring: bool = True
) -> list[str]:
    """Load traces exported by MLflow and return their ids, in file order.

    ``path`` is a ``.json`` file holding one trace (``Trace.to_dict()``) or a list of
    them, a ``.jsonl`` file with one trace per line, or a directory searched recursively
    for both (files in sorted path order). Trace ids, request times, durations, status,
    tags, metadata, spans and assessments are kept. MLflow's experiment ids mean nothing
    here, so every trace goes to ``experiment_id`` or the active experiment.

    Every file is read and checked before anything is written, so a bad file imports
    nothing; then each file is written in one transaction, so a failure while writing
    (a full disk) leaves each file imported whole or not at all, and running the same
    import again finishes it. Traces whose id is already in the database are skipped, which makes a
    re-import harmless: the returned list still holds every id of the input (each once,
    in file order), whether it was imported now or before. Imported traces that are not
    ``IN_PROGRESS`` get online evaluations from the experiment's active scorers, as
    traces logged now would; with ``online_scoring=False`` they get none (for a large
    history, where active LLM judges would each be called once per trace). Such traces
    carry the metadata ``localscorers.online_scoring = "off"``, which explain() reports;
    score them later with a backfill.

    Raises:
        ConfigurationError: the path does not exist, holds no trace files, or an
            argument has the wrong type.
        TraceImportError: a file is not valid MLflow trace JSON (a ``ConfigurationError``);
            the message and its ``file``, ``line`` (for JSON lines, else the trace's
            position) and ``field`` attributes say where, and what is wrong.
        NotFoundError: ``experiment_id`` does not exist.
    """
    _check_arguments(path, experiment_id=experiment_id, online_scoring=online_scoring)
    files = _trace_files(Path(path))
    target = _context.resolve_experiment_id(experiment_id)
    # Every trace id read so far, in file order (a dict is an ordered set), and every
    # assessment id: a later duplicate trace is skipped, a duplicate assessment refused.
    seen: dict[str, None] = {}
    assessment_ids: set[str] = set()
    by_file = [_read_file(file, target, seen=seen, assessment_ids=assessment_ids) for file in files]
    _write(by_file, online_scoring=online_scoring)
    return list(seen)


def _check_arguments(path: object, *, experiment_id: object, online_scoring: object) -> None:
    if not isinstance(path, str | os.PathLike) or not isinstance(online_scoring, bool):
        raise ConfigurationError(
            "import_traces() takes a path (str or pathlib.Path) and online_scoring=True or "
            f"False, got path={codec.safe_repr(path)}, "
            f"online_scoring={codec.safe_repr(online_scoring)}."
        )
    if experiment_id is not None and not isinstance(experiment_id, str | int):
        raise ConfigurationError(
            f"experiment_id must be an experiment's id, got {codec.safe_repr(experiment_id)}."
        )


def _read_file(
    file: Path, experiment_id: str, *, seen: dict[str, None], assessment_ids: set[str]
) -> list[TraceRecord]:
    """Read and check a file's traces, skipping those ``seen`` already (which it extends).

    Raises:
        TraceImportError: a trace of the file is not valid MLflow trace JSON.
    """
    records: list[TraceRecord] = []
    for line, where, document in _documents(file):
        try:
            check_text(document, "trace")
            record = record_from_document(document, experiment_id=experiment_id)
            if record.trace_id in seen:
                logger.info("Skipping %s: trace %s appeared earlier.", where, record.trace_id)
                continue
            check_assessment_ids(record, assessment_ids)
        except DOCUMENT_ERRORS as exc:
            field = getattr(exc, "field", None)
            raise TraceImportError(
                f"Cannot import {where}: {exc}. Nothing of {file} was written; fix the "
                "file and import it again.",
                file=str(file),
                line=line,
                field=field,
            ) from exc
        seen[record.trace_id] = None
        records.append(record)
    return records


def _write(by_file: list[list[TraceRecord]], *, online_scoring: bool) -> None:
    store = _context.current().store
    # Everything was read and checked before; each file is then one transaction, so a
    # failure (a full disk) leaves whole files imported or not, and importing again
    # skips the traces already there.
    for records in by_file:
        marked = (
            records
            if online_scoring
            else [
                dataclasses.replace(r, metadata={**r.metadata, ONLINE_SCORING_KEY: "off"})
                for r in records
            ]
        )
        store.write_traces(marked, skip_existing=True, enqueue=online_scoring)


def _trace_files(path: Path) -> list[Path]:
    suffixes = _JSON_SUFFIXES | _LINES_SUFFIXES
    if not path.exists():
        raise ConfigurationError(
            f"{path} does not exist. Give a .json or .jsonl file of traces exported from "
            "MLflow, or a directory of them."
        )
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
        if not files:
            raise ConfigurationError(
                f"{path} holds no .json or .jsonl files. Export traces from MLflow with "
                "Trace.to_json() (one per line for .jsonl) into that directory."
            )
        return files
    if path.suffix.lower() not in suffixes:
        raise ConfigurationError(
            f"{path} is not a .json or .jsonl file (got {path.suffix or 'no extension'!r}). "
            "Rename it to say which format it holds."
        )
    return [path]


def _documents(file: Path) -> Iterator[tuple[int | None, str, Any]]:
    """Yield (line or position, where, parsed JSON) for every trace of a file."""
    try:
        if file.suffix.lower() in _LINES_SUFFIXES:
            with file.open(encoding="utf-8-sig") as lines:
                for number, line in enumerate(lines, start=1):
                    if line.strip():
                        where = f"{file} line {number}"
                        yield number, where, _parse(line, file=file, line=number)
            return
        document = _parse(file.read_text(encoding="utf-8-sig"), file=file, line=None)
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceImportError(f"Cannot read {file}: {exc}", file=str(file)) from exc
    if isinstance(document, dict) and isinstance(document.get("traces"), list):
        document = document["traces"]
    if isinstance(document, list):
        for index, item in enumerate(document, start=1):
            yield index, f"{file} trace #{index}", item
    else:
        yield None, str(file), document


def _parse(text: str, *, file: Path, line: int | None) -> Any:  # noqa: ANN401 - JSON
    where = str(file) if line is None else f"{file} line {line}"
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise TraceImportError(
            f"{where} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}. "
            "Export traces with MLflow's Trace.to_json().",
            file=str(file),
            line=line if line is not None else exc.lineno,
        ) from exc
    except (ValueError, RecursionError) as exc:
        # An integer of thousands of digits, or nesting deeper than Python's parser goes.
        problem = "is nested too deeply" if isinstance(exc, RecursionError) else f"has {exc}"
        raise TraceImportError(
            f"{where} {problem.split('; use sys.', maxsplit=1)[0]}: not a trace MLflow writes. "
            "Nothing of the file was written.",
            file=str(file),
            line=line,
        ) from exc
