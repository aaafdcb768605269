"""Scorer aggregations (``@scorer(aggregations=[...])``), computed as MLflow computes them.

``mlflow.genai.scorers.aggregation`` turns each feedback value into a float (numbers and
booleans as themselves, ``"yes"`` / ``"no"`` as 1 / 0, anything else left out) and then
applies numpy's ``min``, ``max``, ``mean``, ``median``, ``var`` (population variance) and
``percentile(x, 90)`` (linear interpolation). This module does the same in pure Python,
so the report and ``evaluate`` need no numpy. A callable aggregation is named after its
``__name__``; one that raises is left out of the result, as in MLflow.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeAlias

from localscorers.exceptions import ConfigurationError

__all__ = [
    "AGGREGATIONS",
    "Aggregation",
    "AggregationFunc",
    "aggregate",
    "as_number",
    "check_aggregations",
    "stored_aggregations",
]

logger = logging.getLogger(__name__)

AggregationFunc: TypeAlias = Callable[[list[float]], float]
Aggregation: TypeAlias = str | AggregationFunc


def _percentile(values: list[float], q: float) -> float:
    # numpy.percentile's default ("linear"): interpolate between the two nearest ranks.
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


AGGREGATIONS: Final[dict[str, AggregationFunc]] = {
    "min": min,
    "max": max,
    "mean": statistics.fmean,
    "median": statistics.median,
    "variance": statistics.pvariance,
    "p90": lambda values: _percentile(values, 90),
}


def check_aggregations(aggregations: object) -> list[Aggregation] | None:
    """Return the aggregations as a list, or raise naming the bad entry.

    Raises:
        ConfigurationError: not a list, or an entry is neither a known name nor a callable.
    """
    if aggregations is None:
        return None
    if isinstance(aggregations, str) or not isinstance(aggregations, Sequence):
        raise ConfigurationError(
            f"aggregations must be a list such as ['mean', 'p90'], got {aggregations!r}."
        )
    checked: list[Aggregation] = []
    for entry in aggregations:
        known = entry in AGGREGATIONS if isinstance(entry, str) else callable(entry)
        if known:
            checked.append(entry)
        else:
            raise ConfigurationError(
                f"Unknown aggregation {entry!r}: use one of {sorted(AGGREGATIONS)} or a "
                "function that takes a list of floats and returns a float."
            )
    return checked


def stored_aggregations(name: str, aggregations: Sequence[Aggregation] | None) -> list[str] | None:
    """Return the aggregations as the registry stores them: names only.

    MLflow serializes a scorer's aggregations as strings too, so a function cannot be
    registered (pass it to ``evaluate`` directly instead).

    Raises:
        ConfigurationError: an aggregation is a function.
    """
    if aggregations is None:
        return None
    functions = [a for a in aggregations if not isinstance(a, str)]
    if functions:
        raise ConfigurationError(
            f"Scorer {name!r} has function aggregations {functions!r}, which cannot be "
            f"registered: the registry stores aggregations by name ({sorted(AGGREGATIONS)}). "
            "Register it with named aggregations, or use the function with evaluate() only."
        )
    return [str(a) for a in aggregations]


def as_number(value: Any) -> float | None:  # noqa: ANN401 - any feedback value
    """Return a feedback value as a float the way MLflow aggregates it, or None."""
    if isinstance(value, bool | int | float):
        number = float(value)
        return None if math.isnan(number) else number
    if isinstance(value, str) and value.lower() in ("yes", "no"):
        return 1.0 if value.lower() == "yes" else 0.0
    return None


def aggregate(
    values: Sequence[Any], aggregations: Sequence[Aggregation] | None
) -> dict[str, float]:
    """Aggregate feedback values: ``{"mean": 0.5, "p90": 0.9, "my_func": ...}``.

    Values that are not numbers, booleans or ``"yes"`` / ``"no"`` are left out, as in
    MLflow. With no aggregations the result is the mean only (MLflow's default). With no
    numeric values the result is empty.

    Raises:
        ConfigurationError: an aggregation name is unknown.
    """
    numbers = [n for n in (as_number(v) for v in values) if n is not None]
    if not numbers:
        return {}
    result: dict[str, float] = {}
    for entry in check_aggregations(list(aggregations or ["mean"])) or []:
        if isinstance(entry, str):
            result[entry] = float(AGGREGATIONS[entry](numbers))
            continue
        name = getattr(entry, "__name__", repr(entry))
        try:
            result[name] = float(entry(list(numbers)))
        except Exception:  # a user's aggregation failing is left out, as in MLflow
            logger.exception("aggregation %s failed", name)
    return result
