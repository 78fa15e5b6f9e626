"""``gradient`` and ``gradients``: gradients of a whole query with respect to parameter tables."""

from __future__ import annotations

import itertools
from typing import Any, Sequence, Union

from datafusion import DataFrame, SessionContext
from datafusion.unparser import Dialect, Unparser

from datafusion_autograd._native import gradients as _gradients
from datafusion_autograd.context import planned_with
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
    if isinstance(loss, DataFrame):
        loss = str(Unparser(Dialect.default()).plan_to_sql(loss.logical_plan()))
    wrt = list(wrt)
    tables = _gradients(loss, wrt, catalog(ctx), fetcher(ctx))
    sql = type(ctx).sql.__get__(ctx)
    frames = {}
    for parameter, table in zip(wrt, tables):
        name = f"__ag_result{next(_NAMES)}"
        frames[parameter] = planned_with(ctx, [(name, table)], lambda: sql(f"SELECT * FROM {name}"))
    return frames
