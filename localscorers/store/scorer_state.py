"""What the registry keeps of a scorer: its state, the active-scorer view, and name rules.

Plain values: :mod:`~localscorers.store.registry` reads and writes them; ``scorers.py``
builds ``Scorer`` objects from a :class:`ScorerState`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from localscorers.exceptions import ConfigurationError
from localscorers.filters import Expr
from localscorers.models import DEFAULT_SESSION_IDLE_SECONDS, ScorerStatus
from localscorers.store import codec

__all__ = [
    "MAX_NAME_LENGTH",
    "ActiveScorer",
    "ScorerState",
    "definition_hash",
    "state_from_row",
    "validate_name",
]

MAX_NAME_LENGTH = 256


@dataclass(frozen=True)
class ScorerState:
    """A scorer name's current state together with one version's definition."""

    experiment_id: str
    name: str
    version: int
    latest_version: int
    status: ScorerStatus
    sample_rate: float
    filter_string: str | None
    definition: dict[str, Any]
    description: str | None
    session_idle_seconds: float = DEFAULT_SESSION_IDLE_SECONDS
    takes_session: bool = False  # the version's scorer takes ``session``

    def scorer_fields(self) -> dict[str, Any]:
        """Return the ``Scorer`` fields this state sets (name, description, lifecycle)."""
        return {
            "name": self.name,
            "description": self.description,
            "version": self.version,
            "status": self.status,
            "sample_rate": self.sample_rate,
            "filter_string": self.filter_string,
            "experiment_id": self.experiment_id,
            "session_idle_seconds": self.session_idle_seconds,
        }


@dataclass(frozen=True)
class ActiveScorer:
    """What the enqueue path needs of an ACTIVE trace-level scorer."""

    name: str
    version: int
    sample_rate: float
    filter_string: str | None
    filter_expr: Expr | None = field(compare=False)


def validate_name(name: object) -> str:
    """Return the name if it is a valid scorer name.

    Raises:
        ConfigurationError: the name is not a string, is blank, or is too long.
    """
    if not isinstance(name, str):
        raise ConfigurationError(f"A scorer name must be a string, got {codec.safe_repr(name)}.")
    if not name.strip():
        raise ConfigurationError(
            f"A scorer name must not be empty or blank, got {name!r}. "
            "Pass a name such as name='relevance'."
        )
    problem = codec.text_problem(name, max_length=MAX_NAME_LENGTH)
    if problem is not None:
        raise ConfigurationError(f"A scorer name {problem}.")
    return name


def definition_hash(definition: dict[str, Any], description: str | None) -> str:
    """Hash a definition canonically: identical definitions keep their version."""
    canonical = json.dumps(
        {"definition": definition, "description": description}, sort_keys=True, default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def state_from_row(row: Any, version: int) -> ScorerState:  # noqa: ANN401 - a Row mapping
    """The state of ``version`` from a joined ``scorers`` / ``scorer_versions`` row."""
    return ScorerState(
        experiment_id=row["experiment_id"],
        name=row["name"],
        version=version,
        latest_version=row["version"],
        status=ScorerStatus(row["status"]),
        sample_rate=row["sample_rate"],
        filter_string=row["filter_string"],
        definition=row["definition"],
        description=row["description"],
        session_idle_seconds=float(row["session_idle_seconds"]),
        takes_session=bool(row["takes_session"]),
    )
