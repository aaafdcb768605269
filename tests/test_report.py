"""``scorer_report``: per-scorer evaluations, results and errors over time, aggregated in SQL."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import localscorers
from localscorers import (
    ConfigurationError,
    ReportBucket,
    ScorerReport,
    TimeBucket,
    _clock,
    _context,
    scorer_report,
)
from localscorers.report import save_report_chart
from localscorers.store import schema


@localscorers.scorer
def long_enough(outputs: Any) -> bool:
    return len(outputs) >= 5


@localscorers.scorer
def word_count(outputs: Any) -> int:
    if outputs == "boom":
        raise ValueError("cannot count an explosion")
    return len(outputs.split())


@localscorers.scorer
def label(outputs: Any) -> str:
    return "short" if len(outputs) < 5 else "long"


OUTPUTS = ["hi", "hello world", "boom", "a longer answer here"]


@pytest.fixture
def report_db(store_uri: str) -> str:
    """A fresh database of each backend (SQLite, then PostgreSQL) with experiment "report"."""
    localscorers.set_tracking_uri(store_uri)
    localscorers.set_experiment("report")
    return store_uri


def _log(outputs: list[str], experiment_id: str | None = None) -> list[str]:
    return [
        localscorers.log_trace(inputs={"q": o}, outputs=o, experiment_id=experiment_id)
        for o in outputs
    ]


def _by_name(reports: list[ScorerReport]) -> dict[str, ScorerReport]:
    return {r.scorer_name: r for r in reports}


def _set_finished(ms: int) -> None:
    """Move every finished evaluation to one time (what hours of traffic would leave)."""
    e = schema.evaluations
    with _context.current().db.write() as conn:
        conn.execute(sa.update(e).where(e.c.finished_ms.is_not(None)).values(finished_ms=ms))


@pytest.mark.usefixtures("report_db")
def test_pass_rate_mean_and_errors_per_scorer() -> None:
    long_enough.register().start()
    word_count.register().start()
    label.register().start()
    _log(OUTPUTS)
    assert localscorers.flush(timeout=30)

    reports = scorer_report()

    assert [r.scorer_name for r in reports] == ["label", "long_enough", "word_count"]
    by_name = _by_name(reports)
    passing = by_name["long_enough"]
    assert (passing.evaluations, passing.succeeded, passing.errors, passing.pending) == (4, 4, 0, 0)
    assert (passing.bool_values, passing.passed) == (4, 2)
    assert passing.pass_rate == pytest.approx(0.5)
    assert passing.mean_value is None
    assert passing.error_rate == 0.0
    assert passing.status == localscorers.ScorerStatus.ACTIVE
    assert passing.version == 1
    assert passing.sample_rate == 1.0

    counting = by_name["word_count"]
    assert (counting.evaluations, counting.succeeded, counting.errors) == (4, 3, 1)
    assert counting.numeric_values == 3
    assert counting.mean_value == pytest.approx((1 + 2 + 4) / 3)
    assert counting.pass_rate is None
    assert counting.error_rate == pytest.approx(0.25)

    text = by_name["label"]
    assert text.other_values == 4
    assert text.pass_rate is None
    assert text.mean_value is None

    for report in reports:
        assert report.bucket is TimeBucket.HOUR
        assert sum(b.evaluations for b in report.buckets) == report.evaluations
        assert sum(b.errors for b in report.buckets) == report.errors
        assert report.last_evaluation is not None
        assert report.last_evaluation.tzinfo is not None


@pytest.mark.usefixtures("report_db")
def test_registered_scorers_without_evaluations_are_listed() -> None:
    long_enough.register()
    word_count.register().start(
        sampling_config=localscorers.ScorerSamplingConfig(filter_string="tags.env = 'prod'")
    )

    by_name = _by_name(scorer_report())

    assert by_name["long_enough"].status == localscorers.ScorerStatus.REGISTERED
    assert by_name["long_enough"].evaluations == 0
    assert by_name["long_enough"].buckets == []
    assert by_name["long_enough"].error_rate is None
    assert by_name["word_count"].filter_string == "tags.env = 'prod'"
    assert by_name["word_count"].last_evaluation is None


@pytest.mark.usefixtures("report_db")
def test_pending_work_is_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    # With the monitor off nothing runs in this process: the work stays pending.
    monkeypatch.setenv("LOCALSCORERS_MONITOR", "off")
    long_enough.register().start()
    _log(OUTPUTS)

    report = _by_name(scorer_report())["long_enough"]

    assert report.pending == 4
    assert report.evaluations == 0
    # Pending work is today's backlog: a since in the future still shows it.
    later = _by_name(scorer_report(since=datetime.now(UTC) + timedelta(hours=1)))["long_enough"]
    assert later.pending == 4


@pytest.mark.usefixtures("report_db")
def test_since_excludes_older_evaluations() -> None:
    long_enough.register().start()
    _log(OUTPUTS)
    assert localscorers.flush(timeout=30)
    _set_finished(_clock.now_ms() - 3 * 3_600_000)

    recent = _by_name(scorer_report(since=datetime.now(UTC) - timedelta(hours=1)))
    everything = _by_name(scorer_report(since=_clock.now_ms() - 5 * 3_600_000))

    assert recent["long_enough"].evaluations == 0
    assert recent["long_enough"].pass_rate is None
    assert everything["long_enough"].evaluations == 4
    assert everything["long_enough"].pass_rate == pytest.approx(0.5)


@pytest.mark.usefixtures("report_db")
def test_naive_since_means_utc() -> None:
    long_enough.register().start()
    _log(OUTPUTS)
    assert localscorers.flush(timeout=30)
    naive_past = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=5)
    assert _by_name(scorer_report(since=naive_past))["long_enough"].evaluations == 4


@pytest.mark.usefixtures("report_db")
def test_errors_over_time_in_hour_buckets() -> None:
    word_count.register().start()
    _log(["one", "boom"])
    assert localscorers.flush(timeout=30)
    first_hour = 480_000 * 3_600_000  # an exact hour boundary
    _set_finished(first_hour + 60_000)
    _log(["two words", "boom", "boom"])
    assert localscorers.flush(timeout=30)
    e = schema.evaluations
    with _context.current().db.write() as conn:
        conn.execute(
            sa.update(e)
            .where(e.c.finished_ms > first_hour + 60_000)
            .values(finished_ms=first_hour + 2 * 3_600_000 + 5)
        )

    report = scorer_report(since=first_hour, bucket="hour")[0]

    assert report.bucket is TimeBucket.HOUR
    assert report.buckets == [
        ReportBucket(start=_clock.datetime_from_ms(first_hour), evaluations=2, errors=1),
        ReportBucket(
            start=_clock.datetime_from_ms(first_hour + 2 * 3_600_000), evaluations=3, errors=2
        ),
    ]
    # Daily buckets fold both hours into one day.
    daily = scorer_report(since=first_hour, bucket=TimeBucket.DAY)[0]
    assert [(b.evaluations, b.errors) for b in daily.buckets] == [(5, 3)]
    assert daily.buckets[0].start.hour == 0


@pytest.mark.usefixtures("report_db")
def test_automatic_bucket_is_days_for_long_spans() -> None:
    long_enough.register().start()
    _log(OUTPUTS)
    assert localscorers.flush(timeout=30)
    assert scorer_report()[0].bucket is TimeBucket.HOUR
    _set_finished(_clock.now_ms() - 10 * 24 * 3_600_000)
    assert scorer_report()[0].bucket is TimeBucket.DAY


@pytest.mark.usefixtures("report_db")
def test_deleted_scorer_keeps_its_numbers() -> None:
    scorer = long_enough.register().start()
    _log(OUTPUTS)
    assert localscorers.flush(timeout=30)
    scorer.delete()

    report = _by_name(scorer_report())["long_enough"]

    assert report.status == localscorers.ScorerStatus.DELETED
    assert report.version is None
    assert report.sample_rate == 0.0
    assert report.evaluations == 4


@pytest.mark.usefixtures("report_db")
def test_other_experiments_are_not_counted() -> None:
    long_enough.register().start()
    _log(OUTPUTS)
    other = localscorers.set_experiment("other")
    long_enough.register(experiment_id=other.experiment_id).start(experiment_id=other.experiment_id)
    _log(["x"], experiment_id=other.experiment_id)
    assert localscorers.flush(timeout=30)
    first = localscorers.get_experiment_by_name("report")
    assert first is not None

    assert scorer_report()[0].evaluations == 1
    assert scorer_report(experiment_id=first.experiment_id)[0].evaluations == 4


@pytest.mark.usefixtures("report_db")
def test_an_experiment_without_scorers_has_an_empty_report() -> None:
    assert scorer_report() == []


@pytest.mark.usefixtures("report_db")
def test_bad_arguments_raise_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="bucket must be one of"):
        scorer_report(bucket="week")
    with pytest.raises(ConfigurationError, match="since must be a datetime"):
        scorer_report(since="yesterday")  # type: ignore[arg-type]
    with pytest.raises(localscorers.NotFoundError):
        scorer_report(experiment_id="404")


def test_report_values_are_frozen() -> None:
    report = ScorerReport(scorer_name="x", status=localscorers.ScorerStatus.ACTIVE)
    with pytest.raises(ValueError, match="frozen"):
        report.errors = 3


def test_chart_without_matplotlib_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A None entry in sys.modules makes the import fail as if the package were missing.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ConfigurationError, match="pip install matplotlib"):
        save_report_chart([], tmp_path / "chart.png")
    assert not (tmp_path / "chart.png").exists()


@pytest.mark.usefixtures("report_db")
def test_chart_is_written_when_matplotlib_is_installed(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    word_count.register().start()
    long_enough.register().start()
    _log(OUTPUTS)
    assert localscorers.flush(timeout=30)
    written = save_report_chart(scorer_report(), tmp_path / "chart.png")
    assert written.read_bytes().startswith(b"\x89PNG")


@localscorers.scorer(aggregations=["median", "max", "p90"])
def length(outputs: Any) -> int:
    return len(outputs)


@pytest.mark.usefixtures("report_db")
def test_the_report_uses_a_scorers_own_aggregations() -> None:
    length.register().start()
    word_count.register().start()
    _log(["a", "abc", "abcde", "abcdefghij"])
    localscorers.flush()

    reports = _by_name(localscorers.scorer_report())

    # MLflow's definitions: the median of 1, 3, 5, 10 is 4; p90 interpolates linearly.
    assert reports["length"].aggregations == {"median": 4.0, "max": 10.0, "p90": 8.5}
    assert reports["word_count"].aggregations == {}  # it declares none: the mean is mean_value
