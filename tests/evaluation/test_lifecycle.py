"""The lifecycle of DESIGN.md section 5, driven by hypothesis against a plain-Python model."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import localscorers
from localscorers import (
    InvalidTransitionError,
    Scorer,
    ScorerNotFoundError,
    ScorerSamplingConfig,
    ScorerStatus,
    _context,
    scorer,
)
from tests import scorer_helpers

# Three distinct definitions (stored by reference: they are importable).
DEFINITIONS = [
    scorer(scorer_helpers.plain_length),
    scorer(scorer_helpers.plain_upper),
    scorer(scorer_helpers.plain_true),
]
NAMES = ["alpha", "beta", "gamma"]
rates = st.floats(min_value=0.01, max_value=1.0, allow_nan=False)
filters = st.sampled_from([None, "tags.env = 'prod'", "trace.status = 'ERROR'"])


@dataclass
class ModelScorer:
    """DESIGN.md's table, in plain Python."""

    status: ScorerStatus = ScorerStatus.REGISTERED
    version: int = 1
    definition: int = 0
    rate: float = 0.0
    filter_string: str | None = None


@dataclass
class Snapshot:
    instance: Scorer
    dump: dict[str, Any] = field(default_factory=dict)


class LifecycleMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._tmp = tempfile.TemporaryDirectory()
        localscorers.set_tracking_uri(Path(self._tmp.name) / "lifecycle.db")
        self.model: dict[str, ModelScorer] = {}
        self.seen: list[Snapshot] = []

    def teardown(self) -> None:
        _context.reset()
        self._tmp.cleanup()

    def _keep(self, instance: Scorer) -> Scorer:
        self.seen.append(Snapshot(instance, instance.model_dump()))
        return instance

    def _check(self, result: Scorer, name: str) -> None:
        expected = self.model[name]
        assert result.name == name
        assert result.status == expected.status
        assert result.version == expected.version
        assert result.sample_rate == expected.rate
        assert result.filter_string == expected.filter_string

    @rule(definition=st.integers(0, len(DEFINITIONS) - 1), name=st.sampled_from(NAMES))
    def register(self, definition: int, name: str) -> None:
        receiver = self._keep(DEFINITIONS[definition])
        result = self._keep(receiver.register(name=name))
        current = self.model.get(name)
        if current is None:
            self.model[name] = ModelScorer(definition=definition)
        elif current.definition != definition:
            current.version += 1
            current.definition = definition
        self._check(result, name)

    @rule(name=st.sampled_from(NAMES), rate=rates, filter_string=filters)
    def start(self, name: str, rate: float, filter_string: str | None) -> None:
        config = ScorerSamplingConfig(sample_rate=rate, filter_string=filter_string)
        receiver = self._keep(DEFINITIONS[0])
        current = self.model.get(name)
        if current is None:
            with pytest.raises(InvalidTransitionError, match="UNREGISTERED"):
                receiver.start(name=name, sampling_config=config)
            return
        result = self._keep(receiver.start(name=name, sampling_config=config))
        current.status, current.rate, current.filter_string = (
            ScorerStatus.ACTIVE,
            rate,
            filter_string,
        )
        self._check(result, name)

    @rule(name=st.sampled_from(NAMES), rate=rates, filter_string=filters)
    def update(self, name: str, rate: float, filter_string: str | None) -> None:
        config = ScorerSamplingConfig(sample_rate=rate, filter_string=filter_string)
        receiver = self._keep(DEFINITIONS[0])
        current = self.model.get(name)
        if current is None or current.status is not ScorerStatus.ACTIVE:
            state = "UNREGISTERED" if current is None else current.status.value
            with pytest.raises(InvalidTransitionError, match=state):
                receiver.update(name=name, sampling_config=config)
            return
        result = self._keep(receiver.update(name=name, sampling_config=config))
        current.rate, current.filter_string = rate, filter_string
        self._check(result, name)

    @rule(name=st.sampled_from(NAMES))
    def stop(self, name: str) -> None:
        receiver = self._keep(DEFINITIONS[1])
        current = self.model.get(name)
        if current is None:
            with pytest.raises(InvalidTransitionError, match="UNREGISTERED"):
                receiver.stop(name=name)
            return
        result = self._keep(receiver.stop(name=name))
        current.status, current.rate, current.filter_string = ScorerStatus.STOPPED, 0.0, None
        self._check(result, name)

    @rule(name=st.sampled_from(NAMES))
    def delete(self, name: str) -> None:
        receiver = self._keep(DEFINITIONS[2])
        if name not in self.model:
            with pytest.raises(ScorerNotFoundError):
                receiver.delete(name=name)
            return
        result = self._keep(receiver.delete(name=name))
        del self.model[name]
        assert result.status == ScorerStatus.DELETED
        assert result.sample_rate == 0.0
        assert result.version is None

    @rule(name=st.sampled_from(NAMES))
    def get(self, name: str) -> None:
        if name not in self.model:
            with pytest.raises(ScorerNotFoundError, match=name):
                localscorers.get_scorer(name=name)
            return
        self._check(self._keep(localscorers.get_scorer(name=name)), name)

    @invariant()
    def listing_matches_model(self) -> None:
        listed = localscorers.list_scorers()
        assert [s.name for s in listed] == sorted(self.model)
        for item in listed:
            self._check(item, item.name)

    @invariant()
    def every_instance_is_unchanged(self) -> None:
        for snapshot in self.seen:
            assert snapshot.instance.model_dump() == snapshot.dump


LifecycleMachine.TestCase.settings = settings(
    max_examples=30, stateful_step_count=25, deadline=None
)
TestLifecycle = LifecycleMachine.TestCase


@settings(max_examples=40, deadline=None)
@given(
    rate=rates,
    filter_string=filters,
    second_rate=rates,
)
def test_no_lifecycle_call_mutates_its_receiver(
    rate: float,
    filter_string: str | None,
    second_rate: float,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    localscorers.set_tracking_uri(tmp_path_factory.mktemp("mut") / "m.db")
    original = scorer(scorer_helpers.plain_length)
    before = original.model_dump()
    registered = original.register(name="mut")
    registered_dump = registered.model_dump()
    started = registered.start(
        sampling_config=ScorerSamplingConfig(sample_rate=rate, filter_string=filter_string)
    )
    started_dump = started.model_dump()
    updated = started.update(sampling_config=ScorerSamplingConfig(sample_rate=second_rate))
    updated_dump = updated.model_dump()
    stopped = updated.stop()
    stopped_dump = stopped.model_dump()
    stopped.delete()
    assert original.model_dump() == before
    assert registered.model_dump() == registered_dump
    assert started.model_dump() == started_dump
    assert updated.model_dump() == updated_dump
    assert stopped.model_dump() == stopped_dump
    assert started.sample_rate == rate
    assert updated.sample_rate == second_rate
    assert updated.filter_string is None  # a filter not repeated is cleared
    assert stopped.sample_rate == 0.0
