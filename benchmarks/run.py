"""Run every benchmark script of this folder and print one table of figures and ratios.

Each benchmark runs in a fresh Python process (``run.py --child PATH OUT``), prints its
own figures there, and hands its rows back as JSON. See README.md for the row contract.

Usage::

    python benchmarks/run.py [NAME ...] [--json FILE] [--strict] [--script-args=ARGS]
    python benchmarks/run.py --scale 1m [--cache DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
# Scripts in this folder that are not benchmarks.
NOT_BENCHMARKS = {"run.py", "compare_mlflow.py", "conftest.py"}
# The core benchmarks run first, in this order; any other script follows by name.
PREFERRED_ORDER = ("ingest", "online", "backfill")
# ``--scale`` sizes: traces in the cached database.
SCALES = {"100k": 100_000, "1m": 1_000_000}
# The figures summed up after the table: (label, figure, bound).
MINIMAL_FLOOR_FIGURES = (
    ("ingest", "log_trace cost vs minimal floor (x)", 2.0),
    ("backfill", "backfill cost vs minimal floor (x)", 3.0),
)
KEYS = ("benchmark", "figure", "value", "floor", "ratio", "target", "ok")

console = Console()


def discover(names: list[str] | None = None) -> list[Path]:
    """Return the benchmark scripts that exist, core ones first."""
    scripts = {
        path.stem: path
        for path in HERE.glob("*.py")
        if path.name not in NOT_BENCHMARKS and not path.name.startswith("_")
    }
    ordered = [scripts[name] for name in PREFERRED_ORDER if name in scripts]
    ordered += [path for name, path in sorted(scripts.items()) if name not in PREFERRED_ORDER]
    if names:
        unknown = sorted(set(names) - set(scripts))
        if unknown:
            raise SystemExit(
                f"No benchmark named {', '.join(unknown)}; available: {', '.join(scripts)}"
            )
        ordered = [path for path in ordered if path.stem in names]
    return ordered


def normalize(row: dict[str, Any], *, benchmark: str) -> dict[str, Any]:
    """Fill in what a row left out, following the README contract."""
    floor = row.get("floor")
    value = row.get("value")
    ratio = row.get("ratio")
    if ratio is None and isinstance(floor, int | float) and isinstance(value, int | float):
        # Without a ratio we cannot know the figure's direction; assume higher is better.
        ratio = value / floor if floor else None
    ok = row.get("ok")
    if ok is None:
        ok = ratio is None or (isinstance(ratio, int | float) and ratio >= 1.0)
    return {
        "benchmark": row.get("benchmark") or benchmark,
        "figure": str(row.get("figure", "?")),
        "value": value,
        "floor": floor,
        "ratio": ratio,
        "target": str(row.get("target") or ""),
        "ok": bool(ok),
    }


def run_child(script: Path, out: Path, script_args: list[str]) -> int:
    """In the child process: import the script, call main(), write its rows as JSON."""
    # Scripts parse sys.argv in main(); they must see their own arguments, not ours.
    sys.argv = [str(script), *script_args]
    spec = importlib.util.spec_from_file_location(f"benchmark_{script.stem}", script)
    if spec is None or spec.loader is None:
        raise SystemExit(f"Cannot load {script}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    main = getattr(module, "main", None)
    if not callable(main):
        raise SystemExit(f"{script.name} has no main() -> list[dict]; see benchmarks/README.md")
    rows = main()
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise SystemExit(f"{script.name}: main() must return a list of dicts, got {rows!r:.200}")
    out.write_text(json.dumps(rows, default=str))
    return 0


def run_benchmark(
    script: Path, workdir: Path, script_args: list[str]
) -> tuple[list[dict[str, Any]], str | None]:
    """Run one script in its own process; return its rows, or an error message."""
    out = workdir / f"{script.stem}.json"
    env = dict(os.environ)
    # Never let a benchmark that forgets to pick a database write to the user's default one.
    env.setdefault("LOCALSCORERS_TRACKING_URI", f"sqlite:///{workdir / (script.stem + '.db')}")
    started = time.monotonic()
    completed = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            str(script),
            str(out),
            f"--script-args={shlex.join(script_args)}",
        ],
        env=env,
        check=False,
    )
    elapsed = time.monotonic() - started
    if completed.returncode != 0:
        return [], f"exited with code {completed.returncode} after {elapsed:.1f} s"
    try:
        rows = json.loads(out.read_text())
    except (OSError, ValueError) as exc:
        return [], f"returned no rows ({exc})"
    return [normalize(row, benchmark=script.stem) for row in rows], None


def _number(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "-" if value is None else str(value)
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if value != 0 and abs(value) < 0.01:
        return f"{value:.2e}"
    return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"


def render(rows: list[dict[str, Any]], failures: dict[str, str]) -> Table:
    """Return the summary table."""
    table = Table(title="localscorers benchmarks", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("benchmark", no_wrap=True)
    table.add_column("figure", min_width=20, overflow="fold")
    for column in ("value", "floor", "ratio"):
        table.add_column(column, justify="right", no_wrap=True)
    # ok before target: on a narrow terminal the target's words wrap, the verdict stays.
    table.add_column("ok", justify="center", no_wrap=True)
    table.add_column("target", overflow="fold")
    for row in rows:
        style = "green" if row["ok"] else "bold red"
        ratio = _number(row["ratio"])
        table.add_row(
            row["benchmark"],
            row["figure"],
            _number(row["value"]),
            _number(row["floor"]),
            f"[{style}]{ratio}[/]",
            f"[{style}]{'yes' if row['ok'] else 'NO'}[/]",
            row["target"],
        )
    for name, message in failures.items():
        table.add_row(name, f"[bold red]failed: {message}[/]", "", "", "", "[bold red]NO[/]", "")
    return table


def minimal_floor_summary(rows: list[dict[str, Any]]) -> str:
    """One line with the ratios issue 16 bounds: ingest and backfill vs their minimal floors."""
    parts = []
    for label, figure, bound in MINIMAL_FLOOR_FIGURES:
        found = [r for r in rows if r["figure"] == figure and isinstance(r["value"], int | float)]
        if found:
            value = found[0]["value"]
            style = "green" if value <= bound else "bold red"
            parts.append(f"{label} [{style}]{value:.2f}x[/] (target <= {bound:g}x)")
    return "Against the minimal raw floors: " + "; ".join(parts) if parts else ""


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and print the table; return the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when a figure misses its floor"
    )
    parser.add_argument(
        "--script-args",
        default="",
        help="arguments passed to every script, e.g. --script-args=--quick",
    )
    parser.add_argument(
        "--scale",
        choices=sorted(SCALES),
        help="instead: build (once, cached, resumable) a database of that many traces and "
        "print search and backfill figures at that size (see _scale.py)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()),
        help="where --scale keeps its database (default: the system temp directory)",
    )
    parser.add_argument("--child", nargs=2, metavar=("SCRIPT", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    script_args = shlex.split(args.script_args)
    if args.child:
        return run_child(Path(args.child[0]), Path(args.child[1]), script_args)

    if args.scale:
        scripts = [HERE / "_scale.py"]
        script_args = ["--traces", str(SCALES[args.scale]), "--cache", str(args.cache)]
    else:
        scripts = discover(args.names)
    if not scripts:
        console.print("No benchmark scripts found in benchmarks/ (see README.md).")
        return 0
    rows: list[dict[str, Any]] = []
    failures: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="localscorers-bench-") as tmp:
        for script in scripts:
            console.rule(f"[bold]{script.stem}", align="left")
            found, error = run_benchmark(script, Path(tmp), script_args)
            rows.extend(found)
            if error is not None:
                failures[script.stem] = error
    console.print()
    console.print(render(rows, failures))
    if args.json is not None:
        args.json.write_text(json.dumps({"rows": rows, "failures": failures}, indent=2))
    summary = minimal_floor_summary(rows)
    if summary:
        console.print(summary)
    missed = [r for r in rows if not r["ok"]]
    if missed:
        console.print(f"[bold red]{len(missed)} figure(s) missed their floor.[/]")
    if failures or (args.strict and missed):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
