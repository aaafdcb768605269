"""Online session scoring: idle detection, revisions, sampling, exactly-once across SIGKILL.

A session scorer (one taking ``session``) is never enqueued when a trace commits: the
runner's idle scan enqueues a session once no trace of it has been committed for
``session_idle_seconds``, on its last trace (the revision). Most tests inject the clock
(``localscorers._clock.now_ms``), which stamps commits and drives the scan, so idleness
is decided without sleeping.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import localscorers
from localscorers import (
    ConfigurationError,
    Feedback,
    ScorerSamplingConfig,
    Trace,
    _clock,
    _context,
    sampling,
    scorer,
)
from tests import scorer_helpers_online as helpers
from tests.process_helpers import run_worker, wait_until

SESSION = "mlflow.trace.session"
DEADLINE = 60.0


@scorer
def turns(session: list[Trace]) -> str:
    """Return the session's questions in order: shows which revision was scored."""
    return ",".join(str(t.data.request["q"]) for t in session)


@scorer
def slow_turns(session: list[Trace]) -> Feedback:
    """Take a while, and say which process scored the session (for the SIGKILL test)."""
    time.sleep(0.3)
    return Feedback(value=len(session), metadata={"pid": str(os.getpid())})


@scorer
def per_trace(outputs: Any) -> bool:
    """A trace-level scorer next to the session scorers."""
    return outputs is not None


class FakeClock:
    """Epoch milliseconds that move only when the test says so."""

    def __init__(self) -> None:
        self.ms = 1_800_000_000_000

    def now_ms(self) -> int:
        return self.ms

    def advance(self, seconds: float) -> None:
        self.ms += round(seconds * 1000)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(_clock, "now_ms", fake.now_ms)
    return fake


def say(session: str | None, question: str, clock: FakeClock | None = None) -> str:
    """Log one turn (request time = the clock, so turns keep their order); return its id."""
    return localscorers.log_trace(
        inputs={"q": question},
        outputs=f"answer to {question}",
        metadata={SESSION: session} if session else {},
        request_time=None if clock is None else clock.ms,
    )


def session_feedback(name: str = "turns") -> dict[str, list[Feedback]]:
    """Return the online feedback of ``name``, by trace id."""
    found: dict[str, list[Feedback]] = {}
    for trace in localscorers.search_traces():
        for a in trace.info.assessments:
            if isinstance(a, Feedback) and a.name == name:
                found.setdefault(trace.info.trace_id, []).append(a)
    return found


def start(scorer_: Any, *, idle: float = 10.0, rate: float = 1.0, **config: Any) -> None:
    scorer_.register().start(
        sampling_config=ScorerSamplingConfig(sample_rate=rate, session_idle_seconds=idle, **config)
    )


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), 1e10, "5", True, None])
def test_session_idle_seconds_must_be_positive_seconds(value: object) -> None:
    with pytest.raises(ConfigurationError, match="session_idle_seconds must be") as info:
        ScorerSamplingConfig(session_idle_seconds=value)  # type: ignore[arg-type]
    assert repr(value) in str(info.value) or str(value) in str(info.value)


def test_session_idle_seconds_defaults_to_five_minutes() -> None:
    assert ScorerSamplingConfig().session_idle_seconds == 300.0
    assert ScorerSamplingConfig(session_idle_seconds=2).session_idle_seconds == 2.0


def test_session_idle_seconds_is_stored_with_the_config(tracking: Path) -> None:
    started = turns.register().start(
        sampling_config=ScorerSamplingConfig(sample_rate=0.5, session_idle_seconds=2)
    )
    assert started.session_idle_seconds == 2.0
    restored = localscorers.get_scorer(name="turns")
    assert restored._sampling_config == ScorerSamplingConfig(
        sample_rate=0.5, session_idle_seconds=2
    )


def test_a_version_5_database_gains_the_session_columns(tracking: Path) -> None:
    per_trace.register().start(sampling_config=ScorerSamplingConfig(sample_rate=0.5))
    localscorers.flush()
    _context.reset()
    with sqlite3.connect(tracking) as conn:
        conn.execute("ALTER TABLE scorers DROP COLUMN session_idle_seconds")
        conn.execute("ALTER TABLE scorer_versions DROP COLUMN takes_session")
        conn.execute("PRAGMA user_version = 5")
    conn.close()

    localscorers.set_tracking_uri(tracking)
    restored = localscorers.get_scorer(name="per_trace")
    assert restored._sampling_config == ScorerSamplingConfig(sample_rate=0.5)
    assert restored.session_idle_seconds == 300.0
    trace_id = localscorers.log_trace(inputs="q", outputs="a")
    assert localscorers.flush(timeout=DEADLINE)
    assert [e.outcome for e in localscorers.explain(trace_id)] in (
        [localscorers.ExplainOutcome.SUCCEEDED],
        [localscorers.ExplainOutcome.SAMPLED_OUT],
    )
    with sqlite3.connect(tracking) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] >= 6
    conn.close()


# -- idle detection and revisions ------------------------------------------------------------


def test_a_session_is_scored_once_after_going_quiet(tracking: Path, clock: FakeClock) -> None:
    start(turns, idle=10)
    first = say("s1", "hi", clock)
    clock.advance(4)
    last = say("s1", "and then?", clock)
    clock.advance(9)  # 9 s since the last turn: not idle yet
    assert localscorers.flush(timeout=DEADLINE)
    assert session_feedback() == {}

    clock.advance(1)
    assert localscorers.flush(timeout=DEADLINE)
    feedback = session_feedback()
    assert list(feedback) == [last]
    (only,) = feedback[last]
    assert only.value == "hi,and then?"
    assert only.metadata == {SESSION: "s1"}
    assert only.error is None

    clock.advance(60)
    assert localscorers.flush(timeout=DEADLINE)
    assert sum(map(len, session_feedback().values())) == 1  # not again for the same revision
    # Session feedback covers the whole session in filters, as in MLflow.
    found = localscorers.search_traces(filter_string="feedback.turns = 'hi,and then?'")
    assert {t.info.trace_id for t in found} == {first, last}


def test_turns_logged_in_one_millisecond_keep_their_order(tracking: Path, clock: FakeClock) -> None:
    # Same request time for every turn: the trace id decides which is last, so ids made
    # by one process must grow in the order they are made.
    start(turns, idle=10)
    ids = [say("s1", question, clock) for question in "abcdefghij"]
    clock.advance(10)
    assert localscorers.flush(timeout=DEADLINE)
    feedback = session_feedback()
    assert list(feedback) == [ids[-1]]
    assert [f.value for f in feedback[ids[-1]]] == ["a,b,c,d,e,f,g,h,i,j"]


def test_a_new_turn_makes_the_session_due_again(tracking: Path, clock: FakeClock) -> None:
    start(turns, idle=5)
    say("s1", "a", clock)
    clock.advance(6)
    assert localscorers.flush(timeout=DEADLINE)
    later = say("s1", "b", clock)
    clock.advance(6)
    assert localscorers.flush(timeout=DEADLINE)

    values = {t: [f.value for f in fs] for t, fs in session_feedback().items()}
    assert sorted(values.values()) == [["a"], ["a,b"]]
    assert values[later] == ["a,b"]


def test_no_trace_level_calls_and_no_type_errors(tracking: Path, clock: FakeClock) -> None:
    """Started online, a session scorer used to get TypeError feedback on every trace."""
    start(turns, idle=5)
    per_trace.register().start()
    ids = [say("s1", "a", clock), say(None, "alone", clock), say("s1", "b", clock)]
    clock.advance(5)
    assert localscorers.flush(timeout=DEADLINE)

    feedback = session_feedback()
    assert {t: [f.value for f in fs] for t, fs in feedback.items()} == {ids[2]: ["a,b"]}
    assert all(f.error is None for fs in feedback.values() for f in fs)
    assert set(session_feedback("per_trace")) == set(ids)  # trace scorers as before


def test_sessions_are_sampled_by_session_id(tracking: Path, clock: FakeClock) -> None:
    start(turns, idle=1, rate=0.5)
    last = {f"s{i}": say(f"s{i}", f"q{i}", clock) for i in range(40)}
    clock.advance(1)
    assert localscorers.flush(timeout=DEADLINE)

    sampled = {
        session
        for session in last
        if sampling.is_sampled(session, "turns", 0.5)  # the session id is hashed
    }
    assert 0 < len(sampled) < 40
    assert set(session_feedback()) == {last[s] for s in sampled}


def test_only_sessions_active_since_start_are_scored(tracking: Path, clock: FakeClock) -> None:
    say("old", "before start", clock)
    clock.advance(100)
    start(turns, idle=5)
    new = say("new", "after start", clock)
    clock.advance(5)
    assert localscorers.flush(timeout=DEADLINE)
    assert list(session_feedback()) == [new]


def test_evaluate_rows_are_not_scored_online(tracking: Path, clock: FakeClock) -> None:
    start(turns, idle=1)
    rows = [{"inputs": {"q": "x"}, "outputs": "y", "metadata": {SESSION: "offline"}}]
    localscorers.evaluate(data=rows, scorers=[per_trace])
    clock.advance(5)
    assert localscorers.flush(timeout=DEADLINE)
    assert session_feedback() == {}


def test_a_filter_applies_to_the_sessions_last_trace(tracking: Path, clock: FakeClock) -> None:
    start(turns, idle=1, filter_string="metadata.channel = 'web'")
    localscorers.log_trace(
        inputs={"q": "a"}, outputs="x", metadata={SESSION: "w", "channel": "web"}
    )
    localscorers.log_trace(
        inputs={"q": "b"}, outputs="x", metadata={SESSION: "m", "channel": "app"}
    )
    clock.advance(1)
    assert localscorers.flush(timeout=DEADLINE)
    assert [f.value for fs in session_feedback().values() for f in fs] == ["a"]


def test_the_monitor_scores_quiet_sessions_without_a_flush(tracking: Path) -> None:
    """Commits enqueue nothing for a session scorer: starting it starts the monitor."""
    start(turns, idle=0.05)
    say("s1", "a")
    last = say("s1", "b")
    wait_until(lambda: last in session_feedback())
    assert [f.value for f in session_feedback()[last]] == ["a,b"]


def test_a_process_that_only_logs_turns_starts_its_monitor(tracking: Path) -> None:
    """The session scorer was started elsewhere: this process only logs, and never flushes."""
    start(turns, idle=0.05)
    _context.shutdown()  # as in a fresh process: no runtime, no monitor
    say("s1", "a")
    last = say("s1", "b")
    wait_until(lambda: last in session_feedback())
    assert [f.value for f in session_feedback()[last]] == ["a,b"]


def test_traces_without_a_session_start_no_monitor(tracking: Path) -> None:
    start(turns, idle=0.05)
    _context.shutdown()
    say(None, "a")
    runtime = _context.existing()
    assert runtime is not None
    assert runtime.existing_runner() is None


def test_update_applies_to_sessions_decided_before(tracking: Path, clock: FakeClock) -> None:
    start(turns, idle=1, filter_string="metadata.channel = 'web'")
    trace_id = localscorers.log_trace(
        inputs={"q": "a"}, outputs="x", metadata={SESSION: "s1", "channel": "app"}
    )
    clock.advance(1)
    assert localscorers.flush(timeout=DEADLINE)
    assert session_feedback() == {}

    turns.update(sampling_config=ScorerSamplingConfig(session_idle_seconds=1))
    assert localscorers.flush(timeout=DEADLINE)
    assert list(session_feedback()) == [trace_id]


# -- explain ---------------------------------------------------------------------------------


def entry_of(trace_id: str, name: str = "turns") -> localscorers.ExplainEntry:
    (found,) = [e for e in localscorers.explain(trace_id) if e.scorer_name == name]
    return found


def test_explain_says_session_not_idle_yet(tracking: Path, clock: FakeClock) -> None:
    start(turns, idle=30)
    first = say("s1", "a", clock)
    clock.advance(2)
    last = say("s1", "b", clock)
    clock.advance(5)

    entry = entry_of(last)
    assert entry.outcome is localscorers.ExplainOutcome.SESSION_NOT_IDLE
    assert entry.outcome.words == "session not idle yet"
    assert "5.0 s ago" in entry.detail
    assert "session_idle_seconds=30" in entry.detail
    assert "session not idle yet" in str(localscorers.explain(last))
    # A trace that is not the session's last points to the last one.
    earlier = entry_of(first)
    assert earlier.outcome is localscorers.ExplainOutcome.SESSION_NOT_IDLE
    assert f"scored on its last trace {last}" in earlier.detail

    clock.advance(30)
    assert localscorers.flush(timeout=DEADLINE)
    assert entry_of(last).outcome is localscorers.ExplainOutcome.SUCCEEDED
    assert entry_of(last).detail.startswith("turns='a,b'")
    earlier = entry_of(first)
    assert earlier.outcome is localscorers.ExplainOutcome.SUCCEEDED
    assert f"scored on its last trace {last}: turns='a,b'" in earlier.detail


def test_explain_session_sampled_out_and_no_session(tracking: Path, clock: FakeClock) -> None:
    start(turns, idle=1, rate=0.5)
    out = next(f"s{i}" for i in range(100) if not sampling.is_sampled(f"s{i}", "turns", 0.5))
    trace_id = say(out, "a", clock)
    alone = say(None, "no session", clock)
    clock.advance(1)
    assert localscorers.flush(timeout=DEADLINE)

    entry = entry_of(trace_id)
    assert entry.outcome is localscorers.ExplainOutcome.SAMPLED_OUT
    assert "by session id" in entry.detail
    entry = entry_of(alone)
    assert entry.outcome is localscorers.ExplainOutcome.NOT_ACTIVE
    assert "belongs to no session" in entry.detail


# -- backfill --------------------------------------------------------------------------------


def test_backfill_scores_each_session_whose_last_trace_is_in_range(tracking: Path) -> None:
    base = 1_700_000_000_000
    ids: dict[str, list[str]] = {}
    # s_in: last turn inside the range (first turn before it); s_out: last turn after it.
    for session, minutes in (("s_in", [0, 20]), ("s_out", [15, 40]), ("s_old", [1])):
        for minute in minutes:
            trace_id = localscorers.log_trace(
                inputs={"q": f"{session}@{minute}"},
                outputs="a",
                metadata={SESSION: session},
                request_time=base + minute * 60_000,
            )
            ids.setdefault(session, []).append(trace_id)
    alone = localscorers.log_trace(inputs={"q": "x"}, outputs="a", request_time=base + 600_000)
    turns.register()

    job_id = localscorers.backfill_scorers(
        scorers=[localscorers.BackfillScorerConfig(scorer=turns, sample_rate=1.0)],
        start_time=base + 10 * 60_000,
        end_time=base + 30 * 60_000,
    )
    job = localscorers.wait_for_backfill_job(job_id, timeout=DEADLINE)

    assert job.status == localscorers.JobStatus.SUCCEEDED
    feedback = session_feedback()
    assert {t: [f.value for f in fs] for t, fs in feedback.items()} == {
        ids["s_in"][-1]: ["s_in@0,s_in@20"]  # the whole session, turns outside the range too
    }
    assert feedback[ids["s_in"][-1]][0].metadata == {SESSION: "s_in"}
    assert alone not in feedback
    assert job.succeeded == 1

    again = localscorers.wait_for_backfill_job(
        localscorers.backfill_scorers(
            scorers=[localscorers.BackfillScorerConfig(scorer=turns, sample_rate=1.0)]
        ),
        timeout=DEADLINE,
    )
    assert (again.succeeded, again.skipped) == (2, 1)  # s_out and s_old now; s_in done
    assert sum(map(len, session_feedback().values())) == 3


def test_online_and_backfill_share_the_revision(tracking: Path, clock: FakeClock) -> None:
    start(turns, idle=1)
    say("s1", "a", clock)
    last = say("s1", "b", clock)
    clock.advance(1)
    assert localscorers.flush(timeout=DEADLINE)
    job = localscorers.wait_for_backfill_job(
        localscorers.backfill_scorers(scorers=["turns"]), timeout=DEADLINE
    )
    assert (job.succeeded, job.skipped) == (0, 1)
    assert list(session_feedback()) == [last]


# -- both backends ---------------------------------------------------------------------------


def test_sessions_online_explain_and_backfill_on_each_backend(
    contract_tracking: str, clock: FakeClock
) -> None:
    start(turns, idle=5)
    first = say("s1", "a", clock)
    last = say("s1", "b", clock)
    other = say("s2", "c", clock)
    clock.advance(1)
    assert entry_of(first).outcome is localscorers.ExplainOutcome.SESSION_NOT_IDLE
    clock.advance(4)
    assert localscorers.flush(timeout=DEADLINE)
    values = {t: [f.value for f in fs] for t, fs in session_feedback().items()}
    assert values == {last: ["a,b"], other: ["c"]}
    assert f"scored on its last trace {last}" in entry_of(first).detail
    found = localscorers.search_traces(filter_string="feedback.turns = 'a,b'")
    assert {t.info.trace_id for t in found} == {first, last}

    newer = say("s1", "d", clock)  # a new revision, left to a backfill
    job = localscorers.wait_for_backfill_job(
        localscorers.backfill_scorers(scorers=["turns"]), timeout=DEADLINE
    )
    assert (job.succeeded, job.skipped) == (1, 1)
    assert [f.value for f in session_feedback()[newer]] == ["a,b,d"]


# -- the property ----------------------------------------------------------------------------

# A step: a turn in one of three sessions after a pause, or a flush (runner catches up).
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("turn"), st.sampled_from(["s0", "s1", "s2"]), st.integers(0, 25)),
        st.tuples(st.just("flush"), st.just(""), st.integers(0, 25)),
    ),
    min_size=1,
    max_size=14,
)
IDLE_SECONDS = 10


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=STEPS)
def test_property_once_per_revision_never_while_receiving(
    steps: list[tuple[str, str, int]],
    tmp_path_factory: pytest.TempPathFactory,
    clock: FakeClock,
) -> None:
    """Each revision (session, last trace) is scored at most once, only once idle, and
    every session idle at a flush has its current revision scored by then.

    The in-process runner scans on its own too, at whatever fake time it sees: a revision
    may be scored as soon as it is idle at some instant, never before.
    """
    localscorers.set_tracking_uri(tmp_path_factory.mktemp("db") / "db.sqlite")
    start(turns, idle=IDLE_SECONDS)
    sessions: dict[str, list[tuple[str, int, str]]] = {}  # (trace id, ingested ms, question)
    may_be_scored: set[str] = set()  # revisions idle at some instant the clock showed

    def note_idle() -> None:
        for turns_ in sessions.values():
            trace_id, ingested, _ = turns_[-1]
            if clock.ms - ingested >= IDLE_SECONDS * 1000:
                may_be_scored.add(trace_id)

    for index, (kind, session, pause) in enumerate(steps):
        clock.advance(pause)
        note_idle()
        if kind == "turn":
            question = f"{session}-{index}"
            trace_id = say(session, question, clock)
            sessions.setdefault(session, []).append((trace_id, clock.ms, question))
            continue
        assert localscorers.flush(timeout=DEADLINE)
        feedback = session_feedback()
        assert set(feedback) <= may_be_scored  # never while still receiving traces
        for turns_ in sessions.values():
            if clock.ms - turns_[-1][1] >= IDLE_SECONDS * 1000:
                assert turns_[-1][0] in feedback  # idle now: scored by the flush
        for turns_ in sessions.values():
            for position, (trace_id, _, _) in enumerate(turns_):
                if trace_id in feedback:
                    # Once per revision, with the session up to that trace, in order.
                    assert [f.value for f in feedback[trace_id]] == [
                        ",".join(q for _, _, q in turns_[: position + 1])
                    ]


# -- exactly once across a SIGKILL of the worker ---------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_exactly_once_per_revision_across_a_killed_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, processes: list[subprocess.Popen[str]]
) -> None:
    monkeypatch.setenv("LOCALSCORERS_MONITOR", "off")  # only the workers evaluate
    db = tmp_path / "kill.db"
    localscorers.set_tracking_uri(db)
    start(slow_turns, idle=0.05)
    for n in range(12):
        say(f"s{n}", "hello")
        say(f"s{n}", "again")
    lease = {"LOCALSCORERS_LEASE_SECONDS": "1.5", "LOCALSCORERS_MAX_WORKERS": "2"}

    first = subprocess.Popen(
        helpers.worker_command(db, drain=False),
        env=helpers.subprocess_env(**lease),
        cwd=helpers.REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    processes.append(first)
    wait_until(lambda: bool(session_feedback("slow_turns")) or first.poll() is not None)
    assert first.poll() is None, first.communicate()[1]
    os.kill(first.pid, signal.SIGKILL)  # with session calls running and claims leased
    first.wait(timeout=DEADLINE)
    done_by_first = session_feedback("slow_turns")
    assert 0 < len(done_by_first) < 12

    grown = [say("s0", "more"), say("s1", "more")]  # two sessions get a new revision
    time.sleep(0.1)  # past their idle window (0.05 s) before the drain's scan
    result = run_worker(db, **lease)
    assert result.returncode == 0, result.stderr

    feedback = session_feedback("slow_turns")
    counts = Counter({trace_id: len(fs) for trace_id, fs in feedback.items()})
    assert set(counts.values()) == {1}  # exactly once per revision
    assert len(feedback) == 12 + 2
    assert all(feedback[t][0].value == 3 for t in grown)
    assert sorted(f[0].value for t, f in feedback.items() if t not in grown) == [2] * 12
    for trace_id, fs in done_by_first.items():
        # Kept as the first worker wrote it: the takeover did not score it again.
        assert (feedback[trace_id][0].metadata or {}).get("pid") == str(first.pid)
        assert (fs[0].metadata or {}).get("pid") == str(first.pid)
