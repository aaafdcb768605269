"""After a judge's model is fixed, a plain backfill reruns its failed evaluations."""

from __future__ import annotations

from pathlib import Path

import pytest

import localscorers
from localscorers import BackfillScorerConfig
from localscorers.judges import Safety
from localscorers.judges import openai as openai_provider
from tests.judges.test_judges import ANSWER, QUESTION, clear_judge_env, feedback_of
from tests.judges.test_judges_fakes import serve, small_base_model


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_judge_env(monkeypatch)
    openai_provider.forget_endpoint_modes()


def _backfill(*, rescore: bool = False) -> localscorers.BackfillJob:
    job_id = localscorers.backfill_scorers(
        scorers=[BackfillScorerConfig(scorer="safe", sample_rate=1.0)], rescore=rescore
    )
    return localscorers.wait_for_backfill_job(job_id, timeout=60)


def _counts(job: localscorers.BackfillJob) -> tuple[int, int, int, int]:
    return (job.total, job.succeeded, job.failed, job.skipped)


def test_failed_evaluations_run_again_and_succeeded_ones_only_with_rescore(
    tracking: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.warns(localscorers.JudgeModelWarning):
        # No cache: each backfill below must really ask the model.
        Safety(name="safe", cache=False).register().start()
    ids = [localscorers.log_trace(inputs=QUESTION, outputs=ANSWER) for _ in range(3)]
    assert localscorers.flush(timeout=30)
    for trace_id in ids:
        [failed] = feedback_of(trace_id, "safe")
        assert failed.error is not None
        assert failed.error.error_code == "JUDGE_MODEL_NOT_CONFIGURED"

    with serve(small_base_model) as server:
        # Configured where it runs: the scorer's version is unchanged.
        monkeypatch.setenv("LOCALSCORERS_JUDGE_MODEL", "openai:/m")
        monkeypatch.setenv("OPENAI_BASE_URL", f"{server.url}/v1")
        assert localscorers.backfill_scorers(
            scorers=[BackfillScorerConfig(scorer="safe", sample_rate=1.0)], dry_run=True
        ) == {"safe": 3}
        assert _counts(_backfill()) == (3, 3, 0, 0)
        assert len(server.calls) == 3
        for trace_id in ids:
            current = [f for f in feedback_of(trace_id, "safe") if f.error is None]
            assert [f.value for f in current] == ["yes"]

        again = _backfill()
        assert (again.succeeded, again.failed) == (0, 0)
        assert len(server.calls) == 3  # succeeded evaluations count as scored

        rescored = _backfill(rescore=True)
        assert (rescored.succeeded, rescored.skipped) == (3, 0)
        assert len(server.calls) == 6
