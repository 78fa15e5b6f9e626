//! Which columns depend on the parameter: what the rules' `activity`
//! functions share.

use std::rc::Rc;

use datafusion_common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion_common::DFSchema;
use datafusion_expr::Expr;

/// Whether `expr` reads any column `schema` marks active.
pub(crate) fn reads_active(expr: &Expr, schema: &DFSchema, active: &[bool]) -> bool {
    let mut found = false;
    let _ = expr.apply(|e| {
        if let Expr::Column(c) = e {
            found |= schema.index_of_column(c).is_ok_and(|j| active[j]);
        }
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}

/// All the active columns' flags of a node's inputs, side by side, in the
/// order the inputs' schemas are merged.
pub(crate) fn concat(active: &[Rc<[bool]>]) -> Vec<bool> {
    active.iter().flat_map(|a| a.iter().copied()).collect()
}
