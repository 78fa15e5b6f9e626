//! What a reverse rule is: the three functions the pass calls for one
//! operator (the `operators` module holds one per operator, in a table), and
//! the error for an operator the pass cannot go through.

use std::rc::Rc;

use datafusion_common::{not_impl_err, Result};
use datafusion_expr::LogicalPlan;

use super::augment::{Augmented, Bar};
use super::backprop::Backprop;

/// Whether each output column depends on the parameter, given the inputs'.
pub(crate) type Activity = fn(&dyn Backprop, &LogicalPlan, &[Rc<[bool]>]) -> Result<Vec<bool>>;
/// The operator's augmented plan.
pub(crate) type Forward = fn(&dyn Backprop, &LogicalPlan) -> Result<Augmented>;
/// Contributions to the inputs' rows (by input position) from the operator's.
pub(crate) type Backward = fn(&dyn Backprop, &LogicalPlan, Bar) -> Result<Vec<(usize, Bar)>>;

/// One operator's reverse rule.
pub(crate) struct Rule {
    pub activity: Activity,
    pub forward: Forward,
    pub backward: Backward,
}

/// An error naming `node`, which the loss depends on the parameter through.
pub(crate) fn unsupported<T>(node: &LogicalPlan, why: impl std::fmt::Display) -> Result<T> {
    not_impl_err!(
        "gradient(): cannot differentiate through {} `{}`: {why}. The loss depends on the \
         parameter through it; supported are projections, filters, inner and cross joins, \
         GROUP BY with SUM, AVG, COUNT, MIN and MAX, the same as window functions over whole \
         partitions, UNION ALL, subquery aliases, CTEs, views and uncorrelated scalar subqueries",
        operator_kind(node),
        node.display()
    )
}

/// The name of `node`'s operator, as the rule table knows it.
pub(crate) fn operator_kind(node: &LogicalPlan) -> &'static str {
    match node {
        LogicalPlan::Projection(_) => "Projection",
        LogicalPlan::Filter(_) => "Filter",
        LogicalPlan::Window(_) => "Window",
        LogicalPlan::Aggregate(_) => "Aggregate",
        LogicalPlan::Sort(_) => "Sort",
        LogicalPlan::Join(_) => "Join",
        LogicalPlan::Repartition(_) => "Repartition",
        LogicalPlan::Union(_) => "Union",
        LogicalPlan::TableScan(_) => "TableScan",
        LogicalPlan::EmptyRelation(_) => "EmptyRelation",
        LogicalPlan::Subquery(_) => "Subquery",
        LogicalPlan::SubqueryAlias(_) => "SubqueryAlias",
        LogicalPlan::Limit(_) => "Limit",
        LogicalPlan::Statement(_) => "Statement",
        LogicalPlan::Values(_) => "Values",
        LogicalPlan::Explain(_) => "Explain",
        LogicalPlan::Analyze(_) => "Analyze",
        LogicalPlan::Extension(_) => "Extension",
        LogicalPlan::Distinct(_) => "Distinct",
        LogicalPlan::Dml(_) => "Dml",
        LogicalPlan::Ddl(_) => "Ddl",
        LogicalPlan::Copy(_) => "Copy",
        LogicalPlan::DescribeTable(_) => "DescribeTable",
        LogicalPlan::Unnest(_) => "Unnest",
        LogicalPlan::RecursiveQuery(_) => "RecursiveQuery",
    }
}
