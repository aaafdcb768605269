"""The judge cache's age and size bounds, and ``localscorers cache prune``."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from localscorers import ConfigurationError, _clock
from localscorers.cli import app, run
from localscorers.store import Database, judge_cache

DAY_MS = 86_400_000
T0 = 1_700_000_000_000


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    for name in ("LOCALSCORERS_JUDGE_CACHE_MAX_AGE_DAYS", "LOCALSCORERS_JUDGE_CACHE_MAX_ENTRIES"):
        monkeypatch.delenv(name, raising=False)
    database = Database(tmp_path / "cache.db")
    yield database
    database.close()


def put_at(monkeypatch: pytest.MonkeyPatch, db: Database, key: str, at_ms: int) -> None:
    monkeypatch.setattr(_clock, "now_ms", lambda: at_ms)
    judge_cache.put(db, key, model="openai:/m", response=f"answer {key}", usage={})


def test_old_answers_are_not_served_and_are_pruned(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    put_at(monkeypatch, db, "old", T0)
    put_at(monkeypatch, db, "recent", T0 + 20 * DAY_MS)
    monkeypatch.setattr(_clock, "now_ms", lambda: T0 + 40 * DAY_MS)
    assert judge_cache.get(db, "old") is None  # 40 days old: beyond the default 30
    recent = judge_cache.get(db, "recent")
    assert recent is not None
    assert recent.response == "answer recent"
    assert judge_cache.prune(db) == judge_cache.PruneResult(expired=1, evicted=0, remaining=1)
    monkeypatch.setenv("LOCALSCORERS_JUDGE_CACHE_MAX_AGE_DAYS", "0")  # no age bound
    put_at(monkeypatch, db, "ancient", T0 - 400 * DAY_MS)
    ancient = judge_cache.get(db, "ancient")
    assert ancient is not None
    assert ancient.response == "answer ancient"


def test_size_bound_keeps_the_newest(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    for index in range(5):
        put_at(monkeypatch, db, f"k{index}", T0 + index * 1000)
    monkeypatch.setenv("LOCALSCORERS_JUDGE_CACHE_MAX_ENTRIES", "2")
    assert judge_cache.prune(db) == judge_cache.PruneResult(expired=0, evicted=3, remaining=2)
    assert [judge_cache.get(db, f"k{i}") is not None for i in range(5)] == [False] * 3 + [True] * 2


def test_writes_prune_now_and_then(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALSCORERS_JUDGE_CACHE_MAX_ENTRIES", "1")
    monkeypatch.setattr(judge_cache, "_writes", itertools.count())
    monkeypatch.setattr(judge_cache, "_PRUNE_EVERY", 2)
    for index in range(3):
        put_at(monkeypatch, db, f"k{index}", T0 + index * 1000)
    # Writes 0 and 2 pruned; the last one left only itself.
    assert judge_cache.prune(db, judge_cache.CacheBounds(None, None)).remaining == 1
    assert judge_cache.get(db, "k2") is not None


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("LOCALSCORERS_JUDGE_CACHE_MAX_AGE_DAYS", "a month"),
        ("LOCALSCORERS_JUDGE_CACHE_MAX_AGE_DAYS", "-1"),
        ("LOCALSCORERS_JUDGE_CACHE_MAX_ENTRIES", "1.5"),
    ],
)
def test_invalid_bound_settings(
    db: Database, monkeypatch: pytest.MonkeyPatch, name: str, raw: str
) -> None:
    monkeypatch.setenv(name, raw)
    with pytest.raises(ConfigurationError, match=f"{name} must be a .*>= 0") as info:
        judge_cache.bounds()
    assert repr(raw) in str(info.value)
    # Reading and writing the cache never fails on it: the judge just asks the model.
    assert judge_cache.get(db, "missing") is None


def test_cache_prune_command(
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    for index in range(4):
        put_at(monkeypatch, db, f"k{index}", T0 + index * 1000)
    monkeypatch.setattr(_clock, "now_ms", lambda: T0 + 10_000)
    path = str(tmp_path / "cache.db")
    assert run(app, ["--db", path, "cache", "prune", "--max-entries", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"expired": 0, "evicted": 1, "remaining": 3}
    assert run(app, ["--db", path, "cache", "prune", "--max-age-days", "0"]) == 0
    assert "0 answers older than the age bound" in capsys.readouterr().out
    assert run(app, ["--db", path, "cache", "prune", "--max-entries", "-1"]) == 2
    monkeypatch.setenv("LOCALSCORERS_JUDGE_CACHE_MAX_ENTRIES", "lots")
    assert run(app, ["--db", path, "cache", "prune"]) == 1
    assert "LOCALSCORERS_JUDGE_CACHE_MAX_ENTRIES must be" in capsys.readouterr().err
