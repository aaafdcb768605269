"""The web UI in a real browser: Debian's chromium driven by Playwright, on a demo database.

Never ``playwright install``: the browser is the system's (``LOCALSCORERS_TEST_CHROMIUM``,
default ``/usr/bin/chromium``); without one these tests skip and say why. Set
``LOCALSCORERS_UI_SCREENSHOTS=docs/screenshots`` to refresh the README's screenshots.
"""

from __future__ import annotations

import io
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from rich.console import Console

import localscorers
from localscorers.cli import run_demo
from localscorers.server import ServerSettings
from tests.server.test_ui_http import serve_ui

if TYPE_CHECKING:
    # Only for types: at run time Playwright is optional and imported through importorskip.
    from playwright.sync_api import Browser, Page

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = os.environ.get("LOCALSCORERS_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = os.environ.get("LOCALSCORERS_UI_SCREENSHOTS")
WAIT_MS = 15_000


@localscorers.scorer(name="slow_check", max_concurrency=1)
def slow_check(outputs: object) -> bool:
    """Takes a quarter second per trace, so a backfill is still running when cancelled."""
    time.sleep(0.25)
    return bool(outputs)


def _chromium() -> str:
    found = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if found is None:
        pytest.skip(
            f"No chromium executable at {CHROMIUM} (LOCALSCORERS_TEST_CHROMIUM) or on PATH; "
            "install Debian's chromium package to run the browser tests."
        )
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = _chromium()
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def experiment_id(tracking: Path) -> str:
    del tracking
    result = run_demo(console=Console(file=io.StringIO()), traces=40)
    return str(result.experiment_id)


@pytest.fixture
def base_url(experiment_id: str) -> Iterator[str]:
    del experiment_id
    with serve_ui(ServerSettings()) as url:
        yield url


@pytest.fixture
def page(browser: Browser, base_url: str) -> Iterator[Page]:
    del base_url
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    opened = context.new_page()
    opened.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.on("dialog", lambda dialog: errors.append(f"dialog: {dialog.message}"))
    yield opened
    context.close()
    assert errors == []  # no script error, and nothing injected ever opened a dialog


def _shot(page: Page, name: str, tmp_path: Path) -> None:
    folder = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def test_experiments_page_lists_the_demo(page: Page, base_url: str, tmp_path: Path) -> None:
    page.goto(base_url + "/")
    rows = page.locator("#experiments tbody tr")
    assert "localscorers-demo" in rows.all_inner_texts()[-1]
    assert "sqlite:///" in page.locator("footer").inner_text()  # the database it reads
    _shot(page, "experiments", tmp_path)
    page.get_by_role("link", name="localscorers-demo").click()
    page.wait_for_url("**/scorers")
    assert page.locator("#scorers").is_visible()


def test_scorers_page_shows_state_numbers_and_a_chart(
    page: Page, base_url: str, experiment_id: str, tmp_path: Path
) -> None:
    page.goto(f"{base_url}/experiments/{experiment_id}/scorers")
    report = {r.scorer_name: r for r in localscorers.scorer_report(experiment_id=experiment_id)}
    rows = page.locator("#scorers tbody tr")
    assert rows.count() == len(report) == 4
    concise = page.locator("tr[data-scorer='is_concise']")
    text = concise.inner_text()
    assert "ACTIVE" in text
    assert f"{report['is_concise'].pass_rate:.1%} pass" in text
    assert str(report["is_concise"].evaluations) in text
    assert "STOPPED" in page.locator("tr[data-scorer='cites_source']").inner_text()
    assert "trace.status = 'OK'" in page.locator("tr[data-scorer='answer_length']").inner_text()
    assert concise.locator("svg.chart rect").count() >= 1
    page.select_option("#window", "all")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**window=all")
    _shot(page, "scorers", tmp_path)


def test_traces_page_filters_pages_and_shows_a_bad_filter_in_place(
    page: Page, base_url: str, experiment_id: str, tmp_path: Path
) -> None:
    page.goto(f"{base_url}/experiments/{experiment_id}/traces")
    assert page.locator("#traces tbody tr").count() == 25
    first_page = page.locator("a.trace-link").all_inner_texts()
    _shot(page, "traces", tmp_path)
    page.locator("#older").click()
    page.wait_for_url("**page=2")
    page.locator("text=Page 2").wait_for()
    second_page = page.locator("a.trace-link").all_inner_texts()
    assert len(second_page) == 15  # 40 traces
    assert not set(first_page) & set(second_page)

    page.fill("#filter", "feedback.helpfulness = 'false'")
    page.locator("#search").click()
    page.wait_for_url("**filter=feedback.helpfulness*")
    expected = localscorers.search_traces(
        experiment_ids=[experiment_id], filter_string="feedback.helpfulness = 'false'"
    )
    page.locator("text=Page 1").wait_for()
    rows = page.locator("#traces tbody tr")
    assert rows.count() == min(len(expected), 25)
    assert all("helpfulness: false" in chips for chips in rows.locator(".chips").all_inner_texts())

    page.fill("#filter", "tags.env = 'prod' AND (")
    page.locator("#search").click()
    error = page.locator("#filter-error")
    error.wait_for()
    assert "FilterSyntaxError" in error.inner_text()
    assert "position 23" in error.inner_text()
    caret_lines = error.locator("pre.caret").inner_text().splitlines()
    assert caret_lines == ["tags.env = 'prod' AND (", " " * 23 + "^"]
    assert page.input_value("#filter") == "tags.env = 'prod' AND ("
    _shot(page, "traces-filter-error", tmp_path)


def test_trace_page_shows_spans_feedback_and_explain(
    page: Page, base_url: str, experiment_id: str, tmp_path: Path
) -> None:
    page.goto(f"{base_url}/experiments/{experiment_id}/traces")
    trace_id = page.locator("a.trace-link").first.inner_text()
    page.locator("a.trace-link").first.click()
    page.wait_for_url("**/trace?id=*")
    trace = localscorers.get_trace(trace_id)
    assert page.locator("#trace-id").inner_text() == trace_id
    spans = page.locator("#spans .span-name").all_inner_texts()
    assert spans == [s.name for s in sorted(trace.data.spans, key=lambda s: s.start_time_ns)]
    assert trace.data.request["question"] in page.locator("#trace-inputs").inner_text()
    feedback = page.locator("#feedback tbody tr")
    assert feedback.count() == sum(
        1 for a in trace.info.assessments if isinstance(a, localscorers.Feedback)
    )
    explained = page.locator("#explain tbody tr").all_inner_texts()
    entries = localscorers.explain(trace_id)
    assert len(explained) == len(entries) == 4
    for row, entry in zip(explained, entries, strict=True):
        assert entry.scorer_name in row
        assert entry.outcome.words in row
    _shot(page, "trace", tmp_path)


def test_actions_change_the_scorer_as_the_api_sees_it(
    page: Page, base_url: str, experiment_id: str, tmp_path: Path
) -> None:
    def api() -> localscorers.Scorer:
        return localscorers.get_scorer(name="is_concise", experiment_id=experiment_id)

    page.goto(f"{base_url}/experiments/{experiment_id}/scorer?name=is_concise")
    page.fill("#sample_rate", "0.5")
    page.fill("#filter_string", "tags.env = 'prod'")
    page.locator("#update").click()
    page.locator("text=Updated.").wait_for()
    assert (api().status, api().sample_rate, api().filter_string) == (
        "ACTIVE",
        0.5,
        "tags.env = 'prod'",
    )
    assert page.locator("#scorer-rate").inner_text() == "0.5"
    _shot(page, "scorer", tmp_path)

    page.locator("#stop").click()
    page.locator("text=Stopped.").wait_for()
    assert (api().status, api().sample_rate) == ("STOPPED", 0.0)

    page.locator("#update").click()  # update is for ACTIVE scorers only: the API says so
    error = page.locator("#action-error")
    error.wait_for()
    assert "STOPPED" in error.inner_text()
    assert "Use start(sampling_config=...)" in error.inner_text()
    page.fill("#filter_string", "tags.env = ")
    page.locator("#start").click()
    assert "Invalid filter at position 11" in page.locator("#action-error").inner_text()
    assert api().status == "STOPPED"

    page.fill("#sample_rate", "0.25")
    page.fill("#filter_string", "")
    page.locator("#start").click()
    page.locator("text=Started.").wait_for()
    assert (api().status, api().sample_rate, api().filter_string) == ("ACTIVE", 0.25, None)


def test_backfill_runs_live_and_cancel_stops_it(
    page: Page, base_url: str, experiment_id: str, tmp_path: Path
) -> None:
    slow_check.register(experiment_id=experiment_id)
    page.goto(f"{base_url}/experiments/{experiment_id}/scorer?name=slow_check")
    page.fill("#backfill_rate", "1")
    page.locator("#dry-run").click()
    page.locator("text=a backfill would evaluate 40 trace(s)").wait_for()

    page.locator("#backfill").click()
    page.wait_for_url("**/jobs?created=*")
    job_id = page.url.split("created=")[1]
    row = page.locator(f"tr[data-job='{job_id}']")
    assert page.locator("#jobs-live").get_attribute("data-live") == "yes"
    # htmx polls the table: progress moves without reloading the page.
    page.wait_for_function(
        "id => { const row = document.querySelector(`tr[data-job='${id}']`);"
        " return row && row.querySelector('progress').value > 0; }",
        arg=job_id,
    )
    assert row.get_attribute("data-status") == "RUNNING"
    _shot(page, "jobs", tmp_path)
    row.locator("button.cancel").click()
    page.wait_for_url("**cancelled=*")
    assert page.locator(f"tr[data-job='{job_id}']").get_attribute("data-status") == "CANCELLED"
    job = localscorers.get_backfill_job(job_id)
    assert job.status == "CANCELLED"
    assert 0 < job.processed < 40
    assert page.locator("#jobs-live").get_attribute("data-live") == "no"


def test_stored_source_with_a_script_renders_inert(
    page: Page, base_url: str, experiment_id: str
) -> None:
    @localscorers.scorer(name="sneaky")
    def sneaky(outputs: object) -> bool:
        """<script>document.title = 'pwned'</script>"""
        return "<img src=x onerror=alert(1)>" not in str(outputs)

    sneaky.register(experiment_id=experiment_id)
    trace_id = localscorers.log_trace(
        inputs="<script>document.title = 'pwned'</script>",
        outputs="<img src=x onerror=alert(1)>",
        experiment_id=experiment_id,
    )
    page.goto(f"{base_url}/experiments/{experiment_id}/scorer?name=sneaky")
    source = page.locator("#scorer-source").inner_text()
    assert "<script>document.title = 'pwned'</script>" in source  # shown as text
    assert page.title() == "sneaky · localscorers"
    assert page.locator("main script").count() == 0
    page.goto(f"{base_url}/trace?id={trace_id}")
    assert "<img src=x onerror=alert(1)>" in page.locator("#trace-outputs").inner_text()
    assert page.locator("main img").count() == 0
    assert "pwned" not in page.title()
