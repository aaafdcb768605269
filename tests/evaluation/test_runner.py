"""Online evaluation through the public API, on real SQLite files (DESIGN.md section 7).

Every test opens its own database in ``tmp_path``; settings come from the
``LOCALSCORERS_*`` variables, set before the database is opened. Waiting is done with
``flush`` or by polling with a deadline, never by sleeping a fixed time.
"""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import localscorers
from localscorers import (
    ExplainOutcome,
    Feedback,
    ScorerSamplingConfig,
    ScorerStatus,
    TraceNotFoundError,
    _clock,
    _context,
)
from localscorers.sampling import Decision, decide, is_sampled
from localscorers.store import Outcome, requests
from tests import scorer_helpers_online as helpers

FLUSH_TIMEOUT = 30.0

OpenDb = Callable[..., Path]


@pytest.fixture
def open_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenDb]:
    """Return ``open(**env)``: set ``LOCALSCORERS_<KEY>`` variables, then the tracking URI."""
    helpers.reset()
    helpers.release.clear()

    def _open(**env: str) -> Path:
        defaults = {"BACKOFF_SECONDS": "0", "EXIT_WAIT_SECONDS": "1"}
        for key, value in {**defaults, **env}.items():
            monkeypatch.setenv(f"LOCALSCORERS_{key}", value)
        path = tmp_path / "r.db"
        localscorers.set_tracking_uri(path)
        return path

    yield _open
    helpers.release.set()  # before conftest's reset closes the monitor


@pytest.fixture
def db(open_db: OpenDb) -> Path:
    return open_db()


def fraction(trace_id: str, scorer_name: str) -> float:
    """Sampling v1, recomputed independently of localscorers.sampling."""
    digest = hashlib.sha256(f"{trace_id}\0{scorer_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def online_feedback(trace_id: str, scorer_name: str) -> list[Feedback]:
    return [
        a
        for a in localscorers.get_trace(trace_id).info.assessments
        if isinstance(a, Feedback) and a.scorer_name == scorer_name and a.origin == "online"
    ]


def one_feedback(trace_id: str, scorer_name: str) -> Feedback:
    found = online_feedback(trace_id, scorer_name)
    assert len(found) == 1, found
    return found[0]


def wait_until(condition: Callable[[], bool], *, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.01)


def flush() -> None:
    assert localscorers.flush(timeout=FLUSH_TIMEOUT), "pending work did not finish in time"


def outcomes(trace_id: str) -> dict[str, ExplainOutcome]:
    return {e.scorer_name: e.outcome for e in localscorers.explain(trace_id)}


def monitor_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("localscorers")]


# -- feedback -------------------------------------------------------------------------


def test_feedback_is_named_after_the_registered_scorer_with_provenance(db: Path) -> None:
    registered = helpers.always_true.register(name="quality")
    registered.start()

    trace_id = localscorers.log_trace(inputs={"q": "hi"}, outputs="hello")
    flush()

    feedback = one_feedback(trace_id, "quality")
    assert feedback.name == "quality"
    assert feedback.value is True
    assert feedback.error is None
    assert feedback.scorer_version == 1
    assert feedback.origin == "online"
    assert feedback.trace_id == trace_id
    assert feedback.source is not None
    assert feedback.source.source_type == "CODE"
    assert feedback.source.source_id == "quality"


def test_feedback_carries_the_version_that_was_active(db: Path) -> None:
    helpers.Probe(name="probe", hold_seconds=0.0).register().start()
    first = localscorers.log_trace(inputs=1, outputs=1)
    changed = helpers.Probe(name="probe", hold_seconds=0.001).register()
    assert changed.version == 2
    assert changed.status == ScorerStatus.ACTIVE
    second = localscorers.log_trace(inputs=2, outputs=2)
    flush()

    assert one_feedback(first, "probe").scorer_version == 1
    assert one_feedback(second, "probe").scorer_version == 2


def test_scorers_get_expectations_and_the_whole_trace_when_they_ask(
    open_db: OpenDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The runner hands a light stand-in (inputs, outputs, expectations) to function
    # scorers without a ``trace`` parameter, and the whole Trace to the others.
    path = open_db(MONITOR="off")
    helpers.matches_expected.register().start()
    helpers.span_names.register().start()
    helpers.output_length.register().start()
    right = localscorers.log_trace(inputs="q", outputs="Paris", name="ask", tags={"env": "prod"})
    wrong = localscorers.log_trace(inputs="q", outputs="Lyon", name="ask")
    for trace_id in (right, wrong):
        localscorers.log_expectation(trace_id=trace_id, name="answer", value="Paris")

    monkeypatch.setenv("LOCALSCORERS_MONITOR", "on")
    _context.reset()
    localscorers.set_tracking_uri(path)
    flush()
    assert one_feedback(right, "matches_expected").value is True
    assert one_feedback(wrong, "matches_expected").value is False
    assert one_feedback(right, "span_names").value == "ask|prod"
    assert one_feedback(wrong, "span_names").value == "ask|None"
    assert one_feedback(right, "output_length").value == 5


def test_every_kind_of_result_becomes_feedback(db: Path) -> None:
    for made in (
        helpers.always_true,
        helpers.output_length,
        helpers.ratio_score,
        helpers.echo_label,
        helpers.rich_feedback,
        helpers.multi_feedback,
        helpers.bad_result,
    ):
        made.register().start()

    trace_id = localscorers.log_trace(inputs={"label": "x"}, outputs="hello")
    flush()

    assert one_feedback(trace_id, "always_true").value is True
    assert one_feedback(trace_id, "output_length").value == 5
    assert one_feedback(trace_id, "ratio_score").value == pytest.approx(0.5)
    assert one_feedback(trace_id, "echo_label").value == "x"

    rich = one_feedback(trace_id, "rich_feedback")
    assert rich.name == "rich_feedback"  # a single Feedback takes the registered name
    assert rich.value == "good"
    assert rich.rationale == "saw 'hello'"
    assert rich.metadata == {"k": "v"}

    multi = online_feedback(trace_id, "multi_feedback")
    assert {(f.name, f.value) for f in multi} == {("length", 5), ("multi_feedback", True)}
    assert {f.scorer_version for f in multi} == {1}

    bad = one_feedback(trace_id, "bad_result")
    assert bad.error is not None
    assert bad.error.error_code == "INVALID_SCORER_RESULT"
    assert outcomes(trace_id)["bad_result"] == ExplainOutcome.FAILED


def test_a_raising_scorer_yields_error_feedback(db: Path) -> None:
    helpers.raising.register().start()
    trace_id = localscorers.log_trace(inputs="in", outputs="out")
    flush()

    feedback = one_feedback(trace_id, "raising")
    assert feedback.value is None
    assert feedback.error is not None
    assert feedback.error.error_code == "ScorerBoomError"
    assert feedback.error.error_message == "boom on 'in'"
    assert feedback.error.stack_trace is not None
    assert "Traceback (most recent call last)" in feedback.error.stack_trace
    assert "in raising" in feedback.error.stack_trace
    assert "ScorerBoomError: boom on 'in'" in feedback.error.stack_trace


# -- retries and timeouts -------------------------------------------------------------


def test_transient_errors_are_retried_until_success(open_db: OpenDb) -> None:
    open_db(MAX_ATTEMPTS="4")
    helpers.Flaky(name="flaky", failures=2).register().start()
    trace_id = localscorers.log_trace(inputs=1, outputs=1)
    flush()

    feedback = one_feedback(trace_id, "flaky")
    assert feedback.error is None
    assert feedback.value is True
    assert helpers.calls(f"flaky:{trace_id}") == 3
    assert outcomes(trace_id)["flaky"] == ExplainOutcome.SUCCEEDED


def test_transient_errors_give_up_after_max_attempts(open_db: OpenDb) -> None:
    open_db(MAX_ATTEMPTS="3")
    helpers.Flaky(name="flaky", failures=1000).register().start()
    trace_id = localscorers.log_trace(inputs=1, outputs=1)
    flush()

    feedback = one_feedback(trace_id, "flaky")
    assert feedback.error is not None
    assert feedback.error.error_code == "TRANSIENT_ERROR"
    assert "rate-limited" in (feedback.error.error_message or "")
    assert helpers.calls(f"flaky:{trace_id}") == 3
    assert outcomes(trace_id)["flaky"] == ExplainOutcome.FAILED


@pytest.mark.parametrize("where", ["scorer", "environment"])
def test_a_scorer_past_its_timeout_yields_a_timeout_error(open_db: OpenDb, where: str) -> None:
    if where == "scorer":
        open_db()
        helpers.Hang(name="hang", timeout_seconds=0.2).register().start()
    else:
        open_db(SCORER_TIMEOUT="0.2")
        helpers.Hang(name="hang").register().start()
    trace_id = localscorers.log_trace(inputs=1, outputs=1)
    flush()

    feedback = one_feedback(trace_id, "hang")
    assert feedback.error is not None
    assert feedback.error.error_code == "SCORER_TIMEOUT"
    assert "timeout" in (feedback.error.error_message or "")

    # The late result of the abandoned call is dropped, not written as a second feedback.
    helpers.release.set()
    wait_until(lambda: helpers.calls("hang:done") == 1)
    other = localscorers.log_trace(inputs=2, outputs=2)
    flush()
    assert one_feedback(other, "hang").value == "late"
    assert len(online_feedback(trace_id, "hang")) == 1


def test_a_timeout_is_recorded_while_the_abandoned_call_still_holds_every_thread(
    open_db: OpenDb,
) -> None:
    open_db(MAX_WORKERS="1")
    helpers.Hang(name="hang", timeout_seconds=0.2).register().start()
    trace_id = localscorers.log_trace(inputs=1, outputs=1)
    wait_until(lambda: bool(online_feedback(trace_id, "hang")))
    assert helpers.calls("hang:done") == 0  # the call is still blocked
    feedback = one_feedback(trace_id, "hang")
    assert feedback.error is not None
    assert feedback.error.error_code == "SCORER_TIMEOUT"
    helpers.release.set()


def test_max_concurrency_is_respected(open_db: OpenDb) -> None:
    open_db(MAX_WORKERS="8")
    helpers.Probe(name="serial", hold_seconds=0.02, max_concurrency=1).register().start()
    helpers.Probe(name="three", hold_seconds=0.02, max_concurrency=3).register().start()
    helpers.Probe(name="free", hold_seconds=0.05).register().start()
    traces = [localscorers.log_trace(inputs=i, outputs=i) for i in range(12)]
    flush()

    for name in ("serial", "three", "free"):
        assert helpers.calls(name) == len(traces)
        assert all(one_feedback(t, name).value is True for t in traces)
    assert helpers.max_active("serial") == 1
    assert helpers.max_active("three") <= 3
    # The control: without a limit the pool does run one scorer's calls in parallel.
    assert helpers.max_active("free") > 1


def test_a_scorer_at_its_concurrency_limit_does_not_hold_up_the_others(
    open_db: OpenDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "gate" runs one call at a time and its first call blocks until released. The work
    # is all pending before the monitor starts, so its first claims hold many "gate"
    # rows that must wait; every "always_true" evaluation must still run meanwhile.
    open_db(MAX_WORKERS="4", MONITOR="off")
    helpers.Hang(name="gate", max_concurrency=1).register().start()
    helpers.always_true.register().start()
    traces = [localscorers.log_trace(inputs=i, outputs=i) for i in range(30)]
    monkeypatch.setenv("LOCALSCORERS_MONITOR", "on")
    assert localscorers.flush(timeout=0.01) is False  # starts the monitor
    wait_until(lambda: all(online_feedback(t, "always_true") for t in traces))
    assert helpers.calls("gate") == 1

    helpers.release.set()
    flush()
    assert helpers.calls("gate") == len(traces)
    assert all(one_feedback(t, "gate").value == "late" for t in traces)


# -- lifecycle and the enqueue path ---------------------------------------------------


def test_stop_stops_new_enqueues_and_start_resumes(db: Path) -> None:
    active = helpers.always_true.register().start()
    before = localscorers.log_trace(inputs=1, outputs=1)
    stopped = active.stop()
    assert stopped.status == ScorerStatus.STOPPED
    during = localscorers.log_trace(inputs=2, outputs=2)
    stopped.start()
    after = localscorers.log_trace(inputs=3, outputs=3)
    flush()

    assert one_feedback(before, "always_true").value is True
    assert online_feedback(during, "always_true") == []
    assert one_feedback(after, "always_true").value is True
    entry = localscorers.explain(during)[0]
    assert entry.outcome == ExplainOutcome.NOT_ACTIVE
    assert "STOPPED" in entry.detail


def test_update_changes_the_rate_for_new_traces_only(db: Path) -> None:
    active = helpers.always_true.register().start(
        sampling_config=ScorerSamplingConfig(sample_rate=1.0)
    )
    old = [localscorers.log_trace(inputs=i, outputs=i) for i in range(40)]
    active.update(sampling_config=ScorerSamplingConfig(sample_rate=0.3))
    new = [localscorers.log_trace(inputs=i, outputs=i) for i in range(80)]
    flush()

    assert all(len(online_feedback(t, "always_true")) == 1 for t in old)
    scored = {t for t in new if online_feedback(t, "always_true")}
    assert scored == {t for t in new if fraction(t, "always_true") < 0.3}
    assert 0 < len(scored) < len(new)
    for trace_id in set(new) - scored:
        assert outcomes(trace_id)["always_true"] == ExplainOutcome.SAMPLED_OUT


def test_monitor_off_leaves_work_pending_and_flush_waits_for_a_worker(open_db: OpenDb) -> None:
    path = open_db(MONITOR="off")
    helpers.always_true.register().start()
    helpers.output_length.register().start()
    traces = [localscorers.log_trace(inputs=i, outputs="x" * i) for i in range(5)]

    assert not any(t.name == "localscorers-dispatcher" for t in monitor_threads())
    assert set(outcomes(traces[0]).values()) == {ExplainOutcome.PENDING}
    assert localscorers.flush(timeout=0.1) is False

    worker = subprocess.Popen(
        helpers.worker_command(path),
        env=helpers.subprocess_env(),
        cwd=helpers.REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert localscorers.flush(timeout=FLUSH_TIMEOUT) is True
        _out, err = worker.communicate(timeout=FLUSH_TIMEOUT)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0, err
    for i, trace_id in enumerate(traces):
        assert one_feedback(trace_id, "always_true").value is True
        assert one_feedback(trace_id, "output_length").value == i
    assert not any(t.name == "localscorers-dispatcher" for t in monitor_threads())


def test_work_still_in_the_commit_queue_is_counted_once_as_pending(open_db: OpenDb) -> None:
    # A commit writes one compact request per trace; a claim moves it into the ledger.
    # Before, during and after that move, report and explain see the same pending work.
    open_db(MONITOR="off")
    helpers.always_true.register().start()
    helpers.output_length.register().start()
    traces = [localscorers.log_trace(inputs=i, outputs="x" * i) for i in range(3)]

    def pending() -> dict[str, int]:
        return {r.scorer_name: r.pending for r in localscorers.scorer_report()}

    queue = _context.current().storage.queue(owner="test", lease_ms=60_000)
    assert pending() == {"always_true": 3, "output_length": 3}
    assert queue.pending_count() == 6
    claims = queue.claim(2)  # moves the first two requests, leases two of their four rows
    assert [(c.trace_id, c.scorer_name) for c in claims] == [
        (traces[0], "always_true"),
        (traces[0], "output_length"),
    ]
    assert pending() == {"always_true": 3, "output_length": 3}
    assert queue.pending_count() == 6
    assert set(outcomes(traces[1]).values()) == {ExplainOutcome.PENDING}
    assert set(outcomes(traces[2]).values()) == {ExplainOutcome.PENDING}
    more = queue.claim(10)  # the two moved rows left unleased, then the last request
    assert sorted((c.trace_id, c.scorer_name) for c in more) == sorted(
        (t, name) for t in traces[1:] for name in ("always_true", "output_length")
    )
    assert queue.pending_count() == 6
    queue.complete([Outcome(c, feedback=[Feedback(name=c.scorer_name, value=1)]) for c in claims])
    assert pending() == {"always_true": 2, "output_length": 2}
    assert outcomes(traces[0]) == {
        "always_true": ExplainOutcome.SUCCEEDED,
        "output_length": ExplainOutcome.SUCCEEDED,
    }


def test_a_wait_covers_work_committed_before_it_and_nothing_after(open_db: OpenDb) -> None:
    open_db(MONITOR="off")
    helpers.always_true.register().start()
    before = [localscorers.log_trace(inputs=i, outputs=i) for i in range(3)]
    queue = _context.current().storage.queue(owner="test", lease_ms=60_000)
    mark = queue.watermark()
    assert queue.has_pending(since=mark)
    claims = queue.claim(10)  # moves every request, so the requests table is empty
    assert sorted(c.trace_id for c in claims) == sorted(before)
    queue.complete(
        [Outcome(c, feedback=[Feedback(name="always_true", value=True)]) for c in claims]
    )
    # Committed after the mark: its request must not look older than the mark, even
    # though the table was emptied (SQLite reuses rowids unless told not to).
    localscorers.log_trace(inputs="late", outputs="late")
    assert not queue.has_pending(since=mark)
    assert queue.has_pending()
    assert queue.has_pending(since=queue.watermark())


def test_requests_moved_by_another_claimer_after_they_were_read_are_not_lost(
    open_db: OpenDb,
) -> None:
    # A claim reads the oldest requests before taking the write lock; another claimer may
    # move some of them in between. Whatever the interleaving, every pair is in the
    # ledger once and nothing is left behind.
    open_db(MONITOR="off")
    helpers.always_true.register().start()
    helpers.output_length.register().start()
    traces = [localscorers.log_trace(inputs=i, outputs="x" * i) for i in range(3)]
    db = _context.current().db
    read_first = requests.read_requests(db, 10)
    assert read_first is not None
    other = _context.current().storage.queue(owner="other", lease_ms=60_000)
    assert {c.trace_id for c in other.claim(2)} == {traces[0]}  # moves requests 1 and 2
    with db.write() as conn:
        taken = requests.move(conn, read_first, take=10, owner="late", expires=1)
    assert taken == 2  # the two rows of the third request
    assert db.path is not None
    with sqlite3.connect(db.path) as raw:
        rows = raw.execute(
            "SELECT trace_id, scorer_name, lease_owner FROM evaluations ORDER BY id"
        ).fetchall()
    raw.close()
    assert sorted((t, n) for t, n, _ in rows) == sorted(
        (t, n) for t in traces for n in ("always_true", "output_length")
    )
    owners = Counter(owner for _, _, owner in rows)
    assert owners == {"other": 2, None: 2, "late": 2}


def test_a_request_for_a_pair_already_in_the_ledger_is_dropped(
    open_db: OpenDb, tmp_path: Path
) -> None:
    # A backfill may write a pair between a trace's commit and the move of its request:
    # the unique (trace, scorer, version) row it wrote stays the only one.
    path = open_db(MONITOR="off")
    helpers.always_true.register().start()
    trace_id = localscorers.log_trace(inputs=1, outputs=1)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO evaluations (trace_id, experiment_id, scorer_name, scorer_version, "
            "origin, status, attempts, enqueued_ms, not_before_ms, superseded) "
            "VALUES (?, '0', 'always_true', 1, 'job-1', 'SUCCEEDED', 1, 0, 0, 0)",
            (trace_id,),
        )
    conn.close()
    queue = _context.current().storage.queue(owner="test", lease_ms=60_000)
    assert queue.has_pending()
    assert queue.claim(10) == []
    assert not queue.has_pending()
    assert queue.pending_count() == 0
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT origin, status FROM evaluations").fetchall()
        requests = conn.execute("SELECT count(*) FROM evaluation_requests").fetchone()[0]
    conn.close()
    assert (rows, requests) == ([("job-1", "SUCCEEDED")], 0)


def test_closing_the_monitor_mid_call_leaves_the_work_pending_and_unleased(
    open_db: OpenDb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The default lease is 60 s: the worker below finishes in time only if closing the
    # monitor gave the claim back instead of leaving it leased to a monitor that is gone.
    path = open_db(EXIT_WAIT_SECONDS="0.1")
    helpers.Hang(name="hang", cap_seconds=1.0).register().start()
    trace_id = localscorers.log_trace(inputs=1, outputs=1)
    wait_until(lambda: helpers.calls("hang") == 1)

    monkeypatch.setenv("LOCALSCORERS_MONITOR", "off")
    localscorers.set_tracking_uri(tmp_path / "other.db")  # closes the first database's monitor
    localscorers.set_tracking_uri(path)
    assert outcomes(trace_id)["hang"] == ExplainOutcome.PENDING
    assert online_feedback(trace_id, "hang") == []

    worker = subprocess.run(
        helpers.worker_command(path),
        env=helpers.subprocess_env(),
        cwd=helpers.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=FLUSH_TIMEOUT,
        check=False,
    )
    assert worker.returncode == 0, worker.stderr
    assert one_feedback(trace_id, "hang").value == "late"


def test_exit_is_not_held_by_a_stuck_scorer_call_and_leaves_the_work_pending(
    open_db: OpenDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The call below blocks for an hour. Python joins ThreadPoolExecutor threads at exit
    # before atexit handlers run, which made such a process unable to exit at all.
    path = open_db(MONITOR="off")
    code = (
        "import sys, time\n"
        "import localscorers\n"
        "from tests import scorer_helpers_online as helpers\n"
        "localscorers.set_tracking_uri(sys.argv[1])\n"
        "helpers.Hang(name='stuck', cap_seconds=3600).register().start()\n"
        "print(localscorers.log_trace(inputs=1, outputs=1), flush=True)\n"
        "deadline = time.monotonic() + 30\n"
        "while helpers.calls('stuck') < 1:\n"
        "    if time.monotonic() > deadline:\n"
        "        raise SystemExit('the scorer call never started')\n"
        "    time.sleep(0.01)\n"
    )
    started = time.monotonic()
    child = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        env=helpers.subprocess_env(LOCALSCORERS_EXIT_WAIT_SECONDS="0.5"),
        cwd=helpers.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    assert time.monotonic() - started < 60
    trace_id = child.stdout.strip()
    assert outcomes(trace_id)["stuck"] == ExplainOutcome.PENDING
    with sqlite3.connect(path) as conn:
        leases = conn.execute(
            "SELECT status, lease_owner FROM evaluations WHERE trace_id = ?", (trace_id,)
        ).fetchall()
    conn.close()
    assert leases == [("PENDING", None)]  # released: a worker can take it at once


# -- explain --------------------------------------------------------------------------


def test_explain_gives_each_outcome_and_reads_well(db: Path) -> None:
    helpers.always_true.register(name="ok").start()
    helpers.raising.register(name="bad").start()
    helpers.always_true.register(name="filtered").start(
        sampling_config=ScorerSamplingConfig(filter_string="tags.env = 'prod'")
    )
    helpers.always_true.register(name="sampled").start(
        sampling_config=ScorerSamplingConfig(sample_rate=1e-9)
    )
    helpers.always_true.register(name="inactive")
    helpers.Hang(name="slow").register().start()

    trace_id = localscorers.log_trace(inputs=1, outputs=1, tags={"env": "dev"})
    assert fraction(trace_id, "sampled") >= 1e-9
    wait_until(lambda: helpers.calls("slow") == 1)
    assert localscorers.flush(timeout=0.1) is False

    explanation = localscorers.explain(trace_id)
    by_name = {e.scorer_name: e for e in explanation}
    assert [e.scorer_name for e in explanation] == sorted(by_name)
    wait_until(lambda: outcomes(trace_id)["ok"] == ExplainOutcome.SUCCEEDED)
    wait_until(lambda: outcomes(trace_id)["bad"] == ExplainOutcome.FAILED)
    explanation = localscorers.explain(trace_id)
    by_name = {e.scorer_name: e for e in explanation}
    assert {name: e.outcome for name, e in by_name.items()} == {
        "bad": ExplainOutcome.FAILED,
        "filtered": ExplainOutcome.FILTERED_OUT,
        "inactive": ExplainOutcome.NOT_ACTIVE,
        "ok": ExplainOutcome.SUCCEEDED,
        "sampled": ExplainOutcome.SAMPLED_OUT,
        "slow": ExplainOutcome.PENDING,
    }
    assert "ScorerBoomError" in by_name["bad"].detail
    assert "tags.env = 'prod'" in by_name["filtered"].detail
    assert "REGISTERED" in by_name["inactive"].detail
    assert "True" in by_name["ok"].detail

    text = str(explanation)
    assert trace_id in text
    for words in ("filtered out", "sampled out", "not active", "pending", "succeeded", "failed"):
        assert words in text
    for name in by_name:
        assert name in text

    helpers.release.set()
    flush()
    assert outcomes(trace_id)["slow"] == ExplainOutcome.SUCCEEDED


def test_explain_when_a_stop_and_a_start_share_the_traces_millisecond(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Commits and lifecycle events are stamped in milliseconds; freeze the clock (the
    # module that exists to be replaced in tests) to make them share one.
    active = helpers.always_true.register().start()
    frozen = _clock.now_ms() + 1000
    monkeypatch.setattr(_clock, "now_ms", lambda: frozen)
    stopped = active.stop()
    trace_id = localscorers.log_trace(inputs=1, outputs=1)
    stopped.start()

    entry = localscorers.explain(trace_id)[0]
    assert entry.outcome == ExplainOutcome.NOT_ACTIVE
    assert "STOPPED when the trace was logged" in entry.detail


def test_explain_of_an_unknown_trace_raises(db: Path) -> None:
    with pytest.raises(TraceNotFoundError, match="tr-nope"):
        localscorers.explain("tr-nope")


# -- concurrency ----------------------------------------------------------------------


def test_exactly_one_feedback_per_trace_and_scorer_under_concurrent_logging(
    open_db: OpenDb,
) -> None:
    open_db(MAX_WORKERS="4")
    names = ("always_true", "output_length", "probe")
    helpers.always_true.register().start()
    helpers.output_length.register().start()
    helpers.Probe(name="probe", hold_seconds=0.0).register().start()
    threads, per_thread = 8, 25
    barrier = threading.Barrier(threads)
    logged: list[list[str]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []

    def app(index: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                logged[index].append(
                    localscorers.log_trace(inputs={"t": index, "i": i}, outputs="o" * i)
                )
        except BaseException as exc:  # reported below, in the test's own thread
            errors.append(exc)

    workers = [threading.Thread(target=app, args=(n,)) for n in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=FLUSH_TIMEOUT)
    assert not errors
    trace_ids = [t for batch in logged for t in batch]
    assert len(set(trace_ids)) == threads * per_thread
    flush()

    counts: Counter[tuple[str, str, int | None]] = Counter()
    for trace in localscorers.search_traces():
        for a in trace.info.assessments:
            if isinstance(a, Feedback) and a.origin == "online":
                counts[(trace.info.trace_id, a.scorer_name or "", a.scorer_version)] += 1
    expected = {(t, name, 1) for t in trace_ids for name in names}
    assert set(counts) == expected
    assert set(counts.values()) == {1}
    assert helpers.calls("probe") == len(trace_ids)


# -- robustness -----------------------------------------------------------------------


def test_a_scorer_calling_sys_exit_yields_error_feedback_and_the_monitor_lives_on(
    db: Path,
) -> None:
    helpers.exiting.register().start()
    helpers.always_true.register().start()
    first = localscorers.log_trace(inputs=1, outputs=1)
    flush()
    feedback = one_feedback(first, "exiting")
    assert feedback.error is not None
    assert feedback.error.error_code == "SystemExit"

    second = localscorers.log_trace(inputs=2, outputs=2)
    flush()
    assert one_feedback(second, "always_true").value is True
    assert one_feedback(second, "exiting").error is not None


def test_a_reused_feedback_instance_is_stored_once_per_trace(db: Path) -> None:
    helpers.reused_feedback.register().start()
    traces = [localscorers.log_trace(inputs=i, outputs=i) for i in range(3)]
    flush()
    ids = set()
    for trace_id in traces:
        feedback = one_feedback(trace_id, "reused_feedback")
        assert feedback.value == 1
        assert feedback.trace_id == trace_id
        ids.add(feedback.assessment_id)
    assert len(ids) == len(traces)


def test_a_timed_out_call_still_holds_its_thread(open_db: OpenDb) -> None:
    # One worker thread. "a_hang" times out at 0.2 s but keeps its thread for 1 s more;
    # "b_fast" (timeout 0.5 s) must wait for a free thread rather than be timed out
    # while it sits in the pool's queue behind the abandoned call.
    open_db(MAX_WORKERS="1")
    helpers.Hang(name="a_hang", timeout_seconds=0.2, cap_seconds=1.2).register().start()
    helpers.Probe(name="b_fast", hold_seconds=0.0, timeout_seconds=0.5).register().start()
    trace_id = localscorers.log_trace(inputs=1, outputs=1)
    flush()

    hang = one_feedback(trace_id, "a_hang")
    assert hang.error is not None
    assert hang.error.error_code == "SCORER_TIMEOUT"
    fast = one_feedback(trace_id, "b_fast")
    assert fast.error is None, fast.error
    assert fast.value is True


def test_feedback_json_cannot_hold_is_stored_with_its_repr(db: Path) -> None:
    # Issue 12: a value the store cannot encode as is keeps its repr (here, of the key).
    helpers.unstorable.register().start()
    helpers.always_true.register().start()
    traces = [localscorers.log_trace(inputs=i, outputs=i) for i in range(3)]
    flush()
    for trace_id in traces:
        odd = one_feedback(trace_id, "unstorable")
        assert odd.error is None
        assert odd.value == {"(1, 2)": "tuple key"}
        assert one_feedback(trace_id, "always_true").value is True


def test_one_decision_gives_the_first_reason_in_order() -> None:
    """Status, then filter, then sample, then the trace's state: the first that fails says why."""
    trace_id = next(f"tr-{i:032x}" for i in range(100) if not is_sampled(f"tr-{i:032x}", "s", 0.5))

    def why(
        *, active: bool = True, matched: bool | None = None, rate: float = 1.0, done: bool = True
    ) -> Decision:
        return decide(
            trace_id, "s", active=active, filter_matched=matched, sample_rate=rate, finished=done
        )

    assert why() is Decision.EVALUATE
    assert why(matched=True) is Decision.EVALUATE
    assert why(active=False, matched=False, rate=0.5) is Decision.NOT_ACTIVE
    assert why(matched=False, rate=0.5) is Decision.FILTERED_OUT
    assert why(rate=0.5, done=False) is Decision.SAMPLED_OUT
    assert why(done=False) is Decision.UNFINISHED
