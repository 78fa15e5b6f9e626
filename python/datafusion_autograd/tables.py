"""A context's tables and views by name, for planning a loss query in Rust."""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import pyarrow as pa
from datafusion import SessionContext, col
from datafusion.unparser import Dialect, Unparser

Relation = Union[pa.Schema, str]
Catalog = Callable[[str], Optional[Relation]]
Fetch = Callable[[str], Callable[["list[str]"], Any]]


def catalog(ctx: SessionContext) -> Catalog:
    """A function from a relation's name, as a query writes it, to a table's
    schema or a view's defining query (None if there is no such relation).

    A view is given as its query so that the engine sees what it reads.

    >>> import pyarrow as pa
    >>> ctx = SessionContext()
    >>> ctx.register_record_batches("w", [[pa.RecordBatch.from_pydict({"w": [1.0]})]])
    >>> _ = ctx.sql("CREATE VIEW doubled AS SELECT w * 2 AS w2 FROM w").collect()
    >>> relations = catalog(ctx)
    >>> relations("w"), relations("missing")
    (w: double, None)
    >>> relations("doubled")
    'SELECT * FROM (SELECT (w.w * CAST(2 AS DOUBLE)) AS w2 FROM w) AS doubled'
    """

    def relation(name: str) -> Optional[Relation]:
        if not ctx.table_exist(name):
            return None
        if ctx.table_provider(name).kind == "view":
            return str(Unparser(Dialect.default()).plan_to_sql(ctx.table(name).logical_plan()))
        return ctx.table(name).schema()

    return relation


def fetcher(ctx: SessionContext) -> Fetch:
    """A function from a table's name to the way the Rust engine reads that
    table of ``ctx`` when a query over a gradient runs: a function from some
    of its columns to their rows, as an object with ``__arrow_c_stream__``.
    The table is looked up when the query is planned, as ``ctx`` looks up
    the tables of its own queries (``CREATE OR REPLACE TABLE p AS … p …``
    reads the ``p`` it replaces).

    >>> import pyarrow as pa
    >>> ctx = SessionContext()
    >>> ctx.register_record_batches("w", [[pa.RecordBatch.from_pydict({"i": [0], "w": [1.0]})]])
    >>> pa.table(fetcher(ctx)("w")(["w"])).to_pydict()
    {'w': [1.0]}
    """

    def fetch(name: str) -> Callable[["list[str]"], Any]:
        frame = ctx.table(name)

        def rows(columns: "list[str]") -> Any:
            # Quoted, so that a column's name is never read as an expression.
            return frame.select(*(col('"' + c.replace('"', '""') + '"') for c in columns))

        return rows

    return fetch
