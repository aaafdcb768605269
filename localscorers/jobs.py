"""Backfill: score traces already logged with registered scorers (DESIGN.md section 9).

``backfill_scorers`` validates its arguments, freezes each scorer's version, rate and
filter into a durable job, and returns the job id at once; the job runs on this
process's backfill thread pool (and resumes in any process running the evaluator or
``localscorers worker`` if this one dies). ``dry_run=True`` creates no job and returns
the number of traces each scorer would evaluate.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Literal, Required, TypedDict, Unpack, overload

from pydantic import BaseModel, ConfigDict

from localscorers import _clock, _context
from localscorers.exceptions import (
    BackfillTimeoutError,
    ConfigurationError,
    ScorerNotFoundError,
)
from localscorers.models import BackfillJob, ScorerStatus, validate_sample_rate
from localscorers.scorers import Scorer
from localscorers.store.codec import safe_repr
from localscorers.store.jobs import FINAL_STATUSES, ScorerSpec
from localscorers.store.scorer_state import validate_name

if TYPE_CHECKING:
    from localscorers.store import Jobs

__all__ = [
    "BackfillScorerConfig",
    "backfill_scorers",
    "cancel_backfill_job",
    "get_backfill_job",
    "list_backfill_jobs",
    "wait_for_backfill_job",
]

_POLL_SECONDS = 0.05
# wait_for_backfill_job's poll grows to this: this process's runner wakes the wait when it
# ends a part, so only jobs other processes run wait for a poll. Each poll reads the job
# and its parts: at 50 ms it took a sixth of a 20,000-trace backfill's CPU (issue 16).
_MAX_POLL_SECONDS = 0.5
_CANCEL_WAIT_SECONDS = 5.0


class BackfillScorerConfig(BaseModel):
    """One scorer of a backfill: a ``Scorer`` or a registered name, and an optional rate.

    Without ``sample_rate`` the scorer's current (active) rate is used; a scorer that is
    not active then has no rate and ``backfill_scorers`` refuses it.

    Raises:
        ConfigurationError: the scorer is neither a ``Scorer`` nor a valid name, or the
            rate is not a number in (0, 1].
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True, extra="forbid")

    scorer: Scorer | str
    sample_rate: float | None = None

    def __init__(self, scorer: Scorer | str, sample_rate: float | None = None) -> None:
        # Checked here, not by pydantic validators, so callers get our errors unwrapped.
        if not isinstance(scorer, Scorer):
            if not isinstance(scorer, str):
                raise ConfigurationError(
                    f"BackfillScorerConfig(scorer=...) takes a Scorer or a registered scorer "
                    f"name, got {safe_repr(scorer)} ({type(scorer).__name__})."
                )
            validate_name(scorer)
        name = scorer.name if isinstance(scorer, Scorer) else scorer
        if sample_rate is not None:
            sample_rate = validate_sample_rate(sample_rate)
            if sample_rate == 0.0:
                raise ConfigurationError(
                    f"sample_rate for scorer {name!r} is 0.0, so the backfill would score "
                    "nothing. Pass a rate above 0, or leave the scorer out."
                )
        super().__init__(scorer=scorer, sample_rate=sample_rate)

    @property
    def name(self) -> str:
        """The scorer's name."""
        return self.scorer.name if isinstance(self.scorer, Scorer) else self.scorer


def _configs(scorers: object) -> list[BackfillScorerConfig]:
    if isinstance(scorers, str | Scorer | BackfillScorerConfig) or not isinstance(
        scorers, Sequence
    ):
        raise ConfigurationError(
            f"scorers must be a list of BackfillScorerConfig, Scorer or scorer names, got "
            f"{scorers!r}. Wrap a single scorer in a list: scorers=[...]."
        )
    if not scorers:
        raise ConfigurationError(
            "scorers is empty: pass at least one BackfillScorerConfig, Scorer or scorer name."
        )
    configs = []
    for position, item in enumerate(scorers):
        if isinstance(item, BackfillScorerConfig):
            configs.append(item)
        elif isinstance(item, Scorer | str):
            configs.append(BackfillScorerConfig(item))
        else:
            raise ConfigurationError(
                f"scorers[{position}] is {safe_repr(item)} ({type(item).__name__}); each "
                "entry must be a BackfillScorerConfig, a Scorer or a registered scorer name."
            )
    return configs


def _spec(
    runtime: _context.Runtime, experiment_id: str, config: BackfillScorerConfig
) -> ScorerSpec:
    name = config.name
    state = runtime.registry.find(experiment_id, name)
    if state is None:
        raise ScorerNotFoundError(
            f"Cannot backfill scorer {name!r}: no scorer of that name is registered in "
            f"experiment {experiment_id!r}. Register it first (scorer.register()), or check "
            "the names with list_scorers()."
        )
    version = config.scorer.version if isinstance(config.scorer, Scorer) else None
    if version is not None and version != state.version:
        state = runtime.registry.get(experiment_id, name, version=version)
    rate = config.sample_rate
    if rate is None:
        if state.status is not ScorerStatus.ACTIVE:
            raise ConfigurationError(
                f"Cannot backfill scorer {name!r} without a sample_rate: it is "
                f"{state.status.value}, not ACTIVE, so it has no current rate. Pass "
                f"BackfillScorerConfig(scorer={name!r}, sample_rate=...) or start() it first."
            )
        rate = state.sample_rate
    # The scorer's own filter applies (DESIGN.md section 9); only an active one has one.
    return ScorerSpec(name, state.version, rate, state.filter_string)


def _flag(value: object, argument: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(f"{argument} must be True or False, got {value!r}.")
    return value


class _BackfillArguments(TypedDict, total=False):
    """The arguments of ``backfill_scorers`` but ``dry_run``: its overloads share them."""

    experiment_id: str | None
    scorers: Required[Sequence[BackfillScorerConfig | Scorer | str]]
    start_time: datetime | int | None
    end_time: datetime | int | None
    rescore: bool


# dry_run decides what is returned: a job id, or the counts of a dry run.
@overload
def backfill_scorers(
    *, dry_run: Literal[False] = False, **arguments: Unpack[_BackfillArguments]
) -> str: ...
@overload
def backfill_scorers(
    *, dry_run: Literal[True], **arguments: Unpack[_BackfillArguments]
) -> dict[str, int]: ...
def backfill_scorers(
    *,
    experiment_id: str | None = None,
    scorers: Sequence[BackfillScorerConfig | Scorer | str],
    start_time: datetime | int | None = None,
    end_time: datetime | int | None = None,
    rescore: bool = False,
    dry_run: bool = False,
) -> str | dict[str, int]:
    """Score the traces of ``[start_time, end_time)`` with registered scorers, as a job.

    Each scorer's version, rate (``sample_rate``, else its current active rate) and
    filter are frozen into the job. A trace is picked exactly as online scoring would
    pick it at that rate. Traces already scored by the same scorer version are skipped
    and counted as ``skipped``; ``rescore=True`` scores them again instead, marking the
    previous feedback invalid and pointing the new one at it (``overrides``).

    Args:
        experiment_id: the experiment (default: the active one).
        scorers: ``BackfillScorerConfig`` objects, ``Scorer`` objects or scorer names.
        start_time: first request time included: a datetime (naive means UTC) or epoch ms.
        end_time: first request time excluded.
        rescore: replace existing feedback of the same scorer version, keeping history.
        dry_run: create no job; return ``{scorer name: traces it would evaluate}``.

    Returns:
        The job id (at once; see ``wait_for_backfill_job``), or with ``dry_run`` the
        number of traces each scorer would evaluate.

    Raises:
        ConfigurationError: ``scorers`` is empty or malformed, a scorer is listed twice,
            a scorer is not active and has no explicit ``sample_rate``, a time is not a
            datetime or epoch ms, or ``start_time`` is not before ``end_time``.
        ScorerNotFoundError: a scorer name (or a Scorer's version) is not registered.
        NotFoundError: ``experiment_id`` does not exist.
    """
    configs = _configs(scorers)
    rescore, dry_run = _flag(rescore, "rescore"), _flag(dry_run, "dry_run")
    start_ms = _clock.to_epoch_ms(start_time, argument="start_time")
    end_ms = _clock.to_epoch_ms(end_time, argument="end_time")
    if start_ms is not None and end_ms is not None and start_ms >= end_ms:
        raise ConfigurationError(
            f"start_time ({_clock.datetime_from_ms(start_ms).isoformat()}) must be before "
            f"end_time ({_clock.datetime_from_ms(end_ms).isoformat()}): the range is "
            "[start_time, end_time)."
        )
    runtime = _context.current()
    experiment = _context.resolve_experiment_id(experiment_id)
    specs = [_spec(runtime, experiment, config) for config in configs]
    service = runtime.storage.jobs()
    if dry_run:
        return service.dry_run(experiment, specs, start_ms=start_ms, end_ms=end_ms, rescore=rescore)
    job_id = service.create(experiment, specs, start_ms=start_ms, end_ms=end_ms, rescore=rescore)
    runtime.job_runner().notify()
    return job_id


def _service() -> Jobs:
    return _context.current().storage.jobs()


def _job_id(job_id: object) -> str:
    if not isinstance(job_id, str) or not job_id.strip():
        raise ConfigurationError(
            f"job_id must be a backfill job id string, got {safe_repr(job_id)}."
        )
    return job_id


def get_backfill_job(job_id: str) -> BackfillJob:
    """Return a snapshot of a backfill job: status, progress counts, times, error.

    Raises:
        JobNotFoundError: no job has that id.
        ConfigurationError: ``job_id`` is not a string.
    """
    return _service().get(_job_id(job_id))


def list_backfill_jobs(*, experiment_id: str | None = None) -> list[BackfillJob]:
    """Return the backfill jobs of the experiment (default: the active one), newest first.

    Raises:
        NotFoundError: ``experiment_id`` does not exist.
    """
    experiment = _context.resolve_experiment_id(experiment_id)
    return _service().list(experiment)


def cancel_backfill_job(job_id: str) -> BackfillJob:
    """Stop a backfill job, keeping the feedback it already wrote, and return it.

    A pending job (or one whose process died) is CANCELLED at once. A running one is
    stopped by the process running it, at the next trace; this waits up to 5 seconds
    for that and returns the job as it then is. A finished job is returned unchanged.

    Raises:
        JobNotFoundError: no job has that id.
        ConfigurationError: ``job_id`` is not a string.
    """
    service = _service()
    job = service.cancel(_job_id(job_id))
    deadline = time.monotonic() + _CANCEL_WAIT_SECONDS
    while job.status not in FINAL_STATUSES and time.monotonic() < deadline:
        time.sleep(_POLL_SECONDS)
        job = service.get(job.job_id)
    return job


def wait_for_backfill_job(job_id: str, timeout: float | None = None) -> BackfillJob:
    """Wait until the job is SUCCEEDED, FAILED or CANCELLED, and return it.

    Waiting also runs (or resumes) the job in this process if no other process holds it.

    Raises:
        BackfillTimeoutError: ``timeout`` seconds passed first (a ``TimeoutError``); the
            job keeps running.
        JobNotFoundError: no job has that id.
        ConfigurationError: ``job_id`` is not a string, or ``timeout`` is negative.
    """
    if timeout is not None and (isinstance(timeout, bool) or not timeout >= 0):
        raise ConfigurationError(f"timeout must be None or seconds >= 0, got {timeout!r}.")
    service = _service()
    job = service.get(_job_id(job_id))
    runner = _context.current().job_runner() if job.status not in FINAL_STATUSES else None
    if runner is not None:
        runner.notify()
    deadline = None if timeout is None else time.monotonic() + timeout
    poll = _POLL_SECONDS
    while job.status not in FINAL_STATUSES:
        remaining = poll if deadline is None else deadline - time.monotonic()
        if remaining <= 0:
            raise BackfillTimeoutError(job, timeout or 0.0)
        # Woken at once when this process's runner finishes a job; the poll covers jobs
        # that another process runs.
        assert runner is not None  # noqa: S101 - set whenever the job was unfinished
        runner.wait_finished(min(poll, remaining))
        poll = min(2 * poll, _MAX_POLL_SECONDS)
        job = service.get(job.job_id)
    return job
