"""What the UI's templates are given: chart layout, span trees, chips, cursors, escaping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from localscorers import AssessmentError, Expectation, Feedback, ReportBucket, ScorerReport, Span
from localscorers.server import TracesCursor, chart, chips, environment, pretty, span_tree

NOW = datetime(2026, 11, 29, 12, 30, tzinfo=UTC)


def _report(buckets: list[tuple[datetime, int, int]], bucket: str = "HOUR") -> ScorerReport:
    return ScorerReport(
        scorer_name="s",
        status="ACTIVE",
        bucket=bucket,
        buckets=[ReportBucket(start=s, evaluations=n, errors=e) for s, n, e in buckets],
    )


def test_chart_draws_a_bar_per_bucket_with_data_and_leaves_gaps() -> None:
    hour = NOW.replace(minute=0)
    report = _report([(hour - timedelta(hours=3), 10, 5), (hour, 20, 0)])
    drawn = chart(report, since=NOW - timedelta(hours=24), now=NOW)
    assert drawn.peak == 20
    assert len(drawn.bars) == 2
    older, newer = drawn.bars
    assert (older.height, older.error_height) == (drawn.height / 2, drawn.height / 4)
    assert newer.height == drawn.height
    assert newer.x + newer.width <= drawn.width
    slot = drawn.width / 25  # 24 hours back, plus the current hour
    assert round((newer.x - older.x) / slot) == 3
    assert "10 evaluations, 5 errors" in older.label


def test_chart_keeps_the_last_48_buckets_and_handles_no_data() -> None:
    day = NOW.replace(hour=0, minute=0)
    report = _report([(day - timedelta(days=100), 3, 0), (day, 1, 1)], bucket="DAY")
    drawn = chart(report, since=None, now=NOW)
    assert len(drawn.bars) == 1  # the bucket 100 days ago is beyond the 48 shown
    empty = chart(_report([]), since=None, now=NOW)
    assert (empty.bars, empty.peak) == ([], 0)


def _span(span_id: str, parent: str | None, start: int) -> Span:
    return Span(span_id=span_id, parent_id=parent, name=span_id, start_time_ns=start)


def test_span_tree_nests_children_in_start_order_and_keeps_orphans() -> None:
    spans = [
        _span("child-b", "root", 3),
        _span("root", None, 1),
        _span("child-a", "root", 2),
        _span("orphan", "missing", 4),
        _span("self", "self", 5),
    ]
    roots = span_tree(spans)
    assert [node.span.name for node in roots] == ["root", "orphan", "self"]
    assert [child.span.name for child in roots[0].children] == ["child-a", "child-b"]
    assert roots[0].duration_ms is None


def test_chips_show_valid_feedback_with_their_kind() -> None:
    assessments = [
        Feedback(name="ok", value=True, rationale="fine"),
        Feedback(name="bad", value=False),
        Feedback(name="n", value=0.5),
        Feedback(name="err", error=AssessmentError(error_code="X", error_message="boom")),
        Feedback(name="old", value=True, valid=False),
        Expectation(name="truth", value="x"),
    ]
    shown = {chip.text: (chip.kind, chip.title) for chip in chips(assessments)}
    assert shown == {
        "ok: true": ("pass", "fine"),
        "bad: false": ("fail", ""),
        "n: 0.5": ("value", ""),
        "err: error": ("error", "boom"),
    }


def test_cursor_parses_its_own_text_and_refuses_anything_else() -> None:
    cursor = TracesCursor(1_700_000_000_000, 3)
    assert TracesCursor.parse(str(cursor)) == cursor
    for text in (None, "", "abc", "1.x", "-1.2", "1.2.3", "1"):
        assert TracesCursor.parse(text) is None


def test_pretty_indents_json_and_cuts_huge_values() -> None:
    assert pretty({"a": [1]}) == '{\n  "a": [\n    1\n  ]\n}'
    assert pretty("plain") == "plain"
    long = pretty("x" * 25_000)
    assert long.endswith("... (5000 more characters)")


def test_templates_escape_everything() -> None:
    template = environment().from_string("{{ value }}")
    assert template.render(value="<script>x</script>") == "&lt;script&gt;x&lt;/script&gt;"
