"""Compile-once Core statements executed through the DBAPI cursor, for the hot paths.

SQLAlchemy builds the SQL (so it stays portable: the text comes from the Core table
for whatever dialect the engine has), but executing a Core construct costs tens of
microseconds of bookkeeping per call, which is most of a trace commit. Here a
statement is compiled once per dialect, and rows are bound and sent with the driver's
``executemany`` inside the transaction SQLAlchemy opened. Bind processors are skipped,
so callers pass driver-ready values: JSON columns already encoded with ``_json.dumps``
(the engine's own serializer, so reads decode them the same way) and plain ints/strs.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.sql.compiler import SQLCompiler

from localscorers.store import dialect

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Dialect

__all__ = ["CompiledStatement", "compiled_insert", "compiled_select", "json_columns"]

_cache: dict[tuple[str, str, str], CompiledStatement] = {}


def _processed(compiled: SQLCompiler, dialect: Dialect, key: str, value: Any) -> Any:  # noqa: ANN401
    bind = compiled.binds.get(key)
    if bind is None:
        return value
    processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
    return value if processor is None else processor(value)


class CompiledStatement:
    """One statement compiled for one dialect, with the order its parameters bind in."""

    def __init__(self, statement: sa.ClauseElement, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)  # noqa: S101 - DML and SELECT compile to SQL
        self.sql = str(compiled)
        self.positional = bool(compiled.positional)
        self.keys: tuple[str, ...] = tuple(compiled.positiontup or compiled.params)
        # Literals in the statement (e.g. a WHERE name = 'scorers') become parameters too,
        # bound as SQLAlchemy would: through their type's processor (a JSON path such as
        # 'model' must reach SQLite as '$."model"').
        self.defaults: dict[str, Any] = {
            key: _processed(compiled, dialect, key, value)
            for key, value in compiled.params.items()
            if value is not None
        }
        # Rows that carry every key bind in C; itemgetter of one key returns a bare value.
        self._getter = operator.itemgetter(*self.keys) if len(self.keys) > 1 else None

    def _bind(self, row: Mapping[str, Any]) -> Sequence[Any] | Mapping[str, Any]:
        defaults = self.defaults
        if self.positional:
            return tuple([row.get(key, defaults.get(key)) for key in self.keys])
        return {key: row.get(key, defaults.get(key)) for key in self.keys}

    def _bind_many(self, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        getter = self._getter
        if getter is not None and self.positional:
            try:
                return [getter(row) for row in rows]
            except KeyError:
                pass  # some row lacks a column: bind each with defaults instead
        return [self._bind(row) for row in rows]

    def executemany(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Send many rows in one driver call, inside ``conn``'s open transaction.

        Raises:
            sqlalchemy.exc.DBAPIError: the driver failed (as SQLAlchemy itself would raise
                it: ``IntegrityError``, ``OperationalError``, ...).
        """
        if not rows:
            return
        self._send(conn, self._bind_many(rows))

    def _send(self, conn: Connection, params: Any) -> int:  # noqa: ANN401 - driver parameters
        """Send the rows; return how many rows they changed (the driver's ``rowcount``)."""
        cursor = _cursor(conn)
        try:
            if len(params) == 1 and conn.dialect.name == "postgresql":
                # One row: psycopg's executemany would open a pipeline (two extra syncs).
                cursor.execute(self.sql, params[0])
            else:
                cursor.executemany(self.sql, params)
            return int(cursor.rowcount)
        except _driver_error(conn) as exc:
            raise _wrapped(conn, self.sql, exc) from exc
        finally:
            cursor.close()

    def executemany_values(
        self, conn: Connection, names: tuple[str, ...], rows: Sequence[Sequence[Any]]
    ) -> int:
        """``executemany`` of rows given as tuples of the values of ``names``, in that order.

        For the hottest writers (a backfill's feedback): no dict per row. Every key of
        the statement must be among ``names``; a key may bind more than once. Returns
        the driver's count of the rows changed (-1 when it does not know).

        Raises:
            sqlalchemy.exc.DBAPIError: the driver failed.
        """
        if not rows:
            return 0
        if not self.positional:
            named = [dict(zip(names, row, strict=True)) for row in rows]
            return self._send(conn, self._bind_many(named))
        positions = tuple(names.index(key) for key in self.keys)
        if positions == tuple(range(len(names))):
            return self._send(conn, rows)
        if len(positions) == 1:
            return self._send(conn, [(row[positions[0]],) for row in rows])
        pick = operator.itemgetter(*positions)
        return self._send(conn, [pick(row) for row in rows])

    def fetchall(self, conn: Connection, params: Mapping[str, Any]) -> list[Any]:
        """Run a query with parameters and return the driver's rows (tuples).

        Raises:
            sqlalchemy.exc.DBAPIError: the driver failed.
        """
        cursor = _cursor(conn)
        try:
            cursor.execute(self.sql, self._bind(params))
            return list(cursor.fetchall())
        except _driver_error(conn) as exc:
            raise _wrapped(conn, self.sql, exc) from exc
        finally:
            cursor.close()


def _cursor(conn: Connection) -> Any:  # noqa: ANN401 - the driver's cursor
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    if conn.dialect.name == "postgresql":
        # Rows come back as SQLite gives them: JSON as text, decoded by the caller.
        dialect.of(conn).json_as_text(cursor)
    return cursor


def _driver_error(conn: Connection) -> type[Exception]:
    error: type[Exception] = conn.dialect.loaded_dbapi.Error
    return error


def _wrapped(conn: Connection, sql: str, exc: Exception) -> sa.exc.StatementError:
    # The same translation SQLAlchemy applies to its own executions, so callers catch
    # sqlalchemy.exc.IntegrityError / OperationalError whichever path ran the statement.
    return sa.exc.DBAPIError.instance(sql, None, exc, _driver_error(conn), dialect=conn.dialect)


def _cached(key: str, conn: Connection, build: Any) -> CompiledStatement:  # noqa: ANN401
    dialect = conn.dialect
    # By dialect and driver, not id(dialect): a disposed SQLite engine's id can come
    # back as a PostgreSQL one's, which would then run SQL compiled for SQLite.
    cache_key = (key, dialect.name, dialect.driver)
    found = _cache.get(cache_key)
    if found is None:
        found = _cache[cache_key] = CompiledStatement(build(), dialect)
    return found


def compiled_insert(conn: Connection, table: sa.Table) -> CompiledStatement:
    """Return ``INSERT INTO table (all columns)`` compiled for the connection's dialect.

    An autoincrement id is left out: the database assigns it (PostgreSQL refuses NULL).
    """
    serial = table.autoincrement_column
    return _cached(
        f"insert:{table.name}",
        conn,
        lambda: sa.insert(table).values(
            {c.name: sa.bindparam(c.name) for c in table.c if c is not serial}
        ),
    )


def compiled_select(conn: Connection, key: str, build: Any) -> CompiledStatement:  # noqa: ANN401
    """Return a query built by ``build()`` compiled once for the connection's dialect."""
    return _cached(f"select:{key}", conn, build)


def json_columns(table: sa.Table) -> frozenset[str]:
    """Return the names of the table's JSON columns (callers encode those values)."""
    return frozenset(c.name for c in table.c if isinstance(c.type, sa.JSON))
