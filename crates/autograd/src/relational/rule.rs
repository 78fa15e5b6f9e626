//! What a reverse rule is: the three things the pass asks of one operator
//! (the `operators` module holds one rule per operator), and the error for
//! an operator the pass cannot go through.

use std::rc::Rc;

use datafusion_common::Result;
use datafusion_expr::LogicalPlan;

use super::augment::{Augmented, Bar};
use super::backprop::Backprop;
use crate::error::fail;

/// One operator's reverse rule, holding the operator's node.
pub(crate) trait Rule {
    /// Whether each output column depends on a parameter, given the inputs'.
    fn activity(&self, bp: &dyn Backprop, inputs: &[Rc<[bool]>]) -> Result<Vec<bool>>;

    /// The operator's augmented plan.
    fn forward(&self, bp: &dyn Backprop) -> Result<Augmented>;

    /// Contributions to the inputs' rows (by input position) from
    /// contributions to the operator's.
    fn backward(&self, bp: &dyn Backprop, bar: Bar) -> Result<Vec<(usize, Bar)>>;
}

/// An error naming `node`, which the loss depends on the parameter through.
pub(crate) fn unsupported<T>(node: &LogicalPlan, why: impl std::fmt::Display) -> Result<T> {
    fail!(
        UnsupportedOperation,
        "gradient(): cannot differentiate through {} `{}`: {why}. The loss depends on a \
         parameter through it; see the operators gradient() supports in the README \
         (Gradients of whole queries)",
        operator(node),
        node.display()
    )
}

/// The operator's name as DataFusion displays it: the text before the first
/// colon of its one-line display (`Limit`, `Left Join`, `Distinct`).
pub(crate) fn operator(node: &LogicalPlan) -> String {
    let shown = node.display().to_string();
    match shown.split_once(':') {
        Some((name, _)) => name.trim().to_string(),
        None => shown
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string(),
    }
}
