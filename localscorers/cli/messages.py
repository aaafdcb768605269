"""Error messages on the command line: one line that names commands, not Python calls.

The library's messages tell a Python user what to call (``scorer.register()``,
``set_experiment(name=...)``); the command line rewrites those into the command or
option that fixes the same thing, and experiment ids into names.
"""

from __future__ import annotations

import re

from localscorers import _context
from localscorers.exceptions import FilterSyntaxError, LocalScorersError

__all__ = ["one_line"]


# The library's messages name Python calls; on the command line the fix is a command.
_COMMANDS = (
    ("Register it first (scorer.register())", "Register it first"),
    ("Call register() first.", "Register it first ('localscorers scorers register-builtin')."),
    ("or register() it first", "or register it with 'localscorers scorers register-builtin'"),
    ("list_scorers()", "'localscorers scorers list'"),
    ("list_backfill_jobs()", "'localscorers jobs list'"),
    ("cancel_backfill_job()", "'localscorers jobs cancel JOB_ID'"),
    ("call stop()", "run 'localscorers scorers stop NAME'"),
    ("or stop() to score none", "or 'localscorers scorers stop NAME' to score none"),
    ("set_tracking_uri() / LOCALSCORERS_TRACKING_URI", "--db (or LOCALSCORERS_TRACKING_URI)"),
    ("set_tracking_uri() or LOCALSCORERS_TRACKING_URI", "--db (or LOCALSCORERS_TRACKING_URI)"),
    ("call set_tracking_uri() again", "run the command again"),
    ("set_experiment(name='...')", "-e NAME"),
    ("set_experiment(name)", "-e NAME"),
    ("session_idle_seconds must be", "--session-idle-seconds must be"),
)
_EXPERIMENT_ID = re.compile(r"\b([Ee]xperiment) '([^']*)'")
# Calls that carry a name: the same fix, as a command with that name filled in.
_PATTERNS = (
    (re.compile(r"\bCannot (start|update|stop|register|delete)\(\) scorer"), r"Cannot \1 scorer"),
    (
        re.compile(
            r"Pass BackfillScorerConfig\(scorer='([^']*)', sample_rate=\.\.\.\) "
            r"or start\(\) it first"
        ),
        r"Pass --scorer \1=RATE, or run 'localscorers scorers start \1' first",
    ),
    (re.compile(r"\b(start|update)\(\) needs a sample_rate"), r"\1 needs a --sample-rate"),
    (
        re.compile(r"Use start\(sampling_config=\.\.\.\) to activate it"),
        "Run 'localscorers scorers start NAME' to activate it",
    ),
    (re.compile(r"delete_scorer\(name=\.\.\.\)"), "'localscorers scorers delete NAME'"),
    (re.compile(r"the tracking URI \(get_tracking_uri\(\)\)"), "--db"),
)


def _filter_line(exc: FilterSyntaxError) -> str:
    # One line still shows where: the filter with a marker before the offending token.
    text, at = exc.filter_string, exc.position
    shown = repr(exc.token) if exc.token else "end of input"
    return (
        f"Invalid filter at position {at}: found {shown}, expected {exc.expected}: "
        f"{text[:at]}>>>{text[at:]} (see the README section 'Filter strings')."
    )


def one_line(exc: LocalScorersError) -> str:
    """Return a user error as one line that names commands rather than Python calls."""
    message = _filter_line(exc) if isinstance(exc, FilterSyntaxError) else str(exc)
    message = " ".join(message.split())
    for pattern, replacement in _PATTERNS:
        message = pattern.sub(replacement, message)
    for call, command in _COMMANDS:
        message = message.replace(call, command)
    names = _experiment_names()
    if names:
        message = _EXPERIMENT_ID.sub(
            lambda m: f"{m[1]} {names.get(m[2], m[2])!r}",
            message,
        )
    return message


def _experiment_names() -> dict[str, str]:
    # Messages from the store carry experiment ids; users know names. Only an already
    # open database is asked: an error path must not open (or create) one.
    runtime = _context.existing()
    if runtime is None:
        return {}
    try:
        return {e.experiment_id: e.name for e in runtime.store.list_experiments()}
    except LocalScorersError:
        return {}
