"""Filter strings (DESIGN.md section 4): the grammar, its parser and the AST it builds.

Pure Python: the SQL compiler lives with the store (``store/filter_sql.py``).
"""

from localscorers.filters.ast import (
    And,
    Comparison,
    Entity,
    Expr,
    Field,
    Not,
    Op,
    Or,
    Scalar,
    Value,
)
from localscorers.filters.parser import MAX_COMPARISONS, MAX_NESTING, MAX_VALUES, parse, parse_field
from localscorers.filters.render import render

__all__ = [
    "MAX_COMPARISONS",
    "MAX_NESTING",
    "MAX_VALUES",
    "And",
    "Comparison",
    "Entity",
    "Expr",
    "Field",
    "Not",
    "Op",
    "Or",
    "Scalar",
    "Value",
    "parse",
    "parse_field",
    "render",
]
