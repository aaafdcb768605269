"""Time helpers: one place that reads the wall clock, so tests can inject another."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

from localscorers.exceptions import ConfigurationError
from localscorers.store.codec import safe_repr

__all__ = ["datetime_from_ms", "ms_from_datetime", "now_ms", "to_epoch_ms"]


_MAX_MS = (2**63 - 1) // 1_000_000


def now_ms() -> int:
    """Return the current wall-clock time as epoch milliseconds."""
    return time.time_ns() // 1_000_000


def datetime_from_ms(ms: int) -> datetime:
    """Return the aware UTC datetime for epoch milliseconds."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def ms_from_datetime(value: datetime) -> int:
    """Return epoch milliseconds for a datetime; a naive one is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def to_epoch_ms(value: datetime | int | float | None, *, argument: str) -> int | None:
    """Normalize a time argument (datetime, epoch ms, or None) to epoch milliseconds.

    Raises:
        ConfigurationError: the value is neither a datetime nor a number.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        return ms_from_datetime(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(
            f"{argument} must be a datetime or epoch milliseconds, got {safe_repr(value)} "
            f"({type(value).__name__})."
        )
    # NaN, infinities and times past 2262 (signed 64-bit nanoseconds) cannot be stored.
    if not (isinstance(value, int) or math.isfinite(value)) or not -_MAX_MS <= value <= _MAX_MS:
        raise ConfigurationError(
            f"{argument} must be epoch milliseconds within +-{_MAX_MS} (before 2262-04-11), "
            f"got {safe_repr(value)}."
        )
    return int(value)
