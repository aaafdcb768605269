"""Importable scorers for tests that need them in several processes (stored by reference)."""

from __future__ import annotations

import localscorers


@localscorers.scorer
def is_short(outputs: object) -> bool:
    return len(str(outputs)) < 20


@localscorers.scorer(name="mentions_42")
def mentions_42(outputs: object) -> bool:
    return "42" in str(outputs)


def plain_length(outputs: object) -> int:
    return len(str(outputs))


def plain_upper(outputs: object) -> str:
    return str(outputs).upper()


def plain_true() -> bool:
    return True
