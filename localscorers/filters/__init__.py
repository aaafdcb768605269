"""Filter strings (DESIGN.md section 4): the grammar, its parser and the AST it builds.

Pure Python: the SQL compiler lives with the store (``store/filter_sql.py``).
"""

# The names this package exports: ``X as X`` marks each public (mypy, ruff), no __all__.
from localscorers.filters.ast import And as And
from localscorers.filters.ast import Comparison as Comparison
from localscorers.filters.ast import Entity as Entity
from localscorers.filters.ast import Expr as Expr
from localscorers.filters.ast import Field as Field
from localscorers.filters.ast import Not as Not
from localscorers.filters.ast import Op as Op
from localscorers.filters.ast import Or as Or
from localscorers.filters.ast import Scalar as Scalar
from localscorers.filters.ast import Value as Value
from localscorers.filters.parser import MAX_COMPARISONS as MAX_COMPARISONS
from localscorers.filters.parser import MAX_NESTING as MAX_NESTING
from localscorers.filters.parser import MAX_VALUES as MAX_VALUES
from localscorers.filters.parser import parse as parse
from localscorers.filters.parser import parse_field as parse_field
from localscorers.filters.render import render as render
