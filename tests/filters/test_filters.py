"""Parser-only tests for localscorers.filters: tokens, precedence, errors, round trips."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from localscorers import ScorerSamplingConfig
from localscorers.exceptions import ConfigurationError, FilterSyntaxError
from localscorers.filters import (
    MAX_COMPARISONS,
    MAX_NESTING,
    And,
    Comparison,
    Entity,
    Expr,
    Field,
    Not,
    Op,
    Or,
    parse,
    parse_field,
    render,
)

STATUS = Field(Entity.TRACE, "status")
NAME = Field(Entity.TRACE, "name")
TIMESTAMP = Field(Entity.TRACE, "timestamp_ms")


def ok(field: Field = STATUS, value: object = "OK") -> Comparison:
    return Comparison(field, Op.EQ, value)  # type: ignore[arg-type]


A, B, C = ok(value="a"), ok(value="b"), ok(value="c")


# --------------------------------------------------------------------------- tokens


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # The three spellings MLflow accepts for trace attributes, and the bare key.
        ("trace.status = 'OK'", ok()),
        ("attributes.status = 'OK'", ok()),
        ("attribute.status = 'OK'", ok()),
        ("status = 'OK'", ok()),
        ('status = "OK"', ok()),
        ("status='OK'", ok()),
        ("\tstatus\n=\r\n'OK'  ", ok()),
        ("TRACE.STATUS = 'OK'", ok()),
        (
            "trace.client_request_id IN ('a', 'b')",
            Comparison(Field(Entity.TRACE, "client_request_id"), Op.IN, ("a", "b")),
        ),
        # Quotes: a doubled quote is one quote; backslashes are plain characters.
        ("name = 'it''s'", ok(NAME, "it's")),
        ('name = "say ""hi"""', ok(NAME, 'say "hi"')),
        ('name = "it\'s"', ok(NAME, "it's")),
        ("name = 'a\\b'", ok(NAME, "a\\b")),
        ("name = ''", ok(NAME, "")),
        ("name = 'ünï €'", ok(NAME, "ünï €")),
        ("name = 'line\nbreak'", ok(NAME, "line\nbreak")),
        # Aliases normalize to one field.
        ("trace.name = 'x'", ok(NAME, "x")),
        ("trace.timestamp > 5", Comparison(TIMESTAMP, Op.GT, 5)),
        ("timestamp_ms > 5", Comparison(TIMESTAMP, Op.GT, 5)),
        (
            "trace.execution_time < 5",
            Comparison(Field(Entity.TRACE, "execution_time_ms"), Op.LT, 5),
        ),
        ("end_time >= 5", Comparison(Field(Entity.TRACE, "end_time_ms"), Op.GE, 5)),
        ("trace.request_id = 'tr-1'", ok(Field(Entity.TRACE, "trace_id"), "tr-1")),
        ("trace.run_id = 'r1'", ok(Field(Entity.METADATA, "mlflow.sourceRun"), "r1")),
        ("trace.text LIKE '%a%'", Comparison(Field(Entity.SPAN, "content"), Op.LIKE, "%a%")),
        # Numbers: negative, decimal, exponent; a quoted number for a numeric field.
        ("timestamp_ms = -5", Comparison(TIMESTAMP, Op.EQ, -5)),
        ("timestamp_ms=-5", Comparison(TIMESTAMP, Op.EQ, -5)),
        ("timestamp_ms = 1.5", Comparison(TIMESTAMP, Op.EQ, 1.5)),
        ("timestamp_ms = .5", Comparison(TIMESTAMP, Op.EQ, 0.5)),
        ("timestamp_ms = 2e3", Comparison(TIMESTAMP, Op.EQ, 2000.0)),
        ("timestamp_ms = -1.5E-3", Comparison(TIMESTAMP, Op.EQ, -0.0015)),
        ("timestamp_ms = '1700000000000'", Comparison(TIMESTAMP, Op.EQ, 1700000000000)),
        ("timestamp_ms IN (1, '2', 3.5)", Comparison(TIMESTAMP, Op.IN, (1, 2, 3.5))),
        # Tags and metadata, with prefixes, dotted keys and backticks.
        ("tags.env = 'prod'", ok(Field(Entity.TAG, "env"), "prod")),
        ("tag.env = 'prod'", ok(Field(Entity.TAG, "env"), "prod")),
        ("tags.mlflow.traceName = 'x'", ok(Field(Entity.TAG, "mlflow.traceName"), "x")),
        ("tags.`mlflow.traceName` = 'x'", ok(Field(Entity.TAG, "mlflow.traceName"), "x")),
        ("tags.\"my key\" = 'x'", ok(Field(Entity.TAG, "my key"), "x")),
        ("tags.`a``b` = 'x'", ok(Field(Entity.TAG, "a`b"), "x")),
        ("tags.`and` = 'x'", ok(Field(Entity.TAG, "and"), "x")),
        ("tags.1 = 'x'", ok(Field(Entity.TAG, "1"), "x")),
        (
            "metadata.`mlflow.trace.session` = 's1'",
            ok(Field(Entity.METADATA, "mlflow.trace.session"), "s1"),
        ),
        ("request_metadata.user = 'u'", ok(Field(Entity.METADATA, "user"), "u")),
        # Spans.
        ("span.name = 'llm'", ok(Field(Entity.SPAN, "name"), "llm")),
        ("span.type RLIKE '^LLM'", Comparison(Field(Entity.SPAN, "type"), Op.RLIKE, "^LLM")),
        ("span.status != 'OK'", Comparison(Field(Entity.SPAN, "status"), Op.NE, "OK")),
        (
            "span.attributes.model ILIKE '%GPT%'",
            Comparison(Field(Entity.SPAN_ATTRIBUTE, "model"), Op.ILIKE, "%GPT%"),
        ),
        (
            "span.attributes.`llm.model name` = 'x'",
            ok(Field(Entity.SPAN_ATTRIBUTE, "llm.model name"), "x"),
        ),
        ("span.content LIKE '%x%'", Comparison(Field(Entity.SPAN, "content"), Op.LIKE, "%x%")),
        # Assessments take strings or numbers.
        ("feedback.rating = 'good'", ok(Field(Entity.FEEDBACK, "rating"), "good")),
        ("feedback.score >= 0.5", Comparison(Field(Entity.FEEDBACK, "score"), Op.GE, 0.5)),
        ("feedback.`my score` = 1", ok(Field(Entity.FEEDBACK, "my score"), 1)),
        (
            "expectation.answer IN ('a', 'b')",
            Comparison(Field(Entity.EXPECTATION, "answer"), Op.IN, ("a", "b")),
        ),
        # Keywords are case-insensitive.
        ("name like 'a%'", Comparison(NAME, Op.LIKE, "a%")),
        ("name iLike 'a%'", Comparison(NAME, Op.ILIKE, "a%")),
        ("name rlike 'a+'", Comparison(NAME, Op.RLIKE, "a+")),
        ("name in ('a')", Comparison(NAME, Op.IN, ("a",))),
        ("name not in ('a','b')", Comparison(NAME, Op.NOT_IN, ("a", "b"))),
        ("name is null", Comparison(NAME, Op.IS_NULL)),
        ("name Is Not Null", Comparison(NAME, Op.IS_NOT_NULL)),
        ("tags.k IS NULL", Comparison(Field(Entity.TAG, "k"), Op.IS_NULL)),
        # RLIKE patterns reach the AST byte for byte.
        (
            "tags.v RLIKE '^v[0-9]+\\.[0-9]+'",
            Comparison(Field(Entity.TAG, "v"), Op.RLIKE, "^v[0-9]+\\.[0-9]+"),
        ),
    ],
)
def test_parse_accepts(text: str, expected: Expr) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a_ OR b_ AND c_", Or((A, And((B, C))))),
        ("a_ AND b_ OR c_", Or((And((A, B)), C))),
        ("NOT a_ AND b_", And((Not(A), B))),
        ("NOT a_ OR b_", Or((Not(A), B))),
        ("NOT (a_ OR b_)", Not(Or((A, B)))),
        ("(a_ OR b_) AND c_", And((Or((A, B)), C))),
        ("a_ AND b_ AND c_", And((A, B, C))),
        ("a_ OR b_ OR c_", Or((A, B, C))),
        ("(a_ AND b_) AND c_", And((And((A, B)), C))),
        ("a_ AND (b_ AND c_)", And((A, And((B, C))))),
        ("NOT NOT a_", Not(Not(A))),
        ("((a_))", A),
        ("(a_)AND(b_)", And((A, B))),
        ("not a_ and not b_ or c_", Or((And((Not(A), Not(B))), C))),
    ],
)
def test_precedence(text: str, expected: Expr) -> None:
    text = text.replace("a_", "status = 'a'").replace("b_", "status = 'b'")
    assert parse(text.replace("c_", "status = 'c'")) == expected


# --------------------------------------------------------------------------- errors

FIELDS = "a field: trace.status"


@pytest.mark.parametrize(
    ("text", "position", "token", "expected"),
    [
        ("", 0, "", FIELDS),
        ("   ", 3, "", FIELDS),
        ("bad ((", 0, "bad", FIELDS),
        ("foo.bar = 'x'", 0, "foo.bar", FIELDS),
        ("trace.foo = 'x'", 0, "trace.foo", "a trace attribute: status, name"),
        ("trace.status.x = 'x'", 0, "trace.status.x", "a trace attribute"),
        ("span.foo = 'x'", 0, "span.foo", "span.name, span.type"),
        ("span.attributes = 'x'", 0, "span.attributes", "span.attributes.<key>"),
        ("span.attributes.`a\"b` = 'x'", 0, 'span.attributes.`a"b`', "without '\"'"),
        ("tags.`` = 'x'", 0, "tags.``", "a non-empty key"),
        ("tags. = 'x'", 5, " ", "a key after '.'"),
        ("tags.k", 6, "", "an operator: =, !="),
        ("status == 'OK'", 8, "=", "a quoted string for trace.status"),
        ("status <> 'OK'", 7, "<", "one of =, !=, LIKE"),
        ("status = 'OK", 9, "'OK", "a closing '"),
        ('status = "OK', 9, '"OK', 'a closing "'),
        ("tags.`k = 'x'", 5, "`k = 'x'", "a closing `"),
        ("status = 'OK' AND", 17, "", FIELDS),
        ("status = 'OK' status = 'x'", 14, "status", "AND, OR or the end of the filter"),
        ("status = 'OK')", 13, ")", "AND, OR or the end of the filter"),
        ("(status = 'OK'", 14, "", "AND, OR or ')' to close the '(' at position 0"),
        ("status = 'OK'; DROP TABLE traces", 13, ";", "AND, OR or the end"),
        ("status = 'OK' -- comment", 14, "-", "AND, OR or the end"),
        ("status = OK", 9, "OK", "a quoted string for trace.status"),
        ("tags.k = 5", 9, "5", "a quoted string for tags.k"),
        ("span.name = 1.5", 12, "1.5", "a quoted string for span.name"),
        ("timestamp_ms = 'soon'", 15, "'soon'", "a number for trace.timestamp_ms"),
        ("timestamp_ms > tags.x", 15, "tags.x", "a number for trace.timestamp_ms"),
        ("timestamp_ms LIKE '1%'", 13, "LIKE", "one of =, !=, <, <=, >, >=, IN, NOT IN"),
        ("execution_time_ms = 1e999", 20, "1e999", "a finite number"),
        ("timestamp_ms = 9223372036854775808", 15, "9223372036854775808", "64-bit range"),
        ("timestamp_ms = 1abc", 15, "1abc", "a number for trace.timestamp_ms"),
        ("timestamp_ms = 1.2.3", 15, "1.2.3", "a number"),
        ("timestamp_ms = - 5", 15, "-", "a number"),
        ("name LIKE 5", 10, "5", "a quoted pattern string after LIKE"),
        ("feedback.x LIKE 5", 16, "5", "a quoted pattern string after LIKE"),
        ("feedback.x > 'high'", 13, "'high'", "a number for > on feedback.x"),
        ("feedback.x = NULL", 13, "NULL", "a quoted string or a number for feedback.x"),
        ("feedback.x IN ('a', 1)", 20, "1", "values of one type in a list"),
        ("span.content = 'x'", 13, "=", "one of LIKE, ILIKE, RLIKE for span.content"),
        ("span.content IS NULL", 13, "IS NULL", "one of LIKE, ILIKE, RLIKE"),
        ("name < 'b'", 5, "<", "one of =, !=, LIKE"),
        ("name RLIKE '('", 11, "'('", "a valid regular expression (missing ), unterminated"),
        ("name RLIKE '[a-'", 11, "'[a-'", "a valid regular expression"),
        ("name NOT LIKE 'a'", 9, "LIKE", "IN after NOT"),
        ("name IS 'a'", 8, "'a'", "NULL (as in IS NULL or IS NOT NULL)"),
        ("name IS NOT 'a'", 12, "'a'", "NULL"),
        ("name IN 'a'", 8, "'a'", "'(' to start the list of values after IN"),
        ("name IN ()", 9, ")", "a quoted string for trace.name"),
        ("name IN ('a' 'b')", 13, "'b'", "',' or ')' to close the list"),
        ("name IN ('a',)", 13, ")", "a quoted string"),
        ("AND status = 'OK'", 0, "AND", FIELDS),
        ("NOT", 3, "", FIELDS),
        ("()", 1, ")", FIELDS),
        ("status = 'OK' OR OR status = 'x'", 17, "OR", FIELDS),
        ("name = 'a' € 'b'", 11, "€", "AND, OR or the end"),
        ("'OK' = status", 0, "'OK'", FIELDS),
        ("status = 'a\udc80'", 11, "\udc80", "valid Unicode text"),
    ],
)
def test_parse_errors(text: str, position: int, token: str, expected: str) -> None:
    with pytest.raises(FilterSyntaxError) as info:
        parse(text)
    error = info.value
    assert (error.position, error.token) == (position, token)
    assert expected in error.expected
    assert error.filter_string == text


def test_error_message_points_at_the_token() -> None:
    with pytest.raises(FilterSyntaxError) as info:
        parse("trace.status = 'OK' AND tags.env == 'prod'")
    message = str(info.value)
    assert "position 34" in message
    assert "found '='" in message
    assert "expected a quoted string for tags.env" in message
    lines = message.splitlines()
    assert lines[1] == "  trace.status = 'OK' AND tags.env == 'prod'"
    assert lines[2] == "  " + " " * 34 + "^"
    # It is a ValueError and a LocalScorersError, as DESIGN.md section 10 asks.
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, ConfigurationError)


def test_error_at_end_of_input_says_so() -> None:
    with pytest.raises(FilterSyntaxError, match="found end of input, expected an operator"):
        parse("tags.env")


@pytest.mark.parametrize("value", [None, b"status = 'OK'", 5, ["status = 'OK'"]])
def test_non_str_is_a_configuration_error(value: object) -> None:
    with pytest.raises(ConfigurationError, match="must be a str") as info:
        parse(value)  # type: ignore[arg-type]
    assert not isinstance(info.value, FilterSyntaxError)


def test_nesting_limit() -> None:
    deep_ok = "(" * MAX_NESTING + "status = 'OK'" + ")" * MAX_NESTING
    assert parse(deep_ok) == ok()
    too_deep = "(" * (MAX_NESTING + 1) + "status = 'OK'" + ")" * (MAX_NESTING + 1)
    with pytest.raises(FilterSyntaxError, match="nested") as info:
        parse(too_deep)
    assert info.value.position == MAX_NESTING
    with pytest.raises(FilterSyntaxError, match="nested"):
        parse("NOT " * (MAX_NESTING + 1) + "status = 'OK'")
    # Far beyond the limit still fails cleanly rather than with RecursionError.
    with pytest.raises(FilterSyntaxError):
        parse("(" * 100_000)


def test_comparison_limit() -> None:
    assert isinstance(parse(" OR ".join(["status = 'OK'"] * MAX_COMPARISONS)), Or)
    with pytest.raises(FilterSyntaxError, match="at most"):
        parse(" OR ".join(["status = 'OK'"] * (MAX_COMPARISONS + 1)))


def test_sampling_config_validates_the_filter() -> None:
    with pytest.raises(FilterSyntaxError) as info:
        ScorerSamplingConfig(filter_string="bad ((")
    assert info.value.position == 0
    config = ScorerSamplingConfig(sample_rate=0.5, filter_string="tags.env = 'prod'")
    assert config.filter_string == "tags.env = 'prod'"


# --------------------------------------------------------------------------- render


@pytest.mark.parametrize(
    ("text", "rendered"),
    [
        ('status = "it\'s"', "trace.status = 'it''s'"),
        ("timestamp > 5", "trace.timestamp_ms > 5"),
        ("trace.run_id = 'r'", "metadata.`mlflow.sourceRun` = 'r'"),
        ("tags.`a b` = 'x' and name is not null", "tags.`a b` = 'x' AND trace.name IS NOT NULL"),
        ("tags.`a``b` in ('x','y')", "tags.`a``b` IN ('x', 'y')"),
        (
            "(status='a' or status='b') and not status='c'",
            "(trace.status = 'a' OR trace.status = 'b') AND NOT trace.status = 'c'",
        ),
        ("not (status='a' and status='b')", "NOT (trace.status = 'a' AND trace.status = 'b')"),
        (
            "(status='a' and status='b') and status='c'",
            "(trace.status = 'a' AND trace.status = 'b') AND trace.status = 'c'",
        ),
        ("execution_time_ms >= 1.5e3", "trace.execution_time_ms >= 1500.0"),
        ("feedback.`x.y` < -2", "feedback.`x.y` < -2"),
    ],
)
def test_render(text: str, rendered: str) -> None:
    assert render(parse(text)) == rendered
    assert parse(rendered) == parse(text)


def test_render_rejects_values_the_grammar_cannot_hold() -> None:
    with pytest.raises(ConfigurationError):
        render(Comparison(TIMESTAMP, Op.EQ, float("nan")))
    with pytest.raises(ConfigurationError):
        render(Comparison(TIMESTAMP, Op.EQ, True))
    with pytest.raises(ConfigurationError):
        render(Comparison(TIMESTAMP, Op.EQ, None))


def test_ast_nodes_are_frozen_and_checked() -> None:
    node = parse("status = 'OK'")
    with pytest.raises(AttributeError):
        node.op = Op.NE  # type: ignore[misc, union-attr]
    with pytest.raises(ConfigurationError, match="at least two operands"):
        And((A,))
    with pytest.raises(ConfigurationError, match="at least two operands"):
        Or(())
    assert hash(parse("status = 'OK' AND name = 'x'")) == hash(parse("status='OK' and name='x'"))


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("timestamp", TIMESTAMP),
        ("trace.execution_time_ms", Field(Entity.TRACE, "execution_time_ms")),
        ("tags.`my.key`", Field(Entity.TAG, "my.key")),
        ("run_id", Field(Entity.METADATA, "mlflow.sourceRun")),
        # MLflow's TraceInfo.client_request_id, with or without the trace. prefix.
        ("trace.client_request_id", Field(Entity.TRACE, "client_request_id")),
        ("client_request_id", Field(Entity.TRACE, "client_request_id")),
    ],
)
def test_parse_field(text: str, field: Field) -> None:
    assert parse_field(text) == field


@pytest.mark.parametrize(("text", "position"), [("", 0), ("name DESC", 5), ("nope", 0), ("'x'", 0)])
def test_parse_field_errors(text: str, position: int) -> None:
    with pytest.raises(FilterSyntaxError) as info:
        parse_field(text)
    assert info.value.position == position


# --------------------------------------------------------------------------- properties

KEYS = st.text(min_size=1, max_size=12)
STRINGS = st.text(max_size=12)
INTS = st.integers(min_value=-(2**63), max_value=2**63 - 1)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
NUMBERS = INTS | FLOATS
PATTERNS = STRINGS.map(re.escape) | st.sampled_from(["^a", "b+$", "(x|y)", "[0-9]{2,}", "\\d"])


def _comparisons(field: Field, kind: str) -> st.SearchStrategy[Comparison]:
    null = st.sampled_from([Op.IS_NULL, Op.IS_NOT_NULL]).map(lambda op: Comparison(field, op))

    def scalar(ops: list[Op], values: st.SearchStrategy[object]) -> st.SearchStrategy[Comparison]:
        return st.builds(Comparison, st.just(field), st.sampled_from(ops), values)

    def listed(values: st.SearchStrategy[object]) -> st.SearchStrategy[Comparison]:
        lists = st.lists(values, min_size=1, max_size=3).map(tuple)
        return st.builds(Comparison, st.just(field), st.sampled_from([Op.IN, Op.NOT_IN]), lists)

    patterns = scalar([Op.LIKE, Op.ILIKE], STRINGS) | scalar([Op.RLIKE], PATTERNS)
    if kind == "number":
        ordering = [Op.EQ, Op.NE, Op.LT, Op.LE, Op.GT, Op.GE]
        return scalar(ordering, NUMBERS) | listed(NUMBERS) | null
    if kind == "content":
        return patterns
    strings = scalar([Op.EQ, Op.NE], STRINGS) | listed(STRINGS) | patterns
    if kind == "string":
        return strings | null
    numeric = scalar([Op.EQ, Op.NE, Op.LT, Op.LE, Op.GT, Op.GE], NUMBERS) | listed(NUMBERS)
    return strings | numeric | null


def _fields() -> st.SearchStrategy[Comparison]:
    trace_strings = st.sampled_from(["status", "name", "trace_id"])
    trace_numbers = st.sampled_from(["timestamp_ms", "execution_time_ms", "end_time_ms"])
    span_strings = st.sampled_from(["name", "type", "status"])
    return st.one_of(
        trace_strings.flatmap(lambda k: _comparisons(Field(Entity.TRACE, k), "string")),
        trace_numbers.flatmap(lambda k: _comparisons(Field(Entity.TRACE, k), "number")),
        KEYS.flatmap(lambda k: _comparisons(Field(Entity.TAG, k), "string")),
        KEYS.flatmap(lambda k: _comparisons(Field(Entity.METADATA, k), "string")),
        span_strings.flatmap(lambda k: _comparisons(Field(Entity.SPAN, k), "string")),
        KEYS.filter(lambda k: '"' not in k).flatmap(
            lambda k: _comparisons(Field(Entity.SPAN_ATTRIBUTE, k), "string")
        ),
        _comparisons(Field(Entity.SPAN, "content"), "content"),
        KEYS.flatmap(lambda k: _comparisons(Field(Entity.FEEDBACK, k), "assessment")),
        KEYS.flatmap(lambda k: _comparisons(Field(Entity.EXPECTATION, k), "assessment")),
    )


def _homogeneous(expr: Expr) -> bool:
    # Lists mixing strings and numbers are refused by the parser (see test_parse_errors).
    if isinstance(expr, Comparison):
        if isinstance(expr.value, tuple):
            return len({isinstance(v, str) for v in expr.value}) == 1
        return True
    if isinstance(expr, Not):
        return _homogeneous(expr.operand)
    return all(_homogeneous(e) for e in expr.operands)


EXPRS: st.SearchStrategy[Expr] = st.recursive(
    _fields(),
    lambda children: st.one_of(
        st.lists(children, min_size=2, max_size=3).map(lambda xs: And(tuple(xs))),
        st.lists(children, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs))),
        children.map(Not),
    ),
    max_leaves=8,
).filter(_homogeneous)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(EXPRS)
def test_render_then_parse_is_identity(expr: Expr) -> None:
    text = render(expr)
    assert parse(text) == expr
    assert render(parse(text)) == text


def _parse_or_syntax_error(text: str) -> None:
    error: FilterSyntaxError | None = None
    try:
        expr = parse(text)
    except FilterSyntaxError as exc:
        error = exc
    if error is not None:
        assert 0 <= error.position <= len(text)
        assert error.expected
    else:
        assert parse(render(expr)) == expr


@settings(max_examples=300, deadline=None)
@given(st.text())
@example("status = 'OK' AND (")
@example("`")
@example("tags.")
@example("--")
@example("/* */")
def test_random_text_raises_only_syntax_errors(text: str) -> None:
    _parse_or_syntax_error(text)


@settings(max_examples=300, deadline=None)
@given(st.binary())
def test_random_bytes_raise_only_syntax_errors(data: bytes) -> None:
    _parse_or_syntax_error(data.decode("latin-1"))
    # surrogateescape turns undecodable bytes into lone surrogates, which must be refused.
    _parse_or_syntax_error(data.decode("utf-8", errors="surrogateescape"))


TOKEN_SOUP = st.lists(
    st.sampled_from(
        [
            "status",
            "trace.name",
            "tags.env",
            "tags.`a.b`",
            "span.attributes.m",
            "span.content",
            "feedback.s",
            "timestamp_ms",
            "=",
            "!=",
            "<",
            ">=",
            "LIKE",
            "ILIKE",
            "RLIKE",
            "IN",
            "NOT",
            "IS",
            "NULL",
            "AND",
            "OR",
            "(",
            ")",
            ",",
            "'x'",
            "'('",
            '"y"',
            "5",
            "-2.5",
            "'7'",
            "`",
            "'",
            ".",
            ";",
        ]
    ),
    max_size=14,
).map(" ".join)


@settings(max_examples=500, deadline=None)
@given(TOKEN_SOUP)
def test_token_soup_raises_only_syntax_errors(text: str) -> None:
    _parse_or_syntax_error(text)
