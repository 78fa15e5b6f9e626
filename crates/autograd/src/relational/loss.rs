//! The loss in the form the reverse pass reads.

use std::rc::Rc;

use datafusion_common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion_common::{plan_err, Column, DFSchema, Result};
use datafusion_expr::expr_rewriter::NamePreserver;
use datafusion_expr::{Expr, LogicalPlan, LogicalPlanBuilder};

use super::parameter::Parameter;
use crate::marker::expand_markers;
use crate::options::AutogradOptions;
use crate::reals::ColumnTypes;

/// `loss` in the form the reverse pass reads: markers differentiated, and
/// scalar subqueries that read the parameter's table joined to the rows that
/// use them. Checks that it computes the same rows every time it is
/// evaluated: the reverse pass evaluates parts of it more than once.
pub(crate) fn normalize(
    loss: &LogicalPlan,
    parameter: &Parameter,
    options: &AutogradOptions,
) -> Result<LogicalPlan> {
    let plan = lift_subqueries(loss.clone(), parameter)?;
    let plan = plan
        .clone()
        .transform_up_with_subqueries(|node| {
            let names = NamePreserver::new(&node);
            let input_schema = match node.inputs().as_slice() {
                [input] => Some(Rc::new(input.schema().as_ref().clone())),
                _ => None,
            };
            let schema = input_schema.unwrap_or_else(|| Rc::new(merged_input_schema(&node)));
            node.map_expressions(|e| {
                let saved = names.save(&e);
                let expanded = expand_markers(e, ColumnTypes::Schema(&schema), options)?;
                Ok(Transformed::yes(saved.restore(expanded)))
            })?
            .map_data(LogicalPlan::recompute_schema)
        })?
        .data;
    plan.apply_with_subqueries(|node| {
        let mut volatile = None;
        node.apply_expressions(|e| {
            e.apply(|sub| {
                if sub.is_volatile_node() {
                    volatile = Some(sub.to_string());
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        if let Some(function) = volatile {
            return plan_err!(
                "gradient(): the loss calls `{function}`, which returns new values each time; \
                 the gradient evaluates parts of the loss more than once, so they would disagree"
            );
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(plan)
}

/// The schema the expressions of a node with several inputs are evaluated
/// against (for a join: both sides side by side).
fn merged_input_schema(node: &LogicalPlan) -> DFSchema {
    let mut schema = DFSchema::empty();
    for input in node.inputs() {
        schema.merge(input.schema());
    }
    schema
}

/// Whether `plan` returns exactly one row, whatever its inputs hold.
pub(crate) fn returns_one_row(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Aggregate(a) => a.group_expr.is_empty(),
        LogicalPlan::Projection(p) => returns_one_row(&p.input),
        LogicalPlan::SubqueryAlias(a) => returns_one_row(&a.input),
        LogicalPlan::Sort(s) => s.fetch != Some(0) && returns_one_row(&s.input),
        LogicalPlan::Window(w) => returns_one_row(&w.input),
        LogicalPlan::EmptyRelation(e) => e.produce_one_row,
        LogicalPlan::Values(v) => v.values.len() == 1,
        LogicalPlan::Join(j) => {
            j.join_type == datafusion_expr::JoinType::Inner
                && j.on.is_empty()
                && j.filter.is_none()
                && returns_one_row(&j.left)
                && returns_one_row(&j.right)
        }
        _ => false,
    }
}

/// Rewrites every uncorrelated scalar subquery that reads the parameter's
/// table, in a projection or an aggregate, as a cross join with its one row,
/// so that the reverse pass sees it as a relation.
fn lift_subqueries(plan: LogicalPlan, parameter: &Parameter) -> Result<LogicalPlan> {
    let mut lifted = 0;
    plan.transform_up_with_subqueries(|node| {
        let (input, mut exprs) = match &node {
            LogicalPlan::Projection(p) => (p.input.as_ref().clone(), p.expr.clone()),
            LogicalPlan::Aggregate(a) => (a.input.as_ref().clone(), a.aggr_expr.clone()),
            other => {
                let mut found = None;
                other.apply_expressions(|e| {
                    if let Some(s) = subquery_reading(e, parameter) {
                        found = Some(s);
                    }
                    Ok(TreeNodeRecursion::Continue)
                })?;
                if let (Some(s), false) = (found, matches!(other, LogicalPlan::Filter(_))) {
                    return plan_err!(
                        "gradient(): cannot differentiate through the scalar subquery `{s}` \
                         in `{}`; move it into a projection",
                        other.display()
                    );
                }
                return Ok(Transformed::no(node));
            }
        };
        let place = node.display().to_string();
        let mut input = input;
        let mut changed = false;
        for e in exprs.iter_mut() {
            let names = NamePreserver::new_for_projection().save(e);
            let rewritten = e.clone().transform_up(|sub| {
                let Expr::ScalarSubquery(subquery) = &sub else {
                    return Ok(Transformed::no(sub));
                };
                if !reads_parameter(&subquery.subquery, parameter) {
                    return Ok(Transformed::no(sub));
                }
                if !subquery.outer_ref_columns.is_empty() {
                    return plan_err!(
                        "gradient(): cannot differentiate through a correlated subquery that \
                         reads the parameter's table, in `{place}`"
                    );
                }
                if !returns_one_row(&subquery.subquery) {
                    return plan_err!(
                        "gradient(): a scalar subquery in `{place}` reads the parameter's \
                         table but may not return exactly one row; make it an aggregate \
                         without GROUP BY"
                    );
                }
                lifted += 1;
                let alias = format!("__ag_subquery{lifted}");
                let field = subquery.subquery.schema().field(0).name().clone();
                let one_row = LogicalPlanBuilder::from(subquery.subquery.as_ref().clone())
                    .alias(alias.as_str())?
                    .build()?;
                input = LogicalPlanBuilder::from(input.clone())
                    .cross_join(one_row)?
                    .build()?;
                Ok(Transformed::yes(Expr::Column(Column::new(
                    Some(alias),
                    field,
                ))))
            })?;
            if rewritten.transformed {
                changed = true;
                *e = names.restore(rewritten.data);
            }
        }
        if !changed {
            return Ok(Transformed::no(node));
        }
        let rebuilt = match &node {
            LogicalPlan::Projection(_) => {
                LogicalPlanBuilder::from(input).project(exprs)?.build()?
            }
            LogicalPlan::Aggregate(a) => LogicalPlanBuilder::from(input)
                .aggregate(a.group_expr.clone(), exprs)?
                .build()?,
            _ => unreachable!("only projections and aggregates are rewritten"),
        };
        Ok(Transformed::yes(rebuilt))
    })
    .map(|t| t.data)
}

/// The first scalar subquery in `expr` that reads the parameter's table.
fn subquery_reading(expr: &Expr, parameter: &Parameter) -> Option<String> {
    let mut found = None;
    let _ = expr.apply(|e| {
        if let Expr::ScalarSubquery(s) = e {
            if reads_parameter(&s.subquery, parameter) {
                found = Some(e.to_string());
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// Whether `plan` scans the parameter's table anywhere.
fn reads_parameter(plan: &LogicalPlan, parameter: &Parameter) -> bool {
    let mut found = false;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            found |= parameter.is_scanned_by(scan);
        }
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}
