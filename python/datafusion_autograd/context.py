"""Making a ``SessionContext`` differentiate: registration and the SQL bridge."""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional, TypeVar

from datafusion import SessionContext

from datafusion_autograd._native import NOT_SIMPLIFIED, Memo, bridge_sql
from datafusion_autograd.tables import catalog, fetcher
from datafusion_autograd.udfs import FUNCTIONS, MARKERS

Context = TypeVar("Context", bound=SessionContext)

_PROBE = "SELECT grad(x * x, x) AS d FROM (VALUES (3.0)) AS t(x)"


def forwards_simplify(ctx: SessionContext) -> bool:
    """Whether ``ctx``'s DataFusion calls ``simplify`` on FFI scalar UDFs.

    When it does, the markers are differentiated inside its planner and no
    bridge is needed. The probe registers the markers on ``ctx`` and plans one
    tiny query with the base class's ``sql``, so overrides are not involved.

    >>> from datafusion import SessionContext
    >>> forwards_simplify(SessionContext())  # PyPI datafusion 54 does not
    False
    """
    for udf in MARKERS:
        ctx.register_udf(udf)
    try:
        return SessionContext.sql(ctx, _PROBE).to_pydict() == {"d": [6.0]}
    except Exception as error:
        if NOT_SIMPLIFIED in str(error):
            return False
        raise


def register(ctx: Context, *, max_derivative_nodes: Optional[int] = None, keep_plans: bool = True) -> Context:
    """Registers ``grad``, ``jvp``, ``vjp`` and ``stop_gradient`` on ``ctx``,
    makes its SQL understand them and ``gradient(…)``, and returns it.

    ``ctx.sql`` is wrapped so that, before DataFusion plans a statement, the
    Rust engine replaces every marker in its text by its derivative (PyPI
    ``datafusion`` 54 never calls the markers' ``simplify``; see
    ``forwards_simplify``) and every ``gradient('<loss query>',
    '<table>.<column>')`` by the query that computes it, planned over the
    relations of ``ctx`` (tables by schema, views by query). The wrapper calls ``ctx``'s own ``sql``, so
    subclasses keep their result type (``xarray_sql.XarrayContext`` returns
    its own DataFrame). Calling it twice is harmless.

    ``max_derivative_nodes`` bounds the size of every derivative formed (the
    default is ``AutogradOptions``' 100,000 expression nodes): past it,
    forming one is an error that names both numbers.

    ``keep_plans`` keeps what differentiating a statement made — its text
    rewritten, its whole-query gradients' passes and their physical plans — so
    that the same statement sent again (a training loop's step) is neither
    formed nor planned again while the relations it reads keep their schemas
    and sizes; their rows are read afresh each time. :func:`kept_statistics`
    counts what was reused.

    >>> from datafusion import SessionContext
    >>> ctx = register(SessionContext())
    >>> ctx.sql("SELECT grad(sin(x), x) AS d FROM (VALUES (0.0)) AS t(x)").to_pydict()
    {'d': [1.0]}
    >>> _ = ctx.sql("CREATE TABLE w (i BIGINT, w DOUBLE) AS VALUES (0, 1.5), (1, -2.0)").collect()
    >>> ctx.sql("SELECT i, grad FROM gradient('SELECT SUM(w * w) FROM w', 'w.w') ORDER BY i").to_pydict()
    {'i': [0, 1], 'grad': [3.0, -4.0]}
    """
    for udf in FUNCTIONS:
        ctx.register_udf(udf)
    if not getattr(ctx.sql, "_differentiates", False):
        ctx.sql = _differentiating(ctx, max_derivative_nodes, Memo() if keep_plans else None)
    return ctx


def kept_statistics(ctx: SessionContext) -> dict[str, int]:
    """How often ``ctx``'s statements were formed from their text (``formed``)
    and rewritten from what was kept (``reused``), and how often the passes
    kept now were planned (``planned``) and run from copies of their plans
    (``copied``); all zero when ``ctx`` keeps nothing.

    >>> from datafusion import SessionContext
    >>> ctx = register(SessionContext())
    >>> _ = ctx.sql("CREATE TABLE w (w DOUBLE) AS VALUES (1.5), (-2.0)").collect()
    >>> step = "SELECT w, grad((SELECT SUM(w * w) FROM w), w) AS g FROM w ORDER BY w"
    >>> [ctx.sql(step).to_pydict()["g"] for _ in range(3)]
    [[-4.0, 3.0], [-4.0, 3.0], [-4.0, 3.0]]
    >>> kept_statistics(ctx)
    {'formed': 1, 'reused': 2, 'planned': 1, 'copied': 2}
    """
    memo = getattr(ctx.sql, "_memo", None)
    if memo is None:
        return {"formed": 0, "reused": 0, "planned": 0, "copied": 0}
    statistics = memo.statistics()
    return {key: statistics[key] for key in ("formed", "reused", "planned", "copied")}


def _differentiating(ctx: SessionContext, max_derivative_nodes: Optional[int], memo: Optional[Memo]) -> Any:
    """``ctx.sql`` with markers and ``gradient`` calls rewritten first."""
    sql = ctx.sql
    relations, fetch = catalog(ctx), fetcher(ctx)

    @functools.wraps(sql)
    def differentiating_sql(query: str, *args: Any, **kwargs: Any) -> Any:
        rewritten, gradients = bridge_sql(query, relations, fetch, max_derivative_nodes, memo)
        return planned_with(ctx, gradients, lambda: sql(rewritten, *args, **kwargs))

    differentiating_sql._differentiates = True  # type: ignore[attr-defined]
    differentiating_sql._memo = memo  # type: ignore[attr-defined]
    return differentiating_sql


def planned_with(ctx: SessionContext, tables: "list[tuple[str, Any]]", plan: Callable[[], Any]) -> Any:
    """``plan()`` with ``tables`` registered on ``ctx`` by name while it runs: a
    DataFrame's plan holds the tables it read, so it still reads them after."""
    for name, table in tables:
        ctx.register_table(name, table)
    try:
        return plan()
    finally:
        for name, _ in tables:
            ctx.deregister_table(name)


class AutogradContext(SessionContext):
    """A ``SessionContext`` whose SQL understands ``grad``, ``jvp`` and ``vjp``.

    >>> ctx = AutogradContext()
    >>> ctx.sql("SELECT vjp(exp(x), x, 2.0) AS d FROM (VALUES (0.0)) AS t(x)").to_pydict()
    {'d': [2.0]}
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        register(self)
