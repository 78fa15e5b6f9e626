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

use std::collections::HashMap;
use std::rc::Rc;

use datafusion_common::tree_node::{Transformed, TreeNode};
use datafusion_common::{not_impl_err, Column, DFSchema, Result};
use datafusion_expr::{Expr, LogicalPlan};

use super::augment::{Augmented, Bar};
use super::backprop::Backprop;

/// Whether each output column depends on the parameter, given the inputs'.
pub(crate) type Activity = fn(&Backprop, &LogicalPlan, &[Rc<[bool]>]) -> Result<Vec<bool>>;
/// The operator's augmented plan.
pub(crate) type Forward = fn(&Backprop, &LogicalPlan) -> Result<Augmented>;
/// Contributions to the inputs' rows (by input position) from the operator's.
pub(crate) type Backward = fn(&Backprop, &LogicalPlan, Bar) -> Result<Vec<(usize, Bar)>>;

pub(crate) struct Rule {
    pub activity: Activity,
    pub forward: Forward,
    pub backward: Backward,
}

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
    let kind = kind(node);
    match RULES.iter().find(|(name, _)| *name == kind) {
        Some((_, rule)) => Ok(rule),
        None => unsupported(node, "the operator has no reverse rule"),
    }
}

/// An error naming `node`, which the loss depends on the parameter through.
pub(crate) fn unsupported<T>(node: &LogicalPlan, why: impl std::fmt::Display) -> Result<T> {
    not_impl_err!(
        "gradient(): cannot differentiate through {} `{}`: {why}. The loss depends on the \
         parameter through it; supported are projections, filters, inner and cross joins, \
         GROUP BY with SUM, AVG, COUNT, MIN and MAX, the same as window functions over whole \
         partitions, UNION ALL, subquery aliases, CTEs, views and uncorrelated scalar subqueries",
        kind(node),
        node.display()
    )
}

fn kind(node: &LogicalPlan) -> &'static str {
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

/// Rewrites expressions over a node's input, whose schema is `schema`, into
/// expressions over the input's augmented plan, whose columns for it are
/// `out`.
pub(crate) struct Substitution {
    columns: HashMap<Column, Column>,
}

impl Substitution {
    pub fn new(schema: &DFSchema, out: &[Column]) -> Self {
        let columns = schema
            .columns()
            .into_iter()
            .zip(out.iter().cloned())
            .collect();
        Self { columns }
    }

    /// `expr` over the augmented plan. Columns are matched as the schema
    /// names them, qualified or not.
    pub fn apply(&self, expr: &Expr) -> Result<Expr> {
        expr.clone()
            .transform_up(|e| match &e {
                Expr::Column(c) => match self.find(c) {
                    Some(to) => Ok(Transformed::yes(Expr::Column(to.clone()))),
                    None => Ok(Transformed::no(e)),
                },
                _ => Ok(Transformed::no(e)),
            })
            .map(|t| t.data)
    }

    fn find(&self, column: &Column) -> Option<&Column> {
        self.columns.get(column).or_else(|| {
            let mut by_name = self
                .columns
                .iter()
                .filter(|(from, _)| column.relation.is_none() && from.name == column.name);
            match (by_name.next(), by_name.next()) {
                (Some((_, to)), None) => Some(to),
                _ => None,
            }
        })
    }
}
