"""Filter ASTs back to text: the canonical form that parses to the same AST."""

from __future__ import annotations

import math
import re
from typing import Final

from localscorers.exceptions import ConfigurationError
from localscorers.filters.ast import NULL_OPS, And, Comparison, Entity, Expr, Field, Not, Or, Scalar

__all__ = ["render", "render_field"]

_PLAIN_KEY_RE: Final = re.compile(r"[A-Za-z0-9_]+")


def _quote_key(key: str) -> str:
    return key if _PLAIN_KEY_RE.fullmatch(key) else "`" + key.replace("`", "``") + "`"


def render_field(field: Field) -> str:
    """Return a field as filter text, its key in backticks where it needs them."""
    if field.entity in (Entity.TRACE, Entity.SPAN):
        return f"{field.entity.value}.{field.key}"
    return f"{field.entity.value}.{_quote_key(field.key)}"


def _render_scalar(value: Scalar) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"Filter values are str, int or float, got {value!r}.")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigurationError(f"Filter numbers must be finite, got {value!r}.")
    return repr(value)


def _render_operand(expr: Expr, parent: type[And] | type[Or]) -> str:
    # Same-type children keep their own node only if parenthesized; OR under AND needs
    # parentheses by precedence. AND under OR and NOT / comparisons never do.
    if isinstance(expr, parent) or (parent is And and isinstance(expr, Or)):
        return f"({render(expr)})"
    return render(expr)


def render(expr: Expr) -> str:
    """Turn an AST back into filter text that :func:`parse` turns into the same AST.

    Args:
        expr: an expression, usually from :func:`parse`.

    Returns:
        Canonical filter text: ``trace.``-prefixed fields, single-quoted strings,
        upper-case keywords, and only the parentheses the tree needs.

    Raises:
        ConfigurationError: a value is not a str, int or finite float.
    """
    if isinstance(expr, Comparison):
        field = render_field(expr.field)
        if expr.op in NULL_OPS:
            return f"{field} {expr.op.value}"
        if isinstance(expr.value, tuple):
            values = ", ".join(_render_scalar(v) for v in expr.value)
            return f"{field} {expr.op.value} ({values})"
        if expr.value is None:
            raise ConfigurationError(f"{expr.op.value} needs a value in {expr!r}.")
        return f"{field} {expr.op.value} {_render_scalar(expr.value)}"
    if isinstance(expr, Not):
        inner = expr.operand
        text = render(inner)
        return f"NOT {text}" if isinstance(inner, Comparison | Not) else f"NOT ({text})"
    if isinstance(expr, And):
        return " AND ".join(_render_operand(e, And) for e in expr.operands)
    return " OR ".join(_render_operand(e, Or) for e in expr.operands)
