//! Trains a line on noisy data with one SQL statement: a recursive CTE whose
//! recursive term takes a gradient step with `grad`.
//!
//! Run with `cargo run --example train`.

use std::sync::Arc;

use datafusion::arrow::array::{Array, Float64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::error::Result;
use datafusion::prelude::SessionContext;

const TRAINING_LOOP: &str = include_str!("least_squares.sql");

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let ctx = SessionContext::new();
    datafusion_autograd::register(&ctx);

    // y = 2.5·x − 1 plus deterministic noise, for x in [0.5, 2).
    let xs: Vec<f64> = (0..200).map(|i| 0.5 + 1.5 * i as f64 / 200.0).collect();
    let ys: Vec<f64> = xs
        .iter()
        .enumerate()
        .map(|(i, x)| 2.5 * x - 1.0 + 0.1 * (i as f64 * 12.9898).sin())
        .collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("x", DataType::Float64, false),
        Field::new("y", DataType::Float64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Float64Array::from(xs.clone())),
            Arc::new(Float64Array::from(ys.clone())),
        ],
    )?;
    ctx.register_batch("points", batch)?;

    println!("{}", TRAINING_LOOP.trim());
    let fitted = ctx.sql(TRAINING_LOOP).await?.collect().await?;
    let column = |i: usize| {
        let c = fitted[0]
            .column(i)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap()
            .clone();
        c.value(0)
    };
    let (a, b) = (column(0), column(1));

    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    let (a_star, b_star) = (sxy / sxx, my - sxy / sxx * mx);

    let line = |a: f64, b: f64| {
        format!(
            "y = {a:.6}·x {} {:.6}",
            if b < 0.0 { '-' } else { '+' },
            b.abs()
        )
    };
    println!("\nfitted by SQL gradient descent: {}", line(a, b));
    println!("closed-form least squares:      {}", line(a_star, b_star));
    println!(
        "difference: |Δa| = {:.1e}, |Δb| = {:.1e}",
        (a - a_star).abs(),
        (b - b_star).abs()
    );
    Ok(())
}
