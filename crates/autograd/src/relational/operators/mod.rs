//! The table of reverse rules: one per relational operator.
//!
//! A rule says which of the operator's output columns depend on the
//! parameters (`activity`), builds its augmented plan (`forward`) and passes
//! contributions to its inputs (`backward`; see [`super::augment`]). To teach
//! the reverse pass a new operator, write its rule in a file of its own and
//! add one arm to [`rule`]. An operator without a rule is an error wherever
//! the loss depends on a parameter through it; elsewhere its rows are
//! computed as they are.

mod aggregate;
mod alias;
mod filter;
mod join;
mod projection;
mod scan;
mod sort;
mod union;
mod window;

use datafusion_common::{internal_err, Result};
use datafusion_expr::LogicalPlan;

use super::augment::{Bar, Layout};
use super::rule::{unsupported, Rule};

/// One operator's node, as the plan holds it and as its own type: each file
/// below implements [`Rule`] for the operator it is named after.
pub(crate) struct Op<'a, T> {
    /// The node in the loss's plan, which the pass knows it by.
    node: &'a LogicalPlan,
    op: &'a T,
}

/// The rule for `node`'s operator, holding the node.
pub(crate) fn rule(node: &LogicalPlan) -> Result<Box<dyn Rule + '_>> {
    Ok(match node {
        LogicalPlan::Projection(op) => Box::new(Op { node, op }),
        LogicalPlan::Filter(op) => Box::new(Op { node, op }),
        LogicalPlan::SubqueryAlias(op) => Box::new(Op { node, op }),
        LogicalPlan::Sort(op) => Box::new(Op { node, op }),
        LogicalPlan::Join(op) => Box::new(Op { node, op }),
        LogicalPlan::Aggregate(op) => Box::new(Op { node, op }),
        LogicalPlan::Window(op) => Box::new(Op { node, op }),
        LogicalPlan::Union(op) => Box::new(Op { node, op }),
        LogicalPlan::TableScan(op) => Box::new(Op { node, op }),
        LogicalPlan::Limit(_) => return unsupported(node, "a LIMIT picks rows by position"),
        LogicalPlan::Distinct(_) => {
            return unsupported(
                node,
                "DISTINCT merges rows by whether their values are equal",
            )
        }
        LogicalPlan::RecursiveQuery(_) => {
            return unsupported(node, "a recursive query is not differentiated")
        }
        _ => return unsupported(node, "the operator has no reverse rule"),
    })
}

/// Contributions to a node whose rows are rows of one input, passed to it.
fn pass_down(bar: Bar) -> Result<Vec<(usize, Bar)>> {
    let Layout::Rows { inputs, .. } = &bar.aug.layout else {
        return internal_err!("a node with the rows of its input has a row layout");
    };
    let (k, input) = inputs[0].clone();
    Ok(vec![(
        k,
        Bar {
            plan: bar.plan,
            aug: input,
            cot: bar.cot,
        },
    )])
}
