"""Fit a line by gradient descent in one SQL statement, from Python.

The statement is a recursive CTE whose recursive term differentiates the
mean squared error with ``grad`` and steps against it; DataFusion runs the
whole loop. Run with ``bash scripts/dev.sh train``.
"""

from pathlib import Path

import numpy as np
import pyarrow as pa

from datafusion_autograd import AutogradContext

TRAINING_LOOP = (Path(__file__).parents[1] / "crates/autograd/examples/least_squares.sql").read_text()


def main() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0.5, 2.0, 500)
    y = 2.5 * x - 1.0 + rng.normal(0.0, 0.1, x.size)

    ctx = AutogradContext()
    ctx.register_record_batches("points", [[pa.RecordBatch.from_pydict({"x": x, "y": y})]])
    print(TRAINING_LOOP.strip(), end="\n\n")
    fit = ctx.sql(TRAINING_LOOP).to_pydict()
    a, b = fit["a"][0], fit["b"][0]

    (a_star, b_star), *_ = np.linalg.lstsq(np.column_stack([x, np.ones_like(x)]), y, rcond=None)
    print(f"fitted by SQL gradient descent: y = {a:.6f}·x {b:+.6f}")
    print(f"numpy least squares:            y = {a_star:.6f}·x {b_star:+.6f}")
    print(f"difference: |Δa| = {abs(a - a_star):.1e}, |Δb| = {abs(b - b_star):.1e}")


if __name__ == "__main__":
    main()
