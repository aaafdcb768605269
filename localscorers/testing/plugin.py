"""The localscorers pytest plugin, loaded through the ``pytest11`` entry point.

Fixtures: ``localscorers_db`` (a fresh database in ``tmp_path`` as the tracking URI,
evaluated by the in-process monitor; ``localscorers_db.flush()`` returns once pending
evaluations are done), ``make_trace`` (builds a ``Trace`` without a database),
``fake_judge_model`` (a deterministic judge model) and ``assert_feedback``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from localscorers.testing import helpers


def _helpers() -> Any:  # noqa: ANN401 - the helpers module
    # pytest loads this plugin in every session of every project that has localscorers
    # installed; the library (SQLAlchemy, pydantic) loads only when a fixture is used.
    from localscorers.testing import helpers  # noqa: PLC0415

    return helpers


__all__ = ["assert_feedback", "fake_judge_model", "localscorers_db", "make_trace"]


@pytest.fixture
def localscorers_db(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[helpers.LocalScorersDB]:
    """A fresh database in ``tmp_path``, set as the tracking URI for the test.

    Online evaluation runs in the test's process; call ``localscorers_db.flush()`` (or
    ``localscorers.flush()``) and the evaluations pending then are done when it returns.
    """
    monkeypatch.setenv("LOCALSCORERS_MONITOR", "on")
    monkeypatch.delenv("LOCALSCORERS_TRACKING_URI", raising=False)
    helpers = _helpers()
    # pytest runs the code after the yield whether the test passed or failed.
    yield helpers.open_test_database(tmp_path / "localscorers.db")
    helpers.close_test_database()


@pytest.fixture
def make_trace() -> Callable[..., Any]:
    """``make_trace(inputs, outputs, *, spans=None, expectations=None, ...)``: no database."""
    return _helpers().make_trace  # type: ignore[no-any-return]


@pytest.fixture
def fake_judge_model() -> Iterator[helpers.FakeJudgeModel]:
    """A judge model answering a chosen verdict: ``fake_judge_model.returns("no")``.

    Answers ``"yes"`` until told otherwise, and records its calls in ``.calls``; reset
    after each test.
    """
    model = _helpers().fake_judge_model
    model.reset()
    yield model
    model.reset()


@pytest.fixture
def assert_feedback() -> Callable[..., Any]:
    """``assert_feedback(trace_id, name, value=...)``: flush, then check the trace's feedback."""
    return _helpers().assert_feedback  # type: ignore[no-any-return]
