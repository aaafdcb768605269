"""Tracking URIs: where the default database lives, and the one spelling of a URI or path.

A ``sqlite:///`` URI and a file path name the same database once normalized, so the
runtime can tell whether ``set_tracking_uri`` names the database already open.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs
from sqlalchemy.exc import DBAPIError

from localscorers.exceptions import ConfigurationError
from localscorers.store import dialect

__all__ = ["MEMORY_URI", "default_tracking_uri", "holds_schema", "normalize_uri"]

MEMORY_URI = "sqlite:///:memory:"


def default_tracking_uri() -> str:
    """Return the URI of the default database under the user's data directory."""
    path = platformdirs.user_data_path("localscorers") / "localscorers.db"
    return f"sqlite:///{path}"


def normalize_uri(uri: str | os.PathLike[str]) -> str:
    """Turn a ``sqlite:///`` URI or a filesystem path into a canonical ``sqlite:///`` URI.

    ``postgresql://`` and ``postgresql+psycopg://`` URIs are returned as given.

    Raises:
        ConfigurationError: the URI is empty or names a database other than SQLite
            or PostgreSQL.
    """
    text = os.fspath(uri).strip()
    if not text:
        raise ConfigurationError(
            "The tracking URI is empty. Pass 'sqlite:///path/to/file.db', a file path, "
            "or 'sqlite:///:memory:'."
        )
    if text in {":memory:", MEMORY_URI}:
        return MEMORY_URI
    if dialect.is_postgres_uri(text):
        return text
    if text.startswith("sqlite:///"):
        path = text.removeprefix("sqlite:///")
    elif "://" in text:
        raise ConfigurationError(
            f"Unsupported tracking URI {text!r}: localscorers stores data in SQLite or "
            "PostgreSQL. Use 'sqlite:///path/to/file.db', a file path, "
            "'sqlite:///:memory:', or 'postgresql://user:password@host:5432/database'."
        )
    else:
        path = text
    return f"sqlite:///{Path(path).expanduser().resolve()}"


def holds_schema(uri: str) -> bool:
    """Tell whether a database already holds localscorers' tables; create nothing.

    Read-only commands ask first, so a typo in a URI never leaves tables behind: a
    SQLite file must exist; a PostgreSQL database (or the schema its ``search_path``
    names) must have a schema version. A server that cannot be reached answers True:
    opening it then says what is wrong.
    """
    uri = normalize_uri(uri)
    if uri == MEMORY_URI:
        return True
    if not dialect.is_postgres_uri(uri):
        return Path(uri.removeprefix("sqlite:///")).exists()
    engine = dialect.module("postgresql").create_engine(uri)
    try:
        with engine.connect() as conn:
            return bool(dialect.of(conn).get_user_version(conn) > 0)
    except DBAPIError:
        return True
    finally:
        engine.dispose()
