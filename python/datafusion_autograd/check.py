"""``check_grad``: a derivative against central differences on the user's own rows."""

from __future__ import annotations

import math
from dataclasses import dataclass

from datafusion import SessionContext

from datafusion_autograd._native import AutogradError, check_grad_sql, rewrite_sql
from datafusion_autograd.tables import catalog


@dataclass(frozen=True)
class GradCheck:
    """What ``check_grad`` found on a relation.

    ``worst_error`` is the largest ``|grad − difference| / max(1, |difference|)``
    over the rows where the central difference is finite (``checked`` of
    ``rows``); it is NaN when a derivative is NaN where the difference is not,
    or when no row could be checked. ``at``, ``grad`` and ``difference`` are the
    column's value, the derivative and the central difference at that row.
    """

    rows: int
    checked: int
    worst_error: float
    at: float
    grad: float
    difference: float


def check_grad(ctx: SessionContext, expr: str, wrt: str, relation: str) -> GradCheck:
    """Checks ``grad(expr, wrt)`` on every row of ``relation`` (a table name or
    a query of ``ctx``) against central differences of ``expr``, and reports
    the worst row — what JAX's ``check_grads`` does for a function, on data.

    ``ctx`` need not be registered; the check is one query, differentiated by
    the same engine as ``grad`` in SQL.

    >>> import pyarrow as pa
    >>> from datafusion import SessionContext
    >>> ctx = SessionContext()
    >>> ctx.register_record_batches("samples", [[pa.RecordBatch.from_pydict({"x": [0.5, 1.5, -2.0]})]])
    >>> result = check_grad(ctx, "exp(x) * sin(x)", "x", "samples")
    >>> (result.rows, result.checked, result.worst_error < 1e-8)
    (3, 3, True)
    >>> check_grad(ctx, "floor(x) + x", "x", "SELECT 0.9999999 AS x").worst_error > 0.5
    True
    """
    query = check_grad_sql(expr, wrt, relation)
    # The class's own `sql`: a registered context's instance `sql` would
    # rewrite the text a second time.
    sql = type(ctx).sql.__get__(ctx)
    found = sql(rewrite_sql(query, catalog(ctx))).to_pydict()
    if not found["rows"]:
        raise AutogradError(f"check_grad: {relation!r} has no rows")

    def number(name: str) -> float:
        value = found[name][0]
        return math.nan if value is None else float(value)

    return GradCheck(
        rows=int(found["rows"][0]),
        checked=int(found["checked"][0]),
        worst_error=number("worst_error"),
        at=number("at"),
        grad=number("grad"),
        difference=number("difference"),
    )
