//! Contributions to a parameter's rows, summed before the join that brought
//! those rows in (eager aggregation).
//!
//! A parameter's table is usually small and joined with a large one by a
//! key — `x JOIN w ON x.i = w.i`, sixteen rows of `w` against millions of
//! `x`. Contributions reach `w`'s rows as rows of that join, which the
//! reverse pass computes again, only to sum them per row of `w`. When a
//! contribution depends on no column of `w` (∂(x.v·w.w)/∂w.w = x.v), and
//! nothing between the join and the contribution reads `w` but the join's
//! keys, the sum per row of `w` is the sum per key of the other side's
//! contributions, joined with `w` on that key:
//!
//! Σ over (o, s) of `O ⋈ S` with s = σ of c(o)  =  Σ over o with key(o) = key(σ) of c(o)
//!
//! so the contributions are summed per key first, over the other side's rows
//! alone, and the large join is never computed for the reverse pass.
//!
//! Joins above it that pair the table's rows with another relation's alone
//! (a network's bias: `JOIN b1 ON w1.j = b1.j`) join the table's side
//! instead, and an equality above it between the table's side and the rest
//! (the join of a layer's groups back onto its input: `g.j = w1.j`) is one
//! more key to sum by: the first layer of a network sums `x`'s contributions
//! per `(x.i, g.j, g.b)` and joins them with `w1 ⋈ b1`.

mod joins;
mod removal;

use std::cell::RefCell;
use std::collections::HashSet;

use datafusion::functions_aggregate::expr_fn::sum;
use datafusion_common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion_common::{Column, Result, ScalarValue};
use datafusion_expr::logical_plan::{Filter, Join};
use datafusion_expr::utils::conjunction;
use datafusion_expr::{lit, when, Expr, JoinType, LogicalPlan, LogicalPlanBuilder};

use super::augment::{contribution_column, extend, join, selected, CONTRIBUTION};
use super::backprop::Backprop;
use joins::{Above, Keys};
use removal::Removal;

/// The contributions `cot` of the rows of `rows` to the parameter's table,
/// whose columns in `rows` are `columns`: a row per contribution, the
/// table's columns as `contribution_column(k)` and the contribution as
/// [`CONTRIBUTION`]. Summed per key before the join that brought the
/// table's rows in where that gives the same sums (see the module's
/// documentation).
pub(crate) fn contributions(
    bp: &dyn Backprop,
    rows: LogicalPlan,
    columns: &[Column],
    cot: Column,
) -> Result<LogicalPlan> {
    match summed_before_join(bp, &rows, columns, &cot)? {
        Some(summed) => Ok(summed),
        None => project(rows, columns, Expr::Column(cot)),
    }
}

/// The table's columns and the contribution, under the names contributions carry.
fn project(plan: LogicalPlan, columns: &[Column], contribution: Expr) -> Result<LogicalPlan> {
    let mut exprs: Vec<Expr> = columns
        .iter()
        .enumerate()
        .map(|(k, c)| Expr::Column(c.clone()).alias(contribution_column(k)))
        .collect();
    exprs.push(contribution.alias(CONTRIBUTION));
    LogicalPlanBuilder::from(plan).project(exprs)?.build()
}

fn summed_before_join(
    bp: &dyn Backprop,
    rows: &LogicalPlan,
    columns: &[Column],
    cot: &Column,
) -> Result<Option<LogicalPlan>> {
    let table: HashSet<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let Some((path, side)) = path_to_join(rows, &table) else {
        return Ok(None);
    };
    let Some(LogicalPlan::Join(found)) = path.last().copied() else {
        return Ok(None);
    };
    if found.join_type != JoinType::Inner {
        return Ok(None);
    }
    // A volatile expression computed once per row of the other side would
    // not be what it was once per pair of rows.
    if rows.exists(|node| Ok(node.expressions().iter().any(Expr::is_volatile)))? {
        return Ok(None);
    }
    let (side_plan, other) = if side == 0 {
        (found.left.as_ref(), found.right.as_ref())
    } else {
        (found.right.as_ref(), found.left.as_ref())
    };
    let Some(mut keys) = Keys::of(found, side, &names(other), &names(side_plan))? else {
        return Ok(None);
    };
    let Some(above) = Above::of(&path, found, side_plan, &mut keys)? else {
        return Ok(None);
    };
    let other = match conjunction(keys.other_only.clone()) {
        Some(predicate) => LogicalPlan::Filter(Filter::try_new(predicate, other.clone().into())?),
        None => other.clone(),
    };
    let mut needed: HashSet<String> = HashSet::from([cot.name.clone()]);
    for o in &keys.grouped {
        needed.extend(o.column_refs().into_iter().map(|c| c.name.clone()));
    }
    let removal = Removal {
        found,
        other: &other,
        side: above.names,
        joins: above.joins,
        cot: &cot.name,
        deferred: RefCell::default(),
    };
    let Some(without) = removal.without(rows, needed)? else {
        return Ok(None);
    };
    let groups: Vec<Column> = keys.grouped.iter().map(|_| bp.fresh("key")).collect();
    let total = bp.fresh("total");
    let summed = LogicalPlanBuilder::from(without)
        .aggregate(
            keys.grouped
                .iter()
                .zip(&groups)
                .map(|(o, g)| o.clone().alias(g.name.clone())),
            [sum(Expr::Column(cot.clone())).alias(total.name.clone())],
        )?
        .build()?;
    // The side's columns by their names alone: a side that took joins in is
    // read through a projection of its columns, whatever relation named them.
    let on = keys
        .on
        .into_iter()
        .map(|(k, s)| Ok((Expr::Column(groups[k].clone()), unqualified(s)?)))
        .collect::<Result<_>>()?;
    let filter = keys
        .conditions
        .into_iter()
        .map(|condition| unqualified(condition.over(&groups)))
        .collect::<Result<Vec<_>>>()?;
    let joined = join(
        selected(summed)?,
        standing_alone(above.plan)?,
        on,
        conjunction(filter),
        JoinType::Inner,
        found.null_equality,
    )?;
    let total = match conjunction(removal.deferred.take()) {
        Some(condition) => {
            let condition = unqualified(condition)?;
            when(condition, Expr::Column(total)).otherwise(lit(ScalarValue::Float64(None)))?
        }
        None => Expr::Column(total),
    };
    project(joined, columns, total).map(Some)
}

/// The nodes from `plan` down to the deepest join under it, through
/// projections, filters and joins, one of whose sides holds every column in
/// `table` (the join last), with that side's index.
fn path_to_join<'a>(
    plan: &'a LogicalPlan,
    table: &HashSet<&str>,
) -> Option<(Vec<&'a LogicalPlan>, usize)> {
    let holds = |p: &LogicalPlan| {
        let found = names(p);
        table.iter().all(|c| found.contains(*c))
    };
    let mut path = vec![];
    let mut deepest = None;
    let mut node = plan;
    loop {
        path.push(node);
        node = match node {
            LogicalPlan::Projection(p) if holds(&p.input) => &p.input,
            LogicalPlan::Filter(f) if holds(&f.input) => &f.input,
            LogicalPlan::Join(j) => {
                let side = if holds(&j.left) {
                    0
                } else if holds(&j.right) {
                    1
                } else {
                    break;
                };
                deepest = Some((path.len(), side));
                if side == 0 {
                    &j.left
                } else {
                    &j.right
                }
            }
            _ => break,
        };
    }
    let (length, side) = deepest?;
    path.truncate(length);
    Some((path, side))
}

/// `plan`, selecting its columns by name where it is a join: printed as SQL,
/// a join that is one side of another is read into that join's `FROM`, its
/// conditions against the wrong relations.
fn standing_alone(plan: LogicalPlan) -> Result<LogicalPlan> {
    match plan {
        LogicalPlan::Join(_) => extend(plan, vec![]),
        other => Ok(other),
    }
}

/// Whether `found` is a node of `plan`.
fn contains(plan: &LogicalPlan, found: &Join) -> bool {
    let mut seen = false;
    let _ = plan.apply(|node| {
        seen = matches!(node, LogicalPlan::Join(j) if std::ptr::eq(j, found));
        Ok(if seen {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    seen
}

/// The names of `plan`'s output columns.
fn names(plan: &LogicalPlan) -> HashSet<String> {
    plan.schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

/// `expr` with its columns named by their names alone, as the projections of
/// augmented plans pass them up (every column's name is its own).
fn unqualified(expr: Expr) -> Result<Expr> {
    expr.transform(|e| {
        Ok(match e {
            Expr::Column(c) if c.relation.is_some() => {
                Transformed::yes(Expr::Column(Column::from_name(c.name)))
            }
            e => Transformed::no(e),
        })
    })
    .map(|t| t.data)
}
