"""Differentiable SQL for Apache DataFusion.

``grad(expr, column)``, ``jvp(expr, column, tangent)`` and
``vjp(expr, column, cotangent)`` work wherever a scalar expression does: SELECT
lists, aggregates (``AVG(grad(loss, w))`` is a gradient), recursive CTEs,
``INSERT … SELECT``, ``CREATE TABLE AS``, views and every kind of subquery.

>>> from datafusion import SessionContext
>>> import datafusion_autograd
>>> ctx = datafusion_autograd.register(SessionContext())
>>> ctx.sql("SELECT grad(x * x * x, x) AS d FROM (VALUES (2.0)) AS t(x)").to_pydict()
{'d': [12.0]}

``check_grad`` compares ``grad`` with central differences on the rows of a
table (``check``). ``differentiate`` writes a derivative as SQL text for DataFusion, DuckDB,
PostgreSQL or SQLite (``dialects``); ``python -m datafusion_autograd
differentiate EXPR COLUMN`` does the same from the command line (``__main__``).

>>> datafusion_autograd.differentiate("x * x * y", "x", dialect="sqlite")
'`x` * `y` * 2.0'
"""

from datafusion_autograd._native import (
    AutogradError,
    LimitExceeded,
    NotALoss,
    UnknownParameter,
    UnsupportedOperation,
    GradUDF,
    JvpUDF,
    VjpUDF,
    primitives,
    rewrite_sql,
)
from datafusion_autograd.check import GradCheck, check_grad
from datafusion_autograd.context import AutogradContext, forwards_simplify, kept_statistics, register
from datafusion_autograd.dialects import DIALECTS, Dialect, differentiate
from datafusion_autograd.engines import sql
from datafusion_autograd.expr import grad, jvp, vjp
from datafusion_autograd.relational import gradient, gradients, hvp
from datafusion_autograd.udfs import grad_udf, jvp_udf, stop_gradient_udf, vjp_udf

__all__ = [
    "DIALECTS",
    "AutogradContext",
    "AutogradError",
    "LimitExceeded",
    "NotALoss",
    "UnknownParameter",
    "UnsupportedOperation",
    "Dialect",
    "GradCheck",
    "GradUDF",
    "JvpUDF",
    "VjpUDF",
    "check_grad",
    "differentiate",
    "forwards_simplify",
    "grad",
    "grad_udf",
    "gradient",
    "gradients",
    "hvp",
    "jvp",
    "jvp_udf",
    "kept_statistics",
    "primitives",
    "register",
    "rewrite_sql",
    "sql",
    "stop_gradient_udf",
    "vjp",
    "vjp_udf",
]
