"""Running a rewritten statement on a host: its stages first, the statement, then cleanup."""

from __future__ import annotations

from typing import Any, Callable

from datafusion import SessionContext

from datafusion_autograd._native import Rewritten


def run(ctx: SessionContext, sql: Callable[..., Any], rewritten: Rewritten, *args: Any, **kwargs: Any) -> Any:
    """``sql(rewritten.sql)``, after the statements that create the tables it reads.

    The tables are deregistered once the statement is planned: its plan holds
    them, so the DataFrame ``sql`` returns still reads them when run.
    """
    try:
        for stage in rewritten.stages:
            sql(stage).collect()
        return sql(rewritten.sql, *args, **kwargs)
    finally:
        for table in rewritten.tables:
            ctx.deregister_table(table)
