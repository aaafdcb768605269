"""The web UI over plain HTTP (no browser): CSRF, the token, escaping, errors, paging.

The app runs in uvicorn on a free 127.0.0.1 port in a thread (``serve_ui``, which the
browser tests use too), and httpx talks to it.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from html import unescape as html_unescape
from pathlib import Path

import httpx
import pytest
import uvicorn
from markupsafe import escape

import localscorers
from localscorers import InvalidTransitionError, ScorerSamplingConfig
from localscorers.server import STATIC, TEMPLATES, ServerSettings, create_app, ui_pages
from tests.scorer_helpers import is_short

_CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


@contextmanager
def serve_ui(settings: ServerSettings) -> Iterator[str]:
    """Run ``create_app(settings)`` in uvicorn on a free loopback port; yield its URL."""
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), host="127.0.0.1", log_level="warning", ws="none", lifespan="on"
        )
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started:  # set by uvicorn once it accepts connections
            assert thread.is_alive(), "the UI server stopped while starting"
            assert time.monotonic() < deadline, "the UI server did not start"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


@pytest.fixture
def experiment_id(tracking: Path) -> str:
    del tracking
    experiment = localscorers.set_experiment("ui-http")
    is_short.register(experiment_id=experiment.experiment_id).start(
        experiment_id=experiment.experiment_id,
        sampling_config=ScorerSamplingConfig(sample_rate=1.0),
    )
    return experiment.experiment_id


@pytest.fixture
def client(experiment_id: str) -> Iterator[httpx.Client]:
    del experiment_id
    with serve_ui(ServerSettings(run_workers=False)) as url, httpx.Client(base_url=url) as http:
        yield http


def _csrf(client: httpx.Client, experiment_id: str) -> str:
    page = client.get(f"/experiments/{experiment_id}/scorer", params={"name": "is_short"})
    assert page.status_code == 200
    match = _CSRF.search(page.text)
    assert match is not None
    return match.group(1)


def _status(experiment_id: str) -> str:
    return localscorers.get_scorer(name="is_short", experiment_id=experiment_id).status


def test_a_post_without_a_csrf_token_is_refused(client: httpx.Client, experiment_id: str) -> None:
    client.get("/")  # has the CSRF cookie set, but the form below carries no token
    response = client.post(f"/experiments/{experiment_id}/scorer/stop", data={"name": "is_short"})
    assert response.status_code == 403
    assert "CSRF token is missing or does not match" in response.text
    assert _status(experiment_id) == "ACTIVE"


def test_a_post_with_a_forged_token_or_from_another_origin_is_refused(
    client: httpx.Client, experiment_id: str
) -> None:
    token = _csrf(client, experiment_id)
    url = f"/experiments/{experiment_id}/scorer/stop"
    forged = client.post(url, data={"name": "is_short", "csrf_token": "0" * 64})
    assert forged.status_code == 403
    elsewhere = client.post(
        url,
        data={"name": "is_short", "csrf_token": token},
        headers={"Origin": "http://evil.example"},
    )
    assert elsewhere.status_code == 403
    assert "another origin (http://evil.example)" in elsewhere.text
    cross_site = client.post(
        url,
        data={"name": "is_short", "csrf_token": token},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert cross_site.status_code == 403
    assert _status(experiment_id) == "ACTIVE"


def test_a_post_with_its_csrf_token_acts_through_the_api(
    client: httpx.Client, experiment_id: str
) -> None:
    token = _csrf(client, experiment_id)
    response = client.post(
        f"/experiments/{experiment_id}/scorer/stop",
        data={"name": "is_short", "csrf_token": token},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"].endswith("scorer?name=is_short&done=stop")
    assert _status(experiment_id) == "STOPPED"


def test_action_errors_are_the_apis_own_messages(client: httpx.Client, experiment_id: str) -> None:
    localscorers.get_scorer(name="is_short", experiment_id=experiment_id).stop(
        experiment_id=experiment_id
    )
    with pytest.raises(InvalidTransitionError) as expected:
        localscorers.get_scorer(name="is_short", experiment_id=experiment_id).update(
            experiment_id=experiment_id, sampling_config=ScorerSamplingConfig(0.5)
        )
    token = _csrf(client, experiment_id)
    url = f"/experiments/{experiment_id}/scorer/"
    update = client.post(
        url + "update", data={"name": "is_short", "csrf_token": token, "sample_rate": "0.5"}
    )
    assert update.status_code == 400
    assert escape(str(expected.value)) in update.text
    bad_rate = client.post(
        url + "start", data={"name": "is_short", "csrf_token": token, "sample_rate": "half"}
    )
    assert bad_rate.status_code == 400
    assert escape("sample_rate must be a number between 0.0 and 1.0, got 'half'.") in (
        bad_rate.text
    )
    assert 'value="half"' in bad_rate.text  # what was typed stays in the form
    backfill = client.post(
        url + "backfill", data={"name": "is_short", "csrf_token": token, "backfill_rate": ""}
    )
    assert backfill.status_code == 400
    assert "without a sample_rate: it is STOPPED, not ACTIVE" in backfill.text
    assert _status(experiment_id) == "STOPPED"


def test_the_server_token_is_required_when_set(experiment_id: str) -> None:
    settings = ServerSettings(run_workers=False, token="s3cret-token")  # noqa: S106
    with serve_ui(settings) as url, httpx.Client(base_url=url) as client:
        refused = client.get("/")
        assert refused.status_code == 401
        assert "Open /?token=&lt;the token&gt; once in this browser" in refused.text
        assert client.get("/", params={"token": "wrong"}).status_code == 401
        visit = client.get(
            f"/experiments/{experiment_id}/scorers?token=s3cret-token", follow_redirects=False
        )
        assert visit.status_code == 303
        assert visit.headers["location"] == f"/experiments/{experiment_id}/scorers"
        assert "localscorers_token" in visit.headers["set-cookie"]
        assert client.get(visit.headers["location"]).status_code == 200  # the cookie is kept
        client.cookies.clear()
        assert client.get("/").status_code == 401
    with serve_ui(settings) as url, httpx.Client(base_url=url) as fresh:
        headers = {"Authorization": "Bearer s3cret-token"}
        assert fresh.get("/", headers=headers).status_code == 200
        assert fresh.get("/", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_stored_source_and_user_data_are_escaped(client: httpx.Client, experiment_id: str) -> None:
    @localscorers.scorer(name="sneaky")
    def sneaky(outputs: object) -> bool:
        """<script>document.title = 'pwned'</script>"""
        return "<img src=x onerror=alert(1)>" not in str(outputs)

    sneaky.register(experiment_id=experiment_id)
    trace_id = localscorers.log_trace(
        inputs={"q": "<script>alert(1)</script>"},
        outputs="<img src=x onerror=alert(1)>",
        tags={"<b>": "</td><script>x</script>"},
        experiment_id=experiment_id,
    )
    page = client.get(f"/experiments/{experiment_id}/scorer", params={"name": "sneaky"})
    assert page.status_code == 200
    assert "&lt;script&gt;document.title = &#39;pwned&#39;&lt;/script&gt;" in page.text
    assert "<script>document.title" not in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for url in (f"/trace?id={trace_id}", f"/experiments/{experiment_id}/traces"):
        text = client.get(url).text
        assert "<img src=x" not in text
        assert "<script>alert" not in text
        assert "<script>x" not in text


def test_unknown_ids_get_a_404_page(client: httpx.Client) -> None:
    assert client.get("/experiments/999/scorers").status_code == 404
    missing = client.get("/trace", params={"id": "tr-nope"})
    assert missing.status_code == 404
    assert "No trace has id &#39;tr-nope&#39;" in missing.text
    assert client.get("/experiments/0/scorer", params={"name": "nope"}).status_code == 404


def test_a_bad_filter_is_shown_in_place_with_its_caret(
    client: httpx.Client, experiment_id: str
) -> None:
    url = f"/experiments/{experiment_id}/traces"
    page = client.get(url, params={"filter": "tags.env = "})
    assert page.status_code == 400
    assert 'id="filter-error"' in page.text
    assert "at position 11" in page.text
    assert "tags.env = \n           ^</pre>" in page.text
    assert 'value="tags.env = "' in page.text  # the filter box keeps the text
    fragment = client.get(url, params={"filter": "tags.env = "}, headers={"HX-Request": "true"})
    assert fragment.status_code == 200  # htmx swaps only 2xx answers
    assert "<html" not in fragment.text
    assert 'id="filter-error"' in fragment.text


def test_trace_pages_cover_every_match_once_even_within_one_millisecond(
    experiment_id: str,
) -> None:
    # 3 request times shared by 70 traces: pages must split inside one millisecond.
    for index in range(70):
        localscorers.log_trace(
            inputs={"i": index},
            outputs="ok" if index % 5 else "no",
            request_time=1_700_000_000_000 + index % 3,
            experiment_id=experiment_id,
        )
    for filter_string, expected in (("", 70), ("trace.status = 'OK' OR name = 'x'", 70)):
        seen: list[str] = []
        cursor = None
        while True:
            page, cursor = ui_pages.traces_page(experiment_id, filter_string, cursor)
            seen.extend(t.info.trace_id for t in page)
            if cursor is None:
                break
        assert len(seen) == expected
        assert len(set(seen)) == expected
        everything = localscorers.search_traces(experiment_ids=[experiment_id])
        assert seen == [t.info.trace_id for t in everything]


def test_the_templates_and_htmx_ship_with_the_package() -> None:
    assert (STATIC / "htmx.min.js").stat().st_size > 40_000
    assert "htmx 2.0.11" in (STATIC / "NOTICE").read_text()
    assert {p.name for p in TEMPLATES.glob("*.html")} >= {"base.html", "trace.html", "jobs.html"}


def test_a_scorer_links_to_the_traces_with_its_feedback(
    client: httpx.Client, experiment_id: str
) -> None:
    scored = localscorers.log_trace(inputs="q", outputs="short", experiment_id=experiment_id)
    localscorers.log_trace(inputs="q", outputs="x", experiment_id="0")
    assert localscorers.flush(timeout=30)
    page = client.get(f"/experiments/{experiment_id}/scorer", params={"name": "is_short"})
    link = re.search(r'id="scorer-traces" href="([^"]+)"', page.text)
    assert link is not None
    traces = client.get(html_unescape(link.group(1)))
    assert traces.status_code == 200
    assert re.findall(r'class="tid">([^<]+)<', traces.text) == [scored]
    assert client.get("/static/favicon.svg").status_code == 200
