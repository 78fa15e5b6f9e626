//! Whether a join multiplies the rows of a reduction's groups.
//!
//! A reduction's input that joins the groups of other reductions with tables
//! is kept either whole or as the groups alone, the join computed again by
//! each reader. Joined on all of their keys, the groups meet at most one
//! row of each other table per group as a rule (a sample's prediction and
//! its target): the join is no larger than the groups, and computing it again
//! only costs time. Joined on some of their keys, each group meets every row
//! that shares them (a layer's outputs and the next layer's weights: one
//! row per output and weight), and keeping the join costs that many rows.

use std::collections::HashSet;

use datafusion_common::tree_node::TreeNode;
use datafusion_common::{Column, Result};
use datafusion_expr::utils::split_conjunction;
use datafusion_expr::{BinaryExpr, Expr, Join, LogicalPlan, Operator};

use super::lineage::Lineage;
use super::staged::{Stage, StageSource};

/// Whether a join in `plan` meets the groups of a reduction kept as one of
/// `stages` on fewer than all of the groups' keys.
pub(crate) fn multiplies_groups(plan: &LogicalPlan, stages: &[Stage]) -> Result<bool> {
    plan.exists(|node| {
        Ok(match node {
            LogicalPlan::Join(join) => {
                let (left, right) = keys(join);
                side_multiplied(&join.left, &left, stages)
                    || side_multiplied(&join.right, &right, stages)
            }
            _ => false,
        })
    })
}

/// The columns a join matches its sides' rows by, each side's: the pairs of
/// its keys, and the conjuncts `a = b` of its filter that compare a column
/// of one side with one of the other (a join as SQL writes it, before the
/// optimizer moves them to the keys).
fn keys(join: &Join) -> (Vec<&Column>, Vec<&Column>) {
    let mut pairs: Vec<(&Expr, &Expr)> = join.on.iter().map(|(l, r)| (l, r)).collect();
    for conjunct in join.filter.iter().flat_map(split_conjunction) {
        if let Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) = conjunct
        {
            pairs.push((left, right));
        }
    }
    let (mut on_left, mut on_right) = (vec![], vec![]);
    for (a, b) in pairs {
        let (Expr::Column(a), Expr::Column(b)) = (a, b) else {
            continue;
        };
        let in_left = |c: &Column| join.left.schema().has_column(c);
        let in_right = |c: &Column| join.right.schema().has_column(c);
        if in_left(a) && in_right(b) {
            on_left.push(a);
            on_right.push(b);
        } else if in_right(a) && in_left(b) {
            on_left.push(b);
            on_right.push(a);
        }
    }
    (on_left, on_right)
}

/// Whether one side of a join, joined by `keys`, reads the groups of a kept
/// reduction directly (not through another join) on fewer than all of their
/// keys.
fn side_multiplied(side: &LogicalPlan, keys: &[&Column], stages: &[Stage]) -> bool {
    let lineage = Lineage::of(side);
    let reached: HashSet<(&str, usize)> = keys
        .iter()
        .filter_map(|key| side.schema().index_of_column(key).ok())
        .filter_map(|j| lineage.source(j))
        .filter_map(|s| StageSource::of(&s.scan.source).map(|stage| (stage.name(), s.column)))
        .collect();
    direct_stages(side).into_iter().any(|name| {
        let Some(stage) = stages.iter().find(|s| s.name == name) else {
            return false;
        };
        group_keys(&stage.plan).is_some_and(|keys| {
            keys.iter()
                .any(|columns| !columns.iter().any(|c| reached.contains(&(name, *c))))
        })
    })
}

/// The stages `plan` scans through projections, filters and aliases alone.
fn direct_stages(plan: &LogicalPlan) -> Vec<&str> {
    match plan {
        LogicalPlan::TableScan(scan) => StageSource::of(&scan.source)
            .map(|stage| vec![stage.name()])
            .unwrap_or_default(),
        LogicalPlan::Projection(_) | LogicalPlan::Filter(_) | LogicalPlan::SubqueryAlias(_) => {
            plan.inputs().into_iter().flat_map(direct_stages).collect()
        }
        _ => vec![],
    }
}

/// Per group key of the aggregate under `plan`'s projections, filters and
/// aliases, the output columns that carry it: none where a projection left
/// it out, a key no join can meet. None when `plan` is not one such
/// aggregate, or when it groups by sets.
fn group_keys(plan: &LogicalPlan) -> Option<Vec<Vec<usize>>> {
    match plan {
        LogicalPlan::Aggregate(aggregate) => {
            let sets = aggregate
                .group_expr
                .iter()
                .any(|e| matches!(e, Expr::GroupingSet(_)));
            (!sets).then(|| (0..aggregate.group_expr.len()).map(|k| vec![k]).collect())
        }
        LogicalPlan::Projection(projection) => {
            let below = group_keys(&projection.input)?;
            let mut keys = vec![vec![]; below.len()];
            for (j, e) in projection.expr.iter().enumerate() {
                let Expr::Column(c) = e.clone().unalias() else {
                    continue;
                };
                let i = projection.input.schema().index_of_column(&c).ok()?;
                for (key, columns) in below.iter().enumerate() {
                    if columns.contains(&i) {
                        keys[key].push(j);
                    }
                }
            }
            Some(keys)
        }
        // Some groups, or the same under another name: still one row a key.
        LogicalPlan::Filter(_) | LogicalPlan::SubqueryAlias(_) => group_keys(plan.inputs()[0]),
        _ => None,
    }
}
