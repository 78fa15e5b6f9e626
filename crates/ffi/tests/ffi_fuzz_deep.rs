//! Deep nesting across FFI: payloads nested deeper than any stack must come
//! back as errors, and a valid query nested 40 deep must differentiate (or be
//! refused) on a 2 MiB thread, the stack of tokio's worker threads.
//!
//! The workspace turns off prost's recursion limit (expressions nest deeper
//! than its default of 100), and datafusion-proto converts messages to and
//! from expressions recursively, so the codec recurses once per level of
//! nesting, with large frames in a debug build; until the codec bounds the
//! depth itself, these overflow the stack and abort the process. That is why
//! this binary is not part of the default run: it is built only with the
//! feature `deep-payloads`, by the full fuzz run (see the crate's README).
//! Each case runs in a child process, so a crash fails its own test with a
//! reproducer and spares the others.
//!
//! ```sh
//! cargo test -p datafusion-autograd-ffi --features deep-payloads --test ffi_fuzz_deep
//! ```

#[path = "fuzz/isolation.rs"]
mod isolation;
#[path = "fuzz/nesting.rs"]
mod nesting;

use std::sync::LazyLock;

use datafusion::arrow::array::{Array, Float64Array};
use datafusion::prelude::SessionContext;
use datafusion_autograd::Derivative;
use datafusion_autograd_ffi::codec::{expr_from_bytes, exprs_to_bytes, schema_to_bytes};
use datafusion_autograd_ffi::host::{cargo_built_library, AutogradLibrary};
use datafusion_autograd_ffi::FFI_SimplifyResult;
use datafusion_common::DFSchema;
use datafusion_expr::col;

/// Levels of nesting: far beyond what a recursive decoder survives on any
/// thread's stack.
const DEPTH: usize = 1_000_000;

static LIBRARY: LazyLock<AutogradLibrary> = LazyLock::new(|| {
    // SAFETY: the cdylib cargo built from this crate.
    unsafe { AutogradLibrary::load(&cargo_built_library().unwrap()).unwrap() }
});

/// Runs `case` in a child process of this binary: `Ok` says what happened,
/// `Err` why the case failed; a crash fails it too.
fn in_a_child(test: &str, input: &str, case: impl Fn() -> Result<String, String>) {
    if isolation::child_range().is_some() {
        match case() {
            Ok(outcome) => println!("{outcome}"),
            Err(failure) => panic!("{input}: {failure}"),
        }
        return;
    }
    isolation::run_in_children(test, 0..1, |_| format!("reproducer: {input}"));
}

/// Simplifies `grad(args…)` across FFI; only an error is the right outcome.
fn refused_across_ffi(args: Vec<u8>, schema: Vec<u8>) -> Result<String, String> {
    let table = LIBRARY.table(Derivative::Grad).unwrap();
    // SAFETY: the library's own function over its own live table.
    let result = unsafe {
        (table.simplify.simplify)(
            &table.simplify,
            args.as_slice().into(),
            schema.as_slice().into(),
        )
    };
    match result {
        FFI_SimplifyResult::Error(message) => Ok(format!("refused: {message}")),
        other => Err(format!("accepted: {other:?}")),
    }
}

#[test]
fn deeply_nested_arguments_are_an_error_across_ffi() {
    in_a_child(
        "deeply_nested_arguments_are_an_error_across_ffi",
        &format!("grad's arguments: a LogicalExprList of {DEPTH} nested negations of x"),
        || {
            let mut args = nesting::negations_list(DEPTH);
            // grad(-(-(…x)), x): the column argument follows the deep one.
            args.extend(exprs_to_bytes(&[col("x")]).unwrap());
            let schema = schema_to_bytes(&DFSchema::empty()).unwrap();
            refused_across_ffi(args, schema)
        },
    );
}

#[test]
fn a_deeply_nested_schema_is_an_error_across_ffi() {
    in_a_child(
        "a_deeply_nested_schema_is_an_error_across_ffi",
        &format!("the schema: a DfSchema whose one field is a List nested {DEPTH} deep"),
        || {
            let args = exprs_to_bytes(&[col("x") * col("x"), col("x")]).unwrap();
            refused_across_ffi(args, nesting::nested_lists_schema(DEPTH))
        },
    );
}

/// The Python extension's `derivative` decodes each argument with
/// `expr_from_bytes`.
#[test]
fn a_deeply_nested_expression_is_an_error_in_the_python_codec() {
    in_a_child(
        "a_deeply_nested_expression_is_an_error_in_the_python_codec",
        &format!("one LogicalExprNode of {DEPTH} nested negations of x"),
        || match expr_from_bytes(&nesting::negations_node(DEPTH)) {
            Err(e) => Ok(format!("refused: {e}")),
            Ok(_) => Err("decoded".to_string()),
        },
    );
}

/// Nesting of the valid query: DataFusion's SQL parser accepts it, and the
/// native markers differentiate it on a 2 MiB thread.
const QUERY_DEPTH: usize = 40;

/// `grad(sin(sin(…sin(x)…)), x)` at x = 0.5, planned by a host whose markers
/// come from the library, on a thread with tokio's default worker stack.
#[test]
fn a_valid_query_nested_40_deep_differentiates_across_ffi_on_a_2_mib_thread() {
    in_a_child(
        "a_valid_query_nested_40_deep_differentiates_across_ffi_on_a_2_mib_thread",
        &format!("SELECT grad(sin(sin(…{QUERY_DEPTH} deep…(x))), x) FROM (VALUES (0.5)) AS t(x)"),
        || {
            std::thread::Builder::new()
                .stack_size(2 << 20)
                .spawn(nested_sines_across_ffi)
                .unwrap()
                .join()
                .unwrap()
        },
    );
}

/// A correct derivative, or the host's refusal, is the right outcome.
fn nested_sines_across_ffi() -> Result<String, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let ctx = SessionContext::new();
    LIBRARY.register(&ctx).unwrap();
    let f = (0..QUERY_DEPTH).fold("x".to_string(), |inner, _| format!("sin({inner})"));
    let sql = format!("SELECT grad({f}, x) FROM (VALUES (0.5)) AS t(x)");
    let batches = match runtime.block_on(async { ctx.sql(&sql).await?.collect().await }) {
        Ok(batches) => batches,
        Err(e) => return Ok(format!("refused: {e}")),
    };
    let got = batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap()
        .value(0);
    // The chain rule: the product of cos(sinᵏ(0.5)) for k = 0 … depth − 1.
    let (mut value, mut expected) = (0.5f64, 1.0);
    for _ in 0..QUERY_DEPTH {
        expected *= value.cos();
        value = value.sin();
    }
    if (got - expected).abs() > 1e-12 * expected.abs() {
        return Err(format!(
            "the derivative is {got}, the chain rule gives {expected}"
        ));
    }
    Ok(format!("differentiated: {got}"))
}
