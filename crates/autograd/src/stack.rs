//! Room on the stack for the deep recursions of planning.
//!
//! Plans and expressions are trees, and most code that reads them recurses.
//! DataFusion's own tree walks grow the stack as they go (its
//! `recursive_protection`), but not every recursion on the way does, and a
//! thread may start with little room (2 MiB for Rust's test threads and
//! tokio's workers). The entry points of this crate therefore run on a stack
//! with a generous margin.

use std::sync::Once;

use datafusion_common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion_expr::Expr;

/// The least room an entry point starts with.
const MARGIN: usize = 4 * 1024 * 1024;

/// The size of a fresh stack, when the current one has less room than `MARGIN`.
const FRESH_STACK: usize = 32 * 1024 * 1024;

/// The stack a level of nesting may take, over all the recursions that
/// walk it, generously (unoptimized builds have large frames).
const PER_LEVEL: usize = 64 * 1024;

/// The room DataFusion's grow-as-you-go recursion keeps before each level,
/// and the size of the stacks it adds. Its defaults (128 KiB and 2 MiB) are
/// for optimized builds; one level of unparsing an expression can take more
/// than 128 KiB in an unoptimized one. Raised once, for the whole process.
const RECURSION_RED_ZONE: usize = 1024 * 1024;
const RECURSION_STACK: usize = 16 * 1024 * 1024;

static RECURSION_ROOM: Once = Once::new();

pub(crate) fn ensure_recursion_room() {
    RECURSION_ROOM.call_once(|| {
        if recursive::get_minimum_stack_size() < RECURSION_RED_ZONE {
            recursive::set_minimum_stack_size(RECURSION_RED_ZONE);
        }
        if recursive::get_stack_allocation_size() < RECURSION_STACK {
            recursive::set_stack_allocation_size(RECURSION_STACK);
        }
    });
}

/// Runs `f` with at least `MARGIN` bytes of stack.
pub(crate) fn with_room<T>(f: impl FnOnce() -> T) -> T {
    ensure_recursion_room();
    stacker::maybe_grow(MARGIN, FRESH_STACK, f)
}

/// Runs `f`, which walks trees nested `depth` levels deep, with room for them.
pub(crate) fn with_room_for<T>(depth: usize, f: impl FnOnce() -> T) -> T {
    ensure_recursion_room();
    let room = MARGIN + depth.saturating_mul(PER_LEVEL);
    stacker::maybe_grow(room, room.max(FRESH_STACK), f)
}

/// How many levels deep `expr` nests, found without recursion: what code
/// that recurses over `expr` needs stack for.
pub fn depth(expr: &Expr) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(expr, 1)];
    while let Some((current, level)) = pending.pop() {
        deepest = deepest.max(level);
        let _ = current.apply_children(|child| {
            pending.push((child, level + 1));
            Ok(TreeNodeRecursion::Continue)
        });
    }
    deepest
}
