"""Shared fixtures: a registered context over real tables, a PostgreSQL
server, and result readers."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import psycopg
import pyarrow as pa
import pytest
from datafusion import SessionContext

import datafusion_autograd
from throwaway_postgres import throwaway_cluster


@pytest.fixture
def ctx() -> SessionContext:
    return datafusion_autograd.register(SessionContext())


@pytest.fixture
def points(ctx: SessionContext) -> dict[str, np.ndarray]:
    """``points(id, x, y)``: 40 noisy samples of y = 2.5·x − 1, registered on ``ctx``."""
    rng = np.random.default_rng(42)
    x = rng.uniform(0.5, 2.0, 40)
    y = 2.5 * x - 1.0 + rng.normal(0.0, 0.1, 40)
    data = {"id": np.arange(40), "x": x, "y": y}
    ctx.register_record_batches("points", [[pa.RecordBatch.from_pydict(data)]])
    return data


@pytest.fixture(scope="session")
def postgresql() -> Iterator[psycopg.Connection]:
    """A connection to a PostgreSQL server started for this test session in a
    temporary directory, and stopped at its end whatever the outcome."""
    with throwaway_cluster() as dsn, psycopg.connect(dsn, autocommit=True) as connection:
        yield connection


def column(ctx: SessionContext, sql: str, name: str | None = None) -> np.ndarray:
    """One column of a query's result (the first, unless named), as floats."""
    result = ctx.sql(sql).to_pydict()
    values = result[name] if name is not None else next(iter(result.values()))
    return np.array(values, dtype=float)
