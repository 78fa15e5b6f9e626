//! Deep nesting across FFI, on the 2 MiB stacks of tokio's worker threads:
//! payloads nested far beyond the codec's bound must come back as errors,
//! payloads nested just under it must decode and differentiate, and so must
//! a valid query nested 40 deep.
//!
//! The workspace turns off prost's recursion limit, and datafusion-proto
//! converts between messages and expressions recursively, with large frames in
//! a debug build; the codec measures nesting before it decodes and decodes on
//! a stack it sizes from the depth, and encodes on a stack sized from the
//! expressions' depth. Two cases guard those sizes: a valid query nested 40
//! deep, whose arguments the host encodes (datafusion-proto's encoder takes
//! over 2 MiB for it in a debug build), and a decode on a thread whose stack
//! is large, but smaller than the decode needs, so the codec must not trust
//! it. Each case runs in a child process, so a crash fails its own test with
//! a reproducer and spares the others.
//!
//! ```sh
//! cargo test -p datafusion-autograd-ffi --test ffi_fuzz_deep
//! ```

#[path = "fuzz/isolation.rs"]
mod isolation;
#[path = "fuzz/nesting.rs"]
mod nesting;

use std::sync::LazyLock;

use datafusion_autograd::Derivative;
use datafusion_autograd_ffi::codec::{
    expr_from_bytes, exprs_from_bytes, exprs_to_bytes, schema_to_bytes,
};
use datafusion_autograd_ffi::host::{cargo_built_library, AutogradLibrary};
use datafusion_autograd_ffi::FFI_SimplifyResult;
use datafusion_common::DFSchema;
use datafusion_expr::{col, lit};

/// Levels of nesting far beyond any bound a decoder may set.
const BEYOND: usize = 1_000_000;

/// Negations nested just under the codec's bound of 20,000 messages (two per
/// negation).
const NEGATIONS_UNDER_THE_BOUND: usize = 9_900;

/// Negations the engine differentiates across FFI in a second or so (its time
/// grows with the square of the depth).
const NEGATIONS_ACROSS_FFI: usize = 2_000;

/// Lists nested just under the codec's bound (four messages per list).
const LISTS_UNDER_THE_BOUND: usize = 4_500;

/// The stack of tokio's worker threads, on which hosts plan queries.
const WORKER_STACK: usize = 2 << 20;

static LIBRARY: LazyLock<AutogradLibrary> = LazyLock::new(|| {
    // SAFETY: the cdylib cargo built from this crate.
    unsafe { AutogradLibrary::load(&cargo_built_library().unwrap()).unwrap() }
});

/// Runs `case` in a child process of this binary, on a thread with tokio's
/// worker stack: `Ok` says what happened, `Err` why the case failed; a crash
/// fails it too.
fn in_a_child(
    test: &str,
    input: &str,
    case: impl FnOnce() -> Result<String, String> + Send + 'static,
) {
    in_a_child_with_stack(test, input, WORKER_STACK, case);
}

/// [`in_a_child`] on a thread with `stack` bytes of stack.
fn in_a_child_with_stack(
    test: &str,
    input: &str,
    stack: usize,
    case: impl FnOnce() -> Result<String, String> + Send + 'static,
) {
    if isolation::child_range().is_some() {
        let outcome = std::thread::Builder::new()
            .stack_size(stack)
            .spawn(case)
            .unwrap()
            .join()
            .unwrap();
        match outcome {
            Ok(outcome) => println!("{outcome}"),
            Err(failure) => panic!("{input}: {failure}"),
        }
        return;
    }
    isolation::run_in_children(test, 0..1, |_| format!("reproducer: {input}"));
}

/// Calls grad's simplify across FFI.
fn simplify_across_ffi(args: Vec<u8>, schema: Vec<u8>) -> FFI_SimplifyResult {
    let table = LIBRARY.table(Derivative::Grad).unwrap();
    // SAFETY: the library's own function over its own live table.
    unsafe {
        (table.simplify.simplify)(
            &table.simplify,
            args.as_slice().into(),
            schema.as_slice().into(),
        )
    }
}

/// Only an error is the right outcome.
fn refused(result: FFI_SimplifyResult) -> Result<String, String> {
    match result {
        FFI_SimplifyResult::Error(message) => Ok(format!("refused: {message}")),
        other => Err(format!("accepted: {other:?}")),
    }
}

/// The derivative `expected` is the only right outcome.
fn differentiated(
    result: FFI_SimplifyResult,
    expected: datafusion_expr::Expr,
) -> Result<String, String> {
    match result {
        FFI_SimplifyResult::Error(message) => Err(format!("refused: {message}")),
        FFI_SimplifyResult::Simplified(bytes) => {
            let got = exprs_from_bytes(&bytes).map_err(|e| e.to_string())?;
            if got != [expected.clone()] {
                return Err(format!("the derivative is {got:?}, not {expected}"));
            }
            Ok(format!("differentiated: {expected}"))
        }
        FFI_SimplifyResult::Original => Err("the call was kept".to_string()),
    }
}

/// `grad(-(-(…x)), x)` with `depth` negations.
fn negations_and_x(depth: usize) -> Vec<u8> {
    let mut args = nesting::negations_list(depth);
    // Protobuf merges the two lists: the column argument follows the deep one.
    args.extend(exprs_to_bytes(&[col("x")]).unwrap());
    args
}

fn empty_schema() -> Vec<u8> {
    schema_to_bytes(&DFSchema::empty()).unwrap()
}

#[test]
fn arguments_nested_beyond_the_bound_are_an_error_across_ffi() {
    in_a_child(
        "arguments_nested_beyond_the_bound_are_an_error_across_ffi",
        &format!("grad's arguments: {BEYOND} nested negations of x, and x"),
        || refused(simplify_across_ffi(negations_and_x(BEYOND), empty_schema())),
    );
}

#[test]
fn a_schema_nested_beyond_the_bound_is_an_error_across_ffi() {
    in_a_child(
        "a_schema_nested_beyond_the_bound_is_an_error_across_ffi",
        &format!("the schema: one field, a List nested {BEYOND} deep"),
        || {
            let args = exprs_to_bytes(&[col("x") * col("x"), col("x")]).unwrap();
            refused(simplify_across_ffi(
                args,
                nesting::nested_lists_schema(BEYOND),
            ))
        },
    );
}

/// The Python extension's `derivative` decodes each argument with
/// `expr_from_bytes`.
#[test]
fn an_expression_nested_beyond_the_bound_is_an_error_in_the_python_codec() {
    in_a_child(
        "an_expression_nested_beyond_the_bound_is_an_error_in_the_python_codec",
        &format!("one LogicalExprNode of {BEYOND} nested negations of x"),
        || match expr_from_bytes(&nesting::negations_node(BEYOND)) {
            Err(e) => Ok(format!("refused: {e}")),
            Ok(_) => Err("decoded".to_string()),
        },
    );
}

#[test]
fn an_expression_nested_just_under_the_bound_decodes_in_the_python_codec() {
    in_a_child(
        "an_expression_nested_just_under_the_bound_decodes_in_the_python_codec",
        &format!("one LogicalExprNode of {NEGATIONS_UNDER_THE_BOUND} nested negations of x"),
        || decodes(NEGATIONS_UNDER_THE_BOUND),
    );
}

/// Decoding `depth` negations of `x` must give them back.
fn decodes(depth: usize) -> Result<String, String> {
    match expr_from_bytes(&nesting::negations_node(depth)) {
        Err(e) => Err(format!("refused: {e}")),
        Ok(mut expr) => {
            // Unwrapped one level at a time: the test must not recurse itself.
            let mut negations = 0;
            while let datafusion_expr::Expr::Negative(inner) = expr {
                expr = *inner;
                negations += 1;
            }
            if negations != depth || expr != col("x") {
                return Err(format!("decoded {negations} negations of {expr}"));
            }
            Ok(format!("decoded {depth} negations"))
        }
    }
}

#[test]
fn arguments_nested_2000_deep_differentiate_across_ffi() {
    in_a_child(
        "arguments_nested_2000_deep_differentiate_across_ffi",
        &format!("grad's arguments: {NEGATIONS_ACROSS_FFI} nested negations of x, and x"),
        || {
            let args = negations_and_x(NEGATIONS_ACROSS_FFI);
            // An even number of negations: the derivative is 1.
            differentiated(simplify_across_ffi(args, empty_schema()), lit(1.0))
        },
    );
}

#[test]
fn a_schema_nested_just_under_the_bound_differentiates_across_ffi() {
    in_a_child(
        "a_schema_nested_just_under_the_bound_differentiates_across_ffi",
        &format!("the schema: x DOUBLE, and a List nested {LISTS_UNDER_THE_BOUND} deep"),
        || {
            let args = exprs_to_bytes(&[col("x") * col("x"), col("x")]).unwrap();
            // Protobuf merges the two schemas' columns: x, then the deep list.
            let x = DFSchema::try_from(datafusion::arrow::datatypes::Schema::new(vec![
                datafusion::arrow::datatypes::Field::new(
                    "x",
                    datafusion::arrow::datatypes::DataType::Float64,
                    true,
                ),
            ]))
            .unwrap();
            let mut schema = schema_to_bytes(&x).unwrap();
            schema.extend(nesting::nested_lists_schema(LISTS_UNDER_THE_BOUND));
            differentiated(simplify_across_ffi(args, schema), col("x") * lit(2.0))
        },
    );
}

/// Negations whose decoding takes about 230 MiB of stack in a debug build.
const NEGATIONS_FOR_A_LARGE_STACK: usize = 6_000;

/// A large stack, yet too small for decoding those in place.
const LARGE_STACK: usize = 200 << 20;

#[test]
fn an_expression_6000_deep_decodes_on_a_thread_with_200_mib_of_stack() {
    in_a_child_with_stack(
        "an_expression_6000_deep_decodes_on_a_thread_with_200_mib_of_stack",
        &format!(
            "one LogicalExprNode of {NEGATIONS_FOR_A_LARGE_STACK} nested negations of x, \
             decoded on a thread with {} MiB of stack",
            LARGE_STACK >> 20
        ),
        LARGE_STACK,
        || decodes(NEGATIONS_FOR_A_LARGE_STACK),
    );
}

/// Nesting of the valid query: DataFusion's SQL parser accepts it, and the
/// native markers differentiate it on a 2 MiB thread.
const QUERY_DEPTH: usize = 40;

/// `grad(sin(sin(…sin(x)…)), x)` at x = 0.5, planned by a host whose markers
/// come from the library.
#[test]
fn a_valid_query_nested_40_deep_differentiates_across_ffi() {
    in_a_child(
        "a_valid_query_nested_40_deep_differentiates_across_ffi",
        &format!("SELECT grad(sin(sin(…{QUERY_DEPTH} deep…(x))), x) FROM (VALUES (0.5)) AS t(x)"),
        nested_sines_across_ffi,
    );
}

/// The correct derivative is the only right outcome.
fn nested_sines_across_ffi() -> Result<String, String> {
    use datafusion::arrow::array::{Array, Float64Array};
    use datafusion::prelude::SessionContext;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let ctx = SessionContext::new();
    LIBRARY.register(&ctx).unwrap();
    let f = (0..QUERY_DEPTH).fold("x".to_string(), |inner, _| format!("sin({inner})"));
    let sql = format!("SELECT grad({f}, x) FROM (VALUES (0.5)) AS t(x)");
    let batches = match runtime.block_on(async { ctx.sql(&sql).await?.collect().await }) {
        Ok(batches) => batches,
        Err(e) => return Err(format!("refused: {e}")),
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
