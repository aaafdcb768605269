"""An argument whose __str__, __repr__ and __format__ all raise is a ConfigurationError."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import localscorers


class Hostile:
    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __format__(self, spec: str) -> str:
        raise RuntimeError("no format")


ROWS = [{"inputs": "q", "outputs": "a"}]
CALLS: dict[str, Callable[[Any], object]] = {
    "get_scorer(name)": lambda bad: localscorers.get_scorer(name=bad),
    "get_scorer(experiment_id)": lambda bad: localscorers.get_scorer(name="x", experiment_id=bad),
    "list_scorers": lambda bad: localscorers.list_scorers(experiment_id=bad),
    "list_scorer_versions": lambda bad: localscorers.list_scorer_versions(name=bad),
    "delete_scorer": lambda bad: localscorers.delete_scorer(name=bad),
    "explain": localscorers.explain,
    "BackfillScorerConfig": lambda bad: localscorers.BackfillScorerConfig(scorer=bad),
    "backfill_scorers(scorers)": lambda bad: localscorers.backfill_scorers(scorers=[bad]),
    "backfill_scorers(experiment_id)": lambda bad: localscorers.backfill_scorers(
        scorers=["x"], experiment_id=bad
    ),
    "get_backfill_job": localscorers.get_backfill_job,
    "cancel_backfill_job": localscorers.cancel_backfill_job,
    "wait_for_backfill_job": localscorers.wait_for_backfill_job,
    "list_backfill_jobs": lambda bad: localscorers.list_backfill_jobs(experiment_id=bad),
    "scorer_report": lambda bad: localscorers.scorer_report(experiment_id=bad),
    "evaluate(scorers)": lambda bad: localscorers.evaluate(data=ROWS, scorers=[bad]),
    "evaluate(experiment_id)": lambda bad: localscorers.evaluate(
        data=ROWS, scorers=["x"], experiment_id=bad
    ),
}


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_a_hostile_argument_is_a_configuration_error(
    call: Callable[[Any], object], tracking: Path
) -> None:
    with pytest.raises(localscorers.ConfigurationError):
        call(Hostile())
