"""What several command modules share: the ``--json`` option, command groups, list output.

``common.py`` opens the database and formats errors; this module holds the pieces of
the commands themselves, so that ``scorers list``, ``jobs list`` and ``traces search``
answer an empty result, ``--json`` and a table the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from localscorers.cli.common import console, elsewhere_hint, err_console, print_json

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from rich.console import RenderableType

    from localscorers.cli.common import CommandContext

__all__ = ["JsonOption", "Listing", "command_group", "print_listing"]

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")]

_Item = TypeVar("_Item")


def command_group(app: typer.Typer, name: str, help_text: str) -> typer.Typer:
    """Add a command group (``localscorers NAME ...``) to the app and return it.

    Without a subcommand the group prints its help; the help is plain click help, as
    the top-level app's is.
    """
    group = typer.Typer(name=name, help=help_text, no_args_is_help=True, rich_markup_mode=None)
    app.add_typer(group, name=name)
    return group


@dataclass(frozen=True)
class Listing:
    """What a list command says when it finds nothing, and where else to look.

    Attributes:
        what: the plural noun listed ("scorers"), for the hint.
        empty: the line printed when nothing was found and no hint applies.
        count: how many an experiment (by id) has; None when no hint applies (the
            user narrowed the search, so other experiments are beside the point).
        cap: ``count`` stops at this many; the hint then says "100+".
    """

    what: str
    empty: str
    count: Callable[[str], int] | None
    cap: int | None = None

    def hint(self, ctx: CommandContext) -> str | None:
        """Say which experiment holds what the selected one lacks (see ``elsewhere_hint``)."""
        if self.count is None:
            return None
        return elsewhere_hint(ctx, self.what, self.count, cap=self.cap)


def print_listing(
    ctx: CommandContext,
    found: Sequence[_Item],
    listing: Listing,
    *,
    as_json: bool,
    to_json: Callable[[_Item], Any],
    table: Callable[[Sequence[_Item]], RenderableType],
) -> None:
    """Print what a list command found: JSON, a table, or why there is nothing.

    When nothing was found and another experiment has some, a hint says so: on stderr
    with ``--json`` (stdout stays the JSON list), in place of the empty line otherwise.
    """
    hint = None if found else listing.hint(ctx)
    if as_json:
        print_json([to_json(item) for item in found])
        if hint:
            err_console.print(hint, highlight=False, markup=False)
    elif not found:
        console.print(hint or listing.empty, highlight=False)
    else:
        console.print(table(found))
