"""Random expressions differentiated through the Python bridge on stock PyPI
``datafusion`` — as ``grad``, ``jvp`` and ``vjp`` — against dual numbers
written here and against ``check_grad``'s central differences (nested markers
are fuzzed in Rust, crates/autograd/tests/sql/fuzz.rs, against hyper-dual
numbers).

Every primitive the engine has a rule for appears in the trees, with CASE,
casts and constants of both signs. Points are drawn at least 1e-3 away from
every kink and jump of the tree, both in the value that jumps and along each
variable, so the derivative is defined there and a central difference does not
step across a jump. A failure names the smallest failing subtree::

    .venv/bin/python -m pytest tests/test_random_trees.py                            # 120 trees
    AUTOGRAD_FUZZ_TREES=10000 .venv/bin/python -m pytest tests/test_random_trees.py  # full run
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass
from typing import Callable, Optional

import pyarrow as pa
import pytest
from datafusion import SessionContext

import datafusion_autograd as ag

TREES = int(os.environ.get("AUTOGRAD_FUZZ_TREES", "120"))
POINTS = 5


@dataclass(frozen=True)
class Dual:
    """A value and its derivative along one variable."""

    value: float
    slope: float

    def chain(self, value: float, derivative: float) -> "Dual":
        return Dual(value, derivative * self.slope)


def constant(value: float) -> Dual:
    return Dual(value, 0.0)


@dataclass(frozen=True)
class Unary:
    """``sql`` spells the primitive on an argument kept inside its domain;
    ``dual`` evaluates it; ``kinks`` gives, for each point where it is not
    differentiable, the argument's offset from that point (with its slope)."""

    primitive: str
    sql: Callable[[str], str]
    dual: Callable[[Dual], Dual]
    kinks: Callable[[Dual], list[Dual]] = lambda u: []


def _square_plus(c: float, u: Dual) -> Dual:
    return Dual(c + u.value * u.value, 2 * u.value * u.slope)


def _tanh(u: Dual) -> Dual:
    t = math.tanh(u.value)
    return u.chain(t, 1 - t * t)


def _scale(k: float, u: Dual) -> Dual:
    return Dual(k * u.value, k * u.slope)


def _sin(u: Dual) -> Dual:
    return u.chain(math.sin(u.value), math.cos(u.value))


def _ln(u: Dual) -> Dual:
    return u.chain(math.log(u.value), 1 / u.value)


def _off_integer(u: Dual, shift: float = 0.0) -> list[Dual]:
    shifted = u.value - shift
    return [Dual(shifted - round(shifted), u.slope)]


def _difference(a: Dual, b: Dual) -> list[Dual]:
    return [Dual(a.value - b.value, a.slope - b.slope)]


def _round_half_away(value: float) -> float:
    return math.copysign(math.floor(abs(value) + 0.5), value)


UNARY = [
    Unary("sin", lambda u: f"sin({u})", _sin),
    Unary("cos", lambda u: f"cos({u})", lambda u: u.chain(math.cos(u.value), -math.sin(u.value))),
    Unary(
        "tan",
        lambda u: f"tan(1.2 * tanh({u}))",
        lambda u: (lambda a: a.chain(math.tan(a.value), 1 / math.cos(a.value) ** 2))(_scale(1.2, _tanh(u))),
    ),
    Unary(
        "cot",
        lambda u: f"cot(0.8 + 0.5 * sin({u}))",
        lambda u: (lambda a: a.chain(1 / math.tan(a.value), -1 / math.sin(a.value) ** 2))(
            Dual(0.8 + 0.5 * math.sin(u.value), 0.5 * math.cos(u.value) * u.slope)
        ),
    ),
    Unary(
        "asin",
        lambda u: f"asin(0.9 * sin({u}))",
        lambda u: (lambda a: a.chain(math.asin(a.value), 1 / math.sqrt(1 - a.value**2)))(_scale(0.9, _sin(u))),
    ),
    Unary(
        "acos",
        lambda u: f"acos(0.9 * tanh({u}))",
        lambda u: (lambda a: a.chain(math.acos(a.value), -1 / math.sqrt(1 - a.value**2)))(_scale(0.9, _tanh(u))),
    ),
    Unary("atan", lambda u: f"atan({u})", lambda u: u.chain(math.atan(u.value), 1 / (1 + u.value**2))),
    Unary("sinh", lambda u: f"sinh({u})", lambda u: u.chain(math.sinh(u.value), math.cosh(u.value))),
    Unary("cosh", lambda u: f"cosh({u})", lambda u: u.chain(math.cosh(u.value), math.sinh(u.value))),
    Unary("tanh", lambda u: f"tanh({u})", _tanh),
    Unary("asinh", lambda u: f"asinh({u})", lambda u: u.chain(math.asinh(u.value), 1 / math.sqrt(u.value**2 + 1))),
    Unary(
        "acosh",
        lambda u: f"acosh(1.5 + ({u}) * ({u}))",
        lambda u: (lambda a: a.chain(math.acosh(a.value), 1 / math.sqrt(a.value**2 - 1)))(_square_plus(1.5, u)),
    ),
    Unary(
        "atanh",
        lambda u: f"atanh(0.9 * tanh({u}))",
        lambda u: (lambda a: a.chain(math.atanh(a.value), 1 / (1 - a.value**2)))(_scale(0.9, _tanh(u))),
    ),
    Unary(
        "exp",
        lambda u: f"exp(tanh({u}))",
        lambda u: (lambda a: a.chain(math.exp(a.value), math.exp(a.value)))(_tanh(u)),
    ),
    Unary("ln", lambda u: f"ln(1.5 + ({u}) * ({u}))", lambda u: _ln(_square_plus(1.5, u))),
    Unary(
        "log",
        lambda u: f"log(1.5 + ({u}) * ({u}))",
        lambda u: (lambda a: a.chain(math.log10(a.value), 1 / (a.value * math.log(10))))(_square_plus(1.5, u)),
    ),
    Unary(
        "log2",
        lambda u: f"log2(1.5 + ({u}) * ({u}))",
        lambda u: (lambda a: a.chain(math.log2(a.value), 1 / (a.value * math.log(2))))(_square_plus(1.5, u)),
    ),
    Unary(
        "log10",
        lambda u: f"log10(1.5 + ({u}) * ({u}))",
        lambda u: (lambda a: a.chain(math.log10(a.value), 1 / (a.value * math.log(10))))(_square_plus(1.5, u)),
    ),
    Unary(
        "sqrt",
        lambda u: f"sqrt(1.5 + ({u}) * ({u}))",
        lambda u: (lambda a: a.chain(math.sqrt(a.value), 0.5 / math.sqrt(a.value)))(_square_plus(1.5, u)),
    ),
    Unary(
        "cbrt",
        lambda u: f"cbrt({u})",
        lambda u: u.chain(math.cbrt(u.value), 1 / (3 * math.cbrt(u.value) ** 2)),
        lambda u: [u],
    ),
    Unary("degrees", lambda u: f"degrees({u})", lambda u: _scale(180 / math.pi, u)),
    Unary("radians", lambda u: f"radians({u})", lambda u: _scale(math.pi / 180, u)),
    Unary("abs", lambda u: f"abs({u})", lambda u: u.chain(abs(u.value), math.copysign(1.0, u.value)), lambda u: [u]),
    Unary("signum", lambda u: f"signum({u})", lambda u: constant(math.copysign(1.0, u.value)), lambda u: [u]),
    Unary("floor", lambda u: f"floor({u})", lambda u: constant(math.floor(u.value)), _off_integer),
    Unary("ceil", lambda u: f"ceil({u})", lambda u: constant(math.ceil(u.value)), _off_integer),
    Unary(
        "round",
        lambda u: f"round({u})",
        lambda u: constant(_round_half_away(u.value)),
        lambda u: _off_integer(u, 0.5),
    ),
    Unary("trunc", lambda u: f"trunc({u})", lambda u: constant(float(math.trunc(u.value))), _off_integer),
    Unary("negative", lambda u: f"-({u})", lambda u: Dual(-u.value, -u.slope)),
    Unary("cast", lambda u: f"CAST({u} AS DOUBLE)", lambda u: u),
    Unary("try_cast", lambda u: f"TRY_CAST({u} AS DOUBLE)", lambda u: u),
    Unary("stop_gradient", lambda u: f"stop_gradient({u})", lambda u: constant(u.value)),
]


@dataclass(frozen=True)
class Binary:
    primitive: str
    sql: Callable[[str, str], str]
    dual: Callable[[Dual, Dual], Dual]
    kinks: Callable[[Dual, Dual], list[Dual]] = lambda a, b: []


def _power(base: Dual, exponent: Dual) -> Dual:
    value = base.value**exponent.value
    return Dual(
        value,
        exponent.value * base.value ** (exponent.value - 1) * base.slope + value * math.log(base.value) * exponent.slope,
    )


def _divide(a: Dual, b: Dual) -> Dual:
    return Dual(a.value / b.value, (a.slope * b.value - a.value * b.slope) / b.value**2)


def _remainder(a: Dual, b: Dual) -> Dual:
    quotient = math.trunc(a.value / b.value)
    return Dual(math.fmod(a.value, b.value), a.slope - quotient * b.slope)


def _pick(first: bool, a: Dual, b: Dual) -> Dual:
    return a if first else b


BINARY = [
    Binary("+", lambda a, b: f"({a}) + ({b})", lambda a, b: Dual(a.value + b.value, a.slope + b.slope)),
    Binary("-", lambda a, b: f"({a}) - ({b})", lambda a, b: Dual(a.value - b.value, a.slope - b.slope)),
    Binary(
        "*",
        lambda a, b: f"({a}) * ({b})",
        lambda a, b: Dual(a.value * b.value, a.slope * b.value + a.value * b.slope),
    ),
    Binary("/", lambda a, b: f"({a}) / (1.5 + ({b}) * ({b}))", lambda a, b: _divide(a, _square_plus(1.5, b))),
    Binary(
        "%",
        lambda a, b: f"({a}) % (2.5 + ({b}) * ({b}))",
        lambda a, b: _remainder(a, _square_plus(2.5, b)),
        lambda a, b: _off_integer(_divide(a, _square_plus(2.5, b))),
    ),
    Binary(
        "power",
        lambda a, b: f"power(1.5 + ({a}) * ({a}), tanh({b}))",
        lambda a, b: _power(_square_plus(1.5, a), _tanh(b)),
    ),
    Binary(
        "pow",
        lambda a, b: f"pow(1.5 + ({a}) * ({a}), tanh({b}))",
        lambda a, b: _power(_square_plus(1.5, a), _tanh(b)),
    ),
    Binary(
        "log",
        lambda a, b: f"log(2.5 + ({b}) * ({b}), 1.5 + ({a}) * ({a}))",
        lambda a, b: _divide(_ln(_square_plus(1.5, a)), _ln(_square_plus(2.5, b))),
    ),
    Binary(
        "atan2",
        lambda a, b: f"atan2({a}, 1.5 + ({b}) * ({b}))",
        lambda a, b: (
            lambda y, x: Dual(math.atan2(y.value, x.value), (x.value * y.slope - y.value * x.slope) / (x.value**2 + y.value**2))
        )(a, _square_plus(1.5, b)),
    ),
    Binary("greatest", lambda a, b: f"greatest({a}, {b})", lambda a, b: _pick(a.value >= b.value, a, b), _difference),
    Binary("least", lambda a, b: f"least({a}, {b})", lambda a, b: _pick(a.value <= b.value, a, b), _difference),
    Binary("coalesce", lambda a, b: f"coalesce({a}, {b})", lambda a, b: a),
    Binary("nvl", lambda a, b: f"nvl({a}, {b})", lambda a, b: a),
    # Never equal on these points, so nullif gives its first argument.
    Binary("nullif", lambda a, b: f"nullif({a}, {b})", lambda a, b: a, _difference),
    Binary("nvl2", lambda a, b: f"nvl2({a}, {b}, {a})", lambda a, b: b),
]


class Tree:
    """An expression in x and y, spelled in SQL and evaluated on duals."""

    def __init__(self, sql: str, evaluate: Callable[[Dual, Dual, list[Dual]], Dual], children: list["Tree"]):
        self.sql = sql
        self.evaluate = evaluate
        self.children = children

    def at(self, x: Dual, y: Dual) -> tuple[Dual, float]:
        """The value and derivative at (x, y), and the distance to the nearest kink."""
        kinks: list[Dual] = []
        value = self.evaluate(x, y, kinks)
        # How far the point is from the nearest kink, in the argument's value
        # and along the seeded variable.
        distance = min((min(abs(k.value), abs(k.value) / max(abs(k.slope), 1e-300)) for k in kinks), default=math.inf)
        return value, distance

    def subtrees(self) -> list["Tree"]:
        return [self] + [t for child in self.children for t in child.subtrees()]


def leaf(rng: random.Random) -> Tree:
    choice = rng.random()
    if choice < 0.35:
        return Tree("x", lambda x, y, k: x, [])
    if choice < 0.7:
        return Tree("y", lambda x, y, k: y, [])
    c = round(rng.uniform(-2.0, 2.0), 3)
    # A negative constant spelled with its sign right after an operator
    # tests the printer's handling of `- -`.
    return Tree(f"{c}" if c >= 0 else f"({c})", lambda x, y, k: constant(c), [])


def random_tree(rng: random.Random, depth: int) -> Tree:
    if depth == 0 or rng.random() < 0.2:
        return leaf(rng)
    kind = rng.random()
    if kind < 0.45:
        op = rng.choice(UNARY)
        u = random_tree(rng, depth - 1)

        def unary(x: Dual, y: Dual, kinks: list[Dual], op: Unary = op, u: Tree = u) -> Dual:
            inner = u.evaluate(x, y, kinks)
            kinks.extend(op.kinks(inner))
            return op.dual(inner)

        return Tree(op.sql(u.sql), unary, [u])
    if kind < 0.9:
        op = rng.choice(BINARY)
        a, b = random_tree(rng, depth - 1), random_tree(rng, depth - 1)

        def binary(x: Dual, y: Dual, kinks: list[Dual], op: Binary = op, a: Tree = a, b: Tree = b) -> Dual:
            left, right = a.evaluate(x, y, kinks), b.evaluate(x, y, kinks)
            kinks.extend(op.kinks(left, right))
            return op.dual(left, right)

        return Tree(op.sql(a.sql, b.sql), binary, [a, b])
    a, b, then, otherwise = (random_tree(rng, depth - 1) for _ in range(4))

    def case(x: Dual, y: Dual, kinks: list[Dual]) -> Dual:
        left, right = a.evaluate(x, y, kinks), b.evaluate(x, y, kinks)
        kinks.extend(_difference(left, right))
        chosen = then if left.value > right.value else otherwise
        return chosen.evaluate(x, y, kinks)

    sql = f"CASE WHEN {a.sql} > {b.sql} THEN {then.sql} ELSE {otherwise.sql} END"
    return Tree(sql, case, [a, b, then, otherwise])


def smooth_points(tree: Tree, rng: random.Random) -> Optional[list[tuple[float, float]]]:
    points = []
    for _ in range(50 * POINTS):
        point = (rng.uniform(-2, 2), rng.uniform(-2, 2))
        try:
            distance = min(tree.at(*seeded(point, wrt))[1] for wrt in ("x", "y"))
        except (ValueError, ZeroDivisionError, OverflowError):
            continue
        if distance > 1e-3:
            points.append(point)
            if len(points) == POINTS:
                return points
    return None


def seeded(point: tuple[float, float], wrt: str) -> tuple[Dual, Dual]:
    return Dual(point[0], 1.0 if wrt == "x" else 0.0), Dual(point[1], 1.0 if wrt == "y" else 0.0)


def derivative(tree: Tree, point: tuple[float, float], wrt: str) -> float:
    return tree.at(*seeded(point, wrt))[0].slope


def problems(ctx: SessionContext, tree: Tree, points: list[tuple[float, float]], wrt: str) -> list[str]:
    batch = pa.RecordBatch.from_pydict(
        {"id": list(range(len(points))), "x": [p[0] for p in points], "y": [p[1] for p in points]}
    )
    ctx.deregister_table("pts")
    ctx.register_record_batches("pts", [[batch]])
    found: list[str] = []
    markers = {
        "grad": (f"grad({tree.sql}, {wrt})", 1.0),
        "jvp": (f"jvp({tree.sql}, {wrt}, 2.5)", 2.5),
        "vjp": (f"vjp({tree.sql}, {wrt}, -1.5)", -1.5),
    }
    select = ", ".join(f"{call} AS {name}" for name, (call, _) in markers.items())
    try:
        got = ctx.sql(f"SELECT {select} FROM pts ORDER BY id").to_pydict()
    except Exception as error:  # any failure is a finding, reported with the tree
        return [f"bridge: {type(error).__name__}: {error}"]
    for name, (_, scale) in markers.items():
        for point, value in zip(points, got[name]):
            want = scale * derivative(tree, point, wrt)
            if value is None or not abs(value - want) <= 1e-9 * (1 + abs(want)):
                found.append(f"bridge: at {point} {name} is {value}, dual numbers give {want}")
    # Central differences move through stop_gradient (its value is its
    # argument's); only the dual numbers above hold it constant.
    if "stop_gradient" in tree.sql:
        return found
    check = ag.check_grad(ctx, tree.sql, wrt, "pts")
    if check.checked != len(points) or not check.worst_error <= 1e-5:
        found.append(f"check_grad: {check}")
    return found


def test_the_trees_draw_on_every_primitive() -> None:
    spelled = {op.primitive for op in UNARY + BINARY}
    assert set(ag.primitives()) <= spelled


def test_random_trees_through_the_bridge_match_dual_numbers() -> None:
    rng = random.Random(20261123)
    ctx = ag.register(SessionContext())
    checked = 0
    while checked < TREES:
        tree = random_tree(rng, 4)
        points = smooth_points(tree, rng)
        if points is None:
            continue
        checked += 1
        for wrt in ("x", "y"):
            first = problems(ctx, tree, points, wrt)
            if not first:
                continue
            smallest = tree
            shrunk = True
            while shrunk:
                shrunk = False
                for candidate in sorted(smallest.subtrees()[1:], key=lambda t: len(t.sql)):
                    candidate_points = smooth_points(candidate, rng)
                    if candidate_points and problems(ctx, candidate, candidate_points, wrt):
                        smallest, shrunk = candidate, True
                        break
            found = problems(ctx, smallest, smooth_points(smallest, rng) or points, wrt)
            pytest.fail(
                f"d/d{wrt} {tree.sql} at {points}\n" + "\n".join(first)
                + f"\nsmallest failing: d/d{wrt} {smallest.sql}\n" + "\n".join(found)
            )
