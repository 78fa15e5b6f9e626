"""The DataFrame API: grad/jvp/vjp on datafusion.Expr, checked against numpy."""

import numpy as np
import pytest
from datafusion import Expr, col, lit
from datafusion import functions as f

import datafusion_autograd
from datafusion_autograd import AutogradError, grad, jvp, vjp


def test_grad_jvp_vjp_in_select(ctx, points):
    x, y = points["x"], points["y"]
    loss = f.power(col("x") * lit(2.5) - col("y"), lit(2))
    df = ctx.table("points").sort(col("id")).select(
        grad(loss, "x").alias("gx"),
        grad(loss, col("y")).alias("gy"),
        jvp(f.exp(col("x")) * col("y"), "x", col("y")).alias("j"),
        vjp(f.sin(col("x")), "x", 3).alias("v"),
        grad(grad(f.cos(col("x")), "x"), "x").alias("second"),
    )
    got = df.to_pydict()
    residual = 2.5 * x - y
    np.testing.assert_allclose(got["gx"], 5 * residual, rtol=1e-12)
    np.testing.assert_allclose(got["gy"], -2 * residual, rtol=1e-12)
    np.testing.assert_allclose(got["j"], np.exp(x) * y * y, rtol=1e-12)
    np.testing.assert_allclose(got["v"], 3 * np.cos(x), rtol=1e-12)
    np.testing.assert_allclose(got["second"], -np.cos(x), rtol=1e-12)


def test_result_is_a_plain_expr_usable_anywhere(ctx, points):
    d = grad(col("x") * col("x"), "x")
    assert isinstance(d, Expr)
    got = ctx.table("points").filter(d > lit(3.0)).aggregate([], [f.count(col("id")).alias("n")]).to_pydict()
    assert got["n"] == [int(np.sum(2 * points["x"] > 3.0))]


def test_errors_carry_the_engine_message():
    with pytest.raises(AutogradError, match="no derivative rule for 'nanvl'"):
        grad(f.nanvl(col("x"), lit(0.0)), "x")
    with pytest.raises(AutogradError, match="must be a column reference"):
        grad(col("x") * col("x"), col("x") + lit(1))
    assert issubclass(datafusion_autograd.AutogradError, ValueError)
