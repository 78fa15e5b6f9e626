//! A synthetic data set, written as several Parquet files so that a scan of
//! it has partitions to spread over executors.

use std::fs::File;
use std::sync::Arc;

use datafusion::arrow::array::{Float64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::error::Result;
use datafusion::parquet::arrow::ArrowWriter;
use tempfile::TempDir;

/// The curve the points follow: y = A·exp(B·x), plus noise.
pub const TRUE_A: f64 = 2.0;
pub const TRUE_B: f64 = 0.7;

/// `n` points (x, y): x evenly spread over [0, 1), y on the curve plus a
/// deterministic noise of amplitude 0.05.
pub fn points(n: usize) -> Vec<(f64, f64)> {
    (0..n)
        .map(|i| {
            let x = i as f64 / n as f64;
            let noise = 0.05 * (12.9898 * i as f64).sin();
            (x, TRUE_A * (TRUE_B * x).exp() + noise)
        })
        .collect()
}

/// A temporary directory holding [`points`]`(files * rows_per_file)` as
/// `files` Parquet files (`part-000.parquet`, …) of two DOUBLE columns, `x`
/// and `y`, in order. The directory is removed when the value is dropped.
pub fn write_points(files: usize, rows_per_file: usize) -> Result<TempDir> {
    let dir = tempfile::Builder::new().prefix("points-").tempdir()?;
    let schema = Arc::new(Schema::new(vec![
        Field::new("x", DataType::Float64, false),
        Field::new("y", DataType::Float64, false),
    ]));
    let all = points(files * rows_per_file);
    for (f, rows) in all.chunks(rows_per_file).enumerate() {
        let (xs, ys): (Vec<f64>, Vec<f64>) = rows.iter().copied().unzip();
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Float64Array::from(xs)),
                Arc::new(Float64Array::from(ys)),
            ],
        )?;
        let file = File::create(dir.path().join(format!("part-{f:03}.parquet")))?;
        let mut writer = ArrowWriter::try_new(file, Arc::clone(&schema), None)?;
        writer.write(&batch)?;
        writer.close()?;
    }
    Ok(dir)
}
