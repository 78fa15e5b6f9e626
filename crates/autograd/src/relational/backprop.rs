//! What a reverse rule may ask of the pass that runs it.
//!
//! Rules go through one operator; everything else (the augmented plans of
//! its inputs, which columns depend on the parameters, stages, names) belongs
//! to the whole pass. The pass (`pass::Pass`) calls the rules, and the rules
//! call back through this trait, so that they depend on what a pass offers
//! and not on the pass that calls them.

use std::rc::Rc;

use datafusion_common::{Column, Result};
use datafusion_expr::LogicalPlan;

use super::augment::Augmented;
use super::parameter::Parameter;
use crate::options::AutogradOptions;

/// A reverse pass, as its rules see it.
pub(crate) trait Backprop {
    /// The columns differentiated by.
    fn parameters(&self) -> &[Parameter];

    /// The options of the scalar engine, for the derivatives of expressions.
    fn options(&self) -> &AutogradOptions;

    /// A column of `node`'s augmented plan: the same for the same node and
    /// `suffix`, used nowhere else.
    fn named(&self, node: &LogicalPlan, suffix: &str) -> Column;

    /// The name of output column `j` of `node` in its augmented plan.
    fn out_name(&self, node: &LogicalPlan, j: usize) -> Column {
        self.named(node, &j.to_string())
    }

    /// The names of all of `node`'s output columns in its augmented plan.
    fn out_names(&self, node: &LogicalPlan) -> Vec<Column> {
        (0..node.schema().fields().len())
            .map(|j| self.out_name(node, j))
            .collect()
    }

    /// A column name used nowhere else.
    fn fresh(&self, what: &str) -> Column;

    /// Per output column of `node`: whether its value depends on a
    /// parameter.
    fn active(&self, node: &LogicalPlan) -> Result<Rc<[bool]>>;

    /// `node`'s augmented plan, built once per pass.
    fn forward(&self, node: &LogicalPlan) -> Result<Augmented>;

    /// `node`'s augmented plan under names of its own: for the second side
    /// of a join whose sides share a relation (a CTE read twice), so that
    /// the two sides' columns never meet.
    fn forward_apart(&self, node: &LogicalPlan) -> Result<Augmented>;

    /// The augmented plan of `node`, the input of a reduction, which both the
    /// reduction and its reverse rule read: computed once and kept, unless
    /// its rows are computed from rows alone (see
    /// [`super::staged::computed_again`]), which each reader computes again.
    fn reduced_input(&self, node: &LogicalPlan) -> Result<Augmented>;

    /// A relation read more than once: it becomes a stage, computed once,
    /// and a scan of it stands in its place.
    fn stage(&self, plan: LogicalPlan) -> Result<LogicalPlan>;

    /// Records contributions that reached the table of parameter `k`.
    fn contribute(&self, k: usize, plan: LogicalPlan);
}
