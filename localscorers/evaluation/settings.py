"""The evaluator's settings, from the ``LOCALSCORERS_*`` environment variables.

Online scoring, backfill jobs, offline ``evaluate`` and ``localscorers worker`` all run
their scorer calls with one ``Settings``: how many at once, for how long, how often
retried.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from localscorers.exceptions import ConfigurationError

__all__ = ["Settings"]


def _env_number(name: str, default: float, *, minimum: float) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise ConfigurationError(f"{name} must be a number >= {minimum:g}, got {raw!r}.")
    return value


_Number = TypeVar("_Number", int, float)


def _from_env(default: _Number, variable: str, *, minimum: float) -> _Number:
    """A setting ``Settings.from_env`` reads from ``variable``, with its default and floor."""
    value: _Number = field(default=default, metadata={"variable": variable, "minimum": minimum})
    return value


@dataclass(frozen=True)
class Settings:
    """Evaluator settings; ``from_env`` reads the ``LOCALSCORERS_*`` variables.

    Attributes:
        max_workers: scorer calls running at once (``LOCALSCORERS_MAX_WORKERS``).
        lease_seconds: how long a claim lasts without renewal (``LOCALSCORERS_LEASE_SECONDS``).
        max_attempts: tries of an evaluation before it is recorded as failed
            (``LOCALSCORERS_MAX_ATTEMPTS``).
        backoff_seconds: first retry delay; doubled per attempt, with jitter.
        backoff_max_seconds: the cap on a retry delay.
        default_timeout_seconds: per-call timeout for scorers that set none
            (``LOCALSCORERS_SCORER_TIMEOUT``).
        poll_seconds: how often an idle runner looks for work written by other processes.
        batch_size: claims per transaction online; traces per page in a backfill.
    """

    max_workers: int = _from_env(8, "LOCALSCORERS_MAX_WORKERS", minimum=1)
    lease_seconds: float = _from_env(60.0, "LOCALSCORERS_LEASE_SECONDS", minimum=0.1)
    max_attempts: int = _from_env(4, "LOCALSCORERS_MAX_ATTEMPTS", minimum=1)
    backoff_seconds: float = _from_env(0.5, "LOCALSCORERS_BACKOFF_SECONDS", minimum=0.0)
    backoff_max_seconds: float = 30.0
    default_timeout_seconds: float = _from_env(300.0, "LOCALSCORERS_SCORER_TIMEOUT", minimum=0.001)
    poll_seconds: float = 0.5
    batch_size: int = 256

    @classmethod
    def from_env(cls) -> Settings:
        """Read settings from the environment, with the defaults above.

        Raises:
            ConfigurationError: a variable is not a valid number.
        """
        read: dict[str, Any] = {}
        for setting in fields(cls):
            variable, default = setting.metadata.get("variable"), setting.default
            if variable is None or not isinstance(default, int | float):
                continue  # not read from the environment
            number = _env_number(variable, default, minimum=setting.metadata["minimum"])
            # An integer setting takes the whole part, as int() always did here.
            read[setting.name] = int(number) if isinstance(default, int) else number
        return cls(**read)
