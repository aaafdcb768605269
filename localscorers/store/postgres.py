"""Everything PostgreSQL-specific lives here: the engine, schema versions, upserts, claims.

Imported only when a PostgreSQL URI is used (``store.dialect`` picks it by the engine's
dialect name), so SQLite users pay nothing for it; psycopg itself is imported by
SQLAlchemy when the engine is created. What differs from SQLite:

- there is no single writer: claims lock the rows they take with
  ``SELECT ... FOR UPDATE SKIP LOCKED``, so workers on many hosts each take different
  rows without waiting for one another;
- there is no ``PRAGMA user_version``: the schema version is one row of
  ``localscorers_schema``, and migrations serialize on an advisory lock;
- ``RLIKE`` is ``~`` (POSIX regular expressions), JSON values are read with ``->>``;
- epoch-millisecond columns are ``BIGINT`` (SQLite's INTEGER is 64-bit; PostgreSQL's
  is 32-bit).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect

from localscorers.exceptions import ConfigurationError
from localscorers.store import codec, schema

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

__all__ = [
    "BEGIN_OPTION",
    "claim_rows",
    "create_engine",
    "display_uri",
    "driver_uri",
    "error_kind",
    "get_user_version",
    "insert_ignore",
    "is_locked_error",
    "json_as_text",
    "lock_migrations",
    "lock_rows",
    "serialize",
    "set_user_version",
]


def _attach_partial_conditions() -> None:
    """Give each partial index of the schema its PostgreSQL condition (see schema.py)."""
    for table in schema.METADATA.tables.values():
        for index in table.indexes:
            condition = index.info.get(schema.POSTGRESQL_WHERE)
            if condition is not None:
                index.dialect_kwargs[schema.POSTGRESQL_WHERE] = condition


_attach_partial_conditions()


# Accepted for symmetry with ``sqlite.BEGIN_OPTION``; PostgreSQL needs no begin mode.
BEGIN_OPTION = "localscorers_begin"
_VERSION_TABLE = "localscorers_schema"
# Any constant: every localscorers process migrating one database takes this lock.
_MIGRATION_LOCK = 0x6C6F63616C5363  # "localSc"
_PASSWORD_RE = re.compile(r"(://[^:/@]*:)[^@]*@")
# SQLSTATEs meaning "another transaction was in the way": serialization failure,
# deadlock, lock not available, query canceled by lock_timeout / statement_timeout.
_LOCK_STATES = frozenset({"40001", "40P01", "55P03", "57014"})
# Class 08 (connection exceptions) and the server refusing logins.
_CANTOPEN_PREFIXES = ("08", "28", "3D", "57P")


def _widen_integers() -> None:
    """Make our non-key integer columns BIGINT on PostgreSQL (DDL and bind casts).

    They hold epoch milliseconds, which overflow PostgreSQL's 32-bit INTEGER (SQLite's
    is 64-bit). A variant changes nothing for SQLite, and only our own columns.
    """
    for table in schema.METADATA.tables.values():
        for column in table.c:
            if type(column.type) is sa.Integer and not column.primary_key:
                column.type = column.type.with_variant(sa.BigInteger(), "postgresql")


_widen_integers()


def display_uri(uri: str) -> str:
    """Return the URI with any password masked, for messages and logs."""
    return _PASSWORD_RE.sub(r"\1***@", uri)


def driver_uri(uri: str) -> str:
    """Return the SQLAlchemy URL of a ``postgresql://`` or ``postgresql+psycopg://`` URI."""
    scheme, _, rest = uri.partition("://")
    if scheme not in {"postgresql", "postgresql+psycopg", "postgres"}:
        raise ConfigurationError(
            f"Unsupported PostgreSQL URI scheme {scheme!r} in {display_uri(uri)!r}: "
            "localscorers talks to PostgreSQL through psycopg 3. Use "
            "'postgresql://user:password@host:5432/database'."
        )
    return f"postgresql+psycopg://{rest}"


def create_engine(uri: str) -> Engine:
    """Create a pooled psycopg 3 engine for ``uri``.

    Raises:
        ConfigurationError: psycopg is not installed (``pip install localscorers[postgres]``).
    """
    try:
        engine = sa.create_engine(
            driver_uri(uri),
            json_serializer=codec.dumps,
            pool_size=8,
            max_overflow=32,
            # No ping per checkout: it was a round trip per trace commit (a fifth of
            # its cost). A connection the server dropped fails once and is replaced.
            pool_recycle=1800,
        )
    except ImportError as exc:
        raise ConfigurationError(
            f"The tracking URI {display_uri(uri)!r} needs psycopg 3, which is not "
            "installed. Install it with: pip install 'localscorers[postgres]'."
        ) from exc
    # Expressions over our columns (a + b) come out as plain Integer, whose bind cast
    # would be ::INTEGER and overflow on milliseconds: send plain integers uncast and
    # let psycopg pick the width that fits the value (this engine only).
    colspecs = dict(engine.dialect.colspecs)
    colspecs[sa.Integer] = _UncastInteger
    engine.dialect.colspecs = colspecs
    return engine


class _UncastInteger(sa.Integer):
    """A plain integer parameter sent without a cast: psycopg sizes it by its value."""

    render_bind_cast = False


def _sqlstate(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return str(getattr(orig, "sqlstate", "") or "")


def is_locked_error(exc: BaseException) -> bool:
    """Tell whether a driver error means another transaction was in the way."""
    return _sqlstate(exc) in _LOCK_STATES


def error_kind(exc: BaseException) -> str | None:
    """Classify a driver error about the database itself, or None for other errors.

    Returns ``"full"`` (disk full, SQLSTATE 53100), ``"readonly"`` (read-only
    transaction or no privilege), ``"cantopen"`` (cannot connect or log in) or None.
    """
    state = _sqlstate(exc)
    if state == "53100":
        return "full"
    if state in {"25006", "42501"}:
        return "readonly"
    if state.startswith(_CANTOPEN_PREFIXES):
        return "cantopen"
    if not state and isinstance(exc, sa.exc.OperationalError):
        return "cantopen"  # no SQLSTATE: the connection itself failed
    return None


def insert_ignore(table: sa.Table) -> Any:  # noqa: ANN401 - dialect insert types differ
    """Return an INSERT that silently skips rows violating a unique constraint."""
    return pg_dialect.insert(table).on_conflict_do_nothing()


# Sequences are shared by concurrent writers and skip values (see sqlite.CONSECUTIVE_IDS).
CONSECUTIVE_IDS = False


def json_as_text(cursor: Any) -> None:  # noqa: ANN401 - a psycopg cursor
    """Make a raw psycopg cursor return JSON columns as text, as SQLite's driver does."""
    from psycopg.types.string import TextLoader  # noqa: PLC0415 - the optional extra

    for name in ("json", "jsonb"):
        cursor.adapters.register_loader(name, TextLoader)


def claim_rows(query: sa.Select[Any]) -> sa.Select[Any]:
    """Lock the rows a claim selects, skipping rows another claimer holds."""
    return query.with_for_update(skip_locked=True)


def lock_rows(query: sa.Select[Any]) -> sa.Select[Any]:
    """Lock the rows selected (waiting for other holders) until the transaction ends."""
    return query.with_for_update()


def lock_migrations(conn: Connection) -> None:
    """Serialize migrations of one database across processes and hosts (transaction-scoped)."""
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})


def serialize(conn: Connection, name: str) -> None:
    """Run the rest of this transaction alone among those serialized on ``name``.

    For rare writes that read-then-write (scorer registration and lifecycle), where
    SQLite's single writer gave this for free.
    """
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": name})


def set_user_version(conn: Connection, version: int) -> None:
    """Record the schema version in ``localscorers_schema`` (one row)."""
    conn.execute(sa.text(f"CREATE TABLE IF NOT EXISTS {_VERSION_TABLE} (version INTEGER NOT NULL)"))
    conn.execute(sa.text(f"DELETE FROM {_VERSION_TABLE}"))
    conn.execute(sa.text(f"INSERT INTO {_VERSION_TABLE} (version) VALUES (:v)"), {"v": version})


def get_user_version(conn: Connection) -> int:
    """Read the schema version recorded by :func:`set_user_version` (0: a new database)."""
    exists = conn.execute(sa.text("SELECT to_regclass(:name)"), {"name": _VERSION_TABLE}).scalar()
    if exists is None:
        return 0
    value = conn.execute(sa.text(f"SELECT max(version) FROM {_VERSION_TABLE}")).scalar()
    return int(value or 0)
