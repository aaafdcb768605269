"""Backfill jobs through the public API and the CLI, on real SQLite files (DESIGN.md section 9).

Each test opens its own database in ``tmp_path`` with online scoring off, so only the
backfill writes feedback. Waiting is ``wait_for_backfill_job`` or polling with a
deadline, never a fixed sleep.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import localscorers
from localscorers import (
    BackfillJob,
    BackfillScorerConfig,
    BackfillTimeoutError,
    ConfigurationError,
    Feedback,
    JobNotFoundError,
    NotFoundError,
    ScorerNotFoundError,
    ScorerSamplingConfig,
    _context,
)
from localscorers.cli import app
from localscorers.cli import run as run_cli
from localscorers.evaluation import Execution, JobRunner, Settings, to_feedback
from localscorers.exceptions import LeaseLostError
from localscorers.store import ScorerSpec, assessment_row, plain_base, plain_columns, plain_row
from tests import backfill_helpers as helpers

T0 = 1_700_000_000_000  # request time of the first trace, epoch ms
WAIT = 30.0


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh database with online scoring off and instant retries."""
    monkeypatch.setenv("LOCALSCORERS_MONITOR", "off")
    monkeypatch.setenv("LOCALSCORERS_BACKOFF_SECONDS", "0")
    helpers.reset()
    path = tmp_path / "b.db"
    localscorers.set_tracking_uri(path)
    yield path
    _context.reset()


def log(count: int, *, step: int = 1000, tags: dict[str, str] | None = None) -> list[str]:
    """Log ``count`` traces one ``step`` ms apart from T0; return their ids in time order."""
    return [
        localscorers.log_trace(
            inputs={"i": i}, outputs="x" * (i % 7), request_time=T0 + i * step, tags=tags
        )
        for i in range(count)
    ]


def run(
    *scorers: BackfillScorerConfig | str,
    start_time: datetime | int | None = None,
    end_time: datetime | int | None = None,
    rescore: bool = False,
) -> BackfillJob:
    job_id = localscorers.backfill_scorers(
        scorers=list(scorers), start_time=start_time, end_time=end_time, rescore=rescore
    )
    return localscorers.wait_for_backfill_job(job_id, timeout=WAIT)


def feedback_rows(path: Path, *where: str) -> list[sqlite3.Row]:
    """Feedback rows (with their evaluation) straight from the database file."""
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        clause = " AND ".join(("a.kind = 'FEEDBACK'", *where))
        return conn.execute(
            "SELECT a.*, e.status AS eval_status, e.attempts, e.superseded "
            f"FROM assessments a LEFT JOIN evaluations e ON e.id = a.evaluation_id WHERE {clause}"
        ).fetchall()
    finally:
        conn.close()


def poll(condition: Callable[[], bool], *, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        time.sleep(0.01)


# -- the call shape, ranges, skipping ---------------------------------------------------------


def test_backfill_scores_the_range_once_then_skips(db: Path) -> None:
    ids = log(20)
    helpers.length.register()
    helpers.words.register().start(sampling_config=ScorerSamplingConfig(sample_rate=1.0))
    naive_start = datetime.fromtimestamp((T0 + 5000) / 1000, UTC).replace(tzinfo=None)

    job = run(
        BackfillScorerConfig(helpers.length, sample_rate=1.0),
        "words",  # active: its own rate applies
        start_time=naive_start,  # naive means UTC
        end_time=T0 + 15_000,  # epoch ms; excluded
    )

    assert job.status == "SUCCEEDED"
    assert (job.total, job.processed, job.succeeded, job.failed, job.skipped) == (20, 20, 20, 0, 0)
    assert [(s["name"], s["succeeded"]) for s in job.scorers] == [("length", 10), ("words", 10)]
    assert job.start_time == datetime.fromtimestamp((T0 + 5000) / 1000, UTC)
    for position, trace_id in enumerate(ids):
        found = {a.name: a for a in localscorers.get_trace(trace_id).info.assessments}
        if 5 <= position < 15:
            assert set(found) == {"length", "words"}
            assert found["length"].value == position % 7
            assert found["length"].origin == f"backfill:{job.job_id}"
            assert found["length"].scorer_version == 1
            assert found["words"].value == 2 + (1 if position % 7 else 0)
        else:
            assert found == {}

    again = run(
        BackfillScorerConfig("length", sample_rate=1.0),
        BackfillScorerConfig("words"),
        start_time=naive_start,
        end_time=T0 + 15_000,
    )
    assert (again.processed, again.succeeded, again.skipped) == (20, 0, 20)
    assert len(feedback_rows(db)) == 20
    assert [j.job_id for j in localscorers.list_backfill_jobs()] == [again.job_id, job.job_id]


def test_aware_datetimes_and_open_ranges(db: Path) -> None:
    ids = log(6)
    helpers.length.register()
    plus_two = timezone(timedelta(hours=2))
    start = datetime.fromtimestamp((T0 + 2000) / 1000, plus_two)
    job = run(BackfillScorerConfig("length", sample_rate=1.0), start_time=start)
    assert job.succeeded == 4
    scored = {row["trace_id"] for row in feedback_rows(db)}
    assert scored == set(ids[2:])


def test_rescore_keeps_history(db: Path) -> None:
    ids = log(5)
    helpers.length.register()
    first = run(BackfillScorerConfig("length", sample_rate=1.0))
    second = run(BackfillScorerConfig("length", sample_rate=1.0), rescore=True)

    assert (second.succeeded, second.skipped) == (5, 0)
    for trace_id in ids:
        rows = feedback_rows(db, f"a.trace_id = '{trace_id}'")
        old = next(r for r in rows if r["origin"] == f"backfill:{first.job_id}")
        new = next(r for r in rows if r["origin"] == f"backfill:{second.job_id}")
        assert len(rows) == 2
        assert (old["valid"], old["superseded"]) == (0, 1)
        assert (new["valid"], new["superseded"]) == (1, 0)
        assert new["overrides"] == old["assessment_id"]
        shown = localscorers.get_trace(trace_id).info.assessments
        assert [a.valid for a in shown if a.assessment_id == old["assessment_id"]] == [False]


def test_rescore_of_several_feedbacks_overrides_by_name(db: Path) -> None:
    log(3)
    helpers.several.register()
    run(BackfillScorerConfig("several", sample_rate=1.0))
    run(BackfillScorerConfig("several", sample_rate=1.0), rescore=True)
    rows = feedback_rows(db)
    by_id = {r["assessment_id"]: r for r in rows}
    current = [r for r in rows if r["valid"]]
    assert len(rows) == 12
    assert len(current) == 6
    assert all(by_id[r["overrides"]]["name"] == r["name"] for r in current)
    assert all(by_id[r["overrides"]]["trace_id"] == r["trace_id"] for r in current)


def test_online_pending_work_is_skipped_even_with_rescore(db: Path) -> None:
    helpers.length.register().start(sampling_config=ScorerSamplingConfig(sample_rate=1.0))
    log(4)  # monitor off: four online evaluations stay pending
    job = run("length", rescore=True)
    assert (job.processed, job.skipped, job.succeeded) == (4, 4, 0)
    assert feedback_rows(db) == []


# -- dry run -------------------------------------------------------------------------------


def test_dry_run_counts_what_the_job_then_does(db: Path) -> None:
    log(60, tags={"kind": "a"})
    log(60, step=1001, tags={"kind": "b"})
    helpers.length.register()
    helpers.words.register().start(
        sampling_config=ScorerSamplingConfig(sample_rate=0.5, filter_string="tags.kind = 'a'")
    )
    run(BackfillScorerConfig("length", sample_rate=0.3), end_time=T0 + 20_000)  # some done
    scorers: list[BackfillScorerConfig | str] = [
        "words",
        BackfillScorerConfig("length", sample_rate=0.6),
    ]
    jobs_before = len(localscorers.list_backfill_jobs())
    rows_before = len(feedback_rows(db))

    counts = localscorers.backfill_scorers(scorers=scorers, start_time=T0 + 1000, dry_run=True)

    assert len(localscorers.list_backfill_jobs()) == jobs_before
    assert len(feedback_rows(db)) == rows_before
    job = run(*scorers, start_time=T0 + 1000)
    assert counts == {s["name"]: s["succeeded"] + s["failed"] for s in job.scorers}
    assert sum(counts.values()) == job.succeeded
    assert job.skipped > 0
    assert 0 < counts["words"] < 60


# -- failures, retries, timeouts, cancel -----------------------------------------------------


def test_scorer_errors_are_feedback_not_a_failed_job(db: Path) -> None:
    log(3)
    helpers.broken.register()
    job = run(BackfillScorerConfig("broken", sample_rate=1.0))
    assert (job.status, job.failed, job.succeeded) == ("SUCCEEDED", 3, 0)
    for row in feedback_rows(db):
        error = json.loads(row["error"])
        assert error["error_code"] == "ValueError"
        assert "cannot score" in error["error_message"]
        assert row["eval_status"] == "FAILED"


def test_transient_errors_are_retried_in_the_job(db: Path) -> None:
    log(4)
    helpers.flaky.register()
    job = run(BackfillScorerConfig("flaky", sample_rate=1.0))
    assert (job.succeeded, job.failed) == (4, 0)
    rows = feedback_rows(db)
    assert [(str(r["value"]), r["attempts"]) for r in rows] == [("3", 3)] * 4


def test_transient_errors_become_error_feedback_after_max_attempts(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALSCORERS_MAX_ATTEMPTS", "2")
    _context.reset()
    localscorers.set_tracking_uri(db)
    log(2)
    helpers.flaky.register()
    job = run(BackfillScorerConfig("flaky", sample_rate=1.0))
    assert (job.status, job.failed) == ("SUCCEEDED", 2)
    assert {json.loads(r["error"])["error_code"] for r in feedback_rows(db)} == {"TRANSIENT_ERROR"}


def test_a_hung_call_times_out_and_the_job_goes_on(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALSCORERS_SCORER_TIMEOUT", "0.2")
    _context.reset()
    localscorers.set_tracking_uri(db)
    hung = localscorers.log_trace(inputs={"hang": True}, outputs="", request_time=T0)
    log(5, step=1000)
    helpers.sleepy.register()
    job = run(BackfillScorerConfig("sleepy", sample_rate=1.0))
    assert (job.status, job.succeeded, job.failed) == ("SUCCEEDED", 5, 1)
    [row] = feedback_rows(db, f"a.trace_id = '{hung}'")
    assert json.loads(row["error"])["error_code"] == "SCORER_TIMEOUT"


def test_a_deleted_scorer_version_fails_the_job(db: Path) -> None:
    log(2)
    helpers.length.register()
    runtime = _context.current()
    job_id = runtime.storage.jobs().create("0", [ScorerSpec("length", 1, 1.0)])
    localscorers.delete_scorer(name="length")
    job = localscorers.wait_for_backfill_job(job_id, timeout=WAIT)
    assert job.status == "FAILED"
    assert "length" in (job.error or "")
    assert job.finished_at is not None


def test_cancel_stops_promptly_and_keeps_what_was_done(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALSCORERS_MAX_WORKERS", "1")
    _context.reset()
    localscorers.set_tracking_uri(db)
    log(300)
    helpers.slow_length.register()
    job_id = localscorers.backfill_scorers(
        scorers=[BackfillScorerConfig("slow_length", sample_rate=1.0)]
    )
    poll(lambda: localscorers.get_backfill_job(job_id).processed > 0)

    started = time.monotonic()
    job = localscorers.cancel_backfill_job(job_id)

    assert job.status == "CANCELLED"
    assert time.monotonic() - started < 5
    assert 0 < job.processed < 300
    rows = feedback_rows(db)
    assert len(rows) == job.succeeded == job.processed
    assert len({r["trace_id"] for r in rows}) == len(rows)
    assert localscorers.cancel_backfill_job(job_id).status == "CANCELLED"  # idempotent
    rest = run(BackfillScorerConfig("slow_length", sample_rate=1.0))
    assert (rest.skipped, rest.succeeded) == (job.succeeded, 300 - job.succeeded)


def test_cancel_a_pending_job_and_a_finished_one(db: Path) -> None:
    log(2)
    helpers.length.register()
    runtime = _context.current()
    service = runtime.storage.jobs()
    pending = service.create("0", [ScorerSpec("length", 1, 1.0)])
    runner = JobRunner(runtime.storage, settings=Settings())
    assert runner.unfinished_count() == 1
    assert localscorers.cancel_backfill_job(pending).status == "CANCELLED"
    assert runner.unfinished_count() == 0
    runner.close(wait=0)
    done = run(BackfillScorerConfig("length", sample_rate=1.0))
    assert localscorers.cancel_backfill_job(done.job_id).status == "SUCCEEDED"


def test_wait_timeout_raises_a_timeout_error_with_the_job(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALSCORERS_MAX_WORKERS", "1")
    _context.reset()
    localscorers.set_tracking_uri(db)
    log(300)
    helpers.slow_length.register()
    job_id = localscorers.backfill_scorers(
        scorers=[BackfillScorerConfig("slow_length", sample_rate=1.0)]
    )
    with pytest.raises(TimeoutError) as caught:
        localscorers.wait_for_backfill_job(job_id, timeout=0.05)
    assert isinstance(caught.value, BackfillTimeoutError)
    assert isinstance(caught.value, localscorers.LocalScorersError)
    assert caught.value.job.job_id == job_id
    assert job_id in str(caught.value)
    localscorers.cancel_backfill_job(job_id)


# -- durability: resume, leases ---------------------------------------------------------------


def _settings(**changes: float) -> Settings:
    return Settings(**{**Settings().__dict__, **changes})


def test_a_closed_runner_releases_the_job_and_another_resumes_it(db: Path) -> None:
    ids = log(300)
    helpers.slow_length.register()
    runtime = _context.current()
    job_id = runtime.storage.jobs().create("0", [ScorerSpec("slow_length", 1, 1.0)])
    first = JobRunner(runtime.storage, settings=_settings(max_workers=1))
    first.start()
    poll(lambda: localscorers.get_backfill_job(job_id).processed > 0)
    first.close(wait=0.5)
    paused = localscorers.get_backfill_job(job_id)
    assert paused.status == "PENDING"
    assert 0 < paused.processed < 300

    job = localscorers.wait_for_backfill_job(job_id, timeout=WAIT)  # runs it here

    assert (job.status, job.processed, job.total, job.succeeded) == ("SUCCEEDED", 300, 300, 300)
    rows = feedback_rows(db)
    assert sorted(r["trace_id"] for r in rows) == sorted(ids)


def test_the_online_monitor_also_runs_pending_jobs(db: Path) -> None:
    log(3)
    helpers.length.register()
    runtime = _context.current()
    job_id = runtime.storage.jobs().create("0", [ScorerSpec("length", 1, 1.0)])
    runtime.runner()  # what a process that logs traces with monitoring on starts
    poll(lambda: localscorers.get_backfill_job(job_id).status == "SUCCEEDED")
    assert len(feedback_rows(db)) == 3


def test_a_holder_that_lost_its_lease_cannot_write(db: Path) -> None:
    log(5)
    helpers.length.register()
    runtime = _context.current()
    job_id = runtime.storage.jobs().create("0", [ScorerSpec("length", 1, 1.0)])
    stalled = JobRunner(runtime.storage, settings=_settings(lease_seconds=0.1))
    claimed = stalled._claim()  # claims, then "stalls" past its lease
    assert claimed is not None
    assert claimed.job_id == job_id
    job = localscorers.wait_for_backfill_job(job_id, timeout=WAIT)  # another runner takes over
    assert job.succeeded == 5

    with pytest.raises(LeaseLostError):
        Execution(stalled, claimed).run()
    assert len(feedback_rows(db)) == 5
    stalled.close(wait=0)


# -- what scorers receive -----------------------------------------------------------------------


def test_trace_and_expectation_scorers_get_what_they_declare(db: Path) -> None:
    ids = log(3, tags={"kind": "chat"})
    for trace_id in ids:
        localscorers.log_expectation(trace_id=trace_id, name="answer", value="x")
    helpers.with_trace.register()
    helpers.expected.register()
    run(
        BackfillScorerConfig("with_trace", sample_rate=1.0),
        BackfillScorerConfig("expected", sample_rate=1.0),
    )
    for position, trace_id in enumerate(ids):
        found = {a.name: a for a in localscorers.get_trace(trace_id).info.assessments}
        assert found["with_trace"].value == "chat"
        assert found["with_trace"].rationale == "1 span(s), expected 'x'"
        assert found["expected"].value is (position % 7 == 1)


def test_numbers_and_strings_as_outputs_reach_the_scorer_as_logged(db: Path) -> None:
    # SQLite stores a JSON number's text as a number (NUMERIC affinity): read as logged.
    outputs = [7, 2.5, "7", "", None, [1, "a"], {"k": 1.5}, True]
    ids = [
        localscorers.log_trace(inputs=value, outputs=value, request_time=T0 + i)
        for i, value in enumerate(outputs)
    ]
    helpers.length.register()
    helpers.words.register()
    job = run(BackfillScorerConfig("length", 1.0), BackfillScorerConfig("words", 1.0))
    assert (job.status, job.succeeded) == ("SUCCEEDED", 2 * len(outputs))
    for trace_id, value in zip(ids, outputs, strict=True):
        found = {a.name: a.value for a in localscorers.get_trace(trace_id).info.assessments}
        assert found["length"] == len(str(value)), value
        assert found["words"] == 2 * len(str(value).split()), value


@pytest.mark.parametrize(
    "value", [True, False, 0, 7, -3, 2**70, 2.5, float("nan"), "ok", "", 'é\n"q"', "long " * 30]
)
def test_plain_values_are_written_as_their_feedback_would_be(value: object) -> None:
    base = plain_base("s", 2, origin="backfill:x", now=5)
    fast = plain_row(value, base, trace_id="tr-1", evaluation_id=9)
    [feedback] = to_feedback(value, name="s")
    slow = assessment_row(
        feedback,
        trace_id="tr-1",
        origin="backfill:x",
        now_ms=5,
        evaluation_id=9,
        scorer_name="s",
        scorer_version=2,
    )
    slow["value"] = localscorers.store.codec.dumps(slow["value"])
    assert fast.keys() == slow.keys()
    for key in fast.keys() - {"assessment_id", "value_num"}:
        assert fast[key] == slow[key], key
    assert fast["assessment_id"].startswith("a-")
    assert repr(fast["value_num"]) == repr(slow["value_num"])
    # A backfill's own path (store.results) writes the same three columns.
    encoded, value_str, value_num = plain_columns(value)
    assert (encoded, value_str) == (slow["value"], slow["value_str"])
    assert repr(value_num) == repr(slow["value_num"])


# -- validation ------------------------------------------------------------------------------


@pytest.fixture
def registered(db: Path) -> None:
    log(2)
    helpers.length.register()
    helpers.words.register().start(sampling_config=ScorerSamplingConfig(sample_rate=1.0))


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda: localscorers.backfill_scorers(scorers=[]), ConfigurationError, ["empty"]),
        (lambda: localscorers.backfill_scorers(scorers="length"), ConfigurationError, ["list"]),
        (
            lambda: localscorers.backfill_scorers(scorers=[42]),  # type: ignore[list-item]
            ConfigurationError,
            ["scorers[0]"],
        ),
        (
            lambda: localscorers.backfill_scorers(scorers=["nope"]),
            ScorerNotFoundError,
            ["'nope'", "register"],
        ),
        (
            lambda: localscorers.backfill_scorers(scorers=["length"]),
            ConfigurationError,
            ["'length'", "REGISTERED", "sample_rate", "start()"],
        ),
        (
            lambda: localscorers.backfill_scorers(scorers=["words", "words"]),
            ConfigurationError,
            ["'words'", "more than once"],
        ),
        (
            lambda: localscorers.backfill_scorers(
                scorers=["words"], start_time=T0 + 10, end_time=T0
            ),
            ConfigurationError,
            ["start_time", "end_time", "before"],
        ),
        (
            lambda: localscorers.backfill_scorers(scorers=["words"], start_time=T0, end_time=T0),
            ConfigurationError,
            ["start_time", "end_time"],
        ),
        (
            lambda: localscorers.backfill_scorers(
                scorers=["words"],
                start_time="yesterday",  # type: ignore[call-overload]
            ),
            ConfigurationError,
            ["start_time", "'yesterday'"],
        ),
        (
            lambda: localscorers.backfill_scorers(
                scorers=["words"],
                rescore="yes",  # type: ignore[call-overload]
            ),
            ConfigurationError,
            ["rescore"],
        ),
        (
            lambda: localscorers.backfill_scorers(scorers=["words"], experiment_id="999"),
            NotFoundError,
            ["'999'"],
        ),
        (
            lambda: BackfillScorerConfig("length", sample_rate=1.5),
            ConfigurationError,
            ["sample_rate", "1.5"],
        ),
        (
            lambda: BackfillScorerConfig("length", sample_rate=0.0),
            ConfigurationError,
            ["'length'", "0.0"],
        ),
        (lambda: BackfillScorerConfig(""), ConfigurationError, ["empty"]),
        (lambda: BackfillScorerConfig(3), ConfigurationError, ["Scorer", "3"]),  # type: ignore[arg-type]
        (lambda: localscorers.get_backfill_job("bf-nope"), JobNotFoundError, ["'bf-nope'"]),
        (lambda: localscorers.cancel_backfill_job("bf-nope"), JobNotFoundError, ["'bf-nope'"]),
        (
            lambda: localscorers.wait_for_backfill_job("bf-nope", timeout=-1),
            ConfigurationError,
            ["timeout"],
        ),
    ],
)
def test_validation_errors_name_the_culprit(
    registered: None, call: Callable[[], object], error: type[Exception], words: list[str]
) -> None:
    with pytest.raises(error) as caught:
        call()
    for word in words:
        assert word in str(caught.value)
    assert isinstance(caught.value, localscorers.LocalScorersError)
    assert localscorers.list_backfill_jobs() == []


def test_error_types_match_the_builtins(registered: None) -> None:
    with pytest.raises(LookupError):
        localscorers.backfill_scorers(scorers=["nope"])
    with pytest.raises(LookupError):
        localscorers.get_backfill_job("bf-nope")
    with pytest.raises(ValueError, match="empty"):
        localscorers.backfill_scorers(scorers=[])


def test_a_scorer_object_uses_its_own_version(db: Path) -> None:
    log(2)
    first = helpers.length.register()
    helpers.words.register(name="length")  # version 2 under the same name
    job = run(BackfillScorerConfig(first, sample_rate=1.0))
    assert [(s["name"], s["version"]) for s in job.scorers] == [("length", 1)]
    assert {r["scorer_version"] for r in feedback_rows(db)} == {1}


# -- hypothesis: the scored set is the model's set ---------------------------------------------


def _sampled(trace_id: str, name: str, rate: float) -> bool:
    # DESIGN.md section 6, computed here independently of sampling.py.
    digest = hashlib.sha256(f"{trace_id}\0{name}".encode()).digest()
    return rate >= 1.0 or int.from_bytes(digest[:8], "big") / 2**64 < rate


_FILTERS: dict[str | None, Callable[[str | None, str], bool]] = {
    None: lambda kind, status: True,
    "tags.kind = 'a'": lambda kind, status: kind == "a",
    "trace.status = 'ERROR' OR tags.kind = 'b'": lambda kind, status: (
        status == "ERROR" or kind == "b"
    ),
    "NOT tags.kind = 'a'": lambda kind, status: kind != "a",
}


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    traces=st.lists(
        st.tuples(
            st.integers(0, 40), st.sampled_from(["a", "b", None]), st.sampled_from(["OK", "ERROR"])
        ),
        max_size=20,
    ),
    bounds=st.tuples(st.integers(0, 45) | st.none(), st.integers(0, 45) | st.none()),
    rate=st.sampled_from([0.1, 0.37, 0.5, 0.9, 1.0]),
    filter_string=st.sampled_from(list(_FILTERS)),
)
def test_the_scored_set_is_the_range_filter_and_sample(
    db: Path,
    traces: list[tuple[int, str | None, str]],
    bounds: tuple[int | None, int | None],
    rate: float,
    filter_string: str | None,
) -> None:
    experiment = localscorers.set_experiment(f"h-{uuid.uuid4().hex}")
    start, end = (None if b is None else T0 + b * 1000 for b in bounds)
    if start is not None and end is not None and start >= end:
        start, end = end - 1000, start + 1000
    logged = []
    for position, (offset, kind, status) in enumerate(traces):
        trace_id = localscorers.log_trace(
            inputs={"i": position},
            outputs="o",
            request_time=T0 + offset * 1000,
            status=status,
            tags={"kind": kind} if kind else None,
        )
        logged.append((trace_id, T0 + offset * 1000, kind, status))
    if filter_string is None:
        helpers.length.register()
        config: BackfillScorerConfig | str = BackfillScorerConfig("length", sample_rate=rate)
    else:
        helpers.length.register().start(
            sampling_config=ScorerSamplingConfig(sample_rate=rate, filter_string=filter_string)
        )
        config = "length"  # the scorer's own rate and filter

    job = run(config, start_time=start, end_time=end)

    expected = {
        trace_id
        for trace_id, at, kind, status in logged
        if (start is None or at >= start)
        and (end is None or at < end)
        and _FILTERS[filter_string](kind, status)
        and _sampled(trace_id, "length", rate)
    }
    scored = {
        r["trace_id"]
        for r in feedback_rows(db, f"a.origin = 'backfill:{job.job_id}'", "a.valid = 1")
    }
    assert job.status == "SUCCEEDED"
    assert scored == expected
    assert job.succeeded == job.total == len(expected)
    assert experiment.experiment_id == job.experiment_id


# -- the command line ----------------------------------------------------------------------------


def cli(capsys: pytest.CaptureFixture[str], db: Path, *args: str) -> tuple[int, str, str]:
    code = run_cli(app, ["--db", str(db), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_backfill_and_jobs(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log(10)
    helpers.length.register()
    start = datetime.fromtimestamp((T0 + 2000) / 1000, UTC).replace(tzinfo=None).isoformat()

    code, out, _ = cli(
        capsys, db, "backfill", "--scorer", "length=1", "--start", start, "--dry-run", "--json"
    )
    assert (code, json.loads(out)) == (0, {"length": 8})

    code, out, _ = cli(
        capsys, db, "backfill", "-s", "length=1", "--start", start, "--wait", "--json"
    )
    job = json.loads(out)
    assert (code, job["status"], job["succeeded"]) == (0, "SUCCEEDED", 8)

    code, out, _ = cli(capsys, db, "jobs", "list", "--json")
    assert [j["job_id"] for j in json.loads(out)] == [job["job_id"]]
    code, out, _ = cli(capsys, db, "jobs", "get", job["job_id"], "--json")
    assert json.loads(out)["processed"] == 8
    code, out, _ = cli(capsys, db, "jobs", "cancel", job["job_id"], "--json")
    assert json.loads(out)["status"] == "SUCCEEDED"

    code, out, _ = cli(capsys, db, "backfill", "-s", "length=1", "--wait")
    assert code == 0
    assert "SUCCEEDED" in out
    code, out, _ = cli(capsys, db, "jobs", "list")
    assert "SUCCEEDED" in out
    code, out, _ = cli(capsys, db, "jobs", "get", job["job_id"])
    assert "length" in out


def test_cli_backfill_without_wait_leaves_the_job_to_a_worker(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log(3)
    helpers.length.register()
    code, out, _ = cli(capsys, db, "backfill", "-s", "length=1", "--json")
    assert code == 0
    assert json.loads(out)["job_id"].startswith("bf-")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["backfill", "-s", "nope=1"], "'nope'"),
        (["backfill", "-s", "length"], "sample_rate"),
        (["backfill", "-s", "length=abc"], "'abc'"),
        (["backfill", "-s", "length=1", "--start", "yesterday"], "--start"),
        (["jobs", "get", "bf-nope"], "'bf-nope'"),
    ],
)
def test_cli_errors_are_one_line(
    registered: None, db: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, _, err = cli(capsys, db, *args)
    assert code == 1
    assert message in err
    assert "Traceback" not in err


def test_feedback_objects_round_trip_through_the_public_api(db: Path) -> None:
    [trace_id] = log(1)
    helpers.several.register()
    run(BackfillScorerConfig("several", sample_rate=1.0))
    found = localscorers.get_trace(trace_id).info.assessments
    assert sorted((a.name, a.value) for a in found if isinstance(a, Feedback)) == [
        ("seen", True),
        ("size", 0),
    ]
