//! Panics at the library's edges: no panic may unwind into a host (undefined
//! behaviour across `extern "C"`) or reach Python as pyo3's `PanicException`
//! (a `BaseException` that `except Exception` does not catch). Both edges
//! catch them and report them as errors with this message.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The message a panic was raised with, or an empty string.
pub fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// Runs `f`; a panic becomes `Err("<what> panicked: <message>")`.
pub fn catch_panic<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    // The closures given here own or borrow only data that is dropped or
    // discarded after a panic, so no broken invariant is observed later.
    catch_unwind(AssertUnwindSafe(f))
        .map_err(|panic| format!("{what} panicked: {}", panic_message(panic.as_ref())))
}
