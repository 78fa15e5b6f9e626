"""Eight Python threads on one stock ``SessionContext`` registered with
``datafusion_autograd.register``: SQL with grad, jvp and vjp (through the
bridge), the DataFrame API and ``gradient()``, every result checked with numpy.
Threads start together and run different queries with different constants
at the same moment."""

from __future__ import annotations

import threading
import traceback

import numpy as np
import pyarrow as pa
from datafusion import col, lit
from datafusion import functions as f

import datafusion_autograd as ag

THREADS = 8
QUERIES_PER_THREAD = 12


def test_eight_threads_on_one_registered_context(ctx, points):
    x, y = points["x"], points["y"]
    w = np.linspace(-2.0, 2.0, 16)
    ctx.register_record_batches("w", [[pa.RecordBatch.from_pydict({"i": np.arange(16), "w": w})]])

    def sql(query: str) -> np.ndarray:
        return np.array(next(iter(ctx.sql(query).to_pydict().values())), dtype=float)

    def frame(expr) -> np.ndarray:
        result = ctx.table("points").sort(col("id")).select(expr.alias("d")).to_pydict()
        return np.array(result["d"], dtype=float)

    def query(kind: int, k: float) -> tuple[np.ndarray, np.ndarray]:
        """(result, expected) of one kind of query, with the constant k."""
        if kind == 0:
            return sql(f"SELECT grad(sin(x) * y * {k}, x) FROM points ORDER BY id"), k * y * np.cos(x)
        if kind == 1:
            return sql(f"SELECT jvp(exp(x * y), x, {k}) FROM points ORDER BY id"), k * y * np.exp(x * y)
        if kind == 2:
            return sql(f"SELECT vjp(power(x, 3) * y, y, {k}) FROM points ORDER BY id"), k * x**3
        if kind == 3:
            return frame(ag.grad(f.sin(col("x")) * lit(k) * col("y"), "x")), k * y * np.cos(x)
        if kind == 4:
            return frame(ag.vjp(ag.grad(col("x") * col("x") * col("x"), "x"), "x", k)), 6 * k * x
        if kind == 5:
            loss = f"SELECT SUM({k} * w * w * w) FROM w"
            return sql(f"SELECT grad FROM gradient('{loss}', 'w.w') ORDER BY i"), 3 * k * w * w
        return (
            sql(f"SELECT SUM(grad(power({k} * x - y, 2), x)) FROM points"),
            np.array([np.sum(2 * k * (k * x - y))]),
        )

    start = threading.Barrier(THREADS)
    failures: list[str] = []
    completed = [0] * THREADS

    def worker(thread: int) -> None:
        try:
            start.wait()
            for n in range(QUERIES_PER_THREAD):
                k = thread + 1 + (n % 3) * 0.25
                got, expected = query((thread + n) % 7, k)
                np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
                completed[thread] += 1
        except BaseException:
            failures.append(f"thread {thread}:\n{traceback.format_exc()}")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, "\n".join(failures)
    assert completed == [QUERIES_PER_THREAD] * THREADS
