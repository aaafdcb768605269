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
    "DatabaseCorruptError",
    "DatabaseError",
    "DatabaseMovedError",
    "DatabaseNotFoundError",
    "DatabaseReadOnlyError",
    "DiskFullError",
    "FilterSyntaxError",
    "InvalidTransitionError",
    "JobNotFoundError",
    "JudgeModelWarning",
    "LocalScorersError",
    "MissingColumnsError",
    "ModelNotConfiguredError",
    "ModelRequestError",
    "NotADatabaseError",
    "NotFoundError",
    "ProviderUnavailableError",
    "SchemaVersionError",
    "ScorerExecutionError",
    "ScorerLimitError",
    "ScorerLoadError",
    "ScorerNotFoundError",
    "StoreError",
    "TraceImportError",
    "TraceNotFoundError",
    "TransactionError",
    "TransientError",
    "UnparseableAnswerError",
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


class DatabaseError(StoreError):
    """The database file itself cannot be used: missing, read-only, full, corrupt or moved.

    Attributes:
        path: the database file.
        detail: what the operating system or SQLite said.
    """

    problem = "cannot be used"
    fix = "Check the path given to set_tracking_uri() or LOCALSCORERS_TRACKING_URI."

    def __init__(self, *, path: str, detail: str = "") -> None:
        self.path = path
        self.detail = detail
        said = f" ({detail})" if detail else ""
        super().__init__(f"The database {path} {self.problem}{said}. {self.fix}")


class DatabaseNotFoundError(DatabaseError):
    """The database file or its directory does not exist and cannot be created."""

    problem = "does not exist and cannot be created"
    fix = (
        "Create its directory (mkdir -p), or point set_tracking_uri() / "
        "LOCALSCORERS_TRACKING_URI at a file in a directory that exists."
    )


class DatabaseReadOnlyError(DatabaseError):
    """The database file or its directory cannot be written by this user."""

    problem = "is read-only for this process"
    fix = (
        "Give your user write permission on the file and its directory (SQLite writes "
        "-wal and -shm files next to it), or use another database path."
    )


class DiskFullError(DatabaseError):
    """The disk (or the user's quota) holding the database is full."""

    problem = "cannot grow: the disk or quota is full"
    fix = "Free disk space (or raise the quota), then retry; nothing partial was written."


class DatabaseCorruptError(DatabaseError):
    """The database file is damaged."""

    problem = "is corrupt"
    fix = (
        "Restore it from a backup, or move it aside and let localscorers create a new "
        "one; 'sqlite3 FILE .recover' may salvage its rows."
    )


class NotADatabaseError(DatabaseCorruptError):
    """The file is not a SQLite database (or is encrypted)."""

    problem = "is not a SQLite database"
    fix = (
        "Point set_tracking_uri() / LOCALSCORERS_TRACKING_URI at a localscorers database "
        "file, or at a path that does not exist yet to create one."
    )


class DatabaseMovedError(DatabaseError):
    """The database file was deleted or replaced while this process had it open.

    Writing on would put data into a file no path leads to, so the write is refused.
    """

    problem = "was deleted or replaced while this process had it open"
    fix = (
        "Nothing was written. Restore the file, or call set_tracking_uri() again to open "
        "the file now at that path (a new, empty one if it is gone)."
    )


class TraceImportError(ConfigurationError):
    """A trace file that ``import_traces`` cannot import; nothing of that file was written.

    Attributes:
        file: the file.
        line: the line (JSON lines) or trace position (a JSON list), when known.
        field: the offending field, when known.
    """

    def __init__(
        self, message: str, *, file: str, line: int | None = None, field: str | None = None
    ) -> None:
        self.file = file
        self.line = line
        self.field = field
        super().__init__(message)


class ScorerLoadError(ConfigurationError):
    """A stored scorer definition cannot be turned back into a runnable scorer."""


class ScorerExecutionError(LocalScorersError):
    """A scorer failed in ``evaluate(..., raise_on_error=True)``.

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


class JudgeModelWarning(UserWarning):
    """A judge was started with no model to ask: its evaluations will record errors.

    Emitted by ``start()`` of an LLM judge built without ``model=`` while
    ``LOCALSCORERS_JUDGE_MODEL`` is not set. The message says how to configure one.
    """


class MissingColumnsError(ConfigurationError):
    """A judge was given data without the columns it needs (MLflow's MissingColumnsException).

    Attributes:
        scorer: the judge's name.
        missing_columns: the columns it needs and did not get.
    """

    def __init__(self, scorer: str, missing_columns: set[str]) -> None:
        self.scorer = scorer
        self.missing_columns = missing_columns
        super().__init__(
            f"Judge {scorer!r} needs the column(s) {sorted(missing_columns)} in its data. "
            "Add them to every row (or log them on the traces), or leave the judge out."
        )


class ModelNotConfiguredError(ConfigurationError):
    """No judge model was given and ``LOCALSCORERS_JUDGE_MODEL`` is not set."""

    error_code = "JUDGE_MODEL_NOT_CONFIGURED"

    def __init__(self) -> None:
        super().__init__(
            "No judge model is configured. Pass model= to the judge (for example "
            "model='openai:/llama3'), or set LOCALSCORERS_JUDGE_MODEL, e.g. "
            "LOCALSCORERS_JUDGE_MODEL=openai:/llama3 with "
            "OPENAI_BASE_URL=http://localhost:8080/v1 for a local llama.cpp or vLLM "
            "server, or LOCALSCORERS_JUDGE_MODEL=ollama:/llama3 for Ollama."
        )


class ProviderUnavailableError(ConfigurationError):
    """The judge's model names a provider this installation cannot reach.

    Raised when a judge runs, never when it is built, so a judge naming such a model
    can still be registered (from code written for MLflow, say); its evaluations
    record this as an error feedback.

    Attributes:
        error_code: the code recorded on the error feedback.
    """

    def __init__(self, message: str, *, error_code: str = "JUDGE_PROVIDER_UNAVAILABLE") -> None:
        self.error_code = error_code
        super().__init__(message)


class ModelRequestError(LocalScorersError):
    """The judge model's server refused the request (an HTTP 4xx other than 429).

    Retrying would get the same answer, so the evaluator records it at once.

    Attributes:
        status_code: the HTTP status, or None when the answer was not the expected JSON.
        error_code: the code recorded on the error feedback.
    """

    def __init__(
        self, message: str, *, status_code: int | None, error_code: str = "JUDGE_REQUEST_REJECTED"
    ) -> None:
        self.status_code = status_code
        self.error_code = error_code
        super().__init__(message)


class UnparseableAnswerError(LocalScorersError, ValueError):
    """The judge model's answer holds no usable ``{"result": ..., "rationale": ...}``."""


class LeaseLostError(StoreError):
    """Another holder took a backfill job over (our lease had expired): drop what we hold.

    Internal: the job runner catches it and lets the new holder go on.
    """
