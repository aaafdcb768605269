"""The error tree: one root, with the matching built-in mixed in where natural.

Every error a user can cause derives from :class:`LocalScorersError`, so one
``except LocalScorersError`` catches them all, and from the built-in that fits
(``ValueError`` for bad input, ``LookupError`` for unknown names and ids), so code
written against MLflow's exceptions keeps working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from localscorers.models import BackfillJob

__all__ = [
    "BackfillTimeoutError",
    "ConfigurationError",
    "ConflictError",
    "DatabaseBusyError",
    "FilterSyntaxError",
    "InvalidTransitionError",
    "JobNotFoundError",
    "LocalScorersError",
    "NotFoundError",
    "SchemaVersionError",
    "ScorerExecutionError",
    "ScorerLimitError",
    "ScorerLoadError",
    "ScorerNotFoundError",
    "StoreError",
    "TraceNotFoundError",
    "TransactionError",
    "TransientError",
]


class LocalScorersError(Exception):
    """Root of every error localscorers raises on purpose."""


class ConfigurationError(LocalScorersError, ValueError):
    """A bad argument or setting: the message names the value and the fix."""


class FilterSyntaxError(ConfigurationError):
    """A filter string that does not parse.

    Attributes:
        filter_string: the text that was given.
        position: zero-based offset of the offending token.
        token: the offending token's text (empty at the end of input).
        expected: what the parser expected instead.
    """

    def __init__(self, filter_string: str, position: int, token: str, expected: str) -> None:
        self.filter_string = filter_string
        self.position = position
        self.token = token
        self.expected = expected
        shown = repr(token) if token else "end of input"
        caret = " " * position + "^"
        super().__init__(
            f"Invalid filter at position {position}: found {shown}, expected {expected}.\n"
            f"  {filter_string}\n  {caret}\n"
            "Fix the filter; see the README section 'Filter strings' for the grammar."
        )


class ScorerLimitError(ConfigurationError):
    """An experiment already holds the maximum number of scorer names."""


class NotFoundError(LocalScorersError, LookupError):
    """Something looked up by name or id does not exist."""


class ScorerNotFoundError(NotFoundError):
    """No registered scorer has that name (or version) in the experiment."""


class TraceNotFoundError(NotFoundError):
    """No trace has that id."""


class JobNotFoundError(NotFoundError):
    """No backfill job has that id."""


class ConflictError(LocalScorersError):
    """The request conflicts with the current state."""


class InvalidTransitionError(ConflictError, ValueError):
    """A lifecycle call that the scorer's current state does not allow.

    Attributes:
        current: the scorer's status when the call was made.
        action: the lifecycle call that was refused.
    """

    def __init__(self, *, name: str, current: str, action: str, hint: str) -> None:
        self.name = name
        self.current = current
        self.action = action
        super().__init__(f"Cannot {action}() scorer {name!r}: it is {current}. {hint}")


class StoreError(LocalScorersError):
    """The database could not do what was asked."""


class DatabaseBusyError(StoreError):
    """Another writer held the database for longer than the busy timeout.

    Attributes:
        timeout: the busy timeout in seconds that ran out.
    """

    def __init__(self, *, timeout: float, detail: str) -> None:
        self.timeout = timeout
        super().__init__(
            f"The database stayed locked by another writer for more than {timeout:g} s "
            f"({detail}). Raise LOCALSCORERS_BUSY_TIMEOUT or find the process holding "
            "a long write transaction."
        )


class SchemaVersionError(StoreError):
    """The database was written by a newer localscorers than this one.

    Attributes:
        found: the schema version stored in the database.
        expected: the newest schema version this code knows.
    """

    def __init__(self, *, path: str, found: int, expected: int) -> None:
        self.found = found
        self.expected = expected
        super().__init__(
            f"The database {path} has schema version {found}, but this localscorers "
            f"expects version {expected} or lower: it was written by a newer localscorers. "
            "Upgrade localscorers (pip install -U localscorers), or take a backup and point "
            "LOCALSCORERS_TRACKING_URI at another database."
        )


class TransactionError(StoreError):
    """An operation that cannot run inside an open transaction."""


class ScorerLoadError(ConfigurationError):
    """A stored scorer definition cannot be turned back into a runnable scorer."""


class ScorerExecutionError(LocalScorersError):
    """A scorer raised while being run with ``raise_on_error=True``.

    Attributes:
        scorer: the scorer's name.
        trace_id: the trace it was scoring.
    """

    def __init__(self, *, scorer: str, trace_id: str, detail: str) -> None:
        self.scorer = scorer
        self.trace_id = trace_id
        super().__init__(f"Scorer {scorer!r} failed on trace {trace_id}: {detail}")


class TransientError(LocalScorersError):
    """Raise from a scorer for a failure worth retrying (timeouts, HTTP 429 / 5xx).

    The evaluator retries it with exponential backoff and jitter up to its limit,
    then records it as an error feedback.

    Attributes:
        retry_after: seconds the remote side asked us to wait, if it said.
        error_code: the code recorded if retries run out.
    """

    def __init__(
        self, message: str, *, retry_after: float | None = None, error_code: str = "TRANSIENT_ERROR"
    ) -> None:
        self.retry_after = retry_after
        self.error_code = error_code
        super().__init__(message)


class BackfillTimeoutError(LocalScorersError, TimeoutError):
    """``wait_for_backfill_job`` ran out of time; the job keeps running.

    Attributes:
        job: the job as it was when the wait gave up.
        timeout: the seconds waited.
    """

    def __init__(self, job: BackfillJob, timeout: float) -> None:
        self.job = job
        self.timeout = timeout
        super().__init__(
            f"Backfill job {job.job_id} is still {job.status} after {timeout:g} s "
            f"({job.processed} of {job.total} pairs processed). It keeps running: wait "
            "again, or stop it with cancel_backfill_job()."
        )
