"""MLflow-style ``order_by`` entries compiled to ORDER BY clauses over ``traces``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

import sqlalchemy as sa

from localscorers.exceptions import ConfigurationError, FilterSyntaxError
from localscorers.filters import Entity, Field, parse_field
from localscorers.store import filter_sql, schema

__all__ = ["compile_order_by"]

_ORDER_RE: Final = re.compile(
    r"\s*(?P<field>.*?)(?:\s+(?P<direction>asc|desc))?\s*", re.IGNORECASE | re.DOTALL
)
_EXPERIMENT_ID_RE: Final = re.compile(r"(?:(?:trace|attributes?)\.)?experiment_id", re.I)
_ORDER_FIELDS: Final = (
    "timestamp_ms, execution_time_ms, end_time_ms, status, name, trace_id, experiment_id, "
    "run_id, client_request_id, tags.<key> or metadata.<key>, optionally followed by ASC "
    "or DESC"
)


def _order_error(clause: str, position: int, token: str, expected: str) -> ConfigurationError:
    shown = repr(token) if token else "end of input"
    return ConfigurationError(
        f"Invalid order_by clause at position {position}: found {shown}, expected {expected}.\n"
        f"  {clause}\n  {' ' * position}^\n"
        "Use a trace attribute with an optional ASC or DESC, e.g. 'timestamp_ms DESC'."
    )


def _order_column(clause: str) -> tuple[Field, bool, sa.ColumnElement[Any]]:
    match = _ORDER_RE.fullmatch(clause)
    assert match is not None  # noqa: S101 - the pattern matches every string
    text, start = match.group("field"), match.start("field")
    ascending = (match.group("direction") or "asc").lower() == "asc"
    if _EXPERIMENT_ID_RE.fullmatch(text):
        field = Field(Entity.TRACE, "experiment_id")
    else:
        try:
            field = parse_field(text)
        except FilterSyntaxError as exc:
            raise _order_error(clause, start + exc.position, exc.token, _ORDER_FIELDS) from exc
    if field.entity is Entity.TRACE:
        return field, ascending, filter_sql.trace_column(field.key)
    if field.entity in (Entity.TAG, Entity.METADATA):
        table = schema.trace_tags if field.entity is Entity.TAG else schema.trace_metadata
        value = (
            sa.select(table.c.value)
            .where(table.c.trace_id == schema.traces.c.trace_id, table.c.key == field.key)
            .correlate(schema.traces)
            .scalar_subquery()
        )
        return field, ascending, value
    raise _order_error(clause, start, text, _ORDER_FIELDS)


def compile_order_by(order_by: Sequence[str] | None) -> list[sa.ColumnElement[Any]]:
    """Compile MLflow-style ``order_by`` entries into ORDER BY clauses over ``traces``.

    Each entry is a field (``timestamp_ms``, ``trace.execution_time_ms``, ``name``,
    ``status``, ``trace_id``, ``experiment_id``, ``run_id``, ``tags.<key>``,
    ``metadata.<key>`` and their MLflow aliases) with an optional ``ASC`` (default) or
    ``DESC``. Missing values sort last either way, as in MLflow. ``request_time_ms
    DESC`` and then ``trace_id`` are appended as tie-breakers unless already present,
    so the order is total and stable across calls.

    Args:
        order_by: the entries, or None for the default (newest first).

    Returns:
        Clauses for ``Select.order_by(*clauses)``.

    Raises:
        ConfigurationError: ``order_by`` is not a list of strings, or an entry does not
            parse or names a field that cannot be ordered by (the message points at it).
    """
    if order_by is None:
        order_by = []
    if isinstance(order_by, str) or not isinstance(order_by, Sequence):
        raise ConfigurationError(
            f"order_by must be a list of strings such as ['timestamp_ms DESC'], got {order_by!r}."
        )
    clauses: list[sa.ColumnElement[Any]] = []
    fields: set[Field] = set()
    for clause in order_by:
        if not isinstance(clause, str):
            raise ConfigurationError(
                f"Each order_by entry must be a str such as 'timestamp_ms DESC', got {clause!r}."
            )
        field, ascending, column = _order_column(clause)
        fields.add(field)
        clauses.append(sa.nulls_last(column.asc() if ascending else column.desc()))
    if Field(Entity.TRACE, "timestamp_ms") not in fields:
        clauses.append(schema.traces.c.request_time_ms.desc())
    if Field(Entity.TRACE, "trace_id") not in fields:
        clauses.append(schema.traces.c.trace_id.asc())
    return clauses
