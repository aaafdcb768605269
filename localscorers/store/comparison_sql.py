"""One filter comparison as SQL: its operator, a definite truth value, an unindexed column.

The building blocks :mod:`~localscorers.store.filter_sql` composes filters from. Every
value becomes a bound parameter, never SQL text.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal

from localscorers.filters import Op, Value

__all__ = ["Unindexed", "definite", "predicate", "uppercased"]


class Unindexed(sa.ColumnElement[Any]):
    """A column the query planner must not use an index for (SQLite: ``+column``).

    SQLite's unary ``+`` is a no-op on any value that disqualifies the column from
    index use, its documented way to steer the planner. Other databases get the column
    unchanged: PostgreSQL's planner has statistics and needs no steering.
    """

    inherit_cache = True
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement)]  # noqa: RUF012

    def __init__(self, column: sa.ColumnElement[Any]) -> None:
        self.column = column
        self.type = column.type


@compiles(Unindexed)
def _compile_unindexed(element: Unindexed, compiler: SQLCompiler, **kw: Any) -> str:  # noqa: ANN401
    return compiler.process(element.column, **kw)


@compiles(Unindexed, "sqlite")
def _compile_unindexed_sqlite(element: Unindexed, compiler: SQLCompiler, **kw: Any) -> str:  # noqa: ANN401
    return f"+{compiler.process(element.column, **kw)}"


_Apply = Callable[[sa.ColumnElement[Any], Any], sa.ColumnElement[bool]]
_OPERATIONS: Final[dict[Op, _Apply]] = {
    Op.EQ: operator.eq,
    Op.NE: operator.ne,
    Op.LT: operator.lt,
    Op.LE: operator.le,
    Op.GT: operator.gt,
    Op.GE: operator.ge,
    Op.LIKE: lambda column, value: column.like(value),
    Op.ILIKE: lambda column, value: column.ilike(value),
    # SQLite: REGEXP is registered on every connection by the sqlite module (re.search).
    Op.RLIKE: lambda column, value: column.regexp_match(value),
    Op.IN: lambda column, values: column.in_(list(values)),
    Op.NOT_IN: lambda column, values: column.not_in(list(values)),
    Op.IS_NULL: lambda column, _: column.is_(None),
    Op.IS_NOT_NULL: lambda column, _: column.is_not(None),
}


def predicate(column: sa.ColumnElement[Any], op: Op, value: Value) -> sa.ColumnElement[bool]:
    """Apply ``op`` to a column; every value becomes a bound parameter."""
    return _OPERATIONS[op](column, value)


def uppercased(value: Value) -> Value:
    """A value (or each of a tuple's) upper-cased, for columns stored upper-case."""
    if isinstance(value, str):
        return value.upper()
    if isinstance(value, tuple):
        return tuple(v.upper() if isinstance(v, str) else v for v in value)
    return value


def definite(
    column: sa.ColumnElement[Any], condition: sa.ColumnElement[bool]
) -> sa.ColumnElement[bool]:
    """``condition``, false (not NULL) where ``column`` is NULL.

    ``x != 'a'`` on a NULL ``x`` is NULL in SQL; ``x IS NOT NULL AND ...`` makes it false.
    """
    return sa.and_(column.is_not(None), condition)
