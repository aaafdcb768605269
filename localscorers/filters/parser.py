r"""Filter strings: a recursive-descent parser into a small frozen AST.

One grammar serves ``ScorerSamplingConfig.filter_string``, ``search_traces`` and
backfill (DESIGN.md section 4). It accepts what MLflow's trace search accepts
(``mlflow/utils/search_utils.py``, ``SearchTraceUtils``) and adds ``OR``, ``NOT``
and parentheses, with precedence ``NOT`` > ``AND`` > ``OR``::

    expr       := or_expr END
    or_expr    := and_expr ("OR" and_expr)*
    and_expr   := not_expr ("AND" not_expr)*
    not_expr   := "NOT" not_expr | "(" or_expr ")" | comparison
    comparison := field ( ("=" | "!=" | "<" | "<=" | ">" | ">=") value
                        | ("LIKE" | "ILIKE" | "RLIKE") string
                        | ["NOT"] "IN" "(" value ("," value)* ")"
                        | "IS" ["NOT"] "NULL" )

Strings take single or double quotes; a quote inside a string is written twice
(``'it''s'``). Backslashes are ordinary characters, so a regular expression such as
``'^v[0-9]+\.[0-9]+'`` reaches RLIKE unchanged, as it does in MLflow (which never
unescapes string contents at all). Keys holding dots or other characters go in
backticks: ``metadata.`mlflow.trace.session` = 's1'``.

The parser normalizes aliases (``timestamp`` -> ``trace.timestamp_ms``, ``run_id`` ->
the ``mlflow.sourceRun`` metadata entry, ``trace.text`` -> ``span.content``), so
:func:`render` of a parsed filter may differ from its text but always parses back
to the same AST. The tokenizer is ``tokens.py``, the way back to text ``render.py``;
this package is pure Python: SQL lives in ``store/filter_sql.py``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from enum import Enum
from typing import Final

import re2

from localscorers.exceptions import ConfigurationError, FilterSyntaxError
from localscorers.filters.ast import (
    NULL_OPS,
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
from localscorers.filters.render import render_field
from localscorers.filters.tokens import (
    NUMBER_RE,
    Token,
    tokenize,
)

__all__ = ["MAX_COMPARISONS", "MAX_NESTING", "MAX_VALUES", "parse", "parse_field"]

# Limits keep the generated SQL inside SQLite's expression-depth and bound-parameter
# limits (SQLITE_MAX_EXPR_DEPTH = 1000) and the parser off Python's recursion limit.
MAX_NESTING: Final = 64
MAX_COMPARISONS: Final = 200
MAX_VALUES: Final = 1000
_RE2_OPTIONS: Final = re2.Options()
_RE2_OPTIONS.log_errors = False
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1


class _Kind(Enum):
    NUMBER = "number"
    STRING = "string"
    CONTENT = "content"
    ASSESSMENT = "assessment"


# Unprefixed and ``trace.`` / ``attributes.`` keys, after MLflow's aliases.
_TRACE_KEYS: Final[dict[str, Field]] = {
    "status": Field(Entity.TRACE, "status"),
    "name": Field(Entity.TRACE, "name"),
    "trace_id": Field(Entity.TRACE, "trace_id"),
    "request_id": Field(Entity.TRACE, "trace_id"),
    "timestamp_ms": Field(Entity.TRACE, "timestamp_ms"),
    "timestamp": Field(Entity.TRACE, "timestamp_ms"),
    "execution_time_ms": Field(Entity.TRACE, "execution_time_ms"),
    "execution_time": Field(Entity.TRACE, "execution_time_ms"),
    "end_time_ms": Field(Entity.TRACE, "end_time_ms"),
    "end_time": Field(Entity.TRACE, "end_time_ms"),
    "client_request_id": Field(Entity.TRACE, "client_request_id"),
    # MLflow maps run_id to the mlflow.sourceRun metadata entry and text to span content.
    "run_id": Field(Entity.METADATA, "mlflow.sourceRun"),
    "text": Field(Entity.SPAN, "content"),
}
_NUMERIC_TRACE_KEYS: Final = frozenset({"timestamp_ms", "execution_time_ms", "end_time_ms"})
_SPAN_KEYS: Final = frozenset({"name", "type", "status", "content"})
_PREFIXES: Final[dict[str, Entity]] = {
    **dict.fromkeys(("trace", "attribute", "attributes"), Entity.TRACE),
    **dict.fromkeys(("tag", "tags"), Entity.TAG),
    **dict.fromkeys(("metadata", "request_metadata"), Entity.METADATA),
    **{e.value: e for e in (Entity.SPAN, Entity.FEEDBACK, Entity.EXPECTATION)},
}
_VALID_FIELDS: Final = (
    "a field: trace.status, trace.name, trace.trace_id, trace.timestamp_ms, "
    "trace.execution_time_ms, trace.end_time_ms, trace.client_request_id, trace.run_id, "
    "trace.text, tags.<key>, "
    "metadata.<key>, span.name, span.type, span.status, span.content, "
    "span.attributes.<key>, feedback.<name> or expectation.<name>"
)
_VALID_TRACE_FIELDS: Final = (
    "a trace attribute: status, name, trace_id, timestamp_ms, execution_time_ms, "
    "end_time_ms, client_request_id, run_id or text"
)
_VALID_SPAN_FIELDS: Final = (
    "span.name, span.type, span.status, span.content or span.attributes.<key>"
)
_ALL_OPS: Final = (
    "an operator: =, !=, <, <=, >, >=, LIKE, ILIKE, RLIKE, IN, NOT IN, IS NULL or IS NOT NULL"
)
_ORDERING_OPS: Final = frozenset({Op.LT, Op.LE, Op.GT, Op.GE})
_PATTERN_OPS: Final = frozenset({Op.LIKE, Op.ILIKE, Op.RLIKE})
_LIST_OPS: Final = frozenset({Op.IN, Op.NOT_IN})
_ALLOWED_OPS: Final[dict[_Kind, tuple[Op, ...]]] = {
    _Kind.NUMBER: (Op.EQ, Op.NE, Op.LT, Op.LE, Op.GT, Op.GE, Op.IN, Op.NOT_IN, *NULL_OPS),
    _Kind.STRING: (Op.EQ, Op.NE, Op.LIKE, Op.ILIKE, Op.RLIKE, Op.IN, Op.NOT_IN, *NULL_OPS),
    _Kind.CONTENT: (Op.LIKE, Op.ILIKE, Op.RLIKE),
    _Kind.ASSESSMENT: tuple(Op),
}


def _field_kind(field: Field) -> _Kind:
    if field.entity is Entity.TRACE and field.key in _NUMERIC_TRACE_KEYS:
        return _Kind.NUMBER
    if field.entity is Entity.SPAN and field.key == "content":
        return _Kind.CONTENT
    if field.entity in (Entity.FEEDBACK, Entity.EXPECTATION):
        return _Kind.ASSESSMENT
    return _Kind.STRING


def _resolve_field(text: str, token: Token) -> Field:
    """Map a dotted name to a normalized :class:`Field`, or raise naming what is valid."""
    parts = token.parts
    if len(parts) == 1:
        field = _TRACE_KEYS.get(parts[0].lower())
        if field is None:
            raise FilterSyntaxError(text, token.pos, token.text, _VALID_FIELDS)
        return field
    entity = _PREFIXES.get(parts[0].lower())
    if entity is None:
        raise FilterSyntaxError(text, token.pos, token.text, _VALID_FIELDS)
    rest = parts[1:]
    if any(part == "" for part in rest):
        raise FilterSyntaxError(text, token.pos, token.text, "a non-empty key after the prefix")
    if entity is Entity.TRACE:
        field = _TRACE_KEYS.get(rest[0].lower()) if len(rest) == 1 else None
        if field is None:
            raise FilterSyntaxError(text, token.pos, token.text, _VALID_TRACE_FIELDS)
        return field
    if entity is Entity.SPAN:
        head = rest[0].lower()
        if len(rest) == 1 and head in _SPAN_KEYS:
            return Field(Entity.SPAN, head)
        if head == "attributes" and len(rest) > 1:
            key = ".".join(rest[1:])
            if '"' in key:
                # SQLite's JSON path syntax cannot address a key holding a double quote.
                raise FilterSyntaxError(
                    text, token.pos, token.text, "a span attribute key without '\"'"
                )
            return Field(Entity.SPAN_ATTRIBUTE, key)
        raise FilterSyntaxError(text, token.pos, token.text, _VALID_SPAN_FIELDS)
    return Field(entity, ".".join(rest))


class _Parser:
    """Recursive descent over the token list, one method per grammar rule."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0
        self.depth = 0
        self.comparisons = 0
        self.values = 0

    def peek(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        if token.kind != "end":
            self.index += 1
        return token

    def error(self, token: Token, expected: str, *, text: str | None = None) -> FilterSyntaxError:
        return FilterSyntaxError(
            self.text, token.pos, token.text if text is None else text, expected
        )

    @staticmethod
    def is_keyword(token: Token, word: str) -> bool:
        return token.kind == "keyword" and token.parts[0] == word

    def nest(self, token: Token) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise self.error(token, f"at most {MAX_NESTING} nested parentheses or NOTs")

    def parse(self) -> Expr:
        expr = self.or_expr()
        token = self.peek()
        if token.kind != "end":
            raise self.error(token, "AND, OR or the end of the filter")
        return expr

    def or_expr(self) -> Expr:
        return self.chain("OR", self.and_expr, Or)

    def and_expr(self) -> Expr:
        return self.chain("AND", self.not_expr, And)

    def chain(
        self, keyword: str, operand: Callable[[], Expr], node: Callable[[tuple[Expr, ...]], Expr]
    ) -> Expr:
        """Parse ``operand (keyword operand)*`` into one operand or ``node`` of them all."""
        operands = [operand()]
        while self.is_keyword(self.peek(), keyword):
            self.advance()
            operands.append(operand())
        return operands[0] if len(operands) == 1 else node(tuple(operands))

    def not_expr(self) -> Expr:
        token = self.peek()
        if self.is_keyword(token, "NOT"):
            self.advance()
            self.nest(token)
            operand = self.not_expr()
            self.depth -= 1
            return Not(operand)
        if token.kind == "lparen":
            self.advance()
            self.nest(token)
            expr = self.or_expr()
            close = self.peek()
            if close.kind != "rparen":
                raise self.error(close, f"AND, OR or ')' to close the '(' at position {token.pos}")
            self.advance()
            self.depth -= 1
            return expr
        if token.kind == "ident":
            return self.comparison()
        raise self.error(token, f"{_VALID_FIELDS}, or NOT, or '('")

    def comparison(self) -> Comparison:
        name = self.advance()
        field = _resolve_field(self.text, name)
        first = self.peek()
        op = self.operator()
        allowed = _ALLOWED_OPS[_field_kind(field)]
        if op not in allowed:
            last = self.tokens[self.index - 1]
            ops = ", ".join(o.value for o in allowed)
            op_text = self.text[first.pos : last.pos + len(last.text)]
            raise self.error(first, f"one of {ops} for {render_field(field)}", text=op_text)
        value: Value = None
        if op in _LIST_OPS:
            value = self.value_list(field, op)
        elif op not in NULL_OPS:
            value = self.literal(self.advance(), field, op)
        self.comparisons += 1
        if self.comparisons > MAX_COMPARISONS:
            raise self.error(name, f"at most {MAX_COMPARISONS} comparisons in one filter")
        return Comparison(field, op, value)

    def operator(self) -> Op:
        token = self.advance()
        if token.kind == "op":
            return Op(token.text)
        if token.kind == "keyword":
            word = token.parts[0]
            if word in ("LIKE", "ILIKE", "RLIKE", "IN"):
                return Op(word)
            if word == "NOT":
                following = self.advance()
                if not self.is_keyword(following, "IN"):
                    raise self.error(following, "IN after NOT (as in tags.k NOT IN ('a', 'b'))")
                return Op.NOT_IN
            if word == "IS":
                following = self.advance()
                negated = self.is_keyword(following, "NOT")
                if negated:
                    following = self.advance()
                if not self.is_keyword(following, "NULL"):
                    raise self.error(following, "NULL (as in IS NULL or IS NOT NULL)")
                return Op.IS_NOT_NULL if negated else Op.IS_NULL
        raise self.error(token, _ALL_OPS)

    def value_list(self, field: Field, op: Op) -> tuple[Scalar, ...]:
        opening = self.advance()
        if opening.kind != "lparen":
            raise self.error(opening, f"'(' to start the list of values after {op.value}")
        values = [self.literal(self.advance(), field, op)]
        tokens = [self.tokens[self.index - 1]]
        while self.peek().kind == "comma":
            self.advance()
            values.append(self.literal(self.advance(), field, op))
            tokens.append(self.tokens[self.index - 1])
        closing = self.advance()
        if closing.kind != "rparen":
            raise self.error(closing, f"',' or ')' to close the list of values after {op.value}")
        first_is_str = isinstance(values[0], str)
        for token, value in zip(tokens, values, strict=True):
            if isinstance(value, str) != first_is_str:
                raise self.error(token, "values of one type in a list: all strings or all numbers")
        return tuple(values)

    def literal(self, token: Token, field: Field, op: Op) -> Scalar:
        self.values += 1
        if self.values > MAX_VALUES:
            raise self.error(token, f"at most {MAX_VALUES} values in one filter")
        kind = _field_kind(field)
        described = render_field(field)
        if token.kind == "string":
            return self.string_literal(token, field, op)
        if token.kind == "number":
            if op in _PATTERN_OPS:
                raise self.error(token, f"a quoted pattern string after {op.value}")
            if kind in (_Kind.STRING, _Kind.CONTENT):
                raise self.error(token, f"a quoted string for {described} (e.g. '{token.text}')")
            return self.checked_number(token, token.number)
        if op in _PATTERN_OPS:
            expected = f"a quoted pattern string after {op.value}"
        elif kind is _Kind.NUMBER or (kind is _Kind.ASSESSMENT and op in _ORDERING_OPS):
            expected = f"a number for {described}"
        elif kind is _Kind.ASSESSMENT:
            expected = f"a quoted string or a number for {described}"
        else:
            expected = f"a quoted string for {described}"
        raise self.error(token, expected)

    def string_literal(self, token: Token, field: Field, op: Op) -> Scalar:
        kind = _field_kind(field)
        if kind is _Kind.NUMBER:
            # MLflow accepts a quoted number for a numeric attribute; so do we.
            text = token.string.strip()
            if NUMBER_RE.fullmatch(text) is None:
                raise self.error(token, f"a number for {render_field(field)}")
            number: int | float = float(text) if any(c in text for c in ".eE") else int(text)
            return self.checked_number(token, number)
        if kind is _Kind.ASSESSMENT and op in _ORDERING_OPS:
            raise self.error(token, f"a number for {op.value} on {render_field(field)}")
        if op is Op.RLIKE:
            try:
                re.compile(token.string)
            except (re.error, OverflowError, RecursionError) as exc:
                raise self.error(token, f"a valid regular expression ({exc})") from exc
            # RLIKE runs on RE2 (linear time, see store/sqlite.py): refuse here what RE2
            # cannot run (backreferences, lookarounds), not at the first matching trace.
            try:
                re2.compile(token.string, options=_RE2_OPTIONS)
            except (re2.error, UnicodeError) as exc:
                said = exc.args[0] if exc.args else exc
                reason = said.decode() if isinstance(said, bytes) else said
                raise self.error(
                    token,
                    f"a regular expression RE2 can run ({reason}); RLIKE uses RE2, which "
                    "has no backreferences or lookarounds",
                ) from exc
        return token.string

    def checked_number(self, token: Token, number: int | float) -> int | float:
        if isinstance(number, float) and not math.isfinite(number):
            raise self.error(token, "a finite number")
        if isinstance(number, int) and not _INT64_MIN <= number <= _INT64_MAX:
            raise self.error(token, "an integer within the 64-bit range")
        return number


def _check_unicode(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise FilterSyntaxError(
            text, exc.start, text[exc.start : exc.end], "valid Unicode text (no lone surrogates)"
        ) from exc


def parse(text: str) -> Expr:
    """Parse a filter string into an AST.

    Args:
        text: the filter, e.g. ``"trace.status = 'OK' AND tags.env IN ('prod', 'dev')"``.

    Returns:
        The expression tree (:class:`Comparison`, :class:`And`, :class:`Or`, :class:`Not`).

    Raises:
        FilterSyntaxError: the text does not parse, names an unknown field, compares a
            field with a value of the wrong type, or holds an invalid RLIKE regex. The
            error carries the position, the offending token and what was expected.
        ConfigurationError: ``text`` is not a ``str``.
    """
    if not isinstance(text, str):
        raise ConfigurationError(
            f"A filter must be a str such as \"trace.status = 'OK'\", got "
            f"{type(text).__name__}: {text!r:.80}."
        )
    _check_unicode(text)
    return _Parser(text).parse()


def parse_field(text: str) -> Field:
    """Parse a field name on its own, such as ``trace.timestamp`` or ``tags.`my.key```.

    ``order_by`` parsing uses this, so field names and aliases mean the same there.

    Args:
        text: the field name, with no surrounding whitespace required.

    Returns:
        The normalized field.

    Raises:
        FilterSyntaxError: the text is not exactly one known field name.
        ConfigurationError: ``text`` is not a ``str``.
    """
    if not isinstance(text, str):
        raise ConfigurationError(f"A field name must be a str, got {text!r:.80}.")
    _check_unicode(text)
    tokens = tokenize(text)
    name, following = tokens[0], tokens[min(1, len(tokens) - 1)]
    if name.kind != "ident":
        raise FilterSyntaxError(text, name.pos, name.text, _VALID_FIELDS)
    if following.kind != "end":
        raise FilterSyntaxError(text, following.pos, following.text, "the end of the field name")
    return _resolve_field(text, name)
