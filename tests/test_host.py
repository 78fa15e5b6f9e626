"""How the stock PyPI host and a reverse pass meet: each table of the pass reaches the host as
one partition (the host converts its task context across FFI for every partition it
executes), and the host's tables are read on threads kept between reads. Values against
numpy's closed form."""

from __future__ import annotations

import os
import threading
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
from datafusion import SessionConfig, SessionContext

import datafusion_autograd as ag
import datafusion_autograd.context
from datafusion_autograd import tables

SAMPLES, FEATURES = 64, 8
RNG = np.random.default_rng(7)
X = RNG.normal(size=(SAMPLES, FEATURES))
W = RNG.normal(size=FEATURES)
T = RNG.normal(size=SAMPLES)
LOSS = """SELECT AVG(power(p.z - y.t, 2)) AS l
          FROM (SELECT x.s, SUM(x.v * w.w) AS z FROM x JOIN w ON x.i = w.i GROUP BY x.s) p
          JOIN y ON p.s = y.s"""
STATEMENT = f"WITH loss AS ({LOSS}) SELECT i, grad((SELECT l FROM loss), w) AS g FROM w"


def expected() -> np.ndarray:
    return 2 / SAMPLES * X.T @ (X @ W - T)


def with_tables(ctx: SessionContext) -> SessionContext:
    """``x``, ``w`` and ``y``, each in two partitions, on a registered ``ctx``."""
    s, i = np.indices(X.shape)
    columns = {
        "x": {"s": s.ravel(), "i": i.ravel(), "v": X.ravel()},
        "w": {"i": np.arange(FEATURES), "w": W},
        "y": {"s": np.arange(SAMPLES), "t": T},
    }
    for name, data in columns.items():
        table = pa.table(data)
        batches = table.to_batches(max_chunksize=(table.num_rows + 1) // 2)
        ctx.register_record_batches(name, [batches[:1], batches[1:]])
    return ctx


def nodes(plan: Any) -> Iterator[Any]:
    yield plan
    for child in plan.children():
        yield from nodes(child)


def partitions_of_ours(frame: Any) -> list[int]:
    """The partition count of every table of the pass in the host's physical plan of ``frame``."""
    plan = frame.execution_plan()
    return [node.partition_count for node in nodes(plan) if "DataFusionAutogradExec" in node.display()]


def test_a_table_of_the_pass_reaches_the_host_as_one_partition():
    ctx = with_tables(ag.register(SessionContext(SessionConfig().with_target_partitions(4))))
    frame = ctx.sql(STATEMENT)
    ours = partitions_of_ours(frame)
    assert ours, frame.execution_plan().display_indent()
    assert ours == [1] * len(ours)
    got = ctx.sql(f"{STATEMENT} ORDER BY i").to_pydict()
    np.testing.assert_allclose(got["g"], expected(), rtol=1e-12)
    # Read as a DataFrame of gradient(), too.
    assert partitions_of_ours(ag.gradient(ctx, LOSS, "w.w")) == [1]


def test_the_host_tables_are_read_on_threads_kept_between_reads(monkeypatch):
    """Every read of a host table asks Python for its rows on the thread that reads it. A
    thread made for each read would be a new thread for every read; kept threads are new only
    while more reads run at once than ever before, so at most one statement's reads."""
    readers: list[int] = []

    def observed_fetcher(ctx: SessionContext) -> tables.Fetch:
        fetch = tables.fetcher(ctx)

        def observed(name: str) -> Any:
            rows, size = fetch(name)

            def observed_rows(columns: list[str]) -> Any:
                readers.append(threading.get_native_id())
                return rows(columns)

            return observed_rows, size

        return observed

    monkeypatch.setattr(datafusion_autograd.context, "fetcher", observed_fetcher)
    ctx = with_tables(ag.register(SessionContext()))
    statement = f"{STATEMENT} ORDER BY i"
    ctx.sql(statement).collect()
    existing = {int(task) for task in os.listdir("/proc/self/task")}
    readers.clear()
    per_statement = []
    for _ in range(8):
        before = len(readers)
        got = ctx.sql(statement).to_pydict()
        np.testing.assert_allclose(got["g"], expected(), rtol=1e-12)
        per_statement.append(len(readers) - before)
    assert min(per_statement) > 0, per_statement
    new = set(readers) - existing
    assert len(new) <= max(per_statement) < len(readers), (len(new), per_statement)
    assert threading.get_native_id() not in readers
