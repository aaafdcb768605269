"""The seam between portable store code and the one dialect module that differs.

Store modules ask ``dialect.of(conn)`` for what differs between SQLite and PostgreSQL
(claims, upserts, schema versions, lock errors) instead of importing ``store.sqlite``.
The PostgreSQL module is imported only when a PostgreSQL engine is met, so SQLite
users never pay for it.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

from localscorers.store import sqlite

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

__all__ = ["display_uri", "is_postgres_uri", "module", "of"]

_POSTGRES_SCHEMES = ("postgresql://", "postgresql+", "postgres://")


def is_postgres_uri(uri: str) -> bool:
    """Tell whether a tracking URI names a PostgreSQL database."""
    return uri.startswith(_POSTGRES_SCHEMES)


def display_uri(uri: str) -> str:
    """Return a tracking URI as messages show it: a PostgreSQL password is masked."""
    if is_postgres_uri(uri):
        return str(module("postgresql").display_uri(uri))
    return uri


def module(name: str) -> ModuleType:
    """Return the dialect module for a SQLAlchemy dialect name (``sqlite``, ``postgresql``)."""
    if name == "postgresql":
        return importlib.import_module("localscorers.store.postgres")
    return sqlite


def of(bind: Connection | Engine) -> ModuleType:
    """Return the dialect module of a connection's or an engine's database."""
    return module(bind.dialect.name)
