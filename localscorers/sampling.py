r"""Deterministic sampling, frozen as sampling version 1 (DESIGN.md section 6).

A trace is in a scorer's sample when the first 8 bytes of
``sha256(trace_id + "\0" + scorer_name)``, read as a big-endian integer and divided
by 2**64, are below the scorer's rate. Consequences users can rely on:

- the decision is reproducible anywhere, by anyone, from the two strings;
- a higher rate samples a superset of a lower one (the fraction is fixed per pair);
- one scorer's sample never depends on which other scorers exist.

Never change this function: stored decisions and users' own recomputations depend on it.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum

__all__ = ["SAMPLING_VERSION", "Decision", "decide", "is_sampled", "sample_fraction"]

SAMPLING_VERSION = 1
_TWO_TO_64 = float(2**64)


def sample_fraction(trace_id: str, scorer_name: str) -> float:
    """Return the pair's fixed position in [0, 1) used by every sampling decision."""
    digest = hashlib.sha256(f"{trace_id}\0{scorer_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _TWO_TO_64


def is_sampled(trace_id: str, scorer_name: str, sample_rate: float) -> bool:
    """Tell whether the trace is in the scorer's sample at this rate."""
    if sample_rate <= 0.0:
        return False
    if sample_rate >= 1.0:
        # Exactly, every fraction is below 1; as a float, a prefix within 2**10 of 2**64
        # rounds to 1.0 and would be left out of a rate-1.0 sample.
        return True
    return sample_fraction(trace_id, scorer_name) < sample_rate


class Decision(StrEnum):
    """Whether a scorer evaluates a trace, or the first reason it does not."""

    EVALUATE = "EVALUATE"
    NOT_ACTIVE = "NOT_ACTIVE"
    FILTERED_OUT = "FILTERED_OUT"
    SAMPLED_OUT = "SAMPLED_OUT"
    UNFINISHED = "UNFINISHED"


def decide(
    trace_id: str,
    scorer_name: str,
    *,
    active: bool,
    filter_matched: bool | None,
    sample_rate: float,
    finished: bool = True,
) -> Decision:
    """Decide whether a scorer evaluates a trace: the one decision (DESIGN.md section 12).

    Online enqueue, backfill planning, dry run and ``explain`` all call this, with facts
    their callers computed already (a filter is matched in SQL, where the trace is).
    The checks run in this order, so the reason given is the first that applies.

    Args:
        trace_id: the trace.
        scorer_name: the scorer's registered name (part of the sampling hash).
        active: whether the scorer runs on this trace (ACTIVE online; always for a backfill).
        filter_matched: whether the trace matches the scorer's filter; None when it has none.
        sample_rate: the rate in force.
        finished: whether the trace is finished (IN_PROGRESS traces are never scored).

    Returns:
        ``Decision.EVALUATE``, or the reason the scorer does not evaluate the trace.
    """
    if not active:
        return Decision.NOT_ACTIVE
    if filter_matched is False:
        return Decision.FILTERED_OUT
    if not is_sampled(trace_id, scorer_name, sample_rate):
        return Decision.SAMPLED_OUT
    if not finished:
        return Decision.UNFINISHED
    return Decision.EVALUATE
