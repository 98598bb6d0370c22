"""The metric expression parser: precedence, constants, operators, keys and malformed input."""

import numpy as np
import pytest

from aggassets.experiments.compile import linear_form
from aggassets.experiments.expressions import (
    BinOp,
    Const,
    ExpressionError,
    GoalRef,
    evaluate,
    goal_refs,
    parse_expression,
    to_text,
)

A, B, C = "count(u.unit.a)", "count(u.unit.b)", "count(u.unit.c)"
VALUES = {A: np.array([12.0, 5.0]), B: np.array([3.0, 2.0]), C: np.array([2.0, 4.0])}


def _value(text: str) -> np.ndarray:
    """Evaluate over the fixed goal values."""
    return evaluate(parse_expression(text), VALUES)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{A} / {B} * {C}", (12 / 3) * 2),
        (f"{A} - {B} + {C}", (12 - 3) + 2),
        (f"{A} - {B} - {C}", (12 - 3) - 2),
        (f"{A} + {B} * {C}", 12 + 3 * 2),
        (f"({A} + {B}) * {C}", (12 + 3) * 2),
        (f"{A} / ({B} * {C})", 12 / (3 * 2)),
        (f"{A} / {B} / {C}", (12 / 3) / 2),
        (f"2 * {A} - 0.5 * {B}", 2 * 12 - 0.5 * 3),
        (f"{A} / 1000", 12 / 1000),
        (f"-{A} + 10", -12 + 10),
        (f"{A} * -1.25", 12 * -1.25),
        ("3.75", 3.75),
        (f".5 * {A} - .25", 0.5 * 12 - 0.25),  # no leading zero, as Python and SQL read it
    ],
)
def test_precedence_and_constants(text: str, expected: float) -> None:
    assert float(np.ravel(_value(text))[0]) == pytest.approx(expected)


def test_evaluation_is_vectorised_over_variants() -> None:
    np.testing.assert_allclose(_value(f"{A} / {B} * {C}"), [8.0, 10.0])


def test_tree_shape_is_left_associative() -> None:
    tree = parse_expression(f"{A} / {B} * {C}")
    assert isinstance(tree, BinOp) and tree.op == "*" and isinstance(tree.left, BinOp) and tree.left.op == "/"
    assert to_text(tree) == f"(({A} / {B}) * {C})"
    assert parse_expression("42") == Const(42.0) and parse_expression("0.125") == Const(0.125)


@pytest.mark.parametrize("op", ["=", "!=", "<", ">", "<=", ">=", "=^"])
def test_every_dimension_operator(op: str) -> None:
    ref = parse_expression(f"value(user.unit.purchase(product{op}p-1))")
    assert ref == GoalRef("value", "user", "unit", "purchase", (("product", op, "p-1"),))


def test_goal_reference_fields_and_canonical_key() -> None:
    one = parse_expression("unique( user . unit . view ( product > 1 , element =^ button-1 ) )")
    two = parse_expression("unique(user.unit.view(element=^button-1,product>1,))")
    assert one == GoalRef("unique", "user", "unit", "view", (("product", ">", "1"), ("element", "=^", "button-1")))
    assert isinstance(one, GoalRef) and isinstance(two, GoalRef)
    assert one.key == two.key == "unique(user.unit.view(element=^button-1,product>1))"
    assert one.sum_column == "count_unique"
    values = parse_expression("count(u.global.v(element=big red button, path=/a/b|c, pct=10%))")
    assert isinstance(values, GoalRef)
    assert [v for _, _, v in values.dimensions] == ["big red button", "/a/b|c", "10%"]


def test_goal_refs_are_distinct_in_order() -> None:
    refs = goal_refs(parse_expression(f"{B} + {A} * 2 - {B}"))
    assert [r.key for r in refs] == [B, A]


def test_linear_forms() -> None:
    form = linear_form(parse_expression(f"2 * ({A} - {B}) / 4 + 3"))
    assert form is not None and form.constant == 3.0
    assert {g.key: c for g, c in form.terms} == {A: 0.5, B: -0.5}
    squares = linear_form(parse_expression(f"{A} * 3 - {B}"), square_constants=True)
    assert squares is not None and {g.key: c for g, c in squares.terms} == {A: 9.0, B: -1.0}
    assert linear_form(parse_expression(f"{A} * {B}")) is None
    assert linear_form(parse_expression(f"{A} / {B}")) is None


MALFORMED = [
    ("", 0, "an expression"),
    ("   ", 3, "an expression"),
    ("count(u.unit.a", 14, "')'"),
    ("cnt(u.unit.a)", 0, "count, value or unique"),
    ("count(u.local.a)", 8, "unit or global"),
    ("count(u.unit)", 12, "'.'"),
    ("count(u..a)", 8, "unit or global"),
    ("count(u.unit.)", 13, "a goal name"),
    ("count(.unit.a)", 6, "a unit type"),
    ("count u.unit.a)", 6, "'('"),
    ("count(u.unit.a(x))", 16, "a dimension operator"),
    ("count(u.unit.a(x=))", 17, "a dimension value"),
    ("count(u.unit.a(=1))", 15, "a dimension name"),
    ("count(u.unit.a(x=1 y=2))", 20, "',' or ')'"),
    ("count(u.unit.a(x=1, x=2))", 20, "no second 'x=' condition"),
    ("count(u.unit.a(x=1)", 19, "')'"),
    ("count(u.unit.a) +", 17, "a number, '('"),
    ("count(u.unit.a) count(u.unit.b)", 16, "an operator"),
    ("(count(u.unit.a)", 16, "')'"),
    ("count(u.unit.a))", 15, "an operator"),
    ("1..5", 1, "a digit or an operator"),
    ("5. * count(u.unit.a)", 1, "a digit or an operator"),
    (". 5", 0, "a number, '('"),
    ("2 ** count(u.unit.a)", 3, "a number, '('"),
    ("count(u.unit.a) % 2", 16, "an operator"),
    ("count(u.unit.a(x=1;y=2))", 18, "',' or ')'"),
    ("count(u.unit.a) / 0", 18, "a divisor that is not the constant 0"),
    ("count(u.unit.a) / (2 - 2.0) * 3", 18, "a divisor that is not the constant 0"),
    ("count(u.unit.a) /0.0", 17, "a divisor that is not the constant 0"),
]


@pytest.mark.parametrize(("text", "position", "expected"), MALFORMED)
def test_malformed_expressions_name_position_and_expected_token(text: str, position: int, expected: str) -> None:
    with pytest.raises(ExpressionError) as info:
        parse_expression(text)
    assert info.value.position == position
    assert info.value.expected.startswith(expected)
    assert f"at position {position}: expected {expected}" in str(info.value)
