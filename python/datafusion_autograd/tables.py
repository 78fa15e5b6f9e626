"""The schemas of a context's tables, for planning a loss query in Rust."""

from __future__ import annotations

from typing import Callable, Optional

import pyarrow as pa
from datafusion import SessionContext

TableSchemas = Callable[[str], Optional[pa.Schema]]


def table_schemas(ctx: SessionContext) -> TableSchemas:
    """A function from a table's name, as a query writes it, to its schema (None if absent).

    >>> import pyarrow as pa
    >>> ctx = SessionContext()
    >>> ctx.register_record_batches("w", [[pa.RecordBatch.from_pydict({"w": [1.0]})]])
    >>> schemas = table_schemas(ctx)
    >>> schemas("w"), schemas("missing")
    (w: double, None)
    """

    def schema(name: str) -> Optional[pa.Schema]:
        return ctx.table(name).schema() if ctx.table_exist(name) else None

    return schema
