"""Importable scorers for the online-evaluation tests (runner, kill, sampling).

They live at module level in an importable module so that they are stored as
``module:qualname`` references and can be loaded by a ``localscorers worker`` process
(run with the repository root on ``PYTHONPATH``). The in-process probes keep their
bookkeeping in module globals guarded by a lock: the monitor runs scorers on threads of
the test's own process.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from typing import Any

import localscorers
from localscorers import Feedback, Scorer, TransientError, scorer

# -- trivial function scorers ---------------------------------------------------------


@scorer
def always_true() -> bool:
    """Return True for every trace."""
    return True


@scorer
def output_length(outputs: Any) -> int:
    """Return the length of the outputs' text."""
    return len(str(outputs))


@scorer
def matches_expected(outputs: Any, expectations: dict[str, Any]) -> bool:
    """Return whether the outputs equal the ``answer`` expectation."""
    return bool(outputs == expectations.get("answer"))


@scorer
def span_names(trace: Any) -> str:
    """Return the trace's span names and tags: it needs the whole Trace."""
    return ",".join(s.name for s in trace.data.spans) + f"|{trace.info.tags.get('env')}"


@scorer
def echo_label(inputs: Any) -> str:
    """Return the input's ``label`` as a string."""
    return str(inputs["label"]) if isinstance(inputs, dict) and "label" in inputs else "none"


@scorer
def ratio_score(outputs: Any) -> float:
    """Return a float."""
    return len(str(outputs)) / 10.0


@scorer
def rich_feedback(outputs: Any) -> Feedback:
    """Return a Feedback with its own (ignored) name, a rationale and metadata."""
    return Feedback(name="ignored", value="good", rationale=f"saw {outputs!r}", metadata={"k": "v"})


@scorer
def multi_feedback(outputs: Any) -> list[Feedback]:
    """Return two feedbacks, one unnamed."""
    return [Feedback(name="length", value=len(str(outputs))), Feedback(value=True)]


class ScorerBoomError(RuntimeError):
    """What ``raising`` raises."""


@scorer
def raising(inputs: Any) -> bool:
    """Raise for every trace."""
    raise ScorerBoomError(f"boom on {inputs!r}")


@scorer
def bad_result() -> object:
    """Return something a scorer may not return."""
    return {"not": "allowed"}


@scorer
def exiting() -> bool:
    """Call ``sys.exit`` (as some libraries do on a fatal configuration error)."""
    sys.exit(3)


# The same instance, already carrying a stored identity, returned for every trace.
_SHARED = Feedback(name="shared", value=1, assessment_id="a-shared", trace_id="tr-elsewhere")


@scorer
def unstorable() -> Feedback:
    """Return a Feedback whose value JSON cannot hold (a tuple as a key)."""
    return Feedback(value={(1, 2): "tuple key"})


@scorer
def reused_feedback() -> Feedback:
    """Return one Feedback instance for every trace, as a caching scorer might."""
    return _SHARED


# -- transient failures ---------------------------------------------------------------

_lock = threading.Lock()
_calls: Counter[str] = Counter()


def calls(key: str) -> int:
    """Return how many times a probe recorded ``key``."""
    with _lock:
        return _calls[key]


def reset() -> None:
    """Forget every probe's bookkeeping and release every hanging scorer."""
    with _lock:
        _calls.clear()
        _active.clear()
        _max_active.clear()
    release.set()


def _count(key: str) -> int:
    with _lock:
        _calls[key] += 1
        return _calls[key]


class Flaky(Scorer):
    """Raise ``TransientError`` ``failures`` times per trace, then return True."""

    failures: int = 2

    def __call__(
        self,
        *,
        inputs: Any = None,
        outputs: Any = None,
        expectations: dict[str, Any] | None = None,
        trace: Any = None,
    ) -> Any:
        """Fail transiently, then succeed."""
        attempt = _count(f"{self.name}:{trace.info.trace_id}")
        if attempt <= self.failures:
            raise TransientError(f"attempt {attempt} of {trace.info.trace_id} rate-limited")
        return True


# -- timeouts and concurrency ---------------------------------------------------------

release = threading.Event()
_active: Counter[str] = Counter()
_max_active: Counter[str] = Counter()


def max_active(name: str) -> int:
    """Return the most calls of scorer ``name`` seen running at once."""
    with _lock:
        return _max_active[name]


class Probe(Scorer):
    """Record concurrent entries, hold for ``hold_seconds``, and return True.

    ``timeout_seconds`` and ``max_concurrency`` are stored with the config, where the
    runner reads them.
    """

    hold_seconds: float = 0.05
    timeout_seconds: float | None = None
    max_concurrency: int | None = None

    def __call__(
        self,
        *,
        inputs: Any = None,
        outputs: Any = None,
        expectations: dict[str, Any] | None = None,
        trace: Any = None,
    ) -> Any:
        """Count this call as running, hold, then stop counting it."""
        with _lock:
            _active[self.name] += 1
            _max_active[self.name] = max(_max_active[self.name], _active[self.name])
            _calls[self.name] += 1
        try:
            time.sleep(self.hold_seconds)
        finally:
            with _lock:
                _active[self.name] -= 1
        return True


class Hang(Scorer):
    """Block until ``release`` is set (at most ``cap_seconds``); used to hit timeouts."""

    cap_seconds: float = 10.0
    timeout_seconds: float | None = None
    max_concurrency: int | None = None

    def __call__(
        self,
        *,
        inputs: Any = None,
        outputs: Any = None,
        expectations: dict[str, Any] | None = None,
        trace: Any = None,
    ) -> Any:
        """Wait for the test to release us."""
        _count(self.name)
        release.wait(self.cap_seconds)
        _count(f"{self.name}:done")
        return "late"


# -- across processes -----------------------------------------------------------------


class Sleepy(Scorer):
    """Sleep ``delay_seconds`` and return the pid that scored (for worker tests)."""

    delay_seconds: float = 0.2

    def __call__(
        self,
        *,
        inputs: Any = None,
        outputs: Any = None,
        expectations: dict[str, Any] | None = None,
        trace: Any = None,
    ) -> Any:
        """Sleep, then say which process scored."""
        time.sleep(self.delay_seconds)
        return Feedback(value=True, metadata={"pid": os.getpid()})


@scorer
def crash() -> bool:
    """Kill the process that runs it, as a native crash would (no exception, no cleanup)."""
    os._exit(17)


@scorer
def start_thread() -> bool:
    """Start a non-daemon thread that outlives the call by an hour, then return True."""
    threading.Thread(target=time.sleep, args=(3600,), daemon=False).start()
    return True


# -- running a worker process -----------------------------------------------------------

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def subprocess_env(**extra: str) -> dict[str, str]:
    """Return an environment in which a child process imports this module and localscorers."""
    env = dict(os.environ)
    for key in [k for k in env if k.startswith("LOCALSCORERS_")]:
        del env[key]
    paths = [REPO_ROOT, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(extra)
    return env


def worker_command(db: os.PathLike[str] | str, *, drain: bool = True) -> list[str]:
    """Return the command line of ``localscorers worker`` over ``db``."""
    command = [sys.executable, "-m", "localscorers", "--db", os.fspath(db), "worker"]
    return [*command, "--drain"] if drain else command


def log_main(argv: list[str]) -> None:
    """An application process: ``DB LIMIT [GATE]`` logs up to LIMIT traces, one line each.

    With GATE, it first waits for that file to exist, so several processes start together.
    Each committed trace is reported on stdout as ``<count> <trace id>``.
    """
    db, limit = argv[0], int(argv[1])
    gate = argv[2] if len(argv) > 2 else None
    localscorers.set_tracking_uri(db)
    if gate is not None:
        deadline = time.monotonic() + 60
        while not os.path.exists(gate):
            if time.monotonic() > deadline:
                raise SystemExit(f"gate {gate} never opened")
            time.sleep(0.005)
    pid = os.getpid()
    for count in range(1, limit + 1):
        trace_id = localscorers.log_trace(
            inputs={"pid": pid, "i": count}, outputs="x" * (count % 7), tags={"pid": str(pid)}
        )
        sys.stdout.write(f"{count} {trace_id}\n")
        sys.stdout.flush()


def log_command(db: os.PathLike[str] | str, limit: int, gate: str | None = None) -> list[str]:
    """Return the command line of an application process running :func:`log_main`."""
    args = [os.fspath(db), str(limit), *([gate] if gate else [])]
    code = "import sys; from tests.scorer_helpers_online import log_main; log_main(sys.argv[1:])"
    return [sys.executable, "-c", code, *args]
