//! The DataFrame API: marker expressions and direct differentiation.

use datafusion::prelude::{col, lit};
use datafusion_autograd::expr_fn::{grad, jvp, vjp};
use datafusion_autograd::{differentiate, linearize};
use datafusion_common::Column;
use datafusion_functions::math::expr_fn::{exp, sin};

use crate::common::{assert_close, context, register};

async fn values(df: datafusion::dataframe::DataFrame) -> Vec<Vec<f64>> {
    let ctx = context();
    ctx.register_table("result", df.into_view()).unwrap();
    crate::common::rows(&ctx, "SELECT * FROM result")
        .await
        .into_iter()
        .map(|r| r.into_iter().map(Option::unwrap).collect())
        .collect()
}

#[tokio::test]
async fn markers_in_dataframe_select() {
    let ctx = context();
    let xs = [0.5, 1.5, -2.0];
    let ys = [2.0, -1.0, 0.25];
    register(
        &ctx,
        "pts",
        &[
            ("x", xs.iter().map(|&v| Some(v)).collect()),
            ("y", ys.iter().map(|&v| Some(v)).collect()),
        ],
    );
    let f = sin(col("x")) * col("y");
    let df = ctx
        .table("pts")
        .await
        .unwrap()
        .sort(vec![col("id").sort(true, false)])
        .unwrap()
        .select(vec![
            col("x"),
            col("y"),
            grad(f.clone(), col("x")).alias("dx"),
            grad(f.clone().alias("named"), col("y")).alias("dy"),
            jvp(exp(col("x") * lit(2.0)), col("x"), col("y")).alias("jvp"),
            vjp(f.clone(), col("x"), lit(3.0)).alias("vjp"),
            differentiate(&f, &Column::from_name("x"))
                .unwrap()
                .alias("direct"),
            linearize(
                &f,
                &[
                    (Column::from_name("x"), lit(1.0)),
                    (Column::from_name("y"), lit(1.0)),
                ],
            )
            .unwrap()
            .alias("both"),
        ])
        .unwrap();
    for r in values(df).await {
        let (x, y) = (r[0], r[1]);
        assert_close(r[2], x.cos() * y, 1e-12, "grad in select");
        assert_close(r[3], x.sin(), 1e-12, "grad through an alias");
        assert_close(r[4], 2.0 * (2.0 * x).exp() * y, 1e-12, "jvp");
        assert_close(r[5], 3.0 * x.cos() * y, 1e-12, "vjp");
        assert_close(r[6], x.cos() * y, 1e-12, "differentiate()");
        assert_close(
            r[7],
            x.cos() * y + x.sin(),
            1e-12,
            "linearize() along (1, 1)",
        );
    }
}
