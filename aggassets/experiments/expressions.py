"""ep-stats' metric expression language: a recursive-descent parser and a vectorised evaluator."""

# Grammar (ordinary precedence, left associative, whitespace between tokens ignored):
#     expr    := term (("+" | "-") term)*
#     term    := factor (("*" | "/") factor)*
#     factor  := NUMBER | "-" factor | "(" expr ")" | goal
#     goal    := FUNC "(" NAME "." AGG "." GOAL ["(" cond ("," cond)* [","] ")"] ")"
#     cond    := DIMENSION OP VALUE          OP in = != < > <= >= =^ (=^ is "starts with")
# FUNC is count | value | unique, AGG is unit | global, NUMBER is an integer or a decimal.

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Union

import numpy as np

FUNCS = ("count", "value", "unique")
AGG_TYPES = ("unit", "global")
OPERATORS = ("<=", ">=", "!=", "=^", "=", "<", ">")
SUM_COLUMN = {"count": "count", "value": "sum_value", "unique": "count_unique"}
SQUARE_COLUMN = {"count": "sum_sqr_count", "value": "sum_sqr_value", "unique": "count_unique"}

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_GOAL = re.compile(r"[A-Za-z0-9_]+")
_NUMBER = re.compile(r"[0-9]*(\.[0-9]+)?")  # 5, 2.5 and .5
_VALUE_EXTRA = set("_-.% /|")


class ExpressionError(ValueError):
    """A malformed expression: the 0-based character position and what was expected there."""

    def __init__(self, text: str, position: int, expected: str) -> None:
        found = repr(text[position]) if position < len(text) else "end of expression"
        self.text = text
        self.position = position
        self.expected = expected
        super().__init__(f"at position {position}: expected {expected}, found {found} in {text!r}")


@dataclass(frozen=True)
class GoalRef:
    """One goal reference such as `count(user.unit.click(element=button-1))`."""

    func: str
    unit_type: str
    agg_type: str
    goal: str
    dimensions: tuple[tuple[str, str, str], ...] = ()

    @property
    def key(self) -> str:
        """Canonical text: conditions sorted, no spaces; equal goal references have equal keys."""
        conds = ",".join(f"{d}{op}{v}" for d, op, v in sorted(self.dimensions))
        tail = f"({conds})" if conds else ""
        return f"{self.func}({self.unit_type}.{self.agg_type}.{self.goal}{tail})"

    @property
    def sum_column(self) -> str:
        """The aggregated-goals column summed by this function (count, sum_value or count_unique)."""
        return SUM_COLUMN[self.func]

    @property
    def square_column(self) -> str:
        """The column holding the sum over units of the squared per-unit value."""
        return SQUARE_COLUMN[self.func]


@dataclass(frozen=True)
class Const:
    """A numeric constant."""

    value: float


@dataclass(frozen=True)
class BinOp:
    """A binary operation `left op right` with op in + - * /."""

    op: str
    left: "Expr"
    right: "Expr"


Expr = Union[Const, GoalRef, BinOp]


class _Parser:
    """Recursive-descent parser over one expression text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, expected: str, position: int | None = None) -> ExpressionError:
        """An error at the current (or given) position."""
        return ExpressionError(self.text, self.pos if position is None else position, expected)

    def skip(self) -> None:
        """Skip whitespace."""
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        """The next non-blank character, or '' at the end."""
        self.skip()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str) -> None:
        """Consume `char` or fail."""
        if self.peek() != char:
            raise self.fail(repr(char))
        self.pos += 1

    def match(self, pattern: re.Pattern[str], expected: str) -> tuple[str, int]:
        """Consume a token matching `pattern`, returning it and its start position."""
        self.skip()
        m = pattern.match(self.text, self.pos)
        if m is None:
            raise self.fail(expected)
        self.pos = m.end()
        return m.group(0), m.start()

    def parse(self) -> Expr:
        """The whole text as one expression."""
        if not self.text.strip():
            self.skip()
            raise self.fail("an expression")
        expr = self.expr()
        if self.peek():
            raise self.fail("an operator (+ - * /) or end of expression")
        return expr

    def expr(self) -> Expr:
        """Sums and differences, left associative."""
        node = self.term()
        while self.peek() in ("+", "-"):
            op = self.text[self.pos]
            self.pos += 1
            node = BinOp(op, node, self.term())
        return node

    def term(self) -> Expr:
        """Products and quotients, left associative."""
        node = self.factor()
        while self.peek() in ("*", "/"):
            op = self.text[self.pos]
            self.pos += 1
            self.skip()
            start = self.pos
            right = self.factor()
            if op == "/" and _constant_value(right) == 0:
                raise self.fail("a divisor that is not the constant 0", start)
            node = BinOp(op, node, right)
        return node

    def factor(self) -> Expr:
        """A number, a negation, a parenthesised expression or a goal reference."""
        char = self.peek()
        if char == "-":
            self.pos += 1
            inner = self.factor()
            return Const(-inner.value) if isinstance(inner, Const) else BinOp("*", Const(-1.0), inner)
        if char == "(":
            self.pos += 1
            node = self.expr()
            self.expect(")")
            return node
        if char.isdigit() or (char == "." and self.text[self.pos + 1 : self.pos + 2].isdigit()):
            token, _ = self.match(_NUMBER, "a number")
            if self.peek() == ".":
                raise self.fail("a digit or an operator")
            return Const(float(token))
        if char.isalpha() or char == "_":
            return self.goal()
        raise self.fail("a number, '(' or count|value|unique(...)")

    def goal(self) -> GoalRef:
        """`func(unit_type.agg_type.goal[(conditions)])`."""
        func, start = self.match(_NAME, "count, value or unique")
        if func not in FUNCS:
            raise self.fail("count, value or unique", start)
        self.expect("(")
        unit_type, _ = self.match(_NAME, "a unit type")
        self.expect(".")
        agg_type, start = self.match(_NAME, "unit or global")
        if agg_type not in AGG_TYPES:
            raise self.fail("unit or global", start)
        self.expect(".")
        goal, _ = self.match(_GOAL, "a goal name")
        conditions: tuple[tuple[str, str, str], ...] = ()
        if self.peek() == "(":
            self.pos += 1
            conditions = self.conditions()
        self.expect(")")
        return GoalRef(func, unit_type, agg_type, goal, conditions)

    def conditions(self) -> tuple[tuple[str, str, str], ...]:
        """`dim op value, ...)` up to and including the closing parenthesis."""
        found: list[tuple[str, str, str]] = []
        while True:
            dim, start = self.match(_GOAL, "a dimension name")
            op = self.operator()
            if any(d == dim and o == op for d, o, _ in found):
                raise self.fail(f"no second '{dim}{op}' condition", start)
            found.append((dim, op, self.value()))
            if self.peek() == ",":
                self.pos += 1
                if self.peek() == ")":
                    break
                continue
            if self.peek() != ")":
                raise self.fail("',' or ')'")
            break
        self.pos += 1
        return tuple(found)

    def operator(self) -> str:
        """The longest dimension operator at the current position."""
        self.skip()
        for op in OPERATORS:
            if self.text.startswith(op, self.pos):
                self.pos += len(op)
                return op
        raise self.fail("a dimension operator (= != < > <= >= =^)")

    def value(self) -> str:
        """A dimension value: letters, digits and `_-.% /|`, surrounding blanks dropped."""
        self.skip()
        start = self.pos
        while self.pos < len(self.text) and (self.text[self.pos].isalnum() or self.text[self.pos] in _VALUE_EXTRA):
            self.pos += 1
        value = self.text[start : self.pos].strip()
        if not value:
            raise self.fail("a dimension value", start)
        return value


# Levels of nested operations an expression may have: far beyond any metric, and within Python's recursion
# limit for the recursive walks over it (1000 terms, or 1000 nested parentheses, raised RecursionError).
MAX_DEPTH = 100


class ExpressionTooDeep(ExpressionError):
    """An expression nested more deeply than MAX_DEPTH."""

    def __init__(self, text: str) -> None:
        self.text, self.position, self.expected = text, 0, f"at most {MAX_DEPTH} levels of operations"
        levels = f"more than {MAX_DEPTH} levels of operations or parentheses"
        ValueError.__init__(self, f"nested too deeply: {levels} ({len(text)} characters)")


def _depth(expr: Expr) -> int:
    """Levels of nested operations of the expression (without recursion)."""
    deepest, stack = 0, [(expr, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, BinOp):
            deepest = max(deepest, level)
            stack += [(node.left, level + 1), (node.right, level + 1)]
    return deepest


@lru_cache(maxsize=65536)
def parse_expression(text: str) -> Expr:
    """Parse one expression; raise ExpressionError naming the position and the expected token."""
    try:
        expr = _Parser(text).parse()
    except RecursionError:
        raise ExpressionTooDeep(text) from None
    if _depth(expr) > MAX_DEPTH:
        raise ExpressionTooDeep(text)
    return expr


def walk(expr: Expr) -> Iterator[Expr]:
    """Every node of the expression, depth first, left to right."""
    yield expr
    if isinstance(expr, BinOp):
        yield from walk(expr.left)
        yield from walk(expr.right)


def goal_refs(expr: Expr) -> tuple[GoalRef, ...]:
    """The distinct goal references of an expression, in order of first appearance."""
    seen: dict[str, GoalRef] = {}
    for node in walk(expr):
        if isinstance(node, GoalRef):
            seen.setdefault(node.key, node)
    return tuple(seen.values())


def _constant_value(expr: Expr) -> float | None:
    """The value of an expression without goals (None when it reads a goal)."""
    if isinstance(expr, Const):
        return expr.value
    if isinstance(expr, GoalRef):
        return None
    left, right = _constant_value(expr.left), _constant_value(expr.right)
    if left is None or right is None:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(_ARITHMETIC[expr.op](np.float64(left), np.float64(right)))


def to_text(expr: Expr) -> str:
    """Canonical text of an expression, fully parenthesised."""
    if isinstance(expr, Const):
        return repr(expr.value)
    if isinstance(expr, GoalRef):
        return expr.key
    return f"({to_text(expr.left)} {expr.op} {to_text(expr.right)})"


_ARITHMETIC: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.divide,
}


def evaluate(
    expr: Expr,
    leaf: Callable[[GoalRef], np.ndarray] | Mapping[str, np.ndarray],
    constant: Callable[[float], float] = float,
) -> np.ndarray:
    """Evaluate over per-variant arrays: `leaf` gives a goal's array (by GoalRef or by key)."""
    get = leaf if callable(leaf) else (lambda ref: leaf[ref.key])  # type: ignore[index]
    return np.asarray(_evaluate(expr, get, constant), dtype=float)


def _evaluate(
    expr: Expr, get: Callable[[GoalRef], np.ndarray], constant: Callable[[float], float]
) -> np.ndarray | float:
    """Recursive worker of evaluate()."""
    if isinstance(expr, Const):
        return constant(expr.value)
    if isinstance(expr, GoalRef):
        return np.asarray(get(expr), dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _ARITHMETIC[expr.op](_evaluate(expr.left, get, constant), _evaluate(expr.right, get, constant))
