//! P5: planning overhead per marker, native and across FFI.
//!
//! One query holds eight markers, `SELECT grad(f₁, x), …, grad(f₈, x) FROM t`;
//! it is planned (parsed, analysed and optimised, which is where the
//! derivatives are formed) with the markers registered natively, and with the
//! markers loaded from the built cdylib through `dlopen`, whose simplify runs
//! across the boundary. The same query without markers, `SELECT f₁, …, f₈`,
//! is the baseline; `(marker − baseline) / 8` is the overhead per marker.

use criterion::{criterion_group, criterion_main, Criterion};
use datafusion::prelude::SessionContext;
use datafusion_autograd_ffi::host::{cargo_built_library, AutogradLibrary};
use tokio::runtime::{Builder, Runtime};

/// Eight scalar functions of `x` and `y`, of the kinds models are made of,
/// one per line; the Python benchmark of the SQL bridge plans the same ones.
const FUNCTIONS: &str = include_str!("../../../benchmarks/functions.txt");

fn table(ctx: &SessionContext, runtime: &Runtime) {
    runtime.block_on(async {
        ctx.sql("CREATE TABLE t AS SELECT * FROM (VALUES (1.0, 2.0), (-0.5, 0.25)) AS v(x, y)")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
    });
}

fn planning(c: &mut Criterion) {
    let runtime = Builder::new_current_thread().build().unwrap();
    let functions: Vec<&str> = FUNCTIONS.lines().filter(|l| !l.trim().is_empty()).collect();
    let primal = format!("SELECT {} FROM t", functions.join(", "));
    let markers = format!(
        "SELECT {} FROM t",
        functions
            .iter()
            .map(|f| format!("grad({f}, x)"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let native = SessionContext::new();
    datafusion_autograd::register(&native);
    table(&native, &runtime);

    // SAFETY: the cdylib cargo built from this crate.
    let library = unsafe { AutogradLibrary::load(&cargo_built_library().unwrap()).unwrap() };
    let foreign = SessionContext::new();
    library.register(&foreign).unwrap();
    table(&foreign, &runtime);

    let plan = |ctx: &SessionContext, sql: &str| {
        runtime.block_on(async { ctx.sql(sql).await.unwrap().into_optimized_plan().unwrap() })
    };
    // Both contexts must agree before their timings mean anything.
    assert_eq!(
        format!("{}", plan(&native, &markers).display_indent()),
        format!("{}", plan(&foreign, &markers).display_indent())
    );

    let mut group = c.benchmark_group("planning");
    group.bench_function("baseline", |b| b.iter(|| plan(&native, &primal)));
    group.bench_function("native", |b| b.iter(|| plan(&native, &markers)));
    group.bench_function("ffi", |b| b.iter(|| plan(&foreign, &markers)));
    group.finish();
}

criterion_group!(benches, planning);
criterion_main!(benches);
