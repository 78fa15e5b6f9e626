//! P5: planning overhead per marker, native and across FFI.
//!
//! One query holds eight markers, `SELECT grad(f₁, x), …, grad(f₈, x) FROM t`;
//! it is planned (parsed, analysed and optimised, which is where the
//! derivatives are formed) with the markers registered natively, and with the
//! markers loaded from the built cdylib through `dlopen`, whose simplify runs
//! across the boundary. The same query without markers, `SELECT f₁, …, f₈`,
//! is the baseline; `(marker − baseline) / 8` is the overhead per marker.

use std::env::consts::{DLL_PREFIX, DLL_SUFFIX};
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use datafusion::prelude::SessionContext;
use datafusion_autograd_ffi::FFI_SimplifyingScalarUDF;
use datafusion_expr::ScalarUDF;
use libloading::{Library, Symbol};
use tokio::runtime::{Builder, Runtime};

/// Eight scalar functions of `x` and `y`, of the kinds models are made of.
pub const FUNCTIONS: [&str; 8] = [
    "3 * x * x * x - 2 * x * x + x - 5",
    "sin(x) * exp(-x * x) + ln(1 + x * x)",
    "greatest(x, 0) * y",
    "tanh(2 * x + 1) * y",
    "power(x - y, 2)",
    "sqrt(1 + x * x) / (1 + y * y)",
    "atan2(y, 1.5 + x * x) + cos(x * y)",
    "CASE WHEN x > 0 THEN exp(-x) ELSE 1 - x END",
];

fn library() -> Library {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let name = format!("{DLL_PREFIX}datafusion_autograd_ffi{DLL_SUFFIX}");
    let path: PathBuf = [deps.join(&name), deps.parent().unwrap().join(&name)]
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} was not built next to {}", exe.display()));
    // SAFETY: the library's initialisers are Rust statics with no side effects.
    unsafe { Library::new(path).unwrap() }
}

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
    let primal = format!("SELECT {} FROM t", FUNCTIONS.join(", "));
    let markers = format!(
        "SELECT {} FROM t",
        FUNCTIONS.map(|f| format!("grad({f}, x)")).join(", ")
    );

    let native = SessionContext::new();
    for udf in datafusion_autograd::udfs() {
        native.register_udf(udf.as_ref().clone());
    }
    table(&native, &runtime);

    let lib = library();
    let foreign = SessionContext::new();
    for symbol in [
        "datafusion_autograd_grad",
        "datafusion_autograd_jvp",
        "datafusion_autograd_vjp",
    ] {
        // SAFETY: a documented entry point, `extern "C" fn() -> FFI_SimplifyingScalarUDF`.
        let udf = unsafe {
            let f: Symbol<extern "C" fn() -> FFI_SimplifyingScalarUDF> =
                lib.get(symbol.as_bytes()).unwrap();
            f()
        };
        foreign.register_udf(ScalarUDF::try_from(&udf).unwrap());
    }
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
