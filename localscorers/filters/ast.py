"""The filter AST: small frozen dataclasses shared by the parser and the SQL compiler."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TypeAlias

from localscorers.exceptions import ConfigurationError

__all__ = [
    "NULL_OPS",
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
]


class Entity(StrEnum):
    """What a field reads: the trace row, its tags, metadata, spans or assessments."""

    TRACE = "trace"
    TAG = "tags"
    METADATA = "metadata"
    SPAN = "span"
    SPAN_ATTRIBUTE = "span.attributes"
    FEEDBACK = "feedback"
    EXPECTATION = "expectation"


class Op(StrEnum):
    """A comparison operator, spelled as in filter text."""

    EQ = "="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="
    LIKE = "LIKE"
    ILIKE = "ILIKE"
    RLIKE = "RLIKE"
    IN = "IN"
    NOT_IN = "NOT IN"
    IS_NULL = "IS NULL"
    IS_NOT_NULL = "IS NOT NULL"


# The operators that take no value.
NULL_OPS = (Op.IS_NULL, Op.IS_NOT_NULL)


Scalar: TypeAlias = str | int | float
Value: TypeAlias = Scalar | tuple[Scalar, ...] | None


@dataclass(frozen=True, slots=True)
class Field:
    """A normalized field: ``Field(Entity.TRACE, "timestamp_ms")``, ``Field(Entity.TAG, "k")``."""

    entity: Entity
    key: str


@dataclass(frozen=True, slots=True)
class Comparison:
    """``field op value``; ``value`` is a tuple for IN / NOT IN and None for IS [NOT] NULL."""

    field: Field
    op: Op
    value: Value = None


@dataclass(frozen=True, slots=True)
class _Junction:
    operands: tuple[Expr, ...]

    def __post_init__(self) -> None:
        if len(self.operands) < 2:
            raise ConfigurationError(
                f"{type(self).__name__} needs at least two operands, got {self.operands!r}."
            )


@dataclass(frozen=True, slots=True)
class And(_Junction):
    """All operands hold. An unparenthesized ``a AND b AND c`` is one node of three."""


@dataclass(frozen=True, slots=True)
class Or(_Junction):
    """At least one operand holds. An unparenthesized ``a OR b OR c`` is one node of three."""


@dataclass(frozen=True, slots=True)
class Not:
    """The operand does not hold."""

    operand: Expr


Expr: TypeAlias = Comparison | And | Or | Not
