"""@scorer, Scorer values, names, versions, limits, and the errors users can cause."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

import localscorers
from localscorers import (
    ConfigurationError,
    Feedback,
    InvalidTransitionError,
    LocalScorersError,
    ScorerLimitError,
    ScorerNotFoundError,
    ScorerSamplingConfig,
    ScorerStatus,
    scorer,
)
from tests import scorer_helpers


@pytest.fixture
def tracking(contract_tracking: str) -> str:
    """This module's store tests run on each backend (SQLite, then PostgreSQL)."""
    return contract_tracking


@scorer
def exact_match(outputs: str, expectations: dict[str, Any]) -> bool:
    return outputs == expectations.get("answer")


@scorer(name="length", description="How long the answer is.")
def answer_length(outputs: Any) -> int:
    return len(outputs)


def test_bare_decorator_takes_the_function_name_and_returns_its_own_value() -> None:
    assert exact_match.name == "exact_match"
    assert exact_match(outputs="4", expectations={"answer": "4"}) is True
    assert exact_match(outputs="5", expectations={"answer": "4"}) is False
    assert exact_match.status == ScorerStatus.UNREGISTERED
    assert exact_match.version is None
    assert exact_match.sample_rate == 0.0


def test_decorator_with_arguments_sets_name_and_description() -> None:
    assert answer_length.name == "length"
    assert answer_length.description == "How long the answer is."
    assert answer_length(outputs="abc", inputs="ignored") == 3


def test_scorer_may_return_feedback_unchanged_when_called_directly() -> None:
    @scorer
    def judged(outputs: Any) -> Feedback:
        return Feedback(value=True, rationale=f"saw {outputs}")

    result = judged(outputs="x")
    assert isinstance(result, Feedback)
    assert result.rationale == "saw x"


def test_scorer_rejects_unknown_parameters() -> None:
    with pytest.raises(ConfigurationError, match=r"parameters \['answer'\].*subset of"):

        @scorer
        def bad(answer: Any) -> bool:
            return True


@pytest.mark.parametrize("name", ["", "   "])
def test_blank_names_are_errors_not_defaults(name: str) -> None:
    with pytest.raises(ConfigurationError, match="must not be empty or blank"):
        scorer(name=name)(lambda outputs: True)
    with pytest.raises(ConfigurationError, match="must not be empty or blank"):
        answer_length.register(name=name)


def test_names_longer_than_256_characters_are_refused(tracking: str) -> None:
    answer_length.register(name="x" * 256)
    with pytest.raises(ConfigurationError, match="at most 256 characters"):
        answer_length.register(name="x" * 257)


def test_scorers_are_frozen() -> None:
    with pytest.raises(ValidationError, match="frozen"):
        answer_length.name = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        answer_length.sample_rate = 0.5  # type: ignore[misc]


def test_register_identical_keeps_version_changed_adds_one(tracking: str) -> None:
    first = answer_length.register()
    again = answer_length.register()
    assert (first.version, again.version) == (1, 1)

    @scorer(name="length")
    def other_length(outputs: Any) -> int:
        return len(outputs) * 2

    changed = other_length.register()
    assert changed.version == 2
    assert localscorers.get_scorer(name="length").version == 2
    old = localscorers.get_scorer(name="length", version=1)
    assert old.version == 1
    assert old(outputs="abc") == 3


def test_register_under_another_name(tracking: str) -> None:
    registered = answer_length.register(name="length_v2")
    assert registered.name == "length_v2"
    assert answer_length.name == "length"
    assert [s.name for s in localscorers.list_scorers()] == ["length_v2"]


def test_start_update_stop_delete_flow(tracking: str) -> None:
    registered = answer_length.register()
    started = registered.start(
        sampling_config=ScorerSamplingConfig(sample_rate=0.5, filter_string="tags.env = 'prod'")
    )
    assert (started.status, started.sample_rate, started.filter_string) == (
        ScorerStatus.ACTIVE,
        0.5,
        "tags.env = 'prod'",
    )
    updated = started.update(sampling_config=ScorerSamplingConfig(sample_rate=0.25))
    assert (updated.sample_rate, updated.filter_string) == (0.25, None)
    stopped = updated.stop()
    assert (stopped.status, stopped.sample_rate) == (ScorerStatus.STOPPED, 0.0)
    restarted = stopped.start()
    assert (restarted.status, restarted.sample_rate) == (ScorerStatus.ACTIVE, 1.0)
    deleted = restarted.delete()
    assert deleted.status == ScorerStatus.DELETED
    assert localscorers.list_scorers() == []
    # The name can be registered again from scratch.
    assert answer_length.register().version == 1


def test_lifecycle_by_name_acts_on_the_named_scorer(tracking: str) -> None:
    answer_length.register()
    result = exact_match.start(name="length", sampling_config=ScorerSamplingConfig(0.3))
    assert result.name == "length"
    assert result(outputs="abcd") == 4  # the stored 'length' scorer, not exact_match
    assert localscorers.get_scorer(name="length").status == ScorerStatus.ACTIVE


def test_rate_zero_says_to_use_stop(tracking: str) -> None:
    registered = answer_length.register()
    with pytest.raises(ValueError, match=r"sample_rate above 0.*call stop\(\)"):
        registered.start(sampling_config=ScorerSamplingConfig(sample_rate=0.0))
    started = registered.start()
    with pytest.raises(ConfigurationError, match=r"call stop\(\)"):
        started.update(sampling_config=ScorerSamplingConfig(sample_rate=0))


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "0.5", True, None])
def test_sampling_config_validates_rate(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="sample_rate"):
        ScorerSamplingConfig(sample_rate=bad)  # type: ignore[arg-type]


def test_sampling_config_is_frozen() -> None:
    config = ScorerSamplingConfig(sample_rate=0.5)
    with pytest.raises(ValidationError):
        config.sample_rate = 1.0  # type: ignore[misc]


def test_sampling_config_must_be_a_config(tracking: str) -> None:
    registered = answer_length.register()
    with pytest.raises(ConfigurationError, match="must be a ScorerSamplingConfig"):
        registered.start(sampling_config={"sample_rate": 0.5})  # type: ignore[arg-type]


def test_invalid_transitions_name_state_and_fix(tracking: str) -> None:
    with pytest.raises(
        InvalidTransitionError,
        match=r"Cannot start\(\) scorer 'length': it is UNREGISTERED\. Call register\(\) first",
    ) as info:
        answer_length.start()
    assert (info.value.current, info.value.action) == ("UNREGISTERED", "start")
    registered = answer_length.register()
    with pytest.raises(InvalidTransitionError, match=r"it is REGISTERED\. Use start") as info:
        registered.update(sampling_config=ScorerSamplingConfig(0.5))
    assert isinstance(info.value, LocalScorersError)
    stopped = registered.stop()
    with pytest.raises(InvalidTransitionError, match="it is STOPPED"):
        stopped.update(sampling_config=ScorerSamplingConfig(0.5))


def test_unknown_names_raise_lookup_errors(tracking: str) -> None:
    with pytest.raises(ScorerNotFoundError, match=r"No scorer named 'nope'.*list_scorers\(\)"):
        localscorers.get_scorer(name="nope")
    with pytest.raises(LookupError):
        localscorers.delete_scorer(name="nope")
    answer_length.register()
    with pytest.raises(ScorerNotFoundError, match="has no version 7; the latest is 1"):
        localscorers.get_scorer(name="length", version=7)


def test_delete_one_version_keeps_the_others(tracking: str) -> None:
    answer_length.register()

    @scorer(name="length")
    def v2(outputs: Any) -> int:
        return -1

    v2.register()
    localscorers.delete_scorer(name="length", version=2)
    assert localscorers.get_scorer(name="length").version == 1
    localscorers.delete_scorer(name="length")
    assert localscorers.list_scorers() == []


def test_twenty_names_per_experiment(tracking: str) -> None:
    for index in range(20):
        answer_length.register(name=f"s{index:02d}")
    with pytest.raises(ScorerLimitError, match=r"already has 20 scorers.*delete_scorer") as info:
        answer_length.register(name="s20")
    assert isinstance(info.value, ValueError)
    # Re-registering an existing name is still fine, and another experiment has its own limit.
    answer_length.register(name="s00")
    localscorers.set_experiment("other")
    answer_length.register(name="s20")


def test_list_scorers_is_sorted_and_per_experiment(tracking: str) -> None:
    answer_length.register(name="b")
    exact_match.register(name="a")
    assert [s.name for s in localscorers.list_scorers()] == ["a", "b"]
    other = localscorers.set_experiment("other")
    assert localscorers.list_scorers() == []
    assert [s.name for s in localscorers.list_scorers(experiment_id="0")] == ["a", "b"]
    assert other.experiment_id != "0"


def test_class_scorers_defined_in_main_cannot_be_registered(tracking: str) -> None:
    class Local(localscorers.Scorer):
        def __call__(self, **_: object) -> bool:
            return True

    with pytest.raises(ConfigurationError, match="must be importable"):
        Local(name="local").register()


def test_closure_over_unstorable_values_is_refused(tracking: str) -> None:
    lookup = {"a": 1}

    @scorer
    def uses_closure(outputs: Any) -> bool:
        return outputs in lookup

    with pytest.raises(ConfigurationError, match=r"closes over 'lookup' \(dict\)"):
        uses_closure.register()


def test_lambdas_cannot_be_stored(tracking: str) -> None:
    anonymous = scorer(name="anon")(lambda outputs: True)
    assert anonymous(outputs="x") is True  # fine for direct use
    with pytest.raises(ConfigurationError, match="a lambda cannot"):
        anonymous.register()


def test_execution_options_are_validated_and_stored(tracking: str) -> None:
    with pytest.raises(ConfigurationError, match="timeout_seconds must be a positive number"):
        scorer(timeout_seconds=0)(lambda outputs: True)
    with pytest.raises(ConfigurationError, match="max_concurrency must be a positive integer"):
        scorer(max_concurrency=0)(lambda outputs: True)

    slowish = scorer(name="slowish", timeout_seconds=2.5, max_concurrency=3)(
        scorer_helpers.plain_true
    )
    registered = slowish.register()
    assert registered.version is not None
    restored = localscorers.get_scorer(name="slowish")
    assert (restored.timeout_seconds, restored.max_concurrency) == (2.5, 3)
    assert slowish.register().version == registered.version  # identical: same version
    changed = scorer(name="slowish", timeout_seconds=5, max_concurrency=3)(
        scorer_helpers.plain_true
    )
    assert changed.register().version == registered.version + 1  # only the option changed


class Shouting(localscorers.Scorer):
    # Declares only what it reads: `mypy --strict tests` (CI) accepts the narrower
    # override, as it would in a user's code.
    def __call__(self, *, outputs: str) -> bool:
        return outputs.isupper()


def test_a_class_scorer_declares_only_the_arguments_it_reads() -> None:
    shouting = Shouting(name="shouting")
    assert shouting(outputs="HEY") is True
    feedback = shouting.run(inputs="q", outputs="hey", expectations={"a": 1})
    assert isinstance(feedback, localscorers.Feedback)
    assert (feedback.name, feedback.value) == ("shouting", False)
    assert not shouting.is_session_level_scorer
