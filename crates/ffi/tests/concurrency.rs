//! Eight threads running many differentiating queries on one shared
//! `SessionContext`, as a server would: once with the markers registered
//! natively, once with the markers of the cdylib loaded with `dlopen`, whose
//! simplify runs across FFI from every thread at once. Each thread uses other
//! markers, functions and constants than its neighbours at the same moment,
//! and every result is checked against its analytic derivative.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, Float64Array, Int64Array, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::prelude::SessionContext;
use datafusion_autograd_ffi::host::{cargo_built_library, AutogradLibrary};

const THREADS: usize = 8;
const QUERIES_PER_THREAD: usize = 24;
const POINTS: usize = 64;

static LIBRARY: LazyLock<AutogradLibrary> = LazyLock::new(|| {
    // SAFETY: the cdylib cargo built from this crate.
    unsafe { AutogradLibrary::load(&cargo_built_library().unwrap()).unwrap() }
});

/// The data every query reads: `points(id, x, y)` and parameters `w(i, w)`.
struct Data {
    x: Vec<f64>,
    y: Vec<f64>,
    w: Vec<f64>,
}

impl Data {
    fn new() -> Self {
        Self {
            x: (0..POINTS)
                .map(|i| 0.5 + 1.5 * ((i * 37) % POINTS) as f64 / POINTS as f64)
                .collect(),
            y: (0..POINTS).map(|i| (i as f64 * 0.7).sin()).collect(),
            w: (0..POINTS).map(|i| i as f64 / 8.0 - 4.0).collect(),
        }
    }

    fn register(&self, ctx: &SessionContext) {
        let ids = Arc::new(Int64Array::from_iter_values(0..POINTS as i64));
        let points = RecordBatch::try_from_iter([
            ("id", ids.clone() as _),
            ("x", Arc::new(Float64Array::from(self.x.clone())) as _),
            ("y", Arc::new(Float64Array::from(self.y.clone())) as _),
        ])
        .unwrap();
        let w = RecordBatch::try_from_iter([
            ("i", ids as _),
            ("w", Arc::new(Float64Array::from(self.w.clone())) as _),
        ])
        .unwrap();
        ctx.register_batch("points", points).unwrap();
        ctx.register_batch("w", w).unwrap();
    }
}

/// One query and the rows it must return, as (id, value), sorted by id.
struct Query {
    sql: String,
    expected: Vec<(i64, f64)>,
}

/// Query `n` of a thread, with the constant `k`: a grad, jvp or vjp in a
/// projection, an aggregate, a filter or a nested marker, or a `gradient()`
/// table function call where the context has one.
fn query(n: usize, k: f64, data: &Data, with_gradient: bool) -> Query {
    let rows = |f: &dyn Fn(f64, f64) -> f64| -> Vec<(i64, f64)> {
        (0..POINTS)
            .map(|i| (i as i64, f(data.x[i], data.y[i])))
            .collect()
    };
    let kinds = if with_gradient { 8 } else { 7 };
    let (sql, expected) = match n % kinds {
        0 => (
            format!("SELECT id, grad(sin(x) * y * {k}, x) FROM points"),
            rows(&|x, y| k * y * x.cos()),
        ),
        1 => (
            format!("SELECT id, jvp(exp(x * y), x, {k}) FROM points"),
            rows(&|x, y| k * y * (x * y).exp()),
        ),
        2 => (
            format!("SELECT id, vjp(power(x, 3) * y, y, {k}) FROM points"),
            rows(&|x, _| k * x.powi(3)),
        ),
        3 => (
            format!("SELECT id, grad(grad(x * x * x * {k}, x), x) FROM points"),
            rows(&|x, _| 6.0 * k * x),
        ),
        4 => (
            format!("SELECT 0, SUM(grad(power({k} * x - y, 2), x)) FROM points"),
            vec![(
                0,
                rows(&|x, y| 2.0 * k * (k * x - y))
                    .iter()
                    .map(|r| r.1)
                    .sum(),
            )],
        ),
        5 => (
            format!("SELECT id, grad(ln(x) * {k}, x) FROM points WHERE x > 1"),
            rows(&|x, _| k / x)
                .into_iter()
                .filter(|&(i, _)| data.x[i as usize] > 1.0)
                .collect(),
        ),
        6 => (
            format!("SELECT id, x FROM points WHERE grad(x * x, x) > {k}"),
            rows(&|x, _| x)
                .into_iter()
                .filter(|&(_, x)| 2.0 * x > k)
                .collect(),
        ),
        _ => (
            format!("SELECT i, grad FROM gradient('SELECT SUM({k} * w * w * w) FROM w', 'w.w')"),
            data.w
                .iter()
                .enumerate()
                .map(|(i, w)| (i as i64, 3.0 * k * w * w))
                .collect(),
        ),
    };
    Query { sql, expected }
}

/// Runs `query` and returns its two columns as (id, value), sorted by id.
async fn run(ctx: &SessionContext, sql: &str) -> Vec<(i64, f64)> {
    let batches: Vec<RecordBatch> = ctx
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("planning `{sql}`: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("running `{sql}`: {e}"));
    let mut out = vec![];
    for batch in batches {
        let ids = cast(batch.column(0), &DataType::Int64).unwrap();
        let ids = ids.as_any().downcast_ref::<Int64Array>().unwrap();
        let values = cast(batch.column(1), &DataType::Float64).unwrap();
        let values = values.as_any().downcast_ref::<Float64Array>().unwrap();
        for r in 0..batch.num_rows() {
            assert!(values.is_valid(r), "NULL in `{sql}`");
            out.push((ids.value(r), values.value(r)));
        }
    }
    out.sort_by_key(|r| r.0);
    out
}

fn check(sql: &str, got: &[(i64, f64)], expected: &[(i64, f64)]) {
    assert_eq!(got.len(), expected.len(), "row count of `{sql}`");
    for (g, e) in got.iter().zip(expected) {
        assert_eq!(g.0, e.0, "ids of `{sql}`");
        assert!(
            (g.1 - e.1).abs() <= 1e-9 * (1.0 + e.1.abs()),
            "`{sql}` at id {}: got {}, expected {}",
            g.0,
            g.1,
            e.1
        );
    }
}

/// Runs every thread's queries at once on `ctx`; returns how many ran.
async fn hammer(ctx: SessionContext, with_gradient: bool) -> usize {
    let data = Arc::new(Data::new());
    data.register(&ctx);
    let start = Arc::new(tokio::sync::Barrier::new(THREADS));
    let tasks: Vec<_> = (0..THREADS)
        .map(|thread| {
            let (ctx, data, start) = (ctx.clone(), Arc::clone(&data), Arc::clone(&start));
            tokio::spawn(async move {
                start.wait().await;
                for n in 0..QUERIES_PER_THREAD {
                    // Neighbouring threads run other kinds of query, with other constants.
                    let k = (thread + 1) as f64 + (n % 3) as f64 * 0.25;
                    let query = query(thread + n, k, &data, with_gradient);
                    let got = run(&ctx, &query.sql).await;
                    check(&query.sql, &got, &query.expected);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a thread failed");
    }
    THREADS * QUERIES_PER_THREAD
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn eight_threads_on_one_native_context() {
    let ctx = SessionContext::new();
    datafusion_autograd::register(&ctx);
    hammer(ctx, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn eight_threads_on_one_host_context_across_ffi() {
    let ctx = SessionContext::new();
    LIBRARY.register(&ctx).unwrap();
    let before = LIBRARY.simplify_calls().unwrap();
    let queries = hammer(ctx, false).await;
    let served = LIBRARY.simplify_calls().unwrap() - before;
    // Every query has at least one marker, each simplified by the library.
    assert!(
        served >= queries as u64,
        "{served} simplify calls across FFI for {queries} queries"
    );
}
