"""JSON encoding for user values: inputs, outputs, attributes, feedback values.

User values are arbitrary Python objects. They are stored as JSON; anything JSON
cannot hold natively is converted the way a reader of the trace would expect
(pydantic models and dataclasses as dicts, everything else as its ``str``),
so logging a trace never fails because an argument is exotic.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel

__all__ = ["dumps", "jsonable", "loads"]


def _fallback(value: object) -> object:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def dumps(value: object) -> str:
    """Encode a value as compact JSON, converting what JSON cannot hold."""
    return json.dumps(value, default=_fallback, ensure_ascii=False, separators=(",", ":"))


def loads(text: str | None) -> Any:  # noqa: ANN401 - JSON is untyped by nature
    """Decode JSON text; ``None`` stays ``None``."""
    return None if text is None else json.loads(text)


def jsonable(value: object) -> Any:  # noqa: ANN401 - JSON is untyped by nature
    """Return the value as it will read back after a JSON round trip."""
    return json.loads(dumps(value))
