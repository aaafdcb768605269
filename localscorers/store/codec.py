"""JSON encoding for user values: inputs, outputs, attributes, feedback values.

Every value the store writes as JSON goes through :func:`dumps` (the engine's
``json_serializer`` and the bulk insert path both use it), so these rules hold for
every stored value:

* The text is standard JSON: NaN and infinities are stored as the strings ``"NaN"``,
  ``"Infinity"`` and ``"-Infinity"`` (Python's ``json`` would write bare ``NaN``, which
  SQLite's JSON functions reject, failing every filter on that row).
* Anything JSON cannot hold natively is converted the way a reader would expect:
  pydantic models and dataclasses as dicts, numpy scalars and arrays as their Python
  values, sets and tuples as lists, datetimes as ISO text, other objects as ``str``.
* A part that cannot be encoded at all (a circular reference, a dict key that is not a
  string or number, a string with a lone surrogate, nesting deeper than
  :data:`MAX_DEPTH`, an integer too long to print, an object whose ``__str__`` raises)
  is stored as an :data:`UNENCODABLE` marker object holding its type and ``repr``.
  The rest of the value is kept, and logging a trace never fails because of a value.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import reprlib
from datetime import date, datetime
from json.scanner import make_scanner
from typing import Any

from pydantic import BaseModel

from localscorers.exceptions import ConfigurationError

__all__ = [
    "MAX_DEPTH",
    "NEGATIVE_INFINITY",
    "NOT_A_NUMBER",
    "POSITIVE_INFINITY",
    "TRUNCATED",
    "UNENCODABLE",
    "capped",
    "dumps",
    "jsonable",
    "loads",
    "loads_column",
    "marker",
    "max_feedback_bytes",
    "plain_scalar",
    "safe_repr",
    "safe_text",
    "text_problem",
]

#: Key of the marker object that stands for a value that could not be encoded.
UNENCODABLE = "__localscorers_unencodable__"
NOT_A_NUMBER = "NaN"
POSITIVE_INFINITY = "Infinity"
NEGATIVE_INFINITY = "-Infinity"
#: Containers nested deeper than this are stored as a marker (Python's json recurses).
MAX_DEPTH = 200

_REPR_LIMIT = 1000
_repr = reprlib.Repr()
_repr.maxlevel = 4
_repr.maxstring = _REPR_LIMIT
_repr.maxother = _REPR_LIMIT
_NATIVE_KEYS = (str, int, float, bool, type(None))


def _safe_repr(value: object) -> str:
    """``repr`` that cannot fail: bounded in depth and length, for any object."""
    # An int past Python's int-to-str limit (4,300 digits) cannot even be repr'd.
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 10_000:
        return f"<int of {value.bit_length()} bits: {hex(value)[:_REPR_LIMIT]}...>"
    try:
        text = _repr.repr(value)
    except Exception:  # a hostile __repr__ must not lose the trace  # noqa: BLE001
        text = f"<{type(value).__qualname__} object>"
    # Lone surrogates would make the marker itself unencodable: escape them.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def safe_repr(value: object, limit: int = 200) -> str:
    """A short ``repr`` for error messages; never raises, whatever the value."""
    text = _safe_repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def marker(value: object, reason: str) -> dict[str, str]:
    """The object stored in place of a value that cannot be encoded."""
    return {UNENCODABLE: reason, "type": type(value).__qualname__, "repr": _safe_repr(value)}


def plain_scalar(value: object) -> object:
    """Return a numpy scalar (or 0-d array) as its Python value; anything else unchanged.

    numpy is not imported: its scalars are recognized by their ``item`` method and module.
    """
    module = type(value).__module__
    if module == "numpy" and hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return value


def _convert(value: object) -> object:  # noqa: PLR0911 - one return per kind of value
    """What JSON gets for a value it cannot hold natively (``json.dumps``'s ``default``)."""
    if type(value).__module__ == "numpy":
        if hasattr(value, "tolist"):
            return value.tolist()
        return plain_scalar(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _float(value: float) -> float | str:
    if math.isnan(value):
        return NOT_A_NUMBER
    if math.isinf(value):
        return POSITIVE_INFINITY if value > 0 else NEGATIVE_INFINITY
    return float(value)  # a float subclass (numpy.float64) as a plain float


def _key(key: object) -> str | int | float | bool | None:
    if isinstance(key, str):
        return key if _encodable_text(key) else _safe_repr(key)
    if isinstance(key, float):
        return str(_float(key)) if not math.isfinite(key) else key
    if isinstance(key, int) and not isinstance(key, bool) and key.bit_length() > 10_000:
        return _safe_repr(key)
    if isinstance(key, _NATIVE_KEYS):
        return key
    return _safe_repr(plain_scalar(key))


def _encodable_text(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def text_problem(text: str, *, max_length: int | None = None) -> str | None:
    """Why a name or id cannot be stored as given, said after its name, or None.

    Longer than ``max_length``, or holding a NUL or a lone surrogate: SQLite's C
    strings end at NUL and its text is UTF-8, so such a name would read back as another
    name, or fail to be written at all.
    """
    if max_length is not None and len(text) > max_length:
        return f"can be at most {max_length} characters; {text[:40]!r}... has {len(text)}"
    if "\x00" in text:
        return f"must not contain a NUL character (\\x00), got {safe_repr(text)}"
    if not _encodable_text(text):
        return f"must not contain a lone surrogate (not valid Unicode), got {safe_repr(text)}"
    return None


def safe_text(text: str) -> str:
    """The text with lone surrogates escaped as backslash sequences, so it can be stored."""
    if _encodable_text(text):
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


#: Words that end a value truncated by :func:`capped`.
TRUNCATED = "truncated by localscorers"


_DEFAULT_MAX_FEEDBACK_BYTES = 1_000_000


def max_feedback_bytes() -> int:
    """The size cap of a stored feedback value (``LOCALSCORERS_MAX_FEEDBACK_BYTES``, 1 MB).

    Raises:
        ConfigurationError: the variable is not a positive integer.
    """
    raw = os.environ.get("LOCALSCORERS_MAX_FEEDBACK_BYTES")
    if raw is None or not raw.strip():
        return _DEFAULT_MAX_FEEDBACK_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigurationError(
            f"LOCALSCORERS_MAX_FEEDBACK_BYTES must be a positive number of bytes, got {raw!r}."
        )
    return value


def capped(value: object, *, limit: int) -> object:
    """Return a JSON-able value, or its text cut to ``limit`` UTF-8 bytes with a marker.

    A string is cut as it is; another value is cut as its JSON text. The marker,
    ``"... [truncated by localscorers: N bytes, limit L]"``, ends the stored string,
    which stays within the limit (unless the limit is shorter than the marker).
    """
    if value is None or isinstance(value, bool | int | float):
        return value
    text = value if isinstance(value, str) else dumps(value)
    if len(text) * 4 <= limit:  # UTF-8 needs at most 4 bytes a character
        return value
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= limit:
        return value
    # The result, marker included, fits the limit: capping it again changes nothing.
    tail = f"... [{TRUNCATED}: {len(raw)} bytes, limit {limit}]"
    head = raw[: max(0, limit - len(tail))].decode("utf-8", "ignore")
    return head + tail


def _clean(value: object, depth: int, path: set[int]) -> object:  # noqa: PLR0911 - by kind
    """Return the value made of JSON-safe parts only (the slow path of :func:`dumps`)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value if _encodable_text(value) else marker(value, "lone surrogate")
    if isinstance(value, int):
        return int(value) if value.bit_length() <= 10_000 else marker(value, "integer too long")
    if isinstance(value, float):
        return _float(value)
    if depth > MAX_DEPTH:
        return marker(value, f"nested deeper than {MAX_DEPTH}")
    if id(value) in path:
        return marker(value, "circular reference")
    if isinstance(value, dict | list):
        path.add(id(value))
        try:
            if isinstance(value, dict):
                return {_key(k): _clean(v, depth + 1, path) for k, v in value.items()}
            return [_clean(item, depth + 1, path) for item in value]
        finally:
            path.discard(id(value))
    try:
        converted = _convert(value)
    except Exception as exc:  # a hostile __str__ or model_dump: keep the trace  # noqa: BLE001
        return marker(value, f"{type(exc).__name__} while converting")
    path.add(id(value))
    try:
        return _clean(converted, depth + 1, path)
    finally:
        path.discard(id(value))


# Built once: ``json.dumps`` with options builds an encoder per call, a third of the
# cost of encoding a small value (two per trace commit; issue 16).
_ENCODER = json.JSONEncoder(
    default=_convert, ensure_ascii=False, allow_nan=False, separators=(",", ":")
)


def _fast(value: object) -> str:
    return _ENCODER.encode(value)


def dumps(value: object) -> str:
    """Encode a value as compact, standard JSON; never raises for any Python value.

    The common case is one ``json.dumps`` call; a value it refuses (NaN, a cycle, a
    bad key, a deep or exotic value) is cleaned part by part (see the module docstring).
    """
    try:
        text = _fast(value)
    except Exception:  # NaN, a cycle, a bad key, deep nesting, a hostile __str__  # noqa: BLE001
        text = _slow(value)
    if not _encodable_text(text):
        text = _slow(value)
    return text


def _slow(value: object) -> str:
    try:
        return _fast(_clean(value, 0, set()))
    except RecursionError:
        # The caller's own stack was already deep: keep a marker rather than the trace.
        return _fast(marker(value, "nested too deep for this call stack"))


def loads(text: str | None) -> Any:  # noqa: ANN401 - JSON is untyped by nature
    """Decode JSON text; ``None`` stays ``None``."""
    return None if text is None else json.loads(text)


# The C scanner json.loads ends in, called directly: json.loads's own checks (type,
# BOM, leading whitespace, a regex for trailing whitespace) are three quarters of its
# cost on the short values a trace page decodes by the hundred (issue 16).
# (typeshed asks for a make_scanner where any decoder's attributes do: its own TODO.)
_scan = make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def loads_column(value: str | bytes | float | None) -> Any:  # noqa: ANN401 - JSON is untyped
    """Decode a JSON column as the driver returns it, as the engine's JSON type would.

    Text is decoded; ``None`` stays ``None``; a number stays as it is (SQLite's JSON
    columns have NUMERIC affinity, so a number's JSON text comes back as the number).
    The result is ``json.loads``'s for any text: whatever the fast path does not take
    whole (whitespace around it, invalid text) goes through ``json.loads`` itself.
    """
    if type(value) is str:
        try:
            decoded, end = _scan(value, 0)
        except StopIteration:
            return json.loads(value)  # raises json's own error for invalid text
        return decoded if end == len(value) else json.loads(value)
    if value is None or isinstance(value, int | float):
        return value
    return json.loads(value)  # bytes, as the engine's JSON type decodes them


def jsonable(value: object) -> Any:  # noqa: ANN401 - JSON is untyped by nature
    """Return the value as it will read back after a JSON round trip."""
    return json.loads(dumps(value))
