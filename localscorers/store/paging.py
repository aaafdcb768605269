"""Paged search results: MLflow's ``PagedList`` and its opaque page tokens.

MLflow's ``search_traces`` pages by offset behind an opaque token, base64 of
``{"offset": N}``; so do we, so a token is only good for the same search (same
filter, order and experiments), as there.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from typing import TypeVar

from localscorers.exceptions import ConfigurationError

__all__ = ["PagedList", "decode_page_token", "encode_page_token"]

_T = TypeVar("_T")


class PagedList(list[_T]):
    """A list of results that also carries ``token``: the next page's token, or None.

    A plain ``list`` in every other way, as MLflow's ``PagedList`` is.
    """

    def __init__(self, items: Iterable[_T], token: str | None) -> None:
        """Hold ``items`` and the token of the page after them."""
        super().__init__(items)
        self.token = token


def encode_page_token(offset: int | None) -> str | None:
    """Return the token of the page starting at ``offset`` (None: no further page)."""
    if offset is None:
        return None
    return base64.b64encode(json.dumps({"offset": offset}).encode()).decode()


def decode_page_token(token: object) -> int:
    """Return the offset a page token stands for (0 for None).

    Raises:
        ConfigurationError: the token is not one that ``search_traces`` returned.
    """
    if token is None:
        return 0
    try:
        decoded = json.loads(base64.b64decode(str(token), validate=True))
        offset = decoded["offset"]
    except (binascii.Error, ValueError, TypeError, KeyError) as exc:
        raise ConfigurationError(
            f"Invalid page_token {token!r}: pass the next_page_token (the .token) of a "
            "previous search_traces() page, with the same filter and order, or None."
        ) from exc
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ConfigurationError(
            f"Invalid page_token {token!r}: it holds offset {offset!r}. Pass the "
            "next_page_token of a previous search_traces() page, or None."
        )
    return offset
