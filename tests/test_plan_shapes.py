"""The markers everywhere a scalar expression can stand, through the stock PyPI host."""

import numpy as np
import pyarrow as pa

from conftest import column


def test_several_markers_per_row(ctx, points):
    got = ctx.sql(
        "SELECT grad(x * x * y, x) AS gx, grad(x * x * y, y) AS gy, jvp(sin(x), x, 2.5) AS j, "
        "vjp(exp(x * y), x, y) AS v FROM points ORDER BY id"
    ).to_pydict()
    x, y = points["x"], points["y"]
    np.testing.assert_allclose(got["gx"], 2 * x * y, rtol=1e-12)
    np.testing.assert_allclose(got["gy"], x * x, rtol=1e-12)
    np.testing.assert_allclose(got["j"], 2.5 * np.cos(x), rtol=1e-12)
    np.testing.assert_allclose(got["v"], y * y * np.exp(x * y), rtol=1e-12)


def test_jvp_and_vjp_semantics(ctx, points):
    x, y = points["x"], points["y"]
    # jvp: derivative along a per-row tangent; vjp: cotangent times the gradient.
    jvp = column(ctx, "SELECT jvp(x * x * y, x, y + 1) FROM points ORDER BY id")
    vjp = column(ctx, "SELECT vjp(x * x * y, x, y + 1) FROM points ORDER BY id")
    np.testing.assert_allclose(jvp, 2 * x * y * (y + 1), rtol=1e-12)
    np.testing.assert_allclose(vjp, (y + 1) * 2 * x * y, rtol=1e-12)


def test_third_order(ctx, points):
    x = points["x"]
    got = column(ctx, "SELECT grad(grad(grad(power(x, 5) + sin(x), x), x), x) FROM points ORDER BY id")
    np.testing.assert_allclose(got, 60 * x**2 - np.cos(x), rtol=1e-12)


def test_aggregates_of_gradients(ctx, points):
    x, y = points["x"], points["y"]
    got = ctx.sql(
        "SELECT SUM(grad(x * x, x)) AS s, AVG(grad(power(2 * x - y, 2), x)) AS a FROM points"
    ).to_pydict()
    np.testing.assert_allclose(got["s"], [np.sum(2 * x)], rtol=1e-12)
    np.testing.assert_allclose(got["a"], [np.mean(4 * (2 * x - y))], rtol=1e-12)


def test_insert_select_then_read_back(ctx, points):
    ctx.sql("CREATE TABLE slopes (id BIGINT, d DOUBLE)").collect()
    ctx.sql("INSERT INTO slopes SELECT id, grad(x * ln(x), x) FROM points").collect()
    got = column(ctx, "SELECT d FROM slopes ORDER BY id")
    np.testing.assert_allclose(got, np.log(points["x"]) + 1, rtol=1e-12)


def test_create_table_as_and_views(ctx, points):
    ctx.sql("CREATE TABLE ctas AS SELECT id, grad(tanh(x), x) AS d FROM points").collect()
    ctx.sql("CREATE VIEW slope_view AS SELECT id, grad(atan(x), x) AS d FROM points").collect()
    x = points["x"]
    np.testing.assert_allclose(column(ctx, "SELECT d FROM ctas ORDER BY id"), 1 - np.tanh(x) ** 2, rtol=1e-12)
    np.testing.assert_allclose(column(ctx, "SELECT d FROM slope_view ORDER BY id"), 1 / (1 + x * x), rtol=1e-12)


def test_every_subquery_kind(ctx, points):
    x, y = points["x"], points["y"]
    scalar = column(ctx, "SELECT (SELECT AVG(grad(q.x * q.x, q.x)) FROM points q) FROM points")
    np.testing.assert_allclose(scalar, np.full(40, np.mean(2 * x)), rtol=1e-12)

    correlated = column(
        ctx,
        "SELECT (SELECT SUM(grad(q.x * q.y * q.y, q.y)) FROM points q WHERE q.id = p.id) "
        "FROM points p ORDER BY p.id",
    )
    np.testing.assert_allclose(correlated, 2 * x * y, rtol=1e-12)

    expected = np.flatnonzero(2 * x > 2.5)
    in_ids = column(ctx, "SELECT id FROM points WHERE id IN (SELECT id FROM points WHERE grad(x * x, x) > 2.5) ORDER BY id")
    exists_ids = column(
        ctx,
        "SELECT p.id FROM points p WHERE EXISTS "
        "(SELECT 1 FROM points q WHERE q.id = p.id AND grad(q.x * q.x, q.x) > 2.5) ORDER BY p.id",
    )
    assert 0 < len(expected) < 40
    np.testing.assert_array_equal(in_ids, expected)
    np.testing.assert_array_equal(exists_ids, expected)


def test_qualified_names_joins_and_quoted_identifiers(ctx, points):
    rng = np.random.default_rng(7)
    other = {"id": np.arange(40), "x": rng.uniform(1, 2, 40), "Speed": rng.uniform(1, 3, 40)}
    ctx.register_record_batches("other", [[pa.RecordBatch.from_pydict(other)]])
    got = ctx.sql(
        'SELECT grad(p.x * o.x, p.x) AS a, grad(p.x * o.x, o.x) AS b, '
        'grad(o."Speed" * o."Speed" * p.x, o."Speed") AS c '
        "FROM points p JOIN other o ON p.id = o.id ORDER BY p.id"
    ).to_pydict()
    np.testing.assert_allclose(got["a"], other["x"], rtol=1e-12)
    np.testing.assert_allclose(got["b"], points["x"], rtol=1e-12)
    np.testing.assert_allclose(got["c"], 2 * other["Speed"] * points["x"], rtol=1e-12)


def test_comments_and_strings_that_mention_grad_are_left_alone(ctx, points):
    got = ctx.sql(
        "SELECT 'grad(x, x)' AS label, -- grad(y, y) in a comment\n"
        "       /* jvp(x, x, 1) */ grad(x * x, x) AS d, \"grad\" FROM "
        "(SELECT x, 'vjp(a)' AS \"grad\" FROM points) ORDER BY x"
    ).to_pydict()
    assert set(got["label"]) == {"grad(x, x)"}
    assert set(got["grad"]) == {"vjp(a)"}
    np.testing.assert_allclose(got["d"], 2 * np.sort(points["x"]), rtol=1e-12)


def test_integer_columns_and_nulls(ctx):
    ctx.register_record_batches(
        "ints", [[pa.RecordBatch.from_pydict({"i": pa.array([3, -5, None], pa.int64()), "j": pa.array([2, 4, 7], pa.int32())})]]
    )
    got = ctx.sql("SELECT grad(i / j, j) AS a, grad(i * i, i) AS b FROM ints").to_pydict()
    assert got["a"][:2] == [-3 / 4, 5 / 16] and got["a"][2] is None
    assert got["b"][:2] == [6.0, -10.0] and got["b"][2] is None


def test_non_numeric_columns_in_conditions(ctx, points):
    labels = pa.array(["a" if i % 2 else "b" for i in range(40)])
    table = pa.RecordBatch.from_pydict({"id": points["id"], "x": points["x"], "label": labels})
    ctx.register_record_batches("labelled", [[table]])
    got = column(ctx, "SELECT grad(CASE WHEN label = 'a' THEN x * x ELSE 3 * x END, x) FROM labelled ORDER BY id")
    np.testing.assert_allclose(got, np.where(np.arange(40) % 2 == 1, 2 * points["x"], 3.0), rtol=1e-12)
