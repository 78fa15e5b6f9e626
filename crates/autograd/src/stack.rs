//! Room on the stack for the deep recursions of planning.
//!
//! Plans and expressions are trees, and most code that reads them recurses.
//! DataFusion's own tree walks grow the stack as they go (its
//! `recursive_protection`), but not every recursion on the way does, and a
//! thread may start with little room (2 MiB for Rust's test threads and
//! tokio's workers). The entry points of this crate therefore run on a stack
//! with a generous margin.

/// The least room an entry point starts with.
const MARGIN: usize = 4 * 1024 * 1024;

/// The size of a fresh stack, when the current one has less room than `MARGIN`.
const FRESH_STACK: usize = 32 * 1024 * 1024;

/// Runs `f` with at least `MARGIN` bytes of stack.
pub(crate) fn with_room<T>(f: impl FnOnce() -> T) -> T {
    stacker::maybe_grow(MARGIN, FRESH_STACK, f)
}
