"""Values inside an MLflow trace document: the checks and conversions every part shares.

A document is checked piece by piece (:mod:`~localscorers.ingest.mlflow_spans`,
:mod:`~localscorers.ingest.mlflow_assessments`, :mod:`~localscorers.ingest.mlflow_trace`);
each problem is an :class:`InvalidTrace` that ``import_traces`` turns into a
``TraceImportError`` naming the file and line.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from localscorers import _clock
from localscorers._spans import MAX_EPOCH_NS
from localscorers.store import codec

__all__ = [
    "InvalidTrace",
    "as_list",
    "check_text",
    "decode_json_text",
    "epoch_ms",
    "kind_of",
    "nanos",
    "string_map",
]


class InvalidTrace(Exception):
    """What is wrong with one trace; import_traces adds the file and line.

    Attributes:
        field: the offending field, when one is to blame.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


def check_text(value: object, where: str) -> None:
    """Refuse strings SQLite cannot store: lone surrogates, which JSON escapes can make."""
    if isinstance(value, str):
        if codec.safe_text(value) is not value:
            raise InvalidTrace(f"{where} holds a lone surrogate (not valid Unicode)", field=where)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(key, f"{where} key {codec.safe_text(str(key))!r}")
            check_text(item, f"{where}.{codec.safe_text(str(key))}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_text(item, f"{where}[{index}]")


def kind_of(value: object) -> str:
    """The JSON kind of ``value`` for messages: ``null`` or its Python type name."""
    return "null" if value is None else type(value).__name__


def as_list(value: object, what: str) -> list[Any]:
    """``value`` as a list (``None`` is empty); anything else is an InvalidTrace."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidTrace(f"{what} must be a list, got {kind_of(value)}")
    return value


def string_map(value: object, what: str) -> dict[str, str]:
    """Tags and metadata: a JSON object, or the REST API's list of {key, value}."""
    if value is None:
        return {}
    if isinstance(value, list) and all(isinstance(e, dict) and "key" in e for e in value):
        value = {e["key"]: e.get("value") for e in value}
    if not isinstance(value, dict):
        raise InvalidTrace(f"{what} must be an object of strings, got {kind_of(value)}")
    return {
        str(k): v if isinstance(v, str) else codec.dumps(v) for k, v in value.items() if k != ""
    }


def decode_json_text(value: object) -> Any:  # noqa: ANN401 - JSON is untyped
    """MLflow stores attribute values (and input previews) as JSON text; decode when it is."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        return value  # a plain string, a preview MLflow truncated, or text too odd to decode


def nanos(value: object, what: str, *, required: bool) -> int | None:
    """Epoch nanoseconds from a number or digit string; 0 or ``None`` is missing."""
    # The protobuf JSON of early 3.x releases writes 64-bit integers as strings.
    if isinstance(value, str) and value.strip().isdigit() and len(value) < 40:
        value = int(value)
    if value is None or value == 0:
        if required:
            raise InvalidTrace(f"{what} is missing", field=what)
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value <= MAX_EPOCH_NS
    ):
        raise InvalidTrace(
            f"{what} must be epoch nanoseconds between 0 and {MAX_EPOCH_NS}, got {value!r:.80}",
            field=what,
        )
    return int(value)


def epoch_ms(value: object, what: str) -> int | None:
    """Epoch milliseconds from a number, a digit string or an RFC 3339 time."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit() and len(text) < 40:
            return int(text)
        try:
            return _clock.ms_from_datetime(datetime.fromisoformat(text))
        except ValueError:
            raise InvalidTrace(
                f"{what} must be an RFC 3339 time like '2025-01-31T12:00:00.123Z' or epoch "
                f"milliseconds, got {value!r}"
            ) from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidTrace(f"{what} must be a time, got {value!r:.80}", field=what)
    return int(value)
