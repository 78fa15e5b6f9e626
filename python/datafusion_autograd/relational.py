"""``gradient``: the gradient of a whole query with respect to a parameter table."""

from __future__ import annotations

from typing import Any, Union

from datafusion import DataFrame, SessionContext
from datafusion.unparser import Dialect, Unparser

from datafusion_autograd._native import gradient_sql
from datafusion_autograd.tables import catalog


def gradient(ctx: SessionContext, loss: Union[str, DataFrame], wrt: str) -> Any:
    """∂loss/∂(every row's ``wrt`` column), as a DataFrame of ``ctx``.

    ``loss`` is a SQL query, or a DataFrame, that returns one row with one
    numeric column; ``wrt`` names the parameter as ``"<table>.<column>"``. The
    result has every row of the table, all its columns, and a DOUBLE column
    ``grad``. It is ``ctx.sql`` of the query the Rust engine forms, so a
    subclass's DataFrame type is kept (``xarray_sql.XarrayContext`` gives
    ``.to_dataset()``).

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
    if isinstance(loss, DataFrame):
        loss = str(Unparser(Dialect.default()).plan_to_sql(loss.logical_plan()))
    return ctx.sql(gradient_sql(loss, wrt, catalog(ctx)))
