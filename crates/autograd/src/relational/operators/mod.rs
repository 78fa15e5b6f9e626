//! The table of reverse rules: one per relational operator.
//!
//! A rule says which of the operator's output columns depend on the
//! parameter (`activity`), builds its augmented plan (`forward`) and passes
//! contributions to its inputs (`backward`; see [`super::augment`]). To teach
//! the reverse pass a new operator, write its rule in a file of its own and
//! add one line to [`RULES`]. An operator without a rule is an error wherever
//! the loss depends on the parameter through it; elsewhere its rows are
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

use datafusion_common::Result;
use datafusion_expr::LogicalPlan;

use super::rule::{operator_kind, unsupported, Rule};

/// Every operator the reverse pass goes through, and its rule.
static RULES: &[(&str, Rule)] = &[
    ("Projection", projection::RULE),
    ("Filter", filter::RULE),
    ("SubqueryAlias", alias::RULE),
    ("Sort", sort::RULE),
    ("Join", join::RULE),
    ("Aggregate", aggregate::RULE),
    ("Window", window::RULE),
    ("Union", union::RULE),
    ("TableScan", scan::RULE),
];

/// The rule for `node`'s operator.
pub(crate) fn rule(node: &LogicalPlan) -> Result<&'static Rule> {
    let kind = operator_kind(node);
    match RULES.iter().find(|(name, _)| *name == kind) {
        Some((_, rule)) => Ok(rule),
        None => unsupported(node, "the operator has no reverse rule"),
    }
}
