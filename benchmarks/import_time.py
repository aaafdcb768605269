"""How long ``import localscorers`` takes in a fresh interpreter (the target is under 300 ms).

Runs ``python -c "import localscorers"`` several times and reports the median wall time
of the import itself (interpreter start-up subtracted, measured with ``python -c pass``),
plus ``python -X importtime``'s cumulative figure for the package, and checks that the
heavy dependencies (SQLAlchemy, pydantic, typer, rich) are not loaded by the import.

    python benchmarks/import_time.py [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

HEAVY = ("sqlalchemy", "sqlmodel", "pydantic", "typer", "rich")


def _wall(code: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _importtime() -> float:
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import localscorers"],
        capture_output=True,
        text=True,
        check=True,
    )
    for line in completed.stderr.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] == "localscorers":
            return int(parts[1]) / 1e6
    raise RuntimeError("python -X importtime did not report localscorers")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    baseline = _wall("pass", args.runs)
    total = _wall("import localscorers", args.runs)
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys, localscorers; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(f"import localscorers: {1000 * (total - baseline):.0f} ms wall (median of {args.runs})")
    print(f"python -X importtime, cumulative: {1000 * _importtime():.0f} ms")
    print(f"heavy modules loaded by the import: {loaded or 'none'}")
    full = _wall("import localscorers; localscorers.log_trace", args.runs)
    print(f"import + first use of the API (loads the store): {1000 * (full - baseline):.0f} ms")


if __name__ == "__main__":
    main()
