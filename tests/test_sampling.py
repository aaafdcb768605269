"""Sampling version 1 (DESIGN.md section 6): the formula, its properties, and the enqueue path.

The formula is recomputed here with ``hashlib`` alone, and a few vectors are frozen as
literals: changing the formula (the separator, the byte order, the number of bytes,
the comparison) must fail these tests, because users' stored decisions and their own
recomputations depend on it.
"""

from __future__ import annotations

import hashlib
import math
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import localscorers
from localscorers import ExplainOutcome, Feedback, ScorerSamplingConfig
from localscorers.sampling import SAMPLING_VERSION, is_sampled, sample_fraction
from tests import scorer_helpers_online as helpers


def first_eight_bytes(trace_id: str, scorer_name: str) -> int:
    digest = hashlib.sha256(trace_id.encode("utf-8") + b"\x00" + scorer_name.encode("utf-8"))
    return int.from_bytes(digest.digest()[:8], "big")


def reference_sampled(trace_id: str, scorer_name: str, rate: float) -> bool:
    # The prefix divided by 2**64 in double precision, sampled when strictly below the
    # rate. Rate 1.0 takes everything (exactly, every fraction is below 1, even the few
    # prefixes whose double rounds up to 1.0); rate 0.0 takes nothing.
    if rate >= 1.0:
        return True
    return first_eight_bytes(trace_id, scorer_name) / 2**64 < rate


# (trace id, scorer name, first 8 bytes of sha256(trace_id + "\0" + scorer_name)), computed
# once and frozen: these are the decisions users may already have stored.
FROZEN = [
    ("tr-00000000000000000000000000000000", "relevance", 0xAAA327191E0824B1),
    ("tr-0123456789abcdef0123456789abcdef", "safety", 0xD68CF4DEB09E370B),
    ("tr-ffffffffffffffffffffffffffffffff", "relevance", 0x2AFDCAF30CC66C93),
    ("abc", "x", 0xC0F25B467B7394AD),
    ("", "", 0x6E340B9CFFB37A98),
    ("tr-\u00e9", "\u540d\u524d", 0x2462FD273AFB65BB),
]

trace_ids = st.text(min_size=1, max_size=80)
scorer_names = st.text(min_size=1, max_size=60)
# Names a scorer can be registered under: not blank, no NUL (the registry refuses both).
registrable_names = scorer_names.filter(lambda name: bool(name.strip()) and "\x00" not in name)
rates = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


def test_the_sampling_version_is_frozen_at_1() -> None:
    assert SAMPLING_VERSION == 1


@pytest.mark.parametrize(("trace_id", "scorer_name", "prefix"), FROZEN)
def test_frozen_vectors(trace_id: str, scorer_name: str, prefix: int) -> None:
    assert first_eight_bytes(trace_id, scorer_name) == prefix
    position = sample_fraction(trace_id, scorer_name)
    assert position == prefix / 2**64
    # The decision flips exactly at the pair's position: sampled when strictly below the rate.
    assert is_sampled(trace_id, scorer_name, math.nextafter(position, 1.0))
    assert not is_sampled(trace_id, scorer_name, position)
    assert not is_sampled(trace_id, scorer_name, math.nextafter(position, 0.0))


def test_frozen_vectors_decide_as_recorded() -> None:
    # Readable consequences of the vectors above, at round rates.
    assert not is_sampled("tr-00000000000000000000000000000000", "relevance", 0.5)
    assert is_sampled("tr-00000000000000000000000000000000", "relevance", 0.7)
    assert is_sampled("tr-ffffffffffffffffffffffffffffffff", "relevance", 0.2)
    assert not is_sampled("tr-ffffffffffffffffffffffffffffffff", "relevance", 0.1)
    # The separator matters: "ab" + "c" and "a" + "bc" are different pairs.
    assert sample_fraction("ab", "c") != sample_fraction("a", "bc")


@settings(max_examples=300, deadline=None)
@given(trace_id=trace_ids, scorer_name=scorer_names, rate=rates)
def test_matches_an_independent_recomputation(trace_id: str, scorer_name: str, rate: float) -> None:
    position = sample_fraction(trace_id, scorer_name)
    assert 0.0 <= position <= 1.0
    assert position == first_eight_bytes(trace_id, scorer_name) / 2**64
    assert is_sampled(trace_id, scorer_name, rate) == reference_sampled(trace_id, scorer_name, rate)
    # Deterministic: asking again gives the same answer.
    assert is_sampled(trace_id, scorer_name, rate) == is_sampled(trace_id, scorer_name, rate)


@settings(max_examples=200, deadline=None)
@given(trace_id=trace_ids, scorer_name=scorer_names)
def test_rate_zero_samples_nothing_and_rate_one_everything(trace_id: str, scorer_name: str) -> None:
    assert not is_sampled(trace_id, scorer_name, 0.0)
    assert is_sampled(trace_id, scorer_name, 1.0)


@settings(max_examples=100, deadline=None)
@given(
    scorer_name=scorer_names,
    a=rates,
    b=rates,
    ids=st.lists(trace_ids, min_size=1, max_size=50, unique=True),
)
def test_a_higher_rate_samples_a_superset(
    scorer_name: str, a: float, b: float, ids: list[str]
) -> None:
    low, high = min(a, b), max(a, b)
    at_low = {t for t in ids if is_sampled(t, scorer_name, low)}
    at_high = {t for t in ids if is_sampled(t, scorer_name, high)}
    assert at_low <= at_high


@settings(max_examples=25, deadline=None)
@given(
    scorer_name=scorer_names,
    rate=st.floats(min_value=0.001, max_value=0.999),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_the_observed_rate_is_within_a_binomial_bound(
    scorer_name: str, rate: float, seed: int
) -> None:
    generator = random.Random(seed)  # noqa: S311 - reproducible ids, not secrets
    n = 20_000
    sampled = sum(
        is_sampled(f"tr-{generator.getrandbits(128):032x}", scorer_name, rate) for _ in range(n)
    )
    sigma = math.sqrt(n * rate * (1 - rate))
    assert abs(sampled - n * rate) <= 5 * sigma + 1


# -- through the enqueue path ---------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LOCALSCORERS_EXIT_WAIT_SECONDS", "1")
    path = tmp_path / "r.db"
    localscorers.set_tracking_uri(path)
    return path


def scored_by(trace_ids: list[str], scorer_name: str) -> set[str]:
    """Return the traces that received online feedback from ``scorer_name``."""
    found: set[str] = set()
    wanted = set(trace_ids)
    for trace in localscorers.search_traces(experiment_ids=None):
        if trace.info.trace_id in wanted and any(
            isinstance(a, Feedback) and a.scorer_name == scorer_name and a.origin == "online"
            for a in trace.info.assessments
        ):
            found.add(trace.info.trace_id)
    return found


def pending_for(trace_ids: list[str], scorer_name: str) -> set[str]:
    """Return the traces with a pending evaluation of ``scorer_name`` (monitor off)."""
    result = set()
    for trace_id in trace_ids:
        outcome = {e.scorer_name: e.outcome for e in localscorers.explain(trace_id)}[scorer_name]
        assert outcome in {ExplainOutcome.PENDING, ExplainOutcome.SAMPLED_OUT}, outcome
        if outcome == ExplainOutcome.PENDING:
            result.add(trace_id)
    return result


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    target=registrable_names,
    rate=st.floats(min_value=0.05, max_value=0.95),
    others=st.lists(
        st.tuples(registrable_names, st.floats(min_value=0.01, max_value=1.0)),
        max_size=6,
        unique_by=lambda pair: pair[0],
    ),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_other_scorers_never_change_a_scorers_sample(  # noqa: PLR0917 - hypothesis arguments
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    target: str,
    rate: float,
    others: list[tuple[str, float]],
    seed: int,
) -> None:
    monkeypatch.setenv("LOCALSCORERS_MONITOR", "off")
    generator = random.Random(seed)  # noqa: S311 - reproducible ids, not secrets
    ids = [f"tr-{generator.getrandbits(128):032x}" for _ in range(40)]
    directory = tmp_path_factory.mktemp("independence")
    others = [(name, other_rate) for name, other_rate in others if name != target]
    sampled = {}
    for label, crowd in (("alone", []), ("crowd", others)):
        localscorers.set_tracking_uri(directory / f"{label}.db")
        # Others registered and started before and after the target.
        for name, other_rate in crowd[: len(crowd) // 2]:
            helpers.always_true.register(name=name).start(
                sampling_config=ScorerSamplingConfig(sample_rate=other_rate)
            )
        helpers.always_true.register(name=target).start(
            sampling_config=ScorerSamplingConfig(sample_rate=rate)
        )
        for name, other_rate in crowd[len(crowd) // 2 :]:
            helpers.always_true.register(name=name).start(
                sampling_config=ScorerSamplingConfig(sample_rate=other_rate)
            )
        for trace_id in ids:
            localscorers.log_trace(inputs=1, outputs=1, trace_id=trace_id)
        sampled[label] = pending_for(ids, target)
    assert sampled["alone"] == sampled["crowd"]
    assert sampled["alone"] == {t for t in ids if reference_sampled(t, target, rate)}


# Filter-dependent: right once the parser and store/filter_sql.py are real. Kept last on purpose.


def test_exact_sampled_set_at_rate_half_with_a_filter(db: Path) -> None:
    helpers.always_true.register(name="prod_half").start(
        sampling_config=ScorerSamplingConfig(sample_rate=0.5, filter_string="tags.env = 'prod'")
    )
    helpers.always_true.register(name="all_half").start(
        sampling_config=ScorerSamplingConfig(sample_rate=0.5)
    )
    envs = {}
    for i in range(300):
        env = ("prod", "dev", "staging")[i % 3]
        trace_id = localscorers.log_trace(inputs={"i": i}, outputs=i, tags={"env": env})
        envs[trace_id] = env
    assert localscorers.flush(timeout=30)
    ids = list(envs)

    expected_prod = {t for t in ids if envs[t] == "prod" and reference_sampled(t, "prod_half", 0.5)}
    expected_all = {t for t in ids if reference_sampled(t, "all_half", 0.5)}
    assert scored_by(ids, "prod_half") == expected_prod
    assert scored_by(ids, "all_half") == expected_all
    # Sanity: the sets are neither empty nor everything, so the comparison means something.
    assert 20 < len(expected_prod) < 80
    assert 100 < len(expected_all) < 200

    for trace_id in ids[:30]:
        outcome = {e.scorer_name: e.outcome for e in localscorers.explain(trace_id)}["prod_half"]
        if envs[trace_id] != "prod":
            assert outcome == ExplainOutcome.FILTERED_OUT
        elif trace_id in expected_prod:
            assert outcome == ExplainOutcome.SUCCEEDED
        else:
            assert outcome == ExplainOutcome.SAMPLED_OUT
