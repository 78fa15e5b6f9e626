"""``gradient``, ``gradients`` and ``hvp``: derivatives of a whole query with respect to parameter tables."""

from __future__ import annotations

import itertools
from typing import Any, Sequence, Union

from datafusion import DataFrame, SessionContext
from datafusion.unparser import Dialect, Unparser

from datafusion_autograd._native import ClusterContext
from datafusion_autograd._native import gradients as _gradients
from datafusion_autograd._native import hvp as _hvp
from datafusion_autograd.context import planned_with
from datafusion_autograd.engines import dialect_of
from datafusion_autograd.engines import gradient as engine_gradient
from datafusion_autograd.tables import catalog, fetcher

Loss = Union[str, DataFrame]

_NAMES = itertools.count()


def gradient(ctx: SessionContext, loss: Loss, wrt: str) -> Any:
    """∂loss/∂(every row's ``wrt`` column), as a DataFrame of ``ctx``.

    ``loss`` is a SQL query, or a DataFrame, that returns one row with one
    numeric column; ``wrt`` names the parameter as ``"<table>.<column>"``. The
    result has every row of the table, all its columns, and a DOUBLE column
    ``grad``. Nothing is computed until the DataFrame is: the Rust engine
    computes the gradient when the DataFrame runs, reading ``ctx``'s tables
    as they are then. It is ``ctx.sql`` of a table that holds the gradient,
    so a subclass's DataFrame type is kept (``xarray_sql.XarrayContext``
    gives ``.to_dataset()``).

    ``ctx`` may also be a DuckDB, SQLite or psycopg 3 connection: the gradient
    is then computed in that engine and returned as a ``pyarrow.Table``
    (``datafusion_autograd.engines``). On a ``ClusterContext``
    (``datafusion_autograd.cluster.connect``) the result is that context's
    frame, its stages computed on the cluster.

    >>> import pyarrow as pa
    >>> from datafusion import SessionContext, col, functions as f
    >>> ctx = SessionContext()
    >>> ctx.register_record_batches("w", [[pa.RecordBatch.from_pydict({"i": [0, 1], "w": [1.5, -2.0]})]])
    >>> gradient(ctx, "SELECT SUM(w * w * w) FROM w", "w.w").sort(col("i")).to_pydict()
    {'i': [0, 1], 'w': [1.5, -2.0], 'grad': [6.75, 12.0]}
    >>> loss = ctx.table("w").aggregate([], [f.sum(col("w") * col("w")).alias("loss")])
    >>> gradient(ctx, loss, "w.w").sort(col("i")).to_pydict()["grad"]
    [3.0, -4.0]
    """
    if isinstance(ctx, ClusterContext):
        # On a cluster (datafusion_autograd.cluster): the table function,
        # planned in this process, its stages run as jobs of the cluster.
        if not isinstance(loss, str):
            raise TypeError("the loss for a cluster is SQL text, not a DataFrame")
        quoted = [text.replace("'", "''") for text in (loss, wrt)]
        return ctx.sql(f"SELECT * FROM gradient('{quoted[0]}', '{quoted[1]}')")
    if dialect_of(ctx) is not None:
        if not isinstance(loss, str):
            raise TypeError("the loss for another engine is SQL text, not a DataFrame")
        return engine_gradient(ctx, loss, wrt)
    return gradients(ctx, loss, [wrt])[wrt]


def gradients(ctx: SessionContext, loss: Loss, wrt: Sequence[str]) -> "dict[str, Any]":
    """The gradients of ``loss`` with respect to several parameters from one
    backward pass: ``{parameter: DataFrame}``, keys as given, each value as
    ``gradient`` returns it. What the pass computes is computed once, the
    first time any of the DataFrames runs, and kept while any of them lives.

    >>> import pyarrow as pa
    >>> from datafusion import SessionContext, col
    >>> ctx = SessionContext()
    >>> ctx.register_record_batches("a", [[pa.RecordBatch.from_pydict({"i": [0, 1], "a": [1.0, 2.0]})]])
    >>> ctx.register_record_batches("b", [[pa.RecordBatch.from_pydict({"i": [0, 1], "b": [3.0, 5.0]})]])
    >>> both = gradients(ctx, "SELECT SUM(a * b) FROM a JOIN b ON a.i = b.i", ["a.a", "b.b"])
    >>> both["a.a"].sort(col("i")).to_pydict()["grad"], both["b.b"].sort(col("i")).to_pydict()["grad"]
    ([3.0, 5.0], [1.0, 2.0])
    """
    wrt = list(wrt)
    tables = _gradients(_sql(loss), wrt, catalog(ctx), fetcher(ctx))
    return {parameter: _frame(ctx, table) for parameter, table in zip(wrt, tables)}


def hvp(ctx: SessionContext, loss: Loss, wrt: str, tangent: Union[str, DataFrame, float]) -> Any:
    """The Hessian of ``loss`` with respect to ``wrt`` times a direction, as a
    DataFrame of ``ctx``: every row of the table, all its columns, ``grad``
    (∂loss/∂ that row's value) and ``hvp`` (that row's entry of ∇²loss · v).
    The direction v is ``tangent``: a SQL query or DataFrame of the table's
    other columns and a DOUBLE column ``tangent`` (rows matched on those
    columns; a row with no match does not move), or a number (the same at
    every row). The Hessian is never formed: this is forward mode through the
    gradient's plans, JAX's ``jvp(grad(f))``.

    >>> import pyarrow as pa
    >>> from datafusion import SessionContext, col
    >>> ctx = SessionContext()
    >>> ctx.register_record_batches("w", [[pa.RecordBatch.from_pydict({"i": [0, 1], "w": [1.5, -2.0]})]])
    >>> ctx.register_record_batches("v", [[pa.RecordBatch.from_pydict({"i": [0, 1], "tangent": [1.0, 10.0]})]])
    >>> hvp(ctx, "SELECT SUM(w * w * w) FROM w", "w.w", "SELECT i, tangent FROM v").sort(col("i")).to_pydict()
    {'i': [0, 1], 'w': [1.5, -2.0], 'grad': [6.75, 12.0], 'hvp': [9.0, -120.0]}
    """
    if isinstance(tangent, DataFrame):
        tangent = _sql(tangent)
    elif not isinstance(tangent, str):
        tangent = float(tangent)
    return _frame(ctx, _hvp(_sql(loss), wrt, tangent, catalog(ctx), fetcher(ctx)))


def _sql(query: Loss) -> str:
    """A query as SQL text: a DataFrame's plan written back by DataFusion's unparser."""
    if isinstance(query, DataFrame):
        return str(Unparser(Dialect.default()).plan_to_sql(query.logical_plan()))
    return query


def _frame(ctx: SessionContext, table: Any) -> Any:
    """``ctx.sql`` of one of the engine's tables: a subclass's DataFrame type is kept."""
    name = f"__ag_result{next(_NAMES)}"
    sql = type(ctx).sql.__get__(ctx)
    return planned_with(ctx, [(name, table)], lambda: sql(f"SELECT * FROM {name}"))
