//! Shared fixtures: a context with the markers, tables of points, and result readers.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::prelude::SessionContext;

/// A `SessionContext` with `grad`, `jvp` and `vjp` registered.
pub fn context() -> SessionContext {
    let ctx = SessionContext::new();
    datafusion_autograd::register(&ctx);
    ctx
}

/// Registers `name(id BIGINT, <columns> DOUBLE)`, one row per point.
pub fn register(ctx: &SessionContext, name: &str, columns: &[(&str, Vec<Option<f64>>)]) {
    let rows = columns.first().map_or(0, |(_, v)| v.len());
    let mut arrays: Vec<(&str, ArrayRef)> =
        vec![("id", Arc::new(Int64Array::from_iter_values(0..rows as i64)))];
    for (col, values) in columns {
        arrays.push((col, Arc::new(Float64Array::from(values.clone()))));
    }
    let batch =
        RecordBatch::try_from_iter_with_nullable(arrays.into_iter().map(|(n, a)| (n, a, true)))
            .unwrap();
    ctx.deregister_table(name).unwrap();
    ctx.register_batch(name, batch).unwrap();
}

/// Runs `sql` and returns every row, each column cast to DOUBLE.
pub async fn rows(ctx: &SessionContext, sql: &str) -> Vec<Vec<Option<f64>>> {
    let batches = ctx
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("planning `{sql}` failed: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("running `{sql}` failed: {e}"));
    let mut out = vec![];
    for batch in batches {
        let columns: Vec<Float64Array> = batch
            .columns()
            .iter()
            .map(|c| {
                let c = cast(c, &DataType::Float64).unwrap();
                c.as_any().downcast_ref::<Float64Array>().unwrap().clone()
            })
            .collect();
        for r in 0..batch.num_rows() {
            out.push(
                columns
                    .iter()
                    .map(|c| (!c.is_null(r)).then(|| c.value(r)))
                    .collect(),
            );
        }
    }
    out
}

/// Runs `sql` and returns its single column, which must have no NULLs.
/// The rows of `sql` as the table DataFusion prints: for `EXPLAIN`.
pub async fn text(ctx: &SessionContext, sql: &str) -> String {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    datafusion::arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string()
}

pub async fn column(ctx: &SessionContext, sql: &str) -> Vec<f64> {
    rows(ctx, sql)
        .await
        .into_iter()
        .map(|r| r[0].unwrap_or_else(|| panic!("NULL in `{sql}`")))
        .collect()
}

/// Runs `sql`, expecting an error at planning or execution, and returns its message.
pub async fn error(ctx: &SessionContext, sql: &str) -> String {
    let result = match ctx.sql(sql).await {
        Ok(df) => df.collect().await.map(|_| ()),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => panic!("`{sql}` succeeded; an error was expected"),
        Err(e) => e.to_string(),
    }
}

/// `|actual − expected| ≤ tol · (1 + |expected|)`, with a message naming the case.
#[track_caller]
pub fn assert_close(actual: f64, expected: f64, tol: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= tol * (1.0 + expected.abs()),
        "{what}: got {actual}, expected {expected}"
    );
}

/// A small deterministic generator (SplitMix64), so failures reproduce.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// `sql`'s logical plan in `ctx`, analyzed: what a loss is differentiated from.
pub async fn analyzed(ctx: &SessionContext, sql: &str) -> datafusion_expr::LogicalPlan {
    let state = ctx.state();
    let plan = state.create_logical_plan(sql).await.unwrap();
    state
        .analyzer()
        .execute_and_check(plan, state.config_options(), |_, _| {})
        .unwrap()
}

/// The parameter `table.column` of `ctx`.
pub async fn parameter(
    ctx: &SessionContext,
    table: &str,
    column: &str,
) -> datafusion_autograd::relational::Parameter {
    let provider = ctx.table_provider(table).await.unwrap();
    datafusion_autograd::relational::Parameter::new(
        table.into(),
        column,
        datafusion::datasource::provider_as_source(provider),
        "datafusion",
        "public",
    )
    .unwrap()
}
