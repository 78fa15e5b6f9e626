"""``grad``, ``jvp`` and ``vjp`` for the DataFrame API.

Each takes ``datafusion.Expr`` objects and returns the derivative as a plain
``datafusion.Expr``, computed by the Rust engine on the expressions' protobuf
form (``Expr.to_bytes``/``Expr.from_bytes``). Columns are read as DOUBLE.
"""

from __future__ import annotations

from typing import Callable, TypeVar, Union

from datafusion import Expr, col, lit
from datafusion.common import RexType

from datafusion_autograd import _native

Column = Union[str, Expr]
Operand = Union[Expr, float, int]
Function = TypeVar("Function", bound=Callable[..., Expr])


def _summarised(marker: str) -> Callable[[Function], Function]:
    """Opens the docstring with the marker's one-line summary, which the Rust crate owns."""

    def summarise(function: Function) -> Function:
        function.__doc__ = f"{_native.summary(marker)}\n{function.__doc__}"
        return function

    return summarise


@_summarised("grad")
def grad(expr: Expr, wrt: Column) -> Expr:
    """
    ``wrt`` is a column name or column expression.

    >>> from datafusion import SessionContext, col, functions as f
    >>> ctx = SessionContext()
    >>> df = ctx.from_pydict({"x": [0.0, 1.0]})
    >>> df.select(grad(f.sin(col("x")) * col("x"), "x").alias("d")).to_pydict()
    {'d': [0.0, 1.3817732906760363]}
    """
    return _derivative("grad", expr, wrt)


@_summarised("jvp")
def jvp(expr: Expr, wrt: Column, tangent: Operand) -> Expr:
    """
    ``tangent`` is an expression or a number.

    >>> from datafusion import SessionContext, col
    >>> df = SessionContext().from_pydict({"x": [3.0], "t": [0.5]})
    >>> df.select(jvp(col("x") * col("x"), "x", col("t")).alias("d")).to_pydict()
    {'d': [3.0]}
    """
    return _derivative("jvp", expr, wrt, tangent)


@_summarised("vjp")
def vjp(expr: Expr, wrt: Column, cotangent: Operand) -> Expr:
    """
    ``cotangent`` is an expression or a number.

    >>> from datafusion import SessionContext, col
    >>> df = SessionContext().from_pydict({"x": [2.0]})
    >>> df.select(vjp(col("x") * col("x"), col("x"), 10).alias("d")).to_pydict()
    {'d': [40.0]}
    """
    return _derivative("vjp", expr, wrt, cotangent)


# Each call level of an expression is about two nested protobuf messages.
MAX_DEPTH = _native.HOST_NESTING // 2


def _derivative(marker: str, expr: Expr, wrt: Column, *operands: Operand) -> Expr:
    args = [expr, col(wrt) if isinstance(wrt, str) else wrt]
    args += [operand if isinstance(operand, Expr) else lit(operand) for operand in operands]
    for arg in args:
        depth = nesting(arg, MAX_DEPTH)
        if depth > MAX_DEPTH:
            # Checked before Expr.to_bytes, which overflows the stack on deep enough input.
            raise _native.AutogradError(
                f"the expression nests more than {MAX_DEPTH} calls deep (found at least {depth}); the "
                f"DataFrame API passes expressions through datafusion's protobuf decoder, which reads at "
                f"most {_native.HOST_NESTING} nested messages (about {MAX_DEPTH} calls): write it in SQL"
            )
    return Expr.from_bytes(_native.derivative(marker, [arg.to_bytes() for arg in args]))


def nesting(expr: Expr, limit: int) -> int:
    """How many calls deep ``expr`` nests, counting no further than ``limit + 1``.

    Iterative, so that no depth of input can exhaust the stack.

    >>> from datafusion import col, functions as f
    >>> nesting(f.sin(f.cos(col("x"))) + col("y"), 10)
    4
    """
    deepest, pending = 0, [(expr, 1)]
    while pending and deepest <= limit:
        current, depth = pending.pop()
        deepest = max(deepest, depth)
        if current.rex_type() in (RexType.Literal, RexType.Reference):
            continue
        pending.extend((operand, depth + 1) for operand in current.rex_call_operands())
    return deepest
