"""MLflow's built-in judge surface: required_columns, validate_columns, get_all_scorers."""

from __future__ import annotations

import pytest

import localscorers
from localscorers.judges import get_all_scorers


def test_judges_declare_the_columns_they_need_and_check_them() -> None:
    assert localscorers.Safety().required_columns == {"inputs", "outputs"}
    assert "expectations" in localscorers.Correctness().required_columns
    assert localscorers.RetrievalGroundedness().required_columns == {"inputs", "trace"}

    localscorers.Safety().validate_columns({"inputs", "outputs"})
    localscorers.RelevanceToQuery().validate_columns({"trace"})  # a trace holds both
    with pytest.raises(localscorers.MissingColumnsError) as missing:
        localscorers.Correctness().validate_columns({"inputs", "outputs"})
    assert missing.value.scorer == "correctness"
    assert missing.value.missing_columns == {"expectations"}
    assert isinstance(missing.value, localscorers.ConfigurationError)


def test_get_all_scorers_builds_each_judge_that_needs_no_argument() -> None:
    names = [judge.name for judge in get_all_scorers()]

    assert sorted(names) == [
        "correctness",
        "expectations_guidelines",
        "relevance_to_query",
        "retrieval_groundedness",
        "retrieval_relevance",
        "retrieval_sufficiency",
        "safety",
    ]
    assert all(judge.model is None for judge in get_all_scorers())
