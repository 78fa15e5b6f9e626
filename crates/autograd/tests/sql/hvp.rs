//! Hessian-vector products and directional derivatives of whole queries,
//! against closed forms written here and central differences of the
//! gradient (or of the loss) along the direction.

use std::sync::Arc;

use datafusion::prelude::SessionContext;
use datafusion_autograd::relational::{hvp, jvp, Direction};
use datafusion_autograd::GradientTable;

use crate::common::{analyzed, assert_close, context, parameter, rows};

async fn run(ctx: &SessionContext, sql: &str) {
    rows(ctx, sql).await;
}

/// `(i, grad, hvp)` of every row of `w`, by `i`.
async fn products(ctx: &SessionContext, loss: &str, along: Direction) -> Vec<(f64, f64, f64)> {
    let staged = hvp(
        &analyzed(ctx, loss).await,
        &parameter(ctx, "w", "w").await,
        &along,
        &Default::default(),
    )
    .unwrap();
    let table = GradientTable::new(Arc::new(staged), 0);
    let df = ctx.read_table(Arc::new(table)).unwrap();
    let df = df
        .sort(vec![datafusion::prelude::col("i").sort(true, false)])
        .unwrap();
    let batches = df.collect().await.unwrap();
    let mut out = vec![];
    for batch in batches {
        let column = |name: &str| {
            let c = datafusion::arrow::compute::cast(
                batch.column_by_name(name).unwrap(),
                &datafusion::arrow::datatypes::DataType::Float64,
            )
            .unwrap();
            c.as_any()
                .downcast_ref::<datafusion::arrow::array::Float64Array>()
                .unwrap()
                .clone()
        };
        let (i, g, h) = (column("i"), column("grad"), column("hvp"));
        for r in 0..batch.num_rows() {
            out.push((i.value(r), g.value(r), h.value(r)));
        }
    }
    out
}

/// `w` with `w + step · v` at each row, as the table `w` of `ctx`.
async fn moved(ctx: &SessionContext, base: &[(i64, f64)], v: &[f64], step: f64) {
    let values: Vec<String> = base
        .iter()
        .zip(v)
        .map(|((i, w), v)| format!("({i}, {:?})", w + step * v))
        .collect();
    run(ctx, "DROP TABLE IF EXISTS w").await;
    run(
        ctx,
        &format!(
            "CREATE TABLE w (i BIGINT, w DOUBLE) AS VALUES {}",
            values.join(", ")
        ),
    )
    .await;
}

async fn data(ctx: &SessionContext) {
    run(
        ctx,
        "CREATE TABLE x (s BIGINT, i BIGINT, v DOUBLE) AS VALUES \
         (0, 0, 1.0), (0, 1, 2.0), (0, 2, -1.0), (1, 0, 0.5), (1, 1, -0.5), (1, 2, 3.0), \
         (2, 0, -2.0), (2, 1, 1.5), (2, 2, 0.25), (3, 0, 0.75), (3, 1, 0.0), (3, 2, -1.25)",
    )
    .await;
    run(ctx, "CREATE TABLE y (s BIGINT, t DOUBLE, k BIGINT) AS VALUES (0, 1.0, 0), (1, -1.0, 1), (2, 0.5, 2), (3, 1.0, 0)").await;
    run(
        ctx,
        "CREATE TABLE v (i BIGINT, tangent DOUBLE) AS VALUES (0, 1.0), (1, -2.0), (2, 0.5)",
    )
    .await;
}

const W: [(i64, f64); 3] = [(0, 0.5), (1, -0.25), (2, 1.5)];
const V: [f64; 3] = [1.0, -2.0, 0.5];

const LOSSES: &[&str] = &[
    // quadratic: H = diag(2c)
    "SELECT SUM(w.w * w.w * (w.i + 1)) FROM w",
    // least squares over a join and GROUP BY: H = 2/n XᵀX
    "SELECT AVG(power(p.z - y.t, 2)) FROM \
     (SELECT x.s, SUM(x.v * w.w) AS z FROM x JOIN w ON x.i = w.i GROUP BY x.s) p JOIN y ON p.s = y.s",
    // logistic loss: a sigmoid's curvature
    "SELECT AVG(ln(1 + exp(-y.t * p.z))) + 0.1 * (SELECT SUM(w * w) FROM w) FROM \
     (SELECT x.s, SUM(x.v * w.w) AS z FROM x JOIN w ON x.i = w.i GROUP BY x.s) p JOIN y ON p.s = y.s",
    // log-softmax over windows, MAX and a cross term between rows
    "WITH z AS (SELECT x.s, x.i, x.v * w.w AS z FROM x JOIN w ON x.i = w.i), \
          shifted AS (SELECT s, i, z - MAX(z) OVER (PARTITION BY s) AS z FROM z), \
          l AS (SELECT s, i, z - ln(SUM(exp(z)) OVER (PARTITION BY s)) AS l FROM shifted) \
     SELECT -AVG(l.l) + SUM(a.w * b.w * b.w) FROM l JOIN y ON l.s = y.s AND l.i = y.k CROSS JOIN (SELECT SUM(w) AS w FROM w) a CROSS JOIN w b",
];

#[tokio::test]
async fn hessian_vector_products_match_differences_of_the_gradient() {
    for loss in LOSSES {
        let ctx = context();
        data(&ctx).await;
        moved(&ctx, &W, &V, 0.0).await;
        let got = products(
            &ctx,
            loss,
            Direction::Rows(Box::new(analyzed(&ctx, "SELECT i, tangent FROM v").await)),
        )
        .await;
        let h = 1e-5;
        let gradient = |step: f64| {
            let ctx = ctx.clone();
            async move {
                moved(&ctx, &W, &V, step).await;
                let g: Vec<f64> = rows(
                    &ctx,
                    &format!(
                        "SELECT grad FROM gradient('{}', 'w.w') ORDER BY i",
                        loss.replace('\'', "''")
                    ),
                )
                .await
                .into_iter()
                .map(|r| r[0].unwrap())
                .collect();
                g
            }
        };
        let (up, down) = (gradient(h).await, gradient(-h).await);
        moved(&ctx, &W, &V, 0.0).await;
        for (k, (_, _, hv)) in got.iter().enumerate() {
            let difference = (up[k] - down[k]) / (2.0 * h);
            assert_close(*hv, difference, 1e-6, &format!("{loss}: (∇²L·v)[{k}]"));
        }
    }
}

#[tokio::test]
async fn closed_forms() {
    let ctx = context();
    data(&ctx).await;
    moved(&ctx, &W, &V, 0.0).await;
    // Σ c·w² along v everywhere 2: hvp = 2c · 2
    let got = products(&ctx, LOSSES[0], Direction::Everywhere(2.0)).await;
    for (i, g, hv) in got {
        assert_close(g, 2.0 * (i + 1.0) * W[i as usize].1, 1e-12, "grad");
        assert_close(hv, 4.0 * (i + 1.0), 1e-12, "hvp");
    }
    // least squares: 2/n XᵀX v
    let x = [
        [1.0, 2.0, -1.0],
        [0.5, -0.5, 3.0],
        [-2.0, 1.5, 0.25],
        [0.75, 0.0, -1.25],
    ];
    let got = products(
        &ctx,
        LOSSES[1],
        Direction::Rows(Box::new(analyzed(&ctx, "SELECT i, tangent FROM v").await)),
    )
    .await;
    for i in 0..3 {
        let mut expected = 0.0;
        for row in &x {
            let xv: f64 = (0..3).map(|j| row[j] * V[j]).sum();
            expected += 2.0 / 4.0 * row[i] * xv;
        }
        assert_close(got[i].2, expected, 1e-12, "2/n XᵀXv");
    }
    // A row the direction does not name does not move.
    let got = products(
        &ctx,
        LOSSES[0],
        Direction::Rows(Box::new(
            analyzed(&ctx, "SELECT i, tangent FROM v WHERE i = 1").await,
        )),
    )
    .await;
    assert_close(got[0].2, 0.0, 1e-12, "unmoved row");
    assert_close(got[1].2, 2.0 * 2.0 * -2.0, 1e-12, "moved row");
}

#[tokio::test]
async fn directional_derivatives_of_a_query() {
    let ctx = context();
    data(&ctx).await;
    moved(&ctx, &W, &V, 0.0).await;
    let loss = LOSSES[2];
    let staged = jvp(
        &analyzed(&ctx, loss).await,
        &parameter(&ctx, "w", "w").await,
        &Direction::Rows(Box::new(analyzed(&ctx, "SELECT i, tangent FROM v").await)),
        &Default::default(),
    )
    .unwrap();
    let table = GradientTable::new(Arc::new(staged), 0);
    let got = ctx
        .read_table(Arc::new(table))
        .unwrap()
        .collect()
        .await
        .unwrap();
    let got = datafusion::arrow::compute::cast(
        got[0].column(1),
        &datafusion::arrow::datatypes::DataType::Float64,
    )
    .unwrap();
    let got = got
        .as_any()
        .downcast_ref::<datafusion::arrow::array::Float64Array>()
        .unwrap()
        .value(0);
    let h = 1e-6;
    let mut values = vec![];
    for step in [h, -h] {
        moved(&ctx, &W, &V, step).await;
        values.push(rows(&ctx, loss).await[0][0].unwrap());
    }
    assert_close(got, (values[0] - values[1]) / (2.0 * h), 1e-6, "∇L · v");
}
