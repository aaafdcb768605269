"""``localscorers cache prune``: bound the judge-answer cache by age and size."""

from __future__ import annotations

from typing import Annotated

import typer

from localscorers.cli.common import console, prepare, print_json
from localscorers.cli.shared import JsonOption, command_group
from localscorers.store import judge_cache

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the ``cache`` command group to the app."""
    group = command_group(app, "cache", "The cache of LLM judge answers.")

    @group.command("prune")
    def prune_command(
        max_age_days: Annotated[
            float | None,
            typer.Option(
                "--max-age-days",
                min=0,
                help="Remove answers older than this (0: no age bound). "
                "Default: LOCALSCORERS_JUDGE_CACHE_MAX_AGE_DAYS, else 30.",
            ),
        ] = None,
        max_entries: Annotated[
            int | None,
            typer.Option(
                "--max-entries",
                min=0,
                help="Keep at most this many newest answers (0: no size bound). "
                "Default: LOCALSCORERS_JUDGE_CACHE_MAX_ENTRIES, else 50000.",
            ),
        ] = None,
        as_json: JsonOption = False,
    ) -> None:
        """Remove cached judge answers beyond the age and size bounds."""
        ctx = prepare(write=True)
        defaults = judge_cache.bounds()
        limits = judge_cache.CacheBounds(
            max_age_days=defaults.max_age_days if max_age_days is None else max_age_days or None,
            max_entries=defaults.max_entries if max_entries is None else max_entries or None,
        )
        result = judge_cache.prune(ctx.runtime.db, limits)
        if as_json:
            print_json(
                {
                    "expired": result.expired,
                    "evicted": result.evicted,
                    "remaining": result.remaining,
                }
            )
            return
        console.print(
            f"Pruned the judge cache: {result.expired} answers older than the age bound, "
            f"{result.evicted} beyond the size bound; {result.remaining} remain."
        )
