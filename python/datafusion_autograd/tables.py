"""A context's tables and views by name, for planning a loss query in Rust."""

from __future__ import annotations

import re
from typing import Any, Callable, List, Optional, Tuple, Union

import pyarrow as pa
from datafusion import SessionContext, col
from datafusion.unparser import Dialect, Unparser

Relation = Union[pa.Schema, str]
Catalog = Callable[[str], Optional[Relation]]
# (rows, bytes, exact): a table's size as a planner's statistics give it.
Size = Tuple[int, int, bool]
Rows = Callable[[List[str]], Any]
Fetch = Callable[[str], Tuple[Rows, Optional[Size]]]


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
    table of ``ctx`` when a query over a gradient runs — a function from some
    of its columns to their rows, as an object with ``__arrow_c_stream__`` —
    and the table's size as ``ctx``'s planner knows it (see :func:`size`).
    The table is looked up when the query is planned, as ``ctx`` looks up
    the tables of its own queries (``CREATE OR REPLACE TABLE p AS … p …``
    reads the ``p`` it replaces).

    >>> import pyarrow as pa
    >>> ctx = SessionContext()
    >>> ctx.register_record_batches("w", [[pa.RecordBatch.from_pydict({"i": [0], "w": [1.0]})]])
    >>> rows, size = fetcher(ctx)("w")
    >>> pa.table(rows(["w"])).to_pydict()
    {'w': [1.0]}
    >>> size[0], size[2]  # one row, counted exactly
    (1, True)
    """

    def fetch(name: str) -> Tuple[Rows, Optional[Size]]:
        frame = ctx.table(name)

        def rows(columns: List[str]) -> Any:
            # Quoted, so that a column's name is never read as an expression.
            return frame.select(*(col('"' + c.replace('"', '""') + '"') for c in columns))

        return rows, size(ctx, name)

    return fetch


# How DataFusion prints a plan's statistics.
_STATISTICS = re.compile(r"statistics=\[Rows=(Exact|Inexact)\((\d+)\), Bytes=(Exact|Inexact)\((\d+)\)")


def size(ctx: SessionContext, name: str) -> Optional[Size]:
    """The row count and byte size ``ctx``'s planner has for the table ``name``
    (None if it has none), read from its plan's statistics without reading
    the table: the engine plans joins over the table with them — a small
    table is broadcast rather than partitioned by hash. The host hands out
    a plan's statistics only in ``EXPLAIN VERBOSE``.

    >>> import pyarrow as pa
    >>> ctx = SessionContext()
    >>> ctx.register_record_batches("w", [[pa.RecordBatch.from_pydict({"w": [1.0, 2.0, 3.0]})]])
    >>> rows, bytes_, exact = size(ctx, "w")
    >>> rows, exact, bytes_ >= 24
    (3, True, True)
    """
    # The base class's sql: a context's own (registered) sql would rewrite the text first.
    plans = SessionContext.sql(ctx, f"EXPLAIN VERBOSE SELECT * FROM {name}").to_pydict()
    for kind, plan in zip(plans["plan_type"], plans["plan"]):
        if kind == "physical_plan_with_stats":
            found = _STATISTICS.search(plan.split("\n", 1)[0])
            if found is None:
                return None
            rows, bytes_ = int(found.group(2)), int(found.group(4))
            return rows, bytes_, found.group(1) == "Exact"
    return None
