"""The result row every benchmark script returns (the contract in benchmarks/README.md)."""

from __future__ import annotations


def row(
    benchmark: str,
    name: str,
    value: float,
    *,
    floor: float | None,
    higher_is_better: bool,
    target: str,
) -> dict[str, object]:
    """Return one figure; ``ratio >= 1.0`` means the target is met, whichever way it goes."""
    ratio = None if floor is None else (value / floor if higher_is_better else floor / value)
    return {
        "benchmark": benchmark,
        "figure": name,
        "value": value,
        "floor": floor,
        "ratio": ratio,
        "target": target,
        "ok": ratio is None or ratio >= 1.0,
    }
