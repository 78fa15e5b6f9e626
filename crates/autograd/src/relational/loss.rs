//! The loss in the form the reverse pass reads.

use std::rc::Rc;

use datafusion_common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion_common::{Column, DFSchema, Result};
use datafusion_expr::expr_rewriter::NamePreserver;
use datafusion_expr::{Expr, JoinType, LogicalPlan, LogicalPlanBuilder};

use super::parameter::Parameter;
use super::rule::unsupported;
use crate::error::fail;
use crate::forward::marker::expand_markers;
use crate::forward::reals::ColumnTypes;
use crate::options::AutogradOptions;

/// `loss` in the form the reverse pass reads: markers differentiated, and
/// uncorrelated scalar subqueries that read a parameter's table joined to the
/// rows that use them. An error unless it is a loss: one row, one numeric
/// column, the same rows every time it is evaluated (the reverse pass
/// evaluates parts of it more than once).
pub(crate) fn normalize(
    loss: &LogicalPlan,
    parameters: &[Parameter],
    options: &AutogradOptions,
) -> Result<LogicalPlan> {
    let plan = prepare(loss, parameters, options)?;
    check_is_a_loss(&plan)?;
    Ok(plan)
}

/// Any query in the form the passes read (markers differentiated, scalar
/// subqueries that read a parameter's table joined), checked to compute the
/// same rows each time.
pub(crate) fn prepare(
    query: &LogicalPlan,
    parameters: &[Parameter],
    options: &AutogradOptions,
) -> Result<LogicalPlan> {
    let plan = lift_subqueries(query.clone(), parameters)?;
    let plan = plan
        .transform_up_with_subqueries(|node| {
            let names = NamePreserver::new(&node);
            let schema = Rc::new(input_schema(&node));
            node.map_expressions(|e| {
                let saved = names.save(&e);
                let expanded = expand_markers(e, ColumnTypes::Schema(&schema), options)?;
                Ok(Transformed::yes(saved.restore(expanded)))
            })?
            .map_data(LogicalPlan::recompute_schema)
        })?
        .data;
    check_deterministic(&plan)?;
    Ok(plan)
}

/// The schema a node's expressions are evaluated against: its input's, or
/// for a node with several inputs (a join) theirs side by side.
fn input_schema(node: &LogicalPlan) -> DFSchema {
    match node.inputs().as_slice() {
        [input] => input.schema().as_ref().clone(),
        inputs => {
            let mut schema = DFSchema::empty();
            for input in inputs {
                schema.merge(input.schema());
            }
            schema
        }
    }
}

fn check_deterministic(plan: &LogicalPlan) -> Result<()> {
    let mut volatile = None;
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|sub| {
                if sub.is_volatile_node() {
                    volatile = Some(sub.to_string());
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    match volatile {
        Some(function) => fail!(
            NotALoss,
            "gradient(): the loss calls `{function}`, which returns new values each time; \
             the gradient evaluates parts of the loss more than once, so they would disagree"
        ),
        None => Ok(()),
    }
}

fn check_is_a_loss(loss: &LogicalPlan) -> Result<()> {
    let fields = loss.schema().fields();
    if fields.len() != 1 {
        return fail!(
            NotALoss,
            "gradient(): the loss query must return one column, found {}",
            fields.len()
        );
    }
    if !fields[0].data_type().is_numeric() {
        return fail!(
            NotALoss,
            "gradient(): the loss must be numeric, found {}",
            fields[0].data_type()
        );
    }
    if !returns_one_row(loss) {
        return fail!(
            NotALoss,
            "gradient(): the loss query must return exactly one row; make its outermost \
             operation an aggregate without GROUP BY, for example SELECT SUM(…) or AVG(…)"
        );
    }
    Ok(())
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
            j.join_type == JoinType::Inner
                && j.on.is_empty()
                && j.filter.is_none()
                && returns_one_row(&j.left)
                && returns_one_row(&j.right)
        }
        _ => false,
    }
}

/// Whether `plan` is the one row without columns of a query without `FROM`.
fn is_unit(plan: &LogicalPlan) -> bool {
    matches!(plan, LogicalPlan::EmptyRelation(e) if e.produce_one_row && e.schema.fields().is_empty())
}

/// Rewrites every uncorrelated scalar subquery that reads a parameter's
/// table, in a projection or an aggregate, as a cross join with its one row,
/// so that the reverse pass sees it as a relation.
fn lift_subqueries(plan: LogicalPlan, parameters: &[Parameter]) -> Result<LogicalPlan> {
    let mut lifted = 0;
    plan.transform_up_with_subqueries(|node| {
        let (input, mut exprs) = match &node {
            LogicalPlan::Projection(p) => (p.input.as_ref().clone(), p.expr.clone()),
            LogicalPlan::Aggregate(a) => (a.input.as_ref().clone(), a.aggr_expr.clone()),
            LogicalPlan::Filter(_) => return Ok(Transformed::no(node)),
            other => {
                let mut found = None;
                other.apply_expressions(|e| {
                    found = found.take().or(subquery_reading(e, parameters)?);
                    Ok(TreeNodeRecursion::Continue)
                })?;
                return match found {
                    Some(s) => unsupported(
                        other,
                        format!("the scalar subquery `{s}` reads a parameter's table; move it into a projection"),
                    ),
                    None => Ok(Transformed::no(node)),
                };
            }
        };
        let mut input = input;
        let mut changed = false;
        for e in exprs.iter_mut() {
            let names = NamePreserver::new_for_projection().save(e);
            let rewritten = e.clone().transform_up(|sub| {
                let Expr::ScalarSubquery(subquery) = &sub else {
                    return Ok(Transformed::no(sub));
                };
                if !reads_a_parameter(&subquery.subquery, parameters)? {
                    return Ok(Transformed::no(sub));
                }
                if !subquery.outer_ref_columns.is_empty() {
                    return unsupported(
                        &node,
                        "a correlated subquery reads a parameter's table",
                    );
                }
                if !returns_one_row(&subquery.subquery) {
                    return unsupported(
                        &node,
                        "a scalar subquery reads a parameter's table but may not return \
                         exactly one row; make it an aggregate without GROUP BY",
                    );
                }
                lifted += 1;
                let alias = format!("__ag_subquery{lifted}");
                let field = subquery.subquery.schema().field(0).name().clone();
                let one_row = LogicalPlanBuilder::from(subquery.subquery.as_ref().clone())
                    .alias(alias.as_str())?
                    .build()?;
                input = if is_unit(&input) {
                    one_row
                } else {
                    LogicalPlanBuilder::from(input.clone())
                        .cross_join(one_row)?
                        .build()?
                };
                Ok(Transformed::yes(Expr::Column(Column::new(Some(alias), field))))
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
            LogicalPlan::Aggregate(a) => LogicalPlanBuilder::from(input)
                .aggregate(a.group_expr.clone(), exprs)?
                .build()?,
            _ => LogicalPlanBuilder::from(input).project(exprs)?.build()?,
        };
        Ok(Transformed::yes(rebuilt))
    })
    .map(|t| t.data)
}

/// The first scalar subquery in `expr` that reads a parameter's table.
fn subquery_reading(expr: &Expr, parameters: &[Parameter]) -> Result<Option<String>> {
    let mut found = None;
    expr.apply(|e| {
        if let Expr::ScalarSubquery(s) = e {
            if reads_a_parameter(&s.subquery, parameters)? {
                found = Some(e.to_string());
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(found)
}

/// Whether `plan` scans a parameter's table anywhere.
pub(crate) fn reads_a_parameter(plan: &LogicalPlan, parameters: &[Parameter]) -> Result<bool> {
    let mut found = false;
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            found = parameters.iter().any(|p| p.is_scanned_by(scan));
        }
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })?;
    Ok(found)
}
