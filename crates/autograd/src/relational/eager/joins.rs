//! How the joins on the way from the parameter's rows to the contributions
//! are read: the one that brought the rows in, its keys to sum by, and the
//! joins above it, taken into the table's side or kept.

use std::collections::{HashMap, HashSet};

use datafusion_common::{Column, NullEquality, Result};
use datafusion_expr::expr::BinaryExpr;
use datafusion_expr::logical_plan::Join;
use datafusion_expr::utils::{conjunction, split_conjunction};
use datafusion_expr::{binary_expr as binary, Expr, JoinType, LogicalPlan, Operator};

use super::{contains, names, unqualified};
use crate::relational::augment::join;

/// What becomes of the joins above the join that brought the table's rows
/// in, found from it upwards.
pub(super) struct Above {
    /// The table's side: its rows joined with those of every join above
    /// that pairs them with rows of its other input alone (the first layer
    /// of a network: `w1`, and `b1` joined on `w1.j = b1.j`).
    pub(super) plan: LogicalPlan,
    /// The names of its columns.
    pub(super) names: HashSet<String>,
    /// What becomes of each join above.
    pub(super) joins: HashMap<*const Join, Fate>,
}

/// What becomes of a join above the one that brought the table's rows in.
pub(super) enum Fate {
    /// Taken into the table's side.
    Joins,
    /// Kept, with the parts of its condition that do not read the table's side.
    Kept(Option<Expr>),
}

impl Above {
    /// The joins of `path` above `found`, whose table's side is
    /// `side_plan`; each part of a kept join's condition that compares the
    /// table's side with the rest is added to `keys` (the join of a
    /// reduction's groups back onto its input: `g.j = w1.j`). None where a
    /// kept join reads the table's side otherwise.
    pub(super) fn of(
        path: &[&LogicalPlan],
        found: &Join,
        side_plan: &LogicalPlan,
        keys: &mut Keys,
    ) -> Result<Option<Self>> {
        let mut above = Above {
            plan: side_plan.clone(),
            names: names(side_plan),
            joins: HashMap::new(),
        };
        for node in path.iter().rev().skip(1) {
            let LogicalPlan::Join(j) = node else {
                continue;
            };
            if j.join_type != JoinType::Inner {
                return Ok(None);
            }
            let beside = if contains(&j.left, found) {
                j.right.as_ref()
            } else {
                j.left.as_ref()
            };
            let beside_names = names(beside);
            let parts = condition_parts(j);
            let reads = |e: &Expr, set: &HashSet<String>| {
                e.column_refs().iter().any(|c| set.contains(&c.name))
            };
            let pairs_side_alone = parts.iter().any(|p| reads(p, &above.names))
                && parts.iter().all(|p| {
                    p.column_refs()
                        .iter()
                        .all(|c| above.names.contains(&c.name) || beside_names.contains(&c.name))
                });
            if pairs_side_alone {
                above.plan = join(
                    above.plan,
                    beside.clone(),
                    vec![],
                    conjunction(parts),
                    JoinType::Inner,
                    j.null_equality,
                )?;
                above.names.extend(beside_names);
                above.joins.insert(j as *const Join, Fate::Joins);
                continue;
            }
            let mut kept = vec![];
            for part in parts {
                if !reads(&part, &above.names) {
                    kept.push(part);
                    continue;
                }
                let rest = |e: &Expr| !reads(e, &above.names);
                let side = |e: &Expr| {
                    e.column_refs()
                        .iter()
                        .all(|c| above.names.contains(&c.name))
                };
                if !keys.compared(&part, rest, side)? {
                    return Ok(None);
                }
            }
            above
                .joins
                .insert(j as *const Join, Fate::Kept(conjunction(kept)));
        }
        Ok(Some(above))
    }
}

/// The parts of an inner join's condition: its keys as equalities (`IS NOT
/// DISTINCT FROM` where NULLs meet), and its filter's conjuncts.
fn condition_parts(j: &Join) -> Vec<Expr> {
    let op = match j.null_equality {
        NullEquality::NullEqualsNull => Operator::IsNotDistinctFrom,
        NullEquality::NullEqualsNothing => Operator::Eq,
    };
    j.on.iter()
        .map(|(l, r)| binary(l.clone(), op, r.clone()))
        .chain(j.filter.iter().flat_map(split_conjunction).cloned())
        .collect()
}

/// How an inner join pairs the rows of the other side with the rows of the
/// table's side, split for summing the other side's rows first.
pub(super) struct Keys {
    /// The other side's expressions the pairing reads, summed by.
    pub(super) grouped: Vec<Expr>,
    /// Equi-join keys: the index of a grouped expression, and the table's
    /// side's key it equals (with the join's NULL equality).
    pub(super) on: Vec<(usize, Expr)>,
    /// The rest of the join's condition over both sides, or over the table's side alone.
    pub(super) conditions: Vec<Condition>,
    /// The parts of the join's condition that read the other side alone.
    pub(super) other_only: Vec<Expr>,
}

/// A part of a join's condition, with the other side's expressions as grouped.
pub(super) enum Condition {
    /// `grouped[k] op side`, `op` an equality.
    Compares(usize, Operator, Expr),
    /// Reads the table's side alone.
    Side(Expr),
}

impl Condition {
    pub(super) fn over(self, groups: &[Column]) -> Expr {
        match self {
            Condition::Compares(k, op, side) => Expr::BinaryExpr(BinaryExpr::new(
                Box::new(Expr::Column(groups[k].clone())),
                op,
                Box::new(side),
            )),
            Condition::Side(e) => e,
        }
    }
}

impl Keys {
    /// The keys of `join`, whose input `side` is the table's; None where a
    /// part of its condition reads both sides other than as an equality.
    pub(super) fn of(
        join: &Join,
        side: usize,
        other_names: &HashSet<String>,
        side_names: &HashSet<String>,
    ) -> Result<Option<Self>> {
        let within = |e: &Expr, names: &HashSet<String>| {
            e.column_refs().iter().all(|c| names.contains(&c.name))
        };
        let mut keys = Keys {
            grouped: vec![],
            on: vec![],
            conditions: vec![],
            other_only: vec![],
        };
        for (l, r) in &join.on {
            let (o, s) = if side == 0 { (r, l) } else { (l, r) };
            keys.on.push((keys.grouped.len(), s.clone()));
            keys.grouped.push(unqualified(o.clone())?);
        }
        for part in join.filter.iter().flat_map(split_conjunction) {
            if within(part, other_names) {
                keys.other_only.push(part.clone());
                continue;
            }
            if within(part, side_names) {
                keys.conditions.push(Condition::Side(part.clone()));
                continue;
            }
            if !keys.compared(part, |e| within(e, other_names), |e| within(e, side_names))? {
                return Ok(None);
            }
        }
        Ok((!keys.grouped.is_empty()).then_some(keys))
    }

    /// Takes `part`, an equality between an expression that `rest` accepts
    /// and one of the table's side (`side`), as one more key to sum by;
    /// false where it is not one.
    pub(super) fn compared(
        &mut self,
        part: &Expr,
        rest: impl Fn(&Expr) -> bool,
        side: impl Fn(&Expr) -> bool,
    ) -> Result<bool> {
        let Expr::BinaryExpr(BinaryExpr { left, op, right }) = part else {
            return Ok(false);
        };
        if !matches!(op, Operator::Eq | Operator::IsNotDistinctFrom) {
            return Ok(false);
        }
        let (r, s) = if rest(left) && side(right) {
            (left, right)
        } else if rest(right) && side(left) {
            (right, left)
        } else {
            return Ok(false);
        };
        self.conditions.push(Condition::Compares(
            self.grouped.len(),
            *op,
            s.as_ref().clone(),
        ));
        self.grouped.push(unqualified(r.as_ref().clone())?);
        Ok(true)
    }
}
