"""Helpers for unit-testing scorers; the pytest plugin (``localscorers.testing.plugin``) uses them.

The plugin is installed with the package (entry point ``pytest11``), so its fixtures
(``localscorers_db``, ``make_trace``, ``fake_judge_model``) need no conftest. The same
pieces work without pytest: :func:`make_trace`, :data:`fake_judge_model` and
:func:`assert_feedback`.
"""

from localscorers.testing.helpers import (
    FakeJudgeModel,
    LocalScorersDB,
    assert_feedback,
    fake_judge_model,
    make_trace,
)

__all__ = ["FakeJudgeModel", "LocalScorersDB", "assert_feedback", "fake_judge_model", "make_trace"]
