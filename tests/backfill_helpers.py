"""Importable scorers and a subprocess entry point for the backfill tests.

Scorers defined here are stored as ``tests.backfill_helpers:<name>`` references, so a
subprocess (or ``localscorers worker``) with the repository on ``PYTHONPATH`` can run them.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import localscorers
from localscorers import Feedback, TransientError, scorer

_calls: dict[str, int] = {}
_lock = threading.Lock()


def reset() -> None:
    """Forget the per-input call counts of ``flaky``."""
    with _lock:
        _calls.clear()


@scorer
def length(outputs: Any) -> int:
    """The length of the output text."""
    return len(str(outputs))


@scorer
def words(inputs: Any, outputs: Any) -> int:
    """Words in the question and the answer."""
    return len(str(inputs).split()) + len(str(outputs).split())


@scorer
def slow_length(outputs: Any) -> int:
    """``length``, taking a little while (a process can be killed mid-job)."""
    time.sleep(0.01)
    return len(str(outputs))


@scorer
def flaky(inputs: Any) -> int:
    """Fail transiently twice per input, then answer."""
    key = repr(inputs)
    with _lock:
        _calls[key] = _calls.get(key, 0) + 1
        attempt = _calls[key]
    if attempt <= 2:
        raise TransientError(f"try again (attempt {attempt})")
    return attempt


@scorer
def broken(outputs: Any) -> bool:
    """Always raises."""
    raise ValueError(f"cannot score {outputs!r}")


@scorer
def sleepy(inputs: Any) -> bool:
    """Hang on the input marked 'hang'; answer at once otherwise."""
    if inputs.get("hang"):
        time.sleep(1.0)
    return True


@scorer
def with_trace(trace: Any, expectations: dict[str, Any]) -> Feedback:
    """Uses the whole trace: its tags and expectations."""
    return Feedback(
        value=trace.info.tags.get("kind", "none"),
        rationale=f"{len(trace.data.spans)} span(s), expected {expectations.get('answer')!r}",
    )


@scorer
def expected(outputs: Any, expectations: dict[str, Any]) -> bool:
    """Whether the output equals the expected answer."""
    return bool(outputs == expectations.get("answer"))


@scorer
def several(outputs: Any) -> list[Feedback]:
    """Two feedbacks per trace."""
    return [Feedback(name="size", value=len(str(outputs))), Feedback(name="seen", value=True)]


def run_backfill_main(argv: list[str]) -> None:
    """Subprocess entry: backfill ``slow_length`` from a start time and wait (to be killed).

    Arguments: the database, a file to write the job id to, the start time (epoch ms).
    """
    db, ready, start_ms = argv
    localscorers.set_tracking_uri(db)
    job_id = localscorers.backfill_scorers(
        scorers=[localscorers.BackfillScorerConfig("slow_length", sample_rate=1.0)],
        start_time=int(start_ms),
    )
    Path(ready).write_text(job_id)
    localscorers.wait_for_backfill_job(job_id, timeout=120)


if __name__ == "__main__":
    run_backfill_main(sys.argv[1:])
