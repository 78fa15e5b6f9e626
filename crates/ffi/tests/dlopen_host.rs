//! A host that loads the built cdylib with `dlopen`, as a separately compiled
//! program would: the library has its own copy of DataFusion, and the host
//! reaches the markers only through the FFI tables the library exports.
//! Every derivative must come from the library's simplify, called across the
//! boundary by the host's planner.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, Float64Array};
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_autograd::{udf, Derivative};
use datafusion_autograd_ffi::host::{cargo_built_library, AutogradLibrary};
use datafusion_autograd_ffi::{FFI_SimplifyResult, FFI_SimplifyingScalarUDF};
use datafusion_expr::ScalarUDF;
use datafusion_ffi::udf::FFI_ScalarUDF;

/// The training loop of the `train` example.
const TRAINING_LOOP: &str = include_str!("../../autograd/examples/least_squares.sql");

static LIBRARY: LazyLock<AutogradLibrary> = LazyLock::new(|| {
    // SAFETY: the cdylib cargo built from this crate.
    unsafe { AutogradLibrary::load(&cargo_built_library().unwrap()).unwrap() }
});

/// The FFI table the library exports for `marker`.
fn table(marker: Derivative) -> FFI_SimplifyingScalarUDF {
    LIBRARY.table(marker).unwrap()
}

/// Simplify calls the library has served.
fn simplify_calls() -> u64 {
    LIBRARY.simplify_calls().unwrap()
}

/// A host context with the three foreign markers.
fn host() -> SessionContext {
    let ctx = SessionContext::new();
    LIBRARY.register(&ctx).unwrap();
    ctx
}

async fn column(ctx: &SessionContext, sql: &str) -> Vec<f64> {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    batches
        .iter()
        .flat_map(|b| {
            let c = b
                .column(0)
                .as_any()
                .downcast_ref::<Float64Array>()
                .unwrap()
                .clone();
            (0..c.len()).map(move |i| c.value(i))
        })
        .collect()
}

async fn error(ctx: &SessionContext, sql: &str) -> String {
    match ctx.sql(sql).await {
        Ok(df) => df
            .collect()
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default(),
        Err(e) => e.to_string(),
    }
}

/// Registers `points(id, x, y)` on a noisy line and returns (xs, ys).
async fn points(ctx: &SessionContext) -> (Vec<f64>, Vec<f64>) {
    let xs: Vec<f64> = (0..30).map(|i| 0.5 + 0.05 * i as f64).collect();
    let ys: Vec<f64> = xs
        .iter()
        .enumerate()
        .map(|(i, x)| 1.5 * x + 0.5 + 0.05 * (i as f64).sin())
        .collect();
    let values: Vec<String> = xs
        .iter()
        .zip(&ys)
        .enumerate()
        .map(|(i, (x, y))| format!("({i}, {x}, {y})"))
        .collect();
    let sql = format!(
        "CREATE TABLE points AS SELECT column1 AS id, column2 AS x, column3 AS y FROM (VALUES {})",
        values.join(", ")
    );
    ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    (xs, ys)
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

#[tokio::test]
async fn recursive_cte_training_loop_across_ffi() {
    let ctx = host();
    let (xs, ys) = points(&ctx).await;
    let before = simplify_calls();
    let batches = ctx
        .sql(TRAINING_LOOP)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert!(
        simplify_calls() >= before + 2,
        "the fit was not differentiated by the library"
    );
    let value = |i: usize| {
        batches[0]
            .column(i)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap()
            .value(0)
    };

    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    let (a, b) = (sxy / sxx, my - sxy / sxx * mx);
    assert!(close(value(0), a, 1e-8), "slope {} vs {a}", value(0));
    assert!(close(value(1), b, 1e-8), "intercept {} vs {b}", value(1));
}

#[tokio::test]
async fn insert_select_grad_across_ffi() {
    let ctx = host();
    let (xs, _) = points(&ctx).await;
    ctx.sql("CREATE TABLE slopes (id BIGINT, d DOUBLE, j DOUBLE)")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let before = simplify_calls();
    ctx.sql("INSERT INTO slopes SELECT id, grad(sin(x) * x, x), jvp(exp(x), x, 2) FROM points")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert!(simplify_calls() >= before + 2);
    let d = column(&ctx, "SELECT d FROM slopes ORDER BY id").await;
    let j = column(&ctx, "SELECT j FROM slopes ORDER BY id").await;
    for (i, &x) in xs.iter().enumerate() {
        assert!(close(d[i], x.cos() * x + x.sin(), 1e-12));
        assert!(close(j[i], 2.0 * x.exp(), 1e-12));
    }
}

#[tokio::test]
async fn correlated_subquery_with_grad_across_ffi() {
    let ctx = host();
    let (xs, ys) = points(&ctx).await;
    let got = column(
        &ctx,
        "SELECT (SELECT SUM(vjp(q.x * q.y * q.y, q.y, 0.5)) FROM points q WHERE q.id = p.id) \
         FROM points p ORDER BY p.id",
    )
    .await;
    for i in 0..xs.len() {
        assert!(close(got[i], 0.5 * 2.0 * xs[i] * ys[i], 1e-12));
    }
}

#[tokio::test]
async fn engine_errors_cross_the_boundary() {
    let ctx = host();
    points(&ctx).await;
    let e = error(&ctx, "SELECT grad(nanvl(x, 0.0), x) FROM points").await;
    assert!(e.contains("no derivative rule for 'nanvl'"), "{e}");
    let e = error(&ctx, "SELECT grad(x * x, x + 1) FROM points").await;
    assert!(e.contains("must be a column reference"), "{e}");
    let e = error(&ctx, "SELECT grad(x) FROM points").await;
    assert!(
        e.contains("grad(expression, column) takes 2 arguments, got 1"),
        "{e}"
    );
}

/// The documentation slot: the host's foreign markers carry the library's
/// documentation, so `SHOW FUNCTIONS` on the host describes them.
#[tokio::test]
async fn show_functions_on_the_host_describes_the_markers() {
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_information_schema(true));
    LIBRARY.register(&ctx).unwrap();
    for marker in Derivative::ALL {
        let foreign = LIBRARY.udf(marker).unwrap();
        assert_eq!(foreign.documentation(), udf(marker).documentation());

        let sql = format!("SHOW FUNCTIONS LIKE '{}'", marker.name());
        let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
        let rows: Vec<Vec<String>> = batches
            .iter()
            .flat_map(|b| {
                (0..b.num_rows()).map(move |r| {
                    b.columns()
                        .iter()
                        .map(|c| array_value_to_string(c, r).unwrap())
                        .collect()
                })
            })
            .collect();
        let names: Vec<&str> = marker.arguments().iter().map(|(n, _)| *n).collect();
        let doubles = vec!["Float64"; names.len()];
        assert_eq!(
            rows,
            vec![vec![
                marker.name().to_string(),
                "Float64".to_string(),
                format!("[{}]", names.join(", ")),
                format!("[{}]", doubles.join(", ")),
                "SCALAR".to_string(),
                marker.summary().to_string(),
                marker.usage().to_string(),
            ]],
            "{sql}"
        );
    }
}

/// What a stock host does today: the plain datafusion-ffi UDF, no simplify
/// and no documentation.
#[tokio::test]
async fn without_the_simplify_slot_the_marker_explains_itself() {
    let ctx = SessionContext::new();
    let plain: FFI_ScalarUDF = table(Derivative::Grad).udf.clone();
    let foreign: Arc<dyn datafusion_expr::ScalarUDFImpl> = (&plain).into();
    assert!(foreign.documentation().is_none());
    ctx.register_udf(ScalarUDF::new_from_shared_impl(foreign));
    let e = error(&ctx, "SELECT grad(x * x, x) FROM (VALUES (1.0)) AS t(x)").await;
    assert!(
        e.contains("grad() reached execution: the host did not call the function's simplify hook"),
        "{e}"
    );
}

#[test]
fn malformed_input_is_an_error_not_a_crash() {
    let udf = table(Derivative::Grad);
    let garbage: &[u8] = &[0xff, 0xff, 0x00, 0x13];
    // SAFETY: calling the library's own function over its own table.
    let result = unsafe { (udf.simplify.simplify)(&udf.simplify, garbage.into(), garbage.into()) };
    match result {
        FFI_SimplifyResult::Error(message) => {
            assert!(
                message.to_string().contains("malformed expression bytes"),
                "{message}"
            )
        }
        other => panic!("garbage bytes were accepted: {other:?}"),
    }
}

#[test]
fn mismatched_versions_and_released_tables_are_refused() {
    unsafe extern "C" fn version_one() -> u64 {
        1
    }
    unsafe extern "C" fn datafusion_53() -> u64 {
        53
    }
    let mut udf = table(Derivative::Grad);
    udf.simplify.protocol_version = version_one;
    let e = ScalarUDF::try_from(&udf).unwrap_err().to_string();
    assert!(
        e.contains("speaks simplify protocol version 1; this host speaks version 2"),
        "{e}"
    );

    let mut udf = table(Derivative::Grad);
    udf.simplify.datafusion_version = datafusion_53;
    let e = ScalarUDF::try_from(&udf).unwrap_err().to_string();
    assert!(e.contains("was built with DataFusion 53"), "{e}");

    let mut udf = table(Derivative::Grad);
    // SAFETY: releasing through the library's own function; the table is not used after, except
    // for the checks below, which must see the null pointer.
    unsafe { (udf.simplify.release)(&mut udf.simplify) };
    let e = ScalarUDF::try_from(&udf).unwrap_err().to_string();
    assert!(e.contains("has no simplify data"), "{e}");
    let result = unsafe {
        (udf.simplify.simplify)(
            &udf.simplify,
            Vec::new().as_slice().into(),
            Vec::new().as_slice().into(),
        )
    };
    assert!(matches!(result, FFI_SimplifyResult::Error(m) if m.to_string().contains("released")));
    // SAFETY: as above; a released table answers without touching its data.
    let (doc, listed) = unsafe {
        (
            (udf.simplify.documentation)(&udf.simplify),
            (udf.simplify.listed_argument_types)(&udf.simplify),
        )
    };
    assert!(doc.as_ref().is_none() && listed.is_empty());
}
