//! grad, jvp and vjp for DataFusion hosts in other libraries.
//!
//! This crate is a `cdylib` that exports the markers of
//! [`datafusion_autograd`] as datafusion-ffi scalar UDFs, each paired with a
//! simplify slot of its own protocol (see [`simplify`] and the README), so a
//! host runs the derivative rewrite in its own planner. [`host`] is the host's
//! half: it loads the library and registers its markers. The Python extension
//! (`python/`) is this crate plus its Python bindings.
//!
//! Exported C symbols, each returning a fresh, owned table:
//!
//! | symbol | returns |
//! | --- | --- |
//! | `datafusion_autograd_grad` | [`FFI_SimplifyingScalarUDF`] of `grad` |
//! | `datafusion_autograd_jvp` | [`FFI_SimplifyingScalarUDF`] of `jvp` |
//! | `datafusion_autograd_vjp` | [`FFI_SimplifyingScalarUDF`] of `vjp` |
//! | `datafusion_autograd_simplify_calls` | simplify calls served so far (`u64`) |

#![allow(non_camel_case_types)]

pub mod codec;
pub mod host;
pub mod nesting;
pub mod panics;
pub mod simplify;

use datafusion_autograd::{udf, Derivative};

pub use simplify::{
    FFI_ScalarUDFSimplify, FFI_SimplifyResult, FFI_SimplifyingScalarUDF, ForeignSimplifyingUDF,
    SIMPLIFY_PROTOCOL_VERSION,
};

/// The symbol under which the library exports `marker`.
pub fn symbol(marker: Derivative) -> String {
    format!("datafusion_autograd_{}", marker.name())
}

/// The symbol of the simplify-call counter.
pub const SIMPLIFY_CALLS_SYMBOL: &str = "datafusion_autograd_simplify_calls";

/// The `grad` marker with its simplify slot.
#[no_mangle]
pub extern "C" fn datafusion_autograd_grad() -> FFI_SimplifyingScalarUDF {
    udf(Derivative::Grad).into()
}

/// The `jvp` marker with its simplify slot.
#[no_mangle]
pub extern "C" fn datafusion_autograd_jvp() -> FFI_SimplifyingScalarUDF {
    udf(Derivative::Jvp).into()
}

/// The `vjp` marker with its simplify slot.
#[no_mangle]
pub extern "C" fn datafusion_autograd_vjp() -> FFI_SimplifyingScalarUDF {
    udf(Derivative::Vjp).into()
}

/// How many simplify calls this library has served across FFI.
#[no_mangle]
pub extern "C" fn datafusion_autograd_simplify_calls() -> u64 {
    simplify::simplify_calls()
}
