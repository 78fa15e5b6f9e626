//! P4: how the derivative of a nested composition grows with nesting depth.
//!
//! For `f_d = tanh(1.5 · f_{d−1} + 0.1)`, `f_0 = x`, and d ∈ {1, 2, 4, 8, 16, 32}:
//! the derivative's size (tree nodes, and distinct subexpressions, which is
//! what common-subexpression elimination evaluates), the planning time of
//! `SELECT SUM(grad(f_d, x)) FROM t`, the planning time of the same query with
//! the derivative written out (what DataFusion's own passes cost on that
//! expression, without the engine), and the execution time of its plan.
//! Sizes go to `$CRITERION_HOME/nesting_sizes.json`; set
//! `AUTOGRAD_BENCH_ROWS` to change the table (default 1,000,000). Queries run
//! on one thread, so timings are not spread over a varying number of cores.

use std::collections::HashSet;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use datafusion::arrow::array::{Float64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::Column;
use datafusion::dataframe::DataFrame;
use datafusion::datasource::MemTable;
use datafusion::functions_aggregate::expr_fn::sum;
use datafusion::logical_expr::{lit, Expr};
use datafusion::physical_plan::collect;
use datafusion::prelude::{col, SessionConfig, SessionContext};
use datafusion_autograd::expr_fn::grad;
use datafusion_functions::math::expr_fn::tanh;
use tokio::runtime::Builder;

const DEPTHS: [usize; 6] = [1, 2, 4, 8, 16, 32];

fn nested(depth: usize) -> Expr {
    (0..depth).fold(col("x"), |f, _| tanh(lit(1.5) * f + lit(0.1)))
}

/// (tree nodes, distinct subexpressions) of `expr`.
fn size(expr: &Expr) -> (usize, usize) {
    let mut nodes = 0;
    let mut distinct = HashSet::new();
    expr.apply(|e| {
        nodes += 1;
        distinct.insert(e.clone());
        Ok(TreeNodeRecursion::Continue)
    })
    .unwrap();
    (nodes, distinct.len())
}

fn rows() -> usize {
    std::env::var("AUTOGRAD_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn context(rows: usize) -> SessionContext {
    // One partition: no repartitioning, so a physical plan can run repeatedly.
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
    datafusion_autograd::register(&ctx);
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Float64, false)]));
    let chunk = 64 * 1024;
    let batches = (0..rows)
        .step_by(chunk)
        .map(|start| {
            let values =
                (start..(start + chunk).min(rows)).map(|i| -2.0 + 4.0 * i as f64 / rows as f64);
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(Float64Array::from_iter_values(values))],
            )
            .unwrap()
        })
        .collect::<Vec<_>>();
    let table = MemTable::try_new(schema, vec![batches]).unwrap();
    ctx.register_table("t", Arc::new(table)).unwrap();
    ctx
}

fn write_sizes() {
    let wrt = Column::from_name("x");
    let entries: Vec<String> = DEPTHS
        .iter()
        .map(|&d| {
            let (primal_nodes, _) = size(&nested(d));
            let (nodes, distinct) = size(&datafusion_autograd::differentiate(&nested(d), &wrt).unwrap());
            format!(r#"{{"depth": {d}, "primal_nodes": {primal_nodes}, "tree_nodes": {nodes}, "distinct_nodes": {distinct}}}"#)
        })
        .collect();
    let dir = std::env::var("CRITERION_HOME").unwrap_or_else(|_| "target/criterion".into());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        format!("{dir}/nesting_sizes.json"),
        format!("[{}]\n", entries.join(",\n ")),
    )
    .unwrap();
}

/// `SUM(grad(f_d, x))` over `t`, as a DataFrame (SQL text this deep would
/// exceed the SQL parser's default recursion limit).
fn query(ctx: &SessionContext, depth: usize) -> DataFrame {
    let runtime = Builder::new_current_thread().build().unwrap();
    let table = runtime.block_on(ctx.table("t")).unwrap();
    table
        .aggregate(vec![], vec![sum(grad(nested(depth), col("x")))])
        .unwrap()
}

/// `SUM(∂f_d/∂x)` over `t` with the derivative given as an ordinary
/// expression: the engine's own output, so planning differentiates nothing.
fn written_out(ctx: &SessionContext, depth: usize) -> DataFrame {
    let runtime = Builder::new_current_thread().build().unwrap();
    let table = runtime.block_on(ctx.table("t")).unwrap();
    let derivative =
        datafusion_autograd::differentiate(&nested(depth), &Column::from_name("x")).unwrap();
    table.aggregate(vec![], vec![sum(derivative)]).unwrap()
}

fn nesting(c: &mut Criterion) {
    write_sizes();
    let runtime = Builder::new_current_thread().build().unwrap();
    let ctx = context(rows());
    // Ten samples, criterion's least: one sample of the deepest plan takes seconds.
    type Plan = fn(&SessionContext, usize) -> DataFrame;
    let plans: [(&str, Plan); 2] = [
        ("nesting_planning", query),
        ("nesting_planning_written_out", written_out),
    ];
    for (group, plan) in plans {
        let mut planning = c.benchmark_group(group);
        planning.sample_size(10);
        for d in DEPTHS {
            let df = plan(&ctx, d);
            planning.bench_with_input(BenchmarkId::from_parameter(d), &df, |b, df| {
                b.iter(|| df.clone().into_optimized_plan().unwrap())
            });
        }
        planning.finish();
    }
    let mut execution = c.benchmark_group("nesting_execution");
    for d in DEPTHS {
        // Planned once: this measures only the evaluation of the derivative.
        let plan = runtime
            .block_on(query(&ctx, d).create_physical_plan())
            .unwrap();
        execution.bench_with_input(BenchmarkId::from_parameter(d), &plan, |b, plan| {
            b.iter(|| {
                runtime
                    .block_on(collect(Arc::clone(plan), ctx.task_ctx()))
                    .unwrap()
            })
        });
    }
    execution.finish();
}

criterion_group!(benches, nesting);
criterion_main!(benches);
