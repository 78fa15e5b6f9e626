"""Gradient descent written as one recursive CTE, against numpy's least squares."""

from pathlib import Path

import numpy as np

from conftest import column

TRAINING_LOOP = (Path(__file__).parents[1] / "crates/autograd/examples/least_squares.sql").read_text()


def test_recursive_cte_converges_to_least_squares(ctx, points):
    fit = ctx.sql(TRAINING_LOOP).to_pydict()
    design = np.column_stack([points["x"], np.ones_like(points["x"])])
    (a, b), *_ = np.linalg.lstsq(design, points["y"], rcond=None)
    np.testing.assert_allclose(fit["a"], [a], rtol=1e-8)
    np.testing.assert_allclose(fit["b"], [b], rtol=1e-8)


def test_each_recursive_step_is_a_gradient_step(ctx, points):
    """The SQL trajectory equals numpy gradient descent step by step."""
    sql = TRAINING_LOOP.replace("SELECT a, b FROM fit WHERE step = 600", "SELECT step, a, b FROM fit ORDER BY step")
    sql = sql.replace("step < 600", "step < 25")
    got = ctx.sql(sql).to_pydict()
    x, y = points["x"], points["y"]
    a = b = 0.0
    expected = [(a, b)]
    for _ in range(25):
        residual = a * x + b - y
        a, b = a - 0.3 * np.mean(2 * residual * x), b - 0.3 * np.mean(2 * residual)
        expected.append((a, b))
    np.testing.assert_allclose(np.column_stack([got["a"], got["b"]]), expected, rtol=1e-12, atol=1e-14)
    assert column(ctx, "SELECT COUNT(*) FROM points")[0] == 40
