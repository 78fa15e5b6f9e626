"""Derivative SQL for DataFusion and for other engines: DuckDB, PostgreSQL
and SQLite.

The expression is read as DataFusion SQL over DOUBLE columns, differentiated
by the Rust engine, and written for the chosen engine so that it computes
there what DataFusion would; the spelling table lives in the Rust crate
(``datafusion_autograd::Dialect``).
"""

from __future__ import annotations

from typing import Literal

from datafusion_autograd import _native

Dialect = Literal["datafusion", "duckdb", "postgresql", "sqlite"]
"""The engines derivative SQL can be written for."""

DIALECTS: tuple[str, ...] = _native.DIALECTS
"""The names ``differentiate`` accepts as ``dialect``, from the Rust crate."""


def differentiate(expr: str, wrt: str, dialect: Dialect = "datafusion") -> str:
    """The derivative of the SQL expression ``expr`` with respect to the
    column ``wrt``, as SQL for ``dialect``.

    Every identifier in ``expr`` is a DOUBLE column; nested ``grad``/``jvp``/
    ``vjp`` calls give higher derivatives. A function the engine has no
    spelling for raises ``AutogradError`` naming it, as does an unknown
    ``dialect``.

    >>> differentiate("x * x * y", "x")
    'x * y * 2.0'
    >>> differentiate("sin(x) * y", "x", dialect="postgresql")
    'cos("x") * "y"'
    >>> differentiate("x * signum(y) / 2", "x", dialect="duckdb")
    'CAST(sign("y") AS DOUBLE) * 0.5'
    >>> differentiate("cbrt(x) * y", "y", dialect="sqlite")
    'CAST(sign(`x`) AS DOUBLE) * power(abs(`x`), 0.3333333333333333)'
    >>> differentiate("sin(x % y)", "x", dialect="postgresql")
    Traceback (most recent call last):
    ...
    _native.AutogradError: Error during planning: postgresql has no spelling for '%' of non-integer operands, which the derivative contains
    """
    return _native.differentiate(expr, wrt, dialect)
