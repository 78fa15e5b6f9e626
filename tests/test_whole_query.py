"""The loss in the statement, several parameters from one pass, Hessian-vector products,
``stop_gradient`` and typed errors, through the stock PyPI host: against numpy closed forms
and central differences.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from datafusion import SessionContext, col

import datafusion_autograd as ag

X = np.array([[1.0, 2.0, -1.0], [0.5, -0.5, 3.0], [-2.0, 1.5, 0.25], [0.75, 0.0, -1.25]])
W = np.array([0.5, -0.25, 1.5])
Y = np.array([1.0, -1.0, 0.5, 1.0])
B = 0.25

LOSS = """SELECT AVG(power(p.z + b.b - y.t, 2)) AS l
          FROM (SELECT x.s, SUM(x.v * w.w) AS z FROM x JOIN w ON x.i = w.i GROUP BY x.s) p
          JOIN y ON p.s = y.s CROSS JOIN b"""


def make(ctx: SessionContext, w: np.ndarray = W, b: float = B) -> SessionContext:
    s, i = np.indices(X.shape)
    tables = {
        "w": {"i": np.arange(3), "w": w},
        "b": {"k": np.array([0]), "b": np.array([b])},
        "x": {"s": s.ravel(), "i": i.ravel(), "v": X.ravel()},
        "y": {"s": np.arange(4), "t": Y},
    }
    for name, columns in tables.items():
        ctx.register_record_batches(name, [[pa.RecordBatch.from_pydict(columns)]])
    return ctx


def context() -> SessionContext:
    return make(ag.register(SessionContext()))


def residual(w: np.ndarray = W, b: float = B) -> np.ndarray:
    return X @ w + b - Y


def loss_of(w: np.ndarray = W, b: float = B) -> float:
    return float(np.mean(residual(w, b) ** 2))


def test_the_loss_as_a_cte_of_the_statement():
    ctx = context()
    got = ctx.sql(
        f"WITH loss AS ({LOSS}) SELECT i, w - 0.05 * grad((SELECT l FROM loss), w) AS w FROM w ORDER BY i"
    ).to_pydict()
    dw = 2 / len(Y) * X.T @ residual()
    np.testing.assert_allclose(got["w"], W - 0.05 * dw, rtol=1e-12)
    # The same in CREATE TABLE AS, INSERT … SELECT and a view.
    step = f"WITH loss AS ({LOSS}) SELECT i, w - 0.05 * grad((SELECT l FROM loss), w) AS w FROM w"
    ctx.sql(f"CREATE TABLE stepped AS {step}").collect()
    ctx.sql("CREATE TABLE inserted (i BIGINT, w DOUBLE)").collect()
    ctx.sql(f"INSERT INTO inserted {step}").collect()
    ctx.sql(f"CREATE VIEW stepping AS {step}").collect()
    for table in ("stepped", "inserted", "stepping"):
        stepped = ctx.sql(f"SELECT w FROM {table} ORDER BY i").to_pydict()["w"]
        np.testing.assert_allclose(stepped, W - 0.05 * dw, rtol=1e-12, err_msg=table)


def test_composes_with_the_calculus_of_the_row():
    ctx = context()
    got = ctx.sql("SELECT i, grad(w * (SELECT SUM(w * w) FROM w), w) AS g FROM w ORDER BY i").to_pydict()["g"]
    np.testing.assert_allclose(got, np.sum(W**2) + 2 * W**2, rtol=1e-12)
    sub = "(SELECT SUM(w * w * w) FROM w)"
    got = ctx.sql(f"SELECT i, vjp({sub}, q.w, 2.5) AS v, jvp({sub}, q.w, q.i + 1) AS j FROM w q ORDER BY i").to_pydict()
    np.testing.assert_allclose(got["v"], 2.5 * 3 * W**2, rtol=1e-12)
    np.testing.assert_allclose(got["j"], (np.arange(3) + 1) * 3 * W**2, rtol=1e-12)
    # A loss that does not read the column's table is a constant.
    constant = ctx.sql("SELECT grad(w * (SELECT SUM(v) FROM x), w) AS g FROM w").to_pydict()["g"]
    np.testing.assert_allclose(constant, np.full(3, X.sum()), rtol=1e-12)


def test_in_filters_and_aggregates():
    ctx = context()
    g = 2 / len(Y) * X.T @ residual()
    kept = ctx.sql(f"WITH loss AS ({LOSS}) SELECT i FROM w WHERE grad((SELECT l FROM loss), w) > 0 ORDER BY i")
    assert kept.to_pydict()["i"] == [i for i in range(len(W)) if g[i] > 0]
    summed = ctx.sql(f"WITH loss AS ({LOSS}) SELECT SUM(w * grad((SELECT l FROM loss), w)) AS s FROM w")
    np.testing.assert_allclose(summed.to_pydict()["s"], [W @ g], rtol=1e-12)


def test_several_parameters_from_one_statement_and_one_pass():
    ctx = context()
    got = ctx.sql(
        f"WITH loss AS ({LOSS}) "
        "SELECT 0 AS t, i, grad((SELECT l FROM loss), w) AS g FROM w "
        "UNION ALL SELECT 1, k, grad((SELECT l FROM loss), b) FROM b ORDER BY t, i"
    ).to_pydict()["g"]
    r = residual()
    expected = np.concatenate([2 / len(Y) * X.T @ r, [2 / len(Y) * r.sum()]])
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    both = ag.gradients(ctx, LOSS, ["w.w", "b.b"])
    assert list(both) == ["w.w", "b.b"]
    np.testing.assert_allclose(both["w.w"].sort(col("i")).to_pydict()["grad"], expected[:3], rtol=1e-12)
    np.testing.assert_allclose(both["b.b"].to_pydict()["grad"], expected[3:], rtol=1e-12)


def test_the_loss_read_again_is_the_row_the_pass_computed():
    """A training step's statement reads its loss again beside the gradients: the host reads
    that row where the reverse pass keeps it instead of computing the loss a second time."""
    ctx = context()
    statement = (
        f"WITH loss AS ({LOSS}) "
        "SELECT 'w' AS tensor, i, grad((SELECT l FROM loss), w) AS value FROM w "
        "UNION ALL SELECT 'b', k, grad((SELECT l FROM loss), b) FROM b "
        "UNION ALL SELECT 'loss', 0, l FROM loss ORDER BY tensor, i"
    )
    got = ctx.sql(statement).to_pydict()
    r = residual()
    assert got["tensor"] == ["b", "loss", "w", "w", "w"]
    expected = [2 / len(Y) * r.sum(), loss_of(), *(2 / len(Y) * X.T @ r)]
    np.testing.assert_allclose(got["value"], expected, rtol=1e-12)
    plan = "\n".join(ctx.sql(f"EXPLAIN {statement}").to_pydict()["plan"])
    # The host's plan reads three tables of the pass (the gradients of w and b, the loss's
    # row) and holds none of the loss's operators.
    assert plan.count("DataFusionAutogradExec") == 3, plan
    assert "avg(" not in plan, plan


def test_hessian_vector_products():
    ctx = context()
    ctx.register_record_batches("v", [[pa.RecordBatch.from_pydict({"i": [0, 2], "tangent": [1.0, -3.0]})]])
    v = np.array([1.0, 0.0, -3.0])
    hessian = 2 / len(Y) * X.T @ X
    for tangent, direction in (
        ("SELECT i, tangent FROM v", v),
        (ctx.table("v"), v),
        (0.5, np.full(3, 0.5)),
    ):
        got = ag.hvp(ctx, LOSS, "w.w", tangent).sort(col("i")).to_pydict()
        np.testing.assert_allclose(got["w"], W)
        np.testing.assert_allclose(got["grad"], 2 / len(Y) * X.T @ residual(), rtol=1e-12)
        np.testing.assert_allclose(got["hvp"], hessian @ direction, rtol=1e-12, atol=1e-15)
    # Curvature that is not constant: the logistic loss, against differences of the gradient.
    logistic = (
        "SELECT AVG(ln(1 + exp(-y.t * p.z))) + 0.05 * (SELECT SUM(w * w) FROM w) "
        "FROM (SELECT x.s, SUM(x.v * w.w) AS z FROM x JOIN w ON x.i = w.i GROUP BY x.s) p JOIN y ON p.s = y.s"
    )
    got = ag.hvp(ctx, logistic, "w.w", "SELECT i, tangent FROM v").sort(col("i")).to_pydict()["hvp"]
    h = 1e-5

    def gradient(weights: np.ndarray) -> np.ndarray:
        moved = make(SessionContext(), weights)
        return np.array(ag.gradient(moved, logistic, "w.w").sort(col("i")).to_pydict()["grad"])

    np.testing.assert_allclose(got, (gradient(W + h * v) - gradient(W - h * v)) / (2 * h), rtol=1e-6, atol=1e-9)


def test_stop_gradient():
    ctx = context()
    got = ctx.sql("SELECT w, grad(w * stop_gradient(w), w) AS g, stop_gradient(w) AS s FROM w ORDER BY i").to_pydict()
    np.testing.assert_allclose(got["g"], W)
    np.testing.assert_allclose(got["s"], W)
    grad = ag.gradient(ctx, "SELECT SUM(w * stop_gradient(w)) FROM w", "w.w").sort(col("i")).to_pydict()["grad"]
    np.testing.assert_allclose(grad, W)


def test_typed_errors():
    ctx = context()
    cases = [
        (ag.UnsupportedOperation, lambda: ag.gradient(ctx, "SELECT SUM(w) FROM (SELECT w FROM w LIMIT 2) t", "w.w")),
        (ag.UnsupportedOperation, lambda: ctx.sql("SELECT grad(grad((SELECT SUM(w * w) FROM w), w), w) FROM w")),
        (ag.UnsupportedOperation, lambda: ag.differentiate("nanvl(x, 1.0)", "x")),
        (ag.NotALoss, lambda: ag.gradient(ctx, "SELECT w FROM w", "w.w")),
        (ag.NotALoss, lambda: ag.gradient(ctx, "SELECT SUM(w) AS a, SUM(w) AS b FROM w", "w.w")),
        (ag.UnknownParameter, lambda: ag.gradient(ctx, "SELECT SUM(w) FROM w", "nope.w")),
        (ag.UnknownParameter, lambda: ag.gradient(ctx, "SELECT SUM(w) FROM w", "w.nope")),
        (ag.LimitExceeded, lambda: ag.register(SessionContext(), max_derivative_nodes=5).sql(
            "SELECT grad(exp(exp(exp(x))), x) FROM (VALUES (1.0)) AS t(x)"
        )),
    ]
    for kind, action in cases:
        with pytest.raises(kind) as raised:
            action()
        assert isinstance(raised.value, ag.AutogradError)
        assert "External error" not in str(raised.value)
