"""MLflow's scorer API shapes: ``_server_name``, ``Scorer.run``, versions, aggregations, genai.

Each test states what MLflow does (``mlflow/genai/scorers/base.py``, ``registry.py``,
``aggregation.py`` and their tests) and checks that localscorers does the same.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

import localscorers
import localscorers as mlflow
from localscorers import (
    ConfigurationError,
    Feedback,
    ScorerNotFoundError,
    ScorerSamplingConfig,
    scorer,
)
from localscorers.evaluation import aggregate
from tests import scorer_helpers


@scorer
def not_empty(outputs: object) -> bool:
    return outputs != ""


@scorer(aggregations=["mean", "min", "max", "median", "variance", "p90"])
def length(outputs: str) -> int:
    return len(outputs)


def test_server_name_is_the_registered_name_and_none_before(tracking: Path) -> None:
    # MLflow's list_scorers() example prints scorer._server_name.
    assert scorer_helpers.is_short._server_name is None
    registered = scorer_helpers.is_short.register(name="short")
    assert registered._server_name == "short"
    assert [s._server_name for s in localscorers.list_scorers()] == ["short"]
    assert registered.delete()._server_name is None


def test_genai_namespace_mirrors_mlflow_genai() -> None:
    # `import localscorers as mlflow` covers attribute-style code too.
    assert mlflow.genai.scorers.Safety is localscorers.Safety
    assert mlflow.genai.scorer is localscorers.scorer
    assert mlflow.genai.ScorerSamplingConfig is ScorerSamplingConfig
    assert mlflow.genai.judges.make_judge is localscorers.make_judge
    from localscorers.genai import ScorerSamplingConfig as FromGenai
    from localscorers.genai.scorers import (
        Guidelines,
        delete_scorer,
        get_scorer,
        list_scorer_versions,
        list_scorers,
    )

    assert FromGenai is ScorerSamplingConfig
    assert Guidelines is localscorers.Guidelines
    assert (delete_scorer, get_scorer, list_scorers) == (
        localscorers.delete_scorer,
        localscorers.get_scorer,
        localscorers.list_scorers,
    )
    assert list_scorer_versions is localscorers.list_scorer_versions


def test_run_turns_a_bare_value_into_feedback_named_after_the_scorer() -> None:
    result = not_empty.run(inputs={"q": "x"}, outputs="hi", expectations={}, trace=None)
    assert isinstance(result, Feedback)
    assert (result.name, result.value) == ("not_empty", True)
    # A direct call still returns the function's own value.
    assert not_empty(outputs="hi") is True


def test_run_names_default_feedback_but_keeps_explicit_names() -> None:
    @scorer(name="judge")
    def unnamed(outputs: object) -> Feedback:
        return Feedback(value="yes", rationale="fine")

    @scorer(name="judge")
    def default_named(outputs: object) -> Feedback:
        return Feedback(name="feedback", value=1)

    @scorer(name="judge")
    def named(outputs: object) -> Feedback:
        return Feedback(name="tone", value="calm")

    @scorer(name="judge")
    def several(outputs: object) -> list[Feedback]:
        return [Feedback(name="a", value=1), Feedback(name="b", value=2)]

    first = unnamed.run(outputs="x")
    assert isinstance(first, Feedback)
    assert (first.name, first.value, first.rationale) == ("judge", "yes", "fine")
    second = default_named.run(outputs="x")
    assert isinstance(second, Feedback)
    assert second.name == "judge"
    third = named.run(outputs="x")
    assert isinstance(third, Feedback)
    assert third.name == "tone"
    listed = several.run(outputs="x")
    assert isinstance(listed, list)
    assert [(f.name, f.value) for f in listed] == [("a", 1), ("b", 2)]


def test_run_passes_only_declared_arguments_and_lets_none_through() -> None:
    @scorer
    def nothing(inputs: object) -> None:
        assert inputs == {"q": 1}

    assert nothing.run(inputs={"q": 1}, outputs="ignored", trace=None) is None


def test_run_rejects_other_results_with_mlflows_message() -> None:
    @scorer
    def bad(outputs: object) -> object:
        return {"not": "allowed"}

    @scorer
    def bad_list(outputs: object) -> object:
        return [1, 2]

    with pytest.raises(ConfigurationError, match=r"bad must return one of .* Got dict"):
        bad.run(outputs="x")
    with pytest.raises(ValueError, match=r"Got list\[int\]"):
        bad_list.run(outputs="x")


def test_run_lets_the_scorers_exception_propagate() -> None:
    @scorer
    def broken(outputs: object) -> object:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        broken.run(outputs="x")


def test_delete_scorer_version_all_deletes_every_version(tracking: Path) -> None:
    # MLflow's tracking backend requires version="all" to delete every version.
    scorer_helpers.is_short.register(name="s")
    scorer_helpers.mentions_42.register(name="s")
    localscorers.delete_scorer(name="s", version="all")
    assert localscorers.list_scorers() == []
    with pytest.raises(ScorerNotFoundError, match="'s'"):
        localscorers.delete_scorer(name="s", version="all")
    scorer_helpers.is_short.register(name="s")
    with pytest.raises(ConfigurationError, match=r"version must be .*'latest'"):
        localscorers.delete_scorer(name="s", version="latest")  # type: ignore[arg-type]


def test_list_scorer_versions_returns_scorer_version_pairs_oldest_first(tracking: Path) -> None:
    scorer_helpers.is_short.register(name="s")
    scorer_helpers.mentions_42.register(name="s").start(
        sampling_config=ScorerSamplingConfig(sample_rate=0.5)
    )
    versions = localscorers.list_scorer_versions(name="s")
    assert [number for _, number in versions] == [1, 2]
    first, second = (s for s, _ in versions)
    assert first(outputs="x" * 30) is False  # is_short, restored
    assert second(outputs="42") is True  # mentions_42
    # Each version carries the name's current sampling config, as MLflow's test checks.
    assert {s.sample_rate for s, _ in versions} == {0.5}
    with pytest.raises(ScorerNotFoundError, match="'nope'"):
        localscorers.list_scorer_versions(name="nope")


def test_aggregations_are_kept_registered_and_restored(tracking: Path) -> None:
    assert length.aggregations == ["mean", "min", "max", "median", "variance", "p90"]
    registered = length.register()
    assert registered.aggregations == length.aggregations
    [restored] = localscorers.list_scorers()
    assert restored.aggregations == length.aggregations
    # Identical definitions keep their version; other aggregations are a new version.
    assert length.register().version == 1
    assert length.func is not None
    changed = scorer(aggregations=["p90"])(length.func)
    assert changed.register(name="length").version == 2


def test_aggregation_errors() -> None:
    with pytest.raises(ConfigurationError, match=r"Unknown aggregation 'p99'"):
        scorer(aggregations=["p99"])(lambda outputs: 1)
    with pytest.raises(ConfigurationError, match="aggregations must be a list"):
        scorer(aggregations="mean")(lambda outputs: 1)  # type: ignore[call-overload]


def test_function_aggregations_work_but_cannot_be_registered(tracking: Path) -> None:
    def spread(values: list[float]) -> float:
        return max(values) - min(values)

    custom = scorer(name="custom", aggregations=["mean", spread])(scorer_helpers.plain_length)
    assert aggregate([1, 4], custom.aggregations) == {"mean": 2.5, "spread": 3.0}
    with pytest.raises(ConfigurationError, match="cannot be registered"):
        custom.register()


def test_aggregate_computes_what_numpy_computes_in_mlflow() -> None:
    values = [0.1, 0.5, 0.9, 1.0, True, "yes", "no", "maybe", None]
    numbers = [0.1, 0.5, 0.9, 1.0, 1.0, 1.0, 0.0]
    result = aggregate(values, ["mean", "min", "max", "median", "variance", "p90"])
    assert result["mean"] == pytest.approx(statistics.fmean(numbers))
    assert (result["min"], result["max"]) == (0.0, 1.0)
    assert result["median"] == pytest.approx(0.9)
    assert result["variance"] == pytest.approx(statistics.pvariance(numbers))  # numpy.var
    assert result["p90"] == pytest.approx(1.0)  # numpy.percentile(numbers, 90)
    assert aggregate([1, 2, 3, 4], ["p90"]) == {"p90": pytest.approx(3.7)}
    assert aggregate([2, 4], None) == {"mean": 3.0}  # MLflow's default: the mean
    assert aggregate(["maybe"], ["mean"]) == {}


def test_sampling_config_and_original_func_as_mlflow_exposes_them(tracking: Path) -> None:
    # MLflow's registry tests read scorer._sampling_config and scorer._original_func.
    assert scorer_helpers.is_short._sampling_config is None
    started = scorer_helpers.is_short.register(name="s").start(
        sampling_config=ScorerSamplingConfig(sample_rate=0.75, filter_string="tags.a = 'b'")
    )
    config = started._sampling_config
    assert config is not None
    assert (config.sample_rate, config.filter_string) == (0.75, "tags.a = 'b'")
    [listed] = localscorers.list_scorers()
    assert isinstance(listed, localscorers.FunctionScorer)
    assert listed._original_func.__name__ == "is_short"
    stopped = listed.stop()
    assert stopped._sampling_config is not None
    assert stopped._sampling_config.sample_rate == 0.0
