"""``differentiate`` and ``rewrite_sql``: SQL out that evaluates to the right numbers."""

import numpy as np
import pytest

from conftest import column
from datafusion_autograd import AutogradError, differentiate, rewrite_sql


@pytest.mark.parametrize(
    "expr, wrt, reference",
    [
        ("x * x * y", "x", lambda x, y: 2 * x * y),
        ("exp(x / y)", "y", lambda x, y: -x / y**2 * np.exp(x / y)),
        ("CASE WHEN x > 1 THEN power(x, 3) ELSE -x END", "x", lambda x, y: np.where(x > 1, 3 * x * x, -1.0)),
        ("greatest(x, y) * sqrt(x)", "x", lambda x, y: np.where(x >= y, 1.5 * np.sqrt(x), 0.5 * y / np.sqrt(x))),
        ("grad(sin(x) * y, x)", "x", lambda x, y: -np.sin(x) * y),
    ],
)
def test_differentiate_round_trip(ctx, points, expr, wrt, reference):
    derivative = differentiate(expr, wrt)
    got = column(ctx, f"SELECT {derivative} FROM points ORDER BY id")
    np.testing.assert_allclose(got, reference(points["x"], points["y"]), rtol=1e-12)


def test_rewrite_sql_keeps_the_rest_of_the_text():
    sql = "SELECT id,\n  grad(x * y, y) AS d -- grad(x, x)\nFROM points WHERE note <> 'vjp(x)'"
    rewritten = rewrite_sql(sql)
    assert rewritten.startswith("SELECT id,\n  (")
    assert rewritten.endswith(") AS d -- grad(x, x)\nFROM points WHERE note <> 'vjp(x)'")
    assert "grad(x * y" not in rewritten
    assert rewrite_sql("SELECT 1 -- no markers") == "SELECT 1 -- no markers"


def test_rewritten_sql_runs_on_a_plain_context(points):
    from datafusion import SessionContext
    import pyarrow as pa

    plain = SessionContext()
    plain.register_record_batches("points", [[pa.RecordBatch.from_pydict(points)]])
    sql = "SELECT jvp(grad(x * x * x, x), x, y) FROM points ORDER BY id"
    got = column(plain, rewrite_sql(sql))
    np.testing.assert_allclose(got, 6 * points["x"] * points["y"], rtol=1e-12)


def test_errors_name_the_problem():
    with pytest.raises(AutogradError, match="no derivative rule for 'nanvl'"):
        differentiate("nanvl(x, 1.0)", "x")
    with pytest.raises(AutogradError, match="must be a column name"):
        differentiate("x * x", "x + 1")
    with pytest.raises(AutogradError, match=r"grad\(expression, column\) takes 2 arguments, got 3"):
        rewrite_sql("SELECT grad(x, x, x) FROM t")
    with pytest.raises(AutogradError, match="unbalanced parentheses"):
        rewrite_sql("SELECT grad(x, x FROM t")
    with pytest.raises(AutogradError, match="invalid SQL expression"):
        differentiate("x +", "x")
