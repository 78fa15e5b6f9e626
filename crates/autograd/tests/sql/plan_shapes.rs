//! The markers in every place a scalar expression can stand.

use datafusion::prelude::SessionContext;

use crate::common::{assert_close, column, context, register, rows, Rng};

/// `pts(id, x, y)`: 20 points on a noisy line y ≈ 3x − 1.
fn points(ctx: &SessionContext) -> (Vec<f64>, Vec<f64>) {
    let mut rng = Rng::new(11);
    let xs: Vec<f64> = (0..20).map(|_| rng.uniform(0.5, 2.0)).collect();
    let ys: Vec<f64> = xs
        .iter()
        .map(|x| 3.0 * x - 1.0 + rng.uniform(-0.2, 0.2))
        .collect();
    register(
        ctx,
        "pts",
        &[
            ("x", xs.iter().map(|&v| Some(v)).collect()),
            ("y", ys.iter().map(|&v| Some(v)).collect()),
        ],
    );
    (xs, ys)
}

#[tokio::test]
async fn several_markers_per_row() {
    let ctx = context();
    let (xs, ys) = points(&ctx);
    let got = rows(
        &ctx,
        "SELECT grad(x * x * y, x), grad(x * x * y, y), jvp(sin(x), x, 2.5), \
                vjp(exp(x * y), x, y), jvp(x * y, y, x + 1) \
         FROM pts ORDER BY id",
    )
    .await;
    for ((r, &x), &y) in got.iter().zip(&xs).zip(&ys) {
        let r: Vec<f64> = r.iter().map(|v| v.unwrap()).collect();
        assert_close(r[0], 2.0 * x * y, 1e-12, "∂(x²y)/∂x");
        assert_close(r[1], x * x, 1e-12, "∂(x²y)/∂y");
        assert_close(r[2], x.cos() * 2.5, 1e-12, "jvp sin");
        assert_close(r[3], y * y * (x * y).exp(), 1e-12, "vjp exp");
        assert_close(r[4], x * (x + 1.0), 1e-12, "jvp with an expression tangent");
    }
}

#[tokio::test]
async fn second_and_third_order() {
    let ctx = context();
    let (xs, ys) = points(&ctx);
    let got = rows(
        &ctx,
        "SELECT grad(grad(x * x * x * y, x), x), \
                grad(grad(grad(power(x, 4), x), x), x), \
                grad(grad(grad(sin(x * y), x), x), y), \
                grad(grad(exp(x) / y, x), y) \
         FROM pts ORDER BY id",
    )
    .await;
    for ((r, &x), &y) in got.iter().zip(&xs).zip(&ys) {
        let r: Vec<f64> = r.iter().map(|v| v.unwrap()).collect();
        assert_close(r[0], 6.0 * x * y, 1e-12, "∂²(x³y)/∂x²");
        assert_close(r[1], 24.0 * x, 1e-12, "∂³x⁴/∂x³");
        // ∂²/∂x² sin(xy) = −y² sin(xy); then ∂/∂y.
        let d3 = -2.0 * y * (x * y).sin() - y * y * x * (x * y).cos();
        assert_close(r[2], d3, 1e-10, "∂³ sin(xy)/∂x²∂y");
        assert_close(r[3], -x.exp() / (y * y), 1e-12, "∂²(eˣ/y)/∂x∂y");
    }
}

#[tokio::test]
async fn aggregates_of_gradients() {
    let ctx = context();
    let (xs, ys) = points(&ctx);
    let got = rows(
        &ctx,
        "SELECT SUM(grad(x * x, x)), AVG(grad(power(y - 2 * x, 2), x)), \
                MAX(grad(sin(x), x)), COUNT(grad(x, x)) FROM pts",
    )
    .await;
    let r: Vec<f64> = got[0].iter().map(|v| v.unwrap()).collect();
    let n = xs.len() as f64;
    assert_close(r[0], xs.iter().map(|x| 2.0 * x).sum(), 1e-12, "SUM(grad)");
    let avg: f64 = xs
        .iter()
        .zip(&ys)
        .map(|(x, y)| -4.0 * (y - 2.0 * x))
        .sum::<f64>()
        / n;
    assert_close(r[1], avg, 1e-12, "AVG(grad)");
    assert_close(
        r[2],
        xs.iter().map(|x| x.cos()).fold(f64::MIN, f64::max),
        1e-12,
        "MAX(grad)",
    );
    assert_eq!(r[3], n);
}

/// Closed-form least squares for y ≈ a·x + b.
fn least_squares(xs: &[f64], ys: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    let a = sxy / sxx;
    (a, my - a * mx)
}

/// The training loop the `train` example runs: gradient descent as one
/// statement, differentiating the loss inside the recursive term.
const TRAINING_LOOP: &str = include_str!("../../examples/least_squares.sql");

#[tokio::test]
async fn gradient_descent_in_one_recursive_cte() {
    let ctx = context();
    let (xs, ys) = points(&ctx);
    ctx.sql("CREATE VIEW points AS SELECT x, y FROM pts")
        .await
        .unwrap();
    let got = rows(&ctx, TRAINING_LOOP).await;
    let (a, b) = least_squares(&xs, &ys);
    assert_close(got[0][0].unwrap(), a, 1e-8, "slope");
    assert_close(got[0][1].unwrap(), b, 1e-8, "intercept");
}

#[tokio::test]
async fn insert_ctas_and_views() {
    let ctx = context();
    let (xs, _) = points(&ctx);
    rows(&ctx, "CREATE TABLE slopes (id BIGINT, d DOUBLE)").await;
    rows(
        &ctx,
        "INSERT INTO slopes SELECT id, grad(x * x * x, x) FROM pts",
    )
    .await;
    let inserted = column(&ctx, "SELECT d FROM slopes ORDER BY id").await;
    rows(
        &ctx,
        "CREATE TABLE ctas AS SELECT id, grad(exp(2 * x), x) AS d FROM pts",
    )
    .await;
    let created = column(&ctx, "SELECT d FROM ctas ORDER BY id").await;
    rows(
        &ctx,
        "CREATE VIEW v AS SELECT id, grad(ln(x), x) AS d FROM pts",
    )
    .await;
    let viewed = column(&ctx, "SELECT d FROM v ORDER BY id").await;
    for (i, &x) in xs.iter().enumerate() {
        assert_close(inserted[i], 3.0 * x * x, 1e-12, "INSERT … SELECT grad");
        assert_close(created[i], 2.0 * (2.0 * x).exp(), 1e-12, "CREATE TABLE AS");
        assert_close(viewed[i], 1.0 / x, 1e-12, "CREATE VIEW");
    }
}

#[tokio::test]
async fn subqueries_of_every_kind() {
    let ctx = context();
    let (xs, ys) = points(&ctx);
    let n = xs.len();

    let scalar = column(
        &ctx,
        "SELECT (SELECT AVG(grad(q.x * q.x, q.x)) FROM pts q) FROM pts",
    )
    .await;
    let mean_2x = xs.iter().map(|x| 2.0 * x).sum::<f64>() / n as f64;
    assert_eq!(scalar.len(), n);
    scalar
        .iter()
        .for_each(|&v| assert_close(v, mean_2x, 1e-12, "scalar subquery"));

    // Correlated: a derivative over the inner rows, and one by an outer column.
    let correlated = column(
        &ctx,
        "SELECT (SELECT SUM(grad(q.x * q.y * q.y, q.y)) FROM pts q WHERE q.id = p.id) \
         FROM pts p ORDER BY p.id",
    )
    .await;
    for (i, &v) in correlated.iter().enumerate() {
        assert_close(v, 2.0 * xs[i] * ys[i], 1e-12, "correlated scalar subquery");
    }
    let outer = column(
        &ctx,
        "SELECT p.id FROM pts p WHERE EXISTS \
         (SELECT 1 FROM pts q WHERE q.id = p.id + 1 AND grad(q.y * p.x * p.x, p.x) > 8) ORDER BY p.id",
    )
    .await;
    let expected: Vec<f64> = (0..n - 1)
        .filter(|&i| 2.0 * ys[i + 1] * xs[i] > 8.0)
        .map(|i| i as f64)
        .collect();
    assert!(!expected.is_empty() && expected.len() < n - 1);
    assert_eq!(
        outer, expected,
        "correlated EXISTS, differentiating by an outer column"
    );

    let expected: Vec<f64> = (0..n)
        .filter(|&i| 2.0 * xs[i] > 2.5)
        .map(|i| i as f64)
        .collect();
    let in_ids = column(&ctx, "SELECT id FROM pts WHERE id IN (SELECT id FROM pts WHERE grad(x * x, x) > 2.5) ORDER BY id").await;
    assert_eq!(in_ids, expected, "IN subquery");
    let exists_ids = column(
        &ctx,
        "SELECT p.id FROM pts p WHERE EXISTS \
         (SELECT 1 FROM pts q WHERE q.id = p.id AND grad(q.x * q.x, q.x) > 2.5) ORDER BY p.id",
    )
    .await;
    assert_eq!(exists_ids, expected, "EXISTS subquery");
    let filtered = column(
        &ctx,
        "SELECT id FROM pts WHERE grad(x * x, x) > 2.5 ORDER BY id",
    )
    .await;
    assert_eq!(filtered, expected, "WHERE");
}

#[tokio::test]
async fn qualified_columns_and_joins() {
    let ctx = context();
    let (xs, ys) = points(&ctx);
    let ws: Vec<f64> = xs.iter().map(|x| 1.0 / x).collect();
    register(
        &ctx,
        "b",
        &[
            ("x", ws.iter().map(|&v| Some(v)).collect()),
            ("w", ys.iter().map(|&v| Some(v)).collect()),
        ],
    );
    let got = rows(
        &ctx,
        "SELECT grad(a.x * b.w, b.w), grad(a.x * b.x, a.x), grad(a.x * b.x, b.x), \
                grad(sin(a.x) * b.x, a.x) \
         FROM pts a JOIN b ON a.id = b.id ORDER BY a.id",
    )
    .await;
    for (i, r) in got.iter().enumerate() {
        assert_close(r[0].unwrap(), xs[i], 1e-12, "∂(a.x·b.w)/∂b.w");
        assert_close(r[1].unwrap(), ws[i], 1e-12, "same-named columns: ∂/∂a.x");
        assert_close(r[2].unwrap(), xs[i], 1e-12, "same-named columns: ∂/∂b.x");
        assert_close(
            r[3].unwrap(),
            xs[i].cos() * ws[i],
            1e-12,
            "∂(sin(a.x)·b.x)/∂a.x",
        );
    }
}

#[tokio::test]
async fn integer_columns_are_differentiated_as_reals() {
    let ctx = context();
    rows(&ctx, "CREATE TABLE ints AS SELECT CAST(column1 AS BIGINT) AS i, CAST(column2 AS INT) AS j FROM (VALUES (3, 2), (-5, 4), (7, -3))").await;
    let got = rows(
        &ctx,
        "SELECT i, j, grad(i * i, i), grad(i / j, i), grad(i / j, j), grad(sin(i), i), \
                grad(i * j + 1, j), grad(CAST(i AS INT) * j, i), jvp(i * i, i, j) \
         FROM ints",
    )
    .await;
    for r in got {
        let r: Vec<f64> = r.iter().map(|v| v.unwrap()).collect();
        let (i, j) = (r[0], r[1]);
        assert_close(r[2], 2.0 * i, 1e-12, "∂i²/∂i");
        assert_close(r[3], 1.0 / j, 1e-12, "∂(i/j)/∂i");
        assert_close(r[4], -i / (j * j), 1e-12, "∂(i/j)/∂j");
        assert_close(r[5], i.cos(), 1e-12, "∂sin(i)/∂i");
        assert_close(r[6], i, 1e-12, "∂(ij+1)/∂j");
        assert_close(r[7], j, 1e-12, "an integer-to-integer cast is exact");
        assert_close(r[8], 2.0 * i * j, 1e-12, "jvp with an integer tangent");
    }
}

#[tokio::test]
async fn null_rows() {
    let ctx = context();
    register(
        &ctx,
        "n",
        &[
            ("x", vec![Some(2.0), None, Some(-1.0), None]),
            ("y", vec![Some(5.0), Some(3.0), None, None]),
        ],
    );
    let got = rows(
        &ctx,
        "SELECT grad(x * x, x), grad(coalesce(x, y * y), y), grad(coalesce(x, y * y), x), \
                grad(nullif(x, 2.0) * 3, x), grad(greatest(x, y), x), grad(least(x, y), y) \
         FROM n ORDER BY id",
    )
    .await;
    // greatest/least skip NULL arguments, and so do their derivatives.
    let expected = [
        [Some(4.0), Some(0.0), Some(1.0), None, Some(0.0), Some(0.0)],
        [None, Some(6.0), Some(0.0), None, Some(0.0), Some(1.0)],
        [
            Some(-2.0),
            Some(0.0),
            Some(1.0),
            Some(3.0),
            Some(1.0),
            Some(0.0),
        ],
    ];
    for (r, e) in got.iter().zip(expected) {
        assert_eq!(r.as_slice(), e.as_slice());
    }
    assert_eq!(got[3][..4], [None, None, Some(0.0), None]);
}
